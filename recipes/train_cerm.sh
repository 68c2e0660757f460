#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/train_cerm.sh [extra train_ppo_ray flags]
#
# CE-RM training (a pointwise generative reward model with query-based criteria) with
# OpenRLHF 0.11.2 GRPO and the two-stage rollout of openrlhf_reward/cerm/agent.py, given to
# OpenRLHF as `--train.agent_func_path` (no reward server: the reward comes from the agent).
# Each prompt row is one side (chosen or rejected) of a preference pair; every sample of it
# writes criteria from the query alone, then evaluates that side's response under them; the
# other side is evaluated under the same criteria in separate, untrained generations, and the
# sample is rewarded when its score orders the pair correctly (malformed output: penalty).
# See docs/cerm.md for the design and where it departs from the paper.
#
# Data: PROMPT_DATA rows from `openrlhf-reward build-cerm`; set PAIRS to build them first
# from preference pairs (JSONL or Parquet with chosen/rejected, or a datasets name).
# Needs a running Ray cluster (`ray start --head`, or recipes/ray_cluster.sh).
#
# Environment (all optional):
#   ACTOR_MODEL        model to train (hub id or path)       (default: Qwen/Qwen3-4B-Instruct-2507,
#                      CE-RM-4B's base)
#   PAIRS              preference pairs to build PROMPT_DATA from (default: empty = use PROMPT_DATA)
#   PROMPT_DATA        build-cerm rows JSONL                  (default: $RUN_DIR/cerm_data/rows.jsonl)
#   EVAL_PROMPT_DATA   held-out build-cerm rows; empty = no evaluation (default: empty)
#   OUTPUT_DIR         final model, checkpoints, logs         (default: $RUN_DIR/cerm)
#   AGENT_FILE         the agent file; every vLLM actor loads it by this path, so it must
#                      exist there on every node, with openrlhf_reward importable (installed,
#                      or this checkout)         (default: openrlhf_reward/cerm/agent.py of this checkout)
#   COUNTERPARTS       evaluations of the other side per sample (reward only)   (default: 2)
#   TIE_REWARD         reward share of a tied counterpart       (default: 0.0)
#   MALFORMED_REWARD   reward of criteria without tags or an evaluation without a final
#                      boxed score                             (default: -1.0)
#   NO_COUNTERPART_REWARD reward when no counterpart parsed     (default: 0.0)
#   CRITERIA_MAX_TOKENS, EVAL_MAX_TOKENS  token caps of the two turns (default: 2048, 4096)
#   MAX_RESPONSE_CHARS responses are cut in the middle to this length (default: 16000)
#   EVAL_TEMPLATE_FILE file replacing the evaluation turn's text (needs {response}) (default: empty)
#   RAY_ADDRESS        Ray dashboard address for job submission (default: http://127.0.0.1:8265)
#   RAY_WORKING_DIR    optional runtime-env working_dir uploaded with the job (default: empty)
#   NUM_NODES          nodes for actor/ref/vLLM               (default: 1)
#   GPUS_PER_NODE      GPUs per node                          (default: 8)
#   VLLM_NUM_ENGINES   vLLM rollout engines (actor, reference and vLLM share every GPU)
#                      (default: NUM_NODES x GPUS_PER_NODE / VLLM_TP)
#   VLLM_TP            tensor parallel size per engine        (default: 1)
#   VLLM_GPU_MEM       vLLM gpu_memory_utilization            (default: 0.6)
#   ENFORCE_EAGER      1 = no CUDA graphs in vLLM              (default: 0)
#   N_SAMPLES          samples per row (group size; 2 rows per pair) (default: 8)
#   ROLLOUT_BATCH_SIZE rows per rollout                        (default: 32 = 256 samples)
#   TRAIN_BATCH_SIZE   global train batch (samples)            (default: 64: 4 mini-batches per step)
#   MICRO_TRAIN_BATCH_SIZE  samples per GPU per step           (default: the largest of 4, 2, 1 that fits)
#   MICRO_ROLLOUT_BATCH_SIZE samples per GPU per forward       (default: 8)
#   TEMPERATURE, TOP_P sampling                                (default: 1.0, 1.0)
#   ACTOR_LR           learning rate                           (default: 2e-6)
#   KL_COEF            KL loss coefficient                     (default: 1e-3)
#   KL_ESTIMATOR       k1, k2 or k3                            (default: k3)
#   MAX_LEN            max tokens of a whole trajectory (query, criteria, response, evaluation)
#                                                              (default: 12288)
#   MAX_NEW_TOKENS     max tokens of the first turn before the agent's caps (default: 4096)
#   NUM_EPISODES, MAX_EPOCHS                                   (default: 1, 1)
#   ZERO_STAGE         DeepSpeed ZeRO stage                    (default: 3)
#   ATTN_IMPL          attention implementation                (default: flash_attention_2)
#   PACKING, GRAD_CKPT 1 = sample packing / gradient checkpointing (default: 1, 1)
#   SAVE_STEPS         checkpoint every N steps; -1 = final only (default: 20)
#   EVAL_STEPS         evaluate every N steps (with EVAL_PROMPT_DATA) (default: 10)
#   USE_WANDB          1 = log to Weights & Biases             (default: 0)
#   SEED               random seed                             (default: 42)
#   RUN_DIR, DRY_RUN   see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${ACTOR_MODEL:=Qwen/Qwen3-4B-Instruct-2507}"
: "${PAIRS:=}"
: "${PROMPT_DATA:=$RUN_DIR/cerm_data/rows.jsonl}"
: "${EVAL_PROMPT_DATA:=}"
: "${OUTPUT_DIR:=$RUN_DIR/cerm}"
: "${AGENT_FILE:=$RECIPES_DIR/../openrlhf_reward/cerm/agent.py}"
: "${COUNTERPARTS:=2}"
: "${TIE_REWARD:=0.0}"
: "${MALFORMED_REWARD:=-1.0}"
: "${NO_COUNTERPART_REWARD:=0.0}"
: "${CRITERIA_MAX_TOKENS:=2048}"
: "${EVAL_MAX_TOKENS:=4096}"
: "${MAX_RESPONSE_CHARS:=16000}"
: "${EVAL_TEMPLATE_FILE:=}"
: "${RAY_ADDRESS:=http://127.0.0.1:8265}"
: "${RAY_WORKING_DIR:=}"
: "${NUM_NODES:=1}"
: "${GPUS_PER_NODE:=8}"
: "${VLLM_TP:=1}"
: "${VLLM_NUM_ENGINES:=$((NUM_NODES * GPUS_PER_NODE / VLLM_TP))}"
: "${VLLM_GPU_MEM:=0.6}"
: "${ENFORCE_EAGER:=0}"
: "${N_SAMPLES:=8}"
: "${ROLLOUT_BATCH_SIZE:=32}"
: "${TRAIN_BATCH_SIZE:=64}"
micro_train_batch_size "$((NUM_NODES * GPUS_PER_NODE))"
: "${MICRO_ROLLOUT_BATCH_SIZE:=8}"
: "${TEMPERATURE:=1.0}"
: "${TOP_P:=1.0}"
: "${ACTOR_LR:=2e-6}"
: "${MAX_LEN:=12288}"
: "${MAX_NEW_TOKENS:=4096}"
grpo_defaults

