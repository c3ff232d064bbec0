"""results.csv and manifest.json: their columns, atomic writes, and reading a run back.

The sweep writes them, `advjax.merge` joins them and `advjax.figures` reads them, all
through this module. results.csv has one row per (dataset, width, experiment, grid point,
seed): the columns of `BASE_COLUMNS` (after `seed`, one column per grid axis the sweep
varied, holding the row's value), then the measures' columns, which depend on the model
(one norm per layer; `measures.columns`), then the 2-D grid measures.
"""

from __future__ import annotations

import csv
import io
import json
import os

import numpy as np

from .checkpoint import replacing
from .files import open_regular
from .measures import COLUMNS as NP_MEASURE_COLUMNS
from .measures import GRID_COLUMNS
from .options import FIELDS, GRID_AXES, SweepConfig, from_dict

BASE_COLUMNS = (
    "dataset", "width", "experiment", "seed", "train_acc", "test_acc", "train_loss",
    "steps", "converged", "diverged", "phase1_steps", "phase1_converged", "phase1_train_acc",
)
COLUMNS = (*BASE_COLUMNS, *NP_MEASURE_COLUMNS, *GRID_COLUMNS)  # N_p's (depth 1)
_INTS = ("width", "seed", "steps", "phase1_steps", "linear_regions", "max_steps")
_FLOATS = ("train_acc", "test_acc", "train_loss", "phase1_train_acc", "distance", "margin", "sharpness",
           "active_fraction", "boundary_length")


def columns(measure_columns: tuple[str, ...], axes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """results.csv's columns for a model whose measures are `measure_columns`, in a
    sweep whose grid varies `axes`."""
    at = BASE_COLUMNS.index("seed") + 1
    return (*BASE_COLUMNS[:at], *axes, *BASE_COLUMNS[at:], *measure_columns, *GRID_COLUMNS)


def _fmt(v, column: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        # A grid axis's value is the row's key: written exactly, so it reads back equal.
        return repr(float(v)) if column in GRID_AXES else f"{float(v):.6g}"
    return str(v)


def write_atomic(path: str, text: str) -> None:
    """Write-then-rename (`checkpoint.replacing`): a reader or a crash never sees a
    half-written file, and a failed write leaves the old one (WriteError)."""
    with replacing(path) as tmp, open(tmp, "w", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def rows_to_csv(rows: list[dict], cols: tuple[str, ...] | None = None) -> str:
    """The text of results.csv. `cols` default: the keys of the first row (rows read
    back by `parse_results` keep their file's columns), else N_p's."""
    cols = tuple(cols or (rows[0] if rows else COLUMNS))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt(r.get(k), k) for k in cols})
    return buf.getvalue()


def _typed(k: str, v: str):
    if v == "":
        return None
    if k in _INTS:
        return int(v)
    if k in _FLOATS or k in GRID_AXES or k.startswith("norm_"):
        return float(v)
    if v in ("true", "false"):
        return v == "true"
    return v


def parse_results(text: str, expect: tuple[str, ...] | None = None) -> list[dict]:
    """results.csv's text back as typed rows, keyed by its header's columns in order.
    With `expect` (what --resume requires of a file it continues): ValueError unless the
    header is exactly those columns and every row has every column."""
    reader = csv.reader(io.StringIO(text))
    header = next(reader, [])
    strict = expect is not None
    if strict and tuple(header) != tuple(expect):
        raise ValueError("its header is not this sweep's columns")
    rows = []
    for line, raw in enumerate(reader, start=2):
        if strict and len(raw) != len(header):
            raise ValueError(f"line {line} has {len(raw)} of {len(header)} columns")
        rows.append({k: _typed(k, raw[i] if i < len(raw) else "") for i, k in enumerate(header)})
    return rows


def read_results(path: str) -> list[dict]:
    """results.csv back as typed rows (the inverse of rows_to_csv)."""
    with open_regular(path, "r", newline="") as f:
        return parse_results(f.read())


def read_manifest(run_dir: str) -> dict:
    with open_regular(os.path.join(run_dir, "manifest.json"), "r") as f:
        return json.load(f)


def write_manifest(run_dir: str, manifest: dict) -> None:
    write_atomic(os.path.join(run_dir, "manifest.json"), json.dumps(manifest, indent=2) + "\n")


def config_of(manifest: dict) -> SweepConfig:
    """The resolved config a manifest records. One written before an option existed
    gets its default (a manifest without `model`/`depth` is N_p's). Raises ValueError,
    KeyError or TypeError on a malformed manifest."""
    return from_dict({k: v for k, v in manifest["config"].items() if k in FIELDS}, strict=False).resolve()


def load(run_dir: str, frame: bool | None = None):
    """The rows of RUN_DIR/results.csv, typed (ints, floats, booleans, None for empty):
    a pandas DataFrame when pandas is installed (or `frame=True`), else a list of dicts."""
    with open_regular(os.path.join(run_dir, "results.csv"), "r", newline="") as f:
        text = f.read()
    rows = parse_results(text)
    if frame is False:
        return rows
    try:
        import pandas as pd
    except ImportError:
        if frame:
            raise
        return rows
    return pd.DataFrame(rows, columns=next(csv.reader(io.StringIO(text))))
