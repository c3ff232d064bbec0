"""The minimal conv net (--model cnn) and image data: the CNN trains through the same
protocol and trainer as N_p (a vmapped seed equals the seed alone, frozen layers stay
put), its parameters and gradient are what a hand count and finite differences say,
and image datasets give conv models the same draws as the flat vectors MLPs see."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.data import as_images, make_dataset, standardized
from advjax.experiments import experiment
from advjax.model import CNN, MLP, make_model, model_from_options, n_parameters
from advjax.results import read_results
from advjax.sweep import main
from advjax.train import Numbers, PhaseSpec, per_example_loss, reduce_loss, train

SHAPE = (8, 8, 2)  # tiny images: H, W, C
# One model and one image batch for every test that can take them: each distinct shape is
# another compiled program (eager ops compile per shape too), shared here across tests.
MODEL = CNN(4, SHAPE, 3)


def _images(n_seeds: int, n: int = 16, n_classes: int = 3):
    """Per-seed random images and labels (seed axis first), drawn by NumPy: no random
    program of JAX's to compile for them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_seeds, n, *SHAPE)).astype(np.float32)
    y = rng.integers(0, n_classes, (n_seeds, n)).astype(np.int32)
    return x, y


def _np_forward(params, x):
    """The CNN in NumPy (float64): 3x3 SAME convolutions, ReLU, 2x2 max-pool, twice,
    then the readout on the row-major flattened map."""
    h = np.asarray(x, np.float64)
    for name in ("conv1", "conv2"):
        w, b = (np.asarray(params[name][k], np.float64) for k in ("kernel", "bias"))
        n, height, width, _ = h.shape
        padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
        pre = np.zeros((n, height, width, w.shape[-1])) + b
        for i in range(3):
            for j in range(3):
                pre += padded[:, i:i + height, j:j + width, :] @ w[i, j]
        a = np.maximum(pre, 0)[:, : height // 2 * 2, : width // 2 * 2]
        h = a.reshape(n, height // 2, 2, width // 2, 2, -1).max(axis=(2, 4))
    r = params["readout"]
    return h.reshape(len(h), -1) @ np.asarray(r["kernel"], np.float64) + np.asarray(r["bias"], np.float64)


def test_parameter_count_equals_a_hand_count():
    for width, shape, n_out in ((4, (8, 8, 1), 10), (16, (28, 28, 1), 10), (3, (9, 7, 3), 1)):
        model = CNN(width, shape, n_out)
        h, w, c = shape
        conv1 = 3 * 3 * c * width + width
        conv2 = 3 * 3 * width * width + width
        readout = (h // 4) * (w // 4) * width * n_out + n_out  # two 2x2 pools, floor
        assert n_parameters(model) == conv1 + conv2 + readout
    assert n_parameters(CNN(4, (8, 8, 1), 10)) == 358


def test_torch_default_init_per_layer():
    """At width 4 (the file's one model: its init programs are shared) every kernel still
    draws 48 to 144 values, enough to come near the bound."""
    p = MODEL.init(jax.random.PRNGKey(3))
    for layer, fan_in in (("conv1", 9 * SHAPE[2]), ("conv2", 9 * 4), ("readout", 2 * 2 * 4)):
        assert np.abs(np.asarray(p[layer]["bias"])).max() <= fan_in**-0.5
        a = np.abs(np.asarray(p[layer]["kernel"]))  # many draws: they reach near the bound
        assert a.max() <= fan_in**-0.5 and a.max() > 0.8 * fan_in**-0.5


def test_apply_and_preactivations_equal_a_numpy_conv_net():
    model = MODEL
    params = model.init(jax.random.PRNGKey(1))
    x = np.asarray(_images(3)[0][0])
    np.testing.assert_allclose(np.asarray(model.apply(params, x)), _np_forward(params, x), rtol=1e-4, atol=1e-5)
    pre = model.preactivations(params, x)
    assert [p.shape for p in pre] == [(16, 8 * 8 * 4), (16, 4 * 4 * 4)]
    assert model.layers == ("conv1", "conv2", "readout")
    assert model_from_options(json.loads(json.dumps(model.options()))) == model  # as a checkpoint records it


@pytest.mark.parametrize("n_out", [1, 3])
def test_gradient_matches_finite_differences(n_out):
    model = CNN(3, (6, 6, 2), n_out)
    rng = np.random.default_rng(0)
    with jax.enable_x64():
        # host float64 arrays: the shifts below are NumPy's, no scatter program per leaf shape
        params = jax.tree.map(lambda a: np.asarray(a, np.float64), model.init(jax.random.PRNGKey(0)))
        x = jnp.asarray(rng.normal(size=(5, 6, 6, 2)))
        y = jnp.asarray(rng.integers(0, max(n_out, 2), 5))

        @jax.jit  # one program for the 32 evaluations below, not an eager op-by-op pass each
        def loss(p):
            return reduce_loss(per_example_loss(model.apply(p, x), y), None, "mean")

        grads = jax.grad(loss)(params)
        leaves, treedef = jax.tree.flatten(params)
        g_leaves = jax.tree.leaves(grads)
        for _ in range(16):
            li = rng.integers(len(leaves))
            j = tuple(int(rng.integers(s)) for s in leaves[li].shape)
            shifted = []
            for eps in (1e-6, -1e-6):
                moved = list(leaves)
                moved[li] = moved[li].copy()
                moved[li][j] += eps
                shifted.append(float(loss(jax.tree.unflatten(treedef, moved))))
            fd = (shifted[0] - shifted[1]) / 2e-6
            assert abs(fd - float(g_leaves[li][j])) < 1e-6 * max(1, abs(fd))


@pytest.mark.slow
def test_vmapped_seed_equals_seed_alone():
    """Seed 1 among three, 20 minibatch steps in chunks of at most 10 (so over several
    calls), equals seed 1 trained alone."""
    model = MODEL
    xs, ys = _images(3)
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 3)
    spec = PhaseSpec(model, model.layers, batch_size=8, chunk_steps=10, x_batched=True)
    together = train(spec, theta0, xs, ys, bkeys, Numbers(0.05, 20))
    one = lambda t: jax.tree.map(lambda a: a[1:2], t)  # noqa: E731
    alone = train(spec, one(theta0), xs[1:2], ys[1:2], bkeys[1:2], Numbers(0.05, 20))
    assert alone.steps[0] == together.steps[1] and alone.converged[0] == together.converged[1]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(one(together.params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
    assert not np.array_equal(np.asarray(theta0["conv1"]["kernel"]), np.asarray(together.params["conv1"]["kernel"]))


def test_frozen_conv_layers_do_not_move():
    """10 full-batch steps (the vmapped test's model, seeds and images: shared programs)
    move the trained layers and leave conv1's bits alone."""
    model = MODEL
    xs, ys = _images(3)
    theta0 = jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(1), 3))
    phases = experiment("freeze_1", model)
    assert phases[-1].trainable == ("conv2", "readout")
    out = train(PhaseSpec(model, phases[-1].trainable, x_batched=True), theta0, xs, ys,
                jax.random.split(jax.random.PRNGKey(2), 3), Numbers(0.05, 10))
    for a, b in zip(jax.tree.leaves(theta0["conv1"]), jax.tree.leaves(out.params["conv1"])):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    for layer in ("conv2", "readout"):
        assert not np.array_equal(np.asarray(theta0[layer]["kernel"]), np.asarray(out.params[layer]["kernel"]))


def test_mlp_on_images_equals_mlp_on_their_flat_vectors():
    x = np.asarray(_images(3)[0][0])
    model = MLP(6, int(np.prod(SHAPE)), 3)
    params = model.init(jax.random.PRNGKey(0))
    flat = x.reshape(len(x), -1)
    assert np.asarray(model.apply(params, x)).tobytes() == np.asarray(model.apply(params, flat)).tobytes()
    # make_model turns an image shape into an MLP's int n_in: the same model as before images
    assert make_model("mlp", 6, SHAPE, 3) == model


def test_image_datasets_give_conv_models_the_same_draws_reshaped():
    key = jax.random.PRNGKey(5)
    mnist = make_dataset("mnist", n_test=20)
    assert mnist.image_shape == (28, 28, 1) and mnist.input_shape == (784,) and mnist.n_train == 128
    flat, images = mnist.draw(key), as_images(mnist).draw(key)
    assert images.x_train.shape == (128, 28, 28, 1) and images.x_test.shape == (20, 28, 28, 1)
    assert np.array_equal(np.asarray(images.x_train).reshape(128, -1), np.asarray(flat.x_train))
    assert np.array_equal(np.asarray(images.y_train), np.asarray(flat.y_train))

    digits = make_dataset("digits")
    assert (digits.n_train, digits.n_test, digits.n_classes, digits.image_shape) == (128, 1797 - 128, 10, (8, 8, 1))
    s = as_images(digits).draw(key)
    assert s.x_train.shape == (128, 8, 8, 1) and s.x_test.shape == (1669, 8, 8, 1)
    assert 0 <= float(s.x_train.min()) and float(s.x_train.max()) <= 1
    # every digit is either a training or a test image, never both
    both = np.concatenate([np.asarray(s.x_train).reshape(128, -1), np.asarray(s.x_test).reshape(1669, -1)])
    assert len(both) == 1797
    other = as_images(digits).draw(jax.random.PRNGKey(6))
    assert not np.array_equal(np.asarray(other.x_train), np.asarray(s.x_train))  # a key redraws the split


def test_standardize_is_per_channel_on_images_and_per_feature_on_vectors():
    key = jax.random.PRNGKey(0)
    digits = make_dataset("digits", 200, 50)
    s = standardized(as_images(digits)).draw(key)
    assert abs(float(s.x_train.mean())) < 1e-5 and abs(float(s.x_train.std()) - 1) < 1e-4  # one channel
    raw = as_images(digits).draw(key).x_train
    np.testing.assert_allclose(np.asarray(s.x_train), np.asarray((raw - raw.mean()) / raw.std()), atol=1e-5)
    flat = standardized(digits).draw(key).x_train  # an MLP's vectors: per feature, as before
    assert np.allclose(np.asarray(flat).mean(axis=0), 0, atol=1e-5)


def test_npz_images(tmp_path):
    rng = np.random.default_rng(0)
    for name, shape in (("hw", (6, 6)), ("hwc", (6, 6, 3))):
        path = tmp_path / f"{name}.npz"
        np.savez(path, x_train=rng.random((30, *shape)).astype(np.float32), y_train=np.arange(30) % 3,
                 x_test=rng.random((12, *shape)).astype(np.float32), y_test=np.arange(12) % 3)
        ds = make_dataset(str(path))
        assert ds.image_shape == (*shape[:2], shape[2] if len(shape) == 3 else 1)
        assert as_images(ds).draw(jax.random.PRNGKey(0)).x_train.shape == (30, *ds.image_shape)


@pytest.mark.slow
def test_cli_digits_cnn_end_to_end(tmp_path, capsys):
    """Three experiments (frozen layers included) with measures, shrunk to 10 steps, 2
    Lanczos steps and no figure: still every row, the conv layers' norm columns and the
    image shape in the manifest."""
    out = tmp_path / "d"
    rc = main(["--dataset", "digits", "--model", "cnn", "--widths", "4", "--seeds", "2", "--max-steps", "10",
               "--n-test", "50", "--hessian-iters", "2", "--experiments", "baseline,frozen,freeze_1", "--out",
               str(out), "--quiet", "--no-figure"])
    assert rc == 0
    rows = read_results(str(out / "results.csv"))
    assert len(rows) == 6 and {r["experiment"] for r in rows} == {"baseline", "frozen", "freeze_1"}
    assert all(r["steps"] <= 10 and 0 <= r["test_acc"] <= 1 for r in rows)
    assert "norm_conv1" in rows[0] and "norm_hidden" not in rows[0]
    man = json.loads((out / "manifest.json").read_text())
    assert man["dataset"]["input_shape"] == [8, 8, 1] and man["config"]["model"] == "cnn"


@pytest.mark.parametrize("argv", [["--dataset", "gaussians"], ["--dataset", "teacher"]])
def test_cnn_on_points_is_refused_naming_model(argv, capsys, tmp_path):
    rc = main([*argv, "--model", "cnn", "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "--model" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("shape", [(3, 8, 8, 5), (2, 7, 9, 3)])
def test_max_pool_equals_flax_max_pool_bit_for_bit_ties_included(shape):
    """`max_pool_2x2` (reshape and selects) against flax's reduce-window max-pool: the
    same values and the same gradient to the last bit, on ReLU outputs of small integers
    (most windows tie, many at 0) and odd sides (a dropped row and column), alone and
    under jit and vmap; its gradient goes to each window's first maximum (row-major)."""
    import flax.linen as nn

    from advjax.model import max_pool_2x2

    ref = lambda h: nn.max_pool(h, (2, 2), strides=(2, 2))  # noqa: E731
    rng = np.random.default_rng(0)
    h = jnp.asarray(np.maximum(rng.integers(-3, 3, shape), 0).astype(np.float32))
    g = jnp.asarray(rng.normal(size=ref(h).shape).astype(np.float32))
    (a, back_a), (b, back_b) = jax.vjp(ref, h), jax.vjp(max_pool_2x2, h)
    assert np.array_equal(a, b) and np.array_equal(back_a(g)[0], back_b(g)[0])
    grad_of = lambda f: jax.jit(jax.vmap(lambda hh, gg: jax.vjp(f, hh)[1](gg)[0]))  # noqa: E731
    assert np.array_equal(grad_of(ref)(h[None], g[None]), grad_of(max_pool_2x2)(h[None], g[None]))
    one = jnp.zeros((1, 2, 2, 1)).at[0, 1, 0, 0].set(1.0).at[0, 1, 1, 0].set(1.0)  # a tie at (1, 0), (1, 1)
    assert jax.grad(lambda x: max_pool_2x2(x).sum())(one)[0, :, :, 0].tolist() == [[0, 0], [1, 0]]


def test_max_pool_hessian_vector_product_matches_finite_differences():
    """Forward mode through the pool (the measures' Hessian-vector products): jvp of the
    gradient against central differences of the gradient."""
    from advjax.model import max_pool_2x2

    f = lambda h: (max_pool_2x2(jax.nn.relu(h)) ** 2).sum()  # noqa: E731
    rng = np.random.default_rng(1)
    with jax.enable_x64():
        h, v = (jnp.asarray(rng.normal(size=(2, 6, 6, 3))) for _ in range(2))
        hvp = jax.jvp(jax.grad(f), (h,), (v,))[1]
        fd = (jax.grad(f)(h + 1e-6 * v) - jax.grad(f)(h - 1e-6 * v)) / 2e-6
        assert hvp.dtype == jnp.float64
        np.testing.assert_allclose(hvp, fd, rtol=1e-6, atol=1e-8)
        assert float(jnp.abs(hvp).max()) > 0.1  # not a zero against a zero


def test_memory_counts_a_seed_alone_checking_while_its_minibatch_waits():
    """A one-seed group of the CNN on equal batches checks the examples outside its
    minibatch while the minibatch's forward values wait for the backward pass; the
    memory model counts both at once, and that is at least XLA's temporary buffers for
    the compiled step (zeros: the buffers do not depend on the values)."""
    from advjax.memory import STEP_ACTIVATION_COPIES, activation_floats
    from advjax.model import forward_floats_per_example
    from advjax.train import PhaseSpec, _step, check_shares_minibatch, host_init_state, make_hyper

    model, n, b = make_model("cnn", 16, (28, 28, 1), 10, conv_impl="im2col"), 256, 32
    spec = PhaseSpec(model, model.layers, batch_size=b)
    assert check_shares_minibatch(spec, n)
    units = forward_floats_per_example(model)
    assert activation_floats(model, n, b) == units * (STEP_ACTIVATION_COPIES * b + n - b)
    theta = jax.tree.map(lambda s: np.zeros(s.shape[1:], s.dtype),
                         jax.eval_shape(jax.vmap(model.init), jax.random.split(jax.random.PRNGKey(0), 1)))
    hyper = jax.tree.map(lambda a: a[0], make_hyper(1, 0.1, 10, n))
    s0 = jax.tree.map(lambda a: a[0], host_init_state(jax.tree.map(lambda a: a[None], theta),
                                                      np.asarray(jax.random.split(jax.random.PRNGKey(1), 1)),
                                                      make_hyper(1, 0.1, 10, n), spec))
    x = jnp.zeros((n, 28, 28, 1))
    step = jax.jit(lambda s, yy, h: _step(spec, h, {}, x, yy, s, True, True))
    temp = step.lower(s0, jnp.zeros(n, jnp.int32), hyper).compile().memory_analysis().temp_size_in_bytes
    assert 4 * activation_floats(model, n, b) >= temp > 0
