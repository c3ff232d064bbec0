"""Measures of trained networks: what makes a minimum bad.

`measure` takes seed-batched parameters (leading axis = seeds) before and after
training and returns one number per seed and column: parameter norms, the distance
travelled, the training margin, the sharpness (top Hessian eigenvalue of the training
loss), the fraction of active ReLUs, and on 2-D inputs the length of the decision
boundary and the number of linear regions met on a grid. Every seed is measured by one
per-seed function, vmapped over seeds inside one compiled program.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .model import MLP, Model, activations_per_example, feature_layers, input_shape, readout
from .train import LOSS_REDUCTIONS, per_example_loss, reduce_loss

__all__ = ["COLUMNS", "GRID_COLUMNS", "MeasureSettings", "columns", "measure", "top_hessian_eigenvalue"]


# -- the registry: each measure's column, type and figure title ---------------------------------

@dataclass(frozen=True)
class MeasureSpec:
    """A measure of a trained solution and every fact the rest of advjax reads about it:
    its results.csv column and type, and the title of its figure panel (in words, with
    units; None: not drawn). `register_measure` adds one; nothing else needs to change.

    `fn(model, params_start, params_final, x_NxD, y_N, state_final)` measures one seed
    (a JAX scalar; it is vmapped over the seeds and jitted). The built-in measures have
    none: one compiled program (`_measure_one`) computes them all."""

    column: str
    title: str | None = None
    type: type = float
    fn: Callable | None = None
    only_2d: bool = False  # only on 2-D inputs


MEASURES: dict[str, MeasureSpec] = {}


def register_measure(spec: MeasureSpec) -> MeasureSpec:
    """Make `spec` a measure every sweep with --measures computes and records."""
    if not spec.column.isidentifier() or spec.column.startswith("norm_") or spec.column in _BUILT_IN:
        raise ValueError(f"a new measure's column is an identifier, not a built-in's or norm_*: {spec.column!r}")
    if spec.fn is None:
        raise ValueError(f"measure {spec.column!r} needs its one-seed function (fn)")
    MEASURES[spec.column] = spec
    return spec


for _spec in (
    MeasureSpec("norm_readout"), MeasureSpec("norm_total", "parameter norm ‖θ‖₂, all layers"),
    MeasureSpec("distance", "distance travelled ‖θ − θ_start‖₂, last phase"),
    MeasureSpec("margin", "smallest training margin (logit units)"),
    MeasureSpec("sharpness", "sharpness: top eigenvalue of the training loss's Hessian"),
    MeasureSpec("active_fraction", "active ReLUs (fraction of unit × training point pairs)"),
    MeasureSpec("boundary_length", "decision boundary length (input units)", only_2d=True),
    MeasureSpec("linear_regions", "linear regions met on the input grid (count)", int, only_2d=True),
):
    MEASURES[_spec.column] = _spec  # computed together by `_measure_one`
_BUILT_IN = tuple(MEASURES)


def added() -> tuple[MeasureSpec, ...]:
    """The measures registered beyond the built-in ones."""
    return tuple(spec for name, spec in MEASURES.items() if name not in _BUILT_IN)


def columns(model: Model) -> tuple[str, ...]:
    """The measures of a solution of `model`: the norm of each feature layer, of all
    of them together (norm_features, left out with one feature layer, where it is that
    layer's column), of the readout and of everything; then the rest, and those
    registered since (not the 2-D ones: GRID_COLUMNS)."""
    features = tuple(f"norm_{layer}" for layer in feature_layers(model))
    together = ("norm_features",) if len(features) > 1 else ()
    own = tuple(m.column for m in added() if not m.only_2d or input_shape(model) == (2,))
    return (*features, *together, "norm_readout", "norm_total", "distance", "margin", "sharpness",
            "active_fraction", *own)


COLUMNS = columns(MLP(1, 1, 1))  # N_p's: norm_hidden, norm_readout, norm_total, ...
GRID_COLUMNS = ("boundary_length", "linear_regions")  # only when the inputs are 2-D

HESSIAN_SEED = 0  # start vector of the Lanczos iteration: the same for every seed
HASH_SEED = 1  # random projections that hash activation patterns
RESTART_TOL = 1e-5  # Lanczos restarts when beta falls below this times the running |alpha| + beta
GROUP_ELEMENTS = 1 << 24  # floats of one (points x units) activation array across the seeds in flight


def _unit(v: jax.Array) -> jax.Array:
    return v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny)


def _lanczos_top(hvp: Callable[[jax.Array], jax.Array], v0: jax.Array, key: jax.Array, iters: int) -> jax.Array:
    """Largest Ritz value of `iters` Lanczos steps on the symmetric operator `hvp` from v0.

    Without full reorthogonalization (memory stays at three vectors), only a second
    Gram-Schmidt pass against the current vector. On breakdown (beta ~ 0: the Krylov space
    is invariant, e.g. when iters exceeds the dimension) the iteration restarts from a fresh
    random vector with a zero coupling, so T is block diagonal and each block's Ritz values
    lie in the spectrum. In finite precision the lost orthogonality only duplicates
    converged Ritz values ("ghosts"); it does not push them past the extreme eigenvalues.
    """
    n, dtype = v0.shape[0], v0.dtype

    def body(carry, j):
        v, v_prev, beta_prev, scale = carry
        w = hvp(v)
        alpha = jnp.vdot(v, w)
        w = w - alpha * v - beta_prev * v_prev
        c = jnp.vdot(v, w)  # second pass ("twice is enough")
        alpha, w = alpha + c, w - c * v
        beta = jnp.linalg.norm(w)
        scale = jnp.maximum(scale, jnp.abs(alpha) + beta)
        breakdown = beta <= RESTART_TOL * scale
        fresh = jax.random.normal(jax.random.fold_in(key, j + 1), (n,), dtype)
        fresh = _unit(fresh - jnp.vdot(v, fresh) * v)
        v_next = jnp.where(breakdown, fresh, w / jnp.where(breakdown, 1.0, beta))
        beta = jnp.where(breakdown, 0.0, beta)
        return (v_next, v, beta, scale), (alpha, beta)

    zero = jnp.zeros((), dtype)
    carry = (_unit(v0), jnp.zeros_like(v0), zero, zero)
    _, (alphas, betas) = jax.lax.scan(body, carry, jnp.arange(iters))
    off = betas[:-1]
    tri = jnp.diag(alphas) + jnp.diag(off, 1) + jnp.diag(off, -1)
    return jnp.linalg.eigvalsh(tri)[-1]


def top_hessian_eigenvalue(loss_fn: Callable[[object], jax.Array], params, key: jax.Array, iters: int) -> jax.Array:
    """Largest (algebraic) eigenvalue of the Hessian of `loss_fn` at `params`.

    Parameters
    ----------
    loss_fn
        Scalar function of a pytree shaped like `params`.
    params
        Any pytree of float arrays (one seed; vmap this function for many).
    key
        PRNG key of the random start vector (fixed key: deterministic result).
    iters
        Number of Lanczos steps, i.e. of Hessian-vector products.

    Returns
    -------
    jax.Array
        Scalar: the largest Ritz value, an estimate from below of the largest eigenvalue.

    Notes
    -----
    Hessian-vector products are forward-over-reverse (`jax.jvp` of `jax.grad`) on the
    flattened parameters, so the Hessian is never formed. The Lanczos method is used
    rather than power iteration: power iteration converges to the eigenvalue of largest
    *magnitude*, which is a negative one when the most negative curvature dominates (and
    needs a shift to recover the top one); Lanczos returns the largest *algebraic*
    eigenvalue directly, and converges much faster for the same number of products.
    The top eigenvalue of a Hessian with a single negative eigenvalue of larger magnitude
    is therefore still the positive top eigenvalue here.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda w: loss_fn(unravel(w)))
    hvp = lambda v: jax.jvp(grad, (flat,), (v,))[1]  # noqa: E731
    k_start, k_restart = jax.random.split(key)
    return _lanczos_top(hvp, jax.random.normal(k_start, flat.shape, flat.dtype), k_restart, iters)


