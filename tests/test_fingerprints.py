"""Every grid point trains into checkpoints of its own: a shrink/perturb grid runs, and
each of its points equals that point run alone (issue 27: both points once shared one
checkpoint directory, and the second save failed)."""

import pytest

from advjax import run_sweep

TINY = {"dataset": "gaussians", "widths": "5", "seeds": 2, "max_steps": 40, "n_train": 40, "n_test": 100,
        "experiments": "shrink_perturb", "quiet": True, "measures": False}
KEYS = ("width", "experiment", "seed")
VALUES = ("steps", "converged", "train_acc", "test_acc", "train_loss", "phase1_steps")


@pytest.mark.slow
@pytest.mark.parametrize("axis, values", [("shrink", (0.1, 0.7)), ("perturb", (0.0, 0.3))])
def test_a_shrink_or_perturb_grid_runs_and_each_point_equals_the_point_alone(tmp_path, axis, values):
    grid = run_sweep({**TINY, axis: ",".join(map(str, values))}, str(tmp_path / "grid"))
    for v in values:
        alone = run_sweep({**TINY, axis: v}, str(tmp_path / f"alone{v}"))
        mine = [r for r in grid if r[axis] == v]
        assert len(mine) == len(alone) == 2
        for g, a in zip(mine, alone):
            assert tuple(g[k] for k in KEYS) == tuple(a[k] for k in KEYS)
            assert tuple(g[k] for k in VALUES) == tuple(a[k] for k in VALUES), (axis, v)
    by_point = {v: [r["test_acc"] for r in grid if r[axis] == v] for v in values}
    assert by_point[values[0]] != by_point[values[1]]  # the axis reached the phase


# Every other grid axis: a two-point grid runs and each point equals the point run alone
# (lr and random_fraction: test_grid.py; shrink and perturb: above).
AXIS_VALUES = {"max_steps": (20, 30), "phase1_lr": (0.01, 0.05), "phase1_target_acc": (0.9, 1.0),
               "target_train_acc": (0.9, 1.0), "momentum": (0.0, 0.5), "weight_decay": (0.0, 0.01)}
SMALL = {"dataset": "gaussians", "widths": "5", "seeds": 2, "max_steps": 40, "n_train": 40, "n_test": 100,
         "experiments": "1,2", "quiet": True, "measures": False, "figure": False}


def test_every_grid_axis_is_tested_as_a_two_point_grid():
    from advjax.options import GRID_AXES

    assert set(GRID_AXES) == set(AXIS_VALUES) | {"lr", "random_fraction", "shrink", "perturb"}


@pytest.mark.slow
@pytest.mark.parametrize("axis", list(AXIS_VALUES))
def test_a_two_point_grid_of_each_axis_runs_and_each_point_equals_the_point_alone(tmp_path, axis):
    values = AXIS_VALUES[axis]
    grid = run_sweep({**SMALL, axis: ",".join(map(str, values))}, str(tmp_path / "grid"))
    alone = run_sweep({**SMALL, axis: values[1]}, str(tmp_path / "alone"))
    mine = [r for r in grid if r[axis] == values[1]]
    assert len(grid) == 2 * len(alone) and len(mine) == len(alone) == 4
    for g, a in zip(mine, alone):
        assert tuple(g[k] for k in KEYS) == tuple(a[k] for k in KEYS)
        assert tuple(g[k] for k in VALUES) == tuple(a[k] for k in VALUES), (axis, g, a)
