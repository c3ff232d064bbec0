"""The group-size probe (issue 15, item 2; advjax/tune.py): whatever it measures, it
never chooses a size that changes a bit of the results."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from advjax.model import MLP
from advjax.sweep import run_sweep
from advjax.train import Numbers, PhaseSpec, RunOptions, init_params, seed_groups, train
from advjax.tune import CACHE_FILE, DEFAULT, GroupTuner

N_SEEDS, N_TRAIN = 16, 100


@pytest.fixture(scope="module")
def workload():
    """N_p at p = 1000 on 2-D points: seed groups of about 10 at the default size, and
    sizes that lay the seeds out otherwise (on XLA:CPU some of them round differently).
    The shapes and phase of the sweep below (16 seeds of 100 points, one logit): its
    programs are these, compiled once in the file."""
    model = MLP(width=1000, n_in=2, n_out=1)
    keys = jax.random.split(jax.random.PRNGKey(0), N_SEEDS)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N_SEEDS, N_TRAIN, 2)).astype(np.float32) * 3
    y = (x[..., 0] * x[..., 1] > 0).astype(np.int32)  # fitted in 4 to 180 steps, or not within 300
    return PhaseSpec(model, model.layers), init_params(model, keys, N_SEEDS), x, y, np.asarray(keys)


class Rigged(GroupTuner):
    """Real training and real bits, rigged clock: every size but the default looks
    faster, the smallest fastest (on XLA:CPU these are the ones that round differently)."""

    def timed(self, spec, size, steps, args, kw):
        _, bits = super().timed(spec, size, steps, args, kw)
        return (1.0 if size == DEFAULT else 0.1 + np.log2(size) / 100), bits


def _leaves(outcome):
    return [np.asarray(a) for a in jax.tree.leaves(tuple(outcome))]


@pytest.mark.slow
def test_probe_keeps_only_sizes_whose_every_bit_matches_and_they_match_on_a_whole_run(workload, tmp_path):
    spec, params, x, y, keys = workload
    tuner = Rigged(str(tmp_path))
    chosen = tuner.choose(spec, (params, x, y, keys), Numbers(0.05, 0))
    record = tuner.records[-1]
    same = {int(k): v for k, v in record["identical"].items()}
    assert len(same) > 1 and same[DEFAULT]  # several layouts were probed
    assert chosen.group_elements == min([c for c in same if same[c] and c != DEFAULT] or [DEFAULT])
    # The probe's verdicts, checked independently on a whole run (seeds stopping at
    # their own steps, up to 300): a size judged identical is identical throughout, and a
    # size judged different does differ.
    def run(size):
        return train(PhaseSpec(spec.model, spec.trainable, group_elements=size), params, x, y, keys,
                     Numbers(0.05, 300))

    default = run(DEFAULT)
    reference, steps = _leaves(default), np.asarray(default.steps)
    assert 0 < steps.min() < steps.max()  # the runs really stop at different steps
    for size, identical in same.items():
        if size != DEFAULT:
            bits_equal = all(np.array_equal(a, b) for a, b in zip(_leaves(run(size)), reference))
            assert bits_equal == identical, size
    assert json.load(open(tmp_path / CACHE_FILE))  # the choice is kept for the next run


class Fake(GroupTuner):
    """No training: each size's time and bits are given (the choice logic alone)."""

    def __init__(self, cache_dir, seconds, bits):
        super().__init__(cache_dir)
        self.seconds, self.bits, self.probed = seconds, bits, []

    def timed(self, spec, size, steps, args, kw):
        self.probed.append((size, steps))
        return self.seconds[size], [self.bits.get(size, b"default")]


