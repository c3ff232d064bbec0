"""A second hostile table (issue 27, item 8), written from README.md's promises alone.

The promise: bad input gets ONE line on stderr naming the flag (or the file and field)
and what is allowed, exit status 2, no traceback, and nothing written to --out (no
directory made, an existing one left byte for byte as it was); valid input runs; a data
file never runs code; a kill never loses finished results.

Groups (the id prefix):

  cli-*     sweep flags at and past their limits, odd types, empty strings, unicode,
            NaN/inf, huge numbers, repeated flags, flags that do not apply to the dataset
            or model, combinations, --config files, data files with pickles in them
  heavy-*   huge sizes only a memory model or a range check stands between and a
            machine-sized allocation: run together in one child process under an
            address-space limit, so a missed refusal cannot take the test process down
  resume-*  a finished run copied and tampered with (manifest.json and results.csv
            fields, types, cells, columns, rows; files deleted or replaced by
            directories or symlinks), then `--resume`; plus resumes with other options
  api-*     advjax.run_sweep(dict) and run_sweep(SweepConfig(...)) with bad fields:
            advjax.options.ConfigError (a ValueError) whose text is the CLI's line, and
            nothing written
  tools-*   advjax.merge, advjax.report and advjax.figures on damaged or mismatched run
            directories and bad --out
  grid-*    every grid axis given two values runs the tiny sweep (exit 0), with the
            axis as a results.csv column
  kill-*    a sweep killed (SIGKILL) after its first width keeps that width's rows, and
            --resume finishes with them unchanged

Every run uses one tiny configuration (TINY), so the cases that train share one compiled
program; most cases are refusals that never train.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import guarded as bounded
from conftest import with_flags

import advjax
from advjax.figures import main as figures_main
from advjax.merge import main as merge_main
from advjax.options import ConfigError, SweepConfig
from advjax.report import main as report_main
from advjax.sweep import main as sweep_main

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TINY = ["--dataset", "gaussians", "--widths", "5", "--seeds", "2", "--max-steps", "20", "--n-test", "100",
        "--no-measures", "--no-figure", "--quiet"]
TINY_DICT = {"dataset": "gaussians", "widths": [5], "seeds": 2, "max_steps": 20, "n_test": 100,
             "measures": False, "figure": False, "quiet": True}
TINY_TOML = 'dataset = "gaussians"\nwidths = [5]\nseeds = 2\nmax_steps = 20\nn_test = 100\n' \
            'measures = false\nfigure = false\nquiet = true\n'
REFUSAL_SECONDS = 60  # a refusal takes milliseconds; this only stops a case that trains for long
RUN_SECONDS = 120
MEMORY_HEADROOM = 4 * 2**30
BIG = str(10**30)


# -- running a case ----------------------------------------------------------------------------

def guarded(seconds: int, memory: bool):
    return bounded(seconds, MEMORY_HEADROOM if memory else None)


def call(fn: Callable, argv, seconds: int = REFUSAL_SECONDS, memory: bool = True):
    """fn(argv) -> (exit code, None) or (None, the exception that escaped it)."""
    try:
        with guarded(seconds, memory):
            return fn(argv), None
    except SystemExit as e:
        return (e.code if isinstance(e.code, int) else 0 if e.code is None else 1), None
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # noqa: BLE001 - the case's failure
        return None, e


def last_line(e: BaseException) -> str:
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if "/advjax/" in f.filename]
    where = f" @ advjax/{ours[-1].filename.split('/advjax/')[-1]}:{ours[-1].lineno}" if ours else ""
    return f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}{where}"


def snapshot(path) -> dict | None:
    """What is at `path`: None if nothing, else {relative path: kind and content hash}."""
    if path is None or not os.path.lexists(path):
        return None
    path = str(path)
    if os.path.islink(path):
        return {".": f"symlink -> {os.readlink(path)}"}
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return {".": "file " + hashlib.sha256(Path(path).read_bytes()).hexdigest()}
    if not stat.S_ISDIR(mode):
        return {".": f"special {stat.S_IFMT(mode):o}"}
    snap = {".": "dir"}
    for root, dirs, files in os.walk(path):
        for d in dirs:
            p = os.path.join(root, d)
            snap[os.path.relpath(p, path)] = f"symlink -> {os.readlink(p)}" if os.path.islink(p) else "dir"
        for f in files:
            p = os.path.join(root, f)
            snap[os.path.relpath(p, path)] = (f"symlink -> {os.readlink(p)}" if os.path.islink(p) else
                                              "file " + hashlib.sha256(Path(p).read_bytes()).hexdigest())
    return snap


class AllOf(list):
    """Names that must ALL appear (the file and the field), where a plain list needs one; an
    item that is itself a list needs one of its names."""


def names_one(line: str, names) -> bool:
    """`line` names one of `names` (all of them for an AllOf): a flag as a whole flag (--lr
    is not --lr-schedule), anything else as a substring."""
    if isinstance(names, AllOf):
        return all(names_one(line, n if isinstance(n, list) else [n]) for n in names)
    for n in names:
        if n.startswith("--"):
            if re.search(re.escape(n) + r"(?![\w-])", line):
                return True
        elif n in line:
            return True
    return False


def assert_refused(rc, exc, err: str, names, watched: dict):
    """The contract of a refusal. `watched`: {path: snapshot before} that must not change."""
    assert exc is None, f"an exception escaped (a traceback on the CLI): {last_line(exc)}"
    text = err.strip()
    assert rc == 2, f"rc={rc}, stderr: {text[-300:]!r}"
    assert text, "rc 2 without a line on stderr"
    assert "Traceback" not in text, text[-300:]
    assert "\n" not in text, f"{text.count(chr(10)) + 1} lines on stderr: {text[-400:]!r}"
    assert names_one(text, names), (f"the line names {'not all' if isinstance(names, AllOf) else 'none'} "
                                    f"of {list(names)}: {text!r}")
    for path, before in watched.items():
        after = snapshot(path)
        assert after == before, f"{path} changed by a refused start: {_diff(before, after)}"


def _diff(before, after) -> str:
    if before is None:
        return f"created ({sorted(after)[:5]})"
    if after is None:
        return "removed"
    return (f"added {sorted(set(after) - set(before))[:4]}, removed {sorted(set(before) - set(after))[:4]}, "
            f"changed {sorted(k for k in after if k in before and after[k] != before[k])[:4]}")


def assert_ran(rc, exc, err: str):
    assert exc is None, f"an exception escaped: {last_line(exc)}"
    assert rc == 0, f"rc={rc}, stderr: {err.strip()[-400:]!r}"


def read_rows(out) -> list[dict]:
    with open(Path(out) / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


# -- the one finished run, and a second one of another seed set --------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "r"
    rc, exc = call(sweep_main, [*TINY, "--out", str(out)], RUN_SECONDS, memory=False)
    assert_ran(rc, exc, "")
    return out


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:  # the same sweep over seeds 7, 8: another sweep
    out = tmp_path_factory.mktemp("run_b") / "r7"
    rc, exc = call(sweep_main, [*TINY, "--seed", "7", "--out", str(out)], RUN_SECONDS, memory=False)
    assert_ran(rc, exc, "")
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


# -- (a) sweep flags ---------------------------------------------------------------------------

def toml(body: str, *, tiny: bool = True):
    """A --config file case: TINY's keys (unless a key of `body` sets it) and `body`."""
    def build(t: Path) -> list[str]:
        given = {line.split("=")[0].strip().replace("-", "_") for line in body.splitlines() if "=" in line}
        base = "".join(line + "\n" for line in TINY_TOML.splitlines() if line.split("=")[0].strip() not in given)
        p = t / "sweep.toml"
        p.write_text((base if tiny else "") + body)
        return ["--config", str(p)]
    build.config_only = True  # TINY's flags would override the file's keys
    return build


