#!/usr/bin/env bash
# Throughput of an `ssh -L` tunnel through the edge versus the same tunnel straight to sshd, in
# one run. A loopback TCP source (python3) streams MiB (default 1024) to each connection; a
# reader pulls it through the tunnel and times it.
#
#   bash benches/tunnel.sh [MiB]
#
# Loopback only; stops by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
# shellcheck source=benches/lib.sh
. benches/lib.sh
start_demo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
SRC=$(free_port)
python3 - "$SRC" "$MIB" <<'PY' &
import socket, sys, threading
port, mib = int(sys.argv[1]), int(sys.argv[2])
block = bytes(1 << 20)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port)); srv.listen(16)
def serve(c):
    try:
        with c:
            for _ in range(mib):
                c.sendall(block)
    except OSError:
        pass  # readiness probes hang up at once
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
EXTRA_PIDS+=($!)

read_through() { # port -> MiB/s
  python3 - "$1" "$MIB" <<'PY'
import socket, sys, time
port, mib = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port)); t0 = time.time(); n = 0
buf = bytearray(1 << 20)
while True:
    k = s.recv_into(buf)
    if not k:
        break
    n += k
dt = time.time() - t0
assert n == mib << 20, f"got {n} bytes"
print(f"{mib / dt:.1f}")
PY
}

HOST=training-job-abc1234-0.ssh.baseten.co
COMMON=(-F "$SSH_CONFIG" -o BatchMode=yes -c aes128-gcm@openssh.com -N -o ExitOnForwardFailure=yes)
declare -A rate
for path in direct front_a front_c; do
  L=$(free_port)
  case $path in
    direct) ssh "${COMMON[@]}" -p "$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" -L "$L:127.0.0.1:$SRC" "$LOGIN_USER@127.0.0.1" & ;;
    front_a) ssh "${COMMON[@]}" -L "$L:127.0.0.1:$SRC" "$HOST" & ;;
    front_c) ssh "${COMMON[@]}" -L "$L:127.0.0.1:$SRC" "training-job-abc1234-0@127.0.0.1" & ;;
  esac
  EXTRA_PIDS+=($!)
  for _ in $(seq 100); do python3 -c "import socket; socket.create_connection(('127.0.0.1', $L)).close()" 2>/dev/null && break; sleep 0.1; done
  rate[$path]=$(read_through "$L")
  printf '%-8s -L tunnel  %8s MiB/s\n' "$path" "${rate[$path]}"
done
for path in front_a front_c; do
  printf '%-8s ratio to direct %.3f\n' "$path" "$(awk -v a="${rate[$path]}" -v b="${rate[direct]}" 'BEGIN { print a / b }')"
done
