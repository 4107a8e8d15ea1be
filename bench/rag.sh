#!/usr/bin/env bash
# RAG benchmark on SQuAD v1.1 dev: F1/EM with and without the KB, citations, refusals, latency.
#   bench/rag.sh [--n 300] [--unanswerable 100]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
exec python3 bench/rag.py --lorag "$BIN" "$@"
