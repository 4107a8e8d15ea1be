#!/usr/bin/env bash
# The two store backends in one run, on the same KBs: the embedded store (SQLite + usearch HNSW,
# a folder) and PostgreSQL + pgvector (a schema on a throwaway server from scripts/pg.sh, or on
# LORAG_TEST_PG when set). Two KBs:
# - synthetic: N chunks (sources of 100, one transaction each), dense recall@5 against exact
#   search, hybrid recall@5 of the chunk each query was made from;
# - SQuAD v1.1 dev: its 2,067 paragraphs ingested by lorag's pipeline (each text embedded once, so
#   the per-backend ingest time is the pipeline without the model; the end-to-end time with it is
#   printed too), 2,000 seeded draws (with replacement) of its 10,565 questions, a hit being the question's own paragraph in the top 5.
# Per backend: ingest time, hybrid search latency p50/p95 (a dense and a lexical query fused as
# `lorag search` does), QPS with 1 and 8 client threads on one shared handle, recall@5 of dense
# and of hybrid search. One JSON line per KB and backend goes to bench/out/store/results-*.jsonl.
# Quality must agree (recall@5 within 0.01).
#
#   bench/store.sh [--data both|synthetic|squad] [--n 100000] [--dim 384] [--queries 200]
#                  [--squad-queries 2000] [--profile release|dev]
set -euo pipefail
cd "$(dirname "$0")/.."
N=100000 DIM=384 QUERIES=200 SQUAD_QUERIES=2000 PROFILE=release DATA=both
while [ $# -gt 0 ]; do
  case "$1" in
    --n) N="$2"; shift 2 ;;
    --dim) DIM="$2"; shift 2 ;;
    --queries) QUERIES="$2"; shift 2 ;;
    --squad-queries) SQUAD_QUERIES="$2"; shift 2 ;;
    --data) DATA="$2"; shift 2 ;;
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
cargo build -q "${PFLAG[@]}" -p lorag-kb --example store_bench
BIN="${CARGO_TARGET_DIR:-target}/$([ "$PROFILE" = release ] && echo release || echo debug)/examples/store_bench"
if [ "$DATA" != squad ]; then
  echo "store bench, synthetic: n=$N dim=$DIM queries=$QUERIES profile=$PROFILE" >&2
  "$BIN" --n "$N" --dim "$DIM" --queries "$QUERIES" \
    --kb "$TMP/kb" --kb "${LORAG_TEST_PG}${SEP}schema=${SCHEMA}" | tee -a "$RESULT"
fi
if [ "$DATA" != synthetic ]; then
  SQUAD=$(cd bench && python3 -c 'import squad_data as s; print(s.squad_path())')
  echo "store bench, SQuAD v1.1 dev: queries=$SQUAD_QUERIES profile=$PROFILE" >&2
  "$BIN" --squad "$SQUAD" --work "$TMP/squad" --queries "$SQUAD_QUERIES" \
    --kb "$TMP/squad-kb" --kb "${LORAG_TEST_PG}${SEP}schema=${SCHEMA}_squad" | tee -a "$RESULT"
fi
echo "results in $RESULT (the schemas ${SCHEMA}* stay on a server you gave in LORAG_TEST_PG)" >&2
