"""An experiment is a composition of phases (paper section 3.1).

A phase says which labels it trains on, how its start is made from the end of the
phase before (or from θ0 for the first phase), which layers it trains and with which
optimizer. Every phase runs through the one trainer, `train.train`. Phases that two
experiments share (phase 1 of `adversarial` and `frozen`: θ0 trained on y_rand, i.e.
Θ_adv) are computed once per width through a memo keyed by the phase prefix.

Layers are the model's (`model.layers`, the last the readout): experiments that act on
one layer, `freeze_k` and `reinit_k`, exist for every k the model has.

A BatchNorm model's running statistics pass from phase to phase with its parameters
(Θ_adv's start phase 2). Where a start transform makes a layer anew from θ0 or a fresh
init, that layer starts with the initial statistics (`start_state_of`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np

from .model import Model, feature_layers, initial_states, readout, zero_readout
from .train import Numbers, Outcome, PhaseSpec, RunOptions, Store, need_for, train


# Start transforms make a phase's start from the previous phase's parameters (θ0 for a
# first phase) and the width's run (θ0, a fresh init, the teacher, shrink/perturb).
# They take and give seed-batched parameters; layers they keep pass through uncopied.
def _zero_readout(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    return zero_readout(run.model, prev)


def _norms(tree) -> np.ndarray:
    """Euclidean norm of a seed-batched tree, per seed."""
    return np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64)).reshape(len(a), -1), axis=1)
                       for a in jax.tree.leaves(tree)))


def _scale(tree, factor: np.ndarray):
    return jax.tree.map(lambda a: (np.asarray(a) * factor.reshape(-1, *[1] * (np.ndim(a) - 1))).astype(a.dtype),
                        tree)


def _norm_matched_layer(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """θ0, each layer rescaled to the norm of the same layer of `prev` (Θ_adv)."""
    theta0 = run.initial()
    return {k: _scale(theta0[k], _norms(prev[k]) / _norms(theta0[k])) for k in theta0}


def _norm_matched_global(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """θ0 rescaled as a whole to the norm of `prev` (Θ_adv)."""
    theta0 = run.initial()
    return _scale(theta0, _norms(prev) / _norms(theta0))


def _shrink_perturb(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """λ·prev + σ·θ_fresh (Ash & Adams 2020), θ_fresh a new random init of every seed;
    λ, σ: the phase's shrink and perturb."""
    fresh = run.fresh()
    return jax.tree.map(lambda a, b: (phase.shrink * np.asarray(a) + phase.perturb * np.asarray(b)).astype(a.dtype),
                        prev, fresh)


