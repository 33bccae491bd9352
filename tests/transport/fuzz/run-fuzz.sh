#!/bin/sh
# Builds the shared-memory ring's libFuzzer target (fuzz_ring.c) with
# clang's -fsanitize=fuzzer,address,undefined from the ring's sources and
# the two core files they use, then fuzzes for MOIRAI_FUZZ_SECONDS
# (default 60). Exits 77 (skipped) when clang or libFuzzer is missing.
#
#   run-fuzz.sh <source root> <work directory>
#
# The corpus stays in <work directory>/corpus between runs; a crash leaves
# its input there as crash-* and fails the run.
set -eu
src=$1
work=$2
seconds=${MOIRAI_FUZZ_SECONDS:-60}

cc=
for c in clang-14 clang; do
    if command -v "$c" >/dev/null 2>&1; then cc=$c; break; fi
done
if [ -z "$cc" ]; then
    echo "SKIP: no clang (install clang-14 and libclang-rt-14-dev)"
    exit 77
fi
mkdir -p "$work/corpus"
probe="$work/probe.c"
echo 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }' > "$probe"
if ! "$cc" -fsanitize=fuzzer "$probe" -o "$work/probe" 2>/dev/null; then
    echo "SKIP: $cc cannot link -fsanitize=fuzzer (install libclang-rt-14-dev)"
    exit 77
fi

t=$src/moirai-transport
core=$src/moirai-core
"$cc" -g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
    -I"$t/include" -I"$t/src" -I"$core/include" -I"$src/common" \
    "$src/tests/transport/fuzz/fuzz_ring.c" \
    "$t/src/ring.c" "$t/src/ring_consume.c" "$t/src/ring_produce.c" "$t/src/ring_wait.c" \
    "$core/src/alloc.c" "$core/src/clock.c" \
    -o "$work/fuzz_ring"

cd "$work"
echo "fuzzing the ring's consumer-side validation for ${seconds} s"
exec ./fuzz_ring -max_total_time="$seconds" -max_len=12000 -timeout=10 \
    -print_final_stats=1 corpus
