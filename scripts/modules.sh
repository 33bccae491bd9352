# shellcheck shell=bash
# Shared by the packaging scripts (sourced, not run): what the top-level
# meson.build says about the modules.
#
# moirai_modules         prints the modules, one per line, in the order of
#                        the subdir('moirai-<name>') lines (the dependency
#                        order), e.g. "core".
# moirai_module_field M F  prints the value of `<M>_<F> = '...'` in
#                        moirai-M/meson.build (F: version, soversion).
# moirai_project_version prints the project() version.

moirai_root=${moirai_root:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

moirai_modules() {
    sed -n "s/^[[:space:]]*subdir('moirai-\([a-z0-9]*\)')[[:space:]]*\(#.*\)\{0,1\}$/\1/p" \
        "$moirai_root/meson.build"
}

moirai_module_field() {
    sed -n "s/^$1_$2[[:space:]]*=[[:space:]]*'\([^']*\)'.*/\1/p" \
        "$moirai_root/moirai-$1/meson.build" | head -n1
}

moirai_project_version() {
    # The first "version: '...'" is project()'s (it comes first in the file).
    sed -n "s/^[[:space:]]*version:[[:space:]]*'\([^']*\)'.*/\1/p" "$moirai_root/meson.build" |
        head -n1
}
