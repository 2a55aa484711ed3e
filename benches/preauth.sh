#!/usr/bin/env bash
# How the edge holds up under a pre-authentication flood, side by side with an unflooded run:
#
#   bash benches/preauth.sh [SOURCES] [SECONDS]     (defaults 16 and 10)
#
# - unflooded: 4 workers log in through front C, run `true`, log out, for SECONDS (the load
#   generator's `logins` mode, from 127.0.0.1).
# - flooded: 2,000 silent connections (connect, send nothing) and 2,000 identification stalls
#   (connect, send `SSH-2.0-flood`, then nothing) at front C, spread over SOURCES loopback
#   addresses 127.0.1.1..=SOURCES (never 127.0.0.1), each reconnecting ~1 s after the edge closes
#   it; once the flood is established (the unauthenticated gauge stops rising), the same logins
#   run for SECONDS while it goes on.
# Reported per run: logins/s, p50/p99, failed logins, the edge's peak RSS and open fds (the demo
# process, which runs the edge; the lab's sshd is a separate process), the peak of
# ssh_edge_unauthenticated_connections, and the pre-auth drops by reason from /metrics; then the
# flood generators' own counts and the edge after the flood.
#
# Limits: the edge's defaults (random early drop from 256 unauthenticated connections at 30 %,
# all dropped at 1024; 32 per source), with two changes, both overridable by setting the
# variable before running:
# - SSH_EDGE_LIMITS__PER_SOURCE_RATE=50, _BURST=100 (defaults 10/s, 40): the legitimate client
#   is one address logging in ~15 times a second, which the default rate would throttle by
#   itself, flood or not; the flood's sources (~250 connections each, reconnecting) still hit it.
# - SSH_EDGE_SSH__LOGIN_GRACE_SECS=10 (default 30): held connections are cut, and come back,
#   during the measurement, as in a long-running slowloris, instead of after the run.
# Both floods use the same SOURCES addresses, so the per-source cap counts them together: with
# 16 sources it holds the flood to 16 × 32 = 512 unauthenticated connections, inside the
# random-early-drop band, so per-source and global limits both act, and any new connection, a
# legitimate login included, is dropped with probability 0.3 + 0.7 × (512 − 256) / 768 ≈ 53 %;
# with 32 or more sources the global cap is reached and legitimate logins are mostly refused.
# Loopback only (the generator refuses anything else); bounded (4,000 flood connections,
# SECONDS + 12 s of flood); stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCES=${1:-16}
SECS=${2:-10}
FLOOD=2000
FLOOD_SECS=$((SECS + 12))

# Every flood connection is an fd in a generator and, while held, in the edge.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then ulimit -n 65536; else ulimit -n "$hard"; fi
if [ "$(ulimit -n)" -lt $((FLOOD + 256)) ]; then
  echo "open-files limit $(ulimit -n) is below $((FLOOD + 256)): raise the hard limit" >&2
  exit 1
fi

cargo build --release --quiet -p ssh-edge-loadtest
LT=$PWD/target/release/ssh-edge-loadtest
# shellcheck source=benches/lib.sh
. benches/lib.sh
export SSH_EDGE_LIMITS__PER_SOURCE_RATE=${SSH_EDGE_LIMITS__PER_SOURCE_RATE:-50}
export SSH_EDGE_LIMITS__PER_SOURCE_BURST=${SSH_EDGE_LIMITS__PER_SOURCE_BURST:-100}
export SSH_EDGE_SSH__LOGIN_GRACE_SECS=${SSH_EDGE_SSH__LOGIN_GRACE_SECS:-10}
start_demo
SSHD_PID=$(cat "$DEMO_DIR/sshd.pid")
OUT=$DIR/preauth
mkdir -p "$OUT"
METRICS=http://127.0.0.1:$ADMIN_PORT/metrics
for _ in $(seq 100); do curl -sf "$METRICS" >/dev/null && break; sleep 0.1; done

