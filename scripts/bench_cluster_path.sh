#!/usr/bin/env bash
# The single-machine cost of the cluster path (issue 19): `llmasos bench serve` at c=8 against
# `llmasos serve` embedded, then against `llmasos serve --cluster-address` with one replica of
# the same model on a local Ray head (2 logical CPUs, the replica on 2 threads like the
# embedded kernel). Run it on a quiet machine: it starts and stops its own Ray head with
# `llmasos cluster stop`, which is `ray stop` and ends EVERY Ray process of the machine.
#   OUT=/tmp/cluster-bench scripts/bench_cluster_path.sh
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-/tmp/cluster-bench}"
RAY_PORT="${RAY_PORT:-6390}"   # below Ray's worker port range (10002-19999)
export LLMASOS_HOME="${LLMASOS_HOME:-$(mktemp -d /tmp/llmasos-bench-XXXXXX)}"
export LLMASOS_AUTO_TUNE=false   # no first-start tune in the background of the measured server
mkdir -p "$OUT"
BENCH=(--concurrency 8 --num-prompts 16 --input-len 128 --output-len 128 --ignore-eos)
health() { for _ in $(seq 180); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 1; done; return 1; }
warm() {
    curl -sf -m 300 "http://127.0.0.1:$1/v1/chat/completions" -H 'content-type: application/json' \
        -d '{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"max_tokens":4}' >/dev/null
}
run() {  # NAME PORT
    echo "load before $1: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
    "$PY" -m llmasos bench serve --base-url "http://127.0.0.1:$2" "${BENCH[@]}" --json "$OUT/$1.json"
    echo "load after $1: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
}

"$PY" -m llmasos serve --port 18101 --threads 2 > "$OUT/embedded.log" 2>&1 &
server=$!
health 18101 && warm 18101 && run embedded 18101
kill "$server"; wait "$server" 2>/dev/null

ADDR="$("$PY" -c 'from llmasos.distributed.cluster import local_ip; print(local_ip())'):$RAY_PORT"
"$PY" -m llmasos cluster start --head --port "$RAY_PORT" --num-cpus 2 > "$OUT/ray.log" 2>&1
trap '"$PY" -m llmasos cluster stop >/dev/null 2>&1' EXIT
"$PY" -m llmasos deploy smollm2 --cpus-per-replica 2 --address "$ADDR"
"$PY" -m llmasos serve --port 18102 --threads 2 --cluster-address "$ADDR" > "$OUT/cluster.log" 2>&1 &
server=$!
health 18102 && warm 18102 && run cluster 18102
kill "$server"; wait "$server" 2>/dev/null

"$PY" - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rate = {n: json.loads((out / f"{n}.json").read_text())["runs"][0]["output_throughput"] for n in ("embedded", "cluster")}
print(f"embedded {rate['embedded']:.1f} tok/s, cluster {rate['cluster']:.1f} tok/s: "
      f"{100 * rate['cluster'] / rate['embedded']:.1f} % of embedded")
PY