class Payload:
    """Unpickling this creates the file `marker`: the proof that a data file ran code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def npz_with_pickle(which: str):
    def build(t: Path) -> list[str]:
        rng = np.random.default_rng(0)
        arrays = {"x_train": rng.normal(size=(30, 2)).astype(np.float32), "y_train": np.arange(30) % 2,
                  "x_test": rng.normal(size=(20, 2)).astype(np.float32), "y_test": np.arange(20) % 2}
        obj = np.empty(1, dtype=object)
        obj[0] = Payload(str(t / "payload-ran"))
        arrays[which] = obj
        p = t / "data.npz"
        np.savez(p, **arrays)
        return ["--dataset", str(p)]
    return build


def npy_renamed_with_pickle(t: Path) -> list[str]:
    obj = np.empty(1, dtype=object)
    obj[0] = Payload(str(t / "payload-ran"))
    np.save(t / "data.npy", obj, allow_pickle=True)
    os.rename(t / "data.npy", t / "data.npz")
    return ["--dataset", str(t / "data.npz")]


def raw_pickle_as_npz(t: Path) -> list[str]:
    import pickle
    (t / "data.npz").write_bytes(pickle.dumps(Payload(str(t / "payload-ran"))))
    return ["--dataset", str(t / "data.npz")]


def python_as_toml(t: Path) -> list[str]:
    (t / "sweep.toml").write_text(f"import os\nopen({str(t / 'payload-ran')!r}, 'w')\n")
    return ["--config", str(t / "sweep.toml")]


# (id, argv or builder(tmp) -> argv, names the line may name)
CLI = [
    # --widths
    ("cli-widths-0", ["--widths", "0"], ["--widths"]),
    ("cli-widths-neg", ["--widths", "-5"], ["--widths"]),
    ("cli-widths-float", ["--widths", "5.5"], ["--widths"]),
    ("cli-widths-empty", ["--widths", ""], ["--widths"]),
    ("cli-widths-eq-empty", ["--widths="], ["--widths"]),
    ("cli-widths-comma", ["--widths", ","], ["--widths"]),
    ("cli-widths-trailing-comma", ["--widths", "5,"], ["--widths"]),
    ("cli-widths-leading-comma", ["--widths", ",5"], ["--widths"]),
    ("cli-widths-empty-item", ["--widths", "5,,6"], ["--widths"]),
    ("cli-widths-repeat", ["--widths", "5,5"], ["--widths"]),
    ("cli-widths-repeat-05", ["--widths", "5,05"], ["--widths"]),
    ("cli-widths-abc", ["--widths", "abc"], ["--widths"]),
    ("cli-widths-nan", ["--widths", "nan"], ["--widths"]),
    ("cli-widths-inf", ["--widths", "inf"], ["--widths"]),
    ("cli-widths-cjk", ["--widths", "五"], ["--widths"]),
    ("cli-widths-zero-width-space", ["--widths", "5\u200b"], ["--widths"]),
    ("cli-widths-emoji", ["--widths", "🙂"], ["--widths"]),
    # --seeds, --seed
    ("cli-seeds-0", ["--seeds", "0"], ["--seeds"]),
    ("cli-seeds-neg", ["--seeds", "-1"], ["--seeds"]),
    ("cli-seeds-list", ["--seeds", "1,2"], ["--seeds"]),
    ("cli-seeds-float", ["--seeds", "1.5"], ["--seeds"]),
    ("cli-seeds-nan", ["--seeds", "nan"], ["--seeds"]),
    ("cli-seeds-1e999", ["--seeds", "1e999"], ["--seeds"]),
    ("cli-seeds-empty", ["--seeds", ""], ["--seeds"]),
    ("cli-seeds-emoji", ["--seeds", "🙂"], ["--seeds"]),
    ("cli-seed-neg", ["--seed", "-1"], ["--seed"]),
    ("cli-seed-2^32", ["--seed", "4294967296"], ["--seed"]),
    ("cli-seed-last-past-uint32", ["--seed", "4294967295"], ["--seed", "--seeds"]),
    ("cli-seed-float", ["--seed", "1.5"], ["--seed"]),
    ("cli-seed-abc", ["--seed", "abc"], ["--seed"]),
    ("cli-seed-huge", ["--seed", BIG], ["--seed"]),
    # step caps and chunks (int32 counters)
    ("cli-max-steps-0", ["--max-steps", "0"], ["--max-steps"]),
    ("cli-max-steps-neg", ["--max-steps", "-1"], ["--max-steps"]),
    ("cli-max-steps-2^31", ["--max-steps", "2147483648"], ["--max-steps"]),
    ("cli-max-steps-huge", ["--max-steps", BIG], ["--max-steps"]),
    ("cli-max-steps-1e10", ["--max-steps", "1e10"], ["--max-steps"]),
    ("cli-max-steps-float", ["--max-steps", "20.5"], ["--max-steps"]),
    ("cli-max-steps-nan", ["--max-steps", "nan"], ["--max-steps"]),
    ("cli-max-steps-inf", ["--max-steps", "inf"], ["--max-steps"]),
    ("cli-max-steps-empty", ["--max-steps", ""], ["--max-steps"]),
    ("cli-max-steps-grid-repeat", ["--max-steps", "20,20"], ["--max-steps"]),
    ("cli-phase1-max-steps-0", ["--phase1-max-steps", "0"], ["--phase1-max-steps"]),
    ("cli-phase1-max-steps-2^31", ["--phase1-max-steps", "2147483648"], ["--phase1-max-steps"]),
    ("cli-phase1-max-steps-abc", ["--phase1-max-steps", "abc"], ["--phase1-max-steps"]),
    ("cli-chunk-steps-0", ["--chunk-steps", "0"], ["--chunk-steps"]),
    ("cli-chunk-steps-neg", ["--chunk-steps", "-1"], ["--chunk-steps"]),
    ("cli-chunk-steps-2^31", ["--chunk-steps", "2147483648"], ["--chunk-steps"]),
    ("cli-chunk-steps-float", ["--chunk-steps", "1.5"], ["--chunk-steps"]),
    ("cli-checkpoint-every-neg", ["--checkpoint-every", "-5"], ["--checkpoint-every"]),
    ("cli-checkpoint-every-abc", ["--checkpoint-every", "abc"], ["--checkpoint-every"]),
    ("cli-checkpoint-every-nans", ["--checkpoint-every", "nans"], ["--checkpoint-every"]),
    ("cli-checkpoint-every-infm", ["--checkpoint-every", "infm"], ["--checkpoint-every"]),
    ("cli-checkpoint-every-neg-m", ["--checkpoint-every", "-1m"], ["--checkpoint-every"]),
    ("cli-checkpoint-every-empty", ["--checkpoint-every", ""], ["--checkpoint-every"]),
    # step sizes and other reals
    ("cli-lr-0", ["--lr", "0"], ["--lr"]),
    ("cli-lr-neg", ["--lr", "-0.1"], ["--lr"]),
    ("cli-lr-neg-zero", ["--lr", "-0"], ["--lr"]),
    ("cli-lr-nan", ["--lr", "nan"], ["--lr"]),
    ("cli-lr-NaN", ["--lr", "NaN"], ["--lr"]),
    ("cli-lr-inf", ["--lr", "inf"], ["--lr"]),
    ("cli-lr-neg-inf", ["--lr=-inf"], ["--lr"]),
    ("cli-lr-overflow", ["--lr", "1e400"], ["--lr"]),
    ("cli-lr-empty", ["--lr", ""], ["--lr"]),
    ("cli-lr-abc", ["--lr", "abc"], ["--lr"]),
    ("cli-lr-hex", ["--lr", "0x10"], ["--lr"]),
    ("cli-lr-unicode-minus", ["--lr", "\u22120.1"], ["--lr"]),
    ("cli-lr-infinity-sign", ["--lr", "∞"], ["--lr"]),
    ("cli-lr-trailing-comma", ["--lr", "0.1,"], ["--lr"]),
    ("cli-lr-leading-comma", ["--lr", ",0.1"], ["--lr"]),
    ("cli-lr-repeat-equal", ["--lr", "0.1,0.10"], ["--lr"]),
    ("cli-lr-empty-item", ["--lr", "0.1,,0.2"], ["--lr"]),
    ("cli-lr-grid-with-nan", ["--lr", "0.1,nan"], ["--lr"]),
    ("cli-phase1-lr-0", ["--phase1-lr", "0"], ["--phase1-lr"]),
    ("cli-phase1-lr-neg", ["--phase1-lr", "-1"], ["--phase1-lr"]),
    ("cli-phase1-lr-nan", ["--phase1-lr", "nan"], ["--phase1-lr"]),
    ("cli-momentum-1", ["--momentum", "1"], ["--momentum"]),
    ("cli-momentum-1.0", ["--momentum", "1.0"], ["--momentum"]),
    ("cli-momentum-neg", ["--momentum", "-0.1"], ["--momentum"]),
    ("cli-momentum-nan", ["--momentum", "nan"], ["--momentum"]),
    ("cli-momentum-grid-past-1", ["--momentum", "0.5,1"], ["--momentum"]),
    ("cli-weight-decay-nan", ["--weight-decay", "nan"], ["--weight-decay"]),
    ("cli-weight-decay-inf", ["--weight-decay", "inf"], ["--weight-decay"]),
    ("cli-random-fraction-neg", ["--random-fraction", "-0.1"], ["--random-fraction"]),
    ("cli-random-fraction-past-1", ["--random-fraction", "1.01"], ["--random-fraction"]),
    ("cli-random-fraction-nan", ["--random-fraction", "nan"], ["--random-fraction"]),
    ("cli-random-fraction-inf", ["--random-fraction", "inf"], ["--random-fraction"]),
    ("cli-phase1-target-acc-0", ["--phase1-target-acc", "0"], ["--phase1-target-acc"]),
    ("cli-phase1-target-acc-1.5", ["--phase1-target-acc", "1.5"], ["--phase1-target-acc"]),
    ("cli-phase1-target-acc-nan", ["--phase1-target-acc", "nan"], ["--phase1-target-acc"]),
    ("cli-target-train-acc-0", ["--target-train-acc", "0"], ["--target-train-acc"]),
    ("cli-target-train-acc-past-1", ["--target-train-acc", "1.0001"], ["--target-train-acc"]),
    ("cli-target-train-acc-neg", ["--target-train-acc", "-1"], ["--target-train-acc"]),
    ("cli-confusion-copies-neg", ["--confusion-copies", "-1"], ["--confusion-copies"]),
    ("cli-confusion-copies-float", ["--confusion-copies", "1.5"], ["--confusion-copies"]),
    ("cli-zero-out-1", ["--confusion-copies", "1", "--zero-out", "1"], ["--zero-out"]),
    ("cli-zero-out-neg", ["--confusion-copies", "1", "--zero-out", "-0.1"], ["--zero-out"]),
    ("cli-zero-out-nan", ["--confusion-copies", "1", "--zero-out", "nan"], ["--zero-out"]),
    # sizes
    ("cli-n-test-0", ["--n-test", "0"], ["--n-test"]),
    ("cli-n-test-neg", ["--n-test", "-1"], ["--n-test"]),
    ("cli-n-test-float", ["--n-test", "10.5"], ["--n-test"]),
    ("cli-n-train-0", ["--n-train", "0"], ["--n-train"]),
    ("cli-n-train-neg", ["--n-train", "-5"], ["--n-train"]),
    ("cli-depth-0", ["--depth", "0"], ["--depth"]),
    ("cli-depth-neg", ["--depth", "-1"], ["--depth"]),
    ("cli-depth-float", ["--depth", "1.5"], ["--depth"]),
    ("cli-depth-empty", ["--depth", ""], ["--depth"]),
    ("cli-batch-size-0", ["--batch-size", "0"], ["--batch-size"]),
    ("cli-batch-size-neg", ["--batch-size", "-1"], ["--batch-size"]),
    ("cli-batch-size-float", ["--batch-size", "1.5"], ["--batch-size"]),
    ("cli-batch-size-typo", ["--batch-size", "fulll"], ["--batch-size"]),
    ("cli-batch-size-empty", ["--batch-size", ""], ["--batch-size"]),
    ("cli-check-every-0", ["--check-every", "0"], ["--check-every"]),
    ("cli-check-every-neg", ["--check-every", "-1"], ["--check-every"]),
    ("cli-max-grid-0", ["--max-grid", "0"], ["--max-grid"]),
    ("cli-max-grid-neg", ["--max-grid", "-1"], ["--max-grid"]),
    ("cli-max-grid-exceeded", ["--lr", "0.01,0.02", "--max-grid", "3"], ["--max-grid", "--lr"]),
    ("cli-max-seeds-in-flight-0", ["--max-seeds-in-flight", "0"], ["--max-seeds-in-flight"]),
    ("cli-max-seeds-in-flight-neg", ["--max-seeds-in-flight", "-1"], ["--max-seeds-in-flight"]),
    ("cli-memory-budget-neg", ["--memory-budget", "-1"], ["--memory-budget"]),
    ("cli-memory-budget-nan", ["--memory-budget", "nan"], ["--memory-budget"]),
    ("cli-memory-budget-inf", ["--memory-budget", "inf"], ["--memory-budget"]),
    ("cli-memory-budget-abc", ["--memory-budget", "abc"], ["--memory-budget"]),
    ("cli-memory-budget-0", ["--memory-budget", "0"], ["--memory-budget"]),
    ("cli-memory-budget-1-byte", ["--memory-budget", "1"], ["--memory-budget", "--seeds", "--widths", "--n-test"]),
    # choices
    ("cli-dataset-empty", ["--dataset", ""], ["--dataset"]),
    ("cli-dataset-unknown", ["--dataset", "bogus"], ["--dataset"]),
    ("cli-dataset-unicode", ["--dataset", "gaussïans"], ["--dataset"]),
    ("cli-dataset-missing-npz", ["--dataset", "/nonexistent/x.npz"], ["--dataset"]),
    ("cli-dataset-a-directory", lambda t: ["--dataset", str(t)], ["--dataset"]),
    ("cli-model-unknown", ["--model", "bogus"], ["--model"]),
    ("cli-model-empty", ["--model", ""], ["--model"]),
    ("cli-model-cnn-on-points", ["--model", "cnn"], ["--model"]),
    ("cli-model-resnet18-on-points", ["--model", "resnet18"], ["--model"]),
    ("cli-experiments-empty", ["--experiments", ""], ["--experiments"]),
    ("cli-experiments-0", ["--experiments", "0"], ["--experiments"]),
    ("cli-experiments-4", ["--experiments", "4"], ["--experiments"]),
    ("cli-experiments-unknown", ["--experiments", "bogus"], ["--experiments"]),
    ("cli-experiments-cyrillic", ["--experiments", "базовый"], ["--experiments"]),
    ("cli-experiments-repeat", ["--experiments", "1,1"], ["--experiments"]),
    ("cli-experiments-repeat-alias", ["--experiments", "1,baseline"], ["--experiments"]),
    ("cli-experiments-freeze-past-depth", ["--experiments", "freeze_2"], ["--experiments"]),
    ("cli-experiments-reinit-past-readout", ["--experiments", "reinit_3"], ["--experiments"]),
    ("cli-experiments-freeze-0", ["--experiments", "freeze_0"], ["--experiments"]),
    ("cli-experiments-teacher-off-teacher", ["--experiments", "teacher_features"], ["--experiments", "--dataset"]),
    ("cli-init-unknown", ["--init", "bogus"], ["--init"]),
    ("cli-loss-reduction-unknown", ["--loss-reduction", "median"], ["--loss-reduction"]),
    ("cli-phase1-optimizer-unknown", ["--phase1-optimizer", "rmsprop"], ["--phase1-optimizer"]),
    ("cli-stop-rule-unknown", ["--stop-rule", "never"], ["--stop-rule"]),
    ("cli-seed-groups-unknown", ["--seed-groups", "bogus"], ["--seed-groups"]),
    ("cli-matmul-precision-unknown", ["--matmul-precision", "float16"], ["--matmul-precision"]),
    ("cli-augment-unknown", ["--augment", "bogus"], ["--augment"]),
    ("cli-lr-schedule-empty-epochs", ["--lr-schedule", "step:"], ["--lr-schedule"]),
    ("cli-lr-schedule-abc", ["--lr-schedule", "step:abc:0.1"], ["--lr-schedule"]),
    ("cli-lr-schedule-nan-factor", ["--lr-schedule", "step:10:nan"], ["--lr-schedule"]),
    ("cli-lr-schedule-unknown", ["--lr-schedule", "cosine"], ["--lr-schedule"]),
    # flags that do not apply
    ("cli-na-noise", ["--noise", "0.3"], ["--noise"]),
    ("cli-na-t-max", ["--t-max", "5"], ["--t-max"]),
    ("cli-na-input-dim", ["--input-dim", "3"], ["--input-dim"]),
    ("cli-na-teacher-width", ["--teacher-width", "2"], ["--teacher-width"]),
    ("cli-na-mnist-path", lambda t: ["--mnist-path", str(t)], ["--mnist-path"]),
    ("cli-na-cifar-path", lambda t: ["--cifar-path", str(t)], ["--cifar-path"]),
    ("cli-na-npz-keys", ["--npz-keys", "a,b,c,d"], ["--npz-keys"]),
    ("cli-na-relabel", ["--relabel"], ["--relabel"]),
    ("cli-na-shrink", ["--shrink", "0.5"], ["--shrink"]),
    ("cli-na-perturb", ["--perturb", "0.2"], ["--perturb"]),
    ("cli-na-augment", ["--augment", "crop-flip"], ["--augment"]),
    ("cli-na-conv-impl-mlp", ["--conv-impl", "im2col"], ["--conv-impl"]),
    ("cli-na-hessian-iters", ["--hessian-iters", "5"], ["--hessian-iters"]),
    ("cli-na-grid-no-measures", ["--grid", "8"], ["--grid"]),
    ("cli-na-phase1-lr-baseline", ["--experiments", "1", "--phase1-lr", "0.1"], ["--phase1-lr"]),
    ("cli-na-phase1-optimizer-baseline", ["--experiments", "1", "--phase1-optimizer", "adam"],
     ["--phase1-optimizer"]),
    ("cli-na-phase1-max-steps-baseline", ["--experiments", "1", "--phase1-max-steps", "5"],
     ["--phase1-max-steps"]),
    ("cli-na-random-fraction-baseline", ["--experiments", "1", "--random-fraction", "0.5"],
     ["--random-fraction"]),
    ("cli-na-phase1-target-baseline", ["--experiments", "1", "--phase1-target-acc", "0.5"],
     ["--phase1-target-acc"]),
    ("cli-na-confusion-baseline", ["--experiments", "1", "--confusion-copies", "1"], ["--confusion-copies"]),
    ("cli-na-zero-out-no-copies", ["--zero-out", "0.2"], ["--zero-out"]),
    ("cli-na-adv-from-baseline", lambda t: ["--experiments", "1", "--adv-from", str(t)], ["--adv-from"]),
    ("cli-na-repack-no-compact", ["--repack", "--no-compact"], ["--repack"]),
    ("cli-na-coordinator", ["--coordinator", "127.0.0.1:1"], ["--coordinator"]),
    ("cli-na-num-processes", ["--num-processes", "2"], ["--num-processes"]),
    ("cli-na-process-id", ["--process-id", "0"], ["--process-id"]),
    ("cli-na-memory-budget-with-max-seeds", ["--max-seeds-in-flight", "1", "--memory-budget", "1GB"],
     ["--memory-budget"]),
    ("cli-na-target-train-acc-budget", ["--stop-rule", "budget", "--target-train-acc", "0.9"],
     ["--target-train-acc"]),
    ("cli-na-depth-cnn", ["--model", "cnn", "--depth", "2"], ["--depth", "--model"]),
    ("cli-na-noise-on-spirals", ["--dataset", "spirals", "--noise", "0.3"], ["--noise"]),
    ("cli-na-t-max-on-circles", ["--dataset", "circles", "--t-max", "5"], ["--t-max"]),
    ("cli-na-teacher-width-on-mnist", ["--dataset", "mnist", "--teacher-width", "2"], ["--teacher-width"]),
    # values out of range on the dataset they belong to
    ("cli-circles-noise-nan", ["--dataset", "circles", "--noise", "nan"], ["--noise"]),
    ("cli-circles-noise-inf", ["--dataset", "circles", "--noise", "inf"], ["--noise"]),
    ("cli-spirals-t-max-neg-inf", ["--dataset", "spirals", "--t-max=-inf"], ["--t-max"]),
    ("cli-spirals-t-max-abc", ["--dataset", "spirals", "--t-max", "x10"], ["--t-max"]),
    ("cli-teacher-input-dim-0", ["--dataset", "teacher", "--input-dim", "0"], ["--input-dim"]),
    ("cli-teacher-width-0", ["--dataset", "teacher", "--teacher-width", "0"], ["--teacher-width"]),
    ("cli-shrink-nan", ["--experiments", "shrink_perturb", "--shrink", "nan"], ["--shrink"]),
    ("cli-perturb-inf", ["--experiments", "shrink_perturb", "--perturb", "inf"], ["--perturb"]),
    ("cli-grid-0-measures", ["--measures", "--grid", "0"], ["--grid"]),
    # repeated flags and argparse
    ("cli-twice-lr", ["--lr", "0.1", "--lr", "0.2"], ["--lr"]),
    ("cli-twice-same-value", ["--widths", "5", "--widths", "5"], ["--widths"]),
    ("cli-twice-eq-and-space", ["--lr=0.1", "--lr", "0.1"], ["--lr"]),
    ("cli-twice-abbreviation", ["--wid", "6"], ["--widths", "--wid"]),
    ("cli-twice-bool", ["--quiet", "--quiet"], ["--quiet"]),
    ("cli-twice-bool-negated", ["--no-quiet", "--quiet"], ["--quiet", "--no-quiet"]),
    ("cli-twice-measures", ["--measures", "--no-measures"], ["--measures", "--no-measures"]),
    ("cli-twice-out", lambda t: ["--out", str(t / "other")], ["--out"]),
    ("cli-argp-unknown-flag", ["--bogus"], ["--bogus"]),
    ("cli-argp-unknown-unicode-flag", ["--lŕ", "0.1"], ["--lŕ"]),
    ("cli-argp-missing-value", ["--lr"], ["--lr"]),
    ("cli-argp-value-to-bool", ["--quiet=yes"], ["--quiet"]),
    ("cli-argp-flag-as-value", ["--widths", "--seeds", "2"], ["--widths"]),
    ("cli-argp-stray-positional", ["stray"], ["stray"]),
    # --config files
    ("cli-config-missing", ["--config", "/nonexistent/sweep.toml"], ["--config", "sweep.toml"]),
    ("cli-config-directory", lambda t: ["--config", str(t)], ["--config"]),
    ("cli-config-empty-path", ["--config", ""], ["--config"]),
    ("cli-config-lr-neg", toml("lr = -1\n"), ["--lr", "lr"]),
    ("cli-config-lr-nan", toml("lr = nan\n"), ["--lr", "lr"]),
    ("cli-config-lr-inf", toml("lr = inf\n"), ["--lr", "lr"]),
    ("cli-config-widths-empty", toml("widths = []\n"), ["--widths", "widths"]),
    ("cli-config-widths-repeat", toml("widths = [5, 5]\n"), ["--widths", "widths"]),
    ("cli-config-seeds-float", toml("seeds = 1.5\n"), ["--seeds", "seeds"]),
    ("cli-config-seeds-bool", toml("seeds = true\n"), ["--seeds", "seeds"]),
    ("cli-config-seeds-list", toml("seeds = [1, 2]\n"), ["--seeds", "seeds"]),
    ("cli-config-dataset-int", toml("dataset = 5\n"), ["--dataset", "dataset"]),
    ("cli-config-unknown-key", toml("bogus_key = 1\n"), ["bogus_key", "bogus-key"]),
    ("cli-config-key-twice", toml("max_steps = 20\nmax-steps = 30\n"), ["max_steps", "max-steps", "--max-steps"]),
    ("cli-config-broken", toml("lr = [\n"), ["sweep.toml", "--config"]),
    ("cli-config-binary",
     lambda t: ((t / "b.toml").write_bytes(b"\xff\xfe\x00\x01lr"), ["--config", str(t / "b.toml")])[1],
     ["b.toml", "--config"]),
    ("cli-config-table-wrong-type", toml("[sweep]\nlr = \"fast\"\n", tiny=False), ["--lr", "lr"]),
    ("cli-config-memory-budget-nan", toml("memory_budget = nan\n"), ["--memory-budget", "memory_budget"]),
    # data files never run code
    ("cli-npz-pickle-x-train", npz_with_pickle("x_train"), ["--dataset"]),
    ("cli-npz-pickle-y-test", npz_with_pickle("y_test"), ["--dataset"]),
    ("cli-npz-npy-pickle-renamed", npy_renamed_with_pickle, ["--dataset"]),
    ("cli-npz-raw-pickle", raw_pickle_as_npz, ["--dataset"]),
    ("cli-config-python-source", python_as_toml, ["--config", "sweep.toml"]),
    # --out
    ("cli-out-a-file", lambda t: ((t / "f").write_text("mine"), ["--out", str(t / "f")])[1], ["--out"]),
    ("cli-out-under-a-file", lambda t: ((t / "f").write_text("mine"), ["--out", str(t / "f" / "o")])[1],
     ["--out"]),
    ("cli-out-non-empty", lambda t: ((t / "d").mkdir(), (t / "d" / "x").write_text("x"),
                                     ["--out", str(t / "d")])[2], ["--out"]),
    ("cli-out-dangling-symlink", lambda t: (os.symlink(t / "nowhere", t / "l"), ["--out", str(t / "l")])[1],
     ["--out"]),
    ("cli-out-empty-string", ["--out", ""], ["--out"]),
    ("cli-adv-from-missing", ["--adv-from", "/nonexistent/run"], ["--adv-from"]),
    ("cli-adv-from-a-file", lambda t: ((t / "f").write_text("x"), ["--adv-from", str(t / "f")])[1],
     ["--adv-from"]),
    ("cli-adv-from-empty-dir", lambda t: ((t / "e").mkdir(), ["--adv-from", str(t / "e")])[1], ["--adv-from"]),
    ("cli-adv-from-empty-string", ["--adv-from", ""], ["--adv-from"]),
]


def _out_of(argv: list[str]) -> str | None:
    idx = [i for i, a in enumerate(argv) if a == "--out"]
    return argv[idx[-1] + 1] if idx and idx[-1] + 1 < len(argv) else None


@pytest.mark.parametrize("cid,argv,names", CLI, ids=[c[0] for c in CLI])
def test_cli_refusal(cid, argv, names, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a default --out (runs/...) would land here
    work = tmp_path / "w"
    work.mkdir()
    extra = argv(work) if callable(argv) else list(argv)
    out = str(tmp_path / "o")
    full = with_flags(TINY, ["--out", out, *extra]) if "--out" not in extra else with_flags(TINY, extra)
    if getattr(argv, "config_only", False):
        full = ["--out", out, *extra]
    if cid == "cli-twice-out":
        full = [*TINY, "--out", out, *extra]
    outs = {out, _out_of(full)} - {None, ""}
    watched = {p: snapshot(p) for p in [*outs, work, tmp_path / "runs"]}
    capsys.readouterr()
    rc, exc = call(sweep_main, full)
    err = capsys.readouterr().err
    assert_refused(rc, exc, err, names, watched)
    assert not (work / "payload-ran").exists(), "a data file ran code"


# valid input at the limits runs
VALID = [
    ("cli-ok-seed-at-uint32-limit", ["--seed", "4294967294"]),  # seeds 2^32-2, 2^32-1: the last key there is
    ("cli-ok-max-grid-at-limit", ["--lr", "0.01,0.02", "--max-grid", "4"]),  # 2 points x 2 seeds = 4
    ("cli-ok-out-empty-dir", []),  # an existing empty --out is allowed
]


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,argv", VALID, ids=[c[0] for c in VALID])
def test_cli_valid_at_the_limit_runs(cid, argv, run, tmp_path, capsys):
    out = tmp_path / "o"
    if cid == "cli-ok-out-empty-dir":
        out.mkdir()
    capsys.readouterr()
    rc, exc = call(sweep_main, with_flags(TINY, ["--out", str(out), *argv]), RUN_SECONDS, memory=False)
    assert_ran(rc, exc, capsys.readouterr().err)
    assert (out / "results.csv").exists()


# -- heavy: huge sizes, in one child process under an address-space limit ----------------------

HEAVY = [
    ("heavy-widths-1e12", ["--widths", str(10**12)], ["--widths", "--memory-budget"]),
    ("heavy-widths-huge", ["--widths", BIG], ["--widths", "--memory-budget"]),
    ("heavy-widths-one-huge", ["--widths", f"5,{10**12}"], ["--widths", "--memory-budget"]),
    ("heavy-seeds-2^31", ["--seeds", str(2**31)], ["--seeds", "--memory-budget"]),
    ("heavy-seeds-past-uint32", ["--seeds", "4294967297"], ["--seeds"]),
    ("heavy-seeds-huge", ["--seeds", BIG], ["--seeds"]),
    ("heavy-n-test-1e12", ["--n-test", str(10**12)], ["--n-test", "--memory-budget"]),
    ("heavy-n-test-huge", ["--n-test", BIG], ["--n-test", "--memory-budget"]),
    ("heavy-n-train-1e12", ["--n-train", str(10**12)], ["--n-train", "--memory-budget"]),
    ("heavy-grid-1e9-measures", ["--measures", "--grid", str(10**9)], ["--grid", "--memory-budget"]),
    ("heavy-grid-points-past-max-grid", ["--lr", ",".join(str(0.001 * (i + 1)) for i in range(5001))],
     ["--max-grid", "--lr"]),
]

HEAVY_CHILD = r"""
import json, os, resource, sys, traceback
cases, results = json.loads(open(sys.argv[1]).read()), sys.argv[2]
from advjax.sweep import main

