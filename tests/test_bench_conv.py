"""The bench's conv rows (issue 14) run end to end at tiny size; the torch twins compute
what advjax does (speed itself is never asserted here). A file of their own, so that the
test workers share the bench's compile-heavy tests."""

import dataclasses
import importlib.util

import jax
import numpy as np
import pytest

from advjax import bench

pytestmark = pytest.mark.slow  # the bench's rows, end to end
HAS_TORCH = importlib.util.find_spec("torch") is not None
PEAKS = {"matmul_size": 1, "jax_matmul_flops": 1e9, "numpy_matmul_flops": 1e9, "peak_flops": 1e9,
         "copy_bytes_per_s": 1e9, "cache_copy_bytes_per_s": 1e10}


@pytest.fixture(scope="module", autouse=True)
def compile_cache():
    """The test run's persistent compilation cache (tests/conftest.py), as a sweep turns it
    on: the bench builds a new jit for each row (θ0's vmapped init, the step it counts),
    so a program the rows share compiles once and loads from disk after."""
    from advjax.runtime import compile_cache_dir, enable_compile_cache

    enable_compile_cache(compile_cache_dir("auto"))


def _tiny_conv_workloads(monkeypatch, side: int = 8):
    """The conv workloads at tiny size: 16 MNIST images, ResNet-18 on 16 random SIDExSIDE images."""
    monkeypatch.setitem(bench.CONV_WORKLOADS, "cnn-mnist", bench.ConvWorkload("cnn", (28, 28, 1), 16, 10, 8, 0.1,
                                                                              "mnist"))
    monkeypatch.setitem(bench.CONV_WORKLOADS, "resnet18-32px", bench.ConvWorkload("resnet18", (side, side, 3), 16, 3,
                                                                                  8, 0.1, "random"))
    bench._xla_cost.cache_clear()


def test_conv_rows_run_at_tiny_size_and_have_their_columns(monkeypatch):
    _tiny_conv_workloads(monkeypatch)
    impls = bench.CONV_IMPLS if HAS_TORCH else ("advjax", "advjax_other_conv")
    jobs = [{**job, "width": 2, "seeds": 2, "steps": 2} for job in bench.conv_plan(quick=True) if job["impl"] in impls
            and (job["impl"], job["workload"]) != ("advjax_other_conv", "resnet18-32px")]  # compile time
    assert {j["workload"] for j in jobs} == {"cnn-mnist", "resnet18-32px"}
    rows = [bench.run_job(job, PEAKS) for job in jobs]
    for r in rows:
        assert r["seed_steps"] == 2 * 2  # random labels: every seed runs to the cap
        assert r["seed_steps_per_s"] > 0 and r["xla_flops_per_seed_step"] > 0 and 0 < r["share_of_peak"]
        assert r["useful_flops_per_seed_step"] == r["xla_flops_per_seed_step"]
    assert all("bound_seconds" in r for r in rows if r["impl"] == "advjax")
    text = bench.conv_table(rows)
    assert "cnn-mnist" in text and "resnet18-32px" in text and "other conv" in text and "im2col" in text
    bench._xla_cost.cache_clear()


@pytest.mark.skipif(not HAS_TORCH, reason="torch is the bench extra")
def test_torch_twins_of_the_conv_nets_compute_what_advjax_does(monkeypatch):
    """Same θ0, minibatches and steps: the CNN's and ResNet-18's (BatchNorm in train mode
    for the update, running statistics for the check) losses agree."""
    _tiny_conv_workloads(monkeypatch, side=16)  # at 8x8 its BatchNorms see too few values, as below
    # ResNet-18 at width 4: at width 2 its BatchNorms see so few values that float32
    # rounding alone moves the losses by ~1e-4 within 4 steps
    for name, width in (("cnn-mnist", 2), ("resnet18-32px", 4)):
        check = bench.agreement(name, width, 4)
        assert check["agree"] and check["max_rel_loss_diff_first_30_steps"] < 1e-4, check


def test_im2col_layout_is_the_same_cnn(monkeypatch):
    _tiny_conv_workloads(monkeypatch)
    # width 2, as the rows above: θ0 of one and of two seeds are their programs
    model, x, _, theta0, _ = bench.workload_data("cnn-mnist", 1, 2)
    twin = dataclasses.replace(model, conv_impl="im2col")
    params = jax.tree.map(lambda a: a[0], theta0)
    np.testing.assert_allclose(twin.apply(params, x), model.apply(params, x), rtol=1e-5, atol=1e-6)
    row = bench.layout_row("cnn-mnist", 2, 2, 3, "im2col")
    assert row["seed_steps_per_s"] > 0 and row["max_rel_diff_to_seed_alone"] < 1e-5
