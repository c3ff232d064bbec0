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

from .model import FEATURES, MLP, READOUT, zero_readout
from .train import Outcome, PhaseSpec, Store, train

ALL_LAYERS = (FEATURES, READOUT)

# Start transforms: applied to the previous phase's parameters (θ0 for a first phase).
# They take seed-batched parameters; the layers they keep pass through uncopied.
START_TRANSFORMS: dict[str, Callable[[dict], dict]] = {
    "zero_readout": zero_readout,
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
}
EXPERIMENT_NUMBERS = {"1": "baseline", "2": "adversarial", "3": "frozen"}


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
    progress: Callable[[str], Callable] | None = None  # phase label -> chunk callback
    store: Callable[[tuple[Phase, ...]], Store | None] | None = None  # phase prefix -> its checkpoints
    memo: dict[tuple[Phase, ...], Outcome] = field(default_factory=dict)
    random_settings: TrainSettings | None = None  # phases on random labels (None: `settings`)

    def settings_for(self, phase: Phase) -> TrainSettings:
        return self.random_settings if phase.labels == "y_rand" and self.random_settings else self.settings


def run_phases(phases: tuple[Phase, ...], run: WidthRun) -> list[Outcome]:
    """Outcomes of each phase of an experiment, reusing any prefix already computed."""
    outcomes: list[Outcome] = []
    params = None
    for i, phase in enumerate(phases):
        prefix = phases[: i + 1]
        if prefix not in run.memo:
            fresh = i == 0 and callable(run.theta0)  # θ0 made for this phase alone: train in place
            if i == 0:
                params = run.theta0() if fresh else run.theta0
            start = START_TRANSFORMS[phase.start](params) if phase.start else params
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
            label = f"phase {i + 1} ({phase.labels}{', ' + phase.start if phase.start else ''})"
            callback = run.progress(label) if run.progress else None
            run.memo[prefix] = train(
                spec, start, run.x_train, run.labels[phase.labels], keys,
                s.lr, s.max_steps, progress=callback, store=run.store(prefix) if run.store else None,
                max_in_flight=s.max_in_flight, donate=fresh and not phase.start,
            )
            del start
        outcomes.append(run.memo[prefix])
        params = run.memo[prefix].params
    return outcomes


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
    """'1,3' or 'baseline,frozen' (or a list) -> experiment names, in the order given."""
    items = spec.split(",") if isinstance(spec, str) else [str(v) for v in spec]
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