gauge() { curl -sf "$METRICS" | awk '$1 == "ssh_edge_unauthenticated_connections" { v = $2 } END { print v + 0 }'; }
# Pre-auth drops on the SSH listener, one "reason count" line each.
drops() {
  curl -sf "$METRICS" | sed -n 's/^ssh_edge_connections_rejected_total{listener="ssh",reason="\([a-z_]*\)"} \([0-9]*\)$/\1 \2/p'
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$DEMO/status"; }
fds() { find "/proc/$DEMO/fd" -mindepth 1 -maxdepth 1 | wc -l; }
# Peak RSS (KiB), open fds and unauthenticated gauge of the edge, written to $1 every 0.2 s.
sampler() {
  local rss=0 fd=0 un=0 r f u
  while :; do
    r=$(rss_kib) f=$(fds) u=$(gauge)
    [ "${r:-0}" -gt "$rss" ] && rss=$r
    [ "${f:-0}" -gt "$fd" ] && fd=$f
    [ "${u:-0}" -gt "$un" ] && un=$u
    echo "$rss $fd $un" >"$1.tmp" && mv "$1.tmp" "$1"
    sleep 0.2
  done
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }
# sshd back to no per-connection children.
settle() {
  for _ in $(seq 600); do
    [ -z "$(cat /proc/"$SSHD_PID"/task/*/children 2>/dev/null | tr -d ' ')" ] && return 0
    sleep 0.1
  done
  echo "warning: sshd still has per-connection processes" >&2
}
logins() {
  "$LT" --addr "127.0.0.1:$SSH_PORT" --user training-job-abc1234-0 --key "$USER_KEY" \
    --mode logins --connections 4 --duration-secs "$SECS" --json >"$1" || true
}

echo "== pre-auth flood, $(nproc) cores: $FLOOD silent + $FLOOD ident-stall connections from $SOURCES sources, $SECS s of logins =="
echo "   limits: preauth ${SSH_EDGE_LIMITS__PREAUTH_START:-256}/${SSH_EDGE_LIMITS__PREAUTH_DROP_PERCENT:-30}%/${SSH_EDGE_LIMITS__PREAUTH_FULL:-1024}," \
  "per source ${SSH_EDGE_LIMITS__PER_SOURCE_MAX:-32} at $SSH_EDGE_LIMITS__PER_SOURCE_RATE/s (burst $SSH_EDGE_LIMITS__PER_SOURCE_BURST)," \
  "login grace ${SSH_EDGE_SSH__LOGIN_GRACE_SECS} s"
rss_kib >"$OUT/idle.rss"
fds >"$OUT/idle.fds"

# 1. Unflooded.
drops >"$OUT/drops0"
sampler "$OUT/peak1" & SAMPLER=$!; EXTRA_PIDS+=("$SAMPLER")
logins "$OUT/logins1.json"
stop "$SAMPLER"
drops >"$OUT/drops1"
settle

# 2. Flooded.
"$LT" --addr "127.0.0.1:$SSH_PORT" --mode stall --stall silent --connections "$FLOOD" \
  --sources "$SOURCES" --duration-secs "$FLOOD_SECS" --json >"$OUT/silent.json" & SILENT=$!
"$LT" --addr "127.0.0.1:$SSH_PORT" --mode stall --stall ident --connections "$FLOOD" \
  --sources "$SOURCES" --duration-secs "$FLOOD_SECS" --json >"$OUT/ident.json" & IDENT=$!
EXTRA_PIDS+=("$SILENT" "$IDENT")
sampler "$OUT/peak2" & SAMPLER=$!; EXTRA_PIDS+=("$SAMPLER")
# Established: the gauge has risen and not set a new high for 1 s (at most 8 s).
t0=$(date +%s.%N) high=0 still=0
for _ in $(seq 40); do
  g=$(gauge)
  if [ "$g" -gt "$high" ]; then high=$g still=0; else still=$((still + 1)); fi
  [ "$high" -gt 0 ] && [ "$still" -ge 5 ] && break
  sleep 0.2
done
established_after=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
logins "$OUT/logins2.json"
stop "$SAMPLER"
drops >"$OUT/drops2"
wait "$SILENT" "$IDENT" || true

# After: the flood's connections closed, unauthenticated back to 0.
t0=$(date +%s.%N)
for _ in $(seq 150); do [ "$(gauge)" = 0 ] && break; sleep 0.2; done
after_secs=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
settle
echo "$(rss_kib) $(fds) $(gauge)" >"$OUT/after"

python3 - "$OUT" "$established_after" "$after_secs" <<'EOF'
import json, sys
out, est, after_s = sys.argv[1], sys.argv[2], sys.argv[3]
def load(name):
    try:
        return json.load(open(f"{out}/{name}"))
    except (OSError, ValueError):
        return None
def drops(name):
    d = {}
    for line in open(f"{out}/{name}"):
        k, v = line.split()
        d[k] = int(v)
    return d
def peak(name):
    rss, fds, un = open(f"{out}/{name}").read().split()
    return int(rss), int(fds), int(un)
runs = [load("logins1.json"), load("logins2.json")]
peaks = [peak("peak1"), peak("peak2")]
d0, d1, d2 = drops("drops0"), drops("drops1"), drops("drops2")
delta = [{k: d1.get(k, 0) - d0.get(k, 0) for k in d1}, {k: d2.get(k, 0) - d1.get(k, 0) for k in d2}]

rows = []
def row(name, a, b):
    rows.append((name, a, b))
def lat(r, k):
    return f"{r['latency'][k]:.1f}" if r and r.get("latency") else "-"
def errs(r):
    if r is None:
        return "run failed"
    e = r["errors"]
    total = sum(e.values())
    return str(total) + (" (" + ", ".join(f"{k} {v}" for k, v in e.items()) + ")" if e else "")
row("logins/s", *(f"{r['per_sec']:.1f}" if r else "-" for r in runs))
row("logins ok", *(str(r["ok"]) if r else "-" for r in runs))
row("p50 ms", *(lat(r, "p50_ms") for r in runs))
row("p99 ms", *(lat(r, "p99_ms") for r in runs))
row("failed logins", *(errs(r) for r in runs))
row("edge peak RSS MiB", *(f"{p[0] / 1024:.1f}" for p in peaks))
row("edge peak open fds", *(str(p[1]) for p in peaks))
row("peak unauthenticated", *(str(p[2]) for p in peaks))
for reason in ("preauth_full", "per_source", "rate", "grace"):
    row(f"dropped: {reason}", *(str(d.get(reason, 0)) for d in delta))
w = max(len(r[0]) for r in rows)
print(f"{'':{w}}   {'unflooded':>14}   {'flooded':>14}")
for name, a, b in rows:
    print(f"{name:{w}}   {a:>14}   {b:>14}")
idle_rss, idle_fds = int(open(f"{out}/idle.rss").read()), int(open(f"{out}/idle.fds").read())
print(f"(edge at rest before the runs: RSS {idle_rss / 1024:.1f} MiB, {idle_fds} fds; flood established "
      f"after {est} s, the logins ran during it; drops counted from its start to the logins' end)")
for kind in ("silent", "ident"):
    r = load(f"{kind}.json")
    if r is None:
        print(f"flood {kind}: no report")
        continue
    s = r["stall"]
    print(f"flood {kind + ':':7} {r['connections']} connections over {s['sources']} sources, {r['elapsed_secs']:.1f} s: "
          f"{s['attempts']} connects, {s['established']} established, {s['connect_failed']} failed; "
          f"closed by the edge {s['closed_by_edge']} ({s['refused_with_notice']} refused at admission); "
          f"peak open {s['peak_open']}, still open at the end {s['still_open_at_end']}")
rss, fds, un = open(f"{out}/after").read().split()
print(f"after the flood: unauthenticated {un} (back to 0 within {after_s} s), RSS {int(rss) / 1024:.1f} MiB, {fds} fds")
EOF