def _reinit_layer(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """`prev` (Θ_adv) with one layer, phase.start_layer, replaced by the same layer of a
    fresh init (the `fresh` key stream, as shrink_perturb's θ_fresh); every other layer
    passes through untouched."""
    return {**prev, phase.start_layer: run.fresh()[phase.start_layer]}


def _teacher_features(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """The teacher's features as the first min(p, k) units of the (only) feature layer
    (others silent: zero weights and bias), readout 0."""
    t = _teacher(run)
    first = run.model.layers[0]
    units = jax.tree.map(np.zeros_like, prev[first])
    k = min(units["kernel"].shape[-1], t["kernel"].shape[-1])
    units["kernel"][..., :k] = t["kernel"][..., :k]
    units["bias"][..., :k] = t["bias"][..., :k]
    return zero_readout(run.model, {**prev, first: units})


def _orthogonal_features(prev: dict, run: WidthRun, phase: Phase | None = None) -> dict:
    """`prev`'s feature directions (θ0's) with their components along the teacher's
    directions removed, each rescaled to its old norm; biases kept; readout 0."""
    first = run.model.layers[0]
    w_t = _teacher(run)["kernel"]  # (S, d, k)
    q, _ = np.linalg.qr(np.asarray(w_t, np.float64))  # orthonormal basis of the teacher's span (k < d)
    w = np.asarray(prev[first]["kernel"], np.float64)  # (S, d, p)
    w_perp = w - q @ (np.swapaxes(q, 1, 2) @ w)
    w_perp *= np.linalg.norm(w, axis=1, keepdims=True) / np.maximum(np.linalg.norm(w_perp, axis=1, keepdims=True),
                                                                     1e-30)
    units = {**prev[first], "kernel": w_perp.astype(np.float32)}
    return zero_readout(run.model, {**prev, first: units})


def _teacher(run: WidthRun) -> dict:
    if run.teacher is None:
        raise ValueError("this experiment needs the teacher-student dataset (--dataset teacher)")
    return jax.tree.map(np.asarray, run.teacher())


START_TRANSFORMS: dict[str, Callable[[dict, WidthRun, Phase], dict]] = {
    "zero_readout": _zero_readout,
    "norm_layer": _norm_matched_layer,
    "norm_global": _norm_matched_global,
    "shrink_perturb": _shrink_perturb,
    "reinit": _reinit_layer,
    "teacher_features": _teacher_features,
    "orthogonal_features": _orthogonal_features,
}


@dataclass(frozen=True)
class Optimizer:
    """How a phase trains: optax's sgd (with torch.optim.SGD's momentum and L2 weight
    decay) or adam, its step size and its step cap, and the augmentation of its images
    ("none" or "crop-flip")."""

    name: str = "sgd"
    lr: float = 0.01
    max_steps: int = 100_000
    momentum: float = 0.0
    weight_decay: float = 0.0
    augment: str = "none"


@dataclass(frozen=True)
class Phase:
    labels: str  # "y" (true labels) or "y_rand" (random labels)
    start: str | None = None  # a START_TRANSFORMS name, or None: start where the last phase ended
    trainable: tuple[str, ...] | None = None  # layers trained (None: every layer); the others are frozen
    optimizer: Optimizer = Optimizer()  # how it trains: optimizer, step size, cap, momentum, ...
    start_layer: str | None = None  # the layer a start transform acts on (reinit)
    target_acc: float = 1.0  # stop at this training accuracy on the phase's labels (1: zero error)
    budget: bool = False  # train exactly the step cap, never checking the error (Liu et al.'s fixed epochs)
    random_fraction: float = 1.0  # y_rand: the share of points whose labels are randomized (1: all)
    shrink: float | None = None  # shrink_perturb's λ and σ (that start only)
    perturb: float | None = None


PHASE_TRUE = Phase("y")
PHASE_RANDOM = Phase("y_rand")  # phase 1 of Liu et al.: its end is Θ_adv

@dataclass(frozen=True)
class Kit:
    """What an experiment's phases are made of, for one model at one grid point: `y`, a
    phase on the true labels (from where the last ended); `y_rand`, phase 1 on random
    labels (its end is Θ_adv); `then(start=..., trainable=...)`, a true-label phase from
    a start transform (START_TRANSFORMS) or with only some layers trained."""

    model: Model
    y: Phase
    y_rand: Phase
    then: Callable[..., Phase]

    @property
    def readout_only(self) -> tuple[str, ...]:
        return (readout(self.model),)


@dataclass(frozen=True)
class ExperimentSpec:
    """An experiment and every fact the rest of advjax reads about it: its phases, what
    it is in words, its colour and label in figures, the experiments it is compared with
    (paired, this − that), the sweep options only it reads, and the host memory its
    start costs. `register_experiment` adds one; nothing else needs to change."""

    name: str
    phases: Callable[[Kit], tuple[Phase, ...]]
    about: str
    color: str = "gray"
    label: str = ""  # in legends (default: the name)
    compare_with: tuple[str, ...] = ()
    settings: tuple[str, ...] = ()  # options that apply only with this experiment (--shrink, --perturb)
    host_copies: int = 1  # extra host copies of every seed's parameters its start keeps (memory.host_copies)
    needs_teacher: bool = False  # trains on the teacher's features: --dataset teacher, depth 1


EXPERIMENT_SPECS: dict[str, ExperimentSpec] = {}
# The paired comparisons figures and significance files draw, in their historical order;
# `register_experiment` appends a new experiment's own.
_COMPARISON_ORDER: list[tuple[str, str]] = [
    ("adversarial", "baseline"), ("frozen", "adversarial"), ("frozen", "baseline"),
    ("norm_matched_layer", "baseline"), ("norm_matched_global", "baseline"),
    ("norm_matched_layer", "adversarial"), ("norm_matched_global", "adversarial"), ("shrink_perturb", "adversarial"),
    ("random_features", "frozen"), ("teacher_features", "random_features"),
    ("orthogonal_features", "random_features")]


def register_experiment(spec: ExperimentSpec) -> ExperimentSpec:
    """Make `spec` an experiment every tool knows by name (--experiments NAME)."""
    if not spec.name.isidentifier() or per_layer(spec.name) is not None or spec.name in ("all", *EXPERIMENT_NUMBERS):
        raise ValueError(f"an experiment name is an identifier that is not a per-layer name, not {spec.name!r}")
    EXPERIMENT_SPECS[spec.name] = spec
    for other in spec.compare_with:
        if (spec.name, other) not in _COMPARISON_ORDER:
            _COMPARISON_ORDER.append((spec.name, other))
    return spec


def comparisons() -> list[tuple[str, str]]:
    """Every registered paired comparison (a, b): a − b, in the order figures draw them."""
    return list(_COMPARISON_ORDER)


EXPERIMENT_NUMBERS = {"1": "baseline", "2": "adversarial", "3": "frozen"}
PAPER_EXPERIMENTS = tuple(EXPERIMENT_NUMBERS.values())  # the default
# Per-layer families: `freeze_k`, `reinit_k` exist for each layer k of the model (`experiment_names`).
PER_LAYER = {
    "freeze": "from Θ_adv: layers 1..k frozen, the rest trained on (X, y) (k = 1 .. number of feature layers)",
    "reinit": "Θ_adv with layer k alone re-initialised (fresh init), all trained on (X, y) (k = 1 .. readout)",
}
def per_layer(name: str) -> tuple[str, int] | None:
    """'freeze_2' -> ('freeze', 2); None for a name of no layer."""
    kind, _, k = name.rpartition("_")
    if kind in PER_LAYER and k.isdigit() and int(k) >= 1 and str(int(k)) == k:
        return kind, int(k)
    return None


# Colours from the paper (black, red, blue), and Okabe and Ito's colorblind-safe palette and
# Tol's wine and ochre: experiments that one sweep runs together get colors no reader confuses.
for _spec in (
    ExperimentSpec("baseline", lambda k: (k.y,), "θ0 on (X, y)", "black", "1: baseline", host_copies=0),
    # 2: θ0 on (X, y_rand) to zero error -> Θ_adv; then Θ_adv on (X, y).
    ExperimentSpec("adversarial", lambda k: (k.y_rand, k.y), "θ0 on (X, y_rand) -> Θ_adv; Θ_adv on (X, y)", "red",
                   "2: adversarial", ("baseline",), host_copies=0),
    # 3: from Θ_adv, every feature layer frozen, readout reset to 0 and trained alone.
    ExperimentSpec("frozen", lambda k: (k.y_rand, k.then(start="zero_readout", trainable=k.readout_only)),
                   "from Θ_adv: every feature layer frozen, readout reset to 0 and trained alone on (X, y)", "blue",
                   "3: frozen features", ("adversarial", "baseline"), host_copies=0),
    # Hypothesis 1 (the norm): θ0 rescaled to Θ_adv's norm, per layer or as a whole.
    ExperimentSpec("norm_matched_layer", lambda k: (k.y_rand, k.then(start="norm_layer")),
                   "θ0, each layer at the norm of Θ_adv's same layer, on (X, y)", "#009E73",
                   "θ0 at Θ_adv's norm (per layer)", ("baseline", "adversarial")),
    ExperimentSpec("norm_matched_global", lambda k: (k.y_rand, k.then(start="norm_global")),
                   "θ0 at Θ_adv's total norm, on (X, y)", "#CC79A7", "θ0 at Θ_adv's norm (whole)",
                   ("baseline", "adversarial")),
    # An escape from Θ_adv: shrink and perturb it (Ash & Adams 2020).
    ExperimentSpec("shrink_perturb", lambda k: (k.y_rand, k.then(start="shrink_perturb")),
                   "λ·Θ_adv + σ·θ_fresh on (X, y)", "#E69F00", "shrink-perturb Θ_adv", ("adversarial",),
                   settings=("shrink", "perturb")),
    # Section 4's random-features model: only the readout (from 0) is trained, on random
    # features (θ0's); `frozen` is the same on adversarial features (Θ_adv's).
    ExperimentSpec("random_features", lambda k: (k.then(start="zero_readout", trainable=k.readout_only),),
                   "θ0's features frozen, readout from 0 trained alone on (X, y)", "#56B4E9",
                   "random features (θ0's)", ("frozen",)),
    # ... and, on --dataset teacher, on the teacher's features or on θ0's made orthogonal to them.
    ExperimentSpec("teacher_features", lambda k: (k.then(start="teacher_features", trainable=k.readout_only),),
                   "the teacher's features, readout from 0 trained alone (--dataset teacher, depth 1)", "#882255",
                   "teacher features", ("random_features",), needs_teacher=True),
    ExperimentSpec("orthogonal_features", lambda k: (k.then(start="orthogonal_features", trainable=k.readout_only),),
                   "θ0's features orthogonal to the teacher's, readout alone (--dataset teacher, depth 1)", "#DDAA33",
                   "features orthogonal to the teacher", ("random_features",), needs_teacher=True),
):
    register_experiment(_spec)


def layers_needed(name: str) -> int:
    """How many layers (the readout included) a model needs for this experiment."""
    kind_k = per_layer(name)
    if kind_k is None:
        return 2
    kind, k = kind_k
    return k + 1 if kind == "freeze" else k  # freeze_k leaves something to train: layer k+1


def experiment_names(n_layers: int, teacher: bool = False) -> tuple[str, ...]:
    """Every experiment a model of n_layers layers (readout included) can run: `all`."""
    names = [n for n, spec in EXPERIMENT_SPECS.items() if teacher or not spec.needs_teacher]
    if teacher and n_layers > 2:
        names = [n for n in names if not EXPERIMENT_SPECS[n].needs_teacher]
    names += [f"freeze_{k}" for k in range(1, n_layers)]
    names += [f"reinit_{k}" for k in range(1, n_layers + 1)]
    return tuple(names)


@dataclass(frozen=True)
class Stops:
    """Where phases stop and what phase 1 trains on: the dose of the setback."""

    target_acc: float = 1.0  # the true-label phases' training accuracy target (1: zero error)
    rule: str = "target"  # the true-label phases stop at target_acc, or ("budget") after exactly their cap
    phase1_target_acc: float = 1.0  # the random-label phase's
    random_fraction: float = 1.0  # the share of phase 1's labels that are random
    shrink: float = 0.4  # shrink_perturb's λ, σ
    perturb: float = 0.1


def experiment(name: str, model: Model, on_y: Optimizer = Optimizer(),
               on_y_rand: Optimizer | None = None, stops: Stops = Stops()) -> tuple[Phase, ...]:
    """The phases of experiment `name` for `model`. Phases on the true labels train with
    `on_y`, phases on the random labels with `on_y_rand` (default: plain `on_y.name` at
    its step size and cap), so "Adam in phase 1 only" or "weight decay after Θ_adv only"
    is a phase definition; `stops` sets their stop targets and phase 1's share of random
    labels. Every phase carries its optimizer: nothing falls back to a run's settings."""
    if on_y_rand is None:
        on_y_rand = Optimizer(on_y.name, on_y.lr, on_y.max_steps)
    budget = stops.rule == "budget"
    y = Phase("y", optimizer=on_y, target_acc=stops.target_acc, budget=budget)
    y_rand = Phase("y_rand", optimizer=on_y_rand, target_acc=stops.phase1_target_acc,
                   random_fraction=stops.random_fraction)

    def then(**kw) -> Phase:
        if kw.get("start") == "shrink_perturb":
            kw |= {"shrink": stops.shrink, "perturb": stops.perturb}
        return Phase("y", optimizer=on_y, target_acc=stops.target_acc, budget=budget, **kw)

    spec = EXPERIMENT_SPECS.get(name)
    if spec is not None:
        if spec.needs_teacher and len(feature_layers(model)) != 1:
            raise ValueError(f"{name} needs one feature layer (depth 1); the model has {len(feature_layers(model))}")
        return spec.phases(Kit(model, y, y_rand, then))
    kind_k = per_layer(name)
    if kind_k is None:
        raise ValueError(f"unknown experiment {name!r}")
    kind, k = kind_k
    layers = model.layers
    if k > len(layers) - (kind == "freeze"):
        top = len(layers) - (kind == "freeze")
        raise ValueError(f"{name} needs layer {k}; the model has {kind}_1 .. {kind}_{top}")
    if kind == "freeze":  # layers 1..k of Θ_adv frozen, the rest trained from Θ_adv
        return (y_rand, then(trainable=layers[k:]))
    return (y_rand, then(start="reinit", start_layer=layers[k - 1]))


@dataclass(frozen=True)
class TrainSettings:
    """What every phase of a width shares (each phase carries its own optimizer)."""

    batch_size: int | None
    loss_reduction: str
    chunk_steps: int
    max_in_flight: int | None = None  # seeds on the devices at once (None: all)
    check_every: int = 1  # steps between zero-error checks
    lr_boundaries: tuple[int, ...] = ()  # the step schedule's boundaries in steps, and its factor
    lr_factor: float = 1.0
    compact: bool = True  # regroup the live seed groups as others finish (train's `compact`; same results)
    repack: bool = False  # ... and repack live seeds into new groups (train's `repack`; last bits may change)
    tuner: Any = None  # a tune.GroupTuner: each phase's seed-group size probed on this machine (same results)
    group_elements: int = 1 << 20  # train's PhaseSpec.group_elements (train.group_elements_of a seed layout)


@dataclass(frozen=True)
class RandomSet:
    """What phases on random labels train on where it is not (x_train, y_rand): Liu et
    al.'s confusion set, R altered copies of every training example, each with its own
    random label. Laid out as x_train (a seed axis where x_batched), m = R·n examples."""

    x: jax.Array
    y: np.ndarray  # (seeds, m): each copy's true label (its source example's)
    y_rand: np.ndarray  # (seeds, m): the labels phase 1 fits


@dataclass
class WidthRun:
    """Everything the phases of one width need; arrays carry the seed axis first
    (x_train only when x_batched)."""

    model: Model
    theta0: dict | Callable[[], dict]  # or a function that makes it (called per first phase, then let go)
    x_train: jax.Array
    labels: dict[str, jax.Array]  # "y", "y_rand": (seeds, n_train)
    batch_keys: jax.Array  # (seeds,): one per seed, folded with the phase's position
    x_batched: bool
    settings: TrainSettings
    progress: Callable[[str, int], Callable] | None = None  # (phase in words, step cap) -> chunk callback
    store: Callable[[list[tuple[Phase, ...]]], Store | None] | None = None  # prefixes trained together -> a store
    memo: dict[tuple[Phase, ...], Outcome] = field(default_factory=dict)
    fresh: Callable[[], dict] | None = None  # a second, independent init of every seed (shrink_perturb, reinit)
    teacher: Callable[[], dict] | None = None  # the teacher's features of every seed (--dataset teacher)
    fraction_keys: jax.Array | None = None  # (seeds,): which points a random_fraction < 1 randomizes
    random_set: RandomSet | None = None  # phases on random labels train on it (None: on x_train, y_rand)

    def initial(self) -> dict:
        return self.theta0() if callable(self.theta0) else self.theta0

    def x_of(self, phase: Phase) -> jax.Array:
        """The inputs a phase trains on: the confusion set's on random labels where there
        is one, else x_train."""
        return self.random_set.x if phase.labels == "y_rand" and self.random_set is not None else self.x_train

    def initial_state(self) -> dict:
        """Every seed's running statistics at init ({} for a model without BatchNorm)."""
        return initial_states(self.model, len(self.batch_keys))

    def labels_of(self, phase: Phase) -> np.ndarray:
        """The labels a phase trains on, per seed (partly random where random_fraction < 1)."""
        if phase.labels != "y_rand":
            return self.labels[phase.labels]
        rs = self.random_set
        y, y_rand = (self.labels["y"], self.labels["y_rand"]) if rs is None else (rs.y, rs.y_rand)
        if phase.random_fraction == 1.0:
            return y_rand
        key = f"y_rand@{phase.random_fraction!r}"
        if key not in self.labels:
            self.labels[key] = partly_random(y, y_rand, phase.random_fraction, self.fraction_keys)
        return self.labels[key]


def n_randomized(fraction: float, n: int) -> int:
    """round(α·n), halves up: how many of n labels a random_fraction α randomizes."""
    return math.floor(fraction * n + 0.5)


def partly_random(y: np.ndarray, y_rand: np.ndarray, fraction: float, keys: jax.Array) -> np.ndarray:
    """Per seed, the first round(α·n) points of a permutation drawn from the seed's
    fraction key take their y_rand label, the rest keep y. The randomized sets are
    nested in α (a point randomized at α is randomized at every larger α), and its
    random label is the same as at α = 1: doses differ only in how many points."""
    n = y.shape[-1]
    k = n_randomized(fraction, n)
    order = np.asarray(jax.vmap(lambda key: jax.random.permutation(key, n))(keys))
    chosen = np.zeros(y.shape, bool)
    np.put_along_axis(chosen, order[:, :k], True, axis=1)
    return np.where(chosen, np.asarray(y_rand), np.asarray(y)).astype(np.asarray(y).dtype)


def start_of(phase: Phase, prev: dict, run: WidthRun) -> dict:
    """A phase's start: its transform of `prev`, or `prev` itself."""
    return START_TRANSFORMS[phase.start](prev, run, phase) if phase.start else prev


def start_state_of(phase: Phase, prev_state: dict, run: WidthRun) -> dict:
    """The running statistics a phase starts with: the previous phase's, except for the
    layers its start makes anew: θ0 rescaled (norm-matched: the initial statistics, as the
    baseline's) or a re-initialised layer (its initial statistics). Shrink-perturb keeps
    Θ_adv's, as a torch module's buffers are kept when its parameters are."""
    if phase.start in ("norm_layer", "norm_global"):
        return run.initial_state()
    if phase.start == "reinit" and phase.start_layer in prev_state:
        return {**prev_state, phase.start_layer: run.initial_state()[phase.start_layer]}
    return prev_state


START_WORDS = {
    "zero_readout": "readout reset to 0",
    "norm_layer": "θ0 at Θ_adv's layer norms",
    "norm_global": "θ0 at Θ_adv's norm",
    "shrink_perturb": "shrink-perturbed Θ_adv",
    "reinit": "re-initialised",
    "teacher_features": "the teacher's features",
    "orthogonal_features": "features orthogonal to the teacher",
}


def describe(phases: tuple[Phase, ...], i: int, name: str = "") -> str:
    """Phase i of an experiment in the README's words, e.g. 'frozen · phase 2, true
    labels, readout reset to 0, training readout only'."""
    phase = phases[i]
    words = [f"phase {i + 1}", "random labels" if phase.labels == "y_rand" else "true labels"]
    if phase.start:
        words.append(START_WORDS.get(phase.start, phase.start) + (f" {phase.start_layer}" if phase.start_layer else ""))
    if phase.trainable is not None:
        words.append(f"training {' and '.join(phase.trainable)} only")
    return (f"{name} · " if name else "") + ", ".join(words)


def run_phases(phases: tuple[Phase, ...], run: WidthRun, name: str = "") -> list[Outcome]:
    """Outcomes of each phase of an experiment, reusing any prefix already computed
    (`name`, the experiment's, labels its progress)."""
    return run_points([phases], run, name)[0]


def run_points(plans: list[tuple[Phase, ...]], run: WidthRun, name: str = "") -> list[list[Outcome]]:
    """Outcomes of each phase of one experiment at every grid point (`plans`: its phases
    at each point). Phase by phase, the prefixes not yet computed train together, every
    point's seeds side by side in one program; a prefix that several points share (Θ_adv
    under a grid of phase-2 step sizes) is one entry, computed once."""
    for i in range(len(plans[0])):
        todo = list(dict.fromkeys(p[: i + 1] for p in plans if p[: i + 1] not in run.memo))
        if todo:
            _train_together(todo, run, name)
    return [[run.memo[p[: i + 1]] for i in range(len(p))] for p in plans]


def _train_together(prefixes: list[tuple[Phase, ...]], run: WidthRun, name: str) -> None:
    """Train the last phase of each prefix (all of one length, one experiment, so they
    differ only in traced numbers: step size, cap, target, momentum, weight decay,
    label dose, start scale) as one batch of len(prefixes) × seeds, and memoize each."""
    i, phases = len(prefixes[0]) - 1, [p[-1] for p in prefixes]
    first, s = phases[0], run.settings
    assert all((p.labels, p.start, p.trainable, p.start_layer, p.budget)
               == (first.labels, first.start, first.trainable, first.start_layer, first.budget) for p in phases)
    opts = [p.optimizer for p in phases]
    assert len({(o.name, o.augment) for o in opts}) == 1
    fresh = i == 0 and callable(run.theta0)  # θ0 made for this phase alone: train in place
    before = [run.initial()] * len(prefixes) if i == 0 else [run.memo[p[:-1]].params for p in prefixes]
    starts = [start_of(phase, prev, run) for phase, prev in zip(phases, before)]
    del before
    states = [start_state_of(phase, run.initial_state() if i == 0 else run.memo[p[:-1]].state, run)
              for phase, p in zip(phases, prefixes)]
    together = len(prefixes) > 1
    x = run.x_of(first)
    n_seeds, n_train = len(run.batch_keys), x.shape[1 if run.x_batched else 0]
    stack = lambda parts: jax.tree.map(lambda *a: np.concatenate(a), *parts) if together else parts[0]  # noqa: E731
    per_point = lambda values: np.repeat(np.asarray(values), n_seeds)  # noqa: E731
    spec = PhaseSpec(
        model=run.model,
        trainable=first.trainable or run.model.layers,
        batch_size=s.batch_size,
        loss_reduction=s.loss_reduction,
        chunk_steps=s.chunk_steps,
        x_batched=run.x_batched,
        optimizer=opts[0].name,
        momentum=opts[0].momentum,
        weight_decay=opts[0].weight_decay,
        # A number that differs between the points is a traced per-seed value (one program for all).
        per_seed=tuple(k for k in ("momentum", "weight_decay") if len({getattr(o, k) for o in opts}) > 1),
        augment=opts[0].augment,
        check_every=s.check_every,
        budget=first.budget,
        lr_boundaries=s.lr_boundaries,
        lr_factor=s.lr_factor,
        group_elements=s.group_elements,
    )
    keys = np.asarray(jax.vmap(lambda k: jax.random.fold_in(k, i))(run.batch_keys))
    label = describe(prefixes[0], i, name) + (f" · {len(prefixes)} grid points" if together else "")
    callback = run.progress(label, max(o.max_steps for o in opts)) if run.progress else None
    data = (stack(starts), stack([x] * len(prefixes)) if run.x_batched else x,
            stack([run.labels_of(p) for p in phases]), np.tile(keys, (len(prefixes), 1)))
    numbers = Numbers(per_point([o.lr for o in opts]), per_point([o.max_steps for o in opts]),
                      need=per_point([need_for(p.target_acc, n_train) for p in phases]),
                      momentum=per_point([o.momentum for o in opts]),
                      weight_decay=per_point([o.weight_decay for o in opts]))
    how = RunOptions(max_in_flight=s.max_in_flight, block=n_seeds, compact=s.compact, repack=s.repack)
    state0 = stack(states)
    if s.tuner is not None:
        spec = s.tuner.choose(spec, data, numbers, how, state0, label)
    how = dataclasses.replace(how, progress=callback, store=run.store(prefixes) if run.store else None,
                              donate=together or (fresh and not first.start))
    out = train(spec, *data, numbers, how, state0)
    del starts, states
    for d, prefix in enumerate(prefixes):
        rows = slice(d * n_seeds, (d + 1) * n_seeds)
        run.memo[prefix] = Outcome(*(jax.tree.map(lambda a, rows=rows: a[rows], part) for part in out))


def last_start(phases: tuple[Phase, ...], run: WidthRun) -> dict:
    """The parameters the last phase of `phases` started from (its earlier phases must
    be in the memo): what a solution's distance travelled is measured from."""
    prev = run.memo[phases[:-1]].params if len(phases) > 1 else run.initial()
    return start_of(phases[-1], prev, run)


def intermediate_prefixes(plans) -> set[tuple[Phase, ...]]:
    """Phase prefixes whose end starts a later phase (Θ_adv): the ones worth keeping.
    `plans`: the phases of each experiment (an iterable of phase tuples)."""
    return {phases[:i] for phases in plans for i in range(1, len(phases))}


def prefix_name(prefix: tuple[Phase, ...]) -> str:
    """Directory name of a phase prefix's checkpoints, e.g. theta_adv, y_rand+y."""
    if len(prefix) == 1 and prefix[0].labels == "y_rand" and not prefix[0].start and prefix[0].trainable is None:
        return "theta_adv"
    parts = []
    for p in prefix:
        part = p.labels + (f".{p.start}" if p.start else "") + (f"-{p.start_layer}" if p.start_layer else "")
        if p.trainable is not None:
            part += ".train-" + "-".join(p.trainable)
        parts.append(part)
    return "+".join(parts)


def resolve_experiments(spec: str | list) -> tuple[str, ...]:
    """'1,3' or 'baseline,frozen,freeze_2' (or a list, or 'all') -> experiment names, in
    the order given. 'all' is ('all',): what it means depends on the model and dataset
    (`experiment_names`). Per-layer names are checked against the model later."""
    items = spec.split(",") if isinstance(spec, str) else [str(v) for v in spec]
    if [i.strip() for i in items] == ["all"]:
        return ("all",)
    names = []
    for item in (i.strip() for i in items):
        name = EXPERIMENT_NUMBERS.get(item, item)
        if name not in EXPERIMENT_SPECS and per_layer(name) is None:
            raise ValueError(item)
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("")
    return tuple(names)
