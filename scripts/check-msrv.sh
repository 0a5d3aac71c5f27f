#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The crate builds with its rust-version, for real: Debian's rustc and cargo
# 1.85 (scripts/debian-rust.sh) check every target from Cargo.lock (the
# tests and the benchmark, with the `testing` feature they need, so the
# dev-dependencies too); the Debian package
# (scripts/build-deb.sh) builds and tests the library and the tool with the
# same toolchain. A dependency update that needs a newer Rust fails here.
#
# Usage: scripts/check-msrv.sh
set -eu
cd "$(dirname "$0")/.."

want=$(sed -n '/^\[package\]/,/^\[/ s/^rust-version *= *"\(.*\)".*/\1/p' Cargo.toml)
got=$(scripts/debian-rust.sh rustc --version | cut -d' ' -f2)
case $got in
"$want" | "$want".*) ;;
*)
    echo "check-msrv: Cargo.toml says rust-version $want, the toolchain is $got" >&2
    exit 1
    ;;
esac
echo "check-msrv: rust-version $want, building with Debian's rustc $got"
# Its own target directory, kept between runs: a rerun checks only this crate.
export CARGO_TARGET_DIR=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/msrv/target
scripts/debian-rust.sh cargo check --locked --quiet --all-targets --features testing
echo "check-msrv: every target checks with Rust $got"
