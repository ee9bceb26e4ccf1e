#!/usr/bin/env bash
# Container images for running Quorumlog nodes under Docker, without any container registry.
#
#   cluster/docker/image.sh base          make sure the base image exists; print its tag
#   cluster/docker/image.sh node BINARY   make sure the node image for this quorumlog binary
#                                         exists (base + the binary); print its tag
#
# Why it is done this way: the machines this runs on reach no container registry, so there
# is no `FROM debian:bookworm` to pull. The base is instead bootstrapped with mmdebstrap from
# the Debian packages the machine already installs from: the apt sources are read from
# /etc/apt (no mirror is named here), and the root filesystem is fed to `docker import`.
# The node image adds the binary with `docker create` + `docker cp` + `docker commit`, so
# neither a Dockerfile nor BuildKit is needed.
#
# Both images are cached by tag. The base tag is a hash of its recipe (package list, suites,
# architecture, SCHEMA below): it is built once per machine (a few minutes) and rebuilt only
# when the recipe changes; when it exists this script returns in well under a second. The
# node tag is a hash of the binary and of the base tag. Bump SCHEMA whenever the recipe
# changes in a way the package list does not show (the user, directories, dpkg filters...).
#
# Only the tag goes to stdout; progress and errors go to stderr, prefixed "image: ".
set -euo pipefail

SCHEMA="quorumlog-base/1"
DIST="bookworm"
# Everything the node containers need beyond minbase. sigsum-go (sigsum-witness and the other
# sigsum tools) is only in bookworm-backports; apt's pkg/suite form selects it from there.
BASE_PACKAGES=(ca-certificates curl iproute2 iptables procps "sigsum-go/$DIST-backports")
QL_UID=10001
BASE_REPO="quorumlog-base"
NODE_REPO="quorumlog-node"

