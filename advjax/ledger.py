"""The claims ledger: every claim of the paper and of advjax's own studies, with its
verdict, computed from the committed results.

    python -m advjax.ledger            # writes figures/LEDGER.md
    python -m advjax.ledger --redraw   # first redraws every figure folder from figures/runs

The evidence of a test-accuracy claim is the rows of the significance.csv of the figure
folder that draws it (paired tests over the same seeds, 95% t-interval, Holm-corrected
p within the family the CSV names); a claim about steps or a measure is tested here,
from the runs kept under figures/runs/<run>/ (results.csv and manifest.json). The
verdict follows from the numbers by the rules in `RULES`, which the ledger prints in its
header. Nothing here trains: the ledger is a pure function of committed files, and
writes the same bytes each time.
"""

from __future__ import annotations

import csv
import functools
import math
import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from .options import GRID_AXES

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
RUNS = os.path.join("figures", "runs")
DELTA = 0.01  # the smallest difference of test accuracy that matters here: 1 point
ALPHA = 0.05

RULES = f"""\
Verdicts are computed, not judged. Each claim names its tests (a comparison at some widths or
grid points); a test *supports* a claim of direction when its Holm-corrected p is below {ALPHA}
and its effect has the claimed sign, and *contradicts* it when the sign is the other.

- A claim that A is above (below) B: **reproduced** when every test supports it; **not
  reproduced** when some test contradicts it, or when every 95% CI lies within ±δ (no
  effect as large as δ anywhere); **inconclusive** otherwise.
- A claim that A and B do not differ: **reproduced** when every 95% CI lies within ±δ;
  **not reproduced** when some test has Holm p < {ALPHA} and a CI entirely beyond ±δ;
  **inconclusive** otherwise.
- **inconclusive (void)**: in every test every seed of both arms stopped at its step cap in
  phase 1 (no Θ_adv was made) and in its last phase (no target reached): nothing was
  compared. A void test is left out of the other rules.
- **not run**: no committed run tests the claim. A verdict in parentheses says why a claim
  that a committed run could test has no test here (its run is not kept, or its CSV
  predates the comparison).

δ = {DELTA * 100:g} point of test accuracy (for steps and measures, tested on log10 values, δ is 0:
any significant difference counts). The paper's claims about Θ_adv on 2-D data are tested only at the
widths where phase 1 fitted its random labels in every seed, and say which widths they left out; the
decisive runs' claims keep every seed (item 4(b) asks about phase 1 as run) and count its caps (p1 k/n).
A claim "minus the same" is a contrast: the comparison in one run or grid point minus the same
comparison in another, paired by seed."""


@dataclass(frozen=True)
class Study:
    """A figure folder and the runs (directories under figures/runs) it is drawn from."""

    folder: str
    runs: tuple[str, ...]
    composites: bool = False

    def command(self) -> str:
        runs = " ".join(f"{RUNS}/{r}" for r in self.runs)
        return f"python -m advjax.figures {runs} --out {self.folder}" + ("" if self.composites else " --no-composites")


STUDIES = {s.folder: s for s in (
    Study("figures", ("fig1a-gaussians", "fig4-circles", "fig1b-spirals", "fig1c-mnist"), composites=True),
    Study("figures/fig6", ("fig6-spirals-2pi-redrawn", "fig6-spirals-2pi-fixed"), composites=True),
    Study("figures/hypotheses", ("hypotheses-mnist", "regularized-mnist", "hypotheses-teacher",
                                 "hypotheses-spirals")),
    Study("figures/depth", ("depth1-mnist", "depth2-mnist", "depth3-mnist", "depth4-mnist")),
    Study("figures/dose", ("dose-mnist", "dose-target-mnist", "dose-circles", "dose-target-circles")),
    Study("figures/disagreements", ("regularization-mnist", "budget-frozen-mnist", "budget-frozen-mnist-redrawn",
                                    "budget-frozen-mnist-he")),
    Study("figures/matched", ("spirals-matched", "spirals-lr")),
    Study("figures/cnn", ("cnn-mnist",)),
    Study("figures/decisive", ("decisive-frozen-mnist", "decisive-frozen-mnist-redrawn", "decisive-frozen-mnist-sum",
                               "decisive-phase1-circles-gd", "decisive-phase1-circles-adam",
                               "decisive-phase1-spirals-gd", "decisive-phase1-spirals-adam",
                               "decisive-spirals-lr-matched", "decisive-depth3-mnist", "decisive-depth4-mnist")),
)}

# The run a sweep file makes, and how (the sweep files' own headers give the wall time).
SWEEP_OF = {"budget-frozen-mnist-redrawn": ("budget-frozen-mnist", "--no-fix-data"),
            "budget-frozen-mnist-he": ("budget-frozen-mnist", "--init he"),
            **{f"decisive-phase1-{d}-{o}": (f"decisive-phase1-{d}", "--phase1-optimizer adam" if o == "adam" else "")
               for d in ("circles", "spirals") for o in ("gd", "adam")}}


def sweep_command(run: str) -> str:
    sweep, extra = SWEEP_OF.get(run, (run, ""))
    return f"python -m advjax.sweep --config sweeps/{sweep}.toml {extra + ' ' if extra else ''}--out {RUNS}/{run}"


