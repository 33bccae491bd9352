# shellcheck shell=bash
# Shared by scripts/test.sh and scripts/bench.sh (sourced, not run).
#
# moirai_configure BUILD_DIR ARGS...
#   Configures BUILD_DIR for the source tree with the meson options ARGS,
#   followed by the words of $MOIRAI_MESON_ARGS (later -D options win, so
#   the environment can override any default a script passes). An existing
#   build directory is reconfigured in place; if that fails (for instance
#   after a meson upgrade) it is wiped and configured afresh. Every option a
#   script cares about is passed explicitly, so a build directory last
#   configured differently (a sanitizer, another build type) is brought back
#   to a known state.

moirai_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

moirai_configure() {
    local builddir=$1
    shift
    local extra=()
    if [[ -n "${MOIRAI_MESON_ARGS:-}" ]]; then
        read -r -a extra <<<"$MOIRAI_MESON_ARGS"
    fi
    if [[ -f "$builddir/meson-private/coredata.dat" ]]; then
        meson setup --reconfigure "$builddir" "$moirai_root" "$@" "${extra[@]}" ||
            meson setup --wipe "$builddir" "$moirai_root" "$@" "${extra[@]}"
    else
        meson setup "$builddir" "$moirai_root" "$@" "${extra[@]}"
    fi
}
