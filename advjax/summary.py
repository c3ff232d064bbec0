"""The sweep's printed table and the summary rows that it, the report and the figures share."""

from __future__ import annotations

import numpy as np

from .options import GRID_AXES


def summary_rows(rows: list[dict]) -> list[dict]:
    """Per (width, experiment, grid point): test accuracy mean and std, median steps, the
    fraction converged in the last phase and in phase 1 (None where there is no phase 1)."""
    out = []
    axes = [a for a in GRID_AXES if rows and a in rows[0]]
    group = lambda r: (r["width"], r["experiment"], tuple(r[a] for a in axes))  # noqa: E731
    for key in dict.fromkeys(group(r) for r in rows):
        width, exp, values = key
        sel = [r for r in rows if group(r) == key]
        acc = np.array([float(r["test_acc"]) for r in sel])
        p1 = [r["phase1_converged"] for r in sel if r["phase1_converged"] is not None]
        out.append({"width": width, "experiment": exp, **dict(zip(axes, values)), "n": len(sel),
                    "test_acc_mean": float(acc.mean()),
                    "test_acc_std": float(acc.std()), "median_steps": float(np.median([r["steps"] for r in sel])),
                    "converged": float(np.mean([r["converged"] for r in sel])),
                    "phase1_converged": float(np.mean(p1)) if p1 else None})
    return out


def summary_table(rows: list[dict]) -> str:
    """width × experiment: test accuracy mean ± std, median steps, fraction converged."""
    axes = [a for a in GRID_AXES if rows and a in rows[0]]
    lines = [f"{'width':>6}  {'experiment':<20} " + "".join(f"{a:>17} " for a in axes)
             + f"{'test acc (mean ± std)':>22}  {'median steps':>12}  {'converged':>9}  {'phase 1 conv.':>13}"]
    for r in summary_rows(rows):
        p1s = f"{r['phase1_converged']:>13.0%}" if r["phase1_converged"] is not None else f"{'-':>13}"
        lines.append(f"{r['width']:>6}  {r['experiment']:<20} " + "".join(f"{r[a]:>17g} " for a in axes)
                     + f"{r['test_acc_mean']:>13.4f} ± {r['test_acc_std']:.4f}  "
                     f"{r['median_steps']:>12.0f}  {r['converged']:>9.0%}  {p1s}")
    return "\n".join(lines)
