"""Join run directories that split one sweep (e.g. by width, one SLURM array task each).

    python -m advjax.merge RUN_DIR... --out MERGED

The runs must be the same sweep in everything that determines results (dataset, seeds,
experiments, training settings) except their widths and the values of their grid axes
(one run per --lr value, say), and together they must cover every width × experiment ×
grid point × seed exactly once. The merged directory has one results.csv (rows ordered
by width, experiment and grid point), one manifest.json whose config lists every width
and axis value, and each run's checkpoints, per grid point (so --adv-from works on it).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys

from .checkpoint import PhaseStore, digest
from .options import GRID_AXES, ConfigError, OneLineParser
from .results import RunDirError, read_run, rows_to_csv, sign_width, write_atomic, write_manifest
from .rundir import check_writable


def merge(run_dirs: list[str], out: str) -> list[dict]:
    runs = []
    for d in run_dirs:
        try:  # each width's rows: this part's sweep's, and its fingerprint recomputed
            manifest, cfg, rows = read_run(d)
        except RunDirError as e:
            raise ConfigError("RUN_DIR", str(e)) from None
        runs.append((d, manifest, cfg, rows))
    first_dir, first_manifest, first_cfg, _ = runs[0]
    sha = data_sha256(first_manifest)
    for d, manifest, _, _ in runs:
        if data_sha256(manifest) != sha:
            raise ConfigError("RUN_DIR", f"{d} was made on other data than {first_dir} (data sha256 "
                              f"{str(data_sha256(manifest))[:12]} vs {str(sha)[:12]})")
    free = {"widths", *GRID_AXES, "phase1_lr", "phase1_max_steps"}  # what the parts may split
    reference = {k: v for k, v in first_cfg.results_config().items() if k not in free}
    for d, _, cfg, rows in runs:
        mine = {k: v for k, v in cfg.results_config().items() if k not in free}
        diff = [k for k in reference if reference[k] != mine[k]]
        if diff:
            raise ConfigError("RUN_DIR", f"{d} is not the same sweep as {first_dir}: it differs in "
                              + ", ".join(f"--{k.replace('_', '-')} ({reference[k]!r} vs {mine[k]!r})" for k in diff))
        done = {r["width"] for r in rows}
        if done != set(cfg.widths):
            raise ConfigError("RUN_DIR", f"{d} is unfinished: widths {sorted(set(cfg.widths) - done)} have no rows")
    merged, axes = merged_config(runs)
    rows = whole_grid(runs, merged, axes)
    check_writable(out)
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError("--out", f"{out} exists and is not empty")
    os.makedirs(out, exist_ok=True)
    for d, _, cfg, _ in runs:
        for w in cfg.widths:
            copy_checkpoints(os.path.join(d, "checkpoints", f"p{w}"), os.path.join(out, "checkpoints", f"p{w}"),
                             grid=bool(axes))
    manifest = dict(runs[0][1])
    manifest["config"] = {**merged.to_dict(), "out": out}
    manifest["widths"] = {str(w): dict(m["widths"].get(str(w), {})) for w in merged.widths for _, m, c, _ in runs
                          if w in c.widths}
    manifest["merged_from"] = [os.path.abspath(d) for d in run_dirs]
    header = [k for k in rows[0] if k not in axes]
    at = header.index("seed") + 1
    cols = (*header[:at], *axes, *header[at:])
    for w in merged.widths:  # checked above against each part's config: now signed for the whole sweep's
        sign_width(manifest["widths"][str(w)], merged, sha, w, rows, cols)
    write_atomic(os.path.join(out, "results.csv"), rows_to_csv(rows, cols))
    write_manifest(out, manifest)
    return rows


def data_sha256(manifest: dict) -> str | None:
    """The content of a run's data file (None for data generated from its seeds)."""
    return manifest.get("dataset", {}).get("sha256")