def _margins(logits_BxK: jax.Array, y_B: jax.Array) -> jax.Array:
    """Per example: (2y-1)·logit (one logit) or logit_y - max_{k != y} logit_k."""
    if logits_BxK.shape[-1] == 1:
        return (2 * y_B - 1).astype(logits_BxK.dtype) * logits_BxK[:, 0]
    own = jnp.arange(logits_BxK.shape[-1]) == y_B[:, None]
    other = jnp.max(jnp.where(own, -jnp.inf, logits_BxK), axis=-1)
    return jnp.sum(jnp.where(own, logits_BxK, 0.0), axis=-1) - other


def _default_bounds(x_Nx2: jax.Array) -> jax.Array:
    """The training points' bounding box padded by 10% of its extent on each side."""
    lo, hi = jnp.min(x_Nx2, axis=0), jnp.max(x_Nx2, axis=0)
    span = jnp.where(hi > lo, hi - lo, 1.0)
    lo, hi = lo - 0.1 * span, hi + 0.1 * span
    return jnp.stack([lo[0], hi[0], lo[1], hi[1]])


def _contour_length(g_YxX: jax.Array, hx: jax.Array, hy: jax.Array) -> jax.Array:
    """Length of the zero level {g = 0} of a field sampled on a lattice, by marching squares.

    The sign is g > 0. On each cell edge whose ends differ in sign the crossing is placed
    by linear interpolation; a cell with two crossings adds the segment between them, a
    saddle cell (four crossings) adds two segments, paired by the sign of the cell's
    mean value (the usual disambiguation). The estimate is exact for a linear g and has
    an O(h) error per cell in which g bends, so it converges to the length of a piecewise
    linear boundary as the grid refines. Rows index y, columns x.
    """
    a, b = g_YxX[:-1, :-1], g_YxX[:-1, 1:]  # corners (x_i, y_j), (x_i+1, y_j)
    c, d = g_YxX[1:, 1:], g_YxX[1:, :-1]  # corners (x_i+1, y_j+1), (x_i, y_j+1)
    pa, pb, pc, pd = a > 0, b > 0, c > 0, d > 0

    def cross(g0, g1, p0, p1):
        flag = p0 != p1
        return flag, jnp.where(flag, g0 / jnp.where(flag, g0 - g1, 1.0), 0.5)

    f0, t0 = cross(a, b, pa, pb)  # bottom edge, crossing at (t0, 0) in cell units
    f1, t1 = cross(b, c, pb, pc)  # right edge, at (1, t1)
    f2, t2 = cross(c, d, pc, pd)  # top edge, at (1 - t2, 1)
    f3, t3 = cross(d, a, pd, pa)  # left edge, at (0, 1 - t3)
    one, zero = jnp.ones_like(t0), jnp.zeros_like(t0)
    pts = ((t0, zero), (one, t1), (1 - t2, one), (zero, 1 - t3))
    flags = (f0, f1, f2, f3)

    def seg(i, j):
        (xi, yi), (xj, yj) = pts[i], pts[j]
        return jnp.sqrt(((xi - xj) * hx) ** 2 + ((yi - yj) * hy) ** 2)

    pairs = ((0, 1), (1, 2), (2, 3), (3, 0), (0, 2), (1, 3))
    two = sum(jnp.where(flags[i] & flags[j], seg(i, j), 0.0) for i, j in pairs)
    center = (a + b + c + d) > 0
    four = jnp.where(center == pa, seg(0, 1) + seg(2, 3), seg(3, 0) + seg(1, 2))
    k = f0.astype(jnp.int32) + f1 + f2 + f3
    return jnp.sum(jnp.where(k == 2, two, jnp.where(k == 4, four, 0.0)))


