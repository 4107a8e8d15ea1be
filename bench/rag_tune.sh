#!/usr/bin/env bash
# RAG-aware fine-tuning of SmolLM2 for the SQuAD RAG benchmark, on SQuAD-shifts new_wiki
# (no article shared with SQuAD dev): lorag rag-data, then lorag tune. Then measure with
#   bench/rag.sh --lora bench/out/rag_tune/run/adapter.gguf
#   bench/rag_tune.sh [--questions 600] [--tune-args "..."] [--data-only]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
exec python3 bench/rag_tune.py --lorag "$BIN" "$@"
