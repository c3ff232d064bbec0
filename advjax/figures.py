"""The paper's figures and significance tests, drawn from sweep output directories.

    python -m advjax.figures RUN_DIR... --out figures/

Each RUN_DIR is the --out of a sweep (results.csv + manifest.json). For every run it
draws test accuracy vs width (mean ± 1 std, and median with interquartile range), steps
to zero training error vs width, and the paired differences between its experiments
(paired_<run>.png); from the runs it finds, it composes the paper's figures (1, 3, 4, 5,
6, and 2 where final parameters were kept with --keep-params). It writes
significance.csv: per run, width and grid point, paired tests of the experiments'
test accuracy (adversarial vs baseline, frozen vs adversarial, ...: `comparisons`).

A sweep that varied hyperparameters has a results.csv column per grid axis it varied
(`GRID_AXES`). Rows of different grid points are never pooled: statistics group rows by
(width, grid point), pairs are the same seed at the same point, the per-run figures have
a panel per point and the composites a line per point, and grid_<run>_<axis>.png draws
test accuracy against each axis.

A seed can stop short of its target in either phase, and the figures say which: above a
panel, "p1 k/n" means k of n seeds stopped phase 1 (fitting random labels) at its step
cap, "k/n" that k stopped the last phase at its cap (or diverged) before reaching its
target (`unconverged`). Statistics use every seed; points where some seed stopped short
have open markers. Steps to zero training error are censored at the cap: a seed that
never got there counts as at least the cap, drawn as ▲ on the dotted cap line, and a
median that rests on such seeds is only a lower bound, drawn as △.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import textwrap
from dataclasses import dataclass
from typing import NamedTuple

import jax
import numpy as np

from .checkpoint import final_path, restore_final
from .experiments import EXPERIMENT_SPECS
from .experiments import comparisons as registered_comparisons
from .measures import MEASURES as MEASURE_SPECS
from .model import model_from_options
from .options import GRID_AXES, ConfigError, OneLineParser
from .results import RunDirError, read_run
from .rundir import check_writable

PAPER = ("baseline", "adversarial", "frozen")  # the paper's colors: black, red, blue
# An experiment's colour, label and comparisons are its ExperimentSpec's (experiments.py);
# a measure's panel title is its MeasureSpec's (measures.py): one registry each.
# The hyperparameters a sweep can vary over a grid (options.GRID_AXES): results.csv has a
# column for each one it varied (more than one value), named so. What each is, in words:
AXIS_WORDS = {"lr": "learning rate", "phase1_lr": "phase-1 learning rate", "max_steps": "step cap per phase",
             "weight_decay": "weight decay", "momentum": "momentum", "shrink": "shrink factor",
             "perturb": "perturbation scale", "random_fraction": "random-label fraction",
             "phase1_target_acc": "phase-1 target training accuracy", "target_train_acc": "target training accuracy"}
LOG_AXES = ("lr", "phase1_lr", "max_steps", "weight_decay")  # grid axes that span decades: a log x scale


def color(exp: str) -> str:
    """An experiment's color: the paper's, or for per-layer experiments (freeze_k,
    reinit_k) a shade per layer k (greens for freeze, purples for reinit)."""
    if exp in EXPERIMENT_SPECS:
        return EXPERIMENT_SPECS[exp].color
    kind, _, k = exp.rpartition("_")
    shades = {"freeze": ("#238b45", "#41ab5d", "#74c476", "#a1d99b"), "reinit": ("#54278f", "#756bb1", "#9e9ac8",
                                                                                 "#bcbddc", "#dadaeb")}
    return shades[kind][(int(k) - 1) % len(shades[kind])] if kind in shades and k.isdigit() else "gray"


def label(exp: str) -> str:
    kind, _, k = exp.rpartition("_")
    if kind == "freeze" and k.isdigit():
        return f"Θ_adv, layers 1..{k} frozen"
    if kind == "reinit" and k.isdigit():
        return f"Θ_adv, layer {k} re-initialised"
    spec = EXPERIMENT_SPECS.get(exp)
    return spec.label or exp if spec else exp


def comparisons(experiments: list[str]) -> list[tuple[str, str]]:
    """The registered comparisons, and each per-layer experiment against adversarial (the same Θ_adv)."""
    per_layer = [(e, "adversarial") for e in experiments if e.rpartition("_")[0] in ("freeze", "reinit")]
    return [*registered_comparisons(), *per_layer]


# Measure columns in the order drawn -> what a panel of them is titled: words, and units.
# Measure columns in the order drawn (those registered later after them); each panel is
# titled by its MeasureSpec (words, and units).
MEASURE_ORDER = ("sharpness", "norm_total", "distance", "margin", "active_fraction", "boundary_length",
                 "linear_regions")


def drawn_measures() -> list[str]:
    """The measure columns a figure draws, in order: the built-in ones, then those registered."""
    return [*MEASURE_ORDER, *(m for m, spec in MEASURE_SPECS.items() if spec.title and m not in MEASURE_ORDER)]


TITLES = {"test_acc": "test accuracy", "steps": "steps to zero training error (last phase)"}


def title_of(column: str) -> str:
    """A results.csv column in words (TITLES), else its name."""
    spec = MEASURE_SPECS.get(column)
    return TITLES.get(column) or (spec.title if spec and spec.title else column)


@dataclass
class Run:
    path: str
    manifest: dict
    rows: list[dict]
    name: str | None = None  # set when two runs would share a label: the run directory's name

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def dataset(self) -> str:
        return self.manifest["dataset"]["name"]

    @property
    def label(self) -> str:
        """e.g. spirals, spirals-tmax6.28-fixed, mnist."""
        if self.name:
            return self.name
        c = self.config
        parts = [os.path.splitext(self.dataset)[0]]
        if self.dataset == "spirals" and abs(c["t_max"] - 10.0) > 1e-9:
            parts.append(f"tmax{c['t_max']:.2f}")
        if c.get("fix_data") and self.dataset != "mnist":
            parts.append("fixed")
        for key, short in (("momentum", "mom"), ("weight_decay", "wd")):  # a grid axis names its points instead
            if isinstance(c.get(key), (int, float)) and c[key]:
                parts.append(f"{short}{c[key]:g}")
        if c.get("model", "mlp") != "mlp":
            parts.append(c["model"])
        if c.get("depth", 1) != 1:
            parts.append(f"depth{c['depth']}")
        return "-".join(parts)

    @property
    def experiments(self) -> list[str]:
        """The run's experiments: the registered ones in their order, then the others
        (per-layer ones, e.g. freeze_2, reinit_3) in the order the run has them."""
        found = list(dict.fromkeys(r["experiment"] for r in self.rows))
        return [e for e in EXPERIMENT_SPECS if e in found] + [e for e in found if e not in EXPERIMENT_SPECS]

    @property
    def measured(self) -> list[str]:
        return [m for m in drawn_measures() if any(r.get(m) is not None for r in self.rows)]


class FigureError(ValueError):
    pass


def load_runs(paths: list[str]) -> list[Run]:
    """Runs drawn together, each with the label its figures and significance rows use:
    runs that differ in settings the label does not show are named by their directory."""
    runs = [load_run(p) for p in paths]
    labels = [r.label for r in runs]
    for r in runs:
        if labels.count(r.label) > 1:
            r.name = os.path.basename(os.path.normpath(r.path))
    if len({r.label for r in runs}) < len(runs):
        raise FigureError("two run directories have the same name and settings; give one another name")
    return runs


def load_run(path: str) -> Run:
    try:  # types, ranges and the manifest's fields checked; a config of an older version is not required
        manifest, _, rows = read_run(path, strict=False)
    except RunDirError as e:
        raise FigureError(f"{path}: not a sweep output directory ({e})") from None
    if not rows:
        raise FigureError(f"{path}: results.csv has no rows")
    return Run(path, manifest, rows)


def unconverged(row: dict, phase: str = "any") -> bool:
    """Whether a seed stopped short of its target in `phase`: "phase1" (phase1_converged
    false: phase 1 hit its step cap before fitting the random labels), "last" (converged
    false: the last phase hit its cap, or diverged, first) or "any" (either)."""
    first = row["phase1_converged"] is False
    last = not row["converged"] or bool(row["diverged"])
    return {"phase1": first, "last": last, "any": first or last}[phase]


def step_cap(run: Run, row: dict) -> float:
    """The last phase's step cap for a row: its grid point's max_steps, else the run's."""
    value = _axis_value(row.get("max_steps"))
    return float(run.config["max_steps"]) if value is None else value


