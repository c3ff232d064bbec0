"""The one training loop: every seed of a width in one compiled, vmapped program.

A phase trains a batch of parameter sets (leading axis = seeds) on their labels until
each reaches zero training error, diverges, or hits the step cap. Each seed carries its
own step counter and `done` flag; a finished seed's parameters are never touched again
while the others go on. Steps run in chunks (at most `chunk_steps`, sized at run time
to about a second) inside `lax.while_loop`,
and the Python driver only looks at the done flags between chunks (progress, early end).

Step semantics (exact): iteration k looks at the parameters after k updates. If they
have zero error on the whole training set (or, with a target accuracy a < 1, at least
ceil(a·n) of the n points right) the seed stops with steps = k; else, if k = max_steps,
it stops unconverged; else it takes update k+1. In full-batch mode the check reuses the
logits of the gradient's forward pass, so it costs nothing. Under a fixed budget
(`PhaseSpec.budget`, Liu et al.'s fixed epochs) nothing is checked: every seed takes
exactly max_steps updates, and "converged" means it got there with a finite loss.

Compaction (on by default; `train(compact=False)`, the sweep's --no-compact, turns it
off): a device runs its seeds in cache-sized groups one after the other, and a group
whose seeds are all done leaves its loop at once, but a device whose groups are all done
waits for the others. So at fixed iteration counts (`compaction_point`: 8 to 16 times
per doubling of the steps so far, never a time-dependent chunk end) the groups that
still hold a live seed are gathered and spread evenly over the devices, in a program of
half the group slots or fewer once they fit one (each size compiled once), and padding
copies of a seed that hold a whole group are dropped. A group always moves whole, with
the same seeds in the same order, and its program is the same loop over one group, so
every seed's bits are those of the uncompacted run (tests/test_compaction.py); only the
wall time changes. Seeds are not regrouped within a group unless asked (`repack`, the
sweep's --repack): XLA:CPU can round a seed's step differently with another number of
seeds side by side. With `repack`, once a batch's live seeds fit half the rows of its
last layout, each block's live seeds are laid out anew in groups sized for their count
(`repacked`): a run's bits then depend on where its seeds stopped, not on timing, so a
rerun, and a resumed run (which repeats the repacks from each seed's stopping step), is
identical to the first; against the run without it, the last bits may differ.

Step size, step cap, target and (where a grid varies them) momentum and weight decay
are per-seed traced values (`Hyper`): one compiled program trains a whole grid of them,
each grid point's seeds side by side with the others'.
"""

from __future__ import annotations

import contextlib
import functools
import math
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .devices import jit_draw
from .model import Model, activations_per_example, forward_floats_per_example, has_state, initial_states, n_parameters

LOSS_REDUCTIONS = ("mean", "sum")
OPTIMIZERS = ("sgd", "adam")
AUGMENTATIONS = ("none", "crop-flip")
STOP_RULES = ("target", "budget")  # the true-label phases: at a training accuracy, or after exactly their cap


@dataclass(frozen=True)
class PhaseSpec:
    """What fixes the compiled program of a phase (hashable, static under jit).

    Numbers that vary between runs without changing the program (learning rate, step
    cap) are traced arguments of `train` instead.
    """

    model: Model
    trainable: tuple[str, ...]  # layers updated (names from model.layers); all others are frozen bit-for-bit
    batch_size: int | None = None  # None: full-batch gradient descent
    loss_reduction: str = "mean"
    chunk_steps: int = 100_000  # most steps in one call; calls adapt to ~CHUNK_SECONDS each
    x_batched: bool = True  # x carries a seed axis (False: one x shared by all seeds)
    group_elements: int = 1 << 20  # seeds run in cache-sized groups of about this many floats (advjax.tune)
    optimizer: str = "sgd"  # "sgd" (the paper's) or "adam" (an option for the random-label phase)
    momentum: float = 0.0  # heavy-ball momentum of sgd (torch.optim.SGD's convention)
    weight_decay: float = 0.0  # L2 coefficient added to the gradient (torch.optim.SGD's weight_decay)
    # "momentum", "weight_decay": taken per seed from `Hyper` (a grid varies them), not from the fields above
    per_seed: tuple[str, ...] = ()
    check_every: int = 1  # steps between zero-error checks: a seed stops at the first check at which it fits
    budget: bool = False  # no checks: every seed trains exactly its step cap (converged: it got there, finite)
    lr_boundaries: tuple[int, ...] = ()  # steps at which the step size is multiplied by lr_factor
    lr_factor: float = 1.0
    augment: str = "none"  # "crop-flip": each update's images randomly cropped and flipped (`augment`)


class Hyper(NamedTuple):
    """A seed's traced settings: one value per seed (a grid point's, for its seeds)."""

    lr: np.ndarray  # float32 step size
    max_steps: np.ndarray  # int32 step cap
    need: np.ndarray  # int32: training points right that stop the seed (n: zero error)
    momentum: np.ndarray  # float32; used where spec.per_seed names it
    weight_decay: np.ndarray  # float32; likewise


def make_hyper(n_seeds: int, lr, max_steps, need, momentum=0.0, weight_decay=0.0) -> Hyper:
    """Per-seed arrays from scalars or per-seed values."""
    one = lambda v, dtype: np.ascontiguousarray(np.broadcast_to(np.asarray(v, dtype), (n_seeds,)))  # noqa: E731
    return Hyper(one(lr, np.float32), one(max_steps, np.int32), one(need, np.int32), one(momentum, np.float32),
                 one(weight_decay, np.float32))


def need_for(target_acc: float, n: int) -> int:
    """Training points that must be right for accuracy >= target_acc: ceil(target·n),
    in exact arithmetic (so target 1.0 is zero error, and 0.5 of 101 points is 51)."""
    from fractions import Fraction

    return max(1, min(n, math.ceil(Fraction(str(target_acc)) * n)))


class SeedState(NamedTuple):
    params: dict  # the trainable layers only
    opt_state: optax.OptState
    step: jax.Array  # int32: updates applied so far
    done: jax.Array  # bool
    converged: jax.Array  # bool: stopped at zero training error
    diverged: jax.Array  # bool: stopped on non-finite logits at a check, or a non-finite loss of its next update
    batch_key: jax.Array
    model_state: dict  # running statistics (BatchNorm) of every layer; {} for a model without


class Outcome(NamedTuple):
    params: dict  # all layers, seed-batched
    steps: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    state: dict  # running statistics, seed-batched ({} for a model without BatchNorm)


