"""Which devices the seeds are spread over.

On a CPU host, JAX shows one device that runs one program at a time, and the small
kernels of N_p on 2-D data keep one core busy. Splitting the host into one JAX device
per core lets the seed axis be sharded across cores like across GPUs (2-3x on 2 cores).
"""

from __future__ import annotations

import functools
import os
import platform

import jax
from jax._src import xla_bridge


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def use_cpu_devices(n: int | None = None) -> bool:
    """Split the host CPU into n JAX devices (default: one per core).

    Works only before JAX starts its backends (call it first thing in a script or
    notebook); returns whether it took effect. An explicit
    XLA_FLAGS=--xla_force_host_platform_device_count=N is left alone.
    """
    if xla_bridge.backends_are_initialized():
        return False
    if "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return False
    jax.config.update("jax_num_cpu_devices", n or cpu_cores())
    return True


def cpu_from_cpuinfo(text: str) -> str | None:
    """The first processor's model name in /proc/cpuinfo's text, with its family and model
    numbers and AVX-512 where given: a virtual machine may show only "AMD EPYC", and its
    generations (family 25: Zen 3/4; 26: Zen 5) differ in speed."""
    info = dict((k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in text.split("\n\n")[0].splitlines()))
    if "model name" not in info:
        return None
    cpu = info["model name"]
    if "cpu family" in info and "model" in info:
        avx = ", AVX-512" if "avx512f" in info.get("flags", "").split() else ""
        cpu += f" (family {info['cpu family']}, model {info['model']}{avx})"
    return cpu


def machine_name() -> str:
    """The CPU model (from /proc/cpuinfo) and any accelerator jax sees."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = cpu_from_cpuinfo(f.read()) or cpu
    except OSError:
        pass
    dev = jax.devices()[0]
    accel = f", {dev.device_kind} ({dev.platform})" if dev.platform != "cpu" else ""
    return f"{cpu}, {cpu_cores()} cores{accel}"


# LLVM's optimization level for programs that run once or a few times (random draws: θ0 and
# labels; the bench's cost counts). XLA's default (3) spends seconds on the unrolled rounds
# of the threefry PRNG: N_p's vmapped init compiled in 3-6 s at level 3 and 0.5-1 s at level
# 1, with the same bits (IEEE arithmetic either way, no fast-math; `tests/test_model.py`
# checks the MLP and CNN in every init scheme, VGG-11 and ResNet-18). Level 0 is not the
# same: it moved the init's values.
DRAW_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def jit_draw(fun, **kwargs):
    """`jax.jit` for a program compiled to run once or a few times, such as a seed group's
    initial parameters: on a CPU it compiles at LLVM level 1 (DRAW_COMPILER_OPTIONS),
    elsewhere as jax.jit does. Called while another program is traced (jit, scan, grad,
    eval_shape), where JAX takes compiler options only at the top level, it is that
    program's part, as jax.jit's would be; under an eager vmap it compiles on its own, at
    level 1. Call it where the program runs (it asks which backend that is), not at import."""
    plain = jax.jit(fun, **kwargs)
    if jax.default_backend() != "cpu":
        return plain
    light = jax.jit(fun, compiler_options=DRAW_COMPILER_OPTIONS, **kwargs)

    @functools.wraps(fun)
    def call(*args, **kw):
        return (light if at_top_level() else plain)(*args, **kw)

    call.lower = light.lower  # ahead of time: always a top-level program
    return call


@functools.cache
def draw_program(fn, static: tuple[int, ...] = ()):
    """`jit_draw(fn, static_argnums=static)`, made once per function: a module's one-off
    draws (a dataset's jax.random calls, the seeds' keys and labels) share their programs."""
    return jit_draw(fn, static_argnums=static)


def at_top_level() -> bool:
    """Whether JAX runs ops as they come (eagerly, or under an eager vmap), not tracing a
    program. Asks JAX's trace context, which is internal: should it change, every call
    counts as traced and takes the plain jit (slower to compile, the same bits)."""
    try:
        from jax._src import core

        trace = core.trace_ctx.trace
        while type(trace).__name__ == "BatchTrace":
            trace = trace.parent_trace
        return isinstance(trace, core.EvalTrace)
    except AttributeError:
        return False