@dataclass(frozen=True)
class Claim:
    """One claim: what is claimed (`text`), where (`source`), and its tests: `comparison`
    ("A - B") in `run` (the label significance.csv uses) of the study `folder`, at
    `widths` (None: all) and grid point `at` (axis -> value), with `direction` "gt" (A
    above B), "lt" (below) or "eq" (no difference). `metric` other than test_acc is
    tested here from the kept run `run_dir` (log10 of steps and positive measures), and so
    is a contrast (`versus`): the comparison minus the same comparison in another kept
    run or at another grid point, paired by seed; a comparison of one experiment ("A")
    is then A here minus A there."""

    @property
    def from_runs(self) -> bool:
        """Tested here from the kept runs, not read from a significance.csv."""
        return self.metric != "test_acc" or bool(self.versus)

    source: str
    text: str
    folder: str = ""
    run: str = ""
    comparison: str = ""
    direction: str = "lt"
    widths: tuple[int, ...] | None = None
    at: tuple[tuple[str, float], ...] = ()
    phase1_fitted: bool = False
    metric: str = "test_acc"
    run_dir: str = ""
    not_run: str = ""  # why no run tests it, and the command that would
    versus: tuple = ()  # (run_dir, at): the contrast with the same comparison there, paired by seed
    extra: dict = field(default_factory=dict, compare=False, hash=False)


def _liu(toml: str) -> str:
    """Liu et al.'s comparison from its sweep file's header: the command on a user's copy
    of CIFAR-10 and the estimated GPU time."""
    with open(os.path.join(ROOT, "sweeps", toml), encoding="utf-8") as f:
        head = f.read()
    command = re.search(r"^#\s+(python -m advjax\.sweep .*)$", head, re.M).group(1)
    hours = re.search(r"~(\d+) GPU-hours", head).group(1)
    return f"`{command}` (a GPU, ~{hours} GPU-hours estimated from the FLOPs; CIFAR-10 is the user's own copy)"


DECISIVE = "figures/decisive"

