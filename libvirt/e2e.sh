#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libvirt/e2e.sh [VERSION...]: this library inside real libvirt (default:
# 9.0.0 and 11.3.0, Debian 12's and Debian 13's), with real QEMU guests.
#
# As root, from a fresh Debian machine, for each VERSION:
#   1. fetches libvirt's Debian source package (apt-get source, deb-src lines
#      in a private apt configuration, never the host's), installs the build
#      dependencies, builds and installs this library (Meson) into a private
#      prefix;
#   2. builds a minimal libvirt (QEMU driver and daemons), unpatched, runs
#      its meson test, installs it; applies libvirt/VERSION/*.patch in the
#      same tree, rebuilds (incrementally, ccache), runs meson test again and
#      installs; both test results must be the same;
#   3. starts virtqemud in a private mount namespace where /sys/fs/cgroup is
#      a pure cgroup2 mount and runs QEMU guests (TCG, 64 MiB, no disk) to
#      check start, enforcement, one program, hot-plug, daemon restart,
#      upgrade (stock -> patched), rollback (patched -> stock, with
#      'vircgroup-devices to-libvirt'), concurrency and a clean exit.
# It prints one line per assertion and exits 0 only when all of them hold.
# Builds are cached under /var/cache/vircgroup-v2-devices/libvirt/, keyed by
# what they are built from. docs/libvirt.md explains it all.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
CACHE=${E2E_CACHE:-${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}/libvirt}
JOBS=${E2E_JOBS:-2}
# Bumped when a build step below changes in a way the keys do not see.
RECIPE=3

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(9.0.0 11.3.0)

die() { echo "e2e: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
sha() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || die "needs root"
for v in "${versions[@]}"; do
    [ -d "$here/$v" ] || die "no patch series for libvirt $v (libvirt/$v/)"
done

# ---------------------------------------------------------------- packages
apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
            missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    echo "== installing: ${missing[*]}"
    local t
    t=$(now)
    if [ -z "${apt_updated:-}" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    echo "== installed in $(since "$t") s"
}

common_deps=(meson ninja-build pkg-config gcc ccache xz-utils patch git
             libglib2.0-dev libxml2-dev libxml2-utils xsltproc libgnutls28-dev
             libtirpc-dev python3-docutils qemu-system-x86 ipxe-qemu seabios
             bpftool util-linux mount)
version_deps() {
    case "$1" in
        9.*) echo libyajl-dev ;;
        *) echo libjson-c-dev libnl-3-dev libnl-route-3-dev ;;
    esac
}
# The minimal build: the QEMU driver, the daemons and the client, the dir
# storage backend (its storage file code is what a block hot-plug inspects),
# and the test driver, which libvirt's virsh tests run against.
version_opts() {
    case "$1" in
        9.*) echo -Dyajl=enabled ;;
        # 11.x does not compile with libnl disabled.
        *) echo -Djson_c=enabled -Dlibnl=enabled ;;
    esac
}
prefix_of() { echo "/opt/lv${1%%.*}"; }
state_of() { echo "/run/lv${1%%.*}"; }
# buildtype plain: no -O2 -g, which makes the compile 4-5 times faster here;
# the tests and the VMs need no optimisation.
meson_opts() {
    local v=$1 pfx st
    pfx=$(prefix_of "$v")
    st=$(state_of "$v")
    # Every path the daemon writes is under $st (11.x puts runstatedir at
    # /run unless told otherwise).
    echo --prefix="$pfx" --libdir=lib --localstatedir="$st" \
        --sysconfdir="$st/etc" -Drunstatedir="$st/run" --buildtype=plain \
        --auto-features=disabled -Ddriver_qemu=enabled \
        -Ddriver_libvirtd=enabled -Ddriver_remote=enabled -Ddriver_test=enabled \
        -Dstorage_dir=enabled -Ddocs=disabled -Dtests=enabled \
        -Dqemu_user=root -Dqemu_group=root -Dinit_script=none -Dno_git=true \
        "$(version_opts "$v")"
}

