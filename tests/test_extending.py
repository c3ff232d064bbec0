"""advjax extended from outside the package: a dataset, an experiment, a measure and a
model kind registered from this file alone (README, "Extending advjax"), then a sweep
that runs all four, its figures and its report. A Θ_adv made on other data is refused for the new
dataset: its own option (--noise) joins the phase fingerprint through its DatasetSpec.
"""

import dataclasses
import math
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import CheckpointError, run_sweep
from advjax import data as data_module
from advjax import experiments as experiments_module
from advjax import measures as measures_module
from advjax.data import Dataset, DatasetSpec, Split, register_dataset
from advjax.experiments import START_TRANSFORMS, ExperimentSpec, register_experiment
from advjax.measures import MeasureSpec, register_measure
from advjax.model import MLP, MODELS, register_model
from advjax.options import from_dict


def stripes(n_train: int, n_test: int, noise: float = 0.5) -> Dataset:
    """Uniform points in [-1, 1]^2, label 1 right of x = 0, moved by `noise`·N(0, 0.1²)."""

    def points(key, n):
        k_x, k_noise = jax.random.split(key)
        x = jax.random.uniform(k_x, (n, 2), minval=-1.0, maxval=1.0)
        y = (x[:, 0] > 0).astype(jnp.int32)
        return x + noise * 0.1 * jax.random.normal(k_noise, (n, 2)), y

    def draw(key):
        k_train, k_test = jax.random.split(key)
        return Split(*points(k_train, n_train), *points(k_test, n_test))

    return Dataset("stripes", 2, 2, n_train, n_test, draw)


def halve(prev, run, phase=None):
    """A start transform: Θ_adv at half its scale."""
    return jax.tree.map(lambda a: np.asarray(a) * np.float32(0.5), prev)


def readout_bias(model, params_start, params_final, x, y, state):
    """A one-seed measure: |readout bias|, summed over the outputs."""
    return jnp.sum(jnp.abs(params_final["readout"]["bias"]))


@dataclasses.dataclass(frozen=True)
class TwoHidden(MLP):
    """A model kind: the MLP with two hidden layers whatever --depth says."""

    kind: ClassVar[str] = "two_hidden"

    @classmethod
    def build(cls, width, n_in, n_out, init, depth, conv_impl):
        return cls(width, n_in if isinstance(n_in, int) else math.prod(n_in), n_out, init, 2)


@pytest.fixture
def extended():
    """The three registrations, undone afterwards (other test files may run in this process)."""
    saved = (dict(data_module.DATASETS), dict(experiments_module.EXPERIMENT_SPECS),
             list(experiments_module._COMPARISON_ORDER), dict(measures_module.MEASURES), dict(START_TRANSFORMS),
             dict(MODELS))
    register_dataset(DatasetSpec("stripes", stripes, options=("noise",), fingerprint=("noise",), points_2d=True,
                                 about="two half-squares split at x = 0"))
    START_TRANSFORMS["halve"] = halve
    register_experiment(ExperimentSpec("halved", lambda k: (k.y_rand, k.then(start="halve")),
                                       "Θ_adv at half its scale, on (X, y)", color="#117733", label="Θ_adv / 2",
                                       compare_with=("adversarial",)))
    register_measure(MeasureSpec("readout_bias", "|readout bias| (logit units)", fn=readout_bias))
    register_model(TwoHidden)
    yield
    for live, old in zip((data_module.DATASETS, experiments_module.EXPERIMENT_SPECS,
                          experiments_module._COMPARISON_ORDER, measures_module.MEASURES, START_TRANSFORMS, MODELS),
                         saved):
        live.clear()
        live.update(old) if isinstance(live, dict) else live.extend(old)


def test_a_registration_that_would_shadow_or_cannot_run_is_refused():
    for bad in (MeasureSpec("readout_bias"), MeasureSpec("sharpness", fn=readout_bias),
                MeasureSpec("norm_toy", fn=readout_bias)):
        with pytest.raises(ValueError):
            register_measure(bad)
    for name in ("freeze_2", "all", "1", "two words"):
        with pytest.raises(ValueError):
            register_experiment(ExperimentSpec(name, lambda k: (k.y,), "-"))
    with pytest.raises(ValueError):
        register_dataset(DatasetSpec("mine.npz", stripes))


@pytest.mark.slow
def test_a_dataset_experiment_and_measure_registered_from_outside_run_draw_and_report(extended, tmp_path):
    from advjax.figures import load_run
    from advjax.figures import main as figures_main
    from advjax.report import write_report

    cfg = {"dataset": "stripes", "model": "two_hidden", "widths": "8", "seeds": 3,
           "experiments": "baseline,adversarial,halved",
           "max_steps": 400, "n_test": 200, "hessian_iters": 2, "grid": 8, "noise": 0.2, "quiet": True}
    assert from_dict(cfg).resolve().noise == 0.2  # --noise applies to the new dataset: its spec takes it
    out = tmp_path / "run"
    rows = run_sweep(cfg, str(out))
    assert {r["experiment"] for r in rows} == {"baseline", "adversarial", "halved"}
    assert {r["dataset"] for r in rows} == {"stripes"}
    assert all(r["norm_hidden2"] > 0 for r in rows)  # the model kind's layers: two hidden ones
    assert all(isinstance(r["readout_bias"], float) and r["readout_bias"] >= 0 for r in rows)
    assert all(r["boundary_length"] is not None for r in rows)  # 2-D points: the grid measures apply
    halved = [r for r in rows if r["experiment"] == "halved"]
    assert all(r["phase1_steps"] is not None for r in halved)  # it starts from Θ_adv

    # The figures draw the new experiment's comparison and the new measure's panel.
    run = load_run(str(out))
    assert "halved" in run.experiments and "readout_bias" in run.measured
    figs = tmp_path / "figs"
    assert figures_main([str(out), "--out", str(figs)]) == 0
    sig = (figs / "significance.csv").read_text()
    assert "halved" in sig and "adversarial" in sig
    assert (figs / "measures_stripes-two_hidden.png").stat().st_size > 5_000  # the run is named by its model

    report = write_report([str(out)], str(tmp_path / "report.html"))
    page = open(report, encoding="utf-8").read()
    assert "halved" in page and "stripes" in page

    # A Θ_adv made on other data (--noise 0.5: other points) is refused for this sweep.
    with pytest.raises(CheckpointError):
        run_sweep({**cfg, "noise": 0.5, "adv_from": str(out)}, str(tmp_path / "other"))
    assert not (tmp_path / "other").exists()
    # ... and the same data's is taken.
    again = run_sweep({**cfg, "experiments": "adversarial", "adv_from": str(out)}, str(tmp_path / "same"))
    np.testing.assert_array_equal([r["test_acc"] for r in again],
                                  [r["test_acc"] for r in rows if r["experiment"] == "adversarial"])
