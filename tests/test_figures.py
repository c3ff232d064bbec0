"""Figures from a small run made here, and the significance test's textbook answers."""

import os

import numpy as np
import pytest
from PIL import Image

from advjax import run_sweep
from advjax.figures import main as figures_main
from advjax.figures import paired_test


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A small run of every dataset the composites draw. Measured only where a test looks at
    the measures (gaussians, mnist), with the fewest Lanczos steps and a coarse lattice (they
    change no column or panel); no summary.png (no test here reads it). One width, the one
    Fig. 2 draws: every program is compiled per width, and drawing several widths is tested
    on hand-written runs below. The four 2-D runs on data redrawn per seed have the same
    shapes, so they share their compiled programs."""
    base = tmp_path_factory.mktemp("runs")
    common = {"widths": "6", "seeds": 3, "max_steps": 60, "n_test": 200, "quiet": True, "keep_params": True,
              "figure": False}
    made = {}
    off = {"measures": False}  # measured only where a test looks at the measures
    for name, extra in {"gaussians": {"grid": 8, "hessian_iters": 2}, "circles": off, "spirals": off,
                        "spirals2pi": {"dataset": "spirals", "t_max": "2pi", **off},
                        "spirals2pi_fixed": {"dataset": "spirals", "t_max": "2pi", "fix_data": True, **off},
                        "mnist": {"dataset": "mnist", "max_steps": 15, "n_test": 100, "hessian_iters": 2},
                        "teacher": {"experiments": "random_features,teacher_features,orthogonal_features",
                                    "keep_params": False, **off}}.items():
        cfg = {**common, "dataset": name, **extra}
        run_sweep(cfg, str(base / name))
        made[name] = str(base / name)
    return made


def png_size(path):
    with Image.open(path) as im:
        return im.size


@pytest.mark.slow
def test_every_panel_is_drawn(runs, tmp_path, capsys):
    out = tmp_path / "figs"
    assert figures_main([*runs.values(), "--out", str(out), "--boundary-width", "6"]) == 0
    printed = capsys.readouterr().out
    assert "adversarial - baseline" in printed and "frozen - adversarial" in printed
    expected_panels = {"fig1.png": 3, "fig3.png": 4, "fig4.png": 1, "fig5.png": 1, "fig6.png": 2}
    for name, n_panels in expected_panels.items():
        w, h = png_size(out / name)
        assert (out / name).stat().st_size > 10_000
        assert abs(w / h - 4.6 * n_panels / (3.8 + 1.0)) < 0.15, name  # one column per panel, the legend below
    w, h = png_size(out / "fig2.png")  # decision boundaries: 3 datasets x 3 experiments
    assert abs(w / h - 11 / (3.6 * 3)) < 0.1
    for label in ("gaussians", "circles", "spirals", "mnist", "spirals-tmax6.28", "spirals-tmax6.28-fixed"):
        for kind in ("accuracy", "accuracy_median", "steps", "paired"):
            assert (out / f"{kind}_{label}.png").stat().st_size > 5_000
    sig = (out / "significance.csv").read_text().splitlines()
    assert sig[0].startswith("run,width,comparison,n,mean_diff")
    assert len(sig) == 1 + 6 * 3 + 2  # runs x comparisons (one width), + the teacher's two
    assert "holm_family" in sig[0] and any(",paired_circles.png,3," in r for r in sig)  # a family per figure
    # issue 5: every experiment of a run in one panel; the measures, one panel each
    w, h = png_size(out / "experiments_teacher.png")  # test accuracy and steps
    assert abs(w / h - 2 * 4.6 / (3.8 + 1.0)) < 0.15 and not (out / "accuracy_teacher.png").exists()
    w, h = png_size(out / "measures_gaussians.png")  # 7 measures with the 2-D ones: 4 columns, 2 rows
    assert abs(w / h - (4.6 * 4) / (3.8 * 2 + 1.0)) < 0.15
    w, h = png_size(out / "measures_mnist.png")  # 5 measures: 4 columns, 2 rows
    assert abs(w / h - (4.6 * 4) / (3.8 * 2 + 1.0)) < 0.15
    assert not (out / "experiments_gaussians.png").exists()


@pytest.mark.slow
def test_no_composites_draws_the_runs_alone(runs, tmp_path, capsys):
    out = tmp_path / "alone"
    assert figures_main([runs["mnist"], runs["teacher"], "--out", str(out), "--no-composites"]) == 0
    capsys.readouterr()
    made = sorted(p.name for p in out.iterdir())
    assert "fig1.png" not in made and "fig3.png" not in made
    assert {"accuracy_mnist.png", "measures_mnist.png", "experiments_teacher.png", "significance.csv"} <= set(made)


@pytest.mark.slow
def test_runs_with_the_same_label_are_named_by_directory(runs, tmp_path, capsys):
    import shutil

    # circles: a run without measures, so fewer figures to draw; the label clash is the same
    other = tmp_path / "circles-again"
    shutil.copytree(runs["circles"], other)
    out = tmp_path / "both"
    assert figures_main([runs["circles"], str(other), "--out", str(out), "--no-composites"]) == 0
    capsys.readouterr()
    assert (out / "accuracy_circles.png").exists() and (out / "accuracy_circles-again.png").exists()


def test_bad_run_dir(tmp_path, capsys):
    assert figures_main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a sweep output directory" in capsys.readouterr().err


def test_paired_test_textbook_example():
    # Student's (Gosset's) sleep data: extra hours of sleep under two drugs, 10 patients.
    # Paired t = -4.0621, df = 9, two-sided p = 0.002833 (R: t.test(paired = TRUE)).
    drug1 = np.array([0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0])
    drug2 = np.array([1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4])
    r = paired_test(drug1, drug2)
    assert r["n"] == 10
    assert abs(r["mean_diff"] - (-1.58)) < 1e-12
    assert abs(r["t"] - (-4.062128)) < 1e-5
    assert abs(r["p_t"] - 0.002833) < 1e-6
    assert abs(r["cohens_dz"] - (-1.58 / 1.229995)) < 1e-5
    assert r["p_wilcoxon"] < 0.01
    # R: 95 percent confidence interval -2.4598858 -0.7001142
    assert abs(r["ci95_low"] - (-2.4598858)) < 1e-6 and abs(r["ci95_high"] - (-0.7001142)) < 1e-6


def test_holm_matches_a_hand_computation():
    from advjax.figures import holm

    # sorted 0.01, 0.03, 0.04 of m = 3 valid: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.04 = 0.04 -> 0.06 (monotone)
    out = holm([0.01, 0.04, 0.03, float("nan")])
    assert out[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(out[3])
    assert holm([0.5, 0.9]) == [1.0, 1.0]  # capped at 1


@pytest.mark.slow
def test_depth_figure_from_runs_at_two_depths(tmp_path, capsys):
    """One width, 6: the mnist run of `runs` trains the same depth-1 programs (same width,
    seeds and test set), so after it the depth-1 run here compiles nothing new."""
    exps = "baseline,adversarial,frozen,freeze_1,reinit_1,reinit_2"
    for depth in (1, 2):
        assert run_sweep({"dataset": "mnist", "widths": "6", "seeds": 3, "max_steps": 15, "n_test": 100,
                          "quiet": True, "measures": False, "figure": False, "depth": depth,
                          "experiments": exps + (",freeze_2,reinit_3" if depth == 2 else "")},
                         str(tmp_path / f"d{depth}"))
    out = tmp_path / "figs"
    assert figures_main([str(tmp_path / "d1"), str(tmp_path / "d2"), "--out", str(out), "--no-composites"]) == 0
    assert "freeze_1 - adversarial" in capsys.readouterr().out  # per-layer effects are tested, paired
    assert png_size(out / "depth_mnist.png") == (1540, 429)  # one width: a row of three panels


# -- small runs written by hand: results.csv as a sweep writes it, and a manifest ---------------------------

def fake_row(width, experiment, seed, test_acc, steps=100, converged=True, phase1_converged=None, **axes):
    return {"dataset": "gaussians", "width": width, "experiment": experiment, "seed": seed, "train_acc": 1.0,
            "test_acc": test_acc, "train_loss": 0.01, "steps": steps, "converged": converged, "diverged": False,
            "phase1_steps": None if phase1_converged is None else 500, "phase1_converged": phase1_converged,
            "phase1_train_acc": None, **axes}


def write_run(path, rows, max_steps=1000):
    """A run directory named like its dataset (the run's label), read back as figures reads it."""
    from advjax.figures import load_run
    from advjax.results import BASE_COLUMNS, rows_to_csv, write_atomic, write_manifest

    path.mkdir(parents=True)
    axes = [k for k in rows[0] if k not in BASE_COLUMNS]  # grid axis columns, after the base ones
    write_atomic(str(path / "results.csv"), rows_to_csv(rows, (*BASE_COLUMNS, *axes)))
    write_manifest(str(path), {"config": {"max_steps": max_steps}, "dataset": {"name": path.name}})
    return load_run(str(path))


T_975_DF2 = 4.302652729911275  # Student's t, 97.5% quantile, 2 degrees of freedom (3 seeds)


def test_paired_figure_draws_the_mean_difference_and_its_t_interval(tmp_path):
    from advjax.figures import _plt, draw_all, panel_paired, significance

    base = {4: [0.80, 0.82, 0.84], 8: [0.70, 0.75, 0.80]}
    diff = {4: [-0.02, -0.01, -0.04], 8: [0.01, 0.03, 0.02]}
    run = write_run(tmp_path / "gaussians", [
        *(fake_row(w, "baseline", s, base[w][s]) for w in base for s in range(3)),
        *(fake_row(w, "adversarial", s, base[w][s] + diff[w][s], phase1_converged=True)
          for w in base for s in range(3)),
    ])
    rows = significance([run])
    assert [r["comparison"] for r in rows] == ["adversarial - baseline"] * 2
    fig, ax = _plt().subplots()
    panel_paired(ax, rows)
    (bars,) = ax.containers
    mean_line, _, (ci,) = bars.lines
    assert list(mean_line.get_xdata()) == [4, 8]
    for i, w in enumerate((4, 8)):
        d = np.array(diff[w])
        mean, half = d.sum() / 3, T_975_DF2 * np.sqrt(((d - d.sum() / 3) ** 2).sum() / 2) / np.sqrt(3)
        assert mean_line.get_ydata()[i] == pytest.approx(mean, abs=1e-9)
        (x0, low), (x1, high) = ci.get_segments()[i]
        assert x0 == x1 == w and low == pytest.approx(mean - half, abs=1e-9) and high == pytest.approx(mean + half)
        assert (rows[i]["ci95_low"], rows[i]["ci95_high"]) == pytest.approx((mean - half, mean + half))
    _plt().close(fig)
    made = draw_all([run], str(tmp_path / "figs"), composites=False)
    assert str(tmp_path / "figs" / "paired_gaussians.png") in made


def test_significance_pairs_seeds_within_a_grid_point(tmp_path):
    from advjax.figures import axis_columns, significance, write_significance

    base = {0.1: [0.60, 0.62, 0.64], 1.0: [0.90, 0.91, 0.92]}
    diff = {0.1: [0.01, 0.02, 0.03], 1.0: [-0.01, -0.02, -0.03]}
    # adversarial's rows in the other order of lr: pairing by seed alone would match a seed's
    # adversarial row at lr 0.1 with its baseline row at lr 1.0 (a difference near -0.3)
    run = write_run(tmp_path / "gaussians", [
        *(fake_row(4, "baseline", s, base[lr][s], lr=lr) for lr in (0.1, 1.0) for s in range(3)),
        *(fake_row(4, "adversarial", s, base[lr][s] + diff[lr][s], lr=lr) for lr in (1.0, 0.1) for s in range(3)),
    ])
    assert axis_columns(run.rows) == ["lr"]
    rows = significance([run])
    assert [(r["lr"], r["n"]) for r in rows] == [(0.1, 3), (1.0, 3)]
    assert [r["mean_diff"] for r in rows] == pytest.approx([0.02, -0.02])
    write_significance(rows, str(tmp_path / "significance.csv"))
    header, first = (tmp_path / "significance.csv").read_text().splitlines()[:2]
    assert header.startswith("run,width,lr,comparison,") and first.startswith("gaussians,4,0.1,adversarial - baseline,")


def test_holm_runs_across_the_widths_and_grid_points_of_a_comparison(tmp_path):
    from scipy import stats

    from advjax.figures import significance

    base = [0.70, 0.74, 0.78, 0.82]
    noise = {(4, 0.1): [0.01, 0.03, 0.02, 0.06], (8, 0.1): [0.00, 0.04, 0.01, 0.02],
             (4, 1.0): [0.10, 0.12, 0.09, 0.11], (8, 1.0): [-0.01, 0.03, 0.00, 0.05]}
    run = write_run(tmp_path / "gaussians", [
        *(fake_row(w, "baseline", s, base[s], lr=lr) for (w, lr) in noise for s in range(4)),
        *(fake_row(w, "adversarial", s, base[s] + d[s], lr=lr) for (w, lr), d in noise.items() for s in range(4)),
    ])
    rows = significance([run])
    assert len(rows) == 4
    for r in rows:  # each row's t-test is of its own point's pairs
        d = noise[r["width"], r["lr"]]
        assert r["p_t"] == pytest.approx(stats.ttest_rel(np.add(base, d), base).pvalue)
    # Holm by hand over the 4 p-values: the i-th smallest times (4 - i), kept non-decreasing, at most 1
    p = [r["p_t"] for r in rows]
    order = sorted(range(4), key=p.__getitem__)
    expected, running = [0.0] * 4, 0.0
    for i, k in enumerate(order):
        running = max(running, min(1.0, (4 - i) * p[k]))
        expected[k] = running
    assert [r["p_t_holm"] for r in rows] == pytest.approx(expected)
    assert min(expected) == pytest.approx(4 * min(p))  # the family is all four, not one lr's two widths
    assert {(r["holm_family"], r["holm_tests"]) for r in rows} == {("paired_gaussians.png", 4)}


def test_one_holm_family_per_figure_across_comparisons_and_depths(tmp_path):
    """A run's comparisons share its paired figure's family; runs of one dataset at several
    depths share the depth figure's, so the text, the CSV and the stars use one correction."""
    from advjax.figures import holm, holm_families, significance

    rng = np.random.default_rng(0)
    runs = []
    for depth in (1, 2):
        rows = [fake_row(w, e, s, 0.8 + 0.01 * rng.standard_normal() - 0.03 * (e == "adversarial"))
                for w in (4, 8) for e in ("baseline", "adversarial", "frozen") for s in range(4)]
        run = write_run(tmp_path / f"d{depth}", rows)
        run.manifest["config"]["depth"] = depth
        run.manifest["dataset"]["name"] = "mnist"
        run.name = f"d{depth}"
        runs.append(run)
    alone = significance(runs[:1])
    assert {r["holm_family"] for r in alone} == {"paired_d1.png"} and alone[0]["holm_tests"] == 2 * 3
    assert [r["p_t_holm"] for r in alone] == pytest.approx(holm([r["p_t"] for r in alone]))
    assert set(holm_families(runs).values()) == {"depth_mnist.png"}
    both = significance(runs)
    assert {r["holm_tests"] for r in both} == {2 * 2 * 3}
    assert [r["p_t_holm"] for r in both] == pytest.approx(holm([r["p_t"] for r in both]))


def test_capped_steps_are_drawn_as_censored_at_the_cap(tmp_path):
    from advjax.figures import _plt, panel_metric

    capped = {(4, 0), (8, 0), (8, 1), (8, 2)}  # adversarial's (width, seed) that hit the cap of 1000 steps
    run = write_run(tmp_path / "gaussians", [
        *(fake_row(w, "baseline", s, 0.9, steps=100 * (s + 1)) for w in (4, 8) for s in range(4)),
        *(fake_row(w, "adversarial", s, 0.8, steps=1000 if (w, s) in capped else 50 * (s + 1),
                   converged=(w, s) not in capped, phase1_converged=(w, s) != (8, 3))
          for w in (4, 8) for s in range(4)),
    ], max_steps=1000)
    fig, ax = _plt().subplots()
    panel_metric(ax, run, "steps", "median")
    (seeds,) = [line for line in ax.lines if line.get_gid() == "censored"]  # baseline never capped: none of its own
    assert seeds.get_color() == "red" and seeds.get_marker() == "^"
    assert list(seeds.get_ydata()) == [1000, 1000]
    assert seeds.get_xdata() == pytest.approx([4, 8], rel=0.05)  # nudged sideways, not moved to another width
    (median,) = [line for line in ax.lines if line.get_gid() == "censored_summary"]  # 3 of 4 capped at p = 8
    assert median.get_marker() == "^" and list(median.get_xdata()) == [8] and list(median.get_ydata()) == [1000]
    caps = [t for t in ax.texts if t.get_gid() == "caps"]  # once per panel: a header, a row per experiment and phase
    assert [t.get_text().split() for t in caps] == [["4", "8"], ["■", "p1", "1/4"], ["■", "last", "1/4", "3/4"]]
    assert [t.get_color() for t in caps[1:]] == ["red", "red"]  # adversarial's rows; the baseline has none
    assert caps[1].get_text().index("1/4") == caps[2].get_text().index("3/4")  # p1's count sits under p = 8
    assert len({t.xyann[1] for t in caps}) == 3  # one line each, in points above the panel
    _plt().close(fig)


def test_a_grid_run_gets_a_figure_per_axis_and_is_never_pooled(tmp_path, monkeypatch):
    from advjax import figures

    rows = [fake_row(w, exp, s, 0.8 + 0.1 * lr + 0.01 * s, lr=lr, momentum=m, weight_decay=0.0)
            for lr in (0.01, 0.1) for m in (0.0, 0.9) for w in (4, 8) for exp in figures.PAPER for s in range(2)]
    run = write_run(tmp_path / "circles", rows)
    assert figures.axis_columns(run.rows) == ["lr", "momentum"]  # weight_decay has one value: not an axis
    assert len(figures.by_width(run.rows, "baseline")) == 2 * 2 * 2  # widths x grid points
    panels = {}
    real = figures._figure

    def spy(panel_list, metric, summary, path, suptitle, sharey=False):
        panels[os.path.basename(path)] = panel_list
        return real(panel_list, metric, summary, path, suptitle, sharey)

    monkeypatch.setattr(figures, "_figure", spy)
    out = tmp_path / "figs"
    figures.draw_all([run], str(out))
    for axis in ("lr", "momentum"):  # a row of panels per value of the other axis, a column per width
        assert png_size(out / f"grid_circles_{axis}.png") == (int(4.0 * 2 * 110), int((3.4 * 2 + 1.0) * 110))
    assert not (out / "grid_circles_weight_decay.png").exists()
    assert [title for _, title in panels["accuracy_circles.png"]] == [
        f"circles, lr = {lr:g}, momentum = {m:g}" for lr in (0.01, 0.1) for m in (0.0, 0.9)]
    (fig4,) = panels["fig4.png"]  # the lone panel is not lettered; one grid point, named
    assert fig4[1] == "circles, at lr = 0.01, momentum = 0, the first of 4 grid points"
    assert {(float(r["lr"]), float(r["momentum"])) for r in fig4[0].rows} == {(0.01, 0.0)}
