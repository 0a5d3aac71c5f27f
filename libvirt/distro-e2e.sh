#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libvirt/distro-e2e.sh: the library in libvirt as a distribution ships and
# runs it. As root, from a fresh Debian machine:
#
#   1. a trixie build chroot (mmdebstrap) in which this project's .debs are
#      built from its release tarball, and Debian's own libvirt 11.3.0
#      source package is rebuilt by dpkg-buildpackage with the series
#      libvirt/11.3.0/ in debian/patches and a Build-Depends on
#      libvircgroup-v2-devices-dev (libvirt/distro/build.sh);
#   2. a Debian 13 image (mmdebstrap) with systemd, machined, journald, udev
#      and Debian's stock libvirt (monolithic libvirtd, enabled and
#      socket-activated), booted twice from one throw-away qcow2 overlay
#      under QEMU (TCG) with its own kernel and initrd; a unit in it runs
#      libvirt/distro/guest.sh from a 9p share and powers off;
#   3. in the guest, with VMs started by virsh: the upgrade from stock with
#      apt, placement, start policy, enforcement, hot-plug, reload and
#      restart, systemd's program, logging, load and clean-up (boot 1);
#      reboot and rollback to stock with apt (boot 2).
#
# It prints one line per assertion and each stage's time, and exits 0 only
# when every assertion passed. Builds are cached under
# ${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/distro/, keyed by their
# inputs. docs/libvirt.md ("On a distribution") explains it.
#
# Environment: VCG2_CACHE, VCG2_MIRROR, VCG2_APT_REFRESH (scripts/lib/
# common.sh); DISTRO_GUEST_TIMEOUT, seconds one boot of the guest may take
# (1800).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(dirname "$HERE")
export VCG2_PROG=distro-e2e
# shellcheck source=../scripts/lib/common.sh
. "$REPO/scripts/lib/common.sh"
# shellcheck source=distro/build.sh
. "$HERE/distro/build.sh"
DCACHE=$CACHE_ROOT/distro
GUEST_TIMEOUT=${DISTRO_GUEST_TIMEOUT:-1800}

# Every assertion the guest prints, in its order; one missing fails.
ASSERTIONS=(
    "upgrade"
    "placement"
    "start policy"
    "start policy: list and check on the path from /proc/QEMUPID/cgroup answer the same"
    "enforcement"
    "hot-plug"
    "reload and restart"
    "systemd's program"
    "systemd's program: the library's check says what the kernel does"
    "logging"
    "load and clean-up"
    "reboot"
    "rollback"
)

TIMES=()
# stage NAME FUNCTION: runs FUNCTION, then records how long it took.
stage() {
    local t
    t=$(now)
    "$2"
    TIMES+=("$(printf '%6s s  %s' "$(since "$t" 0)" "$1")")
}

host_tools() {
    apt_install mmdebstrap qemu-system-x86 qemu-utils e2fsprogs dpkg-dev apt-utils \
        debian-archive-keyring meson ninja-build python3 git
    command -v cargo >/dev/null || die "cargo is needed (the release tarball vendors the crates, the probe is built)"
}

sources() {
    distro_apt
    fetch_libvirt_source
    say "Debian's libvirt source: $LV_DEBVER"
}

# The probe (src/bin/vcg2-probe.rs), built on the host: it needs only libc.
PROBE_BIN=
probe_bin() {
    cargo build --quiet --release --locked --manifest-path "$REPO/Cargo.toml" \
        --target-dir "$DCACHE/cargo-target" --bin vcg2-probe
    PROBE_BIN=$DCACHE/cargo-target/release/vcg2-probe
}

# ------------------------------------------------------------ the guest
WORK=
QEMU_PID=
cleanup() {
    local rc=$?
    [ -z "$QEMU_PID" ] || kill -TERM -- "-$QEMU_PID" 2>/dev/null || true
    [ -z "$WORK" ] || rm -rf "$WORK"
    return $rc
}