def vm():
    for line in open("/proc/self/status"):
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024

for cid, argv in cases:
    errpath = results + "." + cid + ".err"
    errf = open(errpath, "w")
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(errf.fileno(), 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm() + 4 * 2**30, hard))
    exc = None
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException as e:
        rc = None
        exc = "".join(traceback.format_exception(e)).strip().splitlines()[-1]
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
    errf.close()
    with open(results, "a") as f:
        f.write(json.dumps({"id": cid, "rc": rc, "exc": exc, "err": open(errpath).read()}) + "\n")
"""


@pytest.fixture(scope="module")
def heavy_results(tmp_path_factory):
    t = tmp_path_factory.mktemp("heavy")
    cases = [(cid, with_flags(TINY, ["--out", str(t / cid), *argv])) for cid, argv, _ in HEAVY]
    (t / "cases.json").write_text(json.dumps(cases))
    proc = subprocess.run([sys.executable, "-c", HEAVY_CHILD, str(t / "cases.json"), str(t / "results.jsonl")],
                          capture_output=True, text=True, timeout=300,
                          cwd=str(t), env={**os.environ, "PYTHONPATH": str(Path(advjax.__file__).parent.parent)})
    done = {}
    if (t / "results.jsonl").exists():
        for line in (t / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            done[r["id"]] = r
    return t, done, proc


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,argv,names", HEAVY, ids=[c[0] for c in HEAVY])
def test_heavy_refusal(cid, argv, names, heavy_results):
    t, done, proc = heavy_results
    if cid not in done:
        pytest.fail(f"the child process died before this case finished (rc {proc.returncode}): "
                    f"{(proc.stderr.strip().splitlines() or [''])[-1][:300]}")
    r = done[cid]
    assert r["exc"] is None, f"an exception escaped: {r['exc']}"
    assert_refused(r["rc"], None, r["err"], names, {})
    assert not (t / cid).exists(), "--out was created by a refused start"


# -- (b) run directories tampered with before --resume -----------------------------------------

def edit_manifest(f: Callable[[dict], object]):
    """`f` changes the manifest's dict in place (what it returns is ignored)."""
    def tamper(d: Path):
        p = d / "manifest.json"
        m = json.loads(p.read_text())
        f(m)
        p.write_text(json.dumps(m, indent=1))
    return tamper


