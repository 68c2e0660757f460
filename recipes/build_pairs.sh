#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/build_pairs.sh [extra `openrlhf-reward build-pairs` flags]
#
# Stage 3: build the WRL training data from instructions with requirements.
#   $OUTPUT_DIR/pairs.jsonl       reward-model pairs for train_rm_bt.sh (chosen = answer to the
#                                 full instruction, rejected = answer with requirements dropped,
#                                 margin = number dropped)
#   $OUTPUT_DIR/pairs_eval.jsonl  the same for held-out instructions (train_rm's eval split)
#   $OUTPUT_DIR/grpo.jsonl        GRPO prompt rows for train_grpo.sh ({"input": chat,
#                                 "label": {"requirements": [...]}})
#   $OUTPUT_DIR/grpo_eval.jsonl   GRPO rows of the held-out instructions
# Every EVAL_EVERY-th instruction (in file order) is held out. A teacher answers the
# instructions (see build_weval.sh for TEACHER_BASE_URL / starting vLLM here); with RAW=1 it
# first extracts the requirements from raw instruction text. Resumable: rerun after an
# interruption.
#
# Environment (all optional):
#   INSTRUCTIONS        JSONL of instructions with listed requirements ({"id", "query",
#                       "requirements"}; WEval documents qualify), or raw ({"id",
#                       "instruction"}) with RAW=1           (default: $RUN_DIR/instructions.jsonl)
#   RAW                 1 = extract requirements from raw text first (default: 0)
#   OUTPUT_DIR          outputs, work dirs, logs             (default: $RUN_DIR/wrl_data)
#   EVAL_EVERY          hold out every N-th instruction; 0 = no eval split (default: 50)
#   PAIRING             full (0 vs each level), adjacent (k vs k+1), all (every i<j) (default: full)
#   GRANULARITY         query, requirement or both           (default: query)
#   LEVELS              most requirements dropped; empty = n-1 (default: empty)
#   SEED                dropout order / sampling seed        (default: 0)
#   TEACHER_BASE_URL, TEACHER_MODEL, TEACHER_TP, TEACHER_PORT, TEACHER_MAX_MODEL_LEN,
#   VLLM_ARGS, READY_TIMEOUT, CONCURRENCY, TEMPERATURE, MAX_TOKENS: as in build_weval.sh
#   RUN_DIR, DRY_RUN    see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${INSTRUCTIONS:=$RUN_DIR/instructions.jsonl}"
: "${RAW:=0}"
: "${OUTPUT_DIR:=$RUN_DIR/wrl_data}"
: "${EVAL_EVERY:=50}"
: "${PAIRING:=full}"
: "${GRANULARITY:=query}"
: "${LEVELS:=}"
: "${SEED:=0}"

INSTRUCTIONS="$(abspath "$INSTRUCTIONS")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"
teacher_defaults
[[ "$EVAL_EVERY" =~ ^[0-9]+$ ]] || die "EVAL_EVERY must be a whole number, got '$EVAL_EVERY'"

recipe_log_to "$OUTPUT_DIR" build_pairs
need_cmd openrlhf-reward
need_file "$INSTRUCTIONS" "instructions"

# split_jsonl IN TRAIN EVAL EVERY: every EVERY-th non-empty line to EVAL, the rest to TRAIN.
split_jsonl() {
  mkdir -p "$(dirname "$2")"
  awk -v n="$4" -v tr="$2" -v ev="$3" 'NF { if (++i % n == 0) print > ev; else print > tr }' "$1"
  touch "$2" "$3"
}

teacher_up
teacher_flags
raw_flag=()
bool "$RAW" && raw_flag=(--raw)

train_in="$INSTRUCTIONS"
eval_in=""
if [ "$EVAL_EVERY" -gt 0 ]; then
  train_in="$OUTPUT_DIR/instructions_train.jsonl"
  eval_in="$OUTPUT_DIR/instructions_eval.jsonl"
  run split_jsonl "$INSTRUCTIONS" "$train_in" "$eval_in" "$EVAL_EVERY"
  if ! is_dry_run && [ ! -s "$eval_in" ]; then
    log "fewer than $EVAL_EVERY instructions: no eval split"
    eval_in=""
  fi
fi

pair_args=(--pairing "$PAIRING" --granularity "$GRANULARITY" --seed "$SEED")
[ -n "$LEVELS" ] && pair_args+=(--levels "$LEVELS")

run openrlhf-reward build-pairs --input "$train_in" --output "$OUTPUT_DIR/pairs.jsonl" \
  --workdir "$OUTPUT_DIR/work/pairs" "${raw_flag[@]}" "${pair_args[@]}" "${TEACHER_FLAGS[@]}" "$@"
if [ -n "$eval_in" ]; then
  run openrlhf-reward build-pairs --input "$eval_in" --output "$OUTPUT_DIR/pairs_eval.jsonl" \
    --workdir "$OUTPUT_DIR/work/pairs_eval" "${raw_flag[@]}" "${pair_args[@]}" "${TEACHER_FLAGS[@]}" "$@"
fi

# GRPO rows need no answers; a teacher is used only to extract requirements (RAW=1).
grpo_teacher=()
bool "$RAW" && grpo_teacher=("${TEACHER_FLAGS[@]}")
run openrlhf-reward build-grpo --input "$train_in" --output "$OUTPUT_DIR/grpo.jsonl" \
  --workdir "$OUTPUT_DIR/work/grpo" --seed "$SEED" --datasource wrl "${raw_flag[@]}" "${grpo_teacher[@]}"
if [ -n "$eval_in" ]; then
  run openrlhf-reward build-grpo --input "$eval_in" --output "$OUTPUT_DIR/grpo_eval.jsonl" \
    --workdir "$OUTPUT_DIR/work/grpo_eval" --seed "$SEED" --datasource wrl "${raw_flag[@]}" "${grpo_teacher[@]}"
fi
is_dry_run || log "pairs: $OUTPUT_DIR/pairs.jsonl, GRPO prompts: $OUTPUT_DIR/grpo.jsonl"
