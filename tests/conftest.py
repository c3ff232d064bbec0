import os
import tempfile

# Tests never touch the user's compilation cache in ~/.cache. The workers of one xdist
# run share one, so that a program compiled by a test on one worker loads from disk on the other.
_run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
os.environ.setdefault("ADVJAX_COMPILE_CACHE", os.path.join(tempfile.gettempdir(), f"advjax-test-cache-{_run}")
                      if _run else tempfile.mkdtemp(prefix="advjax-test-cache-"))
