#!/usr/bin/env bash
# One GPU. The paper's global batch of 1024 on one GPU: GradCache keeps the activation memory of a
# chunk, so only time grows.   CONFIG=configs/train/phi35v_lora.yaml scripts/launch_single_gpu.sh [--overrides]
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/train/phi35v_lora.yaml}
GLOBAL_BATCH=${GLOBAL_BATCH:-1024}
exec accelerate launch --config_file configs/accelerate/single_gpu.yaml train.py \
    --config "$CONFIG" --train.per_device_batch_size="$GLOBAL_BATCH" "$@"
