"""advjax.results, alone: results.csv's columns, its text round trip, strict reading, atomic writes."""

import os

import numpy as np
import pytest

from advjax import results
from advjax.checkpoint import WriteError
from advjax.options import from_dict


def test_columns_put_grid_axes_after_the_seed_and_measures_last():
    cols = results.columns(("norm_hidden", "margin"), axes=("lr",))
    assert cols[:5] == ("dataset", "width", "experiment", "seed", "lr")
    assert cols[-len(results.GRID_COLUMNS) - 2:-len(results.GRID_COLUMNS)] == ("norm_hidden", "margin")
    assert len(cols) == len(set(cols))


def test_rows_round_trip_through_the_csv_text_with_their_types():
    row = {"dataset": "mnist", "width": 10, "experiment": "frozen", "seed": 3, "lr": 0.1 + 0.2,
           "train_acc": np.float32(0.75), "test_acc": 0.123456789, "train_loss": 1e-9, "steps": np.int64(20000),
           "converged": np.bool_(False), "diverged": False, "phase1_steps": None, "phase1_converged": True,
           "phase1_train_acc": 1.0, "norm_hidden": 3.25, "linear_regions": 7}
    cols = tuple(row)
    text = results.rows_to_csv([row], cols)
    assert text.splitlines()[0] == ",".join(cols)
    (back,) = results.parse_results(text)
    assert back["lr"] == 0.1 + 0.2  # a grid axis is written exactly: it is the row's key
    assert back["test_acc"] == 0.123457  # other floats keep 6 significant digits
    assert back["steps"] == 20000 and isinstance(back["steps"], int)
    assert back["converged"] is False and back["phase1_converged"] is True and back["phase1_steps"] is None
    assert back["norm_hidden"] == 3.25 and back["linear_regions"] == 7 and back["dataset"] == "mnist"
    assert results.rows_to_csv([back]) == text  # a read-back row writes the same text


def test_strict_parsing_refuses_other_columns_and_short_rows():
    cols = ("dataset", "width", "seed")
    text = "dataset,width,seed\nmnist,10,0\n"
    assert results.parse_results(text, expect=cols) == [{"dataset": "mnist", "width": 10, "seed": 0}]
    with pytest.raises(ValueError, match="header"):
        results.parse_results(text, expect=("dataset", "width"))
    with pytest.raises(ValueError, match="line 3 has 2 of 3 columns"):
        results.parse_results(text + "mnist,10\n", expect=cols)


def test_write_atomic_replaces_whole_files_and_keeps_the_old_on_failure(tmp_path):
    path = str(tmp_path / "results.csv")
    results.write_atomic(path, "a\n1\n")
    results.write_atomic(path, "a\n2\n")
    assert open(path).read() == "a\n2\n"
    assert os.listdir(tmp_path) == ["results.csv"]  # no temporary left behind
    with pytest.raises(WriteError, match="last complete version is kept"):
        results.write_atomic(str(tmp_path / "no" / "such" / "dir.csv"), "x")
    os.mkdir(tmp_path / "busy.csv")  # the rename fails: a directory stands where the file goes
    with pytest.raises(WriteError):
        results.write_atomic(str(tmp_path / "busy.csv"), "x")
    assert sorted(os.listdir(tmp_path)) == ["busy.csv", "results.csv"]
    assert open(path).read() == "a\n2\n"


def test_manifest_config_reads_back_the_resolved_config(tmp_path):
    cfg = from_dict({"dataset": "circles", "noise": 0.25, "widths": "5,7"}).resolve()
    results.write_manifest(str(tmp_path), {"config": {**cfg.to_dict(), "a_field_from_the_future": 1}})
    back = results.config_of(results.read_manifest(str(tmp_path)))
    assert back == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "depth")}  # before --model existed
    assert results.config_of({"config": old}).model == "mlp"
    with pytest.raises((KeyError, TypeError, ValueError)):
        results.config_of({"no_config": {}})


def test_load_gives_dicts_or_a_frame(tmp_path):
    (tmp_path / "results.csv").write_text("dataset,width,seed,test_acc\nmnist,10,0,0.5\nmnist,10,1,\n")
    rows = results.load(str(tmp_path), frame=False)
    assert rows == [{"dataset": "mnist", "width": 10, "seed": 0, "test_acc": 0.5},
                    {"dataset": "mnist", "width": 10, "seed": 1, "test_acc": None}]
    pd = pytest.importorskip("pandas")
    df = results.load(str(tmp_path), frame=True)
    assert isinstance(df, pd.DataFrame) and list(df.columns) == ["dataset", "width", "seed", "test_acc"]
