#!/bin/sh
# Builds a libFuzzer target with clang's -fsanitize=fuzzer,address,undefined
# and fuzzes it for MOIRAI_FUZZ_SECONDS (default 60). Exits 77 (skipped)
# when clang or libFuzzer is missing. Targets:
#   ring  (default) fuzz_ring.c: the shared-memory ring's consumer side,
#         from the ring's sources and the two core files they use;
#   frame fuzz_frame.c: the remote-task frame decoder (frame.c).
#
#   run-fuzz.sh <source root> <work directory> [ring|frame]
#
# The corpus stays in <work directory>/corpus between runs; a crash leaves
# its input there as crash-* and fails the run.
set -eu
src=$1
work=$2
target=${3:-ring}
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
flags="-g -O1 -std=gnu11 -D_GNU_SOURCE -Wall -Wextra -Werror \
    -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
cd "$work"
case $target in
ring)
    "$cc" $flags -I"$t/include" -I"$t/src" -I"$core/include" -I"$src/common" \
        "$src/tests/transport/fuzz/fuzz_ring.c" \
        "$t/src/ring.c" "$t/src/ring_consume.c" "$t/src/ring_produce.c" "$t/src/ring_wait.c" \
        "$core/src/alloc.c" "$core/src/clock.c" \
        -o "$work/fuzz_ring"
    echo "fuzzing the ring's consumer-side validation for ${seconds} s"
    exec ./fuzz_ring -max_total_time="$seconds" -max_len=12000 -timeout=10 \
        -print_final_stats=1 corpus
    ;;
frame)
    "$cc" $flags -I"$t/src" \
        "$src/tests/transport/fuzz/fuzz_frame.c" "$t/src/frame.c" \
        -o "$work/fuzz_frame"
    echo "fuzzing the remote-task frame decoder for ${seconds} s"
    exec ./fuzz_frame -max_total_time="$seconds" -max_len=70000 -timeout=10 \
        -print_final_stats=1 corpus
    ;;
*)
    echo "unknown fuzz target $target" >&2
    exit 2
    ;;
esac
