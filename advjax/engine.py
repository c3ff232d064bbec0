"""`run_sweep`: a sweep from its config to its files. Plan it (`plan.make_plan`), check
everything before anything is written, lock --out, then run the width loop
(`widths.Sweep`) in the sweep's matmul precision.

From Python: `advjax.run_sweep(SweepConfig(...))` or `run_sweep({"dataset": ...})`
returns the rows of results.csv; `python -m advjax.sweep` is a thin CLI over it.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

import jax

from .memory import check_memory
from .options import as_config
from .plan import layout_of, make_plan, memory_view
from .results import columns_of, resume_state
from .rundir import RunLock, check_fresh, check_writable, entries, make_out, remove_stray_temporaries
from .runtime import compile_cache_dir, enable_compile_cache, matmul_precision, sync_processes
from .widths import Sweep

if TYPE_CHECKING:
    from .options import SweepConfig


def default_out(dataset: str) -> str:
    name = os.path.splitext(os.path.basename(dataset))[0]
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


class Rows(list):
    """The rows of results.csv (dicts), with where they are: `out`, the run directory,
    and `figure`, its summary.png (None if not drawn)."""

    out: str | None = None
    figure: str | None = None


def run_sweep(config: SweepConfig | dict, out: str | None = None) -> Rows:
    """Run a sweep and return the rows of results.csv (also written under `out`).

    `out=None` uses config.out, else a new directory runs/<dataset>-<time>.
    Everything is checked before anything is written: on bad input (ConfigError,
    DataError, CheckpointError) `out` is left as it was. A write that fails midway
    (disk full) raises WriteError and keeps the last complete files.
    """
    cfg = as_config(config).resolve()
    plan = make_plan(cfg, out or cfg.out or default_out(cfg.dataset))
    out, writer = plan.out, jax.process_index() == 0  # in a multi-process run, process 0 writes every file
    check_memory(memory_view(cfg), plan.dataset, plan.models[max(cfg.widths)], plan.x_batched, layout_of(cfg))
    lock = RunLock(out)
    if writer:
        check_writable(out)
        lock.probe()
    resuming = cfg.resume and os.path.isdir(out) and bool(entries(out))
    rows, width_stats = [], {}
    if resuming:
        expect = columns_of(plan.models[cfg.widths[0]], tuple(cfg.axes()))
        rows, width_stats = resume_state(cfg, plan.dataset.sha256, out, expect)
    elif writer:
        check_fresh(out)
    if cfg.adv_from:
        plan.check_adv_from({r["width"] for r in rows})
    cache_dir = enable_compile_cache(compile_cache_dir(cfg.compile_cache))
    sweep = Sweep(plan, writer, cache_dir)  # its progress lines (none with --quiet, or off process 0)
    sync_processes("advjax-out-checked")
    if writer:
        make_out(out)
        lock.acquire()
    try:
        if writer:
            if not resuming:
                check_fresh(out, meanwhile=True)  # another sweep started here since the check
            remove_stray_temporaries(out)
        with matmul_precision(cfg.matmul_precision):
            plan.draws  # noqa: B018 - the seeds' draws, made inside the precision context
            rows = Rows(sweep.run(rows, width_stats))
        rows.out = out
        if writer and cfg.figure:
            rows.figure = summary_figure(out)
        return rows
    finally:
        sweep.close()
        lock.release()


def summary_figure(out: str) -> str | None:
    """OUT/summary.png from the run's results.csv; a failure to draw only warns (the
    results are on disk already)."""
    from .figures import draw_summary, load_run

    try:
        return draw_summary(load_run(out), os.path.join(out, "summary.png"))
    except Exception as e:  # noqa: BLE001 - a picture must never cost the run
        print(f"advjax.sweep: warning: summary.png not drawn ({type(e).__name__}: {e})", file=sys.stderr)
        return None
