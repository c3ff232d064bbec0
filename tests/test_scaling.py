"""Seeds across devices and processes, memory-bounded seed batches, merging split runs."""

import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import with_flags

from advjax import run_sweep
from advjax.merge import main as merge_main
from advjax.sweep import main

CLI = [sys.executable, "-m", "advjax.sweep"]
# One width and five seeds: five over four devices or two processes are padded, then dropped.
BASE = ["--dataset", "circles", "--widths", "5", "--max-steps", "150", "--n-test", "100", "--quiet", "--no-measures",
        "--seeds", "5"]


def start(args, out, env_extra=None):
    """The real CLI in its own process (its device count is fixed when JAX starts), not yet waited for."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.Popen([*CLI, *args, "--out", str(out)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc, timeout=300):
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    """results.csv of BASE on one device in one process, which the four-device and the
    two-process runs must reproduce byte for byte: started at once, so that it runs beside
    the first of them, and read when a test first calls it."""
    out = tmp_path_factory.mktemp("one") / "one"
    proc, done = start(with_flags(BASE, ["--cpu-devices", "1"]), out), []

    def results():
        if not done:
            finish(proc)
            done.append((out / "results.csv").read_bytes())
        return done[0]

    yield results
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.mark.slow
def test_four_devices_give_the_one_device_results(tmp_path, one_device):
    """One width (was two), five seeds over four devices: the same bytes as on one device."""
    finish(start(BASE, tmp_path / "four", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    man = json.loads((tmp_path / "four" / "manifest.json").read_text())
    assert len(man["device"]["devices"]) == 4
    assert (tmp_path / "four" / "results.csv").read_bytes() == one_device()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_one_process_results(tmp_path, one_device):
    """One width (was two), five seeds (was three) over two processes: the same bytes as one
    process, and process 0 alone writes."""
    args = with_flags(BASE, ["--cpu-devices", "1"])
    port = _free_port()
    procs = [subprocess.Popen([*CLI, *args, "--out", str(tmp_path / "two"), "--distributed",
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert len(man["device"]["devices"]) == 2  # one device in each process
    assert (tmp_path / "two" / "results.csv").read_bytes() == one_device()
    assert sorted(os.listdir(tmp_path / "two")) == [".lock", "checkpoints", "manifest.json", "results.csv",
                                                    "summary.png"]  # process 0 alone wrote


@pytest.mark.slow
def test_memory_budget_sets_the_seeds_in_flight_and_bounds_peak_memory(tmp_path):
    """Three processes (each its own peak RSS), run side by side; 100 test points (was 200), no figure."""
    # MNIST at p = 1000: 3.2 MB of float32 parameters per seed.
    args = ["--dataset", "mnist", "--widths", "1000", "--max-steps", "3", "--experiments", "1,2",
            "--n-test", "100", "--quiet", "--cpu-devices", "1", "--no-measures", "--no-figure"]
    runs = {name: start([*args, "--seeds", str(seeds), "--memory-budget", budget], tmp_path / name)
            for name, seeds, budget in (("one", 1, "4GB"), ("small", 12, "60MB"), ("big", 12, "4GB"))}
    made = {}
    for name, proc in runs.items():
        finish(proc)
        made[name] = json.loads((tmp_path / name / "manifest.json").read_text())
    in_flight = {k: m["widths"]["1000"]["seeds_in_flight"] for k, m in made.items()}
    assert in_flight == {"one": 1, "small": 4, "big": 12}  # 60 MB / (4 x 3.2 MB + activations) = 4
    rss = {k: m["peak_memory"]["host_peak_rss_bytes"] for k, m in made.items()}
    # Beyond one seed's run, peak memory grows by the host copies of every seed's state
    # (Θ_adv, a phase's state, and what saving it copies: about 3.3 x 3.2 MB a seed
    # measured) plus what is in flight. Guard: at most 6 copies a seed.
    host_copies = 6 * 11 * 3.2e6
    assert rss["small"] - rss["one"] < host_copies + 60e6 + 100e6, rss
    # three batches of four seeds give exactly the results of one batch of twelve
    assert (tmp_path / "small" / "results.csv").read_text() == (tmp_path / "big" / "results.csv").read_text()


# The merge tests' sweeps: widths 6 and 9 at two seeds and 100 test points, as in test_sweep.py, so
# that their programs are shared (in this process, and through the compilation cache across files).
COMMON = {"dataset": "gaussians", "seeds": 2, "max_steps": 100, "n_test": 100, "quiet": True, "measures": False,
          "figure": False}


@pytest.mark.slow
def test_merge_split_runs_and_refuse_inconsistent_ones(tmp_path, capsys):
    """Widths 6 and 9 (were 4 and 6). The refused mixes: another step size at width 9 (was
    width 8: no new programs), another --n-train, and a width in both."""
    run_sweep({**COMMON, "widths": "6,9"}, str(tmp_path / "whole"))
    run_sweep({**COMMON, "widths": "9"}, str(tmp_path / "b"))
    run_sweep({**COMMON, "widths": "6"}, str(tmp_path / "a"))
    assert merge_main([str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    assert os.path.isdir(tmp_path / "m" / "checkpoints" / "p9" / "theta_adv")
    run_sweep({**COMMON, "widths": "9", "lr": 0.02}, str(tmp_path / "other"))
    # another width at another step size: not a whole sweep (lr 0.02 at width 6 is missing)
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "other"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not make a whole sweep" in err and "'lr': 0.02" in err and err.count("\n") == 1
    run_sweep({**COMMON, "widths": "9", "n_train": 50}, str(tmp_path / "smaller"))
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "smaller"), "--out", str(tmp_path / "z")]) == 2
    assert "--n-train" in capsys.readouterr().err
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "whole"), "--out", str(tmp_path / "y")]) == 2
    assert "is in both" in capsys.readouterr().err


@pytest.mark.slow
def test_merge_joins_grid_points_run_apart_into_the_grid(tmp_path):
    """At width 6 (was 5): the single points train at the merge tests' shapes."""
    common = {**COMMON, "widths": "6", "max_steps": 150, "experiments": "2,3"}
    run_sweep({**common, "lr": "0.01,0.05"}, str(tmp_path / "grid"))
    run_sweep({**common, "lr": 0.05}, str(tmp_path / "fast"))
    run_sweep({**common, "lr": 0.01}, str(tmp_path / "slow"))
    assert merge_main([str(tmp_path / "fast"), str(tmp_path / "slow"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "results.csv").read_bytes() == (tmp_path / "grid" / "results.csv").read_bytes()
    # each point's Θ_adv sits in its digest directory, as in the grid run, and serves --adv-from
    tags = sorted(os.listdir(tmp_path / "grid" / "checkpoints" / "p6" / "theta_adv"))
    assert sorted(os.listdir(tmp_path / "m" / "checkpoints" / "p6" / "theta_adv")) == tags and len(tags) == 2
    frozen = run_sweep({**common, "lr": "0.01,0.05", "experiments": "3", "adv_from": str(tmp_path / "m")},
                       str(tmp_path / "again"))
    assert frozen == [r for r in run_sweep({**common, "lr": "0.01,0.05"}, str(tmp_path / "g2"))
                      if r["experiment"] == "frozen"]


def test_bad_scaling_flags_of_the_real_cli(tmp_path):
    """--distributed without the rest of its flags: the real CLI exits 2 with one line
    before it joins anything (the other flags are checked in process below)."""
    p = start(with_flags(BASE, ["--distributed", "--coordinator", "127.0.0.1:1"]), tmp_path / "o")
    _, err = p.communicate(timeout=120)
    assert p.returncode == 2 and "--distributed" in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv,msg", [(["--distributed", "--coordinator", "127.0.0.1:1"], "--distributed"),
                                      (["--memory-budget", "lots"], "--memory-budget"),
                                      (["--coordinator", "nohostport"], "--coordinator")])
def test_bad_scaling_flags(argv, msg, tmp_path, capsys):
    assert main(with_flags(BASE, [*argv, "--out", str(tmp_path / "o")])) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1, err
