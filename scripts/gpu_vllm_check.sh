#!/usr/bin/env bash
# The GPU checks of issue 19, for any machine with an NVIDIA GPU and an LLMasOS checkout set
# up (`make setup`). NOT RUN YET: no GPU was available where this was written.
#
# What it measures (JSON and a summary under $OUT, default ./gpu-check):
#   1. vLLM's own OpenAI server on the GPU, on the same model as LLMasOS's, at c=1, 8 and 64
#      (`llmasos bench serve`, random 128-token prompts, 128 output tokens, --ignore-eos);
#   2. the same vLLM server behind LLMasOS (`llmasos remote add`, the kernel's fair share and
#      a concurrency limit in front of it) at the same concurrencies: the cost of our front;
#   3. fairness under a flood through LLMasOS (`bench serve --scenario fairness`).
#
# vLLM goes into a virtual environment of its own ($LLMASOS_HOME/peers/vllm-gpu-$VLLM_VERSION,
# PyPI's CUDA wheel; it pins its own torch). The model is LLMasOS's MODEL de-quantized to a
# Hugging Face directory by the toolchain (as `bench serve --peer vllm` does on CPU), so
# both sides serve the same weights. Everything listens on 127.0.0.1 only.
#
#   MODEL=smollm2:135m VLLM_VERSION=0.11.0 scripts/gpu_vllm_check.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
MODEL="${MODEL:-smollm2:135m}"
VLLM_VERSION="${VLLM_VERSION:-0.11.0}"
OUT="$(realpath -m "${OUT:-gpu-check}")"
WORK="$(mktemp -d /tmp/llmasos-gpu-XXXXXX)"
export LLMASOS_HOME="${LLMASOS_HOME:-$HOME/.llmasos}"
VENV="$LLMASOS_HOME/peers/vllm-gpu-$VLLM_VERSION"
VLLM_PORT="${VLLM_PORT:-18000}"
API_PORT="${API_PORT:-18001}"
BENCH=(--workload random --input-len 128 --output-len 128 --ignore-eos)

command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1 \
    || { echo "no NVIDIA GPU here (nvidia-smi finds none): run this on a GPU machine" >&2; exit 1; }
mkdir -p "$OUT"
nvidia-smi -L > "$OUT/gpu.txt"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT

wait_http() {  # URL SECONDS
    local deadline=$((SECONDS + $2))
    until curl -sf "$1" >/dev/null; do
        [ $SECONDS -lt $deadline ] || { echo "nothing answered at $1 after $2 s" >&2; exit 1; }
        sleep 2
    done
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "installing vllm==$VLLM_VERSION into $VENV (once) ..."
    "$PY" -m venv "$VENV"
    "$VENV/bin/pip" install -q "vllm==$VLLM_VERSION"
fi

echo "de-quantizing $MODEL to a Hugging Face directory (once, cached) ..."
MODEL_DIR="$("$PY" - "$MODEL" <<'EOF'
import sys
from pathlib import Path

from llmasos.config import Settings
from llmasos.models.store import ModelStore
from llmasos.toolchain.training import hf_directory

settings = Settings()
store = ModelStore.open(settings)
manifest = store.manifest(sys.argv[1])
path = hf_directory(store, sys.argv[1], cache_root=settings.home / "cache" / "transformers")
if manifest.chat_template:
    (Path(path) / "llmasos-chat-template.jinja").write_text(manifest.chat_template)
print(path)
EOF
)"
NAME="$("$PY" -c "from llmasos.config import Settings; from llmasos.models.store import ModelStore; print(ModelStore.open(Settings()).manifest('$MODEL').name)")"
TEMPLATE=()
[ -f "$MODEL_DIR/llmasos-chat-template.jinja" ] && TEMPLATE=(--chat-template "$MODEL_DIR/llmasos-chat-template.jinja")

echo "starting vLLM on the GPU (port $VLLM_PORT) ..."
setsid "$VENV/bin/python" -m vllm.entrypoints.openai.api_server --host 127.0.0.1 \
    --port "$VLLM_PORT" --model "$MODEL_DIR" --served-model-name "$NAME" \
    --max-num-seqs 64 --max-model-len 4096 "${TEMPLATE[@]}" > "$OUT/vllm.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$VLLM_PORT/health" 900

for c in 1 8 64; do
    "$PY" -m llmasos bench serve --base-url "http://127.0.0.1:$VLLM_PORT" --model "$NAME" \
        --concurrency "$c" --num-prompts $((c * 4)) "${BENCH[@]}" --json "$OUT/vllm-c$c.json"
done

echo "starting LLMasOS in front of it (port $API_PORT, temporary home) ..."
export LLMASOS_HOME="$WORK/home"
export LLMASOS_AUTO_TUNE=false   # no first-start tune of the GGUF model during the measurements
"$PY" -m llmasos remote add vllm-gpu "http://127.0.0.1:$VLLM_PORT/v1" --model "$NAME" \
    --max-concurrency 64
setsid "$PY" -m llmasos serve --host 127.0.0.1 --port "$API_PORT" > "$OUT/llmasos.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$API_PORT/health" 300

for c in 1 8 64; do
    "$PY" -m llmasos bench serve --base-url "http://127.0.0.1:$API_PORT" --model vllm-gpu \
        --concurrency "$c" --num-prompts $((c * 4)) "${BENCH[@]}" --json "$OUT/front-c$c.json"
done
"$PY" -m llmasos bench serve --base-url "http://127.0.0.1:$API_PORT" --model vllm-gpu \
    --scenario fairness --json "$OUT/front-fairness.json"

"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.md"
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])
print("| concurrency | vLLM alone tok/s | through LLMasOS tok/s | ratio |")
print("|---|---|---|---|")
for c in (1, 8, 64):
    def rate(name: str) -> float:
        data = json.loads((out / f"{name}-c{c}.json").read_text())
        return float(data["runs"][0]["output_throughput"])
    alone, front = rate("vllm"), rate("front")
    print(f"| {c} | {alone:.1f} | {front:.1f} | {front / alone if alone else 0:.2f} |")
EOF
echo "results in $OUT"
