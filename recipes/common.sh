# shellcheck shell=bash
# Helpers shared by the recipes; sourced, not run.
#
# Every recipe understands:
#   -h / --help     print the usage comment at the top of the script and exit
#   DRY_RUN=1       print each command ("+ cmd args", shell-quoted) instead of running it;
#                   nothing is started, created or downloaded (tests/test_recipes.py parses
#                   these lines with OpenRLHF's own argument parsers)
#   RUN_DIR         root of all outputs (default: outputs); each stage writes under it
#   extra args      anything after the script name is appended to its main command

RECIPES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export RECIPES_DIR
: "${DRY_RUN:=0}"
: "${RUN_DIR:=outputs}"
RUN_DIR="$(realpath -m -- "$RUN_DIR")"
export DRY_RUN RUN_DIR

_BG_PIDS=()

log() { printf '[%s] %s\n' "$(date '+%H:%M:%S')" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
is_dry_run() { [ "$DRY_RUN" = 1 ]; }

# recipe_usage SCRIPT: the leading comment block (after the shebang), without the '# '.
recipe_usage() {
  awk 'NR == 1 && /^#!/ { next } /^#SBATCH/ { exit } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

# recipe_help "$@": print the usage and exit when -h/--help is among the arguments.
recipe_help() {
  local a
  for a in "$@"; do
    case "$a" in
      -h | --help) recipe_usage "$0"; exit 0 ;;
    esac
  done
}

# recipe_log_to DIR NAME: mirror this script's stdout/stderr into DIR/logs/NAME-<time>.log.
recipe_log_to() {
  is_dry_run && return 0
  mkdir -p "$1/logs"
  RECIPE_LOG="$1/logs/$2-$(date '+%Y%m%d-%H%M%S').log"
  exec > >(tee -a "$RECIPE_LOG") 2>&1
  log "logging to $RECIPE_LOG"
}

# show CMD ARGS...: print a command the way DRY_RUN does (one line, shell-quoted; API
# keys in URLs masked so logs do not keep them).
show() {
  local out='+' a q
  for a in "$@"; do
    [[ "$a" == *api_key=* ]] && a="$(mask_keys "$a")"
    printf -v q '%q' "$a"
    out+=" $q"
  done
  printf '%s\n' "$out"
}

# run CMD ARGS...: print the command, then run it (unless DRY_RUN=1).
run() {
  show "$@"
  is_dry_run && return 0
  "$@"
}

# run_bg LOGFILE CMD ARGS...: print, then start in the background with output to LOGFILE.
# The pid is appended to _BG_PIDS (and echoed in BG_PID); stop_bg ends them all.
run_bg() {
  local logfile="$1"
  shift
  show "$@"
  BG_PID=""
  is_dry_run && return 0
  mkdir -p "$(dirname "$logfile")"
  "$@" >"$logfile" 2>&1 &
  BG_PID=$!
  _BG_PIDS+=("$BG_PID")
}

# stop_bg: SIGTERM every background process this script started, then wait for them.
stop_bg() {
  local pid
  for pid in "${_BG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${_BG_PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  _BG_PIDS=()
}

# http_ok URL [BEARER]: true when GET URL answers 2xx.
http_ok() {
  local url="$1" key="${2:-}"
  if command -v curl >/dev/null 2>&1; then
    if [ -n "$key" ]; then
      curl -sf -o /dev/null -m 5 -H "Authorization: Bearer $key" "$url"
    else
      curl -sf -o /dev/null -m 5 "$url"
    fi
  else
    python3 - "$url" "$key" <<'EOF'
import sys, urllib.request
req = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    req.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    urllib.request.urlopen(req, timeout=5)
except Exception:
    sys.exit(1)
EOF
  fi
}

# wait_http URL TIMEOUT_S [PID] [LOGFILE] [BEARER]: poll URL until it answers; fail early
# (showing the log's tail) if PID dies first.
wait_http() {
  local url="$1" timeout="$2" pid="${3:-}" logfile="${4:-}" key="${5:-}" waited=0
  is_dry_run && return 0
  log "waiting for $url (up to ${timeout}s)"
  until http_ok "$url" "$key"; do
    if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      [ -n "$logfile" ] && tail -n 40 "$logfile" >&2
      die "the process behind $url exited before it was ready${logfile:+ (log: $logfile)}"
    fi
    if [ "$waited" -ge "$timeout" ]; then
      die "$url not ready after ${timeout}s${logfile:+ (log: $logfile)}"
    fi
    sleep 2
    waited=$((waited + 2))
  done
}

# abspath PATH: absolute form of an existing (or ./-, ../-, /-prefixed) local path; anything
# else -- a hub id such as Qwen/Qwen2.5-7B-Instruct, a URL -- is returned unchanged. Ray
# jobs and srun steps do not run in the caller's directory, so local paths are made
# absolute before they are handed over.
abspath() {
  local p="$1"
  if [ -n "$p" ] && { [ -e "$p" ] || [[ "$p" == /* || "$p" == ./* || "$p" == ../* ]]; }; then
    realpath -m -- "$p"
  else
    printf '%s' "$p"
  fi
}

# outdir PATH: absolute form of an output path (it need not exist yet).
outdir() { realpath -m -- "$1"; }

# mask_keys TEXT: TEXT with api_key=... values in URLs replaced by ***.
mask_keys() { printf '%s' "$1" | sed -E 's/([?&]api_key=)[^,&]*/\1***/g'; }

# bool VALUE: exit status true for 1/true/yes/on (case-insensitive).
bool() {
  case "${1,,}" in
    1 | true | yes | on) return 0 ;;
    0 | false | no | off | "") return 1 ;;
    *) die "expected a boolean (1/0, true/false), got '$1'" ;;
  esac
}

# need_cmd NAME...: fail early with a clear message when a command is missing
# (skipped under DRY_RUN so the commands can be inspected anywhere).
need_cmd() {
  is_dry_run && return 0
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || die "'$c' not found on PATH"
  done
}

# need_file PATH WHAT: fail early when an input file is missing (not under DRY_RUN).
need_file() {
  is_dry_run && return 0
  [ -e "$1" ] || die "$2 not found: $1"
}

# json_str TEXT: TEXT as a JSON string literal (quotes and backslashes escaped).
json_str() {
  local s="${1//\\/\\\\}"
  s="${s//\"/\\\"}"
  printf '"%s"' "$s"
}

# teacher_defaults: the defaults of the teacher variables that build_weval.sh documents (a
# running endpoint, or `vllm serve` on this node), and a check that one of the two is named.
teacher_defaults() {
  : "${TEACHER_BASE_URL:=}"
  : "${TEACHER_MODEL=Qwen/Qwen2.5-72B-Instruct}" # '=' not ':=': may be set empty with TEACHER_BASE_URL
  : "${TEACHER_TP:=8}"
  : "${TEACHER_PORT:=8000}"
  : "${TEACHER_MAX_MODEL_LEN:=16384}"
  : "${VLLM_ARGS:=}"
  : "${READY_TIMEOUT:=1800}"
  : "${CONCURRENCY:=64}"
  : "${TEMPERATURE:=0.7}"
  : "${MAX_TOKENS:=2048}"
  [ -n "$TEACHER_BASE_URL" ] || [ -n "$TEACHER_MODEL" ] || die "set TEACHER_MODEL (or TEACHER_BASE_URL)"
}

# teacher_up: make sure an OpenAI-compatible teacher endpoint is there. With TEACHER_BASE_URL
# set, use it as is; otherwise start `vllm serve $TEACHER_MODEL` on this node (stopped when
# the script exits) and set TEACHER_BASE_URL to it. Reads TEACHER_MODEL, TEACHER_TP,
# TEACHER_PORT, TEACHER_MAX_MODEL_LEN, VLLM_ARGS, READY_TIMEOUT, OUTPUT_DIR.
teacher_up() {
  if [ -n "$TEACHER_BASE_URL" ]; then
    log "teacher endpoint: $TEACHER_BASE_URL"
    return 0
  fi
  need_cmd vllm
  local extra=()
  read -r -a extra <<<"$VLLM_ARGS"
  trap stop_bg EXIT
  trap 'exit 130' INT TERM
  run_bg "$OUTPUT_DIR/logs/vllm-teacher.log" vllm serve "$TEACHER_MODEL" \
    --host 127.0.0.1 --port "$TEACHER_PORT" \
    --tensor-parallel-size "$TEACHER_TP" --max-model-len "$TEACHER_MAX_MODEL_LEN" "${extra[@]}"
  wait_http "http://127.0.0.1:$TEACHER_PORT/health" "$READY_TIMEOUT" "$BG_PID" "$OUTPUT_DIR/logs/vllm-teacher.log"
  TEACHER_BASE_URL="http://127.0.0.1:$TEACHER_PORT/v1"
}

# teacher_flags: the --teacher* options of the build commands for the endpoint above
# (sets the array TEACHER_FLAGS).
teacher_flags() {
  TEACHER_FLAGS=(--teacher openai --base-url "$TEACHER_BASE_URL" --concurrency "$CONCURRENCY")
  [ -n "$TEACHER_MODEL" ] && TEACHER_FLAGS+=(--teacher-model "$TEACHER_MODEL")
  TEACHER_FLAGS+=(--temperature "$TEMPERATURE" --max-tokens "$MAX_TOKENS")
}

# grpo_defaults: the defaults the GRPO recipes share (KL, epochs, DeepSpeed, checkpoints, seed),
# documented in train_grpo.sh and train_cerm.sh.
grpo_defaults() {
  : "${KL_COEF:=1e-3}"
  : "${KL_ESTIMATOR:=k3}"
  : "${NUM_EPISODES:=1}"
  : "${MAX_EPOCHS:=1}"
  : "${ZERO_STAGE:=3}"
  : "${ATTN_IMPL:=flash_attention_2}"
  : "${PACKING:=1}"
  : "${GRAD_CKPT:=1}"
  : "${SAVE_STEPS:=20}"
  : "${EVAL_STEPS:=10}"
  : "${USE_WANDB:=0}"
  : "${SEED:=42}"
}

# grpo_args: append to the array `args` the train_ppo_ray flags every GRPO recipe shares (data,
# rollout, group-normalised advantages with a KL loss, batch sizes, optimiser, DeepSpeed,
# checkpoints, logs; eager vLLM, packing, gradient checkpointing and the eval split when asked).
# Reads the variables of the same names that train_grpo.sh documents.
grpo_args() {
  args+=(
    --data.prompt_dataset "$PROMPT_DATA"
    --data.input_key input
    --data.label_key label
    --data.apply_chat_template
    --data.max_len "$MAX_LEN"
    --rollout.max_new_tokens "$MAX_NEW_TOKENS"
    --algo.advantage.estimator group_norm
    --rollout.n_samples_per_prompt "$N_SAMPLES"
    --algo.kl.use_loss
    --algo.kl.estimator "$KL_ESTIMATOR"
    --algo.kl.init_coef "$KL_COEF"
    --rollout.batch_size "$ROLLOUT_BATCH_SIZE"
    --rollout.micro_batch_size "$MICRO_ROLLOUT_BATCH_SIZE"
    --train.batch_size "$TRAIN_BATCH_SIZE"
    --train.micro_batch_size "$MICRO_TRAIN_BATCH_SIZE"
    --rollout.temperature "$TEMPERATURE"
    --rollout.top_p "$TOP_P"
    --actor.adam.lr "$ACTOR_LR"
    --train.num_episodes "$NUM_EPISODES"
    --train.max_epochs "$MAX_EPOCHS"
    --train.seed "$SEED"
    --ds.zero_stage "$ZERO_STAGE"
    --ds.param_dtype bf16
    --ds.attn_implementation "$ATTN_IMPL"
    --ckpt.output_dir "$OUTPUT_DIR/model"
    --ckpt.path "$OUTPUT_DIR/checkpoints"
    --ckpt.save_steps "$SAVE_STEPS"
    --ckpt.save_hf
    --logger.logging_steps 1
    --logger.tensorboard_dir "$OUTPUT_DIR/tensorboard"
  )
  bool "$ENFORCE_EAGER" && args+=(--vllm.enforce_eager)
  bool "$PACKING" && args+=(--ds.packing_samples)
  bool "$GRAD_CKPT" && args+=(--actor.gradient_checkpointing_enable)
  [ -n "$EVAL_PROMPT_DATA" ] && args+=(--eval.dataset "$EVAL_PROMPT_DATA" --eval.steps "$EVAL_STEPS")
  return 0
}

# micro_train_batch_size ACTOR_GPUS: DeepSpeed needs TRAIN_BATCH_SIZE = micro batch x gradient
# accumulation x actor GPUs. Unless MICRO_TRAIN_BATCH_SIZE is set, pick the largest of 4, 2, 1
# that divides; stop with the numbers when none does.
micro_train_batch_size() {
  local world="$1" m
  if [ -z "${MICRO_TRAIN_BATCH_SIZE:-}" ]; then
    for m in 4 2 1; do
      if [ $((TRAIN_BATCH_SIZE % (m * world))) -eq 0 ]; then
        MICRO_TRAIN_BATCH_SIZE=$m
        break
      fi
    done
    : "${MICRO_TRAIN_BATCH_SIZE:=1}"
  fi
  [ $((TRAIN_BATCH_SIZE % (MICRO_TRAIN_BATCH_SIZE * world))) -eq 0 ] \
    || die "TRAIN_BATCH_SIZE ($TRAIN_BATCH_SIZE) must be a multiple of MICRO_TRAIN_BATCH_SIZE ($MICRO_TRAIN_BATCH_SIZE) x actor GPUs ($world)"
}
