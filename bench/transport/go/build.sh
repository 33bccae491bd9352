#!/bin/sh
# Builds the Go peer of the transport suite as a program, offline, for
# bench/meson.build's custom target.
#
# usage: build.sh GO SRC_DIR WORK_DIR OUTPUT
#
# As bench/async/go/build.sh: the package is copied to WORK_DIR/src so that
# nothing is written into the source tree, GOCACHE and GOPATH live in
# WORK_DIR, and GOPROXY=off: the module has no dependencies and the build
# never needs the network.
set -eu
go=$1
src=$2
work=$3
output=$4

mkdir -p "$work" "$(dirname "$output")"
work=$(cd "$work" && pwd)
output=$(cd "$(dirname "$output")" && pwd)/$(basename "$output")
rm -rf "$work/src"
mkdir -p "$work/src" "$work/gocache" "$work/gopath"
cp "$src/go.mod" "$src/peer.go" "$work/src/"

cd "$work/src"
GOCACHE="$work/gocache" GOPATH="$work/gopath" GO111MODULE=on GOPROXY=off \
    GOFLAGS= CGO_ENABLED=0 \
    "$go" build -trimpath -o "$work/peer" .
cp "$work/peer" "$output"
