#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The shared library carries the expected SONAME (cargo sets none by default;
# scripts/cargo-build.py adds it at link time).
#
# Usage: scripts/check-soname.sh path/to/lib.so libvircgroup_v2_devices.so.0
set -eu

lib=$1
want=$2
got=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
if [ "$got" != "$want" ]; then
    echo "SONAME of $lib is '${got:-<none>}', expected '$want'" >&2
    exit 1
fi
echo "SONAME $got"