def drop_column(name: str):
    def f(rows):
        i = rows[0].index(name)
        for r in rows:
            r.pop(i)
    return edit_rows(f)


def edit_rows(f: Callable[[list[list[str]]], object]):
    def tamper(d: Path):
        p = d / "results.csv"
        rows = [line.split(",") for line in p.read_text().splitlines()]
        f(rows)
        p.write_text("".join(",".join(r) + "\n" for r in rows))
    return tamper


def set_cell(col: str, row: int, value: str):
    def f(rows):
        rows[1 + row][rows[0].index(col)] = value
    return edit_rows(f)


def write(name: str, data: bytes):
    def tamper(d: Path):
        (d / name).write_bytes(data)
    return tamper


def append(name: str, data: bytes):
    def tamper(d: Path):
        with open(d / name, "ab") as f:
            f.write(data)
    return tamper


def truncate(name: str, frac: float):
    def tamper(d: Path):
        b = (d / name).read_bytes()
        (d / name).write_bytes(b[: int(len(b) * frac)])
    return tamper


def delete(name: str):
    def tamper(d: Path):
        os.remove(d / name)
    return tamper


def to_dir(name: str):
    def tamper(d: Path):
        os.remove(d / name)
        (d / name).mkdir()
    return tamper


def to_symlink(name: str, target: Callable[[Path], str]):
    def tamper(d: Path):
        os.remove(d / name)
        os.symlink(target(d), d / name)
    return tamper


