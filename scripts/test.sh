#!/usr/bin/env bash
# The whole test suite: set up (packages, build, models), lint, then every test of the workspace
# (the store suite against both backends: SQLite, and a real PostgreSQL started here).
# Tests that need models find them in the models folder that setup.sh fills; none uses the network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
# A real PostgreSQL + pgvector server for the store tests (scripts/pg.sh: a throwaway cluster on a
# free loopback port), stopped however the tests end. A LORAG_TEST_PG already set is used as is.
if [ -z "${LORAG_TEST_PG:-}" ]; then
  trap 'bash scripts/pg.sh stop' EXIT
  LORAG_TEST_PG="$(bash scripts/pg.sh start | tail -n 1)"
  export LORAG_TEST_PG
fi
cargo test --release --locked --workspace
