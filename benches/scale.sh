#!/usr/bin/env bash
# How the edge's cost grows with work, each figure beside the direct-to-sshd one from the same
# run (front C, the load generator's russh clients, certificate logins):
#
#   bash benches/scale.sh                  (full: 100 1000 5000 sessions, 1 4 16 streams,
#                                           8 32 128 workers; 20+ minutes)
#   SIZES="100 400" WORKERS="8 32" STREAMS="1 4" bash benches/scale.sh      (about 3 minutes)
#
# - idle: for each of SIZES, a fresh demo; N sessions straight to sshd, then N through the
#   edge, at most RAMP (30) started a second and 16 logging in at once, so they all get in at
#   the pace sshd logs them in (its login CPU, not MaxStartups, is the limit on this machine:
#   see the logins table). The load generator samples memory while all are held: the edge process's PSS per session (its
#   lab sshd excluded) against sshd's per-session memory (its process tree). Then the edge's
#   PSS AFTER_SECS (12) after the last session closed: whether freed memory went back (the
#   edge trims once the session count has held still for two 5-s looks).
# - bulk: for each of STREAMS, that many concurrent transfers for BULK_SECS (6), checked at the
#   far end (`cksum`): MiB/s edge and direct, the edge's CPU seconds per GiB (utime+stime from
#   /proc/PID/stat), and sshd's on the direct path (its reaped children, the cksum included).
# - logins: for each of WORKERS, that many workers log in, run `true` and log out for
#   LOGIN_SECS (6): logins/s and p50/p99 edge and direct, the edge's CPU ms per login, and
#   sshd's (direct path).
# Prints tables and writes them as JSON to OUT (default benches/out/scale-<date>.json), and a
# PNG of the curves beside it when python3 has matplotlib (benches/scale_plot.py). The
# edge's per-source admission limits are off (every client is 127.0.0.1; the bench measures
# cost, benches/preauth.sh admission). Loopback only; bounded; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] && SIZES="$*"
read -ra SIZES <<<"${SIZES:-100 1000 5000}"
read -ra STREAMS <<<"${STREAMS:-1 4 16}"
read -ra WORKERS <<<"${WORKERS:-8 32 128}"
RAMP=${RAMP:-30} HOLD_SECS=${HOLD_SECS:-2} AFTER_SECS=${AFTER_SECS:-12}
BULK_SECS=${BULK_SECS:-6} LOGIN_SECS=${LOGIN_SECS:-6}
mkdir -p benches/out
OUT=${OUT:-benches/out/scale-$(date +%Y%m%d-%H%M%S).json}
cargo build --release --quiet -p ssh-edge-loadtest
LT=$PWD/target/release/ssh-edge-loadtest
# shellcheck source=benches/lib.sh
. benches/lib.sh
export SSH_EDGE_LIMITS__PER_SOURCE_MAX=0 SSH_EDGE_LIMITS__PER_SOURCE_RATE=0
export SSH_EDGE_LIMITS__PREAUTH_START=4096 SSH_EDGE_LIMITS__PREAUTH_FULL=8192
# The generator gives a login 30 s; so does the edge's backend login (sshd queues them).
export SSH_EDGE_BACKEND__CONNECT_TIMEOUT_SECS=30
ROWS=$(mktemp /tmp/ssh-edge-scale.XXXXXX)
DEMO_DIRS+=("$ROWS")
TCK=$(getconf CLK_TCK)

