#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/train_grpo.sh [extra train_ppo_ray flags]
#
# Stage 6: GRPO with OpenRLHF 0.11.2 (`ray job submit ... -- python3 -m
# openrlhf.cli.train_ppo_ray`), rewards from the reward servers started by serve_rm.sh
# (`--reward.remote_url`, several URLs comma-separated, used round-robin). Each prompt row's
# "label" (its requirements) reaches the server through `--data.label_key label`.
# GRPO = group-normalised advantages (`--algo.advantage.estimator group_norm`) over
# N_SAMPLES answers per prompt, KL to the reference model as a loss (k3), no critic.
# Defaults are the paper's: group size 5, rollout batch 384 prompts, global train batch 96,
# temperature 1.0, actor learning rate 1e-6; one 8-GPU node with everything colocated.
#
# Needs a running Ray cluster (`ray start --head`, or recipes/ray_cluster.sh for several
# nodes) and the reward servers (recipes/serve_rm.sh; it writes the URL list that this
# script reads). Several nodes: recipes/train_grpo_multinode.sh; SLURM:
# recipes/slurm_grpo.sbatch.
#
# Environment (all optional):
#   ACTOR_MODEL        policy to train (hub id or path)      (default: Qwen/Qwen2.5-7B-Instruct)
#   PROMPT_DATA        GRPO prompts JSONL (build_pairs.sh)   (default: $RUN_DIR/wrl_data/grpo.jsonl)
#   EVAL_PROMPT_DATA   held-out prompts JSONL; empty = no evaluation
#                      (default: $RUN_DIR/wrl_data/grpo_eval.jsonl if it exists)
#   OUTPUT_DIR         final model, checkpoints, logs        (default: $RUN_DIR/grpo)
#   REWARD_URLS        comma-separated reward URLs           (default: read from REWARD_URLS_FILE,
#                      else http://127.0.0.1:5000/get_reward)
#   REWARD_URLS_FILE   file written by serve_rm.sh            (default: $RUN_DIR/rm_serve/reward_urls.txt)
#   REWARD_CONFIG      instead of servers: a reward config (YAML/JSON, see `openrlhf-reward serve
#                      --help`) scored in-process through a reward_func file (default: empty)
#   RAY_ADDRESS        Ray dashboard address for job submission (default: http://127.0.0.1:8265)
#   RAY_WORKING_DIR    optional runtime-env working_dir uploaded with the job (default: empty)
#   NUM_NODES          nodes for actor/ref/vLLM              (default: 1)
#   GPUS_PER_NODE      GPUs per node                         (default: 8)
#   COLOCATE           all       = actor, reference and vLLM engines share every GPU
#                                  (vLLM and DeepSpeed sleep in turn)
#                      actor_ref = actor+reference on ACTOR_GPUS_PER_NODE GPUs, vLLM engines on
#                                  the others                 (default: all)
#   ACTOR_GPUS_PER_NODE GPUs per node for actor and reference (default: GPUS_PER_NODE for all,
#                      half of it for actor_ref)
#   VLLM_NUM_ENGINES   vLLM rollout engines                   (default: fills the vLLM GPUs)
#   VLLM_TP            tensor parallel size per engine        (default: 1)
#   VLLM_GPU_MEM       vLLM gpu_memory_utilization            (default: 0.5 colocated -- leaves room
#                      for reward servers on the same GPUs -- else 0.9)
#   VLLM_SLEEP         1 = sleep vLLM/DeepSpeed between phases (COLOCATE=all only) (default: 1)
#   ENFORCE_EAGER      1 = no CUDA graphs in vLLM              (default: 0)
#   N_SAMPLES          answers per prompt (group size)        (default: 5)
#   ROLLOUT_BATCH_SIZE prompts per rollout                    (default: 384)
#   TRAIN_BATCH_SIZE   global train batch (samples)           (default: 96)
#   MICRO_TRAIN_BATCH_SIZE  samples per GPU per step; TRAIN_BATCH_SIZE must be a multiple of it
#                      times the actor GPUs               (default: the largest of 4, 2, 1 that fits)
#   MICRO_ROLLOUT_BATCH_SIZE samples per GPU per forward      (default: 8)
#   TEMPERATURE, TOP_P sampling                               (default: 1.0, 1.0)
#   ACTOR_LR           actor learning rate                    (default: 1e-6)
#   KL_COEF            KL loss coefficient                    (default: 1e-3)
#   KL_ESTIMATOR       k1, k2 or k3                           (default: k3)
#   MAX_LEN            max prompt+answer tokens               (default: 4096)
#   MAX_NEW_TOKENS     max answer tokens                      (default: 2048)
#   NUM_EPISODES, MAX_EPOCHS                                  (default: 1, 1)
#   ZERO_STAGE         DeepSpeed ZeRO stage                   (default: 3)
#   ATTN_IMPL          attention implementation               (default: flash_attention_2)
#   PACKING, GRAD_CKPT 1 = sample packing / gradient checkpointing (default: 1, 1)
#   SAVE_STEPS         checkpoint every N steps; -1 = final only (default: 20)
#   EVAL_STEPS         evaluate every N steps (with EVAL_PROMPT_DATA) (default: 10)
#   USE_WANDB          1 = log to Weights & Biases            (default: 0)
#   SEED               random seed                            (default: 42)
#   RUN_DIR, DRY_RUN   see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${ACTOR_MODEL:=Qwen/Qwen2.5-7B-Instruct}"
: "${PROMPT_DATA:=$RUN_DIR/wrl_data/grpo.jsonl}"
if [ -z "${EVAL_PROMPT_DATA+x}" ]; then
  EVAL_PROMPT_DATA=""
  [ -e "$RUN_DIR/wrl_data/grpo_eval.jsonl" ] && EVAL_PROMPT_DATA="$RUN_DIR/wrl_data/grpo_eval.jsonl"
