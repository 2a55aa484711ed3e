#!/usr/bin/env bash
# Login latency with backend names in DNS: cached versus uncached, against a static address.
#
#   bash benches/dns.sh [SECONDS]        (default 10 per run)
#
# dnsmasq on a loopback port serves an SRV record (_ssh._tcp.abc1234-0.training.test → the
# demo's sshd) and its A record. Three demo edges in turn route training-job hosts to:
# - static:   127.0.0.1:<sshd port> (no DNS at all),
# - cached:   srv:_ssh._tcp.{job_id}-{node}.training.test, answers kept for their TTL (30 s),
# - uncached: the same with dns.max_ttl_secs = 0 (an SRV and an A query per login).
# Each run: 1 worker logging in through front C, running `true`, logging out, for SECONDS;
# p50/p99 from ssh-edge-loadtest, and the queries dnsmasq logged. Backend host keys are not
# checked in this bench (accept_any_host_key): it measures latency, nothing else.
# Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
cargo build --release --quiet -p ssh-edge-loadtest
LT=$PWD/target/release/ssh-edge-loadtest
# shellcheck source=benches/lib.sh
. benches/lib.sh
DNS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
DNS_DIR=$(mktemp -d /tmp/ssh-edge-dns.XXXXXX)
DEMO_DIRS+=("$DNS_DIR")
field() { python3 -c "import json,sys; r=json.load(sys.stdin); print($1)"; }

# dnsmasq for the current demo's sshd (each demo has its own lab, CAs and sshd).
start_dns() {
  cat >"$DNS_DIR/dnsmasq.conf" <<CONF
port=$DNS_PORT
user=root
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
local=/test/
local-ttl=30
log-queries
log-facility=$DNS_DIR/queries.log
pid-file=$DNS_DIR/dnsmasq.pid
host-record=node.training.test,127.0.0.1
srv-host=_ssh._tcp.abc1234-0.training.test,node.training.test,$SSHD_PORT,0,0
CONF
  : >"$DNS_DIR/queries.log"
  /usr/sbin/dnsmasq --keep-in-foreground --conf-file="$DNS_DIR/dnsmasq.conf" &
  DNS_PID=$!
  EXTRA_PIDS+=("$DNS_PID")
  for _ in $(seq 50); do grep -q started "$DNS_DIR/queries.log" 2>/dev/null && break; sleep 0.1; done
}

echo "== login latency, $(nproc) cores, 1 worker, $SECS s per run; dnsmasq on 127.0.0.1:$DNS_PORT =="
SRV='srv:_ssh._tcp.{job_id}-{node}.training.test'
for spec in "static||30" "cached|$SRV|30" "uncached|$SRV|0"; do
  IFS='|' read -r name backend ttl <<<"$spec"
  routes=()
  if [ -n "$backend" ]; then
    routes=(SSH_EDGE_ROUTES="[{kind=\"training-job\",backend=\"$backend\",login_user=\"$(id -un)\",principal=\"{job_id}\"}]")
  fi
  export SSH_EDGE_BACKEND__ACCEPT_ANY_HOST_KEY=true SSH_EDGE_DNS__NAMESERVERS="[\"127.0.0.1:$DNS_PORT\"]" \
    SSH_EDGE_DNS__MAX_TTL_SECS="$ttl"
  if [ -n "$backend" ]; then export "${routes[0]}"; else unset SSH_EDGE_ROUTES; fi
  start_demo
  start_dns
  r=$("$LT" --addr "127.0.0.1:$SSH_PORT" --user training-job-abc1234-0 --key "$USER_KEY" \
        --mode logins --connections 1 --duration-secs "$SECS" --json)
  printf '%-9s %6.1f logins/s   p50 %6.1f ms   p99 %6.1f ms   errors %s   DNS queries %s\n' "$name" \
    "$(echo "$r" | field "r['per_sec']")" "$(echo "$r" | field "r['latency']['p50_ms']")" \
    "$(echo "$r" | field "r['latency']['p99_ms']")" "$(echo "$r" | field "sum(r['errors'].values())")" \
    "$(grep -c 'query\[' "$DNS_DIR/queries.log" || true)"
  kill "$DNS_PID" 2>/dev/null || true
  wait "$DNS_PID" 2>/dev/null || true
  stop_demo
done
