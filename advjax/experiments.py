"""An experiment is a composition of phases (paper section 3.1).

A phase says which labels it trains on, how its start is made from the end of the
phase before (or from θ0 for the first phase), and which layers it trains. Every phase
runs through the one trainer, `train.train`. Phases that two experiments share (phase 1
of `adversarial` and `frozen`: θ0 trained on y_rand, i.e. Θ_adv) are computed once per
width through a memo keyed by the phase prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import numpy as np

from .model import FEATURES, MLP, READOUT, zero_readout
from .train import Outcome, PhaseSpec, Store, train

ALL_LAYERS = (FEATURES, READOUT)

# Start transforms make a phase's start from the previous phase's parameters (θ0 for a
# first phase) and the width's run (θ0, a fresh init, the teacher, shrink/perturb).
# They take and give seed-batched parameters; layers they keep pass through uncopied.
def _zero_readout(prev: dict, run: WidthRun) -> dict:
    return zero_readout(prev)


def _norms(tree) -> np.ndarray:
    """Euclidean norm of a seed-batched tree, per seed."""
    return np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64)).reshape(len(a), -1), axis=1)
                       for a in jax.tree.leaves(tree)))


def _scale(tree, factor: np.ndarray):
    return jax.tree.map(lambda a: (np.asarray(a) * factor.reshape(-1, *[1] * (np.ndim(a) - 1))).astype(a.dtype),
                        tree)


def _norm_matched_layer(prev: dict, run: WidthRun) -> dict:
    """θ0, each layer rescaled to the norm of the same layer of `prev` (Θ_adv)."""
    theta0 = run.initial()
    return {k: _scale(theta0[k], _norms(prev[k]) / _norms(theta0[k])) for k in theta0}


def _norm_matched_global(prev: dict, run: WidthRun) -> dict:
    """θ0 rescaled as a whole to the norm of `prev` (Θ_adv)."""
    theta0 = run.initial()
    return _scale(theta0, _norms(prev) / _norms(theta0))


def _shrink_perturb(prev: dict, run: WidthRun) -> dict:
    """λ·prev + σ·θ_fresh (Ash & Adams 2020), θ_fresh a new random init of every seed."""
    fresh = run.fresh()
    return jax.tree.map(lambda a, b: (run.shrink * np.asarray(a) + run.perturb * np.asarray(b)).astype(a.dtype),
                        prev, fresh)


def _teacher_features(prev: dict, run: WidthRun) -> dict:
    """The teacher's features as the first min(p, k) hidden units (others silent: zero
    weights and bias), readout 0."""
    t = _teacher(run)
    hidden = jax.tree.map(np.zeros_like, prev[FEATURES])
    k = min(hidden["kernel"].shape[-1], t["kernel"].shape[-1])
    hidden["kernel"][..., :k] = t["kernel"][..., :k]
    hidden["bias"][..., :k] = t["bias"][..., :k]
    return zero_readout({**prev, FEATURES: hidden})


def _orthogonal_features(prev: dict, run: WidthRun) -> dict:
    """`prev`'s hidden directions (θ0's) with their components along the teacher's
    directions removed, each rescaled to its old norm; biases kept; readout 0."""
    w_t = _teacher(run)["kernel"]  # (S, d, k)
    q, _ = np.linalg.qr(np.asarray(w_t, np.float64))  # orthonormal basis of the teacher's span (k < d)
    w = np.asarray(prev[FEATURES]["kernel"], np.float64)  # (S, d, p)
    w_perp = w - q @ (np.swapaxes(q, 1, 2) @ w)
    w_perp *= np.linalg.norm(w, axis=1, keepdims=True) / np.maximum(np.linalg.norm(w_perp, axis=1, keepdims=True),
                                                                     1e-30)
    hidden = {**prev[FEATURES], "kernel": w_perp.astype(np.float32)}
    return zero_readout({**prev, FEATURES: hidden})


def _teacher(run: WidthRun) -> dict:
    if run.teacher is None:
        raise ValueError("this experiment needs the teacher-student dataset (--dataset teacher)")
    return jax.tree.map(np.asarray, run.teacher())


START_TRANSFORMS: dict[str, Callable[[dict, WidthRun], dict]] = {
    "zero_readout": _zero_readout,
    "norm_layer": _norm_matched_layer,
    "norm_global": _norm_matched_global,
    "shrink_perturb": _shrink_perturb,
    "teacher_features": _teacher_features,
    "orthogonal_features": _orthogonal_features,
}


@dataclass(frozen=True)
class Phase:
    labels: str  # "y" (true labels) or "y_rand" (random labels)
    start: str | None = None  # a START_TRANSFORMS name, or None: start where the last phase ended
    trainable: tuple[str, ...] = ALL_LAYERS


PHASE_TRUE = Phase("y")
PHASE_RANDOM = Phase("y_rand")  # phase 1 of Liu et al.: its end is Θ_adv

EXPERIMENTS: dict[str, tuple[Phase, ...]] = {
    # 1: train θ0 on (X, y).
    "baseline": (PHASE_TRUE,),
    # 2: θ0 on (X, y_rand) to zero error -> Θ_adv; then Θ_adv on (X, y).
    "adversarial": (PHASE_RANDOM, PHASE_TRUE),
    # 3: from Θ_adv, first layer frozen, readout reset to 0 and trained alone on (X, y).
    "frozen": (PHASE_RANDOM, Phase("y", start="zero_readout", trainable=(READOUT,))),
    # Hypothesis 1 (the norm): θ0 rescaled to Θ_adv's norm, per layer or as a whole, on (X, y).
    "norm_matched_layer": (PHASE_RANDOM, Phase("y", start="norm_layer")),
    "norm_matched_global": (PHASE_RANDOM, Phase("y", start="norm_global")),
    # An escape from Θ_adv: shrink and perturb it (Ash & Adams 2020), then train on (X, y).
    "shrink_perturb": (PHASE_RANDOM, Phase("y", start="shrink_perturb")),
    # Section 4's random-features model: only the readout (from 0) is trained, on random
    # features (θ0's); `frozen` is the same on adversarial features (Θ_adv's).
    "random_features": (Phase("y", start="zero_readout", trainable=(READOUT,)),),
    # ... and, on --dataset teacher, on the teacher's features or on θ0's made orthogonal to them.
    "teacher_features": (Phase("y", start="teacher_features", trainable=(READOUT,)),),
    "orthogonal_features": (Phase("y", start="orthogonal_features", trainable=(READOUT,)),),
}
EXPERIMENT_NUMBERS = {"1": "baseline", "2": "adversarial", "3": "frozen"}
PAPER_EXPERIMENTS = tuple(EXPERIMENT_NUMBERS.values())  # the default
TEACHER_ONLY = ("teacher_features", "orthogonal_features")


@dataclass(frozen=True)
class TrainSettings:
    lr: float
    max_steps: int
    batch_size: int | None
    loss_reduction: str
    chunk_steps: int
    max_in_flight: int | None = None  # seeds on the devices at once (None: all)
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0


@dataclass
class WidthRun:
    """Everything the phases of one width need; arrays carry the seed axis first
    (x_train only when x_batched)."""

    model: MLP
    theta0: dict | Callable[[], dict]  # or a function that makes it (called per first phase, then let go)
    x_train: jax.Array
    labels: dict[str, jax.Array]  # "y", "y_rand": (seeds, n_train)
    batch_keys: jax.Array  # (seeds,): one per seed, folded with the phase's position
    x_batched: bool
    settings: TrainSettings  # phases on the true labels
    progress: Callable[[str, int], Callable] | None = None  # (phase in words, step cap) -> chunk callback
    store: Callable[[tuple[Phase, ...]], Store | None] | None = None  # phase prefix -> its checkpoints
    memo: dict[tuple[Phase, ...], Outcome] = field(default_factory=dict)
    random_settings: TrainSettings | None = None  # phases on random labels (None: `settings`)
    fresh: Callable[[], dict] | None = None  # a second, independent init of every seed (shrink_perturb)
    teacher: Callable[[], dict] | None = None  # the teacher's features of every seed (--dataset teacher)
    shrink: float = 0.4  # shrink_perturb's λ
    perturb: float = 0.1  # shrink_perturb's σ

    def initial(self) -> dict:
        return self.theta0() if callable(self.theta0) else self.theta0

    def settings_for(self, phase: Phase) -> TrainSettings:
        return self.random_settings if phase.labels == "y_rand" and self.random_settings else self.settings


START_WORDS = {
    "zero_readout": "readout reset to 0",
    "norm_layer": "θ0 at Θ_adv's layer norms",
    "norm_global": "θ0 at Θ_adv's norm",
    "shrink_perturb": "shrink-perturbed Θ_adv",
    "teacher_features": "the teacher's features",
    "orthogonal_features": "features orthogonal to the teacher",
}


def describe(phases: tuple[Phase, ...], i: int, name: str = "") -> str:
    """Phase i of an experiment in the README's words, e.g. 'frozen · phase 2, true
    labels, readout reset to 0, training readout only'."""
    phase = phases[i]
    words = [f"phase {i + 1}", "random labels" if phase.labels == "y_rand" else "true labels"]
    if phase.start:
        words.append(START_WORDS.get(phase.start, phase.start))
    if phase.trainable != ALL_LAYERS:
        words.append(f"training {' and '.join(phase.trainable)} only")
    return (f"{name} · " if name else "") + ", ".join(words)


