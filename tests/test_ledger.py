"""The claims ledger: it regenerates byte for byte from the committed results, its verdicts
follow its stated rules, the kept runs give the committed CSVs, and every number in
REPRODUCING.md's tables is in a committed CSV or in the ledger."""

import csv
import os
import re

import numpy as np
import pytest

from advjax import ledger
from advjax.ledger import Result, verdict

ROOT = ledger.ROOT


def test_the_ledger_regenerates_byte_for_byte_from_the_committed_files():
    with open(os.path.join(ROOT, "figures", "LEDGER.md"), encoding="utf-8") as f:
        committed = f.read()
    assert ledger.build() == committed, "figures/LEDGER.md is stale: run python -m advjax.ledger"


def test_every_claim_names_its_evidence_or_why_not_run():
    text = ledger.build()
    for claim in ledger.CLAIMS:
        assert claim.text in text
        if claim.not_run:  # the command that would run it, and its cost
            assert "python -m advjax.sweep" in claim.not_run
            assert "GPU-hours" in claim.not_run or "CPU cores" in claim.not_run
            assert ("--cifar-path" in claim.not_run) == claim.source.startswith("Liu")
        else:
            assert claim.folder in ledger.STUDIES, claim
    for v in ("reproduced", "not reproduced", "inconclusive", "not run"):
        assert f"**{v}**" in ledger.RULES


def t(effect, low, high, p):
    return Result("p = 1", 10, effect, low, high, p)


def test_verdicts_follow_the_rules():
    d = ledger.DELTA
    # below, significant everywhere: reproduced; significant the other way somewhere: not reproduced
    assert verdict("lt", [t(-0.05, -0.07, -0.03, 1e-4), t(-0.02, -0.03, -0.01, 0.01)], d) == "reproduced"
    assert verdict("lt", [t(-0.05, -0.07, -0.03, 1e-4), t(0.02, 0.01, 0.03, 0.01)], d) == "not reproduced"
    # one width not significant, its CI wide: inconclusive; every CI within ±1 point: not reproduced
    assert verdict("lt", [t(-0.05, -0.07, -0.03, 1e-4), t(-0.01, -0.03, 0.01, 0.3)], d) == "inconclusive"
    assert verdict("lt", [t(-0.002, -0.008, 0.004, 0.5)], d) == "not reproduced"
    # no difference: CIs within ±δ reproduce it, a significant CI beyond δ refutes it
    assert verdict("eq", [t(0.001, -0.004, 0.006, 0.7)], d) == "reproduced"
    assert verdict("eq", [t(0.03, 0.02, 0.04, 1e-3)], d) == "not reproduced"
    assert verdict("eq", [t(0.01, -0.01, 0.03, 0.2)], d) == "inconclusive"
    assert verdict("gt", [], d) == "inconclusive"
    # void tests (nothing was compared) are left out; only void tests: inconclusive (void)
    void = Result("p = 1", 10, 0.0, -0.001, 0.001, 1.0, void=True)
    assert verdict("gt", [void, void], d) == "inconclusive (void)"
    assert verdict("lt", [void, t(-0.05, -0.07, -0.03, 1e-4)], d) == "reproduced"


