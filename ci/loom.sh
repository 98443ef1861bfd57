#!/usr/bin/env bash
# Runs every loom model (tests/loom_*.rs) in release mode, with debug
# assertions and a preemption bound, in a target directory of its own so
# that the `--cfg loom` build does not evict the normal one.
#
#   ci/loom.sh                         # all models
#   ci/loom.sh loom_lock               # one file
#   LOOM_MAX_PREEMPTIONS=3 ci/loom.sh  # a deeper (much slower) search
#
# A failing model prints loom's verdict (a deadlock, a causality violation
# on an UnsafeCell, or a failed assertion); rerun that test alone with
# LOOM_LOG=trace and LOOM_LOCATION=1 to see the interleaving.
set -euo pipefail

cd "$(dirname "$0")/.."

export RUSTFLAGS="--cfg loom -C debug_assertions"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/loom}"
# Loom's panics inside model threads are noisy with backtraces.
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

if [ "$#" -gt 0 ]; then
    tests=("$@")
else
    tests=()
    for f in tests/loom_*.rs; do
        [ -e "$f" ] || continue
        tests+=("$(basename "$f" .rs)")
    done
fi
if [ "${#tests[@]}" -eq 0 ]; then
    echo "ci/loom.sh: no tests/loom_*.rs found" >&2
    exit 1
fi

for t in "${tests[@]}"; do
    echo "+ RUSTFLAGS=\"$RUSTFLAGS\" LOOM_MAX_PREEMPTIONS=$LOOM_MAX_PREEMPTIONS cargo test --release --test $t"
    start=$(date +%s)
    cargo test --release --test "$t"
    echo "ci/loom.sh: $t passed in $(( $(date +%s) - start ))s"
done
