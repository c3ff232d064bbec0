#!/bin/bash
# One sweep split by width over a SLURM array, one GPU per task, merged at the end.
#
#   CONFIG=sweeps/mnist.toml NAME=mnist sbatch scripts/slurm_array.sh
#   # then, when the array is done (or chain it: sbatch --dependency=afterok:<jobid> ...):
#   python -m advjax.merge runs/mnist/p* --out runs/mnist/all
#
# Each task is a complete sweep over one width, so a pre-empted or requeued task
# continues from its checkpoints (--resume) and finished widths are never rerun.
#SBATCH --job-name=advjax
#SBATCH --array=0-4
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=4
#SBATCH --time=04:00:00
#SBATCH --requeue
#SBATCH --signal=TERM@120
set -euo pipefail
WIDTHS=(${WIDTHS:-10 30 100 300 1000})
W=${WIDTHS[$SLURM_ARRAY_TASK_ID]}
NAME=${NAME:-sweep}
python -m advjax.sweep --config "${CONFIG:?set CONFIG to a sweeps/*.toml file}" \
    --widths "$W" --out "runs/$NAME/p$W" --resume --quiet
