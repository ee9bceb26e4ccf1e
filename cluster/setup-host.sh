#!/usr/bin/env bash
# Installs, as root on Debian 12, everything Quorumlog needs to build, run and test.
# Idempotent: a second run finds everything present and changes nothing.
#
#   libclang-dev   bindgen for the RocksDB bindings (librocksdb-sys)
#   sigsum-go      Debian's sigsum-submit/-verify/-monitor/-witness (bookworm-backports),
#                  the third-party judges of protocol compatibility in the interop tests
#   iproute2       network namespaces for the fault tests
#   jq             the cluster scripts read the typed status (`admin status --json`)
#   mmdebstrap     builds the Docker base image from Debian packages (no registry needed)
#   chromium       the status page test renders the page headless
#   etcd-server    the side-by-side benchmark (benches/versus_etcd.rs) runs a 3-node etcd;
#   etcd-client    its etcdctl gives etcd's own benchmark as a reference
#   build tools    gcc/g++/make for the bundled RocksDB and ring
#
# protoc is not installed: the build uses the vendored binary from protoc-bin-vendored.
set -euo pipefail

log() { printf 'setup-host: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  log "must run as root (it installs Debian packages)"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_update_once() {
  if [ "$apt_updated" -eq 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
}

have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep "install ok installed" >/dev/null; }

# bookworm-backports, derived from the Debian source the system already uses (no mirror named here).
if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    awk 'BEGIN{RS="";ORS="\n"} /Suites:[^\n]*bookworm[ \n]/ && !/security/ {
           sub(/Suites:[^\n]*/, "Suites: bookworm-backports"); print; exit }' \
      /etc/apt/sources.list.d/debian.sources >/etc/apt/sources.list.d/backports.sources
  elif [ -f /etc/apt/sources.list ]; then
    grep -E '^deb .* bookworm( |$)' /etc/apt/sources.list | head -n1 |
      sed -E 's/ bookworm( |$)/ bookworm-backports\1/' >/etc/apt/sources.list.d/backports.list
  fi
  if ! grep -rqs bookworm-backports /etc/apt/sources.list.d/; then
    log "could not derive a bookworm-backports source from /etc/apt; add one by hand"
    exit 1
  fi
  log "enabled bookworm-backports"
  apt_updated=0
fi

missing=()
for p in libclang-dev clang build-essential pkg-config iproute2 ca-certificates curl jq mmdebstrap chromium etcd-server etcd-client; do
  have_pkg "$p" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing ${missing[*]}"
  apt_update_once
  apt-get install -y -qq "${missing[@]}"
fi

if ! have_pkg sigsum-go; then
  log "installing sigsum-go from bookworm-backports"
  apt_update_once
  apt-get install -y -qq -t bookworm-backports sigsum-go
fi

# Rust: use the machine's toolchain; install one with rustup only if there is none at all.
if [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi
if ! command -v cargo >/dev/null 2>&1; then
  log "no Rust toolchain found; installing one with rustup"
  curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

# The test command's unused-dependency check.
if ! command -v cargo-machete >/dev/null 2>&1; then
  log "installing cargo-machete from crates.io"
  cargo install --locked --quiet cargo-machete
fi

for tool in sigsum-submit sigsum-verify sigsum-monitor sigsum-witness sigsum-key; do
  command -v "$tool" >/dev/null || { log "$tool missing after install"; exit 1; }
done
log "ok: $(cargo --version), sigsum-go $(dpkg-query -W -f='${Version}' sigsum-go)"
