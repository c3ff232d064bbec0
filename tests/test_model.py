"""The model protocol and deep MLPs: sizes, vmapped seeds, per-layer experiments,
measures at depth, checkpoints that name the model, and bad input."""

import dataclasses

import jax
import numpy as np
import pytest
from test_experiments import bits

from advjax import devices, run_sweep
from advjax.data import gaussians_points, random_labels
from advjax.devices import DRAW_COMPILER_OPTIONS, at_top_level, jit_draw
from advjax.experiments import (
    Optimizer,
    TrainSettings,
    WidthRun,
    experiment,
    experiment_names,
    last_start,
    run_phases,
)
from advjax.measures import GRID_COLUMNS, columns, measure
from advjax.memory import bytes_per_seed
from advjax.model import INIT_SCHEMES, MLP, activations_per_example, make_model, model_from_options, n_parameters
from advjax.options import from_dict
from advjax.results import config_of, read_results
from advjax.sweep import main
from advjax.train import Numbers, PhaseSpec, train


@dataclasses.dataclass
class _Run(WidthRun):
    opt: Optimizer = Optimizer()  # what its experiments' phases train with (`_exp`)


def _exp(name, run):
    return experiment(name, run.model, run.opt, run.opt)


def _run(depth=3, width=6, n_seeds=3, max_steps=200, lr=0.5):
    model = MLP(width=width, n_in=2, n_out=1, depth=depth)
    keys = jax.random.split(jax.random.PRNGKey(0), n_seeds)
    x, y = jax.vmap(lambda k: gaussians_points(k, 30))(keys)
    y_rand = jax.vmap(lambda k: random_labels(k, 30, 2))(jax.random.split(jax.random.PRNGKey(1), n_seeds))
    return _Run(
        model=model,
        theta0=jax.tree.map(np.asarray, jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(2), n_seeds))),
        x_train=x,
        labels={"y": y, "y_rand": y_rand},
        batch_keys=jax.random.split(jax.random.PRNGKey(3), n_seeds),
        x_batched=True,
        settings=TrainSettings(batch_size=None, loss_reduction="mean", chunk_steps=500),
        fresh=lambda: jax.tree.map(np.asarray, jax.vmap(model.init)(jax.random.split(jax.random.PRNGKey(4), n_seeds))),
        opt=Optimizer(lr=lr, max_steps=max_steps),
    )


def _norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.asarray(a, np.float64) ** 2) for a in jax.tree.leaves(tree))))


def test_layers_and_sizes_come_from_the_model():
    assert MLP(5, 3, 2).layers == ("hidden", "readout")  # N_p keeps its names (and checkpoints)
    assert MLP(5, 3, 2, depth=3).layers == ("hidden1", "hidden2", "hidden3", "readout")
    for depth in (1, 2, 3):
        model = MLP(7, 3, 4, depth=depth)
        # the shapes init returns (traced, not run: the count needs no random numbers)
        real = sum(a.size for a in jax.tree.leaves(jax.eval_shape(model.init, jax.random.PRNGKey(0))))
        assert n_parameters(model) == real  # the memory model's count is the real one
        assert activations_per_example(model) == 7 * depth
        assert bytes_per_seed(model, 10, x_batched=True) == 4 * (4 * real + 10 * 3 + 10 * 7 * depth)
        assert model_from_options(model.options()) == model
    assert make_model("mlp", 7, 3, 4, depth=2) == MLP(7, 3, 4, depth=2)


def test_init_is_pytorch_default_per_layer():
    model = MLP(50, 8, 1, depth=3)
    params = model.init(jax.random.PRNGKey(0))
    for layer, fan_in in zip(model.layers, (8, 50, 50, 50)):
        for leaf in params[layer].values():
            a = np.abs(np.asarray(leaf))
            assert a.max() <= fan_in**-0.5 and a.max() > 0.5 * fan_in**-0.5


