#!/usr/bin/env bash
# Installs everything Moirai needs to build, test and benchmark on Debian 12
# (bookworm): the toolchain, the test framework, the libraries the modules
# use, and the peer libraries moirai-bench compares against.
#
# Idempotent and non-interactive: packages already installed are not
# touched, and when nothing is missing apt is not run at all (no network
# needed). Uses sudo only when not run as root.
#
# Usage: scripts/setup.sh
set -euo pipefail

# The one list. A module that needs a new package (a library, or a
# benchmark peer) adds it here.
packages=(
    # Build tools and the compiler (gcc's runtime packages bring the
    # sanitizer runtimes: libasan, libtsan, libubsan). libc6-dev is only a
    # recommendation of gcc, which --no-install-recommends skips.
    meson
    ninja-build
    pkg-config
    gcc
    libc6-dev
    binutils
    python3
    clang-format
    # Test framework.
    libcriterion-dev
    # What the bundled Criterion (subprojects/criterion.wrap, CI's fallback
    # stage) takes from the system, for its theories; libcriterion-dev
    # pulls it in too.
    libffi-dev
    # Libraries the modules use.
    liburcu-dev
    libuv1-dev
    libnuma-dev
    # USDT probes (<sys/sdt.h>, option 'probes'), and bpftrace for the
    # observability suite's test that attaches to them.
    systemtap-sdt-dev
    bpftrace
    # moirai-transport's cluster authentication (HMAC-SHA256).
    libsodium-dev
    # moirai-transport's MPI backend (option 'mpi'): MPICH's library and
    # headers, and mpirun.mpich, which runs its tests and benchmark.
    mpich
    libmpich-dev
    # Benchmark peers (moirai-bench reports a peer as missing if absent).
    libck-dev
    libjemalloc-dev
    libgoogle-perftools-dev
    libmimalloc-dev
    # Scheduler peers (bench/sched): oneTBB, LLVM's OpenMP runtime and the
    # clang that builds against it (gcc brings libgomp), g++ for the TBB
    # module, and Rayon built offline by cargo from Debian's vendored
    # crates.
    libtbb-dev
    libomp-14-dev
    clang
    g++
    # The shared-memory ring's fuzz target (tests/transport/fuzz):
    # libFuzzer is in compiler-rt.
    clang-14
    libclang-rt-14-dev
    librust-rayon-dev
    cargo
    # The API reference and its check (scripts/api-docs.sh).
    doxygen
    # The aarch64 cross build run under qemu-user (cross/run-aarch64.sh):
    # the cross compiler, qemu with its binfmt_misc registration (Criterion
    # re-executes the test binary), and the arm64 libraries through Debian
    # multiarch. libcriterion3:arm64 itself cannot be installed beside the
    # amd64 Criterion (see cross/run-aarch64.sh); its other dependencies can.
    gcc-aarch64-linux-gnu
    qemu-user
    qemu-user-binfmt
    binfmt-support
    libc6-dev:arm64
    liburcu-dev:arm64
    libnuma-dev:arm64
    libuv1-dev:arm64
    libsodium-dev:arm64
    libgit2-1.5:arm64
    libffi8:arm64
    # moirai-async's aarch64 context switch is cross-compiled and tested
    # under qemu-user (tests/async/aarch64/run.sh; the compiler and qemu
    # are listed above).
    libc6-dev-arm64-cross
    # Packaging and ABI checks (.ci/run): dpkg-buildpackage (dpkg-dev) with
    # debhelper's meson support, lintian, and libabigail's abidw/abidiff.
    dpkg-dev
    debhelper
    lintian
    abigail-tools
    # Fiber peers (bench/async): Boost.Context and Boost.Fiber (the
    # versioned 1.81 names: the plain libboost-*-dev give 1.74), Go for a
    # c-shared module, and Tokio built offline like Rayon.
    libboost-context1.81-dev
    libboost-fiber1.81-dev
    golang-go
    librust-tokio-dev
    # Transport peers (bench/transport): ZeroMQ, and crossbeam-channel
    # built offline like Rayon (libck-dev and Boost.Fiber are listed above).
    libzmq3-dev
    librust-crossbeam-channel-dev
    # The load generator of the async suite's http_hello_keepalive.
    wrk
    # The transport partition test (tests/transport/test_partition.sh):
    # network namespaces and veth pairs (ip), the partition's drop rules
    # (nft).
    iproute2
    nftables
)

missing=()
native=$(dpkg --print-architecture)
for pkg in "${packages[@]}"; do
    # dpkg-query prints "install ok installed" only for a fully installed
    # package; anything else (absent, half-configured) gets installed. A
    # name without an architecture means the native one (with arm64 added,
    # a bare name would match both), or an "Architecture: all" package.
    if [[ "$pkg" == *:* ]]; then
        status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    else
        status=$(dpkg-query -W -f='${Status}' "$pkg:$native" 2>/dev/null ||
            dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    fi
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if ((${#missing[@]} == 0)); then
    echo "setup: all ${#packages[@]} packages already installed"
    exit 0
fi

sudo=()
if ((EUID != 0)); then
    if ! command -v sudo >/dev/null; then
        echo "setup: need root or sudo to install: ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi

# Packages named <name>:arm64 need the arm64 architecture in dpkg first.
if [[ " ${missing[*]}" == *":arm64"* ]] &&
    ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "setup: adding the arm64 architecture (Debian multiarch)"
    "${sudo[@]}" dpkg --add-architecture arm64
fi

echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done"
