"""Θ_adv checkpoints, --adv-from, --resume after SIGKILL, the compile cache, and
checkpoints that move between device counts."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from advjax import run_sweep
from advjax.checkpoint import PhaseStore
from advjax.sweep import main

# Width 6 and two seeds at 100 test points, as in test_sweep.py: their programs compile once (in this
# process, and through the compilation cache across files). Widths 5 and 7 and three seeds before.
BASE = {"dataset": "gaussians", "widths": "6", "seeds": 2, "max_steps": 150, "n_test": 100, "quiet": True,
        "measures": False, "figure": False}
CLI = [sys.executable, "-m", "advjax.sweep"]


def cli_args(cfg):
    args = []
    for k, v in cfg.items():
        name = f"--{k.replace('_', '-')}"
        args += [name] if v is True else [f"--no-{name[2:]}"] if v is False else [name, str(v)]
    return args


def frozen_rows(path):
    return [line for line in open(path).read().splitlines() if ",frozen," in line]


@pytest.mark.slow
def test_adv_from_gives_the_combined_runs_frozen_results(tmp_path):
    """One width of two seeds (was two widths of three): frozen from --adv-from equals frozen run
    beside the adversarial run, and only Θ_adv is kept."""
    run_sweep({**BASE, "experiments": "2"}, str(tmp_path / "today"))
    assert os.path.isdir(tmp_path / "today" / "checkpoints" / "p6" / "theta_adv")
    assert not os.path.exists(tmp_path / "today" / "checkpoints" / "p6" / "y_rand+y")  # only Θ_adv is kept
    run_sweep({**BASE, "experiments": "3", "adv_from": str(tmp_path / "today")}, str(tmp_path / "tomorrow"))
    run_sweep({**BASE, "experiments": "2,3"}, str(tmp_path / "both"))
    combined = frozen_rows(tmp_path / "both" / "results.csv")
    assert len(combined) == 2
    assert frozen_rows(tmp_path / "tomorrow" / "results.csv") == combined
    meta = json.loads(open(tmp_path / "tomorrow/checkpoints/p6/theta_adv/0/meta/metadata").read())
    assert meta["complete"] and meta["fingerprint"]["model"]["width"] == 6 and meta["fingerprint"]["seeds"] == [0, 1]


@pytest.mark.slow
def test_adam_theta_adv_is_reused_and_its_settings_are_checked(tmp_path, capsys):
    """At width 6 of BASE (two seeds; phase 1 at most 1000 Adam steps, was 3000)."""
    adam = {**BASE, "phase1_optimizer": "adam", "phase1_lr": 0.02, "phase1_max_steps": 1000}
    run_sweep({**adam, "experiments": "2"}, str(tmp_path / "today"))
    run_sweep({**adam, "experiments": "3", "adv_from": str(tmp_path / "today")}, str(tmp_path / "tomorrow"))
    run_sweep({**adam, "experiments": "2,3"}, str(tmp_path / "both"))
    combined = frozen_rows(tmp_path / "both" / "results.csv")
    assert frozen_rows(tmp_path / "tomorrow" / "results.csv") == combined
    meta = PhaseStore(str(tmp_path / "today/checkpoints/p6/theta_adv"), {}).read_meta()
    assert meta["fingerprint"]["phases"][0]["optimizer"] == "adam" and meta["fingerprint"]["phases"][0]["lr"] == 0.02
    # a Θ_adv trained with other phase-1 settings is refused, naming the flag
    rc = main([*cli_args({**adam, "experiments": "3", "phase1_lr": 0.05}), "--adv-from", str(tmp_path / "today"),
               "--out", str(tmp_path / "other")])
    assert rc == 2 and "--adv-from" in capsys.readouterr().err


@pytest.mark.slow
def test_mismatched_missing_and_corrupt_checkpoints_are_refused(tmp_path, capsys):
    run_sweep({**BASE, "experiments": "2"}, str(tmp_path / "a"))
    cases = [
        ({"lr": 0.02}, "lr (checkpoint 0.01, this sweep 0.02)"),
        ({"seeds": 3}, "seeds"),
        ({"dataset": "circles"}, "dataset"),
        ({"fix_data": True}, "fix_data"),
        ({"widths": "7"}, "no checkpoint at"),
    ]
    for i, (change, msg) in enumerate(cases):
        cfg = {**BASE, "experiments": "3", "adv_from": str(tmp_path / "a"), **change}
        rc = main([*cli_args(cfg), "--out", str(tmp_path / f"o{i}")])
        err = capsys.readouterr().err
        assert rc == 2 and "--adv-from" in err and msg in err and err.count("\n") == 1, err
    # damage the array data of one checkpoint
    state_dir = tmp_path / "a" / "checkpoints" / "p6" / "theta_adv" / "0" / "state"
    for root, _, files in os.walk(state_dir):
        for f in files:
            if "manifest" in f or root.endswith("d"):
                open(os.path.join(root, f), "wb").write(b"garbage")
    rc = main([*cli_args({**BASE, "experiments": "3", "adv_from": str(tmp_path / "a")}),
               "--out", str(tmp_path / "bad")])
    err = capsys.readouterr().err
    assert rc == 2 and "unreadable" in err and err.count("\n") == 1 and "Traceback" not in err, err


def _has_save(path):
    return os.path.isdir(path) and any(d.isdigit() for d in os.listdir(path))


# Phase 1 cannot fit random labels within the cap and saves every 50 steps; the kill lands at its
# first save, with 1000 - 50 steps (19 saves) to go. Was 3000 steps (every run of it saved 60 times a
# phase) at widths 6 and 8: a resume that goes on to later widths is tested in test_reliability.py.
KILLED = {**BASE, "experiments": "2,3", "max_steps": 1000, "chunk_steps": 50, "checkpoint_every": 50}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """results.csv of KILLED's sweep run without a kill (both signals compare with it)."""
    out = tmp_path_factory.mktemp("whole")
    run_sweep(KILLED, str(out))
    return (out / "results.csv").read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_in_phase_one_then_resumed_equals_uninterrupted(tmp_path, sig, uninterrupted):
    cfg = KILLED
    out = tmp_path / "killed"
    proc = subprocess.Popen([*CLI, *cli_args(cfg), "--out", str(out)], stderr=subprocess.PIPE)
    theta_adv = out / "checkpoints" / "p6" / "theta_adv"
    deadline = time.time() + 120
    while not _has_save(theta_adv) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(sig)
    rc = proc.wait()
    assert rc == (-9 if sig == signal.SIGKILL else 130)
    meta = PhaseStore(str(theta_adv), {}).read_meta()
    assert not meta["complete"] and 0 < max(meta["steps"]) < 1000  # it really stopped inside phase 1
    assert not (out / "results.csv").exists()
    rc = main([*cli_args(cfg), "--out", str(out), "--resume"])
    assert rc == 0
    assert (out / "results.csv").read_bytes() == uninterrupted
    # resuming a finished sweep changes nothing and duplicates no row
    assert main([*cli_args(cfg), "--out", str(out), "--resume"]) == 0
    assert (out / "results.csv").read_bytes() == uninterrupted


