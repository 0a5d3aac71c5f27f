#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The committed include/vircgroup_v2_devices.h equals a fresh run of the
# pinned cbindgen (the Rust test tests/header.rs does the comparison).
#
# Usage: scripts/check-header.sh CARGO SOURCE_DIR TARGET_DIR
set -eu

cargo=$1
src=$2
target_dir=$3
# Offline (a distribution's build, the release tarball's check) the check is
# skipped: it compiles cbindgen and its dependency tree (serde, syn, toml...),
# which only generating the header needs. CI, online, runs it.
case ${CARGO_NET_OFFLINE:-} in
true|1|yes)
    echo "header-fresh: skipped: CARGO_NET_OFFLINE=$CARGO_NET_OFFLINE, and this check" \
         "builds cbindgen and its dependencies (the header is checked in CI)"
    exit 77
    ;;
esac
# Never rewrite the header from a test run.
unset UPDATE_HEADER
exec "$cargo" test --locked --quiet --manifest-path "$src/Cargo.toml" \
    --target-dir "$target_dir" --test header