def per_example_loss(logits_BxK: jax.Array, y_B: jax.Array) -> jax.Array:
    """Logistic loss on one logit (binary), softmax cross-entropy on K logits."""
    if logits_BxK.shape[-1] == 1:
        return optax.sigmoid_binary_cross_entropy(logits_BxK[:, 0], y_B.astype(logits_BxK.dtype))
    return optax.softmax_cross_entropy_with_integer_labels(logits_BxK, y_B)


def predictions(logits_BxK: jax.Array) -> jax.Array:
    if logits_BxK.shape[-1] == 1:
        return (logits_BxK[:, 0] > 0).astype(jnp.int32)
    return jnp.argmax(logits_BxK, axis=-1).astype(jnp.int32)


def reduce_loss(losses_B: jax.Array, weights_B: jax.Array | None, reduction: str) -> jax.Array:
    if weights_B is None:
        return losses_B.mean() if reduction == "mean" else losses_B.sum()
    total = jnp.sum(weights_B * losses_B)
    return total / jnp.sum(weights_B) if reduction == "mean" else total


def make_optimizer(lr: jax.Array, spec: PhaseSpec | None = None, hyper: Hyper | None = None
                   ) -> optax.GradientTransformation:
    """Plain (stochastic) gradient descent as in the paper, unless the phase asks for
    momentum, weight decay (both as torch.optim.SGD defines them) or Adam. Momentum and
    weight decay come from the seed's `hyper` where spec.per_seed names them."""
    spec = spec or PhaseSpec(model=None, trainable=())
    traced = lambda name: name in spec.per_seed  # noqa: E731
    momentum = (hyper.momentum if hyper is not None else 0.0) if traced("momentum") else (spec.momentum or None)
    decay = (hyper.weight_decay if hyper is not None else 0.0) if traced("weight_decay") else spec.weight_decay
    if spec.lr_boundaries:  # the seed's step size times optax's piecewise-constant factor at each update's count
        scale = optax.piecewise_constant_schedule(1.0, {b: spec.lr_factor for b in spec.lr_boundaries})
        lr = (lambda base_lr: lambda count: base_lr * scale(count))(lr)
    base = optax.adam(lr) if spec.optimizer == "adam" else optax.sgd(lr, momentum=momentum)
    return optax.chain(optax.add_decayed_weights(decay), base) if traced("weight_decay") or decay else base


def batch_indices(key: jax.Array, step: jax.Array, n: int, batch_size: int):
    """Minibatch of update `step`: epochs of a fresh shuffle, batches in order, the last
    one smaller when batch_size does not divide n (torch's DataLoader with shuffle=True,
    drop_last=False). Returns fixed-shape indices and 0/1 weights marking real members."""
    perm, j = _epoch_order(key, step, n, batch_size)
    pos = j * batch_size + jnp.arange(batch_size)
    return perm[jnp.minimum(pos, n - 1)], (pos < n).astype(jnp.float32)


def batch_split(key: jax.Array, step: jax.Array, n: int, batch_size: int):
    """Where batch_size divides n: `batch_indices`'s minibatch of update `step`, the
    indices of the other n - batch_size examples, and the minibatch's weights (all 1)."""
    assert n % batch_size == 0, (n, batch_size)  # else the last batch is short (`batch_indices`)
    perm, j = _epoch_order(key, step, n, batch_size)
    order = jnp.roll(perm, -j * batch_size)
    return order[:batch_size], order[batch_size:], jnp.ones(batch_size, jnp.float32)


def _epoch_order(key: jax.Array, step: jax.Array, n: int, batch_size: int):
    """The shuffle of update `step`'s epoch, and the update's batch number in it."""
    n_batches = math.ceil(n / batch_size)
    return jax.random.permutation(jax.random.fold_in(key, step // n_batches), n), step % n_batches


AUGMENT_STREAM = 2**32 - 1  # folded into a seed's minibatch key for its augmentation draws (an epoch never is)


def crop_flip(key: jax.Array, x_BxHxWxC: jax.Array, pad: int = 4) -> jax.Array:
    """torchvision's RandomCrop(padding=4) then RandomHorizontalFlip, per image: a window
    of the image's size at a uniform offset (0..2·pad on each axis) of the image padded
    with `pad` zeros, mirrored left-right with probability ½."""
    n, height, width, channels = x_BxHxWxC.shape
    k_offset, k_flip = jax.random.split(key)
    offsets_Bx2 = jax.random.randint(k_offset, (n, 2), 0, 2 * pad + 1)
    flip_B = jax.random.bernoulli(k_flip, 0.5, (n,))
    padded = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    crops = jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (height, width, channels)))(
        padded, offsets_Bx2)
    return jnp.where(flip_B[:, None, None, None], crops[:, :, ::-1], crops)


def minibatch(spec: PhaseSpec, key: jax.Array, step: jax.Array, x_NxD: jax.Array, y_N: jax.Array):
    """The examples update `step` of a seed trains on, a function of its minibatch key:
    (x, y, weights; weights None for the whole set), images augmented as spec.augment says
    with draws from fold_in(fold_in(key, AUGMENT_STREAM), step)."""
    if spec.batch_size is None or spec.batch_size >= len(x_NxD):
        x, y, w = x_NxD, y_N, None
    else:
        idx, w = batch_indices(key, step, len(x_NxD), spec.batch_size)
        x, y = x_NxD[idx], y_N[idx]
    if spec.augment == "crop-flip":
        x = crop_flip(jax.random.fold_in(jax.random.fold_in(key, AUGMENT_STREAM), step), x)
    return x, y, w