def _grid_measures(model: Model, params: dict, bounds: jax.Array, grid: int, chunk: int) -> dict[str, jax.Array]:
    """boundary_length and linear_regions of one seed on a grid x grid lattice over bounds."""
    n_units, n_out = activations_per_example(model), model.n_out
    xmin, xmax, ymin, ymax = bounds[0], bounds[1], bounds[2], bounds[3]
    gx, gy = jnp.meshgrid(jnp.linspace(xmin, xmax, grid), jnp.linspace(ymin, ymax, grid))  # (y, x)
    pts = jnp.stack([gx.ravel(), gy.ravel()], axis=-1)
    n_pts = grid * grid
    n_chunks = -(-n_pts // chunk)
    # Padding repeats the last point: it adds no new activation pattern.
    pts = jnp.concatenate([pts, jnp.broadcast_to(pts[-1], (n_chunks * chunk - n_pts, 2))])
    proj = jax.random.bits(jax.random.key(HASH_SEED), (2, n_units), jnp.uint32)

    def one_chunk(p_Cx2):
        # The activation pattern of every ReLU layer together: the linear region.
        on = jnp.concatenate([pre > 0 for pre in model.preactivations(params, p_Cx2)], axis=-1)
        # Sums wrap modulo 2^32: a random linear hash of the 0/1 pattern.
        h1 = jnp.sum(jnp.where(on, proj[0], jnp.uint32(0)), axis=-1, dtype=jnp.uint32)
        h2 = jnp.sum(jnp.where(on, proj[1], jnp.uint32(0)), axis=-1, dtype=jnp.uint32)
        return h1, h2, model.apply(params, p_Cx2)

    h1, h2, logits = jax.lax.map(one_chunk, pts.reshape(n_chunks, chunk, 2))
    s1, s2 = jax.lax.sort((h1.ravel(), h2.ravel()), num_keys=2)
    regions = 1 + jnp.sum((s1[1:] != s1[:-1]) | (s2[1:] != s2[:-1]))

    logits = logits.reshape(-1, n_out)[:n_pts].reshape(grid, grid, n_out)
    hx, hy = (xmax - xmin) / (grid - 1), (ymax - ymin) / (grid - 1)
    if n_out == 1:
        length = _contour_length(logits[..., 0], hx, hy)
    else:
        # Class c wins where g_c = logit_c - max_{k != c} logit_k > 0; each piece of the
        # boundary borders two classes' regions, hence half the sum of their perimeters.
        def class_length(cls):
            other = jnp.max(jnp.where(jnp.arange(n_out) == cls, -jnp.inf, logits), axis=-1)
            return _contour_length(logits[..., cls] - other, hx, hy)

        length = 0.5 * jnp.sum(jax.lax.map(class_length, jnp.arange(n_out)))
    return {"boundary_length": length, "linear_regions": regions.astype(jnp.int32)}


@dataclass(frozen=True)
class _Program:
    """The static arguments of the compiled measurement, one hashable record: what
    `_measure_all` compiles for (model, seed layout, loss, Lanczos steps, lattice, and
    how many seeds and lattice points go at a time)."""

    model: Model
    x_batched: bool
    loss_reduction: str
    iters: int
    grid: int
    group: int
    chunk: int


def _measure_one(program: _Program, p_start, p_final, s_final, x_NxD, y_N, bounds):
    model = program.model

    def sq(tree):
        return sum(jnp.sum(jnp.square(leaf)) for leaf in jax.tree.leaves(tree))

    features = feature_layers(model)
    out = {f"norm_{layer}": jnp.sqrt(sq(p_final[layer])) for layer in features}
    if len(features) > 1:
        out["norm_features"] = jnp.sqrt(sq({layer: p_final[layer] for layer in features}))
    out |= {
        "norm_readout": jnp.sqrt(sq(p_final[readout(model)])),
        "norm_total": jnp.sqrt(sq(p_final)),
        "distance": jnp.sqrt(sq(jax.tree.map(jnp.subtract, p_final, p_start))),
        "margin": jnp.min(_margins(model.apply(p_final, x_NxD, s_final), y_N)),
    }

    def loss_fn(params):  # in inference mode: the running statistics stay s_final
        return reduce_loss(per_example_loss(model.apply(params, x_NxD, s_final), y_N), None, program.loss_reduction)

    out["sharpness"] = top_hessian_eigenvalue(loss_fn, p_final, jax.random.key(HESSIAN_SEED), program.iters)
    pre = jnp.concatenate(model.preactivations(p_final, x_NxD, s_final), axis=-1)  # every ReLU layer's units
    out["active_fraction"] = jnp.mean((pre > 0).astype(jnp.float32))
    if input_shape(model) == (2,):
        out.update(_grid_measures(model, p_final, _default_bounds(x_NxD) if bounds is None else bounds,
                                   program.grid, program.chunk))
    return out


@functools.partial(jax.jit, static_argnames=("program",))
def _measure_all(p_start, p_final, s_final, x, y, bounds, *, program: _Program):
    x_batched, group = program.x_batched, program.group
    one = functools.partial(_measure_one, program)
    n_seeds = y.shape[0]
    n_groups = -(-n_seeds // group)
    pad = n_groups * group - n_seeds
    batched = (p_start, p_final, s_final, x if x_batched else None, y, bounds)
    # Extra seeds repeat the last one and are dropped again below.
    batched = jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)]) if pad else a, batched)

    def run(args):
        ps, pf, sf, xs, ys, bs = args
        in_axes = (0, 0, 0, 0 if x_batched else None, 0, None if bounds is None else 0)
        return jax.vmap(one, in_axes=in_axes)(ps, pf, sf, xs if x_batched else x, ys, bs)

    if n_groups == 1:
        out = run(batched)
    else:
        split = jax.tree.map(lambda a: a.reshape(n_groups, group, *a.shape[1:]), batched)
        out = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), jax.lax.map(run, split))
    return jax.tree.map(lambda a: a[:n_seeds], out)


