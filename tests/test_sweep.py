"""The sweep through its API and its CLI: outputs, determinism, bad input."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from advjax import run_sweep
from advjax.sweep import main

# Every end-to-end sweep of this file on gaussians runs at these shapes (widths 6 and 9, two
# seeds, 100 test points), so that its training programs compile once and are reused.
TINY = {"dataset": "gaussians", "widths": "6,9", "seeds": 2, "max_steps": 150, "n_test": 100,
        "quiet": True, "measures": False, "figure": False}


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """TINY's sweep (two widths, two seeds, the three experiments), which several tests
    read: (its --out, its rows)."""
    out = tmp_path_factory.mktemp("swept") / "a"
    return out, run_sweep(TINY, str(out))


@pytest.mark.slow
def test_outputs_and_columns(swept, tmp_path):
    """Two widths × three experiments × two seeds (was three): every column, phase 1 shared by
    adversarial and frozen, and the manifest per width; the measures (frozen's distance =
    its readout norm) on one width, at a coarse grid and few Lanczos steps."""
    out, rows = swept
    assert len(rows) == 2 * 3 * 2  # widths × experiments × seeds
    on_disk = read_rows(out / "results.csv")
    assert len(on_disk) == len(rows)
    for col in ("dataset", "width", "experiment", "seed", "train_acc", "test_acc", "steps", "converged",
                "diverged", "phase1_steps", "phase1_converged"):
        assert col in on_disk[0]
    base = [r for r in on_disk if r["experiment"] == "baseline"]
    assert all(r["phase1_steps"] == "" and r["phase1_converged"] == "" for r in base)
    # adversarial and frozen share phase 1 (the same Θ_adv) seed by seed
    p1 = {(r["width"], r["seed"], r["experiment"]): r["phase1_steps"] for r in on_disk}
    assert all(p1[(w, s, "adversarial")] == p1[(w, s, "frozen")] for w, s, _ in p1)
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["lr"] == 0.01 and man["config"]["batch_size"] == "full"
    assert set(man["versions"]) >= {"jax", "jaxlib", "optax", "flax", "numpy"}
    assert set(man["widths"]) == {"6", "9"}
    # each width compiled its programs, or found them all compiled by an earlier sweep in this process
    assert all((w["compile_seconds"] > 0 or w["programs_reused_in_process"] > 0) and w["run_seconds"] > 0
               for w in man["widths"].values())
    # frozen starts from Θ_adv's features and a zero readout, and moves only the readout
    measured = run_sweep({**TINY, "widths": "6", "measures": True, "grid": 8, "hessian_iters": 4},
                         str(tmp_path / "m"))
    assert [(r["experiment"], r["seed"], r["steps"]) for r in measured] == [
        (r["experiment"], r["seed"], r["steps"]) for r in rows if r["width"] == 6]
    frozen = [r for r in read_rows(tmp_path / "m" / "results.csv") if r["experiment"] == "frozen"]
    assert len(frozen) == 2
    for r in frozen:
        assert float(r["distance"]) == pytest.approx(float(r["norm_readout"]), rel=1e-4)


@pytest.mark.slow
def test_same_seeds_same_csv_other_seeds_differ(swept, tmp_path):
    """TINY's sweep again gives the same bytes; seeds from 5 give others."""
    out, _ = swept
    run_sweep(TINY, str(tmp_path / "b"))
    run_sweep({**TINY, "seed": 5}, str(tmp_path / "c"))
    a, b, c = ((d / "results.csv").read_bytes() for d in (out, tmp_path / "b", tmp_path / "c"))
    assert a == b
    assert a != c


@pytest.mark.slow
def test_seed_in_a_batch_equals_seed_alone(swept, tmp_path):
    """Seed 1 trained beside seed 0 (TINY's batch of two) gives the rows of seed 1 trained
    alone, in every experiment (at width 6; was circles at width 7 in a batch of three)."""
    _, together = swept
    alone = run_sweep({**TINY, "widths": "6", "seeds": 1, "seed": 1}, str(tmp_path / "one"))
    mine = [r for r in together if r["seed"] == 1 and r["width"] == 6]
    assert [r["experiment"] for r in mine] == [r["experiment"] for r in alone] and len(alone) == 3
    for r, s in zip(mine, alone):
        assert (r["steps"], r["converged"], r["phase1_steps"]) == (s["steps"], s["converged"], s["phase1_steps"])
        assert abs(r["test_acc"] - s["test_acc"]) < 1e-3 and abs(r["train_loss"] - s["train_loss"]) < 1e-4


@pytest.mark.slow
def test_fix_data_shares_one_draw(tmp_path):
    """Two seeds (was three) on one shared draw: a row per seed, and the manifest says it is shared."""
    rows = run_sweep({**TINY, "widths": "6", "experiments": "1", "fix_data": True, "max_steps": 1},
                     str(tmp_path / "o"))
    assert len(rows) == 2
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["dataset"]["data_shared_by_seeds"]


