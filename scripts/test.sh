#!/usr/bin/env bash
# The README's test command: installs the dependencies, configures a plain
# (debugoptimized) build, builds everything and runs every test suite.
#
# Usage: scripts/test.sh [meson test arguments...]
#   e.g. scripts/test.sh --suite core
#
# Environment:
#   MOIRAI_BUILD_DIR   build directory (default: build/ in the source tree)
#   MOIRAI_MESON_ARGS  extra `meson setup` arguments, split on spaces,
#                      e.g. "-Dwerror=true" or "-Db_sanitize=thread"
#   MOIRAI_SKIP_SETUP  set to 1 to skip scripts/setup.sh
#
# Exit status: that of `meson test` (non-zero if any test failed), or of
# the step that failed before it.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

builddir=${MOIRAI_BUILD_DIR:-$moirai_root/build}

if [[ "${MOIRAI_SKIP_SETUP:-0}" != 1 ]]; then
    "$moirai_root/scripts/setup.sh"
fi
moirai_configure "$builddir" \
    -Dbuildtype=debugoptimized -Db_sanitize=none -Dwerror=false \
    -Dtests=true -Dexamples=true -Dbenchmarks=true
meson compile -C "$builddir"
meson test -C "$builddir" --print-errorlogs "$@"
