# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# The host half of libvirt/distro-e2e.sh: everything it builds, each piece
# cached under $DCACHE (VCG2_CACHE/distro) in a directory named by a hash of
# its inputs, with a .complete file written last:
#
#   apt/            a private apt configuration of trixie (deb and deb-src)
#   src/DEBVER/     Debian's libvirt source package (the two tarballs)
#   chroot-KEY/     a trixie build chroot (mmdebstrap --variant=buildd) with
#                   the Build-Depends of libvirt and of this project
#   debs-TREE/      this project's .debs built in it from the release tarball
#   libvirt-KEY/    Debian's libvirt rebuilt in it with libvirt/11.3.0/
#   image-KEY/      the trixie image (raw ext4), its kernel and initrd, and
#                   the stock libvirt .debs it was built from
#
# Sourced by libvirt/distro-e2e.sh after scripts/lib/common.sh; sourcing
# defines functions only.

SUITE=trixie
LIBVIRT_UPSTREAM=11.3.0
# Bumped when a recipe below changes in a way the keys do not see.
RECIPE=1
# The version suffix of the rebuilt libvirt: above Debian's, so apt takes
# it as an upgrade, and Debian's is a downgrade back.
LOCAL_SUFFIX=+vcg2.1

# What the image holds: a system as an admin installs it, with stock
# libvirt (the upgrade starts from it). mmdebstrap installs no Recommends.
IMAGE_PACKAGES=(systemd systemd-sysv dbus systemd-container udev kmod
    libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients
    qemu-system-x86 bpftool util-linux procps linux-image-amd64)

# What else the build chroot holds beside the Build-Depends.
CHROOT_PACKAGES=(build-essential fakeroot ca-certificates)

dapt() { apt_private_get "$DCACHE/apt" "$@"; }

# Sets up the private apt configuration of trixie, binary and source.
distro_apt() {
    apt_private_init "$DCACHE/apt" "deb $SUITE" "deb $SUITE-updates" \
        "deb-src $SUITE" "deb-src $SUITE-updates"
}

# The mirror lines mmdebstrap takes for the chroot and the image.
mirror_lines() {
    local m
    m=$(debian_mirror)
    printf '%s\n' "deb $m $SUITE main" "deb $m $SUITE-updates main"
}

# versions PACKAGE...: "PACKAGE=VERSION" lines of apt's candidates (a key).
versions() {
    local p
    for p in "$@"; do echo "$p=$(apt_private_candidate "$DCACHE/apt" "$p")"; done
}

# ------------------------------------------------------------ libvirt source
# Sets LV_DEBVER and downloads the two tarballs of Debian's libvirt into
# $DCACHE/src/LV_DEBVER/ (its .dsc is missing on the mirror, so apt-get
# source reports an error after fetching them; they are checked against
# the Sources index by apt all the same).
fetch_libvirt_source() {
    LV_DEBVER=$(apt_private_source_version "$DCACHE/apt" libvirt "$LIBVIRT_UPSTREAM")
    [ -n "$LV_DEBVER" ] || die "no libvirt $LIBVIRT_UPSTREAM source package in $SUITE"
    local dir=$DCACHE/src/$LV_DEBVER
    [ ! -f "$dir/.complete" ] || return 0
    rm -rf "$DCACHE/src"
    mkdir -p "$dir"
    (cd "$dir" && dapt source --download-only -qq "libvirt=$LV_DEBVER" >download.log 2>&1) ||
        say "apt-get source libvirt=$LV_DEBVER reported missing files (the .dsc): using the tarballs"
    [ -f "$dir/libvirt_$LIBVIRT_UPSTREAM.orig.tar.xz" ] &&
        [ -f "$dir/libvirt_$LV_DEBVER.debian.tar.xz" ] ||
        die "libvirt $LV_DEBVER: the .orig.tar.xz or .debian.tar.xz did not download ($dir/download.log)"
    touch "$dir/.complete"
}

# unpack_libvirt DEST: Debian's libvirt source tree, unpacked by hand as
# dpkg-source -x would (orig, then debian/), patches not applied.
unpack_libvirt() {
    local dest=$1 src=$DCACHE/src/$LV_DEBVER
    mkdir -p "$dest"
    tar -xf "$src/libvirt_$LIBVIRT_UPSTREAM.orig.tar.xz" -C "$dest" --strip-components=1 --no-same-owner
    tar -xf "$src/libvirt_$LV_DEBVER.debian.tar.xz" -C "$dest" --no-same-owner
}

