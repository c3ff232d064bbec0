"""results.csv and manifest.json: their columns, atomic writes, and reading a run back.

The sweep writes them, `advjax.merge` joins them and `advjax.figures` reads them, all
through this module. results.csv has one row per (dataset, width, experiment, grid point,
seed): the columns of `BASE_COLUMNS` (after `seed`, one column per grid axis the sweep
varied, holding the row's value), then the measures' columns, which depend on the model
(one norm per layer; `measures.columns`), then the 2-D grid measures.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os

import numpy as np

from .errors import ConfigError, RunDirError
from .files import open_regular
from .measures import COLUMNS as NP_MEASURE_COLUMNS
from .measures import GRID_COLUMNS, MEASURES
from .measures import columns as measure_columns
from .options import FIELDS, GRID_AXES, SweepConfig, flag, from_dict
from .rundir import read_manifest, write_atomic, write_manifest  # noqa: F401 - results' public names too

FINGERPRINT_FORMAT = 1  # of width_fingerprint; a change makes older runs' widths unresumable

BASE_COLUMNS = (
    "dataset", "width", "experiment", "seed", "train_acc", "test_acc", "train_loss",
    "steps", "converged", "diverged", "phase1_steps", "phase1_converged", "phase1_train_acc",
)
COLUMNS = (*BASE_COLUMNS, *NP_MEASURE_COLUMNS, *GRID_COLUMNS)  # N_p's (depth 1)
_INTS = ("width", "seed", "steps", "phase1_steps", "max_steps")  # and the measures of type int
_FLOATS = ("train_acc", "test_acc", "train_loss", "phase1_train_acc")  # and the other measures


def columns(measure_columns: tuple[str, ...], axes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """results.csv's columns for a model whose measures are `measure_columns`, in a
    sweep whose grid varies `axes`."""
    at = BASE_COLUMNS.index("seed") + 1
    return (*BASE_COLUMNS[:at], *axes, *BASE_COLUMNS[at:], *measure_columns, *GRID_COLUMNS)


def columns_of(model, axes: tuple[str, ...] = ()) -> tuple[str, ...]:
    """results.csv's columns for a sweep of `model` (any width): the base ones, the
    model's measures and the grid axes."""
    return columns(measure_columns(model), axes)


def _fmt(v, column: str = "") -> str:
    if v is None:
        return ""
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)):
        # A grid axis's value is the row's key: written exactly, so it reads back equal.
        return repr(float(v)) if column in GRID_AXES else f"{float(v):.6g}"
    return str(v)


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
    spec = MEASURES.get(k)
    if k in _INTS or spec is not None and spec.type is int:
        return int(v)
    if k in _FLOATS or spec is not None or k in GRID_AXES or k.startswith("norm_"):
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
        row = {}
        for i, k in enumerate(header):
            cell = raw[i] if i < len(raw) else ""
            try:
                row[k] = _typed(k, cell)
            except ValueError:
                kind = "an integer" if k in _INTS or getattr(MEASURES.get(k), "type", None) is int else "a number"
                raise ValueError(f"line {line}, column {k}: {cell!r} where the sweep writes {kind}") from None
        rows.append(row)
    return rows


def read_results(path: str) -> list[dict]:
    """results.csv back as typed rows (the inverse of rows_to_csv)."""
    with open_regular(path, "r", newline="") as f:
        return parse_results(f.read())


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


# -- a run directory, checked ---------------------------------------------------------------------

_BOOLS = ("converged", "diverged", "phase1_converged")
_FRACTIONS = ("train_acc", "test_acc", "phase1_train_acc", "active_fraction")
_NON_NEGATIVE = ("steps", "phase1_steps", "linear_regions", "width", "seed")


