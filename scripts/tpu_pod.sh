#!/bin/bash
# A sweep on a TPU pod slice: run the same command on every worker; JAX finds the
# other workers by itself (jax.distributed.initialize with no arguments).
#
#   gcloud compute tpus tpu-vm ssh $TPU --zone=$ZONE --worker=all \
#     --command="cd advjax && bash scripts/tpu_pod.sh sweeps/mnist.toml /shared/runs/mnist"
set -euo pipefail
python -m advjax.sweep --config "${1:?CONFIG}" --out "${2:?OUT_DIR on shared storage}" --distributed --resume --quiet
