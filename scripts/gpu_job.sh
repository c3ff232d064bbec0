#!/bin/bash
# A sweep on one GPU (or all GPUs of one machine: the seeds are sharded over them),
# then its throughput on the benchmark's engine workloads.
#
#   bash scripts/gpu_job.sh sweeps/mnist.toml runs/mnist-gpu
set -euo pipefail
CONFIG=${1:?usage: gpu_job.sh CONFIG.toml OUT_DIR}
OUT=${2:?usage: gpu_job.sh CONFIG.toml OUT_DIR}
# Let advjax size the seeds in flight from the memory the GPU really has free.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python -c "import jax; print('devices:', jax.devices())"
python -m advjax.sweep --config "$CONFIG" --out "$OUT" --resume
python scripts/gpu_throughput.py