# -- grid points ---------------------------------------------------------------------------------------

Point = tuple[tuple[str, float | None], ...]  # ((axis, value), ...) in GRID_AXES order; () off a grid


def _axis_value(v) -> float | None:
    """A grid axis's value as a number (results.csv's reader leaves columns it does not
    know as text); None where a row has no value (a merged run that did not vary it)."""
    return None if v is None or v == "" else float(v)


def axis_columns(rows: list[dict]) -> list[str]:
    """The grid axes the rows vary: the GRID_AXES columns with more than one value."""
    return [a for a in GRID_AXES if len({_axis_value(r.get(a)) for r in rows}) > 1]


def grid_point(row: dict, axes: list[str]) -> Point:
    return tuple((a, _axis_value(row.get(a))) for a in axes)


def _point_order(point: Point) -> tuple:
    return tuple((v is None, v or 0.0) for _, v in point)


def points(rows: list[dict]) -> list[Point]:
    """The rows' grid points in order ([()] for a run without grid axes)."""
    axes = axis_columns(rows)
    return sorted({grid_point(r, axes) for r in rows}, key=_point_order)


def point_text(point: Point) -> str:
    return ", ".join(f"{a} = {'-' if v is None else f'{v:g}'}" for a, v in point)


def row_point(row: dict) -> Point:
    """The grid point of a row of `significance` (it has the run's axis columns)."""
    return tuple((a, _axis_value(row[a])) for a in GRID_AXES if a in row)


def at_point(run: Run, point: Point) -> Run:
    """The run's rows at one grid point, as a run of its own (the same label)."""
    axes = [a for a, _ in point]
    return dataclasses.replace(run, rows=[r for r in run.rows if grid_point(r, axes) == point])


def first_point(run: Run) -> tuple[Run, str]:
    """A run at its first grid point, and where that is in words ("" off a grid): for
    figures that draw one setting per run (the composites, summary.png)."""
    pts = points(run.rows)
    return at_point(run, pts[0]), (f"{point_text(pts[0])}, the first of {len(pts)} grid points" if pts[0] else "")


def file_part(run: Run, point: Point) -> str:
    """The run's part of a file name: its label, then the grid point (e.g. spirals_lr0.01)."""
    return "_".join([run.label, *(f"{a}{'none' if v is None else f'{v:g}'}" for a, v in point)])


def by_width(rows: list[dict], experiment: str) -> dict[tuple[int, Point], list[dict]]:
    """An experiment's rows grouped by (width, grid point), in order of point, then
    width: the seeds of one setting, which statistics may pool."""
    axes = axis_columns(rows)
    out: dict[tuple[int, Point], list[dict]] = {}
    for r in rows:
        if r["experiment"] == experiment:
            out.setdefault((r["width"], grid_point(r, axes)), []).append(r)
    return dict(sorted(out.items(), key=lambda kv: (_point_order(kv[0][1]), kv[0][0])))


# -- statistics ----------------------------------------------------------------------------------------

def t_half_width(values: np.ndarray) -> float:
    """Half the width of the 95% confidence interval (Student's t) of the values' mean;
    NaN for fewer than two values."""
    from scipy import stats

    n = len(values)
    return float(stats.t.ppf(0.975, n - 1) * np.std(values, ddof=1) / np.sqrt(n)) if n > 1 else float("nan")


