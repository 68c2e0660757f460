#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/train_grpo_multinode.sh [extra train_ppo_ray flags]
#
# Stage 6 on several nodes: GRPO on a multi-node Ray cluster with the reward servers on
# their own node(s). Layout (example: 3 nodes):
#   node A (Ray head) + node B (Ray worker): actor, reference and vLLM engines, colocated
#   node C (not in the training cluster): 8 reward-model replicas on Ray Serve, one URL
# Steps:
#   1. node A:  bash recipes/ray_cluster.sh head
#      node B:  RAY_HEAD_ADDR=<node A> bash recipes/ray_cluster.sh worker
#   2. node C:  export OPENRLHF_REWARD_API_KEY=<secret>
#               RAY_SERVE=1 SERVE_RAY_ADDRESS=local HOST=0.0.0.0 DETACH=1 bash recipes/serve_rm.sh
#   3. node A:  export OPENRLHF_REWARD_API_KEY=<secret>
#               NUM_NODES=2 REWARD_HOSTS=<node C> bash recipes/train_grpo_multinode.sh
# With RAY_SERVE=1 (the default) each reward host has one URL, Serve's proxy on RM_BASE_PORT,
# which routes around a dead replica; with RAY_SERVE=0 the list has RM_REPLICAS ports per host
# from RM_BASE_PORT (serve_rm.sh RAY_SERVE=0). The API key is attached; the script waits until
# every URL answers /health, then runs train_grpo.sh with NUM_NODES.
# recipes/slurm_grpo.sbatch does all of this under SLURM.
#
# Environment (all optional; every train_grpo.sh variable works too):
#   NUM_NODES        Ray nodes for training                     (default: 2)
#   REWARD_HOSTS     space-separated reward-server hosts; empty = REWARD_URLS or the URL file
#                    written by serve_rm.sh on a shared file system (default: empty)
#   RAY_SERVE        1 = one Ray Serve URL per reward host, 0 = one URL per replica (default: 1)
#   RM_REPLICAS      RAY_SERVE=0: servers per reward host       (default: 8)
#   RM_BASE_PORT     port of the first one                      (default: 5000)
#   WAIT_REWARD      1 = wait for every reward server's /health (default: 1)
#   READY_TIMEOUT    seconds to wait for each                   (default: 1800)
#   VLLM_GPU_MEM     vLLM memory share; the reward models are elsewhere (default: 0.7)
#   OPENRLHF_REWARD_API_KEY  the servers' key                  (default: none)
#   RUN_DIR, DRY_RUN see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${NUM_NODES:=2}"
: "${REWARD_HOSTS:=}"
: "${RAY_SERVE:=1}"
: "${RM_REPLICAS:=8}"
: "${RM_BASE_PORT:=5000}"
: "${WAIT_REWARD:=1}"
: "${READY_TIMEOUT:=1800}"
: "${VLLM_GPU_MEM:=0.7}"
API_KEY="${OPENRLHF_REWARD_API_KEY:-}"

if [ -n "$REWARD_HOSTS" ]; then
  urls=()
  per_host="$RM_REPLICAS"
  bool "$RAY_SERVE" && per_host=1 # Serve's proxy: one URL for all of a host's replicas
  for host in $REWARD_HOSTS; do
    for ((i = 0; i < per_host; i++)); do
      url="http://$host:$((RM_BASE_PORT + i))/get_reward"
      [ -n "$API_KEY" ] && url+="?api_key=$API_KEY"
      urls+=("$url")
    done
  done
  REWARD_URLS="$(IFS=,; printf '%s' "${urls[*]}")"
  if bool "$WAIT_REWARD"; then
    for url in "${urls[@]}"; do
      wait_http "${url%%/get_reward*}/health" "$READY_TIMEOUT" "" "" "$API_KEY"
    done
  fi
fi

export NUM_NODES VLLM_GPU_MEM
[ -n "${REWARD_URLS:-}" ] && export REWARD_URLS
exec bash "$RECIPES_DIR/train_grpo.sh" "$@"