@pytest.mark.slow
def test_cli_mnist_tiny(tmp_path, capsys):
    """The CLI on MNIST at its defaults (10 steps, 100 test points, no measures): what it prints and writes."""
    out = tmp_path / "m"
    rc = main(["--dataset", "mnist", "--widths", "5", "--seeds", "2", "--max-steps", "10",
               "--experiments", "baseline,2", "--n-test", "100", "--no-measures", "--out", str(out), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "baseline" in printed and "adversarial" in printed and "test acc" in printed
    rows = read_rows(out / "results.csv")
    assert len(rows) == 4 and {r["experiment"] for r in rows} == {"baseline", "adversarial"}
    man = json.loads((out / "manifest.json").read_text())
    assert man["config"]["batch_size"] == 32 and man["config"]["lr"] == 0.1 and man["config"]["fix_data"]


@pytest.mark.slow
def test_cli_npz_dataset_and_config_file(tmp_path, capsys):
    """A .npz and a config file (20 steps, no measures): the flag overrides the file, the classes come from the data."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 1)
    np.savez(tmp_path / "mine.npz", a=x[:40], b=y[:40], c=x[40:], d=y[40:])
    cfg = tmp_path / "sweep.toml"
    cfg.write_text('# a sweep\ndataset = "%s"\nnpz-keys = "a,b,c,d"\nwidths = [4]\nseeds = 2\n'
                   'max_steps = 20\nexperiments = [1]\nmeasures = false\nquiet = true\n' % (tmp_path / "mine.npz"))
    rc = main(["--config", str(cfg), "--seeds", "3", "--out", str(tmp_path / "o")])
    assert rc == 0
    rows = read_rows(tmp_path / "o" / "results.csv")
    assert len(rows) == 3 and rows[0]["dataset"] == "mine.npz"  # the flag overrode seeds = 2
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["dataset"]["n_classes"] == 3


BAD = [
    (["--dataset", "cifar"], "--dataset"),
    (["--widths", "10,abc"], "--widths"),
    (["--widths", "0"], "--widths"),
    (["--widths", "-5"], "--widths"),
    (["--widths", "2.5"], "--widths"),
    (["--widths", ""], "--widths"),
    (["--seeds", "0"], "--seeds"),
    (["--lr", "0"], "--lr"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--experiments", "4"], "--experiments"),
    (["--loss-reduction", "max"], "--loss-reduction"),
    (["--phase1-optimizer", "rmsprop"], "--phase1-optimizer"),
    (["--phase1-lr", "0"], "--phase1-lr"),
    (["--phase1-max-steps", "0"], "--phase1-max-steps"),
    (["--momentum", "1"], "--momentum"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--config", "/no/such/file.toml"], "--config"),
    (["--dataset", "/no/such/data.npz"], "--dataset"),
]


@pytest.mark.parametrize("argv,flag", BAD)
def test_bad_input_one_line_exit_2(argv, flag, capsys, tmp_path):
    rc = main([*argv, "--out", str(tmp_path / "o"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and flag in err and "Traceback" not in err


def test_bad_config_files_and_npz(tmp_path, capsys):
    cases = {}
    (tmp_path / "broken.toml").write_text("widths = [10,\n")
    cases["broken.toml"] = "not valid TOML"
    (tmp_path / "unknown.toml").write_text("widht = [10]\n")
    cases["unknown.toml"] = "unknown key 'widht'"
    (tmp_path / "badvalue.toml").write_text("seeds = -1\n")
    cases["badvalue.toml"] = "--seeds"
    for name, msg in cases.items():
        rc = main(["--config", str(tmp_path / name), "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert rc == 2 and msg in err and err.count("\n") == 1, (name, err)
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.zeros(4, int))
    rc = main(["--dataset", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2 and "--npz-keys" in err and "x_train" in err and err.count("\n") == 1


def test_existing_out_is_refused(tmp_path, capsys):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "results.csv").write_text("precious\n")
    assert main(["--widths", "4", "--seeds", "1", "--out", str(tmp_path / "o")]) == 2
    assert "--out" in capsys.readouterr().err
    assert (tmp_path / "o" / "results.csv").read_text() == "precious\n"


@pytest.mark.parametrize("argv", [["--widths", "ten"], ["--seeds", "1", "--frobnicate"]])
def test_real_cli_bad_input(argv):
    p = subprocess.run([sys.executable, "-m", "advjax.sweep", *argv], capture_output=True, text=True)
    assert p.returncode == 2
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr and p.stdout == ""


def test_committed_sweep_files_are_valid():
    from pathlib import Path

    from advjax.options import from_dict, load_toml

    files = sorted(Path(__file__).parent.parent.glob("sweeps/*.toml"))
    assert files
    for f in files:
        values = load_toml(str(f))
        if values.get("dataset") == "cifar10":  # needs the user's copy: checked with a path given, as a user runs it
            assert "cifar_path" not in values
            values["cifar_path"] = "/your/cifar-10-batches-bin"
        cfg = from_dict(values, source=str(f))
        assert cfg.widths and cfg.seeds >= 1
        assert f.read_text().startswith("#")  # the header says what it reproduces and how
