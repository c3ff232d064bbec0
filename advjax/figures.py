"""The paper's figures and significance tests, drawn from sweep output directories.

    python -m advjax.figures RUN_DIR... --out figures/

Each RUN_DIR is the --out of a sweep (results.csv + manifest.json). For every run it
draws test accuracy vs width (mean ± 1 std, and median with interquartile range) and
steps to zero training error vs width; from the runs it finds, it composes the paper's
figures (1, 3, 4, 5, 6, and 2 where final parameters were kept with --keep-params).
It writes significance.csv: per dataset and width, paired tests of adversarial vs
baseline and frozen vs adversarial test accuracy.

A seed counts as unconverged in an experiment when any of its phases stopped at the
step cap (or diverged). Statistics use every seed; widths where some seeds did not
converge are drawn with open markers and the count is written next to the point.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from dataclasses import dataclass

import jax
import numpy as np

from .checkpoint import final_path, restore_final
from .model import model_from_options
from .results import read_manifest, read_results

PAPER = ("baseline", "adversarial", "frozen")  # the paper's colors: black, red, blue
COLORS = {"baseline": "black", "adversarial": "red", "frozen": "blue",
          "norm_matched_layer": "tab:green", "norm_matched_global": "tab:olive", "shrink_perturb": "tab:orange",
          "random_features": "tab:purple", "teacher_features": "tab:cyan", "orthogonal_features": "tab:brown"}
LABELS = {"baseline": "1: baseline", "adversarial": "2: adversarial", "frozen": "3: frozen features",
          "norm_matched_layer": "θ0 at Θ_adv's norm (per layer)", "norm_matched_global": "θ0 at Θ_adv's norm (whole)",
          "shrink_perturb": "shrink-perturb Θ_adv", "random_features": "random features (θ0's)",
          "teacher_features": "teacher features", "orthogonal_features": "features orthogonal to the teacher"}
COMPARISONS = (("adversarial", "baseline"), ("frozen", "adversarial"), ("norm_matched_layer", "baseline"),
               ("norm_matched_global", "baseline"), ("shrink_perturb", "adversarial"),
               ("random_features", "frozen"), ("teacher_features", "random_features"),
               ("orthogonal_features", "random_features"))


def color(exp: str) -> str:
    """An experiment's color: the paper's, or for per-layer experiments (freeze_k,
    reinit_k) a shade per layer k (greens for freeze, purples for reinit)."""
    if exp in COLORS:
        return COLORS[exp]
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
    return LABELS.get(exp, exp)


def comparisons(experiments: list[str]) -> list[tuple[str, str]]:
    """COMPARISONS, and each per-layer experiment against adversarial (the same Θ_adv)."""
    per_layer = [(e, "adversarial") for e in experiments if e.rpartition("_")[0] in ("freeze", "reinit")]
    return [*COMPARISONS, *per_layer]


MEASURES = {"sharpness": "sharpness (top Hessian eigenvalue)", "norm_total": "parameter norm",
            "distance": "distance from the phase's start", "margin": "min training margin",
            "active_fraction": "fraction of active ReLUs", "boundary_length": "decision boundary length",
            "linear_regions": "linear regions met (grid)"}


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
        if c.get("momentum"):
            parts.append(f"mom{c['momentum']:g}")
        if c.get("weight_decay"):
            parts.append(f"wd{c['weight_decay']:g}")
        if c.get("model", "mlp") != "mlp":
            parts.append(c["model"])
        if c.get("depth", 1) != 1:
            parts.append(f"depth{c['depth']}")
        return "-".join(parts)

    @property
    def experiments(self) -> list[str]:
        """The run's experiments: the known ones in COLORS's order, then the others
        (per-layer ones, e.g. freeze_2, reinit_3) in the order the run has them."""
        found = list(dict.fromkeys(r["experiment"] for r in self.rows))
        return [e for e in COLORS if e in found] + [e for e in found if e not in COLORS]

    @property
    def measured(self) -> list[str]:
        return [m for m in MEASURES if any(r.get(m) is not None for r in self.rows)]


class FigureError(ValueError):
    pass


def load_run(path: str) -> Run:
    try:
        manifest = read_manifest(path)
        rows = read_results(os.path.join(path, "results.csv"))
    except (OSError, ValueError) as e:
        raise FigureError(f"{path}: not a sweep output directory ({e})") from None
    if not rows:
        raise FigureError(f"{path}: results.csv has no rows")
    return Run(path, manifest, rows)


def unconverged(row: dict) -> bool:
    return (not row["converged"]) or row["diverged"] or row["phase1_converged"] is False


def by_width(rows: list[dict], experiment: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for r in rows:
        if r["experiment"] == experiment:
            out.setdefault(r["width"], []).append(r)
    return dict(sorted(out.items()))


# -- statistics ----------------------------------------------------------------------------------------

def paired_test(a: np.ndarray, b: np.ndarray) -> dict:
    """Paired comparison of a and b (same seeds): mean difference a - b with its 95%
    confidence interval (Student's t), Cohen's d_z, the paired t-test's two-sided
    p-value and Wilcoxon's signed-rank p-value."""
    from scipy import stats

    d = np.asarray(a, float) - np.asarray(b, float)
    n = len(d)
    sd = d.std(ddof=1) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
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


def significance(runs: list[Run]) -> list[dict]:
    rows = []
    for run in runs:
        for first, second in comparisons(run.experiments):
            xa, xb = by_width(run.rows, first), by_width(run.rows, second)
            for width in sorted(set(xa) & set(xb)):
                ra = {r["seed"]: r for r in xa[width]}
                rb = {r["seed"]: r for r in xb[width]}
                seeds = sorted(set(ra) & set(rb))
                res = paired_test(np.array([ra[s]["test_acc"] for s in seeds]),
                                  np.array([rb[s]["test_acc"] for s in seeds]))
                rows.append({"run": run.label, "width": width, "comparison": f"{first} - {second}",
                             "unconverged_seeds": sum(unconverged(ra[s]) or unconverged(rb[s]) for s in seeds),
                             **res})
    # Holm's correction of the t-test across the widths of one comparison in one run (a panel)
    for key in dict.fromkeys((r["run"], r["comparison"]) for r in rows):
        panel = [r for r in rows if (r["run"], r["comparison"]) == key]
        for r, p in zip(panel, holm([r["p_t"] for r in panel])):
            r["p_t_holm"] = p
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
    cols = ["run", "width", "comparison", "n", "mean_diff", "ci95_low", "ci95_high", "sd_diff", "cohens_dz", "t",
            "p_t", "p_t_holm", "p_wilcoxon", "unconverged_seeds"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in cols})


