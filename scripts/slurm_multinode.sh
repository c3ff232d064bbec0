#!/bin/bash
# One sweep over several nodes: every process trains its share of the seeds (the seed
# axis is sharded over all GPUs of all nodes); process 0 writes the outputs. JAX reads
# the coordinator, process count and process id from SLURM's environment. --out must
# be on a file system all nodes share.
#
#   CONFIG=sweeps/mnist.toml sbatch scripts/slurm_multinode.sh
#SBATCH --job-name=advjax-multi
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --time=04:00:00
set -euo pipefail
srun python -m advjax.sweep --config "${CONFIG:?set CONFIG}" --distributed \
    --out "runs/${NAME:-multi}" --resume --quiet
