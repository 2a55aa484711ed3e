#!/usr/bin/env bash
# Medians of several benches/throughput.sh runs, for one build or several compared in one sitting.
#
#   bash benches/compare.sh [BIN ...]     (default: target/release/ssh-edge, built first)
#
# Runs throughput.sh RUNS times (default 3) per binary, alternating the binaries run by run so
# that a noisy spell of the machine hits every build alike, then prints for each binary, path
# and direction the median MiB/s, the median ratio to direct (each run's own direct), and the
# median CPU seconds per GiB of the hop (the edge) and of the relay (`ssh-edge connect`).
# Takes throughput.sh's knobs: MIB (default 1024), PIN=1, PATHS, CIPHER. Writes every run's
# output to OUT_DIR (default benches/out/compare-<date>/, not committed). Loopback only.
#
# Example, a change against the build before it (the old one built in a worktree):
#   git worktree add /tmp/base HEAD~1 && (cd /tmp/base && cargo build --release)
#   PIN=1 bash benches/compare.sh /tmp/base/target/release/ssh-edge target/release/ssh-edge
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-3}
MIB=${MIB:-1024}
if [ $# -eq 0 ]; then
  cargo build --release --quiet --bin ssh-edge
  set -- "$PWD/target/release/ssh-edge"
fi
for bin in "$@"; do [ -x "$bin" ] || { echo "not an executable: $bin" >&2; exit 1; }; done
OUT_DIR=${OUT_DIR:-benches/out/compare-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT_DIR"

for run in $(seq "$RUNS"); do
  i=0
  for bin in "$@"; do
    i=$((i + 1))
    out="$OUT_DIR/bin$i-run$run.txt"
    echo "run $run/$RUNS, binary $i ($bin)" >&2
    EDGE_BIN=$(realpath "$bin") bash benches/throughput.sh "$MIB" >"$out" 2>&1 \
      || { echo "throughput.sh failed, see $out" >&2; tail -5 "$out" >&2; exit 1; }
  done
done

python3 - "$OUT_DIR" "$RUNS" "$@" <<'EOF'
import re, statistics, sys
out_dir, runs, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
line = re.compile(r"^(\S+)\s+(up|down)\s+([\d.]+) MiB/s\s+hop CPU\s+([\d.]+) s/GiB(?:\s+relay CPU\s+([\d.]+) s/GiB)?")
print(f"== median of {runs} runs per binary ==")
print(f"{'binary':<7}{'path':<9}{'dir':<6}{'MiB/s':>8}{'ratio':>8}{'hop s/GiB':>11}{'relay s/GiB':>13}")
for i, _ in enumerate(bins, 1):
    rows = {}
    for run in range(1, runs + 1):
        got = {}
        for text in open(f"{out_dir}/bin{i}-run{run}.txt"):
            m = line.match(text)
            if m:
                got[(m[1], m[2])] = (float(m[3]), float(m[4]), float(m[5]) if m[5] else None)
        for (path, d), (rate, hop, relay) in got.items():
            direct = got.get(("direct", d))
            if direct is None:
                sys.exit(f"run {run} of binary {i} has no direct {d} row")
            rows.setdefault((path, d), []).append((rate, rate / direct[0], hop, relay))
    for (path, d), vals in rows.items():
        med = lambda k: statistics.median(v[k] for v in vals)
        relay = [v[3] for v in vals if v[3] is not None]
        relay_s = f"{statistics.median(relay):13.2f}" if relay else f"{'-':>13}"
        hop = f"{med(2):11.2f}" if path != "direct" else f"{'-':>11}"
        print(f"{i:<7}{path:<9}{d:<6}{med(0):8.1f}{med(1):8.3f}{hop}{relay_s}")
for i, b in enumerate(bins, 1):
    print(f"binary {i}: {b}")
EOF
