"""advjax.measures against independent computations: dense Hessians, NumPy forward
passes, exact pattern counts, contourpy's marching squares and known geometry."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from advjax.measures import COLUMNS, GRID_COLUMNS, measure, top_hessian_eigenvalue
from advjax.model import MLP
from advjax.train import per_example_loss, reduce_loss

BOX = (-1.0, 1.0, -1.0, 1.0)
HAND_WIDTH = 12  # hand-built networks are padded to one width: one compiled program for all
GRID = 65  # odd: the lines through the box's center run through lattice points (ties at 0)


def quadratic(eigenvalues, seed=0):
    """A = Q diag(eigenvalues) Q^T with a random orthogonal Q."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(len(eigenvalues), len(eigenvalues))))
    return (q * np.asarray(eigenvalues)) @ q.T


@functools.partial(jax.jit, static_argnums=2)
def _top_eig(a, key, iters):
    """top_hessian_eigenvalue of 0.5 x^T A x, parameters split over a two-leaf pytree
    (A an argument: one compiled program per size and iteration count)."""
    n = a.shape[0]
    params = {"u": jnp.ones(3), "w": jnp.ones((n - 3,))}

    def loss(p):
        x = ravel_pytree(p)[0]
        return 0.5 * x @ a @ x

    return top_hessian_eigenvalue(loss, params, key, iters)


def top_eig_of(a, iters):
    return float(_top_eig(jnp.asarray(a, jnp.float32), jax.random.key(3), iters))


@pytest.mark.parametrize("n", [20, 300])
def test_top_eigenvalue_of_psd_quadratic(n):
    # n=20 < iters exercises the Lanczos restart on breakdown; n=300 > iters does not.
    rng = np.random.default_rng(n)
    eig = np.concatenate([[10.0, 7.0], rng.uniform(0.0, 6.0, n - 2)])
    assert top_eig_of(quadratic(eig), 64) == pytest.approx(10.0, rel=1e-3)


def test_top_eigenvalue_is_largest_algebraic_not_largest_magnitude():
    # 20 eigenvalues and 64 steps, as the n=20 case above (its program, and restarts):
    # the most negative one, -20, is by far the largest in magnitude; the top is 3.
    eig = np.array([-20.0, 3.0, 1.0, 0.5, -2.0, 0.0, 2.5, 1.5, -1.0, 2.0, 0.25, -0.5, 1.25, 2.75, -3.0, 0.75,
                    1.75, -0.25, 2.25, -1.5])
    assert top_eig_of(quadratic(eig, seed=1), 64) == pytest.approx(3.0, rel=1e-3)


# --- small random networks measured against NumPy --------------------------------------

def np_forward(params, x):
    w1, b1, w2, b2 = (np.asarray(params[layer][k], np.float64)
                      for layer in ("hidden", "readout") for k in ("kernel", "bias"))
    pre = np.asarray(x, np.float64) @ w1 + b1
    return pre, np.maximum(pre, 0) @ w2 + b2


def np_min_margin(logits, y):
    out = []
    for z, label in zip(logits, y):
        if len(z) == 1:
            out.append((2 * label - 1) * z[0])
        else:
            out.append(z[label] - max(z[k] for k in range(len(z)) if k != label))
    return min(out)


def seed(tree, s):
    return jax.tree.map(lambda a: a[s], tree)


def setup(n_out, n_seeds=3, width=3, d=2, n=8):
    """Random start and "trained" end parameters (the start scaled up and moved), data."""
    rng = np.random.default_rng(n_out)
    model = MLP(width, d, n_out)
    shapes = {"hidden": {"kernel": (d, width), "bias": (width,)},
              "readout": {"kernel": (width, n_out), "bias": (n_out,)}}
    p0 = {layer: {k: rng.uniform(-0.7, 0.7, (n_seeds, *shape)).astype(np.float32) for k, shape in leaves.items()}
          for layer, leaves in shapes.items()}
    p1 = jax.tree.map(lambda a: (2.0 * a + 0.5 * rng.normal(size=a.shape)).astype(np.float32), p0)
    x = rng.normal(size=(n_seeds, n, d)).astype(np.float32)
    y = rng.integers(0, max(n_out, 2), (n_seeds, n)).astype(np.int32)
    return model, p0, p1, x, y


