#!/bin/sh
# Runs one test binary and fails if a sanitizer reported anything.
#
# Criterion runs each test in a child process and judges it by what the
# child reports over its protocol, not by how the child exits; a leak
# (LeakSanitizer runs at exit), a race that ThreadSanitizer reports without
# aborting, or a UBSan diagnostic would therefore not fail the test. Every
# sanitizer is told to write its reports into a fresh directory instead,
# and any report there fails the run.
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/moirai-test.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$dir/asan"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$dir/tsan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$dir/ubsan:print_stacktrace=1"
"$@"
rc=$?
for report in "$dir"/*; do
    [ -e "$report" ] || continue
    echo "==== sanitizer report $(basename "$report") ====" >&2
    cat "$report" >&2
    [ "$rc" -eq 0 ] && rc=1
done
exit "$rc"
