#!/usr/bin/env bash
# Time to first byte of a new `ssh HOST echo x` login, through each front versus direct to the
# same sshd, in one run: p50 / p99 over N runs (default 50). Then the terminating fronts again
# with upstream multiplexing on (`backend.multiplex`), where every login after the first rides
# on the edge's existing backend connection.
#
#   bash benches/ttfb.sh [N]
#
# Each run is a fresh client TCP + SSH connection (no ControlMaster), timing `ssh … echo x`
# until its output arrives. Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-50}
# shellcheck source=benches/lib.sh
. benches/lib.sh
HOST=training-job-abc1234-0.ssh.baseten.co

paths() {
  COMMON=(-F "$SSH_CONFIG" -o BatchMode=yes)
  direct=(ssh "${COMMON[@]}" -p "$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" "$LOGIN_USER@127.0.0.1")
  front_a=(ssh "${COMMON[@]}" "$HOST")
  front_b=(ssh "${COMMON[@]}" -o "ProxyCommand=$EXE connect --edge localhost:$TLS_PORT --ca-file $DEMO_DIR/tls-ca.pem --token-file $TOKEN_FILE %h"
    -o "HostKeyAlias=[127.0.0.1]:$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" -l "$LOGIN_USER" "$HOST")
  front_c=(ssh "${COMMON[@]}" "training-job-abc1234-0@127.0.0.1")
  front_a_mux=("${front_a[@]}")
  front_c_mux=("${front_c[@]}")
}

percentiles() { sort -n | awk '{ v[NR] = $1 } END { p50 = v[int((NR + 1) * 0.5)]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]; printf "p50 %6.1f ms   p99 %6.1f ms\n", p50, p99 }'; }

measure() {
  for p in "$@"; do
    declare -n cmd=$p
    "${cmd[@]}" 'echo x' >/dev/null  # warm-up (and, multiplexed, the backend connection)
    for _ in $(seq "$N"); do
      t0=$(date +%s%N)
      "${cmd[@]}" 'echo x' >/dev/null
      t1=$(date +%s%N)
      echo $(( (t1 - t0) / 1000 )) | awk '{ print $1 / 1000 }'
    done | { printf '%-12s ' "$p"; percentiles; }
  done
}

echo "== time to first byte of a fresh login, $N runs each, $(nproc) cores =="
start_demo
paths
measure direct front_a front_b front_c
stop_demo

SSH_EDGE_BACKEND__MULTIPLEX=true start_demo
paths
measure front_a_mux front_c_mux
echo "backend logins with multiplexing: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | grep '^ssh_edge_backend_logins_total' | tr '\n' ' ')"