# ------------------------------------------------------------ libvirt source
# A private apt configuration: deb-src lines for bookworm (9.0.0) and trixie
# (11.3.0) and their own lists; the host's sources are never read or changed.
APT_DIR=$CACHE/apt
apt_private() {
    apt-get -o Dir::Etc::sourcelist="$APT_DIR/sources.list" \
        -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$APT_DIR/lists" \
        -o Dir::Cache="$APT_DIR/cache" -o APT::Sandbox::User=root "$@"
}
apt_private_update() {
    [ -z "${apt_private_updated:-}" ] || return 0
    mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg s
    : >"$APT_DIR/sources.list.new"
    for s in bookworm trixie; do
        echo "deb-src [signed-by=$keyring] http://deb.debian.org/debian $s main" \
            >>"$APT_DIR/sources.list.new"
    done
    mv "$APT_DIR/sources.list.new" "$APT_DIR/sources.list"
    apt_private update -qq
    apt_private_updated=1
}

# Prints the Debian version of libvirt's source package for upstream $1,
# downloading it into $CACHE/src/DEBVER/ unless it is there.
fetch_source() {
    local v=$1 debver dir
    debver=$(cat "$CACHE/src/$v.debver" 2>/dev/null || true)
    if [ -n "$debver" ] && [ -f "$CACHE/src/$debver/.complete" ]; then
        echo "$debver"
        return
    fi
    apt_private_update >&2
    debver=$(apt-cache -o Dir::Etc::sourcelist="$APT_DIR/sources.list" \
                 -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$APT_DIR/lists" \
                 -o Dir::Cache="$APT_DIR/cache" showsrc libvirt |
             awk -v up="$v" '$1 == "Version:" && index($2, up "-") == 1 { print $2 }' |
             sort -V | tail -1)
    [ -n "$debver" ] || die "no libvirt $v source package in bookworm or trixie"
    dir=$CACHE/src/$debver
    mkdir -p "$dir"
    # 11.3.0's .dsc and .orig.tar.xz.asc are missing on the mirror (404):
    # apt-get then fails although the two tarballs came, which is all the
    # tree needs (they are checked against the Sources index by apt).
    (cd "$dir" && apt_private source --download-only -qq "libvirt=$debver" >&2) ||
        echo "e2e: apt-get source libvirt=$debver reported missing files" >&2
    [ -f "$dir/libvirt_$v.orig.tar.xz" ] && [ -f "$dir/libvirt_$debver.debian.tar.xz" ] ||
        die "libvirt $debver: the .orig.tar.xz or .debian.tar.xz did not download"
    touch "$dir/.complete"
    echo "$debver" >"$CACHE/src/$v.debver"
    echo "$debver"
}

# The source tree $CACHE/VERSION/src: upstream plus Debian's patches, as a git
# repository whose tag 'debian' is the unpatched tree.
prepare_tree() {
    local v=$1 debver=$2 src=$CACHE/$1/src p
    if [ "$(cat "$CACHE/$v/src.stamp" 2>/dev/null)" = "$RECIPE $debver" ]; then
        return
    fi
    rm -rf "$src" "$CACHE/$v/src.stamp"
    mkdir -p "$src"
    tar -xf "$CACHE/src/$debver/libvirt_$v.orig.tar.xz" -C "$src" \
        --strip-components=1 --no-same-owner
    tar -xf "$CACHE/src/$debver/libvirt_$debver.debian.tar.xz" -C "$src" --no-same-owner
    while read -r p _; do
        case "$p" in ''|'#'*) continue ;; esac
        patch -d "$src" -p1 -s --no-backup-if-mismatch <"$src/debian/patches/$p"
    done <"$src/debian/patches/series"
    git -C "$src" init -q
    # What upstream's git does not track either, so that libvirt's
    # syntax-check (part of its meson test in a git tree) judges libvirt's
    # files only: Debian's packaging and the keycodemapdb submodule.
    printf '/debian/\n/src/keycodemapdb/\n/subprojects/keycodemapdb/\n' >>"$src/.git/info/exclude"
    git -C "$src" config gc.auto 0
    git -C "$src" config user.name e2e
    git -C "$src" config user.email e2e@localhost
    git -C "$src" add -A
    git -C "$src" commit -q -m "libvirt $debver"
    git -C "$src" tag debian
    echo "$RECIPE $debver" >"$CACHE/$v/src.stamp"
}

