"""sweeps/liu-*.toml, Liu et al.'s CIFAR-10 protocol, run end to end at tiny size on a
synthetic file in the binary CIFAR-10 format (the real runs need a GPU and your copy of
CIFAR-10)."""

import os

import numpy as np
import pytest

from advjax.data import write_cifar_binary
from advjax.results import read_manifest, read_results
from advjax.sweep import main

pytestmark = pytest.mark.slow  # whole sweeps


@pytest.mark.parametrize("name", ["liu-vgg16-cifar10", "liu-resnet18-cifar10"])
def test_liu_sweep_files_run_end_to_end_at_tiny_size(name, tmp_path, capsys):
    """sweeps/liu-*.toml as committed (Liu et al.'s protocol: confusion set, step
    schedule, phase 1 to 99.99% checked every K steps, the true-label phases on a fixed
    budget), shrunk by flags to a width-2 net on 24 synthetic images in CIFAR-10's binary
    format: every experiment runs, phase-2 and baseline rows train exactly the budget."""
    rng = np.random.default_rng(0)
    images = lambda n: rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # noqa: E731
    data = write_cifar_binary(str(tmp_path / "bin"), images(30), rng.integers(0, 10, 30), images(10),
                              rng.integers(0, 10, 10))
    config = os.path.join(os.path.dirname(__file__), os.pardir, "sweeps", f"{name}.toml")
    out = tmp_path / "out"
    assert main(["--config", config, "--cifar-path", data, "--n-train", "24", "--widths", "2", "--seeds", "2",
                 "--batch-size", "8", "--max-steps", "6", "--phase1-max-steps", "6", "--check-every", "2",
                 "--lr-schedule", "step:1:0.1", "--quiet", "--no-figure", "--out", str(out)]) == 0, capsys.readouterr()
    cfg = read_manifest(str(out))["config"]
    assert (cfg["stop_rule"], cfg["confusion_copies"], cfg["phase1_target_acc"]) == ("budget", 1, 0.9999)
    rows = read_results(str(out / "results.csv"))
    assert {r["experiment"] for r in rows} == set(cfg["experiments"])
    assert all(r["steps"] == 6 and r["converged"] for r in rows)  # the budget, trained
    assert all(r["phase1_steps"] % 2 == 0 or r["phase1_steps"] == 6 for r in rows if r["phase1_steps"] is not None)
