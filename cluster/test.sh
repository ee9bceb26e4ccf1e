#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine (as root): installs what is missing,
# then checks formatting and lints and runs every test. This is the README's test command
# and exactly what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

./cluster/setup-host.sh
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
# One build directory outside the clone, reused by every run: the bundled RocksDB takes
# 20+ minutes to compile cold. Everything is built in the release profile (see Cargo.toml).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quorumlog-target}"

cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
