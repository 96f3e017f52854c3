#!/usr/bin/env bash
# Runs pushloop's fuzz targets with cargo-fuzz (libFuzzer), each for SECONDS.
#
#   fuzz/run.sh                       # every target, 600 s each
#   SECONDS=60 fuzz/run.sh decoder handshake
#   SANITIZER=none fuzz/run.sh utf8   # without AddressSanitizer
#
# Only a stable toolchain is needed: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass the
# nightly-only flags it uses (-Zsanitizer, -Cpasses=sancov-module, ...). Extra libFuzzer
# flags can go in LIBFUZZER_ARGS (e.g. "-max_len=65536 -jobs=2").
# Crashes land in fuzz/artifacts/<target>/; the corpus grows in fuzz/corpus/<target>/
# (both gitignored). The hand-made seeds in fuzz/seeds/<target>/ are copied in first.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

# SECONDS is also bash's own clock: read it from the environment before it counts on.
seconds="$(printenv SECONDS || echo 600)"
sanitizer="${SANITIZER:-address}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(decoder handshake utf8)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz from crates.io" >&2
    cargo install --locked cargo-fuzz
fi

export RUSTC_BOOTSTRAP=1
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        cp -n seeds/"$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    san="$sanitizer"
    if ! cargo fuzz build --sanitizer "$san" "$target"; then
        # Should the sanitizer not build on this toolchain, fuzz without one.
        echo "== $target: build with sanitizer $san failed; trying --sanitizer none" >&2
        san=none
        cargo fuzz build --sanitizer "$san" "$target"
    fi
    echo "== $target: ${seconds}s, sanitizer $san" >&2
    # shellcheck disable=SC2086
    if ! cargo fuzz run --sanitizer "$san" "$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 ${LIBFUZZER_ARGS:-}; then
        echo "== $target: FAILED (see fuzz/artifacts/$target/)" >&2
        status=1
    fi
done
exit $status
