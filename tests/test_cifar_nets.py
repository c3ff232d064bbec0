"""The CIFAR nets with BatchNorm (--model vgg11, vgg16, resnet18) and --augment crop-flip:
standard parameter counts, torch's forward and running statistics, a vmapped seed equal
to the seed alone, statistics that move only in trained layers and survive a kill and
--resume, and augmentation drawn from the seed's minibatch key."""

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from advjax.checkpoint import PhaseStore, final_path, restore_final_state
from advjax.experiments import experiment
from advjax.model import CNN, initial_states, make_model, model_from_options, n_parameters
from advjax.sweep import main
from advjax.train import Numbers, PhaseSpec, crop_flip, minibatch, train

# Parameter counts of the CIFAR-10 networks (10 classes) of kuangliu/pytorch-cifar, the
# code Liu et al.'s cifar10/ folder follows, as torchsummary and thop report them.
PUBLISHED = {"vgg11": 9_231_114, "vgg16": 14_728_266, "resnet18": 11_173_962}


def _images(n_seeds: int, n: int, side: int, n_classes: int = 3, channels: int = 3):
    """Per-seed random images and labels (seed axis first), drawn by NumPy: no random
    program of JAX's to compile for them."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n_seeds, n, side, side, channels)).astype(np.float32),
            rng.integers(0, n_classes, (n_seeds, n)).astype(np.int32))


def _bits(tree) -> list[bytes]:
    return [np.asarray(a).tobytes() for a in jax.tree.leaves(tree)]


def test_parameter_counts_at_width_64_are_the_published_ones():
    for kind, count in PUBLISHED.items():
        model = make_model(kind, 64, (32, 32, 3), 10)
        assert n_parameters(model) == count, kind  # from jax.eval_shape: nothing is allocated
        assert model_from_options(model.options()) == model
    resnet = make_model("resnet18", 64, (32, 32, 3), 10)
    assert resnet.layers == ("stem", *(f"block{i}" for i in range(1, 9)), "readout")
    assert make_model("vgg16", 64, (32, 32, 3), 10).layers[-2:] == ("conv13", "readout")
    # channels scale with the width: every conv kernel by (width/64)^2
    assert n_parameters(make_model("vgg11", 8, (32, 32, 3), 10)) < PUBLISHED["vgg11"] / 50


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is the bench extra")
@pytest.mark.parametrize("kind", ["resnet18", "vgg11"])
def test_forward_and_running_statistics_equal_torchs(kind):
    """The same network in torch (written here from the architecture), weights copied:
    the logits of three training-mode passes, the running statistics they leave, and the
    inference-mode logits after them agree in float64."""
    import torch
    import torch.nn.functional as F

    model = make_model(kind, 4, (32, 32, 3), 5)
    rng = np.random.default_rng(0)
    with jax.enable_x64():  # host arrays in, one compiled program each way: op by op, every shape compiles
        p = jax.tree.map(lambda a: np.asarray(a, np.float64) + 0.1 * rng.normal(size=a.shape),
                         jax.jit(model.init)(jax.random.PRNGKey(1)))
        state = jax.tree.map(lambda a: np.asarray(a, np.float64), model.init_state())
        x = rng.normal(size=(6, 32, 32, 3))
        t = lambda a: torch.from_numpy(np.array(a))  # noqa: E731
        bn_names = {"conv": "bn", "conv1": "bn1", "conv2": "bn2", "shortcut": "shortcut_bn"}
        running = {}

        def conv_bn(h, layer, conv, stride, train):
            q = p[layer]
            kernel = t(np.transpose(np.asarray(q[conv]["kernel"]), (3, 2, 0, 1)))
            bias = t(q[conv]["bias"]) if "bias" in q[conv] else None
            z = F.conv2d(h, kernel, bias, stride, kernel.shape[-1] // 2)
            key = (layer, bn_names[conv])
            if key not in running:
                running[key] = (torch.zeros(z.shape[1], dtype=z.dtype), torch.ones(z.shape[1], dtype=z.dtype))
            bn = q[bn_names[conv]]
            return F.batch_norm(z, *running[key], t(bn["scale"]), t(bn["bias"]), train, 0.1, 1e-5)

        def torch_net(h, train):
            if kind == "resnet18":
                h = F.relu(conv_bn(h, "stem", "conv", 1, train))
                for name, _, _, stride in model._blocks():
                    out = conv_bn(F.relu(conv_bn(h, name, "conv1", stride, train)), name, "conv2", 1, train)
                    h = F.relu(out + (conv_bn(h, name, "shortcut", stride, train) if "shortcut" in p[name] else h))
                h = h.mean(dim=(2, 3))
            else:
                names = iter(model.layers)
                for item in model.plan:
                    h = F.max_pool2d(h, 2) if item == "M" else F.relu(conv_bn(h, next(names), "conv", 1, train))
                h = h.flatten(1)
            return (h @ t(p["readout"]["kernel"]) + t(p["readout"]["bias"])).numpy()

        x_torch = torch.from_numpy(np.transpose(x, (0, 3, 1, 2)).copy())
        apply_train, apply = jax.jit(model.apply_train, static_argnums=3), jax.jit(model.apply)
        for _ in range(3):
            logits, state = apply_train(p, state, x, model.layers)
            np.testing.assert_allclose(np.asarray(logits), torch_net(x_torch, True), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(np.asarray(apply(p, x, state)), torch_net(x_torch, False), rtol=1e-10,
                                   atol=1e-10)
        for (layer, bn), (mean, var) in running.items():
            np.testing.assert_allclose(np.asarray(state[layer][bn]["mean"]), mean.numpy(), rtol=1e-10, atol=1e-12)
            np.testing.assert_allclose(np.asarray(state[layer][bn]["var"]), var.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_vmapped_seed_of_a_resnet18_equals_the_seed_alone_and_frozen_layers_keep_their_statistics():
    """freeze_2 from a Θ_adv with moved statistics, augmented minibatches: seed 1 among
    three trains bit for bit as seed 1 alone, parameters and running statistics; the
    frozen layers' statistics stay bit for bit, the trained layers' move."""
    model = make_model("resnet18", 8, (32, 32, 3), 3)
    xs, ys = _images(3, 8, 32)
    theta_adv = jax.jit(jax.vmap(model.init))(jax.random.split(jax.random.PRNGKey(1), 3))
    stats_adv = jax.tree.map(lambda a: a + 0.5, initial_states(model, 3))
    bkeys = jax.random.split(jax.random.PRNGKey(2), 3)
    trainable = experiment("freeze_2", model)[-1].trainable
    spec = PhaseSpec(model, trainable, batch_size=5, x_batched=True, augment="crop-flip")
    together = train(spec, theta_adv, xs, ys, bkeys, Numbers(0.05, 4), state0=stats_adv)
    one = lambda t: jax.tree.map(lambda a: a[1:2], t)  # noqa: E731
    alone = train(spec, one(theta_adv), xs[1:2], ys[1:2], bkeys[1:2], Numbers(0.05, 4), state0=one(stats_adv))
    assert alone.steps[0] == together.steps[1] == 4
    assert _bits(alone.params) == _bits(one(together.params))
    assert _bits(alone.state) == _bits(one(together.state))
    assert trainable == model.layers[2:]
    for layer in model.layers[:-1]:
        kept = _bits(together.state[layer]) == _bits(stats_adv[layer])
        assert kept == (layer not in trainable), layer
        assert (_bits(together.params[layer]) == _bits(theta_adv[layer])) == kept, layer
    with pytest.raises(ValueError, match="running statistics"):  # inference needs them
        model.apply(jax.tree.map(lambda a: a[0], alone.params), xs[0])


@pytest.mark.slow
def test_crop_flip_is_a_function_of_the_seeds_key():
    x = jax.random.normal(jax.random.PRNGKey(0), (16, 6, 5, 2))
    key = jax.random.PRNGKey(7)
    a, b = crop_flip(key, x), crop_flip(key, x)
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    assert not np.array_equal(a, crop_flip(jax.random.PRNGKey(8), x))
    # each image is a window of its 4-pixel zero-padded copy, mirrored or not
    padded = np.pad(np.asarray(x), ((0, 0), (4, 4), (4, 4), (0, 0)))
    flips = 0
    for img, out in zip(padded, np.asarray(a)):
        found = [(i, j, f) for i in range(9) for j in range(9) for f in (False, True)
                 if np.array_equal(out, img[i:i + 6, j:j + 5][:, ::-1] if f else img[i:i + 6, j:j + 5])]
        assert found
        flips += found[0][2]
    assert 0 < flips < 16
    # a seed's minibatches: the same key and step, the same images; another step, others
    spec = PhaseSpec(CNN(2, (6, 5, 2), 3), ("conv1", "conv2", "readout"), batch_size=4, augment="crop-flip")
    y = jnp.arange(16) % 3
    first = minibatch(spec, key, jnp.int32(3), x, y)
    assert _bits(first) == _bits(minibatch(spec, key, jnp.int32(3), x, y))
    assert not np.array_equal(first[0], minibatch(spec, key, jnp.int32(4), x, y)[0])
    plain = minibatch(PhaseSpec(spec.model, spec.trainable, batch_size=4), key, jnp.int32(3), x, y)
    assert np.array_equal(first[1], plain[1])  # the same examples as without augmentation


class Killed(BaseException):
    """What a SIGKILL right after a save leaves: the save, and nothing after it."""


@pytest.mark.slow
def test_running_statistics_survive_a_kill_and_resume(tmp_path, monkeypatch):
    """Killed mid phase 1 just after a save, resumed: results.csv (measures included)
    equals an uninterrupted run's byte for byte; the save held phase 1's moving
    statistics, and a sweep with --adv-from gets the same phase 2 from Θ_adv's and keeps
    the final statistics with the final parameters."""
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, x_train=rng.random((16, 8, 8, 3)).astype(np.float32), y_train=np.arange(16) % 3,
             x_test=rng.random((20, 8, 8, 3)).astype(np.float32), y_test=np.arange(20) % 3)
    cfg = ["--dataset", str(data), "--model", "resnet18", "--widths", "4", "--seeds", "2", "--experiments", "2",
           "--max-steps", "12", "--batch-size", "8", "--lr", "0.05", "--hessian-iters", "2", "--quiet",
           "--no-figure", "--chunk-steps", "2"]  # the same programs in every run: compiled once
    killed = tmp_path / "killed"
    save = PhaseStore.save

    def save_then_die(self, state, complete):
        save(self, state, complete)
        if not complete:
            raise Killed

    monkeypatch.setattr(PhaseStore, "save", save_then_die)
    with pytest.raises(Killed):
        main([*cfg, "--checkpoint-every", "2", "--out", str(killed)])
    monkeypatch.setattr(PhaseStore, "save", save)
    theta_adv = killed / "checkpoints" / "p4" / "theta_adv"
    meta = PhaseStore(str(theta_adv), {}).read_meta()
    assert not meta["complete"] and 0 < max(meta["steps"]) < 12 and not (killed / "results.csv").exists()
    import orbax.checkpoint as ocp

    with PhaseStore(str(theta_adv), {})._manager() as mgr:
        saved = mgr.restore(mgr.latest_step(), args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    assert np.abs(saved["model_state"]["stem"]["bn"]["mean"]).max() > 0  # statistics moved, and were saved

    assert main([*cfg, "--out", str(killed), "--resume"]) == 0
    assert main([*cfg, "--out", str(tmp_path / "whole")]) == 0
    assert (killed / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    later = tmp_path / "later"
    assert main([*cfg, "--adv-from", str(killed), "--out", str(later), "--keep-params"]) == 0
    assert (later / "results.csv").read_bytes() == (killed / "results.csv").read_bytes()
    kept = restore_final_state(final_path(str(later), 4, "adversarial"))  # kept beside the final parameters
    assert kept["stem"]["bn"]["var"].shape == (2, 4) and set(kept) == set(make_model(
        "resnet18", 4, (8, 8, 3), 3).init_state())



@pytest.mark.slow
def test_conv_memory_counts_a_minibatch_and_a_check_batch_not_the_training_set():
    """On CIFAR-10's 50,000 images a ResNet-18 seed in flight holds a minibatch's
    activations (with their gradient's copies) or a check's 2,048 images, not all 50,000
    (111 GB): about 4.4 GB at width 64 and batch 128, so Liu et al.'s sweeps fit a GPU.
    The count is at least what XLA's compiled step reports for its temporary buffers."""
    from advjax.memory import STEP_ACTIVATION_COPIES, activation_floats, bytes_per_seed
    from advjax.model import activations_per_example

    big = make_model("resnet18", 64, (32, 32, 3), 10)
    units = activations_per_example(big)
    assert activation_floats(big, 50_000, 128) == units * 2048
    assert activation_floats(big, 50_000, 512) == units * 512 * STEP_ACTIVATION_COPIES
    assert 4e9 < bytes_per_seed(big, 50_000, False, 0, 128) < 5e9
    small = make_model("resnet18", 4, (16, 16, 3), 10)
    spec = PhaseSpec(small, small.layers, batch_size=8)
    from advjax.train import _step, host_init_state, make_hyper

    # zeros of θ's shapes: the compiled program and its buffers do not depend on the values
    # (and there is no init to run op by op, nor to compile)
    theta = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                         jax.eval_shape(jax.vmap(small.init), jax.random.split(jax.random.PRNGKey(0), 1)))
    hyper = make_hyper(1, 0.1, 10, 64)
    state = jax.tree.map(lambda a: np.asarray(a)[None], small.init_state())
    s0 = host_init_state(theta, np.asarray(jax.random.split(jax.random.PRNGKey(1), 1)), hyper, spec,
                         model_state=state)
    x = jnp.zeros((64, 16, 16, 3))
    step = jax.jit(jax.vmap(lambda s, yy, h: _step(spec, h, {}, x, yy, s, check=False)))
    temp = step.lower(s0, jnp.zeros((1, 64), jnp.int32), hyper).compile().memory_analysis().temp_size_in_bytes
    assert 4 * activation_floats(small, 64, 8) >= temp


@pytest.mark.slow
def test_an_evaluation_over_many_images_runs_in_batches_with_the_same_predictions(monkeypatch):
    """`apply_bounded`: past EVAL_FLOATS activation floats the examples go through in
    batches; the predictions are those of one pass."""
    import advjax.train as train_mod

    model = make_model("cnn", 3, (8, 8, 1), 4)
    params = model.init(jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (50, 8, 8, 1))
    whole = train_mod.apply_bounded(model, params, x, {})
    monkeypatch.setattr(train_mod, "EVAL_FLOATS", 7 * 1000)  # 29 examples a batch, 2 batches
    batched = train_mod.apply_bounded(model, params, x, {})
    assert batched.shape == whole.shape
    assert (jnp.argmax(batched, -1) == jnp.argmax(whole, -1)).all()
    np.testing.assert_allclose(batched, whole, rtol=1e-5, atol=1e-6)