def _rows(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_the_kept_runs_give_the_committed_csvs(tmp_path):
    """Each figure folder whose runs are all kept: its significance.csv and summary.csv are
    what the figures code computes from those runs (no training; the statistics only)."""
    from advjax.figures import holm_families, load_runs, significance, summary, write_significance, write_summary

    checked = 0
    for study in ledger.STUDIES.values():
        if not all(ledger.kept(r) for r in study.runs):
            continue
        runs = load_runs([os.path.join(ROOT, ledger.RUNS, r) for r in study.runs])
        write_significance(significance(runs, holm_families(runs)), str(tmp_path / "sig.csv"))
        write_summary(summary(runs), str(tmp_path / "sum.csv"))
        for mine, name in (("sig.csv", "significance.csv"), ("sum.csv", "summary.csv")):
            with open(os.path.join(ROOT, study.folder, name), encoding="utf-8") as f:
                assert (tmp_path / mine).read_text() == f.read(), f"{study.folder}/{name}"
        checked += 1
    assert checked, "no figure folder has its runs kept under figures/runs"


# -- REPRODUCING.md's tables ------------------------------------------------------------------------------------------

NUMBER = re.compile(r"(?<![\w.])(?:(\d+(?:\.\d+)?)·)?10\^(-?\d+)|(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?(?:e-?\d+)?)")
EXEMPT = "<!-- numbers:"  # a table whose numbers a script prints, not a run: the comment names the script


def known_values():
    """Every number in a committed CSV under figures/ and in LEDGER.md."""
    values = []
    for folder, _, files in os.walk(os.path.join(ROOT, "figures")):
        for name in files:
            if name.endswith(".csv"):
                for row in _rows(os.path.join(folder, name)):
                    for v in row.values():
                        try:
                            values.append(float(v))
                        except (TypeError, ValueError):
                            pass
    with open(os.path.join(ROOT, "figures", "LEDGER.md"), encoding="utf-8") as f:
        for m in NUMBER.finditer(f.read().replace("−", "-")):
            values.append(_value(m)[0])
    return np.abs(np.array([v for v in values if np.isfinite(v)]))


def _value(m) -> tuple[float, int | None, int | None]:
    """A number as written, its decimals (for plain numbers) or significant digits (a·10^b)."""
    if m.group(2) is not None:
        mant = m.group(1) or "1"
        digits = len(mant.replace(".", "").lstrip("0")) or 1
        return float(mant) * 10 ** int(m.group(2)), None, digits
    text = m.group(3).replace(",", "")
    if "e" in text:
        mant = text.split("e")[0]
        return float(text), None, len(mant.replace(".", "").lstrip("0")) or 1
    return float(text), len(text.split(".")[1]) if "." in text else 0, None


_ROUNDED: dict[int, set] = {}


def _in(value, decimals, digits, known) -> bool:
    if digits is not None:
        if digits not in _ROUNDED:
            _ROUNDED[digits] = {float(f"{v:.{digits}g}") for v in known if v > 0}
        return float(f"{value:.{digits}g}") in _ROUNDED[digits]
    for scale in (1, 100):  # as written, or in points / percent
        if np.any(np.isclose(np.round(known * scale, decimals), value, rtol=0, atol=10 ** -(decimals + 3))):
            return True
    return False


def reproducing_table_numbers():
    """(line number, match) of every number in REPRODUCING.md's tables, but those of a
    table whose nearest non-blank line above is an exempting comment (`EXEMPT`: the
    numbers a script prints, or the configuration), which names where they come from."""
    with open(os.path.join(ROOT, "REPRODUCING.md"), encoding="utf-8") as f:
        lines = f.read().splitlines()
    out = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.fullmatch(r"[|\-: ]+", line):
            continue
        start = i
        while start > 0 and lines[start - 1].startswith("|"):
            start -= 1
        above = next((x for x in reversed(lines[:start]) if x.strip()), "")
        if above.startswith(EXEMPT):
            continue
        out += [(i + 1, m) for m in NUMBER.finditer(line.replace("−", "-"))]
    return out


def test_every_number_in_reproducing_tables_is_in_a_committed_csv_or_the_ledger():
    known = np.unique(known_values())
    missing = []
    for line, m in reproducing_table_numbers():
        value, decimals, digits = _value(m)
        if decimals == 0 and value <= 1000 and np.any(known == value):
            continue
        if not _in(abs(value), decimals, digits, known):
            missing.append(f"REPRODUCING.md:{line}: {m.group(0)}")
    assert not missing, "numbers in tables that no committed CSV or LEDGER.md holds:\n" + "\n".join(missing)


def test_a_contrast_across_two_runs_is_the_paired_test_of_their_rows():
    """A `versus` claim (the adversarial net from GD's Θ_adv minus from Adam's, the same
    seeds) against the t-test computed here from the two results.csv files."""
    from scipy import stats

    claim = next(c for c in ledger.CLAIMS if c.versus and c.run_dir == "decisive-phase1-circles-gd")
    if not (ledger.kept(claim.run_dir) and ledger.kept(claim.versus[0])):
        pytest.skip("runs not kept")
    [test] = ledger._run_tests([claim], ROOT)[claim].tests

    def acc(run):
        rows = _rows(os.path.join(ROOT, ledger.RUNS, run, "results.csv"))
        return {int(r["seed"]): float(r["test_acc"]) for r in rows if r["experiment"] == "adversarial"}

    a, b = acc(claim.run_dir), acc(claim.versus[0])
    d = np.array([a[s] - b[s] for s in sorted(a)])
    half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    assert test.n == len(d) == 20
    np.testing.assert_allclose([test.effect, test.low, test.high], [d.mean(), d.mean() - half, d.mean() + half],
                               rtol=1e-9, atol=1e-12)


def test_a_comparison_where_no_arm_made_theta_adv_or_reached_its_target_is_void():
    """The summed-loss MNIST run: every frozen and adversarial seed capped in phase 1 and in
    its last phase, so its frozen - adversarial tests are void; the fixed-data run's are not."""
    from advjax.figures import load_runs

    names = ("decisive-frozen-mnist", "decisive-frozen-mnist-sum")
    if not all(ledger.kept(n) for n in names):
        pytest.skip("runs not kept")
    fixed, summed = load_runs([os.path.join(ROOT, ledger.RUNS, n) for n in names])
    at = (("target_train_acc", 0.9),)
    assert ledger._void(summed, ["frozen", "adversarial"], 10, at)
    assert not ledger._void(fixed, ["frozen", "adversarial"], 10, at)
    assert not ledger._void(summed, ["baseline", "adversarial"], 10, at)  # the baseline has no phase 1
