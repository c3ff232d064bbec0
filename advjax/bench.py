"""Benchmark: advjax against the PyTorch scripts of the field, and against the machine.

    python -m advjax.bench [--quick] [--json FILE]

Training throughput in seed-steps per second (one optimizer update of one seed, with
the training error checked on the whole training set after it), side by side in one
run, at widths 10, 100, 1000, on two workloads:

- 2d: n = 100 points in 2-D, one logit, logistic loss, full-batch GD (step 0.01);
- mnist: n = 128 digits of 784 pixels, 10 logits, cross-entropy, SGD batch 32 (step 0.1);
- mnist-deep3: the same on an MLP of 3 hidden layers (run at width 1000 only);
- conv nets (issue 14; `--no-conv` skips them): the CNN at width 16 on the same 128
  MNIST images as 28x28x1, and ResNet-18 at width 16 on 64 synthetic 32x32x3 images,
  SGD batch 32 (step 0.1), against torch twins of the same networks; FLOPs per
  seed-step from XLA's count of advjax's compiled step. `--conv-layouts` also times
  advjax's seed layouts on them (vmap, groups, sequential, im2col convolutions).

Both train on random labels (phase 1 of the paper) and are capped below the step at
which any seed fits them, so every implementation does the same number of updates.

- (a) advjax: the sweep engine, many seeds in one compiled program, per-seed stopping on;
- (b) torch loop: the published scripts' approach, one nn.Sequential at a time,
  torch.optim.SGD, a Python loop of steps that checks the training error and stops at 0;
- (c) torch.func: the same seeds stacked (stack_module_state + vmap + grad);
- (d) jax per-seed: a jitted step function called from a Python loop, one seed at a time.

And a grid: a 12-point step-size grid × 10 seeds on spirals at widths 10 and 100, one
advjax run (the grid in one compiled program) against 12 advjax runs of one point each
(the process-per-trial way of Hydra, W&B sweeps and Ray Tune), whole wall time.

The machine: peak float32 matmul FLOP/s and copy bandwidth, measured in the same run.
Useful FLOPs per seed-step are counted from the shapes (matmuls only). With M the sum of
fan_in x fan_out over the layers (dp + pk at depth 1): full batch 4nM + 2n(M - dp) (forward,
weight gradients, and the gradients of every layer's input but the data's); minibatch B:
4BM + 2B(M - dp) plus the error check's forward 2nM.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .devices import cpu_cores, draw_program, jit_draw, machine_name, use_cpu_devices

WORKLOADS = {
    # name: (d, n, n_out, batch_size or None, lr)
    "2d": (2, 100, 1, None, 0.01),
    "mnist": (784, 128, 10, 32, 0.1),
    "mnist-deep3": (784, 128, 10, 32, 0.1),
}
DEPTH = {"mnist-deep3": 3}  # hidden layers of the workload's MLP (default 1: N_p)
WIDE_ONLY = ("mnist-deep3",)  # run at widths >= 1000 only


class ConvWorkload(NamedTuple):
    """A conv net's workload (issue 14): `kind` of advjax's models on n images of
    `image_shape`, minibatch SGD; `images` "mnist" (the paper's 128, as 28x28x1: the
    sweep's draw) or "random" (synthetic standard-normal images of CIFAR's shape)."""

    kind: str
    image_shape: tuple[int, int, int]
    n: int
    n_out: int
    batch: int
    lr: float
    images: str


CONV_WORKLOADS = {
    "cnn-mnist": ConvWorkload("cnn", (28, 28, 1), 128, 10, 32, 0.1, "mnist"),
    "resnet18-32px": ConvWorkload("resnet18", (32, 32, 3), 64, 10, 32, 0.1, "random"),
}


def settings(name: str) -> tuple[int, int | None, float]:
    """(n, batch size or None, step size) of an MLP or conv workload."""
    if name in CONV_WORKLOADS:
        w = CONV_WORKLOADS[name]
        return w.n, w.batch, w.lr
    _, n, _, batch, lr = WORKLOADS[name]
    return n, batch, lr


def per_seed_x(model, x) -> bool:
    """Whether x carries a seed axis (2-D points: each seed its own draw) or is one
    training set shared by all seeds."""
    from .model import input_shape

    return x.ndim == len(input_shape(model)) + 2


def layer_sizes(d: int, p: int, k: int, depth: int = 1) -> int:
    """M: the sum of fan_in x fan_out over an MLP's layers."""
    return d * p + (depth - 1) * p * p + p * k


def useful_flops(d: int, n: int, p: int, k: int, batch: int | None, depth: int = 1) -> float:
    """Matmul FLOPs of one seed-step (forward, weight and hidden gradients, error check)."""
    m = layer_sizes(d, p, k, depth)
    if batch is None:
        return 4 * n * m + 2 * n * (m - d * p)
    return 4 * batch * m + 2 * batch * (m - d * p) + 2 * n * m


# -- the data and initial parameters every implementation shares --------------------------------

_WORKLOAD_DATA: dict = {}


def workload_data(name: str, n_seeds: int, width: int):
    """As a sweep has them: x per seed on 2-D data (each seed draws its own spirals), one
    x shared by all seeds on MNIST (the paper's fixed 128); random labels and θ0 per seed.
    Made once per workload definition, seed count and width (a row, its roofline count
    and its peers share them; nothing mutates them)."""
    key = (name, n_seeds, width, WORKLOADS.get(name), CONV_WORKLOADS.get(name))
    if key not in _WORKLOAD_DATA:
        _WORKLOAD_DATA[key] = _workload_data(name, n_seeds, width)
    return _WORKLOAD_DATA[key]


def _workload_data(name: str, n_seeds: int, width: int):
    from .data import make_dataset
    from .model import MLP
    from .train import init_params

    if name in CONV_WORKLOADS:
        return conv_workload_data(name, n_seeds, width)
    d, n, k, _, _ = WORKLOADS[name]
    keys = jax.random.split(jax.random.PRNGKey(1), n_seeds)
    if name == "2d":
        x = _per_key("spirals", keys, n)
    else:
        x = np.asarray(make_dataset("mnist").draw(jax.random.PRNGKey(0)).x_train)
    y = _per_key("labels", keys, n, max(k, 2))
    model = MLP(width, d, k, depth=DEPTH.get(name, 1))
    theta0 = init_params(model, keys, 1)  # the sweep's own init, one seed at a time (see _per_key)
    return model, x, y, theta0, np.asarray(jax.random.split(jax.random.PRNGKey(2), n_seeds))


def _per_key(what: str, keys, n: int, classes: int = 0) -> np.ndarray:
    """Each key's spirals (`what` "spirals") or random labels, stacked: one program per
    draw, whatever a row's seed count (a vmapped draw compiles anew for each). The
    program per key is the vmapped one without the seed axis; every row's data were
    byte-identical to the vmapped draw's (commit 183d2a1)."""
    one = _one_draw(what, n, classes)
    return np.stack([np.asarray(one(k)) for k in keys])


