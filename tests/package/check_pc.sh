#!/usr/bin/env bash
# Checks each module's generated pkg-config file in BUILD_DIR/meson-private:
# `pkg-config --validate` accepts it without a warning, and it declares the
# module's version.
#
# Usage: check_pc.sh BUILD_DIR NAME:VERSION:SOVERSION[:CONSUMER]...
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

builddir=$1
shift
pcdir=$builddir/meson-private
# Sibling modules' files resolve from the build tree, external ones
# (liburcu, libuv) from the system.
export PKG_CONFIG_PATH=$pcdir${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}

for spec in "$@"; do
    parse_spec "$spec"
    pc=$pcdir/moirai-$mod_name.pc
    if [[ ! -f "$pc" ]]; then
        fail "$pc was not generated"
        continue
    fi
    if ! out=$(pkg-config --validate "$pc" 2>&1); then
        fail "pkg-config --validate $pc: $out"
    elif grep -qF "$pc" <<<"$out"; then
        fail "pkg-config --validate warns about $pc: $out"
    else
        echo "ok: $pc validates"
    fi
    got=$(pkg-config --modversion "moirai-$mod_name" 2>&1) || true
    if [[ "$got" != "$mod_version" ]]; then
        fail "moirai-$mod_name.pc has version '$got', the module says '$mod_version'"
    else
        echo "ok: moirai-$mod_name.pc has version $got"
    fi
done
finish
