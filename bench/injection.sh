#!/usr/bin/env bash
# Prompt injection through documents: 60 hostile documents in five families (fake control-token
# turns, instruction overrides, fake citations, system-prompt leaks, exfiltration markers); how
# often each defence holds with `lorag ask --kb` (see bench/injection.py).
#   bench/injection.sh [--model NAME]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
rm -rf bench/out/injection
exec python3 bench/injection.py --lorag "$BIN" "$@"
