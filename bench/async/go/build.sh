#!/bin/sh
# Builds the Go peer of the async suite as a C shared library, offline,
# for bench/meson.build's custom target.
#
# usage: build.sh GO SRC_DIR WORK_DIR OUTPUT
#
# The package is copied to WORK_DIR/src so that nothing is written into the
# source tree; GOCACHE, GOPATH and the module cache live in WORK_DIR too.
# GOPROXY=off and GOFLAGS=-mod=mod without a go.sum: the module has no
# dependencies, so the build never needs the network, and fails if it would.
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
    GOFLAGS= CGO_ENABLED=1 \
    "$go" build -buildmode=c-shared -trimpath -o "$work/peer.so" .
cp "$work/peer.so" "$output"
