#!/usr/bin/env bash
# Usage: [VAR=value ...] bash recipes/serve_rm.sh [extra `openrlhf-reward serve` flags]
#
# Stage 5: serve rewards for GRPO, one replica per GPU, in one of two modes:
#   RAY_SERVE=1  one `openrlhf-reward serve --ray` deployment: the replicas sit behind Ray
#                Serve's proxy on BASE_PORT, one URL for all of them; a replica that dies is
#                replaced and requests go to the live ones (the default on several nodes,
#                see train_grpo_multinode.sh)
#   RAY_SERVE=0  one `openrlhf-reward serve` process per GPU (CUDA_VISIBLE_DEVICES pinned,
#                ports BASE_PORT, BASE_PORT+1, ...) and a comma-separated URL list, which
#                OpenRLHF uses round-robin with no failover
# Waits until every URL answers /health, then prints the URL(s) -- the value for OpenRLHF's
# `--reward.remote_url` -- and writes them to $OUTPUT_DIR/reward_urls.txt, where
# train_grpo.sh picks them up. Runs in the foreground until Ctrl-C (which stops all
# replicas), or with DETACH=1 returns once the replicas are up.
#
# Each replica batches the one-sample requests OpenRLHF sends (dynamic batching up to
# MAX_BATCH_SIZE, waiting at most MAX_WAIT_MS for a batch to fill).
#
# For trainers on other machines bind HOST=0.0.0.0 and set OPENRLHF_REWARD_API_KEY: the
# servers then require it, and the printed URLs carry it (`?api_key=`, the only way
# OpenRLHF's client can send one); reward_urls.txt is made readable by you only.
#
# Environment (all optional):
#   RM_MODEL        reward model checkpoint (train_rm_bt.sh output); empty for backends
#                   without a model, e.g. BACKEND=rules       (default: $RUN_DIR/rm_bt/model)
#   BACKEND         bt, per-requirement, classifier, judge, rules, ensemble (default: bt)
#   RM_CONFIG       YAML/JSON reward config (backend, backend_args, server); flags override it
#                   (default: empty)
#   BACKEND_ARGS    space-separated KEY=VALUE backend options, e.g. "normalize=true
#                   max_length=4096"                            (default: empty)
#   GPUS            one replica per entry (a CUDA_VISIBLE_DEVICES value such as 0 or 0,1;
#                   "cpu" = no GPU)                             (default: 0 1 2 3 4 5 6 7)
#   RAY_SERVE       1 = Ray Serve deployment, 0 = one process per GPU (default: 0)
#   SERVE_RAY_ADDRESS  RAY_SERVE=1: the Ray cluster to deploy on; auto = the running one, else
#                   a new local one; local = always a new one   (default: auto)
#   AUTOSCALE       RAY_SERVE=1: MIN:MAX replicas on load instead of one per GPUS entry
#                                                               (default: empty)
#   REPLICA_CPUS    RAY_SERVE=1: CPUs per replica               (default: 1)
#   HOST            bind address                               (default: 127.0.0.1)
#   PUBLIC_HOST     host name in the printed URLs              (default: HOST, or this machine's
#                   name when HOST is 0.0.0.0)
#   BASE_PORT       port of the first replica                  (default: 5000)
#   MAX_BATCH_SIZE  samples per forward pass                   (default: 64)
#   MAX_WAIT_MS     batching window                            (default: 5)
#   READY_TIMEOUT   seconds to wait for each replica           (default: 900)
#   DETACH          1 = leave the replicas running and return  (default: 0)
#   OUTPUT_DIR      logs, reward_urls.txt, pids                (default: $RUN_DIR/rm_serve)
#   OPENRLHF_REWARD_API_KEY  bearer token the servers require (default: none)
#   RUN_DIR, DRY_RUN  see recipes/common.sh
set -euo pipefail
# shellcheck source=recipes/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
recipe_help "$@"

: "${RM_MODEL=$RUN_DIR/rm_bt/model}" # '=' not ':=': RM_MODEL="" means no model
: "${BACKEND:=bt}"
: "${RM_CONFIG:=}"
: "${BACKEND_ARGS:=}"
: "${GPUS:=0 1 2 3 4 5 6 7}"
: "${RAY_SERVE:=0}"
: "${SERVE_RAY_ADDRESS:=auto}"
: "${AUTOSCALE:=}"
: "${REPLICA_CPUS:=1}"
: "${HOST:=127.0.0.1}"
if [ -z "${PUBLIC_HOST:-}" ]; then
  case "$HOST" in
    0.0.0.0 | ::) PUBLIC_HOST="$(hostname -f 2>/dev/null || hostname)" ;;
    *) PUBLIC_HOST="$HOST" ;;
  esac
