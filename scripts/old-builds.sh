#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the shared library at each earlier commit of main that changed the
# device program or the map encoding (the formats upgrades must adopt), for
# tests/upgrade/releases.rs. Each build is cached by commit under
#   ${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/old-builds/<commit>/
# so a rerun builds nothing. Prints one "FORMAT PATH-TO-SO" line per build.
#
# Usage: scripts/old-builds.sh [REPO]   (default: the repository it is in)
set -eu
repo=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cache=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/old-builds
mkdir -p "$cache"
# format commit: the first commit of each earlier format (src/program/legacy.rs),
# and the last build of today's format 6 whose tables had one bucket per
# rule (now two: src/table/mod.rs, bits_for), which must be read as they are
formats='1 a93ba94
2 d757e85
3 c229e5f
4 ab618f1
6 923c679'
echo "$formats" | while read -r format commit; do
    full=$(git -C "$repo" rev-parse --verify -q "$commit^{commit}") || {
        echo "old-builds: commit $commit (format $format) is not in $repo" >&2
        exit 1
    }
    out=$cache/$full
    so=$out/libvircgroup_v2_devices.so
    if [ ! -f "$so" ]; then
        work=$(mktemp -d "$cache/.build-XXXXXX")
        trap 'git -C "$repo" worktree remove --force "$work/src" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
        git -C "$repo" worktree add -q --detach "$work/src" "$full"
        echo "old-builds: building format $format ($commit)" >&2
        # One target directory for all of them: the dependencies build once.
        (cd "$work/src" && CARGO_TARGET_DIR=$cache/target \
            cargo build --release --locked --lib -q) >&2
        mkdir -p "$out"
        cp "$cache/target/release/libvircgroup_v2_devices.so" "$so.tmp"
        mv "$so.tmp" "$so"
        git -C "$repo" worktree remove --force "$work/src"
        rm -rf "$work"
        trap - EXIT
    fi
    echo "$format $so"
done
