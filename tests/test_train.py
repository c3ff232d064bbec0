"""The trainer against independent computations: NumPy gradients, a plain step loop,
and each seed run alone.

Unit tests of the trainer (train called directly, no sweep): they form the fast tier.
Most of their time is XLA compilation, so the tests share programs: one network and seed
count (width 8, 4 seeds of 40 points, chunks of 10 steps) for every trainer test, so that
the full-batch program serves the step counts, the step cap and divergence; the
minibatch circles run serves the step-count, vmap and budget tests; one plain-loop step
(`_plain_step`) compiles once for all references; points and starting parameters come
from NumPy (no compiled draw or init); and the small helpers are jitted (one program
each, not one per eager op)."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advjax.model import MLP
from advjax.train import (
    Numbers,
    PhaseSpec,
    _run_chunk,
    batch_indices,
    per_example_loss,
    predictions,
    reduce_loss,
    train,
)

ALL = ("hidden", "readout")


def np_loss_and_grad(params, x, y, n_out, reduction):
    """Independent float64 forward and backward pass of N_p in plain NumPy."""
    W1, b1 = (np.asarray(params["hidden"][k], np.float64) for k in ("kernel", "bias"))
    W2, b2 = (np.asarray(params["readout"][k], np.float64) for k in ("kernel", "bias"))
    x = np.asarray(x, np.float64)
    pre = x @ W1 + b1
    h = np.maximum(pre, 0)
    z = h @ W2 + b2
    n = len(x)
    if n_out == 1:
        s = z[:, 0]
        losses = np.logaddexp(0, s) - y * s  # -y log σ(s) - (1-y) log(1-σ(s))
        dz = (1 / (1 + np.exp(-s)) - y)[:, None]
    else:
        zmax = z.max(1, keepdims=True)
        logp = z - zmax - np.log(np.exp(z - zmax).sum(1, keepdims=True))
        losses = -logp[np.arange(n), y]
        dz = np.exp(logp)
        dz[np.arange(n), y] -= 1
    scale = 1 / n if reduction == "mean" else 1.0
    loss = losses.sum() * scale
    dz = dz * scale
    dW2, db2 = h.T @ dz, dz.sum(0)
    dpre = (dz @ W2.T) * (pre > 0)
    dW1, db1 = x.T @ dpre, dpre.sum(0)
    return loss, {"hidden": {"kernel": dW1, "bias": db1}, "readout": {"kernel": dW2, "bias": db2}}


def jax_loss(model, reduction):
    def f(params, x, y):
        return reduce_loss(per_example_loss(model.apply(params, x), y), None, reduction)

    return f


@pytest.mark.parametrize("n_out,reduction", [(1, "mean"), (1, "sum"), (4, "mean"), (4, "sum")])
def test_gradient_matches_numpy_and_finite_differences(n_out, reduction):
    model = MLP(width=7, n_in=3, n_out=n_out)
    params = model.init(jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 3)).astype(np.float32)
    y = rng.integers(0, max(n_out, 2), 20)
    loss, grads = jax.value_and_grad(jax_loss(model, reduction))(params, x, y)
    np_l, np_g = np_loss_and_grad(params, x, y, n_out, reduction)
    assert abs(float(loss) - np_l) < 1e-5 * max(1, abs(np_l))
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(np_g)):
        np.testing.assert_allclose(np.asarray(a), b, rtol=1e-4, atol=1e-6)
    # and the NumPy gradient itself against central finite differences (float64)
    p64 = jax.tree.map(lambda a: np.array(a, np.float64), params)
    leaves, treedef = jax.tree.flatten(p64)
    g_leaves = jax.tree.leaves(np_g)
    for _ in range(12):
        li = rng.integers(len(leaves))
        j = tuple(rng.integers(s) for s in leaves[li].shape)
        shifted = []
        for eps in (1e-6, -1e-6):
            moved = [a.copy() for a in leaves]
            moved[li][j] += eps
            shifted.append(np_loss_and_grad(jax.tree.unflatten(treedef, moved), x, y, n_out, reduction)[0])
        fd = (shifted[0] - shifted[1]) / 2e-6
        assert abs(fd - g_leaves[li][j]) < 1e-6 * max(1, abs(fd))


def test_torch_default_init_bounds():
    model = MLP(width=50, n_in=8, n_out=1)
    p = jax.jit(model.init)(jax.random.PRNGKey(3))
    for layer, fan_in in (("hidden", 8), ("readout", 50)):
        for leaf in p[layer].values():
            a = np.abs(np.asarray(leaf))
            assert a.max() <= fan_in**-0.5 and a.max() > 0.8 * fan_in**-0.5


def test_batch_indices_cover_each_epoch_once():
    key = jax.random.PRNGKey(0)
    n, bs = 10, 4  # batches of 4, 4, 2 (the last one smaller)
    indices = jax.jit(batch_indices, static_argnums=(2, 3))
    for epoch in range(3):
        seen = []
        for j in range(3):
            idx, w = indices(key, jnp.int32(epoch * 3 + j), n, bs)
            seen += [int(i) for i, m in zip(idx, w) if m]
            assert float(w.sum()) == (2 if j == 2 else 4)
        assert sorted(seen) == list(range(n))


def _np_points(kind, rng, n):
    """The datasets' formulas (advjax.data, tested in test_data.py) in NumPy: the trainer
    tests need points, not another compiled program per draw."""
    y = rng.integers(0, 2, n)
    if kind == "gaussians":  # x ~ N((2y-1)·(2.5, 2.5), I)
        x = (2 * y - 1)[:, None] * 2.5 + rng.normal(size=(n, 2))
    elif kind == "circles":  # noise 0: inner disc of radius 5, outer ring 5..15 (separable)
        r, angle = rng.uniform(0, 10, n) + 5.0 * (2 * y - 1), rng.uniform(0, 2 * np.pi, n)
        x = np.stack([r * np.cos(angle), r * np.sin(angle)], 1)
    else:  # spirals, t_max 10, jitter 0.9
        t = rng.uniform(0, 10, n)
        x = (y + 1)[:, None] * t[:, None] * np.stack([np.cos(t), np.sin(t)], 1)
        x = x + rng.uniform(-1, 1, (n, 2)) * 0.9 * t[:, None]
    return x.astype(np.float32), y.astype(np.int32)


@functools.cache
def _data(n_seeds, n=40, kind="gaussians"):
    """Each seed's own points (seed-batched)."""
    rng = np.random.default_rng(7)
    xs, ys = zip(*(_np_points(kind, rng, n) for _ in range(n_seeds)))
    return jnp.asarray(np.stack(xs)), jnp.asarray(np.stack(ys))


