#!/bin/sh
# Builds moirai-async's aarch64 context switch (context.c and
# context_aarch64.S) with Debian's cross compiler, links it with
# test_context_aarch64.c, and runs the program under qemu-user.
#
# The program checks, across 100 000 round trips each: value passing in
# order, the preservation of x19-x28, x29 and d8-d15 on both sides of a
# switch, FPCR (rounding mode and the arithmetic) kept per context and
# inherited by fresh contexts, and the first entry's argument and stack
# alignment. It prints one line per check and exits non-zero on the first
# failure.
#
# Usage: run.sh [build-dir]   (default: a temporary directory)
# Needs: aarch64-linux-gnu-gcc (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross)
#        and qemu-aarch64 (qemu-user).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src="$here/../../../moirai-async/src"
cc=${AARCH64_CC:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
sysroot=${AARCH64_SYSROOT:-/usr/aarch64-linux-gnu}

for tool in "$cc" "$qemu"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "run.sh: $tool not found" >&2
        exit 1
    fi
done

if [ $# -ge 1 ]; then
    out=$1
    mkdir -p "$out"
else
    out=$(mktemp -d "${TMPDIR:-/tmp}/moirai-aarch64.XXXXXX")
    trap 'rm -rf "$out"' EXIT INT TERM
fi

"$cc" -std=gnu11 -O2 -g -Wall -Wextra -Werror -I"$src" \
    -o "$out/test_context_aarch64" \
    "$here/test_context_aarch64.c" "$src/context.c" "$src/context_aarch64.S"
echo "built $out/test_context_aarch64 with $("$cc" -dumpfullversion 2>/dev/null || echo "$cc")"
# The assembly must not ask for an executable stack.
if command -v aarch64-linux-gnu-readelf >/dev/null 2>&1; then
    if aarch64-linux-gnu-readelf -lW "$out/test_context_aarch64" | grep GNU_STACK | grep -q RWE; then
        echo "FAIL: the program has an executable stack" >&2
        exit 1
    fi
    echo "ok: non-executable stack (GNU_STACK without E)"
fi
"$qemu" -L "$sysroot" "$out/test_context_aarch64"