def test_init_compiled_at_llvm_level_1_draws_the_bits_of_the_default_level(monkeypatch):
    """θ0's programs compile at LLVM level 1 on a CPU (`devices.jit_draw`, seconds faster):
    every model kind's init must draw exactly what XLA's default level draws, on whichever
    CPU runs this. Level 0 does not, which also shows that jit_draw's options reach XLA."""
    models = [make_model("mlp", 12, 5, 3, s, 2) for s in INIT_SCHEMES]
    models += [make_model("cnn", 4, (8, 8, 1), 3, s) for s in INIT_SCHEMES]
    models += [make_model("vgg11", 2, (32, 32, 3), 3, "lecun"), make_model("resnet18", 2, (8, 8, 3), 3)]
    draw = jax.vmap(lambda k: [m.init(k) for m in models])
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    default = jax.jit(draw)(keys)
    assert bits(jax.jit(draw, compiler_options=DRAW_COMPILER_OPTIONS)(keys)) == bits(default)
    assert bits(jit_draw(draw)(keys)) == bits(default)
    monkeypatch.setattr(devices, "DRAW_COMPILER_OPTIONS", {"xla_backend_optimization_level": 0})
    assert bits(jit_draw(draw)(keys)) != bits(default)


def test_a_one_off_draw_runs_alone_and_inside_other_programs():
    """jit_draw's level-1 program where it runs on its own (and under an eager vmap); while
    a jit, scan, grad or eval_shape traces, where JAX refuses compiler options, the
    enclosing program's, even for values captured from outside."""
    draw = jit_draw(lambda k, scale: scale * jax.random.uniform(k, (3,)))
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    alone = np.stack([np.asarray(draw(k, 2.0)) for k in keys])
    assert bits(jax.vmap(draw, in_axes=(0, None))(keys, 2.0)) == bits(alone)
    assert bits(jax.jit(jax.vmap(draw, in_axes=(0, None)))(keys, 2.0)) == bits(alone)
    assert bits(jax.lax.scan(lambda c, k: (c, draw(k, 2.0)), 0, keys)[1]) == bits(alone)
    np.testing.assert_allclose(jax.grad(lambda s: draw(keys[0], s).sum())(2.0), alone[0].sum() / 2, rtol=1e-6)
    assert bits(draw.lower(keys[0], 2.0).compile()(keys[0], 2.0)) == bits(alone[0])  # as the bench's cost counts
    assert bits(jax.jit(lambda: draw(keys[0], 2.0))()) == bits(alone[0])  # a captured key: still traced
    assert jax.eval_shape(lambda: draw(keys[0], 2.0)).shape == (3,)
    x, y = gaussians_points(keys[0], 5)
    assert bits(jax.jit(lambda: gaussians_points(keys[0], 5))()[1]) == bits(y)  # a dataset's draw is traceable
    assert at_top_level() and jax.vmap(lambda k: (at_top_level() or pytest.fail("vmap")) and k)(keys) is not None
    jax.jit(lambda k: at_top_level() and pytest.fail("a jit traces"))(keys[0])


@pytest.mark.slow
def test_vmapped_seed_of_a_deep_network_equals_the_seed_alone():
    """Three seeds side by side against seed 1 alone, over several chunks (they start at 16
    steps). The batch's spec is the one run_phases builds for `_run`'s phases (chunk_steps
    500), so the 3-seed program is the one the per-layer tests below train Θ_adv with."""
    run = _run(depth=3)
    spec = PhaseSpec(run.model, run.model.layers, chunk_steps=run.settings.chunk_steps)
    together = train(spec, run.theta0, run.x_train, run.labels["y"], run.batch_keys, Numbers(0.5, 300))
    one = lambda t: jax.tree.map(lambda a: np.asarray(a)[1:2], t)  # noqa: E731
    alone = train(spec, one(run.theta0), one(run.x_train), one(run.labels["y"]), one(run.batch_keys), Numbers(0.5, 300))
    # As at depth 1 (test_train): exact steps; parameters equal up to the last bits, which
    # XLA's batched and unbatched matmuls may round differently.
    assert together.steps[1] == alone.steps[0] > 0 and together.converged[1] == alone.converged[0]
    for a, b in zip(jax.tree.leaves(alone.params), jax.tree.leaves(one(together.params))):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_freeze_k_keeps_layers_1_to_k_of_theta_adv_bit_for_bit_and_moves_the_rest():
    run = _run(depth=3)
    theta_adv = run_phases(_exp("adversarial", run)[:1], run)[0].params
    names = [n for n in experiment_names(4) if n.startswith("freeze_")]
    assert names == ["freeze_1", "freeze_2", "freeze_3"]
    for k, name in enumerate(names, start=1):
        final = run_phases(_exp(name, run), run)[-1]
        assert (final.steps > 0).all()
        for i, layer in enumerate(run.model.layers):
            if i < k:
                assert bits(final.params[layer]) == bits(theta_adv[layer]), (name, layer)
            else:
                for a, b in zip(jax.tree.leaves(final.params[layer]), jax.tree.leaves(theta_adv[layer])):
                    assert all(not np.array_equal(a[s], b[s]) for s in range(3)), (name, layer)


