#!/usr/bin/env bash
# Time to first byte of a new `ssh HOST echo x` login, through each front versus direct to the
# same sshd, in one run: p50 / p99 over N runs (default 50). Then the terminating fronts again
# with upstream multiplexing on (`backend.multiplex`), where every login after the first rides
# on the edge's existing backend connection. Then the cost of the control plane (the demo's
# in-process `ssh-edge issuer`) for a running workload: off, on with its answers cached
# (`cache_ttl_secs` 5, the default) and on with every login asking (`cache_ttl_secs` 0); and
# the wake-up of the demo's sleeping workload (its hook sleeps 3 s before starting sshd).
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

stop_demo

lookups() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '
    /^ssh_edge_control_plane_requests_total\{outcome="ok"\}/ { ok = $2 }
    /^ssh_edge_control_plane_requests_total\{outcome="cached"\}/ { cached = $2 }
    /^ssh_edge_control_plane_request_seconds_sum/ { sum = $2 }
    /^ssh_edge_control_plane_request_seconds_count/ { n = $2 }
    END { printf "control-plane lookups: %d asked (mean %.2f ms each), %d cached\n", ok, n ? sum / n * 1000 : 0, cached }'
}

echo "== control plane: time to first byte of a running workload, $N runs each =="
start_demo
paths
front_a_cp_off=("${front_a[@]}"); front_c_cp_off=("${front_c[@]}")
measure front_a_cp_off front_c_cp_off
stop_demo
CONTROL_PLANE=on start_demo
paths
front_a_cp_cached=("${front_a[@]}"); front_c_cp_cached=("${front_c[@]}")
measure front_a_cp_cached front_c_cp_cached
lookups

t0=$(date +%s%N)
ssh -F "$SSH_CONFIG" -o BatchMode=yes "$SLEEPY_HOST" 'echo x' >/dev/null
t1=$(date +%s%N)
echo "wake-up of the sleeping workload (hook: sleep 3 s, then sshd): first byte after $(( (t1 - t0) / 1000000 )) ms;" \
  "edge: $(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^ssh_edge_activation_seconds_sum/ { printf "%.0f ms from the activate call to the backend accepting", $2 * 1000 }')"
stop_demo
SSH_EDGE_CONTROL_PLANE__CACHE_TTL_SECS=0 CONTROL_PLANE=on start_demo
paths
front_a_cp_uncached=("${front_a[@]}"); front_c_cp_uncached=("${front_c[@]}")
measure front_a_cp_uncached front_c_cp_uncached
lookups

