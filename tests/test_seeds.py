"""Seeds and their key streams: a seed draws the same whichever seeds run beside it."""

import jax
import numpy as np

from advjax.data import make_dataset
from advjax.seeds import KEY_DATA, KEY_INIT, draw_seeds, seed_keys


def test_a_seed_draws_the_same_alone_or_among_others():
    ds = make_dataset("spirals", 20, 30)
    together, alone = draw_seeds(ds, [4, 5, 6], fix_data=False), draw_seeds(ds, [5], fix_data=False)
    for a, b in ((together.split.x_train[1], alone.split.x_train[0]), (together.y_train[1], alone.y_train[0]),
                 (together.y_rand[1], alone.y_rand[0]), (together.keys.init[1], alone.keys.init[0])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()


def test_fixed_data_is_the_first_seeds_draw_shared_and_labels_stay_per_seed():
    ds = make_dataset("circles", 20, 30)
    fixed, free = draw_seeds(ds, [7, 8], fix_data=True), draw_seeds(ds, [7, 8], fix_data=False)
    assert not fixed.x_batched and free.x_batched
    np.testing.assert_array_equal(np.asarray(fixed.split.x_train), np.asarray(free.split.x_train[0]))
    assert fixed.y_train.shape == (2, 20) and not np.array_equal(fixed.y_rand[0], fixed.y_rand[1])
    assert fixed.random_set is None


def test_each_purpose_is_its_own_stream():
    keys = seed_keys([3])
    base = jax.random.PRNGKey(3)
    assert np.array_equal(np.asarray(keys.data[0]), np.asarray(jax.random.fold_in(base, KEY_DATA)))
    assert np.array_equal(np.asarray(keys.init[0]), np.asarray(jax.random.fold_in(base, KEY_INIT)))
    assert not np.array_equal(np.asarray(keys.data[0]), np.asarray(keys.init[0]))