# ------------------------------------------------------------- build chroot
# in_chroot DIR COMMAND...: runs COMMAND in chroot DIR, in a private mount
# namespace with /proc and /dev, so nothing stays mounted after it.
in_chroot() {
    local dir=$1
    shift
    unshare -m --propagation private -- sh -euc '
        d=$1; shift
        mount -t proc proc "$d/proc"
        mount --rbind /dev "$d/dev"
        exec chroot "$d" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 \
            DEBIAN_FRONTEND=noninteractive "$@"' sh "$dir" "$@"
}

# Sets CHROOT: a trixie buildd chroot with libvirt's and this project's
# Build-Depends installed (apt-get build-dep on the two source trees).
build_chroot() {
    local key t tmp
    key=$( (echo "$RECIPE"; mirror_lines; versions "${CHROOT_PACKAGES[@]}" rustc-web cargo-web
            echo "libvirt=$LV_DEBVER"; cat "$REPO/packaging/debian/control") | sha)
    CHROOT=$DCACHE/chroot-$key
    if [ -f "$CHROOT/.complete" ]; then
        say "build chroot: cached ($CHROOT)"
        return
    fi
    t=$(now)
    find "$DCACHE" -maxdepth 1 -name 'chroot-*' -exec rm -rf {} +
    tmp=$(mktemp -d "$DCACHE/ctx.XXXXXX")
    unpack_libvirt "$tmp/libvirt"
    cp -r "$REPO/packaging/debian" "$tmp/project-debian"
    mkdir -p "$tmp/project/debian"
    cp "$REPO/packaging/debian/control" "$tmp/project/debian/control"
    cp "$REPO/packaging/debian/changelog" "$tmp/project/debian/changelog"
    # shellcheck disable=SC2016 # $1 is mmdebstrap's, in the hook
    mmdebstrap --variant=buildd --include="${CHROOT_PACKAGES[*]}" \
        --customize-hook="mkdir -p \"\$1/build\" && cp -r '$tmp/libvirt/debian' \"\$1/build/libvirt-debian\" && cp -r '$tmp/project' \"\$1/build/project\"" \
        --customize-hook='mkdir -p "$1/build/libvirt" && mv "$1/build/libvirt-debian" "$1/build/libvirt/debian"' \
        --customize-hook='chroot "$1" apt-get build-dep -y -q /build/libvirt /build/project' \
        --customize-hook='chroot "$1" apt-get clean' \
        --customize-hook='rm -rf "$1/build"' \
        "$SUITE" "$CHROOT" "$(mirror_lines | sed -n 1p)" "$(mirror_lines | sed -n 2p)" \
        >"$DCACHE/chroot.log" 2>&1 ||
        { tail -40 "$DCACHE/chroot.log"; rm -rf "$tmp"; die "mmdebstrap of the build chroot failed ($DCACHE/chroot.log)"; }
    rm -rf "$tmp"
    touch "$CHROOT/.complete"
    say "build chroot: made in $(since "$t" 0) s ($CHROOT)"
}

