"""One self-contained HTML page about one or more sweeps, to open offline in a browser.

    python -m advjax.report RUN_DIR... [--out report.html]

Per run directory, side by side: the command and the manifest's facts (versions,
device, wall and compile times, memory), the summary table, the paired significance
tests, the accuracy and steps figure, phase 1's convergence per width, and for 2-D data
run with --keep-params the decision boundaries of one seed. Images are embedded as
data URIs and the styles inline: the page needs nothing but itself.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import html
import os
import sys
import tempfile

from .figures import (
    FigureError,
    Run,
    at_point,
    decision_boundaries,
    draw_summary,
    family_text,
    load_run,
    point_text,
    points,
    row_point,
    significance,
)
from .options import BY_NAME, OneLineParser

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.runs { display: flex; flex-wrap: wrap; gap: 2em; }
.run { flex: 1 1 560px; min-width: 480px; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.2em 0.6em; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
code { background: #f4f4f4; padding: 0.1em 0.3em; word-break: break-all; }
img { max-width: 100%; }
.note { color: #666; font-size: 0.85em; }
"""


def _esc(v) -> str:
    return html.escape("" if v is None else str(v))


def _table(header: list[str], rows: list[list], left: int = 1) -> str:
    cls = lambda i: ' class="l"' if i < left else ""  # noqa: E731
    head = "".join(f"<th{cls(i)}>{_esc(h)}</th>" for i, h in enumerate(header))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{_esc(c)}</td>" for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _png(path: str | None) -> str:
    if not path:
        return ""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode()
    return f'<img alt="{_esc(os.path.basename(path))}" src="data:image/png;base64,{data}">'


def command(run: Run) -> str:
    """The command that made the run: as typed if the manifest has it, else rebuilt
    from the options that differ from their defaults."""
    typed = run.manifest.get("command")
    if typed:
        return "python -m advjax.sweep " + " ".join(typed[1:])
    parts = ["python -m advjax.sweep"]
    for name, value in run.config.items():
        opt = BY_NAME.get(name)
        if opt is None or (opt.runtime and name != "out") or value is None or value == opt.default:
            continue
        if isinstance(value, bool):
            parts.append(opt.flag if value else f"--no-{opt.flag[2:]}")
        else:
            parts.append(f"{opt.flag} {','.join(map(str, value)) if isinstance(value, list) else value}")
    return " ".join(parts)


def _facts(run: Run) -> str:
    m = run.manifest
    versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
    device = m.get("device", {})
    widths = m.get("widths", {})
    timing = [[w, s.get("seeds_in_flight", ""), s.get("compile_seconds", ""), s.get("run_seconds", "")]
              for w, s in widths.items()]
    mem = m.get("peak_memory", {}).get("host_peak_rss_bytes")
    ds = m.get("dataset", {})
    lines = [
        f"<p><code>{_esc(command(run))}</code></p>",
        _table(["fact", "value"], [
            ["data", f"{ds.get('name')}: {ds.get('n_train')} training, {ds.get('n_test')} test points, "
                     f"{ds.get('n_features')} features, {ds.get('n_classes')} classes"],
            ["seeds", f"{len(m.get('seeds', []))} ({m['seeds'][0]}..{m['seeds'][-1]})" if m.get("seeds") else ""],
            ["device", f"{device.get('platform', '')}: {', '.join(device.get('devices', []))}"],
            ["versions", versions],
            ["started / finished", f"{m.get('started', '')} / {m.get('finished', '')}"],
            ["peak host memory", f"{mem / 2**30:.2f} GB" if mem else ""],
        ], left=2),
        _table(["width", "seeds in flight", "compile s", "run s"], timing, left=0) if timing else "",
    ]
    return "".join(lines)


def _grid(run: Run) -> tuple[list[str], list[tuple[list[str], Run]]]:
    """The run at each of its grid points, so that tables never pool them: a leading
    column's header, and per point that column's cell (no column without grid axes)."""
    pts = points(run.rows)
    return (["grid point"] if pts[0] else []), [([point_text(p)] if p else [], at_point(run, p)) for p in pts]


def _summary(run: Run) -> str:
    from .summary import summary_rows

    grid, at_points = _grid(run)
    rows = [[*where, r["width"], r["experiment"], r["n"], f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f}",
             f"{r['median_steps']:.0f}", f"{r['converged']:.0%}",
             "-" if r["phase1_converged"] is None else f"{r['phase1_converged']:.0%}"]
            for where, at in at_points for r in summary_rows(at.rows)]
    return _table([*grid, "width", "experiment", "seeds", "test acc (mean ± std)", "median steps", "converged",
                   "phase 1 conv."], rows, left=2 + len(grid))