def _step(spec: PhaseSpec, hyper: Hyper, frozen, x_NxD, y_N, s: SeedState, check: bool = True,
          alone: bool = False) -> SeedState:
    """One iteration for one seed: check the current parameters (and running
    statistics), then update them unless the seed stops here (or stopped before).
    Without `check` (between the checks of --check-every) only the step cap and a
    non-finite loss stop a seed, and the training set is not evaluated. Where the
    check has a forward pass of its own (minibatches, augmentation, BatchNorm), a seed
    that the check stops (its target reached, its logits non-finite, its cap, or done
    before) computes no gradient: `alone` (a group of one seed, unbatched) skips it
    with a real branch; vmapped, it is computed and dropped, as every masked update is.
    `alone` on equal unaugmented minibatches (`check_shares_minibatch`), the check reads
    the minibatch's logits off the gradient's forward pass, and the branch holds the
    backward pass only. The updates are the same either way; the minibatch's logits are
    a product of batch rows instead of n, which XLA may round differently in the last
    bit, so a near-tie could move a stop by a step, as another seed layout can."""
    model, opt = spec.model, make_optimizer(hyper.lr, spec, hyper)

    def loss_fn(params, x, y, w):
        logits, state = model.apply_train({**frozen, **params}, s.model_state, x, spec.trainable, w)
        return reduce_loss(per_example_loss(logits, y), w, spec.loss_reduction), (logits, state)

    def gradient():
        x, y, w = minibatch(spec, s.batch_key, s.step, x_NxD, y_N)
        return jax.value_and_grad(loss_fn, has_aux=True)(s.params, x, y, w)

    take_gradient = gradient
    capped = s.step >= hyper.max_steps
    right = lambda logits, y: jnp.sum(predictions(logits) == y)  # noqa: E731
    target = lambda logits_N: right(logits_N, y_N) >= hyper.need  # noqa: E731  (n: zero error)
    if not check:  # under a fixed budget (spec.budget) the cap is the seed's goal: reaching it converges
        (loss, (logits, model_state)), grads = gradient()
        bad = ~jnp.isfinite(loss) | ~jnp.all(jnp.isfinite(logits))
        return _update(s, opt, grads, model_state, s.done | bad | capped, capped & spec.budget, bad)
    if check_reuses_forward(spec, len(x_NxD)):  # the gradient's forward pass was the check's: it costs nothing
        (loss, (logits_N, model_state)), grads = gradient()
        zero_error = target(logits_N)
        bad = ~jnp.isfinite(loss) | ~jnp.all(jnp.isfinite(logits_N))
        return _update(s, opt, grads, model_state, s.done | zero_error | bad | capped, zero_error, bad)
    if alone and check_shares_minibatch(spec, len(x_NxD)):
        # the minibatch's logits are the check's on those examples: one forward pass serves
        # both, the check evaluates the other n - batch examples only, and the backward
        # pass is the gradient's only work of its own. (Vmapped, the seeds' inputs for the
        # check are one shared x; gathering each seed's other examples costs more than the
        # forward pass it saves at small widths: mnist p = 10, PERFORMANCE.md.)
        idx, rest, w = batch_split(s.batch_key, s.step, len(x_NxD), spec.batch_size)
        y_B = y_N[idx]
        loss, backward, (logits_B, model_state) = jax.vjp(lambda p: loss_fn(p, x_NxD[idx], y_B, w), s.params,
                                                          has_aux=True)
        logits_R = apply_in_batches(model, {**frozen, **s.params}, x_NxD, s.model_state, rows=rest)
        zero_error = right(logits_B, y_B) + right(logits_R, y_N[rest]) >= hyper.need
        bad_check = ~jnp.all(jnp.isfinite(logits_B)) | ~jnp.all(jnp.isfinite(logits_R))
        take_gradient = lambda: ((loss, (None, model_state)), backward(jnp.ones_like(loss))[0])  # noqa: E731
    else:  # the check sees the whole unaugmented set in inference mode, before any gradient
        logits_N = apply_in_batches(model, {**frozen, **s.params}, x_NxD, s.model_state)
        zero_error = target(logits_N)
        bad_check = ~jnp.all(jnp.isfinite(logits_N))
    halt = s.done | zero_error | bad_check | capped

    def go(_):  # a non-finite minibatch loss stops the seed too, before its update is made
        (loss, (_, model_state)), grads = take_gradient()
        bad_loss = ~jnp.isfinite(loss) & ~halt
        return _update(s, opt, grads, model_state, halt | bad_loss, zero_error, bad_check | bad_loss)

    if not alone:
        return go(None)
    return jax.lax.cond(halt, lambda _: _halted(s, zero_error, bad_check), go, None)


def _halted(s: SeedState, zero_error, bad) -> SeedState:
    """The seed's state after a check that stops it: `_update`'s with `stop`, no update made."""
    return s._replace(done=jnp.ones_like(s.done), **_outcome(s, zero_error, bad))


def _outcome(s: SeedState, zero_error, bad) -> dict:
    """converged and diverged after a step: kept if the seed was done, else this step's."""
    return {"converged": jnp.where(s.done, s.converged, zero_error & ~bad),
            "diverged": jnp.where(s.done, s.diverged, bad)}


def check_reuses_forward(spec: PhaseSpec, n: int) -> bool:
    """Whether a checked step's zero-error check is its gradient's own forward pass: the
    whole training set, unaugmented, no BatchNorm."""
    full = spec.batch_size is None or spec.batch_size >= n
    return full and _trains_as_it_checks(spec)


def check_shares_minibatch(spec: PhaseSpec, n: int) -> bool:
    """Whether a checked step's minibatch forward pass can serve as the check's on those
    examples: unaugmented minibatches that split the set into equal batches, on a model
    whose training mode is its inference mode (no BatchNorm). A one-seed group does so."""
    return equal_batches(spec.batch_size, n) and _trains_as_it_checks(spec)


def equal_batches(batch_size: int | None, n: int) -> bool:
    """Whether minibatches of batch_size split n examples into equal batches, more than one."""
    return batch_size is not None and batch_size < n and n % batch_size == 0


def _trains_as_it_checks(spec: PhaseSpec) -> bool:
    """Whether an update's forward pass computes what the check's does on the same
    examples: inputs unaugmented, a model without BatchNorm (training mode is inference)."""
    return spec.augment == "none" and not has_state(spec.model)


def check_is_the_step(spec: PhaseSpec, n: int) -> bool:
    """Whether a phase's zero-error check adds no computation of its own: it has no check
    (a budget), or the check reuses the gradient's forward pass (`check_reuses_forward`).
    (A one-seed group's check that shares the minibatch's forward pass still evaluates
    the other examples: `check_shares_minibatch`.)"""
    return spec.budget or check_reuses_forward(spec, n)


CHECK_BATCH = 2048  # examples per forward pass of a check on a large training set


