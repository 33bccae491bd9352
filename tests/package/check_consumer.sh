#!/usr/bin/env bash
# Installs BUILD_DIR into a scratch DESTDIR and, for each module, builds its
# out-of-tree consumer program against that tree using nothing but
# `pkg-config --cflags --libs moirai-NAME` (PKG_CONFIG_SYSROOT_DIR and
# PKG_CONFIG_LIBDIR pointing into the DESTDIR), checks that the program
# loads the installed library, and runs it.
#
# The consumer is compiled as strict ISO C11 with warnings as errors, so the
# installed headers must not depend on GNU extensions or on the build's
# own include paths.
#
# Usage: check_consumer.sh BUILD_DIR NAME:VERSION:SOVERSION:CONSUMER...
# Environment: CC (default cc), MESON (default meson).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
skip_if_sanitized

builddir=$(cd "$1" && pwd)
shift
work=$builddir/tests/package/consumer-work
dest=$work/destdir
install_tree "$builddir" "$dest"
read -r -a cc <<<"${CC:-cc}"
system_pc_path=$(pkg-config --variable pc_path pkg-config)

for spec in "$@"; do
    parse_spec "$spec"
    if [[ -z "$mod_consumer" ]]; then
        fail "no consumer program named for module $mod_name"
        continue
    fi
    src=$package_dir/$mod_consumer
    if ! pcdir=$(find_pc_dir "$dest" "$mod_name"); then
        fail "moirai-$mod_name.pc not installed under $dest"
        continue
    fi
    libdir=$(dirname "$pcdir")

    # The installed tree first, then the system's own directories for the
    # external libraries a module requires. The sysroot makes pkg-config
    # prefix the .pc file's absolute prefix with the DESTDIR.
    if ! flags=$(PKG_CONFIG_SYSROOT_DIR=$dest PKG_CONFIG_LIBDIR=$pcdir:$system_pc_path \
        pkg-config --cflags --libs "moirai-$mod_name"); then
        fail "pkg-config --cflags --libs moirai-$mod_name failed in the installed tree"
        continue
    fi
    echo "pkg-config --cflags --libs moirai-$mod_name: $flags"
    if [[ "$flags" != *"-I$dest"* || "$flags" != *"-L$dest"* ]]; then
        fail "pkg-config flags do not point into the installed tree: $flags"
        continue
    fi

    exe=$work/consumer-$mod_name
    read -r -a flag_words <<<"$flags"
    if ! "${cc[@]}" -std=c11 -Wall -Wextra -Wpedantic -Werror -o "$exe" "$src" "${flag_words[@]}"; then
        fail "the consumer of moirai-$mod_name does not build against the installed tree"
        continue
    fi

    # The program must load the installed library, not one from the build
    # tree or the system.
    loaded=$(LD_LIBRARY_PATH=$libdir ldd "$exe" | awk -v lib="libmoirai-$mod_name.so.$mod_soversion" '$1 == lib { print $3 }')
    if [[ "$(readlink -f "$loaded")" != "$(readlink -f "$libdir/libmoirai-$mod_name.so.$mod_soversion")" ]]; then
        fail "consumer-$mod_name loads '$loaded' instead of the installed library"
        continue
    fi

    if LD_LIBRARY_PATH=$libdir "$exe"; then
        echo "ok: consumer of moirai-$mod_name built with pkg-config alone and ran"
    else
        fail "consumer of moirai-$mod_name exited with status $?"
    fi
done
finish