def run_phases(phases: tuple[Phase, ...], run: WidthRun, name: str = "") -> list[Outcome]:
    """Outcomes of each phase of an experiment, reusing any prefix already computed
    (`name`, the experiment's, labels its progress)."""
    outcomes: list[Outcome] = []
    params = None
    for i, phase in enumerate(phases):
        prefix = phases[: i + 1]
        if prefix not in run.memo:
            fresh = i == 0 and callable(run.theta0)  # θ0 made for this phase alone: train in place
            if i == 0:
                params = run.initial()
            start = START_TRANSFORMS[phase.start](params, run) if phase.start else params
            del params
            s = run.settings_for(phase)
            spec = PhaseSpec(
                model=run.model,
                trainable=phase.trainable,
                batch_size=s.batch_size,
                loss_reduction=s.loss_reduction,
                chunk_steps=s.chunk_steps,
                x_batched=run.x_batched,
                optimizer=s.optimizer,
                momentum=s.momentum,
                weight_decay=s.weight_decay,
            )
            keys = jax.vmap(lambda k: jax.random.fold_in(k, i))(run.batch_keys)  # noqa: B023
            callback = run.progress(describe(phases, i, name), s.max_steps) if run.progress else None
            run.memo[prefix] = train(
                spec, start, run.x_train, run.labels[phase.labels], keys,
                s.lr, s.max_steps, progress=callback, store=run.store(prefix) if run.store else None,
                max_in_flight=s.max_in_flight, donate=fresh and not phase.start,
            )
            del start
        outcomes.append(run.memo[prefix])
        params = run.memo[prefix].params
    return outcomes


