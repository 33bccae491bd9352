#!/usr/bin/env bash
# Counts the instructions of the allocation fast paths, Moirai's and
# mimalloc's, with callgrind: instructions per release + allocation pair
# in the churn loops of moirai-bench's pool_churn_1t and
# sizeclass_churn_1t (bench/mem/fastpath_driver.c). Instruction counts are
# exact and repeatable where timings on a shared machine are not; they do
# not show cache misses or dependency chains, so read them beside the
# times of moirai-bench.
#
#   scripts/callgrind-fastpath.sh [BUILD_DIR]     (default: build)
#
# BUILD_DIR must hold a build of moirai-mem (any options; an optimised one,
# -Dbuildtype=release or the default debugoptimized, is what is worth
# measuring). Prints one line per implementation and case:
#   case impl allocator_instr_per_pair loop_instr_per_pair
# allocator_instr_per_pair: every instruction executed outside the loop's
# own code, that is in the allocator (slow paths and PLT stubs included),
# per pair; loop_instr_per_pair: the whole measured loop, which adds the
# random slot choice, the size-table read and the calling code (Moirai's
# out-parameter and return-code test cost a few instructions there that
# mimalloc's pointer return does not).
#
# Needs valgrind and a C compiler; mimalloc (libmimalloc.so.2) is reported
# missing when absent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="$(cd "${1:-$root/build}" && pwd)"
iters="${MOIRAI_CALLGRIND_ITERS:-200000}"

for tool in valgrind callgrind_annotate cc; do
    if ! command -v "$tool" >/dev/null; then
        echo "callgrind-fastpath: $tool not found" >&2
        exit 1
    fi
done
if [ ! -e "$build/moirai-mem/libmoirai-mem.so" ]; then
    echo "callgrind-fastpath: no moirai-mem in $build (build it first)" >&2
    exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cc -O2 -std=gnu11 -o "$work/driver" "$root/bench/mem/fastpath_driver.c" \
    -I"$root/moirai-mem/include" -I"$build/moirai-mem/include" \
    -I"$root/moirai-core/include" -I"$build/moirai-core/include" \
    -L"$build/moirai-mem" -L"$build/moirai-core" \
    -Wl,-rpath,"$build/moirai-mem" -Wl,-rpath,"$build/moirai-core" \
    -lmoirai-mem -lmoirai-core -ldl -pthread

printf '%-10s %-9s %12s %12s\n' case impl alloc/pair loop/pair
for case in pool sizeclass; do
    for impl in moirai mimalloc; do
        out="$work/cg.$case.$impl"
        if ! valgrind --tool=callgrind --toggle-collect=measured_loop \
            --callgrind-out-file="$out" "$work/driver" "$impl" "$case" "$iters" \
            >"$work/log" 2>&1; then
            echo "callgrind-fastpath: $impl $case failed:" >&2
            tail -5 "$work/log" >&2
            printf '%-10s %-9s %12s %12s\n' "$case" "$impl" missing missing
            continue
        fi
        # Exclusive costs per function: everything counted ran inside
        # measured_loop(), so the allocator's share is the total less the
        # loop's own instructions.
        callgrind_annotate --threshold=100 "$out" >"$work/ann" 2>/dev/null
        awk -v iters="$iters" -v c="$case" -v i="$impl" '
            /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
            /:measured_loop / { gsub(",", "", $1); self = $1 }
            END { printf "%-10s %-9s %12.1f %12.1f\n", c, i, (total - self) / iters, total / iters }
        ' "$work/ann"
    done
done
