"""Join run directories that split one sweep (e.g. by width, one SLURM array task each).

    python -m advjax.merge RUN_DIR... --out MERGED

The runs must be the same sweep in everything that determines results (dataset, seeds,
experiments, training settings) except their widths, which must not overlap. The merged
directory has one results.csv (rows ordered by width), one manifest.json whose config
lists every width, and each run's checkpoints (so --adv-from works on it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from .options import ConfigError
from .results import config_of, read_manifest, read_results, rows_to_csv, write_atomic, write_manifest
from .rundir import check_writable


def merge(run_dirs: list[str], out: str) -> list[dict]:
    runs = []
    for d in run_dirs:
        try:
            manifest = read_manifest(d)
            rows = read_results(os.path.join(d, "results.csv"))
            cfg = config_of(manifest)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError("RUN_DIR", f"{d} is not a finished sweep directory ({type(e).__name__})") from None
        runs.append((d, manifest, cfg, rows))
    first_dir, _, first_cfg, _ = runs[0]
    reference = {k: v for k, v in first_cfg.results_config().items() if k != "widths"}
    seen: dict[int, str] = {}
    for d, _, cfg, rows in runs:
        mine = {k: v for k, v in cfg.results_config().items() if k != "widths"}
        diff = [k for k in reference if reference[k] != mine[k]]
        if diff:
            raise ConfigError("RUN_DIR", f"{d} is not the same sweep as {first_dir}: it differs in "
                              + ", ".join(f"--{k.replace('_', '-')} ({reference[k]!r} vs {mine[k]!r})" for k in diff))
        done = {r["width"] for r in rows}
        if done != set(cfg.widths):
            raise ConfigError("RUN_DIR", f"{d} is unfinished: widths {sorted(set(cfg.widths) - done)} have no rows")
        for w in done:
            if w in seen:
                raise ConfigError("RUN_DIR", f"width {w} is in both {seen[w]} and {d}")
            seen[w] = d
    check_writable(out)
    if os.path.isdir(out) and os.listdir(out):
        raise ConfigError("--out", f"{out} exists and is not empty")
    os.makedirs(out, exist_ok=True)
    widths = sorted(seen)
    rows = [r for w in widths for _, _, _, rs in runs for r in rs if r["width"] == w]
    for w in widths:
        src = os.path.join(seen[w], "checkpoints", f"p{w}")
        if os.path.isdir(src):
            shutil.copytree(src, os.path.join(out, "checkpoints", f"p{w}"))
    manifest = dict(runs[0][1])
    manifest["config"] = {**manifest["config"], "widths": widths, "out": out}
    manifest["widths"] = {str(w): m["widths"].get(str(w), {}) for w in widths
                          for d, m, _, _ in runs if d == seen[w]}
    manifest["merged_from"] = [os.path.abspath(d) for d in run_dirs]
    write_atomic(os.path.join(out, "results.csv"), rows_to_csv(rows))
    write_manifest(out, manifest)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="advjax.merge", description=__doc__.split("\n")[0])
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
