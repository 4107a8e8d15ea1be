#!/usr/bin/env bash
# The demo: set up (packages, build, models), then chat with the local model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
echo
"$BIN" models list
echo
echo "\$ lorag chat \"What is a building permit?\" --temperature 0 --max-tokens 120"
"$BIN" chat "What is a building permit?" --temperature 0 --max-tokens 120
echo
echo "\$ lorag chat \"What is the capital of France?\" --temperature 0 --json"
"$BIN" chat "What is the capital of France?" --temperature 0 --json
