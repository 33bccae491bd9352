#!/usr/bin/env bash
# Generates Moirai's API reference with Doxygen (docs/Doxyfile) from the
# comments of every installed header, into BUILD_DIR/api-docs/html, and
# fails when Doxygen warns: an undocumented public declaration (function,
# type, macro, enum value, struct member) or a malformed comment. The
# warnings are printed, one per line, with the header and line.
#
# docs/api-undocumented.txt lists the gaps that existed when the check was
# introduced (one per line, the header and Doxygen's message without the
# line number). Those are reported but tolerated; any other warning fails,
# and so does an entry of the list that no longer occurs, so the list only
# shrinks: document the declaration and delete its line.
#
# Usage: scripts/api-docs.sh [BUILD_DIR]     (default: build/)
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
[[ "$build" = /* ]] || build=$PWD/$build

if ! command -v doxygen >/dev/null; then
    echo "api-docs: doxygen not found (scripts/setup.sh installs it)" >&2
    exit 1
fi

out=$build/api-docs
rm -rf "$out"
mkdir -p "$out"
input=()
for dir in "$root"/moirai-*/include; do
    [[ -d "$dir" ]] && input+=("$dir")
done
# The headers the build generates (version.h). Without a configured build
# directory they are missing and so are their declarations' checks.
generated=0
for dir in "$build"/moirai-*/include; do
    if [[ -d "$dir" ]]; then
        input+=("$dir")
        generated=$((generated + 1))
    fi
done
if ((generated == 0)); then
    echo "api-docs: no configured build in $build: the generated headers (version.h) are not checked" >&2
fi

rc=0
MOIRAI_SRC=$root MOIRAI_BUILD=$build MOIRAI_DOC_OUT=$out MOIRAI_INPUT="${input[*]}" \
    doxygen "$root/docs/Doxyfile" || rc=$?
if [[ ! -f "$out/html/index.html" ]]; then
    echo "api-docs: doxygen failed (exit $rc) before writing the reference" >&2
    [[ -f "$out/warnings.log" ]] && cat "$out/warnings.log" >&2
    exit 1
fi
# Doxygen exits non-zero for any warning (WARN_AS_ERROR); the comparison
# with the list of known gaps decides.
python3 - "$root" "$build" "$out/warnings.log" "$root/docs/api-undocumented.txt" <<'PY'
import re, sys
root, build, log, known_path = sys.argv[1:]
def key(line):
    # "<root>/path:LINE: error: message" -> "path: message", and a
    # generated header's path starts with "<build>/" wherever the build is.
    line = line.strip().replace(build + "/", "<build>/").replace(root + "/", "")
    return re.sub(r"^([^:]+):\d+: (?:error|warning): ", r"\1: ", line)
warnings = [l.rstrip("\n") for l in open(log) if l.strip()]
known = {l.strip() for l in open(known_path) if l.strip() and not l.startswith("#")}
seen = {key(w) for w in warnings}
new = [w.replace(build + "/", "<build>/").replace(root + "/", "") for w in warnings
       if key(w) not in known]
gone = sorted(known - seen)
tolerated = len(seen & known)
for w in new:
    print("api-docs: undocumented or badly documented:", w)
for g in gone:
    print("api-docs: now documented, delete its line from docs/api-undocumented.txt:", g)
print(f"api-docs: {len(new)} new warnings, {tolerated} known gaps tolerated "
      f"(docs/api-undocumented.txt), {len(gone)} stale entries")
sys.exit(1 if new or gone else 0)
PY
echo "api-docs: reference in $out/html/index.html"
