#!/bin/sh
# Runs the network-partition test (test_partition.c) inside network
# namespaces made for it, and removes them afterwards, also when the test
# fails, crashes or is stopped by meson's timeout (SIGTERM).
#
# Usage: test_partition.sh RUNNER TEST_EXE [ARGS...]
#
# Topology: a namespace "hub" holding a bridge, and three namespaces n1, n2,
# n3, each joined to the bridge by a veth pair, with the addresses
# 10.213.0.1, .2 and .3 (/24). The names carry this script's pid
# (moirai-pt-<pid>-n1, ...), so concurrent runs never share one, and a run
# killed with SIGKILL leaves namespaces that the next run removes (their
# pid is gone). The test enters n1 itself (setns) and starts its helper
# nodes in n2 and n3 with `ip netns exec`; it partitions n3 with an
# nftables table in n3 that drops every packet not on loopback, and heals
# by deleting that table.
#
# Where namespaces, veth pairs, a bridge or nftables cannot be used (not
# root, a container without CAP_SYS_ADMIN or CAP_NET_ADMIN, a kernel
# without veth, bridge or nf_tables, iproute2 or nftables not installed),
# the test is skipped (exit 77) with the exact command and error, never
# failed.
set -u
[ $# -ge 2 ] || {
    echo "usage: $0 RUNNER TEST_EXE [ARGS...]" >&2
    exit 2
}

skip() {
    echo "SKIP: $*"
    exit 77
}

[ "$(id -u)" = 0 ] || skip "network namespaces need root; this runs as uid $(id -u)"
command -v ip >/dev/null 2>&1 || skip "ip not found (Debian package iproute2)"
command -v nft >/dev/null 2>&1 || skip "nft not found (Debian package nftables)"

prefix="moirai-pt-$$"
hub="$prefix-hub"

# Namespaces of earlier runs whose script is gone (killed with SIGKILL).
for ns in $(ip netns list 2>/dev/null | awk '{ print $1 }' | grep '^moirai-pt-[0-9]*-'); do
    pid=${ns#moirai-pt-}
    pid=${pid%%-*}
    kill -0 "$pid" 2>/dev/null || ip netns del "$ns" 2>/dev/null
done

child=
# shellcheck disable=SC2317 # run from cleanup, from the EXIT trap
# Kills process $1 and all its descendants: the test's runner, Criterion's
# worker (in a session of its own) and the helper nodes. The whole tree is
# collected before anything is killed, since a killed parent's children
# are handed to init.
kill_tree() {
    tree=" $1 "
    grown=1
    while [ "$grown" = 1 ]; do
        grown=0
        for st in /proc/[0-9]*/stat; do
            line=$(cat "$st" 2>/dev/null) || continue
            pid=${st#/proc/}
            pid=${pid%/stat}
            # shellcheck disable=SC2086 # split into fields on purpose
            set -- ${line##*) }
            # After the command: state, parent.
            case "$tree" in
            *" $pid "*) ;;
            *" ${2:-x} "*)
                tree="$tree$pid "
                grown=1
                ;;
            esac
        done
    done
    # shellcheck disable=SC2086 # one argument per pid
    kill -KILL $tree 2>/dev/null
}
# shellcheck disable=SC2317 # run from the EXIT trap
cleanup() {
    # The test and its helper nodes first, then the namespaces.
    if [ -n "$child" ]; then
        kill_tree "$child"
    fi
    for n in n1 n2 n3 hub; do
        ip netns del "$prefix-$n" 2>/dev/null
    done
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# try WHAT CMD...: runs CMD; on failure skips naming the command and its error.
try() {
    what=$1
    shift
    if ! err=$("$@" 2>&1); then
        skip "$what: '$*' failed: $err"
    fi
}

try "cannot create a network namespace" ip netns add "$hub"
try "cannot create a bridge in a namespace" ip -n "$hub" link add br0 type bridge
try "cannot bring the bridge up" ip -n "$hub" link set br0 up
for i in 1 2 3; do
    ns="$prefix-n$i"
    try "cannot create a network namespace" ip netns add "$ns"
    try "cannot create a veth pair between namespaces" \
        ip link add name "v$i" netns "$ns" type veth peer name "h$i" netns "$hub"
    try "cannot attach a veth to the bridge" ip -n "$hub" link set "h$i" master br0 up
    try "cannot address the veth" ip -n "$ns" addr add "10.213.0.$i/24" dev "v$i"
    try "cannot bring the veth up" ip -n "$ns" link set "v$i" up
    try "cannot bring loopback up" ip -n "$ns" link set lo up
done
# The helper nodes are started this way.
try "cannot run a program in a namespace" ip netns exec "$prefix-n2" true
# The partition's own rule, added and removed once, so that a kernel
# without nf_tables is a skip here rather than a failure in the test.
try "nftables cannot filter in a namespace" ip netns exec "$prefix-n3" nft -f - <<EOF
table inet moirai_partition_probe {
    chain input {
        type filter hook input priority 0; policy accept;
        iifname != "lo" drop
    }
}
EOF
try "nftables cannot delete its table" ip netns exec "$prefix-n3" nft delete table inet moirai_partition_probe

export MOIRAI_PT_NS1="$prefix-n1" MOIRAI_PT_NS2="$prefix-n2" MOIRAI_PT_NS3="$prefix-n3"
export MOIRAI_PT_IP1=10.213.0.1 MOIRAI_PT_IP2=10.213.0.2 MOIRAI_PT_IP3=10.213.0.3
# A stop of this script (meson's timeout sends SIGTERM) takes the test
# process, Criterion's worker and the helper nodes with it before the
# namespaces go (cleanup).
"$@" &
child=$!
wait "$child"
rc=$?
child=
exit "$rc"
