#!/usr/bin/env bash
# Idle-session memory of front B (token preamble, passthrough), which the load generator (a
# russh client of front C) cannot drive.
#
#   bash benches/idle_passthrough.sh [N]      (default 60)
#
# Starts `ssh-edge demo`, then N real `ssh` sessions through `ssh-edge connect --token-file`,
# each running `exec cat > /dev/null` on the backend with nothing to send, and prints the edge's
# anonymous memory (/proc smaps_rollup) before and while they are held, and per session. Not PSS:
# the N relays run the same binary, so PSS would hand part of its shared pages to them. The
# edge's per-source limits are off (every client is 127.0.0.1). Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-60}
export SSH_EDGE_LIMITS__PER_SOURCE_MAX=0 SSH_EDGE_LIMITS__PER_SOURCE_RATE=0
# shellcheck source=benches/lib.sh
. benches/lib.sh
start_demo

anon_kib() { awk '/^Anonymous:/ { print $2 }' "/proc/$DEMO/smaps_rollup"; }
active() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^ssh_edge_sessions_active / { print $2 }'; }
before=$(anon_kib)
for _ in $(seq "$N"); do
  setsid ssh -F "$SSH_CONFIG" -o BatchMode=yes \
    -o "ProxyCommand=$EXE connect --edge localhost:$TLS_PORT --ca-file $DEMO_DIR/tls-ca.pem --token-file $TOKEN_FILE %h" \
    -o "HostKeyAlias=[127.0.0.1]:$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" \
    -l "$LOGIN_USER" training-job-abc1234-0.ssh.baseten.co 'exec cat > /dev/null' \
    < <(sleep 300) >/dev/null 2>>"$DIR/ssh.err" &
  EXTRA_PIDS+=("$!")
  sleep 0.15
done
up=0
for _ in $(seq 600); do [ "$(active)" = "$N" ] && { up=1; break; }; sleep 0.1; done
[ "$up" = 1 ] || echo "only $(active) of $N sessions came up (see $DIR/ssh.err)" >&2
sleep 3
held_n=$(active) held=$(anon_kib)
printf '%-10s %8s %16s %16s %14s\n' sessions held "anon before" "anon held" "per session"
printf '%-10s %8s %12d KiB %12d KiB %10d KiB\n' "$N" "$held_n" "$before" "$held" $(((held - before) / (held_n > 0 ? held_n : 1)))