[ "$N_SAMPLES" -ge 2 ] || die "N_SAMPLES must be >= 2 (group-normalised advantages need a group), got $N_SAMPLES"
[ "$COUNTERPARTS" -ge 1 ] || die "COUNTERPARTS must be >= 1, got $COUNTERPARTS"
[ "$VLLM_NUM_ENGINES" -ge 1 ] || die "VLLM_NUM_ENGINES must be >= 1 (got $VLLM_NUM_ENGINES)"

ACTOR_MODEL="$(abspath "$ACTOR_MODEL")"
PROMPT_DATA="$(abspath "$PROMPT_DATA")"
EVAL_PROMPT_DATA="$(abspath "$EVAL_PROMPT_DATA")"
AGENT_FILE="$(realpath -m -- "$AGENT_FILE")"
EVAL_TEMPLATE_FILE="$(abspath "$EVAL_TEMPLATE_FILE")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"

recipe_log_to "$OUTPUT_DIR" train_cerm
need_cmd ray
need_file "$AGENT_FILE" "CE-RM agent file"
[ -n "$EVAL_TEMPLATE_FILE" ] && need_file "$EVAL_TEMPLATE_FILE" "evaluation template"

if [ -n "$PAIRS" ]; then
  need_cmd openrlhf-reward
  is_dry_run || mkdir -p "$(dirname "$PROMPT_DATA")"
  run openrlhf-reward build-cerm --input "$(abspath "$PAIRS")" --output "$PROMPT_DATA"
fi
need_file "$PROMPT_DATA" "CE-RM rows (openrlhf-reward build-cerm, or set PAIRS)"

# The agent is built by OpenRLHF without arguments in every vLLM actor: its settings travel
# as CERM_* environment variables of the Ray job.
RAY_WORKING_DIR="$(abspath "$RAY_WORKING_DIR")"
env_json="$(python3 - "$COUNTERPARTS" "$TIE_REWARD" "$MALFORMED_REWARD" "$NO_COUNTERPART_REWARD" \
  "$CRITERIA_MAX_TOKENS" "$EVAL_MAX_TOKENS" "$MAX_RESPONSE_CHARS" "$EVAL_TEMPLATE_FILE" "$RAY_WORKING_DIR" <<'PY'
import json, sys
names = ["COUNTERPARTS", "TIE_REWARD", "MALFORMED_REWARD", "NO_COUNTERPART_REWARD",
         "CRITERIA_MAX_TOKENS", "EVAL_MAX_TOKENS", "MAX_RESPONSE_CHARS", "EVAL_TEMPLATE_FILE"]
env = {"TOKENIZERS_PARALLELISM": "false"}
env.update({"CERM_" + n: v for n, v in zip(names, sys.argv[1:9]) if v != ""})
out = {"env_vars": env}
if sys.argv[9]:
    out["working_dir"] = sys.argv[9]
print(json.dumps(out))
PY
)"

args=(
  --actor.model_name_or_path "$ACTOR_MODEL"
  --actor.num_nodes "$NUM_NODES"
  --actor.num_gpus_per_node "$GPUS_PER_NODE"
  --ref.num_nodes "$NUM_NODES"
  --ref.num_gpus_per_node "$GPUS_PER_NODE"
  --vllm.num_engines "$VLLM_NUM_ENGINES"
  --vllm.tensor_parallel_size "$VLLM_TP"
  --vllm.gpu_memory_utilization "$VLLM_GPU_MEM"
  --vllm.sync_backend nccl
  --vllm.enable_prefix_caching
  --vllm.enable_sleep
  --ds.enable_sleep
  --train.colocate_all
  --train.agent_func_path "$AGENT_FILE"
)
grpo_args
bool "$USE_WANDB" && args+=(--logger.wandb.key True --logger.wandb.project cerm)

run ray job submit --address "$RAY_ADDRESS" --runtime-env-json "$env_json" \
  -- python3 -m openrlhf.cli.train_ppo_ray "${args[@]}" "$@"
is_dry_run || log "reward model: $OUTPUT_DIR/model"
