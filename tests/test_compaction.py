"""Compaction (issue 15, item 3): as seed groups finish, the live ones are gathered and
spread over the devices at fixed step counts. Groups move whole, so every bit of every
seed is that of the uncompacted run; these tests check it on runs that really regroup.

Regrouping needs several devices (on one, a finished group already costs nothing), so
the runs below are subprocesses with forced CPU devices and small seed groups."""

import csv
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from advjax.checkpoint import PhaseStore
from advjax.experiments import experiment
from advjax.options import ConfigError, from_dict
from advjax.plan import load_data, make_sweep_model, phase_fingerprint
from advjax.train import GroupLayout, compaction_point, repacked


def test_compaction_points_depend_on_the_step_count_alone():
    points, it = [], 0
    while it < 100_000:
        it = compaction_point(it)
        points.append(it)
    assert points[:3] == [64, 128, 192]
    gaps = np.diff(points)
    assert (gaps >= 64).all()
    big = np.array(points[:-1]) >= 1024
    assert (gaps[big] * 16 >= np.array(points[:-1])[big]).all()  # 8 to 16 points per doubling
    assert (gaps[big] * 8 <= np.array(points[:-1])[big]).all()
    assert compaction_point(1000) == compaction_point(999) == 1024  # the same point from anywhere before it


def test_layout_spreads_live_groups_evenly_and_drops_padding():
    # 2 devices x 3 slots of groups of 2: seeds 0..8, the last repeated into 3 padding rows
    take = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 8, 8])
    back = np.arange(9)
    whole = GroupLayout(take, back, 2, np.arange(6).reshape(2, 3), np.arange(9))
    done = np.array([1, 1, 1, 1, 1, 1, 0, 0, 0], bool)  # groups 3 and 4 live, 5 only pads seed 8
    busy = np.array([0, 0, 0, 1, 1, 1], bool)  # device 1 runs 3 groups, device 0 none
    smaller = whole.compacted(done, busy)
    assert smaller.slots.tolist() == [[3], [4]]  # one live group a device, half the slots or fewer
    seeds, rows = smaller.placed()
    assert seeds.tolist() == [6, 7, 8] and rows.tolist() == [0, 1, 2]
    assert take[smaller.rows].tolist() == [6, 7, 8, 8]
    assert smaller.compacted(done, np.array([1, 1], bool)) is None  # already even: nothing to gain
    # more than half the slots live: same program size, spread
    done = np.array([0, 1, 0, 1, 0, 1, 0, 1, 1], bool)
    spread = whole.compacted(done, np.array([1, 1, 1, 1, 0, 0], bool))
    assert spread.slots.tolist() == [[0, 2, -1], [1, 3, -1]]
    assert spread.idle_rows.tolist() == [False] * 4 + [True] * 2 + [False] * 4 + [True] * 2


def test_repack_lays_out_each_blocks_live_seeds_as_a_run_of_them_alone():
    done = np.array([1, 0, 1, 0, 0, 1, 1, 1, 1, 0], bool)  # blocks of 5: seeds 1, 3, 4 and 9 live
    layout = repacked(done, 5, 2, lambda n_local: (1, n_local))  # one group a device
    assert layout.group == 2 and layout.slots.tolist() == [[0, 1], [2, 3]]
    # device 0: block 0's 1, 3 then block 1's 9, 9 (padding); device 1: block 0's 4, 4, block 1's 9, 9
    assert layout.take.tolist() == [1, 3, 9, 9, 4, 4, 9, 9]
    seeds, rows = layout.placed()
    assert dict(zip(seeds.tolist(), rows.tolist())) == {1: 0, 3: 1, 4: 4, 9: 2}


