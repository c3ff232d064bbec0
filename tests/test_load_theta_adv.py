"""Θ_adv read back from a sweep's directory in Python (`advjax.load_theta_adv`), checked
against what the sweep itself did with it."""

import numpy as np
import pytest

import advjax
from advjax.checkpoint import final_path, restore_final
from advjax.options import from_dict
from advjax.plan import load_data, make_sweep_model

BASE = {"dataset": "gaussians", "widths": "4", "seeds": 3, "max_steps": 400, "n_test": 100, "quiet": True,
        "measures": False, "figure": False}


pytestmark = pytest.mark.slow  # each test reads sweeps run here end to end


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Experiments 2 and 3 at phase 1's default step size (gaussians: 0.01), every phase kept."""
    out = tmp_path_factory.mktemp("theta_adv") / "run"
    advjax.run_sweep({**BASE, "experiments": "2,3", "keep_params": True}, str(out))
    return out


def test_theta_adv_is_what_the_frozen_experiment_started_from(run):
    out = run
    adv = advjax.load_theta_adv(str(out), 4)
    cfg = from_dict(BASE).resolve()
    assert adv.model == make_sweep_model(cfg, load_data(cfg), 4) and adv.seeds == [0, 1, 2] and adv.complete
    assert set(adv.params) == set(adv.model.layers) and adv.params["hidden"]["kernel"].shape == (3, 2, 4)
    assert adv.steps.shape == (3,) and (adv.steps > 0).all()
    # frozen: phase 2 trains the readout of Θ_adv only, so its final hidden layer is Θ_adv's, bit for bit
    final, *_ = restore_final(final_path(str(out), 4, "frozen"))
    np.testing.assert_array_equal(final["hidden"]["kernel"], adv.params["hidden"]["kernel"])
    np.testing.assert_array_equal(final["hidden"]["bias"], adv.params["hidden"]["bias"])
    assert not np.array_equal(final["readout"]["kernel"], adv.params["readout"]["kernel"])
    again = advjax.load_phase(str(out / "checkpoints" / "p4" / "theta_adv"))
    np.testing.assert_array_equal(again.params["readout"]["kernel"], adv.params["readout"]["kernel"])


def test_a_grid_point_names_its_theta_adv(run, tmp_path):
    """The point alone is the shared run (one sweep fewer): its phase-1 step size, 0.01, is the
    grid's second point, so the point named is not simply the grid's first."""
    advjax.run_sweep({**BASE, "experiments": "2", "phase1_lr": "0.05,0.01"}, str(tmp_path / "grid"))
    with pytest.raises(ValueError, match="name one by lr"):
        advjax.load_theta_adv(str(tmp_path / "grid"), 4)
    with pytest.raises(ValueError, match="no Θ_adv of width 4"):
        advjax.load_theta_adv(str(tmp_path / "grid"), 4, lr=0.5)
    point = advjax.load_theta_adv(str(tmp_path / "grid"), 4, lr=0.01)
    alone = advjax.load_theta_adv(str(run), 4)
    assert point.fingerprint["phases"][0]["lr"] == 0.01 and alone.fingerprint["phases"][0]["lr"] == 0.01
    for layer in alone.params:  # a grid point's Θ_adv is the one its point trains alone
        for leaf in alone.params[layer]:
            np.testing.assert_array_equal(point.params[layer][leaf], alone.params[layer][leaf])
    with pytest.raises(ValueError, match="no sweep of width 7"):
        advjax.load_theta_adv(str(tmp_path / "grid"), 7)
    with pytest.raises(advjax.CheckpointError, match="no checkpoint"):
        advjax.load_phase(str(tmp_path / "nowhere"))
