#!/usr/bin/env bash
# Attaches bpftrace to Moirai's USDT probes, runs a test program under it
# and checks the exact counts the program implies, per mode:
#
#   tasks   probe_spawn N, libmoirai-sched: task_spawn, task_start and
#           task_end each fire exactly N times in that process, task_start
#           with a worker index in range (the scheduler has 2 workers).
#   fibers  probe_fibers N, libmoirai-async and libmoirai-transport: the
#           fibers end exactly N times (fiber_switch_out with arg2 = 1),
#           switch in exactly as often as they switch out, and the
#           rendezvous channel fires chan_block exactly N/2 times and
#           chan_wake (outcome 1, done) exactly N/2 times.
#
#   run_bpftrace.sh MODE HAVE_PROBES BPFTRACE PROGRAM N LIBRARY...
#
# Skips (exit 77) with the reason when the build has no probes, bpftrace
# is missing, the caller is not root, or bpftrace cannot load a BPF
# program or attach a uprobe here (no BPF in a container or sandbox),
# which is checked first on the program's main(). A probe that does not
# attach, a wrong count, or a program that failed fails the test.
# bpftrace is bounded by `timeout` and stopped (it then detaches its
# probes) before the script ends.
set -uo pipefail

mode=$1 have=$2 bpftrace=$3 prog=$4 n=$5
shift 5
libs=("$@")

if [[ "$have" != 1 ]]; then
    echo "SKIP: built without USDT probes (no <sys/sdt.h>, or -Dprobes=disabled)"
    exit 77
fi
if [[ -z "$bpftrace" ]]; then
    echo "SKIP: bpftrace not found (apt-get install bpftrace)"
    exit 77
fi
if [[ $(id -u) != 0 ]]; then
    echo "SKIP: bpftrace needs root (CAP_BPF and CAP_PERFMON)"
    exit 77
fi

# bpftrace resolves the library paths itself: make them absolute.
for i in "${!libs[@]}"; do
    libs[$i]=$(readlink -f "${libs[$i]}")
done
prog=$(readlink -f "$prog")
out=$(mktemp)
err=$(mktemp)
trap 'rm -f "$out" "$err" "$out.prog"' EXIT

# Can this machine run BPF programs and attach uprobes at all? Checked on
# the program's own main(), which does not depend on Moirai's probes: if
# this fails, the test cannot say anything about them and skips.
if ! timeout -k 10 60 "$bpftrace" -e 'BEGIN { printf("bpf-ok\n"); exit(); }' >"$out" 2>"$err" ||
    ! grep -q '^bpf-ok$' "$out"; then
    echo "SKIP: bpftrace cannot load a BPF program here:"
    cat "$err"
    exit 77
fi
if ! timeout -k 10 60 "$bpftrace" -e "uprobe:$prog:main /pid == cpid/ { printf(\"uprobe-ok\\n\"); }" \
    -c "$prog 2" >"$out" 2>"$err" || ! grep -q '^uprobe-ok$' "$out"; then
    echo "SKIP: bpftrace cannot attach a uprobe here:"
    cat "$out" "$err"
    exit 77
fi

# The tracer attaches to the library file, so its probes fire in every
# process that maps it (other tests may run meanwhile): every count is
# kept per pid and only the traced run's is read. bpftrace runs in the
# background because `-c` attaches before the child has loaded the
# library, which fails for a library's USDT probes. Every failure from
# here on is Moirai's: the checks above showed that bpftrace works here (a
# probe missing from the library fails to attach).
# checks: "map expected" lines, expected a number or another map's name.
case "$mode" in
tasks)
    lib=${libs[0]}
    first="usdt:$lib:moirai:task_start"
    script="
usdt:$lib:moirai:task_spawn { @spawn[pid] = count(); }
usdt:$lib:moirai:task_start { @start[pid] = count(); }
usdt:$lib:moirai:task_start /arg2 >= 0 && arg2 < 2/ { @start_in_range[pid] = count(); }
usdt:$lib:moirai:task_end { @end[pid] = count(); }
"
    checks="spawn $n
start $n
start_in_range $n
end $n"
    ;;
fibers)
    async=${libs[0]} transport=${libs[1]}
    first="usdt:$async:moirai:fiber_switch_in"
    script="
usdt:$async:moirai:fiber_switch_in { @switch_in[pid] = count(); }
usdt:$async:moirai:fiber_switch_out { @switch_out[pid] = count(); }
usdt:$async:moirai:fiber_switch_out /arg2 == 1/ { @ended[pid] = count(); }
usdt:$transport:moirai:chan_block { @block[pid] = count(); }
usdt:$transport:moirai:chan_wake { @wake[pid] = count(); }
usdt:$transport:moirai:chan_wake /arg1 == 1/ { @wake_done[pid] = count(); }
"
    checks="ended $n
switch_in switch_out
block $((n / 2))
wake $((n / 2))
wake_done $((n / 2))"
    ;;
*)
    echo "usage: run_bpftrace.sh tasks|fibers HAVE_PROBES BPFTRACE PROGRAM N LIBRARY..." >&2
    exit 2
    ;;
esac
# The first event of each process prints its pid: how the script knows
# that the tracer is attached.
script="$first /@seen[pid] == 0/ { @seen[pid] = 1; printf(\"seen %d\\n\", pid); }
$script"
timeout -k 10 100 "$bpftrace" -e "$script" >"$out" 2>"$err" &
tracer=$!
stop_tracer() {
    kill -INT "$tracer" 2>/dev/null
    wait "$tracer"
}

# Attached once a short run of the program is seen (at most 60 tries: a
# tracer that never attaches ends the test as a failure, not a hang).
ready=0
for _ in $(seq 60); do
    if ! kill -0 "$tracer" 2>/dev/null; then
        break
    fi
    "$prog" 2 >/dev/null &
    warm=$!
    wait "$warm"
    sleep 0.5
    if grep -q "^seen $warm\$" "$out"; then
        ready=1
        break
    fi
done
if [[ $ready != 1 ]]; then
    stop_tracer
    echo "FAIL: bpftrace did not attach to ${libs[*]}"
    cat "$out" "$err"
    exit 1
fi

"$prog" "$n" >"$out.prog" &
traced=$!
wait "$traced"
prog_rc=$?
stop_tracer
if [[ $prog_rc != 0 ]] || ! grep -q "^ran $n\$" "$out.prog"; then
    echo "FAIL: the traced program failed (exit status $prog_rc)"
    cat "$out.prog"
    rm -f "$out.prog"
    exit 1
fi
rm -f "$out.prog"

value() { sed -n "s/^@$1\\[$traced\\]: \\([0-9]*\\)\$/\\1/p" "$out"; }

status=0
while read -r map expected; do
    got=$(value "$map")
    if [[ "$expected" =~ ^[0-9]+$ ]]; then
        want=$expected
    else
        want=$(value "$expected")
    fi
    if [[ -z "$got" || "$got" != "$want" ]]; then
        echo "FAIL: @$map = ${got:-none}, expected ${want:-none} ($expected)"
        status=1
    else
        echo "@$map = $got ($expected)"
    fi
done <<<"$checks"
if [[ $status != 0 ]]; then
    echo "--- bpftrace output"
    cat "$out" "$err"
fi
exit $status