def test_no_compact_is_a_runtime_option_and_repack_enters_the_fingerprint():
    base = {"dataset": "gaussians", "widths": [4], "seeds": 2, "n_test": 50}
    plain = from_dict(base).resolve()
    ds = load_data(plain)
    model = make_sweep_model(plain, ds, 4)
    fp = lambda **kw: phase_fingerprint(from_dict({**base, **kw}).resolve(), ds, model,  # noqa: E731
                                        experiment("baseline", model), [0, 1])
    assert "compact" not in plain.results_config() and fp(compact=False) == fp()  # same results either way
    assert fp(repack=True)["repack"] is True and "repack" not in fp()  # other groups: other last bits
    with pytest.raises(ConfigError, match="--repack"):
        from_dict({**base, "compact": False, "repack": True})


TRAIN_SCRIPT = textwrap.dedent("""
    import json, jax, numpy as np
    from advjax.data import circles_points
    from advjax.model import MLP
    from advjax.train import COMPACTION_STATS, Numbers, PhaseSpec, RunOptions, train
    assert jax.device_count() == 3
    model = MLP(width=16, n_in=2, n_out=1)
    keys = jax.random.split(jax.random.PRNGKey(0), 14)
    xs, ys = jax.vmap(lambda k: circles_points(k, 100, noise=0.1))(keys)
    theta0 = jax.vmap(model.init)(keys)
    caps = np.random.default_rng(0).permutation(np.geomspace(60, 2000, 14).astype(np.int32))
    lr = np.repeat(np.float32([0.05, 0.02]), 7)  # two grid points of 7 seeds
    out = {}
    for name, batch, every in (("full", None, 1), ("minibatch", 40, 3)):
        # groups of 2 seeds; 7 seeds on 3 devices leave device 2 two groups of padding
        spec = PhaseSpec(model, ("hidden", "readout"), batch_size=batch, check_every=every, group_elements=3400,
                         chunk_steps=300)
        runs = []
        for compact in (False, True, True):
            before = COMPACTION_STATS.relayouts, COMPACTION_STATS.smaller_programs
            o = train(spec, theta0, xs, ys, keys, Numbers(lr, caps), RunOptions(block=7, compact=compact))
            runs.append(([np.asarray(a).tolist() for a in jax.tree.leaves(o)], o.steps.tolist(),
                         COMPACTION_STATS.relayouts - before[0], COMPACTION_STATS.smaller_programs - before[1]))
        out[name] = {"same_as_off": runs[1][0] == runs[0][0], "same_twice": runs[2][0] == runs[1][0],
                     "counts": [r[2:] for r in runs], "steps": runs[0][1]}

    class Killed(Exception):
        pass

    class MemoryStore:  # the Store protocol in memory; the process "dies" right after a save past `kill_at`
        def __init__(self, kill_at=None):
            self.saved, self.kill_at = None, kill_at
        def restore(self, like):
            return jax.tree.map(np.copy, self.saved) if self.saved is not None else None
        def due(self, max_step):
            return True
        def save(self, state, complete):
            self.saved = jax.tree.map(np.copy, state)
            if self.kill_at is not None and int(np.max(state.step)) >= self.kill_at:
                raise Killed

    # --repack: a grid point's live seeds regrouped, four seeds side by side -> fewer
    spec = PhaseSpec(model, ("hidden", "readout"), group_elements=100_000, chunk_steps=100)
    leaves = lambda o: [np.asarray(a).tolist() for a in jax.tree.leaves(o)]
    run = lambda **kw: train(spec, theta0, xs, ys, keys, Numbers(lr, caps), RunOptions(block=7, **kw))
    before = COMPACTION_STATS.repacks
    whole = leaves(run(repack=True))
    repacks = COMPACTION_STATS.repacks - before
    store = MemoryStore(kill_at=700)
    try:
        run(repack=True, store=store)
    except Killed:
        pass
    killed_after = COMPACTION_STATS.repacks - before - repacks
    assert not store.saved.done.all()
    store.kill_at = None
    resumed = leaves(run(repack=True, store=store))
    out["repack"] = {"repacks": repacks, "before_kill": killed_after, "same_twice": leaves(run(repack=True)) == whole,
                     "resumed_same": resumed == whole, "same_as_off": leaves(run(compact=False)) == whole}
    print(json.dumps(out))
""")


