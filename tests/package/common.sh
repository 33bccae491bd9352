# shellcheck shell=bash
# Shared by the package-shape checks (sourced, not run).
#
# Every check takes a build directory and a list of module specs
# "NAME:VERSION:SOVERSION[:CONSUMER]" (for example "core:0.1.0:0:consumer.c",
# CONSUMER relative to this directory), so that a new module only adds its
# entry to tests/package/meson.build.
#
# Exit status follows Meson's test protocol: 0 pass, 1 fail, 77 skip.

# Used by the scripts that source this file.
# shellcheck disable=SC2034
package_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
failures=0

fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# parse_spec SPEC: sets mod_name, mod_version, mod_soversion, mod_consumer.
parse_spec() {
    # shellcheck disable=SC2034 # the sourcing scripts read these
    IFS=: read -r mod_name mod_version mod_soversion mod_consumer <<<"$1"
    if [[ -z "$mod_name" || -z "$mod_version" || -z "$mod_soversion" ]]; then
        echo "bad module spec '$1' (want NAME:VERSION:SOVERSION[:CONSUMER])" >&2
        exit 1
    fi
}

# The installed tree needs an uninstrumented build: a sanitizer runtime
# would have to be preloaded into every tool that touches the library.
skip_if_sanitized() {
    if [[ "${MOIRAI_SANITIZE:-none}" != none ]]; then
        echo "SKIP: package checks need a build without sanitizers (b_sanitize=$MOIRAI_SANITIZE)"
        exit 77
    fi
}

# install_tree BUILD_DIR DEST: a fresh `meson install --destdir DEST` of the
# already built tree (meson test has built it; rebuilding from inside a
# test would race with the build).
install_tree() {
    local builddir=$1 dest=$2
    rm -rf "$dest"
    "${MESON:-meson}" install -C "$builddir" --no-rebuild --quiet --destdir "$dest" >/dev/null
}

# find_pc_dir DEST NAME: prints the directory holding moirai-NAME.pc in DEST.
find_pc_dir() {
    local dest=$1 name=$2 pc
    pc=$(find "$dest" -path "*/pkgconfig/moirai-$name.pc" -print -quit)
    if [[ -z "$pc" ]]; then
        return 1
    fi
    dirname "$pc"
}

finish() {
    if ((failures > 0)); then
        echo "$failures check(s) failed" >&2
        exit 1
    fi
    echo "all checks passed"
    exit 0
}