# Two random-network setups, one compiled program each, that between them take every
# option of `measure`: binary logits on 3-D inputs with x per seed and the mean loss (no
# grid columns), and 3 classes on 2-D inputs with one x shared by all seeds and the
# summed loss (grid columns).
CONFIGS = {1: {"d": 3, "x_batched": True, "loss_reduction": "mean"},
           3: {"d": 2, "x_batched": False, "loss_reduction": "sum"}}


@functools.cache
def measured_setup(n_out):
    """(model, p0, p1, x (S, n, d) as every seed sees it, y, measure's output, config)."""
    config = CONFIGS[n_out]
    model, p0, p1, x, y = setup(n_out, d=config["d"])
    if not config["x_batched"]:
        x = np.broadcast_to(x[0], x.shape)
    given = x if config["x_batched"] else x[0]
    out = measure(model, p0, p1, given, y, x_batched=config["x_batched"], loss_reduction=config["loss_reduction"],
                  hessian_iters=64, grid=32)
    return model, p0, p1, x, y, out, config


@pytest.fixture(params=[1, 3], ids=["binary-3d-batched-mean", "3class-2d-shared-sum"])
def measured(request):
    return measured_setup(request.param)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _dense_hessians(model, params, x, y, reduction):
    def hessian(p, xs, ys):
        flat, unravel = ravel_pytree(p)
        return jax.hessian(lambda w: reduce_loss(per_example_loss(model.apply(unravel(w), xs), ys), None, reduction))(
            flat)

    return jax.vmap(hessian)(params, x, y)


def dense_top_eigenvalues(model, params, x, y, reduction):
    """Per seed: the largest eigenvalue of the dense Hessian (jax.hessian, numpy eigvalsh)."""
    h = np.asarray(_dense_hessians(model, params, x, y, reduction), np.float64)
    return np.linalg.eigvalsh(0.5 * (h + h.swapaxes(1, 2)))[:, -1]


def check_against_independent(model, p0, p1, x, y, out, reduction):
    """Every non-grid column of `out` against NumPy and a dense Hessian; x is (S, n, d)."""
    for s in range(y.shape[0]):
        a, b = seed(p0, s), seed(p1, s)
        flat = lambda layer, t=b: np.concatenate([np.ravel(t[layer]["kernel"]), t[layer]["bias"]])  # noqa: E731
        np.testing.assert_allclose(out["norm_hidden"][s], np.linalg.norm(flat("hidden")), rtol=1e-5)
        np.testing.assert_allclose(out["norm_readout"][s], np.linalg.norm(flat("readout")), rtol=1e-5)
        both = np.concatenate([flat("hidden"), flat("readout")])
        np.testing.assert_allclose(out["norm_total"][s], np.linalg.norm(both), rtol=1e-5)
        start = np.concatenate([flat("hidden", a), flat("readout", a)])
        np.testing.assert_allclose(out["distance"][s], np.linalg.norm(both - start), rtol=1e-5)
        pre, logits = np_forward(b, x[s])
        np.testing.assert_allclose(out["margin"][s], np_min_margin(logits, np.asarray(y[s])), rtol=1e-4, atol=1e-5)
        assert out["active_fraction"][s] == pytest.approx(np.mean(pre > 0), abs=1e-6)
    top = dense_top_eigenvalues(model, p1, x, y, reduction)
    assert np.all(top > 0.1)
    np.testing.assert_allclose(out["sharpness"], top, rtol=1e-3)


def test_columns_and_shapes(measured):
    *_, x, y, out, _ = measured
    grid = GRID_COLUMNS if x.shape[-1] == 2 else ()
    assert list(out) == [*COLUMNS, *grid]
    assert all(v.shape == (y.shape[0],) for v in out.values())


def test_measures_match_independent_computation(measured):
    """Against NumPy and dense Hessians: per-seed x and the mean loss (binary), and one
    shared x and the summed loss (3 classes; its Hessian is the sum's)."""
    model, p0, p1, x, y, out, config = measured
    check_against_independent(model, p0, p1, x, y, out, config["loss_reduction"])


def test_seed_in_batch_equals_seed_alone():
    """Seed 1 of the 3-class batch (shared x, summed loss) measured alone: every column,
    the grid's included, as in the batch."""
    model, p0, p1, x, y, out, config = measured_setup(3)
    alone = measure(model, seed(p0, slice(1, 2)), seed(p1, slice(1, 2)), x[0], y[1:2],
                    x_batched=False, loss_reduction="sum", hessian_iters=64, grid=32)
    assert set(GRID_COLUMNS) <= set(alone)
    for k in out:
        np.testing.assert_allclose(alone[k][0], out[k][1], rtol=1e-4, err_msg=k)