def test_reinit_k_starts_from_theta_adv_with_layer_k_alone_freshly_initialised():
    run = _run(depth=3, max_steps=50)
    theta_adv = run_phases(_exp("adversarial", run)[:1], run)[0].params
    fresh = run.fresh()
    names = [n for n in experiment_names(4) if n.startswith("reinit_")]
    assert names == ["reinit_1", "reinit_2", "reinit_3", "reinit_4"]
    for k, name in enumerate(names, start=1):
        start = last_start(_exp(name, run), run)
        for i, layer in enumerate(run.model.layers):
            if i == k - 1:
                assert bits(start[layer]) == bits(fresh[layer])
                assert bits(start[layer]) != bits(theta_adv[layer])
            else:
                assert bits(start[layer]) == bits(theta_adv[layer])


def test_norm_matched_layer_at_depth_has_theta_adv_norm_in_every_layer():
    run = _run(depth=3, max_steps=100)
    theta_adv = run_phases(_exp("adversarial", run)[:1], run)[0].params
    start = last_start(_exp("norm_matched_layer", run), run)
    whole = last_start(_exp("norm_matched_global", run), run)
    for s in range(3):
        seed = lambda t, s=s: jax.tree.map(lambda a: np.asarray(a)[s], t)  # noqa: E731
        for layer in run.model.layers:
            assert _norm(seed(start)[layer]) == pytest.approx(_norm(seed(theta_adv)[layer]), rel=1e-6)
        assert _norm(seed(whole)) == pytest.approx(_norm(seed(theta_adv)), rel=1e-6)


@pytest.fixture(scope="module")
def measured():
    """One measure() of the seeds of a depth-2 network, on a known lattice: what the two
    tests below check, from one compiled measuring program (it is most of their time).
    Three seeds, as in `_run`'s other calls here, so that its data and init reuse theirs."""
    run = _run(depth=2)
    grid, bounds = 40, np.array([-3.0, 3.0, -3.0, 3.0], np.float32)
    out = measure(run.model, run.theta0, run.theta0, run.x_train, run.labels["y"], x_batched=True, hessian_iters=2,
                  grid=grid, bounds=bounds)
    return run, grid, out


def test_measures_at_depth_have_a_norm_per_layer_and_count_every_relu(measured):
    """At depth 2 (two hidden layers, as one program with the lattice test below): a norm
    column per hidden layer in order, norm_features over both, and every ReLU of both layers
    in active_fraction."""
    run, _, out = measured
    p0 = run.theta0
    cols = columns(run.model)
    assert cols[:5] == ("norm_hidden1", "norm_hidden2", "norm_features", "norm_readout", "norm_total")
    assert list(out) == [*cols, *GRID_COLUMNS]
    for s in range(3):
        seed = jax.tree.map(lambda a, s=s: np.asarray(a)[s], p0)
        for layer in run.model.layers[:-1]:
            assert out[f"norm_{layer}"][s] == pytest.approx(_norm(seed[layer]), rel=1e-5)
        features = {k: v for k, v in seed.items() if k != run.model.layers[-1]}
        assert out["norm_features"][s] == pytest.approx(_norm(features), rel=1e-5)
        assert out["norm_total"][s] == pytest.approx(np.hypot(out["norm_features"][s], out["norm_readout"][s]),
                                                     rel=1e-5)
        pre = np.concatenate(run.model.preactivations(seed, np.asarray(run.x_train[s])), axis=-1)
        assert pre.shape[-1] == 12
        assert out["active_fraction"][s] == pytest.approx(np.mean(pre > 0), abs=1e-6)