log() { printf 'image: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

usage() {
  cat >&2 <<'EOF'
usage: cluster/docker/image.sh base
       cluster/docker/image.sh node BINARY
EOF
  exit 2
}

# --- cleanup of everything temporary, also on failure and on Ctrl-C ------------------------

tmp=""
tmp_container=""
tmp_image=""
cleanup() {
  if [ -n "$tmp_container" ]; then
    docker rm -f "$tmp_container" >/dev/null 2>&1 || true
  fi
  if [ -n "$tmp_image" ]; then
    docker rmi "$tmp_image" >/dev/null 2>&1 || true
  fi
  if [ -n "$tmp" ]; then
    # --one-file-system: never follow into anything a killed bootstrap left mounted.
    rm -rf --one-file-system "$tmp"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

make_tmp() {
  if [ -z "$tmp" ]; then
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/quorumlog-image.XXXXXX")
  fi
}

# One build at a time per machine (e.g. several nodes asking for the image at once); whoever
# waited finds the image built and returns at once.
take_lock() {
  exec 9>"${TMPDIR:-/tmp}/quorumlog-image.lock"
  if ! flock -n 9; then
    log "waiting for another image build on this machine to finish"
    flock 9
  fi
}

# --- docker ---------------------------------------------------------------------------------

need_docker() {
  command -v docker >/dev/null 2>&1 ||
    die "docker is not installed (on Debian: apt-get install docker.io)"
  local out
  if ! out=$(docker version --format '{{.Server.Version}}' 2>&1); then
    die "the Docker daemon is not running or not reachable: $(printf '%s' "$out" | tr -s '\n' ' ' | sed -E 's/^ +| +$//g')"
  fi
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# --- apt sources, read from the machine's own /etc/apt ----------------------------------------

# Prints one "deb [signed-by=KEYRING] URI SUITE COMPONENTS..." line per URI and suite of every
# enabled deb source of $DIST, $DIST-updates, $DIST-security and $DIST-backports: deb822
# *.sources files (the Debian 12 default) and one-line sources.list / *.list files alike.
apt_sources() {
  local want="^$DIST(-updates|-security|-backports)?\$"
  local d822=() oneline=() f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && d822+=("$f")
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] && oneline+=("$f")
  done
  {
    if [ "${#d822[@]}" -gt 0 ]; then
      awk -v want="$want" '
        function emit(   n, nu, ns, i, j, u, s, opt) {
          if (tolower(f["enabled"]) == "no" || (" " f["types"] " ") !~ / deb /) return
          opt = ""
          # A keyring path is kept; an inline key block (multi-line) is not expressible in a
          # one-line source, and apt then falls back to the trusted keys of /etc/apt.
          if (f["signed-by"] ~ /^\/[^ \t\n]*$/) opt = "[signed-by=" f["signed-by"] "] "
          nu = split(f["uris"], u, /[ \t]+/)
          ns = split(f["suites"], s, /[ \t]+/)
          for (i = 1; i <= nu; i++)
            for (j = 1; j <= ns; j++)
              if (u[i] != "" && s[j] ~ want) print "deb " opt u[i] " " s[j] " " f["components"]
        }
        function flush() { if (length(f) > 0) emit(); split("", f); last = "" }
        FNR == 1 { flush() }
        /^#/ { next }
        /^[ \t]*$/ { flush(); next }
        /^[ \t]/ { if (last != "") f[last] = f[last] "\n" $0; next }
        {
          i = index($0, ":"); if (i == 0) next
          last = tolower(substr($0, 1, i - 1))
          v = substr($0, i + 1); gsub(/^[ \t]+|[ \t]+$/, "", v)
          f[last] = v
        }
        END { flush() }
      ' "${d822[@]}"
    fi
    if [ "${#oneline[@]}" -gt 0 ]; then
      # deb [options] URI SUITE COMPONENTS...   (options may contain spaces inside [...])
      sed -E -e 's/#.*//' -e 's/[[:space:]]+/ /g' -e 's/ $//' "${oneline[@]}" |
        awk -v want="$want" '
          $1 != "deb" { next }
          { line = $0; rest = substr(line, 5); opt = "" }
          rest ~ /^\[/ { k = index(rest, "]"); opt = substr(rest, 1, k) " "; rest = substr(rest, k + 2) }
          { n = split(rest, a, " "); if (n >= 2 && a[2] ~ want) print "deb " opt rest }
        '
    fi
  } | sort -u
}

# --- base image -------------------------------------------------------------------------------

arch() {
  if command -v dpkg >/dev/null 2>&1; then
    dpkg --print-architecture
  else
    case "$(uname -m)" in
      x86_64) echo amd64 ;;
      aarch64) echo arm64 ;;
      *) uname -m ;;
    esac
  fi
}

# Sets SOURCES (array of source lines) and BASE_TAG.
compute_base_tag() {
  local lines suites=()
  lines=$(apt_sources)
  [ -n "$lines" ] || die "no enabled Debian $DIST apt source found in /etc/apt (sources.list, sources.list.d/*.sources, *.list)"
  mapfile -t SOURCES <<<"$lines"
  # The suite is the third word, or the fourth after a [signed-by=...] option.
  mapfile -t suites < <(printf '%s\n' "${SOURCES[@]}" | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $2}' | sort -u)
  printf '%s\n' "${suites[@]}" | grep -x "$DIST" >/dev/null ||
    die "no '$DIST' apt source found in /etc/apt (suites found: ${suites[*]:-none}; sources: ${SOURCES[*]})"
  printf '%s\n' "${suites[@]}" | grep -x "$DIST-backports" >/dev/null ||
    die "no '$DIST-backports' apt source found in /etc/apt (sigsum-go is only there); run cluster/setup-host.sh, which adds one"
  BASE_TAG="$BASE_REPO:$(
    {
      printf 'schema=%s\n' "$SCHEMA"
      printf 'arch=%s\n' "$ARCH"
      printf 'suite=%s\n' "${suites[@]}"
      printf 'package=%s\n' "${BASE_PACKAGES[@]}" | sort
    } | sha256sum | cut -c1-12
  )"
}

