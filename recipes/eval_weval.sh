#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/eval_weval.sh [extra lm-eval flags for every run]
#
# Stage 2: evaluate reward models on a WEval benchmark with lm-evaluation-harness and print
# one comparison table (`weval report`: the aggregate metrics plus per-requirement-type
# accuracy pooled over all documents; also $OUTPUT_DIR/comparison.json and .png). Each scorer
# is one lm-eval run; results (results_*.json) and per-document samples (--log_samples) go to
# $OUTPUT_DIR/<run name>/. Runs, in order (set a variable empty to skip that kind):
#   rules    `weval --model rules`: the deterministic checkers (CPU, no weights) -- a baseline
#   rm       `weval --model rm` for each checkpoint in RM_MODELS (a train_rm_bt.sh output or any
#            HF sequence-classification RM such as Skywork-Reward-V2), backend RM_BACKEND
#   judge    stock `lm_eval --model vllm` with the wevaljudge_* tasks for each JUDGE_MODELS entry
#            (a causal LM answering "Yes" per requirement; --include_path "$(weval --tasks-dir)")
#   remote   `weval --model remote-rm` against running reward servers (serve_rm.sh): measures
#            exactly the rewards GRPO trains on
#
# Environment (all optional):
#   WEVAL_DATA     WEval JSONL(s) (comma-separated); empty = the embedded demo set
#                  (default: $RUN_DIR/weval/weval.jsonl if it exists, else empty)
#   OUTPUT_DIR     results, samples, logs                    (default: $RUN_DIR/eval)
#   RULES          1 = include the rules baseline            (default: 1)
#   RM_MODELS      space-separated RM checkpoints            (default: $RUN_DIR/rm_bt/model)
#   RM_BACKEND     bt, per-requirement or classifier         (default: bt)
#   RM_ARGS        extra model_args for the rm runs, e.g. "dtype=bfloat16,max_length=4096"
#                                                            (default: empty)
#   RM_BATCH_SIZE  forward batch size                        (default: 16)
#   JUDGE_MODELS   space-separated judge models (hub ids or paths) (default: empty)
#   JUDGE_TP       vLLM tensor parallel size for judges      (default: 1)
#   JUDGE_ARGS     extra vLLM model_args, e.g. "max_model_len=8192,gpu_memory_utilization=0.85"
#   JUDGE_CHAT     1 = --apply_chat_template: the judge sees the reward backend's verdict
#                  messages in its chat template, as a chat endpoint serves it (default: 1)
#                                                            (default: max_model_len=8192)
#   REWARD_URLS    comma- or |-separated reward-server URLs  (default: the URL file of
#                  serve_rm.sh, $RUN_DIR/rm_serve/reward_urls.txt, if it exists, else empty)
#   REMOTE_CONCURRENCY  requests in flight for remote runs   (default: 32)
#   LIMIT          documents per category (quick checks); empty = all (default: empty)
#   PLOT           1 = also draw $OUTPUT_DIR/comparison.png  (default: 1)
#   OPENRLHF_REWARD_API_KEY  the reward servers' key        (default: none)
#   RUN_DIR, DRY_RUN  see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

if [ -z "${WEVAL_DATA+x}" ]; then
  WEVAL_DATA=""
  [ -e "$RUN_DIR/weval/weval.jsonl" ] && WEVAL_DATA="$RUN_DIR/weval/weval.jsonl"
fi
: "${OUTPUT_DIR:=$RUN_DIR/eval}"
: "${RULES:=1}"
: "${RM_MODELS=$RUN_DIR/rm_bt/model}" # '=' not ':=': RM_MODELS="" skips the rm runs
: "${RM_BACKEND:=bt}"
: "${RM_ARGS:=}"
: "${RM_BATCH_SIZE:=16}"
: "${JUDGE_MODELS:=}"
: "${JUDGE_TP:=1}"
: "${JUDGE_ARGS=max_model_len=8192}"
: "${JUDGE_CHAT:=1}"
if [ -z "${REWARD_URLS+x}" ]; then
  REWARD_URLS=""
  [ -s "$RUN_DIR/rm_serve/reward_urls.txt" ] && REWARD_URLS="$(tr -d '[:space:]' <"$RUN_DIR/rm_serve/reward_urls.txt")"