def paired_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired comparison of a and b (same seeds): mean difference a - b with its 95%
    confidence interval (Student's t), Cohen's d_z, the paired t-test's two-sided
    p-value and Wilcoxon's signed-rank p-value."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    sd = d.std(ddof=1) if n > 1 else float("nan")
    half = t_half_width(d)
    out = {"n": n, "mean_diff": float(d.mean()), "sd_diff": float(sd),
           "ci95_low": float(d.mean()) - half, "ci95_high": float(d.mean()) + half,
           "cohens_dz": float(d.mean() / sd) if sd > 0 else float("nan"),
           "t": float("nan"), "p_t": float("nan"), "p_wilcoxon": float("nan")}
    if n > 1 and sd > 0:
        t = stats.ttest_rel(a, b)
        out.update(t=float(t.statistic), p_t=float(t.pvalue))
    if n > 1 and np.any(d != 0):
        out["p_wilcoxon"] = float(stats.wilcoxon(a, b).pvalue)
    return out


def holm_families(runs: list[Run]) -> dict[str, str]:
    """The Holm family of each run's paired tests, named by the figure that stars them: one
    family per figure. Runs of one dataset at several depths share the depth figure's
    (depth_<dataset>.png, which draws them together); any other run has its own paired
    figure's (paired_<run>.png: every comparison, width and grid point of the run)."""
    if is_depth_study(runs):
        return {r.label: f"depth_{r.dataset}.png" for r in runs}
    return {r.label: f"paired_{r.label}.png" for r in runs}


def is_depth_study(runs: list[Run]) -> bool:
    """Whether the runs are one dataset at two depths or more (`depth_figure` draws them)."""
    return (len(runs) > 1 and len({r.config.get("depth", 1) for r in runs}) > 1
            and len({r.dataset for r in runs}) == 1)


def significance(runs: list[Run], families: dict[str, str] | None = None) -> list[dict]:
    """Per run, comparison, width and grid point: the paired test of test accuracy over
    the seeds both experiments ran there (`paired_test`), the point's axis values, and
    p_t_holm, Holm's correction over every test of the row's family (`holm_families`:
    one family per figure), named in holm_family with its size in holm_tests."""
    families = families or holm_families(runs)
    rows = []
    for run in runs:
        for first, second in comparisons(run.experiments):
            xa, xb = by_width(run.rows, first), by_width(run.rows, second)
            for width, point in [key for key in xa if key in xb]:
                ra = {r["seed"]: r for r in xa[width, point]}
                rb = {r["seed"]: r for r in xb[width, point]}
                seeds = sorted(set(ra) & set(rb))
                res = paired_test(np.array([ra[s]["test_acc"] for s in seeds]),
                                  np.array([rb[s]["test_acc"] for s in seeds]))
                rows.append({"run": run.label, "width": width, **dict(point), "comparison": f"{first} - {second}",
                             "unconverged_seeds": sum(unconverged(ra[s]) or unconverged(rb[s]) for s in seeds),
                             "phase1_unconverged_seeds": sum(unconverged(ra[s], "phase1") or
                                                             unconverged(rb[s], "phase1") for s in seeds),
                             "holm_family": families.get(run.label, f"paired_{run.label}.png"), **res})
    for name in dict.fromkeys(r["holm_family"] for r in rows):
        family = [r for r in rows if r["holm_family"] == name]
        for r, p in zip(family, holm([r["p_t"] for r in family])):
            r["p_t_holm"] = p
            r["holm_tests"] = sum(np.isfinite(q["p_t"]) for q in family)
    return rows


def holm(p_values: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down; NaNs stay NaN and are not counted)."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), np.nan)
    valid = np.flatnonzero(np.isfinite(p))
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (len(valid) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def write_significance(rows: list[dict], path: str) -> None:
    axes = [a for a in GRID_AXES if any(a in r for r in rows)]
    cols = ["run", "width", *axes, "comparison", "n", "mean_diff", "ci95_low", "ci95_high", "sd_diff", "cohens_dz",
            "t", "p_t", "p_t_holm", "holm_family", "holm_tests", "p_wilcoxon", "unconverged_seeds",
            "phase1_unconverged_seeds"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in cols})


def summary(runs: list[Run]) -> list[dict]:
    """Per run, grid point, width and experiment, what the figures draw and the text
    quotes: test accuracy (mean, std, median), the median steps of the last phase
    (censored at the cap, as drawn), the seeds stopped at a cap in the last phase
    (`capped`) and in phase 1 (`phase1_capped`), phase 1's median steps over the seeds
    that fitted their random labels and its mean fraction fitted, and the median of
    each measure the run has."""
    out = []
    for run in runs:
        for exp in run.experiments:
            for (width, point), rows in by_width(run.rows, exp).items():
                acc = np.array([r["test_acc"] for r in rows], float)
                steps, _ = _values(run, rows, "steps")
                fitted = [r["phase1_steps"] for r in rows if r["phase1_converged"]]
                fraction = [r["phase1_train_acc"] for r in rows if r["phase1_train_acc"] is not None]
                row = {"run": run.label, "width": width, **dict(point), "experiment": exp, "n": len(rows),
                       "test_acc_mean": float(acc.mean()), "test_acc_std": float(acc.std(ddof=1)) if len(acc) > 1
                       else float("nan"), "test_acc_median": float(np.median(acc)),
                       "steps_median": float(np.median(steps)), "capped": sum(unconverged(r, "last") for r in rows),
                       "phase1_capped": sum(unconverged(r, "phase1") for r in rows),
                       "phase1_steps_median": float(np.median(fitted)) if fitted else None,
                       "phase1_fit_mean": float(np.mean(fraction)) if fraction else None}
                for m in run.measured:
                    v, _ = _values(run, rows, m)
                    row[f"{m}_median"] = float(np.median(v)) if np.isfinite(v).any() else None
                out.append(row)
    return out


def write_summary(rows: list[dict], path: str) -> None:
    """summary.csv: `summary`'s rows, every column any row has (grid axes after the width)."""
    axes = [a for a in GRID_AXES if any(a in r for r in rows)]
    measures = [f"{m}_median" for m in drawn_measures() if any(f"{m}_median" in r for r in rows)]
    cols = ["run", "width", *axes, "experiment", "n", "test_acc_mean", "test_acc_std", "test_acc_median",
            "steps_median", "capped", "phase1_capped", "phase1_steps_median", "phase1_fit_mean", *measures]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r.get(k), float) else r.get(k, "")) for k in cols})


def significance_text(rows: list[dict]) -> str:
    grid = any(row_point(r) for r in rows)
    at = f" {'grid point':<24}" if grid else ""
    lines = [f"{'run':<24} {'width':>6}{at}  {'comparison':<24} {'mean diff':>9} {'95% CI':>19} {'d_z':>6} "
             f"{'p (t)':>9} {'Holm':>8} {'p (Wilcoxon)':>12}"]
    for r in rows:
        ci = f"[{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}]"
        at = f" {point_text(row_point(r)):<24}" if grid else ""
        lines.append(f"{r['run']:<24} {r['width']:>6}{at}  {r['comparison']:<24} {r['mean_diff']:>+9.4f} {ci:>19} "
                     f"{r['cohens_dz']:>6.2f} {r['p_t']:>9.2g} {r['p_t_holm']:>8.2g} {r['p_wilcoxon']:>12.2g}")
    return "\n".join(lines)


# -- drawing ---------------------------------------------------------------------------------------------

