"""advjax.memory, alone: the memory model's counts and its refusals, before anything is allocated."""

import jax
import pytest

from advjax import memory
from advjax.data import make_dataset
from advjax.model import make_model, n_parameters
from advjax.options import ConfigError, from_dict


def parts(**values):
    cfg = from_dict({"dataset": "gaussians", **values}).resolve()
    ds = make_dataset(cfg.dataset, cfg.n_train, cfg.n_test)
    model = make_model("mlp", cfg.widths[-1], ds.n_features, 1)
    return cfg, ds, model


def test_parameter_count_and_bytes_per_seed_by_hand():
    cfg, ds, model = parts(widths="50", n_train=100)
    assert n_parameters(model) == 2 * 50 + 50 + 50 + 1  # W1, b1, W2, b2
    # 4 parameter copies, no optimizer state, shared data (not batched), n · p activation floats
    assert memory.bytes_per_seed(model, 100, x_batched=False) == 4 * (4 * 201 + 100 * 50)
    # its own data per seed; Adam's two moments in and out of a chunk: 4 more copies
    assert memory.bytes_per_seed(model, 100, x_batched=True, opt_copies=2) == 4 * (8 * 201 + 100 * 2 + 100 * 50)


def test_optimizer_and_host_copies_follow_the_experiments():
    assert memory.optimizer_copies(parts()[0]) == 0
    assert memory.optimizer_copies(parts(phase1_optimizer="adam")[0]) == 2
    assert memory.optimizer_copies(parts(momentum=0.9)[0]) == 1
    assert memory.host_copies(parts(experiments="1,2,3")[0]) == memory.HOST_COPIES
    assert memory.host_copies(parts(experiments="shrink_perturb")[0]) == memory.HOST_COPIES + 1


def test_seeds_in_flight_from_the_cap_or_the_budget():
    cfg, ds, model = parts(seeds=50, max_seeds_in_flight=8)
    assert memory.seeds_in_flight(cfg, model, ds, False) == 8
    cfg, ds, model = parts(seeds=50, memory_budget="1MB", widths="50")
    per_seed = memory.bytes_per_seed(model, ds.n_train, False)
    assert memory.seeds_in_flight(cfg, model, ds, False) == min(50, max(jax.device_count(), 2**20 // per_seed))
    cfg, ds, model = parts(seeds=50, memory_budget="1KB", widths="50")
    assert memory.seeds_in_flight(cfg, model, ds, False) == jax.device_count()  # at least one per device


def test_a_sweep_that_cannot_fit_is_refused_naming_its_largest_term(monkeypatch):
    monkeypatch.setattr(memory, "host_memory_bytes", lambda: 2**30)  # a 1 GB host
    cfg, ds, model = parts(widths="10", seeds=3)
    memory.check_memory(cfg, ds, model, x_batched=True)  # fits
    cfg, ds, model = parts(widths="10", seeds=3, n_test=10**8)
    with pytest.raises(ConfigError, match=r"^--n-test: this sweep needs about .* of host memory"):
        memory.check_memory(cfg, ds, model, x_batched=True)
    cfg, ds, model = parts(widths="3000000", seeds=20)
    with pytest.raises(ConfigError, match=r"^--widths: .*lower --widths"):
        memory.check_memory(cfg, ds, model, x_batched=True)
    cfg, ds, model = parts(widths="2000", seeds=3, memory_budget="1KB")
    with pytest.raises(ConfigError, match=r"^--memory-budget: one seed of width 2000 needs about"):
        memory.check_memory(cfg, ds, model, x_batched=True)