fi
: "${BASE_PORT:=5000}"
: "${MAX_BATCH_SIZE:=64}"
: "${MAX_WAIT_MS:=5}"
: "${READY_TIMEOUT:=900}"
: "${DETACH:=0}"
: "${OUTPUT_DIR:=$RUN_DIR/rm_serve}"
API_KEY="${OPENRLHF_REWARD_API_KEY:-}"

RM_MODEL="$(abspath "$RM_MODEL")"
RM_CONFIG="$(abspath "$RM_CONFIG")"
OUTPUT_DIR="$(outdir "$OUTPUT_DIR")"
case "$HOST" in
  0.0.0.0 | ::) CHECK_HOST=127.0.0.1 ;;
  *) CHECK_HOST="$HOST" ;;
esac

recipe_log_to "$OUTPUT_DIR" serve_rm
need_cmd openrlhf-reward
[ -n "$RM_MODEL" ] && need_file "$RM_MODEL" "reward model (run recipes/train_rm_bt.sh first)"
[ -n "$RM_CONFIG" ] && need_file "$RM_CONFIG" "reward config"

serve_args=(--backend "$BACKEND")
[ -n "$RM_MODEL" ] && serve_args+=(--model "$RM_MODEL")
[ -n "$RM_CONFIG" ] && serve_args+=(--config "$RM_CONFIG")
for kv in $BACKEND_ARGS; do
  serve_args+=(--backend-arg "$kv")
done
serve_args+=(--host "$HOST" --max-batch-size "$MAX_BATCH_SIZE" --max-wait-ms "$MAX_WAIT_MS")

if ! bool "$DETACH"; then
  trap stop_bg EXIT
  trap 'exit 130' INT TERM
fi
prefix=()
bool "$DETACH" && prefix=(nohup)

urls=()
pids=()
ports=()
add_url() {
  local url="http://$PUBLIC_HOST:$1/get_reward"
  [ -n "$API_KEY" ] && url+="?api_key=$API_KEY"
  urls+=("$url")
  ports+=("$1")
  pids+=("$BG_PID")
}
read -r -a gpu_list <<<"$GPUS"
[ "${#gpu_list[@]}" -ge 1 ] || die "GPUS is empty: nothing to serve"
if bool "$RAY_SERVE"; then
  gpus_each=1
  [ "${gpu_list[0]}" = cpu ] && gpus_each=0
  ray_args=(--ray --ray-address "$SERVE_RAY_ADDRESS" --num-cpus "$REPLICA_CPUS" --num-gpus "$gpus_each")
  if [ -n "$AUTOSCALE" ]; then
    ray_args+=(--autoscale "$AUTOSCALE")
  else
    ray_args+=(--num-replicas "${#gpu_list[@]}")
  fi
  run_bg "$OUTPUT_DIR/logs/server-$BASE_PORT.log" "${prefix[@]}" \
    openrlhf-reward serve "${serve_args[@]}" "${ray_args[@]}" --port "$BASE_PORT" "$@"
  add_url "$BASE_PORT"
else
  port="$BASE_PORT"
  for gpu in "${gpu_list[@]}"; do
    if [ "$gpu" = cpu ]; then visible=""; else visible="$gpu"; fi
    run_bg "$OUTPUT_DIR/logs/server-$port.log" "${prefix[@]}" env CUDA_VISIBLE_DEVICES="$visible" \
      openrlhf-reward serve "${serve_args[@]}" --port "$port" "$@"
    add_url "$port"
    port=$((port + 1))
  done
fi

for i in "${!ports[@]}"; do
  wait_http "http://$CHECK_HOST:${ports[$i]}/health" "$READY_TIMEOUT" "${pids[$i]}" \
    "$OUTPUT_DIR/logs/server-${ports[$i]}.log" "$API_KEY"
done

url_list="$(IFS=,; printf '%s' "${urls[*]}")"
if ! is_dry_run; then
  (umask 077 && printf '%s\n' "$url_list" >"$OUTPUT_DIR/reward_urls.txt")
  printf '%s\n' "${pids[@]}" >"$OUTPUT_DIR/pids"
fi
is_dry_run || log "${#urls[@]} reward server(s) ready; URL list in $OUTPUT_DIR/reward_urls.txt"
echo "REWARD_URLS=$(mask_keys "$url_list")"

is_dry_run && exit 0
if bool "$DETACH"; then
  log "detached; stop them with: kill \$(cat $OUTPUT_DIR/pids)"
  exit 0
fi
log "serving; Ctrl-C stops all replicas"
while :; do
  for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "reward server pid $pid exited (logs: $OUTPUT_DIR/logs); stopping the others"
  done
  sleep 5 &
  wait $! || true # an interruptible sleep: Ctrl-C/SIGTERM run the traps at once
done