@functools.cache
def _one_draw(what: str, n: int, classes: int):
    from .data import random_labels, spirals_points

    if what == "spirals":
        return jit_draw(lambda k: spirals_points(k, n)[0])
    return lambda k: draw_program(random_labels, (1, 2))(k, n, classes)


def conv_workload_data(name: str, n_seeds: int, width: int):
    """As `workload_data`, for a conv net: one set of images shared by all seeds (MNIST:
    the sweep's 128 as 28x28x1; else random images), random labels and θ0 per seed. The
    model computes its convolutions as the sweep does by default (`--conv-impl auto`)."""
    from .data import as_images, make_dataset
    from .model import default_conv_impl, make_model
    from .train import init_params

    w = CONV_WORKLOADS[name]
    if w.images == "mnist":
        x = np.asarray(as_images(make_dataset("mnist", n_train=w.n)).draw(jax.random.PRNGKey(0)).x_train)
    else:
        x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (w.n, *w.image_shape)))
    keys = jax.random.split(jax.random.PRNGKey(1), n_seeds)
    y = _per_key("labels", keys, w.n, w.n_out)
    model = make_model(w.kind, width, w.image_shape, w.n_out, conv_impl=default_conv_impl(w.kind))
    theta0 = init_params(model, keys, 1)  # as `_workload_data`'s
    return model, x, y, theta0, np.asarray(jax.random.split(jax.random.PRNGKey(2), n_seeds))


# -- (a) the engine -----------------------------------------------------------------------------------

def run_advjax(name, width, n_seeds, steps, group: int | None = None, conv_impl: str | None = None,
               keep_params: bool = False):
    """The engine on the workload; `group`: seeds side by side in each of a device's seed
    groups (default: the trainer's own choice, `PhaseSpec.group_elements`); `conv_impl`:
    how the conv net computes its convolutions (default: the sweep's default, --conv-impl
    auto: the net's own on a CPU, lax.conv elsewhere)."""
    from .train import COMPILE_STATS, Numbers, train

    n, batch, lr = settings(name)
    model, x, y, theta0, bkeys = workload_data(name, n_seeds, width)
    if conv_impl is not None:
        model = dataclasses.replace(model, conv_impl=conv_impl)
    spec = _row_spec(model, x, batch, chunk_steps=min(steps + 1, 1000))
    if group is not None:
        spec = dataclasses.replace(spec, group_elements=group_elements_for(spec, n, group))
    before = COMPILE_STATS.seconds
    train(spec, theta0, x, y, bkeys, Numbers(lr, 1))  # compiles (the cap is a traced argument)
    compile_s = COMPILE_STATS.seconds - before
    t0 = time.perf_counter()
    out = train(spec, theta0, x, y, bkeys, Numbers(lr, steps))
    dt = time.perf_counter() - t0
    return {"seed_steps": int(out.steps.sum()), "seconds": dt, "compile_seconds": compile_s,
            **({"params": out.params} if keep_params else {})}


def _row_spec(model, x, batch: int | None, **options):
    """The phase a bench row trains: every layer, the workload's minibatches, as a sweep
    lays out its x."""
    from .train import PhaseSpec

    return PhaseSpec(model, model.layers, batch_size=batch, x_batched=per_seed_x(model, x), **options)


def step_cost(name: str, width: int, n_seeds: int, alone: bool = False) -> dict:
    """FLOPs and bytes of one seed-step as XLA counts them in the compiled program: the
    trainer's own step (`train._step`: forward, gradient, update, the error check),
    vmapped over n_seeds seeds, divided by n_seeds; `alone`: the step of a one-seed
    group, unbatched, as the trainer runs it where its groups hold one seed (its check
    can take the minibatch's logits from the gradient's forward pass,
    `train.check_shares_minibatch`)."""
    from .model import initial_states
    from .train import _step, host_init_state, make_hyper

    n, batch, lr = settings(name)
    model, x, y, theta0, bkeys = workload_data(name, n_seeds, width)
    spec = _row_spec(model, x, batch)
    hyper = make_hyper(n_seeds, lr, 10**6, n)
    state = host_init_state(theta0, bkeys, hyper, spec, model_state=initial_states(model, n_seeds))
    if alone:
        first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
        state, hyper, y, x, n_seeds = first(state), first(hyper), y[0], x[0] if spec.x_batched else x, 1
        step = lambda s, xx, yy, h: _step(spec, h, {}, xx, yy, s, True, True)  # noqa: E731
    else:
        step = jax.vmap(lambda s, xx, yy, h: _step(spec, h, {}, xx, yy, s),
                        in_axes=(0, 0 if spec.x_batched else None, 0, 0))
    cost = jit_draw(step).lower(state, x, y, hyper).compile().cost_analysis()  # XLA's HLO count: the same at level 1
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"xla_flops_per_seed_step": float(cost["flops"]) / n_seeds,
            "xla_bytes_per_seed_step": float(cost["bytes accessed"]) / n_seeds}


