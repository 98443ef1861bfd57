#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets/*.rs) for FUZZ_SECONDS
# (default 30) seconds each. Needs a nightly toolchain; without one it says
# so and exits 0. Installs cargo-fuzz if it is missing. Exits non-zero if
# any target crashes, fails an assertion or hangs (-timeout), after running
# the others; the reproducer is in fuzz/artifacts/<target>/.
#
#   ci/fuzz.sh                       # all targets, 30 s each
#   FUZZ_SECONDS=600 ci/fuzz.sh raw_attach
#   cargo +nightly fuzz run segment_open fuzz/artifacts/segment_open/crash-...  # replay
#
# A reproducer worth keeping goes in fuzz/regressions/<target>/ (named for
# what it found): every run replays those first.
set -euo pipefail

cd "$(dirname "$0")/../fuzz"

secs="${FUZZ_SECONDS:-30}"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "ci/fuzz.sh: no nightly toolchain (cargo +nightly); skipping fuzzing"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "+ cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Segments a crashed run could not remove (each run removes its own).
cleanup() { rm -f /dev/shm/shmkit-fuzz-* 2>/dev/null || true; }
trap cleanup EXIT

failed=()
for t in "${targets[@]}"; do
    # Inputs that once found a defect (in the core or in the target's
    # model) run first, each once: fuzz/regressions/<target>/.
    if compgen -G "regressions/$t/*" >/dev/null; then
        echo "+ cargo +nightly fuzz run $t regressions/$t/*"
        if ! cargo +nightly fuzz run "$t" regressions/"$t"/* -- -timeout=10; then
            echo "ci/fuzz.sh: $t FAILED on a saved regression input" >&2
            failed+=("$t")
            continue
        fi
    fi
    # -timeout: an input that runs longer than 10 s is a hang, reported as
    #   a crash. -len_control=0: structured inputs need their full length
    #   from the start to reach deep states.
    echo "+ cargo +nightly fuzz run $t -- -max_total_time=$secs -timeout=10 -len_control=0 -max_len=1024"
    if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -timeout=10 -len_control=0 -max_len=1024; then
        echo "ci/fuzz.sh: $t: no crash in ${secs}s"
    else
        echo "ci/fuzz.sh: $t FAILED; reproducer in fuzz/artifacts/$t/" >&2
        failed+=("$t")
    fi
    cleanup
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "ci/fuzz.sh: failed: ${failed[*]}" >&2
    exit 1
fi
echo "ci/fuzz.sh: ${#targets[@]} targets, no crash"