py() { python3 -c "import json,sys; r=json.loads(sys.argv[1]); print($2)" "$1"; }
# CPU seconds of a process itself (utime+stime), and of its reaped children (cutime+cstime).
cpu_self() { awk -v t="$TCK" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$1/stat"; }
cpu_reaped() { awk -v t="$TCK" '{ printf "%.2f", ($16 + $17) / t }' "/proc/$1/stat"; }
pss_kib() { awk '/^Pss:/ { print $2 }' "/proc/$1/smaps_rollup"; }
active() { curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" | awk '/^ssh_edge_sessions_active / { print $2 }'; }
wait_active_zero() {
  for _ in $(seq 600); do [ "$(active)" = 0 ] && return 0; sleep 0.1; done
  echo "timed out waiting for the edge's sessions to end (have $(active))" >&2; return 1
}
# sshd back to no per-connection children (the previous run's sessions all ended).
settle() {
  for _ in $(seq 3000); do
    [ -z "$(cat /proc/"$SSHD_PID"/task/*/children 2>/dev/null | tr -d ' ')" ] && return 0
    sleep 0.1
  done
  echo "sshd still has per-connection processes after 300 s" >&2; return 1
}
demo() {
  start_demo
  SSHD_PID=$(cat "$DEMO_DIR/sshd.pid")
  edge=(--addr "127.0.0.1:$SSH_PORT" --user training-job-abc1234-0 --key "$USER_KEY" --quiet --json)
  direct=(--addr "127.0.0.1:$SSHD_PORT" --user "$LOGIN_USER" --key "$USER_KEY" --quiet --json)
}
# A run's failures, e.g. "connect 3 (connection refused ×3)", or "-".
errs() { py "$1" "', '.join(f\"{k} {v['count']}\" + (' (' + ', '.join(f'{x} ×{n}' for x, n in v['reasons'].items()) + ')' if v['reasons'] else '') for k, v in r['error_details'].items()) or '-'"; }
# Runs the generator; a run that fails outright still yields its report.
lt() { "$LT" "$@" || true; }

echo "== scale, $(nproc) cores: idle ${SIZES[*]} (ramp $RAMP/s), bulk ${STREAMS[*]} streams, logins ${WORKERS[*]} workers =="
printf '\n%-7s | %-31s | %-27s | %s\n' idle "edge (front C)" "direct sshd" "edge/sshd"
printf '%-7s | %5s %10s %6s %8s | %5s %10s %10s | %s\n' sessions held "KiB/sess" "MiB" "after" held "KiB/sess" "MiB" "ratio"
for n in "${SIZES[@]}"; do
  demo
  d=$(lt "${direct[@]}" --mode idle --connections "$n" --ramp-per-sec "$RAMP" --duration-secs "$HOLD_SECS" --watch-pid "$SSHD_PID")
  settle
  e=$(lt "${edge[@]}" --mode idle --connections "$n" --ramp-per-sec "$RAMP" --duration-secs "$HOLD_SECS" --watch-pid "$DEMO" --exclude-pid "$SSHD_PID")
  wait_active_zero
  sleep "$AFTER_SECS"
  after=$(pss_kib "$DEMO")
  stop_demo
  python3 - "$n" "$e" "$d" "$after" >>"$ROWS" <<'EOF'
import json, sys
n, e, d, after = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
me, md = e.get("memory") or {}, d.get("memory") or {}
print(json.dumps({"part": "idle", "sessions": n,
  "edge": {"held": me.get("held_sessions"), "per_session_bytes": me.get("per_session_bytes"),
           "before_bytes": me.get("before_bytes"), "held_bytes": me.get("held_bytes"),
           "after_bytes": after * 1024, "errors": e["error_details"]},
  "direct": {"held": md.get("held_sessions"), "per_session_bytes": md.get("per_session_bytes"),
             "held_bytes": md.get("held_bytes"), "errors": d["error_details"]}}))
EOF
  py "$(tail -1 "$ROWS")" "'%-7d | %5s %10.1f %6.1f %5.1f MiB | %5s %10.1f %10.1f | %.3f' % (r['sessions'], r['edge']['held'], (r['edge']['per_session_bytes'] or 0)/1024, (r['edge']['held_bytes'] or 0)/2**20, r['edge']['after_bytes']/2**20, r['direct']['held'], (r['direct']['per_session_bytes'] or 0)/1024, (r['direct']['held_bytes'] or 0)/2**20, (r['edge']['per_session_bytes'] or 0)/max(r['direct']['per_session_bytes'] or 1, 1))"
  [ "$(errs "$e")" = - ] || echo "  edge errors: $(errs "$e")" >&2
  [ "$(errs "$d")" = - ] || echo "  direct errors: $(errs "$d")" >&2
done

echo "(idle: ${SECONDS} s so far)" >&2
demo
printf '\n%-7s | %-29s | %-22s | %s\n' bulk "edge (front C)" "direct sshd" "edge/direct"
printf '%-7s | %9s %8s %10s | %9s %12s | %s\n' streams "MiB/s" "CPU s" "CPU s/GiB" "MiB/s" "sshd s/GiB" "MiB/s ratio"
for s in "${STREAMS[@]}"; do
  c0=$(cpu_reaped "$SSHD_PID")
  d=$(lt "${direct[@]}" --mode bulk --connections "$s" --duration-secs "$BULK_SECS")
  settle
  c1=$(cpu_reaped "$SSHD_PID") e0=$(cpu_self "$DEMO")
  e=$(lt "${edge[@]}" --mode bulk --connections "$s" --duration-secs "$BULK_SECS")
  e1=$(cpu_self "$DEMO")
  settle
  python3 - "$s" "$e" "$d" "$e0" "$e1" "$c0" "$c1" >>"$ROWS" <<'EOF'
import json, sys
s, e, d = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
e0, e1, c0, c1 = map(float, sys.argv[4:8])
gib = lambda r: r["bytes_sent"] / 2**30
print(json.dumps({"part": "bulk", "streams": s,
  "edge": {"mib_per_sec": e["mib_per_sec"], "bytes_verified": e["bytes_verified"],
           "cpu_secs": e1 - e0, "cpu_secs_per_gib": (e1 - e0) / gib(e) if gib(e) else None,
           "errors": e["error_details"]},
  "direct": {"mib_per_sec": d["mib_per_sec"], "bytes_verified": d["bytes_verified"],
             "sshd_cpu_secs_per_gib": (c1 - c0) / gib(d) if gib(d) else None,
             "errors": d["error_details"]}}))
EOF
  py "$(tail -1 "$ROWS")" "'%-7d | %9.1f %8.2f %10s | %9.1f %12s | %.3f' % (r['streams'], r['edge']['mib_per_sec'], r['edge']['cpu_secs'], '%.2f' % r['edge']['cpu_secs_per_gib'] if r['edge']['cpu_secs_per_gib'] is not None else '-', r['direct']['mib_per_sec'], '%.2f' % r['direct']['sshd_cpu_secs_per_gib'] if r['direct']['sshd_cpu_secs_per_gib'] is not None else '-', r['edge']['mib_per_sec'] / max(r['direct']['mib_per_sec'], 1e-9))"
  [ "$(errs "$e")" = - ] || echo "  edge errors: $(errs "$e")" >&2
  [ "$(errs "$d")" = - ] || echo "  direct errors: $(errs "$d")" >&2
done

echo "(bulk: ${SECONDS} s so far)" >&2
printf '\n%-7s | %-37s | %-36s | %s\n' logins "edge (front C)" "direct sshd" "edge/direct"
printf '%-7s | %7s %8s %8s %10s | %7s %8s %8s %10s | %s\n' workers "/s" "p50 ms" "p99 ms" "CPU ms/1" "/s" "p50 ms" "p99 ms" "sshd ms/1" "/s ratio"
for w in "${WORKERS[@]}"; do
  c0=$(cpu_reaped "$SSHD_PID")
  d=$(lt "${direct[@]}" --mode logins --connections "$w" --duration-secs "$LOGIN_SECS")
  settle
  c1=$(cpu_reaped "$SSHD_PID") e0=$(cpu_self "$DEMO")
  e=$(lt "${edge[@]}" --mode logins --connections "$w" --duration-secs "$LOGIN_SECS")
  e1=$(cpu_self "$DEMO")
  settle
  python3 - "$w" "$e" "$d" "$e0" "$e1" "$c0" "$c1" >>"$ROWS" <<'EOF'
import json, sys
w, e, d = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
e0, e1, c0, c1 = map(float, sys.argv[4:8])
lat = lambda r, k: (r.get("latency") or {}).get(k)
print(json.dumps({"part": "logins", "workers": w,
  "edge": {"per_sec": e["per_sec"], "ok": e["ok"], "p50_ms": lat(e, "p50_ms"), "p99_ms": lat(e, "p99_ms"),
           "cpu_ms_per_login": 1000 * (e1 - e0) / e["ok"] if e["ok"] else None, "errors": e["error_details"]},
  "direct": {"per_sec": d["per_sec"], "ok": d["ok"], "p50_ms": lat(d, "p50_ms"), "p99_ms": lat(d, "p99_ms"),
             "sshd_cpu_ms_per_login": 1000 * (c1 - c0) / d["ok"] if d["ok"] else None, "errors": d["error_details"]}}))
EOF
  py "$(tail -1 "$ROWS")" "'%-7d | %7.1f %8s %8s %10s | %7.1f %8s %8s %10s | %.3f' % (r['workers'], r['edge']['per_sec'], *[('%.1f' % v) if v is not None else '-' for v in (r['edge']['p50_ms'], r['edge']['p99_ms'], r['edge']['cpu_ms_per_login'])], r['direct']['per_sec'], *[('%.1f' % v) if v is not None else '-' for v in (r['direct']['p50_ms'], r['direct']['p99_ms'], r['direct']['sshd_cpu_ms_per_login'])], r['edge']['per_sec'] / max(r['direct']['per_sec'], 1e-9))"
  [ "$(errs "$e")" = - ] || echo "  edge errors: $(errs "$e")" >&2
  [ "$(errs "$d")" = - ] || echo "  direct errors: $(errs "$d")" >&2
done
stop_demo

python3 - "$ROWS" "$OUT" "$RAMP" <<'EOF'
import json, os, platform, sys, time
rows = [json.loads(l) for l in open(sys.argv[1])]
out = {"date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cores": os.cpu_count(),
       "kernel": platform.release(), "ramp_per_sec": float(sys.argv[3])}
for part in ("idle", "bulk", "logins"):
    out[part] = [{k: v for k, v in r.items() if k != "part"} for r in rows if r["part"] == part]
json.dump(out, open(sys.argv[2], "w"), indent=1)
EOF
echo "wrote $OUT (${SECONDS} s)"
if python3 -c 'import matplotlib' 2>/dev/null; then
  python3 benches/scale_plot.py "$OUT" "${OUT%.json}.png"
fi