PANEL_INCHES = (4.6, 3.8)
LEGEND_INCHES = 1.0  # below the panels: the figure's legend and what its markers mean
STRIP_POINTS = 7.5  # height of one row of the capped-seed table above a panel
LINESTYLES = ("-", "--", ":", "-.")  # one per grid point of a run, where a panel draws several
CAP_NOTE = ("Open marker: some seeds stopped short of their target. The table above a panel (once per figure where "
            "the panels share their seeds): k/n seeds per experiment (■ in its color) and x that stopped the last "
            "phase at its step cap or diverged (last), or stopped phase 1 (random labels) at its cap (p1).")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _wrap(text: str, inches: float, fontsize: float) -> str:
    """Text wrapped to fit `inches` (a character is about 0.55 em wide)."""
    return textwrap.fill(text, max(20, int(inches * 72 / (0.55 * fontsize))))


def _subplots(n: int, columns: int = 4, inches: tuple[float, float] = PANEL_INCHES, **kw):
    """A figure with n panels, at most `columns` a row, room below for the legend; the
    panels left over in the last row are hidden."""
    plt = _plt()
    cols = min(columns, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(inches[0] * cols, inches[1] * rows + LEGEND_INCHES),
                             squeeze=False, layout="constrained", **kw)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return plt, fig, list(axes.flat)[:n]


def _title(ax, text: str, strip_lines: int = 0) -> None:
    """A panel's title, wrapped to the panel's width, above its lines of capped counts."""
    inches = ax.get_position().width * ax.figure.get_figwidth()
    ax.set_title(_wrap(text, inches, 10), fontsize=10, pad=6 + STRIP_POINTS * strip_lines + 2 * bool(strip_lines))


def _cap_strip(ax, lines: list[tuple[str, dict[float, list[dict]]]]) -> int:
    """Once per panel, a compact table above it of the seeds that stopped at a cap: a
    header of the x values where any did, then a row per experiment (■ in its color) and
    phase in which some seed did, "p1" for phase 1 (random labels) and "last" for the
    last phase (cap or divergence), cells k/n, in aligned columns. Laid out in points
    above the panel, so that it never moves with the panel's size. Returns its height in
    lines (rows + header; 0 for no table), for the title to sit above it."""
    rows = []
    for col, groups in lines:
        for phase, name in (("phase1", "p1"), ("last", "last")):
            counts = {x: sum(unconverged(r, phase) for r in g) for x, g in groups.items()}
            if any(counts.values()):
                rows.append((col, name, {x: f"{k}/{len(groups[x])}" for x, k in counts.items() if k}))
    if not rows:
        return 0
    xs = sorted({x for *_, cells in rows for x in cells})
    width = max(len(t) for t in [*(f"{x:g}" for x in xs), *(c for *_, cells in rows for c in cells.values())]) + 1
    lines_ = [("gray", "".ljust(7) + "".join(f"{x:g}".rjust(width) for x in xs))]
    lines_ += [(col, f"■ {name}".ljust(7) + "".join(cells.get(x, "").rjust(width) for x in xs))
               for col, name, cells in rows]
    for i, (col, text) in enumerate(lines_):
        ax.annotate(text, (0, 1), xycoords="axes fraction", xytext=(0, 3 + STRIP_POINTS * (len(lines_) - 1 - i)),
                    textcoords="offset points", ha="left", va="bottom", fontsize=6, family="monospace", color=col,
                    annotation_clip=False, gid="caps")
    return len(lines_)


def _ring(ax, x, y, col: str) -> None:
    """The open marker around a point where some seed stopped short of its target."""
    ax.plot([x], [y], marker="o", markersize=9, markerfacecolor="none", markeredgecolor=col, linestyle="none")