def test_no_grid_columns_unless_two_dimensional():
    """The binary setup's inputs are 3-D: no grid columns (the 3-class one's are 2-D: both)."""
    assert list(measured_setup(1)[5]) == list(COLUMNS)
    assert list(measured_setup(3)[5]) == [*COLUMNS, *GRID_COLUMNS]


# --- 2-D measures on hand-built networks ------------------------------------------------

def hand_built(w1, b1, w2, b2):
    """Seed-batched (S=1) params from hidden kernel (2, p), bias (p,), readout (p, K), (K,)."""
    w1, b1, w2, b2 = (np.asarray(a, np.float32) for a in (w1, b1, w2, b2))
    pad = HAND_WIDTH - len(b1)  # units with zero weights and bias: never active, no effect
    w1, b1 = np.pad(w1, ((0, 0), (0, pad))), np.pad(b1, (0, pad))
    w2 = np.pad(w2, ((0, pad), (0, 0)))
    w1, b1, w2, b2 = (a[None] for a in (w1, b1, w2, b2))
    params = {"hidden": {"kernel": w1, "bias": b1}, "readout": {"kernel": w2, "bias": b2}}
    model = MLP(b1.shape[1], 2, b2.shape[1])
    return model, params


def grid_measure(model, params, bounds=BOX, grid=None, x=None):
    x = np.array([[0.1, 0.2], [-0.3, 0.4]]) if x is None else x
    y = np.zeros((1, len(x)), np.int32)
    return measure(model, params, params, x[None], y, x_batched=True, hessian_iters=4, grid=grid or GRID,
                   bounds=bounds)


def test_linear_regions_known():
    # Units x > 0 and y > 0 cut the box [-1, 1]^2 into 4; x > 5 and a dead unit are
    # constant on it and add nothing.
    w1 = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]
    model, params = hand_built(w1, [0.0, 0.0, -5.0, -1.0], np.ones((4, 1)), [0.0])
    assert grid_measure(model, params)["linear_regions"][0] == 4
    # Three lines through the center: 6 regions; the unit y > 0.5 cuts 3 of them again.
    w1 = [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]
    model, params = hand_built(w1, [0.0, 0.0, 0.0, -0.5], np.ones((4, 1)), [0.0])
    assert grid_measure(model, params)["linear_regions"][0] == 9


def test_linear_regions_match_exact_pattern_count():
    rng = np.random.default_rng(0)
    w1, b1 = rng.normal(size=(2, HAND_WIDTH)), rng.normal(size=HAND_WIDTH) * 0.5
    model, params = hand_built(w1, b1, rng.normal(size=(HAND_WIDTH, 1)), [0.0])
    grid = GRID
    out = grid_measure(model, params, grid=grid)
    xs = np.linspace(-1, 1, grid, dtype=np.float32)
    gx, gy = np.meshgrid(xs, xs)
    pre = np.stack([gx.ravel(), gy.ravel()], -1) @ w1.astype(np.float32) + b1.astype(np.float32)
    exact = len(np.unique(pre > 0, axis=0))
    assert exact > 10
    assert abs(int(out["linear_regions"][0]) - exact) <= 1  # a lattice point on a hyperplane may flip


def relu_pair(v, c=0.0):
    """Hidden units relu(v.x - c), relu(c - v.x): readout (1, -1) gives the logit v.x - c."""
    v = np.asarray(v, float)
    return np.stack([v, -v], 1), np.array([-c, c])


def test_boundary_length_of_straight_lines():
    w1, b1 = relu_pair([1.0, 0.0])  # logit = x: the boundary x = 0 crosses [-1, 1]^2
    model, params = hand_built(w1, b1, [[1.0], [-1.0]], [0.0])
    assert grid_measure(model, params)["boundary_length"][0] == pytest.approx(2.0, rel=1e-3)
    w1, b1 = relu_pair([1.0, 1.0], 0.3)  # x + y = 0.3: from (-0.7, 1) to (1, -0.7)
    model, params = hand_built(w1, b1, [[1.0], [-1.0]], [0.0])
    expect = 1.7 * math.sqrt(2)
    assert grid_measure(model, params)["boundary_length"][0] == pytest.approx(expect, rel=1e-3)
    w1, b1 = relu_pair([0.3, 1.0], 0.1)  # shallow slope through a box that is not square
    model, params = hand_built(w1, b1, [[1.0], [-1.0]], [0.0])
    # y = 0.1 - 0.3 x for x in [-2, 3] stays inside y in [-1, 1]: length 5 sqrt(1 + 0.09).
    out = grid_measure(model, params, bounds=(-2.0, 3.0, -1.0, 1.0))
    assert out["boundary_length"][0] == pytest.approx(5 * math.sqrt(1.09), rel=1e-3)


