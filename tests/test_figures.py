"""Figures from a small run made here, and the significance test's textbook answers."""

import numpy as np
import pytest
from PIL import Image

from advjax import run_sweep
from advjax.figures import main as figures_main
from advjax.figures import paired_test


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    common = {"widths": "4,6", "seeds": 3, "max_steps": 60, "n_test": 200, "quiet": True, "keep_params": True}
    made = {}
    off = {"measures": False}  # measured only where a test looks at the measures
    for name, extra in {"gaussians": {"grid": 32, "hessian_iters": 8}, "circles": off, "spirals": off,
                        "spirals2pi": {"dataset": "spirals", "t_max": "2pi", **off},
                        "spirals2pi_fixed": {"dataset": "spirals", "t_max": "2pi", "fix_data": True, **off},
                        "mnist": {"dataset": "mnist", "max_steps": 15, "n_test": 100, "hessian_iters": 8},
                        "teacher": {"experiments": "random_features,teacher_features,orthogonal_features",
                                    "keep_params": False}}.items():
        cfg = {**common, "dataset": name, **extra}
        run_sweep(cfg, str(base / name))
        made[name] = str(base / name)
    return made


def png_size(path):
    with Image.open(path) as im:
        return im.size


def test_every_panel_is_drawn(runs, tmp_path, capsys):
    out = tmp_path / "figs"
    assert figures_main([*runs.values(), "--out", str(out), "--boundary-width", "6"]) == 0
    printed = capsys.readouterr().out
    assert "adversarial - baseline" in printed and "frozen - adversarial" in printed
    expected_panels = {"fig1.png": 3, "fig3.png": 4, "fig4.png": 1, "fig5.png": 1, "fig6.png": 2}
    for name, n_panels in expected_panels.items():
        w, h = png_size(out / name)
        assert (out / name).stat().st_size > 10_000
        assert abs(w / h - 4.6 * n_panels / 3.8) < 0.15, name  # one column per panel
    w, h = png_size(out / "fig2.png")  # decision boundaries: 3 datasets x 3 experiments
    assert abs(w / h - 11 / (3.6 * 3)) < 0.1
    for label in ("gaussians", "circles", "spirals", "mnist", "spirals-tmax6.28", "spirals-tmax6.28-fixed"):
        for kind in ("accuracy", "accuracy_median", "steps"):
            assert (out / f"{kind}_{label}.png").stat().st_size > 5_000
    sig = (out / "significance.csv").read_text().splitlines()
    assert sig[0].startswith("run,width,comparison,n,mean_diff")
    assert len(sig) == 1 + 6 * 2 * 2 + 2 * 2  # runs x widths x comparisons, + the teacher's two
    # issue 5: every experiment of a run in one panel; the measures, one panel each
    w, h = png_size(out / "experiments_teacher.png")  # test accuracy and steps
    assert abs(w / h - 2 * 4.6 / 3.8) < 0.15 and not (out / "accuracy_teacher.png").exists()
    w, h = png_size(out / "measures_gaussians.png")  # 7 measures with the 2-D ones: 4 columns, 2 rows
    assert abs(w / h - (4.6 * 4) / (3.8 * 2)) < 0.15
    w, h = png_size(out / "measures_mnist.png")  # 5 measures: 4 columns, 2 rows
    assert abs(w / h - (4.6 * 4) / (3.8 * 2)) < 0.15
    assert not (out / "experiments_gaussians.png").exists()


def test_no_composites_draws_the_runs_alone(runs, tmp_path, capsys):
    out = tmp_path / "alone"
    assert figures_main([runs["mnist"], runs["teacher"], "--out", str(out), "--no-composites"]) == 0
    capsys.readouterr()
    made = sorted(p.name for p in out.iterdir())
    assert "fig1.png" not in made and "fig3.png" not in made
    assert {"accuracy_mnist.png", "measures_mnist.png", "experiments_teacher.png", "significance.csv"} <= set(made)


def test_runs_with_the_same_label_are_named_by_directory(runs, tmp_path, capsys):
    import shutil

    other = tmp_path / "mnist-again"
    shutil.copytree(runs["mnist"], other)
    out = tmp_path / "both"
    assert figures_main([runs["mnist"], str(other), "--out", str(out), "--no-composites"]) == 0
    capsys.readouterr()
    assert (out / "accuracy_mnist.png").exists() and (out / "accuracy_mnist-again.png").exists()


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


def test_depth_figure_from_runs_at_two_depths(tmp_path, capsys):
    exps = "baseline,adversarial,frozen,freeze_1,reinit_1,reinit_2"
    for depth in (1, 2):
        assert run_sweep({"dataset": "mnist", "widths": "5", "seeds": 3, "max_steps": 15, "n_test": 100,
                          "quiet": True, "measures": False, "figure": False, "depth": depth,
                          "experiments": exps + (",freeze_2,reinit_3" if depth == 2 else "")},
                         str(tmp_path / f"d{depth}"))
    out = tmp_path / "figs"
    assert figures_main([str(tmp_path / "d1"), str(tmp_path / "d2"), "--out", str(out), "--no-composites"]) == 0
    assert "freeze_1 - adversarial" in capsys.readouterr().out  # per-layer effects are tested, paired
    assert png_size(out / "depth_mnist.png") == (1540, 429)  # one width: a row of three panels
