#!/usr/bin/env bash
# Cross-builds Moirai for aarch64 (cross/aarch64-linux-gnu.ini) and runs
# the chosen test suites under qemu-user. CI's "aarch64 under qemu" stage.
#
# Needs (scripts/setup.sh installs them): gcc-aarch64-linux-gnu,
# qemu-user, qemu-user-binfmt, binfmt-support, and the :arm64 packages of
# libc6-dev, liburcu-dev, libnuma-dev, libuv1-dev and libcriterion3.
#
# Usage: cross/run-aarch64.sh BUILD_DIR [meson test arguments...]
#   e.g. cross/run-aarch64.sh build-aarch64 --suite core --no-suite stress
#
# Only the targets of the selected tests are built (plus what they link),
# so a module that does not cross-build yet does not hide the results of
# the others. Meson's testlog.json in BUILD_DIR/meson-logs is what CI counts.
#
# Criterion for arm64 cannot be installed beside the amd64 one the native
# build uses: libcriterion-dev depends on libnanomsg-dev, which is not
# Multi-Arch: same (the two conflict), and bookworm's libnanomsg5 has a
# binNMU on amd64 only (1.1.5+dfsg-1.1+b1 against 1.1.5+dfsg-1.1), so
# libnanomsg5:arm64, and with it libcriterion3:arm64, is removed whenever
# the amd64 one is installed. So this script unpacks libcriterion3,
# libcriterion-dev and libnanomsg5 for arm64 into BUILD_DIR-sysroot
# (`apt-get download`, `dpkg-deb -x`; nothing is installed), points
# criterion.pc there, and gives Meson a second cross file that adds that
# pkg-config directory and an rpath to its libraries (DT_RPATH, which,
# unlike DT_RUNPATH, also serves libcriterion's own libnanomsg). Criterion's other
# runtime dependencies (libgit2-1.5, libffi8) install normally as :arm64
# packages. criterion.pc's Requires.private and Libs.private (static
# linking only) are dropped: those .pc files are in conflicting packages.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:?usage: cross/run-aarch64.sh BUILD_DIR [meson test arguments...]}
shift
[[ "$build" = /* ]] || build=$PWD/$build

# Criterion runs every test in a child it starts by executing the test
# binary again, which qemu-user cannot follow by itself: the kernel must
# know to run arm64 executables through qemu (binfmt_misc, registered by
# Debian's qemu-user-binfmt through binfmt-support). Without systemd as
# PID 1 nothing enables it at boot, so enable it here.
if [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
    if ! update-binfmts --enable qemu-aarch64 || [[ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]]; then
        echo "aarch64: cannot register qemu-aarch64 with binfmt_misc (needs root and qemu-user-binfmt)" >&2
        exit 1
    fi
fi

sysroot=$build-sysroot
pcdir=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig
libdir=$sysroot/usr/lib/aarch64-linux-gnu
if [[ ! -f "$pcdir/criterion.pc" || ! -e "$libdir/libnanomsg.so.5" ]]; then
    rm -rf "$sysroot"
    mkdir -p "$sysroot"
    (cd "$sysroot" && apt-get download -q libcriterion-dev:arm64 libcriterion3:arm64 \
        libnanomsg5:arm64)
    for deb in "$sysroot"/*.deb; do
        dpkg-deb -x "$deb" "$sysroot"
    done
    sed -i -e "s|^prefix=.*|prefix=$sysroot/usr|" -e '/^Requires.private:/d' \
        -e '/^Libs.private:/d' "$pcdir/criterion.pc"
fi

mkdir -p "$build"
overlay=$sysroot/criterion.ini
cat >"$overlay" <<INI
# Written by cross/run-aarch64.sh: arm64 Criterion unpacked in $sysroot.
[properties]
pkg_config_libdir = ['$pcdir', '/usr/lib/aarch64-linux-gnu/pkgconfig', '/usr/share/pkgconfig']

[built-in options]
c_link_args = ['-Wl,--disable-new-dtags', '-Wl,-rpath,$libdir']
INI

args=(--cross-file "$root/cross/aarch64-linux-gnu.ini" --cross-file "$overlay"
    -Dbuildtype=debugoptimized -Dwerror=true -Dbenchmarks=false -Dexamples=false)
if [[ -f "$build/meson-private/coredata.dat" ]]; then
    meson setup --reconfigure "$build" "$root" "${args[@]}" ||
        meson setup --wipe "$build" "$root" "${args[@]}"
else
    meson setup "$build" "$root" "${args[@]}"
fi

# The executables of the selected tests (and what they depend on), as
# ninja target paths: each test's "depends" ids mapped to their files.
mapfile -t names < <(meson test -C "$build" --no-rebuild --list "$@" 2>/dev/null |
    sed -n 's/^[^ ]* \/ //p')
mapfile -t targets < <(python3 - "$build" "${names[@]}" <<'PY'
import json, os, subprocess, sys
build, names = sys.argv[1], set(sys.argv[2:])
def introspect(what):
    return json.loads(subprocess.check_output(["meson", "introspect", build, what]))
files = {t["id"]: t["filename"] for t in introspect("--targets")}
out = set()
for test in introspect("--tests"):
    if test["name"] in names:
        for dep in test["depends"]:
            for f in files.get(dep, []):
                out.add(os.path.relpath(f, build))
print("\n".join(sorted(out)))
PY
)
# Tests that cannot work under qemu-user, skipped through Criterion's
# CRITERION_TEST_PATTERN unless the caller sets one:
#   - park/unpark_one_wakes_exactly_one, park/unpark_all_wakes_every_waiter,
#     park/unpark_on_other_address_wakes_nobody and the park_hook tests
#     fibers_park_through_hook_threads_on_futex, unpark_all_wakes_both_kinds
#     and removing_hook_restores_futex_path wait until
#     /proc/self/task/<tid>/syscall shows the thread asleep in futex();
#     under qemu that file shows the host's (x86-64) system call number,
#     so the wait never ends;
#   - blocking/failed_growth_keeps_task_queued lowers RLIMIT_AS to make
#     thread creation fail; qemu-user ignores setrlimit(RLIMIT_AS) (it
#     needs the address space itself), so the thread is created;
#   - executor/thread_creation_failure_is_eagain_and_runs_nothing asks for
#     a 64 TiB thread stack to make thread creation fail; under qemu-user
#     the mapping is emulated instead of refused and the test ran past its
#     timeout (in one of two runs here).
# Every other test in the selected binaries runs.
export CRITERION_TEST_PATTERN=${CRITERION_TEST_PATTERN:-'!(park/unpark_one_wakes_exactly_one|park/unpark_all_wakes_every_waiter|park/unpark_on_other_address_wakes_nobody|park_hook/fibers_park_through_hook_threads_on_futex|park_hook/unpark_all_wakes_both_kinds|park_hook/removing_hook_restores_futex_path|blocking/failed_growth_keeps_task_queued|executor/thread_creation_failure_is_eagain_and_runs_nothing)'}

echo "aarch64: building ${#targets[@]} test programs"
ninja -C "$build" -j2 "${targets[@]}"
meson test -C "$build" --no-rebuild --print-errorlogs "$@"