def test_boundary_length_of_a_diamond():
    # logit = 0.5 - |x| - |y|: the boundary |x| + |y| = 0.5 has length 4 · 0.5 · sqrt(2).
    w1 = np.concatenate([relu_pair([1.0, 0.0])[0], relu_pair([0.0, 1.0])[0]], 1)
    model, params = hand_built(w1, np.zeros(4), -np.ones((4, 1)), [0.5])
    assert grid_measure(model, params)["boundary_length"][0] == pytest.approx(2 * math.sqrt(2), rel=0.02)


def test_boundary_length_three_classes():
    # Logits (0, x, y): class 0 where x, y < 0, class 1 where x > max(0, y), class 2 where
    # y > max(0, x). The boundary: the rays x = 0, y < 0 and y = 0, x < 0, and the
    # diagonal x = y > 0: length 1 + 1 + sqrt(2) in [-1, 1]^2.
    w1 = np.concatenate([relu_pair([1.0, 0.0])[0], relu_pair([0.0, 1.0])[0]], 1)
    w2 = np.array([[0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]], float)
    model, params = hand_built(w1, np.zeros(4), w2, np.zeros(3))
    out = grid_measure(model, params)
    assert out["boundary_length"][0] == pytest.approx(2 + math.sqrt(2), rel=0.02)


def contour_length(field, xs, ys):
    """Length of {field = 0} by contourpy (matplotlib's marching squares)."""
    contourpy = pytest.importorskip("contourpy")
    lines = contourpy.contour_generator(xs, ys, field, line_type="Separate").lines(0.0)
    return sum(np.sum(np.linalg.norm(np.diff(line, axis=0), axis=1)) for line in lines)


@pytest.mark.parametrize("n_out", [1, 3])
def test_boundary_length_matches_contourpy(n_out):
    rng = np.random.default_rng(n_out)
    w1, b1 = rng.normal(size=(2, HAND_WIDTH)), rng.normal(size=HAND_WIDTH)
    w2, b2 = rng.normal(size=(HAND_WIDTH, n_out)), rng.normal(size=n_out) * 0.3
    model, params = hand_built(w1, b1, w2, b2)
    grid = GRID
    out = grid_measure(model, params, bounds=(-2.0, 2.0, -1.5, 1.5))
    xs, ys = np.linspace(-2, 2, grid), np.linspace(-1.5, 1.5, grid)
    gx, gy = np.meshgrid(xs, ys)
    _, logits = np_forward(seed(params, 0), np.stack([gx.ravel(), gy.ravel()], -1))
    logits = logits.reshape(grid, grid, n_out)
    if n_out == 1:
        expect = contour_length(logits[..., 0], xs, ys)
    else:
        expect = 0.5 * sum(contour_length(logits[..., c] - np.delete(logits, c, -1).max(-1), xs, ys)
                           for c in range(n_out))
    assert expect > 1.0
    assert out["boundary_length"][0] == pytest.approx(expect, rel=1e-3)


def test_default_bounds_pad_the_training_box_by_ten_percent():
    # Points span [0, 1] x [0, 2]: the box is [-0.1, 1.1] x [-0.2, 2.2]. The boundary
    # x = 0.45 then has length 2.4 and splits the box in 2; the unit y > 2.1 meets the
    # padded box (2 more regions), y > 2.3 does not.
    x = np.array([[0.0, 0.0], [1.0, 2.0], [0.5, 1.0]])
    w1 = np.concatenate([relu_pair([1.0, 0.0], 0.45)[0], [[0.0, 0.0], [1.0, 1.0]]], 1)
    b1 = np.concatenate([relu_pair([1.0, 0.0], 0.45)[1], [-2.1, -2.3]])
    model, params = hand_built(w1, b1, [[1.0], [-1.0], [0.0], [0.0]], [0.0])
    out = grid_measure(model, params, bounds=None, x=x)
    assert out["boundary_length"][0] == pytest.approx(2.4, rel=1e-3)
    assert out["linear_regions"][0] == 4
