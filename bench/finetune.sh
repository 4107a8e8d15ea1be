#!/usr/bin/env bash
# Fine-tuning acceptance run: LoRA on the construction-law FAQ (English, 503 Q&A) with
# SmolLM2-135M-Instruct, a seeded 10% held-out split, and base vs tuned on the held-out questions:
# eval loss (reply tokens) and ROUGE-L F1 of greedy answers. Pure Python stdlib besides lorag.
#   bench/finetune.sh [--steps N | --epochs F] [--lr F] [--rank N] [--max-seq N] [--out DIR] [--qlora]
# Results: bench/out/finetune/result.json (and the run folder: adapter, metrics, loss.svg).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${LORAG_SKIP_SETUP:-}" ] || bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
exec python3 bench/finetune.py --lorag "$BIN" "$@"
