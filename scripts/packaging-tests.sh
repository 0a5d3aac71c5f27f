#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The packaging stage of ./run-tests.sh, each step timed:
#   tarball  the release tarball, crates vendored (scripts/release-tarball.sh)
#   offline  it builds and passes its tests with no network (check-offline.sh)
#   msrv     every target checks with Rust 1.85, the rust-version (check-msrv.sh)
#   deb      the Debian packages: built offline, lintian, installed, used by a
#            C consumer, removed (build-deb.sh)
# The tarball, the offline check's pass, the Debian build and its lintian
# pass (per git tree), and the 1.85 toolchain are cached under
# /var/cache/vircgroup-v2-devices/ (see each script).
#
# Usage: scripts/packaging-tests.sh   (as root)
set -eu
cd "$(dirname "$0")/.."

step() {
    name=$1
    shift
    start=$(date +%s)
    "$@"
    echo "== packaging: $name: $(($(date +%s) - start))s"
}

tarball=
make_tarball() { tarball=$(scripts/release-tarball.sh); echo "tarball: $tarball"; }
# Once per tree: the tarball's directory is keyed by it.
offline() {
    stamp=$(dirname "$tarball")/offline.passed
    if [ -f "$stamp" ]; then
        echo "offline: this tree's tarball passed before ($stamp)"
        return
    fi
    scripts/check-offline.sh "$tarball"
    touch "$stamp"
}
step tarball make_tarball
step offline offline
step msrv scripts/check-msrv.sh
step deb scripts/build-deb.sh
