"""Seeds and their key streams: what each seed draws (data, labels, θ0, batches, ...),
independent of which other seeds run beside it.

Seed s owns PRNGKey(s); each source of randomness folds in its own purpose, so fixing
one (e.g. --fix-data) never moves another.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from .data import Dataset, Split, confusion_images, random_labels
from .devices import draw_program
from .experiments import RandomSet

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


@dataclass(frozen=True)
class SeedDraws:
    """Every seed's keys and what they drew: the data split, the true labels
    (seed-batched), the random labels and, with --confusion-copies, phase 1's confusion
    set. With fixed data (or a dataset that cannot be redrawn) one draw, the first
    seed's, is shared by all seeds and x carries no seed axis (x_batched False)."""

    keys: SeedKeys
    split: Split
    y_train: np.ndarray
    y_rand: jax.Array
    x_batched: bool
    random_set: RandomSet | None = None


def redrawn_per_seed(ds: Dataset, fix_data: bool) -> bool:
    """Whether each seed draws its own data (x then carries a seed axis): a dataset that
    can be redrawn, without --fix-data."""
    return ds.redraws and not fix_data


def draw_seeds(ds: Dataset, seeds: list[int], fix_data: bool, confusion: tuple[int, float] = (0, 0.0)) -> SeedDraws:
    """Keys, data, true and random labels of every seed, and the confusion set where
    `confusion` = (--confusion-copies, --zero-out) asks for one."""
    keys, y_rand = _keys_and_random_labels(np.asarray(seeds, np.uint32), ds.n_train, ds.n_classes)
    keys = SeedKeys(*keys)
    x_batched = redrawn_per_seed(ds, fix_data)
    # The data stay eager: under jit XLA fuses their float arithmetic (multiply-adds)
    # and the points would change in their last bits.
    split = jax.vmap(ds.draw)(keys.data) if x_batched else ds.draw(keys.data[0])
    y_train = split.y_train if x_batched else np.tile(np.asarray(split.y_train), (len(seeds), 1))
    random_set = draw_confusion(ds, keys, split, y_train, x_batched, *confusion)
    return SeedDraws(keys, split, y_train, y_rand, x_batched, random_set)


def _keys_and_random_labels(seeds_S: jax.Array, n_train: int, n_classes: int):
    """Every purpose's keys and y_rand in one compiled program (integer arithmetic: the
    same bits as op by op, and one cold compilation instead of a dozen, at LLVM level 1
    on a CPU: `devices.jit_draw`)."""
    return draw_program(_keys_and_labels, (1, 2))(seeds_S, n_train, n_classes)


def _keys_and_labels(seeds_S: jax.Array, n_train: int, n_classes: int):
    keys = seed_keys(seeds_S)
    return dataclasses.astuple(keys), jax.vmap(lambda k: random_labels(k, n_train, n_classes))(keys.labels)


def draw_confusion(ds: Dataset, keys: SeedKeys, split, y_train, x_batched: bool, copies: int, zero_out: float
                   ) -> RandomSet | None:
    """Liu et al.'s confusion set, what phase 1 trains on where --confusion-copies R > 0
    (None otherwise: phase 1 trains on x_train with y_rand): R copies of every training
    example, in each round(F·D) input values zeroed, each copy with a uniform random
    label. Like the data it copies, it is one per seed where each seed draws its own
    data, and the first seed's where the data are shared; its labels are every seed's
    own. All of it comes from the seeds' confusion keys, so no other stream moves."""
    r = copies
    if not r:
        return None
    k_zeroed = lambda k: jax.random.fold_in(k, 0)  # noqa: E731
    zero = ds.zero_value or (lambda key: 0.0)
    copy = lambda k, key_data, x: confusion_images(k_zeroed(k), x, r, zero_out, zero(key_data))  # noqa: E731
    if x_batched:
        x = jax.vmap(copy)(keys.confusion, keys.data, split.x_train)
    else:
        x = copy(keys.confusion[0], keys.data[0], split.x_train)
    y_rand = jax.vmap(lambda k: random_labels(jax.random.fold_in(k, 1), r * ds.n_train, ds.n_classes))(keys.confusion)
    return RandomSet(x=x, y=np.tile(np.asarray(y_train), (1, r)), y_rand=y_rand)
