#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Records the ABI of a built library as its baseline abi/SONAME.abi, after
# a deliberate change (ABI.md). Under the same SONAME it takes added
# functions; any other change needs abi/soversion bumped first (then the
# baseline of the old SONAME is removed), or --compatible from whoever has
# shown that the change is compatible (the commit message says why).
#
# Usage: scripts/update-abi.sh [--compatible] path/to/libvircgroup_v2_devices.so
# (the Meson build's library, which has the debug info: build/lib*.so)
set -eu

compatible=
if [ "${1:-}" = --compatible ]; then
    compatible=1
    shift
fi
lib=${1:?usage: scripts/update-abi.sh [--compatible] path/to/libvircgroup_v2_devices.so}
here=$(dirname "$0")
abidir=$here/../abi
. "$here/abi-common.sh"

soname=$(abi_soname "$lib")
want=libvircgroup_v2_devices.so.$(cat "$abidir/soversion")
if [ "$soname" != "$want" ]; then
    echo "$lib has SONAME '$soname', abi/soversion says '$want': rebuild it" >&2
    exit 1
fi
baseline=$abidir/$soname.abi
tmp=$(mktemp "${TMPDIR:-/tmp}/vcg2-abi.XXXXXX")
trap 'rm -f "$tmp"' EXIT INT TERM
abi_dump "$lib" "$tmp"

if [ -f "$baseline" ]; then
    rc=0
    abidiff --no-show-locs --no-added-syms "$baseline" "$tmp" || rc=$?
    if [ $((rc & 3)) -ne 0 ]; then
        echo "abidiff failed (exit $rc)" >&2
        exit 1
    fi
    if [ $rc -ne 0 ] && [ -z "$compatible" ]; then
        echo "refused: more than added functions changed under SONAME $soname;" \
             "bump abi/soversion, or pass --compatible if it is (ABI.md)" >&2
        exit 1
    fi
else
    for old in "$abidir"/*.abi; do
        [ -e "$old" ] || continue
        echo "new SONAME $soname: removing the old baseline $old"
        rm -f "$old"
    done
fi
cp "$tmp" "$baseline"
echo "wrote $baseline"
