#!/usr/bin/env bash
# Load through the edge (front C) versus straight at the same sshd, in one run, with the
# project's load generator (ssh-edge-loadtest, russh clients with certificate auth):
#
#   bash benches/load.sh [IDLE_SESSIONS] [SECONDS]     (defaults 200 and 10)
#
# (idle runs last: closing hundreds of sessions keeps sshd busy for a while)
# - idle: IDLE_SESSIONS sessions held open; memory each costs the edge process (PSS, the lab's
#   sshd excluded) versus what each costs sshd (its process tree).
# - logins: 4 workers log in, run `true`, log out, for SECONDS; logins/s and p50/p99.
# - bulk: 4 sessions push into `cat > /dev/null` for SECONDS; MiB/s.
# Loopback only (the generator refuses anything else); bounded; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${1:-200}
SECS=${2:-10}
cargo build --release --quiet -p ssh-edge-loadtest
LT=$PWD/target/release/ssh-edge-loadtest
# shellcheck source=benches/lib.sh
. benches/lib.sh
# The generator gives each login 30 s; give the edge's backend login the same, so a burst of
# idle logins queuing at sshd fails on neither path for a shorter deadline.
SSH_EDGE_BACKEND__CONNECT_TIMEOUT_SECS=30 start_demo
SSHD_PID=$(cat "$DEMO_DIR/sshd.pid")
edge=(--addr "127.0.0.1:$SSH_PORT" --user training-job-abc1234-0 --key "$USER_KEY")
direct=(--addr "127.0.0.1:$SSHD_PORT" --user "$LOGIN_USER" --key "$USER_KEY")
field() { python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }
# Let the previous run's sessions end on both sides: sshd back to no per-connection children.
settle() {
  for _ in $(seq 1200); do
    [ -z "$(cat /proc/"$SSHD_PID"/task/*/children 2>/dev/null | tr -d ' ')" ] && return 0
    sleep 0.1
  done
  echo "warning: sshd still has per-connection processes; the next figures may be skewed" >&2
  sleep 1
}

echo "== load, $(nproc) cores: $IDLE idle sessions, $SECS s of logins and bulk =="
e=$("$LT" "${edge[@]}" --mode logins --connections 4 --duration-secs "$SECS" --json); settle
d=$("$LT" "${direct[@]}" --mode logins --connections 4 --duration-secs "$SECS" --json); settle
for n in edge direct; do
  declare -n r=${n:0:1}
  printf 'logins  %-6s %6.1f/s   p50 %6.1f ms   p99 %6.1f ms   errors %s\n' "$n" \
    "$(echo "$r" | field "r['per_sec']")" "$(echo "$r" | field "r['latency']['p50_ms']")" \
    "$(echo "$r" | field "r['latency']['p99_ms']")" "$(echo "$r" | field "sum(r['errors'].values())")"
done
printf 'logins  ratio %.3f\n' "$(python3 -c "print($(echo "$e" | field "r['per_sec']") / $(echo "$d" | field "r['per_sec']"))")"

e=$("$LT" "${edge[@]}" --mode bulk --connections 4 --duration-secs "$SECS" --json); settle
d=$("$LT" "${direct[@]}" --mode bulk --connections 4 --duration-secs "$SECS" --json)
em=$(echo "$e" | field "r['mib_per_sec']"); dm=$(echo "$d" | field "r['mib_per_sec']")
printf 'bulk    edge %6.1f MiB/s   direct %6.1f MiB/s   ratio %.3f\n' "$em" "$dm" "$(python3 -c "print($em/$dm)")"
settle
# sshd first: its tree must be back to the bare listener for its baseline.
d=$("$LT" "${direct[@]}" --mode idle --connections "$IDLE" --duration-secs "$SECS" --watch-pid "$SSHD_PID" --json)
settle
e=$("$LT" "${edge[@]}" --mode idle --connections "$IDLE" --duration-secs "$SECS" --watch-pid "$DEMO" --exclude-pid "$SSHD_PID" --json)
em=$(echo "$e" | field "r['memory']['per_session_bytes']"); dm=$(echo "$d" | field "r['memory']['per_session_bytes']")
printf 'idle    edge %7d bytes/session (%s ok)   sshd %7d bytes/session (%s ok)   ratio %.3f\n' \
  "$em" "$(echo "$e" | field "r['ok']")" "$dm" "$(echo "$d" | field "r['ok']")" "$(python3 -c "print($em/$dm)")"
