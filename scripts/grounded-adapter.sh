#!/usr/bin/env bash
# Rebuild the grounded-answer adapter shipped for the default model (adapters/, see
# bench/grounded_adapter.py for the data and the checks), from open data with a fixed seed:
#   scripts/grounded-adapter.sh [--install adapters/smollm2-135m-grounded.gguf]
# About 50 minutes on 2 cores. --install also pins the new sha256 in crates/lorag-models/src/adapters.rs;
# then rebuild (the adapter is compiled into the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
exec python3 bench/grounded_adapter.py --lorag "$BIN" "$@"
