#!/bin/sh
# Runs a mutant's test program (through tests/run-test.sh, given first) and
# passes its verdict on, with one exception: if the program did not run its
# tests at all (not built, could not start, died before Criterion's
# summary), this exits 0. The mutant tests are should_fail, so meson then
# reports an unexpected pass: a harness that failed to run must never count
# as a caught mutant.
set -u
out=$(mktemp "${TMPDIR:-/tmp}/moirai-mutant.XXXXXX") || exit 1
trap 'rm -f "$out"' EXIT INT TERM
"$@" >"$out" 2>&1
rc=$?
cat "$out"
if ! grep -q "Synthesis: Tested:" "$out"; then
    echo "mutant-run: the test program did not run its tests (exit $rc); not a catch" >&2
    exit 0
fi
exit "$rc"