# ----------------------------------------------------------------- library
LIB=
lib_key() {
    (cd "$repo" && find Cargo.toml Cargo.lock meson.build \
         cbindgen.toml scripts src include -type f | LC_ALL=C sort |
         xargs sha256sum) | sha
}
build_library() {
    local key t
    key=$(lib_key)
    # One prefix whatever the key: libvirt's configured build trees keep
    # the include and library paths pkg-config gave them, so the prefix
    # never moves; a new key replaces what is there.
    LIB=$CACHE/lib/current
    if [ -f "$LIB/.complete" ] && [ "$(cat "$LIB/.key" 2>/dev/null)" = "$key" ]; then
        echo "== library: cached ($LIB)"
        return
    fi
    t=$(now)
    rm -rf "$LIB" "$CACHE/lib-build"
    find "$CACHE/lib" -mindepth 1 -maxdepth 1 ! -name current -exec rm -rf {} + 2>/dev/null || true
    meson setup "$CACHE/lib-build" "$repo" --prefix="$LIB" --libdir=lib >/dev/null
    meson compile -C "$CACHE/lib-build" >/dev/null
    meson install -C "$CACHE/lib-build" >/dev/null
    # The probe that joins a cgroup and opens devices (src/bin/vcg2-probe.rs).
    cargo build --quiet --release --locked --manifest-path "$repo/Cargo.toml" \
        --target-dir "$CACHE/lib-build/cargo-target" --bin vcg2-probe
    install -D -m755 "$CACHE/lib-build/cargo-target/release/vcg2-probe" "$LIB/bin/vcg2-probe"
    rm -rf "$CACHE/lib-build"
    echo "$key" >"$LIB/.key"
    touch "$LIB/.complete"
    echo "== library: built in $(since "$t") s ($LIB)"
}

# ------------------------------------------------------------------ libvirt
# meson test's per-test results, 'NAME RESULT' sorted, into $2.
run_libvirt_tests() {
    local build=$1 out=$2
    rm -f "$build/meson-logs/testlog.json"
    meson test -C "$build" --no-rebuild --num-processes "$JOBS" --print-errorlogs \
        >"$out.log" 2>&1 || true
    python3 - "$build/meson-logs/testlog.json" >"$out" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    print(t["name"].replace(" ", "_"), t["result"])
EOF
    sort -o "$out" "$out"
}
counts() {
    awk '{ n[$2]++ } END { printf "%d tests:", NR;
           for (r in n) printf " %s %d", r, n[r]; printf "\n" }' "$1"
}

