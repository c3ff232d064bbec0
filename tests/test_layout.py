"""The seed layout per platform (--seed-groups) and the matmul precision (--matmul-precision)."""

import glob
import os
import subprocess
import sys

import pytest
from conftest import with_flags

from advjax import run_sweep
from advjax.options import from_dict
from advjax.plan import shared_settings
from advjax.rows import tuner_of
from advjax.sweep import main
from advjax.train import DEVICE_GROUP, PhaseSpec, group_elements_of, seed_groups, seed_layout


def test_auto_chooses_device_groups_on_an_accelerator_and_cache_groups_on_a_cpu(monkeypatch):
    assert seed_layout("auto", "cpu") == "cache"
    assert all(seed_layout("auto", p) == "device" for p in ("gpu", "cuda", "rocm", "tpu", "METAL"))
    assert seed_layout("cache", "tpu") == "cache" and seed_layout("device", "cpu") == "device"
    with pytest.raises(ValueError):
        seed_layout("per-seed", "cpu")
    assert group_elements_of("cache") == PhaseSpec.group_elements and group_elements_of("device") == DEVICE_GROUP
    import advjax.plan

    cfg = from_dict({"seed_groups": "auto"}).resolve()
    assert shared_settings(cfg).group_elements == PhaseSpec.group_elements  # this CPU
    monkeypatch.setattr(advjax.plan.jax, "default_backend", lambda: "gpu")  # a fake accelerator
    assert shared_settings(cfg).group_elements == DEVICE_GROUP
    assert tuner_of(from_dict({"tune_groups": True}).resolve()) is None  # tuning is for cache groups


def test_device_groups_put_all_of_a_devices_seeds_in_one_group():
    from advjax.model import make_model

    spec = PhaseSpec(make_model("mlp", 1000, 784, 10), ("hidden", "readout"))
    assert seed_groups(spec, 128, 8) == (8, 1)  # MNIST p = 1000: one seed per cache-sized group
    assert seed_groups(PhaseSpec(spec.model, spec.trainable, group_elements=DEVICE_GROUP), 128, 8) == (1, 8)


# 2-D points, n = 1500, p = 400: 600k activation floats a seed, so that cache-sized groups
# (2^20 floats) hold one seed and the device layout puts two side by side on each of the 2 devices.
WIDE = {"dataset": "gaussians", "widths": "400", "n_train": 1500, "n_test": 200, "max_steps": 25,
        "experiments": "1,2,3", "quiet": True, "measures": False, "phase1_max_steps": 25}
EXACT = ("steps", "converged", "diverged", "phase1_steps", "phase1_converged")
CLOSE = ("train_acc", "test_acc", "train_loss", "phase1_train_acc")


@pytest.mark.slow
def test_device_layout_equals_each_seed_run_alone_to_float32_rounding(tmp_path):
    together = run_sweep({**WIDE, "seeds": 4, "seed_groups": "device"}, str(tmp_path / "dev"))
    import json

    assert json.load(open(tmp_path / "dev" / "manifest.json"))["layout"] == {"seed_groups": "device",
                                                                              "matmul_precision": "default"}
    for s in range(4):
        alone = run_sweep({**WIDE, "seeds": 1, "seed": s, "seed_groups": "cache"}, str(tmp_path / f"s{s}"))
        mine = [r for r in together if r["seed"] == s]
        assert len(mine) == len(alone) == 3
        for g, a in zip(mine, alone):
            assert g["experiment"] == a["experiment"]
            for k in EXACT:
                assert g[k] == a[k], (s, g["experiment"], k)
            for k in CLOSE:
                assert (g[k] is None) == (a[k] is None)
                if a[k] is not None:
                    assert g[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6), (s, g["experiment"], k)


def test_bad_layout_and_precision_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import advjax.memory

    monkeypatch.setattr(advjax.memory, "host_memory_bytes", lambda: 16 * 2**30)  # a 16 GB machine, wherever run
    monkeypatch.setattr(advjax.memory, "free_memory_bytes", lambda: 16 * 2**30)
    for argv, flag in ((["--matmul-precision", "tf32"], "--matmul-precision"),
                       (["--seed-groups", "all"], "--seed-groups"),
                       (["--seed-groups", "device", "--tune-groups"], "--tune-groups"),
                       (["--seed-groups", "device", "--widths", "1000000", "--n-test", "10", "--seeds", "64",
                         "--max-seeds-in-flight", "64"], "--seed-groups")):
        assert main([*argv, "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and f"{flag}:" in err, err
        if flag == "--seed-groups" and "device" in argv:
            assert "--max-seeds-in-flight" in err
    assert not (tmp_path / "o").exists()


TINY = ["--dataset", "gaussians", "--widths", "6", "--seeds", "2", "--max-steps", "30", "--n-test", "100",
        "--experiments", "1,2", "--no-measures", "--quiet"]


@pytest.mark.slow
def test_the_precision_reaches_the_compiled_program_and_the_fingerprint(tmp_path):
    for precision in ("default", "highest"):
        dump = tmp_path / f"hlo-{precision}"
        env = {**os.environ, "XLA_FLAGS": f"--xla_dump_to={dump} --xla_dump_hlo_as_text"}
        p = subprocess.run([sys.executable, "-m", "advjax.sweep", *TINY, "--matmul-precision", precision,
                            "--no-compile-cache", "--out", str(tmp_path / precision)], env=env, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr
        texts = [open(f).read() for f in glob.glob(str(dump / "*after_optimizations.txt"))]
        highest = sum("operand_precision={highest,highest}" in t for t in texts)
        assert texts and (highest > 0) == (precision == "highest"), (precision, highest, len(texts))
    # Θ_adv made at the default precision is refused for a sweep at another, in one line
    rc = main(with_flags(TINY, ["--matmul-precision", "highest", "--adv-from", str(tmp_path / "default"),
               "--out", str(tmp_path / "mixed")]))
    assert rc == 2 and not (tmp_path / "mixed").exists()
    assert main(with_flags(TINY, ["--matmul-precision", "highest", "--adv-from", str(tmp_path / "highest"),
                 "--out", str(tmp_path / "same")])) == 0


@pytest.mark.slow
def test_a_sigterm_after_the_sweep_ends_the_process_quietly(tmp_path):
    """A batch system's SIGTERM that arrives while the CLI prints its table or exits: no traceback
    (it raised KeyboardInterrupt inside jax's exit handler), exit status 128 + 15."""
    script = ("import os, signal, sys; from advjax.sweep import main; "
              f"rc = main({with_flags(TINY, ['--max-steps', '5', '--out', str(tmp_path / 'o')])!r}); "
              "assert rc == 0; os.kill(os.getpid(), signal.SIGTERM); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert p.returncode == 143 and "Traceback" not in p.stderr, p.stderr
    assert (tmp_path / "o" / "results.csv").exists()