# ------------------------------------------------------- this project's debs
# Sets DEBS: this project's .debs, built in the chroot from the release
# tarball (scripts/release-tarball.sh) as scripts/build-deb.sh builds them,
# with no network; keyed by the git tree of HEAD.
build_project_debs() {
    local tree version tarball t work
    tree=$(git -C "$REPO" rev-parse 'HEAD^{tree}')
    DEBS=$DCACHE/debs-$tree
    if [ -f "$DEBS/.complete" ]; then
        say "this project's .debs: cached ($DEBS)"
        return
    fi
    t=$(now)
    find "$DCACHE" -maxdepth 1 -name 'debs-*' -exec rm -rf {} +
    version=$(sed -n '/^\[package\]/,/^\[/ s/^version *= *"\(.*\)".*/\1/p' "$REPO/Cargo.toml")
    tarball=$("$REPO/scripts/release-tarball.sh")
    work=$CHROOT/build
    rm -rf "$work"
    mkdir -p "$work"
    cp "$tarball" "$work/vircgroup-v2-devices_$version.orig.tar.gz"
    tar -xzf "$tarball" -C "$work"
    local src=$work/vircgroup-v2-devices-$version
    cp -r "$src/packaging/debian" "$src/debian"
    (cd "$src" && CARGO_NET_OFFLINE=true python3 scripts/crate-licenses.py --debian-copyright) \
        >>"$src/debian/copyright"
    if ! in_chroot "$CHROOT" unshare -n sh -c \
        "cd /build/vircgroup-v2-devices-$version && DEB_BUILD_OPTIONS=parallel=2 dpkg-buildpackage -us -uc -b" \
        >"$DCACHE/debs.log" 2>&1; then
        tail -40 "$DCACHE/debs.log"
        die "dpkg-buildpackage of this project in the chroot failed ($DCACHE/debs.log)"
    fi
    mkdir -p "$DEBS"
    mv "$work"/*.deb "$DEBS/"
    rm -rf "$work"
    touch "$DEBS/.complete"
    say "this project's .debs: built in $(since "$t" 0) s: $(cd "$DEBS" && echo *.deb)"
}

# ------------------------------------------------------- Debian's libvirt
# prepare_libvirt_tree DIR: Debian's libvirt source with this project's
# series added to debian/patches, the Build-Depends on
# libvircgroup-v2-devices-dev (in debian/control and debian/control.in,
# from which Debian's rules regenerate control), and a changelog entry of
# version LV_DEBVER$LOCAL_SUFFIX.
prepare_libvirt_tree() {
    local dir=$1 p n
    unpack_libvirt "$dir"
    for p in "$REPO/libvirt/$LIBVIRT_UPSTREAM"/*.patch; do
        n=vircgroup-v2-devices/$(basename "$p")
        mkdir -p "$dir/debian/patches/vircgroup-v2-devices"
        cp "$p" "$dir/debian/patches/$n"
        echo "$n" >>"$dir/debian/patches/series"
    done
    for p in control control.in; do
        [ -f "$dir/debian/$p" ] || die "Debian's libvirt $LV_DEBVER has no debian/$p"
        grep -q '^Build-Depends:' "$dir/debian/$p" || die "no Build-Depends in debian/$p"
        sed -i '0,/^Build-Depends:/ s/^Build-Depends:\(.*\)$/Build-Depends:\1\n libvircgroup-v2-devices-dev,/' \
            "$dir/debian/$p"
        grep -q '^ libvircgroup-v2-devices-dev,$' "$dir/debian/$p" || die "Build-Depends not added to debian/$p"
    done
    {
        echo "libvirt ($LV_DEBVER$LOCAL_SUFFIX) $SUITE; urgency=medium"
        echo
        echo "  * Device control on cgroup v2 by libvircgroup_v2_devices: this project's"
        echo "    series libvirt/$LIBVIRT_UPSTREAM/ in debian/patches/vircgroup-v2-devices/."
        echo
        echo " -- vircgroup-v2-devices distro e2e <e2e@localhost>  $(date -R -d @0)"
        echo
        cat "$dir/debian/changelog"
    } >"$dir/debian/changelog.new"
    mv "$dir/debian/changelog.new" "$dir/debian/changelog"
}

# Sets LVDEBS: Debian's libvirt rebuilt with the series, against this
# project's -dev package installed in the chroot: dpkg-buildpackage -b
# (every binary package: -B alone cannot be installed, libvirt-daemon-system
# depends on libvirt-daemon-config-network, Architecture: all, of exactly
# its version), DEB_BUILD_OPTIONS="nocheck nodoc noopt parallel=2" (without libvirt's
# test suite, the documentation, and compiled with -O0) and
# DEB_CFLAGS_APPEND=-g0 (no debug information): on 2 shared cores Debian's
# -O2 -g build of its 1,600 compile steps took most of an hour, -O0 -g0
# a fraction of it; the code is the same.
build_libvirt_debs() {
    local key t work opts="nocheck nodoc noopt parallel=2" cflags=-g0
    key=$( (echo "$RECIPE $LV_DEBVER $LOCAL_SUFFIX -b $opts $cflags"; basename "$CHROOT"
            cat "$REPO/libvirt/$LIBVIRT_UPSTREAM"/*.patch
            # What libvirt is built against: the -dev package's version
            # and files (its header, .pc), not the bytes of the .deb.
            dpkg-deb -f "$DEBS"/libvircgroup-v2-devices-dev_*.deb Version
            dpkg-deb --fsys-tarfile "$DEBS"/libvircgroup-v2-devices-dev_*.deb |
                tar -xO --wildcards '*.h' '*.pc') | sha)
    LVDEBS=$DCACHE/libvirt-$key
    if [ -f "$LVDEBS/.complete" ]; then
        say "rebuilt libvirt: cached ($LVDEBS)"
        return
    fi
    t=$(now)
    find "$DCACHE" -maxdepth 1 -name 'libvirt-*' -exec rm -rf {} +
    work=$CHROOT/build
    rm -rf "$work"
    mkdir -p "$work"
    cp "$DCACHE/src/$LV_DEBVER/libvirt_$LIBVIRT_UPSTREAM.orig.tar.xz" "$work/"
    prepare_libvirt_tree "$work/libvirt-$LIBVIRT_UPSTREAM"
    cp "$DEBS"/libvircgroup-v2-devices0_*.deb "$DEBS"/libvircgroup-v2-devices-dev_*.deb "$work/"
    if ! in_chroot "$CHROOT" sh -euc "
        dpkg -i /build/libvircgroup-v2-devices0_*.deb /build/libvircgroup-v2-devices-dev_*.deb >/dev/null
        cd /build/libvirt-$LIBVIRT_UPSTREAM
        DEB_BUILD_OPTIONS='$opts' DEB_CFLAGS_APPEND='$cflags' unshare -n dpkg-buildpackage -b -us -uc" \
        >"$DCACHE/libvirt-build.log" 2>&1; then
        grep -n -m5 -A10 -i 'error' "$DCACHE/libvirt-build.log" | head -60
        tail -30 "$DCACHE/libvirt-build.log"
        die "dpkg-buildpackage of Debian's libvirt $LV_DEBVER with the series failed ($DCACHE/libvirt-build.log)"
    fi
    mkdir -p "$LVDEBS"
    mv "$work"/libvirt*"$LOCAL_SUFFIX"*.deb "$LVDEBS/" 2>/dev/null || true
    for f in "$work"/*"$LOCAL_SUFFIX"*.deb; do [ ! -e "$f" ] || mv "$f" "$LVDEBS/"; done
    ls "$LVDEBS"/*.deb >/dev/null 2>&1 || die "dpkg-buildpackage made no .deb ($DCACHE/libvirt-build.log)"
    # The series really went in, and against the library.
    grep -q 'vircgroup-v2-devices/0002' "$DCACHE/libvirt-build.log" ||
        die "the build log does not show the series applied ($DCACHE/libvirt-build.log)"
    rm -rf "$work"
    in_chroot "$CHROOT" dpkg --purge libvircgroup-v2-devices-dev libvircgroup-v2-devices0 >/dev/null
    touch "$LVDEBS/.complete"
    say "rebuilt libvirt: $(ls "$LVDEBS"/*.deb | wc -l) .debs in $(since "$t" 0) s ($LVDEBS)"
}

# ---------------------------------------------------------------- the image
# Sets IMAGE: the directory with disk.img (ext4 of a trixie system, stock
# libvirt in it), vmlinuz and initrd.img from its /boot, stock/ (the .debs
# of the stock libvirt packages it holds, from the archive: the rollback
# installs them back)
# and stock.list (package=version of those). Keyed by the versions apt
# resolves for IMAGE_PACKAGES and by the customisation.
build_image() {
    local key t root
    key=$( (echo "$RECIPE"; mirror_lines; versions "${IMAGE_PACKAGES[@]}"
            cat "$HERE/distro/customize.sh") | sha)
    IMAGE=$DCACHE/image-$key
    if [ -f "$IMAGE/.complete" ]; then
        say "image: cached ($IMAGE)"
        return
    fi
    t=$(now)
    find "$DCACHE" -maxdepth 1 -name 'image-*' -exec rm -rf {} +
    mkdir -p "$IMAGE"
    root=$IMAGE/root
    mmdebstrap --variant=required --include="${IMAGE_PACKAGES[*]}" \
        --customize-hook="sh '$HERE/distro/customize.sh' \"\$1\"" \
        "$SUITE" "$root" "$(mirror_lines | sed -n 1p)" "$(mirror_lines | sed -n 2p)" \
        >"$IMAGE/mmdebstrap.log" 2>&1 ||
        { tail -40 "$IMAGE/mmdebstrap.log"; die "mmdebstrap of the image failed ($IMAGE/mmdebstrap.log)"; }
    cp -L "$root"/boot/vmlinuz-* "$IMAGE/vmlinuz"
    cp -L "$root"/boot/initrd.img-* "$IMAGE/initrd.img"
    mkdir -p "$IMAGE/stock"
    chroot "$root" dpkg-query -W -f '${Package} ${Version} ${source:Package}\n' |
        awk '$3 == "libvirt" { print $1 "=" $2 }' >"$IMAGE/stock.list"
    [ -s "$IMAGE/stock.list" ] || die "the image holds no package of libvirt's source"
    # shellcheck disable=SC2046 # one word per package
    apt_private_download "$DCACHE/apt" "$IMAGE/stock" $(cat "$IMAGE/stock.list")
    # A disk with room for the rebuilt packages and the nested VMs' files.
    truncate -s 3G "$IMAGE/disk.img"
    mkfs.ext4 -q -F -L root -d "$root" "$IMAGE/disk.img" ||
        die "mkfs.ext4 -d of the image failed"
    rm -rf "$root"
    touch "$IMAGE/.complete"
    say "image: made in $(since "$t" 0) s ($IMAGE, $(du -sh "$IMAGE/disk.img" | cut -f1) used)"
}
