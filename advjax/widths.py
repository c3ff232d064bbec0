"""The width loop of a planned sweep: each width's experiments, rows and timings, and
its files (results.csv and manifest.json, rewritten whole after every width)."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time

import jax

from .experiments import prefix_name, run_points
from .memory import seeds_in_flight
from .plan import SweepPlan, checkpoint_dir, layout_of, memory_view, prefix_tag
from .progress import Progress
from .results import columns_of, parse_results, rows_to_csv, sign_width, write_atomic, write_manifest
from .rows import Point, point_rows, width_run
from .runtime import CACHE_EVENTS, peak_memory, versions
from .train import COMPACTION_STATS, COMPILE_STATS


class Sweep:
    """One planned sweep, running (`writer`: whether this process writes its files;
    `cache_dir`: the compilation cache in use, recorded in the manifest)."""

    def __init__(self, plan: SweepPlan, writer: bool, cache_dir: str | None):
        self.plan, self.writer, self.cache_dir = plan, writer, cache_dir
        self.progress = Progress(plan.cfg.quiet or not writer)
        self.columns = columns_of(plan.models[plan.widths[0]], tuple(plan.cfg.axes()))

    def close(self) -> None:
        self.progress.close()

    def manifest(self, width_stats: dict) -> dict:
        plan, cfg, ds = self.plan, self.plan.cfg, self.plan.dataset
        kept = sorted(plan.keep, key=len)
        return {
            "command": sys.argv if sys.argv and sys.argv[0].endswith("sweep.py") else None,
            "config": cfg.to_dict(),
            "dataset": {"name": ds.name, "n_features": ds.n_features, "n_classes": ds.n_classes,
                        "n_train": ds.n_train, "n_test": ds.n_test, "data_shared_by_seeds": not plan.x_batched,
                        "sha256": ds.sha256, **({"input_shape": list(ds.input_shape)} if ds.images else {})},
            "seeds": plan.seeds,
            "versions": versions(),
            "device": {"platform": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
            "layout": {"seed_groups": layout_of(cfg), "matmul_precision": cfg.matmul_precision},
            "compile_cache": self.cache_dir,
            "checkpoints": {f"p{w}": {prefix_name(p) + (f"/{prefix_tag(p)}" if plan.grid else ""):
                                      os.path.relpath(plan.checkpoint_dir(w, p), plan.out) for p in kept}
                            for w in plan.widths},
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "widths": width_stats,
        }

    def run(self, rows: list[dict], width_stats: dict) -> list[dict]:
        """Every width not in `rows` yet; each finished width is on disk before the next starts."""
        plan, out = self.plan, self.plan.out
        manifest = self.manifest(width_stats)
        if self.writer:
            write_manifest(out, manifest)
        finished = {r["width"] for r in rows}
        for width in (w for w in plan.widths if w not in finished):
            stats = width_stats[str(width)] = {}
            rows += self.width(width, stats)
            sign_width(stats, plan.cfg, plan.dataset.sha256, width, rows, self.columns)
            manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            manifest["peak_memory"] = peak_memory()
            if self.writer:
                write_atomic(os.path.join(out, "results.csv"), rows_to_csv(rows, self.columns))
                write_manifest(out, manifest)
                if not plan.cfg.keep_params:  # final params are summarized in the rows; Θ_adv stays
                    self.remove_finals(width)
        return parse_results(rows_to_csv(rows, self.columns))  # exactly what results.csv holds

    def width(self, width: int, stats: dict) -> list[dict]:
        """One width's rows: every experiment at every grid point; `stats` gets its timings."""
        plan = self.plan
        before = (COMPILE_STATS.seconds, COMPILE_STATS.hits, COMPACTION_STATS.relayouts, COMPACTION_STATS.repacks,
                  dict(CACHE_EVENTS))
        t0 = time.perf_counter()
        in_flight = seeds_in_flight(memory_view(plan.cfg), plan.models[width], plan.dataset, plan.x_batched)
        run = width_run(plan, width, in_flight, self.writer)
        run.progress = lambda label, cap: self.progress.phase(f"[{plan.dataset.name} p={width}] {label}", cap)
        stats["seeds_in_flight"] = in_flight
        keep_in = plan.out if plan.cfg.keep_params and self.writer else None
        rows = []
        for name, at_points in plan.experiments.items():
            for values, phases, outcomes in zip(plan.cfg.points(), at_points, run_points(at_points, run, name)):
                rows += point_rows(plan, run, in_flight, Point(width, name, values, phases), outcomes, keep_in)
            for prefix in [p for p in run.memo if p not in plan.keep]:
                del run.memo[prefix]  # only Θ_adv is needed again: bounded host memory
        compile_s = COMPILE_STATS.seconds - before[0]
        stats |= {
            "compile_seconds": round(compile_s, 3),
            "run_seconds": round(time.perf_counter() - t0 - compile_s, 3),
            "xla_compilations": CACHE_EVENTS["requests"] - before[4]["requests"],
            "xla_compilations_from_disk_cache": CACHE_EVENTS["hits"] - before[4]["hits"],
            "programs_reused_in_process": COMPILE_STATS.hits - before[1],
            "compactions": COMPACTION_STATS.relayouts - before[2],
            "repacks": COMPACTION_STATS.repacks - before[3],
        }
        if run.settings.tuner is not None:
            stats["group_tuning"] = run.settings.tuner.records
        return rows

    def remove_finals(self, width: int) -> None:
        """Every checkpoint of the width but the kept prefixes' (Θ_adv)."""
        plan = self.plan
        for phases in (ph for at_points in plan.experiments.values() for ph in at_points):
            for i in range(len(phases)):
                if phases[: i + 1] not in plan.keep:
                    shutil.rmtree(plan.checkpoint_dir(width, phases[: i + 1]), ignore_errors=True)
                    with contextlib.suppress(OSError):  # a grid's prefix directory, emptied
                        os.rmdir(checkpoint_dir(plan.out, width, phases[: i + 1]))