def runs_alone(name: str, width: int, n_seeds: int) -> bool:
    """Whether the trainer runs a row's seeds in groups of one (`train.seed_groups` for
    the seeds each local device holds)."""
    from .train import seed_groups

    n, batch, _ = settings(name)
    model, x, *_ = workload_data(name, n_seeds, width)
    spec = _row_spec(model, x, batch)
    return seed_groups(spec, n, -(-n_seeds // jax.local_device_count()))[1] == 1


def group_elements_for(spec, n: int, group: int) -> int:
    """The `PhaseSpec.group_elements` that makes `train.seed_groups` put `group` seeds
    side by side (its count of a seed's floats: activations on n examples, parameters)."""
    from .model import activations_per_example, n_parameters
    from .train import seed_groups

    elements = group * (n * activations_per_example(spec.model) + n_parameters(spec.model))
    assert seed_groups(dataclasses.replace(spec, group_elements=elements), n, group)[1] == group
    return elements


def roofline(row: dict, peaks: dict) -> dict:
    """The least time a seed-step can take on this machine (its FLOPs at the matmul
    peak, or its bytes at the in-cache copy bandwidth, whichever is longer), what bounds
    it, and how far advjax's measured time is from it. XLA counts the bytes every op
    reads and writes; seed groups are sized to keep them in cache, so they are charged
    at cache speed (at the DRAM copy bandwidth most workloads would be far slower than
    measured: that count is no bound there)."""
    compute = row["xla_flops_per_seed_step"] / peaks["peak_flops"]
    memory = row["xla_bytes_per_seed_step"] / peaks["cache_copy_bytes_per_s"]
    measured = 1.0 / row["seed_steps_per_s"]
    return {"bound_seconds": max(compute, memory), "bound_by": "compute" if compute >= memory else "memory",
            "measured_seconds": measured, "times_bound": measured / max(compute, memory)}


# -- (d) a jitted per-seed step from a Python loop ---------------------------------------------------

def run_jax_per_seed(name, width, n_seeds, steps):
    import optax

    from .train import batch_indices, per_example_loss, predictions

    _, n, _, batch, lr = WORKLOADS[name]
    model, x, y, theta0, bkeys = workload_data(name, n_seeds, width)
    opt = optax.sgd(lr)
    xs = jnp.asarray(x)

    @jax.jit
    def step(params, state, x, y, key, t):
        def loss_fn(p, xb, yb):
            logits = model.apply(p, xb)
            return per_example_loss(logits, yb).mean(), logits

        if batch is None:
            (_, logits), g = jax.value_and_grad(loss_fn, has_aux=True)(params, x, y)
        else:
            idx, _ = batch_indices(key, t, n, batch)
            g = jax.grad(lambda p: loss_fn(p, x[idx], y[idx])[0])(params)
            logits = model.apply(params, x)
        errors = jnp.sum(predictions(logits) != y)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state, errors

    def one(i, cap, deadline=None):
        params = jax.tree.map(lambda a: jnp.asarray(a[i]), theta0)
        state, yi, key = opt.init(params), jnp.asarray(y[i]), jnp.asarray(bkeys[i])
        xi = xs[i] if xs.ndim == 3 else xs
        for t in range(cap + 1):
            if deadline is not None and time.perf_counter() > deadline:
                return t
            new, new_state, errors = step(params, state, xi, yi, key, t)
            if int(errors) == 0 or t == cap:  # errors are those of `params`, before this update
                return t
            params, state = new, new_state
        return cap

    one(0, 2)  # compile
    return _seed_by_seed(one, n_seeds, steps)


# -- (b) and (c): PyTorch ---------------------------------------------------------------------------------

def _torch_mlp(torch, model):
    """nn.Sequential of the MLP's layers, ReLU between them."""
    from .model import param_shapes

    linears = [torch.nn.Linear(*param_shapes(model)[name]["kernel"].shape) for name in model.layers]
    return torch.nn.Sequential(*[m for linear in linears[:-1] for m in (linear, torch.nn.ReLU())], linears[-1])


def _torch_conv_net(torch, model):
    """advjax's `cnn` or `resnet18` as a torch module (NCHW)."""
    nets = _torch_conv_classes(torch)
    if model.kind not in nets:
        raise ValueError(f"no torch twin of advjax's {model.kind!r} (have: mlp, {', '.join(nets)})")
    return nets[model.kind](model)


@functools.cache
def _torch_conv_classes(torch) -> dict:
    """The torch twins of advjax's conv nets, by kind, built from an advjax model; their
    submodules named as advjax's parameter tree ({layer: {part: ...}}), so weights copy
    over by name. BatchNorm2d's defaults are advjax's (eps 1e-5, momentum 0.1, unbiased
    running variance); torch flattens NCHW, so the CNN's readout reads its map as NHWC,
    as advjax's does. One class per kind: torch.func stacks modules of one class."""
    nn, F = torch.nn, torch.nn.functional

    def conv_bn(c_in, c_out, k, stride):
        m = nn.Module()
        m.conv, m.bn = nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2, bias=False), nn.BatchNorm2d(c_out)
        return m

    class CNN(nn.Module):
        def __init__(self, model):
            super().__init__()
            (height, wide, c_in), p = model.n_in, model.width
            self.conv1, self.conv2 = nn.Conv2d(c_in, p, 3, padding=1), nn.Conv2d(p, p, 3, padding=1)
            self.readout = nn.Linear((height // 4) * (wide // 4) * p, model.n_out)

        def forward(self, h):
            for conv in (self.conv1, self.conv2):
                h = F.max_pool2d(F.relu(conv(h)), 2)
            return self.readout(h.permute(0, 2, 3, 1).flatten(1))

    class Block(nn.Module):
        def __init__(self, c_in, planes, stride):
            super().__init__()
            a, b = conv_bn(c_in, planes, 3, stride), conv_bn(planes, planes, 3, 1)
            self.conv1, self.bn1, self.conv2, self.bn2 = a.conv, a.bn, b.conv, b.bn
            if stride != 1 or c_in != planes:
                s = conv_bn(c_in, planes, 1, stride)
                self.shortcut, self.shortcut_bn = s.conv, s.bn

        def forward(self, h):
            out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(h)))))
            return F.relu(out + (self.shortcut_bn(self.shortcut(h)) if hasattr(self, "shortcut") else h))

    class ResNet18(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.blocks = [name for name, *_ in model._blocks()]
            self.stem = conv_bn(model.n_in[2], model.width, 3, 1)
            for name, c_in, planes, stride in model._blocks():
                setattr(self, name, Block(c_in, planes, stride))
            self.readout = nn.Linear(8 * model.width, model.n_out)

        def forward(self, h):
            h = F.relu(self.stem.bn(self.stem.conv(h)))
            for name in self.blocks:
                h = getattr(self, name)(h)
            return self.readout(h.mean(dim=(2, 3)))

    return {"cnn": CNN, "resnet18": ResNet18}


def _torch_model(torch, model, params_i, state_i=None):
    """The torch twin of `model` with one seed's θ0 (and running statistics) copied in:
    dense kernels (in, out) -> weight (out, in), conv kernels HWIO -> OIHW, BatchNorm
    scale -> weight."""
    net = _torch_mlp(torch, model) if model.kind == "mlp" else _torch_conv_net(torch, model)
    modules = (dict(zip(model.layers, [m for m in net if isinstance(m, torch.nn.Linear)]))
               if model.kind == "mlp" else None)
    torch_name = {"kernel": "weight", "scale": "weight", "bias": "bias", "mean": "running_mean", "var": "running_var"}

    def copy(tree):
        for path, value in jax.tree_util.tree_flatten_with_path(tree)[0]:
            keys = [k.key for k in path]
            owner = modules[keys[0]] if modules is not None else net
            for k in keys[(1 if modules is not None else 0):-1]:
                owner = getattr(owner, k)
            a = np.asarray(value)
            a = a.T if a.ndim == 2 else np.transpose(a, (3, 2, 0, 1)) if a.ndim == 4 else a
            getattr(owner, torch_name[keys[-1]]).copy_(torch.from_numpy(np.array(a, np.float32)))

    with torch.no_grad():
        copy(params_i)
        copy(state_i or {})
    return net


def _torch_x(torch, x):
    """Images (..., H, W, C) as torch's (..., C, H, W); vectors and points as they are."""
    a = np.moveaxis(x, -1, -3) if x.ndim >= 4 else x
    return torch.from_numpy(np.array(a, np.float32))


def _torch_loss(torch, logits, y):
    if logits.shape[-1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[..., 0], y.float())
    return torch.nn.functional.cross_entropy(logits, y)


def _torch_pred(logits):
    return (logits[..., 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)


# Wall-clock budget of one peer row (the per-seed loops, torch.func): a row that reaches it
# stops there and reports the throughput of the steps it made, marked as stopped, instead
# of holding the bench up (a ResNet-18 torch loop ran 9 minutes on one CPU).
ROW_BUDGET_SECONDS = {True: 15.0, False: 120.0}  # --quick, full
_row_budget = [ROW_BUDGET_SECONDS[False]]


def _deadline() -> float:
    return time.perf_counter() + _row_budget[0]


class TorchLoop(NamedTuple):
    """How `torch_loop_one` trains a seed: step size, step cap, minibatch size (None: full
    batch); `batches(t)`, the minibatch indices of update t (default: a fresh shuffle per
    epoch, as DataLoader(shuffle=True)); the row's deadline (perf_counter seconds)."""

    lr: float
    cap: int
    batch: int | None
    batches: Callable[[int], object] | None = None
    deadline: float | None = None


def torch_loop_one(torch, model, params_i, x, y, loop: TorchLoop, losses: list | None = None, state_i=None) -> int:
    """The published scripts' loop for one seed; returns steps to zero training error.
    The check runs in eval mode (BatchNorm's running statistics, as advjax's), the
    update in train mode. `losses` collects the training loss per step."""
    lr, cap, batch, batches, deadline = loop
    net = _torch_model(torch, model, params_i, state_i)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    n, bn = len(x), has_bn(model)
    perm = None
    for t in range(cap + 1):
        if deadline is not None and time.perf_counter() > deadline:
            return t  # the row's budget is spent: t updates made
        if batch is None and not bn:  # full batch: the check reuses the update's forward pass
            out = net(x)
            if losses is not None:
                losses.append(float(_torch_loss(torch, out.detach(), y)))
            if bool((_torch_pred(out) == y).all()) or t == cap:
                return t
            loss = _torch_loss(torch, out, y)
        else:
            net.eval()
            with torch.no_grad():
                out = net(x)
                if losses is not None:
                    losses.append(float(_torch_loss(torch, out, y)))
                if bool((_torch_pred(out) == y).all()) or t == cap:
                    return t
            net.train()
            n_b = math.ceil(n / (batch or n))
            if batches is not None:
                idx = batches(t)
            elif batch is None:
                idx = torch.arange(n)
            else:
                if t % n_b == 0:
                    perm = torch.randperm(n)
                idx = perm[(t % n_b) * batch:(t % n_b + 1) * batch]
            loss = _torch_loss(torch, net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap


def has_bn(model) -> bool:
    from .model import has_state

    return has_state(model)


def _seed(tree, i):
    return jax.tree.map(lambda a: a[i], tree)


def run_torch_loop(name, width, n_seeds, steps):
    import torch

    from .model import initial_states

    _, batch, lr = settings(name)
    model, x, y, theta0, _ = workload_data(name, n_seeds, width)
    states = initial_states(model, n_seeds)
    xt, yt = _torch_x(torch, x), torch.from_numpy(y.astype(np.int64))
    x_of = lambda i: xt[i] if per_seed_x(model, x) else xt  # noqa: E731

    def one(i, cap, deadline=None):
        loop = TorchLoop(lr, cap, batch, deadline=deadline)
        return torch_loop_one(torch, model, _seed(theta0, i), x_of(i), yt[i], loop, state_i=_seed(states, i))

    one(0, 2)  # warm up
    return _seed_by_seed(one, n_seeds, steps)


def _seed_by_seed(one, n_seeds: int, steps: int) -> dict:
    """A per-seed loop's row: seed after seed, until the row's budget is spent."""
    t0, deadline, total = time.perf_counter(), _deadline(), 0
    for i in range(n_seeds):
        total += one(i, steps, deadline)
        if time.perf_counter() > deadline:
            return {"seed_steps": max(total, 1), "seconds": time.perf_counter() - t0, "over_budget": True}
    return {"seed_steps": total, "seconds": time.perf_counter() - t0}


def run_torch_func(name, width, n_seeds, steps):
    """The seeds stacked (stack_module_state) and trained by vmap(grad(functional_call));
    BatchNorm in train mode for the update (its stacked running statistics move in
    place, per seed), eval mode for the check."""
    import copy

    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    from .model import initial_states

    n, batch, lr = settings(name)
    model, x, y, theta0, _ = workload_data(name, n_seeds, width)
    states = initial_states(model, n_seeds)
    nets = [_torch_model(torch, model, _seed(theta0, i), _seed(states, i)) for i in range(n_seeds)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    base_eval = copy.deepcopy(base).eval()
    xt, yt = _torch_x(torch, x), torch.from_numpy(y.astype(np.int64))
    full_batch = batch is None and not has_bn(model)  # the check reuses the update's forward pass

    def loss_one(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return _torch_loss(torch, out, yb), out

    x_dim = 0 if per_seed_x(model, x) else None
    grad_fn = vmap(grad_and_value(loss_one, has_aux=True), in_dims=(0, 0, x_dim if batch is None else 0, 0))
    forward = vmap(lambda p, b, xb: functional_call(base_eval, (p, b), (xb,)), in_dims=(0, 0, x_dim))

    def run(cap, deadline=None):
        p = {k: v.detach().clone() for k, v in params.items()}
        b = {k: v.clone() for k, v in buffers.items()}
        steps_taken = torch.zeros(n_seeds, dtype=torch.long)
        active = torch.ones(n_seeds, dtype=torch.bool)
        n_b = math.ceil(n / batch) if batch else 1
        for t in range(cap + 1):
            if deadline is not None and time.perf_counter() > deadline:
                return int(steps_taken.sum()), True
            if full_batch:
                grads, (_, out) = grad_fn(p, b, xt, yt)
            else:
                with torch.no_grad():
                    out = forward(p, b, xt)
            active &= ~(_torch_pred(out) == yt).all(-1)
            if t == cap or not bool(active.any()):
                return int(steps_taken.sum()), False
            if batch is None and not full_batch:
                grads, _ = grad_fn(p, b, xt, yt)
            elif batch is not None:
                if t % n_b == 0:
                    perms = torch.stack([torch.randperm(n) for _ in range(n_seeds)])
                idx = perms[:, (t % n_b) * batch:(t % n_b + 1) * batch]
                xb = xt[idx] if x_dim is None else torch.stack([xt[i, idx[i]] for i in range(n_seeds)])
                grads, _ = grad_fn(p, b, xb, torch.gather(yt, 1, idx))
            with torch.no_grad():
                for k in p:
                    mask = active.view(-1, *([1] * (p[k].dim() - 1))).to(p[k].dtype)
                    p[k] -= lr * grads[k] * mask
            steps_taken += active.long()
        return int(steps_taken.sum()), False

    run(2)
    t0 = time.perf_counter()
    total, stopped = run(steps, _deadline())
    return {"seed_steps": max(total, 1), "seconds": time.perf_counter() - t0,
            **({"over_budget": True} if stopped else {})}


# -- same numbers: (a) and (b) agree on a fixed seed -----------------------------------------------------

def agreement(name: str, width: int, steps: int) -> dict:
    """Losses along the way and steps to zero error of (a) and (b) for seed 0, with the
    same θ0 and minibatches, on labels both fit within the cap (2-D: noiseless circles;
    MNIST: the random labels, at the paper's step 0.1; conv nets: their random labels,
    the losses in inference mode)."""
    import torch

    from .data import circles_points
    from .model import initial_states
    from .train import Numbers, PhaseSpec, batch_indices, per_example_loss, train

    n, batch, lr = settings(name)
    model, x, y, theta0, bkeys = workload_data(name, 1, width)
    if name == "2d":
        xc, yc = circles_points(jax.random.PRNGKey(3), n, noise=0.0)
        x, y = np.asarray(xc), np.asarray(yc)[None]
        lr = 0.05
    # (a): the loss trajectory from the engine run step by step (caps 0, 1, 2, ...)
    ours_losses = []
    spec = PhaseSpec(model, model.layers, batch_size=batch, chunk_steps=steps, x_batched=False)
    out = train(spec, theta0, x, y, bkeys, Numbers(lr, steps))
    ours_steps = int(out.steps[0])
    # jitted, the loss can differ from op by op in its last bits: far inside the check's 1e-3
    loss = jax.jit(lambda p, s: per_example_loss(model.apply(p, jnp.asarray(x), s), jnp.asarray(y[0])).mean())
    for cap in range(min(steps, 30) + 1):
        at = train(spec, theta0, x, y, bkeys, Numbers(lr, cap))
        ours_losses.append(float(loss(_seed(at.params, 0), _seed(at.state, 0))))
    # (b) with the same minibatches (integer draws: the same under jit as op by op)
    indices = jit_draw(lambda t: batch_indices(jnp.asarray(bkeys[0]), t, n, batch)[0])
    batches = (lambda t: torch.from_numpy(np.asarray(indices(jnp.int32(t))).astype(np.int64))) if batch else None
    xt, yt = _torch_x(torch, np.asarray(x)), torch.from_numpy(np.array(y[0], np.int64))
    theirs_losses: list[float] = []
    theirs_steps = torch_loop_one(torch, model, _seed(theta0, 0), xt, yt, TorchLoop(lr, steps, batch, batches),
                                  theirs_losses, _seed(initial_states(model, 1), 0))
    m = min(len(ours_losses), len(theirs_losses))
    rel = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(ours_losses[:m], theirs_losses[:m]))
    return {"workload": name, "width": width, "steps_advjax": ours_steps, "steps_torch": theirs_steps,
            "max_rel_loss_diff_first_30_steps": rel, "agree": ours_steps == theirs_steps and rel < 1e-3}


# -- seeds at once on conv nets: layouts (issue 14, item 5) ----------------------------------------------

def layout_row(name: str, width: int, n_seeds: int, steps: int, layout: str) -> dict:
    """advjax's throughput with one seed layout: "vmap" (all of a device's seeds side by
    side: grouped convolutions), "sequential" (one seed at a time inside the program,
    `lax.map` over groups of 1), "groups-of-2", or "im2col" (sequential, convolutions as
    patch matmuls: --conv-impl im2col). For the CNN, also how far seed 0 trained among n_seeds is
    from seed 0 trained alone (max relative difference of its parameters)."""
    per_device = -(-n_seeds // len(jax.devices()))
    group = {"vmap": per_device, "sequential": 1, "groups-of-2": 2, "im2col": 1}[layout]
    kw = {"group": group, "conv_impl": "im2col" if layout == "im2col" else "xla", "keep_params": True}
    r = run_advjax(name, width, n_seeds, steps, **kw)
    row = {"workload": name, "width": width, "layout": layout, "seeds": n_seeds, "steps": steps,
           "seed_steps_per_s": r["seed_steps"] / r["seconds"], "compile_seconds": r["compile_seconds"]}
    if CONV_WORKLOADS[name].kind == "cnn":
        alone = run_advjax(name, width, 1, steps, **{**kw, "group": 1})["params"]
        row["max_rel_diff_to_seed_alone"] = max(
            float(np.max(np.abs(a[0] - b[0])) / max(np.max(np.abs(b[0])), 1e-30))
            for a, b in zip(jax.tree.leaves(r["params"]), jax.tree.leaves(alone)))
    return row


LAYOUTS = ("vmap", "groups-of-2", "sequential", "im2col")


def layout_plan(quick: bool) -> list[tuple[str, int, int, int, str]]:
    """(workload, width, seeds, steps, layout): the CNN on MNIST at width 16 (8 seeds: 4
    per core side by side under "vmap") and ResNet-18 at widths 8 and 16 (4 seeds, one
    step: seconds each on this CPU), each layout."""
    if quick:
        return [("cnn-mnist", 4, 4, 3, lay) for lay in ("vmap", "sequential", "im2col")]
    return ([("cnn-mnist", 16, 8, 20, lay) for lay in LAYOUTS]
            + [("resnet18-32px", p, 4, 1, lay) for p in (8, 16) for lay in ("vmap", "sequential")])


def layout_table(rows: list[dict]) -> str:
    lines = [f"{'seed layout':<14} {'width':>5} {'layout':<12} {'seed-steps/s':>12} {'compile s':>9} "
             f"{'vs alone':>9}"]
    for r in rows:
        alone = r.get("max_rel_diff_to_seed_alone")
        lines.append(f"{r['workload']:<14} {r['width']:>5} {r['layout']:<12} {r['seed_steps_per_s']:>12.2f} "
                     f"{r['compile_seconds']:>9.1f} {'' if alone is None else f'{alone:.1e}':>9}")
    lines.append("vs alone: max relative difference of seed 0's parameters trained among the seeds and alone")
    return "\n".join(lines)


# -- the machine --------------------------------------------------------------------------------------------

def machine_peaks(quick: bool) -> dict:
    size = 2048 if quick else 4096
    a = jnp.ones((size, size), jnp.float32)
    mm = jax.jit(lambda u, v: u @ v)
    mm(a, a).block_until_ready()
    reps = 3 if quick else 6
    t0 = time.perf_counter()
    for _ in range(reps):
        r = mm(a, a)
    r.block_until_ready()
    jax_flops = 2 * size**3 * reps / (time.perf_counter() - t0)
    an = np.ones((size, size), np.float32)
    an @ an
    t0 = time.perf_counter()
    for _ in range(reps):
        an @ an
    np_flops = 2 * size**3 * reps / (time.perf_counter() - t0)
    big = np.ones(64 * 2**20 // 4 * (2 if quick else 4), np.float32)  # 128 or 256 MiB
    dst = np.empty_like(big)
    np.copyto(dst, big)
    t0 = time.perf_counter()
    for _ in range(reps):
        np.copyto(dst, big)
    bw = 2 * big.nbytes * reps / (time.perf_counter() - t0)  # read + write
    # The trainer sizes seed groups to stay in cache: its bytes move at cache speed.
    small = np.ones(128 * 2**10 // 4, np.float32)  # 128 KiB: two copies fit a 512 KiB L2
    dst_small = np.empty_like(small)
    reps_small = 20_000 if quick else 50_000
    t0 = time.perf_counter()
    for _ in range(reps_small):
        np.copyto(dst_small, small)
    cache_bw = 2 * small.nbytes * reps_small / (time.perf_counter() - t0)
    return {"matmul_size": size, "jax_matmul_flops": jax_flops, "numpy_matmul_flops": np_flops,
            "peak_flops": max(jax_flops, np_flops), "copy_bytes_per_s": bw, "cache_copy_bytes_per_s": cache_bw}


# -- a hyperparameter grid: one program against a process per grid point ------------------------------------

GRID_LRS = tuple(float(f"{v:.3g}") for v in np.geomspace(0.001, 1.0, 12))  # 12 step sizes, 10^-3 .. 1
QUICK_GRID_LRS = GRID_LRS[::5]  # --quick: 3 of them, 10^-3 .. 0.53


def grid_row(width: int, quick: bool) -> dict:
    """A 12-point (--quick: 3-point) step-size grid × 10 seeds on spirals (the baseline, full-batch GD):
    one advjax run with --lr a list, against 12 advjax runs of one step size each (how
    Hydra, W&B sweeps or Ray Tune run a grid: a process per trial). Whole wall time,
    start-up and compilation included; each arm starts from an empty compile cache (the
    separate runs then share theirs, as trials on one machine would). Also checks that
    each grid point's rows equal its separate run's."""
    import os
    import subprocess
    import tempfile

    from .results import read_results

    steps = 1000 if quick else 5000
    lrs = QUICK_GRID_LRS if quick else GRID_LRS
    common = ["--dataset", "spirals", "--widths", str(width), "--seeds", "10", "--experiments", "baseline",
              "--max-steps", str(steps), "--n-test", "1000", "--no-measures", "--no-figure", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        def sweep(args, out, cache):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "advjax.sweep", *common, *args, "--out", os.path.join(tmp, out),
                            "--compile-cache", os.path.join(tmp, cache)], check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0

        one = sweep(["--lr", ",".join(map(str, lrs))], "grid", "cache-grid")
        apart = sum(sweep(["--lr", str(lr)], f"lr{i}", "cache-apart") for i, lr in enumerate(lrs))
        grid = read_results(os.path.join(tmp, "grid", "results.csv"))
        same = all([{k: v for k, v in r.items() if k != "lr"} for r in grid if r["lr"] == lr]
                   == read_results(os.path.join(tmp, f"lr{i}", "results.csv")) for i, lr in enumerate(lrs))
    return {"workload": "grid-spirals", "width": width, "points": len(lrs), "seeds": 10, "max_steps": steps,
            "one_run_seconds": one, "separate_runs_seconds": apart, "speedup": apart / one, "same_rows": same}


def roofline_table(rows: list[dict], peaks: dict) -> str:
    lines = [f"{'roofline':<11} {'width':>5}  {'MFLOP/step':>10} {'KB/step':>9}  {'bound µs':>9} {'by':>7}  "
             f"{'advjax µs':>9} {'x bound':>8}"]
    for r in rows:
        lines.append(f"{r['workload']:<11} {r['width']:>5}  {r['xla_flops_per_seed_step'] / 1e6:>10.3f} "
                     f"{r['xla_bytes_per_seed_step'] / 1e3:>9.1f}  {r['bound_seconds'] * 1e6:>9.3f} "
                     f"{r['bound_by']:>7}  {r['measured_seconds'] * 1e6:>9.3f} {r['times_bound']:>7.1f}x")
    lines.append("per seed-step, FLOPs and bytes as XLA's cost analysis counts the step the trainer runs (a seed "
                 "alone, where its groups hold one, checks only the examples outside its minibatch); bound: the FLOPs "
                 f"at {peaks['peak_flops'] / 1e9:.0f} GFLOP/s or the bytes at the in-cache copy bandwidth "
                 f"{peaks['cache_copy_bytes_per_s'] / 1e9:.1f} GB/s, whichever is longer")
    return "\n".join(lines)


def grid_table(rows: list[dict]) -> str:
    k = rows[0]["points"] if rows else len(GRID_LRS)
    lines = [f"{f'grid ({k} step sizes x 10 seeds, spirals)':<42} {'width':>5}  {'one run s':>9}  "
             f"{f'{k} runs s':>9}  {'speedup':>7}  {'same rows':>9}"]
    for r in rows:
        lines.append(f"{'':<42} {r['width']:>5}  {r['one_run_seconds']:>9.1f}  {r['separate_runs_seconds']:>9.1f}  "
                     f"{r['speedup']:>6.1f}x  {'yes' if r['same_rows'] else 'NO':>9}")
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------------------

IMPLS = {"advjax": run_advjax, "torch_loop": run_torch_loop, "torch_func": run_torch_func,
         "jax_per_seed": run_jax_per_seed}
MLP_IMPLS = tuple(IMPLS)


def run_advjax_other_conv(name, width, n_seeds, steps):
    """Conv rows: advjax with another --conv-impl than the default here: lax.conv as JAX
    differentiates it (xla) on a CPU, where the default is im2col or canonical; im2col
    on a GPU or TPU."""
    return run_advjax(name, width, n_seeds, steps, conv_impl=_other_conv(CONV_WORKLOADS[name].kind))


def _other_conv(kind: str) -> str:
    from .model import default_conv_impl

    return "xla" if default_conv_impl(kind) != "xla" else "im2col"


IMPLS["advjax_other_conv"] = run_advjax_other_conv


def plan(quick: bool, widths) -> list[dict]:
    """(workload, width, impl, seeds, steps): sizes that take about a second each."""
    jobs = []
    for name in WORKLOADS:
        for p in widths:
            big = p >= 1000
            if name in WIDE_ONLY and not big:
                continue
            if name in DEPTH:  # ~3.5x the FLOPs of N_p per seed-step at p = 1000; as many steps a seed as the loops
                cfg = {"advjax": (8, 40), "torch_func": (16, 10), "torch_loop": (2, 40), "jax_per_seed": (2, 40)}
            elif name == "2d":
                base = 1000 if big else 3000
                cfg = {"advjax": (64, base), "torch_func": (64, base // 10), "torch_loop": (2, base // 3),
                       "jax_per_seed": (2, base // 3)}
            else:
                base = 40 if big else 150
                cfg = {"advjax": (32, base), "torch_func": (32, base // 4), "torch_loop": (2, base),
                       "jax_per_seed": (2, base)}
            for impl, (seeds, steps) in cfg.items():
                if quick:
                    steps = max(5, steps // 3)
                jobs.append({"workload": name, "width": p, "impl": impl, "seeds": seeds, "steps": steps})
    return jobs


CONV_IMPLS = ("advjax", "advjax_other_conv", "torch_loop", "torch_func")


def conv_plan(quick: bool) -> list[dict]:
    """The conv rows: the CNN at width 16 on MNIST and ResNet-18 at width 16 (quick: both
    at width 4). ResNet-18 is ~100 MFLOP a seed-step at width 16 and advjax runs it at
    seconds a seed-step on this CPU (PERFORMANCE.md), so its rows are a few steps, as many a
    seed for advjax as for the torch loop."""
    sizes = {  # workload: (width, {impl: (seeds, steps)})
        "cnn-mnist": (16, {"advjax": (8, 20), "advjax_other_conv": (8, 20), "torch_loop": (2, 20),
                           "torch_func": (8, 8)}),
        "resnet18-32px": (16, {"advjax": (2, 4), "advjax_other_conv": (2, 2), "torch_loop": (2, 4),
                               "torch_func": (2, 2)}),
    }
    if quick:  # width 4, 2 seeds, 2 steps; ResNet-18 with one convolution only (its compile alone takes 10 s)
        sizes = {name: (4, {impl: (2, 2) for impl in CONV_IMPLS if (name, impl) != ("resnet18-32px",
                                                                                     "advjax_other_conv")})
                 for name in sizes}
    return [{"workload": name, "width": width, "impl": impl, "seeds": seeds, "steps": steps}
            for name, (width, cfg) in sizes.items() for impl, (seeds, steps) in cfg.items()]


@functools.cache
def _xla_cost(name: str, width: int, alone: bool = False) -> dict:
    """A conv workload's FLOPs and bytes per seed-step as XLA counts them (one seed:
    the count per seed is the same at any seed count); `alone`: as `step_cost`'s."""
    return step_cost(name, width, 1, alone)


def run_job(job: dict, peaks: dict) -> dict:
    """One row: the implementation's throughput, and FLOPs per seed-step (MLPs: the
    matmul hand count; conv nets: XLA's count of the compiled step)."""
    name, width = job["workload"], job["width"]
    r = IMPLS[job["impl"]](name, width, job["seeds"], job["steps"])
    r.update(job)
    r["seed_steps_per_s"] = r["seed_steps"] / r["seconds"]
    if name in CONV_WORKLOADS:
        r.update(_xla_cost(name, width))
        r["useful_flops_per_seed_step"] = r["xla_flops_per_seed_step"]
    else:
        d, n, k, batch, _ = WORKLOADS[name]
        r["useful_flops_per_seed_step"] = useful_flops(d, n, width, k, batch, DEPTH.get(name, 1))
    r["useful_flops_per_s"] = r["seed_steps_per_s"] * r["useful_flops_per_seed_step"]
    r["share_of_peak"] = r["useful_flops_per_s"] / peaks["peak_flops"]
    if job["impl"] == "advjax":  # the roofline counts the program the trainer runs
        alone = runs_alone(name, width, job["seeds"])
        r.update(_xla_cost(name, width, alone) if name in CONV_WORKLOADS
                 else step_cost(name, width, job["seeds"], alone))
        r.update(roofline(r, peaks))
    stopped = f"  (stopped at its {_row_budget[0]:.0f} s budget)" if r.get("over_budget") else ""
    print(f"  {name:<6} p={width:<5} {job['impl']:<13} {r['seed_steps_per_s']:>12,.2f} seed-steps/s{stopped}",
          file=sys.stderr, flush=True)
    return r


def _conv_default_text() -> str:
    """Each conv workload's default --conv-impl here, and the other conv column's."""
    from .model import default_conv_impl

    defaults = ", ".join(f"{name} {default_conv_impl(w.kind)}" for name, w in CONV_WORKLOADS.items())
    others = sorted({_other_conv(w.kind) for w in CONV_WORKLOADS.values()})
    return f"{defaults}; other conv: {', '.join(others)}"


def conv_table(results: list[dict]) -> str:
    nan = float("nan")
    lines = [f"{'conv net':<14} {'width':>5}  {'advjax':>8} {'other conv':>10} {'torch loop':>10} {'torch.func':>10}  "
             f"{'vs loop':>7} {'vs func':>7} {'other vs loop':>13}  {'MFLOP/step':>10}  {'% peak: advjax':>14} "
             f"{'loop':>6} {'func':>6}"]
    keyed = {(r["workload"], r["width"], r["impl"]): r for r in results}
    for (name, p) in dict.fromkeys((r["workload"], r["width"]) for r in results if r["workload"] in CONV_WORKLOADS):
        rows = {impl: keyed[(name, p, impl)] for impl in CONV_IMPLS if (name, p, impl) in keyed}
        rate = {impl: rows[impl]["seed_steps_per_s"] if impl in rows else nan for impl in CONV_IMPLS}
        share = {impl: 100 * rows[impl]["share_of_peak"] if impl in rows else nan for impl in CONV_IMPLS}
        stop = {i: "*" if rows.get(i, {}).get("over_budget") else " " for i in CONV_IMPLS}
        lines.append(
            f"{name:<14} {p:>5}  {rate['advjax']:>8.2f} {rate['advjax_other_conv']:>10.2f} {rate['torch_loop']:>10.2f}"
            f"{stop['torch_loop']}{rate['torch_func']:>10.2f}{stop['torch_func']} "
            f"{rate['advjax'] / rate['torch_loop']:>6.2f}x "
            f"{rate['advjax'] / rate['torch_func']:>6.2f}x {rate['advjax_other_conv'] / rate['torch_loop']:>12.2f}x  "
            f"{rows['advjax']['useful_flops_per_seed_step'] / 1e6:>10.1f}  {share['advjax']:>13.1f}% "
            f"{share['torch_loop']:>5.1f}% {share['torch_func']:>5.1f}%")
    lines.append("seed-steps per second (one minibatch update of a seed and the error check on its whole training "
                 f"set); advjax: the sweep's default --conv-impl here ({_conv_default_text()}); FLOPs per seed-step "
                 "as XLA counts the step vmapped (the whole check and the minibatch's forward pass), the work "
                 "each implementation does or saves, % of the matmul peak for each")
    return "\n".join(lines)


def table(results: list[dict], peaks: dict) -> str:
    lines = [f"{'workload':<11} {'width':>5}  {'advjax':>10} {'torch loop':>10} {'torch.func':>10} "
             f"{'jax/seed':>10}  {'vs loop':>8} {'vs func':>8}  {'GFLOP/s':>8} {'% peak':>7} {'compile s':>9}"]
    keyed = {(r["workload"], r["width"], r["impl"]): r for r in results}
    for (name, p) in dict.fromkeys((r["workload"], r["width"]) for r in results if r["workload"] in WORKLOADS):
        rate = {impl: keyed[(name, p, impl)]["seed_steps_per_s"] if (name, p, impl) in keyed else float("nan")
                for impl in MLP_IMPLS}  # nan: an implementation --only left out
        a = keyed[(name, p, "advjax")]
        stop = {i: "*" if keyed.get((name, p, i), {}).get("over_budget") else " " for i in MLP_IMPLS}
        lines.append(
            f"{name:<11} {p:>5}  " + "".join(f"{rate[i]:>10,.0f}{stop[i]}" for i in MLP_IMPLS)
            + f"  {rate['advjax'] / rate['torch_loop']:>7.0f}x {rate['advjax'] / rate['torch_func']:>7.1f}x"
            + f"  {a['useful_flops_per_s'] / 1e9:>8.1f} {100 * a['useful_flops_per_s'] / peaks['peak_flops']:>6.1f}%"
            + f" {a['compile_seconds']:>9.2f}")
    lines.append("seed-steps per second; vs loop / vs func: advjax's ratio to (b) and (c) in this run")
    lines.append(f"machine: peak float32 matmul {peaks['peak_flops'] / 1e9:.0f} GFLOP/s "
                 f"(jax {peaks['jax_matmul_flops'] / 1e9:.0f}, numpy {peaks['numpy_matmul_flops'] / 1e9:.0f}), "
                 f"copy {peaks['copy_bytes_per_s'] / 1e9:.1f} GB/s (DRAM), "
                 f"{peaks['cache_copy_bytes_per_s'] / 1e9:.1f} GB/s (in cache)")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="advjax.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer steps and widths, small conv nets, a 3-point grid at one width, peer rows "
                         "stopped at 15 s: 1.5 to 2 minutes on 2 CPU cores")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--widths", default=None, help="MLP widths (default 10,100,1000; --quick: 10,1000)")
    ap.add_argument("--only", default=",".join(IMPLS), help="implementations to run (advjax always runs)")
    ap.add_argument("--no-grid", dest="grid", action="store_false",
                    help="skip the grid rows (one run of a 12-point step-size grid against 12 runs)")
    ap.add_argument("--no-conv", dest="conv", action="store_false",
                    help="skip the conv-net rows (the CNN on MNIST, ResNet-18 at width 16; issue 14)")
    ap.add_argument("--conv-layouts", action="store_true",
                    help="also time advjax's seed layouts on conv nets (vmap, groups, sequential, im2col; minutes)")
    return ap


class _UsageError(Exception):
    """A command line the bench cannot run: its message follows "advjax.bench: error: "."""


def _widths_and_impls(args: argparse.Namespace) -> tuple[list[int], set[str]]:
    """The MLP widths and the implementations to run, checked (and torch's threads set
    when a torch row runs); or _UsageError."""
    if args.widths is None:
        args.widths = "10,1000" if args.quick else "10,100,1000"
    try:
        widths = [int(w) for w in args.widths.split(",")]
        assert widths and all(w > 0 for w in widths)
    except (ValueError, AssertionError):
        raise _UsageError(f"--widths: {args.widths!r} is not a list of positive integers") from None
    only = set(args.only.split(",")) | {"advjax"}
    if not only <= set(IMPLS):
        raise _UsageError(f"--only: choose from {', '.join(IMPLS)}")
    if ({"torch_loop", "torch_func"} & only):
        try:
            import torch
        except ImportError:
            raise _UsageError("torch is missing: pip install '.[bench]' (or --only advjax,jax_per_seed)") from None
        torch.set_num_threads(cpu_cores())
    return widths, only


def _run_rows(args: argparse.Namespace, widths: list[int], only: set[str]) -> tuple[dict, dict]:
    """Every row the options ask for, section by section: the report (what --json
    writes) and the machine's peaks."""
    t_start = time.perf_counter()
    sections: dict[str, float] = {}
    clock = [t_start]

    def section(name: str) -> None:
        now = time.perf_counter()
        sections[name] = round(now - clock[0], 1)
        clock[0] = now

    peaks = machine_peaks(args.quick)
    section("machine peaks")
    results = [run_job(job, peaks) for job in plan(args.quick, widths) if job["impl"] in only]
    section("MLP rows")
    if args.conv:
        results += [run_job(job, peaks) for job in conv_plan(args.quick) if job["impl"] in only]
        section("conv rows")
    grids = []
    if args.grid:
        grid_widths = [w for w in widths if w <= 100]
        for p in grid_widths[:1] if args.quick else grid_widths:
            grids.append(grid_row(p, args.quick))
            print(f"  grid   p={p:<5} one run {grids[-1]['one_run_seconds']:.1f} s, {grids[-1]['points']} runs "
                  f"{grids[-1]['separate_runs_seconds']:.1f} s", file=sys.stderr, flush=True)
        section("grid rows")
    checks = []
    if "torch_loop" in only:
        checks = [agreement("2d", 100, 2000), agreement("mnist", 100, 1000)]
        if args.conv:
            checks.append(agreement("cnn-mnist", 4 if args.quick else 16, 10))
        section("same-numbers checks")
    layouts = [layout_row(*row) for row in layout_plan(args.quick)] if args.conv_layouts else []
    if layouts:
        section("conv layouts")
    report = {
        "machine": {"name": machine_name(), "platform": platform.platform(), "processor": platform.processor(),
                    "cores": cpu_cores(),
                    "jax_devices": [str(d) for d in jax.devices()], **peaks},
        "versions": {"jax": jax.__version__, "numpy": np.__version__,
                     "torch": __import__("torch").__version__ if "torch" in sys.modules else None},
        "quick": args.quick,
        "results": results,
        "grid": grids,
        "agreement": checks,
        "conv_layouts": layouts,
        "seconds": time.perf_counter() - t_start,
        "section_seconds": sections,
        "row_budget_seconds": _row_budget[0],
    }
    return report, peaks


def _print_tables(report: dict, peaks: dict) -> None:
    """The report's tables and checks, as the bench prints them."""
    results, layouts, grids = report["results"], report["conv_layouts"], report["grid"]
    print(f"machine: {machine_name()}")
    if any(r["workload"] in WORKLOADS for r in results):
        print(table(results, peaks))
    if any(r["workload"] in CONV_WORKLOADS for r in results):
        print(conv_table(results))
    print(roofline_table([r for r in results if r["impl"] == "advjax"], peaks))
    if layouts:
        print(layout_table(layouts))
    if grids:
        print(grid_table(grids))
    for c in report["agreement"]:
        print(f"same numbers ({c['workload']}, p={c['width']}): steps to zero error advjax {c['steps_advjax']}, "
              f"torch {c['steps_torch']}; max relative loss difference over the first 30 steps "
              f"{c['max_rel_loss_diff_first_30_steps']:.1e} -> {'agree' if c['agree'] else 'DISAGREE'}")
    if any(r.get("over_budget") for r in results):
        print(f"* stopped at the row budget of {_row_budget[0]:.0f} s: the rate of the steps it made")
    sections = report["section_seconds"]
    print(f"total {report['seconds']:.0f} s (" + ", ".join(f"{k} {v:.0f} s" for k, v in sections.items()) + ")")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        widths, only = _widths_and_impls(args)
    except _UsageError as e:
        print(f"advjax.bench: error: {e}", file=sys.stderr)
        return 2
    use_cpu_devices()
    _row_budget[0] = ROW_BUDGET_SECONDS[args.quick]
    report, peaks = _run_rows(args, widths, only)
    _print_tables(report, peaks)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if all(c["agree"] for c in report["agreement"]) and all(g["same_rows"] for g in report["grid"]) else 1

if __name__ == "__main__":
    sys.exit(main())
