"""--conv-impl im2col (convolutions as patch matmuls) and canonical (lax.conv with its
gradients written as layout-canonical convolutions), checked against lax.conv and JAX's
own gradient of it on every conv net, through the trainer and the CLI."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.model import CNN, make_model, model_from_options
from advjax.results import read_results
from advjax.sweep import main
from advjax.train import Numbers, PhaseSpec, train


@pytest.mark.slow
@pytest.mark.parametrize("kind,shape,gradient", [("cnn", (12, 12, 1), True), ("resnet18", (8, 8, 3), False)])
def test_im2col_computes_the_same_function_and_gradient(kind, shape, gradient):
    """Logits (and on the CNN every parameter's gradient) equal lax.conv's to float32
    rounding; ResNet-18 covers the stride-2 3x3 and 1x1 shortcut convolutions and
    BatchNorm's `_conv_bn`, which the VGGs share (its gradient: compile time)."""
    conv = make_model(kind, 4, shape, 10)
    patches = make_model(kind, 4, shape, 10, conv_impl="im2col")
    params = conv.init(jax.random.PRNGKey(0))
    x = np.random.default_rng(1).normal(size=(5, *shape)).astype(np.float32)  # no random program to compile
    state = conv.init_state()
    # each model's apply and gradient as one compiled program, not op by op (the same function)
    apply = lambda model: jax.jit(model.apply)(params, x, state or None)  # noqa: E731
    np.testing.assert_allclose(apply(patches), apply(conv), rtol=1e-5, atol=1e-5)

    if gradient:
        _assert_same_gradients(conv, patches, params, state, x)


def _assert_same_gradients(conv, other, params, state, x):
    """Every parameter's gradient of sum(logits²) (training mode) of `other` equals
    `conv`'s to 1e-5 of the largest, each model's gradient one compiled program."""
    def grads(model):
        return jax.jit(jax.grad(lambda p: jnp.sum(model.apply_train(p, state, x, model.layers)[0] ** 2)))(params)

    g_conv, g_other = grads(conv), grads(other)
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(g_conv))
    for a, b in zip(jax.tree.leaves(g_conv), jax.tree.leaves(g_other)):
        assert float(jnp.max(jnp.abs(a - b))) < 1e-5 * scale


def test_conv_impl_is_a_model_option_recorded_only_where_set():
    conv = CNN(4, (8, 8, 1), 3)
    patches = dataclasses.replace(conv, conv_impl="im2col")
    assert "conv_impl" not in conv.options()  # checkpoints made before the option still match
    assert patches.options()["conv_impl"] == "im2col" and model_from_options(patches.options()) == patches
    assert patches != conv and hash(patches) != hash(conv)  # another compiled program
    with pytest.raises(ValueError, match="conv_impl"):
        CNN(4, (8, 8, 1), 3, conv_impl="fft")


@pytest.mark.parametrize("side,k,stride", [(8, 3, 1), (8, 3, 2), (7, 3, 2), (8, 1, 2), (9, 1, 1), (3, 3, 1)])
def test_canonical_convolution_gradients_equal_jaxs(side, k, stride):
    """`_canonical_conv`'s hand-written backward pass (the input's gradient through a
    dilated, flipped-kernel convolution; the kernel's with channels as the batch) against
    JAX's own gradient of lax.conv: stride 1 and 2, even and odd sides, 3x3 and 1x1
    kernels, a map as small as the kernel. Float32 rounding apart: XLA may sum either in
    another order."""
    from advjax.model import _canonical_conv, _lax_conv

    rng = np.random.default_rng(k * 10 + stride)
    h = rng.normal(size=(3, side, side + 1, 4)).astype(np.float32)
    kernel = rng.normal(size=(k, k, 4, 5)).astype(np.float32)
    out, back = jax.vjp(lambda a, b: _lax_conv(a, b, stride), h, kernel)
    mine, my_back = jax.vjp(lambda a, b: _canonical_conv(a, b, stride), h, kernel)
    np.testing.assert_array_equal(np.asarray(out), np.asarray(mine))  # the same forward convolution
    g = rng.normal(size=out.shape).astype(np.float32)
    for want, got in zip(back(g), my_back(g)):
        assert want.shape == got.shape
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))


