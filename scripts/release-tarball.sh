#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The release tarball of HEAD, made by `meson dist` (every crate vendored,
# scripts/dist-vendor.sh), cached under
# /var/cache/vircgroup-v2-devices/deb/TREE/ by the git tree hash, so a rerun
# on the same tree makes nothing. Prints the tarball's path.
#
# Usage: scripts/release-tarball.sh
set -eu
cd "$(dirname "$0")/.."

tree=$(git rev-parse 'HEAD^{tree}')
if [ -n "$(git status --porcelain --untracked-files=no)" ]; then
    echo "release-tarball: uncommitted changes are not in it: meson dist packs HEAD" >&2
fi
version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)".*/\1/p' Cargo.toml)
cache=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/deb
dir=$cache/$tree
tarball=$dir/vircgroup-v2-devices-$version.tar.gz
if [ ! -f "$tarball" ]; then
    build=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-dist.XXXXXX")
    trap 'rm -rf "$build"' EXIT INT TERM
    meson setup "$build" . >"$build.log" 2>&1 &&
        meson dist -C "$build" --no-tests --allow-dirty --formats gztar >>"$build.log" 2>&1 ||
        { cat "$build.log" >&2; rm -f "$build.log"; exit 1; }
    rm -f "$build.log"
    mkdir -p "$dir"
    mv "$build/meson-dist/vircgroup-v2-devices-$version.tar.gz" "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
    # Keep the three newest trees.
    ls -1dt "$cache"/*/ | tail -n +4 | while read -r old; do rm -rf "$old"; done
fi
echo "$tarball"
