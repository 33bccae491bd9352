#!/usr/bin/env bash
# Installs BUILD_DIR into a scratch DESTDIR (a non-system prefix, as far as
# the dynamic loader knows) and links each module's consumer the way a
# project outside the system directories does: pkg-config's flags plus
# -Wl,-rpath to the installed libdir, and no LD_LIBRARY_PATH. The program
# must run: its RUNPATH finds libmoirai-NAME, and the RUNPATH $ORIGIN the
# libraries carry finds the Moirai libraries they depend on (a program's
# RUNPATH is not used for its libraries' own dependencies, so without it
# moirai-sched would fail to find libmoirai-sync.so.0).
#
# Usage: check_rpath.sh BUILD_DIR NAME:VERSION:SOVERSION:CONSUMER...
# Environment: CC (default cc), MESON (default meson).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
skip_if_sanitized

builddir=$(cd "$1" && pwd)
shift
work=$builddir/tests/package/rpath-work
dest=$work/destdir
install_tree "$builddir" "$dest"
read -r -a cc <<<"${CC:-cc}"
system_pc_path=$(pkg-config --variable pc_path pkg-config)

for spec in "$@"; do
    parse_spec "$spec"
    [[ -n "$mod_consumer" ]] || continue
    if ! pcdir=$(find_pc_dir "$dest" "$mod_name"); then
        fail "moirai-$mod_name.pc not installed under $dest"
        continue
    fi
    libdir=$(dirname "$pcdir")
    flags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$pcdir:$system_pc_path \
        pkg-config --cflags --libs "moirai-$mod_name")
    read -r -a flag_words <<<"$flags"
    exe=$work/rpath-consumer-$mod_name
    if ! "${cc[@]}" -std=c11 -o "$exe" "$package_dir/$mod_consumer" "${flag_words[@]}" \
        "-Wl,-rpath,$libdir"; then
        fail "the consumer of moirai-$mod_name does not link with -rpath"
        continue
    fi
    # Every Moirai library the program loads must come from the installed
    # tree, found without LD_LIBRARY_PATH.
    bad=$(env -u LD_LIBRARY_PATH ldd "$exe" | awk -v dir="$(readlink -f "$libdir")" '
        $1 ~ /^libmoirai-/ { if ($3 == "not" || index($3, dir) != 1) print $1 " => " $3 " " $4 }')
    if [[ -n "$bad" ]]; then
        fail "consumer of moirai-$mod_name linked with -rpath does not find: $bad"
        continue
    fi
    if env -u LD_LIBRARY_PATH "$exe" >/dev/null; then
        echo "ok: consumer of moirai-$mod_name runs with -rpath alone"
    else
        fail "consumer of moirai-$mod_name linked with -rpath exited with status $?"
    fi
done
finish
