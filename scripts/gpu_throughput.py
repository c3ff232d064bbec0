"""Seed-steps per second of the sweep engine on this machine's accelerators.

    python scripts/gpu_throughput.py [SEEDS]

Runs the benchmark's engine workloads (random labels, per-seed stopping on) with many
seeds, as a sweep on a GPU would, and prints one line per workload and width.
"""

import sys

import jax

from advjax.bench import WORKLOADS, run_advjax, useful_flops

seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
print(f"devices: {jax.devices()}")
for name in WORKLOADS:
    d, n, k, batch, _ = WORKLOADS[name]
    for width in (10, 100, 1000):
        steps = 2000 if name == "2d" else 200
        r = run_advjax(name, width, seeds, steps)
        rate = r["seed_steps"] / r["seconds"]
        print(f"{name:<6} p={width:<5} {seeds} seeds: {rate:>14,.0f} seed-steps/s "
              f"({rate * useful_flops(d, n, width, k, batch) / 1e12:.2f} TFLOP/s useful), "
              f"compile {r['compile_seconds']:.1f} s", flush=True)
