#!/usr/bin/env bash
# The ABI check: compares each library's ABI, as built from this tree, with
# the baseline stored in abi/<module>.abi, using libabigail (abidw, abidiff).
#
#   scripts/check-abi.sh                   check every module in meson.build
#   scripts/check-abi.sh --update [M...]   rewrite the baselines instead
#                                          (scripts/update-abi.sh does this)
#
# What is compared: the exported symbols (with their version nodes) and
# every type reachable from them that the installed headers declare
# (abidw --headers-dir ... --drop-private-types), so a change inside an
# opaque object is not an ABI change but a field added to moirai_mutex_t
# is. The libraries are built as for a release (-O3, -DNDEBUG) with debug
# information, into a scratch build directory.
#
# A module passes when, against its baseline:
#   - nothing changed; or
#   - symbols were only added, each in a version node the baseline does not
#     have (a new MOIRAI_<MODULE>_x.y node: a released node never grows;
#     see docs/packaging.md); or
#   - its SONAME changed (the soversion was bumped: any change is allowed,
#     and the message says to record the new baseline).
# Anything else -- a symbol removed, a signature or public type changed --
# is an incompatible change without a soversion bump, and fails. So does
# a module without a baseline.
#
# Environment: MOIRAI_ABI_BUILD_DIR (default build-abi/ in the source tree).
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/modules.sh"
cd "$moirai_root"

update=0
if [[ "${1:-}" == --update ]]; then
    update=1
    shift
fi
if (($# > 0)); then
    modules=("$@")
else
    mapfile -t modules < <(moirai_modules)
fi

for tool in abidw abidiff python3 meson; do
    if ! command -v "$tool" >/dev/null; then
        echo "check-abi: $tool not found (scripts/setup.sh installs abigail-tools)" >&2
        exit 1
    fi
done

builddir=${MOIRAI_ABI_BUILD_DIR:-$moirai_root/build-abi}
# Absolute: meson install takes a relative --destdir from the build directory.
mkdir -p "$builddir"
builddir=$(cd "$builddir" && pwd)
dest=$builddir/destdir
work=$builddir/abi
if [[ -f "$builddir/meson-private/coredata.dat" ]]; then
    meson setup --reconfigure "$builddir" >/dev/null
else
    meson setup "$builddir" --prefix=/usr --libdir=lib \
        -Doptimization=3 -Ddebug=true -Db_ndebug=true \
        -Dtests=false -Dbenchmarks=false -Dexamples=false -Dmutants=false \
        -Dnuma=enabled >/dev/null
fi
if ! meson compile -C "$builddir" >"$builddir/compile.log" 2>&1; then
    tail -n 40 "$builddir/compile.log"
    echo "check-abi: the release build failed (full log: $builddir/compile.log)" >&2
    exit 1
fi
rm -rf "$dest" "$work"
mkdir -p "$work"
meson install -C "$builddir" --no-rebuild --quiet --destdir "$dest" >/dev/null

# The representation, made stable so that a baseline diff shows only real
# changes: no paths of the machine that built it, type ids by hash.
# --exported-interfaces-only is not only smaller: without it, libabigail 2.2
# (Debian 12) misses a changed struct layout when comparing two ABI XML
# files (a field inserted into moirai_pool_config_t went unreported, while
# the same two libraries compared as ELF showed it).
dump_abi() {
    abidw --exported-interfaces-only \
        --headers-dir "$dest/usr/include/moirai" --drop-private-types \
        --no-corpus-path --no-comp-dir-path --short-locs --type-id-style hash \
        --out-file "$2" "$1"
}

# symbols FILE: "name version" per exported symbol of an abidw corpus.
symbols() {
    python3 - "$1" <<'PY'
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for sym in root.iter("elf-symbol"):
    if sym.get("is-defined", "yes") == "yes":
        print(sym.get("name"), sym.get("version", ""))
PY
}

soname_of() {
    sed -n "1s/.*soname='\([^']*\)'.*/\1/p" "$1"
}

failed=0
for m in "${modules[@]}"; do
    soversion=$(moirai_module_field "$m" soversion)
    lib=$dest/usr/lib/libmoirai-$m.so.$soversion
    baseline=abi/$m.abi
    if [[ ! -e "$lib" ]]; then
        echo "FAIL: moirai-$m: $lib was not built" >&2
        failed=$((failed + 1))
        continue
    fi
    current=$work/$m.abi
    dump_abi "$lib" "$current"

    if ((update)); then
        cp "$current" "$baseline"
        echo "check-abi: wrote $baseline ($(symbols "$baseline" | wc -l) symbols, $(soname_of "$baseline"))"
        continue
    fi
    if [[ ! -f "$baseline" ]]; then
        echo "FAIL: moirai-$m has no ABI baseline $baseline (scripts/update-abi.sh $m records it)" >&2
        failed=$((failed + 1))
        continue
    fi

    old_soname=$(soname_of "$baseline")
    new_soname=$(soname_of "$current")
    report=$work/$m.abidiff
    rc=0
    abidiff --no-unreferenced-symbols "$baseline" "$current" >"$report" 2>&1 || rc=$?
    if ((rc == 0)); then
        echo "ok: moirai-$m: ABI unchanged ($new_soname, $(symbols "$current" | wc -l) symbols)"
        continue
    fi
    if ((rc & 3)); then
        cat "$report"
        echo "FAIL: moirai-$m: abidiff could not compare (exit $rc)" >&2
        failed=$((failed + 1))
        continue
    fi
    if [[ "$old_soname" != "$new_soname" ]]; then
        cat "$report"
        echo "ok: moirai-$m: SONAME $old_soname -> $new_soname, so the ABI may change;" \
            "record it with scripts/update-abi.sh $m"
        continue
    fi
    # Compatible only if, leaving additions aside, nothing changed.
    rc_no_added=0
    abidiff --no-unreferenced-symbols --no-added-syms "$baseline" "$current" >/dev/null 2>&1 ||
        rc_no_added=$?
    if ((rc_no_added != 0)); then
        cat "$report"
        echo "FAIL: moirai-$m: incompatible ABI change with the SONAME still $new_soname" \
            "(bump ${m}_soversion in moirai-$m/meson.build, or undo the change)" >&2
        failed=$((failed + 1))
        continue
    fi
    # Only additions: each must sit in a version node the baseline lacks.
    misplaced=$(python3 - <(symbols "$baseline") <(symbols "$current") <<'PY'
import sys
old = dict(l.split(" ", 1) for l in open(sys.argv[1]).read().split("\n") if l)
new = dict(l.split(" ", 1) for l in open(sys.argv[2]).read().split("\n") if l)
nodes = set(old.values())
for name, node in sorted(new.items()):
    if name not in old and node in nodes:
        print(f"{name}@{node}")
PY
)
    cat "$report"
    if [[ -n "$misplaced" ]]; then
        echo "FAIL: moirai-$m: new symbols in a version node of the baseline," \
            "which a released library never grows: $(tr '\n' ' ' <<<"$misplaced")" >&2
        echo "      list them in a new node of moirai-$m/moirai-$m.map (docs/packaging.md);" \
            "before the module's first release, record the baseline again" \
            "(scripts/update-abi.sh $m)" >&2
        failed=$((failed + 1))
        continue
    fi
    echo "ok: moirai-$m: compatible additions only, in new version nodes"
done

if ((update)); then
    exit 0
fi
if ((failed > 0)); then
    echo "check-abi: $failed module(s) failed" >&2
    exit 1
fi
echo "check-abi: all ${#modules[@]} modules match their baselines"
