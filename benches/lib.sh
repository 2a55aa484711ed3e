# Shared by the bench scripts: build the release binary and start `ssh-edge demo` on free
# loopback ports, then source its demo.env (TLS_PORT, SSH_PORT, SSHD_PORT, LOGIN_USER,
# SSH_CONFIG, DEMO_DIR, TOKEN_FILE, …). Sets EXE, DIR, DEMO and an EXIT trap that stops the
# demo, kills any pids in EXTRA_PIDS and removes every demo directory. `SSH_EDGE_*` variables
# set for start_demo reach the demo's edge config (e.g. SSH_EDGE_BACKEND__MULTIPLEX=true);
# stop_demo ends the current demo so a script can start another. The demo's control plane is
# off unless CONTROL_PLANE=on (benches compare forwarding; benches/ttfb.sh measures its cost).
# EDGE_BIN=path runs that binary instead of building target/release/ssh-edge (to compare two
# builds in one sitting). EDGE_CPUS=LIST starts the demo (the edge and its lab sshd) under
# `taskset -c LIST`, so the edge's runtime sizes its worker pool to the cores it may use, as in
# a container limited to them (pinning after the start would leave two workers on one core).
DEMO_DIRS=()
EXTRA_PIDS=()
DEMO=
# (`|| true`: under set -e a failing kill would end the trap before the rm, and the script
# with status 2.)
trap 'kill "${EXTRA_PIDS[@]}" $DEMO 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "${DEMO_DIRS[@]}"' EXIT

start_demo() {
  if [ -n "${EDGE_BIN:-}" ]; then
    EXE=$EDGE_BIN
  else
    cargo build --release --quiet --bin ssh-edge
    EXE=$PWD/target/release/ssh-edge
  fi
  DIR=$(mktemp -d /tmp/ssh-edge-bench.XXXXXX)
  DEMO_DIRS+=("$DIR")
  chmod 755 "$DIR"
  local pin=()
  [ -n "${EDGE_CPUS:-}" ] && pin=(taskset -c "$EDGE_CPUS")
  if [ "${CONTROL_PLANE:-off}" = on ]; then
    "${pin[@]}" "$EXE" demo --dir "$DIR/lab" --tls-port 0 --ssh-port 0 >"$DIR/demo.out" 2>"$DIR/demo.err" &
  else
    SSH_EDGE_CONTROL_PLANE__URL= "${pin[@]}" "$EXE" demo --dir "$DIR/lab" --tls-port 0 --ssh-port 0 >"$DIR/demo.out" 2>"$DIR/demo.err" &
  fi
  DEMO=$!
  for _ in $(seq 300); do [ -f "$DIR/lab/demo.env" ] && break; sleep 0.1; done
  # shellcheck disable=SC1091
  . "$DIR/lab/demo.env"
}

stop_demo() {
  kill "$DEMO" 2>/dev/null || true
  wait "$DEMO" 2>/dev/null || true
  DEMO=
}
