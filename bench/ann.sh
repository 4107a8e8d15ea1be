#!/usr/bin/env bash
# ANN benchmark: the store's HNSW index (usearch) against hnswlib on the same vectors.
#   bench/ann.sh [--n N] [--runs N]
set -euo pipefail
cd "$(dirname "$0")/.."
T="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked -p lorag-store --example ann_bench >&2
VENV=bench/.venv
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -c "import hnswlib, numpy" 2>/dev/null || "$VENV/bin/pip" install -q hnswlib numpy
exec "$VENV/bin/python" bench/ann.py --bin "$T/release/examples/ann_bench" "$@"
