"""What a sweep needs from the process it runs in: the persistent compilation cache,
the processes of a multi-process run, the matmul precision, peak memory and versions."""

from __future__ import annotations

import contextlib
import os
import platform
import sys
import tempfile
import warnings

import jax
import numpy as np

from .errors import ConfigError
from .version import __version__


def versions() -> dict:
    import flax
    import jaxlib
    import optax

    return {"advjax": __version__, "jax": jax.__version__, "jaxlib": jaxlib.__version__,
            "optax": optax.__version__, "flax": flax.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def sync_processes(name: str) -> None:
    """A barrier across the processes of a multi-process run (nothing in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def peak_memory() -> dict:
    """Peak host RSS of this process, and each local accelerator's peak bytes in use."""
    import resource

    out = {"host_peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
    for d in jax.local_devices():
        stats = d.memory_stats() if d.platform != "cpu" else None
        if stats and "peak_bytes_in_use" in stats:
            out[f"{d.platform}{d.id}_peak_bytes"] = stats["peak_bytes_in_use"]
    return out


def init_distributed(coordinator: str | None, num_processes: int | None, process_id: int | None) -> None:
    """Join a multi-process run. Without the three flags, JAX reads them from the
    environment SLURM or a TPU pod provides. CPU processes talk through gloo."""
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        if coordinator is not None:
            jax.distributed.initialize(coordinator, num_processes, process_id)
        else:
            jax.distributed.initialize()
    except (RuntimeError, ValueError) as e:
        raise ConfigError("--distributed", f"could not join the run ({str(e).splitlines()[0][:160]})") from None


def matmul_precision(precision: str):
    """The context every computation of a sweep runs in: jax's default matmul precision
    (--matmul-precision), or nothing at all for "default" (the programs of before the option)."""
    return contextlib.nullcontext() if precision == "default" else jax.default_matmul_precision(precision)


# -- the persistent compilation cache ------------------------------------------------------

CACHE_EVENTS = {"hits": 0, "requests": 0}


def _on_event(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        CACHE_EVENTS["hits"] += 1
    elif event == "/jax/compilation_cache/compile_requests_use_cache":
        CACHE_EVENTS["requests"] += 1


jax.monitoring.register_event_listener(_on_event)


def compile_cache_dir(setting: str) -> str | None:
    if setting == "off":
        return None
    if setting != "auto":
        return os.path.abspath(setting)
    return os.environ.get("ADVJAX_COMPILE_CACHE") or os.path.join(
        os.path.expanduser("~"), ".cache", "advjax", "jax")


_CACHE_WARNED: set[str] = set()


def enable_compile_cache(directory: str | None) -> str | None:
    """JAX's persistent compilation cache: a rerun loads each width's programs from disk.
    Every program is cached, however fast it compiled (JAX's default skips those < 1 s).
    A directory that cannot be made or written (a file on its path, /proc, a read-only
    HOME) is warned about once, in one line, and the sweep runs without the cache.
    Returns the directory in use, or None."""
    if directory is None:
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory):
            pass
    except OSError as e:
        if directory not in _CACHE_WARNED:
            _CACHE_WARNED.add(directory)
            print(f"advjax.sweep: warning: --compile-cache: cannot use {directory} "
                  f"({e.strerror or type(e).__name__}); running without the compilation cache", file=sys.stderr)
        return None
    # An entry JAX cannot write or read later (a full disk, one cut short) is compiled as
    # if uncached; its two-line warning per entry would bury the sweep's own lines.
    warnings.filterwarnings("ignore", message="Error (reading|writing) persistent compilation cache entry",
                            category=UserWarning)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory
