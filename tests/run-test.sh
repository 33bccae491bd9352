#!/bin/sh
# Runs one test binary and fails if a sanitizer reported anything; when
# meson stops the test (a timeout), it leaves no process behind.
#
# Criterion runs each test in a child process and judges it by what the
# child reports over its protocol, not by how the child exits; a leak
# (LeakSanitizer runs at exit), a race that ThreadSanitizer reports without
# aborting, or a UBSan diagnostic would therefore not fail the test. Every
# sanitizer is told to write its reports into a fresh directory instead,
# and any report there fails the run.
#
# On a timeout meson sends SIGTERM, then SIGKILL, to the process group it
# started this script in. Criterion's runner moves itself into a process
# group of its own and starts each test's worker in a session of its own,
# so neither got the signal, and both ran on as orphans (a hung test kept
# its CPU and its locks after the suite had ended). A watcher, which stays
# in meson's group and so gets the SIGTERM, freezes every process below
# this script and kills them all, with the groups they lead.
# tests/common/check_timeout_kill.py checks this, stopping a test as
# meson does (meson test --suite harness).
set -u
dir=$(mktemp -d "${TMPDIR:-/tmp}/moirai-test.XXXXXX") || exit 1
trap 'rm -rf "$dir"' EXIT INT TERM
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}log_path=$dir/asan"
export TSAN_OPTIONS="${TSAN_OPTIONS:+$TSAN_OPTIONS:}log_path=$dir/tsan"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}log_path=$dir/ubsan:print_stacktrace=1"

# Prints "pid group" for every process below $1, leaving out $2 and what
# is below it. From /proc: the parent and the group are fields 4 and 5 of
# /proc/PID/stat, after the command name in parentheses (which may itself
# hold spaces and parentheses, hence the cut at the last ") ").
# shellcheck disable=SC2317 # called from the watcher's trap
below() {
    root=$1
    skip=$2
    for stat in /proc/[0-9]*/stat; do
        { read -r line <"$stat"; } 2>/dev/null || continue
        pid=${stat#/proc/}
        # shellcheck disable=SC2086 # split into fields on purpose
        set -- ${line##*) }
        echo "${pid%/stat} $2 $3"
    done | awk -v root="$root" -v skip="$skip" '
        { parent[$1] = $2; group[$1] = $3 }
        END {
            tree[root] = 1
            do {
                grew = 0
                for (p in parent)
                    if (!(p in tree) && (parent[p] in tree) && p != skip) {
                        tree[p] = 1
                        grew = 1
                    }
            } while (grew)
            for (p in tree)
                if (p != root)
                    print p, group[p]
        }'
}

# Kills every process below $1 but $2 (the watcher). Frozen first, so that
# none forks or exits (its children would go to init, out of reach) while
# the list is taken; then each is killed, and with it the group it leads
# (what a test's worker started and lost track of).
# shellcheck disable=SC2317 # called from the watcher's trap
kill_tree() {
    below "$1" "$2" | while read -r pid group; do
        kill -s STOP "$pid" 2>/dev/null
    done
    below "$1" "$2" | while read -r pid group; do
        [ "$group" = "$pid" ] && kill -s KILL -- "-$pid" 2>/dev/null
        kill -s KILL "$pid" 2>/dev/null
    done
}

main=$$
(
    # This subshell's own pid ($$ is still the script's): read is a
    # builtin, so /proc/self is this shell.
    read -r self _ </proc/self/stat
    trap 'kill_tree "$main" "$self"; exit 0' TERM
    trap 'kill "$nap" 2>/dev/null; exit 0' USR1
    # Hidden, so that the reports loop below does not take it for one.
    : >"$dir/.watching"
    # An interruptible wait: the traps run as soon as a signal comes.
    while :; do
        sleep 3600 &
        nap=$!
        wait "$nap"
    done
) </dev/null >/dev/null 2>&1 &
watcher=$!

"$@"
rc=$?
# The test ended (or was killed by the watcher, which then exits by
# itself): stop the watcher, once its traps are set (before, USR1 would
# end it without its sleep), and wait until it is done killing. The
# watcher writes neither to meson's pipes nor holds them open, so that
# meson does not wait for it.
while [ ! -e "$dir/.watching" ] && kill -0 "$watcher" 2>/dev/null; do
    sleep 0.01
done
kill -s USR1 "$watcher" 2>/dev/null
wait "$watcher" 2>/dev/null
for report in "$dir"/*; do
    [ -e "$report" ] || continue
    echo "==== sanitizer report $(basename "$report") ====" >&2
    cat "$report" >&2
    [ "$rc" -eq 0 ] && rc=1
done
exit "$rc"
