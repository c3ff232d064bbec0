"""SweepPlan: built once from a config, it holds what every part of the sweep reads."""

import numpy as np
import pytest

from advjax.errors import ConfigError
from advjax.experiments import prefix_name
from advjax.options import from_dict
from advjax.plan import checkpoint_dir, make_plan, phase_fingerprint
from advjax.seeds import draw_seeds


def plan_of(**kw):
    cfg = from_dict({"dataset": "circles", "widths": "3,5", "seeds": 3, "n_test": 40, "quiet": True, **kw}).resolve()
    return make_plan(cfg, "/tmp/advjax-plan-test")


def test_one_model_per_width_and_every_experiment_as_phases():
    plan = plan_of()
    assert sorted(plan.models) == [3, 5] and [m.width for m in plan.models.values()] == [3, 5]
    assert list(plan.experiments) == ["baseline", "adversarial", "frozen"]
    theta_adv = plan.experiments["adversarial"][0][:1]
    assert plan.experiments["frozen"][0][:1] == theta_adv  # one phase 1, shared
    assert plan.keep == {theta_adv}  # the only prefix reused: Θ_adv
    assert plan.seeds == [0, 1, 2] and not plan.grid


def test_each_prefix_has_its_fingerprint_and_directory():
    plan = plan_of()
    theta_adv = next(iter(plan.keep))
    fp = plan.fingerprint(5, theta_adv)
    assert fp == phase_fingerprint(plan.cfg, plan.dataset, plan.models[5], theta_adv, plan.seeds)
    assert fp["noise"] == 0.5 and fp["model"]["width"] == 5 and fp["seeds"] == [0, 1, 2]
    assert plan_of(noise=0.3).fingerprint(5, theta_adv)["noise"] == 0.3  # the dataset's own option
    assert "noise" not in plan_of(dataset="gaussians").fingerprint(5, theta_adv)
    assert plan.checkpoint_dir(3, theta_adv) == checkpoint_dir(plan.out, 3, theta_adv)
    assert plan.checkpoint_dir(3, theta_adv).endswith(f"p3/{prefix_name(theta_adv)}")
    grid = plan_of(lr="0.01,0.1")
    assert grid.grid and len(grid.experiments["adversarial"]) == 2
    assert grid.checkpoint_dir(3, theta_adv) != checkpoint_dir(grid.out, 3, theta_adv)  # a digest directory


def test_the_draws_are_the_seeds_draws_made_on_first_use():
    plan = plan_of(seeds=2)
    assert "draws" not in vars(plan)  # nothing drawn while the plan is checked
    d = plan.draws
    again = draw_seeds(plan.dataset, [0, 1], plan.cfg.fix_data)
    np.testing.assert_array_equal(np.asarray(d.split.x_train), np.asarray(again.split.x_train))
    np.testing.assert_array_equal(np.asarray(d.y_rand), np.asarray(again.y_rand))
    assert plan.draws is d


def test_a_plan_refuses_what_cannot_run():
    with pytest.raises(ConfigError, match="--grid"):
        plan_of(dataset="mnist", grid=16)