def replace_bytes(name: str, old: bytes, new: bytes):
    def tamper(d: Path):
        b = (d / name).read_bytes()
        assert old in b
        (d / name).write_bytes(b.replace(old, new, 1))
    return tamper


def _width(m):
    return m["widths"]["5"]


M, R = ["manifest.json"], ["results.csv"]
RESUME = [
    # manifest.json
    ("resume-manifest-deleted", delete("manifest.json"), M + ["--resume"]),
    ("resume-manifest-empty", write("manifest.json", b""), M),
    ("resume-manifest-truncated", truncate("manifest.json", 0.5), M),
    ("resume-manifest-list", write("manifest.json", b"[]"), M),
    ("resume-manifest-null", write("manifest.json", b"null"), M),
    ("resume-manifest-empty-object", write("manifest.json", b"{}"), M),
    ("resume-manifest-not-utf8", append("manifest.json", b"\xff\xfe"), M),
    ("resume-manifest-nul", append("manifest.json", b"\x00"), M),
    ("resume-manifest-directory", to_dir("manifest.json"), M),
    ("resume-manifest-dangling-symlink", to_symlink("manifest.json", lambda d: str(d / "nowhere.json")), M),
    ("resume-manifest-symlink-to-dir", to_symlink("manifest.json", lambda d: str(d / "checkpoints")), M),
    ("resume-manifest-fingerprint-changed",
     edit_manifest(lambda m: _width(m).update(fingerprint="0000000000000000")), M + ["fingerprint"]),
    ("resume-manifest-rows-sha-changed",
     edit_manifest(lambda m: _width(m).update(rows_sha256="0000000000000000")), M + ["rows_sha256", "results.csv"]),
    ("resume-manifest-fingerprint-int", edit_manifest(lambda m: _width(m).update(fingerprint=123)), M),
    ("resume-manifest-rows-sha-null", edit_manifest(lambda m: _width(m).update(rows_sha256=None)), M),
    ("resume-manifest-fingerprint-deleted", edit_manifest(lambda m: _width(m).pop("fingerprint")),
     AllOf(M + ["fingerprint"])),
    ("resume-manifest-widths-list", edit_manifest(lambda m: m.update(widths=[])), M),
    ("resume-manifest-widths-string", edit_manifest(lambda m: m.update(widths="5")), M),
    ("resume-manifest-width-renamed",
     edit_manifest(lambda m: m.update(widths={"6": m["widths"]["5"]})), M + ["--widths"]),
    ("resume-manifest-extra-width",
     edit_manifest(lambda m: m["widths"].update({"7": dict(m["widths"]["5"])})), M + ["--widths"]),
    ("resume-manifest-width-record-a-list", edit_manifest(lambda m: m["widths"].update({"5": []})), M),
    ("resume-manifest-config-deleted", edit_manifest(lambda m: m.pop("config")), M),
    ("resume-manifest-config-list", edit_manifest(lambda m: m.update(config=[])), M),
    ("resume-manifest-config-lr-changed", edit_manifest(lambda m: m["config"].update(lr=0.02)), M + ["--lr"]),
    ("resume-manifest-config-dataset-changed",
     edit_manifest(lambda m: m["config"].update(dataset="circles")), M + ["--dataset"]),
    ("resume-manifest-config-widths-repeat",
     edit_manifest(lambda m: m["config"].update(widths=[5, 5])), M + ["--widths"]),
    ("resume-manifest-config-max-steps-neg",
     edit_manifest(lambda m: m["config"].update(max_steps=-1)), M + ["--max-steps"]),
    ("resume-manifest-config-experiments-bogus",
     edit_manifest(lambda m: m["config"].update(experiments=["bogus"])), M + ["--experiments"]),
    ("resume-manifest-config-lr-nan",
     replace_bytes("manifest.json", b'"lr": 0.01', b'"lr": NaN'),
     M + ["--lr"]),
    ("resume-manifest-config-seeds-inf",
     replace_bytes("manifest.json", b'"seeds": 2', b'"seeds": 1e999'),
     M + ["--seeds"]),
    ("resume-manifest-seed-list-changed", edit_manifest(lambda m: m.update(seeds=[0, 2])), M + ["--seeds", "--seed"]),
    # results.csv
    ("resume-csv-deleted", delete("results.csv"), R),
    ("resume-csv-empty", write("results.csv", b""), R),
    ("resume-csv-header-only", edit_rows(lambda rows: rows.__delitem__(slice(1, None))), R),
    ("resume-csv-truncated-mid-row", truncate("results.csv", 0.6), R),
    ("resume-csv-directory", to_dir("results.csv"), R),
    ("resume-csv-dangling-symlink", to_symlink("results.csv", lambda d: str(d / "nowhere.csv")), R),
    ("resume-csv-symlink-to-manifest", to_symlink("results.csv", lambda d: str(d / "manifest.json")), R),
    ("resume-csv-test-acc-past-1", set_cell("test_acc", 0, "1.5"), AllOf(R + ["test_acc"])),
    ("resume-csv-test-acc-nan", set_cell("test_acc", 0, "nan"), AllOf(R + ["test_acc"])),
    ("resume-csv-test-acc-neg", set_cell("test_acc", 0, "-0.1"), AllOf(R + ["test_acc"])),
    ("resume-csv-test-acc-empty", set_cell("test_acc", 0, ""), AllOf(R + [["test_acc", "rows_sha256"]])),
    ("resume-csv-test-acc-inf", set_cell("test_acc", 0, "inf"), AllOf(R + ["test_acc"])),
    ("resume-csv-train-acc-edited-in-range", set_cell("train_acc", 0, "0.47"), R),
    ("resume-csv-steps-abc", set_cell("steps", 0, "abc"), AllOf(R + ["steps"])),
    ("resume-csv-steps-neg", set_cell("steps", 0, "-1"), AllOf(R + ["steps"])),
    ("resume-csv-steps-float", set_cell("steps", 0, "20.5"), AllOf(R + ["steps"])),
    ("resume-csv-steps-huge", set_cell("steps", 0, "99999999999999999999"), AllOf(R + [["steps", "rows_sha256"]])),
    ("resume-csv-converged-yes", set_cell("converged", 0, "yes"), AllOf(R + ["converged"])),
    ("resume-csv-converged-1", set_cell("converged", 0, "1"), AllOf(R + ["converged"])),
    ("resume-csv-diverged-empty", set_cell("diverged", 0, ""), AllOf(R + ["diverged"])),
    ("resume-csv-dataset-changed", set_cell("dataset", 0, "circles"), AllOf(R + ["dataset"])),
    ("resume-csv-width-changed", set_cell("width", 0, "6"), AllOf(R + ["width"])),
    ("resume-csv-experiment-unknown", set_cell("experiment", 0, "bogus"), AllOf(R + ["experiment"])),
    ("resume-csv-seed-outside-set", set_cell("seed", 0, "7"), AllOf(R + ["seed"])),
    ("resume-csv-seed-neg", set_cell("seed", 0, "-1"), AllOf(R + ["seed"])),
    ("resume-csv-phase1-steps-on-baseline", set_cell("phase1_steps", 0, "20"),
     AllOf(R + [["phase1_steps", "rows_sha256"]])),
    ("resume-csv-phase1-converged-empty", set_cell("phase1_converged", 2, ""),
     AllOf(R + [["phase1_converged", "rows_sha256"]])),
    ("resume-csv-nul-in-cell", set_cell("train_loss", 0, "0.7\x00"), AllOf(R + ["train_loss"])),
    ("resume-csv-not-utf8", replace_bytes("results.csv", b"baseline", b"base\xffline"), R),
    ("resume-csv-row-duplicated", edit_rows(lambda rows: rows.insert(2, list(rows[1]))), R),
    ("resume-csv-row-deleted", edit_rows(lambda rows: rows.pop(1)), R),
    ("resume-csv-column-dropped", drop_column("test_acc"), R),
    ("resume-csv-column-added", edit_rows(lambda rows: [r.append("extra" if i == 0 else "1")
                                                        for i, r in enumerate(rows)]), R + ["extra"]),
    ("resume-csv-header-renamed", edit_rows(lambda rows: rows[0].__setitem__(rows[0].index("test_acc"),
                                                                              "test_accuracy")), R),
    ("resume-csv-header-swapped", edit_rows(lambda rows: rows.__setitem__(0, [
        {"train_acc": "test_acc", "test_acc": "train_acc"}.get(c, c) for c in rows[0]])), R),
    ("resume-csv-row-extra-cell", edit_rows(lambda rows: rows[1].append("1")), R),
    ("resume-csv-row-missing-cell", edit_rows(lambda rows: rows[1].pop()), R),
    ("resume-csv-quoted-comma", set_cell("experiment", 0, '"base,line"'), R),
    # other files of the run
    ("resume-lock-a-directory", to_dir(".lock"), [".lock", "--out"]),
]