def _values(run: Run, rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """A metric's values over seeds and which of them are censored: steps to zero error
    of a seed that never reached its target in the last phase are at least the cap, and
    count as the cap. Missing (or non-finite) measures are left out."""
    if metric == "steps":
        censored = np.array([unconverged(r, "last") for r in rows])
        return np.array([step_cap(run, r) if c else r["steps"] for r, c in zip(rows, censored)], float), censored
    v = np.array([np.nan if r[metric] is None else float(r[metric]) for r in rows])
    v = v[np.isfinite(v)] if np.isfinite(v).any() else v
    return v, np.zeros(len(v), bool)


class Pen(NamedTuple):
    """How `_line` draws one experiment at one grid point: colour, legend name, line
    style, and `nudge`, a factor that shifts its step-cap markers sideways."""

    color: str
    name: str
    style: str
    nudge: float


def _line(ax, run: Run, metric: str, summary: str, at: dict[int, list[dict]], pen: Pen) -> None:
    """One experiment at one grid point: metric vs width. With censored steps, a mean
    over capped seeds, or a median resting on them, is a lower bound: △ instead of ●; ▲ on
    the cap marks the widths where seeds were capped, nudged sideways by `pen.nudge` so
    that experiments capped at the same width do not hide each other."""
    col, name, style, nudge = pen
    widths = np.array(list(at), float)
    mid, lo, hi, bound = [], [], [], []
    for rows in at.values():
        v, censored = _values(run, rows, metric)
        if summary == "mean":
            mid.append(v.mean())
            lo.append(v.mean() - v.std())
            hi.append(v.mean() + v.std())
        else:
            mid.append(np.median(v))
            lo.append(np.percentile(v, 25))
            hi.append(np.percentile(v, 75))
        bound.append(bool(censored.any()) if summary == "mean" else 2 * int(censored.sum()) >= len(v) > 0)
    mid, bound = np.array(mid), np.array(bound)
    ax.errorbar(widths, mid, yerr=[mid - lo, np.array(hi) - mid], color=col, label=name, capsize=3, marker="o",
                markersize=4, linewidth=1.2, linestyle=style, markevery=[not b for b in bound])
    if metric == "steps":
        capped = [(w, step_cap(run, rows[0])) for w, rows in at.items() if any(unconverged(r, "last") for r in rows)]
        if capped:
            ax.plot([w * nudge for w, _ in capped], [cap for _, cap in capped], marker="^", markersize=6, color=col,
                    linestyle="none", gid="censored")
        if bound.any():
            ax.plot(widths[bound], mid[bound], marker="^", markersize=9, markerfacecolor="white",
                    markeredgecolor=col, linestyle="none", gid="censored_summary")
        return
    for w, m, rows in zip(widths, mid, at.values()):
        if any(unconverged(r) for r in rows):
            _ring(ax, w, m, col)


def panel_metric(ax, run: Run, metric: str, summary: str, title: str | None = None,
                 experiments=PAPER, caps: bool = True) -> None:
    """One panel: metric vs width for each experiment, a line per grid point (line styles
    tell them apart). summary: 'mean' (± 1 std) or 'median' (with the interquartile
    range). Steps are censored at the step cap (see the module's docstring)."""
    strip = []
    for k, exp in enumerate(experiments):
        groups = by_width(run.rows, exp)
        for i, point in enumerate(dict.fromkeys(p for _, p in groups)):
            at = {w: g for (w, p), g in groups.items() if p == point}
            name = f"{label(exp)} ({point_text(point)})" if point else label(exp)
            _line(ax, run, metric, summary, at,
                  Pen(color(exp), name, LINESTYLES[i % len(LINESTYLES)], 1.04 ** (k - (len(experiments) - 1) / 2)))
            strip.append((color(exp), at))
    if metric == "steps" and any(unconverged(r, "last") for r in run.rows if r["experiment"] in experiments):
        for cap in sorted({step_cap(run, r) for r in run.rows}):
            ax.axhline(cap, color="gray", linestyle=":", linewidth=0.9, label="step cap (last phase)")
        ax.plot([], [], marker="^", markersize=6, color="gray", linestyle="none",
                label="seeds capped in the last phase: at least the cap")
        ax.plot([], [], marker="^", markersize=9, markerfacecolor="white", markeredgecolor="gray", linestyle="none",
                label="a summary resting on capped seeds: a lower bound")
    ax.set_xscale("log")
    _width_ticks(ax, [r["width"] for r in run.rows if r["experiment"] in experiments])
    if metric in ("steps", "sharpness", "linear_regions", "norm_total", "distance"):
        ax.set_yscale("log")
    ax.set_xlabel("width p")
    ax.set_ylabel(title_of(metric))
    n_seeds = len({r["seed"] for r in run.rows})
    _title(ax, title or f"{run.label} ({n_seeds} seeds)", _cap_strip(ax, strip) if caps else 0)
    ax.grid(alpha=0.3, which="both")


def _width_ticks(ax, widths) -> None:
    """Ticks at the widths run, as plain numbers, and no minor labels: matplotlib's own
    log ticks over less than a decade print 3×10¹4×10¹ over each other."""
    widths = sorted(set(widths))
    ax.set_xticks(widths, [f"{w:g}" for w in widths], fontsize=8)
    ax.set_xticks([], minor=True)


def _finish(plt, fig, suptitle: str, path: str, dpi: int, note: str = CAP_NOTE) -> str:
    """The figure's legend below the panels (each label once, what the markers mean as
    its title) and its title, both wrapped to the figure's width; saved and closed."""
    from matplotlib.container import Container

    handles: dict[str, object] = {}
    for ax in fig.axes:
        for handle, text in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(text, handle)
    handles = dict(sorted(handles.items(), key=lambda kv: not isinstance(kv[1], Container)))  # experiments first
    inches = fig.get_figwidth()
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8, frameon=False,
               ncol=max(1, min(len(handles), int(inches // 2.4))), title=_wrap(note, inches, 7), title_fontsize=7)
    fig.suptitle(_wrap(suptitle, inches, 10), fontsize=10)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _figure(panels: list[tuple[Run, str | None]], metric: str, summary: str, path: str, suptitle: str,
            sharey: bool = False) -> str:
    plt, fig, axes = _subplots(len(panels), sharey=sharey)
    for ax, (run, title) in zip(axes, panels):
        panel_metric(ax, run, metric, summary, title)
    if sharey:  # one y axis, labelled once
        for ax in axes[1:]:
            ax.set_ylabel("")
    return _finish(plt, fig, suptitle, path, dpi=120)


def _metrics_figure(run: Run, metrics: list[str], path: str, suptitle: str) -> str:
    """Every experiment of a run, one panel per metric (titled in words), median and IQR."""
    plt, fig, axes = _subplots(len(metrics))
    for i, (ax, metric) in enumerate(zip(axes, metrics)):  # the panels share their seeds: caps drawn once
        panel_metric(ax, run, metric, "median", title=title_of(metric), experiments=run.experiments, caps=i == 0)
        ax.set_ylabel("")  # the title names it
    return _finish(plt, fig, suptitle + ", median and IQR", path, dpi=110)


def panel_paired(ax, rows: list[dict]) -> None:
    """One comparison's rows of `significance`: the mean paired difference of test
    accuracy vs width with its 95% t-interval, a line per grid point (shifted a little
    apart), a zero line, ★ above the widths where Holm's correction leaves p < 0.05, and
    open markers where some seed of a pair stopped short of its target."""
    import matplotlib

    first, second = rows[0]["comparison"].split(" - ")
    pts = list(dict.fromkeys(row_point(r) for r in rows))
    for j, point in enumerate(pts):
        sel = [r for r in rows if row_point(r) == point]
        x = np.array([r["width"] for r in sel], float) * 1.06 ** (j - (len(pts) - 1) / 2)
        mid = np.array([r["mean_diff"] for r in sel])
        lo, hi = np.array([r["ci95_low"] for r in sel]), np.array([r["ci95_high"] for r in sel])
        col = color(first) if len(pts) == 1 else matplotlib.colormaps["viridis"](0.85 * j / (len(pts) - 1))
        ax.errorbar(x, mid, yerr=[mid - lo, hi - mid], color=col, marker="o", markersize=4, capsize=3,
                    label=point_text(point) or None, gid="paired")
        for xi, m, top, r in zip(x, mid, hi, sel):
            if r["p_t_holm"] < 0.05:
                ax.annotate("★", (xi, top if np.isfinite(top) else m), xytext=(0, 1), textcoords="offset points",
                            ha="center", va="bottom", fontsize=9, color=col, annotation_clip=False, gid="star")
            if r["unconverged_seeds"]:
                _ring(ax, xi, m, col)
    ax.axhline(0, color="gray", linewidth=0.8, linestyle="--")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.1 * (high - low))  # room for a star above the highest interval
    ax.set_xscale("log")
    _width_ticks(ax, [r["width"] for r in rows])
    ax.set_xlabel("width p")
    ax.set_ylabel("difference in test accuracy")
    _title(ax, f"{label(first)} − {label(second)}")
    ax.grid(alpha=0.3, which="both")


def paired_figure(run: Run, path: str, sig: list[dict] | None = None) -> str | None:
    """paired_<run>.png: a panel per comparison the run has (`comparisons`), the paired
    differences of significance.csv (`sig`, the rows of all the runs drawn together, so
    that the stars follow their Holm family), where the reader sees which are above zero."""
    sig = [r for r in (significance([run]) if sig is None else sig) if r["run"] == run.label]
    if not sig:
        return None
    by_comparison: dict[str, list[dict]] = {}
    for r in sig:
        by_comparison.setdefault(r["comparison"], []).append(r)
    plt, fig, axes = _subplots(len(by_comparison))
    for ax, rows in zip(axes, by_comparison.values()):
        panel_paired(ax, rows)
    n_seeds = len({r["seed"] for r in run.rows})
    return _finish(plt, fig, f"Paired differences of test accuracy (the same seeds, {n_seeds}), mean and 95% "
                   f"t-interval: {run.label}", path, dpi=110,
                   note=f"★: p < 0.05 after Holm's correction over the {family_text(sig)}. "
                        "Open marker: some seed of a pair stopped short of its target.")


def family_text(rows: list[dict]) -> str:
    """The Holm family of significance rows in words, e.g. "14 tests of paired_circles.png"."""
    return f"{rows[0]['holm_tests']} tests of the family {rows[0]['holm_family']}"


def _grid_scale(ax, axis: str, values: list[float]) -> None:
    """Log x for axes that span decades (symlog where one value is 0, e.g. no weight
    decay), linear for the others; ticks at the grid's values."""
    if axis in LOG_AXES:
        positive = [v for v in values if v > 0]
        if len(positive) == len(values):
            ax.set_xscale("log")
        else:
            ax.set_xscale("symlog", linthresh=min(positive, default=1.0))
    ax.set_xticks(values, [f"{v:g}" for v in values])
    ax.set_xticks([], minor=True)


def grid_figure(run: Run, axis: str, path: str) -> str:
    """grid_<run>_<axis>.png: test accuracy (mean and 95% t-interval over seeds) against
    one grid axis, a line per experiment; a panel per width and per point of the run's
    other grid axes. Open markers and counts above a panel where some seed stopped short."""
    others = [a for a in axis_columns(run.rows) if a != axis]
    rows = [r for r in run.rows if _axis_value(r.get(axis)) is not None]
    widths = sorted({r["width"] for r in rows})
    rests = sorted({grid_point(r, others) for r in rows}, key=_point_order)
    values = sorted({_axis_value(r[axis]) for r in rows})
    plt, fig, axes = _subplots(len(rests) * len(widths), columns=min(len(widths), 4), inches=(4.0, 3.4))
    for ax, (rest, width) in zip(axes, [(rest, w) for rest in rests for w in widths]):
        strip = []
        for exp in run.experiments:
            groups: dict[float, list[dict]] = {}
            for r in rows:
                if r["experiment"] == exp and r["width"] == width and grid_point(r, others) == rest:
                    groups.setdefault(_axis_value(r[axis]), []).append(r)
            if not groups:
                continue
            groups = dict(sorted(groups.items()))
            acc = [np.array([r["test_acc"] for r in g], float) for g in groups.values()]
            mid = np.array([a.mean() for a in acc])
            ax.errorbar(list(groups), mid, yerr=[t_half_width(a) for a in acc], color=color(exp), label=label(exp),
                        marker="o", markersize=4, capsize=3, linewidth=1.2)
            for x, m, g in zip(groups, mid, groups.values()):
                if any(unconverged(r) for r in g):
                    _ring(ax, x, m, color(exp))
            strip.append((color(exp), groups))
        _grid_scale(ax, axis, values)
        ax.set_xlabel(f"{AXIS_WORDS.get(axis, axis)} ({axis})")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        _title(ax, f"p = {width}" + (f", {point_text(rest)}" if rest else ""), _cap_strip(ax, strip))
    n_seeds = len({r["seed"] for r in rows})
    words = AXIS_WORDS.get(axis, axis)
    return _finish(plt, fig, f"Test accuracy vs {words}, mean and 95% t-interval over {n_seeds} seeds: {run.label}",
                   path, dpi=110)


def decision_boundaries(runs: list[Run], width: int, path: str, seed: int | None = None) -> str | None:
    """Fig. 2: the three experiments' learned functions at width p, rows = 2-D datasets,
    from the final parameters a sweep kept (--keep-params), through the model's apply."""
    found = []
    named = {r.label: r for r in runs}
    for run in (named[lb] for lb in ("gaussians", "circles", "spirals") if lb in named):
        if width not in {r["width"] for r in run.rows}:
            continue
        try:
            found.append((run, {e: restore_final(final_path(run.path, width, e)) for e in PAPER}))
        except (FileNotFoundError, ValueError, KeyError):
            continue
    if not found:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(found), 3, figsize=(11, 3.6 * len(found)), squeeze=False)
    for row, (run, by_exp) in zip(axes, found):
        for ax, exp in zip(row, PAPER):
            params, options, s, x, y = by_exp[exp]
            i = 0 if seed is None else s.index(seed)
            xi, yi = np.asarray(x[i] if x.ndim == 3 else x), np.asarray(y[i])
            lo, hi = xi.min(0) - 1, xi.max(0) + 1
            g0, g1 = np.meshgrid(np.linspace(lo[0], hi[0], 300), np.linspace(lo[1], hi[1], 300))
            grid = np.stack([g0.ravel(), g1.ravel()], 1).astype(np.float32)
            z = _logits(options, jax.tree.map(lambda a, i=i: a[i], params), grid).reshape(g0.shape)
            ax.contourf(g0, g1, z > 0, levels=[-0.5, 0.5, 1.5], colors=["#f3d6d6", "#d6dcf3"], alpha=0.8)
            ax.contour(g0, g1, z, levels=[0], colors="k", linewidths=0.8)
            ax.scatter(xi[:, 0], xi[:, 1], c=np.where(yi == 1, "navy", "darkred"), s=8)
            r = [q for q in run.rows if q["width"] == width and q["experiment"] == exp and q["seed"] == s[i]][0]
            capped = ", ".join(w for w, phase in (("phase 1 at its cap", "phase1"), ("last phase at its cap", "last"))
                               if unconverged(r, phase))
            ax.set_title(f"{run.label}: {label(exp)}\nseed {s[i]}, test acc {r['test_acc']:.3f}"
                         + (f"\nCAPPED: {capped}" if capped else ""), fontsize=9, color="darkred" if capped else "k")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Decision boundaries at p = {width}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _logits(model_options: dict, params: dict, x: np.ndarray) -> np.ndarray:
    """One seed's logit (binary tasks) on points x, through the model's own apply."""
    return np.asarray(model_from_options(model_options).apply(params, x))[:, 0]


SUMMARY_INCHES, SUMMARY_DPI = (10.0, 4.0), 100  # summary.png is 1000 x 400 pixels


def draw_summary(run: Run, path: str) -> str:
    """The picture every sweep leaves (OUT/summary.png): test accuracy (mean ± 1 std) and
    steps of the last phase (median and IQR) vs width, for each experiment it ran (at the
    first grid point of a sweep over a grid)."""
    run, where = first_point(run)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=SUMMARY_INCHES, layout="constrained")
    panel_metric(axes[0], run, "test_acc", "mean", "test accuracy, mean ± 1 std", run.experiments)
    panel_metric(axes[1], run, "steps", "median", "steps of the last phase, median and IQR", run.experiments)
    widths = sorted({r["width"] for r in run.rows})
    for ax in axes:  # the widths run, as plain numbers
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xticks([], minor=True)
    n_seeds = len({r["seed"] for r in run.rows})
    return _finish(plt, fig, f"{run.label}, {n_seeds} seeds" + (f", at {where}" if where else ""), path,
                   dpi=SUMMARY_DPI)


def _depth_accuracy_panel(ax, by_depth: dict[int, Run], width: int) -> None:
    """Depth figure (a): the paper's three experiments' test accuracy vs depth at one width."""
    depths, strip = sorted(by_depth), []
    for exp in PAPER:
        groups = {d: sel for d in depths
                  if (sel := [q for q in by_depth[d].rows if q["width"] == width and q["experiment"] == exp])}
        mids = [np.mean([q["test_acc"] for q in sel]) for sel in groups.values()]
        ax.errorbar(list(groups), mids, yerr=[np.std([q["test_acc"] for q in sel]) for sel in groups.values()],
                    color=color(exp), label=label(exp), marker="o", capsize=3)
        for d, m, sel in zip(groups, mids, groups.values()):
            if any(unconverged(q) for q in sel):
                _ring(ax, d, m, color(exp))
        strip.append((color(exp), groups))
    ax.set_xticks(depths)
    ax.set_xlabel("depth (hidden layers)")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"(a) p = {width}: test accuracy vs depth", fontsize=10, pad=8 + STRIP_POINTS * _cap_strip(ax, strip))


