"""Experiments as compositions of phases: shared phase 1, Experiment 3's invariants."""

import jax
import numpy as np

from advjax.data import gaussians_points, random_labels
from advjax.experiments import START_TRANSFORMS, Optimizer, TrainSettings, WidthRun, experiment, run_phases
from advjax.model import MLP


def _run(n_seeds=3):
    model = MLP(width=12, n_in=2, n_out=1)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    x, y = jax.vmap(lambda k: gaussians_points(k, 30))(keys)
    y_rand = jax.vmap(lambda k: random_labels(k, 30, 2))(jax.random.split(jax.random.PRNGKey(1), n_seeds))
    return WidthRun(
        model=model,
        theta0=jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(2), n_seeds)),
        x_train=x,
        labels={"y": y, "y_rand": y_rand},
        batch_keys=jax.random.split(jax.random.PRNGKey(3), n_seeds),
        x_batched=True,
        settings=TrainSettings(batch_size=None, loss_reduction="mean", chunk_steps=500),
    )


def _exp(name, model, max_steps=3000):
    """Experiment `name`'s phases, every one at step size 0.5 and cap `max_steps`."""
    opt = Optimizer(lr=0.5, max_steps=max_steps)
    return experiment(name, model, opt, opt)


def bits(tree):
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def test_phase_one_is_computed_once_and_shared():
    run = _run()
    adv = run_phases(_exp("adversarial", run.model), run)
    frozen = run_phases(_exp("frozen", run.model), run)
    assert adv[0] is frozen[0]  # the same Θ_adv object, not a recomputation
    assert len(run.memo) == 3  # Θ_adv, adversarial phase 2, frozen phase 2


def test_frozen_keeps_first_layer_bit_for_bit_and_starts_from_zero_readout():
    run = _run()
    theta_adv = run_phases(_exp("adversarial", run.model)[:1], run)[0].params
    frozen = run_phases(_exp("frozen", run.model), run)[-1]
    assert bits(frozen.params["hidden"]) == bits(theta_adv["hidden"])
    assert (frozen.steps > 0).all() and frozen.converged.all()
    start = START_TRANSFORMS["zero_readout"](theta_adv, run)
    assert all(not np.any(np.asarray(a)) for a in jax.tree.leaves(start["readout"]))
    assert bits(start["hidden"]) == bits(theta_adv["hidden"])
    # With a cap of 0 steps, phase 2 returns its start: the zeroed readout.
    capped = _run()
    capped.memo[_exp("frozen", run.model, 0)[:1]] = run.memo[_exp("frozen", run.model)[:1]]
    out = run_phases(_exp("frozen", run.model, 0), capped)[-1]
    assert (out.steps == 0).all()
    assert all(not np.any(np.asarray(a)) for a in jax.tree.leaves(out.params["readout"]))


def test_adversarial_phase_two_starts_from_theta_adv():
    run = _run()
    theta_adv, final = run_phases(_exp("adversarial", run.model), run)
    capped = _run()
    capped.memo[_exp("adversarial", run.model, 0)[:1]] = theta_adv
    start = run_phases(_exp("adversarial", run.model, 0), capped)[-1]
    assert bits(start.params) == bits(theta_adv.params)
    assert final.converged.all()
