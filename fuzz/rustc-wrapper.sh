#!/bin/sh
# RUSTC_WRAPPER for the fuzz build: adds SanitizerCoverage (libFuzzer's coverage feedback) to
# ssh-edge and the fuzz targets only. Stable rustc accepts these as codegen flags; the
# dependencies stay as the test build made them and are reused from the same target directory.
rustc="$1"
shift
case "${CARGO_PKG_NAME:-}" in
ssh-edge | ssh-edge-fuzz)
    exec "$rustc" "$@" \
        -Cpasses=sancov-module \
        -Cllvm-args=-sanitizer-coverage-level=4 \
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
        -Cllvm-args=-sanitizer-coverage-pc-table \
        -Cllvm-args=-sanitizer-coverage-trace-compares \
        -Cdebug-assertions \
        -Coverflow-checks \
        --cfg fuzzing
    ;;
esac
exec "$rustc" "$@"