def last_start(phases: tuple[Phase, ...], run: WidthRun) -> dict:
    """The parameters the last phase of `phases` started from (its earlier phases must
    be in the memo): what a solution's distance travelled is measured from."""
    prev = run.memo[phases[:-1]].params if len(phases) > 1 else run.initial()
    return START_TRANSFORMS[phases[-1].start](prev, run) if phases[-1].start else prev


def intermediate_prefixes(names) -> set[tuple[Phase, ...]]:
    """Phase prefixes whose end starts a later phase (Θ_adv): the ones worth keeping."""
    return {EXPERIMENTS[n][:i] for n in names for i in range(1, len(EXPERIMENTS[n]))}


def prefix_name(prefix: tuple[Phase, ...]) -> str:
    """Directory name of a phase prefix's checkpoints, e.g. theta_adv, y_rand+y."""
    if prefix == (PHASE_RANDOM,):
        return "theta_adv"
    parts = []
    for p in prefix:
        part = p.labels + (f".{p.start}" if p.start else "")
        if p.trainable != ALL_LAYERS:
            part += ".train-" + "-".join(p.trainable)
        parts.append(part)
    return "+".join(parts)


def resolve_experiments(spec: str | list) -> tuple[str, ...]:
    """'1,3' or 'baseline,frozen' (or a list, or 'all') -> experiment names, in the order given."""
    items = spec.split(",") if isinstance(spec, str) else [str(v) for v in spec]
    if [i.strip() for i in items] == ["all"]:
        return tuple(EXPERIMENTS)
    names = []
    for item in (i.strip() for i in items):
        name = EXPERIMENT_NUMBERS.get(item, item)
        if name not in EXPERIMENTS:
            raise ValueError(item)
        if name not in names:
            names.append(name)
    if not names:
        raise ValueError("")
    return tuple(names)

