#!/usr/bin/env bash
# A three-node Quorumlog cluster on loopback, with a Debian sigsum-witness in its policy.
#
#   cluster/run.sh start    install what is missing, build, create the cluster (first time
#                           only), start the witness and the three nodes, wait until the log
#                           publishes a cosigned tree head, print the URLs and the policy
#   cluster/run.sh status   processes, each node's Raft status and its published tree head
#   cluster/run.sh rolling-restart
#                           restart every node in turn while the log keeps accepting leaves:
#                           move leadership away from it, stop it, start it, wait until it
#                           has caught up
#   cluster/run.sh stop     stop the nodes and the witness (data is kept)
#   cluster/run.sh reset    stop, then delete the cluster directory
#
# Settings (environment): QUORUMLOG_CLUSTER_DIR (default /var/tmp/quorumlog-cluster),
# QUORUMLOG_BASE_PORT (default 7000: node k serves its public API on 7000+3(k-1), gRPC on
# the next port, metrics and health on the one after), QUORUMLOG_WITNESS_PORT (default 7100),
# QUORUMLOG_BIN (a quorumlog binary to use as is: no host setup, no build; for tests).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${QUORUMLOG_CLUSTER_DIR:-/var/tmp/quorumlog-cluster}"
BASE="${QUORUMLOG_BASE_PORT:-7000}"
WPORT="${QUORUMLOG_WITNESS_PORT:-7100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/quorumlog-target}"
BIN="${QUORUMLOG_BIN:-$CARGO_TARGET_DIR/release/quorumlog}"
NODES=3

