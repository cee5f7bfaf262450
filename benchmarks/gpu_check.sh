#!/usr/bin/env bash
# One GPU check of the paper-scale path (docs/scale.md), under 8 minutes on one large GPU (an H200):
#   1. benchmarks/gpu_throughput.py: ViT-B/16 at 224 px, bf16, baseline vs EmoReg (frozen same-size
#      affective pathway), torch.compile off and on: images/s and MFU;
#   2. a real EmoReg finetune through recipes/finetune.py (recipes/vit-base-patch16/finetune_cifar100.yaml,
#      bf16, its batch and 8 loader workers, device-side finishing), 200 steps on local CIFAR-100-shaped data
#      written here, with a stage 1 made by recipes/pretrain.py first: step time and the share of it spent
#      waiting for data (benchmarks/recipe_timing.py);
#   3. the loader alone at 8 workers feeding 224-px batches (benchmarks/data_throughput.py);
# then prints one table with the targets next to the measured numbers (benchmarks/gpu_check_report.py).
#
#   bash benchmarks/gpu_check.sh                    # on the GPU machine; everything in outputs/gpu_check/
#   bash benchmarks/gpu_check.sh --cpu-smoke        # tiny versions of each part on the CPU (about a minute)
#   bash benchmarks/gpu_check.sh --results DIR      # also copy the report, the 3 JSONs and 3 logs to DIR
#   GPU_CHECK_DIR=/some/dir bash benchmarks/gpu_check.sh    # work folder elsewhere (data, runs: ~1 GB)
#
# Offline: the models are built from their configs (random weights), the data is written by this script.
# Python: .venv/bin/python if there, else $PY, else python3 (with the project's dependencies; PYTHONPATH is
# set to the repository, so no install is needed).
set -uo pipefail
cd "$(dirname "$0")/.."
MODE=gpu
RESULTS=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cpu-smoke) MODE=cpu; shift ;;
        --results) RESULTS="$2"; shift 2 ;;
        *) echo "unknown argument $1 (use --cpu-smoke, --results DIR)" >&2; exit 2 ;;
    esac
done
PY=${PY:-.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
OUT=${GPU_CHECK_DIR:-outputs/gpu_check$([[ $MODE == cpu ]] && echo _cpu_smoke)}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HF_DATASETS_CACHE="$OUT/hf_datasets_cache" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
START=$SECONDS
status() { echo "[gpu_check $((SECONDS - START))s] $*"; }

if [[ $MODE == gpu ]]; then
    THROUGHPUT=(--device cuda)
    TRAIN_ROWS=15000  # 200 steps x 64 images fit in one epoch of the 90% left after the validation carve
    MODEL="{model_type: vit}"  # ViT-B/16, transformers' defaults
    PRETRAIN=(--max_steps 5 --per_device_train_batch_size 64)
    FINETUNE=(--max_steps 200 --logging_steps 50)
    WARMUP=20
    LOADER=(--device cuda --workers 8 --batch-size 64 --repeats 3 --max-images 8192)
else
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a shared CPU host: oversubscribed threads stall every step
    THROUGHPUT=(--device cpu --tiny --compile off)
    TRAIN_ROWS=400
    MODEL="{model_type: vit, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, patch_size: 16}"
    PRETRAIN=(--max_steps 2 --per_device_train_batch_size 8 --bf16 false)
    FINETUNE=(--max_steps 12 --logging_steps 4 --per_device_train_batch_size 8 --dataloader_num_workers 2 --bf16 false)
    WARMUP=2
    LOADER=(--device cpu --workers 2 --batch-size 32 --repeats 1 --max-images 256)
fi

status "writing local data ($TRAIN_ROWS CIFAR-100-shaped training images, an affective image folder)"
"$PY" - "$OUT/data" "$TRAIN_ROWS" <<'EOF' || exit 1
import sys
from pathlib import Path

import datasets

sys.path.insert(0, "benchmarks")
from scale_smoke import write_data

datasets.disable_progress_bars()
write_data(Path(sys.argv[1]), train_rows=int(sys.argv[2]), test_rows=512, per_emotion=64)
EOF
DATASET="{path: $OUT/data/cifar100, label_column: fine_label}"
AFFECT="[{path: imagefolder, data_dir: $OUT/data/affect}]"
COMMON=(--image_size 224 --eval_strategy no --save_strategy no --report_to none --overwrite_output_dir true
        --max_eval_samples 256 --warmup_steps 0)

status "1/3 model throughput (benchmarks/gpu_throughput.py)"
"$PY" benchmarks/gpu_throughput.py "${THROUGHPUT[@]}" --json "$OUT/throughput.json" 2>&1 | tee "$OUT/throughput.log"

status "2/3 stage 1 (recipes/pretrain.py), then the 200-step EmoReg finetune (recipes/finetune.py)"
"$PY" recipes/pretrain.py recipes/vit-base-patch16/pretrain_affect.yaml "${COMMON[@]}" \
    --model_name_or_path none --model_config "$MODEL" --affective_sources "$AFFECT" \
    --output_dir "$OUT/pretrain" "${PRETRAIN[@]}" > "$OUT/pretrain.log" 2>&1 \
    || { tail -20 "$OUT/pretrain.log"; echo "stage 1 failed (log: $OUT/pretrain.log)"; }
"$PY" benchmarks/recipe_timing.py --json "$OUT/finetune_timing.json" --warmup_steps "$WARMUP" -- \
    recipes/finetune.py recipes/vit-base-patch16/finetune_cifar100.yaml "${COMMON[@]}" \
    --task_model_name_or_path none --task_model_config "$MODEL" --affect_model_name_or_path "$OUT/pretrain" \
    --dataset "$DATASET" --load_best_model_at_end false --output_dir "$OUT/finetune" "${FINETUNE[@]}" \
    > "$OUT/finetune.log" 2>&1 \
    || { tail -20 "$OUT/finetune.log"; echo "finetune failed (log: $OUT/finetune.log)"; }
grep "recipe timing" "$OUT/finetune.log"

status "3/3 the loader alone (benchmarks/data_throughput.py)"
"$PY" benchmarks/data_throughput.py --data "$OUT/data/cifar100" "${LOADER[@]}" --json "$OUT/loader.json" \
    2>&1 | tee "$OUT/loader.log" | grep -v "it/s\]"

status "done in $((SECONDS - START)) s"
"$PY" benchmarks/gpu_check_report.py "$OUT" --mode "$MODE" | tee "$OUT/report.txt"
if [[ -n "$RESULTS" ]]; then
    mkdir -p "$RESULTS"
    for f in report.txt throughput.json finetune_timing.json loader.json throughput.log finetune.log loader.log; do
        [[ -f "$OUT/$f" ]] && cp "$OUT/$f" "$RESULTS/"
    done
fi
