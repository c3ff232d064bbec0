"""The other CLIs and data readers in one line (issue 27): report --out on a directory
leaves nothing behind, figures --out on a file, a float64 .npz beyond float32 without
numpy's warning first, and MNIST IDX labels refused without advice that MNIST refuses."""

import numpy as np
import pytest

from advjax.figures import main as figures_main
from advjax.report import main as report_main
from advjax.sweep import main

pytestmark = pytest.mark.slow  # a sweep


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["--dataset", "gaussians", "--widths", "5", "--seeds", "2", "--max-steps", "20", "--n-test", "100",
                 "--no-measures", "--no-figure", "--quiet", "--out", str(out)]) == 0
    return out


def one_line(capsys, rc, *words):
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "Traceback" not in err and "Warning" not in err, err
    for w in words:
        assert w in err, err


def test_report_out_on_a_directory_is_one_line_and_leaves_nothing(run, tmp_path, capsys):
    (tmp_path / "d").mkdir()
    one_line(capsys, report_main([str(run), "--out", str(tmp_path / "d")]), "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("where", ["file", "under-a-file"])
def test_figures_out_on_a_file_is_one_line(run, tmp_path, capsys, where):
    (tmp_path / "f").write_text("mine")
    out = tmp_path / "f" if where == "file" else tmp_path / "f" / "sub"
    one_line(capsys, figures_main([str(run), "--out", str(out)]), "--out")
    assert (tmp_path / "f").read_text() == "mine"


@pytest.mark.filterwarnings("error::RuntimeWarning")  # numpy's overflow warning would print before the line
def test_a_float64_npz_beyond_float32_is_one_line_without_numpys_warning(tmp_path, capsys):
    x = np.ones((20, 2)) * 1e300
    np.savez(tmp_path / "d.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:5], y_test=np.arange(5) % 2)
    one_line(capsys, main(["--dataset", str(tmp_path / "d.npz"), "--out", str(tmp_path / "o")]), "--dataset",
             "beyond float32")
    assert not (tmp_path / "o").exists()


def test_mnist_labels_outside_0_to_9_do_not_advise_relabel(tmp_path, capsys):
    def idx(path, a):
        path.write_bytes(bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
                         + a.astype(np.uint8).tobytes())

    rng = np.random.default_rng(0)
    idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 256, (30, 28, 28)))
    idx(tmp_path / "train-labels-idx1-ubyte", np.arange(30) % 10 + 1)  # 1..10
    idx(tmp_path / "t10k-images-idx3-ubyte", rng.integers(0, 256, (10, 28, 28)))
    idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(10) % 10 + 1)
    rc = main(["--dataset", "mnist", "--mnist-path", str(tmp_path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "--mnist-path:" in err and "--relabel" not in err, err
    assert "0..9" in err and "IDX label files" in err, err
