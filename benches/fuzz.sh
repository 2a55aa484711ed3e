#!/usr/bin/env bash
# Coverage-guided fuzzing (libFuzzer) of every parser fed by the network or by operators: host
# names, front B's preamble, JWT verification, token-key PEM/DER, the config, the issuer's JSON
# bodies, the PROXY header. Target bodies: src/fuzz_entry.rs; seeds: fuzz/corpus/<target>/.
#
#   bash benches/fuzz.sh [SECONDS] [TARGET ...]     (default 60 s per target, every target)
#
# Stable toolchain, no cargo-fuzz: the fuzz/ crate links libFuzzer through the libfuzzer-sys
# crate, and fuzz/rustc-wrapper.sh (as RUSTC_WRAPPER) adds SanitizerCoverage through plain
# codegen flags (-Cpasses=sancov-module, -Cllvm-args=-sanitizer-coverage-*) plus debug assertions
# and overflow checks, to ssh-edge and the targets only. Dependencies are not instrumented: they
# are the test build's own artifacts, reused from the same target directory, so the first build
# costs libFuzzer's C++ and a few crates, not the whole tree. (No AddressSanitizer: it needs a
# nightly rustc, and the code under test is safe Rust.) The coverage figures are therefore
# those of ssh-edge's own code.
#
# Per target it prints executions, exec/s, libFuzzer's final cov (edges) and ft (features),
# the corpus it ended with (libFuzzer's corp: entries/bytes) and the crashes found. A crashing, hanging
# (-timeout, 10 s) or memory-exceeding (-rss_limit_mb, 2048) input is saved to
# fuzz/artifacts/<target>/ and the script exits 1. New inputs go to a scratch corpus under
# target/fuzz/ (cleared each run unless KEEP_CORPUS=1), never into the committed seeds.
# Talks to nothing on the network: the targets are pure, and the build is --offline once
# `cargo fetch` (or any earlier build) has the crates.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-60}
[ $# -gt 0 ] && shift
all=(hostname token_preamble jwt token_key config issuer_json proxy)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$root/target}
export RUSTC_WRAPPER=$root/fuzz/rustc-wrapper.sh
build_start=$(date +%s)
# The root lock file, so every shared crate is the version (and artifact) the tests built; cargo
# adds libfuzzer-sys to the copy.
cp Cargo.lock fuzz/Cargo.lock
# ssh-edge's optimisation level (FUZZ_OPT, default 2 as for every dependency): 0 builds in a
# quarter of the time and runs at about half the exec/s, the better trade for a short smoke.
opt=(--config "profile.dev.package.ssh-edge.opt-level=${FUZZ_OPT:-2}")
(cd fuzz && { cargo build --offline --bins -q "${opt[@]}" 2>/dev/null || cargo build --bins -q "${opt[@]}"; })
echo "fuzz build: $(($(date +%s) - build_start)) s"

work=$CARGO_TARGET_DIR/fuzz
mkdir -p "$work"
failed=()
printf '%-15s %10s %8s %6s %7s %14s %7s\n' target executions exec/s cov ft corpus crashes
for t in "${targets[@]}"; do
    bin=$CARGO_TARGET_DIR/debug/$t
    [ -x "$bin" ] || { echo "no fuzz target $t (one of: ${all[*]})" >&2; exit 2; }
    scratch=$work/corpus-$t
    [ "${KEEP_CORPUS:-0}" = 1 ] || rm -rf "$scratch"
    mkdir -p "$scratch" "fuzz/artifacts/$t"
    log=$work/$t.log
    before=$(find "fuzz/artifacts/$t" -type f | wc -l)
    status=0
    "$bin" "$scratch" "fuzz/corpus/$t" \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -max_len=20000 -artifact_prefix="fuzz/artifacts/$t/" >"$log" 2>&1 || status=$?
    crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
    stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }
    # The last status line, e.g. "#123 DONE cov: 456 ft: 789 corp: 42/3Kb ... exec/s: 99".
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    field() { sed -nE "s/.* $1 ([^ ]+).*/\1/p" <<<"$last"; }
    # The final stats, or (when libFuzzer's output was cut at exit) the last status line's.
    execs=$(stat number_of_executed_units)
    [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
    rate=$(stat average_exec_per_sec)
    [ -n "$rate" ] || rate=$(field exec/s:)
    printf '%-15s %10s %8s %6s %7s %14s %7s\n' "$t" "$execs" \
        "$rate" "$(field cov:)" "$(field ft:)" \
        "$(field corp:)" \
        "$crashes"
    if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
        failed+=("$t")
        echo "  $t: libFuzzer exited $status; log $log; inputs in fuzz/artifacts/$t/:" >&2
        grep -E 'ERROR|panicked|SUMMARY|Test unit written' "$log" | head -8 >&2 || true
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in ${failed[*]}" >&2
    exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each, no findings"
