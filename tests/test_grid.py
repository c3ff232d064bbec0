"""Grid axes: every combination of step sizes, caps, targets and label doses × every
seed in one compiled program per width; shared phases computed once; the dose of the
setback (--random-fraction) and stop targets."""

import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advjax import experiments, run_sweep
from advjax.data import circles_points, random_labels
from advjax.experiments import n_randomized, partly_random
from advjax.model import MLP
from advjax.results import read_results
from advjax.sweep import main
from advjax.train import Numbers, PhaseSpec, need_for, per_example_loss, predictions, train

BASE = {"dataset": "spirals", "widths": "8", "seeds": 3, "max_steps": 200, "n_test": 100, "quiet": True,
        "measures": False, "figure": False, "experiments": "1,2,3"}
AXES = ("lr", "phase1_lr", "random_fraction", "phase1_target_acc", "target_train_acc")


def _without_axes(rows):
    return [{k: v for k, v in r.items() if k not in AXES} for r in rows]


@pytest.mark.slow
def test_a_grid_point_equals_the_point_run_alone(tmp_path):
    grid = run_sweep({**BASE, "lr": "0.01,0.05", "random_fraction": "0.5,1"}, str(tmp_path / "grid"))
    assert len(grid) == 3 * 4 * 3 and {(r["lr"], r["random_fraction"]) for r in grid} == {
        (0.01, 0.5), (0.01, 1.0), (0.05, 0.5), (0.05, 1.0)}
    alone = run_sweep({**BASE, "lr": 0.05, "random_fraction": 0.5}, str(tmp_path / "alone"))
    point = [r for r in grid if r["lr"] == 0.05 and r["random_fraction"] == 0.5]
    assert _without_axes(point) == alone  # bit for bit: every column of every row
    # a grid of one point is today's sweep: same columns, same rows
    assert read_results(str(tmp_path / "alone" / "results.csv"))[0].keys() == alone[0].keys()
    assert "lr" not in alone[0]


@pytest.mark.slow
def test_a_phase_two_grid_trains_one_theta_adv(tmp_path, monkeypatch):
    """Four step sizes of phase 2 over one Θ_adv: phase 1 trains once, each phase 2 trains the
    four points together (4 x 3 seeds: the batch of the 4-point grid above, so its programs)."""
    calls = []
    real = experiments.train

    def counting(spec, params0, x, y, keys, *args, **kw):
        calls.append(len(keys))
        return real(spec, params0, x, y, keys, *args, **kw)

    monkeypatch.setattr(experiments, "train", counting)
    rows = run_sweep({**BASE, "lr": "0.01,0.02,0.03,0.05", "phase1_lr": 0.05, "experiments": "2,3"},
                     str(tmp_path / "g"))
    # phase 1 once (3 seeds), then each experiment's second phase for all 4 points at once
    assert calls == [3, 12, 12]
    theta_adv_steps = {(r["experiment"], r["lr"], r["seed"]): r["phase1_steps"] for r in rows}
    for s in range(3):
        assert len({v for (e, lr, seed), v in theta_adv_steps.items() if seed == s}) == 1


def test_random_fraction_doses():
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    y = np.asarray(jax.vmap(lambda k: random_labels(k, 101, 3))(jax.random.split(jax.random.PRNGKey(1), 4)))
    y_rand = np.asarray(jax.vmap(lambda k: random_labels(k, 101, 3))(jax.random.split(jax.random.PRNGKey(2), 4)))
    assert (partly_random(y, y_rand, 0.0, keys) == y).all()
    assert (partly_random(y, y_rand, 1.0, keys) == y_rand).all()
    half = partly_random(y, y_rand, 0.5, keys)
    assert n_randomized(0.5, 101) == 51
    for s in range(4):
        order = np.asarray(jax.random.permutation(keys[s], 101))
        chosen, kept = order[:51], order[51:]
        assert (half[s, chosen] == y_rand[s, chosen]).all() and (half[s, kept] == y[s, kept]).all()
    quarter = partly_random(y, y_rand, 0.25, keys)  # nested: what 0.25 randomizes, 0.5 does too
    assert ((quarter != y) <= (half != y)).all()


