"""Benchmark: advjax against the PyTorch scripts of the field, and against the machine.

    python -m advjax.bench [--quick] [--json FILE]

Training throughput in seed-steps per second (one optimizer update of one seed, with
the training error checked on the whole training set after it), side by side in one
run, at widths 10, 100, 1000, on two workloads:

- 2d: n = 100 points in 2-D, one logit, logistic loss, full-batch GD (step 0.01);
- mnist: n = 128 digits of 784 pixels, 10 logits, cross-entropy, SGD batch 32 (step 0.1);
- mnist-deep3: the same on an MLP of 3 hidden layers (run at width 1000 only).

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
import json
import math
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from .devices import cpu_cores, use_cpu_devices

WORKLOADS = {
    # name: (d, n, n_out, batch_size or None, lr)
    "2d": (2, 100, 1, None, 0.01),
    "mnist": (784, 128, 10, 32, 0.1),
    "mnist-deep3": (784, 128, 10, 32, 0.1),
}
DEPTH = {"mnist-deep3": 3}  # hidden layers of the workload's MLP (default 1: N_p)
WIDE_ONLY = ("mnist-deep3",)  # run at widths >= 1000 only


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

def workload_data(name: str, n_seeds: int, width: int):
    """As a sweep has them: x per seed on 2-D data (each seed draws its own spirals), one
    x shared by all seeds on MNIST (the paper's fixed 128); random labels and θ0 per seed."""
    from .data import make_dataset, random_labels, spirals_points
    from .model import MLP

    d, n, k, _, _ = WORKLOADS[name]
    keys = jax.random.split(jax.random.PRNGKey(1), n_seeds)
    if name == "2d":
        x = np.asarray(jax.vmap(lambda kk: spirals_points(kk, n)[0])(keys))
    else:
        x = np.asarray(make_dataset("mnist").draw(jax.random.PRNGKey(0)).x_train)
    y = np.asarray(jax.vmap(lambda kk: random_labels(kk, n, max(k, 2)))(keys))
    model = MLP(width, d, k, depth=DEPTH.get(name, 1))
    theta0 = jax.tree.map(np.asarray, jax.vmap(model.init)(keys))
    return model, x, y, theta0, np.asarray(jax.random.split(jax.random.PRNGKey(2), n_seeds))


# -- (a) the engine -----------------------------------------------------------------------------------

def run_advjax(name, width, n_seeds, steps):
    from .train import COMPILE_STATS, PhaseSpec, train

    _, n, _, batch, lr = WORKLOADS[name]
    model, x, y, theta0, bkeys = workload_data(name, n_seeds, width)
    spec = PhaseSpec(model, model.layers, batch_size=batch, chunk_steps=max(1, min(steps, 1000)),
                     x_batched=x.ndim == 3)
    before = COMPILE_STATS.seconds
    train(spec, theta0, x, y, bkeys, lr, 1)  # compiles (the cap is a traced argument)
    compile_s = COMPILE_STATS.seconds - before
    t0 = time.perf_counter()
    out = train(spec, theta0, x, y, bkeys, lr, steps)
    dt = time.perf_counter() - t0
    return {"seed_steps": int(out.steps.sum()), "seconds": dt, "compile_seconds": compile_s}


def step_cost(name: str, width: int, n_seeds: int) -> dict:
    """FLOPs and bytes of one seed-step as XLA counts them in the compiled program: the
    trainer's own step (`train._step`: forward, gradient, update, the error check),
    vmapped over n_seeds seeds, divided by n_seeds."""
    from .train import PhaseSpec, _step, host_init_state, make_hyper

    _, n, _, batch, lr = WORKLOADS[name]
    model, x, y, theta0, bkeys = workload_data(name, n_seeds, width)
    spec = PhaseSpec(model, model.layers, batch_size=batch, x_batched=x.ndim == 3)
    hyper = make_hyper(n_seeds, lr, 10**6, n)
    state = host_init_state(theta0, bkeys, hyper, spec)
    step = jax.vmap(lambda s, xx, yy, h: _step(spec, h, {}, xx, yy, s),
                    in_axes=(0, 0 if spec.x_batched else None, 0, 0))
    cost = jax.jit(step).lower(state, x, y, hyper).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {"xla_flops_per_seed_step": float(cost["flops"]) / n_seeds,
            "xla_bytes_per_seed_step": float(cost["bytes accessed"]) / n_seeds}


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


def machine_name() -> str:
    """The CPU model (from /proc/cpuinfo) and any accelerator jax sees."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    dev = jax.devices()[0]
    accel = f", {dev.device_kind} ({dev.platform})" if dev.platform != "cpu" else ""
    return f"{cpu}, {cpu_cores()} cores{accel}"


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

    def one(i, cap):
        params = jax.tree.map(lambda a: jnp.asarray(a[i]), theta0)
        state, yi, key = opt.init(params), jnp.asarray(y[i]), jnp.asarray(bkeys[i])
        xi = xs[i] if xs.ndim == 3 else xs
        for t in range(cap + 1):
            new, new_state, errors = step(params, state, xi, yi, key, t)
            if int(errors) == 0 or t == cap:  # errors are those of `params`, before this update
                return t
            params, state = new, new_state
        return cap

    one(0, 2)  # compile
    t0 = time.perf_counter()
    total = sum(one(i, steps) for i in range(n_seeds))
    return {"seed_steps": total, "seconds": time.perf_counter() - t0}


# -- (b) and (c): PyTorch ---------------------------------------------------------------------------------

def _torch_model(torch, model, params_i):
    """nn.Sequential of the model's layers, ReLU between them, with θ0 copied in
    (torch's Linear stores weights as (out, in))."""
    linears = [torch.nn.Linear(*np.shape(params_i[name]["kernel"])) for name in model.layers]
    with torch.no_grad():
        for layer, name in zip(linears, model.layers):
            layer.weight.copy_(torch.from_numpy(np.array(params_i[name]["kernel"]).T.copy()))
            layer.bias.copy_(torch.from_numpy(np.array(params_i[name]["bias"])))
    parts = [m for linear in linears[:-1] for m in (linear, torch.nn.ReLU())]
    return torch.nn.Sequential(*parts, linears[-1])


def _torch_loss(torch, logits, y):
    if logits.shape[-1] == 1:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits[..., 0], y.float())
    return torch.nn.functional.cross_entropy(logits, y)


def _torch_pred(logits):
    return (logits[..., 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(-1)


def torch_loop_one(torch, model, params_i, x, y, lr, cap, batch, batches=None, losses=None):
    """The published scripts' loop for one seed; returns steps to zero training error.
    `batches(t)` gives the minibatch indices of update t (default: a fresh shuffle per
    epoch, as DataLoader(shuffle=True)); `losses` collects the training loss per step."""
    net = _torch_model(torch, model, params_i)
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    n = len(x)
    perm = None
    for t in range(cap + 1):
        if batch is None:
            out = net(x)
            if losses is not None:
                losses.append(float(_torch_loss(torch, out.detach(), y)))
            if bool((_torch_pred(out) == y).all()) or t == cap:
                return t
            loss = _torch_loss(torch, out, y)
        else:
            with torch.no_grad():
                out = net(x)
                if losses is not None:
                    losses.append(float(_torch_loss(torch, out, y)))
                if bool((_torch_pred(out) == y).all()) or t == cap:
                    return t
            n_b = math.ceil(n / batch)
            if batches is not None:
                idx = batches(t)
            else:
                if t % n_b == 0:
                    perm = torch.randperm(n)
                idx = perm[(t % n_b) * batch:(t % n_b + 1) * batch]
            loss = _torch_loss(torch, net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return cap


def run_torch_loop(name, width, n_seeds, steps):
    import torch

    _, _, _, batch, lr = WORKLOADS[name]
    model, x, y, theta0, _ = workload_data(name, n_seeds, width)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    seed = lambda i: jax.tree.map(lambda a: a[i], theta0)  # noqa: E731
    x_of = lambda i: xt[i] if xt.dim() == 3 else xt  # noqa: E731
    torch_loop_one(torch, model, seed(0), x_of(0), yt[0], lr, 2, batch)  # warm up
    t0 = time.perf_counter()
    total = sum(torch_loop_one(torch, model, seed(i), x_of(i), yt[i], lr, steps, batch) for i in range(n_seeds))
    return {"seed_steps": total, "seconds": time.perf_counter() - t0}


def run_torch_func(name, width, n_seeds, steps):
    import copy

    import torch
    from torch.func import functional_call, grad_and_value, stack_module_state, vmap

    _, n, _, batch, lr = WORKLOADS[name]
    model, x, y, theta0, _ = workload_data(name, n_seeds, width)
    nets = [_torch_model(torch, model, jax.tree.map(lambda a, i=i: a[i], theta0)) for i in range(n_seeds)]
    params, buffers = stack_module_state(nets)
    base = copy.deepcopy(nets[0]).to("meta")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))

    def loss_one(p, b, xb, yb):
        out = functional_call(base, (p, b), (xb,))
        return _torch_loss(torch, out, yb), out

    x_dim = 0 if xt.dim() == 3 else None
    grad_fn = vmap(grad_and_value(loss_one, has_aux=True), in_dims=(0, 0, x_dim if batch is None else 0, 0))
    forward = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), in_dims=(0, 0, x_dim))

    def run(cap):
        p = {k: v.detach().clone() for k, v in params.items()}
        steps_taken = torch.zeros(n_seeds, dtype=torch.long)
        active = torch.ones(n_seeds, dtype=torch.bool)
        n_b = math.ceil(n / batch) if batch else 1
        for t in range(cap + 1):
            if batch is None:
                grads, (_, out) = grad_fn(p, buffers, xt, yt)
            else:
                with torch.no_grad():
                    out = forward(p, buffers, xt)
            active &= ~(_torch_pred(out) == yt).all(-1)
            if t == cap or not bool(active.any()):
                return int(steps_taken.sum())
            if batch is not None:
                if t % n_b == 0:
                    perms = torch.stack([torch.randperm(n) for _ in range(n_seeds)])
                idx = perms[:, (t % n_b) * batch:(t % n_b + 1) * batch]
                xb = xt[idx] if x_dim is None else torch.stack([xt[i, idx[i]] for i in range(n_seeds)])
                grads, _ = grad_fn(p, buffers, xb, torch.gather(yt, 1, idx))
            with torch.no_grad():
                for k in p:
                    mask = active.view(-1, *([1] * (p[k].dim() - 1))).to(p[k].dtype)
                    p[k] -= lr * grads[k] * mask
            steps_taken += active.long()
        return int(steps_taken.sum())

    run(2)
    t0 = time.perf_counter()
    total = run(steps)
    return {"seed_steps": total, "seconds": time.perf_counter() - t0}


