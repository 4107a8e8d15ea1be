#!/usr/bin/env bash
# The whole test suite: set up (packages, build, models), lint, then every test of the workspace.
# Tests that need models find them in the models folder that setup.sh fills; none uses the network.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo fmt --all --check
cargo clippy --release --locked --workspace --all-targets -- -D warnings
cargo test --release --locked --workspace
