#!/usr/bin/env bash
# Multi-need retrieval benchmark (issue 17): long, situational requests that combine 2 or 3
# SQuAD-shifts new_wiki questions from different articles; all@k / found@k of the required
# paragraphs for each retrieval variant, and single-question recall@5 (no llama.cpp needed).
#   bench/multineed.sh [--n 300] [--singles 300] [--seed 17] [--variants a,b] [--long] [--kb DIR/kb]
# --long also builds (once, ~10 min of embedding) and runs a KB of long documents (6 paragraphs each).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=bench/out/multineed
mkdir -p "$OUT"
SQUAD=$(cd bench && python3 -c 'import squad_data as s; print(s.squad_path(s.NEW_WIKI))')
KB="$OUT/kb_new_wiki/kb"
# The KB rag_tune.sh builds is the same paragraphs, one file each: reuse it when it is there.
[ -d bench/out/grounded_adapter/kb_new_wiki ] && KB=bench/out/grounded_adapter/kb_new_wiki
[ -d bench/out/rag_tune/kb_new_wiki ] && KB=bench/out/rag_tune/kb_new_wiki
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --long) ARGS+=(--long-kb "$OUT/long"); shift ;;
    --kb) KB="$2"; shift 2 ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
cargo build --release -q -p lorag-kb --example multineed
exec "${CARGO_TARGET_DIR:-target}/release/examples/multineed" --kb "$KB" --squad "$SQUAD" --build "${ARGS[@]}"