def merged_config(runs):
    """The config of the whole sweep: every part's widths, and on each grid axis every
    part's values (ascending). Returns it and its axes."""
    cfg = runs[0][2]
    values = {}
    for name in ("widths", *GRID_AXES):
        seen: list = []
        for _, _, c, _ in runs:
            v = getattr(c, name)
            for item in (v if isinstance(v, tuple) else (v,)):
                if item not in seen:
                    seen.append(item)
        values[name] = seen[0] if len(seen) == 1 and name != "widths" else tuple(sorted(seen))
    merged = dataclasses.replace(cfg, **values)
    for own, main in (("phase1_lr", "lr"), ("phase1_max_steps", "max_steps")):
        if all(getattr(c, own) in (None, getattr(c, main)) for _, _, c, _ in runs):  # tied to the point's value
            main_value = getattr(merged, main)
            merged = dataclasses.replace(merged, **{own: None if isinstance(main_value, tuple) else main_value})
        elif own == "phase1_max_steps" and len({getattr(c, own) for _, _, c, _ in runs}) > 1:
            raise ConfigError("RUN_DIR", "the runs differ in --phase1-max-steps, which is not a grid axis")
    return merged, tuple(merged.axes())


def whole_grid(runs, merged, axes) -> list[dict]:
    """Every part's rows, each with the merged sweep's axis columns (a part that ran an
    axis at one value holds it in its config), checked to cover widths × experiments ×
    grid points × seeds exactly once."""
    rows, where = [], {}
    for d, _, cfg, part in runs:
        for r in part:
            r = {**r, **{a: r.get(a, getattr(cfg, a)) for a in axes}}
            key = (r["width"], r["experiment"], tuple(r[a] for a in axes), r["seed"])
            if key in where:
                raise ConfigError("RUN_DIR", f"width {key[0]}, {key[1]}, seed {key[3]}"
                                  + (f" at {dict(zip(axes, key[2]))}" if axes else "") + f" is in both {where[key]} "
                                  f"and {d}")
            where[key] = d
            rows.append(r)
    for w in merged.widths:
        for e in merged.experiments:
            for p in merged.points():
                for s in range(merged.seed, merged.seed + merged.seeds):
                    if (w, e, tuple(p.values()), s) not in where:
                        raise ConfigError("RUN_DIR", f"the runs do not make a whole sweep: width {w}, {e}, seed {s}"
                                          + (f" at {p}" if p else "") + " is in none of them")
    order = {k: i for i, k in enumerate((w, e, tuple(p.values())) for w in merged.widths for e in merged.experiments
                                        for p in merged.points())}
    return sorted(rows, key=lambda r: (order[(r["width"], r["experiment"], tuple(r[a] for a in axes))], r["seed"]))


def copy_checkpoints(src: str, dst: str, grid: bool) -> None:
    """A part's checkpoints of one width into the merged directory. In a merged grid each
    phase prefix sits in the directory of its digest (a single sweep's plain directory is
    moved there, its digest read from its fingerprint), so parts never collide."""
    if not os.path.isdir(src):
        return
    for prefix in sorted(os.listdir(src)):
        here = os.path.join(src, prefix)
        if not os.path.isdir(here) or prefix == "final":
            if os.path.isdir(here):
                shutil.copytree(here, os.path.join(dst, prefix), dirs_exist_ok=True)
            continue
        if PhaseStore(here, {}).exists():  # a single point's plain directory
            target = os.path.join(dst, prefix, digest(PhaseStore(here, {}).read_meta()["fingerprint"]["phases"])[:12]) \
                if grid else os.path.join(dst, prefix)
            shutil.copytree(here, target)
        else:  # a grid's: one digest directory per point
            shutil.copytree(here, os.path.join(dst, prefix), dirs_exist_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="advjax.merge", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        rows = merge(args.runs, args.out)
    except ConfigError as e:
        print(f"advjax.merge: error: {e}", file=sys.stderr)
        return 2
    print(f"merged {len(args.runs)} runs, {len(rows)} rows -> {os.path.join(args.out, 'results.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
