#!/usr/bin/env bash
# Records the ABI baselines abi/<module>.abi from a release build of this
# tree (see scripts/check-abi.sh, which this runs with --update). Do it when
# a module is released, after a soversion bump, or, before a module's first
# release, whenever its API changes; commit the result with the change.
#
#   scripts/update-abi.sh          every module in meson.build
#   scripts/update-abi.sh async    only these modules
exec "$(dirname "${BASH_SOURCE[0]}")/check-abi.sh" --update "$@"