@pytest.mark.slow
@pytest.mark.parametrize("kind,shape", [("resnet18", (8, 8, 3)), ("vgg11", (32, 32, 3))])
def test_canonical_nets_have_lax_convs_gradient(kind, shape):
    """Every parameter's gradient of a net with --conv-impl canonical against the same
    net with xla: ResNet-18's stride-2 and 1x1 shortcut convolutions, BatchNorm, and a
    VGG's 2x2 maps (smaller than the kernel: computed as im2col)."""
    conv = make_model(kind, 4, shape, 10)
    canonical = make_model(kind, 4, shape, 10, conv_impl="canonical")
    params, state = conv.init(jax.random.PRNGKey(0)), conv.init_state()
    x = np.random.default_rng(1).normal(size=(5, *shape)).astype(np.float32)
    _assert_same_gradients(conv, canonical, params, state, x)


@pytest.mark.slow
@pytest.mark.parametrize("impl", ["im2col", "canonical"])
def test_a_seed_trained_with_another_conv_impl_equals_the_seed_alone(impl):
    model = CNN(4, (8, 8, 1), 3, conv_impl=impl)
    keys = jax.random.split(jax.random.PRNGKey(1), 3)
    rng = np.random.default_rng(3)  # NumPy's draws: no random program to compile
    x = rng.normal(size=(3, 24, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, (3, 24)).astype(np.int32)
    theta0 = jax.vmap(model.init)(keys)
    # one seed a group, as the default group size lays out conv nets on real image sets
    spec = PhaseSpec(model, model.layers, batch_size=8, x_batched=True, group_elements=1)
    together = train(spec, theta0, x, y, keys, Numbers(0.05, 40))
    one = lambda t: jax.tree.map(lambda a: a[1:2], t)  # noqa: E731
    alone = train(spec, one(theta0), x[1:2], y[1:2], keys[1:2], Numbers(0.05, 40))
    assert alone.steps[0] == together.steps[1]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(one(together.params))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_cli_digits_cnn_with_im2col(tmp_path, capsys):
    """10 steps are enough for the option to reach the trainer, the rows and the manifest,
    and for a resume with the other implementation to be refused."""
    common = ["--dataset", "digits", "--model", "cnn", "--widths", "4", "--seeds", "2", "--max-steps", "10",
              "--n-test", "50", "--experiments", "baseline", "--quiet", "--no-measures", "--no-figure"]
    assert main([*common, "--conv-impl", "im2col", "--out", str(tmp_path / "im2col")]) == 0
    rows = read_results(str(tmp_path / "im2col" / "results.csv"))
    assert len(rows) == 2 and all(0 < r["steps"] <= 10 and 0 <= r["test_acc"] <= 1 for r in rows)
    config = json.loads((tmp_path / "im2col" / "manifest.json").read_text())["config"]
    assert config["conv_impl"] == "im2col"
    # a resume with the other implementation is another sweep: refused
    assert main([*common, "--conv-impl", "xla", "--out", str(tmp_path / "im2col"), "--resume"]) == 2
    assert "--conv-impl" in capsys.readouterr().err
    # the default, auto, is im2col on a CPU: the same sweep, so the resume finds it finished
    assert main([*common, "--out", str(tmp_path / "im2col"), "--resume"]) == 0
    assert read_results(str(tmp_path / "im2col" / "results.csv")) == rows


def test_conv_impl_auto_is_the_nets_own_on_a_cpu_only():
    from advjax.model import default_conv_impl
    from advjax.options import SweepConfig

    assert default_conv_impl("cnn", "cpu") == default_conv_impl("vgg16", "cpu") == "im2col"
    assert default_conv_impl("resnet18", "cpu") == "canonical"
    assert default_conv_impl("cnn", "gpu") == default_conv_impl("vgg16", "tpu") == "xla"
    assert default_conv_impl("mlp", "cpu") == "xla"  # no convolutions: the field keeps its old value
    assert SweepConfig(dataset="digits").resolve().conv_impl == "xla"
    resolved = SweepConfig(dataset="digits", model="cnn").resolve()
    assert resolved.conv_impl == default_conv_impl("cnn") and resolved.resolve() == resolved
