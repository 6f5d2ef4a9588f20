#!/usr/bin/env bash
# SLURM: sbatch --nodes=2 scripts/launch_slurm.sh [--overrides]
# One task per node; each runs torchrun over the node's GPUs. Requeue-friendly: passes --resume-if-present,
# which resumes from the newest complete checkpoint, or starts the run when there is none yet.
#SBATCH --job-name=vlm2vec
#SBATCH --ntasks-per-node=1
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=64
#SBATCH --time=24:00:00
#SBATCH --requeue
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT=${MASTER_PORT:-29500}
export NNODES=$SLURM_NNODES
export GPUS_PER_NODE=${GPUS_PER_NODE:-8}
srun --kill-on-bad-exit=1 bash -c 'NODE_RANK=$SLURM_NODEID scripts/launch_multi_node.sh --resume-if-present "$@"' _ "$@"
