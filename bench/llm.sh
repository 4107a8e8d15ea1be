#!/usr/bin/env bash
# Benchmark: prompt and decode throughput of lorag against llama-cpp-python on the same GGUF.
# Installs the peer into bench/.venv (builds llama.cpp from source: about 10 minutes once),
# builds lorag (release), fetches the model, and runs bench/llm_throughput.py.
#   bench/llm.sh [--runs N] [--max-tokens N] [--threads N] [--model PATH]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
VENV=bench/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import llama_cpp" 2>/dev/null || \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" "$VENV/bin/pip" install -q "llama-cpp-python==0.3.36"
MODEL="$("$BIN" models list --json | "$VENV/bin/python" -c 'import json,sys; print(next(m["path"] for m in json.load(sys.stdin)["models"] if m["name"]=="smollm2-135m-instruct"))')"
exec "$VENV/bin/python" bench/llm_throughput.py --lorag "$BIN" --model "$MODEL" "$@"