@pytest.fixture
def resumed(run, tmp_path, capsys):
    def go(tamper, extra=(), valid=False):
        d = copy_run(run, tmp_path / "r")
        if tamper is not None:
            tamper(d)
        before = snapshot(d)
        capsys.readouterr()
        rc, exc = call(sweep_main, with_flags(TINY, ["--out", str(d), "--resume", *extra]),
                       RUN_SECONDS if valid else REFUSAL_SECONDS, memory=not valid)
        return d, before, rc, exc, capsys.readouterr().err
    return go


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,tamper,names", RESUME, ids=[c[0] for c in RESUME])
def test_resume_tampered_is_refused(cid, tamper, names, resumed):
    d, before, rc, exc, err = resumed(tamper)
    assert_refused(rc, exc, err, names, {d: before})


RESUME_OTHER_OPTIONS = [
    ("resume-other-lr", ["--lr", "0.02"], ["--lr", "manifest.json"]),
    ("resume-other-seeds", ["--seeds", "3"], ["--seeds", "manifest.json"]),
    ("resume-other-seed", ["--seed", "1"], ["--seed", "manifest.json"]),
    ("resume-other-max-steps", ["--max-steps", "21"], ["--max-steps", "manifest.json"]),
    ("resume-other-experiments", ["--experiments", "1"], ["--experiments", "manifest.json"]),
    ("resume-other-n-test", ["--n-test", "50"], ["--n-test", "manifest.json"]),
    ("resume-other-dataset", ["--dataset", "circles"], ["--dataset", "manifest.json"]),
    ("resume-other-widths", ["--widths", "5,6"], ["--widths", "manifest.json"]),
    ("resume-other-momentum", ["--momentum", "0.5"], ["--momentum", "manifest.json"]),
    ("resume-other-init", ["--init", "he"], ["--init", "manifest.json"]),
]


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,extra,names", RESUME_OTHER_OPTIONS, ids=[c[0] for c in RESUME_OTHER_OPTIONS])
def test_resume_with_other_options_is_refused(cid, extra, names, resumed):
    d, before, rc, exc, err = resumed(None, extra)
    assert_refused(rc, exc, err, names, {d: before})


def _drop_width_record(d: Path):
    edit_manifest(lambda m: m["widths"].pop("5"))(d)


RESUME_VALID = [
    ("resume-ok-untouched", None),
    ("resume-ok-lock-deleted", delete(".lock")),  # a killed sweep's lock is the kernel's, not the file's
    ("resume-ok-width-not-recorded", _drop_width_record),  # a kill between the two writes: recomputed
]


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,tamper", RESUME_VALID, ids=[c[0] for c in RESUME_VALID])
def test_resume_valid_runs_and_keeps_the_rows(cid, tamper, run, resumed):
    d, before, rc, exc, err = resumed(tamper, valid=True)
    assert_ran(rc, exc, err)
    assert read_rows(d) == read_rows(run)


# -- (c) the Python API ------------------------------------------------------------------------

def cli_line(flag_argv: list[str], out: Path, capsys) -> str:
    capsys.readouterr()
    rc, exc = call(sweep_main, with_flags(TINY, ["--out", str(out), *flag_argv]))
    err = capsys.readouterr().err.strip()
    assert exc is None and rc == 2 and "\n" not in err, (rc, exc and last_line(exc), err)
    return err


# (id, dict fields over TINY_DICT, names; cli: the same as CLI argv where the value is its text)
API_DICT = [
    ("api-dict-lr-neg-text", {"lr": "-1"}, ["--lr"], ["--lr=-1"]),
    ("api-dict-lr-neg", {"lr": -1.0}, ["--lr"], None),
    ("api-dict-lr-nan", {"lr": float("nan")}, ["--lr"], None),
    ("api-dict-lr-inf", {"lr": float("inf")}, ["--lr"], None),
    ("api-dict-lr-0", {"lr": 0}, ["--lr"], None),
    ("api-dict-lr-grid-repeat", {"lr": [0.1, 0.1]}, ["--lr"], None),
    ("api-dict-lr-grid-empty", {"lr": []}, ["--lr"], None),
    ("api-dict-seeds-0", {"seeds": 0}, ["--seeds"], None),
    ("api-dict-seeds-0-text", {"seeds": "0"}, ["--seeds"], ["--seeds", "0"]),
    ("api-dict-seeds-list", {"seeds": [1, 2]}, ["--seeds"], None),
    ("api-dict-seeds-float", {"seeds": 2.5}, ["--seeds"], None),
    ("api-dict-seeds-word", {"seeds": "two"}, ["--seeds"], ["--seeds", "two"]),
    ("api-dict-widths-empty", {"widths": []}, ["--widths"], None),
    ("api-dict-widths-repeat", {"widths": [5, 5]}, ["--widths"], None),
    ("api-dict-widths-repeat-text", {"widths": "5,5"}, ["--widths"], ["--widths", "5,5"]),
    ("api-dict-widths-0", {"widths": [0]}, ["--widths"], None),
    ("api-dict-widths-float", {"widths": [5.5]}, ["--widths"], None),
    ("api-dict-widths-neg", {"widths": -5}, ["--widths"], None),
    ("api-dict-dataset-unknown", {"dataset": "bogus"}, ["--dataset"], ["--dataset", "bogus"]),
    ("api-dict-dataset-int", {"dataset": 5}, ["--dataset"], None),
    ("api-dict-experiments-unknown", {"experiments": ["bogus"]}, ["--experiments"], None),
    ("api-dict-experiments-repeat", {"experiments": ["baseline", "1"]}, ["--experiments"], None),
    ("api-dict-experiments-empty", {"experiments": []}, ["--experiments"], None),
    ("api-dict-momentum-1", {"momentum": 1.0}, ["--momentum"], None),
    ("api-dict-momentum-1-text", {"momentum": "1"}, ["--momentum"], ["--momentum", "1"]),
    ("api-dict-random-fraction-past-1", {"random_fraction": 1.5}, ["--random-fraction"], None),
    ("api-dict-target-0", {"target_train_acc": 0.0}, ["--target-train-acc"], None),
    ("api-dict-max-steps-2^31", {"max_steps": 2**31}, ["--max-steps"], None),
    ("api-dict-max-steps-2^31-text", {"max_steps": "2147483648"}, ["--max-steps"], ["--max-steps", "2147483648"]),
    ("api-dict-seed-2^32", {"seed": 2**32}, ["--seed"], None),
    ("api-dict-depth-0", {"depth": 0}, ["--depth"], None),
    ("api-dict-batch-size-neg", {"batch_size": -1}, ["--batch-size"], None),
    ("api-dict-memory-budget-abc", {"memory_budget": "abc"}, ["--memory-budget"], ["--memory-budget", "abc"]),
    ("api-dict-checkpoint-every-neg", {"checkpoint_every": "-5"}, ["--checkpoint-every"],
     ["--checkpoint-every=-5"]),
    ("api-dict-lr-schedule-bad", {"lr_schedule": "step:"}, ["--lr-schedule"], ["--lr-schedule", "step:"]),
    ("api-dict-na-noise", {"noise": 0.3}, ["--noise"], None),
    ("api-dict-na-noise-text", {"noise": "0.3"}, ["--noise"], ["--noise", "0.3"]),
    ("api-dict-na-t-max", {"t_max": 5.0}, ["--t-max"], None),
    ("api-dict-na-shrink", {"shrink": 0.5}, ["--shrink"], None),
    ("api-dict-na-phase1-lr", {"experiments": ["baseline"], "phase1_lr": 0.1}, ["--phase1-lr"], None),
    ("api-dict-na-target-with-budget", {"stop_rule": "budget", "target_train_acc": 0.9}, ["--target-train-acc"],
     None),
    ("api-dict-model-cnn-on-points", {"model": "cnn"}, ["--model"], ["--model", "cnn"]),
    ("api-dict-unknown-key", {"bogus_key": 1}, ["bogus_key", "bogus-key"], None),
    ("api-dict-key-twice", {"max-steps": 30}, ["max_steps", "max-steps", "--max-steps"], None),
]


