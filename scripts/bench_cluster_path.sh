#!/usr/bin/env bash
# The single-machine cost of the cluster path (issue 19): `llmasos bench serve` at c=8 against
# `llmasos serve` embedded, then against `llmasos serve --cluster-address` with one replica of
# the same model on a local Ray head (2 logical CPUs, the replica on 2 threads like the
# embedded kernel). It starts its own Ray head (`llmasos cluster start --head --block`, its
# own temporary directory, RAY_PORT, default 6390) and at exit ends exactly that head's
# process tree, never `ray stop` (which would end every Ray process of the machine). Next to
# the throughput it prints the CPU-seconds per output token of each process group in each
# run (scripts/proc_cpu.py), so the cost can be placed even on a busy machine.
# INTERVALS="0 0.1 0.25" measures the cluster path once per `cluster_stream_interval` (each
# a fresh replica deployed with it, and a fresh API server); unset, once with the default.
#   OUT=/tmp/cluster-bench scripts/bench_cluster_path.sh
#   OUT=/tmp/cluster-bench INTERVALS="0 0.05 0.1 0.25" scripts/bench_cluster_path.sh
set -u
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
OUT="${OUT:-/tmp/cluster-bench}"
RAY_PORT="${RAY_PORT:-6390}"   # below Ray's worker port range (10002-19999)
export LLMASOS_HOME="${LLMASOS_HOME:-$(mktemp -d /tmp/llmasos-bench-XXXXXX)}"
export LLMASOS_AUTO_TUNE=false   # no first-start tune in the background of the measured server
mkdir -p "$OUT"
BENCH=(--concurrency 8 --num-prompts 16 --input-len 128 --output-len 128 --ignore-eos)
CPU="$ROOT/scripts/proc_cpu.py"
health() { for _ in $(seq 180); do curl -sf "http://127.0.0.1:$1/health" >/dev/null && return 0; sleep 1; done; return 1; }
warm() {
    curl -sf -m 300 "http://127.0.0.1:$1/v1/chat/completions" -H 'content-type: application/json' \
        -d '{"model":"smollm2","messages":[{"role":"user","content":"hi"}],"max_tokens":4}' >/dev/null
}
run() {  # NAME PORT
    echo "load before $1: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
    "$PY" "$CPU" snap "$OUT/$1.cpu-before.json"
    "$PY" -m llmasos bench serve --base-url "http://127.0.0.1:$2" "${BENCH[@]}" --json "$OUT/$1.json"
    "$PY" "$CPU" snap "$OUT/$1.cpu-after.json"
    echo "load after $1: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/load.txt"
    tokens="$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["runs"][0]["total_output_tokens"])' "$OUT/$1.json")"
    echo "CPU of the $1 run:"
    "$PY" "$CPU" diff "$OUT/$1.cpu-before.json" "$OUT/$1.cpu-after.json" "$tokens" --json "$OUT/$1.cpu.json"
}
kill_tree() {  # PID: that process and all its descendants, TERM then KILL
    "$PY" - "$1" <<'PY'
import sys, psutil
try:
    root = psutil.Process(int(sys.argv[1]))
    tree = [root, *root.children(recursive=True)]
except psutil.NoSuchProcess:
    sys.exit(0)
for p in tree:
    try: p.terminate()
    except psutil.NoSuchProcess: pass
_, alive = psutil.wait_procs(tree, timeout=15)
for p in alive:
    try: p.kill()
    except psutil.NoSuchProcess: pass
PY
}

"$PY" -m llmasos serve --port 18101 --threads 2 > "$OUT/embedded.log" 2>&1 &
server=$!
health 18101 && warm 18101 && run embedded 18101
kill "$server"; wait "$server" 2>/dev/null

ADDR="$("$PY" -c 'from llmasos.distributed.cluster import local_ip; print(local_ip())'):$RAY_PORT"
RAY_TMP="$(mktemp -d /tmp/rb-XXXXXX)"   # short: Ray's socket paths must fit 107 bytes
"$PY" -m llmasos cluster start --head --port "$RAY_PORT" --num-cpus 2 --temp-dir "$RAY_TMP" \
    --block > "$OUT/ray.log" 2>&1 &
head=$!
server=""
cleanup() {
    [ -n "$server" ] && kill_tree "$server"
    kill_tree "$head"
    rm -rf "$RAY_TMP"
}
trap cleanup EXIT
for _ in $(seq 60); do
    "$PY" -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1)' \
        "${ADDR%:*}" "$RAY_PORT" 2>/dev/null && break
    sleep 1
done
runs=()
for interval in ${INTERVALS:-default}; do
    name=cluster
    if [ "$interval" != default ]; then
        name="cluster-$interval"
        export LLMASOS_CLUSTER_STREAM_INTERVAL="$interval"   # sent to the replica by deploy
    fi
    "$PY" -m llmasos deploy smollm2 --cpus-per-replica 2 --address "$ADDR" || exit 1
    "$PY" -m llmasos serve --port 18102 --threads 2 --cluster-address "$ADDR" \
        > "$OUT/$name.log" 2>&1 &
    server=$!
    health 18102 && warm 18102 && run "$name" 18102 && runs+=("$name")
    kill_tree "$server"
    server=""
    "$PY" -m llmasos deploy smollm2 --replicas 0 --address "$ADDR" >/dev/null
done

"$PY" - "$OUT" "${runs[@]}" <<'PY'
import json, sys
from pathlib import Path
out, names = Path(sys.argv[1]), sys.argv[2:]
def rate(n): return json.loads((out / f"{n}.json").read_text())["runs"][0]["output_throughput"]
def cpu(n): return json.loads((out / f"{n}.cpu.json").read_text())["machine_ms_per_token"]
print(f"embedded {rate('embedded'):.1f} tok/s (machine CPU per output token {cpu('embedded'):.1f} ms)")
for n in names:
    print(f"{n} {rate(n):.1f} tok/s: {100 * rate(n) / rate('embedded'):.1f} % of embedded "
          f"(machine CPU per output token {cpu(n):.1f} ms)")
PY