@functools.cache
def _seeds_init(model, n_seeds, key=1):
    """Each seed's initial parameters: uniform in ±1/sqrt(fan_in), as torch's default init
    (test_torch_default_init_bounds checks the model's own), drawn by NumPy."""
    rng = np.random.default_rng(key)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    return {layer: {k: jnp.asarray(rng.uniform(-1, 1, (n_seeds, *s.shape)) / np.sqrt(leaves["kernel"].shape[0]),
                                   jnp.float32) for k, s in leaves.items()} for layer, leaves in shapes.items()}


def seed_of(tree, i):
    return jax.tree.map(lambda leaf: leaf[i], tree)


@functools.partial(jax.jit, static_argnames=("model", "batch_size"))
def _plain_step(params, state, k, x, y, key, lr, *, model, batch_size):
    """One optax SGD step of one seed (full batch, or the minibatch `batch_indices` gives
    update k): a program of its own, compiled once per model and batch size."""
    opt = optax.sgd(lr)
    if batch_size is None:
        g = jax.grad(jax_loss(model, "mean"))(params, x, y)
    else:
        idx, w = batch_indices(key, k, x.shape[0], batch_size)
        g = jax.grad(lambda p: reduce_loss(per_example_loss(model.apply(p, x[idx]), y[idx]), w, "mean"))(params)
    upd, state = opt.update(g, state, params)
    return optax.apply_updates(params, upd), state


def _reference_run(model, params, x, y, lr, n_steps, batch_size=None, batch_key=None):
    """A plain Python loop of optax SGD steps on one seed: the parameters after
    0, 1, ..., n_steps updates (no while_loop, no vmap, no done masks)."""
    state = optax.sgd(lr).init(params)
    key = jax.random.PRNGKey(0) if batch_key is None else batch_key
    out = [params]
    for k in range(n_steps):
        params, state = _plain_step(params, state, jnp.int32(k), x, y, key, jnp.float32(lr), model=model,
                                    batch_size=batch_size)
        out.append(params)
    return out


@functools.partial(jax.jit, static_argnums=0)
def _errors_of(model, params, x, y):
    return jnp.sum(predictions(model.apply(params, x)) != y)


