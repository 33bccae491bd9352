#!/usr/bin/env bash
# Checks that a built Moirai library carries exactly the USDT probes that
# docs/observability.md ("USDT probes") lists for it: readelf -n must show
# one or more semaphore-less stapsdt notes of provider `moirai` for every
# probe of the table's rows for the library, and no probe the table does
# not list (so the documentation and the code cannot drift apart).
#
#   check_notes.sh HAVE_PROBES READELF LIBRARY_NAME LIBRARY_PATH DOCS
#
# HAVE_PROBES is 1 when the build has probes (option 'probes' on and
# <sys/sdt.h> found). Without probes the library must carry no stapsdt
# note at all; the test then reports itself skipped (77) with the reason,
# since what it is meant to check is absent from this build.
set -euo pipefail

have=$1 readelf=$2 name=$3 lib=$4 docs=$5

if [[ -z "$readelf" ]]; then
    echo "SKIP: readelf (binutils) not found"
    exit 77
fi

notes=$("$readelf" -n "$lib")
if [[ "$have" != 1 ]]; then
    if grep -q 'stapsdt' <<<"$notes"; then
        echo "FAIL: $lib has stapsdt notes in a build without probes"
        exit 1
    fi
    echo "SKIP: built without USDT probes (no <sys/sdt.h>, for example the aarch64 cross build," \
        "or -Dprobes=disabled); checked that $name has no stapsdt note"
    exit 77
fi

# The documented probes of this library: table rows "| moirai-x | `probe` | ...".
expected=$(awk -F'|' -v lib="$name" '
    /^## USDT probes/ { in_section = 1; next }
    /^## / { in_section = 0 }
    in_section && $2 ~ "^ *" lib " *$" {
        p = $3; gsub(/[ `]/, "", p); print p
    }' "$docs" | sort -u)
if [[ -z "$expected" ]]; then
    echo "FAIL: docs list no probe for $name ($docs, section \"USDT probes\")"
    exit 1
fi

# readelf prints, per note: "Provider: P" (at the end of the note's
# header line, or on a line of its own), "Name: N", then
# "Location: ..., Base: ..., Semaphore: S" and "Arguments: ...".
found=$(awk '
    /Provider: / { prov = $0; sub(/.*Provider: */, "", prov); sub(/ .*/, "", prov) }
    /^ *Name: / { nm = $2 }
    /Semaphore: / {
        sem = $NF
        if (prov != "moirai") { print "BADPROVIDER " prov ":" nm; next }
        if (sem !~ /^0x0+$/) { print "SEMAPHORE " nm; next }
        print nm
    }' <<<"$notes")

status=0
if grep -q '^BADPROVIDER\|^SEMAPHORE' <<<"$found"; then
    echo "FAIL: notes with another provider or with a semaphore:"
    grep '^BADPROVIDER\|^SEMAPHORE' <<<"$found"
    status=1
fi
actual=$(grep -v '^BADPROVIDER\|^SEMAPHORE' <<<"$found" | sort -u || true)

missing=$(comm -23 <(echo "$expected") <(echo "$actual"))
extra=$(comm -13 <(echo "$expected") <(echo "$actual"))
if [[ -n "$missing" ]]; then
    echo "FAIL: documented probes missing from $lib:" $missing
    status=1
fi
if [[ -n "$extra" ]]; then
    echo "FAIL: probes in $lib that docs/observability.md does not list:" $extra
    status=1
fi
if [[ $status == 0 ]]; then
    echo "$name: $(wc -l <<<"$actual") probes, all documented:" $actual
fi
exit $status