@pytest.mark.slow  # a process of its own with three forced CPU devices
def test_compacted_training_equals_uncompacted_bit_for_bit_on_three_devices_and_repack_resumes_alike():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=3", "JAX_PLATFORMS": "cpu"}
    p = subprocess.run([sys.executable, "-c", TRAIN_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout.strip().splitlines()[-1])
    repack = out.pop("repack")
    assert repack["repacks"] >= 2 and repack["before_kill"] >= 1, repack  # the kill came after a repack
    assert repack["same_twice"] and repack["resumed_same"], repack
    print("--repack gives the uncompacted bits:", repack["same_as_off"])  # not promised: fewer seeds side by side
    for name, r in out.items():
        assert r["same_as_off"] and r["same_twice"], name
        (off, off_small), (on, on_small), again = r["counts"]
        assert off == off_small == 0
        assert on >= 2 and on_small >= 1, (name, r["counts"])  # it really regrouped, into smaller programs too
        assert list(again) == [on, on_small]  # at the same step counts both times
        assert len(set(r["steps"])) > 5  # seeds stop at many different steps


# The sweep with seed groups of ~2 seeds (the default, 2^20 floats, holds every seed of
# these small widths in one group) on 2 CPU devices.
RUNNER = textwrap.dedent("""
    import dataclasses, sys
    from advjax import train
    whole = train.seed_groups
    train.seed_groups = lambda spec, n, n_local: whole(dataclasses.replace(spec, group_elements=1000), n, n_local)
    from advjax.sweep import main
    sys.exit(main(sys.argv[1:]))
""")
SWEEP = ["--dataset", "circles", "--noise", "0.1", "--widths", "8", "--n-test", "200", "--seeds", "8",
         "--experiments", "1,2", "--lr", "0.05", "--max-steps", "2500", "--phase1-max-steps", "300", "--no-measures",
         "--no-figure", "--cpu-devices", "2", "--quiet"]


def _sweep(out, *extra, wait=True):
    cmd = [sys.executable, "-c", RUNNER, *SWEEP, *extra, "--out", str(out)]
    if not wait:
        return subprocess.Popen(cmd, stderr=subprocess.PIPE)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.load(open(out / "manifest.json"))["widths"]["8"]["compactions"]


@pytest.fixture(scope="module")
def compacted(tmp_path_factory):
    out = tmp_path_factory.mktemp("compaction") / "on"
    return out, _sweep(out)


@pytest.mark.slow
def test_sweep_with_compaction_is_reproducible_and_equals_no_compact(compacted, tmp_path):
    out, compactions = compacted
    assert compactions > 0
    assert _sweep(tmp_path / "again") == compactions
    assert (tmp_path / "again" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    assert _sweep(tmp_path / "off", "--no-compact") == 0
    assert (tmp_path / "off" / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
    steps = [int(r["steps"]) for r in csv.DictReader(open(out / "results.csv"))]
    assert max(steps) >= 5 * min(steps)


@pytest.mark.slow
def test_sweep_killed_after_a_compaction_resumes_to_the_same_rows(compacted, tmp_path):
    out, _ = compacted
    killed = tmp_path / "killed"
    proc = _sweep(killed, "--chunk-steps", "50", "--checkpoint-every", "100", wait=False)
    baseline = killed / "checkpoints" / "p8" / "y"
    deadline, steps = time.time() + 300, 0
    while proc.poll() is None and time.time() < deadline and steps < 1200:  # past the first compactions
        try:
            steps = max(PhaseStore(str(baseline), {}).read_meta()["steps"])
        except Exception:  # no save yet, or one being written
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -9
    meta = PhaseStore(str(baseline), {}).read_meta()
    assert not meta["complete"] and 1200 <= max(meta["steps"]) < 2500  # it stopped inside the phase
    _sweep(killed, "--chunk-steps", "50", "--checkpoint-every", "100", "--resume")
    assert (killed / "results.csv").read_bytes() == (out / "results.csv").read_bytes()