# -- same numbers: (a) and (b) agree on a fixed seed -----------------------------------------------------

def agreement(name: str, width: int, steps: int) -> dict:
    """Losses along the way and steps to zero error of (a) and (b) for seed 0, with the
    same θ0 and minibatches, on labels both fit within the cap (2-D: noiseless circles;
    MNIST: the random labels, at the paper's step 0.1)."""
    import torch

    from .data import circles_points
    from .train import PhaseSpec, batch_indices, per_example_loss, train

    d, n, k, batch, lr = WORKLOADS[name]
    model, x, y, theta0, bkeys = workload_data(name, 1, width)
    if name == "2d":
        xc, yc = circles_points(jax.random.PRNGKey(3), n, noise=0.0)
        x, y = np.asarray(xc), np.asarray(yc)[None]
        lr = 0.05
    # (a): the loss trajectory from the engine run step by step (caps 0, 1, 2, ...)
    seed0 = jax.tree.map(lambda a: a[0], theta0)
    ours_losses = []
    spec = PhaseSpec(model, model.layers, batch_size=batch, chunk_steps=steps, x_batched=False)
    out = train(spec, theta0, x, y, bkeys, lr, steps)
    ours_steps = int(out.steps[0])
    for cap in range(min(steps, 30) + 1):
        p = jax.tree.map(lambda a: a[0], train(spec, theta0, x, y, bkeys, lr, cap).params)
        ours_losses.append(float(per_example_loss(model.apply(p, jnp.asarray(x)), jnp.asarray(y[0])).mean()))
    # (b) with the same minibatches
    batches = (lambda t: torch.from_numpy(np.asarray(batch_indices(jnp.asarray(bkeys[0]), jnp.int32(t), n,
                                                                   batch)[0]).astype(np.int64))) if batch else None
    xt, yt = torch.from_numpy(np.array(x, np.float32)), torch.from_numpy(np.array(y[0], np.int64))
    theirs_losses: list[float] = []
    theirs_steps = torch_loop_one(torch, model, seed0, xt, yt, lr, steps, batch, batches, theirs_losses)
    m = min(len(ours_losses), len(theirs_losses))
    rel = max(abs(a - b) / max(abs(b), 1e-8) for a, b in zip(ours_losses[:m], theirs_losses[:m]))
    return {"workload": name, "width": width, "steps_advjax": ours_steps, "steps_torch": theirs_steps,
            "max_rel_loss_diff_first_30_steps": rel, "agree": ours_steps == theirs_steps and rel < 1e-3}


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


