"""What a person sees: progress in words, summary.png after a sweep, the HTML report, and
the rows back in a notebook."""

import base64
import contextlib
import csv
import html
import io
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
from conftest import with_flags

from advjax import run_sweep
from advjax.progress import Progress
from advjax.report import main as report_main
from advjax.results import load
from advjax.sweep import main

SMALL = ["--dataset", "circles", "--widths", "5,8", "--seeds", "2", "--max-steps", "300", "--n-test", "100",
         "--no-measures"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One sweep through the CLI, with its progress on (stderr not a terminal) and its
    summary figure: the run every test below reads, and what the CLI printed."""
    out = tmp_path_factory.mktemp("runs") / "circles"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        assert main(with_flags(SMALL, ["--keep-params", "--out", str(out)])) == 0
    return out, stdout.getvalue(), stderr.getvalue()


@pytest.fixture(scope="module")
def run_dir(cli_run):
    return cli_run[0]


def png_size(path) -> tuple[int, int]:
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_progress_without_a_terminal_is_plain_lines_at_a_bounded_rate():
    now = [0.0]
    stream = io.StringIO()
    p = Progress(quiet=False, tty=False, interval=10.0, clock=lambda: now[0], stream=stream)
    update = p.phase("[mnist p=100] adversarial · phase 1, random labels", 20_000)
    for k in range(1, 61):  # a chunk a second for a minute: 6 lines at most, and the last
        now[0] = float(k)
        update(0 if k < 60 else 4, 4, 100 * k, 400 * k)
    lines = stream.getvalue().splitlines()
    assert 6 <= len(lines) <= 7
    assert all(line.startswith("[mnist p=100] adversarial · phase 1, random labels: ") for line in lines)
    assert "4/4 seeds done, step 6,000 of at most 20,000" in lines[-1]
    assert "400 seed-steps/s" in lines[-1]  # 400 seed-steps each second
    assert "left" in lines[-2] and "left" not in lines[-1]  # the cap bounds the time left while seeds run


@pytest.mark.slow
def test_the_cli_names_phases_in_words_and_leaves_a_summary_png(cli_run):
    """The shared run's own output (the paper's three experiments, --keep-params changes
    nothing printed): phases in words on stderr, the summary figure's path last on stdout."""
    out, stdout, err = cli_run
    assert "[circles p=5] adversarial · phase 1, random labels: " in err
    assert "frozen · phase 2, true labels, readout reset to 0, training readout only" in err
    assert "seeds done" in err and "\x1b" not in err  # no cursor codes when stderr is not a terminal
    assert stdout.splitlines()[-1] == f"summary figure: {out / 'summary.png'}"
    assert png_size(out / "summary.png") == (1000, 400)


@pytest.mark.slow
def test_no_figure_and_the_api_returns_rows_and_their_directory(tmp_path):
    """One width of the shared run's settings (its programs), through the Python API."""
    rows = run_sweep({"dataset": "circles", "widths": "5", "seeds": 2, "max_steps": 300, "n_test": 100,
                      "quiet": True, "measures": False, "figure": False}, str(tmp_path / "o"))
    assert rows.out == str(tmp_path / "o") and rows.figure is None
    assert not (tmp_path / "o" / "summary.png").exists()
    assert len(rows) == 6 and rows[0]["experiment"] == "baseline"


@pytest.mark.slow
def test_results_load_gives_the_rows_as_a_frame_or_dicts(run_dir):
    pd = pytest.importorskip("pandas")
    df = load(str(run_dir))
    assert isinstance(df, pd.DataFrame) and len(df) == 12
    dicts = load(str(run_dir), frame=False)
    assert dicts[0]["width"] == 5 and isinstance(dicts[0]["converged"], bool)
    assert df["test_acc"].tolist() == [r["test_acc"] for r in dicts]


@pytest.mark.slow
def test_report_is_one_self_contained_page_with_the_runs_numbers(run_dir, tmp_path, capsys):
    page = tmp_path / "report.html"
    assert report_main([str(run_dir), "--out", str(page)]) == 0
    text = page.read_text()
    assert "src=\"http" not in text and "href=" not in text and "<script" not in text  # nothing external
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) >= 2  # the summary figure and the decision boundaries (run with --keep-params)
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    # the summary table's cells are results.csv's numbers
    rows = list(csv.DictReader(open(run_dir / "results.csv")))
    table = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", tr)]
             for tr in re.findall("<tr>(.*?)</tr>", text)]
    for width in ("5", "8"):
        for exp in ("baseline", "adversarial", "frozen"):
            acc = np.array([float(r["test_acc"]) for r in rows if r["width"] == width and r["experiment"] == exp])
            assert [width, exp, "2", f"{acc.mean():.4f} ± {acc.std():.4f}"] in [t[:4] for t in table], (width, exp)
    assert "python -m advjax.sweep --dataset circles" in text
    assert "adversarial - baseline" in text


@pytest.mark.slow
def test_report_of_two_runs_side_by_side_and_a_bad_dir(run_dir, tmp_path, capsys):
    page = tmp_path / "two.html"
    assert report_main([str(run_dir), str(run_dir), "--out", str(page)]) == 0
    assert page.read_text().count('<section class="run">') == 2
    assert report_main([str(tmp_path / "nothing"), "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RUN_DIR" in err


@pytest.mark.slow
@pytest.mark.skipif(not (shutil.which("chromium") or shutil.which("chromium-browser")),
                    reason="no headless Chromium here (apt-get install chromium)")
def test_report_renders_in_a_headless_browser(run_dir, tmp_path):
    page = tmp_path / "report.html"
    assert report_main([str(run_dir), "--out", str(page)]) == 0
    shot = tmp_path / "shot.png"
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,2400", f"file://{page}"], check=True, capture_output=True, timeout=120)
    w, h = png_size(shot)
    assert (w, h) == (1280, 2400)
    from PIL import Image  # matplotlib's dependency

    pixels = np.asarray(Image.open(shot).convert("L"))
    assert pixels.std() > 10  # text and figures were drawn, not a blank page