fi
: "${OUTPUT_DIR:=$RUN_DIR/grpo}"
: "${REWARD_URLS_FILE:=$RUN_DIR/rm_serve/reward_urls.txt}"
if [ -z "${REWARD_URLS:-}" ]; then
  if [ -s "$REWARD_URLS_FILE" ]; then
    REWARD_URLS="$(tr -d '[:space:]' <"$REWARD_URLS_FILE")"
  else
    REWARD_URLS="http://127.0.0.1:5000/get_reward"
  fi
fi
: "${REWARD_CONFIG:=}"
: "${RAY_ADDRESS:=http://127.0.0.1:8265}"
: "${RAY_WORKING_DIR:=}"
: "${NUM_NODES:=1}"
: "${GPUS_PER_NODE:=8}"
: "${COLOCATE:=all}"
case "$COLOCATE" in
  all) : "${ACTOR_GPUS_PER_NODE:=$GPUS_PER_NODE}" ;;
  actor_ref) : "${ACTOR_GPUS_PER_NODE:=$((GPUS_PER_NODE / 2))}" ;;
  *) die "COLOCATE must be 'all' or 'actor_ref', got '$COLOCATE'" ;;
esac
: "${VLLM_TP:=1}"
if [ "$COLOCATE" = all ]; then
  : "${VLLM_NUM_ENGINES:=$((NUM_NODES * GPUS_PER_NODE / VLLM_TP))}"
  : "${VLLM_GPU_MEM:=0.5}"
else
  : "${VLLM_NUM_ENGINES:=$((NUM_NODES * (GPUS_PER_NODE - ACTOR_GPUS_PER_NODE) / VLLM_TP))}"
  : "${VLLM_GPU_MEM:=0.9}"
fi
: "${VLLM_SLEEP:=1}"
: "${ENFORCE_EAGER:=0}"
: "${N_SAMPLES:=5}"
: "${ROLLOUT_BATCH_SIZE:=384}"
: "${TRAIN_BATCH_SIZE:=96}"
micro_train_batch_size "$((NUM_NODES * ACTOR_GPUS_PER_NODE))"
: "${MICRO_ROLLOUT_BATCH_SIZE:=8}"
: "${TEMPERATURE:=1.0}"
: "${TOP_P:=1.0}"
: "${ACTOR_LR:=1e-6}"
: "${MAX_LEN:=4096}"
: "${MAX_NEW_TOKENS:=2048}"
grpo_defaults

ACTOR_MODEL="$(abspath "$ACTOR_MODEL")"
PROMPT_DATA="$(abspath "$PROMPT_DATA")"
EVAL_PROMPT_DATA="$(abspath "$EVAL_PROMPT_DATA")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"
[ "$VLLM_NUM_ENGINES" -ge 1 ] || die "VLLM_NUM_ENGINES must be >= 1 (got $VLLM_NUM_ENGINES)"

recipe_log_to "$OUTPUT_DIR" train_grpo
need_cmd ray
need_file "$PROMPT_DATA" "GRPO prompts (run recipes/build_pairs.sh first)"

# Reward: a reward_func file bound to REWARD_CONFIG, or the servers' URLs.
if [ -n "$REWARD_CONFIG" ]; then
  REWARD_CONFIG="$(abspath "$REWARD_CONFIG")"
  need_file "$REWARD_CONFIG" "reward config"
  need_cmd openrlhf-reward
  is_dry_run || mkdir -p "$OUTPUT_DIR"
  run openrlhf-reward reward-func-path --config "$REWARD_CONFIG" --output "$OUTPUT_DIR/reward_func.py"
  REWARD_REMOTE="$OUTPUT_DIR/reward_func.py"
else
  REWARD_REMOTE="$REWARD_URLS"
  log "reward servers: $(mask_keys "$REWARD_REMOTE")"
fi

runtime_env='{"env_vars": {"TOKENIZERS_PARALLELISM": "false"}'
[ -n "$RAY_WORKING_DIR" ] && runtime_env+=", \"working_dir\": \"$(abspath "$RAY_WORKING_DIR")\""
runtime_env+='}'

args=(
  --actor.model_name_or_path "$ACTOR_MODEL"
  --actor.num_nodes "$NUM_NODES"
  --actor.num_gpus_per_node "$ACTOR_GPUS_PER_NODE"
  --ref.num_nodes "$NUM_NODES"
  --ref.num_gpus_per_node "$ACTOR_GPUS_PER_NODE"
  --vllm.num_engines "$VLLM_NUM_ENGINES"
  --vllm.tensor_parallel_size "$VLLM_TP"
  --vllm.gpu_memory_utilization "$VLLM_GPU_MEM"
  --vllm.sync_backend nccl
  --reward.remote_url "$REWARD_REMOTE"
)
grpo_args
if [ "$COLOCATE" = all ]; then
  args+=(--train.colocate_all)
  bool "$VLLM_SLEEP" && args+=(--vllm.enable_sleep --ds.enable_sleep)
else
  args+=(--train.colocate_actor_ref)
fi
bool "$USE_WANDB" && args+=(--logger.wandb.key True --logger.wandb.project wrl_grpo)

run ray job submit --address "$RAY_ADDRESS" --runtime-env-json "$runtime_env" \
  -- python3 -m openrlhf.cli.train_ppo_ray "${args[@]}" "$@"
is_dry_run || log "policy: $OUTPUT_DIR/model"
