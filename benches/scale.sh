#!/usr/bin/env bash
# Idle-session memory of the edge and whether it goes back after the sessions close.
#
#   bash benches/scale.sh [N...]        (default: 100 400)
#
# For each N: a fresh `ssh-edge demo`, then N sessions through front C held open by the load
# generator (`--mode idle`, 16 handshakes at a time). The edge's PSS (/proc smaps_rollup) is
# read before, while the sessions are held (all N, or as many as got in: "held"), and
# AFTER_SECS (15) after the last one closed, which shows whether the memory went back.
# Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100 400)
# shellcheck source=benches/lib.sh
. benches/lib.sh
cargo build --release --quiet -p ssh-edge-loadtest
LOADTEST=$PWD/target/release/ssh-edge-loadtest

pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$DEMO/smaps_rollup"; }
active() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^ssh_edge_sessions_active / { print $2 }'; }
wait_active() { # value timeout-secs
  for _ in $(seq $(($2 * 10))); do [ "$(active)" = "$1" ] && return 0; sleep 0.1; done
  echo "timed out waiting for $1 active sessions (have $(active))" >&2; return 1
}

printf '%-8s %8s %12s %12s %14s %12s\n' sessions held "PSS before" "PSS held" "per session" "PSS after"
for n in "${SIZES[@]}"; do
  start_demo
  before=$(pss_kib)
  hold=$((n / 4 + 30))
  "$LOADTEST" --addr "127.0.0.1:$SSH_PORT" --user training-job-abc1234-0 --key "$USER_KEY" \
    --mode idle --connections "$n" --duration-secs "$hold" >"$DIR/loadtest.out" 2>&1 &
  LT=$!
  EXTRA_PIDS+=("$LT")
  # All N up, or as many as got in (a failed login is reported by the load generator): the
  # count held still for 3 s.
  last=-1 still=0
  for _ in $(seq $((hold * 10))); do
    now=$(active)
    if [ "$now" = "$n" ]; then break; fi
    if [ "$now" = "$last" ] && [ "$now" != 0 ]; then still=$((still + 1)); else still=0; fi
    [ "$still" -ge 30 ] && break
    last=$now
    sleep 0.1
  done
  held_n=$(active)
  held=$(pss_kib)
  wait "$LT" || true
  grep -E "ok|errors" "$DIR/loadtest.out" | head -1 >&2
  wait_active 0 30
  sleep "${AFTER_SECS:-15}"
  after=$(pss_kib)
  printf '%-8s %8s %9d KiB %9d KiB %10d KiB %9d KiB\n' "$n" "$held_n" "$before" "$held" $(((held - before) / (held_n > 0 ? held_n : 1))) "$after"
  stop_demo
done