@pytest.mark.parametrize("cid,fields,names,cli", API_DICT, ids=[c[0] for c in API_DICT])
def test_api_dict_refusal(cid, fields, names, cli, tmp_path, capsys):
    out = tmp_path / "o"
    config = {**TINY_DICT, **fields}
    rc, exc = call(lambda _: advjax.run_sweep(config, out=str(out)), None)
    assert exc is not None, f"run_sweep returned {rc!r}: not refused"
    assert isinstance(exc, ConfigError), f"not a ConfigError: {last_line(exc)}"
    assert isinstance(exc, ValueError)
    text = str(exc)
    assert text and "\n" not in text and "Traceback" not in text, text
    assert names_one(text, names), f"names none of {names}: {text!r}"
    assert not out.exists(), "run_sweep wrote to out before refusing"
    if cli is not None:
        line = cli_line(cli, tmp_path / "cli", capsys)
        assert line.endswith(text), f"not the CLI's line: API {text!r}, CLI {line!r}"


# SweepConfig(field=...) parses the field it sets and raises at once
API_FIELD = [
    ("api-config-seeds-0", {"seeds": 0}, ["--seeds"]),
    ("api-config-seeds-list", {"seeds": (1, 2)}, ["--seeds"]),
    ("api-config-seeds-neg", {"seeds": -3}, ["--seeds"]),
    ("api-config-lr-neg", {"lr": -1.0}, ["--lr"]),
    ("api-config-lr-nan", {"lr": float("nan")}, ["--lr"]),
    ("api-config-lr-text", {"lr": "abc"}, ["--lr"]),
    ("api-config-widths-repeat", {"widths": (5, 5)}, ["--widths"]),
    ("api-config-widths-empty", {"widths": ()}, ["--widths"]),
    ("api-config-widths-0", {"widths": 0}, ["--widths"]),
    ("api-config-momentum-1", {"momentum": 1.0}, ["--momentum"]),
    ("api-config-dataset-unknown", {"dataset": "bogus"}, ["--dataset"]),
    ("api-config-experiments-unknown", {"experiments": ("bogus",)}, ["--experiments"]),
    ("api-config-max-steps-2^31", {"max_steps": 2**31}, ["--max-steps"]),
    ("api-config-seed-neg", {"seed": -1}, ["--seed"]),
    ("api-config-depth-0", {"depth": 0}, ["--depth"]),
    ("api-config-random-fraction-neg", {"random_fraction": -0.1}, ["--random-fraction"]),
    ("api-config-target-0", {"target_train_acc": 0.0}, ["--target-train-acc"]),
    ("api-config-batch-size-neg", {"batch_size": -1}, ["--batch-size"]),
    ("api-config-weight-decay-inf", {"weight_decay": float("inf")}, ["--weight-decay"]),
    ("api-config-chunk-steps-0", {"chunk_steps": 0}, ["--chunk-steps"]),
]


@pytest.mark.parametrize("cid,fields,names", API_FIELD, ids=[c[0] for c in API_FIELD])
def test_api_sweepconfig_field_raises_at_once(cid, fields, names):
    with pytest.raises(ConfigError) as info:
        SweepConfig(**fields)
    text = str(info.value)
    assert "\n" not in text and names_one(text, names), text


# rules between options: SweepConfig builds, run_sweep refuses before writing
API_RULES = [
    ("api-run-na-noise", {"noise": 0.3}, ["--noise"]),
    ("api-run-na-t-max", {"t_max": 5.0}, ["--t-max"]),
    ("api-run-na-shrink", {"shrink": 0.5}, ["--shrink"]),
    ("api-run-na-perturb", {"perturb": 0.2}, ["--perturb"]),
    ("api-run-model-cnn-on-points", {"model": "cnn"}, ["--model"]),
    ("api-run-na-target-with-budget", {"stop_rule": "budget", "target_train_acc": 0.9}, ["--target-train-acc"]),
    ("api-run-na-phase1-lr", {"experiments": ("baseline",), "phase1_lr": 0.1}, ["--phase1-lr"]),
    ("api-run-freeze-past-depth", {"experiments": ("freeze_2",)}, ["--experiments"]),
    ("api-run-grid-past-max-grid", {"lr": (0.01, 0.02), "max_grid": 3}, ["--max-grid", "--lr"]),
    ("api-run-na-coordinator", {"coordinator": "127.0.0.1:1"}, ["--coordinator"]),
]


@pytest.mark.parametrize("cid,fields,names", API_RULES, ids=[c[0] for c in API_RULES])
def test_api_sweepconfig_rules_refused_by_run_sweep(cid, fields, names, tmp_path):
    out = tmp_path / "o"
    base = {k: tuple(v) if isinstance(v, list) else v for k, v in TINY_DICT.items()}

    def go(_):
        return advjax.run_sweep(SweepConfig(**{**base, **fields}), out=str(out))
    rc, exc = call(go, None)
    assert exc is not None, f"run_sweep returned {rc!r}: not refused"
    assert isinstance(exc, ConfigError), f"not a ConfigError: {last_line(exc)}"
    text = str(exc)
    assert "\n" not in text and names_one(text, names), text
    assert not out.exists(), "run_sweep wrote to out before refusing"


@pytest.mark.parametrize("where", ["non-empty-dir", "a-file", "under-a-file"])
def test_api_bad_out_is_refused(where, tmp_path):
    target = tmp_path / "t"
    if where == "non-empty-dir":
        target.mkdir()
        (target / "x").write_text("mine")
        out = target
    else:
        target.write_text("mine")
        out = target if where == "a-file" else target / "o"
    before = snapshot(target)
    rc, exc = call(lambda _: advjax.run_sweep(dict(TINY_DICT), out=str(out)), None)
    assert isinstance(exc, ConfigError), f"not a ConfigError: {exc and last_line(exc)} (returned {rc!r})"
    assert "\n" not in str(exc) and names_one(str(exc), ["--out", "out"]), str(exc)
    assert snapshot(target) == before


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("kind", ["dict", "SweepConfig"])
def test_api_valid_runs(kind, run, tmp_path):
    out = tmp_path / "o"
    config = dict(TINY_DICT) if kind == "dict" else SweepConfig(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in TINY_DICT.items()})
    rows, exc = call(lambda _: advjax.run_sweep(config, out=str(out)), None, RUN_SECONDS, memory=False)
    assert exc is None, last_line(exc)
    assert len(rows) == 6 and Path(rows.out) == out
    assert read_rows(out) == read_rows(run)


# -- (d) merge, report, figures ----------------------------------------------------------------

def damaged(tamper):
    """A builder: a copy of the run with `tamper` applied."""
    def build(t: Path, run: Path, run_b: Callable[[], Path]) -> Path:
        d = copy_run(run, t / "dmg")
        tamper(d)
        return d
    return build


def _mkfile(t: Path, name="f", text="mine") -> Path:
    (t / name).write_text(text)
    return t / name


