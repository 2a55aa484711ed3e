#!/usr/bin/env bash
# Throughput through the edge versus direct OpenSSH to the same sshd, in one run.
#
#   bash benches/throughput.sh [MiB]      (default 1024 MiB each way per path)
#
# Builds the release binary, starts `ssh-edge demo` (a real loopback sshd behind the edge),
# then pushes MiB up (`dd | ssh 'cat >/dev/null'`) and down (`ssh 'dd' | cat >/dev/null`)
# directly to sshd, through front A (TLS+SNI, `ssh-edge connect` as ProxyCommand, SSH terminated),
# front B (token preamble via `ssh-edge connect --token-file`, passthrough) and front C (plain
# SSH, terminated), and through an OpenSSH jump host (a second loopback sshd, `ssh -W` as
# ProxyCommand, as ProxyJump does), all with aes128-gcm. Prints MiB/s and the ratio to direct,
# the hop's CPU seconds per GiB forwarded (the edge, or the jump sshd) and, for fronts A and
# B, those of the client-side relay
# (`ssh-edge connect`, the ProxyCommand). Loopback only; stops by itself.
#
# PATHS="direct front_c" measures only those paths (direct is always measured: the ratios need
# it). PIN=1 pins the edge to CPU 1 and everything else (dd, ssh, ssh-edge connect, sshd) to CPU 0,
# for direct and edged paths alike: on a 2-core machine that separates "the edge is slow" from
# "four processes share two cores", as when the edge runs on its own machine.
set -euo pipefail
cd "$(dirname "$0")/.."
MIB=${1:-1024}
CIPHER=${CIPHER:-aes128-gcm@openssh.com}

# shellcheck source=benches/lib.sh
. benches/lib.sh
[ "${PIN:-0}" = 1 ] && export EDGE_CPUS=1
start_demo

# The jump host: a second sshd like the lab's, on its own port, trusted like the backend.
JUMP_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s/^Port .*/Port $JUMP_PORT/" -e "s|^PidFile .*|PidFile $DIR/jump.pid|" "$DEMO_DIR/sshd_config" >"$DIR/jump_config"
/usr/sbin/sshd -f "$DIR/jump_config" -E "$DIR/jump.log"
for _ in $(seq 50); do [ -s "$DIR/jump.pid" ] && break; sleep 0.1; done
EXTRA_PIDS+=("$(cat "$DIR/jump.pid")")
JUMP_PID=$(cat "$DIR/jump.pid")
head -1 "$DEMO_DIR/backend_known_hosts" | sed "s/^\[127.0.0.1\]:[0-9]*/[127.0.0.1]:$JUMP_PORT/" >>"$DEMO_DIR/backend_known_hosts"

RUN=()
if [ "${PIN:-0}" = 1 ]; then
  taskset -a -pc 1 "$JUMP_PID" >/dev/null
  taskset -a -pc 1 "$DEMO" >/dev/null
  taskset -a -pc 0 "$(cat "$DEMO_DIR/sshd.pid")" >/dev/null
  RUN=(taskset -c 0)
fi

HOST=training-job-abc1234-0.ssh.baseten.co
COMMON=(-F "$SSH_CONFIG" -o BatchMode=yes -c "$CIPHER" -o Compression=no)
direct=(ssh "${COMMON[@]}" -p "$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" "$LOGIN_USER@127.0.0.1")
# The relay's CPU: the ProxyCommand runs under bash, whose `times` reports its children. ssh
# sends its ProxyCommand SIGHUP at the end; ignored here, the relay ends when the edge closes.
RELAY_TIMES=$DIR/relay.times
relay() { echo "ProxyCommand=bash -c 'trap \"\" HUP; $EXE connect $* %h; times > $RELAY_TIMES.tmp; mv $RELAY_TIMES.tmp $RELAY_TIMES'"; }
front_a=(ssh "${COMMON[@]}" -o "$(relay --edge localhost:$TLS_PORT --ca-file $DEMO_DIR/tls-ca.pem)" "$HOST")
front_c=(ssh "${COMMON[@]}" "training-job-abc1234-0@127.0.0.1")
jump=(ssh "${COMMON[@]}" -p "$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts"
  -o "ProxyCommand=ssh -F $SSH_CONFIG -o BatchMode=yes -c $CIPHER -o UserKnownHostsFile=$DEMO_DIR/backend_known_hosts -p $JUMP_PORT -W %h:%p $LOGIN_USER@127.0.0.1"
  "$LOGIN_USER@127.0.0.1")