CLAIMS = (
    # -- the paper's Figs. 1-6 ----------------------------------------------------------------------------------------
    Claim("Fig. 1a", "Gaussians: adversarial below baseline (significant gap)", "figures", "gaussians",
          "adversarial - baseline", "lt", phase1_fitted=True),
    Claim("Fig. 1a", "Gaussians: frozen features as good as the baseline", "figures", "gaussians",
          "frozen - baseline", "eq", phase1_fitted=True),
    Claim("Fig. 1b, 5", "Spirals (t ≤ 10): adversarial below baseline", "figures", "spirals",
          "adversarial - baseline", "lt", phase1_fitted=True),
    Claim("Fig. 1b, 5", "Spirals (t ≤ 10): keeping Θ_adv's features may help (frozen above adversarial)",
          "figures", "spirals", "frozen - adversarial", "gt", phase1_fitted=True),
    Claim("Fig. 1c", "MNIST: adversarial below baseline at every width", "figures", "mnist",
          "adversarial - baseline", "lt"),
    Claim("Fig. 1c", "MNIST: frozen features above the adversarial network at small widths (p ≤ 20)", "figures",
          "mnist", "frozen - adversarial", "gt", widths=(10, 20)),
    Claim("Fig. 1c", "MNIST: frozen features no better than the adversarial network at large widths (p ≥ 500)",
          "figures", "mnist", "frozen - adversarial", "eq", widths=(500, 1000)),
    Claim("Fig. 2, 3.3", "Spirals: adversarial decision boundaries more jagged (longer boundary)",
          "figures/hypotheses", "spirals", "adversarial - baseline", "gt", metric="boundary_length",
          run_dir="hypotheses-spirals", widths=(100, 1000)),
    Claim("Fig. 2, 3.3", "Spirals: more piecewise-linear pieces with Θ_adv (linear regions on the input grid)",
          "figures/hypotheses", "spirals", "adversarial - baseline", "gt", metric="linear_regions",
          run_dir="hypotheses-spirals", widths=(100, 1000)),
    Claim("Fig. 2, 3.3", "MNIST: more pieces active with Θ_adv (active ReLUs on the training set)",
          "figures/hypotheses", "mnist", "adversarial - baseline", "gt", metric="active_fraction",
          run_dir="hypotheses-mnist"),
    Claim("Fig. 3a", "Gaussians: adversarial needs more steps than the baseline (large widths)", "figures",
          "gaussians", "adversarial - baseline", "gt", metric="steps", run_dir="fig1a-gaussians",
          phase1_fitted=True),
    Claim("Fig. 3b", "Circles: adversarial needs fewer steps than the baseline", "figures", "circles",
          "adversarial - baseline", "lt", metric="steps", run_dir="fig4-circles", phase1_fitted=True),
    Claim("Fig. 3c", "Spirals (t ≤ 10): adversarial needs fewer steps than the baseline", "figures", "spirals",
          "adversarial - baseline", "lt", metric="steps", run_dir="fig1b-spirals", phase1_fitted=True),
    Claim("Fig. 3d", "MNIST: adversarial needs fewer steps than the baseline", "figures", "mnist",
          "adversarial - baseline", "lt", metric="steps", run_dir="fig1c-mnist"),
    Claim("Fig. 3c", "Spirals (t ≤ 10): frozen features need more steps than the adversarial network", "figures",
          "spirals", "frozen - adversarial", "gt", metric="steps", run_dir="fig1b-spirals", phase1_fitted=True),
    Claim("Fig. 3d", "MNIST: frozen features need more steps than the adversarial network", "figures", "mnist",
          "frozen - adversarial", "gt", metric="steps", run_dir="fig1c-mnist"),
    Claim("Fig. 4", "Circles: adversarial below baseline", "figures", "circles", "adversarial - baseline", "lt",
          phase1_fitted=True),
    Claim("Fig. 4", "Circles: frozen features as good as the baseline", "figures", "circles", "frozen - baseline",
          "eq", phase1_fitted=True),
    Claim("Fig. 6", "Spirals (t ≤ 2π), data redrawn per seed: adversarial below baseline", "figures/fig6",
          "spirals-tmax6.28", "adversarial - baseline", "lt", phase1_fitted=True),
    Claim("Fig. 6", "Spirals (t ≤ 2π), one fixed data draw: adversarial below baseline", "figures/fig6",
          "spirals-tmax6.28-fixed", "adversarial - baseline", "lt", phase1_fitted=True),
    # -- the paper's hypotheses, section 4 and Liu et al. -----------------------------------------------------------
    Claim("Hyp. 1", "The norm does not suffice: θ0 rescaled to Θ_adv's norm (whole) loses less than Θ_adv",
          "figures/hypotheses", "mnist", "norm_matched_global - adversarial", "gt"),
    Claim("Hyp. 1", "θ0 rescaled to Θ_adv's norm, per layer, loses less than Θ_adv", "figures/hypotheses",
          "mnist", "norm_matched_layer - adversarial", "gt"),
    Claim("Hyp. 2", "MNIST: Θ_adv's features worse than θ0's random features (readout retrained from 0)",
          "figures/hypotheses", "mnist", "random_features - frozen", "gt"),
    Claim("Sec. 4", "Flatness: adversarial minima are sharper (top Hessian eigenvalue), MNIST",
          "figures/hypotheses", "mnist", "adversarial - baseline", "gt", metric="sharpness",
          run_dir="hypotheses-mnist"),
    Claim("Sec. 4", "Teacher-student: teacher features above random features", "figures/hypotheses", "teacher",
          "teacher_features - random_features", "gt"),
    Claim("Sec. 4", "Teacher-student: features orthogonal to the teacher below random features",
          "figures/hypotheses", "teacher", "orthogonal_features - random_features", "lt"),
    Claim("Liu et al.", "ResNet-18, CIFAR-10: a large drop from the adversarial start without regularization",
          not_run=_liu("liu-resnet18-cifar10.toml")),
    Claim("Liu et al.", "VGG16, CIFAR-10: the drop, and θ0 at Θ_adv's norm between the two",
          not_run=_liu("liu-vgg16-cifar10.toml")),
    # -- advjax's extensions ------------------------------------------------------------------------------------------
    Claim("Escape (issue 5)", "Shrink-perturb of Θ_adv does better than Θ_adv", "figures/hypotheses", "mnist",
          "shrink_perturb - adversarial", "gt"),
    Claim("Escape (issue 5)", "Momentum 0.9, weight decay 5e-4 at step 0.1: no gap at p = 1000",
          "figures/hypotheses", "mnist-mom0.9-wd0.0005", "adversarial - baseline", "eq", widths=(1000,)),
    Claim("Depth (issue 12)", "The adversarial gap at depth 2", "figures/depth", "mnist-depth2",
          "adversarial - baseline", "lt"),
    Claim("Depth (issue 12)", "The adversarial gap at depth 3", "figures/depth", "mnist-depth3",
          "adversarial - baseline", "lt"),
    Claim("Depth (issue 12)", "The adversarial gap at depth 4", "figures/depth", "mnist-depth4",
          "adversarial - baseline", "lt"),
    Claim("Depth (issue 12)", "Depth 1: re-initialising the readout helps", "figures/depth", "mnist",
          "reinit_2 - adversarial", "gt"),
    Claim("Depth (issue 12)", "Depth 3: re-initialising the readout does not help", "figures/depth",
          "mnist-depth3", "reinit_4 - adversarial", "eq"),
    Claim("Depth (issue 12)", "Depth 4: re-initialising the readout does not help", "figures/depth",
          "mnist-depth4", "reinit_5 - adversarial", "eq"),
    Claim("Depth (issue 12)", "Depth 2: re-initialising the second hidden layer helps", "figures/depth",
          "mnist-depth2", "reinit_2 - adversarial", "gt"),
    Claim("Depth (issue 12)", "Depth 3: re-initialising the second hidden layer helps", "figures/depth",
          "mnist-depth3", "reinit_2 - adversarial", "gt"),
    Claim("Dose (issue 13)", "MNIST: a quarter of the labels random already harms", "figures/dose", "dose-mnist",
          "adversarial - baseline", "lt", at=(("random_fraction", 0.25),)),
    Claim("Dose (issue 13)", "MNIST: phase 1 stopped at 60% of the random labels does no harm", "figures/dose",
          "dose-target-mnist", "adversarial - baseline", "eq", at=(("phase1_target_acc", 0.6),)),
    Claim("Dose (issue 13)", "Circles: a quarter of the labels random already harms", "figures/dose",
          "dose-circles", "adversarial - baseline", "lt", at=(("random_fraction", 0.25),)),
    Claim("Disagreement (issue 13)", "MNIST frozen below adversarial at p = 10 whatever the step cap (fixed data)",
          "figures/disagreements", "budget-frozen-mnist", "frozen - adversarial", "lt", widths=(10,)),
    Claim("Disagreement (issue 13)", "… with the data redrawn per seed", "figures/disagreements",
          "budget-frozen-mnist-redrawn", "frozen - adversarial", "lt", widths=(10,)),
    Claim("Disagreement (issue 13)", "… with He's init", "figures/disagreements", "budget-frozen-mnist-he",
          "frozen - adversarial", "lt", widths=(10,)),
    Claim("Regularization (issue 13)", "Weight decay alone (step 0.1) leaves the gap", "figures/disagreements",
          "regularization-mnist", "adversarial - baseline", "lt",
          at=(("lr", 0.1), ("momentum", 0.0), ("weight_decay", 0.0005))),
    Claim("Regularization (issue 13)", "Momentum 0.9 at step 0.01 leaves a gap", "figures/disagreements",
          "regularization-mnist", "adversarial - baseline", "lt",
          at=(("lr", 0.01), ("momentum", 0.9), ("weight_decay", 0.0))),
    Claim("Matched (issue 13)", "Spirals at matched training accuracy 0.8: adversarial below baseline (p ≥ 20)",
          "figures/matched", "spirals-matched", "adversarial - baseline", "lt", widths=(20, 50, 100, 200, 500, 1000),
          at=(("target_train_acc", 0.8),)),
    Claim("Matched (issue 13)", "Spirals at matched training accuracy 0.8: frozen above adversarial (p ≥ 20)",
          "figures/matched", "spirals-matched", "frozen - adversarial", "gt", widths=(20, 50, 100, 200, 500, 1000),
          at=(("target_train_acc", 0.8),)),
    Claim("Step size (issue 13)", "Spirals, zero-error stop, step 0.1: adversarial below baseline",
          "figures/matched", "spirals-lr", "adversarial - baseline", "lt", at=(("lr", 0.1),)),
    Claim("CNN (issue 14)", "Conv net on MNIST: adversarial below baseline at small width (p ≤ 8)", "figures/cnn",
          "mnist-cnn", "adversarial - baseline", "lt", widths=(4, 8)),
    Claim("CNN (issue 14)", "Conv net: no gap at large width (p ≥ 32)", "figures/cnn", "mnist-cnn",
          "adversarial - baseline", "eq", widths=(32, 64)),
    Claim("CNN (issue 14)", "Conv net: re-initialising the readout helps at every width", "figures/cnn",
          "mnist-cnn", "reinit_3 - adversarial", "gt"),
    Claim("CNN (issue 14)", "Conv net: frozen features above adversarial (p ≤ 32)", "figures/cnn", "mnist-cnn",
          "frozen - adversarial", "gt", widths=(4, 8, 16, 32)),
    Claim("CNN (issue 14)", "Conv net: frozen features as good as the baseline", "figures/cnn", "mnist-cnn",
          "frozen - baseline", "eq"),

    # The decisive runs (issue 26, item 4): each tests a claim above in the setting that decides it.
    Claim("Decisive (a)", "MNIST, every arm stopped at the same training accuracy (0.9, 0.99, 1): adversarial "
          "below baseline", DECISIVE, "decisive-frozen-mnist", "adversarial - baseline", "lt"),
    Claim("Decisive (a)", "Fig. 1c at matched training accuracy (one image set): frozen features above the "
          "adversarial network at p ≤ 20", DECISIVE, "decisive-frozen-mnist", "frozen - adversarial", "gt",
          widths=(10, 20)),
    Claim("Decisive (a)", "… with the 128 images redrawn per seed", DECISIVE, "decisive-frozen-mnist-redrawn",
          "frozen - adversarial", "gt", widths=(10, 20)),
    Claim("Decisive (a)", "… with the loss summed over the minibatch (Liu et al.'s code)", DECISIVE,
          "decisive-frozen-mnist-sum", "frozen - adversarial", "gt", widths=(10, 20)),
    Claim("Decisive (a)", "MNIST at matched training accuracy 0.9: frozen level with adversarial at p ≥ 50",
          DECISIVE, "decisive-frozen-mnist", "frozen - adversarial", "eq", widths=(50, 100),
          at=(("target_train_acc", 0.9),)),
    Claim("Decisive (b)", "Circles, Θ_adv by the paper's full-batch GD: adversarial below baseline", DECISIVE,
          "decisive-phase1-circles-gd", "adversarial - baseline", "lt"),
    Claim("Decisive (b)", "Circles: the adversarial net does as well from GD's Θ_adv as from Adam's",
          folder=DECISIVE, run_dir="decisive-phase1-circles-gd", comparison="adversarial", direction="eq",
          versus=("decisive-phase1-circles-adam", ())),
    Claim("Decisive (b)", "Spirals (t ≤ 10, stop at 0.8), Θ_adv by GD: adversarial below baseline", DECISIVE,
          "decisive-phase1-spirals-gd", "adversarial - baseline", "lt"),
    Claim("Decisive (b)", "Spirals: the adversarial net does as well from GD's Θ_adv as from Adam's",
          folder=DECISIVE, run_dir="decisive-phase1-spirals-gd", comparison="adversarial", direction="eq",
          versus=("decisive-phase1-spirals-adam", ())),
    Claim("Decisive (c)", "Spirals at training accuracy 0.8, step 0.01: adversarial below baseline", DECISIVE,
          "decisive-spirals-lr-matched", "adversarial - baseline", "lt", at=(("lr", 0.01),)),
    Claim("Decisive (c)", "Spirals at training accuracy 0.8, step 0.1: adversarial below baseline", DECISIVE,
          "decisive-spirals-lr-matched", "adversarial - baseline", "lt", at=(("lr", 0.1),)),
    Claim("Decisive (c)", "Spirals, step 0.01: the adversarial net stops closer to Θ_adv than the baseline to θ0",
          folder=DECISIVE, run_dir="decisive-spirals-lr-matched", comparison="adversarial - baseline",
          metric="distance", at=(("lr", 0.01),)),
    Claim("Decisive (c)", "Spirals: the adversarial net stops closer to Θ_adv at step 0.01 than at step 0.1",
          folder=DECISIVE, run_dir="decisive-spirals-lr-matched", comparison="adversarial", metric="distance",
          at=(("lr", 0.01),), versus=("decisive-spirals-lr-matched", (("lr", 0.1),))),
    Claim("Decisive (d)", "Depth 3, 30 seeds: adversarial below baseline (steps 0.03 and 0.1)", DECISIVE,
          "mnist-depth3", "adversarial - baseline", "lt"),
    Claim("Decisive (d)", "Depth 4, 30 seeds: adversarial below baseline (steps 0.03 and 0.1)", DECISIVE,
          "mnist-depth4", "adversarial - baseline", "lt"),
    Claim("Decisive (d)", "The gap grows with depth: larger at depth 3 than at depth 1 (step 0.1, zero error)",
          folder=DECISIVE, run_dir="decisive-depth3-mnist", comparison="adversarial - baseline", widths=(100,),
          at=(("lr", 0.1),), versus=("decisive-frozen-mnist", (("target_train_acc", 1.0),))),
    Claim("Decisive (d)", "The gap grows with depth: larger at depth 4 than at depth 1 (step 0.1, zero error)",
          folder=DECISIVE, run_dir="decisive-depth4-mnist", comparison="adversarial - baseline", widths=(100,),
          at=(("lr", 0.1),), versus=("decisive-frozen-mnist", (("target_train_acc", 1.0),))),
)