def significance_text(rows: list[dict]) -> str:
    lines = [f"{'run':<24} {'width':>6}  {'comparison':<24} {'mean diff':>9} {'95% CI':>19} {'d_z':>6} {'p (t)':>9} "
             f"{'Holm':>8} {'p (Wilcoxon)':>12}"]
    for r in rows:
        ci = f"[{r['ci95_low']:+.4f}, {r['ci95_high']:+.4f}]"
        lines.append(f"{r['run']:<24} {r['width']:>6}  {r['comparison']:<24} {r['mean_diff']:>+9.4f} {ci:>19} "
                     f"{r['cohens_dz']:>6.2f} {r['p_t']:>9.2g} {r['p_t_holm']:>8.2g} {r['p_wilcoxon']:>12.2g}")
    return "\n".join(lines)


# -- drawing ---------------------------------------------------------------------------------------------

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def panel_metric(ax, run: Run, metric: str, summary: str, title: str | None = None,
                 experiments=PAPER) -> None:
    """One panel: metric vs width for each experiment. summary: 'mean' (± 1 std) or
    'median' (with the interquartile range)."""
    for exp in experiments:
        groups = by_width(run.rows, exp)
        if not groups:
            continue
        widths = np.array(list(groups))
        vals = [np.array([float(r[metric]) if r[metric] is not None else np.nan for r in g]) for g in groups.values()]
        vals = [v[np.isfinite(v)] if np.isfinite(v).any() else v for v in vals]
        if summary == "mean":
            mid = np.array([v.mean() for v in vals])
            lo, hi = mid - [v.std() for v in vals], mid + [v.std() for v in vals]
        else:
            mid = np.array([np.median(v) for v in vals])
            lo, hi = np.array([np.percentile(v, 25) for v in vals]), np.array([np.percentile(v, 75) for v in vals])
        bad = np.array([sum(unconverged(r) for r in g) for g in groups.values()])
        ax.errorbar(widths, mid, yerr=[mid - lo, hi - mid], color=color(exp), label=label(exp), capsize=3,
                    marker="o", markersize=4, linewidth=1.2)
        for w, m, b, g in zip(widths, mid, bad, groups.values()):
            if b:  # open marker and count: some seeds stopped at the step cap
                ax.plot([w], [m], marker="o", markersize=9, markerfacecolor="none", markeredgecolor=color(exp))
                ax.annotate(f"{b}/{len(g)}", (w, m), textcoords="offset points", xytext=(5, 4), fontsize=7,
                            color=color(exp))
    ax.set_xscale("log")
    if metric in ("steps", "sharpness", "linear_regions", "norm_total", "distance"):
        ax.set_yscale("log")
    ax.set_xlabel("width p")
    ax.set_ylabel({"test_acc": "test accuracy", "steps": "steps to zero training error", **MEASURES}[metric])
    n_seeds = len({r["seed"] for r in run.rows})
    ax.set_title(title or f"{run.label} ({n_seeds} seeds)", fontsize=10)
    ax.grid(alpha=0.3, which="both")


