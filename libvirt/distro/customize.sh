#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# mmdebstrap's customize hook for the distro e2e's image (libvirt/distro/
# build.sh): $1 is the image's root. Adds the root file system to fstab,
# makes apt read only the local repository on the 9p share (the guest has
# no network), and installs vcg2-run.service: at boot it mounts the share
# (tag "share") on /mnt/share, runs /mnt/share/guest.sh with its output in
# /mnt/share/guest.out and its exit status in /mnt/share/guest.rc, and
# powers the guest off.
set -eu
root=$1
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$root/etc/fstab"
echo distro-e2e >"$root/etc/hostname"
rm -f "$root"/etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/mnt/share/repo ./' >"$root/etc/apt/sources.list"
printf '9p\n9pnet_virtio\n' >"$root/etc/modules-load.d/vcg2-9p.conf"
cat >"$root/etc/systemd/system/vcg2-run.service" <<'UNIT'
[Unit]
Description=vircgroup-v2-devices distro e2e: /mnt/share/guest.sh, then power off
After=basic.target dbus.service systemd-machined.service libvirtd.socket libvirtd.service systemd-modules-load.service

[Service]
Type=oneshot
TimeoutStartSec=infinity
StandardOutput=journal+console
ExecStart=/bin/sh -c 'mkdir -p /mnt/share && mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 share /mnt/share && { bash /mnt/share/guest.sh >/mnt/share/guest.out 2>&1; echo $? >/mnt/share/guest.rc; sync; umount /mnt/share; }; systemctl poweroff --no-block'

[Install]
WantedBy=multi-user.target
UNIT
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
ln -sf /etc/systemd/system/vcg2-run.service "$root/etc/systemd/system/multi-user.target.wants/vcg2-run.service"
# No login prompt is needed, but a root shell on the console helps a look
# at a failed run: no password.
chroot "$root" passwd -dq root 2>/dev/null || chroot "$root" passwd -d root >/dev/null
