"""The trainer against independent computations: NumPy gradients, a plain step loop,
and each seed run alone."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from advjax.data import circles_points, gaussians_points, spirals_points
from advjax.model import MLP
from advjax.train import (
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
    p = model.init(jax.random.PRNGKey(3))
    for layer, fan_in in (("hidden", 8), ("readout", 50)):
        for leaf in p[layer].values():
            a = np.abs(np.asarray(leaf))
            assert a.max() <= fan_in**-0.5 and a.max() > 0.8 * fan_in**-0.5


def test_batch_indices_cover_each_epoch_once():
    key = jax.random.PRNGKey(0)
    n, bs = 10, 4  # batches of 4, 4, 2 (the last one smaller)
    for epoch in range(3):
        seen = []
        for j in range(3):
            idx, w = batch_indices(key, jnp.int32(epoch * 3 + j), n, bs)
            seen += [int(i) for i, m in zip(idx, w) if m]
            assert float(w.sum()) == (2 if j == 2 else 4)
        assert sorted(seen) == list(range(n))


def _data(n_seeds, n=40, maker=gaussians_points):
    keys = jax.random.split(jax.random.PRNGKey(7), n_seeds)
    xs, ys = jax.vmap(lambda k: maker(k, n))(keys)
    return xs, ys


def _reference_run(model, params, x, y, lr, n_steps, batch_size=None, batch_key=None):
    """A plain Python loop of optax SGD steps on one seed: the parameters after
    0, 1, ..., n_steps updates (no while_loop, no vmap, no done masks)."""
    opt = optax.sgd(lr)
    state = opt.init(params)
    loss = jax_loss(model, "mean")

    @jax.jit
    def step(params, state, k):
        if batch_size is None:
            g = jax.grad(loss)(params, x, y)
        else:
            idx, w = batch_indices(batch_key, k, len(x), batch_size)
            g = jax.grad(lambda p: reduce_loss(per_example_loss(model.apply(p, x[idx]), y[idx]), w, "mean"))(params)
        upd, state = opt.update(g, state, params)
        return optax.apply_updates(params, upd), state

    out = [params]
    for k in range(n_steps):
        params, state = step(params, state, jnp.int32(k))
        out.append(params)
    return out


def _errors(model, params, x, y):
    return int(jnp.sum(predictions(model.apply(params, x)) != y))


@pytest.mark.parametrize("batch_size", [None, 16])
def test_step_counts_are_exact_and_match_a_plain_loop(batch_size):
    model = MLP(width=16, n_in=2, n_out=1)
    xs, ys = _data(3, maker=lambda k, n: circles_points(k, n, noise=0.0))
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 3)
    spec = PhaseSpec(model, ALL, batch_size=batch_size, chunk_steps=37)
    out = train(spec, theta0, xs, ys, bkeys, lr=0.05, max_steps=3000)
    assert out.converged.all() and len(set(out.steps.tolist())) > 1  # seeds stop at different steps
    for i in range(3):
        k = int(out.steps[i])
        seed = lambda t, i=i: jax.tree.map(lambda leaf: leaf[i], t)  # noqa: E731
        ref = _reference_run(model, seed(theta0), xs[i], ys[i], 0.05, k, batch_size, bkeys[i])
        assert _errors(model, ref[k], xs[i], ys[i]) == 0
        assert _errors(model, ref[k - 1], xs[i], ys[i]) > 0
        for a, b in zip(jax.tree.leaves(seed(out.params)), jax.tree.leaves(ref[k])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


def test_step_cap_and_finished_seeds_stay_put():
    model = MLP(width=8, n_in=2, n_out=1)
    xs, ys = _data(4, maker=lambda k, n: spirals_points(k, n, t_max=10.0))
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 4))
    spec = PhaseSpec(model, ALL, chunk_steps=10)
    out = train(spec, theta0, xs, ys, jax.random.split(jax.random.PRNGKey(2), 4), lr=0.01, max_steps=25)
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
    model = MLP(width=8, n_in=2, n_out=1)
    xs, ys = _data(3)
    xs = xs.at[1].multiply(1e30)  # seed 1's logits overflow at once
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    out = train(PhaseSpec(model, ALL), theta0, xs, ys, jax.random.split(jax.random.PRNGKey(2), 3),
                lr=0.01, max_steps=5000)
    assert out.diverged.tolist() == [False, True, False]
    assert out.converged.tolist() == [True, False, True]
    assert out.steps[1] <= 1


def test_vmapped_seed_equals_seed_alone():
    model = MLP(width=12, n_in=2, n_out=1)
    xs, ys = _data(4, maker=lambda k, n: circles_points(k, n, noise=0.0))
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 4))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 4)
    spec = PhaseSpec(model, ALL, batch_size=16, chunk_steps=50)
    together = train(spec, theta0, xs, ys, bkeys, lr=0.05, max_steps=2000)
    one = lambda t: jax.tree.map(lambda a: a[2:3], t)  # noqa: E731
    alone = train(spec, one(theta0), xs[2:3], ys[2:3], bkeys[2:3], lr=0.05, max_steps=2000)
    assert alone.steps[0] == together.steps[2] and alone.converged[0] == together.converged[2]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(one(together.params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_frozen_layers_do_not_move():
    model = MLP(width=10, n_in=2, n_out=1)
    xs, ys = _data(2)
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 2))
    out = train(PhaseSpec(model, ("readout",)), theta0, xs, ys, jax.random.split(jax.random.PRNGKey(2), 2),
                lr=0.1, max_steps=200)
    assert (out.steps > 0).all()
    for a, b in zip(jax.tree.leaves(theta0["hidden"]), jax.tree.leaves(out.params["hidden"])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert not np.array_equal(np.asarray(theta0["readout"]["kernel"]), np.asarray(out.params["readout"]["kernel"]))


def _hand_rolled(model, params, x, y, lr, n_steps, optimizer, momentum=0.0, weight_decay=0.0):
    """torch.optim.SGD (momentum, weight_decay) and Adam written out by hand: the
    parameters after n_steps full-batch updates."""
    grad = jax.jit(jax.grad(jax_loss(model, "mean")))
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

    model = MLP(width=8, n_in=2, n_out=1)
    xs, ys = _data(2, n=30, maker=spirals_points)
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(3), 2))
    spec = PhaseSpec(model, ALL, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay)
    out = train(spec, theta0, xs, ys, jax.random.split(jax.random.PRNGKey(4), 2), lr=0.01, max_steps=20)
    assert (out.steps == 20).all() and not out.converged.any()  # spirals are not fitted in 20 steps
    for i in range(2):
        seed = lambda t, i=i: jax.tree.map(lambda leaf: leaf[i], t)  # noqa: E731
        ref = _hand_rolled(model, seed(theta0), xs[i], ys[i], 0.01, 20, optimizer, momentum, weight_decay)
        for a, b in zip(jax.tree.leaves(seed(out.params)), jax.tree.leaves(ref)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("optimizer,momentum,weight_decay,per_seed", [
    ("sgd", 0.0, 0.0, ()), ("sgd", 0.9, 0.0, ()), ("sgd", 0.0, 0.01, ()), ("adam", 0.0, 0.0, ()),
    ("sgd", 0.0, 0.0, ("momentum", "weight_decay"))])
def test_initial_optimizer_state_is_optax_init(optimizer, momentum, weight_decay, per_seed):
    """The host zeros the trainer starts from equal optax's own init, leaf for leaf."""
    from advjax.train import initial_opt_state, make_hyper, make_optimizer

    model = MLP(width=3, n_in=2, n_out=1)
    params = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    spec = PhaseSpec(model, ALL, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                     per_seed=per_seed)
    hyper = make_hyper(2, 0.1, 10, 5, momentum=[0.0, 0.9], weight_decay=[0.0, 0.1])
    ours = initial_opt_state(spec, hyper, params)
    ref = jax.vmap(lambda h, t: make_optimizer(h.lr, spec, h).init(t))(hyper, params)
    assert jax.tree.structure(ours) == jax.tree.structure(ref)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, np.asarray(b))


