#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Meson's project version (which names the installed library file and goes
# into the .pc file) equals the crate version in Cargo.toml.
#
# Usage: scripts/check-version.sh path/to/Cargo.toml MESON_VERSION
set -eu

cargo_version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)".*/\1/p' "$1" | head -n 1)
if [ "$cargo_version" != "$2" ]; then
    echo "Cargo.toml version '$cargo_version' != meson project version '$2'" >&2
    exit 1
fi
# The header generator must be pinned to one exact version, or a cbindgen
# release could change the committed header under us.
if ! grep -Eq '^cbindgen *= *\{[^}]*version *= *"=' "$1" && ! grep -Eq '^cbindgen *= *"=' "$1"; then
    echo "cbindgen is not pinned with '=' in $1" >&2
    exit 1
fi
echo "version $2 (Cargo.toml and meson.build agree; cbindgen pinned)"