# The 9p share: the guest script, the probe, the lists, and a local apt
# repository of this project's .debs, the rebuilt libvirt and the stock
# libvirt .debs (the rollback's), indexed by dpkg-scanpackages, with an
# (unsigned: the guest's source line says trusted=yes) Release file.
make_share() {
    local share=$WORK/share pv f p
    mkdir -p "$share/repo" "$share/state"
    cp "$HERE/distro/guest.sh" "$PROBE_BIN" "$share/"
    cp "$DEBS"/*.deb "$LVDEBS"/*.deb "$IMAGE"/stock/*.deb "$share/repo/"
    (cd "$share/repo" && dpkg-scanpackages --multiversion . >Packages 2>/dev/null &&
        apt-ftparchive release . >Release)
    cp "$IMAGE/stock.list" "$share/stock.list"
    : >"$share/upgrade.list"
    while read -r pv; do
        p=${pv%%=*}
        for f in "$LVDEBS/${p}_"*"$LOCAL_SUFFIX"_*.deb; do
            [ -e "$f" ] && echo "$p=$(dpkg-deb -f "$f" Version)" >>"$share/upgrade.list"
        done
    done <"$IMAGE/stock.list"
    [ -s "$share/upgrade.list" ] || die "no rebuilt package replaces one of the image's"
    say "the upgrade installs: $(tr '\n' ' ' <"$share/upgrade.list")"
    chmod -R a+rX "$share"
}

# boot N: boots the overlay, the guest runs guest.sh (boot N) and powers
# off; prints its output. Sets BOOT_OK=0 when it did not finish.
BOOT_OK=1
boot() {
    local n=$1 share=$WORK/share t
    echo "$n" >"$share/boot"
    rm -f "$share/guest.out" "$share/guest.rc"
    t=$(now)
    setsid timeout -k 10 "$GUEST_TIMEOUT" qemu-system-x86_64 \
        -machine q35 -cpu max -accel tcg,thread=single -smp 2 -m 2G \
        -display none -monitor none -no-reboot -nic none \
        -kernel "$IMAGE/vmlinuz" -initrd "$IMAGE/initrd.img" \
        -append "root=/dev/vda rw console=ttyS0 panic=-1 quiet" \
        -drive "file=$WORK/overlay.qcow2,if=virtio,format=qcow2" \
        -virtfs "local,path=$share,mount_tag=share,security_model=none,id=share" \
        -serial "file:$WORK/console-$n.log" </dev/null >"$WORK/qemu-$n.log" 2>&1 &
    QEMU_PID=$!
    wait "$QEMU_PID" || true
    QEMU_PID=
    say "boot $n: QEMU ran $(since "$t" 0) s"
    if [ -f "$share/guest.out" ]; then
        cat "$share/guest.out"
    fi
    if [ ! -f "$share/guest.rc" ]; then
        BOOT_OK=0
        echo "FAIL: boot $n: the guest did not finish within $GUEST_TIMEOUT s; console (last 60 lines):"
        tail -n 60 "$WORK/console-$n.log" | sed 's/^/   | /'
        tail -n 5 "$WORK/qemu-$n.log" | sed 's/^/   | /'
    fi
    cat "$share/guest.out" >>"$WORK/all.out" 2>/dev/null || true
}
boot1() { boot 1; }
boot2() { boot 2; }

guest_run() {
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-distro.XXXXXX")
    trap cleanup EXIT
    trap 'exit 143' TERM INT HUP
    make_share
    qemu-img create -q -f qcow2 -b "$IMAGE/disk.img" -F raw "$WORK/overlay.qcow2"
    stage "boot 1 of the guest: upgrade, placement ... load and clean-up" boot1
    stage "boot 2 of the guest (same overlay): reboot, rollback" boot2
}

report() {
    local a missing=0 p f
    for a in "${ASSERTIONS[@]}"; do
        grep -qxF -e "PASS: $a" "$WORK/all.out" 2>/dev/null && continue
        grep -q -F -e "PASS: $a: " -e "FAIL: $a: " "$WORK/all.out" 2>/dev/null && continue
        echo "FAIL: $a: did not run"
        missing=$((missing + 1))
    done
    p=$(grep -c '^PASS: ' "$WORK/all.out" || true)
    f=$(grep -c '^FAIL: ' "$WORK/all.out" || true)
    f=$((f + missing))
    echo "== stage times"
    printf '%s\n' "${TIMES[@]}"
    echo "distro-e2e: $p passed, $f failed"
    [ "$f" = 0 ] && [ "$BOOT_OK" = 1 ]
}

main() {
    [ "$(id -u)" = 0 ] || die "needs root (mmdebstrap, chroot, QEMU with the image)"
    local t0
    t0=$(now)
    mkdir -p "$DCACHE"
    lock_file "$DCACHE/lock" 0
    stage "host tools (apt-get)" host_tools
    stage "apt lists and Debian's libvirt source" sources
    stage "build chroot (cached: $DCACHE/chroot-*)" build_chroot
    stage "this project's .debs for trixie" build_project_debs
    stage "Debian's libvirt rebuilt with the series" build_libvirt_debs
    stage "image (cached: $DCACHE/image-*)" build_image
    stage "the probe" probe_bin
    guest_run
    say "$(since "$t0" 0) s in all"
    report
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