def test_check_every_k_stops_at_the_first_check_that_fits():
    """--check-every 4: a seed's steps are the first multiple of 4 at which the plain
    loop's parameters fit (checks in between do not happen), its parameters those."""
    model = MLP(width=16, n_in=2, n_out=1)
    xs, ys = _data(3, maker=lambda k, n: circles_points(k, n, noise=0.0))
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 3)
    spec = PhaseSpec(model, ALL, batch_size=16, chunk_steps=5, check_every=4)
    out = train(spec, theta0, xs, ys, bkeys, lr=0.05, max_steps=3000)
    assert out.converged.all()
    for i in range(3):
        k = int(out.steps[i])
        seed = lambda t, i=i: jax.tree.map(lambda leaf: leaf[i], t)  # noqa: E731
        ref = _reference_run(model, seed(theta0), xs[i], ys[i], 0.05, k, 16, bkeys[i])
        assert k % 4 == 0 and _errors(model, ref[k], xs[i], ys[i]) == 0
        assert all(_errors(model, ref[m], xs[i], ys[i]) > 0 for m in range(0, k, 4))
        for a, b in zip(jax.tree.leaves(seed(out.params)), jax.tree.leaves(ref[k])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    # a cap that is not a multiple of K is still exact
    capped = train(spec, theta0, xs, ys, bkeys, lr=0.05, max_steps=10)
    assert (capped.steps == 10).all() and not capped.converged.any()


def test_a_fixed_budget_trains_exactly_each_cap_without_checking():
    """--stop-rule budget: every seed takes exactly its own cap of updates, even seeds
    that fit the data long before (they would stop there under the target rule), its
    parameters the plain loop's after that many updates; converged says it got there
    finite, and a seed whose loss blows up still stops as diverged."""
    model = MLP(width=16, n_in=2, n_out=1)
    xs, ys = _data(3, maker=lambda k, n: circles_points(k, n, noise=0.0))
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 3)
    caps = np.array([40, 7, 400], np.int32)
    target = train(PhaseSpec(model, ALL, batch_size=16, chunk_steps=5), theta0, xs, ys, bkeys, lr=0.05,
                   max_steps=400)
    assert target.converged[2] and target.steps[2] < caps[2]  # the target rule stops seed 2 early
    for k in (1, 3):
        spec = PhaseSpec(model, ALL, batch_size=16, chunk_steps=5, check_every=k, budget=True)
        out = train(spec, theta0, xs, ys, bkeys, lr=0.05, max_steps=caps)
        assert out.steps.tolist() == caps.tolist() and out.converged.all() and not out.diverged.any()
        for i in range(3):
            seed = lambda t, i=i: jax.tree.map(lambda leaf: leaf[i], t)  # noqa: E731
            ref = _reference_run(model, seed(theta0), xs[i], ys[i], 0.05, int(caps[i]), 16, bkeys[i])
            for a, b in zip(jax.tree.leaves(seed(out.params)), jax.tree.leaves(ref[int(caps[i])])):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-5)
    blown = train(PhaseSpec(model, ALL, batch_size=16, chunk_steps=5, budget=True), theta0, xs, ys, bkeys,
                  lr=1e30, max_steps=50)
    assert blown.diverged.all() and not blown.converged.any() and (blown.steps < 50).all()


def test_checks_on_a_large_set_run_in_batches_with_the_same_logits():
    from advjax.train import apply_in_batches

    model = MLP(width=5, n_in=3, n_out=4)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (1000, 3))
    whole = model.apply(params, x)
    assert np.allclose(apply_in_batches(model, params, x, None, batch=128), whole, rtol=1e-6, atol=1e-6)
    assert apply_in_batches(model, params, x, None, batch=128).shape == whole.shape


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
    for count in range(20):
        updates, state = opt.update({"w": jnp.ones(())}, state, params)
        assert np.isclose(float(-updates["w"]), float(reference(count)), rtol=1e-6), count
    assert np.isclose(float(reference(5)), 0.5) and np.isclose(float(reference(6)), 0.05)