front_b=(ssh "${COMMON[@]}" -o "$(relay --edge localhost:$TLS_PORT --ca-file $DEMO_DIR/tls-ca.pem --token-file $TOKEN_FILE)"
  -o "HostKeyAlias=[127.0.0.1]:$SSHD_PORT" -o UserKnownHostsFile="$DEMO_DIR/backend_known_hosts" -l "$LOGIN_USER" "$HOST")

# The edge's CPU; for the jump path the jump sshd's, whose per-connection children it reaps
# (cutime + cstime).
cpu_ticks() {
  if [ "${1:-}" = jump ]; then awk '{print $14 + $15 + $16 + $17}' "/proc/$JUMP_PID/stat"
  else awk '{print $14 + $15}' "/proc/$DEMO/stat"; fi
}
# CPU seconds of the relay's last run: the children line of bash's `times` ("0m1.234s 0m0.5s").
relay_cpu() { awk 'NR == 2 { gsub(/s/, "", $1); gsub(/s/, "", $2); split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$RELAY_TIMES"; }
now() { date +%s.%N; }

PATHS=${PATHS:-direct jump front_a front_b front_c}
case " $PATHS " in *" direct "*) ;; *) PATHS="direct $PATHS" ;; esac
# Warm up each path once (and fail early if one does not work).
for p in $PATHS; do
  declare -n cmd=$p
  out=$("${cmd[@]}" 'echo ok') || { echo "path $p does not work"; cat "$DIR/demo.err"; exit 1; }
  [ "$out" = ok ] || { echo "path $p: unexpected output $out"; exit 1; }
done

declare -A rate
measure() { # name direction
  local name=$1 dir=$2 t0 t1 c0 c1 relay_note=
  declare -n cmd=$name
  rm -f "$RELAY_TIMES"
  c0=$(cpu_ticks "$name"); t0=$(now)
  if [ "$dir" = up ]; then
    "${RUN[@]}" dd if=/dev/zero bs=1M count="$MIB" status=none | "${RUN[@]}" "${cmd[@]}" 'cat > /dev/null'
  else
    "${RUN[@]}" "${cmd[@]}" "dd if=/dev/zero bs=1M count=$MIB status=none" | "${RUN[@]}" cat > /dev/null
  fi
  t1=$(now)
  [ "$name" = jump ] && sleep 0.5  # the jump sshd reaps its child
  c1=$(cpu_ticks "$name")
  rate[$name.$dir]=$(awk -v m="$MIB" -v a="$t0" -v b="$t1" 'BEGIN { print m / (b - a) }')
  local cpu_per_gib
  cpu_per_gib=$(awk -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" -v m="$MIB" 'BEGIN { print c / hz / (m / 1024) }')
  # Only fronts A and B run the relay (a late file from the path before must not count).
  case $name in front_a | front_b) for _ in $(seq 50); do [ -s "$RELAY_TIMES" ] && break; sleep 0.1; done ;; esac
  if [[ $name == front_[ab] && -s $RELAY_TIMES ]]; then
    relay_note=$(awk -v c="$(relay_cpu)" -v m="$MIB" 'BEGIN { printf "   relay CPU %5.2f s/GiB", c / (m / 1024) }')
  fi
  printf '%-8s %-5s %8.1f MiB/s   hop CPU %5.2f s/GiB%s\n' "$name" "$dir" "${rate[$name.$dir]}" "$cpu_per_gib" "$relay_note"
}

echo "== $MIB MiB each way, cipher $CIPHER, $(nproc) cores, pinned: ${PIN:-0} =="
for dir in up down; do
  for p in $PATHS; do measure "$p" "$dir"; done
done
echo "== ratio to direct (targets: terminate >= 0.90, passthrough >= 0.95) =="
for dir in up down; do
  for p in $PATHS; do
    [ "$p" = direct ] && continue
    printf '%-8s %-5s %.3f\n' "$p" "$dir" "$(awk -v a="${rate[$p.$dir]}" -v b="${rate[direct.$dir]}" 'BEGIN { print a / b }')"
  done
done
