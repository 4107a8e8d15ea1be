#!/usr/bin/env bash
# The two store backends in one run, on the same synthetic KB: the embedded store (SQLite + usearch
# HNSW, a folder) and PostgreSQL + pgvector (a schema on a throwaway server from scripts/pg.sh, or
# on LORAG_TEST_PG when set). Per backend: ingest time (sources of 100 chunks, one transaction
# each), hybrid search latency p50/p95 (a dense and a lexical query fused as `lorag search` does),
# QPS with 1 and 8 client threads on one shared handle, recall@5 of dense search (against exact
# search) and of hybrid search (the chunk each query was made from). One JSON line per backend
# goes to bench/out/store/results-*.jsonl. Quality must agree (recall@5 within 0.01).
#
#   bench/store.sh [--n 100000] [--dim 384] [--queries 200] [--profile release|dev]
#
# Not yet here: the SQuAD KB (it needs the lorag binary and the embedder; see bench/retrieval.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000 DIM=384 QUERIES=200 PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --dim) DIM="$2"; shift 2 ;;
    --queries) QUERIES="$2"; shift 2 ;;
    --profile) PROFILE="$2"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
OUT=bench/out/store
mkdir -p "$OUT"
TMP="$(mktemp -d)"
STARTED=0
cleanup() {
  rm -rf "$TMP"
  if [ "$STARTED" = 1 ]; then bash scripts/pg.sh stop; fi
}
trap cleanup EXIT
if [ -z "${LORAG_TEST_PG:-}" ]; then
  STARTED=1
  LORAG_TEST_PG="$(bash scripts/pg.sh start | tail -n 1)"
fi
SCHEMA="bench_$(date +%s)_$$"
SEP='?'; case "$LORAG_TEST_PG" in *\?*) SEP='&' ;; esac
PFLAG=(); [ "$PROFILE" = release ] && PFLAG=(--release)
RESULT="$OUT/results-$(date +%Y%m%d-%H%M%S).jsonl"
echo "store bench: n=$N dim=$DIM queries=$QUERIES profile=$PROFILE" >&2
cargo run -q "${PFLAG[@]}" -p lorag-kb --example store_bench -- \
  --n "$N" --dim "$DIM" --queries "$QUERIES" \
  --kb "$TMP/kb" --kb "${LORAG_TEST_PG}${SEP}schema=${SCHEMA}" | tee "$RESULT"
echo "results in $RESULT (the schema $SCHEMA stays on a server you gave in LORAG_TEST_PG)" >&2
