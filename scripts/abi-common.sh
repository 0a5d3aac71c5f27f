# SPDX-License-Identifier: LGPL-2.1-or-later
# Sourced by scripts/check-abi.sh and scripts/update-abi.sh.
# abi_soname LIB: the SONAME of LIB. abi_dump LIB OUT: the baseline format,
# libabigail's abidw output without paths of this machine and without the
# empty translation units (the standard library's), so a rebuild elsewhere
# writes the same file.

abi_soname() {
    readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p'
}

abi_dump() {
    if ! readelf -S "$1" | grep -q '\.debug_info'; then
        echo "$1 has no debug info: the ABI baseline needs the types (build with Meson, or -C debuginfo=2 -C strip=none)" >&2
        return 1
    fi
    abidw --no-corpus-path --no-comp-dir-path --no-show-locs --type-id-style hash "$1" |
        sed '/<abi-instr [^>]*>$/{N;/\n *<\/abi-instr>$/d;}' >"$2"
}
