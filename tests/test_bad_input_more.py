"""Issue 27's silent accepts, tracebacks and noise, each now one line (or one warning):
--batch-size 0, a repeated flag, an --lr-schedule epoch beyond int64, an unusable
compile-cache location, memory the model did not count (--hessian-iters, a confusion
set on 2-D data), and a checkpoint write that fails in Orbax's threads."""

import json
import os
import subprocess
import sys

import pytest

from advjax import run_sweep
from advjax.sweep import main

TINY = ["--dataset", "gaussians", "--widths", "5", "--seeds", "2", "--max-steps", "20", "--n-test", "100",
        "--no-measures", "--no-figure", "--quiet"]


def one_line(capsys, rc, want_rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == want_rc and err.count("\n") == 0 and "Traceback" not in err, (rc, err)
    for w in words:
        assert w in err, err
    return err


@pytest.mark.parametrize("argv,words", [
    (["--batch-size", "0"], ("--batch-size:", "a positive integer or 'full'")),
    (["--widths", "6"], ("--widths: given twice", "'5', then '6'")),
    (["--wid", "6"], ("--widths: given twice",)),  # an abbreviation is the same flag
    (["--measures"], ("--measures: given twice",)),  # --no-measures, then --measures
    (["--lr", "0.1", "--lr=0.2"], ("--lr: given twice",)),
    (["--compile-cache", "x", "--no-compile-cache"], ("--no-compile-cache",)),
    (["--lr-schedule", "step:99999999999999999999:0.1"], ("--lr-schedule:", "2^31-1")),
    (["--hessian-iters", "100000", "--measures"], ("--hessian-iters:", "lower --hessian-iters")),
])
def test_refused_in_one_line_and_nothing_written(tmp_path, capsys, argv, words):
    if "--measures" in argv and "--hessian-iters" in argv:
        argv = argv[:-1]  # TINY's --no-measures is the repeated flag otherwise
        base = [a for a in TINY if a != "--no-measures"]
    else:
        base = TINY
    try:
        rc = main([*base, *argv, "--out", str(tmp_path / "o")])
    except SystemExit as e:  # argparse's own errors (a repeated flag) exit from the parser
        rc = e.code
    one_line(capsys, rc, 2, *words)
    assert not (tmp_path / "o").exists()


def test_a_confusion_set_too_large_names_its_own_flag(tmp_path, capsys):
    rc = main(["--dataset", "circles", "--widths", "5", "--seeds", "2", "--confusion-copies", "100000000",
               "--quiet", "--out", str(tmp_path / "o")])
    one_line(capsys, rc, 2, "--confusion-copies:", "lower --confusion-copies")


def test_a_teacher_too_large_names_its_own_flag(tmp_path, capsys):
    rc = main(["--dataset", "teacher", "--teacher-width", "1000000", "--input-dim", "10000", "--widths", "5",
               "--seeds", "2", "--n-test", "100", "--quiet", "--out", str(tmp_path / "o")])
    one_line(capsys, rc, 2, "--teacher-width:", "lower --teacher-width")
    assert not (tmp_path / "o").exists()


def test_full_batch_is_recorded_as_full_and_resumes(tmp_path, capsys):
    assert main([*TINY, "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["config"]["batch_size"] == "full"
    assert main([*TINY, "--batch-size", "full", "--out", str(tmp_path / "o"), "--resume"]) == 0


def test_a_schedule_epoch_past_every_step_cap_runs(tmp_path):
    rows = run_sweep({"dataset": "gaussians", "widths": "5", "seeds": 2, "max_steps": 20, "n_test": 100,
                      "measures": False, "figure": False, "quiet": True, "batch_size": 10,
                      "lr_schedule": "step:2147483647:0.1"}, str(tmp_path / "o"))
    assert len(rows) == 6


@pytest.mark.parametrize("where", ["file", "proc", "env", "home"])
def test_an_unusable_compile_cache_warns_once_and_runs_without_it(tmp_path, capsys, monkeypatch, where):
    (tmp_path / "afile").write_text("")
    flag = []
    if where == "file":
        flag = ["--compile-cache", str(tmp_path / "afile" / "sub")]
    elif where == "proc":
        flag = ["--compile-cache", "/proc/advjax-cache"]
    elif where == "env":
        monkeypatch.setenv("ADVJAX_COMPILE_CACHE", str(tmp_path / "afile" / "env"))
    else:
        monkeypatch.delenv("ADVJAX_COMPILE_CACHE", raising=False)
        monkeypatch.setenv("HOME", str(tmp_path / "afile"))
    assert main([*TINY, *flag, "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("advjax.sweep: warning: --compile-cache: cannot use"), err
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["compile_cache"] is None


@pytest.mark.slow
def test_a_checkpoint_write_failure_is_one_line_and_resumes(tmp_path):
    """A file-size limit makes Orbax's writer threads fail (they logged 105 lines of
    tracebacks); the sweep says so in one line, exit 1, and --resume finishes the run."""
    flags = ["--dataset", "mnist", "--widths", "100", "--seeds", "2", "--max-steps", "30", "--no-measures",
             "--no-figure", "--quiet", "--no-compile-cache", "--out", str(tmp_path / "o")]
    limited = ("import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
               f"sys.argv = ['advjax.sweep', *{flags!r}]; runpy.run_module('advjax.sweep', run_name='__main__')")
    p = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True)
    err = p.stderr.strip()
    assert p.returncode == 1 and err.count("\n") == 0, err
    assert "cannot save checkpoint" in err and "--resume" in err
    p = subprocess.run([sys.executable, "-m", "advjax.sweep", *flags, "--resume"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert os.path.exists(tmp_path / "o" / "results.csv")
