#!/usr/bin/env bash
# Several machines with torchrun: run this on every node with the same MASTER_ADDR and its own NODE_RANK.
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 GPUS_PER_NODE=8 scripts/launch_multi_node.sh [--overrides]
# train.output_dir must be on a filesystem all nodes share. Add --train.deepspeed_config=configs/deepspeed/zero2.json
# for ZeRO. Restarting the same command with --resume continues from the newest complete checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/train/phi35v_lora.yaml}
NNODES=${NNODES:?set NNODES}
NODE_RANK=${NODE_RANK:?set NODE_RANK}
MASTER_ADDR=${MASTER_ADDR:?set MASTER_ADDR}
MASTER_PORT=${MASTER_PORT:-29500}
GPUS_PER_NODE=${GPUS_PER_NODE:-$(nvidia-smi -L | wc -l)}
GLOBAL_BATCH=${GLOBAL_BATCH:-1024}
WORLD=$(( NNODES * GPUS_PER_NODE ))
if (( GLOBAL_BATCH % WORLD )); then echo "global batch $GLOBAL_BATCH is not divisible by $WORLD GPUs" >&2; exit 1; fi
exec torchrun --nnodes "$NNODES" --node_rank "$NODE_RANK" --nproc_per_node "$GPUS_PER_NODE" \
    --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT" \
    train.py --config "$CONFIG" --train.per_device_batch_size=$(( GLOBAL_BATCH / WORLD )) "$@"