def _depth_layer_panel(ax, by_depth: dict[int, Run], width: int, kind: str, holm_p: dict) -> None:
    """Depth figure (b) (`kind` reinit: layer k re-initialised) or (c) (freeze: layers
    1..k frozen): the paired difference from the adversarial run vs k, a line per depth."""
    from matplotlib.ticker import MaxNLocator

    strip = []
    for d in sorted(by_depth):
        rows = [q for q in by_depth[d].rows if q["width"] == width]
        adv = {q["seed"]: q["test_acc"] for q in rows if q["experiment"] == "adversarial"}
        groups, mids, half, stars = {}, [], [], []
        for k in range(1, d + 2):
            sel = [q for q in rows if q["experiment"] == f"{kind}_{k}"]
            mine = {q["seed"]: q["test_acc"] for q in sel}
            seeds = sorted(set(mine) & set(adv))
            if len(seeds) < 2:
                continue
            diff = np.array([mine[s_] - adv[s_] for s_ in seeds])
            groups[k] = sel
            mids.append(diff.mean())
            half.append(t_half_width(diff))
            stars.append(holm_p.get((by_depth[d].label, width, f"{kind}_{k} - adversarial"), 1.0) < 0.05)
        if groups:
            line = ax.errorbar(list(groups), mids, yerr=half, marker="o", capsize=3, label=f"depth {d}")
            strip.append((line[0].get_color(), groups))
            for k, m, h, star in zip(groups, mids, half, stars):
                if star:
                    ax.annotate("★", (k, m + h), xytext=(0, 1), textcoords="offset points", ha="center",
                                va="bottom", fontsize=9, color=line[0].get_color(), annotation_clip=False, gid="star")
    ax.axhline(0, color="red", linewidth=0.8, linestyle="--")
    low, high = ax.get_ylim()
    ax.set_ylim(low, high + 0.1 * (high - low))  # room for a star above the highest interval
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("layer k (the last is the readout)" if kind == "reinit" else "k")
    ax.set_ylabel("test acc − adversarial's")
    what = "layer k re-initialised" if kind == "reinit" else "layers 1..k frozen"
    ax.set_title(f"({'b' if kind == 'reinit' else 'c'}) p = {width}: Θ_adv with {what}", fontsize=10,
                 pad=8 + STRIP_POINTS * _cap_strip(ax, strip))
    ax.legend(fontsize=7)


