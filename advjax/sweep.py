"""Sweeps: for each width, every seed and experiment in one compiled program per phase.

    python -m advjax.sweep --dataset mnist --widths 10,100,1000

From Python: `advjax.run_sweep(SweepConfig(...))` or `run_sweep({"dataset": ...})`
returns the rows of results.csv. The CLI is a thin layer over it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__
from .checkpoint import (
    FORMAT_VERSION,
    CheckpointError,
    PhaseStore,
    PointStores,
    WriteError,
    digest,
    final_path,
    save_final,
)
from .data import DataError, Dataset, as_images, confusion_images, make_dataset, random_labels, standardized
from .devices import use_cpu_devices
from .experiments import (
    Optimizer,
    Phase,
    RandomSet,
    Stops,
    TrainSettings,
    WidthRun,
    experiment,
    experiment_names,
    intermediate_prefixes,
    last_start,
    prefix_name,
    run_points,
)
from .files import open_regular
from .measures import columns as measure_columns
from .measures import measure
from .memory import check_memory, seeds_in_flight
from .model import CONV_KINDS, Model, activations_per_example, make_model, n_outputs
from .options import (
    BY_NAME,
    GRID_AXES,
    ConfigError,
    SweepConfig,
    default_applies,
    every_from_text,
    flag,
    from_dict,
    parse_args,
    schedule_boundaries,
)
from .progress import Progress
from .results import (
    RunDirError,
    check_manifest,
    check_rows,
    check_widths,
    columns,
    config_of,
    parse_results,
    parse_rows,
    read_manifest,
    rows_to_csv,
    sign_width,
    write_atomic,
    write_manifest,
)
from .rundir import RunLock, check_writable, entries, remove_stray_temporaries
from .train import COMPACTION_STATS, COMPILE_STATS, evaluate, group_elements_of, init_params, seed_layout
from .tune import GroupTuner

# Independent streams per seed: fixing one source of randomness never moves another.
KEY_DATA, KEY_LABELS, KEY_INIT, KEY_BATCHES, KEY_FRESH, KEY_FRACTION, KEY_CONFUSION = range(7)


@dataclass
class SeedKeys:
    data: jax.Array
    labels: jax.Array
    init: jax.Array
    batches: jax.Array
    fresh: jax.Array  # a second init (shrink_perturb's θ_fresh)
    fraction: jax.Array  # which points --random-fraction < 1 randomizes
    confusion: jax.Array  # the confusion set (--confusion-copies): its zeroed values and its labels


def seed_keys(seeds: list[int]) -> SeedKeys:
    """Seed s owns PRNGKey(s); its purposes are folded in, so seed s gets the same
    data, labels and θ0 whichever other seeds run beside it."""
    base = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
    fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base)  # noqa: E731
    return SeedKeys(fold(KEY_DATA), fold(KEY_LABELS), fold(KEY_INIT), fold(KEY_BATCHES), fold(KEY_FRESH),
                    fold(KEY_FRACTION), fold(KEY_CONFUSION))


def draw_seeds(cfg: SweepConfig, ds: Dataset, seeds: list[int]):
    """Keys, data, true labels (seed-batched) and random labels of every seed.

    With fixed data (or a dataset that cannot be redrawn) one draw, the first seed's, is
    shared by all seeds and x carries no seed axis (x_batched False)."""
    keys, y_rand = _keys_and_random_labels(np.asarray(seeds, np.uint32), ds.n_train, ds.n_classes)
    keys = SeedKeys(*keys)
    x_batched = ds.redraws and not cfg.fix_data
    # The data stay eager: under jit XLA fuses their float arithmetic (multiply-adds)
    # and the points would change in their last bits.
    split = jax.vmap(ds.draw)(keys.data) if x_batched else ds.draw(keys.data[0])
    y_train = split.y_train if x_batched else np.tile(np.asarray(split.y_train), (len(seeds), 1))
    return keys, split, y_train, y_rand, x_batched


@functools.partial(jax.jit, static_argnums=(1, 2))
def _keys_and_random_labels(seeds_S: jax.Array, n_train: int, n_classes: int):
    """Every purpose's keys and y_rand in one compiled program (integer arithmetic: the
    same bits as op by op, and one cold compilation instead of a dozen)."""
    keys = seed_keys(seeds_S)
    return dataclasses.astuple(keys), jax.vmap(lambda k: random_labels(k, n_train, n_classes))(keys.labels)


def draw_confusion(cfg: SweepConfig, ds: Dataset, keys: SeedKeys, split, y_train, x_batched: bool
                   ) -> RandomSet | None:
    """Liu et al.'s confusion set, what phase 1 trains on where --confusion-copies R > 0
    (None otherwise: phase 1 trains on x_train with y_rand, as before): R copies of every
    training example, in each round(F·D) input values zeroed, each copy with a uniform
    random label. Like the data it copies, it is one per seed where each seed draws its
    own data, and the first seed's where the data are shared; its labels are every seed's
    own. All of it comes from the seeds' confusion keys, so no other stream moves."""
    r = cfg.confusion_copies
    if not r:
        return None
    k_zeroed = lambda k: jax.random.fold_in(k, 0)  # noqa: E731
    zero = ds.zero_value or (lambda key: 0.0)
    copies = lambda k, key_data, x: confusion_images(k_zeroed(k), x, r, cfg.zero_out, zero(key_data))  # noqa: E731
    if x_batched:
        x = jax.vmap(copies)(keys.confusion, keys.data, split.x_train)
    else:
        x = copies(keys.confusion[0], keys.data[0], split.x_train)
    y_rand = jax.vmap(lambda k: random_labels(jax.random.fold_in(k, 1), r * ds.n_train, ds.n_classes))(keys.confusion)
    return RandomSet(x=x, y=np.tile(np.asarray(y_train), (1, r)), y_rand=y_rand)


