"""A sweep's results read back, for notebooks and scripts."""

from __future__ import annotations

import os


def load(run_dir: str, frame: bool | None = None):
    """The rows of RUN_DIR/results.csv, typed (ints, floats, booleans, None for empty):
    a pandas DataFrame when pandas is installed (or `frame=True`), else a list of dicts."""
    from .sweep import read_results

    rows = read_results(os.path.join(run_dir, "results.csv"))
    if frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if frame:
            raise
        return rows
    from .sweep import COLUMNS

    return pd.DataFrame(rows, columns=list(COLUMNS))
