#!/usr/bin/env bash
# Retrieval benchmark on SQuAD v1.1 dev (recall@1/5/10, MRR, ingestion MB/min).
#   bench/retrieval.sh [--sample N] [--reuse]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
exec python3 bench/retrieval.py --lorag "$BIN" "$@"