def apply_in_batches(model: Model, params, x_NxD, model_state, batch: int = CHECK_BATCH, rows=None):
    """model.apply in inference mode on all n examples (or on x_NxD[rows]), `batch` at a
    time (a sequential lax.map) once there are more than `batch`, so that a check on
    50,000 images never holds all their activations, nor a gathered copy of them, at
    once; each example's logits are the same either way."""
    n = x_NxD.shape[0] if rows is None else rows.shape[0]
    if n <= batch:
        return model.apply(params, x_NxD if rows is None else x_NxD[rows], model_state)
    parts = -(-n // batch)
    if rows is None:
        padded = jnp.concatenate([x_NxD, jnp.zeros((parts * batch - n, *x_NxD.shape[1:]), x_NxD.dtype)])
        out = jax.lax.map(lambda xb: model.apply(params, xb, model_state),
                          padded.reshape(parts, batch, *x_NxD.shape[1:]))
    else:
        padded = jnp.concatenate([rows, jnp.zeros(parts * batch - n, rows.dtype)]).reshape(parts, batch)
        out = jax.lax.map(lambda rb: model.apply(params, x_NxD[rb], model_state), padded)
    return out.reshape(parts * batch, *out.shape[2:])[:n]


def _update(s: SeedState, opt, grads, model_state, stop, zero_error, bad) -> SeedState:
    """The seed's next state: updated unless it stops (or stopped before)."""
    updates, opt_state = opt.update(grads, s.opt_state, s.params)
    params = optax.apply_updates(s.params, updates)
    keep = lambda old, new: jax.tree.map(lambda o, n: jnp.where(stop, o, n), old, new)  # noqa: E731
    return SeedState(
        params=keep(s.params, params),
        opt_state=keep(s.opt_state, opt_state),
        step=s.step + (~stop).astype(jnp.int32),
        done=stop,
        **_outcome(s, zero_error, bad),
        batch_key=s.batch_key,
        model_state=keep(s.model_state, model_state),
    )


def _run_chunk(spec, state, frozen, x, y, hyper, chunk_len=None):
    """Up to chunk_len (default spec.chunk_steps) iterations of every seed; ends early
    once all seeds are done.

    The loop runs over the whole seed batch (a vmapped step inside one while_loop), not
    a vmapped while_loop: finished seeds are held by the step's own mask, and XLA need
    not select every state leaf a second time per iteration. A group of one seed runs
    the step unbatched (no seed axis of size 1 in its matmuls), as a per-seed loop would.
    """
    alone = state.step.shape[0] == 1  # static: the group's seed count

    def steps(check: bool):
        one = lambda s, f, xx, yy, h: _step(spec, h, f, xx, yy, s, check, alone)  # noqa: E731
        return one if alone else jax.vmap(one, in_axes=(0, 0, 0 if spec.x_batched else None, 0, 0))

    if alone:
        first = lambda t: jax.tree.map(lambda a: a[0], t)  # noqa: E731
        out = _loop(spec, steps, first(state), first(frozen), first(x) if spec.x_batched else x, first(y),
                    first(hyper), chunk_len)
        return jax.tree.map(lambda a: a[None], out)
    return _loop(spec, steps, state, frozen, x, y, hyper, chunk_len)


def _loop(spec, steps, state, frozen, x, y, hyper, chunk_len):
    """The while loop of `_run_chunk` over `steps(check)` (`_step`, vmapped or not)."""
    checked, unchecked = steps(True), steps(False)
    step = lambda s: checked(s, frozen, x, y, hyper)  # noqa: E731
    plain = lambda s: unchecked(s, frozen, x, y, hyper)  # noqa: E731  (no zero-error check)

    def cond(carry):
        i, s = carry
        return (i < (spec.chunk_steps if chunk_len is None else chunk_len)) & ~jnp.all(s.done)

    def body(carry):  # an iteration: a checked step, then check_every - 1 unchecked ones
        i, s = carry
        s = (plain if spec.budget else step)(s)
        if spec.check_every > 1:
            s = jax.lax.fori_loop(0, spec.check_every - 1, lambda _, t: plain(t), s)
        return i + 1, s

    return jax.lax.while_loop(cond, body, (jnp.int32(0), state))[1]


def initial_opt_state(spec: PhaseSpec | None, hyper: Hyper, trainable) -> optax.OptState:
    """Every seed's optimizer state before its first step, as host zeros: the states of
    SGD (with momentum and weight decay) and Adam all start at zero (traces, moments
    and step counts), so no program needs compiling (tests/test_train.py checks it
    against optax's own init)."""
    shapes = jax.eval_shape(jax.vmap(lambda h, t: make_optimizer(h.lr, spec, h).init(t)), hyper, trainable)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def host_init_state(trainable, batch_keys, hyper: Hyper | float, spec: PhaseSpec | None = None, donate: bool = False,
                    model_state: dict | None = None) -> SeedState:
    """Every seed's initial trainer state, as host arrays. The state is updated in place,
    so the params are copied once, unless `donate` hands over writable host arrays.
    `model_state`: every seed's running statistics (default: none, a model without)."""
    n = batch_keys.shape[0]
    if not isinstance(hyper, Hyper):  # a step size alone: its optimizer's state has the same shape
        hyper = make_hyper(n, hyper, 0, 0)
    zeros = lambda dtype: np.zeros(n, dtype)  # noqa: E731
    own = lambda a: a if donate and isinstance(a, np.ndarray) and a.flags.writeable else np.array(a)  # noqa: E731
    return SeedState(
        params=jax.tree.map(own, trainable),
        opt_state=initial_opt_state(spec, hyper, trainable),
        step=zeros(np.int32), done=zeros(bool), converged=zeros(bool), diverged=zeros(bool),
        batch_key=np.array(batch_keys), model_state=jax.tree.map(own, model_state or {}),
    )


@dataclass
class CompileStats:
    """Compile seconds and in-process cache hits, read by the sweep's manifest."""

    seconds: float = 0.0
    hits: int = 0
    misses: int = 0


COMPILE_STATS = CompileStats()
_CACHE: dict = {}


def compiled(fn: Callable, spec, *args):
    """AOT-compile fn(spec, *args) once per (fn, spec, argument shapes and shardings)
    and cache it."""
    sig = jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a), getattr(a, "sharding", None)), args)
    key = (fn, spec, jax.tree.structure(args), tuple(jax.tree.leaves(sig)))
    if key in _CACHE:
        COMPILE_STATS.hits += 1
        return _CACHE[key]
    t0 = time.perf_counter()
    exe = jax.jit(fn, static_argnums=0).lower(spec, *args).compile()
    COMPILE_STATS.seconds += time.perf_counter() - t0
    COMPILE_STATS.misses += 1
    _CACHE[key] = exe
    return exe


