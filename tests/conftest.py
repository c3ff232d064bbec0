import contextlib
import os
import resource
import signal
import tempfile

# Tests never touch the user's compilation cache in ~/.cache. The workers of one xdist
# run share one, so that a program compiled by a test on one worker loads from disk on the other.
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault("ADVJAX_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), f"advjax-test-cache-{_run}")
                      if _run else tempfile.mkdtemp(prefix="advjax-test-cache-"))


def with_flags(base: list[str], argv: list[str]) -> list[str]:
    """`base` flags with `argv`'s after them, a flag of `argv` replacing the same flag of
    `base` (a flag given twice is refused, so a case cannot simply append an override).
    --x and --no-x are one flag."""
    def name(token: str) -> str | None:
        if not (isinstance(token, str) and token.startswith("--")):
            return None
        return token.split("=")[0].removeprefix("--no-").removeprefix("--")

    given = {name(t) for t in argv} - {None}
    out, i = [], 0
    while i < len(base):
        n = name(base[i])
        takes_value = "=" not in base[i] and i + 1 < len(base) and name(base[i + 1]) is None
        step = 2 if n is not None and takes_value else 1
        if n not in given:
            out += base[i:i + step]
        i += step
    return [*out, *argv]


# The heaviest test files first (measured: their summed durations in a whole run). pytest-
# xdist's --dist loadfile hands files to the workers in collection order, so a heavy file
# collected last ran alone at the end while the other core sat idle (about 80 s of a
# 7.6-minute run on 2 cores); longest first is the classic remedy.
HEAVY_FIRST = ("test_figures.py", "test_cifar_nets.py", "test_scaling.py", "test_bench_conv.py", "test_bench.py",
               "test_compaction.py", "test_cnn.py", "test_liu_sweeps.py", "test_layout.py", "test_rundir_checks.py",
               "test_sweep.py", "test_golden.py", "test_hypotheses.py", "test_checkpoint.py", "test_grid.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))  # stable: files stay whole


# -- running a hostile case within bounds (test_bad_input.py, test_hostile2.py) --------------

class CaseTimedOut(BaseException):  # BaseException: no `except Exception` in advjax swallows it
    pass


def _vm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def guarded(seconds: int, headroom: int | None):
    """At most `seconds` of wall time (CaseTimedOut) and, unless `headroom` is None, that
    many more bytes of address space than the process holds now."""
    def on_alarm(signum, frame):
        raise CaseTimedOut(f"still running after {seconds} s (bad input must be refused before training)")

    old = signal.signal(signal.SIGALRM, on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if headroom is not None:
        limit = _vm_bytes() + headroom
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
