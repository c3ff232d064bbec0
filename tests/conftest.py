import os
import tempfile

# Tests never touch the user's compilation cache in ~/.cache.
os.environ.setdefault("ADVJAX_COMPILE_CACHE", tempfile.mkdtemp(prefix="advjax-test-cache-"))
