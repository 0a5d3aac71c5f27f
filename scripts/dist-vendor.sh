#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Meson dist script (`meson dist -C build`): puts every crate of Cargo.lock
# into the release tarball, under vendor/, with a .cargo/config.toml that
# points cargo there, so that the tarball builds with no network at all (a
# distribution's build, scripts/check-offline.sh).
#
# Usage (from meson.add_dist_script): dist-vendor.sh CARGO
set -eu

cargo=$1
cd "${MESON_DIST_ROOT:?run by meson dist}"
mkdir -p .cargo
# cargo vendor prints the source replacement to put in the config.
if ! "$cargo" vendor --locked --versioned-dirs vendor >.cargo/config.toml.new 2>.cargo/vendor.log; then
    cat .cargo/vendor.log >&2
    exit 1
fi
rm .cargo/vendor.log
{
    echo '# SPDX-License-Identifier: LGPL-2.1-or-later'
    echo '# Written by scripts/dist-vendor.sh: build from vendor/, never the network.'
    cat .cargo/config.toml.new
    printf '\n[net]\noffline = true\n'
} >.cargo/config.toml
rm .cargo/config.toml.new
echo "dist-vendor: $(ls vendor | wc -l) crates vendored"