log() { printf 'cluster: %s\n' "$*" >&2; }
api() { echo "127.0.0.1:$((BASE + 3 * ($1 - 1)))"; }
ops() { echo "127.0.0.1:$((BASE + 3 * ($1 - 1) + 2))"; }

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_bg() { # pidfile logfile command...
  local pidfile=$1 logfile=$2
  shift 2
  if running "$pidfile"; then
    return
  fi
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

stop() {
  for p in "$DIR"/run/*.pid; do
    [ -f "$p" ] || continue
    if running "$p"; then
      kill "$(cat "$p")" 2>/dev/null || true
      for _ in $(seq 50); do running "$p" || break; sleep 0.1; done
      running "$p" && kill -9 "$(cat "$p")" 2>/dev/null || true
    fi
    rm -f "$p"
  done
  log "stopped"
}

start() {
  if [ -z "${QUORUMLOG_BIN:-}" ]; then
    ./cluster/setup-host.sh
    if [ -f "$HOME/.cargo/env" ]; then
      # shellcheck disable=SC1091
      . "$HOME/.cargo/env"
    fi
    log "building (the first build compiles RocksDB and takes a while)"
    # `--test kt` resolves dependencies as the test suite does, so both share one build.
    cargo build --release --workspace --bins --test kt
  fi
  mkdir -p "$DIR/run"
  if [ ! -f "$DIR/witness.key" ]; then
    sigsum-key generate -o "$DIR/witness.key"
  fi
  if [ ! -f "$DIR/cluster/ca.pem" ]; then
    local whex
    whex=$(sigsum-key to-hex -k "$DIR/witness.key.pub")
    "$BIN" init-cluster --nodes "$NODES" --dir "$DIR/cluster" --base-port "$BASE" --kt \
      --witness "witness1:$whex:http://127.0.0.1:$WPORT" >/dev/null
    log "created cluster in $DIR/cluster"
  fi
  # The Debian build needs the GODEBUG override or it answers 404 to everything.
  start_bg "$DIR/run/witness.pid" "$DIR/run/witness.log" \
    env GODEBUG=httpmuxgo121=0 sigsum-witness -k "$DIR/witness.key" \
    --log-key "$DIR/cluster/log.key.pub" --state-file "$DIR/witness.state" "127.0.0.1:$WPORT"
  for k in $(seq "$NODES"); do
    start_bg "$DIR/run/node$k.pid" "$DIR/run/node$k.log" \
      "$BIN" serve --config "$DIR/cluster/node$k/config.toml"
  done
  log "waiting for a cosigned tree head on every node"
  local deadline=$((SECONDS + 60))
  for k in $(seq "$NODES"); do
    until curl -sf "http://$(api "$k")/get-tree-head" | grep '^cosignature=' >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "node $k publishes no cosigned tree head; see $DIR/run/node$k.log"
        exit 1
      fi
      sleep 0.2
    done
  done
  cat <<EOF

Quorumlog is running: 3 nodes and a witness on loopback.

  public API (any node):  http://$(api 1)  http://$(api 2)  http://$(api 3)
  metrics and health:     http://$(ops 1)/metrics  http://$(ops 1)/health  (and nodes 2, 3)
  Sigsum policy:          $DIR/cluster/policy
  logs:                   $DIR/run/

Try it:
  sigsum-key generate -o /tmp/me.key
  echo hello > /tmp/msg && sigsum-submit -k /tmp/me.key -p $DIR/cluster/policy /tmp/msg
  sigsum-verify -k /tmp/me.key.pub -p $DIR/cluster/policy /tmp/msg.proof < /tmp/msg

Operate it:  $BIN admin --config $DIR/cluster/node1/config.toml status
Stop it:     cluster/run.sh stop
EOF
}

# The typed cluster status (`admin status --json`) through any node that answers.
status_json() {
  for k in $(seq "$NODES"); do
    if out=$("$BIN" admin --config "$DIR/cluster/node$k/config.toml" status --json 2>/dev/null); then
      echo "$out"
      return 0
    fi
  done
  return 1
}

leader_id() {
  status_json | jq -er '.leader // empty'
}

# A field of node k's own report (committed_index, applied_index, ...).
node_field() {
  status_json | jq -r --argjson k "$1" --arg f "$2" \
    '.members[] | select(.id == $k) | .node[$f] // empty'
}

stop_node() {
  local p="$DIR/run/node$1.pid"
  if running "$p"; then
    kill "$(cat "$p")"
    for _ in $(seq 100); do running "$p" || break; sleep 0.1; done
    running "$p" && kill -9 "$(cat "$p")" 2>/dev/null || true
  fi
  rm -f "$p"
}

rolling_restart() {
  for k in $(seq "$NODES"); do
    local leader
    leader=$(leader_id || true)
    if [ "$leader" = "$k" ]; then
      local to=$((k % NODES + 1))
      log "node $k leads: moving leadership to node $to"
      "$BIN" admin --config "$DIR/cluster/node$to/config.toml" transfer-leader --to "$to" >&2
    fi
    log "restarting node $k"
    stop_node "$k"
    # What node k must have applied before the next node goes down.
    local target deadline=$((SECONDS + 120))
    target=$(node_field "$(leader_id)" committed_index)
    start_bg "$DIR/run/node$k.pid" "$DIR/run/node$k.log" \
      "$BIN" serve --config "$DIR/cluster/node$k/config.toml"
    until applied=$(node_field "$k" applied_index) && [ -n "$applied" ] &&
      [ "$applied" -ge "${target:-0}" ] &&
      curl -sf "http://$(ops "$k")/health" >/dev/null; do
      if [ "$SECONDS" -ge "$deadline" ]; then
        log "node $k did not catch up within 120 s; see $DIR/run/node$k.log"
        exit 1
      fi
      sleep 0.2
    done
    log "node $k is back and caught up (applied $applied >= $target)"
  done
  log "rolling restart done"
}

status() {
  for p in "$DIR"/run/*.pid; do
    [ -f "$p" ] || continue
    if running "$p"; then echo "$(basename "$p" .pid): running (pid $(cat "$p"))"; else echo "$(basename "$p" .pid): stopped"; fi
  done
  for k in $(seq "$NODES"); do
    echo "--- node $k"
    "$BIN" admin --config "$DIR/cluster/node$k/config.toml" status 2>&1 | head -n 12 || true
    curl -s "http://$(api "$k")/get-tree-head" | head -n 2 || true
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  rolling-restart) rolling_restart ;;
  reset) stop; rm -rf "$DIR"; log "deleted $DIR" ;;
  *) echo "usage: $0 start|status|rolling-restart|stop|reset" >&2; exit 2 ;;
esac
