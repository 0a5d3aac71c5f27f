#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian packages as a buildd would, checks them with lintian,
# installs them on this machine, builds a C program against them with
# pkg-config alone, and removes them again.
#
#  1. The source package: the release tarball (scripts/release-tarball.sh,
#     crates vendored) as the .orig.tar.gz, with packaging/debian/ as
#     debian/ and the vendored crates' paragraphs appended to
#     debian/copyright.
#  2. dpkg-buildpackage -us -uc (source and binaries) inside `unshare -n`: no
#     network. The compiler is Debian's rustc-web/cargo-web 1.85 for bookworm
#     (scripts/debian-rust.sh: unpacked, not installed, first on PATH), which
#     satisfies the Rust Build-Depends; bookworm's own rustc (1.63) is too old.
#     So dpkg-buildpackage runs with -d, after dpkg-checkbuilddeps has checked
#     every other Build-Depends (missing ones are installed first, and named).
#  3. lintian on the .changes: any error or warning fails.
#  4. The .debs installed with dpkg, a consumer built with pkg-config only
#     and run, the tool run; then the packages are purged (also on failure),
#     unless they were installed before.
#
# Steps 1 to 3 are cached under /var/cache/vircgroup-v2-devices/deb/TREE/,
# keyed by the git tree of HEAD (which holds packaging/ and the toolchain
# version too); step 4 runs every time.
#
# Usage: scripts/build-deb.sh   (as root)
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)

log() { echo "build-deb: $*"; }
fail() { echo "build-deb: $*" >&2; exit 1; }

version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)".*/\1/p' Cargo.toml)
debversion=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
[ "${debversion%-*}" = "$version" ] ||
    fail "packaging/debian/changelog is at $debversion, Cargo.toml at $version"

tarball=$(scripts/release-tarball.sh)
dir=$(dirname "$tarball")/deb
if [ ! -f "$dir/.complete" ]; then
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$tarball" "$dir/vircgroup-v2-devices_$version.orig.tar.gz"
    tar -xzf "$tarball" -C "$dir"
    tree=$dir/vircgroup-v2-devices-$version
    # debian/ from the tarball too: the package is of HEAD, all of it.
    cp -r "$tree/packaging/debian" "$tree/debian"
    (cd "$tree" && CARGO_NET_OFFLINE=true python3 scripts/crate-licenses.py --debian-copyright) \
        >>"$tree/debian/copyright"

    # Build-Depends but Rust's (step 2): checked, and installed if missing.
    deps=$(perl -MDpkg::Control::Info -MDpkg::Deps -e '
        my $deps = deps_parse(Dpkg::Control::Info->new($ARGV[0])->get_source->{"Build-Depends"});
        print join(", ", grep { "$_" !~ /\b(rustc|cargo)\b/ } $deps->get_deps), "\n";
    ' "$tree/debian/control")
    if ! (cd "$tree" && dpkg-checkbuilddeps -d "$deps" 2>/dev/null); then
        log "installing on the host the Build-Depends: $deps"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get satisfy -y -qq "$deps" >/dev/null
        (cd "$tree" && dpkg-checkbuilddeps -d "$deps")
    fi

    scripts/debian-rust.sh --root >/dev/null
    log "dpkg-buildpackage with no network, Rust $(scripts/debian-rust.sh rustc --version | cut -d' ' -f2)" \
        "(log: $dir/build.log)"
    if ! (cd "$tree" && DEB_BUILD_OPTIONS=parallel=2 \
            "$src/scripts/debian-rust.sh" unshare --net dpkg-buildpackage -us -uc -d) \
            >"$dir/build.log" 2>&1; then
        tail -n 60 "$dir/build.log" >&2
        fail "dpkg-buildpackage failed (log: $dir/build.log)"
    fi
    rm -rf "$tree"
    touch "$dir/.complete"
else
    log "packages of this tree already built: $dir"
fi

changes=$(echo "$dir"/vircgroup-v2-devices_*.changes)
if [ ! -f "$dir/lintian.passed" ]; then
    log "lintian $(basename "$changes")"
    lintian --fail-on error,warning --tag-display-limit 0 "$changes" || fail "lintian found errors or warnings"
    touch "$dir/lintian.passed"
else
    log "lintian passed these packages before"
fi

# Install, use, remove -------------------------------------------------------
packages="libvircgroup-v2-devices0 libvircgroup-v2-devices-dev vircgroup-devices"
# Set while this script has them installed: a run that was killed leaves it,
# and the next run removes what that one installed.
mine=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/deb/.installed-by-build-deb
installed() {
    dpkg-query -W -f '${Status}\n' "$@" 2>/dev/null | grep -q 'ok installed'
}
# shellcheck disable=SC2086 # one word per package
if [ -e "$mine" ] && installed $packages; then
    log "removing the packages a killed run left installed"
    dpkg --purge $packages >/dev/null
fi
for p in $packages; do
    ! installed "$p" || fail "$p is installed on this host, not by this script: not touching it"
done
work=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-deb.XXXXXX")
cleanup() {
    # shellcheck disable=SC2086 # one word per package
    dpkg --purge $packages >/dev/null 2>&1 || true
    rm -rf "$work" "$mine"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
log "installing $packages"
touch "$mine"
dpkg -i "$dir"/libvircgroup-v2-devices0_*.deb "$dir"/libvircgroup-v2-devices-dev_*.deb \
    "$dir"/vircgroup-devices_*.deb >/dev/null

# A consumer as a Debian user builds it: pkg-config's default search path
# (the .pc is in /usr/lib/<multiarch>/pkgconfig), no LD_LIBRARY_PATH.
unset PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR LD_LIBRARY_PATH
# shellcheck disable=SC2046 # word splitting of pkg-config output is intended
cc -Wall -Wextra -Werror -o "$work/consumer" c-tests/pkgconfig-consumer.c \
    $(pkg-config --cflags --libs vircgroup-v2-devices)
"$work/consumer"
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
resolved=$(ldd "$work/consumer" | awk '/libvircgroup_v2_devices/ { print $3 }')
[ "$resolved" = "/lib/$multiarch/libvircgroup_v2_devices.so.0" ] ||
    [ "$resolved" = "/usr/lib/$multiarch/libvircgroup_v2_devices.so.0" ] ||
    fail "the consumer found the library at '$resolved', not the package's"
log "consumer: built with pkg-config $(pkg-config --modversion vircgroup-v2-devices), ran against $resolved"
[ "$(command -v vircgroup-devices)" = /usr/sbin/vircgroup-devices ] ||
    fail "vircgroup-devices is not /usr/sbin/vircgroup-devices"
/usr/sbin/vircgroup-devices demo
man -w vircgroup-devices >/dev/null || fail "no manual page for vircgroup-devices"

cleanup
trap - EXIT
for p in $packages; do
    ! installed "$p" || fail "$p is still installed"
done
log "the packages are removed again; $(ls "$dir"/*.deb | wc -l) .debs in $dir"
