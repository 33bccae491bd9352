#!/usr/bin/env bash
# Installs BUILD_DIR into a scratch DESTDIR and checks each module's shared
# library there: the files libmoirai-NAME.so.VERSION, the .so.SOVERSION and
# .so links exist; the SONAME is libmoirai-NAME.so.SOVERSION; no build-tree
# RPATH/RUNPATH is left in it (RUNPATH $ORIGIN is the only one allowed);
# and `nm -D --defined-only` shows only moirai_* symbols (besides the
# version nodes of the linker script), among them moirai_NAME_version.
#
# Usage: check_symbols.sh BUILD_DIR NAME:VERSION:SOVERSION[:CONSUMER]...
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
skip_if_sanitized

builddir=$(cd "$1" && pwd)
shift
dest=$builddir/tests/package/destdir-symbols
install_tree "$builddir" "$dest"

for spec in "$@"; do
    parse_spec "$spec"
    if ! pcdir=$(find_pc_dir "$dest" "$mod_name"); then
        fail "moirai-$mod_name.pc not installed under $dest"
        continue
    fi
    libdir=$(dirname "$pcdir")
    base=$libdir/libmoirai-$mod_name.so
    real=$base.$mod_version
    if [[ ! -f "$real" || -L "$real" ]]; then
        fail "$real is not installed as a file"
        continue
    fi
    for link in "$base.$mod_soversion" "$base"; do
        if [[ ! -L "$link" ]] || [[ "$(readlink -f "$link")" != "$(readlink -f "$real")" ]]; then
            fail "$link is not a link to $(basename "$real")"
        fi
    done

    soname=$(readelf -d "$real" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    if [[ "$soname" != "libmoirai-$mod_name.so.$mod_soversion" ]]; then
        fail "SONAME of $real is '$soname', want libmoirai-$mod_name.so.$mod_soversion"
    else
        echo "ok: SONAME $soname"
    fi
    # The one search path allowed is $ORIGIN (the Moirai libraries find
    # their siblings in their own directory, see check_rpath.sh); a path
    # into the build tree must be gone.
    paths=$(readelf -d "$real" | sed -n 's/.*(\(RPATH\|RUNPATH\)).*\[\(.*\)\]/\2/p')
    if [[ -n "$paths" && "$paths" != '$ORIGIN' ]]; then
        fail "installed $real carries the search path '$paths' (only \$ORIGIN is allowed)"
    fi

    # nm prints "ADDRESS TYPE NAME[@@VERSION]". Type A entries are the
    # version nodes (MOIRAI_CORE_0) the linker script defines.
    syms=$(nm -D --defined-only "$real" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }')
    count=$(grep -c . <<<"$syms" || true)
    foreign=$(grep -v '^moirai_' <<<"$syms" || true)
    if [[ -n "$foreign" ]]; then
        fail "libmoirai-$mod_name exports symbols outside moirai_*: $(tr '\n' ' ' <<<"$foreign")"
    elif ! grep -qx "moirai_${mod_name}_version" <<<"$syms"; then
        fail "libmoirai-$mod_name does not export moirai_${mod_name}_version"
    else
        echo "ok: libmoirai-$mod_name exports $count symbols, all moirai_*"
    fi
done
finish
