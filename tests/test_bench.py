"""The benchmark runs end to end on a tiny plan (speed itself is never asserted here)."""

import importlib.util
import json

import pytest

from advjax import bench

HAS_TORCH = importlib.util.find_spec("torch") is not None
PEAKS = {"matmul_size": 1, "jax_matmul_flops": 1e9, "numpy_matmul_flops": 1e9, "peak_flops": 1e9,
         "copy_bytes_per_s": 1e9, "cache_copy_bytes_per_s": 1e10}
# The tiny plan's widths and seeds: those of two of the roofline's counts below, so that
# the rows' step counts and the roofline's are the same programs (one compile for both).
TINY_WIDTHS = {"2d": 100, "mnist": 10, "mnist-deep3": 10}
SEEDS = 2


@pytest.fixture(scope="module", autouse=True)
def compile_cache():
    """The test run's persistent compilation cache (tests/conftest.py), as a sweep turns it
    on: `bench.step_cost` and `workload_data` build a new jit on each call, so a program
    that two tests here share compiles once and loads from disk after."""
    from advjax.runtime import compile_cache_dir, enable_compile_cache

    enable_compile_cache(compile_cache_dir("auto"))


@pytest.mark.slow
def test_bench_quick_tiny(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "plan", lambda quick, widths: [
        {"workload": w, "width": TINY_WIDTHS[w], "impl": i, "seeds": SEEDS, "steps": 5}
        for w in bench.WORKLOADS for i in ("advjax", "jax_per_seed")])
    monkeypatch.setattr(bench, "machine_peaks", lambda quick: PEAKS)
    out = tmp_path / "b.json"
    assert bench.main(["--quick", "--only", "advjax,jax_per_seed", "--json", str(out), "--no-grid", "--no-conv"]) == 0
    printed = capsys.readouterr().out  # the MLP table, with nan where --only left a peer out
    assert any(line.startswith("mnist-deep3") and " nan " in line for line in printed.splitlines())
    report = json.loads(out.read_text())
    rows = {(r["workload"], r["impl"]): r for r in report["results"]}
    assert set(rows) == {(w, i) for w in ("2d", "mnist", "mnist-deep3") for i in ("advjax", "jax_per_seed")}
    # every implementation did the same work: the cap, for each seed
    assert all(r["seed_steps"] == 2 * 5 for r in rows.values())
    assert rows[("mnist", "advjax")]["useful_flops_per_seed_step"] == bench.useful_flops(784, 128, 10, 10, 32)
    assert rows[("mnist-deep3", "advjax")]["useful_flops_per_seed_step"] == bench.useful_flops(784, 128, 10, 10, 32,
                                                                                               3)


def test_useful_flops_counts():
    # full batch: forward 2n(dp+pk), backward 2n(dp+pk) + 2npk
    assert bench.useful_flops(2, 100, 10, 1, None) == 2 * 100 * 30 + 2 * 100 * 30 + 2 * 100 * 10
    # minibatch adds the error check's forward over all n
    assert bench.useful_flops(2, 100, 10, 1, 10) == 4 * 10 * 30 + 2 * 10 * 10 + 2 * 100 * 30
    # depth 3 (two p x p layers more): M = dp + 2p^2 + pk, and every layer's input gradient but the data's
    m = 2 * 10 + 2 * 100 + 10 * 1
    assert bench.useful_flops(2, 100, 10, 1, None, depth=3) == 4 * 100 * m + 2 * 100 * (m - 20)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is the bench extra")
def test_advjax_and_the_torch_loop_compute_the_same_thing():
    check = bench.agreement("2d", 20, 3000)
    assert check["agree"], check


@pytest.mark.slow
def test_grid_row_one_run_against_a_run_per_point(monkeypatch):
    monkeypatch.setattr(bench, "QUICK_GRID_LRS", (0.01, 0.3))  # quick=True: the quick grid's points
    row = bench.grid_row(4, quick=True)
    assert row["same_rows"] and row["points"] == 2 and row["one_run_seconds"] > 0


@pytest.mark.slow
def test_roofline_flops_of_the_compiled_step_match_a_hand_count():
    # MNIST's N_p step is matmuls and little else: XLA's count is the hand count of the
    # matmuls (forward and backward on the minibatch, the error check on all 128) + <2%
    # (2 seeds: the tiny plan's, whose mnist p = 10 and 2d p = 100 rows count these same programs)
    d, n, k, batch, _ = bench.WORKLOADS["mnist"]
    for p in (10, 100):
        xla = bench.step_cost("mnist", p, SEEDS)["xla_flops_per_seed_step"]
        assert 1.0 <= xla / bench.useful_flops(d, n, p, k, batch) < 1.02
    # a seed alone (its groups of one) checks only the n - batch examples outside its
    # minibatch: the minibatch's logits come from the gradient's forward pass
    xla = bench.step_cost("mnist", 100, SEEDS, alone=True)["xla_flops_per_seed_step"]
    assert 1.0 <= xla / bench.useful_flops(d, n - batch, 100, k, batch) < 1.02
    # on 2-D points the elementwise work (ReLU and its mask, biases, the loss) is of the same order
    xla = bench.step_cost("2d", 100, SEEDS)["xla_flops_per_seed_step"]
    assert 1.0 <= xla / bench.useful_flops(2, 100, 100, 1, None) < 2.0


def test_the_cpu_is_named_with_its_family_and_model():
    """A VM that shows only "AMD EPYC" still tells its generation apart in every table."""
    from advjax.devices import cpu_from_cpuinfo

    zen5 = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 26\nmodel\t\t: 2\nmodel name\t: AMD EPYC\n"
            "flags\t\t: fpu sse2 avx2 avx512f avx512bw\n\nprocessor\t: 1\nmodel name\t: other\n")
    assert cpu_from_cpuinfo(zen5) == "AMD EPYC (family 26, model 2, AVX-512)"
    older = zen5.replace("26", "25").replace("model\t\t: 2", "model\t\t: 17").replace(" avx512f avx512bw", "")
    assert cpu_from_cpuinfo(older) == "AMD EPYC (family 25, model 17)"
    assert cpu_from_cpuinfo("processor\t: 0\nmodel name\t: Neoverse\n") == "Neoverse"
    assert cpu_from_cpuinfo("processor\t: 0\nBogoMIPS\t: 50\n") is None  # no model name: the caller's fallback


@pytest.mark.slow
def test_a_peer_row_stops_at_its_budget_and_says_so(monkeypatch):
    """A per-seed loop that runs past the row budget is stopped there (a ResNet-18 torch
    loop once held the quick bench up for 9 minutes) and reports the rate of the steps it
    made, marked over_budget; within the budget, the row runs every step."""
    monkeypatch.setattr(bench, "_row_budget", [0.0])
    row = bench.run_jax_per_seed("2d", TINY_WIDTHS["2d"], SEEDS, 50)
    assert row["over_budget"] and 1 <= row["seed_steps"] < SEEDS * 50 and row["seconds"] > 0
    monkeypatch.setattr(bench, "_row_budget", [600.0])
    row = bench.run_jax_per_seed("2d", TINY_WIDTHS["2d"], SEEDS, 5)
    assert "over_budget" not in row and row["seed_steps"] == SEEDS * 5