build_base() {
  command -v mmdebstrap >/dev/null 2>&1 ||
    die "mmdebstrap is not installed (run cluster/setup-host.sh, or apt-get install mmdebstrap)"
  make_tmp
  local tar="$tmp/rootfs.tar" mlog="$tmp/mmdebstrap.log" rc packages
  packages=$(
    IFS=,
    echo "${BASE_PACKAGES[*]}"
  )
  log "building $BASE_TAG ($DIST minbase, $ARCH) with mmdebstrap; this takes a few minutes, once"
  log "apt sources (from /etc/apt):"
  printf 'image:   %s\n' "${SOURCES[@]}" >&2
  # The merged-usr hook makes /bin, /lib... symlinks before anything is unpacked and installs
  # usr-is-merged; otherwise apt satisfies init-system-helpers' "usrmerge | usr-is-merged"
  # with usrmerge, which pulls in perl (~45 MB) only to do the same conversion afterwards.
  # The customize hooks run inside the new root; chroot "$1" makes the owner numbers right in
  # every mmdebstrap mode (root as root, unshare otherwise). mmdebstrap's own final cleanup
  # removes the apt package lists and the downloaded .debs; the last hook removes what it
  # leaves (apt's binary caches and the install logs).
  set +e
  # shellcheck disable=SC2016 # $1 is expanded by mmdebstrap's hook shell, not here
  mmdebstrap \
    --variant=minbase \
    --mode=auto \
    --format=tar \
    --architectures="$ARCH" \
    --include="$packages" \
    --aptopt='Acquire::Languages "none"' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-include=/usr/share/locale/locale.alias' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --customize-hook="chroot \"\$1\" groupadd --system --gid $QL_UID quorumlog" \
    --customize-hook="chroot \"\$1\" useradd --system --no-log-init --uid $QL_UID --gid $QL_UID --home-dir /var/lib/quorumlog --no-create-home --shell /usr/sbin/nologin quorumlog" \
    --customize-hook="chroot \"\$1\" install -d -o $QL_UID -g $QL_UID -m 0700 /var/lib/quorumlog" \
    --customize-hook='chroot "$1" install -d -o root -g root -m 0755 /etc/quorumlog' \
    --customize-hook='rm -rf "$1"/var/cache/apt/*.bin "$1"/var/log/apt/* "$1"/var/log/dpkg.log "$1"/var/log/alternatives.log' \
    "$DIST" "$tar" "${SOURCES[@]}" 2>&1 </dev/null |
    tee "$mlog" | sed -u 's/^/image: mmdebstrap: /' >&2
  rc=${PIPESTATUS[0]}
  set -e
  if [ "$rc" -ne 0 ] || [ ! -s "$tar" ]; then
    log "error: mmdebstrap failed (exit $rc) building the $DIST root filesystem; its errors:"
    grep -E '^(E|W): |error|rror:|unable|Unable|cannot|broken' "$mlog" | tail -n 20 | cut -c1-300 |
    sed 's/^/image:   /' >&2 || true
    die "base image not built (full mmdebstrap output above)"
  fi
  log "importing the root filesystem ($(du -h "$tar" | cut -f1)) into docker as $BASE_TAG"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.quorumlog.schema=\"$SCHEMA\" org.quorumlog.packages=\"${BASE_PACKAGES[*]}\"" \
    - "$BASE_TAG" <"$tar" >/dev/null ||
    die "docker import of the root filesystem failed"
  rm -f "$tar"
  log "built $BASE_TAG"
}

ensure_base() {
  ARCH=$(arch)
  compute_base_tag
  if ! image_exists "$BASE_TAG"; then
    take_lock
    image_exists "$BASE_TAG" || build_base
  fi
}

# --- node image -------------------------------------------------------------------------------

ensure_node() {
  local bin=$1 bin_sha tag id out rc missing
  [ -e "$bin" ] || die "binary not found: $bin"
  if [ ! -f "$bin" ] || [ ! -r "$bin" ]; then die "not a readable file: $bin"; fi
  ensure_base
  bin_sha=$(sha256sum <"$bin" | cut -c1-64)
  tag="$NODE_REPO:$(printf 'binary=%s\nbase=%s\n' "$bin_sha" "$BASE_TAG" | sha256sum | cut -c1-12)"
  if image_exists "$tag"; then
    echo "$tag"
    return
  fi
  take_lock
  if image_exists "$tag"; then
    echo "$tag"
    return
  fi
  log "building $tag from $bin on $BASE_TAG"
  make_tmp
  # Without the debug sections (the release profile keeps line tables: ~500 MB, mostly the
  # bundled RocksDB); symbols stay, so backtraces still name functions.
  strip --strip-debug -o "$tmp/quorumlog" "$bin" || die "strip --strip-debug $bin failed"
  chmod 0755 "$tmp/quorumlog"

  # A container that is never started: only its filesystem is used.
  tmp_container=$(docker create --network none --entrypoint /bin/true "$BASE_TAG") ||
    die "docker create from $BASE_TAG failed"
  docker cp "$tmp/quorumlog" "$tmp_container:/usr/local/bin/quorumlog" >&2 ||
    die "docker cp of the binary into the container failed"
  # Committed untagged first: the checks below run on exactly this image, and it gets its tag
  # only once they pass (the trap removes it otherwise).
  id=$(docker commit \
    --change 'USER quorumlog' \
    --change 'WORKDIR /var/lib/quorumlog' \
    --change 'ENTRYPOINT ["/usr/local/bin/quorumlog"]' \
    --change 'CMD []' \
    --change "LABEL org.quorumlog.binary-sha256=\"$bin_sha\" org.quorumlog.base=\"$BASE_TAG\"" \
    "$tmp_container") || die "docker commit failed"
  tmp_image=$id
  docker rm "$tmp_container" >/dev/null
  tmp_container=""

  # Every shared library the binary needs must be in the image.
  rc=0
  out=$(docker run --rm --network none --entrypoint /usr/bin/ldd "$id" /usr/local/bin/quorumlog 2>&1) || rc=$?
  missing=$(printf '%s\n' "$out" | awk '/=> not found/ {print $1}' | sort -u | tr '\n' ' ')
  if [ -n "$missing" ]; then
    log "error: $bin needs shared libraries that the base image $BASE_TAG does not have:"
    log "  ${missing% }"
    log "(link the binary without them, or add the Debian packages that provide them to"
    log "BASE_PACKAGES in cluster/docker/image.sh)"
    exit 1
  fi
  if [ "$rc" -ne 0 ] && ! printf '%s\n' "$out" | grep 'not a dynamic executable' >/dev/null; then
    die "ldd /usr/local/bin/quorumlog failed inside the image (exit $rc): $out"
  fi

  # And it must start there, as the image's user.
  rc=0
  out=$(docker run --rm --network none --entrypoint /usr/bin/timeout "$id" 30 /usr/local/bin/quorumlog --version 2>&1) || rc=$?
  if [ "$rc" -ne 0 ]; then
    log "error: 'quorumlog --version' failed inside the image (exit $rc); its output:"
    printf '%s\n' "$out" | head -n 20 | sed 's/^/image:   /' >&2
    exit 1
  fi
  log "runs in the image: $(printf '%s\n' "$out" | head -n 1)"

  docker tag "$id" "$tag" || die "docker tag $tag failed"
  tmp_image=""
  log "built $tag"
  echo "$tag"
}

# --- main ---------------------------------------------------------------------------------------

[ "$#" -ge 1 ] || usage
case "$1" in
  base)
    [ "$#" -eq 1 ] || usage
    need_docker
    ensure_base
    echo "$BASE_TAG"
    ;;
  node)
    [ "$#" -eq 2 ] || usage
    [ -e "$2" ] || die "binary not found: $2"
    need_docker
    ensure_node "$2"
    ;;
  -h | --help | help) usage ;;
  *)
    log "unknown subcommand: $1"
    usage
    ;;
esac
