#!/usr/bin/env bash
# DDP on the GPUs of one machine, keeping the recipe's global batch.
#   NUM_GPUS=8 CONFIG=configs/train/phi35v_lora.yaml scripts/launch_multi_gpu.sh [--train.lr=1e-5 ...] [--resume]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/train/phi35v_lora.yaml}
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
GLOBAL_BATCH=${GLOBAL_BATCH:-1024}
if (( GLOBAL_BATCH % NUM_GPUS )); then echo "global batch $GLOBAL_BATCH is not divisible by $NUM_GPUS GPUs" >&2; exit 1; fi
exec accelerate launch --config_file configs/accelerate/multi_gpu.yaml --num_processes "$NUM_GPUS" train.py \
    --config "$CONFIG" --train.per_device_batch_size=$(( GLOBAL_BATCH / NUM_GPUS )) "$@"
