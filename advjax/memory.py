"""The memory model: how much a sweep needs, what it may use, and how many seeds fit.

Every seed's state lives on the host; only the seeds in flight are on the devices. The
counts below were measured (PERFORMANCE.md, "Memory"); `check_memory` refuses a sweep
that cannot fit before anything is allocated, `seeds_in_flight` sizes the batches.
"""

from __future__ import annotations

import math

import jax

from .data import Dataset
from .experiments import EXPERIMENT_SPECS
from .model import Model, activations_per_example, forward_floats_per_example, has_state, input_shape, n_parameters
from .options import ConfigError, parse_bytes
from .train import CHECK_BATCH, EVAL_FLOATS, equal_batches


def free_memory_bytes() -> int:
    """Memory the seeds may use: free accelerator memory, or available host memory."""
    devs = jax.local_devices()
    if devs[0].platform != "cpu":
        stats = [d.memory_stats() or {} for d in devs]
        if all("bytes_limit" in s for s in stats):
            return sum(s["bytes_limit"] - s.get("bytes_in_use", 0) for s in stats)
    return host_memory_bytes()


def host_memory_bytes() -> int:
    """Available host memory (MemAvailable), or 8 GB where it cannot be read."""
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


# float32 copies of a conv net's activations per example of a training step's minibatch
# (forward values kept for the gradient, their gradients, BatchNorm's and max-pooling's
# own): XLA:CPU's temporary buffers for one step measured 3.3 (ResNet-18), 4.9 (VGG16)
# and 9.2 (cnn) per example and activation unit (width 16, 32x32x3, PERFORMANCE.md, "Memory")
STEP_ACTIVATION_COPIES = 10

# bytes per entry of the sharpness's ITERS x ITERS tridiagonal matrix per seed: float32,
# built from three diagonals (jnp.diag) and summed, then eigvalsh's workspace; --hessian-iters
# 100000 asked XLA:CPU for one 80 GB buffer (8 bytes an entry) before this was counted
LANCZOS_BYTES = 16


def activation_floats(model: Model, n_train: int, batch_size: int | None) -> int:
    """Activation floats one seed holds in a step. An MLP: its training set's (measured,
    the check's forward pass over all n). A conv net, whose activations outweigh its
    parameters: a step's minibatch with its gradient's copies, or a check's batch of at
    most CHECK_BATCH examples in inference mode, whichever is larger (with im2col
    convolutions, their patches too); both at once where a seed alone may check the
    other examples while its minibatch's forward values wait for the backward pass
    (equal batches, no BatchNorm: `train.check_shares_minibatch`, counted whatever the
    layout)."""
    if not model.images:  # a capability of the model's kind: vectors in, activations measured
        return n_train * activations_per_example(model)
    units = forward_floats_per_example(model)
    step = min(batch_size or n_train, n_train)
    if equal_batches(step, n_train) and not has_state(model):
        return units * (STEP_ACTIVATION_COPIES * step + min(n_train - step, CHECK_BATCH))
    return units * max(STEP_ACTIVATION_COPIES * step, min(n_train, CHECK_BATCH))


def bytes_per_seed(model: Model, n_train: int, x_batched: bool, opt_copies: int = 0,
                   batch_size: int | None = None) -> int:
    """Device bytes one seed needs in flight: copies of its parameters (and of its
    optimizer state, in and out of a chunk), its own data, and its activations in a step
    (`activation_floats`)."""
    data = n_train * math.prod(input_shape(model)) if x_batched else 0
    activations = activation_floats(model, n_train, batch_size)
    return 4 * ((DEVICE_COPIES + 2 * opt_copies) * n_parameters(model) + data + activations)


def optimizer_copies(cfg) -> int:
    """Parameter-sized optimizer state per seed in the most demanding phase: Adam's two
    moments, or momentum's trace."""
    return max(2 if cfg.phase1_optimizer == "adam" else 0, 1 if cfg.momentum else 0)


def examples_trained(cfg, ds: Dataset) -> int:
    """The most examples one phase trains on: n, or phase 1's confusion set of R·n."""
    return ds.n_train * max(1, cfg.confusion_copies)


def seeds_in_flight(cfg, model: Model, ds: Dataset, x_batched: bool) -> int:
    """How many seeds one program trains at once: --max-seeds-in-flight, else as many as
    fit --memory-budget (default: half the free memory), at least one per device."""
    if cfg.max_seeds_in_flight:
        return min(cfg.max_seeds_in_flight, cfg.seeds)
    if cfg.memory_budget:
        budget = parse_bytes(cfg.memory_budget)
    else:
        budget = free_memory_bytes()
        if jax.local_devices()[0].platform == "cpu":  # the host also holds every seed's state
            budget -= host_copies(cfg) * cfg.seeds * n_parameters(model) * 4
        budget //= 2
    fit = budget // bytes_per_seed(model, examples_trained(cfg, ds), x_batched, optimizer_copies(cfg), cfg.batch_size)
    return int(min(cfg.seeds, max(jax.device_count(), fit)))