@pytest.mark.slow
def test_resume_refuses_another_sweep_and_out_is_never_overwritten(tmp_path, capsys):
    run_sweep({**BASE, "experiments": "1"}, str(tmp_path / "a"))
    before = (tmp_path / "a" / "results.csv").read_bytes()
    rc = main([*cli_args({**BASE, "experiments": "1", "lr": 0.5}), "--out", str(tmp_path / "a"), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and "--resume" in err and "--lr" in err
    rc = main([*cli_args({**BASE, "experiments": "1"}), "--out", str(tmp_path / "a")])
    assert rc == 2 and "--resume" in capsys.readouterr().err
    assert (tmp_path / "a" / "results.csv").read_bytes() == before


@pytest.mark.slow
def test_second_run_loads_its_programs_from_the_disk_cache(tmp_path):
    """Two fresh processes on a fresh cache, at one width (was two) of every experiment."""
    env = {**os.environ, "ADVJAX_COMPILE_CACHE": str(tmp_path / "cache")}
    compile_s = []
    for name in ("first", "second"):
        subprocess.run([*CLI, *cli_args({**BASE, "max_steps": 50}), "--out", str(tmp_path / name)],
                       env=env, check=True, capture_output=True)
        widths = json.loads((tmp_path / name / "manifest.json").read_text())["widths"]
        compile_s.append(sum(w["compile_seconds"] for w in widths.values()))
        if name == "second":
            assert all(w["xla_compilations_from_disk_cache"] > 0 for w in widths.values())
    # A cold compile is 1; loading from disk measured 0.18-0.23 of it quiet, 0.26 in a loaded 2-core CI run.
    assert compile_s[1] < 0.4 * compile_s[0], compile_s


def test_checkpoint_from_four_devices_restores_on_one(tmp_path):
    """A state sharded over four devices (in its own process) restores whole on one. Its values
    are drawn with numpy into the parameters' shapes (jax.eval_shape: no compiled program,
    where vmapped inits were a dozen), so a wrong leaf, order or shard still fails."""
    script = textwrap.dedent(f"""
        import jax, jax.numpy as jnp, numpy as np
        from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
        from advjax.checkpoint import PhaseStore
        from advjax.model import MLP
        from advjax.train import host_init_state
        assert jax.device_count() == 4
        model = MLP(6, 2, 1)
        shapes = jax.eval_shape(jax.vmap(model.init), jax.ShapeDtypeStruct((8, 2), jnp.uint32))
        rng = np.random.default_rng(0)
        params = jax.tree.map(lambda s: rng.normal(size=s.shape).astype(s.dtype), shapes)
        keys = rng.integers(0, 2**32, size=(8, 2), dtype=np.uint32)
        state = host_init_state(params, keys, 0.1)
        state = state._replace(step=np.arange(8, dtype=np.int32))
        mesh = Mesh(np.array(jax.devices()), ("seeds",))
        state = jax.device_put(state, NamedSharding(mesh, P("seeds")))
        assert len(state.params["hidden"]["kernel"].sharding.device_set) == 4
        PhaseStore({str(tmp_path / 'ck')!r}, {{"k": 1}}).save(state, complete=True)
        np.savez({str(tmp_path / 'ref.npz')!r}, *[np.asarray(a) for a in jax.tree.leaves(state)])
    """)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    from advjax.model import MLP
    from advjax.train import host_init_state

    model = MLP(6, 2, 1)
    shapes = jax.eval_shape(jax.vmap(model.init), jax.ShapeDtypeStruct((8, 2), np.uint32))
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    like = jax.device_put(host_init_state(zeros, np.zeros((8, 2), np.uint32), 0.1))
    restored = PhaseStore(str(tmp_path / "ck"), {"k": 1}).restore(like)
    ref = np.load(tmp_path / "ref.npz")
    leaves = jax.tree.leaves(restored)
    assert len(leaves) == len(ref.files)
    for i, leaf in enumerate(leaves):
        assert len(leaf.sharding.device_set) == 1
        np.testing.assert_array_equal(np.asarray(leaf), ref[f"arr_{i}"])
