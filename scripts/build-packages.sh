#!/usr/bin/env bash
# Builds Moirai's Debian packages from a clean copy of the source tree and
# checks them with lintian.
#
#   scripts/build-packages.sh [OUT_DIR]
#
# The tree (tracked and untracked files, not what .gitignore ignores: no
# build directories) is copied to OUT_DIR/moirai-<version>/ and built there
# with `dpkg-buildpackage -us -uc -b`, so the .deb files, the .changes and
# the build log land in OUT_DIR (default: build-deb/ in the source tree),
# never beside the checkout. Then `lintian` runs on the .changes: any error
# fails; warnings and the rest are printed for review.
#
# Exit status: non-zero if the build or lintian failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
cd "$moirai_root"

out=${1:-$moirai_root/build-deb}
mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(dpkg-parsechangelog -S Version)
src=$out/moirai-$version
rm -rf "$src" "$out"/*.deb "$out"/*.ddeb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$src"

if git -C "$moirai_root" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Files deleted in the work tree but still tracked are skipped.
    git -C "$moirai_root" ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [[ -e "$f" ]] && printf '%s\0' "$f"; done |
        tar -C "$moirai_root" --null -T - -cf - | tar -C "$src" -xf -
else
    tar -C "$moirai_root" --exclude='./build*' --exclude='./.git' -cf - . | tar -C "$src" -xf -
fi

echo "build-packages: dpkg-buildpackage -us -uc -b in $src"
log=$out/dpkg-buildpackage.log
if ! (cd "$src" && dpkg-buildpackage -us -uc -b) >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "build-packages: dpkg-buildpackage failed (full log: $log)" >&2
    exit 1
fi
grep -E '^dpkg-gensymbols: warning|^dh_missing' "$log" || true

changes=$(find "$out" -maxdepth 1 -name "moirai_${version}_*.changes" -print -quit)
echo "build-packages: built"
for deb in "$out"/*.deb; do
    printf '  %-48s %8s bytes  installed %6s KiB\n' "$(basename "$deb")" \
        "$(stat -c %s "$deb")" "$(dpkg-deb -f "$deb" Installed-Size)"
done

# Every tag, with its severity letter, so warnings are visible in the CI
# log; only errors fail the build.
echo "build-packages: lintian $(basename "$changes")"
lintian --fail-on error --display-info --tag-display-limit 0 "$changes"
echo "build-packages: lintian reports no errors"
