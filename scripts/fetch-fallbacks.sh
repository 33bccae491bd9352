#!/usr/bin/env bash
# Places the source tarballs of the Meson fallbacks (subprojects/*.wrap)
# in subprojects/packagecache/, taken from Debian's source packages through
# apt, so that a build with the fallbacks needs no other network.
#
# For each wrap-file, the Debian source package named below must list the
# wrap's source_filename among its files for the release this machine
# follows (`apt-get source --print-uris`); the file is downloaded by apt's
# own client and checked against the wrap's source_hash. A tarball already
# in the cache with the right hash is kept. When no deb-src line is
# configured, one is added for Debian's main archive
# (/etc/apt/sources.list.d/moirai-deb-src.sources) and the index refreshed.
#
# Usage: scripts/fetch-fallbacks.sh
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=$root/subprojects/packagecache

# wrap name -> Debian source package.
declare -A source_package=(
    [libuv]=libuv1
    [liburcu]=liburcu
    [criterion]=criterion
    [boxfort]=boxfort
    [nanopb]=nanopb
    [debugbreak]=debugbreak
    [htslib]=htslib
    [nanomsg]=nanomsg
)

sudo=()
if ((EUID != 0)); then
    sudo=(sudo)
fi

has_deb_src() {
    grep -rqsE '^(deb-src|Types:.*deb-src)' /etc/apt/sources.list /etc/apt/sources.list.d/
}

if ! has_deb_src; then
    # The suite this machine uses, from the first deb822 or one-line entry.
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    echo "fetch-fallbacks: adding deb-src lines for Debian $codename"
    "${sudo[@]}" tee /etc/apt/sources.list.d/moirai-deb-src.sources >/dev/null <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: $codename $codename-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    "${sudo[@]}" apt-get update -q
fi

# wrap_key FILE KEY: the value of KEY in a wrap file.
wrap_key() {
    sed -n "s/^$2[[:space:]]*=[[:space:]]*//p" "$1" | head -n 1
}

mkdir -p "$cache"
# apt-get source --print-uris skips files already present in the current
# directory, so ask from an empty one.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

status=0
for wrap in "$root"/subprojects/*.wrap; do
    name=$(basename "$wrap" .wrap)
    file=$(wrap_key "$wrap" source_filename)
    hash=$(wrap_key "$wrap" source_hash)
    [[ -n "$file" ]] || continue
    pkg=${source_package[$name]:-}
    if [[ -z "$pkg" ]]; then
        echo "fetch-fallbacks: $name.wrap: no Debian source package known (add it to this script)" >&2
        status=1
        continue
    fi
    if [[ -f "$cache/$file" ]] && echo "$hash  $cache/$file" | sha256sum -c --quiet - 2>/dev/null; then
        echo "fetch-fallbacks: $file already cached"
        continue
    fi
    uri=$(cd "$scratch" && apt-get source --print-uris "$pkg" 2>/dev/null |
        awk -v f="$file" '$2 == f { gsub("\x27", "", $1); print $1 }')
    if [[ -z "$uri" ]]; then
        echo "fetch-fallbacks: Debian's source package $pkg does not ship $file" \
            "(update subprojects/$name.wrap to the version apt offers)" >&2
        status=1
        continue
    fi
    echo "fetch-fallbacks: $file from $uri"
    rm -f "$cache/$file"
    # apt's downloader checks the hash itself and leaves no file on a
    # mismatch. It runs as root here, so it warns that it is not sandboxed.
    /usr/lib/apt/apt-helper download-file "$uri" "$cache/$file" "SHA256:$hash"
done
exit $status