def _figure(panels, metric, summary, path, suptitle):
    plt = _plt()
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (run, title) in zip(axes[0], panels):
        panel_metric(ax, run, metric, summary, title)
    return _finish(plt, fig, axes, suptitle, path, dpi=120)


def _finish(plt, fig, axes, suptitle: str, path: str, dpi: int) -> str:
    """Legend in the first panel, the cap note in the title, saved and closed."""
    axes[0][0].legend(fontsize=8, loc="best")
    fig.suptitle(suptitle + "  (open marker k/n: k of n seeds stopped at the step cap)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _grid_figure(run: Run, metrics: list[str], path: str, suptitle: str) -> str:
    """Every experiment of a run, one panel per metric, median and IQR."""
    plt = _plt()
    cols = min(4, len(metrics))
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.8 * rows), squeeze=False)
    for ax, metric in zip(axes.flat, metrics):
        panel_metric(ax, run, metric, "median", title=metric, experiments=run.experiments)
    for ax in list(axes.flat)[len(metrics):]:
        ax.axis("off")
    return _finish(plt, fig, axes, suptitle + ", median and IQR", path, dpi=110)


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
            ax.set_title(f"{run.label}: {label(exp)}\nseed {s[i]}, test acc {r['test_acc']:.3f}", fontsize=9)
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
    steps of the last phase (median and IQR) vs width, for each experiment it ran."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=SUMMARY_INCHES, squeeze=False)
    panel_metric(axes[0][0], run, "test_acc", "mean", "test accuracy, mean ± 1 std", run.experiments)
    panel_metric(axes[0][1], run, "steps", "median", "steps of the last phase, median and IQR", run.experiments)
    widths = sorted({r["width"] for r in run.rows})
    for ax in axes[0]:  # the widths run, as plain numbers
        ax.set_xticks(widths, [str(w) for w in widths])
        ax.set_xticks([], minor=True)
    n_seeds = len({r["seed"] for r in run.rows})
    return _finish(plt, fig, axes, f"{run.label}, {n_seeds} seeds", path, dpi=SUMMARY_DPI)


