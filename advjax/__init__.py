"""advjax: a JAX sweep engine for adversarial initialization (Liu et al. 2020;
Ravichandran et al., "Learning from setbacks")."""

from .checkpoint import CheckpointError, SavedPhase, load_phase, load_theta_adv  # noqa: E402
from .data import DataError, make_dataset  # noqa: E402
from .options import ConfigError, SweepConfig  # noqa: E402
from .version import __version__  # noqa: E402, F401


def run_sweep(config, out=None) -> list[dict]:
    """Run a sweep from a SweepConfig or a dict of its fields; returns the rows of
    results.csv. See advjax.engine.run_sweep."""
    from .engine import run_sweep as _run_sweep  # deferred: keeps `python -m advjax.sweep` clean

    return _run_sweep(config, out)


__all__ = ["CheckpointError", "ConfigError", "DataError", "SavedPhase", "SweepConfig", "load_phase", "load_theta_adv",
           "make_dataset", "run_sweep"]