@contextlib.contextmanager
def deferred_interrupts():
    """Ctrl-C and SIGTERM during a phase take effect between chunks, after the state is
    saved, so that no save is ever cut in half. A second Ctrl-C stops at once."""
    hit = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if hit:
            raise KeyboardInterrupt
        hit.append(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(hit)
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


class Store(Protocol):
    """Where a phase's state is saved and restored (advjax.checkpoint.PhaseStore)."""

    def restore(self, like: SeedState) -> SeedState | None: ...
    def due(self, max_step: int) -> bool: ...
    def save(self, state: SeedState, complete: bool) -> None: ...


SEED_AXIS = "seeds"
CHUNK_SECONDS = 1.0


@functools.lru_cache(maxsize=64)
def _batched_init(model: Model):
    """One compiled vmapped init per model (a new jit of a new vmap would compile anew),
    compiled as a program that runs once (`devices.jit_draw`)."""
    return jit_draw(jax.vmap(model.init))


def init_params(model: Model, keys: jax.Array, batch: int) -> dict:
    """Every seed's initial parameters as host arrays, made `batch` seeds at a time so
    that the device never holds the init's intermediates for all seeds at once."""
    keys = np.asarray(keys)
    shapes = jax.eval_shape(jax.vmap(model.init), keys)
    out = jax.tree.map(lambda s: np.empty(s.shape, s.dtype), shapes)
    init = _batched_init(model)
    for a in range(0, len(keys), batch):
        for whole, part in zip(jax.tree.leaves(out), jax.tree.leaves(init(keys[a: a + batch]))):
            whole[a: a + len(part)] = np.asarray(part)
    return out


def seed_mesh(devices=None) -> Mesh:
    """A 1-D mesh over all devices (all hosts' in a multi-process run): seeds are split
    over it, each device training its own share with no communication."""
    return Mesh(np.array(devices if devices is not None else jax.devices()), (SEED_AXIS,))


def unit_layout(n_live: int, unit: int, n_devices: int, per_device: int) -> tuple[int, np.ndarray, np.ndarray]:
    """How n_live seeds (blocks of `unit`) sit in a program that gives each device
    `per_device` rows of every block: (blocks, take, back). Block b's padded row r (its
    last seed repeated into the padding, dropped after training) goes to device
    r // per_device, after the rows of blocks 0..b-1 there, exactly where it would be
    in a program of that block alone. `take`: program row -> seed; `back`: seed ->
    program row."""
    n_units, width = -(-n_live // unit), n_devices * per_device
    take, back = np.empty(n_units * width, np.int64), np.empty(n_live, np.int64)
    for b in range(n_units):
        real = min(unit, n_live - b * unit)
        pos = np.arange(width)
        device, row = np.divmod(pos, per_device)
        where = device * (n_units * per_device) + b * per_device + row
        take[where] = b * unit + np.minimum(pos, real - 1)
        back[b * unit: b * unit + real] = where[:real]
    return n_units, take, back


def gather(tree, copy: bool = True):
    """Host numpy copies of (possibly multi-process, sharded) arrays, on every process.
    Without `copy`: read-only views where the arrays allow (one CPU device's buffers),
    for a caller that copies what it keeps."""
    from jax.experimental import multihost_utils

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return np.asarray(multihost_utils.process_allgather(a, tiled=True))
        return a if isinstance(a, np.ndarray) else np.array(a) if copy else np.asarray(a)

    return jax.tree.map(one, tree)


def distribute(tree, sharding: NamedSharding):
    """Global arrays from host values that every process holds alike: each process
    places the shards its own devices own (works across hosts and on one)."""
    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)


def _take_rows(tree, rows: np.ndarray):
    """Rows `rows` of every leaf: the leaf itself where they are all its rows in order."""
    if all(len(a) == len(rows) for a in jax.tree.leaves(tree)) and np.array_equal(rows, np.arange(len(rows))):
        return tree
    return jax.tree.map(lambda a: a[rows], tree)


def _set_rows(tree, sl: slice | np.ndarray, part):
    """Write some seeds' rows (a slice or indices) into the host state, in place (no
    copy of all seeds)."""
    def one(a, b):
        a[sl] = b
        return a

    return jax.tree.map(one, tree, part)


def in_flight(n_seeds: int, block: int | None, max_in_flight: int | None) -> tuple[int, int]:
    """(unit, flight) of `train`: seeds laid out together as one run of them alone (a
    block, or a batch where a block does not fit), and seeds on the devices at once."""
    block = block or n_seeds
    flight = min(n_seeds, max_in_flight or n_seeds)
    # Whole blocks in flight where they fit, each laid out as a run of its seeds alone;
    # else batches of `flight` seeds, blocks or not.
    unit = block if flight >= block else flight
    return unit, flight // unit * unit


SEED_GROUPS = ("auto", "cache", "device")
MATMUL_PRECISIONS = ("default", "high", "highest")
DEVICE_GROUP = 1 << 62  # `group_elements` that puts all of a device's seeds in flight in one group


def seed_layout(setting: str, platform: str) -> str:
    """The seed layout a platform gets: "cache" (groups of about `PhaseSpec.group_elements`
    floats, one after another: a CPU's cache holds a group) or "device" (a device's seeds
    in flight in one group: a GPU's or TPU's parallelism). `setting` "auto" chooses by
    platform ("cpu", "gpu", "cuda", "rocm", "tpu", ...); "cache" and "device" are kept."""
    if setting not in SEED_GROUPS:
        raise ValueError(f"unknown seed layout {setting!r}; choose one of {', '.join(SEED_GROUPS)}")
    if setting != "auto":
        return setting
    return "cache" if platform == "cpu" else "device"


def group_elements_of(layout: str) -> int:
    """`PhaseSpec.group_elements` for a seed layout."""
    return DEVICE_GROUP if layout == "device" else PhaseSpec.group_elements


def seed_groups(spec: PhaseSpec, n: int, n_local: int) -> tuple[int, int]:
    """(groups, seeds per group) for a device holding n_local seeds: groups as large as
    fit spec.group_elements floats of a seed's activations on its n training points and
    its parameters (sizes from the model, by jax.eval_shape)."""
    per_seed = n * activations_per_example(spec.model) + n_parameters(spec.model)
    biggest = max(1, spec.group_elements // per_seed)
    n_groups = -(-n_local // biggest)
    return n_groups, -(-n_local // n_groups)


def _run_chunk_grouped(spec, n_groups, state, frozen, x, y, hyper, chunk_len):
    """This device's seeds in n_groups groups, one after the other, so that a group's
    activations stay in cache (at p = 1000 on 2-D data this doubles CPU throughput)."""
    if n_groups == 1:
        return _run_chunk(spec, state, frozen, x, y, hyper, chunk_len)
    split = lambda t: jax.tree.map(lambda a: a.reshape(n_groups, -1, *a.shape[1:]), t)  # noqa: E731
    xs = split(x) if spec.x_batched else jnp.zeros(n_groups)

    def group(args):
        s, f, xx, yy, h = args
        return _run_chunk(spec, s, f, xx if spec.x_batched else x, yy, h, chunk_len)

    out = jax.lax.map(group, (split(state), split(frozen), xs, split(y), split(hyper)))
    return jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:]), out)


def _run_chunk_sharded(static, state, frozen, x, y, hyper, chunk_len):
    spec, mesh, n_groups = static
    seeds = P(SEED_AXIS)
    local = jax.shard_map(
        functools.partial(_run_chunk_grouped, spec, n_groups), mesh=mesh,
        in_specs=(seeds, seeds, seeds if spec.x_batched else P(), seeds, seeds, P()),
        out_specs=seeds, check_vma=False,
    )
    return local(state, frozen, x, y, hyper, chunk_len)


COMPACT_EVERY_MIN = 64  # fewest loop iterations between two compaction points


def compaction_point(it: int) -> int:
    """The first compaction point after loop iteration `it`: a multiple of 1/8 to 1/16
    of the iterations so far (at least COMPACT_EVERY_MIN), so that a run compacts at
    the same step counts whatever its chunks' (time-adaptive) lengths."""
    q = max(COMPACT_EVERY_MIN, 1 << max(0, it.bit_length() - 4))
    return (it // q + 1) * q


@dataclass
class CompactionStats:
    """Regroupings of the seed groups in flight (read by tests and the sweep's manifest)."""

    relayouts: int = 0  # live groups gathered into a new layout
    smaller_programs: int = 0  # ... of those, into a program of fewer rows
    repacks: int = 0  # ... of those, live seeds repacked into new groups (`repack`)


COMPACTION_STATS = CompactionStats()


class GroupLayout(NamedTuple):
    """Which of a batch's seed groups the chunk program runs, and where.

    A group is `group` consecutive rows of the batch's full layout (`unit_layout`'s
    `take`), always run whole, so a seed keeps the same neighbours side by side
    wherever its group runs. `slots` lists, device by device, the group in each of the
    program's group slots; -1 marks an idle slot (a copy of some group, marked done).
    """

    take: np.ndarray  # full layout: row -> seed of the batch
    back: np.ndarray  # owners[i] -> its own (unpadded) row in the full layout
    group: int
    slots: np.ndarray  # (devices, slots a device): full-layout group ids, -1 idle
    owners: np.ndarray  # the batch's seeds the full layout holds (all of them, until a repack)

    @property
    def rows(self) -> np.ndarray:
        """Program row -> full-layout row (idle slots repeat the first group's)."""
        first = self.slots[self.slots >= 0][0]
        g = np.where(self.slots >= 0, self.slots, first).reshape(-1)
        return (g[:, None] * self.group + np.arange(self.group)).reshape(-1)

    @property
    def idle_rows(self) -> np.ndarray:
        return np.repeat(self.slots.reshape(-1) < 0, self.group)

    def placed(self) -> tuple[np.ndarray, np.ndarray]:
        """(seeds whose own row is in the program, that row's program index)."""
        slot_of = np.full(len(self.take) // self.group, -1)
        flat = self.slots.reshape(-1)
        slot_of[flat[flat >= 0]] = np.flatnonzero(flat >= 0)
        at = slot_of[self.back // self.group]
        here = np.flatnonzero(at >= 0)
        return self.owners[here], at[here] * self.group + self.back[here] % self.group

    def compacted(self, done: np.ndarray, busy: np.ndarray) -> GroupLayout | None:
        """The live groups (holding a seed not `done`) spread evenly over the devices,
        in a program of half the slots or fewer once they fit it; None when that would
        not shorten a chunk (the busiest device's count of `busy` slots, those with any
        row not done, padding included, is already as low as it can be)."""
        n_devices, n_slots = self.slots.shape
        live = np.unique(self.back[~done[self.owners]] // self.group)
        fair = -(-len(live) // n_devices)
        if busy.reshape(n_devices, n_slots).sum(1).max() <= fair:
            return None
        slots = fair if 2 * len(live) <= n_devices * n_slots else n_slots
        out = np.full(slots * n_devices, -1)
        out[: len(live)] = live
        return self._replace(slots=out.reshape(slots, n_devices).T.copy())  # group k -> device k % n


def repacked(done: np.ndarray, unit: int, n_devices: int, groups_of: Callable[[int], tuple[int, int]]
             ) -> GroupLayout:
    """A full layout of the live seeds alone (with --repack): each block of `unit` seeds
    keeps only its seeds not `done`, laid out over the devices as `unit_layout` lays out
    a block, in groups sized anew for the largest block's live count
    (`groups_of(seeds a device)`, `seed_groups`): fewer seeds side by side, which on a
    CPU can change a seed's last bits."""
    lives = [b + np.flatnonzero(~done[b: b + unit]) for b in range(0, len(done), unit)]
    lives = [seeds for seeds in lives if len(seeds)]
    n_groups, group = groups_of(-(-max(map(len, lives)) // n_devices))
    per_device = n_groups * group
    takes, backs = [], []
    for j, seeds in enumerate(lives):
        _, take, back = unit_layout(len(seeds), len(seeds), n_devices, per_device)
        takes.append(seeds[take].reshape(n_devices, per_device))
        device, row = np.divmod(back, per_device)
        backs.append(device * len(lives) * per_device + j * per_device + row)
    take = np.concatenate(takes, axis=1).reshape(-1)
    return GroupLayout(take, np.concatenate(backs), group, np.arange(len(take) // group).reshape(n_devices, -1),
                       np.concatenate(lives))


@dataclass(frozen=True)
class Numbers:
    """A phase's traced numbers: one value for all seeds or one per seed. `need`: training
    points right that stop a seed (default: all of them); momentum and weight decay are
    read from here where spec.per_seed names them (a grid varies them)."""

    lr: float | np.ndarray
    max_steps: int | np.ndarray
    need: int | np.ndarray | None = None
    momentum: float | np.ndarray = 0.0
    weight_decay: float | np.ndarray = 0.0


@dataclass(frozen=True)
class RunOptions:
    """How `train` runs a phase; none of it changes results (`repack` aside: see there)."""

    progress: Callable[[int, int, int, int], None] | None = None  # (done, seeds, max step, seed-steps) a chunk
    store: Store | None = None  # checkpoints: resume from its newest save, save as it decides and on Ctrl-C
    mesh: Mesh | None = None  # default: all devices, of all processes
    max_in_flight: int | None = None  # seeds on the devices at once (None: all)
    donate: bool = False  # host numpy params0 become the state and are overwritten
    block: int | None = None  # a grid point's seeds: each block is laid out as a run of its seeds alone
    compact: bool = True  # regroup the live seed groups at the compaction points
    repack: bool = False  # ... and repack live seeds into smaller groups (can change last bits)


def train(spec: PhaseSpec, params0: dict, x: jax.Array, y: jax.Array, batch_keys: jax.Array, numbers: Numbers,
          run: RunOptions = RunOptions(), state0: dict | None = None) -> Outcome:
    """Train every seed of `params0` (leading axis = seeds) on (x, y) to zero error.

    y carries the seed axis; x does when spec.x_batched, else it is shared by all seeds.
    `numbers` (lr, max_steps, need, momentum, weight decay) are one value for all seeds
    or one per seed. `run` says how it runs (RunOptions). Seeds come in blocks of `block` (a grid point's seeds;
    default: all of them, one block): each block in flight is padded, split over the
    devices and grouped exactly as a run of its seeds alone, so that on a given machine
    a grid point's seeds train bit for bit as they would without the grid (XLA's CPU
    code can round differently for another number of seeds side by side).
    Seeds are split over the devices of `mesh` (default: all devices, of all processes
    in a multi-process run), padded to a multiple of their count; each device loops over
    its own seeds until they are done. At most `max_in_flight` seeds are on the devices
    at once: larger seed sets run in batches, one after the other, through the same
    compiled program. `progress(n_done, n_seeds, max_step_so_far, seed_steps)` is called
    after each chunk (seed_steps: updates applied so far, summed over seeds). With a
    `store`, the run continues from its newest save, saves between chunks as the store
    decides and on Ctrl-C, and saves the final state marked complete. The
    store sees the whole unpadded state as host arrays, so a save restores on any
    device or process count. With `donate`, host numpy params0 become the state and are
    overwritten (one copy of every seed's parameters less). `state0`: every seed's
    running statistics at the start (default: the model's initial ones); the layers
    trained update theirs, the frozen layers' stay as they are. `compact`: regroup the
    live seed groups at the compaction points (module docstring); results are the same
    either way. A resumed batch starts in its full layout (repacked as the run was, with
    `repack`) and compacts from the next compaction point on. `repack` (with `compact`):
    also repack the live seeds into smaller groups, which can change their last bits.
    """
    mesh = run.mesh or seed_mesh()
    n_seeds = batch_keys.shape[0]
    unit, flight = in_flight(n_seeds, run.block, run.max_in_flight)
    params0, x, y, batch_keys = gather((params0, x, y, batch_keys))
    trainable = {k: v for k, v in params0.items() if k in spec.trainable}
    frozen = {k: v for k, v in params0.items() if k not in spec.trainable}
    n_train = y.shape[-1]  # x may be (seeds,) n examples of any shape: points, vectors, images
    need = n_train if numbers.need is None else numbers.need
    hyper = make_hyper(n_seeds, numbers.lr, numbers.max_steps, need, numbers.momentum, numbers.weight_decay)
    # The state of every seed lives on the host; only the batch in flight is on devices.
    state0 = initial_states(spec.model, n_seeds) if state0 is None else gather(state0)
    like = host_init_state(trainable, batch_keys, hyper, spec, donate=run.donate, model_state=state0)
    restored = run.store.restore(like) if run.store is not None else None
    state = jax.tree.map(lambda a: a if a.flags.writeable else np.array(a),
                         restored if restored is not None else like)
    was_complete = restored is not None and bool(state.done.all())
    flying = _InFlight(spec, run, mesh, unit, (frozen, x, y, hyper))
    with deferred_interrupts() as interrupted:
        for b0 in range(0, n_seeds, flight):
            sl = slice(b0, min(b0 + flight, n_seeds))
            if not state.done[sl].all():
                state = flying.batch(sl, state, interrupted)
        if run.store is not None and not was_complete:
            run.store.save(state, complete=True)
        if interrupted():  # arrived in the last chunk: the finished phase is saved first
            raise KeyboardInterrupt
    if was_complete and run.progress is not None:
        run.progress(n_seeds, n_seeds, int(state.step.max()), int(state.step.sum()))
    return Outcome(params={**frozen, **state.params}, steps=state.step, converged=state.converged,
                   diverged=state.diverged, state=state.model_state)


class _InFlight:
    """One batch of seeds after another on the devices: its layout of seed groups, its
    compiled chunk program, compaction and repacks, progress and saves (`train`)."""

    def __init__(self, spec: PhaseSpec, run: RunOptions, mesh: Mesh, unit: int, inputs: tuple):
        self.spec, self.run, self.mesh, self.unit = spec, run, mesh, unit
        self.frozen, self.x, self.y, self.hyper = inputs
        self.repack = run.repack and run.compact
        self.n_groups, self.group = seed_groups(spec, self.y.shape[-1], -(-unit // mesh.size))
        self.split = NamedSharding(mesh, P(SEED_AXIS))
        self.shared = NamedSharding(mesh, P())
        self.x_shared = None if spec.x_batched else distribute(self.x, self.shared)
        self.chunk_len = min(spec.chunk_steps, 16)

    def repack_at(self, done: np.ndarray, packed_rows: int) -> tuple[GroupLayout, int] | None:
        """The batch's live seeds repacked, once they fit half the rows of the last repack."""
        spec, y = self.spec, self.y
        new = repacked(done, self.unit, self.mesh.size, lambda n_local: seed_groups(spec, y.shape[-1], n_local))
        rows = new.take.size // self.mesh.size
        return (new, rows) if 2 * rows <= packed_rows else None

    def place(self, sl: slice, layout: GroupLayout, state: SeedState):
        """The batch's state and inputs in the layout's rows, on the devices, and its program."""
        spec, split = self.spec, self.split
        rows = layout.take[layout.rows]
        pick = lambda tree: distribute(jax.tree.map(lambda a: a[sl][rows], tree), split)  # noqa: E731
        host = jax.tree.map(lambda a: a[sl][rows], state)
        host.done[layout.idle_rows] = True  # an idle slot's copy has nothing to do
        live = distribute(host, split)
        args = (pick(self.frozen), pick(self.x) if spec.x_batched else self.x_shared, pick(self.y), pick(self.hyper))
        chunk = distribute(np.int32(0), self.shared)
        return live, args, compiled(_run_chunk_sharded, (spec, self.mesh, layout.slots.shape[1]), live, *args, chunk)

    def first_layout(self, sl: slice, state: SeedState) -> tuple[GroupLayout, int, int, int | None]:
        """The batch's layout at its start (a resumed run: after the repacks it had made),
        the rows a device held at the last repack, the loop iteration and the next
        compaction point (None: never)."""
        spec, mesh = self.spec, self.mesh
        _, take, back = unit_layout(sl.stop - sl.start, self.unit, mesh.size, self.n_groups * self.group)
        layout = GroupLayout(take, back, self.group, np.arange(len(take) // self.group).reshape(mesh.size, -1),
                             np.arange(sl.stop - sl.start))
        packed_rows = len(take) // mesh.size  # rows a device at the start or the last repack
        steps = state.step[sl]
        it = int(steps[~state.done[sl]].max()) // spec.check_every  # live seeds all share their step count
        # one group slot a device and no repack: nothing to spread, and no chunk cut short for it
        point = compaction_point(it) if self.run.compact and (self.repack or layout.slots.shape[1] > 1) else None
        if self.repack:  # a resumed run: the repacks up to here again, from the step at which each seed stopped
            stopped_after = steps // spec.check_every + 1  # loop iterations (see _step)
            at = compaction_point(0)
            while at <= it:
                again = self.repack_at(state.done[sl] & (stopped_after <= at), packed_rows)
                layout, packed_rows = again or (layout, packed_rows)
                at = compaction_point(at)
        return layout, packed_rows, it, point

    def batch(self, sl: slice, state: SeedState, interrupted: Callable[[], bool]) -> SeedState:
        """Train the batch's seeds (rows `sl` of the host state) until every one is done;
        saves between chunks as the store decides, and on an interrupt before raising."""
        run, shared = self.run, self.shared
        n_seeds = len(state.done)
        layout, packed_rows, it, point = self.first_layout(sl, state)
        steps_elsewhere = int(state.step.sum()) - int(state.step[sl].sum())
        steps = state.step[sl].copy()
        live, args, run_chunk = self.place(sl, layout, state)
        placed, rows = layout.placed()
        while True:
            run_len = self.chunk_len if point is None else min(self.chunk_len, point - it)
            t0 = time.perf_counter()
            live = run_chunk(live, *args, distribute(np.int32(run_len), shared))
            done_p, steps_p = gather((live.done, live.step))  # waits
            self.adapt(time.perf_counter() - t0, run_len)
            it += run_len
            state.done[sl.start + placed] = done_p[rows]
            steps[placed] = steps_p[rows]
            max_step = int(steps.max())
            if run.progress is not None:
                run.progress(int(state.done.sum()), n_seeds, max_step, steps_elsewhere + int(steps.sum()))
            finished, stop = bool(state.done[sl].all()), interrupted()
            save = run.store is not None and not finished and (stop or run.store.due(max_step))
            smaller = again = None
            if point is not None and it == point and not finished and not stop:
                point = compaction_point(it)
                again = self.repack_at(state.done[sl], packed_rows) if self.repack else None
                if again is not None:
                    smaller, packed_rows = again
                else:
                    smaller = layout.compacted(state.done[sl], ~done_p.reshape(-1, layout.group).all(1))
            if finished or save or smaller is not None:  # bring the placed seeds' full state back to the host
                back_home = _take_rows(gather(live, copy=False), rows)  # copied once, into the host state
                state = _set_rows(state, sl.start + placed, back_home)
            if save:
                run.store.save(state, complete=False)
            if finished:
                return state
            if stop:
                raise KeyboardInterrupt
            if smaller is not None:  # the live groups alone, spread over the devices
                COMPACTION_STATS.relayouts += 1
                COMPACTION_STATS.smaller_programs += smaller.rows.size < layout.rows.size
                COMPACTION_STATS.repacks += again is not None
                layout = smaller
                live, args, run_chunk = self.place(sl, layout, state)
                placed, rows = layout.placed()

    def adapt(self, seconds: float, run_len: int) -> None:
        """Aim at CHUNK_SECONDS a call: prompt progress and saves, little overhead."""
        per_iteration = max(seconds, 1e-3) / run_len
        self.chunk_len = int(min(self.spec.chunk_steps, max(1, min(CHUNK_SECONDS / per_iteration,
                                                                   4.0 * self.chunk_len))))


class Metrics(NamedTuple):
    train_acc: jax.Array
    train_loss: jax.Array
    test_acc: jax.Array


EVAL_FLOATS = 1 << 29  # activation floats (2 GB) one seed's evaluation pass may hold at once


def apply_bounded(model: Model, params, x_NxD, model_state):
    """model.apply in inference mode on every example, in batches (`apply_in_batches`)
    once all n examples' activations would pass EVAL_FLOATS: the 50,000 CIFAR-10
    training images through a ResNet-18 would need 111 GB at once, 2 GB a batch.
    Smaller sets (every N_p run, the CNN on MNIST up to width 64) are one pass, as before."""
    n, units = x_NxD.shape[0], forward_floats_per_example(model)
    return apply_in_batches(model, params, x_NxD, model_state,
                            batch=n if n * units <= EVAL_FLOATS else max(1, EVAL_FLOATS // units))


def _evaluate_one(model: Model, params, state, x_tr, y_tr, x_te, y_te) -> Metrics:
    logits_tr = apply_bounded(model, params, x_tr, state)
    return Metrics(
        train_acc=jnp.mean(predictions(logits_tr) == y_tr),
        train_loss=per_example_loss(logits_tr, y_tr).mean(),
        test_acc=jnp.mean(predictions(apply_bounded(model, params, x_te, state)) == y_te),
    )


def _evaluate(static, params, state, x_tr, y_tr, x_te, y_te):
    model, train_batched, test_batched = static
    a, b = (0 if train_batched else None), (0 if test_batched else None)
    fn = lambda p, st, *d: _evaluate_one(model, p, st, *d)  # noqa: E731
    return jax.vmap(fn, in_axes=(0, 0, a, 0, b, b))(params, state, x_tr, y_tr, x_te, y_te)


def evaluate(model: Model, params, split, y_tr, batched: bool, state: dict | None = None):
    """Train accuracy and mean loss on (split.x_train, y_tr), test accuracy on
    (split.x_test, split.y_test), per seed (numpy), in inference mode (`state`: every
    seed's running statistics, for a BatchNorm model).

    y_tr carries the seed axis; the split's arrays do when `batched`.
    """
    static = (model, batched, batched)
    # On one device: XLA may order a sharded reduction differently, and results.csv must
    # not depend on how many devices trained the seeds (training itself is bit-identical).
    args = (params, state or {}, split.x_train, y_tr, split.x_test, split.y_test)
    args = jax.device_put(args, jax.local_devices()[0])
    out = compiled(_evaluate, static, *args)(*args)
    return Metrics(*(np.asarray(v) for v in out))


def evaluate_in_batches(model: Model, params, split, y_train, batched: bool, batch: int, state: dict):
    """`evaluate` over seeds in batches of at most `batch`, so the test logits of many wide
    seeds never sit in memory at once (`state`: the seeds' running statistics, {} without
    BatchNorm)."""
    n = len(y_train)
    n_test = split.x_test.shape[1 if batched else 0]  # examples lead (after the seed axis): x may be images
    step = max(1, min(batch, (2**27) // max(1, activations_per_example(model) * max(n_test, 1))))
    parts = []
    for a in range(0, n, step):
        sl = slice(a, min(a + step, n))
        rows = lambda tree, sl=sl: jax.tree.map(lambda t: t[sl], tree)  # noqa: E731
        parts.append(evaluate(model, rows(params), rows(split) if batched else split, y_train[sl], batched,
                              rows(state)))
    return type(parts[0])(*(np.concatenate(v) for v in zip(*parts)))
