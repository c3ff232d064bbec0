"""`SweepPlan`: everything a sweep will do, built once from its config before anything
runs. The data, the seeds and their draws, one model per width, the experiments as
phases at each grid point, and each phase prefix's settings, fingerprint and
checkpoint directory. The width loop, rows and measures read the plan.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass

import jax

from .checkpoint import FORMAT_VERSION, CheckpointError, PhaseStore, digest
from .data import Dataset, as_images, make_dataset, standardized
from .errors import ConfigError
from .experiments import (
    Optimizer,
    Phase,
    Stops,
    TrainSettings,
    experiment,
    experiment_names,
    intermediate_prefixes,
    prefix_name,
)
from .model import Model, make_model, n_outputs, takes_images
from .options import BY_NAME, SweepConfig, every_from_text, schedule_boundaries, spec_of
from .seeds import SeedDraws, draw_seeds, redrawn_per_seed
from .train import group_elements_of, seed_layout

Prefix = tuple[Phase, ...]


def load_data(cfg: SweepConfig) -> Dataset:
    ds = make_dataset(cfg.dataset, cfg.n_train, cfg.n_test, npz_keys=cfg.npz_keys, relabel=cfg.relabel,
                      **{k: getattr(cfg, k) for k in spec_of(cfg).options})
    if takes_images(cfg.model):  # the same draws, as (n, H, W, C) images
        ds = as_images(ds)
    return standardized(ds) if cfg.standardize else ds


def make_sweep_model(cfg: SweepConfig, ds: Dataset, width: int) -> Model:
    n_in = ds.input_shape if ds.images else ds.n_features
    try:
        return make_model(cfg.model, width, n_in, n_outputs(ds.n_classes), cfg.init, cfg.depth, cfg.conv_impl)
    except ValueError as e:  # e.g. images too small for the model's pools
        raise ConfigError("--model", f"{e} ({ds.name})") from None


def phase_optimizers(cfg: SweepConfig) -> tuple[Optimizer, Optimizer]:
    """How phases on the true labels and phases on the random labels train (cfg: one
    grid point's): the paper's SGD/GD (with --momentum, --weight-decay) and
    --phase1-optimizer, -lr, -max-steps for the random labels. --augment, like momentum and
    weight decay, is an escape tried after Θ_adv: phase 1 trains without it."""
    on_y = Optimizer("sgd", cfg.lr, cfg.max_steps, cfg.momentum, cfg.weight_decay, cfg.augment)
    on_y_rand = Optimizer(cfg.phase1_optimizer, cfg.phase1_lr, cfg.phase1_max_steps)
    return on_y, on_y_rand


def phase_stops(cfg: SweepConfig) -> Stops:
    return Stops(target_acc=cfg.target_train_acc, rule=cfg.stop_rule, phase1_target_acc=cfg.phase1_target_acc,
                 random_fraction=cfg.random_fraction, shrink=cfg.shrink, perturb=cfg.perturb)


def sweep_experiments(cfg: SweepConfig, model: Model) -> dict[str, list[Prefix]]:
    """Every experiment of the sweep ('all' expanded) as its phases for `model` at each
    grid point (`cfg.points()`; one without grid axes)."""
    names = cfg.experiments
    if names == ("all",):
        names = experiment_names(len(model.layers), teacher=cfg.dataset == "teacher")
    at = [cfg.point(p) for p in cfg.points()]
    return {name: [experiment(name, model, *phase_optimizers(c), phase_stops(c)) for c in at] for name in names}


def layout_of(cfg: SweepConfig) -> str:
    """The seed layout this sweep runs with on this platform (train.seed_layout)."""
    return seed_layout(cfg.seed_groups, jax.default_backend())


def shared_settings(cfg: SweepConfig) -> TrainSettings:
    """What every phase shares (each phase carries its own optimizer, step size and cap)."""
    return TrainSettings(batch_size=cfg.batch_size or None,
                         loss_reduction=cfg.loss_reduction, chunk_steps=cfg.chunk_steps, compact=cfg.compact,
                         repack=cfg.repack and cfg.compact, group_elements=group_elements_of(layout_of(cfg)))


def check_every(cfg: SweepConfig, n_train: int) -> int:
    """Steps between zero-error checks: --check-every, else every step up to 1,000
    training points (free there: the paper's setting) and once an epoch above."""
    if cfg.check_every:
        return cfg.check_every
    if n_train <= 1000 or not cfg.batch_size or cfg.batch_size >= n_train:
        return 1
    return -(-n_train // cfg.batch_size)


def lr_schedule_settings(cfg: SweepConfig, n_train: int) -> dict:
    """--lr-schedule's boundaries in steps (epochs × ⌈n / batch⌉) and factor."""
    per_epoch = -(-n_train // cfg.batch_size) if cfg.batch_size and cfg.batch_size < n_train else 1
    bounds, factor = schedule_boundaries(cfg.lr_schedule, per_epoch)
    return {"lr_boundaries": bounds, "lr_factor": factor}


def width_settings(cfg: SweepConfig, n_train: int, in_flight: int) -> TrainSettings:
    """Every phase's shared settings at one width, `in_flight` seeds on the devices at once."""
    return dataclasses.replace(shared_settings(cfg), max_in_flight=in_flight, check_every=check_every(cfg, n_train),
                               **lr_schedule_settings(cfg, n_train))


def memory_view(cfg: SweepConfig) -> SweepConfig:
    """The config the memory model sizes: one grid point whose seeds are all the
    points' (grid points × seeds train side by side), at its most demanding momentum."""
    point = cfg.point(cfg.points()[0])
    momentum = max(cfg.momentum) if isinstance(cfg.momentum, tuple) else cfg.momentum
    return dataclasses.replace(point, seeds=cfg.seeds * len(cfg.points()), momentum=momentum)


# -- fingerprints and checkpoint directories -------------------------------------------------------

# Phase fields a fingerprint records only away from these values, so that checkpoints
# made before they existed still match (shrink and perturb sit at the top, as before).
_RECORDED_IF_SET = {"target_acc": 1.0, "random_fraction": 1.0, "augment": "none", "budget": False}


def _phase_record(phase: Phase) -> dict:
    """A phase as its fingerprint records it: labels, start, trainable layers, its
    optimizer's fields (optimizer, lr, max_steps, momentum, weight_decay) inline, and a
    stop target, random-label share or augmentation that is not the default."""
    record = {k: v for k, v in dataclasses.asdict(phase).items() if k not in ("optimizer", "shrink", "perturb")}
    opt = dataclasses.asdict(phase.optimizer)
    record |= {("optimizer" if k == "name" else k): v for k, v in opt.items()}
    return {k: v for k, v in record.items() if _RECORDED_IF_SET.get(k, object()) != v}


def phase_fingerprint(cfg: SweepConfig, ds: Dataset, model: Model, prefix: Prefix, seeds: list[int]) -> dict:
    """Everything that determines the outcome of a phase prefix for these seeds: the
    model (its kind and every option), the data, the seeds and each phase (its labels,
    start, trainable layers and optimizer)."""
    fp = {
        "format": FORMAT_VERSION, "dataset": "FILE.npz" if cfg.dataset.endswith(".npz") else cfg.dataset,
        "n_train": ds.n_train, "fix_data": bool(cfg.fix_data), "model": model.options(), "seeds": seeds,
        "phases": [_phase_record(p) for p in prefix],
        "batch_size": cfg.batch_size, "loss_reduction": cfg.loss_reduction,
    }
    k = check_every(cfg, ds.n_train)
    if k != 1:  # recorded only where it is set, so older checkpoints still match
        fp["check_every"] = k
    if cfg.repack and cfg.compact:  # other groups side by side: other last bits (recorded only where set)
        fp["repack"] = True
    if layout_of(cfg) == "device":  # likewise: one group a device, other last bits than cache-sized groups
        fp["seed_groups"] = "device"
    if cfg.matmul_precision != "default":
        fp["matmul_precision"] = cfg.matmul_precision
    if cfg.lr_schedule:
        fp["lr_schedule"] = lr_schedule_settings(cfg, ds.n_train)
    for key in spec_of(cfg).fingerprint:  # the dataset's own options that change its data (--noise, ...)
        fp[key] = getattr(cfg, key)
    for p in prefix:
        if p.start == "shrink_perturb":
            fp["shrink"], fp["perturb"] = p.shrink, p.perturb
    if cfg.standardize:
        fp["standardize"] = True
    if cfg.confusion_copies and any(p.labels == "y_rand" for p in prefix):
        fp["confusion"] = {"copies": cfg.confusion_copies, "zero_out": cfg.zero_out}
    if ds.sha256 is not None:  # fixed arrays (MNIST, a .npz): their content, never their path
        fp["data"] = {"sha256": ds.sha256}
    return json.loads(json.dumps(fp))  # tuples -> lists, as they come back from JSON


def checkpoint_dir(out: str, width: int, prefix: Prefix, grid: bool = False) -> str:
    """Where a phase prefix's checkpoints live. In a grid sweep (`grid`) each prefix's
    own subdirectory is named by a digest of its phases (step sizes, caps, targets...)."""
    path = os.path.join(out, "checkpoints", f"p{width}", prefix_name(prefix))
    return os.path.join(path, prefix_tag(prefix)) if grid else path


def prefix_tag(prefix: Prefix) -> str:
    """A grid point's checkpoint directory name: a digest of its phases, with a
    shrink-perturb start's λ and σ (grid axes too: --shrink 0.1,0.2 gives two points)."""
    return digest([_phase_record(p) | ({"shrink": p.shrink, "perturb": p.perturb}
                                        if p.start == "shrink_perturb" else {}) for p in prefix])[:12]


def checkpoint_dirs(out: str, width: int, prefix: Prefix) -> list[str]:
    """Where another sweep may hold a prefix: a grid sweep's digest directory or a
    single point's plain one (its fingerprint decides whether it fits)."""
    return [checkpoint_dir(out, width, prefix, grid=True), checkpoint_dir(out, width, prefix)]


# -- the plan ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepPlan:
    """A sweep, planned: built once by `make_plan`, read by everything that runs it."""

    cfg: SweepConfig  # resolved
    out: str
    dataset: Dataset
    models: dict[int, Model]  # one per width
    experiments: dict[str, list[Prefix]]  # name -> its phases at each grid point
    keep: frozenset  # the prefixes whose end is kept and reused (Θ_adv)

    @functools.cached_property
    def seeds(self) -> list[int]:
        """SEED..SEED+SEEDS-1, listed on first use (after the memory check: --seeds may be huge)."""
        return list(range(self.cfg.seed, self.cfg.seed + self.cfg.seeds))

    @property
    def widths(self) -> tuple[int, ...]:
        return self.cfg.widths

    @property
    def grid(self) -> bool:
        return bool(self.cfg.axes())

    @property
    def x_batched(self) -> bool:
        """Whether each seed draws its own data (x carries a seed axis)."""
        return redrawn_per_seed(self.dataset, self.cfg.fix_data)

    @functools.cached_property
    def draws(self) -> SeedDraws:
        """Every seed's keys and draws, made on first use: after the checks, inside the
        sweep's matmul precision."""
        cfg = self.cfg
        return draw_seeds(self.dataset, self.seeds, cfg.fix_data, (cfg.confusion_copies, cfg.zero_out))

    def fingerprint(self, width: int, prefix: Prefix) -> dict:
        return phase_fingerprint(self.cfg, self.dataset, self.models[width], prefix, self.seeds)

    def checkpoint_dir(self, width: int, prefix: Prefix) -> str:
        return checkpoint_dir(self.out, width, prefix, self.grid)

    def settings(self, in_flight: int) -> TrainSettings:
        return width_settings(self.cfg, self.dataset.n_train, in_flight)

    @property
    def checkpoint_every(self) -> tuple[str, float] | None:
        return every_from_text(self.cfg.checkpoint_every)

    def adv_from_source(self, width: int, prefix: Prefix) -> PhaseStore:
        """The --adv-from store that supplies a prefix: the first of its possible
        directories (a grid sweep's or a single point's) that holds a checkpoint."""
        fp = self.fingerprint(width, prefix)
        stores = [PhaseStore(d, fp, flag="--adv-from") for d in checkpoint_dirs(self.cfg.adv_from, width, prefix)]
        return next((st for st in stores if st.exists()), stores[-1])

    def check_adv_from(self, finished: set[int]) -> None:
        """Every Θ_adv that --adv-from must supply is there, fits this sweep and reads
        whole, before anything is copied."""
        if not os.path.isdir(self.cfg.adv_from):
            raise CheckpointError("--adv-from", f"{self.cfg.adv_from} is not a directory")
        for width in (w for w in self.widths if w not in finished):
            for prefix in self.keep:
                if PhaseStore(self.checkpoint_dir(width, prefix), {}).exists():
                    continue  # a resumed sweep that adopted it already
                self.adv_from_source(width, prefix).verify()


def make_plan(cfg: SweepConfig, out: str) -> SweepPlan:
    """The plan of a resolved config: loads the data and builds every width's model and
    the experiments' phases (layer names do not depend on the width)."""
    ds = load_data(cfg)
    if cfg.measures and ds.n_features != 2 and cfg.grid != BY_NAME["grid"].default:
        raise ConfigError("--grid", f"applies only with --measures on 2-D data; {ds.name} has {ds.n_features} "
                          "features")
    models = {w: make_sweep_model(cfg, ds, w) for w in cfg.widths}
    experiments = sweep_experiments(cfg, models[cfg.widths[0]])
    keep = frozenset(intermediate_prefixes(phases for at_points in experiments.values() for phases in at_points))
    return SweepPlan(cfg, out, ds, models, experiments, keep)