def _errors(model, params, x, y):
    return int(_errors_of(model, params, x, y))


# One network and seed count for every trainer test: width 8, 4 seeds of 40 points, chunks
# of at most 10 steps, so that tests share their compiled programs (the full-batch one
# serves the step counts, the step cap and divergence).
SMALL_MODEL = MLP(width=8, n_in=2, n_out=1)
SMALL_SPEC = PhaseSpec(SMALL_MODEL, ALL, chunk_steps=10)
N_SEEDS = 4


def _circles():
    """The separable problem: circles without noise, which every seed fits."""
    xs, ys = _data(N_SEEDS, kind="circles")
    return SMALL_MODEL, xs, ys, _seeds_init(SMALL_MODEL, N_SEEDS), jax.random.split(jax.random.PRNGKey(2), N_SEEDS)


def _circles_spec(batch_size):
    return PhaseSpec(SMALL_MODEL, ALL, batch_size=batch_size, chunk_steps=10)


@functools.cache
def _circles_trained(batch_size):
    """All seeds of the circles problem trained to zero error (lr 0.05, cap 3000)."""
    model, xs, ys, theta0, bkeys = _circles()
    return train(_circles_spec(batch_size), theta0, xs, ys, bkeys, Numbers(0.05, 3000))


@pytest.mark.parametrize("batch_size", [None, 16])
def test_step_counts_are_exact_and_match_a_plain_loop(batch_size):
    """Each of 4 seeds stops at exactly the first step whose parameters fit (its
    parameters the plain loop's then), full batch and minibatch; the runs are shared
    with the vmap and budget tests."""
    _assert_stops_as_a_plain_loop(_circles_trained(batch_size), batch_size)


def test_seeds_alone_on_split_checks_stop_exactly_where_a_plain_loop_does():
    """Groups of one seed on batches of 8 of 40 points, over several epochs: each check
    takes the minibatch's logits from the gradient's forward pass and evaluates the
    other 32 points (`check_shares_minibatch`); every seed still stops at exactly the
    plain loop's first fitting step, with its parameters."""
    from advjax.train import check_shares_minibatch, seed_groups

    model, xs, ys, theta0, bkeys = _circles()
    spec = dataclasses.replace(_circles_spec(8), group_elements=1)
    assert seed_groups(spec, 40, N_SEEDS)[1] == 1 and check_shares_minibatch(spec, 40)
    out = train(spec, theta0, xs, ys, bkeys, Numbers(0.05, 3000))
    assert out.steps.min() > 5  # past the first epoch
    _assert_stops_as_a_plain_loop(out, 8)


def _assert_stops_as_a_plain_loop(out, batch_size):
    model, xs, ys, theta0, bkeys = _circles()
    assert out.converged.all() and len(set(out.steps.tolist())) > 1  # seeds stop at different steps
    for i in range(N_SEEDS):
        k = int(out.steps[i])
        ref = _reference_run(model, seed_of(theta0, i), xs[i], ys[i], 0.05, k, batch_size, bkeys[i])
        assert _errors(model, ref[k], xs[i], ys[i]) == 0
        assert _errors(model, ref[k - 1], xs[i], ys[i]) > 0
        for a, b in zip(jax.tree.leaves(seed_of(out.params, i)), jax.tree.leaves(ref[k])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_step_cap_and_finished_seeds_stay_put():
    """(The full-batch program of the step-count test: same network, seeds and shapes.)"""
    model, spec = SMALL_MODEL, SMALL_SPEC
    xs, ys = _data(N_SEEDS, kind="spirals")
    theta0 = _seeds_init(model, N_SEEDS)
    out = train(spec, theta0, xs, ys, jax.random.split(jax.random.PRNGKey(2), 4), Numbers(0.01, 25))
    assert (out.steps == 25).all() and not out.converged.any() and not out.diverged.any()
    # A done state run through more chunks is bit-for-bit unchanged.
    from advjax.train import host_init_state, make_hyper

    trainable = dict(theta0)
    state = host_init_state(trainable, jax.random.split(jax.random.PRNGKey(2), 4), 0.01)
    state = state._replace(params=out.params, step=jnp.asarray(out.steps), done=jnp.ones(4, bool))
    again = _run_chunk(spec, state, {}, xs, ys, make_hyper(4, 0.01, 1000, xs.shape[1]))
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again)):
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_diverging_seed_stops_and_others_go_on():
    """One of 4 seeds blows up and stops at once; the other 3 train on to zero error (in
    the step-count test's full-batch program)."""
    xs, ys = _data(N_SEEDS)
    xs = xs.at[1].multiply(1e30)  # seed 1's logits overflow at once
    theta0 = _seeds_init(SMALL_MODEL, N_SEEDS)
    out = train(SMALL_SPEC, theta0, xs, ys, jax.random.split(jax.random.PRNGKey(2), 4), Numbers(0.01, 5000))
    assert out.diverged.tolist() == [False, True, False, False]
    assert out.converged.tolist() == [True, False, True, True]
    assert out.steps[1] <= 1