def test_choice_margin_cache_and_one_layout(workload, tmp_path):
    spec, params, x, y, keys = workload
    layouts = {seed_groups(PhaseSpec(spec.model, spec.trainable, group_elements=c), N_TRAIN, N_SEEDS): c
               for c in (1 << 16, 1 << 18, 1 << 20, 1 << 22)}
    assert len(layouts) == 4
    seconds = {1 << 16: 0.30, 1 << 18: 0.31, DEFAULT: 0.5, 1 << 22: 0.40, 1 << 24: 0.40}
    bits = {1 << 16: b"other"}  # the fastest size rounds differently
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("seeds",))
    args = ((params, x, y, keys), Numbers(0.5, 0), RunOptions(mesh=mesh))
    fake = Fake(str(tmp_path), seconds, bits)
    assert fake.choose(spec, *args).group_elements == 1 << 18
    assert fake.records[-1]["from"] == "probe" and fake.records[-1]["identical"][str(1 << 16)] is False
    assert [s for s, _ in fake.probed] == [DEFAULT, 1 << 16, 1 << 18, 1 << 22]  # 2^24 lays out as 2^22: not probed
    assert {steps for _, steps in fake.probed} == {2}  # two loop iterations (the default took >= PROBE_SECONDS)
    again = Fake(str(tmp_path), seconds, bits)
    assert again.choose(spec, *args).group_elements == 1 << 18
    assert again.probed == [] and again.records[-1]["from"] == "cache"
    # within the margin of the default: the default stays; another model: its own entry
    close = Fake(str(tmp_path), {**seconds, 1 << 18: 0.49, 1 << 22: 0.48}, bits)
    other = PhaseSpec(MLP(width=999, n_in=2, n_out=2), spec.trainable)
    assert close.choose(other, *args).group_elements == DEFAULT and close.probed
    # an unreadable cache is probed again and rewritten
    (tmp_path / CACHE_FILE).write_text("not json")
    assert Fake(str(tmp_path), seconds, bits).choose(spec, *args).group_elements == 1 << 18
    assert json.load(open(tmp_path / CACHE_FILE))
    # a minibatch phase checks with a forward pass of its own, which the state does not show: not probed;
    # under a fixed budget there is no check, and it is
    minibatch = dataclasses.replace(spec, batch_size=32)
    skipped = Fake(None, seconds, bits)
    assert skipped.choose(minibatch, *args).group_elements == DEFAULT and skipped.probed == []
    assert skipped.records[-1]["from"].startswith("not probed")
    budget = Fake(None, seconds, bits)
    assert budget.choose(dataclasses.replace(minibatch, budget=True), *args).group_elements == 1 << 18
    # one seed: every size lays it out alike, nothing is probed
    single = Fake(None, seconds, bits)
    assert single.choose(spec, jax.tree.map(lambda a: a[:1], args[0]), *args[1:]).group_elements == DEFAULT
    assert single.probed == [] and single.records[-1]["from"] == "one layout"


def _sweep(out, cache, **extra):
    run_sweep({"dataset": "spirals", "widths": "1000", "seeds": 16, "experiments": "baseline", "max_steps": 40,
               "n_test": 200, "measures": False, "figure": False, "quiet": True, "compile_cache": str(cache),
               **extra}, str(out))
    return (out / "results.csv").read_text(), json.load(open(out / "manifest.json"))["widths"]["1000"]


@pytest.mark.slow
def test_sweep_tune_groups_gives_the_same_rows_and_reuses_its_choice(tmp_path):
    plain, _ = _sweep(tmp_path / "plain", tmp_path / "cache")
    tuned, stats = _sweep(tmp_path / "tuned", tmp_path / "cache", tune_groups=True)
    again, stats2 = _sweep(tmp_path / "again", tmp_path / "cache", tune_groups=True)
    assert tuned == plain and again == plain
    (first,), (second,) = stats["group_tuning"], stats2["group_tuning"]
    assert first["from"] == "probe" and second["from"] == "cache"
    assert first["identical"][str(first["group_elements"])] is True
    assert second["group_elements"] == first["group_elements"]
    assert os.path.exists(tmp_path / "cache" / CACHE_FILE)
