#!/usr/bin/env bash
# Regenerates the Debian symbols files, debian/libmoirai-<module><soversion>.symbols,
# from a fresh build of the libraries, with dpkg-gensymbols.
#
# The package build (debian/rules) fails when a library exports a symbol
# its symbols file does not list, or no longer exports one it does. Run
# this after changing a module's API, review the diff, commit it:
#
#   scripts/update-symbols.sh            every module in meson.build
#   scripts/update-symbols.sh async rt   only these modules
#
# An existing file is the template: symbols already in it keep the
# version that introduced them, new ones get the current version from
# debian/changelog, and symbols that vanished are dropped (that is an ABI
# break: bump the module's soversion, see docs/packaging.md). A module
# without a file gets a new one.
#
# Environment: MOIRAI_SYMBOLS_BUILD_DIR (default build-symbols/ in the
# source tree), the scratch build it configures and reuses.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
cd "$moirai_root"

for tool in dpkg-gensymbols dpkg-parsechangelog dpkg-architecture meson; do
    if ! command -v "$tool" >/dev/null; then
        echo "update-symbols: $tool not found (scripts/setup.sh installs it)" >&2
        exit 1
    fi
done

if (($# > 0)); then
    modules=("$@")
else
    mapfile -t modules < <(moirai_modules)
fi

builddir=${MOIRAI_SYMBOLS_BUILD_DIR:-$moirai_root/build-symbols}
# Absolute: meson install takes a relative --destdir from the build directory.
mkdir -p "$builddir"
builddir=$(cd "$builddir" && pwd)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
version=$(dpkg-parsechangelog -S Version)
dest=$builddir/destdir

# The libraries as debian/rules builds them (the same options), installed
# where the packages put them.
if [[ -f "$builddir/meson-private/coredata.dat" ]]; then
    meson setup --reconfigure "$builddir" >/dev/null
else
    meson setup "$builddir" --prefix=/usr --libdir="lib/$multiarch" \
        -Dtests=false -Dbenchmarks=false -Dexamples=false -Dmutants=false \
        -Dnuma=enabled >/dev/null
fi
if ! meson compile -C "$builddir" >"$builddir/compile.log" 2>&1; then
    tail -n 40 "$builddir/compile.log"
    echo "update-symbols: the build failed (full log: $builddir/compile.log)" >&2
    exit 1
fi
rm -rf "$dest"
meson install -C "$builddir" --no-rebuild --quiet --destdir "$dest" >/dev/null

for m in "${modules[@]}"; do
    soversion=$(moirai_module_field "$m" soversion)
    if [[ -z "$soversion" ]]; then
        echo "update-symbols: moirai-$m/meson.build declares no ${m}_soversion" >&2
        exit 1
    fi
    pkg=libmoirai-$m$soversion
    file=debian/$pkg.symbols
    lib=$dest/usr/lib/$multiarch/libmoirai-$m.so.$soversion
    if [[ ! -e "$lib" ]]; then
        echo "update-symbols: $lib was not built" >&2
        exit 1
    fi
    template=()
    if [[ -f "$file" ]]; then
        template=(-I"$file")
    fi
    # -c0: report, never fail; the diff is for a person to review.
    dpkg-gensymbols -c0 -q -p"$pkg" -P"$dest" -e"$lib" -v"$version" \
        "${template[@]}" -O"$file.new"
    # The -dev package that a build depending on these symbols needs.
    if ! grep -q '^\* Build-Depends-Package:' "$file.new"; then
        sed -i "1a * Build-Depends-Package: libmoirai-$m-dev" "$file.new"
    fi
    mv "$file.new" "$file"
    echo "update-symbols: $file: $(grep -c '^ ' "$file") symbols"
done
git --no-pager diff --stat -- debian/*.symbols 2>/dev/null || true
