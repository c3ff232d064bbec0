"""A property over the options table (issue 27, item 8): any value of any option either
runs a tiny sweep (exit 0) or is refused in one line naming a flag (exit 2); never a
traceback, another exit status, or a line of noise. Values are drawn as a user types
them: numbers at and past their limits, NaN and infinities, empty and odd text, lists."""

import math
import os

import pytest
from conftest import with_flags
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from advjax.options import OPTIONS
from advjax.sweep import main

TINY = ["--dataset", "gaussians", "--widths", "3", "--seeds", "1", "--max-steps", "5", "--n-test", "50",
        "--experiments", "1", "--no-measures", "--no-figure", "--quiet"]
# Left out, with the reason: where a sweep writes (out, compile_cache; covered by the rundir
# and compile-cache tests), what joins or restarts another run (resume, adv_from), how the
# process starts (distributed, coordinator, num_processes, process_id, cpu_devices: they
# configure JAX's runtime once per process; test_scaling.py runs them in processes of their
# own), and output switches without a value (quiet, figure).
LEFT_OUT = {"out", "compile_cache", "resume", "adv_from", "distributed", "coordinator", "num_processes",
            "process_id", "cpu_devices", "quiet", "figure"}
NAMES = [o.name for o in OPTIONS if o.name not in LEFT_OUT and not o.is_bool]
BOOLS = [o.name for o in OPTIONS if o.name not in LEFT_OUT and o.is_bool]

numbers = st.one_of(st.integers(-3, 3), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True, width=64))
texts = st.one_of(numbers.map(lambda v: repr(v) if isinstance(v, float) and not math.isfinite(v) else str(v)),
                  st.sampled_from(["", " ", "none", "full", "auto", "all", "2pi", "1e-3", "0x10", "1,2", "1,,2",
                                   "1,1", "step:1:0.1", "step:0:2", "10s", "5GB", "-0", "١٢", "mnist", "cnn"]),
                  st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=6))


@settings(max_examples=60, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=st.one_of(st.tuples(st.sampled_from(NAMES), texts),
                      st.tuples(st.sampled_from(BOOLS), st.sampled_from(["yes", "--no"]))))
def test_any_value_runs_or_is_refused_in_one_line(case, tmp_path_factory, capsys, monkeypatch):
    name, value = case
    flag = "--" + name.replace("_", "-")
    if value == "--no":  # a boolean: --x or --no-x
        arg = [f"--no-{flag[2:]}"]
    elif value == "yes":
        arg = [flag]
    else:
        arg = [f"{flag}={value}"]  # '=' so that a value starting with '-' stays this flag's
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)  # whatever a value names relative to the working directory stays here
    try:
        rc = main(with_flags(TINY, [*arg, "--out", str(cwd / "o")]))
    except SystemExit as e:  # argparse's own refusals exit from the parser
        rc = e.code
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2), (arg, rc, err)
    if rc == 2:
        assert err.count("\n") == 0 and err and "Traceback" not in err, (arg, err)
        assert " --" in err or err.split("error: ")[-1].startswith("--"), (arg, err)  # it names a flag
        assert not os.path.exists(cwd / "o") or not os.listdir(cwd / "o"), (arg, "wrote to --out")
    else:
        assert err == "" and (cwd / "o" / "results.csv").exists(), (arg, err)


def test_every_option_is_drawn_or_left_out_for_a_reason():
    assert set(NAMES) | set(BOOLS) | LEFT_OUT == {o.name for o in OPTIONS}


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