@dataclass(frozen=True)
class MeasureSettings:
    """How `measure` measures a batch of seeds; checked when made.

    loss_reduction
        "mean" or "sum": the training loss whose Hessian gives the sharpness.
    hessian_iters
        Lanczos steps (Hessian-vector products) for the sharpness.
    grid
        Lattice points per side for the 2-D measures.
    bounds
        (xmin, xmax, ymin, ymax), shared, or an (S, 4) array, one box per seed; default:
        each seed's training points' bounding box padded by 10% of its extent each side.
    """

    loss_reduction: str = "mean"
    hessian_iters: int = 64
    grid: int = 256
    bounds: object = None

    def __post_init__(self):
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {self.loss_reduction!r}")
        if self.hessian_iters < 1:
            raise ValueError(f"hessian_iters must be >= 1, got {self.hessian_iters}")
        if self.grid < 2:
            raise ValueError(f"grid must be >= 2, got {self.grid}")


def measure(model: Model, params_start: dict, params_final: dict, x_train, y_train, *, x_batched: bool,
            state_final: dict | None = None, **settings) -> dict[str, np.ndarray]:
    """Measure every seed of a batch of trained networks.

    Parameters
    ----------
    model
        Any model of the protocol in advjax.model (e.g. N_p, or a deeper MLP).
    params_start, params_final
        Seed-batched parameters (leading axis S on every leaf) at the start and the end
        of training.
    x_train
        (S, n, d) when x_batched, else (n, d) shared by all seeds.
    y_train
        (S, n) integer labels.
    x_batched
        Whether x_train carries the seed axis.
    state_final
        Seed-batched running statistics of params_final (a BatchNorm model; None for a
        model without): every measure sees the network in inference mode.
    settings
        loss_reduction=, hessian_iters=, grid=, bounds=: the fields of `MeasureSettings`.

    Returns
    -------
    dict of str to np.ndarray
        Arrays of shape (S,), keyed by column:

        - norm_<layer> for each feature layer (N_p: norm_hidden), norm_features (all
          feature layers, when there are several), norm_readout: Frobenius norm of the
          kernels and biases together; norm_total: of all parameters; distance: of
          params_final - params_start. `columns(model)` lists them in order.
        - margin: the smallest training margin, (2y-1)·logit with one logit, else
          logit_y - max_{k != y} logit_k; negative when a point is misclassified.
        - sharpness: largest eigenvalue of the Hessian of the training loss at
          params_final (Lanczos, see `top_hessian_eigenvalue`; a fixed start vector, the
          same for every seed, so a seed measures the same alone or in a batch).
        - active_fraction: fraction of (training point, ReLU unit) pairs with a positive
          pre-activation, over the units of every ReLU layer.
        - only on 2-D points (input shape (2,)), on a grid x grid lattice over the box:
          boundary_length, the length inside the box of the decision boundary (logit = 0,
          or where the argmax changes), by marching squares with linear interpolation on
          the field logit (binary) or g_c = logit_c - max_{k != c} logit_k for each class c,
          halving the sum over classes (exact for straight boundaries, O(grid spacing)
          error per cell where the boundary bends); linear_regions, the number of distinct
          activation patterns of all ReLU layers together among the lattice points, i.e. the linear regions of
          the network that meet the box as the grid sees them (regions thinner than the
          grid spacing can be missed; a lattice point exactly on a unit's hyperplane counts
          it inactive, which can add a pattern only for hand-built networks, e.g. a pair
          relu(v.x), relu(-v.x) whose shared line runs through lattice points). Patterns
          are hashed to two independent 32-bit random linear hashes (sums of per-unit
          random words modulo 2^32) and counted with a sort: two different patterns
          collide with probability 2^-64, so the chance of any miscount is below
          R^2 · 2^-65 for R distinct patterns.

    Notes
    -----
    One compiled program measures all seeds (vmap of a per-seed function). Seeds go in
    groups (lax.map over groups) and the lattice in chunks of points, so that an
    activation array (points x ReLU units x seeds in flight) holds about
    GROUP_ELEMENTS floats: grid=256, p=1000 and 64 seeds stay well under 1 GB.
    """
    chosen = MeasureSettings(**settings)
    x, y, bounds = _checked_batch(model, x_train, y_train, x_batched, chosen.bounds)
    program = _program(model, x_batched, chosen, *y.shape)
    out = dict(_measure_all(params_start, params_final, state_final or {}, x, y, bounds, program=program))
    for spec in (m for m in added() if not m.only_2d or input_shape(model) == (2,)):
        out[spec.column] = _measure_added(params_start, params_final, state_final or {}, x, y, model=model,
                                          x_batched=x_batched, fn=spec.fn)
    return {k: np.asarray(out[k]) for k in (*columns(model), *GRID_COLUMNS) if k in out}