def test_linear_regions_of_a_depth_2_network_equal_a_direct_count_of_patterns(measured):
    run, grid, out = measured
    model, params = run.model, run.theta0
    assert model.depth == 2
    gx, gy = np.meshgrid(np.linspace(-3.0, 3.0, grid, dtype=np.float32), np.linspace(-3.0, 3.0, grid,
                                                                                    dtype=np.float32))
    pts = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    for s in range(3):
        seed = jax.tree.map(lambda a, s=s: a[s], params)
        pre = model.preactivations(seed, pts)
        both = {tuple(row) for row in np.concatenate([np.asarray(p > 0) for p in pre], axis=-1)}
        first = {tuple(row) for row in np.asarray(pre[0] > 0)}
        assert out["linear_regions"][s] == len(both)
        assert len(both) > len(first)  # the second layer cuts the first layer's regions


def test_old_configs_without_model_keys_run_as_np():
    cfg = from_dict({"dataset": "gaussians", "widths": "5"})
    assert (cfg.model, cfg.depth) == ("mlp", 1)
    manifest = {"config": {k: v for k, v in cfg.resolve().to_dict().items() if k not in ("model", "depth")}}
    assert (config_of(manifest).model, config_of(manifest).depth) == ("mlp", 1)


TINY = {"dataset": "gaussians", "widths": "5", "seeds": 2, "max_steps": 30, "n_test": 50, "quiet": True,
        "measures": False, "figure": False}


@pytest.mark.slow
def test_every_experiment_at_depth_2_runs_and_a_depth_2_theta_adv_is_refused_at_depth_3(tmp_path, capsys):
    rows = run_sweep({**TINY, "depth": 2, "experiments": "all", "measures": True, "grid": 8, "hessian_iters": 2},
                     str(tmp_path / "d2"))
    names = list(dict.fromkeys(r["experiment"] for r in rows))
    assert names == list(experiment_names(3))
    assert {"freeze_1", "freeze_2", "reinit_1", "reinit_2", "reinit_3"} <= set(names)
    on_disk = read_results(str(tmp_path / "d2" / "results.csv"))
    assert list(on_disk[0])[13:19] == ["norm_hidden1", "norm_hidden2", "norm_features", "norm_readout",
                                       "norm_total", "distance"]
    assert all(r["norm_hidden2"] is not None and r["linear_regions"] is not None for r in on_disk)
    args = ["--dataset", "gaussians", "--widths", "5", "--seeds", "2", "--max-steps", "30", "--n-test", "50",
            "--quiet", "--no-measures", "--depth", "3", "--experiments", "3", "--adv-from", str(tmp_path / "d2"),
            "--out", str(tmp_path / "d3")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--adv-from" in err and "model.depth (checkpoint 2, this sweep 3)" in err, err


@pytest.mark.parametrize("argv,flag,says", [
    (["--depth", "0"], "--depth", "from 1 to 64"),
    (["--depth", "-1"], "--depth", "from 1 to 64"),
    (["--depth", "two"], "--depth", "from 1 to 64"),
    (["--model", "resnet"], "--model", "mlp"),
    (["--depth", "3", "--experiments", "freeze_4"], "--experiments", "freeze_1 .. freeze_3"),
    (["--depth", "3", "--experiments", "reinit_5"], "--experiments", "reinit_1 .. reinit_4"),
    (["--experiments", "baseline,freeze_2"], "--experiments", "freeze_1 .. freeze_1"),
    (["--experiments", "freeze_0"], "--experiments", "freeze_K"),
    (["--dataset", "teacher", "--depth", "2", "--experiments", "teacher_features"], "--experiments", "--depth 1"),
])
def test_bad_model_flags_are_one_line_errors(argv, flag, says, tmp_path, capsys):
    assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and says in err, err
