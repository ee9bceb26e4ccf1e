#!/usr/bin/env bash
# A three-node Quorumlog cluster and a Debian sigsum-witness as Docker containers.
#
#   cluster/docker.sh up                 build the images if missing, create the cluster on
#                                        first use, start everything, wait until every node
#                                        serves a cosigned tree head, print URLs and policy
#   cluster/docker.sh status [--json]    containers, then the cluster status (typed JSON
#                                        with --json: the structure of /status.json)
#   cluster/docker.sh logs NODE          a node's log (NODE: n1, n2, n3 or 1, 2, 3; witness)
#   cluster/docker.sh admin ARGS...      `quorumlog admin ARGS` as the operator, from the
#                                        operator container (e.g. admin remove-node --id 3)
#   cluster/docker.sh stop NODE | start NODE
#   cluster/docker.sh rolling-restart    per node: move leadership away, replace the
#                                        container, wait until it has caught up
#   cluster/docker.sh upgrade            the same with an image of the current binary
#   cluster/docker.sh transfer-leader --to ID
#   cluster/docker.sh down               remove the containers and network, keep the data
#   cluster/docker.sh reset              down, then delete the volumes, the node images
#                                        this cluster used (unless another cluster's
#                                        containers use them) and the cluster directory
#
# Settings (environment):
#   QUORUMLOG_DOCKER_DIR      cluster directory: keys, configs, secrets (default
#                             /var/tmp/quorumlog-docker)
#   QUORUMLOG_DOCKER_PROJECT  compose project and container name prefix (default quorumlog)
#   QUORUMLOG_DOCKER_PORT     first host port (default 7400): node k publishes its public API
#                             on 127.0.0.1:PORT+3(k-1) and its ops listener two ports higher
#                             (the loopback cluster's numbering; gRPC is not published)
#   QUORUMLOG_DOCKER_SUBNET   first three octets of the private /24 (default 172.28.7)
#   QUORUMLOG_CUSTODY         key custody of a new cluster: file (default) or handoff
#   QUORUMLOG_SNAPSHOT_EVERY  [raft] snapshot_every_entries of a new cluster (default 10000;
#                             the fault suite uses less, so nodes catch up by snapshot)
#   QUORUMLOG_SNAPSHOT_KEEP   [raft] keep_entries_after_snapshot of a new cluster
#   QUORUMLOG_BIN             a quorumlog binary to use as is (no host setup, no build)
#   QUORUMLOG_DATA_DIRS       a host directory holding n1, n2, n3: node k keeps its data
#                             in DIR/nk (a bind mount) instead of a named volume. The
#                             power-loss tests mount their file system there.
#
# compose 1.29 crashes when it recreates a container on a recent Engine, so this script
# never asks it to: an existing container is started with `docker start`, and a container
# that must change (new image) is removed first and then created afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="$(realpath -m "${QUORUMLOG_DOCKER_DIR:-/var/tmp/quorumlog-docker}")"
PROJECT="${QUORUMLOG_DOCKER_PROJECT:-quorumlog}"
PORT="${QUORUMLOG_DOCKER_PORT:-7400}"
SUBNET="${QUORUMLOG_DOCKER_SUBNET:-172.28.7}"
CUSTODY="${QUORUMLOG_CUSTODY:-file}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quorumlog-target}"
BIN="${QUORUMLOG_BIN:-$CARGO_TARGET_DIR/release/quorumlog}"
NODES=3
UID_IN_IMAGE=10001
WAIT_SECS="${QUORUMLOG_DOCKER_WAIT_SECS:-180}"

log() { printf 'docker: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

api_port() { echo $((PORT + 3 * ($1 - 1))); }
ops_port() { echo $((PORT + 3 * ($1 - 1) + 2)); }
container() { echo "$PROJECT-$1"; }

export QL_PROJECT="$PROJECT" QL_SUBNET="$SUBNET" QL_SECRETS="$DIR/secrets"
for k in $(seq "$NODES"); do
  export "QL_N${k}_API=$(api_port "$k")" "QL_N${k}_OPS=$(ops_port "$k")"
  if [ -n "${QUORUMLOG_DATA_DIRS:-}" ]; then
    export "QL_N${k}_DATA=$(realpath -m "$QUORUMLOG_DATA_DIRS/n$k")"
  fi
done
[ -f "$DIR/image" ] && QL_IMAGE=$(cat "$DIR/image") && export QL_IMAGE
[ -f "$DIR/base-image" ] && QL_BASE_IMAGE=$(cat "$DIR/base-image") && export QL_BASE_IMAGE

# The compose file insists on the image variables; commands that only remove things get
# placeholders so they work before the first `up` too.
compose() {
  QL_IMAGE="${QL_IMAGE:-none}" QL_BASE_IMAGE="${QL_BASE_IMAGE:-none}" \
    docker-compose --ansi never -p "$PROJECT" -f cluster/docker-compose.yml "$@"
}

check_docker() {
  command -v docker >/dev/null || die "docker is not installed (Docker Engine is required)"
  local err
  if ! err=$(docker info 2>&1 >/dev/null); then
    die "the Docker daemon is not running or not reachable: ${err:-docker info failed}"
  fi
  command -v docker-compose >/dev/null ||
    die "docker-compose is not installed (Debian package docker-compose)"
  command -v jq >/dev/null || die "jq is not installed (run cluster/setup-host.sh)"
}

# NODE argument: n1/1 -> n1; witness stays.
service_of() {
  case "${1:-}" in
    witness) echo witness ;;
    n[1-9] | [1-9]) local k=${1#n}; [ "$k" -le "$NODES" ] || die "no node $1"; echo "n$k" ;;
    *) die "name a node: n1..n$NODES or witness (got '${1:-}')" ;;
  esac
}