# Measures compared on a log scale (positive, spanning decades); the others as they are.
LOG_METRICS = ("steps", "sharpness", "linear_regions", "boundary_length", "norm_total", "distance")


# -- reading the committed files ---------------------------------------------------------------------------------

def _number(v: str) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def read_significance(folder: str, root: str = ROOT) -> list[dict]:
    path = os.path.join(root, folder, "significance.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def kept(run: str, root: str = ROOT) -> bool:
    d = os.path.join(root, RUNS, run)
    return os.path.exists(os.path.join(d, "results.csv")) and os.path.exists(os.path.join(d, "manifest.json"))


def _at_matches(row: dict, at: tuple[tuple[str, float], ...]) -> bool:
    return all(_number(row.get(a)) is not None and math.isclose(_number(row.get(a)), v) for a, v in at)


@dataclass
class Result:
    where: str  # "p = 100", and the grid point where the claim spans several
    n: int
    effect: float
    low: float
    high: float
    p_holm: float
    capped: str = ""
    void: bool = False  # every seed of both arms stopped at its caps: nothing was compared


@dataclass
class Evidence:
    tests: list[Result]
    file: str
    family: str
    scale: str = "points"  # "points" (test accuracy x 100), "log10" (ratio), "raw"
    left_out: list[int] = field(default_factory=list)
    note: str = ""
    versus_file: str = ""  # a contrast's other run, where it is not `file`'s


def _family(rows: list[dict], folder: str) -> str:
    r = rows[0]
    if r.get("holm_family"):
        return f"{r['holm_family']}, {r['holm_tests']} tests"
    return (f"{r['run']}: {r['comparison']} over its widths and grid points (this CSV predates one family per "
            "figure)")


@functools.cache
def _study_runs(folder: str, root: str) -> tuple:
    """The kept runs of a study, loaded once per ledger build (empty where one is not kept)."""
    from .figures import load_runs

    study = STUDIES.get(folder)
    if study is None or not all(kept(name, root) for name in study.runs):
        return ()
    return tuple(load_runs([os.path.join(root, RUNS, n) for n in study.runs]))


def _labelled(claim: Claim, root: str):
    """The kept run of the claim's study whose label is the claim's `run`, or None."""
    return next((r for r in _study_runs(claim.folder, root) if r.label == claim.run), None)


def _void(run, sides: list[str], width: int, at: tuple[tuple[str, float], ...]) -> bool:
    """Whether every seed of every arm compared stopped at its step cap in phase 1 (no
    Θ_adv was made) and in its last phase: nothing was compared."""
    from .figures import unconverged

    rows = [r for r in run.rows if r["width"] == width and r["experiment"] in sides and _at_matches(r, at)]
    return bool(rows) and all(unconverged(r, "last") and unconverged(r, "phase1") for r in rows)


def csv_evidence(claim: Claim, root: str = ROOT) -> Evidence | None:
    rows = [r for r in read_significance(claim.folder, root)
            if r["run"] == claim.run and r["comparison"] == claim.comparison and _at_matches(r, claim.at)]
    if not rows:
        return None
    family = _family(rows, claim.folder)
    if claim.widths is not None:
        rows = [r for r in rows if int(r["width"]) in claim.widths]
    left_out = []
    if claim.phase1_fitted and rows and rows[0].get("phase1_unconverged_seeds", "") != "":
        left_out = sorted({int(r["width"]) for r in rows if int(r["phase1_unconverged_seeds"])})
        rows = [r for r in rows if not int(r["phase1_unconverged_seeds"])]
    tests = []
    run = _labelled(claim, root)
    for r in rows:
        low, high = _number(r.get("ci95_low")), _number(r.get("ci95_high"))
        p = _number(r.get("p_t_holm"))
        caps = [f"{r['unconverged_seeds']}/{r['n']}"] if int(r["unconverged_seeds"] or 0) else []
        if int(r.get("phase1_unconverged_seeds") or 0):
            caps.append(f"p1 {r['phase1_unconverged_seeds']}/{r['n']}")
        point = [f"{a} = {_number(r[a]):g}" for a in GRID_AXES
                 if _number(r.get(a)) is not None and a not in dict(claim.at)]
        at = tuple((a, _number(r[a])) for a in GRID_AXES if _number(r.get(a)) is not None)
        void = run is not None and _void(run, claim.comparison.split(" - "), int(r["width"]), at)
        tests.append(Result(", ".join([f"p = {r['width']}", *point]), int(r["n"]), float(r["mean_diff"]),
                          np.nan if low is None else low,
                          np.nan if high is None else high, np.nan if p is None else p,
                          " ".join(caps) + (" (void)" if void else ""), void))
    return Evidence(tests, f"{claim.folder}/significance.csv", family, left_out=left_out)


def _seed_values(run, experiment: str, width: int, at: tuple[tuple[str, float], ...],
                 metric: str) -> tuple[dict[int, float], dict[int, bool], dict[int, bool]]:
    """One experiment's `metric` per seed at a width and grid point (log10 for
    `LOG_METRICS`; steps censored at the cap), and which seeds stopped short in the last
    phase and in phase 1."""
    from .figures import _values, unconverged

    rows = {r["seed"]: r for r in run.rows if r["width"] == width and r["experiment"] == experiment
            and _at_matches(r, at)}
    seeds = sorted(rows)
    values, _ = _values(run, [rows[s] for s in seeds], metric)
    if len(values) != len(seeds):
        return {}, {}, False
    if metric in LOG_METRICS:
        with np.errstate(divide="ignore"):
            values = np.log10(values)  # 0 steps (zero error at the start): -inf, not tested
    capped = {s: unconverged(rows[s], "last") for s in seeds}
    first = {s: unconverged(rows[s], "phase1") for s in seeds}
    return dict(zip(seeds, values)), capped, first


def _difference(run, claim: Claim, width: int, at) -> tuple[dict[int, float], list[str], bool]:
    """Per seed, A - B of the claim's comparison in `run` at `at` (or A alone when the
    comparison names one experiment), the cap counts, and whether phase 1 was capped."""
    sides = claim.comparison.split(" - ")
    got = [_seed_values(run, e, width, at, claim.metric) for e in sides]
    seeds = sorted(set.intersection(*(set(v) for v, _, _ in got)))
    diff = {s: got[0][0][s] - (got[1][0][s] if len(got) > 1 else 0.0) for s in seeds}
    caps = [f"{e} {k}/{len(seeds)}" for e, (_, capped, _) in zip(sides, got)
            if (k := sum(capped[s] for s in seeds))]
    first = sum(any(p1[s] for _, _, p1 in got) for s in seeds)
    caps += [f"p1 {first}/{len(seeds)}"] if first else []
    return diff, caps, bool(first) and claim.phase1_fitted


def _run_tests(claims: list[Claim], root: str) -> dict[Claim, Evidence]:
    """The claims tested here from the kept runs rather than from a significance.csv:
    steps and measures (paired over seeds, on log10 values for `LOG_METRICS`, steps
    censored at the cap, as the figures draw them), and contrasts across two runs or grid
    points (`versus`: the same comparison in another kept run, or at another grid point,
    paired by seed). Holm over every such test of the ledger (one family)."""
    from .figures import holm, load_run, paired_test

    found: dict[Claim, Evidence] = {}
    for claim in claims:
        other_dir, other_at = claim.versus or (claim.run_dir, claim.at)
        if not (kept(claim.run_dir, root) and kept(other_dir, root)):
            continue
        run = load_run(os.path.join(root, RUNS, claim.run_dir))
        other = load_run(os.path.join(root, RUNS, other_dir)) if claim.versus else run
        tests, left_out = [], []
        for width in sorted({r["width"] for r in run.rows}):
            if claim.widths is not None and width not in claim.widths:
                continue
            a, caps, p1 = _difference(run, claim, width, claim.at)
            if claim.versus:
                b, caps_b, p1_b = _difference(other, claim, width, other_at)
                caps, p1 = [*caps, *(f"{c} (versus)" for c in caps_b)], p1 or p1_b
            else:
                b = dict.fromkeys(a, 0.0)
            seeds = sorted(set(a) & set(b))
            if len(seeds) < 2 or not np.isfinite([a[s] - b[s] for s in seeds]).all():
                continue
            if p1:
                left_out.append(width)
                continue
            res = paired_test(np.array([a[s] for s in seeds]), np.array([b[s] for s in seeds]))
            tests.append(Result(f"p = {width}", res["n"], res["mean_diff"], res["ci95_low"], res["ci95_high"],
                                res["p_t"], ", ".join(caps)))
        scale = "log10" if claim.metric in LOG_METRICS else "points" if claim.metric == "test_acc" else "raw"
        versus_file = f"{RUNS}/{other_dir}/results.csv" if other_dir != claim.run_dir else ""
        found[claim] = Evidence(tests, f"{RUNS}/{claim.run_dir}/results.csv", "", scale, left_out,
                                versus_file=versus_file)
    everything = [t for e in found.values() for t in e.tests]
    for t, p in zip(everything, holm([t.p_holm for t in everything])):
        t.p_holm = p
    size = sum(np.isfinite(t.p_holm) for t in everything)
    for e in found.values():
        e.family = f"LEDGER.md's tests from the kept runs, {size} tests"
    return found


# -- verdicts ------------------------------------------------------------------------------------------------------

def verdict(direction: str, tests: list[Result], delta: float) -> str:
    """`RULES`, as code."""
    if tests and all(t.void for t in tests):
        return "inconclusive (void)"
    tests = [t for t in tests if not t.void]
    if not tests:
        return "inconclusive"
    sign = {"gt": 1, "lt": -1}.get(direction)
    significant = [t for t in tests if np.isfinite(t.p_holm) and t.p_holm < ALPHA]
    within = all(np.isfinite(t.low) and -delta < t.low and t.high < delta for t in tests) if delta else False
    if sign is not None:
        if any(np.sign(t.effect) == -sign for t in significant):
            return "not reproduced"
        if len(significant) == len(tests) and all(np.sign(t.effect) == sign for t in tests):
            return "reproduced"
        return "not reproduced" if within else "inconclusive"
    if all(np.isfinite(t.low) and -delta < t.low and t.high < delta for t in tests):
        return "reproduced"
    if any(t.low >= delta or t.high <= -delta for t in significant):
        return "not reproduced"
    return "inconclusive"


# -- writing -------------------------------------------------------------------------------------------------------

def _p(p: float) -> str:
    return "–" if not np.isfinite(p) else f"{p:.2g}"


def _effect(t: Result, scale: str) -> str:
    if scale == "points":
        return f"{100 * t.effect:+.2f} [{100 * t.low:+.2f}, {100 * t.high:+.2f}]"
    if scale == "log10":
        return f"×{10 ** t.effect:.2f} [{10 ** t.low:.2f}, {10 ** t.high:.2f}]"
    return f"{t.effect:+.3f} [{t.low:+.3f}, {t.high:+.3f}]"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _point(at: tuple[tuple[str, float], ...]) -> str:
    return ", ".join(f"{a} = {x:g}" for a, x in at)


def ledger_row(claim: Claim, evidence: Evidence | None, runs_kept: bool) -> list[str]:
    if claim.not_run:
        return [claim.source, claim.text, "not run", f"no committed run; to run it: {claim.not_run}", ""]
    if evidence is None:
        if claim.from_runs:
            why = (f"run not kept: `{sweep_command(claim.run_dir)}`, then `python -m advjax.ledger`")
            return [claim.source, claim.text, "inconclusive (run not kept)", why, ""]
        return [claim.source, claim.text, "inconclusive (no test in the CSV)",
                f"`{claim.folder}/significance.csv`, written before {claim.comparison} was drawn, has no row of it; "
                "it comes with a redraw from the kept runs", ""]
    delta = DELTA if evidence.scale == "points" else 0.0
    v = verdict(claim.direction, evidence.tests, delta)
    unit = {"points": "points", "log10": "ratio A/B, geometric mean", "raw": claim.metric}[evidence.scale]
    what = f"{claim.comparison}" + (f" ({claim.metric})" if claim.metric != "test_acc" else "")
    at = f" at {_point(claim.at)}" if claim.at else ""
    if claim.versus:
        there = claim.versus[0] if claim.versus[0] != claim.run_dir else ""
        where = " ".join(x for x in (there and f"in {there}", claim.versus[1] and f"at {_point(claim.versus[1])}") if x)
        at += f", minus the same {where}"
    tests = "; ".join(f"{t.where}: {_effect(t, evidence.scale)}, n = {t.n}, Holm p {_p(t.p_holm)}"
                      for t in evidence.tests)
    files = f"`{evidence.file}`" + (f" versus `{evidence.versus_file}`" if evidence.versus_file else "")
    text = (f"{files}, {what}{at}, in {unit} [95% CI]: {tests or 'no test'}. "
            f"Holm family: {evidence.family}.")
    caps = "; ".join(f"{t.where}: {t.capped}" for t in evidence.tests if t.capped)
    if evidence.left_out:
        caps = "; ".join(x for x in (caps, "left out, phase 1 capped in some seed: p = "
                                     + ", ".join(map(str, evidence.left_out))) if x)
    if not runs_kept:
        caps = "; ".join(x for x in (caps, "run not kept under figures/runs") if x)
    return [claim.source, claim.text, v, text, caps or "none"]


def build(root: str = ROOT) -> str:
    _study_runs.cache_clear()  # the runs as they are now, not as an earlier build in this process read them
    run_claims = [c for c in CLAIMS if c.from_runs]
    tested = _run_tests(run_claims, root)
    rows = []
    for claim in CLAIMS:
        study = STUDIES.get(claim.folder)
        all_kept = bool(study) and all(kept(r, root) for r in study.runs)
        if claim.not_run:
            evidence = None
        elif not claim.from_runs:
            evidence = csv_evidence(claim, root)
        else:
            evidence = tested.get(claim)
            all_kept = kept(claim.run_dir, root) and (not claim.versus or kept(claim.versus[0], root))
        rows.append(ledger_row(claim, evidence, all_kept))
    counts = {v: sum(r[2] == v for r in rows) for v in dict.fromkeys(r[2] for r in rows)}
    lines = [
        "# Claims ledger",
        "",
        "Written by `python -m advjax.ledger` from the committed results: the significance.csv of each figure",
        "folder and the runs kept under `figures/runs/` (results.csv and manifest.json). Do not edit by hand;",
        "rerun the command, which writes the same bytes from the same files.",
        "",
        RULES,
        "",
        "Tally: " + ", ".join(f"{v} {n}" for v, n in counts.items()) + ".",
        "",
        "| source | claim | verdict | evidence (file, effect A − B with 95% CI, n, Holm p and its family) | caps |",
        "|---|---|---|---|---|",
        *("| " + " | ".join(_cell(c) for c in r) + " |" for r in rows),
        "",
        "## How the figure folders are drawn",
        "",
        "Each from its runs under `figures/runs/` (`python -m advjax.ledger --redraw` runs these where every run is",
        "kept). A run not kept is made again by its sweep file (its header gives the wall time on 2 CPU cores):",
        "",
    ]
    for study in STUDIES.values():
        missing = [r for r in study.runs if not kept(r, root)]
        state = "every run kept" if not missing else "not kept: " + ", ".join(missing)
        lines += [f"- `{study.folder}/` ({state}):", "", "  ```bash",
                  *(f"  {sweep_command(r)}" for r in missing), f"  {study.command()}", "  ```", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def redraw(root: str = ROOT) -> list[str]:
    """Every figure folder whose runs are all kept, drawn again by the figures command."""
    from .figures import main as figures_main

    drawn = []
    for study in STUDIES.values():
        if all(kept(r, root) for r in study.runs):
            args = [os.path.join(root, RUNS, r) for r in study.runs]
            figures_main([*args, "--out", os.path.join(root, study.folder),
                          *([] if study.composites else ["--no-composites"])])
            drawn.append(study.folder)
    return drawn


def _minus(x: float, digits: int = 1) -> str:
    return f"{x:+.{digits}f}".replace("-", "−") if x < 0 else f"{x:+.{digits}f}" if x > 0 else f"{x:.{digits}f}"


def p_text(p: float) -> str:
    """A p-value as REPRODUCING.md writes it: two significant digits, 9.7·10^-6 below 10^-3."""
    if p >= 1e-3:
        return f"{p:.2g}"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}·10^{int(exponent)}"


def cell(folder: str, run: str, comparison: str, width: int, at: dict[str, float], capped: bool = True,
         root: str = ROOT) -> str:
    """One significance row as REPRODUCING.md's tables quote it: the paired difference in
    points with its 95% CI and Holm p, and (`capped`) the seeds of either arm at a cap."""
    [r] = [r for r in read_significance(folder, root) if r["run"] == run and r["comparison"] == comparison
           and int(r["width"]) == width and _at_matches(r, tuple(at.items()))]
    low, high = 100 * float(r["ci95_low"]), 100 * float(r["ci95_high"])
    text = f"{_minus(100 * float(r['mean_diff']))} [{_minus(low)}, {_minus(high)}], Holm {p_text(float(r['p_t_holm']))}"
    k = int(r["unconverged_seeds"] or 0)
    return text + (f" ({k} capped)" if capped and k else "")


def main(argv: list[str] | None = None) -> int:
    from .options import OneLineParser

    ap = OneLineParser(prog="advjax.ledger", description="Write figures/LEDGER.md from the committed results.")
    ap.add_argument("--out", default=os.path.join(ROOT, "figures", "LEDGER.md"), help="the file to write")
    ap.add_argument("--redraw", action="store_true",
                    help="first redraw every figure folder whose runs are all kept under figures/runs")
    ap.add_argument("--cell", nargs="+", metavar="ARG",
                    help="print one table cell of REPRODUCING.md instead: FOLDER RUN 'A - B' WIDTH [AXIS=VALUE ...]")
    args = ap.parse_args(argv)
    if args.cell:
        folder, run, comparison, width, *point = args.cell
        print(cell(folder, run, comparison, int(width), {a: float(v) for a, v in (x.split("=") for x in point)}))
        return 0
    if args.redraw:
        for folder in redraw():
            print(f"redrew {folder}")
    text = build()
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
