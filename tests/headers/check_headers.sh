#!/usr/bin/env bash
# Compiles every installed public header alone, in every language mode a
# Moirai user may compile it in: ISO C11, GNU C11 and ISO C++17, each with
# -Wall -Wextra -Werror (and -Wpedantic in the ISO modes). Each translation
# unit includes the header twice, which also proves its include guard.
#
# "Installed" is taken literally: the build tree is installed into a
# scratch DESTDIR and the headers found there are compiled against that
# tree alone, so a header that needs an uninstalled file, or one missing
# from the install list, fails here.
#
# Usage: check_headers.sh BUILD_DIR
# Environment: CC (default cc), CXX (default c++); MOIRAI_HEADER_COMPILERS
# may add more "C-compiler:C++-compiler" pairs, space-separated (CI passes
# clang:clang++ when present); MESON (default meson).
# Exit status follows Meson's test protocol: 0 pass, 1 fail, 77 skip.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../package/common.sh"
skip_if_sanitized

builddir=$(cd "$1" && pwd)
dest=$builddir/tests/headers/destdir
install_tree "$builddir" "$dest"

# The include directory is the one holding moirai/core.h.
core_h=$(find "$dest" -path '*/include/moirai/core.h' -print -quit)
if [[ -z "$core_h" ]]; then
    echo "FAIL: moirai/core.h is not installed under $dest" >&2
    exit 1
fi
incdir=${core_h%/moirai/core.h}
mapfile -t headers < <(cd "$incdir" && find moirai -name '*.h' | LC_ALL=C sort)

pairs=("${CC:-cc}:${CXX:-c++}")
if [[ -n "${MOIRAI_HEADER_COMPILERS:-}" ]]; then
    read -r -a more <<<"$MOIRAI_HEADER_COMPILERS"
    pairs+=("${more[@]}")
fi

work=$builddir/tests/headers/work
rm -rf "$work"
mkdir -p "$work"
jobs=()
for pair in "${pairs[@]}"; do
    c=${pair%%:*}
    cxx=${pair#*:}
    for h in "${headers[@]}"; do
        # Every mode: "label|compiler|language and standard flags".
        jobs+=("$h|c11|$c|-x c -std=c11 -Wpedantic")
        jobs+=("$h|gnu11|$c|-x c -std=gnu11")
        jobs+=("$h|c++17|$cxx|-x c++ -std=c++17 -Wpedantic")
    done
done

# One compiler run per (header, mode); the runs go two at a time, and each
# writes its own log, so a failure shows its full diagnostic.
compile_one() {
    local h mode compiler flags
    IFS='|' read -r h mode compiler flags <<<"$1"
    local log
    log=$work/$(tr '/ ' '__' <<<"$h.$mode.$compiler").log
    read -r -a cmd <<<"$compiler"
    read -r -a fl <<<"$flags"
    # The header twice (its include guard), then one declaration so that
    # a header holding only macros still makes a valid ISO C unit.
    if printf '#include <%s>\n#include <%s>\ntypedef int moirai_header_check_t;\n' "$h" "$h" |
        "${cmd[@]}" "${fl[@]}" -Wall -Wextra -Werror -I"$incdir" -fsyntax-only - >"$log" 2>&1; then
        echo "ok: $h as $mode ($compiler)"
    else
        # One write, so that the two parallel jobs' reports do not mix.
        printf 'FAIL: %s does not compile alone as %s (%s):\n%s\n' "$h" "$mode" "$compiler" \
            "$(sed 's/^/    /' "$log")"
        return 1
    fi
}
export -f compile_one
export work incdir

rc=0
# shellcheck disable=SC2016 # $1 is expanded by the inner bash, on purpose.
printf '%s\0' "${jobs[@]}" | xargs -0 -n1 -P2 bash -c 'compile_one "$1"' _ || rc=$?
echo "${#headers[@]} headers, ${#jobs[@]} compilations"
if ((rc != 0)); then
    echo "some headers failed (see above)" >&2
    exit 1
fi
echo "all checks passed"
