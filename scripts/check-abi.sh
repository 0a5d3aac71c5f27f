#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# The library's ABI equals its committed baseline, abi/SONAME.abi (abidw
# output): libabigail's abidiff compares the exported functions, their
# symbol versions and the types they reach. ABI.md says what a change needs:
# an added function a new baseline, any other change a new soversion first;
# scripts/update-abi.sh records both, and refuses the second under the same
# SONAME unless told it is compatible.
#
# Usage: scripts/check-abi.sh path/to/libvircgroup_v2_devices.so ABI_DIR
set -eu

lib=$1
abidir=$2
. "$(dirname "$0")/abi-common.sh"
if ! command -v abidiff >/dev/null 2>&1; then
    echo "abidiff not found: install abigail-tools (libabigail)" >&2
    [ "${CI:-}" = true ] && exit 1
    exit 77
fi

soname=$(abi_soname "$lib")
baseline=$abidir/$soname.abi
if [ ! -f "$baseline" ]; then
    echo "no ABI baseline $baseline for SONAME '$soname':" \
         "a new soversion needs one (scripts/update-abi.sh, ABI.md)" >&2
    exit 1
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-abi.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM
abi_dump "$lib" "$tmp/new.abi"

rc=0
abidiff --no-show-locs "$baseline" "$tmp/new.abi" >"$tmp/report" 2>&1 || rc=$?
if [ $rc -eq 0 ]; then
    echo "ABI of $soname: equal to $baseline"
    exit 0
fi
cat "$tmp/report" >&2
if [ $((rc & 3)) -ne 0 ]; then
    echo "abidiff failed (exit $rc)" >&2
    exit 1
fi
# Added functions alone are a compatible change; anything else (a removed
# function, a changed parameter, return or struct type) is taken as
# incompatible, whatever abidiff's own bit 8 (removals only) says.
if abidiff --no-show-locs --no-added-syms "$baseline" "$tmp/new.abi" >/dev/null 2>&1; then
    echo "compatible ABI change (functions added) against $baseline: record it" \
         "with scripts/update-abi.sh, and the new symbols in packaging/debian/*.symbols (ABI.md)" >&2
else
    echo "INCOMPATIBLE ABI change against $baseline: bump abi/soversion and" \
         "the Debian package name, then scripts/update-abi.sh (ABI.md); a change" \
         "shown compatible is recorded with scripts/update-abi.sh --compatible" >&2
fi
exit 1