def test_vmapped_seed_equals_seed_alone():
    """Seed 2 of the 4-seed minibatch circles run (the step-count test's run, reused)
    against the same seed trained alone: same steps, same parameters."""
    model, xs, ys, theta0, bkeys = _circles()
    spec = _circles_spec(16)
    together = _circles_trained(16)
    one = lambda t: jax.tree.map(lambda a: a[2:3], t)  # noqa: E731
    alone = train(spec, one(theta0), xs[2:3], ys[2:3], bkeys[2:3], Numbers(0.05, 3000))
    assert alone.steps[0] == together.steps[2] and alone.converged[0] == together.converged[2]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(one(together.params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch_size", [16, 8])
def test_a_seed_alone_skips_the_gradient_of_the_check_that_stops_it_and_ends_as_vmapped(batch_size):
    """A one-seed group branches (lax.cond) around the update once its own check stops
    it, so the final check costs no gradient; its state after such a check, and after a
    check that lets it go on, equals the vmapped step's, field for field. With batches
    that divide n (8 of 40) the alone step's check also takes the minibatch's logits from
    the gradient's forward pass and evaluates the other 32 points only."""
    from advjax.train import _step, check_shares_minibatch, host_init_state, make_hyper

    _, xs, ys, theta0, bkeys = _circles()
    spec, trained = _circles_spec(batch_size), _circles_trained(batch_size)
    assert check_shares_minibatch(spec, ys.shape[1]) == (batch_size == 8)
    hyper = make_hyper(N_SEEDS, 0.05, 3000, ys.shape[1])
    first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731

    def both(params):
        s = host_init_state(params, bkeys, hyper, spec)._replace(step=np.full(N_SEEDS, 3, np.int32))
        one = lambda st, xx, yy, h, alone: _step(spec, h, {}, xx, yy, st, True, alone)  # noqa: E731
        vmapped = jax.jit(jax.vmap(lambda st, xx, yy, h: one(st, xx, yy, h, False)))(s, xs, ys, hyper)
        alone = jax.jit(lambda st, xx, yy, h: one(st, xx, yy, h, True))(first(s), xs[0], ys[0], first(hyper))
        return first(vmapped), alone

    for params, stops in ((theta0, False), (trained.params, True)):  # a live seed; a seed that fits
        vmapped, alone = both(params)
        assert bool(alone.done) == stops and int(alone.step) == 3 + (not stops)
        for a, b in zip(jax.tree.leaves(vmapped), jax.tree.leaves(alone)):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    s = first(host_init_state(theta0, bkeys, hyper, spec))
    program = jax.make_jaxpr(lambda st: _step(spec, first(hyper), {}, xs[0], ys[0], st, True, True))(s).jaxpr
    top = [e.primitive.name for e in program.eqns]
    branches = [str(b) for e in program.eqns if e.primitive.name == "cond" for b in e.params["branches"]]
    assert "transpose" not in top and any("transpose" in b for b in branches)  # the gradient: in a branch only


def test_frozen_layers_do_not_move():
    """(On the step-cap test's spirals and start: only the program of its own layers is new.)"""
    model = SMALL_MODEL
    xs, ys = _data(N_SEEDS, kind="spirals")  # not fitted at the start: every seed takes steps
    theta0 = _seeds_init(model, N_SEEDS)
    out = train(PhaseSpec(model, ("readout",), chunk_steps=10), theta0, xs, ys,
                jax.random.split(jax.random.PRNGKey(2), N_SEEDS), Numbers(0.1, 200))
    assert (out.steps > 0).all()
    for a, b in zip(jax.tree.leaves(theta0["hidden"]), jax.tree.leaves(out.params["hidden"])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert not np.array_equal(np.asarray(theta0["readout"]["kernel"]), np.asarray(out.params["readout"]["kernel"]))


@functools.partial(jax.jit, static_argnums=0)
def _mean_loss_grad(model, params, x, y):
    return jax.grad(jax_loss(model, "mean"))(params, x, y)


def _hand_rolled(model, params, x, y, lr, n_steps, optimizer, momentum=0.0, weight_decay=0.0):
    """torch.optim.SGD (momentum, weight_decay) and Adam written out by hand: the
    parameters after n_steps full-batch updates."""
    grad = functools.partial(_mean_loss_grad, model)
    theta, _ = jax.flatten_util.ravel_pytree(params)
    unravel = jax.flatten_util.ravel_pytree(params)[1]
    theta = np.asarray(theta, np.float64)
    buf, m, v = np.zeros_like(theta), np.zeros_like(theta), np.zeros_like(theta)
    for t in range(1, n_steps + 1):
        g = np.asarray(jax.flatten_util.ravel_pytree(grad(unravel(theta.astype(np.float32)), x, y))[0], np.float64)
        g = g + weight_decay * theta
        if optimizer == "adam":
            m = 0.9 * m + 0.1 * g
            v = 0.999 * v + 0.001 * g * g
            theta = theta - lr * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        else:
            buf = momentum * buf + g if t > 1 else g
            theta = theta - lr * (buf if momentum else g)
    return unravel(theta.astype(np.float32))


@pytest.mark.parametrize("optimizer,momentum,weight_decay", [("sgd", 0.9, 0.0), ("sgd", 0.0, 0.01),
                                                             ("sgd", 0.5, 0.1), ("adam", 0.0, 0.0)])
def test_momentum_weight_decay_and_adam_match_the_textbook_updates(optimizer, momentum, weight_decay):
    import jax.flatten_util  # noqa: F401

    model = SMALL_MODEL
    xs, ys = _data(N_SEEDS, kind="spirals")  # the step-cap test's data and start: no new init or draw
    theta0 = _seeds_init(model, N_SEEDS)
    spec = PhaseSpec(model, ALL, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay)
    out = train(spec, theta0, xs, ys, jax.random.split(jax.random.PRNGKey(4), N_SEEDS), Numbers(0.01, 20))
    assert (out.steps == 20).all() and not out.converged.any()  # spirals are not fitted in 20 steps
    for i in range(N_SEEDS):
        ref = _hand_rolled(model, seed_of(theta0, i), xs[i], ys[i], 0.01, 20, optimizer, momentum, weight_decay)
        for a, b in zip(jax.tree.leaves(seed_of(out.params, i)), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer,momentum,weight_decay,per_seed", [
    ("sgd", 0.0, 0.0, ()), ("sgd", 0.9, 0.0, ()), ("sgd", 0.0, 0.01, ()), ("adam", 0.0, 0.0, ()),
    ("sgd", 0.0, 0.0, ("momentum", "weight_decay"))])
def test_initial_optimizer_state_is_optax_init(optimizer, momentum, weight_decay, per_seed):
    """The host zeros the trainer starts from equal optax's own init, leaf for leaf."""
    from advjax.train import initial_opt_state, make_hyper, make_optimizer

    model = SMALL_MODEL
    params = _seeds_init(model, N_SEEDS)  # the trainer tests' start: nothing new to compile
    spec = PhaseSpec(model, ALL, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                     per_seed=per_seed)
    hyper = make_hyper(N_SEEDS, 0.1, 10, 5, momentum=[0.0, 0.9, 0.5, 0.0], weight_decay=[0.0, 0.1, 0.0, 0.2])
    ours = initial_opt_state(spec, hyper, params)
    ref = jax.vmap(lambda h, t: make_optimizer(h.lr, spec, h).init(t))(hyper, params)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, np.asarray(b))


def test_check_every_k_stops_at_the_first_check_that_fits():
    """--check-every 4: a seed's steps are the first multiple of 4 at which the plain
    loop's parameters fit (checks in between do not happen), its parameters those."""
    model, xs, ys, theta0, bkeys = _circles()
    spec = PhaseSpec(model, ALL, batch_size=16, chunk_steps=10, check_every=4)
    out = train(spec, theta0, xs, ys, bkeys, Numbers(0.05, 3000))
    assert out.converged.all()
    for i in range(N_SEEDS):
        k = int(out.steps[i])
        ref = _reference_run(model, seed_of(theta0, i), xs[i], ys[i], 0.05, k, 16, bkeys[i])
        assert k % 4 == 0 and _errors(model, ref[k], xs[i], ys[i]) == 0
        assert all(_errors(model, ref[m], xs[i], ys[i]) > 0 for m in range(0, k, 4))
        for a, b in zip(jax.tree.leaves(seed_of(out.params, i)), jax.tree.leaves(ref[k])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # a cap that is not a multiple of K is still exact
    capped = train(spec, theta0, xs, ys, bkeys, Numbers(0.05, 10))
    assert (capped.steps == 10).all() and not capped.converged.any()


def test_a_fixed_budget_trains_exactly_each_cap_without_checking():
    """--stop-rule budget: every seed takes exactly its own cap of updates, even seeds
    that fit the data long before (they would stop there under the target rule), its
    parameters the plain loop's after that many updates; converged says it got there
    finite, and a seed whose loss blows up still stops as diverged. (The target-rule
    run is the step-count test's minibatch run, cap 3000: seed 2 fits before its cap
    of 400 there, so it would have stopped early under a cap of 400 too.)"""
    model, xs, ys, theta0, bkeys = _circles()
    caps = np.array([40, 7, 400, 13], np.int32)
    target = _circles_trained(16)
    assert target.converged[2] and target.steps[2] < caps[2]  # the target rule stops seed 2 early
    for k in (1, 3):
        spec = PhaseSpec(model, ALL, batch_size=16, chunk_steps=10, check_every=k, budget=True)
        out = train(spec, theta0, xs, ys, bkeys, Numbers(0.05, caps))
        assert out.steps.tolist() == caps.tolist() and out.converged.all() and not out.diverged.any()
        for i in range(N_SEEDS):
            ref = _reference_run(model, seed_of(theta0, i), xs[i], ys[i], 0.05, int(caps[i]), 16, bkeys[i])
            for a, b in zip(jax.tree.leaves(seed_of(out.params, i)), jax.tree.leaves(ref[int(caps[i])])):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    blown = train(PhaseSpec(model, ALL, batch_size=16, chunk_steps=10, budget=True), theta0, xs, ys, bkeys,
                  Numbers(1e30, 50))
    assert blown.diverged.all() and not blown.converged.any() and (blown.steps < 50).all()


def test_checks_on_a_large_set_run_in_batches_with_the_same_logits():
    from advjax.train import apply_in_batches

    model = MLP(width=5, n_in=3, n_out=4)
    params = seed_of(_seeds_init(model, 1), 0)  # NumPy numbers: only the two passes compile
    x = np.random.default_rng(1).normal(size=(1000, 3)).astype(np.float32)
    whole = jax.jit(model.apply)(params, x)
    batched = jax.jit(lambda p, xx: apply_in_batches(model, p, xx, None, batch=128))(params, x)
    assert batched.shape == whole.shape
    assert np.allclose(batched, whole, rtol=1e-6, atol=1e-6)
    rows = np.random.default_rng(2).permutation(1000)[:700]  # some rows, in an order of their own
    picked = jax.jit(lambda p, xx, r: apply_in_batches(model, p, xx, None, batch=128, rows=r))(params, x, rows)
    assert picked.shape == (700, 4) and np.allclose(picked, whole[rows], rtol=1e-6, atol=1e-6)


def test_step_schedule_matches_optax_piecewise_constant_at_the_boundaries():
    """--lr-schedule step:2,5:0.1 with 3 steps an epoch: updates 0-5 at lr, 6-14 at 0.1 lr,
    then 0.01 lr, as optax.piecewise_constant_schedule gives at each update's count."""
    from advjax.options import schedule_boundaries
    from advjax.train import make_hyper, make_optimizer

    bounds, factor = schedule_boundaries("step:2,5:0.1", 3)
    assert bounds == (6, 15) and factor == 0.1
    spec = PhaseSpec(MLP(width=2, n_in=2, n_out=1), ALL, lr_boundaries=bounds, lr_factor=factor)
    hyper = jax.tree.map(lambda a: a[0], make_hyper(1, 0.5, 100, 10))
    opt = make_optimizer(hyper.lr, spec, hyper)
    reference = optax.piecewise_constant_schedule(0.5, {6: 0.1, 15: 0.1})
    params, state = {"w": jnp.zeros(())}, None
    state = opt.init(params)
    update = jax.jit(opt.update)
    for count in range(20):
        updates, state = update({"w": jnp.ones(())}, state, params)
        assert np.isclose(float(-updates["w"]), float(reference(count)), rtol=1e-6), count
    assert np.isclose(float(reference(5)), 0.5) and np.isclose(float(reference(6)), 0.05)