exists() { docker inspect "$(container "$1")" >/dev/null 2>&1; }
is_running() { [ "$(docker inspect -f '{{.State.Running}}' "$(container "$1")" 2>/dev/null)" = true ]; }

ensure_binary() {
  if [ -n "${QUORUMLOG_BIN:-}" ]; then
    [ -x "$BIN" ] || die "QUORUMLOG_BIN=$BIN is not an executable"
    return
  fi
  ./cluster/setup-host.sh
  if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
  fi
  log "building (the first build compiles RocksDB and takes a while)"
  # `--test kt` resolves dependencies as the test suite does, so both share one build.
  cargo build --release --workspace --bins --test kt
}

# Builds (if missing) the base image and the image of the current binary, and records
# both: the base in $DIR/base-image (and QL_BASE_IMAGE), the node image in $DIR/images
# (for reset) and in NODE_IMAGE.
node_image() {
  local base
  base=$(./cluster/docker/image.sh base) || die "could not build the base image (see above)"
  NODE_IMAGE=$(./cluster/docker/image.sh node "$BIN") ||
    die "could not build the node image (see above)"
  echo "$base" >"$DIR/base-image"
  export QL_BASE_IMAGE="$base"
  grep -qxF "$NODE_IMAGE" "$DIR/images" 2>/dev/null || echo "$NODE_IMAGE" >>"$DIR/images"
}

# Refuses to start when a host port the cluster publishes is taken by something else.
check_ports() {
  local k p
  for k in $(seq "$NODES"); do
    is_running "n$k" && continue
    for p in "$(api_port "$k")" "$(ops_port "$k")"; do
      if ss -Hltn "sport = :$p" | grep . >/dev/null; then
        die "port $p on this host is taken (node n$k publishes there); free it or set QUORUMLOG_DOCKER_PORT to another base"
      fi
    done
  done
}

# Keys, certificates and configs for containers n1..n3, and the read-only secret
# directories each container mounts (a node sees only its own key and certificate).
create_cluster() {
  [ -f "$DIR/cluster/ca.pem" ] && return
  mkdir -p "$DIR/secrets/witness"
  chmod 0700 "$DIR" "$DIR/secrets"
  local whex
  docker run --rm -v "$DIR/secrets/witness:/w" "$QL_BASE_IMAGE" \
    sigsum-key generate -o /w/witness.key ||
    die "could not generate the witness key"
  whex=$(docker run --rm -v "$DIR/secrets/witness:/w:ro" "$QL_BASE_IMAGE" \
    sigsum-key to-hex -k /w/witness.key.pub)
  "$BIN" init-cluster --nodes "$NODES" --dir "$DIR/cluster" --hosts n1,n2,n3 \
    --base-port 7000 --data-dir /var/lib/quorumlog/data \
    --log-url "http://127.0.0.1:$(api_port 1)" --custody "$CUSTODY" --kt \
    --witness "witness:$whex:http://witness:7100" >/dev/null ||
    die "init-cluster failed"
  cp "$DIR/cluster/log.key.pub" "$DIR/secrets/witness/log.key.pub"
  # The operator container holds the operator certificate and every node's config (for
  # addresses and the CA), and none of the nodes' keys.
  local op="$DIR/secrets/operator"
  mkdir -p "$op"
  cp -p "$DIR/cluster/ca.pem" "$DIR/cluster/policy" "$op/"
  cp -rp "$DIR/cluster/operator" "$op/"
  local k s
  for k in $(seq "$NODES"); do
    mkdir -p "$op/node$k"
    cp -p "$DIR/cluster/node$k/config.toml" "$op/node$k/"
  done
  for k in $(seq "$NODES"); do
    sed -i \
      -e "s/^snapshot_every_entries = .*/snapshot_every_entries = ${QUORUMLOG_SNAPSHOT_EVERY:-10000}/" \
      -e "s/^keep_entries_after_snapshot = .*/keep_entries_after_snapshot = ${QUORUMLOG_SNAPSHOT_KEEP:-1000}/" \
      "$DIR/cluster/node$k/config.toml"
  done
  for k in $(seq "$NODES"); do
    s="$DIR/secrets/n$k"
    mkdir -p "$s"
    cp -p "$DIR/cluster/ca.pem" "$DIR/cluster/crl.pem" "$DIR/cluster/policy" "$s/"
    cp -rp "$DIR/cluster/node$k" "$s/"
    # In custody `handoff` only the node whose config names the key file gets it.
    if grep -q '^key_file' "$DIR/cluster/node$k/config.toml"; then
      cp -p "$DIR/cluster/log.key" "$s/"
    fi
  done
  chown -R "$UID_IN_IMAGE:$UID_IN_IMAGE" "$DIR/secrets"
  find "$DIR/secrets" -type f \( -name '*.key' -o -name 'witness.key' \) -exec chmod 0600 {} +
  find "$DIR/secrets" -mindepth 1 -type d -exec chmod 0700 {} +
  log "created cluster in $DIR (custody $CUSTODY)"
}

