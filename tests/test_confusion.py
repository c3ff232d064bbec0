"""Liu et al.'s confusion set (--confusion-copies R --zero-out F): phase 1 trains on R
copies of every training example, each with round(F·D) of its D input values zeroed and
its own uniform random label; later phases train on the true training set. R = 0 is
today's y_rand on the training examples, bit for bit.

Most of the time here is compiling: the copies are made by one jitted confusion_images
per shape (`_confusion`, shared by the tests; eager, its lax.map compiles anew at every
call), inputs that only need to be some numbers come from NumPy (each jax.random shape is
a compile), and the two draw tests share their draws (`_draw`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax import run_sweep
from advjax.data import as_images, confusion_images, make_dataset, n_zeroed, standardized, write_cifar_binary
from advjax.experiments import Optimizer, RandomSet, Stops, TrainSettings, WidthRun, experiment, run_phases
from advjax.model import MLP
from advjax.options import from_dict
from advjax.plan import load_data, make_sweep_model, phase_fingerprint
from advjax.seeds import KEY_CONFUSION, draw_seeds, seed_keys
from advjax.train import Numbers, PhaseSpec, train

_confusion = jax.jit(confusion_images, static_argnums=(2, 3))  # one program per shape, copies and F
IMAGES = (5, 4, 4, 3)  # 5 small images, 400 copies each: the copies test's and the uniformity test's program
IMAGE_COPIES = 400


def test_copies_and_zeros_per_copy_on_images_and_vectors():
    key = jax.random.PRNGKey(0)
    rng = np.random.default_rng(1)
    for shape, zero_out, copies in ((IMAGES[1:], 0.25, IMAGE_COPIES), ((10,), 0.1, 3), ((32, 32, 3), 0.1, 3)):
        d = int(np.prod(shape))
        x = rng.uniform(0.1, 1.0, (5, *shape)).astype(np.float32)  # no zero of its own
        out = np.asarray(_confusion(key, x, copies, zero_out))
        assert out.shape == (copies * 5, *shape)
        flat, src = out.reshape(copies, 5, d), x.reshape(5, d)
        zeroed = flat == 0
        assert (zeroed.sum(axis=2) == n_zeroed(zero_out, d)).all()  # round(F·D) per copy, exactly
        np.testing.assert_array_equal(np.where(zeroed, 0, flat), np.where(zeroed, 0, src[None]))  # the rest: x's
        if d >= 48:  # each copy draws its own positions (1 of 10 would repeat by chance; 1 of 48 choose 12 here)
            assert len({z.tobytes() for z in zeroed.reshape(copies * 5, d)}) == copies * 5
    assert n_zeroed(0.1, 3072) == 307 and n_zeroed(0.25, 48) == 12 and n_zeroed(0.15, 10) == 2  # halves up
    x = rng.uniform(size=(4, 6)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(_confusion(key, x, 2, 0.0)), np.tile(x, (2, 1)))


def test_zeroed_positions_are_uniform_over_pixels_and_channels():
    """2,000 copies of 48 values (the copies test's program: 5 images, 400 copies each)."""
    x = np.ones(IMAGES, np.float32)
    out = np.asarray(_confusion(jax.random.PRNGKey(3), x, IMAGE_COPIES, 0.25)).reshape(2000, 48)
    share = (out == 0).mean(axis=0)  # each of the 48 values is zeroed in about a quarter of the copies
    assert np.abs(share - 0.25).max() < 0.04


def _cfg(**kw):
    base = dict(dataset="digits", n_train=200, n_test=50, seeds=3, widths=[4], experiments="1,2",
                confusion_copies=4, quiet=True, measures=False)
    return from_dict({**base, **kw}).resolve()


@functools.cache
def _draw(fix: bool):
    """Seeds 0, 1, 2 of digits (200 images of 8x8x1 for the cnn), 4 confusion copies:
    (cfg, ds, keys, split, y_train, y_rand, x_batched, the confusion set)."""
    cfg = _cfg(fix_data=fix, model="cnn")
    ds = load_data(cfg)
    d = draw_seeds(ds, [0, 1, 2], cfg.fix_data, (cfg.confusion_copies, cfg.zero_out))
    return cfg, ds, d.keys, d.split, d.y_train, d.y_rand, d.x_batched, d.random_set


def test_confusion_labels_are_uniform_independent_of_y_and_their_own_stream():
    """On the data-draw test's shared draw (3 seeds): the labels do not depend on the data."""
    cfg, ds, keys, split, y_train, y_rand, x_batched, rs = _draw(True)
    y_conf, y_true = np.asarray(rs.y_rand), np.asarray(rs.y)
    assert y_conf.shape == y_true.shape == (3, 800)
    np.testing.assert_array_equal(y_true, np.tile(np.asarray(y_train), (1, 4)))  # copy r of image i: row r·n + i
    assert abs(np.mean(y_conf == y_true) - 0.1) < 0.03  # agreement by chance only (10 classes)
    assert np.bincount(y_conf.ravel(), minlength=10).min() > y_conf.size * 0.1 * 0.7
    assert not np.array_equal(y_conf[0], y_conf[1])  # each seed its own labels
    assert np.mean(y_conf[:, :200] == np.asarray(y_rand)) < 0.2  # not today's y_rand: a stream of their own
    # the confusion stream is new: the old purposes' keys are as they were
    base = jax.random.PRNGKey(7)
    k = seed_keys([7])
    for i, got in enumerate((k.data, k.labels, k.init, k.batches, k.fresh, k.fraction, k.confusion)):
        assert np.array_equal(np.asarray(got[0]), np.asarray(jax.random.fold_in(base, i)))
    assert KEY_CONFUSION == 6


def test_the_confusion_set_follows_the_data_draw():
    """Shared data (MNIST's and digits' default): one set of copies, the first seed's;
    --no-fix-data: each seed copies its own images. Labels are always per seed."""
    for fix in (True, False):
        *_, split, _, _, _, rs = _draw(fix)
        x, xs = np.asarray(rs.x), np.asarray(split.x_train)
        if fix:
            assert x.shape == (800, 8, 8, 1)
            own = [(x, xs)]
        else:
            assert x.shape == (3, 800, 8, 8, 1)
            own = list(zip(x, xs))
            assert not np.array_equal(x[0], x[1])
        for copies, images in own:
            kept = copies.reshape(4, 200, -1) != 0
            assert np.array_equal(np.where(kept, copies.reshape(4, 200, -1), 0),
                                  np.where(kept, images.reshape(1, 200, -1), 0))


def test_zeros_are_a_black_pixel_standardized_with_the_training_statistics(tmp_path):
    """With --standardize, a zeroed value is a raw 0 (black) mapped by the true training
    set's per-channel mean and std, as Liu et al. zero raw pixels and then normalize."""
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (10, 32, 32, 3), dtype=np.uint8)  # no black pixel of its own
    path = write_cifar_binary(str(tmp_path / "c"), x, np.arange(10) % 10, x[:2], np.arange(2))
    cfg = from_dict(dict(dataset="cifar10", cifar_path=path, model="cnn", standardize=True, seeds=1, widths=[2],
                         experiments="2", confusion_copies=2, zero_out=0.5, quiet=True)).resolve()
    ds = load_data(cfg)
    d = draw_seeds(ds, [0], cfg.fix_data, (cfg.confusion_copies, cfg.zero_out))
    rs, split, keys = d.random_set, d.split, d.keys
    raw = x.astype(np.float32) / 255
    mean, std = raw.mean(axis=(0, 1, 2)), raw.std(axis=(0, 1, 2))
    copies = np.asarray(rs.x)
    black = np.isclose(copies, (0 - mean) / std, atol=1e-5)
    assert (black.reshape(20, -1).sum(axis=1) == 1536).all()  # half of the 3,072 values, all black
    same = ~black
    np.testing.assert_array_equal(copies[same], np.tile(np.asarray(split.x_train), (2, 1, 1, 1))[same])
    std_draw = standardized(as_images(make_dataset("cifar10", cifar_path=path))).zero_value(keys.data[0])
    np.testing.assert_allclose(np.asarray(std_draw), (0 - mean) / std, rtol=1e-5)