def _versions() -> dict:
    import flax
    import jaxlib
    import optax

    return {"advjax": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "optax": optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def evaluate_in_batches(model: Model, params, split, y_train, x_batched: bool, batch: int, state: dict):
    """`evaluate` over seeds in batches, so the test logits of many wide seeds never
    sit in memory at once (`state`: the seeds' running statistics, {} without BatchNorm)."""
    n = len(y_train)
    n_test = split.x_test.shape[1 if x_batched else 0]  # examples lead (after the seed axis): x may be images
    step = max(1, min(batch, (2**27) // max(1, activations_per_example(model) * max(n_test, 1))))
    parts = []
    for a in range(0, n, step):
        sl = slice(a, min(a + step, n))
        cut = (lambda t, sl=sl: t[sl]) if x_batched else (lambda t: t)  # noqa: E731
        rows = lambda tree, sl=sl: jax.tree.map(lambda t: t[sl], tree)  # noqa: E731
        parts.append(evaluate(model, rows(params), cut(split.x_train), y_train[sl], cut(split.x_test),
                              cut(split.y_test), train_batched=x_batched, test_batched=x_batched, state=rows(state)))
    return type(parts[0])(*(np.concatenate(v) for v in zip(*parts)))


def sync_processes(name: str) -> None:
    """A barrier across the processes of a multi-process run (nothing in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def peak_memory() -> dict:
    """Peak host RSS of this process, and each local accelerator's peak bytes in use."""
    import resource

    out = {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    for d in jax.local_devices():
        stats = d.memory_stats() if d.platform != "cpu" else None
        if stats and "peak_bytes_in_use" in stats:
            out[f"{d.platform}{d.id}_peak_bytes"] = stats["peak_bytes_in_use"]
    return out


def default_out(dataset: str) -> str:
    name = os.path.splitext(os.path.basename(dataset))[0]
    return os.path.join("runs", f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def load_data(cfg: SweepConfig) -> Dataset:
    ds = make_dataset(cfg.dataset, cfg.n_train, cfg.n_test, noise=cfg.noise, t_max=cfg.t_max,
                      mnist_path=cfg.mnist_path, npz_keys=cfg.npz_keys, input_dim=cfg.input_dim,
                      teacher_width=cfg.teacher_width, relabel=cfg.relabel, cifar_path=cfg.cifar_path)
    if cfg.model in CONV_KINDS:  # the same draws, as (n, H, W, C) images
        ds = as_images(ds)
    return standardized(ds) if cfg.standardize else ds


# -- the persistent compilation cache ------------------------------------------------------

_CACHE_EVENTS = {"hits": 0, "requests": 0}


def _on_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_EVENTS["hits"] += 1
    elif event == "/jax/compilation_cache/compile_requests_use_cache":
        _CACHE_EVENTS["requests"] += 1


jax.monitoring.register_event_listener(_on_event)


def compile_cache_dir(setting: str) -> str | None:
    if setting == "off":
        return None
    if setting != "auto":
        return os.path.abspath(setting)
    return os.environ.get("ADVJAX_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "advjax", "jax")


_CACHE_WARNED: set[str] = set()


def enable_compile_cache(directory: str | None) -> str | None:
    """JAX's persistent compilation cache: a rerun loads each width's programs from disk.
    Every program is cached, however fast it compiled (JAX's default skips those < 1 s).
    A directory that cannot be made or written (a file on its path, /proc, a read-only
    HOME) is warned about once, in one line, and the sweep runs without the cache.
    Returns the directory in use, or None."""
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as e:
        if directory not in _CACHE_WARNED:
            _CACHE_WARNED.add(directory)
            print(f"advjax.sweep: warning: --compile-cache: cannot use {directory} "
                  f"({e.strerror or type(e).__name__}); running without the compilation cache", file=sys.stderr)
        return None
    # An entry JAX cannot write or read later (a full disk, one cut short) is compiled as
    # if uncached; its two-line warning per entry would bury the sweep's own lines.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry",
                            category=UserWarning)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


# -- checkpoints -------------------------------------------------------------------------------

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


def sweep_experiments(cfg: SweepConfig, model: Model) -> dict[str, list[tuple[Phase, ...]]]:
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
    cache = layout_of(cfg) == "cache"  # the group-size probe tunes cache-sized groups only
    return TrainSettings(lr=cfg.lr, max_steps=cfg.max_steps, batch_size=cfg.batch_size or None,
                         loss_reduction=cfg.loss_reduction, chunk_steps=cfg.chunk_steps, compact=cfg.compact,
                         repack=cfg.repack and cfg.compact, group_elements=group_elements_of(layout_of(cfg)),
                         tuner=GroupTuner(compile_cache_dir(cfg.compile_cache)) if cfg.tune_groups and cache
                         else None)


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


# Phase fields a fingerprint records only away from these values, so that checkpoints
# made before they existed still match (shrink and perturb sit at the top, as before).
_RECORDED_IF_SET = {"target_acc": 1.0, "random_fraction": 1.0, "augment": "none", "budget": False}


def _phase_record(phase: Phase) -> dict:
    """A phase as its fingerprint records it: labels, start, trainable layers, its
    optimizer's fields (optimizer, lr, max_steps, momentum, weight_decay) inline, and a
    stop target, random-label share or augmentation that is not the default."""
    record = {k: v for k, v in dataclasses.asdict(phase).items() if k not in ("optimizer", "shrink", "perturb")}
    opt = dataclasses.asdict(phase.optimizer) if phase.optimizer else {}
    record |= {("optimizer" if k == "name" else k): v for k, v in opt.items()}
    return {k: v for k, v in record.items() if _RECORDED_IF_SET.get(k, object()) != v}


def phase_fingerprint(cfg: SweepConfig, ds: Dataset, model: Model, prefix, seeds: list[int]) -> dict:
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
    if cfg.dataset == "circles":
        fp["noise"] = cfg.noise
    if cfg.dataset == "spirals":
        fp["t_max"] = cfg.t_max
    if cfg.dataset == "teacher":
        fp["input_dim"], fp["teacher_width"] = cfg.input_dim, cfg.teacher_width
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


def checkpoint_dir(out: str, width: int, prefix, grid: bool = False) -> str:
    """Where a phase prefix's checkpoints live. In a grid sweep (`grid`) each prefix's
    own subdirectory is named by a digest of its phases (step sizes, caps, targets...)."""
    path = os.path.join(out, "checkpoints", f"p{width}", prefix_name(prefix))
    return os.path.join(path, prefix_tag(prefix)) if grid else path


def prefix_tag(prefix) -> str:
    """A grid point's checkpoint directory name: a digest of its phases, with a
    shrink-perturb start's λ and σ (grid axes too: --shrink 0.1,0.2 gives two points)."""
    return digest([_phase_record(p) | ({"shrink": p.shrink, "perturb": p.perturb}
                                        if p.start == "shrink_perturb" else {}) for p in prefix])[:12]


def checkpoint_dirs(out: str, width: int, prefix) -> list[str]:
    """Where another sweep may hold a prefix: a grid sweep's digest directory or a
    single point's plain one (its fingerprint decides whether it fits)."""
    return [checkpoint_dir(out, width, prefix, grid=True), checkpoint_dir(out, width, prefix)]


def _resume_state(cfg: SweepConfig, ds: Dataset, out: str) -> tuple[list[dict], dict]:
    """Rows and per-width timings of the sweep already in `out`, after checking that it
    is the same sweep on the same data."""
    try:
        old = read_manifest(out)
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise ConfigError("--resume", f"{out} has no readable manifest.json ({type(e).__name__}); "
                          "nothing to resume there") from None
    try:
        check_manifest(old, os.path.join(out, "manifest.json"))
        old_cfg = config_of(old)
        if "seeds" in old and old["seeds"] != list(range(old_cfg.seed, old_cfg.seed + old_cfg.seeds)):
            raise RunDirError(f"{os.path.join(out, 'manifest.json')}: field seeds {old['seeds']!r} is not its config's "
                              f"seeds {old_cfg.seed}..{old_cfg.seed + old_cfg.seeds - 1}")
    except RunDirError as e:
        raise ConfigError("--resume", f"{e}; nothing was changed") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ConfigError("--resume", f"{os.path.join(out, 'manifest.json')}: field config: "
                          f"{str(e).splitlines()[0][:100] or type(e).__name__}; nothing was changed") from None
    a, b = old_cfg.results_config(), cfg.results_config()
    diff = [f"{flag(k)} ({a[k]!r} there, {b[k]!r} now)" for k in a if a[k] != b[k]]
    old_sha = old.get("dataset", {}).get("sha256") if isinstance(old.get("dataset"), dict) else None
    if old_sha != ds.sha256:
        diff.append(f"data.sha256 ({str(old_sha)[:12]} there, {str(ds.sha256)[:12]} now: the data file's content "
                    "changed)")
    if diff:
        raise ConfigError("--resume", f"{out} holds another sweep; it differs in {', '.join(diff)}")
    results = os.path.join(out, "results.csv")
    try:
        rows, text = [], ""
        if os.path.exists(results):
            expect = columns(measure_columns(make_sweep_model(cfg, ds, cfg.widths[0])), tuple(cfg.axes()))
            with open_regular(results, "r", newline="") as f:
                text = f.read()
            rows = parse_rows(results, text, expect)
            check_rows(rows, cfg, old, results)
            rows = check_widths(rows, cfg, old, text, os.path.join(out, "manifest.json"), ds.sha256,
                                drop_unsigned=True)
        widths = old.get("widths") if isinstance(old.get("widths"), dict) else {}
        written = {int(w) for w, stats in widths.items() if isinstance(stats, dict) and "run_seconds" in stats}
        if written - {r["width"] for r in rows}:  # results.csv is written before the manifest, per width
            raise RunDirError(f"{results}: it lacks the rows of width {min(written - {r['width'] for r in rows})}, "
                              "which manifest.json records as finished")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError("--resume", f"{results} is unreadable ({getattr(e, 'strerror', None) or type(e).__name__}); "
                          "move it away to recompute its widths") from None
    except RunDirError as e:
        raise ConfigError("--resume", f"{e}; nothing was changed: move the run directory away, or rerun its "
                          "widths in a new --out") from None
    finished = {str(r["width"]) for r in rows}
    return rows, {w: stats for w, stats in widths.items() if w in finished}


def as_config(config: SweepConfig | dict) -> SweepConfig:
    """A user's config, checked: a dict of raw values, or a SweepConfig built in Python
    (its options set away from their defaults must apply)."""
    if isinstance(config, SweepConfig):  # every field set in Python goes through the CLI's parsers and rules
        raw = config.to_dict()
        return from_dict({name: raw[name] for name in default_applies(config)})
    return from_dict(config)


def run_sweep(config: SweepConfig | dict, out: str | None = None) -> list[dict]:
    """Run a sweep and return the rows of results.csv (also written under `out`).

    `out=None` uses config.out, else a new directory runs/<dataset>-<time>.
    Everything is checked before anything is written: on bad input (ConfigError,
    DataError, CheckpointError) `out` is left as it was. A write that fails midway
    (disk full) raises WriteError and keeps the last complete files.
    """
    cfg = as_config(config).resolve()
    out = out or cfg.out or default_out(cfg.dataset)
    writer = jax.process_index() == 0  # in a multi-process run, process 0 writes every file
    ds = load_data(cfg)
    if cfg.measures and ds.n_features != 2 and cfg.grid != BY_NAME["grid"].default:
        raise ConfigError("--grid", f"applies only with --measures on 2-D data; {ds.name} has {ds.n_features} "
                          "features")
    x_batched = ds.redraws and not cfg.fix_data
    check_memory(memory_view(cfg), ds, make_sweep_model(cfg, ds, max(cfg.widths)), x_batched, layout_of(cfg))
    lock = RunLock(out)
    if writer:
        check_writable(out)
        lock.probe()
    resuming = cfg.resume and os.path.isdir(out) and bool(entries(out))
    if resuming:
        rows, width_stats = _resume_state(cfg, ds, out)
    else:
        if writer and os.path.isdir(out) and entries(out):
            raise ConfigError("--out", f"{out} exists and is not empty; choose a new directory, "
                              "or add --resume to continue the sweep there")
        rows, width_stats = [], {}
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    # The experiments' phases; layer names do not depend on the width.
    plans = sweep_experiments(cfg, make_sweep_model(cfg, ds, cfg.widths[0]))
    keep = intermediate_prefixes(phases for at_points in plans.values() for phases in at_points)
    if cfg.adv_from:
        check_adv_from(cfg, ds, seeds, keep, out, {r["width"] for r in rows})
    cache_dir = enable_compile_cache(compile_cache_dir(cfg.compile_cache))
    progress = Progress(cfg.quiet or not writer)
    every = every_from_text(cfg.checkpoint_every)
    sync_processes("advjax-out-checked")
    if writer:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as e:
            raise ConfigError("--out", f"cannot make {out} ({e.strerror or type(e).__name__})") from None
        lock.acquire()
    try:
        if writer:
            if not resuming and entries(out):  # another sweep started here since the check
                raise ConfigError("--out", f"{out} was filled by another sweep meanwhile; choose a new directory")
            remove_stray_temporaries(out)
        with matmul_precision(cfg.matmul_precision):
            keys, split, y_train, y_rand, x_batched = draw_seeds(cfg, ds, seeds)
            random_set = draw_confusion(cfg, ds, keys, split, y_train, x_batched)
            rows = Rows(_sweep_widths(cfg, ds, out, writer, seeds, keys, split, y_train, y_rand, x_batched, plans,
                                      keep, every, progress, cache_dir, rows, width_stats, random_set))
        rows.out = out
        if writer and cfg.figure:
            rows.figure = summary_figure(out)
        return rows
    finally:
        progress.close()
        lock.release()


class Rows(list):
    """The rows of results.csv (dicts), with where they are: `out`, the run directory,
    and `figure`, its summary.png (None if not drawn)."""

    out: str | None = None
    figure: str | None = None


def summary_figure(out: str) -> str | None:
    """OUT/summary.png from the run's results.csv; a failure to draw only warns (the
    results are on disk already)."""
    from .figures import draw_summary, load_run

    try:
        return draw_summary(load_run(out), os.path.join(out, "summary.png"))
    except Exception as e:  # noqa: BLE001 - a picture must never cost the run
        print(f"advjax.sweep: warning: summary.png not drawn ({type(e).__name__}: {e})", file=sys.stderr)
        return None


def matmul_precision(precision: str):
    """The context every computation of a sweep runs in: jax's default matmul precision
    (--matmul-precision), or nothing at all for "default" (the programs of before the option)."""
    return contextlib.nullcontext() if precision == "default" else jax.default_matmul_precision(precision)


def memory_view(cfg: SweepConfig) -> SweepConfig:
    """The config the memory model sizes: one grid point whose seeds are all the
    points' (grid points × seeds train side by side), at its most demanding momentum."""
    point = cfg.point(cfg.points()[0])
    momentum = max(cfg.momentum) if isinstance(cfg.momentum, tuple) else cfg.momentum
    return dataclasses.replace(point, seeds=cfg.seeds * len(cfg.points()), momentum=momentum)


def adv_from_source(cfg: SweepConfig, ds: Dataset, width: int, prefix, seeds: list[int]) -> PhaseStore:
    """The --adv-from store that supplies a prefix: the first of its possible
    directories (a grid sweep's or a single point's) that holds a checkpoint."""
    fp = phase_fingerprint(cfg, ds, make_sweep_model(cfg, ds, width), prefix, seeds)
    stores = [PhaseStore(d, fp, flag="--adv-from") for d in checkpoint_dirs(cfg.adv_from, width, prefix)]
    return next((st for st in stores if st.exists()), stores[-1])


def check_adv_from(cfg: SweepConfig, ds: Dataset, seeds: list[int], keep, out: str, finished: set[int]) -> None:
    """Every Θ_adv that --adv-from must supply is there, fits this sweep and reads
    whole, before anything is copied."""
    if not os.path.isdir(cfg.adv_from):
        raise CheckpointError("--adv-from", f"{cfg.adv_from} is not a directory")
    grid = bool(cfg.axes())
    for width in (w for w in cfg.widths if w not in finished):
        for prefix in keep:
            if PhaseStore(checkpoint_dir(out, width, prefix, grid), {}).exists():
                continue  # a resumed sweep that adopted it already
            adv_from_source(cfg, ds, width, prefix, seeds).verify()


def _sweep_widths(cfg, ds, out, writer, seeds, keys, split, y_train, y_rand, x_batched, plans, keep, every,
                  progress, cache_dir, rows, width_stats, random_set=None) -> list[dict]:
    """The sweep proper, once its inputs are checked and --out is locked: each width's
    experiments, rows and checkpoints."""
    grid, points = bool(cfg.axes()), cfg.points()
    csv_columns = columns(measure_columns(make_sweep_model(cfg, ds, cfg.widths[0])), tuple(cfg.axes()))
    manifest = {
        "command": sys.argv if sys.argv and sys.argv[0].endswith("sweep.py") else None,
        "config": cfg.to_dict(),
        "dataset": {"name": ds.name, "n_features": ds.n_features, "n_classes": ds.n_classes,
                    "n_train": ds.n_train, "n_test": ds.n_test, "data_shared_by_seeds": not x_batched,
                    "sha256": ds.sha256, **({"input_shape": list(ds.input_shape)} if ds.images else {})},
        "seeds": seeds,
        "versions": _versions(),
        "device": {"platform": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
        "layout": {"seed_groups": layout_of(cfg), "matmul_precision": cfg.matmul_precision},
        "compile_cache": cache_dir,
        "checkpoints": {f"p{w}": {prefix_name(p) + (f"/{prefix_tag(p)}" if grid else ""):
                                  os.path.relpath(checkpoint_dir(out, w, p, grid), out)
                                  for p in sorted(keep, key=len)} for w in cfg.widths},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "widths": width_stats,
    }
    if writer:
        write_manifest(out, manifest)
    finished = {r["width"] for r in rows}

    for width in cfg.widths:
        if width in finished:
            continue
        model = make_sweep_model(cfg, ds, width)
        compile_before, hits_before = COMPILE_STATS.seconds, COMPILE_STATS.hits
        relayouts_before, repacks_before = COMPACTION_STATS.relayouts, COMPACTION_STATS.repacks
        disk_before = dict(_CACHE_EVENTS)
        t0 = time.perf_counter()

        def one_store(prefix, width=width, model=model):
            fp = phase_fingerprint(cfg, ds, model, prefix, seeds)
            own = PhaseStore(checkpoint_dir(out, width, prefix, grid), fp, every)
            if cfg.adv_from and prefix in keep:
                if writer and not own.exists():
                    own.adopt(adv_from_source(cfg, ds, width, prefix, seeds))
                sync_processes("advjax-adopted")
            return own

        def store(prefixes):  # one store per prefix (grid point), however many train together
            stores = [one_store(prefix) for prefix in prefixes]
            return stores[0] if len(stores) == 1 else PointStores(stores, len(seeds))

        in_flight = seeds_in_flight(memory_view(cfg), model, ds, x_batched)
        run = width_run(cfg, ds, model, keys, split, y_train, y_rand, x_batched, in_flight, store, random_set)
        run.progress = lambda label, cap, w=width: progress.phase(f"[{ds.name} p={w}] {label}", cap)
        width_stats[str(width)] = {"seeds_in_flight": in_flight}
        for name, at_points in plans.items():
            for point, phases, outcomes in zip(points, at_points, run_points(at_points, run, name)):
                rows += point_rows(cfg, ds, model, run, split, y_train, x_batched, in_flight, seeds, width, name,
                                   point, phases, outcomes, out if cfg.keep_params and writer else None)
            for prefix in [p for p in run.memo if p not in keep]:
                del run.memo[prefix]  # only Θ_adv is needed again: bounded host memory
        total = time.perf_counter() - t0
        compile_s = COMPILE_STATS.seconds - compile_before
        requests = _CACHE_EVENTS["requests"] - disk_before["requests"]
        width_stats[str(width)] |= {
            "compile_seconds": round(compile_s, 3),
            "run_seconds": round(total - compile_s, 3),
            "xla_compilations": requests,
            "xla_compilations_from_disk_cache": _CACHE_EVENTS["hits"] - disk_before["hits"],
            "programs_reused_in_process": COMPILE_STATS.hits - hits_before,
            "compactions": COMPACTION_STATS.relayouts - relayouts_before,
            "repacks": COMPACTION_STATS.repacks - repacks_before,
        }
        if run.settings.tuner is not None:
            width_stats[str(width)]["group_tuning"] = run.settings.tuner.records
        sign_width(width_stats[str(width)], cfg, ds.sha256, width, rows, csv_columns)
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["peak_memory"] = peak_memory()
        if not writer:
            continue
        # Each finished width is on disk before the next starts.
        write_atomic(os.path.join(out, "results.csv"), rows_to_csv(rows, csv_columns))
        write_manifest(out, manifest)
        if not cfg.keep_params:  # final params are summarized in the rows; Θ_adv stays
            for phases in (ph for at_points in plans.values() for ph in at_points):
                for i in range(len(phases)):
                    if phases[: i + 1] not in keep:
                        shutil.rmtree(checkpoint_dir(out, width, phases[: i + 1], grid), ignore_errors=True)
                        with contextlib.suppress(OSError):  # a grid's prefix directory, emptied
                            os.rmdir(checkpoint_dir(out, width, phases[: i + 1]))
    return parse_results(rows_to_csv(rows, csv_columns))  # exactly what results.csv holds


def point_rows(cfg, ds, model, run, split, y_train, x_batched, in_flight, seeds, width, name, point, phases,
               outcomes, keep_in: str | None) -> list[dict]:
    """The rows of one experiment at one grid point (`point`: its axis values), from
    its phases' outcomes: final metrics, measures, and how far phase 1 got."""
    final = outcomes[-1]
    if keep_in:  # every layer's final parameters, for figures
        file_name = f"{name}-{prefix_tag(phases)}" if point else name
        save_final(final_path(keep_in, width, file_name), final.params, model.options(), seeds, split.x_train,
                   y_train, final.state)
    m = evaluate_in_batches(model, final.params, split, y_train, x_batched, in_flight, final.state)
    measured = (measure_in_batches(cfg, model, last_start(phases, run), final.params, split, y_train, x_batched,
                                   in_flight, final.state) if cfg.measures else {})
    first = outcomes[0] if len(outcomes) > 1 else None
    if first is not None:  # how far phase 1 got in fitting its (random) labels
        p1 = evaluate_in_batches(model, first.params, split._replace(x_train=run.x_of(phases[0])),
                                 run.labels_of(phases[0]), x_batched, in_flight, first.state)
    return [{
        "dataset": ds.name, "width": width, "experiment": name, "seed": s, **point,
        "train_acc": m.train_acc[i], "test_acc": m.test_acc[i], "train_loss": m.train_loss[i],
        "steps": int(final.steps[i]), "converged": bool(final.converged[i]),
        "diverged": bool(final.diverged[i]),
        "phase1_steps": int(first.steps[i]) if first else None,
        "phase1_converged": bool(first.converged[i]) if first else None,
        "phase1_train_acc": p1.train_acc[i] if first else None,
        **{k: v[i] for k, v in measured.items()},
    } for i, s in enumerate(seeds)]


def width_run(cfg: SweepConfig, ds: Dataset, model: Model, keys: SeedKeys, split, y_train, y_rand, x_batched: bool,
              in_flight: int, store, random_set: RandomSet | None = None) -> WidthRun:
    """The phases' shared inputs for one width; θ0 and the others are made when a phase
    needs them, in batches of `in_flight` seeds. `random_set`: phase 1's confusion set,
    if any (`draw_confusion`)."""
    n = len(keys.data)
    teacher = None
    if ds.teacher is not None:
        def teacher():  # seed-batched, like the data it labels
            if x_batched:
                return jax.tree.map(np.asarray, jax.vmap(ds.teacher)(keys.data))
            return jax.tree.map(lambda a: np.broadcast_to(a, (n, *a.shape)), ds.teacher(keys.data[0]))
    return WidthRun(
        model=model,
        theta0=functools.partial(init_params, model, keys.init, in_flight),
        x_train=split.x_train,
        labels={"y": y_train, "y_rand": y_rand},
        batch_keys=keys.batches,
        x_batched=x_batched,
        settings=dataclasses.replace(shared_settings(cfg), max_in_flight=in_flight,
                                     check_every=check_every(cfg, ds.n_train),
                                     **lr_schedule_settings(cfg, ds.n_train)),
        store=store,
        fresh=functools.partial(init_params, model, keys.fresh, in_flight),
        teacher=teacher,
        fraction_keys=keys.fraction,
        random_set=random_set,
    )


def measure_in_batches(cfg: SweepConfig, model: Model, start, final, split, y_train, x_batched: bool,
                       batch: int, state: dict) -> dict:
    """`measures.measure` of every seed, `batch` seeds at a time (`state`: the final
    running statistics)."""
    n = len(y_train)
    parts = []
    for a in range(0, n, batch):
        sl = slice(a, min(a + batch, n))
        cut = lambda t, sl=sl: jax.tree.map(lambda v: np.asarray(v[sl]), t)  # noqa: E731
        parts.append(measure(model, cut(start), cut(final), cut(split.x_train) if x_batched else split.x_train,
                             cut(y_train), x_batched=x_batched, loss_reduction=cfg.loss_reduction,
                             hessian_iters=cfg.hessian_iters, grid=cfg.grid, state_final=cut(state)))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


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


def init_distributed(cfg: SweepConfig) -> None:
    """Join a multi-process run. Without the three flags, JAX reads them from the
    environment SLURM or a TPU pod provides. CPU processes talk through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if cfg.coordinator is not None:
            jax.distributed.initialize(cfg.coordinator, cfg.num_processes, cfg.process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        raise ConfigError("--distributed", f"could not join the run ({str(e).splitlines()[0][:160]})") from None


def _interrupt_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # a pre-empted batch job saves like Ctrl-C


def _terminate_quietly(signum, frame):
    """SIGTERM once the sweep's files are final (printing the table, jax's exit handlers):
    end at once, with no traceback; nothing is left to save."""
    sys.stderr.flush()
    os._exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate_quietly)


def _main(argv: list[str] | None) -> int:
    out = None
    try:
        cfg = parse_args(argv)
        out = cfg.out or default_out(cfg.dataset)
        use_cpu_devices(cfg.cpu_devices)
        if cfg.distributed:
            init_distributed(cfg)
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        rows = run_sweep(cfg, out)
        signal.signal(signal.SIGTERM, _terminate_quietly)  # every file is final: printing is all that is left
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"advjax.sweep: error: {e}", file=sys.stderr)
        return 2
    except WriteError as e:
        print(f"advjax.sweep: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        where = f"state saved in {out}; add --resume to the same command to continue" if out else "nothing written"
        print(f"\nadvjax.sweep: interrupted; {where}", file=sys.stderr)
        return 130
    print(summary_table(rows))
    print(f"results: {os.path.join(out, 'results.csv')}")
    if rows.figure:
        print(f"summary figure: {rows.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
