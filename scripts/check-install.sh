#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Installs the build into a scratch DESTDIR and proves the consumer path a
# libvirt developer takes: the files and symlinks are where a distribution
# expects them, and a C program builds and links with nothing but
# `pkg-config --cflags --libs vircgroup-v2-devices`, then runs against the
# installed library (not the build tree's); the admin tool is in sbindir.
#
# Usage: scripts/check-install.sh BUILD_DIR path/to/pkgconfig-consumer.c \
#            LIB_FILE SONAME   (libvircgroup_v2_devices.so.0.1.0 .so.0)
set -eu

builddir=$1
consumer=$2
lib_file=$3
soname=$4
cc=${CC:-cc}
destdir=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-install.XXXXXX")
trap 'rm -rf "$destdir"' EXIT INT TERM

meson install -C "$builddir" --no-rebuild --quiet --destdir "$destdir"

pc=$(find "$destdir" -name vircgroup-v2-devices.pc)
[ -n "$pc" ] || { echo "vircgroup-v2-devices.pc not installed" >&2; exit 1; }
echo "installed: ${pc#"$destdir"}"

PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_SYSROOT_DIR=$destdir
PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH
export PKG_CONFIG_PATH PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR
unset LD_LIBRARY_PATH

pkg-config --exists --print-errors vircgroup-v2-devices
version=$(pkg-config --modversion vircgroup-v2-devices)
# pkgconf prefixes variables with the sysroot too; pkg-config 0.29 does not.
in_destdir() {
    case $1 in
    "$destdir"/*) echo "$1" ;;
    *) echo "$destdir$1" ;;
    esac
}
libdir=$(in_destdir "$(pkg-config --variable=libdir vircgroup-v2-devices)")
includedir=$(in_destdir "$(pkg-config --variable=includedir vircgroup-v2-devices)")
echo "pkg-config: version $version, cflags '$(pkg-config --cflags vircgroup-v2-devices)'," \
     "libs '$(pkg-config --libs vircgroup-v2-devices)'"

fail() { echo "$*" >&2; exit 1; }
[ -f "$includedir/vircgroup_v2_devices.h" ] || fail "header not in $includedir"
real=$libdir/$lib_file
[ -f "$real" ] && [ ! -L "$real" ] || fail "$real is not a regular file"
[ "$(readlink "$libdir/$soname")" = "$lib_file" ] ||
    fail "$libdir/$soname does not point to $lib_file"
[ "$(readlink "$libdir/libvircgroup_v2_devices.so")" = "$soname" ] ||
    fail "$libdir/libvircgroup_v2_devices.so does not point to $soname"

# The admin tool: installed in sbin (it needs root), runs alone (the library
# is linked into it statically).
tool=$(find "$destdir" -name vircgroup-devices -type f)
case $tool in
*/sbin/vircgroup-devices) [ -x "$tool" ] || fail "$tool is not executable" ;;
*) fail "vircgroup-devices not installed in an sbin directory ('$tool')" ;;
esac
echo "installed: ${tool#"$destdir"} ($("$tool" --version))"

# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
$cc -Wall -Wextra -Werror -o "$destdir/consumer" "$consumer" \
    $(pkg-config --cflags --libs vircgroup-v2-devices)
needed=$(readelf -d "$destdir/consumer" | sed -n 's/.*(NEEDED).*\[\(libvircgroup.*\)\]$/\1/p')
[ "$needed" = "$soname" ] || fail "consumer needs '$needed', expected '$soname'"

LD_LIBRARY_PATH=$libdir "$destdir/consumer"
resolved=$(LD_LIBRARY_PATH=$libdir ldd "$destdir/consumer" | awk '/libvircgroup_v2_devices/ { print $3 }')
case $resolved in
"$libdir"/*) echo "consumer ran against $resolved" ;;
*) fail "consumer resolved the library to '$resolved', not the installed one" ;;
esac