def width_fingerprint(cfg: SweepConfig, data_sha256: str | None, width: int) -> str:
    """What made a width's rows: every field of the config that determines results (its
    widths aside), the width, and the data's content (sha256, None for generated data).
    manifest.json records it for each finished width; --resume and advjax.merge recompute
    it and refuse rows it does not match."""
    made_by = {k: v for k, v in cfg.results_config().items() if k != "widths"}
    text = json.dumps({"format": FINGERPRINT_FORMAT, "config": made_by, "width": int(width),
                       "data_sha256": data_sha256}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rows_digest(rows: list[dict], cols: tuple[str, ...]) -> str:
    """sha256 of rows as results.csv writes them: a hand-edited cell changes it."""
    return hashlib.sha256(rows_to_csv(rows, cols).encode()).hexdigest()[:16]


def sign_width(stats: dict, cfg: SweepConfig, data_sha256: str | None, width: int, rows: list[dict],
               cols: tuple[str, ...]) -> None:
    """Record in a width's manifest entry what made its rows and what they are."""
    stats["fingerprint"] = width_fingerprint(cfg, data_sha256, width)
    stats["rows_sha256"] = rows_digest([r for r in rows if r["width"] == width], cols)


def check_row_values(rows: list[dict], where: str) -> None:
    """Types and ranges of the columns every sweep writes: booleans are true/false,
    counts are non-negative integers, accuracies lie in [0, 1]."""
    for line, r in enumerate(rows, start=2):
        for k in BASE_COLUMNS:
            if k not in r:
                raise RunDirError(f"{where}: has no column {k}")
        for k, v in r.items():
            bad = None
            if k in _BOOLS and not (v is None or isinstance(v, bool)) or k in ("converged", "diverged") and v is None:
                bad = "true or false"
            elif k in _NON_NEGATIVE and v is not None and v < 0:
                bad = "a count >= 0"
            elif k in _FRACTIONS and v is not None and not 0 <= v <= 1:
                bad = "a fraction in [0, 1]"
            elif k in ("width", "seed", "steps") and v is None or k in ("dataset", "experiment") and not v:
                bad = "a value"
            if bad:
                raise RunDirError(f"{where}: line {line}, column {k}: {v!r} where the sweep writes {bad}")


def parse_rows(path: str, text: str, expect: tuple[str, ...] | None = None) -> list[dict]:
    """results.csv's text (from `path`) as typed rows, every cell's type and range checked
    (`check_row_values`); RunDirError, one line naming the file, line and column."""
    try:
        rows = parse_results(text, expect)
    except (ValueError, csv.Error) as e:  # a cell of the wrong type, a short line, a foreign header
        raise RunDirError(f"{path}: {str(e).splitlines()[0][:120]}") from None
    check_row_values(rows, path)
    return rows


def check_rows(rows: list[dict], cfg: SweepConfig, manifest: dict, path: str) -> None:
    """Rows against the sweep that claims them: its dataset, widths, experiments, grid
    points and seed set, each (width, experiment, point, seed) once."""
    name = manifest.get("dataset", {}).get("name")
    seeds = range(cfg.seed, cfg.seed + cfg.seeds)
    axes = tuple(cfg.axes())
    points = {tuple(p.values()) for p in cfg.points()}
    seen = set()
    for line, r in enumerate(rows, start=2):
        key = (r["width"], r["experiment"], tuple(r.get(a) for a in axes), r["seed"])
        for column, ok, allowed in (("dataset", name is None or r["dataset"] == name, name),
                                    ("width", r["width"] in cfg.widths, list(cfg.widths)),
                                    ("experiment", r["experiment"] in cfg.experiments, list(cfg.experiments)),
                                    ("seed", r["seed"] in seeds, f"{seeds.start}..{seeds.stop - 1}"),
                                    (",".join(axes), key[2] in points, "this grid's points"),
                                    ("seed", key not in seen, "each seed once per width, experiment and point")):
            if not ok:
                raise RunDirError(f"{path}: line {line}, column {column}: {r.get(column, key[2])!r} is not this "
                                  f"sweep's (manifest.json: {allowed})")
        seen.add(key)


def check_manifest(manifest, path: str) -> None:
    if not isinstance(manifest, dict):
        raise RunDirError(f"{path}: is not a JSON object")
    for field, kind in (("config", dict), ("widths", dict), ("dataset", dict), ("checkpoints", dict)):
        if field in manifest and not isinstance(manifest[field], kind):
            raise RunDirError(f"{path}: field {field} is a {type(manifest[field]).__name__}, not an object")
    if "config" not in manifest:
        raise RunDirError(f"{path}: has no field config")
    for w, stats in manifest.get("widths", {}).items():
        if not (w.isdigit() and isinstance(stats, dict)):
            raise RunDirError(f"{path}: field widths.{w} is not a width's record")


_SWEEP_FIELDS = {"dataset", "widths", "seeds", "seed", "experiments"}


def read_run(run_dir: str, strict: bool = True) -> tuple[dict, SweepConfig | None, list[dict]]:
    """A run directory's manifest.json, config and results.csv rows, checked (the one
    reader of report, figures, merge and --resume). RunDirError, one line naming the
    file and the field, on anything the sweep would not have written. `strict` (merge
    and --resume): the config must parse, the rows must be its sweep's, and each width
    whose rows results.csv holds must be recorded as finished with the fingerprint of
    this config and data and the digest of exactly these rows."""
    mpath = os.path.join(run_dir, "manifest.json")
    try:
        manifest = read_manifest(run_dir)
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{mpath}: unreadable ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    except ValueError as e:
        raise RunDirError(f"{mpath}: not JSON ({str(e)[:80]})") from None
    check_manifest(manifest, mpath)
    try:
        cfg = config_of(manifest)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        if strict:
            raise RunDirError(f"{mpath}: field config: {str(e).splitlines()[0][:120] or type(e).__name__}") from None
        cfg = None
    rpath = os.path.join(run_dir, "results.csv")
    try:
        with open_regular(rpath, "r", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise RunDirError(f"{rpath}: unreadable ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    rows = parse_rows(rpath, text)
    if strict:
        check_rows(rows, cfg, manifest, rpath)
        check_widths(rows, cfg, manifest, text, mpath)
    elif cfg is not None and _SWEEP_FIELDS <= set(manifest["config"]):  # a sweep's manifest: its rows are its own
        check_rows(rows, cfg, manifest, rpath)
    return manifest, cfg, rows


def check_widths(rows: list[dict], cfg: SweepConfig, manifest: dict, text: str, mpath: str,
                 data_sha256: str | None = ..., drop_unsigned: bool = False) -> list[dict]:
    """Each width in `rows` was finished by `cfg` on the data (`data_sha256`, by default
    the manifest's) and its rows are the ones that were written. With `drop_unsigned`
    (--resume), the rows of a width that manifest.json does not record as finished are
    dropped (a kill between writing results.csv and manifest.json) and returned rows are
    the rest; otherwise such rows are refused."""
    if data_sha256 is ...:
        data_sha256 = manifest.get("dataset", {}).get("sha256")
    cols = tuple(next(csv.reader(io.StringIO(text)), []))
    widths = manifest.get("widths", {})
    kept = []
    for w in sorted({r["width"] for r in rows}):
        stats = widths.get(str(w), {})
        mine = [r for r in rows if r["width"] == w]
        if "fingerprint" not in stats:
            if drop_unsigned and "run_seconds" not in stats:  # killed between results.csv and manifest.json
                continue
            raise RunDirError(f"{mpath}: field widths.{w}.fingerprint is missing: nothing says which config and data "
                              f"made the rows of width {w} that results.csv holds")
        if stats["fingerprint"] != width_fingerprint(cfg, data_sha256, w):
            raise RunDirError(f"{mpath}: field widths.{w}.fingerprint: the rows of width {w} were made by another "
                              "config or data than this one")
        if stats.get("rows_sha256") != rows_digest(mine, cols):
            raise RunDirError(f"{os.path.join(os.path.dirname(mpath), 'results.csv')}: the rows of width {w} are not "
                              f"the ones the sweep wrote (manifest.json: widths.{w}.rows_sha256)")
        kept += mine
    return kept


# -- resuming a sweep (--resume) ---------------------------------------------------------------------

def _old_config(out: str) -> tuple[dict, SweepConfig]:
    """The manifest of the sweep in `out` and its config, checked."""
    try:
        old = read_manifest(out)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError("--resume", f"{out} has no readable manifest.json ({type(e).__name__}); "
                          "nothing to resume there") from None
    mpath = os.path.join(out, "manifest.json")
    try:
        check_manifest(old, mpath)
        old_cfg = config_of(old)
        if "seeds" in old and old["seeds"] != list(range(old_cfg.seed, old_cfg.seed + old_cfg.seeds)):
            raise RunDirError(f"{mpath}: field seeds {old['seeds']!r} is not its config's "
                              f"seeds {old_cfg.seed}..{old_cfg.seed + old_cfg.seeds - 1}")
    except RunDirError as e:
        raise ConfigError("--resume", f"{e}; nothing was changed") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError("--resume", f"{mpath}: field config: "
                          f"{str(e).splitlines()[0][:100] or type(e).__name__}; nothing was changed") from None
    return old, old_cfg


def resume_state(cfg: SweepConfig, data_sha256: str | None, out: str, expect: tuple[str, ...]
                 ) -> tuple[list[dict], dict]:
    """Rows and per-width timings of the sweep already in `out`, after checking that it
    is the same sweep (`cfg`) on the same data and that its files are the sweep's own
    (`expect`: results.csv's columns)."""
    old, old_cfg = _old_config(out)
    a, b = old_cfg.results_config(), cfg.results_config()
    diff = [f"{flag(k)} ({a[k]!r} there, {b[k]!r} now)" for k in a if a[k] != b[k]]
    old_sha = old.get("dataset", {}).get("sha256") if isinstance(old.get("dataset"), dict) else None
    if old_sha != data_sha256:
        diff.append(f"data.sha256 ({str(old_sha)[:12]} there, {str(data_sha256)[:12]} now: the data file's "
                    "content changed)")
    if diff:
        raise ConfigError("--resume", f"{out} holds another sweep; it differs in {', '.join(diff)}")
    results = os.path.join(out, "results.csv")
    try:
        rows, text = [], ""
        if os.path.exists(results):
            with open_regular(results, "r", newline="") as f:
                text = f.read()
            rows = parse_rows(results, text, expect)
            check_rows(rows, cfg, old, results)
            rows = check_widths(rows, cfg, old, text, os.path.join(out, "manifest.json"), data_sha256,
                                drop_unsigned=True)
        widths = old.get("widths") if isinstance(old.get("widths"), dict) else {}
        written = {int(w) for w, stats in widths.items() if isinstance(stats, dict) and "run_seconds" in stats}
        if written - {r["width"] for r in rows}:  # results.csv is written before the manifest, per width
            raise RunDirError(f"{results}: it lacks the rows of width {min(written - {r['width'] for r in rows})}, "
                              "which manifest.json records as finished")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("--resume", f"{results} is unreadable ({getattr(e, 'strerror', None) or type(e).__name__}); "
                          "move it away to recompute its widths") from None
    except RunDirError as e:
        raise ConfigError("--resume", f"{e}; nothing was changed: move the run directory away, or rerun its "
                          "widths in a new --out") from None
    finished = {str(r["width"]) for r in rows}
    return rows, {w: stats for w, stats in widths.items() if w in finished}
