"""Run directories are checked, never trusted (issue 27, item 1): a finished width's rows
carry the fingerprint of the config and data that made them and the digest of the rows
themselves; --resume and advjax.merge recompute both, and report, figures, merge,
--resume and load_theta_adv read run directories through one strict reader. Each
tampering is one line naming the file and the field, exit 2, and nothing rewritten.

One tiny sweep (gaussians, widths 6 and 9, 2 seeds, the programs of test_scaling.py's
merge tests) is made once per module and copied for each tampering."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import with_flags

from advjax import run_sweep
from advjax.checkpoint import load_theta_adv
from advjax.figures import main as figures_main
from advjax.merge import main as merge_main
from advjax.report import main as report_main
from advjax.results import FINGERPRINT_FORMAT, RunDirError, read_run, width_fingerprint
from advjax.sweep import main

pytestmark = pytest.mark.slow  # whole sweeps

ARGS = ["--dataset", "gaussians", "--widths", "6,9", "--seeds", "2", "--max-steps", "100", "--n-test", "100",
        "--no-measures", "--no-figure", "--quiet"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("made") / "run"
    assert main(with_flags(ARGS, ["--out", str(out)])) == 0
    return out


def copy(made, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(made, dst)
    return dst


def snapshot(d):
    return {p: open(os.path.join(root, p), "rb").read() for root, _, files in os.walk(d) for p in files}


def edit_csv(path, line, column, value):
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    cells = lines[line - 1].split(",")
    cells[header.index(column)] = value
    lines[line - 1] = ",".join(cells)
    path.write_text("\n".join(lines) + "\n")


def refused(argv, capsys, *words):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err, err
    for w in words:
        assert w in err, err
    return err


def test_every_finished_width_is_signed(made):
    manifest, cfg, rows = read_run(str(made))
    assert FINGERPRINT_FORMAT == 1
    for w in (6, 9):
        assert manifest["widths"][str(w)]["fingerprint"] == width_fingerprint(cfg, None, w)
    assert len(rows) == 2 * 3 * 2


def test_resume_refuses_rows_an_edited_manifest_no_longer_made(made, tmp_path, capsys):
    """The manifest's max_steps edited, then the same command with the new value: the
    config check passes, the widths' fingerprints do not."""
    run = copy(made, tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    m["config"]["max_steps"] = m["config"]["phase1_max_steps"] = 200  # as the resolved config records it
    (run / "manifest.json").write_text(json.dumps(m))
    before = snapshot(run)
    argv = with_flags(ARGS, ["--max-steps", "200", "--out", str(run), "--resume"])
    refused(argv, capsys, "--resume:", "manifest.json", "widths.6.fingerprint")
    assert snapshot(run) == before


@pytest.mark.parametrize("column,value,words", [
    ("test_acc", "5.0", ("line 2, column test_acc", "[0, 1]")),
    ("test_acc", "0.5", ("rows of width 6 are not the ones", "rows_sha256")),
    ("dataset", "mnist", ("column dataset", "'mnist'")),
    ("seed", "7", ("column seed", "0..1")),
    ("converged", "", ("column converged", "true or false")),
    ("converged", "yes", ("column converged", "true or false")),
    ("steps", "many", ("results.csv",)),
])
def test_resume_refuses_a_hand_edited_results_csv(made, tmp_path, capsys, column, value, words):
    run = copy(made, tmp_path)
    edit_csv(run / "results.csv", 2, column, value)
    before = snapshot(run)
    refused(with_flags(ARGS, ["--out", str(run), "--resume"]), capsys, "--resume:", *words)
    assert snapshot(run) == before


def test_rows_of_a_width_the_manifest_never_recorded_are_recomputed(made, tmp_path):
    """A kill between results.csv and manifest.json: width 9's rows are on disk, its
    record is not; the resume recomputes them and ends with the whole run's file."""
    run = copy(made, tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    del m["widths"]["9"]
    (run / "manifest.json").write_text(json.dumps(m))
    assert main(with_flags(ARGS, ["--out", str(run), "--resume"])) == 0
    assert (run / "results.csv").read_bytes() == (made / "results.csv").read_bytes()
    assert json.loads((run / "manifest.json").read_text())["widths"]["9"]["fingerprint"]


@pytest.mark.parametrize("damage,words", [
    (lambda m: m.update(widths=[6, 9]), "field widths is a list"),
    (lambda m: m.pop("config"), "has no field config"),
    (lambda m: m.update(config=[1]), "field config is a list"),
    (lambda m: m["widths"].update({"x": 1}), "widths.x"),
])
def test_report_figures_merge_and_resume_refuse_a_damaged_manifest_in_one_line(made, tmp_path, capsys, damage,
                                                                                 words):
    run = copy(made, tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    damage(m)
    (run / "manifest.json").write_text(json.dumps(m))
    for tool, argv in ((report_main, [str(run), "--out", str(tmp_path / "r.html")]),
                       (figures_main, [str(run), "--out", str(tmp_path / "f")]),
                       (merge_main, [str(run), "--out", str(tmp_path / "m")]),
                       (main, with_flags(ARGS, ["--out", str(run), "--resume"]))):
        assert tool(argv) == 2, tool
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "manifest.json" in err and "Traceback" not in err, (tool, err)
        if tool is not main:  # --resume names what differs from the command line, or the field
            assert words in err, (tool, err)
    assert not (tmp_path / "m").exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("checkpoints", [[1, 2], {"p6": ["a"]}, {"p6": {"theta_adv": "/etc"}},
                                         {"p6": {"theta_adv": "../../x"}}])
def test_load_theta_adv_refuses_a_damaged_manifest(made, tmp_path, checkpoints):
    run = copy(made, tmp_path)
    m = json.loads((run / "manifest.json").read_text())
    m["checkpoints"] = checkpoints
    (run / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ValueError, match="holds no sweep of width 6"):
        load_theta_adv(str(run), 6)


def test_merge_refuses_parts_made_on_other_data_and_rows_outside_the_seed_set(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "d.npz"

    def write_data(shift):
        np.savez(data, x_train=rng.normal(size=(20, 2)).astype(np.float32) + shift, y_train=np.arange(20) % 2,
                 x_test=rng.normal(size=(10, 2)).astype(np.float32), y_test=np.arange(10) % 2)

    small = ["--dataset", str(data), "--seeds", "2", "--max-steps", "20", "--no-measures", "--no-figure", "--quiet"]
    write_data(0.0)
    assert main([*small, "--widths", "6", "--out", str(tmp_path / "a")]) == 0
    write_data(1.0)  # the same path, other content
    assert main([*small, "--widths", "9", "--out", str(tmp_path / "b")]) == 0
    assert merge_main([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "other data" in err, err
    edit_csv(tmp_path / "b" / "results.csv", 3, "seed", "5")
    assert merge_main([str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert "column seed" in err and err.count("\n") == 0, err
    assert not (tmp_path / "m").exists()


def test_a_merged_run_is_signed_for_the_whole_sweep_and_resumes_as_finished(made, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    common = {"dataset": "gaussians", "seeds": 2, "max_steps": 100, "n_test": 100, "quiet": True, "measures": False,
              "figure": False}
    run_sweep({**common, "widths": "6"}, str(a))
    run_sweep({**common, "widths": "9"}, str(b))
    assert merge_main([str(a), str(b), "--out", str(tmp_path / "m")]) == 0
    assert (tmp_path / "m" / "results.csv").read_bytes() == (made / "results.csv").read_bytes()
    read_run(str(tmp_path / "m"))  # strict: every width's fingerprint is the merged config's
    before = snapshot(tmp_path / "m")
    assert main(with_flags(ARGS, ["--out", str(tmp_path / "m"), "--resume"])) == 0  # nothing left to run
    capsys.readouterr()
    assert (tmp_path / "m" / "results.csv").read_bytes() == before["results.csv"]


def test_read_run_names_the_file_and_field(tmp_path):
    with pytest.raises(RunDirError, match="manifest.json: unreadable"):
        read_run(str(tmp_path))


def test_a_theta_adv_whose_metadata_lists_more_seeds_than_it_holds_is_refused(made, tmp_path, capsys):
    """--adv-from and load_theta_adv check every array's seed axis against the metadata
    (an edited meta failed deep inside a vmap), before anything is written."""
    import glob

    from advjax.checkpoint import CheckpointError, digest

    run = copy(made, tmp_path)
    path = glob.glob(str(run / "checkpoints" / "p6" / "theta_adv" / "*" / "meta" / "metadata"))[0]
    meta = json.loads(open(path).read())
    meta["fingerprint"]["seeds"] = [0, 1, 2]
    meta["steps"] += [5]
    meta["fingerprint_digest"] = digest(meta["fingerprint"])
    open(path, "w").write(json.dumps(meta))
    with pytest.raises(CheckpointError, match="metadata lists 3 seeds"):
        load_theta_adv(str(run), 6)
    argv = with_flags(ARGS, ["--widths", "6", "--seeds", "3", "--experiments", "2", "--adv-from", str(run),
                             "--out", str(tmp_path / "o")])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--adv-from:" in err and "metadata lists 3 seeds" in err, err
    assert not (tmp_path / "o").exists()
