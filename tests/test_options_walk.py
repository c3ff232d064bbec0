"""Every option that changes a phase is in that phase's fingerprint (issue 27, item 2),
proven by walking the options table: for each option that determines results (not
`runtime`), two values of it give two sets of phase fingerprints (the checkpoints a sweep
would save or reuse), or, for the options that only change what is measured or tested,
the same fingerprints and the same training inputs (points, labels, random labels).
A new option fails here until it is given two values below."""

import numpy as np
import pytest

from advjax.checkpoint import digest
from advjax.data import mnist_bundled
from advjax.options import OPTIONS, as_config
from advjax.plan import load_data, make_sweep_model, phase_fingerprint, sweep_experiments
from advjax.seeds import draw_seeds

BASE = {"dataset": "gaussians", "widths": "5", "seeds": 2, "experiments": "1,2,3"}
IMAGES = {"dataset": "mnist", "n_train": 20, "n_test": 20}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Two .npz files (one with a second set of arrays) and two MNIST copies in IDX format
    that differ in one training pixel."""
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    arrays = {k: rng.normal(size=(30, 2)).astype(np.float32) for k in ("x_train", "x_test", "xa", "xb")}
    arrays |= {k: (np.arange(30) % 2) for k in ("y_train", "y_test", "ya", "yb")}
    arrays["ya"] = arrays["ya"] * 3 + 3  # labels 3, 6: relabel maps them to 0, 1
    np.savez(d / "a.npz", **arrays)
    x_train, y_train, x_test, y_test = mnist_bundled()
    paths = []
    for i, shift in enumerate((0, 1)):
        p = d / f"mnist{i}"
        p.mkdir()
        xt = np.array(x_train, dtype=np.uint8).reshape(-1, 28, 28)
        xt[0, 14, 14] = (int(xt[0, 14, 14]) + 100 * shift) % 256
        write_idx(p / "train-images-idx3-ubyte", xt)
        write_idx(p / "train-labels-idx1-ubyte", np.asarray(y_train, np.uint8))
        write_idx(p / "t10k-images-idx3-ubyte", np.array(x_test, dtype=np.uint8).reshape(-1, 28, 28))
        write_idx(p / "t10k-labels-idx1-ubyte", np.asarray(y_test, np.uint8))
        paths.append(str(p))
    return {"npz": str(d / "a.npz"), "mnist": paths}


def write_idx(path, a):
    header = bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
    path.write_bytes(header + a.tobytes())


def values(files):
    """option -> (the config it applies in, value A, value B)."""
    npz = {"dataset": files["npz"], "relabel": True}
    return {
        "dataset": ({}, "gaussians", "circles"),
        "widths": ({}, "5", "6"),
        "seeds": ({}, 2, 3),
        "seed": ({}, 0, 1),
        "experiments": ({}, "1,2", "1,3"),
        "model": (IMAGES, "mlp", "cnn"),
        "depth": ({}, 1, 2),
        "max_steps": ({}, 100, 200),
        "lr": ({}, 0.01, 0.02),
        "batch_size": ({}, "full", 10),
        "lr_schedule": ({}, None, "step:2:0.1"),
        "check_every": ({}, 1, 5),
        "n_train": ({}, 40, 50),
        "n_test": ({}, 100, 200),
        "repack": ({"max_steps": "100,200", "compact": True}, False, True),
        "loss_reduction": ({}, "mean", "sum"),
        "phase1_optimizer": ({}, "sgd", "adam"),
        "phase1_lr": ({}, 0.01, 0.03),
        "phase1_max_steps": ({}, 100, 300),
        "random_fraction": ({}, 1.0, 0.5),
        "confusion_copies": (IMAGES, 0, 2),
        "zero_out": ({**IMAGES, "confusion_copies": 2}, 0.1, 0.2),
        "phase1_target_acc": ({}, 1.0, 0.9),
        "target_train_acc": ({}, 1.0, 0.9),
        "stop_rule": ({}, "target", "budget"),
        "momentum": ({}, 0.0, 0.9),
        "weight_decay": ({}, 0.0, 1e-4),
        "augment": ({**IMAGES, "model": "cnn"}, "none", "crop-flip"),
        "conv_impl": ({**IMAGES, "model": "cnn"}, "xla", "im2col"),
        "init": ({}, "torch", "he"),
        "shrink": ({"experiments": "shrink_perturb"}, 0.4, 0.5),
        "perturb": ({"experiments": "shrink_perturb"}, 0.1, 0.2),
        "input_dim": ({"dataset": "teacher"}, 20, 10),
        "teacher_width": ({"dataset": "teacher"}, 4, 8),
        "noise": ({"dataset": "circles"}, 0.5, 0.6),
        "t_max": ({"dataset": "spirals"}, "10", "2pi"),
        "fix_data": ({}, False, True),
        "standardize": ({}, False, True),
        "mnist_path": (IMAGES, *files["mnist"]),
        "cifar_path": None,  # test_data.py: CIFAR-10's arrays and their sha256, from a directory and a .tar.gz
        "npz_keys": (npz, "x_train,y_train,x_test,y_test", "xa,ya,xb,yb"),
        "relabel": ({"dataset": files["npz"]}, False, True),
        "measures": ({}, True, False),
        "hessian_iters": ({}, 32, 8),
        "grid": ({}, 256, 64),
        "seed_groups": ({}, "cache", "device"),
        "matmul_precision": ({}, "default", "highest"),
    }


# What changes rows but never a phase: the test set and the measures. And --relabel: where
# the labels are 0..K-1 it changes nothing; where they are not, a sweep without it is refused.
NOT_IN_PHASES = {"n_test", "measures", "hessian_iters", "grid", "relabel"}


def fingerprints(raw: dict) -> tuple[set, object]:
    cfg = as_config(raw).resolve()
    ds = load_data(cfg)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    found = set()
    for w in cfg.widths:
        model = make_sweep_model(cfg, ds, w)
        for at_points in sweep_experiments(cfg, model).values():
            for phases in at_points:
                for i in range(len(phases)):
                    found.add(digest(phase_fingerprint(cfg, ds, model, phases[: i + 1], seeds)))
    return found, (cfg, ds, seeds)


def test_the_table_names_every_option_that_determines_results(files):
    assert {o.name for o in OPTIONS if not o.runtime} == set(values(files))


@pytest.mark.parametrize("name", [o.name for o in OPTIONS if not o.runtime])
def test_two_values_of_an_option_give_two_phase_fingerprints(name, files):
    entry = values(files)[name]
    if entry is None:
        pytest.skip("its data's content is tested where the data is read")
    where, a, b = entry
    fa, (cfg_a, ds_a, seeds_a) = fingerprints({**BASE, **where, name: a})
    fb, (cfg_b, ds_b, seeds_b) = fingerprints({**BASE, **where, name: b})
    if name not in NOT_IN_PHASES:
        assert fa != fb, f"--{name.replace('_', '-')} {a} and {b} give the same phase fingerprints"
        return
    assert fa == fb
    # and training is indeed the same: the points, the labels and the random labels
    a, b = draw_seeds(ds_a, seeds_a, cfg_a.fix_data), draw_seeds(ds_b, seeds_b, cfg_b.fix_data)
    for u, v in ((a.split.x_train, b.split.x_train), (a.y_train, b.y_train), (a.y_rand, b.y_rand)):
        np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
