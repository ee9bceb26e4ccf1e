#!/usr/bin/env bash
# The fuzz targets of fuzz/fuzz_targets (cargo-fuzz, libFuzzer).
#
#   fuzz/run.sh build                  build every target
#   fuzz/run.sh smoke [SECONDS]        every target for SECONDS each (default 15), from the
#                                      committed corpus; fails on any finding. Part of the
#                                      README's test command.
#   fuzz/run.sh run TARGET SECONDS     one target for a long run; new inputs go into
#                                      fuzz/corpus/TARGET, a finding into fuzz/artifacts/
#   fuzz/run.sh cmin [TARGET]          shrink a corpus (default: every one) to the inputs
#                                      that add coverage; run before committing new inputs
#   fuzz/run.sh list                   the targets
#
# The targets link the log's library and so RocksDB. Its C++ build takes 20 minutes, so
# the RocksDB archive of the main release build (in CARGO_TARGET_DIR) is linked instead of
# compiling it again (librocksdb-sys's ROCKSDB_LIB_DIR); build the workspace first. The
# fuzz build has its own target directory (other compiler flags).
set -euo pipefail
cd "$(dirname "$0")"

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quorumlog-target}"
FUZZ_TARGET_DIR="${QUORUMLOG_FUZZ_TARGET_DIR:-/var/tmp/quorumlog-fuzz-target}"
# cargo-fuzz needs nightly compiler flags (sanitizers); the stable toolchain allows them so.
export RUSTC_BOOTSTRAP=1

log() { printf 'fuzz: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

ensure_tools() {
  if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz from crates.io"
    cargo install --locked cargo-fuzz >&2 || die "could not install cargo-fuzz"
  fi
  local lib
  lib=$(find "$CARGO_TARGET_DIR/release/build" -path '*librocksdb-sys-*/out/librocksdb.a' 2>/dev/null | head -n 1)
  [ -n "$lib" ] || die "no RocksDB archive under $CARGO_TARGET_DIR/release/build: run cargo build --release --workspace first"
  export ROCKSDB_LIB_DIR="${lib%/librocksdb.a}" ROCKSDB_STATIC=1
}

targets() { cargo fuzz list; }

build() {
  ensure_tools
  log "building the fuzz targets (RocksDB from $ROCKSDB_LIB_DIR)"
  cargo fuzz build --release --debug-assertions --target-dir "$FUZZ_TARGET_DIR" >&2
}

# run TARGET SECONDS WRITABLE_CORPUS ARTIFACT_DIR [READ_ONLY_CORPUS]
run_target() {
  local t=$1 secs=$2 corpus=$3 artifacts=$4
  shift 4
  mkdir -p "$corpus" "$artifacts"
  # -rss_limit_mb: a parser must not need more than this for any input.
  cargo fuzz run --release --debug-assertions --target-dir "$FUZZ_TARGET_DIR" "$t" \
    "$corpus" "$@" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 2>&1
}

SMOKE_TMP=""
cleanup() { [ -z "$SMOKE_TMP" ] || rm -rf "$SMOKE_TMP"; }
trap cleanup EXIT

smoke() {
  local secs=${1:-15} t tmp out failed=0
  build
  # A target without a committed corpus would start from nothing and libFuzzer would stop
  # at the missing directory; say which one instead.
  for t in $(targets); do
    [ -n "$(ls -A "corpus/$t" 2>/dev/null)" ] || die "no committed corpus in fuzz/corpus/$t"
  done
  SMOKE_TMP=$(mktemp -d /var/tmp/quorumlog-fuzz.XXXXXX)
  tmp=$SMOKE_TMP
  for t in $(targets); do
    log "$t: ${secs}s"
    if ! out=$(run_target "$t" "$secs" "$tmp/$t" "$tmp/artifacts-$t" "corpus/$t"); then
      printf '%s\n' "$out" | tail -n 40 >&2
      log "$t: FINDING (see above)"
      failed=1
      continue
    fi
    printf '%s\n' "$out" | grep -E '^stat::number_of_executed_units|^Done' | sed "s/^/fuzz: $t: /" >&2 || true
  done
  [ "$failed" = 0 ] || die "a fuzz target found a problem"
  log "smoke run passed"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  build) build ;;
  smoke) smoke "$@" ;;
  run)
    [ $# -eq 2 ] || die "usage: $0 run TARGET SECONDS"
    build
    run_target "$1" "$2" "corpus/$1" "artifacts/$1"
    ;;
  cmin)
    build
    for t in ${1:-$(targets)}; do
      before=$(find "corpus/$t" -type f | wc -l)
      cargo fuzz cmin --release --debug-assertions --target-dir "$FUZZ_TARGET_DIR" "$t" \
        "corpus/$t" >/dev/null 2>&1 || die "$t: cmin failed"
      log "$t: $before -> $(find "corpus/$t" -type f | wc -l) inputs"
    done
    ;;
  list) targets ;;
  *)
    echo "usage: $0 build | smoke [SECONDS] | run TARGET SECONDS | cmin [TARGET] | list" >&2
    exit 2
    ;;
esac
