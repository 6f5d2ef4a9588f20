#!/usr/bin/env bash
# Every GPU check of the project in one short run (one lease of a single H100/H200).
# Writes one JSON file per check plus a log into $OUT (default: ./gpu_out). Each check has its own
# time limit so that one slow check cannot starve the others. Figures go to docs/benchmarks.md.
#
#   bash scripts/gpu_checks.sh                    # on a GPU machine, from the repository root
#   CHECKS="train eval" bash scripts/gpu_checks.sh  # a subset
#   CHECKS="train train_tokens eval packing" bash scripts/gpu_checks.sh  # issue 12's checks (~9 min)
#   CHECKS="export" bash scripts/gpu_checks.sh     # issue 21: export parity, ST with torchvision + vLLM (~4 min)
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
# Optional wheels carried beside the tree (library versions matching CI), installed without network.
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=offline TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1
LOG="$OUT/log.txt"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"; } > "$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

check() {  # check NAME SECONDS SCRIPT ARGS...
  local name=$1 limit=$2; shift 2
  case " ${CHECKS:-phi3v train train_tokens gradcache eval packing export} " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name (limit ${limit}s): python3 $*" | tee -a "$LOG"
  local t0=$SECONDS
  timeout "$limit" python3 "$@" > "$OUT/$name.json" 2>> "$LOG"
  local rc=$?
  echo "== $name rc=$rc in $((SECONDS - t0))s" | tee -a "$LOG"
  tail -c 3000 "$OUT/$name.json"; echo
}

check phi3v 130 scripts/bench_phi3v.py --device cuda --backward
# today's GradCache chunks vs length-grouped trimmed ones, recipe chunk 4, one process
check train 300 scripts/bench_train.py --device cuda --warmup 1 --steps 2
# token-budget chunks (16 image rows' worth, many more text rows): MFU at the budget that fits
check train_tokens 170 scripts/bench_train.py --device cuda --warmup 1 --steps 2 --paths new --chunk-tokens 12800
check gradcache 100 scripts/bench_gradcache.py --device cuda --hidden 2048 --layers 8 --heads 16 --seq 512 \
  --batch 64 --chunk 16 --mem-batches 16,32,64 --mem-chunk 8 --dtype bf16 --dropout 0.1 --repeats 6 --warmup 2
check eval 150 scripts/bench_eval.py --device cuda --dtype bfloat16 --hidden-size 1024 --layers 8 \
  --queries 200 --candidates 25 --batch-size 64 --num-workers 4 --today-workers 4 --batch-tokens 16384 --repeats 1
check packing 60 scripts/bench_packing.py --device cuda
# issue 21: exported tiny models in sentence-transformers (real processors) and vLLM pooling (if installed)
check export 240 scripts/check_export_parity.py --device cuda
tail -n 40 "$LOG"