def grid_row(width: int, quick: bool) -> dict:
    """A 12-point step-size grid × 10 seeds on spirals (the baseline, full-batch GD):
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
    common = ["--dataset", "spirals", "--widths", str(width), "--seeds", "10", "--experiments", "baseline",
              "--max-steps", str(steps), "--n-test", "1000", "--no-measures", "--no-figure", "--quiet"]
    with tempfile.TemporaryDirectory() as tmp:
        def sweep(args, out, cache):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "advjax.sweep", *common, *args, "--out", os.path.join(tmp, out),
                            "--compile-cache", os.path.join(tmp, cache)], check=True, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t0

        one = sweep(["--lr", ",".join(map(str, GRID_LRS))], "grid", "cache-grid")
        apart = sum(sweep(["--lr", str(lr)], f"lr{i}", "cache-apart") for i, lr in enumerate(GRID_LRS))
        grid = read_results(os.path.join(tmp, "grid", "results.csv"))
        same = all([{k: v for k, v in r.items() if k != "lr"} for r in grid if r["lr"] == lr]
                   == read_results(os.path.join(tmp, f"lr{i}", "results.csv")) for i, lr in enumerate(GRID_LRS))
    return {"workload": "grid-spirals", "width": width, "points": len(GRID_LRS), "seeds": 10, "max_steps": steps,
            "one_run_seconds": one, "separate_runs_seconds": apart, "speedup": apart / one, "same_rows": same}


def roofline_table(rows: list[dict], peaks: dict) -> str:
    lines = [f"{'roofline':<11} {'width':>5}  {'MFLOP/step':>10} {'KB/step':>9}  {'bound µs':>9} {'by':>7}  "
             f"{'advjax µs':>9} {'x bound':>8}"]
    for r in rows:
        lines.append(f"{r['workload']:<11} {r['width']:>5}  {r['xla_flops_per_seed_step'] / 1e6:>10.3f} "
                     f"{r['xla_bytes_per_seed_step'] / 1e3:>9.1f}  {r['bound_seconds'] * 1e6:>9.3f} "
                     f"{r['bound_by']:>7}  {r['measured_seconds'] * 1e6:>9.3f} {r['times_bound']:>7.1f}x")
    lines.append("per seed-step, FLOPs and bytes as XLA's cost analysis counts the compiled step; bound: the FLOPs "
                 f"at {peaks['peak_flops'] / 1e9:.0f} GFLOP/s or the bytes at the in-cache copy bandwidth "
                 f"{peaks['cache_copy_bytes_per_s'] / 1e9:.1f} GB/s, whichever is longer")
    return "\n".join(lines)


def grid_table(rows: list[dict]) -> str:
    lines = [f"{'grid (12 step sizes x 10 seeds, spirals)':<42} {'width':>5}  {'one run s':>9}  {'12 runs s':>9}  "
             f"{'speedup':>7}  {'same rows':>9}"]
    for r in rows:
        lines.append(f"{'':<42} {r['width']:>5}  {r['one_run_seconds']:>9.1f}  {r['separate_runs_seconds']:>9.1f}  "
                     f"{r['speedup']:>6.1f}x  {'yes' if r['same_rows'] else 'NO':>9}")
    return "\n".join(lines)


# -- the run -------------------------------------------------------------------------------------------------

IMPLS = {"advjax": run_advjax, "torch_loop": run_torch_loop, "torch_func": run_torch_func,
         "jax_per_seed": run_jax_per_seed}


def plan(quick: bool, widths) -> list[dict]:
    """(workload, width, impl, seeds, steps): sizes that take about a second each."""
    jobs = []
    for name in WORKLOADS:
        for p in widths:
            big = p >= 1000
            if name in WIDE_ONLY and not big:
                continue
            if name in DEPTH:  # ~3.5x the FLOPs of N_p per seed-step at p = 1000
                cfg = {"advjax": (16, 20), "torch_func": (16, 10), "torch_loop": (2, 40), "jax_per_seed": (2, 40)}
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


def table(results: list[dict], peaks: dict) -> str:
    lines = [f"{'workload':<11} {'width':>5}  {'advjax':>10} {'torch loop':>10} {'torch.func':>10} "
             f"{'jax/seed':>10}  {'vs loop':>8} {'vs func':>8}  {'GFLOP/s':>8} {'% peak':>7} {'compile s':>9}"]
    keyed = {(r["workload"], r["width"], r["impl"]): r for r in results}
    for (name, p) in dict.fromkeys((r["workload"], r["width"]) for r in results):
        rate = {impl: keyed[(name, p, impl)]["seed_steps_per_s"] for impl in IMPLS if (name, p, impl) in keyed}
        a = keyed[(name, p, "advjax")]
        lines.append(
            f"{name:<11} {p:>5}  " + " ".join(f"{rate.get(i, float('nan')):>10,.0f}" for i in IMPLS)
            + f"  {rate['advjax'] / rate['torch_loop']:>7.0f}x {rate['advjax'] / rate['torch_func']:>7.1f}x"
            + f"  {a['useful_flops_per_s'] / 1e9:>8.1f} {100 * a['useful_flops_per_s'] / peaks['peak_flops']:>6.1f}%"
            + f" {a['compile_seconds']:>9.2f}")
    lines.append("seed-steps per second; vs loop / vs func: advjax's ratio to (b) and (c) in this run")
    lines.append(f"machine: peak float32 matmul {peaks['peak_flops'] / 1e9:.0f} GFLOP/s "
                 f"(jax {peaks['jax_matmul_flops'] / 1e9:.0f}, numpy {peaks['numpy_matmul_flops'] / 1e9:.0f}), "
                 f"copy {peaks['copy_bytes_per_s'] / 1e9:.1f} GB/s (DRAM), "
                 f"{peaks['cache_copy_bytes_per_s'] / 1e9:.1f} GB/s (in cache)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="advjax.bench", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps: under 2 minutes on 2 CPU cores")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--widths", default="10,100,1000")
    ap.add_argument("--only", default=",".join(IMPLS), help="implementations to run (advjax always runs)")
    ap.add_argument("--no-grid", dest="grid", action="store_false",
                    help="skip the grid rows (one run of a 12-point step-size grid against 12 runs)")
    args = ap.parse_args(argv)
    try:
        widths = [int(w) for w in args.widths.split(",")]
        assert widths and all(w > 0 for w in widths)
    except (ValueError, AssertionError):
        print(f"advjax.bench: error: --widths: {args.widths!r} is not a list of positive integers", file=sys.stderr)
        return 2
    only = set(args.only.split(",")) | {"advjax"}
    if not only <= set(IMPLS):
        print(f"advjax.bench: error: --only: choose from {', '.join(IMPLS)}", file=sys.stderr)
        return 2
    if ({"torch_loop", "torch_func"} & only):
        try:
            import torch
        except ImportError:
            print("advjax.bench: error: torch is missing: pip install '.[bench]' (or --only advjax,jax_per_seed)",
                  file=sys.stderr)
            return 2
        torch.set_num_threads(cpu_cores())
    use_cpu_devices()
    t_start = time.perf_counter()
    peaks = machine_peaks(args.quick)
    results = []
    for job in plan(args.quick, widths):
        if job["impl"] not in only:
            continue
        r = IMPLS[job["impl"]](job["workload"], job["width"], job["seeds"], job["steps"])
        d, n, k, batch, _ = WORKLOADS[job["workload"]]
        r.update(job)
        r["seed_steps_per_s"] = r["seed_steps"] / r["seconds"]
        r["useful_flops_per_seed_step"] = useful_flops(d, n, job["width"], k, batch, DEPTH.get(job["workload"], 1))
        r["useful_flops_per_s"] = r["seed_steps_per_s"] * r["useful_flops_per_seed_step"]
        if job["impl"] == "advjax":
            r.update(step_cost(job["workload"], job["width"], job["seeds"]))
            r.update(roofline(r, peaks))
        results.append(r)
        print(f"  {job['workload']:<6} p={job['width']:<5} {job['impl']:<13} {r['seed_steps_per_s']:>12,.0f} "
              "seed-steps/s", file=sys.stderr, flush=True)
    grids = []
    if args.grid:
        for p in (w for w in widths if w <= 100):
            grids.append(grid_row(p, args.quick))
            print(f"  grid   p={p:<5} one run {grids[-1]['one_run_seconds']:.1f} s, 12 runs "
                  f"{grids[-1]['separate_runs_seconds']:.1f} s", file=sys.stderr, flush=True)
    checks = []
    if "torch_loop" in only:
        checks = [agreement("2d", 100, 2000), agreement("mnist", 100, 1000)]
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
        "seconds": time.perf_counter() - t_start,
    }
    print(f"machine: {machine_name()}")
    if all(i in only for i in IMPLS):
        print(table(results, peaks))
    print(roofline_table([r for r in results if r["impl"] == "advjax"], peaks))
    if grids:
        print(grid_table(grids))
    for c in checks:
        print(f"same numbers ({c['workload']}, p={c['width']}): steps to zero error advjax {c['steps_advjax']}, "
              f"torch {c['steps_torch']}; max relative loss difference over the first 30 steps "
              f"{c['max_rel_loss_diff_first_30_steps']:.1e} -> {'agree' if c['agree'] else 'DISAGREE'}")
    print(f"total {report['seconds']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0 if all(c["agree"] for c in checks) and all(g["same_rows"] for g in grids) else 1


if __name__ == "__main__":
    sys.exit(main())