# Bind-mounted data directories (QUORUMLOG_DATA_DIRS) must exist and belong to the
# image's user, as a new named volume does.
prepare_data_dirs() {
  [ -n "${QUORUMLOG_DATA_DIRS:-}" ] || return 0
  local k d
  for k in $(seq "$NODES"); do
    d="$QUORUMLOG_DATA_DIRS/n$k"
    [ -d "$d" ] || die "QUORUMLOG_DATA_DIRS: $d is not a directory"
    chown "$UID_IN_IMAGE:$UID_IN_IMAGE" "$d"
  done
}

# Starts a service: its existing container if there is one, a new one otherwise.
start_service() {
  if exists "$1"; then
    docker start "$(container "$1")" >/dev/null
  else
    compose up -d --no-deps "$1" >&2
  fi
}

# `quorumlog admin` in the operator container, entering the cluster through the given node
# (the operator certificate authenticates; nodes hold no operator key).
admin() { # node service, admin arguments...
  local svc=$1
  shift
  if ! is_running operator; then start_service operator; fi
  docker exec "$(container operator)" quorumlog admin \
    --config "/etc/quorumlog/node${svc#n}/config.toml" "$@"
}

# The typed cluster status through the first running node that answers.
status_json() {
  local k
  for k in $(seq "$NODES"); do
    is_running "n$k" || continue
    if admin "n$k" status --json 2>/dev/null; then return 0; fi
  done
  return 1
}

leader_id() { status_json | jq -er '.leader // empty'; }

node_field() { # id field
  status_json | jq -r --argjson k "$1" --arg f "$2" '.members[] | select(.id == $k) | .node[$f] // empty'
}

wait_cosigned_head() {
  local deadline=$((SECONDS + WAIT_SECS)) k
  for k in $(seq "$NODES"); do
    until curl -sf "http://127.0.0.1:$(api_port "$k")/get-tree-head" | grep '^cosignature=' >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        die "node n$k serves no cosigned tree head after ${WAIT_SECS}s; see cluster/docker.sh logs n$k"
      fi
      sleep 0.5
    done
  done
}

up() {
  check_docker
  ensure_binary
  mkdir -p "$DIR"
  node_image
  local image=$NODE_IMAGE
  if [ ! -f "$DIR/image" ]; then
    echo "$image" >"$DIR/image"
    export QL_IMAGE="$image"
  elif [ "$QL_IMAGE" != "$image" ]; then
    log "the cluster runs $QL_IMAGE; the current binary is $image (run upgrade to switch)"
  fi
  check_ports
  create_cluster
  prepare_data_dirs
  start_service witness
  start_service operator
  local k
  for k in $(seq "$NODES"); do start_service "n$k"; done
  log "waiting for a cosigned tree head on every node"
  wait_cosigned_head
  cat <<EOF

Quorumlog is running in Docker: 3 nodes and a witness on network ${PROJECT}_cluster.

  status page:            http://127.0.0.1:$(api_port 1)/  (and every node's)
  public API (any node):  http://127.0.0.1:$(api_port 1)  http://127.0.0.1:$(api_port 2)  http://127.0.0.1:$(api_port 3)
  metrics and health:     http://127.0.0.1:$(ops_port 1)/metrics  http://127.0.0.1:$(ops_port 1)/health  (and nodes 2, 3)
  Sigsum policy:          $DIR/cluster/policy
  image:                  $QL_IMAGE

Try it:
  sigsum-key generate -o /tmp/me.key
  echo hello > /tmp/msg && sigsum-submit -k /tmp/me.key -p $DIR/cluster/policy /tmp/msg
  sigsum-verify -k /tmp/me.key.pub -p $DIR/cluster/policy /tmp/msg.proof < /tmp/msg

Operate it:  cluster/docker.sh status | logs n1 | rolling-restart | down
EOF
  echo "$DIR/cluster/policy"
}

