"""Seeds across devices and processes, memory-bounded seed batches, merging split runs."""

import json
import os
import socket
import subprocess
import sys

import pytest

from advjax import run_sweep
from advjax.merge import main as merge_main

CLI = [sys.executable, "-m", "advjax.sweep"]
BASE = ["--dataset", "circles", "--widths", "5,9", "--max-steps", "300", "--n-test", "300", "--quiet", "--no-measures"]


def sweep(args, out, env_extra=None, **kw):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([*CLI, *args, "--out", str(out)], env=env, capture_output=True, text=True, **kw)


def test_four_devices_give_the_one_device_results(tmp_path):
    args = [*BASE, "--seeds", "5"]  # 5 seeds over 4 devices: padded, then dropped
    one = sweep([*args, "--cpu-devices", "1"], tmp_path / "one")
    four = sweep(args, tmp_path / "four", {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"})
    assert one.returncode == 0 and four.returncode == 0, four.stderr
    man = json.loads((tmp_path / "four" / "manifest.json").read_text())
    assert len(man["device"]["devices"]) == 4
    assert (tmp_path / "one" / "results.csv").read_bytes() == (tmp_path / "four" / "results.csv").read_bytes()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_give_the_one_process_results(tmp_path):
    args = [*BASE, "--seeds", "3", "--cpu-devices", "1"]
    port = _free_port()
    procs = [subprocess.Popen([*CLI, *args, "--out", str(tmp_path / "two"), "--distributed",
                               "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
                               "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs[0][1][-2000:] + outs[1][1][-2000:]
    one = sweep(args, tmp_path / "one")
    assert one.returncode == 0
    man = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert len(man["device"]["devices"]) == 2  # one device in each process
    assert (tmp_path / "two" / "results.csv").read_bytes() == (tmp_path / "one" / "results.csv").read_bytes()
    assert sorted(os.listdir(tmp_path / "two")) == [".lock", "checkpoints", "manifest.json", "results.csv",
                                                    "summary.png"]  # process 0 alone wrote


def test_memory_budget_sets_the_seeds_in_flight_and_bounds_peak_memory(tmp_path):
    # MNIST at p = 1000: 3.2 MB of float32 parameters per seed.
    args = ["--dataset", "mnist", "--widths", "1000", "--max-steps", "3", "--experiments", "1,2",
            "--n-test", "200", "--quiet", "--cpu-devices", "1", "--no-measures"]
    made = {}
    for name, seeds, budget in (("one", 1, "4GB"), ("small", 12, "60MB"), ("big", 12, "4GB")):
        r = sweep([*args, "--seeds", str(seeds), "--memory-budget", budget], tmp_path / name)
        assert r.returncode == 0, r.stderr
        made[name] = json.loads((tmp_path / name / "manifest.json").read_text())
    in_flight = {k: m["widths"]["1000"]["seeds_in_flight"] for k, m in made.items()}
    assert in_flight == {"one": 1, "small": 4, "big": 12}  # 60 MB / (4 x 3.2 MB + activations) = 4
    rss = {k: m["peak_memory"]["host_peak_rss_bytes"] for k, m in made.items()}
    # Beyond one seed's run, peak memory grows by the host copies of every seed's state
    # (Θ_adv, a phase's state, and what saving it copies: about 3.3 x 3.2 MB a seed
    # measured) plus what is in flight. Guard: at most 6 copies a seed.
    host_copies = 6 * 11 * 3.2e6
    assert rss["small"] - rss["one"] < host_copies + 60e6 + 100e6, rss
    # three batches of two seeds give exactly the results of one batch of twelve
    assert (tmp_path / "small" / "results.csv").read_text() == (tmp_path / "big" / "results.csv").read_text()


def test_merge_split_runs_and_refuse_inconsistent_ones(tmp_path, capsys):
    common = {"dataset": "gaussians", "seeds": 2, "max_steps": 100, "n_test": 200, "quiet": True, "measures": False}
    run_sweep({**common, "widths": "4,6"}, str(tmp_path / "whole"))
    run_sweep({**common, "widths": "6"}, str(tmp_path / "b"))
    run_sweep({**common, "widths": "4"}, str(tmp_path / "a"))
    assert merge_main([str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "results.csv").read_bytes() == (tmp_path / "whole" / "results.csv").read_bytes()
    assert os.path.isdir(tmp_path / "m" / "checkpoints" / "p6" / "theta_adv")
    run_sweep({**common, "widths": "8", "lr": 0.02}, str(tmp_path / "other"))
    # another width at another step size: not a whole sweep (lr 0.02 at width 4 is missing)
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "other"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "not make a whole sweep" in err and "'lr': 0.02" in err and err.count("\n") == 1
    run_sweep({**common, "widths": "6", "n_train": 50}, str(tmp_path / "smaller"))
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "smaller"), "--out", str(tmp_path / "z")]) == 2
    assert "--n-train" in capsys.readouterr().err
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "whole"), "--out", str(tmp_path / "y")]) == 2
    assert "is in both" in capsys.readouterr().err


def test_merge_joins_grid_points_run_apart_into_the_grid(tmp_path):
    common = {"dataset": "gaussians", "widths": "5", "seeds": 2, "max_steps": 150, "n_test": 200, "quiet": True,
              "measures": False, "figure": False, "experiments": "2,3"}
    run_sweep({**common, "lr": "0.01,0.05"}, str(tmp_path / "grid"))
    run_sweep({**common, "lr": 0.05}, str(tmp_path / "fast"))
    run_sweep({**common, "lr": 0.01}, str(tmp_path / "slow"))
    assert merge_main([str(tmp_path / "fast"), str(tmp_path / "slow"), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "results.csv").read_bytes() == (tmp_path / "grid" / "results.csv").read_bytes()
    # each point's Θ_adv sits in its digest directory, as in the grid run, and serves --adv-from
    tags = sorted(os.listdir(tmp_path / "grid" / "checkpoints" / "p5" / "theta_adv"))
    assert sorted(os.listdir(tmp_path / "m" / "checkpoints" / "p5" / "theta_adv")) == tags and len(tags) == 2
    frozen = run_sweep({**common, "lr": "0.01,0.05", "experiments": "3", "adv_from": str(tmp_path / "m")},
                       str(tmp_path / "again"))
    assert frozen == [r for r in run_sweep({**common, "lr": "0.01,0.05"}, str(tmp_path / "g2"))
                      if r["experiment"] == "frozen"]


@pytest.mark.parametrize("argv,msg", [(["--distributed", "--coordinator", "127.0.0.1:1"], "--distributed"),
                                      (["--memory-budget", "lots"], "--memory-budget"),
                                      (["--coordinator", "nohostport"], "--coordinator")])
def test_bad_scaling_flags(argv, msg, tmp_path):
    r = sweep([*BASE, *argv], tmp_path / "o")
    assert r.returncode == 2 and msg in r.stderr and r.stderr.count("\n") == 1