fi
: "${REMOTE_CONCURRENCY:=32}"
: "${LIMIT:=}"
: "${PLOT:=1}"

OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"
recipe_log_to "$OUTPUT_DIR" eval_weval
need_cmd weval

common=(--output_path OUT --log_samples)
if [ -n "$WEVAL_DATA" ]; then
  files=()
  IFS=, read -r -a parts <<<"$WEVAL_DATA"
  for f in "${parts[@]}"; do
    f="$(abspath "$f")"
    need_file "$f" "WEval data"
    files+=("$(json_str "$f")")
  done
  common+=(--metadata "{\"data_files\": [$(IFS=,; printf '%s' "${files[*]}")]}")
  log "benchmark: $WEVAL_DATA"
else
  log "benchmark: the embedded demo set (set WEVAL_DATA for your own)"
fi
[ -n "$LIMIT" ] && common+=(--limit "$LIMIT")

# with_out DIR ARGS...: ARGS with the OUT placeholder replaced by DIR.
with_out() {
  local dir="$1" a
  shift
  OUT_ARGS=()
  for a in "$@"; do
    if [ "$a" = OUT ]; then OUT_ARGS+=("$dir"); else OUT_ARGS+=("$a"); fi
  done
}

runs=()
if bool "$RULES"; then
  with_out "$OUTPUT_DIR/rules" "${common[@]}"
  run weval --model rules --tasks 'weval_*' "${OUT_ARGS[@]}" "$@"
  runs+=("$OUTPUT_DIR/rules")
fi

for model in $RM_MODELS; do
  model="$(abspath "$model")"
  [[ "$model" == /* ]] && need_file "$model" "reward model"
  name="$(basename "$model")"
  [ "$name" = model ] && name="$(basename "$(dirname "$model")")" # train_rm_bt.sh's .../rm_bt/model
  name="rm-$name"
  model_args="pretrained=$model,backend=$RM_BACKEND${RM_ARGS:+,$RM_ARGS}"
  with_out "$OUTPUT_DIR/$name" "${common[@]}"
  run weval --model rm --model_args "$model_args" --tasks 'weval_*' --batch_size "$RM_BATCH_SIZE" \
    "${OUT_ARGS[@]}" "$@"
  runs+=("$OUTPUT_DIR/$name")
done

if [ -n "$JUDGE_MODELS" ]; then
  need_cmd lm_eval
  tasks_dir="$(weval --tasks-dir)"
  for model in $JUDGE_MODELS; do
    model="$(abspath "$model")"
    name="judge-$(basename "$model")"
    model_args="pretrained=$model,tensor_parallel_size=$JUDGE_TP,dtype=auto${JUDGE_ARGS:+,$JUDGE_ARGS}"
    with_out "$OUTPUT_DIR/$name" "${common[@]}"
    chat=()
    [ "$JUDGE_CHAT" = 1 ] && chat=(--apply_chat_template)
    run lm_eval --model vllm --model_args "$model_args" --include_path "$tasks_dir" \
      --tasks 'wevaljudge_*' --batch_size auto "${chat[@]}" "${OUT_ARGS[@]}" "$@"
    runs+=("$OUTPUT_DIR/$name")
  done
fi

if [ -n "$REWARD_URLS" ]; then
  # model_args are comma-separated, so several servers are joined with '|'; the API key
  # travels in $OPENRLHF_REWARD_API_KEY, not in the URL.
  urls="$(printf '%s' "$REWARD_URLS" | sed -E 's/[?&]api_key=[^,|&]*//g' | tr ',' '|')"
  with_out "$OUTPUT_DIR/remote-rm" "${common[@]}"
  run weval --model remote-rm --model_args "url=$urls,concurrency=$REMOTE_CONCURRENCY" \
    --tasks 'weval_*' "${OUT_ARGS[@]}" "$@"
  runs+=("$OUTPUT_DIR/remote-rm")
fi

[ "${#runs[@]}" -ge 1 ] || die "nothing to evaluate: set RULES=1, RM_MODELS, JUDGE_MODELS or REWARD_URLS"
report=(weval report "${runs[@]}" --json "$OUTPUT_DIR/comparison.json")
bool "$PLOT" && report+=(--plot "$OUTPUT_DIR/comparison.png")
run "${report[@]}"
