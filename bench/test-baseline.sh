#!/bin/sh
# Tests moirai-bench's regression detection (bench/baseline.h) on real runs
# of one cheap case: a baseline it stays within passes, one it is far
# beyond fails with exit status 3 after two more measurements, a malformed
# one is refused before anything runs, and --write-baseline records and
# widens bands.
#
# Usage: test-baseline.sh PATH/TO/moirai-bench
set -u
bench=$1
dir=$(mktemp -d "${TMPDIR:-/tmp}/moirai-baseline.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM
run="$bench --quick --rounds 1 --json --suite core --case park_unpark_pingpong"
failures=0

check() { # check WHAT EXPECTED ACTUAL
    if [ "$2" = "$3" ]; then
        echo "ok: $1"
    else
        echo "FAIL: $1 (expected $2, got $3)"
        failures=$((failures + 1))
    fi
}

# Recording: two runs give one entry with runs 2 and low <= high.
$run --write-baseline "$dir" >/dev/null 2>&1
check "first --write-baseline exits 0" 0 $?
$run --write-baseline "$dir" >/dev/null 2>&1
check "second --write-baseline exits 0" 0 $?
entry=$(grep -v '^#' "$dir/core.txt")
set -- $entry
check "one entry recorded" "park_unpark_pingpong pthread 2" "$1 $2 $5"
check "low <= high" 1 "$(awk -v l="$3" -v h="$4" 'BEGIN { print (l <= h) ? 1 : 0 }')"

# A band far above any measured ratio: nothing to report.
echo "park_unpark_pingpong pthread 0.001 1000 1" >"$dir/core.txt"
$run --baseline "$dir" >/dev/null 2>"$dir/err"
check "within the band exits 0" 0 $?
check "within the band reports no regression" 0 "$(grep -c REGRESSION "$dir/err")"
check "the comparison is counted" 1 "$(grep -c '1 ratios compared' "$dir/err")"

# A band far below: a regression, confirmed by measuring twice more.
echo "park_unpark_pingpong pthread 0.00001 0.00001 1" >"$dir/core.txt"
$run --baseline "$dir" >"$dir/out" 2>"$dir/err"
check "a regression exits 3" 3 $?
check "the regression is named" 1 "$(grep -c 'REGRESSION core/park_unpark_pingpong vs pthread' "$dir/err")"
check "the JSON output keeps one line per implementation" 2 "$(wc -l <"$dir/out")"

# Malformed files: refused with the file and line, before any case runs.
for bad in "park_unpark_pingpong pthread" "park_unpark_pingpong pthread 2 1 1" \
    "park_unpark_pingpong pthread x 1 1" "park_unpark_pingpong pthread 1 2 0" \
    "park_unpark_pingpong pthread 1 2 3 extra"; do
    printf '# comment\n\n%s\n' "$bad" >"$dir/core.txt"
    $run --baseline "$dir" >"$dir/out" 2>"$dir/err"
    check "malformed '$bad' exits 2" 2 $?
    check "malformed '$bad' names the line" 1 "$(grep -c 'core.txt:3: malformed' "$dir/err")"
    check "malformed '$bad' runs nothing" 0 "$(wc -l <"$dir/out")"
done
printf 'park_unpark_pingpong pthread 1 2 1\npark_unpark_pingpong pthread 1 2 1\n' >"$dir/core.txt"
$run --baseline "$dir" >/dev/null 2>"$dir/err"
check "a repeated entry exits 2" 2 $?

# No file for the suite: nothing compared, not an error.
rm -f "$dir/core.txt"
$run --baseline "$dir" >/dev/null 2>"$dir/err"
check "no baseline file exits 0" 0 $?
check "no baseline file compares nothing" 1 "$(grep -c '0 ratios compared' "$dir/err")"

# The two options together are a usage error.
$run --baseline "$dir" --write-baseline "$dir" >/dev/null 2>&1
check "--baseline with --write-baseline exits 2" 2 $?

echo "$failures failed"
[ "$failures" -eq 0 ]
