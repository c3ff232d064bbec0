"""advjax.rundir, alone: --out checks, the run lock, a killed write's temporaries.

A lock held by another process is tested end to end in test_bad_input.py; here a
second open file description stands for it (flock locks are per open file)."""

import json
import os

import pytest

from advjax import rundir
from advjax.options import ConfigError


def test_check_writable_creates_nothing_and_names_what_blocks(tmp_path):
    rundir.check_writable(str(tmp_path / "a" / "b" / "c"))
    assert not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        rundir.check_writable(str(tmp_path / "f"))
    with pytest.raises(ConfigError, match=r"--out: .* cannot be made: .*/f is a file"):
        rundir.check_writable(str(tmp_path / "f" / "sub"))


def test_the_lock_is_exclusive_records_its_holder_and_is_released(tmp_path):
    out = str(tmp_path)
    first = rundir.RunLock(out)
    first.probe()  # nothing there yet: nothing created
    assert not os.path.exists(first.path)
    first.acquire()
    info = json.loads(open(first.path).read())
    assert info["pid"] == os.getpid() and "host" in info and "since" in info
    assert rundir.holder(out).startswith(f"pid {os.getpid()} on ")
    second = rundir.RunLock(out)
    with pytest.raises(ConfigError, match="in use by a sweep still running: pid"):
        second.probe()
    with pytest.raises(ConfigError, match="--out"):
        second.acquire()
    first.release()
    second.probe()
    second.acquire()
    second.release()
    assert rundir.entries(out) == []  # the lock file is not an entry of the run


def test_holder_of_a_damaged_lock_file_is_another_process(tmp_path):
    (tmp_path / rundir.LOCK_NAME).write_text("{not json")
    assert rundir.holder(str(tmp_path)) == "another process"


def test_stray_temporaries_of_killed_writes_are_removed_and_nothing_else(tmp_path):
    keep = ["results.csv", "manifest.json", "results.csv.tmpl", "notes.tmp"]
    stray = ["results.csv.tmp123", "manifest.json.tmp9"]
    final = tmp_path / "checkpoints" / "p10" / "final"
    final.mkdir(parents=True)
    (final / "params.npz.tmp77").write_text("")
    for name in keep + stray:
        (tmp_path / name).write_text("")
    removed = rundir.remove_stray_temporaries(str(tmp_path))
    assert sorted(os.path.basename(p) for p in removed) == sorted([*stray, "params.npz.tmp77"])
    assert sorted(rundir.entries(str(tmp_path))) == sorted([*keep, "checkpoints"])
    assert list(final.iterdir()) == []


@pytest.mark.parametrize("kind", ["symlink", "dangling", "directory", "fifo"])
def test_a_lock_that_is_not_a_plain_file_is_refused_and_nothing_outside_out_is_written(tmp_path, kind):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = out / rundir.LOCK_NAME
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "dangling":
        lock.symlink_to(tmp_path / "created-outside")
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)
    for step in (rundir.RunLock(str(out)).probe, rundir.RunLock(str(out)).acquire):
        with pytest.raises(ConfigError, match=r"^--out: .*\.lock is (a symbolic link|a directory|not a regular file)"):
            step()
    assert victim.read_text() == "precious"
    assert not (tmp_path / "created-outside").exists()


def test_the_cli_refuses_a_symlinked_lock_in_one_line(tmp_path, capsys):
    from advjax.sweep import main

    out, victim = tmp_path / "out", tmp_path / "victim.txt"
    out.mkdir()
    victim.write_text("precious")
    (out / rundir.LOCK_NAME).symlink_to(victim)
    for extra in ([], ["--resume"]):
        assert main(["--widths", "4", "--seeds", "1", "--max-steps", "5", "--out", str(out), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--out:" in err and "symbolic link" in err
    assert victim.read_text() == "precious"