def depth_figure(runs: list[Run], path: str) -> str | None:
    """Runs of one dataset at several depths (issue 12's science): per width, (a) test
    accuracy vs depth of the paper's three experiments, mean ± 1 std; (b) and (c) what
    re-initialising layer k, or freezing layers 1..k, of Θ_adv changes against the
    adversarial run (paired mean difference of test accuracy over seeds, ± its 95%
    confidence interval), one line per depth."""
    from matplotlib.ticker import MaxNLocator
    from scipy import stats

    by_depth = {r.config.get("depth", 1): r for r in runs}
    if len(by_depth) < 2 or len({r.dataset for r in runs}) > 1:
        return None
    widths = sorted(set.intersection(*({q["width"] for q in r.rows} for r in by_depth.values())))
    plt = _plt()
    fig, axes = plt.subplots(len(widths), 3, figsize=(14, 3.9 * len(widths)), squeeze=False)
    depths = sorted(by_depth)
    for row, width in zip(axes, widths):
        for exp in PAPER:
            mids, errs, ds = [], [], []
            for d in depths:
                sel = [q for q in by_depth[d].rows if q["width"] == width and q["experiment"] == exp]
                if not sel:
                    continue
                acc = [q["test_acc"] for q in sel]
                ds.append(d)
                mids.append(np.mean(acc))
                errs.append(np.std(acc))
                capped = sum(unconverged(q) for q in sel)
                if capped:  # open marker and count, as in every figure: k of n seeds at the step cap
                    row[0].plot([d], [mids[-1]], marker="o", markersize=9, markerfacecolor="none",
                                markeredgecolor=color(exp))
                    row[0].annotate(f"{capped}/{len(sel)}", (d, mids[-1]), textcoords="offset points",
                                    xytext=(5, 4), fontsize=7, color=color(exp))
            row[0].errorbar(ds, mids, yerr=errs, color=color(exp), label=label(exp), marker="o", capsize=3)
        row[0].set_xticks(depths)
        row[0].set_xlabel("depth (hidden layers)")
        row[0].set_ylabel("test accuracy")
        row[0].set_title(f"(a) p = {width}: test accuracy vs depth", fontsize=10)
        for ax, kind, what in ((row[1], "reinit", "layer k re-initialised"), (row[2], "freeze", "layers 1..k frozen")):
            for d in depths:
                rows = [q for q in by_depth[d].rows if q["width"] == width]
                adv = {q["seed"]: q["test_acc"] for q in rows if q["experiment"] == "adversarial"}
                ks, mids, half, capped = [], [], [], []
                for k in range(1, d + 2):
                    sel = [q for q in rows if q["experiment"] == f"{kind}_{k}"]
                    mine = {q["seed"]: q["test_acc"] for q in sel}
                    seeds = sorted(set(mine) & set(adv))
                    if len(seeds) < 2:
                        continue
                    diff = np.array([mine[s_] - adv[s_] for s_ in seeds])
                    ks.append(k)
                    mids.append(diff.mean())
                    half.append(stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff)))
                    capped.append((sum(unconverged(q) for q in sel), len(sel)))
                if ks:
                    line = ax.errorbar(ks, mids, yerr=half, marker="o", capsize=3, label=f"depth {d}")
                    for k, m, (c, n) in zip(ks, mids, capped):
                        if c:
                            ax.annotate(f"{c}/{n}", (k, m), textcoords="offset points", xytext=(5, 4), fontsize=7,
                                        color=line[0].get_color())
            ax.axhline(0, color="red", linewidth=0.8, linestyle="--")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("layer k (the last is the readout)" if kind == "reinit" else "k")
            ax.set_ylabel("test acc − adversarial's")
            ax.set_title(f"({'b' if kind == 'reinit' else 'c'}) p = {width}: Θ_adv with {what}", fontsize=10)
            ax.legend(fontsize=7)
        row[0].legend(fontsize=7)
        for ax in row:
            ax.grid(alpha=0.3)
    name = next(iter(by_depth.values())).dataset
    fig.suptitle(f"{name}: the adversarial gap and the layers that carry it, by depth (paired over seeds, 95% CI; "
                 "open marker k/n: k of n seeds at the step cap)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _paper_panels(run: Run, out: str) -> list[str]:
    return [
        _figure([(run, None)], "test_acc", "mean", os.path.join(out, f"accuracy_{run.label}.png"),
                f"Test accuracy vs width, mean ± 1 std: {run.label}"),
        _figure([(run, None)], "test_acc", "median", os.path.join(out, f"accuracy_median_{run.label}.png"),
                f"Test accuracy vs width, median and IQR: {run.label}"),
        _figure([(run, None)], "steps", "median", os.path.join(out, f"steps_{run.label}.png"),
                f"Steps to zero training error (last phase), median and IQR: {run.label}"),
    ]


def draw_all(runs: list[Run], out: str, boundary_width: int = 500, composites: bool = True) -> list[str]:
    os.makedirs(out, exist_ok=True)
    made = []
    for run in runs:
        if set(run.experiments) & set(PAPER):
            made += _paper_panels(run, out)
        if set(run.experiments) - set(PAPER):
            made.append(_grid_figure(run, ["test_acc", "steps"], os.path.join(out, f"experiments_{run.label}.png"),
                                     f"Test accuracy and steps of every experiment: {run.label}"))
        if run.measured:
            made.append(_grid_figure(run, run.measured, os.path.join(out, f"measures_{run.label}.png"),
                                     f"Measures of the final solutions: {run.label}"))
    depth = depth_figure(runs, os.path.join(out, f"depth_{runs[0].dataset}.png")) if len(runs) > 1 else None
    if depth:
        made.append(depth)
    if not composites:
        return made
    named = {r.label: r for r in runs}

    def pick(*labels):
        return [(named[lb], f"({chr(97 + i)}) {lb}") for i, lb in enumerate(labels) if lb in named]

    compositions = [
        ("fig1.png", pick("gaussians", "spirals", "mnist"), "test_acc", "mean",
         "Fig. 1: test accuracy for different initializations, mean ± 1 std"),
        ("fig3.png", pick("gaussians", "circles", "spirals", "mnist"), "steps", "median",
         "Fig. 3: steps to zero training error (last phase), median and IQR"),
        ("fig4.png", pick("circles"), "test_acc", "mean", "Fig. 4: concentric circles, mean ± 1 std"),
        ("fig5.png", pick("spirals"), "test_acc", "median", "Fig. 5: spirals (t ≤ 10), median and IQR"),
        ("fig6.png", [(named[lb], t) for lb, t in (("spirals-tmax6.28", "(a) data redrawn per seed"),
                                                     ("spirals-tmax6.28-fixed", "(b) one fixed data draw"))
                      if lb in named], "test_acc", "mean", "Fig. 6: spirals, t ≤ 2π"),
    ]
    for name, panels, metric, summary, title in compositions:
        if panels:
            made.append(_figure(panels, metric, summary, os.path.join(out, name), title))
    fig2 = decision_boundaries(runs, boundary_width, os.path.join(out, "fig2.png"))
    if fig2:
        made.append(fig2)
    return made


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="advjax.figures", description="Draw the paper's figures from sweep outputs.")
    ap.add_argument("runs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--out", default="figures", help="directory for the PNGs and significance.csv")
    ap.add_argument("--boundary-width", type=int, default=500, help="width of Fig. 2's decision boundaries")
    ap.add_argument("--no-composites", dest="composites", action="store_false",
                    help="only the per-run figures, not the paper's fig1-fig6 (e.g. for runs of other experiments)")
    args = ap.parse_args(argv)
    try:
        runs = [load_run(p) for p in args.runs]
        labels = [r.label for r in runs]
        for r in runs:  # runs that differ in settings the label does not show: name them by directory
            if labels.count(r.label) > 1:
                r.name = os.path.basename(os.path.normpath(r.path))
        if len({r.label for r in runs}) < len(runs):
            raise FigureError("two run directories have the same name and settings; give one another name")
    except FigureError as e:
        print(f"advjax.figures: error: {e}", file=sys.stderr)
        return 2
    made = draw_all(runs, args.out, args.boundary_width, args.composites)
    sig = significance(runs)
    write_significance(sig, os.path.join(args.out, "significance.csv"))
    print(significance_text(sig))
    for path in made:
        print(f"wrote {path}")
    print(f"wrote {os.path.join(args.out, 'significance.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
