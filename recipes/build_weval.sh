#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/build_weval.sh [extra `openrlhf-reward build-weval` flags]
#
# Stage 1: build a WEval benchmark. A teacher model adds requirements to each seed
# instruction, answers the full instruction and the weaker ones with requirements dropped
# (nested dropout), and each seed is assigned a task category; the result is one WEval
# document per seed in $OUTPUT_DIR/weval.jsonl, ready for eval_weval.sh.
#
# The teacher is any OpenAI-compatible endpoint: point TEACHER_BASE_URL at a running one
# (vLLM, an API), or leave it empty and this script starts `vllm serve $TEACHER_MODEL` on this
# node (tensor-parallel over TEACHER_TP GPUs) and stops it at the end. The build is
# resumable: rerun the same command after an interruption.
#
# Environment (all optional):
#   SEEDS               seed instructions: JSONL (one {"id", "instruction"} per line) or a
#                       `datasets` name                     (default: $RUN_DIR/seeds.jsonl)
#   OUTPUT_DIR          output, work dir, logs               (default: $RUN_DIR/weval)
#   TEACHER_BASE_URL    running endpoint incl. /v1; empty = start vLLM here (default: empty)
#   TEACHER_MODEL       model to serve / served model name; with TEACHER_BASE_URL set it may
#                       be empty (= the endpoint's first model) (default: Qwen/Qwen2.5-72B-Instruct)
#   TEACHER_TP          vLLM tensor parallel size            (default: 8)
#   TEACHER_PORT        vLLM port                            (default: 8000)
#   TEACHER_MAX_MODEL_LEN  vLLM context length               (default: 16384)
#   VLLM_ARGS           extra `vllm serve` flags, space-separated (default: empty)
#   READY_TIMEOUT       seconds to wait for vLLM             (default: 1800)
#   CONCURRENCY         requests in flight                   (default: 64)
#   TEMPERATURE         answer sampling temperature          (default: 0.7)
#   MAX_TOKENS          answer token limit                   (default: 2048)
#   N_REQUIREMENTS      requirements added per seed          (default: 5)
#   SEED                dropout / candidate order / sampling seed (default: 0)
#   LIMIT               use only the first N seeds; empty = all (default: empty)
#   OPENAI_API_KEY      key for an external endpoint         (default: none)
#   RUN_DIR, DRY_RUN    see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${SEEDS:=$RUN_DIR/seeds.jsonl}"
: "${OUTPUT_DIR:=$RUN_DIR/weval}"
: "${N_REQUIREMENTS:=5}"
: "${SEED:=0}"
: "${LIMIT:=}"

SEEDS="$(abspath "$SEEDS")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"
teacher_defaults

recipe_log_to "$OUTPUT_DIR" build_weval
need_cmd openrlhf-reward
[[ "$SEEDS" == /* ]] && need_file "$SEEDS" "seed instructions"

teacher_up
teacher_flags
args=(
  --seeds "$SEEDS"
  --output "$OUTPUT_DIR/weval.jsonl"
  --workdir "$OUTPUT_DIR/work"
  --n-requirements "$N_REQUIREMENTS"
  --seed "$SEED"
  "${TEACHER_FLAGS[@]}"
)
[ -n "$LIMIT" ] && args+=(--limit "$LIMIT")

run openrlhf-reward build-weval "${args[@]}" "$@"
is_dry_run || log "benchmark: $OUTPUT_DIR/weval.jsonl (evaluate with recipes/eval_weval.sh)"