def _significance(run: Run) -> str:
    sig = significance([run])
    grid = any(row_point(r) for r in sig)
    rows = [[*([point_text(row_point(r))] if grid else []), r["width"], r["comparison"], r["n"],
             f"{r['mean_diff']:+.4f}", f"[{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}]", f"{r['cohens_dz']:.2f}",
             f"{r['p_t']:.2g}", f"{r['p_t_holm']:.2g}", f"{r['p_wilcoxon']:.2g}", r["unconverged_seeds"]] for r in sig]
    if not rows:
        return '<p class="note">No pair of experiments to compare.</p>'
    return _table([*(["grid point"] if grid else []), "width", "comparison", "n", "mean diff", "95% CI", "d_z",
                   "p (t)", f"p (t), Holm over the {family_text(sig)}", "p (Wilcoxon)",
                   "unconverged seeds"], rows, left=2 + int(grid))


def _phase1(run: Run) -> str:
    rows = []
    grid, at_points = _grid(run)
    for where, at in at_points:
        for width in sorted({r["width"] for r in at.rows}):
            sel = [r for r in at.rows if r["width"] == width and r["phase1_converged"] is not None]
            seeds = {r["seed"]: r for r in sel}  # phase 1 is shared by the experiments of a seed
            if not seeds:
                continue
            steps = sorted(r["phase1_steps"] for r in seeds.values())
            fitted = [r["phase1_train_acc"] for r in seeds.values() if r["phase1_train_acc"] is not None]
            rows.append([*where, width, f"{sum(r['phase1_converged'] for r in seeds.values())}/{len(seeds)}",
                         steps[len(steps) // 2], f"{min(fitted):.3f}" if fitted else ""])
    if not rows:
        return '<p class="note">No experiment of this run trains on random labels.</p>'
    return _table([*grid, "width", "seeds fitting y_rand", "median phase-1 steps", "least fraction of y_rand fitted"],
                  rows, left=len(grid))


def run_section(run: Run, tmp: str) -> str:
    figure = draw_summary(run, os.path.join(tmp, f"summary-{id(run)}.png"))
    boundaries = None
    if run.config.get("keep_params") and run.manifest.get("dataset", {}).get("n_features") == 2:
        boundaries = decision_boundaries([run], max(r["width"] for r in run.rows),
                                         os.path.join(tmp, f"boundaries-{id(run)}.png"))
    parts = [
        f"<h2>{_esc(run.label)}</h2><p class=\"note\">{_esc(os.path.abspath(run.path))}</p>",
        _facts(run),
        "<h3>Summary</h3>", _summary(run),
        "<h3>Accuracy and steps</h3>", _png(figure),
        "<h3>Paired tests (test accuracy)</h3>", _significance(run),
        "<h3>Phase 1 (random labels): convergence per width</h3>", _phase1(run),
    ]
    if boundaries:
        parts += ["<h3>Decision boundaries</h3>", _png(boundaries)]
    return f'<section class="run">{"".join(parts)}</section>'


def write_report(run_dirs: list[str], out: str) -> str:
    runs = [load_run(d) for d in run_dirs]
    with tempfile.TemporaryDirectory() as tmp:
        sections = "".join(run_section(run, tmp) for run in runs)
    title = "advjax report: " + ", ".join(r.label for r in runs)
    page = (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_esc(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{_esc(title)}</h1>"
            "<p class=\"note\">Open markers in the figures: some seeds stopped short of their target; the table "
            "above a panel: k/n seeds stopped the last phase at its step cap or diverged (last), or phase 1 (p1). "
            "Paired tests compare the same seeds' test accuracy between two experiments.</p>"
            f"<div class=\"runs\">{sections}</div></body></html>\n")
    if os.path.isdir(out):
        raise IsADirectoryError(errno.EISDIR, "a directory: give a file name", out)
    tmp_out = f"{out}.tmp{os.getpid()}"
    try:
        with open(tmp_out, "w", encoding="utf-8") as f:
            f.write(page)
        os.replace(tmp_out, out)
    except BaseException:  # nothing left behind on a failed write
        with contextlib.suppress(OSError):
            os.unlink(tmp_out)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="advjax.report", description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", default="report.html", help="the HTML file to write (default report.html)")
    args = ap.parse_args(argv)
    try:
        path = write_report(args.runs, args.out)
    except FigureError as e:
        print(f"advjax.report: error: RUN_DIR: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"advjax.report: error: --out: cannot write {args.out} ({e.strerror or type(e).__name__})",
              file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