def _checked_batch(model: Model, x_train, y_train, x_batched: bool, bounds):
    """x as float32, y as int32 and bounds as one (S, 4) box per seed (or None), once
    their shapes are checked against the model and each other."""
    x = jnp.asarray(x_train, jnp.float32)
    y = jnp.asarray(y_train, jnp.int32)
    if y.ndim != 2 or x.shape[(2 if x_batched else 1):] != input_shape(model):
        raise ValueError(f"shapes x {x.shape}, y {y.shape} do not fit x_batched={x_batched}, "
                         f"one example {input_shape(model)}")
    n_seeds = y.shape[0]
    if x_batched and x.shape[0] != n_seeds:
        raise ValueError(f"x has {x.shape[0]} seeds, y has {n_seeds}")
    if bounds is not None:
        bounds = jnp.broadcast_to(jnp.asarray(bounds, jnp.float32), (n_seeds, 4))
    return x, y, bounds


def _program(model: Model, x_batched: bool, settings: MeasureSettings, n_seeds: int, n: int) -> _Program:
    """The compiled measurement for S = n_seeds seeds of n training points: seeds go in
    groups and the lattice in chunks, so that an activation array holds about
    GROUP_ELEMENTS floats."""
    units = activations_per_example(model)
    group = max(1, min(n_seeds, GROUP_ELEMENTS // (units * n)))
    chunk = max(1, min(settings.grid * settings.grid, GROUP_ELEMENTS // (units * group)))
    return _Program(model, x_batched, settings.loss_reduction, settings.hessian_iters, settings.grid, group, chunk)


@functools.partial(jax.jit, static_argnames=("model", "x_batched", "fn"))
def _measure_added(p_start, p_final, s_final, x, y, *, model, x_batched, fn):
    """A registered measure of every seed: its one-seed `fn`, vmapped."""
    one = functools.partial(fn, model)
    return jax.vmap(one, in_axes=(0, 0, 0, 0 if x_batched else None, 0))(p_start, p_final, s_final, x, y)
