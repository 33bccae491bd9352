#!/usr/bin/env bash
# The README's benchmark command: installs the dependencies, configures an
# optimised (release) build, builds everything and runs moirai-bench with
# this script's arguments.
#
# Usage: scripts/bench.sh [moirai-bench arguments...]
#   e.g. scripts/bench.sh --quick
#        scripts/bench.sh --json > results.jsonl
#
# Only moirai-bench writes to stdout; set-up and build output go to stderr,
# so `--json` output can be redirected as it is.
#
# Environment:
#   MOIRAI_BUILD_DIR   build directory (default: build/ in the source tree)
#   MOIRAI_MESON_ARGS  extra `meson setup` arguments, split on spaces
#   MOIRAI_SKIP_SETUP  set to 1 to skip scripts/setup.sh
set -euo pipefail
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

builddir=${MOIRAI_BUILD_DIR:-$moirai_root/build}

# Keep the real stdout on descriptor 3 for the benchmark's results.
exec 3>&1 1>&2
if [[ "${MOIRAI_SKIP_SETUP:-0}" != 1 ]]; then
    "$moirai_root/scripts/setup.sh"
fi
moirai_configure "$builddir" -Dbuildtype=release -Db_sanitize=none -Dwerror=false -Dbenchmarks=true
meson compile -C "$builddir"
exec "$builddir/bench/moirai-bench" "$@" 1>&3 3>&-
