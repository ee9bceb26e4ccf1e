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
cargo fmt --manifest-path fuzz/Cargo.toml --check
# Every declared dependency is used (exceptions, with reasons, in the manifests).
cargo machete
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace

# Every fuzz target for a few seconds from its committed corpus (long runs: docs/security.md).
./fuzz/run.sh smoke 15

# A short fault run of every nemesis family against fresh Docker clusters (about a minute
# of faults each); any invalid verdict fails the command. Runs are stored in jepsen/store/.
# QUORUMLOG_SKIP_DOCKER_TESTS=1 skips them with the other Docker tests.
if [ "${QUORUMLOG_SKIP_DOCKER_TESTS:-}" = 1 ]; then
  echo "test: skipping the fault runs (QUORUMLOG_SKIP_DOCKER_TESTS=1)" >&2
else
  # `cargo test` builds the suite's unit tests, not its executable (nor necessarily the
  # current server binary the node image is made from). Naming one test target keeps the
  # dev-dependencies in the feature resolution, as in `cargo test`: without it the
  # dependencies resolve differently and the bundled RocksDB is compiled a second time.
  cargo build --release --workspace --bins --test kt
  for family in partition kill pause transfer membership power mixed; do
    # The directory workload rides along where leaders die mid-epoch.
    directory=()
    case "$family" in kill | mixed) directory=(--directory) ;; esac
    "$CARGO_TARGET_DIR/release/quorumlog-jepsen" test --nemesis "$family" --time-limit 50 \
      "${directory[@]}"
  done

  # The planted fault (docs/jepsen.md): a build whose Raft log never fsyncs must be caught
  # losing acknowledged leaves when every node loses power. Built aside, then the normal
  # binary is built again in its place.
  cargo build --release --workspace --bins --test kt --features quorumlog/unsafe-ack-before-fsync
  cp "$CARGO_TARGET_DIR/release/quorumlog" "$CARGO_TARGET_DIR/quorumlog-planted-unsafe-ack"
  cargo build --release --workspace --bins --test kt
  "$CARGO_TARGET_DIR/release/quorumlog-jepsen" test --nemesis power-all --time-limit 40 \
    --bin "$CARGO_TARGET_DIR/quorumlog-planted-unsafe-ack" --expect-invalid durability
fi