# Replaces every node's container in turn with one of `image`, keeping the log available:
# leadership moves away first, and the next node goes only once this one has caught up.
rolling_replace() {
  local image=$1 k leader target applied deadline
  for k in $(seq "$NODES"); do
    leader=$(leader_id) || die "no leader known; is the cluster up?"
    if [ "$leader" = "$k" ]; then
      local to=$((k % NODES + 1))
      log "n$k leads: moving leadership to n$to"
      # Under load the target can be a step behind when the transfer starts, and the
      # transfer then times out: it may still complete late, or a second try succeeds.
      local tries=0
      until admin "n$k" transfer-leader --to "$to" >&2 || [ "$(leader_id)" = "$to" ]; do
        tries=$((tries + 1))
        [ "$tries" -lt 3 ] || die "transfer to n$to failed"
        log "transfer to n$to did not complete; trying again"
      done
      leader=$to
    fi
    target=$(node_field "$leader" committed_index)
    log "replacing n$k (image $image)"
    compose stop "n$k" >&2
    compose rm -f "n$k" >&2
    QL_IMAGE="$image" compose up -d --no-deps "n$k" >&2
    deadline=$((SECONDS + WAIT_SECS))
    until applied=$(node_field "$k" applied_index) && [ -n "$applied" ] &&
      [ "$applied" -ge "${target:-0}" ] &&
      curl -sf "http://127.0.0.1:$(ops_port "$k")/health" >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        die "n$k did not catch up within ${WAIT_SECS}s; see cluster/docker.sh logs n$k"
      fi
      sleep 0.5
    done
    log "n$k is back and caught up (applied $applied >= $target)"
  done
}

rolling_restart() {
  check_docker
  [ -n "${QL_IMAGE:-}" ] || die "no cluster in $DIR; run up first"
  rolling_replace "$QL_IMAGE"
  log "rolling restart done"
}

upgrade() {
  check_docker
  [ -n "${QL_IMAGE:-}" ] || die "no cluster in $DIR; run up first"
  ensure_binary
  node_image
  local image=$NODE_IMAGE
  if [ "$image" = "$QL_IMAGE" ]; then
    log "the cluster already runs $image; replacing the containers anyway"
  fi
  # Recorded first: a node started after an interrupted upgrade gets the new image.
  echo "$image" >"$DIR/image"
  export QL_IMAGE="$image"
  # The operator's tools come from the new binary too.
  compose rm -f -s operator >&2
  start_service operator
  rolling_replace "$image"
  log "upgrade to $image done"
}

status() {
  check_docker
  if [ "${1:-}" = "--json" ]; then
    status_json || die "no node answers"
    return
  fi
  compose ps
  local k
  for k in $(seq "$NODES"); do
    if is_running "n$k" && admin "n$k" status; then return 0; fi
  done
  log "no node answers"
}

down() {
  check_docker
  compose down --remove-orphans >&2
  log "containers and network removed; data kept in the volumes (reset deletes them)"
}

reset() {
  check_docker
  compose down --volumes --remove-orphans >&2
  # Without -f: an image another cluster's container still uses (tags are content
  # hashes, so clusters share them) stays.
  if [ -f "$DIR/images" ]; then
    xargs -r -n1 docker image rm <"$DIR/images" >/dev/null 2>&1 || true
  fi
  rm -rf "$DIR"
  log "deleted the containers, network, volumes, node images and $DIR (the base image stays cached)"
}

cmd="${1:-}"
shift || true
case "$cmd" in
  up) up ;;
  status) status "$@" ;;
  logs)
    check_docker
    svc=$(service_of "${1:-}")
    shift
    docker logs "$@" "$(container "$svc")" 2>&1
    ;;
  stop) check_docker; compose stop "$(service_of "${1:-}")" >&2 ;;
  start) check_docker; start_service "$(service_of "${1:-}")" ;;
  rolling-restart) rolling_restart ;;
  upgrade) upgrade ;;
  transfer-leader)
    check_docker
    [ "${1:-}" = "--to" ] && [ -n "${2:-}" ] || die "usage: $0 transfer-leader --to ID"
    leader=$(leader_id) || die "no leader known"
    admin "n$leader" transfer-leader --to "${2#n}"
    ;;
  admin)
    check_docker
    k=$(leader_id 2>/dev/null) || k=1
    admin "n$k" "$@"
    ;;
  down) down ;;
  reset) reset ;;
  *)
    echo "usage: $0 up|status [--json]|logs NODE|stop NODE|start NODE|rolling-restart|upgrade|transfer-leader --to ID|admin ARGS...|down|reset" >&2
    exit 2
    ;;
esac
