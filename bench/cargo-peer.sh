#!/bin/sh
# Builds a Rust peer (the Rayon and Tokio modules) offline from Debian's
# vendored crates, for bench/meson.build's custom targets. The crate must
# build exactly one cdylib.
#
# usage: build.sh CARGO CRATE_DIR WORK_DIR OUTPUT
#
# The crate is copied to WORK_DIR/crate so that nothing is written into
# the source tree (no Cargo.lock, no target/), CARGO_HOME and the target
# directory live in WORK_DIR too, and a config there replaces crates.io
# with the directory registry /usr/share/cargo/registry, offline. The
# cdylib is then copied to OUTPUT.
set -eu
cargo=$1
crate=$2
work=$3
output=$4

# Absolute paths: the build runs in the crate copy.
mkdir -p "$work" "$(dirname "$output")"
work=$(cd "$work" && pwd)
output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")
rm -rf "$work/crate"
mkdir -p "$work/crate" "$work/cargo-home"
cp "$crate/Cargo.toml" "$work/crate/"
cp -R "$crate/src" "$work/crate/"

# Cargo reads config from CARGO_HOME and from the directories above the
# working directory; the crate copy gets the same file for good measure.
config='[source.crates-io]
replace-with = "debian"

[source.debian]
directory = "/usr/share/cargo/registry"

[net]
offline = true
'
printf '%s' "$config" >"$work/cargo-home/config.toml"
mkdir -p "$work/crate/.cargo"
printf '%s' "$config" >"$work/crate/.cargo/config.toml"

# The rustc that came with this cargo, unless RUSTC names one: a cargo
# from rustup next to Debian's (or the reverse) would otherwise pick
# whichever rustc comes first on PATH.
if [ -z "${RUSTC:-}" ] && [ -x "$(dirname "$cargo")/rustc" ]; then
    RUSTC=$(dirname "$cargo")/rustc
    export RUSTC
fi

cd "$work/crate"
CARGO_HOME="$work/cargo-home" CARGO_TARGET_DIR="$work/target" \
    "$cargo" build --release --offline --quiet
# The crate's one cdylib, whatever its name.
set -- "$work"/target/release/lib*.so
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "cargo-peer: expected one cdylib in $work/target/release, found: $*" >&2
    exit 1
fi
cp "$1" "$output"
