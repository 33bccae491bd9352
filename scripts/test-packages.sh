#!/usr/bin/env bash
# Installs the packages scripts/build-packages.sh built into this machine,
# runs the autopkgtest (debian/tests/consumers: one consumer program per
# module, built with nothing but pkg-config and run against the installed
# libraries), and purges the packages again, checking that nothing of them
# is left. Needs root (or sudo): it changes the system.
#
#   scripts/test-packages.sh [OUT_DIR]     (default: build-deb/)
#
# The purge runs even when the consumers fail. Exit status: non-zero if
# installing, any consumer or the purge failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
cd "$moirai_root"

out=$(cd "${1:-$moirai_root/build-deb}" && pwd)
sudo=()
if ((EUID != 0)); then
    sudo=(sudo)
fi
# Another apt run (an engineer's, unattended upgrades) may hold the dpkg lock
# for a while: wait for it instead of failing.
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends
    -o DPkg::Lock::Timeout=300)

# The library and -dev packages (not the -dbgsym ones).
mapfile -t debs < <(find "$out" -maxdepth 1 -name 'libmoirai-*.deb' ! -name '*-dbgsym_*' | sort)
if ((${#debs[@]} == 0)); then
    echo "test-packages: no packages in $out (run scripts/build-packages.sh)" >&2
    exit 1
fi
names=()
for deb in "${debs[@]}"; do
    names+=("$(dpkg-deb -f "$deb" Package)")
done

rc=0
echo "test-packages: apt-get install ${names[*]}"
# apt resolves their dependencies (liburcu-dev, libuv1-dev, libnuma-dev)
# from the archive; the packages themselves come from the files.
if ! "${apt[@]}" install "${debs[@]}" >"$out/apt-install.log" 2>&1; then
    cat "$out/apt-install.log"
    echo "test-packages: installing the packages failed" >&2
    rc=1
else
    dpkg-query -W -f='  ${Package} ${Version} ${db:Status-Abbrev}\n' "${names[@]}"
    # As autopkgtest runs it: from the top of the source tree, with a
    # scratch directory of its own.
    tmp=$(mktemp -d)
    if ! AUTOPKGTEST_TMP=$tmp debian/tests/consumers; then
        echo "test-packages: the autopkgtest failed" >&2
        rc=1
    fi
    rm -rf "$tmp"
fi

echo "test-packages: apt-get purge ${names[*]}"
"${apt[@]}" purge "${names[@]}" >"$out/apt-purge.log" 2>&1 || {
    cat "$out/apt-purge.log"
    rc=1
}
# Nothing of them may remain: no package known to dpkg, no header, no
# pkg-config file.
left=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${names[@]}" 2>/dev/null |
    awk '$2 != "un" && $2 != "pn" && $2 != ""' || true)
if [[ -n "$left" ]]; then
    echo "test-packages: still known to dpkg after the purge: $left" >&2
    rc=1
fi
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
for path in /usr/include/moirai /usr/lib/"$multiarch"/pkgconfig/moirai-core.pc \
    /usr/lib/"$multiarch"/libmoirai-core.so.0; do
    if [[ -e "$path" ]]; then
        echo "test-packages: $path is left after the purge" >&2
        rc=1
    fi
done
((rc == 0)) && echo "test-packages: installed, every consumer ran, purged clean"
exit "$rc"
