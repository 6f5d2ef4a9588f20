#!/usr/bin/env bash
# DeepSpeed ZeRO-2 / ZeRO-3 on the GPUs of one machine (full fine-tuning of Phi-3.5-V).
#   ZERO=2 NUM_GPUS=8 CONFIG=configs/train/phi35v_full.yaml scripts/launch_deepspeed.sh [--overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/train/phi35v_full.yaml}
ZERO=${ZERO:-2}
NUM_GPUS=${NUM_GPUS:-$(nvidia-smi -L | wc -l)}
GLOBAL_BATCH=${GLOBAL_BATCH:-2048}
exec accelerate launch --config_file "configs/accelerate/deepspeed_zero${ZERO}.yaml" --num_processes "$NUM_GPUS" \
    train.py --config "$CONFIG" --train.deepspeed_config=null \
    --train.per_device_batch_size=$(( GLOBAL_BATCH / NUM_GPUS )) "$@"