@pytest.mark.slow
def test_full_dose_and_zero_error_targets_are_todays_sweep(tmp_path):
    today = run_sweep({**BASE, "experiments": "2,3"}, str(tmp_path / "today"))
    spelled = run_sweep({**BASE, "experiments": "2,3", "random_fraction": 1, "phase1_target_acc": 1,
                         "target_train_acc": 1.0}, str(tmp_path / "spelled"))
    assert spelled == today
    none_random = run_sweep({**BASE, "experiments": "2", "random_fraction": 0}, str(tmp_path / "zero"))
    # α = 0: phase 1 trains on the true labels, so its training accuracy is the true one
    base = run_sweep({**BASE, "experiments": "1"}, str(tmp_path / "base"))
    assert [r["phase1_steps"] for r in none_random] == [r["steps"] for r in base]


@pytest.mark.parametrize("target", [0.8, 0.93])
def test_a_target_accuracy_stops_at_the_first_step_that_reaches_it(target):
    model = MLP(width=12, n_in=2, n_out=1)
    keys = jax.random.split(jax.random.PRNGKey(3), 3)
    xs, ys = jax.vmap(lambda k: circles_points(k, 60, noise=0.3))(keys)
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(4), 3))
    out = train(PhaseSpec(model, model.layers, chunk_steps=23), theta0, xs, ys, keys,
                Numbers(0.05, 5000, need=need_for(target, 60)))
    assert out.converged.all()
    opt = optax.sgd(0.05)

    @jax.jit
    def step(p, s, x, y):
        g = jax.grad(lambda p: per_example_loss(model.apply(p, x), y).mean())(p)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s

    @jax.jit
    def accuracy(p, x, y):  # compiled once, not op by op at every step
        return jnp.mean(predictions(model.apply(p, x)) == y)

    for i in range(3):  # a plain loop per seed: no vmap, no while_loop, no masks
        p = jax.tree.map(lambda a, i=i: a[i], theta0)
        s, k = opt.init(p), 0
        while float(accuracy(p, xs[i], ys[i])) < target:
            p, s = step(p, s, xs[i], ys[i])
            k += 1
        assert int(out.steps[i]) == k  # the plain loop's first step at the target


def test_need_for_is_exact():
    assert need_for(1.0, 128) == 128 and need_for(0.5, 101) == 51 and need_for(0.9, 10) == 9
    assert need_for(0.7, 10) == 7  # 0.7·10 is 7.000000000000001 in floats; exact arithmetic says 7


@pytest.mark.slow
def test_resume_after_a_kill_in_the_middle_of_a_grid(tmp_path):
    """A real process killed (SIGKILL) once a grid point's Θ_adv has a periodic save, resumed
    in-process, equals the sweep run whole, byte for byte. The grid is BASE's 4-point grid of
    the first test, so the resume and the whole run reuse its programs; the killed process
    compiles its own (its --chunk-steps differs), which keeps it busy well after the save."""
    cfg = ["--dataset", "spirals", "--widths", "8", "--seeds", "3", "--n-test", "100", "--no-measures",
           "--no-figure", "--quiet", "--experiments", "2,3", "--lr", "0.01,0.05", "--random-fraction", "0.5,1",
           "--max-steps", "1000"]
    out = tmp_path / "killed"
    often = ["--chunk-steps", "50", "--checkpoint-every", "50"]
    proc = subprocess.Popen([sys.executable, "-m", "advjax.sweep", *cfg, *often, "--out", str(out)],
                            stderr=subprocess.PIPE)
    theta_adv = out / "checkpoints" / "p8" / "theta_adv"
    deadline = time.time() + 120
    def saved():  # some grid point's Θ_adv has a periodic save
        return theta_adv.is_dir() and any((d / "0").is_dir() for d in theta_adv.iterdir())

    while proc.poll() is None and time.time() < deadline and not saved():
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -9
    assert not (out / "results.csv").exists()
    assert main([*cfg, "--out", str(out), "--resume", "--checkpoint-every", "0"]) == 0
    assert main([*cfg, "--out", str(tmp_path / "whole")]) == 0
    assert (out / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
