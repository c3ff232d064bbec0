"""Issue 5's experiments: norm-matched starts, shrink and perturb, the teacher-student
random-features model, and the measures' columns, each against a direct computation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_experiments import _exp, _run, bits

from advjax import run_sweep
from advjax.data import teacher_student
from advjax.experiments import (
    START_TRANSFORMS,
    Phase,
    TrainSettings,
    WidthRun,
    experiment_names,
    run_phases,
)
from advjax.measures import COLUMNS, GRID_COLUMNS
from advjax.model import MLP
from advjax.sweep import main
from advjax.train import init_params


def _norm(tree):
    return np.sqrt(sum(float(np.sum(np.asarray(a, np.float64) ** 2)) for a in jax.tree.leaves(tree)))


def _seed(tree, i):
    return jax.tree.map(lambda a: np.asarray(a)[i], tree)


def test_norm_matched_starts_have_theta_adv_norms_exactly():
    run = _run()
    theta_adv = run_phases(_exp("adversarial", run.model)[:1], run)[0].params
    per_layer = START_TRANSFORMS["norm_layer"](theta_adv, run)
    whole = START_TRANSFORMS["norm_global"](theta_adv, run)
    for i in range(3):
        adv, theta0 = _seed(theta_adv, i), _seed(run.theta0, i)
        for layer in ("hidden", "readout"):
            np.testing.assert_allclose(_norm(_seed(per_layer, i)[layer]), _norm(adv[layer]), rtol=1e-6)
            # the direction is θ0's: a positive multiple of it
            a = np.concatenate([np.ravel(v) for v in jax.tree.leaves(_seed(per_layer, i)[layer])])
            b = np.concatenate([np.ravel(v) for v in jax.tree.leaves(theta0[layer])])
            assert np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b) > 1 - 1e-6
        np.testing.assert_allclose(_norm(_seed(whole, i)), _norm(adv), rtol=1e-6)
    assert _norm(_seed(per_layer, 0)["hidden"]) != pytest.approx(_norm(_seed(run.theta0, 0)["hidden"]), rel=1e-3)


def test_shrink_perturb_endpoints_are_adversarial_and_a_fresh_init():
    run = _run()
    fresh = jax.vmap(run.model.init)(jax.random.split(jax.random.PRNGKey(9), 3))
    run.fresh = lambda: fresh
    theta_adv = run_phases(_exp("adversarial", run.model)[:1], run)[0].params
    at = lambda shrink, perturb: Phase("y", start="shrink_perturb", shrink=shrink, perturb=perturb)  # noqa: E731
    assert bits(START_TRANSFORMS["shrink_perturb"](theta_adv, run, at(1.0, 0.0))) == bits(theta_adv)
    assert bits(START_TRANSFORMS["shrink_perturb"](theta_adv, run, at(0.0, 1.0))) == bits(fresh)
    mixed = START_TRANSFORMS["shrink_perturb"](theta_adv, run, at(0.4, 0.1))
    expected = 0.4 * np.asarray(theta_adv["hidden"]["kernel"]) + 0.1 * np.asarray(fresh["hidden"]["kernel"])
    np.testing.assert_allclose(mixed["hidden"]["kernel"], expected, rtol=1e-6)


@pytest.mark.slow
def test_shrink_perturb_one_zero_equals_adversarial_through_the_cli(tmp_path):
    """Every column of every row equal, over two seeds (the width, seeds and test set of the
    gaussians run below, whose programs it shares)."""
    common = {"dataset": "gaussians", "widths": "6", "seeds": 2, "max_steps": 300, "n_test": 100, "quiet": True,
              "measures": False, "figure": False}
    rows = run_sweep({**common, "experiments": "adversarial,shrink_perturb", "shrink": 1.0, "perturb": 0.0},
                     str(tmp_path / "sp"))
    adv = [{k: v for k, v in r.items() if k != "experiment"} for r in rows if r["experiment"] == "adversarial"]
    sp = [{k: v for k, v in r.items() if k != "experiment"} for r in rows if r["experiment"] == "shrink_perturb"]
    assert adv == sp


def test_init_params_in_batches_equals_one_vmap():
    """Three seeds in batches of 2 and 1 against one vmap over the three: `_run`'s network and
    seed count, so the vmapped init is the one already run for it."""
    model = MLP(width=12, n_in=2, n_out=1)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    assert bits(init_params(model, keys, 2)) == bits(jax.vmap(model.init)(keys))


def test_teacher_labels_and_features():
    ds = teacher_student(60, 40, n_in=5, teacher_width=3)
    key = jax.random.PRNGKey(4)
    split, t = ds.draw(key), ds.teacher(key)
    w = np.asarray(t["kernel"])
    np.testing.assert_allclose(np.linalg.norm(w, axis=0), 1, rtol=1e-5)
    for x, y in ((split.x_train, split.y_train), (split.x_test, split.y_test)):
        f = np.maximum(np.asarray(x) @ w, 0) @ np.asarray(t["signs"])
        assert (np.asarray(y) == (f > 0)).all()
    assert 0.2 < float(jnp.mean(split.y_train)) < 0.8
    # the teacher-features start: the teacher's units first, the rest silent, readout 0
    model = MLP(5, 5, 1)
    theta0 = jax.vmap(model.init)(jax.random.split(key, 2))
    run = WidthRun(model=model, theta0=theta0, x_train=None, labels={}, batch_keys=None, x_batched=True,
                   settings=TrainSettings(None, "mean", 1),
                   teacher=lambda: jax.tree.map(lambda a: np.stack([a, a]), t))
    start = START_TRANSFORMS["teacher_features"](theta0, run)
    np.testing.assert_array_equal(start["hidden"]["kernel"][:, :, :3], np.stack([w, w]))
    assert not np.any(start["hidden"]["kernel"][:, :, 3:]) and not np.any(np.asarray(start["readout"]["kernel"]))
    ortho = START_TRANSFORMS["orthogonal_features"](theta0, run)
    assert np.abs(np.swapaxes(ortho["hidden"]["kernel"], 1, 2) @ w).max() < 1e-5  # orthogonal to every teacher unit
    np.testing.assert_allclose(np.linalg.norm(ortho["hidden"]["kernel"], axis=1),
                               np.linalg.norm(np.asarray(theta0["hidden"]["kernel"]), axis=1), rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("dataset,experiments", [
    ("gaussians", "all"),
    ("teacher", "random_features,teacher_features,orthogonal_features,frozen"),
    ("mnist", "baseline,norm_matched_layer,shrink_perturb"),
])
def test_every_experiment_runs_from_the_cli_and_fills_its_columns(tmp_path, dataset, experiments, capsys):
    """Every measure column filled and finite for every experiment; the Lanczos steps and the
    lattice are the fewest that measure (their sizes do not change which columns are filled)."""
    out = tmp_path / dataset
    args = ["--dataset", dataset, "--widths", "6", "--seeds", "2", "--max-steps", "40", "--n-test", "100",
            "--experiments", experiments, "--hessian-iters", "2", "--quiet", "--no-figure", "--out", str(out),
            *(["--grid", "8"] if dataset == "gaussians" else [])]  # --grid applies to 2-D data only
    assert main(args) == 0
    capsys.readouterr()
    from advjax.results import read_results

    rows = read_results(str(out / "results.csv"))
    names = {r["experiment"] for r in rows}
    expected = set(experiment_names(2)) if experiments == "all" else \
        set(experiments.split(","))
    assert names == expected
    filled = COLUMNS + (GRID_COLUMNS if dataset == "gaussians" else ())
    for r in rows:
        assert all(r[c] is not None and np.isfinite(r[c]) for c in filled), r
        assert all(r[c] is None for c in GRID_COLUMNS if c not in filled)
        assert r["norm_total"] == pytest.approx(np.hypot(r["norm_hidden"], r["norm_readout"]), rel=1e-4)


@pytest.mark.parametrize("argv,flag", [
    (["--experiments", "teacher_features"], "--experiments"),
    (["--teacher-width", "3"], "--teacher-width"),
    (["--shrink", "-1"], "--shrink"),
    (["--grid", "1"], "--grid"),
    (["--experiments", "nope"], "--experiments"),
    (["--dataset", "teacher", "--input-dim", "3", "--teacher-width", "3", "--experiments", "orthogonal_features"],
     "--teacher-width"),
])
def test_bad_hypothesis_flags_are_one_line_errors(argv, flag, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err


def test_all_in_a_config_file_means_every_experiment_the_dataset_allows(tmp_path):
    from advjax.options import from_dict, load_toml

    f = tmp_path / "all.toml"
    f.write_text('dataset = "gaussians"\nexperiments = ["all"]\n')
    cfg = from_dict(load_toml(str(f)))
    assert set(cfg.experiments) == set(experiment_names(2))
    assert {"freeze_1", "reinit_1", "reinit_2"} <= set(cfg.experiments)  # N_p's two layers
    f.write_text('dataset = "teacher"\nexperiments = "all"\n')
    assert set(from_dict(load_toml(str(f))).experiments) == set(experiment_names(2, teacher=True))
    assert {"teacher_features", "orthogonal_features"} <= set(experiment_names(2, teacher=True))