def depth_figure(runs: list[Run], path: str, sig: list[dict] | None = None) -> str | None:
    """Runs of one dataset at several depths (issue 12's science): per width, (a) test
    accuracy vs depth of the paper's three experiments, mean ± 1 std; (b) and (c) what
    re-initialising layer k, or freezing layers 1..k, of Θ_adv changes against the
    adversarial run (paired mean difference of test accuracy over seeds, ± its 95%
    confidence interval; ★ where Holm's correction over the figure's family, `sig`'s
    rows, leaves p < 0.05), one line per depth. A run with grid axes is drawn at its
    first grid point (the title says so)."""
    firsts = {r.config.get("depth", 1): first_point(r) for r in runs}
    by_depth = {d: run for d, (run, _) in firsts.items()}
    if len(by_depth) < 2 or len({r.dataset for r in runs}) > 1:
        return None
    sig = significance(runs) if sig is None else sig
    holm_p = {(r["run"], r["width"], r["comparison"]): r["p_t_holm"] for r in sig if not row_point(r)}
    widths = sorted(set.intersection(*({q["width"] for q in r.rows} for r in by_depth.values())))
    plt = _plt()
    fig, axes = plt.subplots(len(widths), 3, figsize=(14, 3.9 * len(widths)), squeeze=False)
    for row, width in zip(axes, widths):
        _depth_accuracy_panel(row[0], by_depth, width)
        for ax, kind in ((row[1], "reinit"), (row[2], "freeze")):
            _depth_layer_panel(ax, by_depth, width, kind, holm_p)
        row[0].legend(fontsize=7)
        for ax in row:
            ax.grid(alpha=0.3)
    name = next(iter(by_depth.values())).dataset
    wheres = [f"depth {d} at {where}" for d, (_, where) in sorted(firsts.items()) if where]
    family = family_text(sig) if sig else "paired tests"
    at = f"; {'; '.join(wheres)}" if wheres else ""
    fig.suptitle(_wrap(f"{name}: the adversarial gap and the layers that carry it, by depth (paired over seeds, "
                       f"95% CI; ★: Holm p < 0.05 over the {family}; open marker: some seeds stopped short; the "
                       f"table above a panel: k/n seeds capped in the last phase (last) or in phase 1 (p1)){at}", 14,
                       11), fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _paper_panels(run: Run, out: str) -> list[str]:
    """accuracy_<run>.png (mean and median) and steps_<run>.png: a panel per grid point."""
    panels = [(at_point(run, p), f"{run.label}, {point_text(p)}" if p else None) for p in points(run.rows)]
    return [
        _figure(panels, "test_acc", "mean", os.path.join(out, f"accuracy_{run.label}.png"),
                f"Test accuracy vs width, mean ± 1 std: {run.label}"),
        _figure(panels, "test_acc", "median", os.path.join(out, f"accuracy_median_{run.label}.png"),
                f"Test accuracy vs width, median and IQR: {run.label}"),
        _figure(panels, "steps", "median", os.path.join(out, f"steps_{run.label}.png"),
                f"Steps to zero training error (last phase), median and IQR: {run.label}"),
    ]


def draw_all(runs: list[Run], out: str, boundary_width: int = 500, composites: bool = True,
             sig: list[dict] | None = None) -> list[str]:
    os.makedirs(out, exist_ok=True)
    sig = significance(runs) if sig is None else sig  # one Holm family per figure, across the runs drawn
    made = []
    for run in runs:
        if set(run.experiments) & set(PAPER):
            made += _paper_panels(run, out)
        for point in points(run.rows):  # one figure per grid point: they have a panel per metric already
            at, name, where = at_point(run, point), file_part(run, point), f" ({point_text(point)})" if point else ""
            if set(run.experiments) - set(PAPER):
                made.append(_metrics_figure(at, ["test_acc", "steps"], os.path.join(out, f"experiments_{name}.png"),
                                            f"Test accuracy and steps of every experiment: {run.label}{where}"))
            if at.measured:
                made.append(_metrics_figure(at, at.measured, os.path.join(out, f"measures_{name}.png"),
                                            f"Measures of the final solutions: {run.label}{where}"))
        paired = paired_figure(run, os.path.join(out, f"paired_{run.label}.png"), sig)
        if paired:
            made.append(paired)
        made += [grid_figure(run, axis, os.path.join(out, f"grid_{run.label}_{axis}.png"))
                 for axis in axis_columns(run.rows)]
    depth = depth_figure(runs, os.path.join(out, f"depth_{runs[0].dataset}.png"), sig) if len(runs) > 1 else None
    if depth:
        made.append(depth)
    if not composites:
        return made
    named = {r.label: first_point(r) for r in runs}  # a composite draws one setting per run

    def panel(lb: str, title: str) -> tuple[Run, str]:
        run, where = named[lb]
        return run, f"{title}, at {where}" if where else title

    def pick(*labels: str, titles: tuple[str, ...] = ()):
        """The runs of a composite's panels, titled (default: by their labels) and lettered
        as in the paper where the figure has several panels."""
        lettered = sum(lb in named for lb in labels) > 1
        return [panel(lb, f"({chr(97 + i)}) {title}" if lettered else title)
                for i, (lb, title) in enumerate(zip(labels, titles or labels)) if lb in named]

    compositions = [
        ("fig1.png", pick("gaussians", "spirals", "mnist", titles=("gaussians", "spirals, t ≤ 10", "mnist")),
         "test_acc", "mean",
         "Fig. 1: test accuracy for different initializations, mean ± 1 std"),
        ("fig3.png", pick("gaussians", "circles", "spirals", "mnist",
                          titles=("gaussians", "circles", "spirals, t ≤ 10", "mnist")), "steps", "median",
         "Fig. 3: steps to zero training error (last phase), median and IQR"),
        ("fig4.png", pick("circles"), "test_acc", "mean", "Fig. 4: concentric circles, mean ± 1 std"),
        ("fig5.png", pick("spirals"), "test_acc", "median", "Fig. 5: spirals (t ≤ 10), median and IQR"),
        ("fig6.png", pick("spirals-tmax6.28", "spirals-tmax6.28-fixed",
                          titles=("data redrawn per seed", "one fixed data draw")),
         "test_acc", "mean", "Fig. 6: spirals, t ≤ 2π, mean ± 1 std"),
    ]
    for name, panels, metric, summary, title in compositions:
        if panels:
            made.append(_figure(panels, metric, summary, os.path.join(out, name), title, sharey=name == "fig6.png"))
    fig2 = decision_boundaries(runs, boundary_width, os.path.join(out, "fig2.png"))
    if fig2:
        made.append(fig2)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="advjax.figures", description="Draw the paper's figures from sweep outputs.")
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", default="figures", help="directory for the PNGs and significance.csv")
    ap.add_argument("--boundary-width", type=int, default=500, help="width of Fig. 2's decision boundaries")
    ap.add_argument("--no-composites", dest="composites", action="store_false",
                    help="only the per-run figures, not the paper's fig1-fig6 (e.g. for runs of other experiments)")
    args = ap.parse_args(argv)
    try:
        runs = load_runs(args.runs)
        check_writable(args.out)  # a directory, or a path that can become one
    except (FigureError, ConfigError) as e:
        print(f"advjax.figures: error: {e}", file=sys.stderr)
        return 2
    try:
        sig = significance(runs)
        made = draw_all(runs, args.out, args.boundary_width, args.composites, sig)
        write_significance(sig, os.path.join(args.out, "significance.csv"))
        write_summary(summary(runs), os.path.join(args.out, "summary.csv"))
    except OSError as e:  # --out under a file, read-only, full
        print(f"advjax.figures: error: --out: cannot write in {args.out} ({e.strerror or type(e).__name__})",
              file=sys.stderr)
        return 2
    print(significance_text(sig))
    for path in made:
        print(f"wrote {path}")
    print(f"wrote {os.path.join(args.out, 'significance.csv')}")
    print(f"wrote {os.path.join(args.out, 'summary.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
