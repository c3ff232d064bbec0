"""One width's phases and rows: the inputs its phases share, the stores that checkpoint
them, and the rows of each experiment at each grid point (metrics, measures, phase 1)."""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from .checkpoint import PhaseStore, PointStores, final_path, save_final
from .experiments import WidthRun, last_start
from .measures import measure
from .plan import SweepPlan, layout_of, prefix_tag
from .runtime import compile_cache_dir, sync_processes
from .train import evaluate_in_batches, init_params
from .tune import GroupTuner


@dataclasses.dataclass(frozen=True)
class Point:
    """One experiment at one grid point of one width (`values`: its axis values)."""

    width: int
    name: str
    values: dict
    phases: tuple


def width_run(plan: SweepPlan, width: int, in_flight: int, writer: bool) -> WidthRun:
    """The phases' shared inputs for one width; θ0 and the others are made when a phase
    needs them, in batches of `in_flight` seeds (`writer`: whether this process adopts
    --adv-from's checkpoints)."""
    d, ds, model = plan.draws, plan.dataset, plan.models[width]
    keys, n = d.keys, len(d.keys.data)
    teacher = None
    if ds.teacher is not None:
        def teacher():  # seed-batched, like the data it labels
            if d.x_batched:
                return jax.tree.map(np.asarray, jax.vmap(ds.teacher)(keys.data))
            return jax.tree.map(lambda a: np.broadcast_to(a, (n, *a.shape)), ds.teacher(keys.data[0]))
    return WidthRun(
        model=model,
        theta0=functools.partial(init_params, model, keys.init, in_flight),
        x_train=d.split.x_train,
        labels={"y": d.y_train, "y_rand": d.y_rand},
        batch_keys=keys.batches,
        x_batched=d.x_batched,
        settings=dataclasses.replace(plan.settings(in_flight), tuner=tuner_of(plan.cfg)),
        store=functools.partial(stores, plan, width, writer),
        fresh=functools.partial(init_params, model, keys.fresh, in_flight),
        teacher=teacher,
        fraction_keys=keys.fraction,
        random_set=d.random_set,
    )


def tuner_of(cfg) -> GroupTuner | None:
    """The group-size probe (--tune-groups), which tunes cache-sized seed groups only."""
    if cfg.tune_groups and layout_of(cfg) == "cache":
        return GroupTuner(compile_cache_dir(cfg.compile_cache))
    return None


def store(plan: SweepPlan, width: int, prefix, writer: bool) -> PhaseStore:
    """A phase prefix's checkpoint store; with --adv-from, a kept prefix (Θ_adv) is
    first adopted from the other sweep."""
    own = PhaseStore(plan.checkpoint_dir(width, prefix), plan.fingerprint(width, prefix), plan.checkpoint_every)
    if plan.cfg.adv_from and prefix in plan.keep:
        if writer and not own.exists():
            own.adopt(plan.adv_from_source(width, prefix))
        sync_processes("advjax-adopted")
    return own


def stores(plan: SweepPlan, width: int, writer: bool, prefixes):
    """One store per prefix (grid point), however many train together."""
    each = [store(plan, width, prefix, writer) for prefix in prefixes]
    return each[0] if len(each) == 1 else PointStores(each, len(plan.seeds))


def point_rows(plan: SweepPlan, run: WidthRun, in_flight: int, at: Point, outcomes, keep_in: str | None) -> list[dict]:
    """The rows of one experiment at one grid point, from its phases' outcomes: final
    metrics, measures, and how far phase 1 got (`keep_in`: where --keep-params saves the
    final parameters)."""
    d, model, final = plan.draws, plan.models[at.width], outcomes[-1]
    if keep_in:  # every layer's final parameters, for figures
        file_name = f"{at.name}-{prefix_tag(at.phases)}" if at.values else at.name
        save_final(final_path(keep_in, at.width, file_name), final.params, model.options(), plan.seeds,
                   d.split.x_train, d.y_train, final.state)
    m = evaluate_in_batches(model, final.params, d.split, d.y_train, d.x_batched, in_flight, final.state)
    measured = (measure_in_batches(plan, at.width, last_start(at.phases, run), final, in_flight)
                if plan.cfg.measures else {})
    first = outcomes[0] if len(outcomes) > 1 else None
    if first is not None:  # how far phase 1 got in fitting its (random) labels
        p1 = evaluate_in_batches(model, first.params, d.split._replace(x_train=run.x_of(at.phases[0])),
                                 run.labels_of(at.phases[0]), d.x_batched, in_flight, first.state)
    return [{
        "dataset": plan.dataset.name, "width": at.width, "experiment": at.name, "seed": s, **at.values,
        "train_acc": m.train_acc[i], "test_acc": m.test_acc[i], "train_loss": m.train_loss[i],
        "steps": int(final.steps[i]), "converged": bool(final.converged[i]),
        "diverged": bool(final.diverged[i]),
        "phase1_steps": int(first.steps[i]) if first else None,
        "phase1_converged": bool(first.converged[i]) if first else None,
        "phase1_train_acc": p1.train_acc[i] if first else None,
        **{k: v[i] for k, v in measured.items()},
    } for i, s in enumerate(plan.seeds)]


def measure_in_batches(plan: SweepPlan, width: int, start, final, batch: int) -> dict:
    """`measures.measure` of every seed, `batch` seeds at a time (`final`: the last
    phase's outcome: its parameters and running statistics)."""
    cfg, d = plan.cfg, plan.draws
    n = len(d.y_train)
    parts = []
    for a in range(0, n, batch):
        sl = slice(a, min(a + batch, n))
        cut = lambda t, sl=sl: jax.tree.map(lambda v: np.asarray(v[sl]), t)  # noqa: E731
        parts.append(measure(plan.models[width], cut(start), cut(final.params),
                             cut(d.split.x_train) if d.x_batched else d.split.x_train, cut(d.y_train),
                             x_batched=d.x_batched, loss_reduction=cfg.loss_reduction,
                             hessian_iters=cfg.hessian_iters, grid=cfg.grid, state_final=cut(final.state)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