def host_copies(cfg) -> int:
    """Parameter copies of every seed the host holds at peak: Θ_adv, a phase's state and
    a save's copies; one more for a start that a transform makes (norm-matched,
    shrink-perturb), and the optimizer's state."""
    extra = max((spec.host_copies if (spec := EXPERIMENT_SPECS.get(e)) else 1 for e in cfg.experiments), default=0)
    return HOST_COPIES + extra + optimizer_copies(cfg)


def check_memory(cfg, ds: Dataset, model: Model, x_batched: bool, layout: str = "cache") -> None:
    """Refuse, before anything is allocated, a sweep whose host memory (every seed's
    parameters, data and labels; one seed's evaluation and 2-D measures) or one seed's
    in-flight device memory cannot fit, for its widest `model`. ConfigError names the
    flag to change."""
    width = model.width
    n_params, n_out, d = n_parameters(model), model.n_out, ds.n_features
    data_copies = cfg.seeds if x_batched else 1
    have = host_memory_bytes()
    terms: dict[str, int] = {}

    def add(flag_: str, one: int, copies: int = 1):
        """`copies` of a `one`-byte item: blamed on its own flag if one copy is large."""
        key = flag_ if one > have / 100 or copies == 1 else "--seeds"
        terms[key] = terms.get(key, 0) + one * copies

    add("--widths", 4 * host_copies(cfg) * n_params, cfg.seeds)
    add("--n-train", 4 * ds.n_train * (d + 1), data_copies)
    add("--seeds", 8 * ds.n_train + 40, cfg.seeds)  # labels and keys
    add("--n-test", 4 * ds.n_test * (d + 1), data_copies)
    if cfg.confusion_copies:  # phase 1's confusion set: R·n inputs, their true and random labels per seed
        add("--confusion-copies", 4 * examples_trained(cfg, ds) * (d + 2 * cfg.seeds // data_copies), data_copies)
    units = forward_floats_per_example(model) if model.images else width  # a conv net: every position's
    # examples an evaluation pass holds: a conv net's come in batches (`apply_bounded`); the MLP's count is the
    # measured one-pass count (its pass over a huge test set is batched too, but its other arrays are not)
    evaluated = min(ds.n_test, max(1, EVAL_FLOATS // units)) if model.images else ds.n_test
    add("--n-test" if ds.n_test >= width else "--widths", 12 * evaluated * (units + n_out))  # one seed's evaluation
    if cfg.measures and d == 2:
        add("--grid", 8 * cfg.grid**2 * (n_out + 3), 1)
    if ds.teacher is not None:  # each data draw's teacher network (d x TW, TW x 1), drawn and then scaled
        add("--teacher-width", 2 * 4 * (d + 2) * cfg.teacher_width, data_copies)
    if cfg.measures:  # the sharpness's Lanczos tridiagonal, dense (ITERS x ITERS) for eigvalsh, and its copies
        add("--hessian-iters", LANCZOS_BYTES * cfg.hessian_iters**2, jax.local_device_count())
    one_seed = bytes_per_seed(model, examples_trained(cfg, ds), x_batched, optimizer_copies(cfg), cfg.batch_size)
    if jax.local_devices()[0].platform == "cpu":  # the seeds in flight (one per device at least) are host memory too
        data_heavy = examples_trained(cfg, ds) * (width + d) > DEVICE_COPIES * n_params
        blame = "--confusion-copies" if cfg.confusion_copies > 1 else "--n-train"  # R copies of the n points
        add(blame if data_heavy else "--widths", jax.local_device_count() * one_seed)
    need = sum(terms.values())
    if need > have:
        culprit = max(terms, key=terms.get)
        raise ConfigError(culprit, f"this sweep needs about {_gb(need)} of host memory ({_gb(terms[culprit])} "
                          f"from {culprit}), and {_gb(have)} is available; lower {culprit}")
    budget = parse_bytes(cfg.memory_budget) if cfg.memory_budget else free_memory_bytes()
    if layout == "device" and one_seed <= budget:  # a device's seeds in flight side by side in one group
        per_device = -(-seeds_in_flight(cfg, model, ds, x_batched) // jax.local_device_count())
        group = per_device * one_seed
        if group > budget // jax.local_device_count():
            raise ConfigError("--seed-groups", f"device: one group of {per_device} seeds of width {width} needs "
                              f"about {_gb(group)} on a device, and {_gb(budget // jax.local_device_count())} "
                              "is there; lower --max-seeds-in-flight, or use --seed-groups cache")
    if one_seed > budget:
        which = "--memory-budget" if cfg.memory_budget else "--widths"
        raise ConfigError(which, f"one seed of width {width} needs about {_gb(one_seed)} on a device, and "
                          f"{'--memory-budget is' if cfg.memory_budget else 'the device has'} {_gb(budget)}; "
                          f"{'raise --memory-budget' if cfg.memory_budget else 'lower --widths'}")


def _gb(n: float) -> str:
    return f"{n / 2**30:.3g} GB" if n < 2**50 else f"{n / 2**50:.3g} PB"
