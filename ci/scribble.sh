#!/usr/bin/env bash
# The concurrent scribbler (tests/scribbler.rs) under AddressSanitizer, in a
# release build (so that overflow checks do not stop a run before ASan sees an
# out-of-bounds access), for SHMKIT_SCRIBBLE_MS (default 15000) per test.
# Needs a nightly toolchain; without one it says so and exits 0. std is not
# instrumented (no rust-src for -Zbuild-std here); shmkit and the test are.
#
#   ci/scribble.sh                     # the tests that are not #[ignore]d
#   ci/scribble.sh --include-ignored   # all of them
set -euo pipefail
cd "$(dirname "$0")/.."
if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "ci/scribble.sh: no nightly toolchain (cargo +nightly); skipping the ASan scribbler"
    exit 0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/asan"
export SHMKIT_SCRIBBLE_MS="${SHMKIT_SCRIBBLE_MS:-15000}"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1}"
RUSTFLAGS="-Zsanitizer=address" RUSTDOCFLAGS="-Zsanitizer=address" \
    cargo +nightly test --release --target x86_64-unknown-linux-gnu --test scribbler -- \
    --nocapture "$@"
