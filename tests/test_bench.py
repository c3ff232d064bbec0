"""The benchmark runs end to end on a tiny plan (speed itself is never asserted here)."""

import importlib.util
import json

import jax
import numpy as np
import pytest

from advjax import bench

HAS_TORCH = importlib.util.find_spec("torch") is not None
PEAKS = {"matmul_size": 1, "jax_matmul_flops": 1e9, "numpy_matmul_flops": 1e9, "peak_flops": 1e9,
         "copy_bytes_per_s": 1e9, "cache_copy_bytes_per_s": 1e10}


def test_bench_quick_tiny(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "plan", lambda quick, widths: [
        {"workload": w, "width": 4, "impl": i, "seeds": 2, "steps": 5}
        for w in bench.WORKLOADS for i in ("advjax", "jax_per_seed")])
    monkeypatch.setattr(bench, "machine_peaks", lambda quick: PEAKS)
    out = tmp_path / "b.json"
    assert bench.main(["--quick", "--only", "advjax,jax_per_seed", "--json", str(out), "--no-grid", "--no-conv"]) == 0
    report = json.loads(out.read_text())
    rows = {(r["workload"], r["impl"]): r for r in report["results"]}
    assert set(rows) == {(w, i) for w in ("2d", "mnist", "mnist-deep3") for i in ("advjax", "jax_per_seed")}
    # every implementation did the same work: the cap, for each seed
    assert all(r["seed_steps"] == 2 * 5 for r in rows.values())
    assert rows[("mnist", "advjax")]["useful_flops_per_seed_step"] == bench.useful_flops(784, 128, 4, 10, 32)
    assert rows[("mnist-deep3", "advjax")]["useful_flops_per_seed_step"] == bench.useful_flops(784, 128, 4, 10, 32, 3)


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


def test_grid_row_one_run_against_a_run_per_point(monkeypatch):
    monkeypatch.setattr(bench, "GRID_LRS", (0.01, 0.3))
    row = bench.grid_row(4, quick=True)
    assert row["same_rows"] and row["points"] == 2 and row["one_run_seconds"] > 0


def test_roofline_flops_of_the_compiled_step_match_a_hand_count():
    # MNIST's N_p step is matmuls and little else: XLA's count is the hand count of the
    # matmuls (forward and backward on the minibatch, the error check on all 128) + <2%
    d, n, k, batch, _ = bench.WORKLOADS["mnist"]
    for p in (10, 100):
        xla = bench.step_cost("mnist", p, 4)["xla_flops_per_seed_step"]
        assert 1.0 <= xla / bench.useful_flops(d, n, p, k, batch) < 1.02
    # on 2-D points the elementwise work (ReLU and its mask, biases, the loss) is of the same order
    xla = bench.step_cost("2d", 100, 4)["xla_flops_per_seed_step"]
    assert 1.0 <= xla / bench.useful_flops(2, 100, 100, 1, None) < 2.0


def _tiny_conv_workloads(monkeypatch):
    """The conv workloads at tiny size: 16 MNIST images, ResNet-18 on 16 random 16x16 images."""
    monkeypatch.setitem(bench.CONV_WORKLOADS, "cnn-mnist", bench.ConvWorkload("cnn", (28, 28, 1), 16, 10, 8, 0.1,
                                                                              "mnist"))
    monkeypatch.setitem(bench.CONV_WORKLOADS, "resnet18-32px", bench.ConvWorkload("resnet18", (16, 16, 3), 16, 3,
                                                                                  8, 0.1, "random"))
    bench._xla_cost.cache_clear()


def test_conv_rows_run_at_tiny_size_and_have_their_columns(monkeypatch):
    _tiny_conv_workloads(monkeypatch)
    impls = bench.CONV_IMPLS if HAS_TORCH else ("advjax",)
    jobs = [{**job, "width": 2, "seeds": 2, "steps": 2} for job in bench.conv_plan(quick=True) if job["impl"] in impls]
    assert {j["workload"] for j in jobs} == {"cnn-mnist", "resnet18-32px"}
    rows = [bench.run_job(job, PEAKS) for job in jobs]
    for r in rows:
        assert r["seed_steps"] == 2 * 2  # random labels: every seed runs to the cap
        assert r["seed_steps_per_s"] > 0 and r["xla_flops_per_seed_step"] > 0 and 0 < r["share_of_peak"]
        assert r["useful_flops_per_seed_step"] == r["xla_flops_per_seed_step"]
    assert all("bound_seconds" in r for r in rows if r["impl"] == "advjax")
    text = bench.conv_table(rows)
    assert "cnn-mnist" in text and "resnet18-32px" in text
    bench._xla_cost.cache_clear()


@pytest.mark.skipif(not HAS_TORCH, reason="torch is the bench extra")
def test_torch_twins_of_the_conv_nets_compute_what_advjax_does(monkeypatch):
    """Same θ0, minibatches and steps: the CNN's and ResNet-18's (BatchNorm in train mode
    for the update, running statistics for the check) losses agree."""
    _tiny_conv_workloads(monkeypatch)
    # ResNet-18 at width 4: at width 2 its BatchNorms see so few values that float32
    # rounding alone moves the losses by ~1e-4 within 4 steps
    for name, width in (("cnn-mnist", 2), ("resnet18-32px", 4)):
        check = bench.agreement(name, width, 4)
        assert check["agree"] and check["max_rel_loss_diff_first_30_steps"] < 1e-4, check


def test_im2col_layout_is_the_same_cnn(monkeypatch):
    _tiny_conv_workloads(monkeypatch)
    model, x, _, theta0, _ = bench.workload_data("cnn-mnist", 1, 3)
    twin = bench._im2col_cnn()(model.width, model.n_in, model.n_out)
    params = jax.tree.map(lambda a: a[0], theta0)
    np.testing.assert_allclose(twin.apply(params, x), model.apply(params, x), rtol=1e-5, atol=1e-6)
    row = bench.layout_row("cnn-mnist", 3, 2, 3, "im2col")
    assert row["seed_steps_per_s"] > 0 and row["max_rel_diff_to_seed_alone"] < 1e-5
