#!/usr/bin/env bash
# lorag serve against llama-server: same GGUF, same slots, threads and context per slot, in one
# run. Streams chat completions at concurrency 1, 4 and 16 (bench/serve_load.py) and prints
# aggregate completion tok/s, p50/p95 time to first token and request latency, and the ratio
# ours / peer. Repeat with RUNS=N (default 3) to see the noise.
#
# The peer: llama-cpp-sys-2 0.1.160 ships llama.cpp without tools/server's sources, so
# llama-server is built from the llama.cpp vendored in the llama-cpp-python 0.3.36 sdist (PyPI)
# with cmake (CPU, native), into bench/out/llama-server/ (a few minutes, once).
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
LORAG="$T/release/lorag"
OUT=bench/out/serve
mkdir -p "$OUT"
PARALLEL="${PARALLEL:-4}"
THREADS="${THREADS:-$(nproc)}"
CTX="${CTX:-2048}"
RUNS="${RUNS:-3}"
REQS="${REQS:-32}"
MAXTOK="${MAXTOK:-64}"
MODEL="$("$LORAG" models list --json | python3 -c 'import json,sys; d=json.load(sys.stdin); print([m["path"] for m in d["models"] if m["name"]=="smollm2-135m-instruct"][0])')"
PY="$T/py-venv/bin/python"
[ -x "$PY" ] || { echo "run scripts/setup.sh first (it makes $PY)" >&2; exit 1; }

SERVER=bench/out/llama-server/build/bin/llama-server
if [ ! -x "$SERVER" ]; then
  mkdir -p bench/out/llama-server
  ( cd bench/out/llama-server
    [ -f llama_cpp_python-0.3.36.tar.gz ] || pip download --no-deps --no-binary :all: -d . llama-cpp-python==0.3.36 >&2
    tar xzf llama_cpp_python-0.3.36.tar.gz llama_cpp_python-0.3.36/vendor/llama.cpp
    cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release \
      -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=ON >&2
    cmake --build build --target llama-server -j "$(nproc)" >&2 )
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_health() { for _ in $(seq 600); do curl -sf "$1/health" >/dev/null && return 0; sleep 0.2; done; return 1; }

run_one() { # name url concurrency
  "$PY" bench/serve_load.py "$2" --concurrency "$3" --requests "$(( $3 > 4 ? REQS * 2 : REQS ))" --max-tokens "$MAXTOK" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['server']='$1'; print(json.dumps(d))"
}

RES="$OUT/results.jsonl"
: > "$RES"
for run in $(seq "$RUNS"); do
  P1=$(free_port); P2=$(free_port)
  "$LORAG" serve --port "$P1" --model smollm2-135m-instruct --parallel "$PARALLEL" --threads "$THREADS" --ctx "$CTX" 2>"$OUT/lorag.log" &
  L=$!
  "$SERVER" -m "$MODEL" --port "$P2" -np "$PARALLEL" -t "$THREADS" -tb "$THREADS" -c $((CTX * PARALLEL)) --no-webui >"$OUT/llama.log" 2>&1 &
  S=$!
  trap 'kill $L $S 2>/dev/null || true' EXIT
  wait_health "http://127.0.0.1:$P1"; wait_health "http://127.0.0.1:$P2"
  for c in 1 4 16; do
    # Alternate the order so that neither always runs on a warmer machine.
    if (( run % 2 )); then
      run_one lorag "http://127.0.0.1:$P1" $c | tee -a "$RES"; run_one llama-server "http://127.0.0.1:$P2" $c | tee -a "$RES"
    else
      run_one llama-server "http://127.0.0.1:$P2" $c | tee -a "$RES"; run_one lorag "http://127.0.0.1:$P1" $c | tee -a "$RES"
    fi
  done
  kill $L $S; wait $L $S 2>/dev/null || true
  trap - EXIT
done

python3 - "$RES" <<'PY'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
by = collections.defaultdict(list)
for r in rows:
    by[(r["server"], r["concurrency"])].append(r)
def rng(xs): return f"{min(xs):.1f}-{max(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"
print("| concurrency | lorag tok/s | llama-server tok/s | ratio (ours/peer) | lorag TTFT p50/p95 s | llama-server TTFT p50/p95 s | lorag latency p50/p95 s | llama-server latency p50/p95 s |")
print("|---|---|---|---|---|---|---|---|")
base = None
for c in (1, 4, 16):
    a, b = by[("lorag", c)], by[("llama-server", c)]
    ratios = [x["tok_per_s"] / y["tok_per_s"] for x, y in zip(a, b)]
    f = lambda rs, k: rng([r[k] for r in rs])
    print(f"| {c} | {f(a,'tok_per_s')} | {f(b,'tok_per_s')} | {min(ratios):.2f}-{max(ratios):.2f} | {f(a,'ttft_p50')}/{f(a,'ttft_p95')} | {f(b,'ttft_p50')}/{f(b,'ttft_p95')} | {f(a,'latency_p50')}/{f(a,'latency_p95')} | {f(b,'latency_p50')}/{f(b,'latency_p95')} |")
one = [r["tok_per_s"] for r in by[("lorag", 1)]]
four = [r["tok_per_s"] for r in by[("lorag", 4)]]
print(f"\nlorag concurrency 4 / concurrency 1 throughput: {min(four)/max(one):.2f}-{max(four)/min(one):.2f}x")
PY