def test_phase_one_trains_on_the_confusion_set_and_phase_two_on_the_training_set():
    # Inputs, labels, the start and the confusion set (2 copies of the 12 examples, 1 of
    # each copy's 5 values zeroed) need only be numbers: NumPy draws them, so that no
    # program but the two phases' is compiled.
    model = MLP(width=6, n_in=5, n_out=3)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 12, 5)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, (2, 12)), jnp.int32)
    zeroed = rng.permuted(np.tile(np.arange(5) == 0, (2, 24, 1)), axis=2)
    x_conf = jnp.asarray(np.where(zeroed, 0.0, np.tile(np.asarray(x), (1, 2, 1))), jnp.float32)
    y_conf = rng.integers(0, 3, (2, 24)).astype(np.int32)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0))
    theta0 = jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.4, 0.4, (2, *s.shape)), jnp.float32), shapes)
    batch_keys = jax.random.split(jax.random.PRNGKey(5), 2)
    run = WidthRun(model=model, theta0=theta0, x_train=x, labels={"y": y, "y_rand": np.zeros((2, 12), np.int32)},
                   batch_keys=batch_keys, x_batched=True,
                   settings=TrainSettings(batch_size=5, loss_reduction="mean", chunk_steps=10),
                   random_set=RandomSet(x=x_conf, y=np.tile(np.asarray(y), (1, 2)), y_rand=y_conf))
    phases = experiment("adversarial", model, Optimizer(lr=0.3, max_steps=10))
    assert run.x_of(phases[0]) is x_conf and run.x_of(phases[1]) is x
    adv, after = run_phases(phases, run)
    spec = PhaseSpec(model, model.layers, batch_size=5, chunk_steps=10)
    fold = lambda i: np.asarray(jax.vmap(lambda kk: jax.random.fold_in(kk, i))(batch_keys))  # noqa: E731
    alone = train(spec, theta0, x_conf, y_conf, fold(0), Numbers(0.3, 10))
    for a, b in zip(jax.tree.leaves(adv.params), jax.tree.leaves(alone.params)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    then = train(spec, alone.params, x, y, fold(1), Numbers(0.3, 10))
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(then.params)):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    # a dose of random labels (--random-fraction 0.5) randomizes half of the copies; the rest keep their true label
    run.fraction_keys = jax.random.split(jax.random.PRNGKey(9), 2)
    half = run.labels_of(experiment("adversarial", model, stops=Stops(random_fraction=0.5))[0])
    chosen = np.zeros((2, 24), bool)
    for s, key in enumerate(run.fraction_keys):
        chosen[s, np.asarray(jax.random.permutation(key, 24))[:12]] = True
    np.testing.assert_array_equal(half, np.where(chosen, y_conf, np.tile(np.asarray(y), (1, 2))))