# Builds and installs libvirt $1 unpatched (KIND=stock) or patched, into
# $CACHE/VERSION/KIND-KEY (a DESTDIR), unless that is there.
build_libvirt() {
    local v=$1 kind=$2 key=$3 c=$CACHE/$1 t dest
    dest=$c/$kind-$key
    if [ -f "$dest/.complete" ]; then
        echo "== libvirt $v $kind: cached ($dest)"
        return
    fi
    local src=$c/src build=$c/build
    git -C "$src" checkout -q -f --detach debian
    git -C "$src" clean -q -fd
    if [ "$kind" = patched ]; then
        git -C "$src" am -q "$here/$v"/*.patch
    fi
    t=$(now)
    # The tree remembers the library's paths pkg-config gave it: a new
    # prefix is a new configuration.
    if [ "$(cat "$build/e2e-options" 2>/dev/null)" != "$(meson_opts "$v"; echo "$LIB")" ]; then
        rm -rf "$build"
        # shellcheck disable=SC2046
        meson setup "$build" "$src" $(meson_opts "$v") >"$c/setup.log" 2>&1 ||
            { tail -30 "$c/setup.log"; die "libvirt $v: meson setup failed"; }
        { meson_opts "$v"; echo "$LIB"; } >"$build/e2e-options"
    fi
    ninja -C "$build" -j "$JOBS" >"$c/build-$kind.log" 2>&1 ||
        { grep -B2 -A20 -m3 'error' "$c/build-$kind.log" | head -60
          die "libvirt $v $kind: build failed (log: $c/build-$kind.log)"; }
    local tb
    tb=$(since "$t")
    t=$(now)
    run_libvirt_tests "$build" "$c/tests-$kind.new"
    # Some of libvirt's tests create the runtime directories of the build.
    rm -rf "$(state_of "$v")"
    local tt
    tt=$(since "$t")
    rm -rf "$dest"
    DESTDIR=$dest meson install -C "$build" --no-rebuild >/dev/null
    mv "$c/tests-$kind.new" "$dest/tests"
    mv "$c/tests-$kind.new.log" "$dest/tests.log"
    echo "build $tb test $tt" >"$dest/times"
    find "$c" -mindepth 1 -maxdepth 1 -name "$kind-*" ! -name "$kind-$key" -exec rm -rf {} +
    touch "$dest/.complete"
    echo "== libvirt $v $kind: built in $tb s, tested in $tt s ($(counts "$dest/tests"))"
}

build_all() {
    local v=$1 debver skey pkey
    # shellcheck disable=SC2046
    apt_install "${common_deps[@]}" $(version_deps "$v")
    debver=$(fetch_source "$v")
    prepare_tree "$v" "$debver"
    skey=$( (echo "$RECIPE $debver"; meson_opts "$v") | sha)
    pkey=$( (echo "$skey"; cat "$here/$v"/*.patch; grep -m1 '^version' "$repo/Cargo.toml"
             cat "$LIB/include/vircgroup_v2_devices.h") | sha)
    export PKG_CONFIG_PATH=$LIB/lib/pkgconfig
    export LD_LIBRARY_PATH=$LIB/lib
    export CCACHE_DIR=$CACHE/ccache CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=2G
    build_libvirt "$v" stock "$skey"
    build_libvirt "$v" patched "$pkey"
    STOCK=$CACHE/$v/stock-$skey
    PATCHED=$CACHE/$v/patched-$pkey
    echo "libvirt $v meson test  unpatched: $(counts "$STOCK/tests")"
    echo "libvirt $v meson test    patched: $(counts "$PATCHED/tests")"
    if diff -u "$STOCK/tests" "$PATCHED/tests" >"$CACHE/$v/tests.diff"; then
        pass "libvirt $v: meson test gives the same results patched and unpatched"
    else
        cat "$CACHE/$v/tests.diff"
        fail "libvirt $v: meson test results differ between patched and unpatched"
    fi
}

# --------------------------------------------------------------- assertions
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
# A failed assertion ends the run (later ones build on it), with the
# daemon's log when there is one.
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    if [ -n "${ST:-}" ] && [ -f "$ST/virtqemud.log" ]; then
        echo "---- last lines of the daemon log ($ST/virtqemud.log)"
        grep -v ' : \(Cannot\|Unable\) ' "$ST/virtqemud.log" | tail -40 || true
        echo "---- daemon stderr"
        tail -20 "$ST/daemon.out" 2>/dev/null || true
        echo "----"
    fi
    exit 1
}
check() { # check 'description' command...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

# ------------------------------------------------------------ the VM half
# Everything below runs in a private mount namespace held by $NSPID, where
# /sys/fs/cgroup is a pure cgroup2 mount and $PFX is a bind mount of the
# stock or the patched install.
NSPID=
DPID=
ST=
PFX=
VMS=()
LOOPS=()
SCRATCH=
made_pfx=
made_machine=

ns() { nsenter -t "$NSPID" -m -- "$@"; }
ADMIN=
PROBE=
virsh_() { ns env LD_LIBRARY_PATH="$PFX/lib:$LIB/lib" "$PFX/bin/virsh" -q -c "$URI" "$@"; }
admin() { ns "$ADMIN" "$@"; }

# Waits up to $1 seconds for command $2... to succeed.
wait_for() {
    local t=$1 end
    shift
    end=$(($(date +%s) + t))
    until "$@" >/dev/null 2>&1; do
        [ "$(date +%s)" -lt "$end" ] || return 1
        sleep 0.2
    done
}

start_daemon() { # start_daemon stock|patched
    local kind=$1 root
    root=$([ "$kind" = stock ] && echo "$STOCK" || echo "$PATCHED")
    ns sh -c "mountpoint -q $PFX && umount $PFX; mount --bind $root$PFX $PFX"
    : >"$ST/virtqemud.log"
    echo "---- $kind daemon started $(date +%T)" >>"$ST/daemon.out"
    nsenter -t "$NSPID" -m -- env LD_LIBRARY_PATH="$PFX/lib:$LIB/lib" \
        "$PFX/sbin/virtqemud" -f "$ST/etc/libvirt/virtqemud.conf" \
        >>"$ST/daemon.out" 2>&1 &
    DPID=$!
    DKIND=$kind
    wait_for 30 virsh_ list || fail "$kind virtqemud did not answer within 30 s"
}

stop_daemon() {
    [ -n "$DPID" ] || return 0
    kill -TERM "$DPID" 2>/dev/null || true
    local i
    for i in $(seq 100); do
        kill -0 "$DPID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$DPID" 2>/dev/null || true
    wait "$DPID" 2>/dev/null || true
    DPID=
}

fds() { ls "/proc/$DPID/fd" | wc -l; }

vm_xml() {
    cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='piix3-uhci'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# Starts VM $1 (transient); prints nothing, fails with the daemon's log.
vm_start() {
    vm_xml "$1" >"$ST/$1.xml"
    VMS+=("$1")
    virsh_ create "$ST/$1.xml" >/dev/null || fail "VM $1 did not start ($DKIND libvirt)"
}

# The VM's cgroup (its qemu process's), the cgroup the device program is
# attached to (that one or an ancestor: libvirt's *.libvirt-qemu cgroup) and
# the qemu pid: "CGROUP PROGCGROUP PID".
vm_cgroups() {
    local pid rel dir d
    pid=$(cat "$ST/run/libvirt/qemu/$1.pid")
    rel=$(sed -n 's/^0:://p' "/proc/$pid/cgroup")
    dir=/sys/fs/cgroup$rel
    d=$dir
    while [ "$d" != /sys/fs/cgroup ] && [ -z "$(progs "$d")" ]; do
        d=$(dirname "$d")
    done
    [ "$d" != /sys/fs/cgroup ] || fail "VM $1: no device program on $dir or above"
    echo "$dir $d $pid"
}

# Starts VM $1, timing it (START_S), and finds its cgroups (VM_CG, VM_PCG).
vm_start_timed() {
    local t
    t=$(now)
    vm_start "$1"
    START_S=$(since "$t")
    read -r VM_CG VM_PCG _ <<<"$(vm_cgroups "$1")"
    [ -n "$VM_PCG" ] || fail "no cgroup for VM $1"
    note_progs "$VM_PCG"
}

# The median of 3 starts (then destroys) of a throwaway VM, once QEMU's
# capabilities are cached (the first VM of a daemon probes them): START_S.
time_starts() {
    local i t times=()
    for i in 1 2 3; do
        t=$(now)
        vm_start "$1$i"
        times+=("$(since "$t")")
        virsh_ destroy "$1$i" >/dev/null || fail "destroy $1$i failed"
    done
    START_S=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
}

# Whether exactly one device program is attached to $1: the library's.
only_ours() {
    [ "$(progs "$1" | grep -c .)" = 1 ] && [ "$(ours_count "$1")" = 1 ]
}
# How many of cgroup $1's device programs are the library's: vcg2dev_fN
# (format 5 on), vircgroup_v2dev (the earlier releases).
ours_count() {
    progs "$1" | awk '$2 ~ /^(vcg2dev_f[0-9]+|vircgroup_v2dev)$/ { n++ } END { print n + 0 }'
}

# Device programs attached to cgroup $1: "ID NAME" lines.
progs() {
    ns bpftool cgroup show "$1" 2>/dev/null |
        awk '$2 == "cgroup_device" || $2 == "device" { print $1, $NF }'
}
prog_ids() { progs "$1" | awk '{ print $1 }' | tr '\n' ' ' | sed 's/ $//'; }
# Every program id seen on a VM's cgroup goes into $ST/progids (from
# subshells too): none of them may be left at the end.
note_progs() { progs "$1" | awk '{ print $1 }' >>"$ST/progids"; }

# The probe in the VM's own cgroup: one result per access.
probe() { local cg=$1; shift; ns "$PROBE" "$cg" "$@"; }

# A new 1 MiB loop device in LOOP (not in a subshell: cleanup detaches LOOPS).
new_loop() {
    local img=$ST/img.${#LOOPS[@]}
    truncate -s 1M "$img"
    LOOP=$(losetup -f --show "$img") || fail "losetup failed"
    LOOPS+=("$LOOP")
}
rule_of() { # the rule libvirt grants for a disk on node $1
    printf 'b %d:%d rw\n' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"
}

# Hot-plugs $2 into VM $1 as sdb on USB and checks the rule reaches the
# kernel; unplugs it and checks it is gone. $3 describes the step.
hotplug() {
    local vm=$1 dev=$2 what=$3 cg pcg rule
    read -r cg pcg _ <<<"$(vm_cgroups "$vm")"
    [ -n "$pcg" ] || fail "$what: no cgroup for VM $vm"
    note_progs "$pcg"
    rule=$(rule_of "$dev")
    [ "$(probe "$cg" "r:$dev")" = EPERM ] ||
        fail "$what: $dev is reachable from VM $vm before the hot-plug"
    virsh_ attach-disk "$vm" "$dev" sdb --targetbus usb --sourcetype block >/dev/null ||
        fail "$what: attach-disk $dev to $vm failed"
    admin list "$pcg" | grep -qx "$rule" ||
        fail "$what: '$rule' is not in the rules of $pcg after the hot-plug: $(admin list "$pcg" | tr '\n' ',')"
    [ "$(probe "$cg" "r:$dev")" = ok ] ||
        fail "$what: the probe in $cg cannot open $dev after the hot-plug"
    note_progs "$pcg"
    virsh_ detach-disk "$vm" sdb >/dev/null || fail "$what: detach-disk from $vm failed"
    wait_for 10 sh -c "! nsenter -t $NSPID -m -- $ADMIN list $pcg | grep -qx '$rule'" ||
        fail "$what: '$rule' is still in the rules of $pcg after the unplug"
    [ "$(probe "$cg" "r:$dev")" = EPERM ] ||
        fail "$what: the probe in $cg still opens $dev after the unplug"
}

# What libvirt allows at start: its default cgroup_device_acl (from the
# qemu.conf of that version) for the nodes that exist, and the ptys.
expected_acl() {
    local p
    sed -n '/^#cgroup_device_acl = \[/,/^#\]/p' "$CACHE/$V/src/src/qemu/qemu.conf.in" |
        grep -o '"/dev/[^"]*"' | tr -d '"' | while read -r p; do
            [ -c "$p" ] && printf 'c %d:%d rw\n' "0x$(stat -c %t "$p")" "0x$(stat -c %T "$p")"
        done
    echo 'c 136:* rw'
}

cleanup() {
    local rc=$? vm pid dev
    set +e
    if [ -n "$NSPID" ]; then
        if [ -n "$DPID" ]; then
            for vm in "${VMS[@]}"; do virsh_ destroy "$vm" >/dev/null 2>&1; done
        fi
        stop_daemon
        for vm in "${VMS[@]}"; do
            pid=$(cat "$ST/run/libvirt/qemu/$vm.pid" 2>/dev/null) &&
                grep -q "$vm" "/proc/$pid/cmdline" 2>/dev/null && kill -KILL "$pid"
        done
        sleep 0.3
        # VM cgroups left by a killed daemon, deepest first.
        for vm in "${VMS[@]}"; do
            ns find /sys/fs/cgroup/machine -depth -type d -path "*-$vm.libvirt-qemu*" \
                -exec rmdir {} + 2>/dev/null
        done
        [ -z "$made_machine" ] || ns rmdir /sys/fs/cgroup/machine 2>/dev/null
        [ -z "$SCRATCH" ] || ns rmdir "$SCRATCH" 2>/dev/null
        kill -KILL "$NSPID" 2>/dev/null
        wait "$NSPID" 2>/dev/null
        NSPID=
    fi
    for dev in "${LOOPS[@]}"; do losetup -d "$dev" 2>/dev/null; done
    LOOPS=()
    if [ -n "$ST" ]; then
        # The daemon's log outlives the run, for a look after a failure.
        [ ! -f "$ST/virtqemud.log" ] || cp "$ST/virtqemud.log" "$CACHE/$V/virtqemud-last.log"
        rm -rf "$ST"
    fi
    [ -z "$made_pfx" ] || rmdir "$PFX" 2>/dev/null
    VMS=()
    return $rc
}

vm_tests() {
    V=$1
    PFX=$(prefix_of "$V")
    ST=$(state_of "$V")
    URI="qemu+unix:///system?socket=$ST/run/libvirt/virtqemud-sock"
    ADMIN=$LIB/sbin/vircgroup-devices
    PROBE=$LIB/bin/vcg2-probe
    local tag="libvirt $V" n=vcg$$ t
    # The lock (main) makes this run the only user of $ST and $PFX: what is
    # there is left from a killed run.
    rm -rf "$ST"
    trap cleanup EXIT
    trap 'exit 143' TERM INT HUP
    mkdir -p "$ST/etc/libvirt" "$ST/run" "$ST/lib" "$ST/cache" "$ST/log"
    if [ ! -d "$PFX" ]; then mkdir -p "$PFX"; made_pfx=1; fi
    cat >"$ST/etc/libvirt/qemu.conf" <<CONF
user = "root"
group = "root"
security_driver = "none"
dynamic_ownership = 0
remember_owner = 0
stdio_handler = "file"
CONF
    cat >"$ST/etc/libvirt/virtqemud.conf" <<CONF
log_level = 3
log_filters = "1:util.cgroup 1:qemu.qemu_cgroup 1:qemu.qemu_hotplug"
log_outputs = "1:file:$ST/virtqemud.log"
CONF

    # The namespace: a process that only sleeps holds it.
    unshare -m --propagation private sleep 100000 &
    NSPID=$!
    wait_for 5 sh -c "[ \"\$(readlink /proc/$NSPID/ns/mnt)\" != \"\$(readlink /proc/self/ns/mnt)\" ]" ||
        fail "unshare did not make a mount namespace"
    ns sh -euc 'umount -R /sys/fs/cgroup; mount -t cgroup2 cgroup2 /sys/fs/cgroup'
    [ "$(ns stat -f -c %T /sys/fs/cgroup)" = cgroup2fs ] &&
        [ "$(ns awk '$5 ~ "^/sys/fs/cgroup" { print $5 }' /proc/self/mountinfo)" = /sys/fs/cgroup ] ||
        fail "$tag: /sys/fs/cgroup is not a pure cgroup2 mount in the namespace"
    ns test -d /sys/fs/cgroup/machine || made_machine=1

    # ---- stock libvirt starts VM a
    start_daemon stock
    vm_start_timed "${n}a"
    local start_stock=$START_S pcga=$VM_PCG
    local stock_rules stock_ids
    stock_rules=$(admin list "$pcga")
    stock_ids=$(prog_ids "$pcga")
    [ -n "$stock_ids" ] && [ "$(wc -w <<<"$stock_ids")" = 1 ] ||
        fail "$tag: stock libvirt left $(wc -w <<<"$stock_ids") device programs on $pcga"
    time_starts "${n}s"
    local warm_stock=$START_S
    echo "     stock VM ${n}a started in $start_stock s (then $warm_stock s, median of 3); program $stock_ids; rules: $(tr '\n' ',' <<<"$stock_rules")"

    # ---- upgrade: the patched daemon takes over VM a
    stop_daemon
    start_daemon patched
    local base_fds
    check "$tag: the daemon uses the cgroup v2 backend with BPF devices (debug log)" \
        wait_for 20 grep -q "virCgroupV2DetectControllers.*Controller 'devices' present=yes" "$ST/virtqemud.log"
    check "$tag upgrade: VM ${n}a (stock libvirt's program) keeps its rules under the patched daemon" \
        test "$(admin list "$pcga")" = "$stock_rules"
    new_loop
    local loop=$LOOP
    hotplug "${n}a" "$loop" "$tag upgrade"
    note_progs "$pcga"
    pass "$tag upgrade: hot-plug and unplug of $loop on VM ${n}a work at once"
    check "$tag upgrade: libvirt's program on ${n}a was replaced by exactly one program of the library" \
        only_ours "$pcga"

    # ---- the patched daemon starts VM b
    vm_start_timed "${n}b"
    local start_patched=$START_S cgb=$VM_CG pcgb=$VM_PCG
    time_starts "${n}p"
    local warm_patched=$START_S
    echo "     patched VM ${n}b started in $start_patched s (then $warm_patched s, median of 3); QEMU in $cgb, program on $pcgb"
    check "$tag start: the rules of ${n}b are libvirt's default cgroup_device_acl plus c 136:* rw" \
        test "$(admin list "$pcgb" | sort)" = "$(expected_acl | sort -u)"
    check "$tag log: the library's messages reach libvirt's log (util.cgroup)" \
        grep -q "virCgroupV2DevicesLog.*attached program" "$ST/virtqemud.log"
    check "$tag enforcement: a probe in ${n}b's cgroup is denied /dev/loop-control (c 10:237, not in the list)" \
        test "$(probe "$cgb" r:/dev/loop-control)" = EPERM
    check "$tag enforcement: a probe in ${n}b's cgroup opens /dev/null and /dev/urandom (in the list)" \
        test "$(probe "$cgb" rw:/dev/null r:/dev/urandom | tr '\n' ' ')" = "ok ok "
    local ids_b
    ids_b=$(prog_ids "$pcgb")
    check "$tag one program: exactly one device program on ${n}b, the library's ($ids_b)" \
        only_ours "$pcgb"
    hotplug "${n}b" "$loop" "$tag hot-plug"
    pass "$tag hot-plug: attaching $loop to ${n}b adds '$(rule_of "$loop")' and the probe opens it; unplugging removes it and the probe is denied"

    # ---- daemon restart with the VMs running
    stop_daemon
    start_daemon patched
    hotplug "${n}b" "$loop" "$tag restart"
    check "$tag restart: the program on ${n}b was adopted (same id $ids_b) and hot-plug works after the restart" \
        test "$(prog_ids "$pcgb")" = "$ids_b"

    # ---- rollback: patched -> stock, with vircgroup-devices to-libvirt
    stop_daemon
    SCRATCH=/sys/fs/cgroup/vcg2-e2e-$$
    ns mkdir "$SCRATCH"
    admin deny "$SCRATCH" a >/dev/null && admin allow "$SCRATCH" 'c 1:3 rw' 'b 1:3 r' >/dev/null
    local lossy
    lossy=$(admin to-libvirt "$SCRATCH" 2>&1) && fail "$tag rollback: a lossy conversion was not refused"
    check "$tag rollback: a lossy conversion is refused naming the rules ($lossy)" \
        grep -q "'b 1:3 r' and 'c 1:3 rw'" <<<"$lossy"
    ns rmdir "$SCRATCH"
    SCRATCH=
    local vm cg pcg
    for vm in "${n}a" "${n}b"; do
        read -r cg pcg _ <<<"$(vm_cgroups "$vm")"
        local before
        before=$(admin list "$pcg")
        admin to-libvirt "$pcg" >/dev/null || fail "$tag rollback: to-libvirt $pcg failed"
        note_progs "$pcg"
        check "$tag rollback: to-libvirt gives $vm libvirt's program (not the library's) with the same rules" \
            test "$(admin list "$pcg")" = "$before" -a "$(ours_count "$pcg")" = 0
    done
    start_daemon stock
    hotplug "${n}b" "$loop" "$tag rollback"
    pass "$tag rollback: stock libvirt hot-plugs and unplugs $loop on ${n}b after to-libvirt"
    for vm in "${n}a" "${n}b"; do
        virsh_ destroy "$vm" >/dev/null || fail "$tag: destroy $vm under stock libvirt failed"
    done

    # ---- concurrency and a clean exit, under the patched daemon
    stop_daemon
    start_daemon patched
    base_fds=$(fds)
    local i loops=() pids=() bad=0
    for i in $(seq 0 9); do
        new_loop
        loops+=("$LOOP")
    done
    t=$(now)
    for i in $(seq 0 9); do
        ( vm_start "${n}c$i" && hotplug "${n}c$i" "${loops[$i]}" "$tag concurrency ${n}c$i" &&
              virsh_ destroy "${n}c$i" >/dev/null ) >"$ST/c$i.out" 2>&1 &
        pids+=($!)
        VMS+=("${n}c$i")
    done
    for i in $(seq 0 9); do
        wait "${pids[$i]}" || { bad=$((bad + 1)); cat "$ST/c$i.out"; }
    done
    local conc
    conc=$(since "$t")
    [ "$bad" = 0 ] || fail "$tag concurrency: $bad of 10 VMs failed"
    pass "$tag concurrency: 10 VMs started, hot-plugged, unplugged and destroyed concurrently in $conc s"

    check "$tag clean exit: no VM cgroup is left under /sys/fs/cgroup/machine" \
        test -z "$(ns find /sys/fs/cgroup/machine -maxdepth 1 -name "qemu-*-$n*")"
    local alive=() id seen
    seen=$(sort -un "$ST/progids" | grep -c .)
    for id in $(sort -un "$ST/progids"); do
        ns bpftool prog show id "$id" >/dev/null 2>&1 && alive+=("$id")
    done
    check "$tag clean exit: none of the $seen device programs seen on the VMs is left (${alive[*]:-none})" \
        test ${#alive[@]} = 0
    local end_fds
    wait_for 5 test "$(fds)" = "$base_fds" || true
    end_fds=$(fds)
    check "$tag clean exit: the daemon's fd count is back at its baseline ($base_fds -> $end_fds)" \
        test "$end_fds" = "$base_fds"
    echo "     numbers: first VM start stock $start_stock s, patched $start_patched s; VM start (median of 3) stock $warm_stock s, patched $warm_patched s; 10 concurrent VMs $conc s; fds $base_fds -> $end_fds"
    cleanup
    trap - EXIT
}

main() {
    local v t0 t
    t0=$(now)
    mkdir -p "$CACHE"
    exec 9>"$CACHE/lock"
    flock -n 9 || die "another e2e run holds $CACHE/lock"
    for v in "${versions[@]}"; do
        apt_install "${common_deps[@]}"
        [ -n "$LIB" ] || build_library
        t=$(now)
        build_all "$v"
        echo "== libvirt $v: builds ready in $(since "$t") s"
        t=$(now)
        vm_tests "$v"
        echo "== libvirt $v: VM tests in $(since "$t") s"
    done
    echo "== e2e: $(since "$t0") s"
    echo "$passed passed, $failed failed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main
fi