# (id, tool, builder(t, run, run_b) -> argv without --out, out kind, names)
# out kind: "new" (t/out), "file" (an existing file), "under-file", "non-empty", "empty-string", "run"
TOOLS = [
    # merge
    ("tools-merge-same-dir-twice", "merge", lambda t, r, rb: [str(r), str(r)], "new", ["{run}", "overlap"]),
    ("tools-merge-other-sweep", "merge", lambda t, r, rb: [str(r), str(rb())], "new",
     ["{run}", "/r7", "seed", "manifest.json"]),
    ("tools-merge-out-non-empty", "merge", lambda t, r, rb: [str(r)], "non-empty", ["--out"]),
    ("tools-merge-out-a-file", "merge", lambda t, r, rb: [str(r)], "file", ["--out"]),
    ("tools-merge-out-under-a-file", "merge", lambda t, r, rb: [str(r)], "under-file", ["--out"]),
    ("tools-merge-out-empty-string", "merge", lambda t, r, rb: [str(r)], "empty-string", ["--out"]),
    ("tools-merge-out-is-the-run", "merge", lambda t, r, rb: [str(r)], "run", ["--out"]),
    ("tools-merge-missing-dir", "merge", lambda t, r, rb: [str(r), str(t / "missing")], "new", ["/missing"]),
    ("tools-merge-dir-is-a-file", "merge", lambda t, r, rb: [str(r), str(_mkfile(t, "afile"))], "new", ["/afile"]),
    ("tools-merge-fingerprint", "merge",
     lambda t, r, rb: [str(damaged(edit_manifest(lambda m: _width(m).update(fingerprint="0" * 16)))(t, r, rb))],
     "new", ["manifest.json"]),
    ("tools-merge-rows-sha", "merge",
     lambda t, r, rb: [str(damaged(edit_manifest(lambda m: _width(m).update(rows_sha256="0" * 16)))(t, r, rb))],
     "new", ["manifest.json", "results.csv"]),
    ("tools-merge-cell-in-range", "merge", lambda t, r, rb: [str(damaged(set_cell("train_acc", 0, "0.47"))(t, r, rb))],
     "new", ["results.csv"]),
    ("tools-merge-manifest-missing", "merge", lambda t, r, rb: [str(damaged(delete("manifest.json"))(t, r, rb))],
     "new", ["manifest.json"]),
    ("tools-merge-csv-missing", "merge", lambda t, r, rb: [str(damaged(delete("results.csv"))(t, r, rb))],
     "new", ["results.csv"]),
    ("tools-merge-row-duplicated", "merge",
     lambda t, r, rb: [str(damaged(edit_rows(lambda rows: rows.insert(2, list(rows[1]))))(t, r, rb))],
     "new", ["results.csv"]),
    ("tools-merge-manifest-list", "merge", lambda t, r, rb: [str(damaged(write("manifest.json", b"[]"))(t, r, rb))],
     "new", ["manifest.json"]),
    # report
    ("tools-report-missing-dir", "report", lambda t, r, rb: [str(t / "missing")], "new-html", ["/missing"]),
    ("tools-report-dir-is-a-file", "report", lambda t, r, rb: [str(_mkfile(t, "afile"))], "new-html", ["/afile"]),
    ("tools-report-test-acc-past-1", "report",
     lambda t, r, rb: [str(damaged(set_cell("test_acc", 0, "1.5"))(t, r, rb))], "new-html",
     ["results.csv"]),
    ("tools-report-steps-abc", "report", lambda t, r, rb: [str(damaged(set_cell("steps", 0, "abc"))(t, r, rb))],
     "new-html", AllOf(["results.csv", "steps"])),
    ("tools-report-converged-yes", "report",
     lambda t, r, rb: [str(damaged(set_cell("converged", 0, "yes"))(t, r, rb))], "new-html", ["results.csv"]),
    ("tools-report-manifest-list", "report", lambda t, r, rb: [str(damaged(write("manifest.json", b"[]"))(t, r, rb))],
     "new-html", ["manifest.json"]),
    ("tools-report-manifest-truncated", "report",
     lambda t, r, rb: [str(damaged(truncate("manifest.json", 0.5))(t, r, rb))], "new-html", ["manifest.json"]),
    ("tools-report-manifest-missing", "report",
     lambda t, r, rb: [str(damaged(delete("manifest.json"))(t, r, rb))], "new-html", ["manifest.json"]),
    ("tools-report-csv-missing", "report", lambda t, r, rb: [str(damaged(delete("results.csv"))(t, r, rb))],
     "new-html", ["results.csv"]),
    ("tools-report-csv-directory", "report", lambda t, r, rb: [str(damaged(to_dir("results.csv"))(t, r, rb))],
     "new-html", ["results.csv"]),
    ("tools-report-csv-header-only", "report",
     lambda t, r, rb: [str(damaged(edit_rows(lambda rows: rows.__delitem__(slice(1, None))))(t, r, rb))],
     "new-html", ["results.csv"]),
    ("tools-report-column-dropped", "report",
     lambda t, r, rb: [str(damaged(drop_column("test_acc"))(t, r, rb))],
     "new-html", ["results.csv"]),
    ("tools-report-seed-outside-set", "report",
     lambda t, r, rb: [str(damaged(set_cell("seed", 0, "7"))(t, r, rb))], "new-html", ["results.csv"]),
    ("tools-report-width-not-in-sweep", "report",
     lambda t, r, rb: [str(damaged(set_cell("width", 0, "6"))(t, r, rb))], "new-html", ["results.csv"]),
    ("tools-report-row-duplicated", "report",
     lambda t, r, rb: [str(damaged(edit_rows(lambda rows: rows.insert(2, list(rows[1]))))(t, r, rb))],
     "new-html", ["results.csv"]),
    ("tools-report-experiment-unknown", "report",
     lambda t, r, rb: [str(damaged(set_cell("experiment", 0, "bogus"))(t, r, rb))], "new-html", ["results.csv"]),
    ("tools-report-out-under-a-file", "report", lambda t, r, rb: [str(r)], "under-file", ["--out"]),
    ("tools-report-out-empty-string", "report", lambda t, r, rb: [str(r)], "empty-string", ["--out"]),
    # figures
    ("tools-figures-missing-dir", "figures", lambda t, r, rb: [str(t / "missing")], "new", ["/missing"]),
    ("tools-figures-test-acc-nan", "figures",
     lambda t, r, rb: [str(damaged(set_cell("test_acc", 0, "nan"))(t, r, rb))], "new", ["results.csv"]),
    ("tools-figures-steps-neg", "figures", lambda t, r, rb: [str(damaged(set_cell("steps", 0, "-1"))(t, r, rb))],
     "new", ["results.csv"]),
    ("tools-figures-converged-maybe", "figures",
     lambda t, r, rb: [str(damaged(set_cell("converged", 0, "maybe"))(t, r, rb))], "new", ["results.csv"]),
    ("tools-figures-width-not-in-sweep", "figures",
     lambda t, r, rb: [str(damaged(set_cell("width", 0, "6"))(t, r, rb))], "new", ["results.csv"]),
    ("tools-figures-row-duplicated", "figures",
     lambda t, r, rb: [str(damaged(edit_rows(lambda rows: rows.insert(2, list(rows[1]))))(t, r, rb))],
     "new", ["results.csv"]),
    ("tools-figures-seed-outside-set", "figures",
     lambda t, r, rb: [str(damaged(set_cell("seed", 0, "7"))(t, r, rb))], "new", ["results.csv"]),
    ("tools-figures-dataset-changed", "figures",
     lambda t, r, rb: [str(damaged(set_cell("dataset", 0, "circles"))(t, r, rb))], "new", ["results.csv"]),
    ("tools-figures-manifest-broken", "figures",
     lambda t, r, rb: [str(damaged(write("manifest.json", b"{"))(t, r, rb))], "new", ["manifest.json"]),
    ("tools-figures-boundary-width-abc", "figures", lambda t, r, rb: [str(r), "--boundary-width", "abc"], "new",
     ["--boundary-width"]),
    ("tools-figures-out-empty-string", "figures", lambda t, r, rb: [str(r)], "empty-string", ["--out"]),
]
TOOL_MAIN = {"merge": merge_main, "report": report_main, "figures": figures_main}


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("cid,tool,build,out_kind,names", TOOLS, ids=[c[0] for c in TOOLS])
def test_tools_refusal(cid, tool, build, out_kind, names, run, request, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # report.html by default would land here
    t = tmp_path / "w"
    t.mkdir()
    args = build(t, run, lambda: request.getfixturevalue("run_b"))
    out = {"new": tmp_path / "out", "new-html": tmp_path / "out.html", "file": _mkfile(tmp_path, "outfile"),
           "under-file": _mkfile(tmp_path, "outfile") / "sub", "non-empty": tmp_path / "ne",
           "empty-string": "", "run": run}[out_kind]
    if out_kind == "non-empty":
        out.mkdir()
        (out / "x").write_text("mine")
    watched = {p: snapshot(p) for p in [run, t, tmp_path / "outfile", tmp_path / "report.html"]}
    if out != "":
        watched[out] = snapshot(out)
    capsys.readouterr()
    rc, exc = call(TOOL_MAIN[tool], [*args, "--out", str(out)])
    names = type(names)(n.format(run=str(run)) for n in names)
    assert_refused(rc, exc, capsys.readouterr().err, names, watched)

@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
def test_tools_merge_of_one_whole_run_runs(run, tmp_path, capsys):
    capsys.readouterr()
    rc, exc = call(merge_main, [str(run), "--out", str(tmp_path / "m")], RUN_SECONDS, memory=False)
    assert_ran(rc, exc, capsys.readouterr().err)
    assert read_rows(tmp_path / "m") == read_rows(run)

@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
def test_tools_report_of_the_run_runs(run, tmp_path, capsys):
    capsys.readouterr()
    rc, exc = call(report_main, [str(run), "--out", str(tmp_path / "r.html")], RUN_SECONDS, memory=False)
    assert_ran(rc, exc, capsys.readouterr().err)
    assert (tmp_path / "r.html").stat().st_size > 0


# -- (e) every grid axis with two values runs ----------------------------------------------------

GRID = [
    ("max_steps", "10,20", []),
    ("lr", "0.01,0.02", []),
    ("phase1_lr", "0.01,0.02", []),
    ("random_fraction", "0.5,1", []),
    ("phase1_target_acc", "0.5,1", []),
    ("target_train_acc", "0.9,1", []),
    ("momentum", "0,0.9", []),
    ("weight_decay", "0,0.0005", []),
    ("shrink", "0.4,0.5", ["--experiments", "shrink_perturb"]),
    ("perturb", "0.1,0.2", ["--experiments", "shrink_perturb"]),
]


def test_grid_table_covers_every_grid_axis():
    from advjax.options import OPTIONS
    assert {g[0] for g in GRID} == {o.name for o in OPTIONS if o.grid}


@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
@pytest.mark.parametrize("axis,values,extra", GRID, ids=[f"grid-{g[0]}" for g in GRID])
def test_grid_axis_two_values_runs(axis, values, extra, run, tmp_path, capsys):
    out = tmp_path / "o"
    flag = "--" + axis.replace("_", "-")
    capsys.readouterr()
    rc, exc = call(sweep_main, with_flags(TINY, ["--out", str(out), flag, values, *extra]), RUN_SECONDS,
                   memory=False)
    assert_ran(rc, exc, capsys.readouterr().err)
    rows = read_rows(out)
    n_experiments = 1 if extra else 3
    assert len(rows) == 2 * 2 * n_experiments, len(rows)
    assert axis in rows[0], f"no {axis} column in results.csv: {list(rows[0])}"
    assert {float(r[axis]) for r in rows} == {float(v) for v in values.split(",")}


# -- a kill never loses finished results ---------------------------------------------------------

@pytest.mark.slow  # a sweep (the fixture run, or one of its own)
def test_kill_after_a_width_keeps_its_rows_and_resume_finishes(run, tmp_path, capsys):
    out = tmp_path / "k"
    argv = with_flags(TINY, ["--widths", "5,6", "--out", str(out)])
    env = {**os.environ, "PYTHONPATH": str(Path(advjax.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "advjax.sweep", *argv], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                m = json.loads((out / "manifest.json").read_text())
                if "5" in (m.get("widths") or {}):
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    if proc.returncode == 0:
        pytest.skip("the sweep finished before the kill (a slow poll); nothing to check")
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-300:]
    kept = [r for r in read_rows(out) if r["width"] == "5"]
    assert kept == read_rows(run), "the finished width's rows were lost or changed by the kill"
    capsys.readouterr()
    rc, exc = call(sweep_main, [*argv, "--resume"], RUN_SECONDS, memory=False)
    assert_ran(rc, exc, capsys.readouterr().err)
    rows = read_rows(out)
    assert [r for r in rows if r["width"] == "5"] == read_rows(run)
    assert len([r for r in rows if r["width"] == "6"]) == 6