@pytest.mark.slow
def test_r0_is_todays_sweep_and_r_enters_the_fingerprint(tmp_path):
    """Three tiny sweeps (20 training points, 10 steps): R = 0 is today's sweep byte for
    byte, and copies change the random-label phase only."""
    base = dict(dataset="gaussians", widths=[4], seeds=2, max_steps=10, n_train=20, n_test=50, experiments="1,2",
                quiet=True, measures=False, figure=False)
    today = run_sweep(base, out=str(tmp_path / "today"))
    run_sweep({**base, "confusion_copies": 0}, out=str(tmp_path / "zero"))
    assert (tmp_path / "today" / "results.csv").read_bytes() == (tmp_path / "zero" / "results.csv").read_bytes()
    conf = run_sweep({**base, "confusion_copies": 3, "random_fraction": 0.5}, out=str(tmp_path / "conf"))
    by = lambda rows, e: [(r["seed"], r["train_loss"], r["phase1_train_acc"]) for r in rows if r["experiment"] == e]  # noqa: E731
    assert by(conf, "baseline") == by(today, "baseline")  # the true-label phases never see the copies
    assert all(a != b for a, b in zip(by(conf, "adversarial"), by(today, "adversarial")))
    cfg = from_dict({**base, "confusion_copies": 3}).resolve()
    ds = load_data(cfg)
    model = make_sweep_model(cfg, ds, 4)
    adv, baseline = experiment("adversarial", model), experiment("baseline", model)
    assert phase_fingerprint(cfg, ds, model, adv[:1], [0, 1])["confusion"] == {"copies": 3, "zero_out": 0.1}
    assert "confusion" not in phase_fingerprint(cfg, ds, model, baseline, [0, 1])
    plain = from_dict(base).resolve()
    assert phase_fingerprint(plain, ds, model, adv[:1], [0, 1]) == \
        phase_fingerprint(from_dict({**base, "confusion_copies": 0}).resolve(), ds, model, adv[:1], [0, 1])
