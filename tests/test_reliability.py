"""Nothing silent: data by content, one sweep per --out, write failures that keep the last
good files, and Orbax errors that stay one line."""

import errno
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from advjax.sweep import main

CLI = [sys.executable, "-m", "advjax.sweep"]
# Widths 6 and 9 (were 4 and 6), two seeds, 100 test points, as in test_sweep.py: their programs
# compile once (in this process, and through the compilation cache across files).
SIZES = ["--seeds", "2", "--n-test", "100", "--quiet", "--no-measures", "--no-figure"]
TINY = ["--widths", "6,9", "--max-steps", "150", *SIZES]


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def save_npz(path, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(150, 3)).astype(np.float32)
    y = (x[:, 0] + 0.3 * x[:, 1] > 0).astype(np.int64)
    np.savez(path, x_train=x[:50], y_train=y[:50], x_test=x[50:], y_test=y[50:])


@pytest.mark.slow
def test_theta_adv_follows_the_data_content_not_its_path(tmp_path, capsys):
    """At one width (was two): a stale Θ_adv and a stale --resume are refused by content,
    and the same bytes under another path are accepted."""
    data = tmp_path / "data.npz"
    save_npz(data, 0)
    args = ["--dataset", str(data), "--widths", "6", "--max-steps", "150", *SIZES]
    assert main([*args, "--experiments", "2", "--out", str(tmp_path / "a")]) == 0
    capsys.readouterr()
    # same path, other bytes: the stale Θ_adv is refused, naming the field
    save_npz(data, 1)
    assert main([*args, "--experiments", "3", "--adv-from", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 2
    err = one_line(capsys.readouterr().err)
    assert "--adv-from" in err and "data.sha256" in err
    assert not (tmp_path / "b").exists()  # nothing was written: the same --out can be used again
    # ... and so is a --resume of the sweep made on the old bytes
    assert main([*args, "--experiments", "2", "--out", str(tmp_path / "a"), "--resume"]) == 2
    assert "data.sha256" in one_line(capsys.readouterr().err)
    # the first file's bytes under another path are accepted
    save_npz(tmp_path / "elsewhere.npz", 0)
    moved = ["--dataset", str(tmp_path / "elsewhere.npz"), "--widths", "6", "--max-steps", "150", *SIZES]
    assert main([*moved, "--experiments", "3", "--adv-from", str(tmp_path / "a"), "--out", str(tmp_path / "b")]) == 0
    assert main([*moved, "--experiments", "2,3", "--out", str(tmp_path / "c")]) == 0
    frozen = lambda d: [r for r in (tmp_path / d / "results.csv").read_text().splitlines() if ",frozen," in r]  # noqa: E731
    assert frozen("b") == frozen("c") and len(frozen("b")) == 2


@pytest.mark.slow
def test_disk_full_during_a_save_exits_1_and_resume_completes_the_run(tmp_path, capsys, monkeypatch):
    """At width 6 alone (was two widths): the third save, inside its first experiment, fails."""
    args = ["--dataset", "gaussians", "--widths", "6", "--max-steps", "150", *SIZES, "--lr", "0.002",
            "--checkpoint-every", "40"]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real_save, calls = ocp.CheckpointManager.save, []

    def full_disk(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, *a, **k)

    monkeypatch.setattr(ocp.CheckpointManager, "save", full_disk)
    out = str(tmp_path / "full")
    assert main([*args, "--out", out]) == 1
    err = one_line(capsys.readouterr().err)
    assert "No space left" in err and "--resume" in err
    monkeypatch.setattr(ocp.CheckpointManager, "save", real_save)
    assert main([*args, "--out", out, "--resume"]) == 0
    assert (tmp_path / "full" / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()


@pytest.mark.slow
def test_disk_full_while_writing_results_keeps_the_last_complete_file(tmp_path, capsys, monkeypatch):
    args = ["--dataset", "gaussians", *TINY]
    assert main([*args, "--out", str(tmp_path / "whole")]) == 0
    real_fsync = os.fsync

    def full_on_second_width(fd):
        if os.readlink(f"/proc/self/fd/{fd}").split("/")[-1].startswith("results.csv.tmp") and any(
                line.startswith("gaussians,9,") for line in open(f"/proc/self/fd/{fd}")):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_on_second_width)
    out = tmp_path / "full"
    assert main([*args, "--out", str(out)]) == 1
    assert "No space left" in one_line(capsys.readouterr().err)
    monkeypatch.setattr(os, "fsync", real_fsync)
    kept = (out / "results.csv").read_text()
    assert "gaussians,6," in kept and "gaussians,9," not in kept  # width 6's complete file, not half of width 9's
    assert not [f for f in os.listdir(out) if ".tmp" in f]
    assert main([*args, "--out", str(out), "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()


@pytest.mark.slow
def test_a_second_sweep_on_the_same_out_is_refused_while_the_first_runs(tmp_path, capsys):
    """The first sweep holds --out while it loads its programs and runs 50,000 steps that never
    fit (lr 1e-6; was 30,000: its programs now load from the compilation cache, as they are the
    tests' above, at width 6 of TINY's shapes; circles at width 4 before)."""
    out = tmp_path / "o"
    slow = ["--dataset", "gaussians", "--widths", "6", *SIZES, "--lr", "1e-6", "--max-steps", "50000",
            "--experiments", "1"]
    first = subprocess.Popen([*CLI, *slow, "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    deadline = time.monotonic() + 120
    while not (out / ".lock").exists() or not (out / ".lock").read_text():
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()
        time.sleep(0.02)
    for extra in ([], ["--resume"]):
        assert main([*slow, "--out", str(out), *extra]) == 2
        err = one_line(capsys.readouterr().err)
        assert "--out" in err and f"pid {first.pid}" in err
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert main([*slow, "--out", str(tmp_path / "alone")]) == 0
    assert (out / "results.csv").read_bytes() == (tmp_path / "alone" / "results.csv").read_bytes()


@pytest.mark.slow
def test_orbax_errors_are_one_line_every_time(tmp_path):
    """A damaged Θ_adv and a mismatched one, 20 tries in all (4 processes of 5): one line
    each, never an Orbax traceback after it, not even at interpreter exit. Θ_adv is made at
    width 6 of TINY's shapes (was width 4, one seed), whose programs are compiled already."""
    good = tmp_path / "good"
    assert main(["--dataset", "gaussians", "--widths", "6", *SIZES, "--max-steps", "50", "--experiments", "2",
                 "--out", str(good)]) == 0
    damaged = tmp_path / "damaged"
    shutil.copytree(good, damaged)
    for root, _, files in os.walk(damaged / "checkpoints" / "p6" / "theta_adv" / "0" / "state"):
        for f in files:
            with open(os.path.join(root, f), "r+b") as fh:
                fh.truncate(max(0, os.path.getsize(os.path.join(root, f)) // 2))
    script = textwrap.dedent(f"""
        from advjax.sweep import main
        base = ["--dataset", "gaussians", "--widths", "6", *{SIZES!r}, "--experiments", "3"]
        for i in range(5):
            src, steps = ({str(damaged)!r}, "50") if i % 2 else ({str(good)!r}, "60")
            assert main([*base, "--max-steps", steps, "--adv-from", src, "--out", {str(tmp_path)!r} + f"/o{{i}}"]) == 2
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script.replace("/o{i}", f"/p{k}-{{i}}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        lines = err.splitlines()
        assert len(lines) == 5 and all(line.startswith("advjax.sweep: error: --adv-from") for line in lines), err
    assert sorted(os.listdir(tmp_path)) == ["damaged", "good"]  # no --out was made by a refused start


@pytest.mark.slow
def test_stray_temporaries_of_a_killed_write_are_removed_on_resume(tmp_path):
    """Both kinds of temporary in one sweep's --out (two tests of one sweep each before), at
    width 6 of TINY's shapes."""
    args = ["--dataset", "gaussians", "--widths", "6", *SIZES, "--max-steps", "20", "--experiments", "1",
            "--out", str(tmp_path / "o")]
    assert main(args) == 0
    strays = ["results.csv.tmp12345", "manifest.json.tmp999"]
    for stray in strays:
        (tmp_path / "o" / stray).write_text("half a file")
    assert main([*args, "--resume"]) == 0
    assert not [stray for stray in strays if (tmp_path / "o" / stray).exists()]
