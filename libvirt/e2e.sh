#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libvirt/e2e.sh [TARGET...]: this library inside real libvirt, with real
# QEMU guests. TARGETs are libvirt/TARGET/ patch series (default: 9.0.0 and
# 11.3.0, Debian 12's and Debian 13's libvirt with libvirt's code replaced,
# and 11.3.0-upstream, the series in the form upstream can merge, with its
# 'vircgroup_v2_devices' Meson option).
#
# As root, from a fresh Debian machine, per TARGET:
#   1. the build step (libvirt/build.sh): Debian's libvirt source package,
#      built stock and with the series, libvirt's own tests on each build;
#   2. virtqemud in a private mount namespace where /sys/fs/cgroup is a pure
#      cgroup2 mount, running QEMU guests (TCG, 64 MiB, no disk), one
#      function per scenario (SCENARIOS below): start, upgrade (stock ->
#      patched), enforcement, one program, hot-plug, daemon restart,
#      rollback (patched -> stock, with 'vircgroup-devices to-libvirt'),
#      concurrency, a clean exit, and the VM start timed, stock against
#      patched, in pairs.
# "Stock" is Debian's libvirt unpatched, or for a series with the option the
# same series built with -Dvircgroup_v2_devices=disabled; "patched" uses the
# library. It prints one line per assertion and exits 0 only when all of
# them hold. docs/libvirt.md explains it all.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=libvirt/build.sh
. "$here/build.sh"

# Stock and patched VM starts, alternating, for the timing.
PAIRS=${E2E_PAIRS:-5}

# ------------------------------------------------------------- the VM half
# Everything below runs in a private mount namespace held by $NSPID, where
# /sys/fs/cgroup is a pure cgroup2 mount and $PFX is a bind mount of the
# stock or the patched install.
NSPID=
DPID=
DKIND=
ST=
PFX=
V=
TAG=
URI=
VMS=()
LOOPS=()
SCRATCH=
STATE_LOCKS=
made_pfx=
made_machine=

ns() { nsenter -t "$NSPID" -m -- "$@"; }
ADMIN=
PROBE=
virsh_() { ns env LD_LIBRARY_PATH="$PFX/lib:$LIB/lib" "$PFX/bin/virsh" -q -c "$URI" "$@"; }
admin() { ns "$ADMIN" "$@"; }

# The daemon's log and stderr after a failed assertion.
on_fail() {
    if [ -n "$ST" ] && [ -f "$ST/virtqemud.log" ]; then
        echo "---- last lines of the daemon log ($ST/virtqemud.log)"
        grep -v ' : \(Cannot\|Unable\) ' "$ST/virtqemud.log" | tail -40 || true
        echo "---- daemon stderr"
        tail -20 "$ST/daemon.out" 2>/dev/null || true
        echo "----"
    fi
}

# Starts the stock or the patched virtqemud ($1). Each kind has its own QEMU
# capabilities cache (a daemon binary that changed invalidates it), so that
# switching kinds does not probe QEMU again.
start_daemon() {
    local kind=$1 root
    root=$([ "$kind" = stock ] && echo "$STOCK" || echo "$PATCHED")
    mkdir -p "$ST/caps-$kind"
    ns sh -c "mountpoint -q $PFX && umount $PFX; mount --bind $root$PFX $PFX
              mountpoint -q $ST/cache && umount $ST/cache; mount --bind $ST/caps-$kind $ST/cache"
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

restart_daemon() { stop_daemon; start_daemon "$1"; }

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
probe() {
    local cg=$1
    shift
    ns "$PROBE" "$cg" "$@"
}

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
    # No grep -q: under pipefail it would fail the pipeline through SIGPIPE
    # when the rule is on list's first line.
    admin list "$pcg" | grep -x -- "$rule" >/dev/null ||
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

# median, spread: of the numbers on stdin, one a line.
median() { sort -g | awk '{ a[NR] = $1 } END { printf "%s", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
spread() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s..%s", lo, hi }'; }

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

# The namespace, the daemon's configuration and state for TARGET $1.
vm_setup() {
    V=$(version_of "$1")
    TAG="libvirt $1"
    PFX=$(prefix_of "$V")
    ST=$(state_of "$V")
    URI="qemu+unix:///system?socket=$ST/run/libvirt/virtqemud-sock"
    ADMIN=$LIB/sbin/vircgroup-devices
    PROBE=$LIB/bin/vcg2-probe
    N=vcg$$
    # Runs with other caches (VCG2_CACHE) build the same paths: this lock
    # makes this run the only user of $ST and $PFX, so what is there is left
    # from a killed run.
    # Once per state directory: a second flock of this process would wait
    # for its own.
    case " $STATE_LOCKS " in
        *" $ST "*) ;;
        *)
            lock_file "/run/lock/vcg2-e2e-$(basename "$ST").lock" 3600
            STATE_LOCKS+=" $ST"
            ;;
    esac
    rm -rf "$ST"
    trap cleanup EXIT
    trap 'exit 143' TERM INT HUP
    mkdir -p "$ST/etc/libvirt" "$ST/run" "$ST/lib" "$ST/cache" "$ST/log"
    if [ ! -d "$PFX" ]; then
        mkdir -p "$PFX"
        made_pfx=1
    fi
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
        fail "$TAG: /sys/fs/cgroup is not a pure cgroup2 mount in the namespace"
    ns test -d /sys/fs/cgroup/machine || made_machine=1
    echo "     stock: $STOCK_IS ($STOCK)"
    echo "     patched: with the library ($PATCHED)"
}

vm_teardown() {
    cleanup
    trap - EXIT
}

# ------------------------------------------------------------- scenarios
# They run in this order, each building on the state the earlier ones
# leave: VM a (started by stock libvirt) and VM b (by patched libvirt).

# Stock libvirt starts VM a: its program and rules are what the rest checks.
scenario_stock_start() {
    start_daemon stock
    vm_start_timed "${N}a"
    START_STOCK=$START_S
    PCGA=$VM_PCG
    STOCK_RULES=$(admin list "$PCGA")
    local ids
    ids=$(prog_ids "$PCGA")
    [ -n "$ids" ] && [ "$(wc -w <<<"$ids")" = 1 ] ||
        fail "$TAG: stock libvirt left $(wc -w <<<"$ids") device programs on $PCGA"
    time_starts "${N}s"
    WARM_STOCK=$START_S
    echo "     stock VM ${N}a started in $START_STOCK s (then $WARM_STOCK s, median of 3); program $ids; rules: $(tr '\n' ',' <<<"$STOCK_RULES")"
}

# The patched daemon takes over VM a, started by stock libvirt.
scenario_upgrade() {
    restart_daemon patched
    check "$TAG: the daemon uses the cgroup v2 backend with BPF devices (debug log)" \
        wait_for 20 grep -q "virCgroupV2DetectControllers.*Controller 'devices' present=yes" "$ST/virtqemud.log"
    check "$TAG upgrade: VM ${N}a (stock libvirt's program) keeps its rules under the patched daemon" \
        test "$(admin list "$PCGA")" = "$STOCK_RULES"
    new_loop
    DISK=$LOOP
    hotplug "${N}a" "$DISK" "$TAG upgrade"
    note_progs "$PCGA"
    pass "$TAG upgrade: hot-plug and unplug of $DISK on VM ${N}a work at once"
    check "$TAG upgrade: libvirt's program on ${N}a was replaced by exactly one program of the library" \
        only_ours "$PCGA"
}

# The patched daemon starts VM b: its rules, the log, enforcement, one program.
scenario_start() {
    vm_start_timed "${N}b"
    START_PATCHED=$START_S
    CGB=$VM_CG
    PCGB=$VM_PCG
    time_starts "${N}p"
    WARM_PATCHED=$START_S
    echo "     patched VM ${N}b started in $START_PATCHED s (then $WARM_PATCHED s, median of 3); QEMU in $CGB, program on $PCGB"
    check "$TAG start: the rules of ${N}b are libvirt's default cgroup_device_acl plus c 136:* rw" \
        test "$(admin list "$PCGB" | sort)" = "$(expected_acl | sort -u)"
    check "$TAG log: the library's messages reach libvirt's log (util.cgroup)" \
        grep -q "virCgroupV2DevicesLog.*attached program" "$ST/virtqemud.log"
    check "$TAG enforcement: a probe in ${N}b's cgroup is denied /dev/loop-control (c 10:237, not in the list)" \
        test "$(probe "$CGB" r:/dev/loop-control)" = EPERM
    check "$TAG enforcement: a probe in ${N}b's cgroup opens /dev/null and /dev/urandom (in the list)" \
        test "$(probe "$CGB" rw:/dev/null r:/dev/urandom | tr '\n' ' ')" = "ok ok "
    IDS_B=$(prog_ids "$PCGB")
    check "$TAG one program: exactly one device program on ${N}b, the library's ($IDS_B)" \
        only_ours "$PCGB"
}

scenario_hotplug() {
    hotplug "${N}b" "$DISK" "$TAG hot-plug"
    pass "$TAG hot-plug: attaching $DISK to ${N}b adds '$(rule_of "$DISK")' and the probe opens it; unplugging removes it and the probe is denied"
}

# A daemon restart with the VMs running adopts their programs.
scenario_restart() {
    restart_daemon patched
    hotplug "${N}b" "$DISK" "$TAG restart"
    check "$TAG restart: the program on ${N}b was adopted (same id $IDS_B) and hot-plug works after the restart" \
        test "$(prog_ids "$PCGB")" = "$IDS_B"
}

# Patched -> stock, with vircgroup-devices to-libvirt.
scenario_rollback() {
    stop_daemon
    SCRATCH=/sys/fs/cgroup/vcg2-e2e-$$
    ns mkdir "$SCRATCH"
    admin deny "$SCRATCH" a >/dev/null && admin allow "$SCRATCH" 'c 1:3 rw' 'b 1:3 r' >/dev/null
    local lossy vm cg pcg before
    lossy=$(admin to-libvirt "$SCRATCH" 2>&1) && fail "$TAG rollback: a lossy conversion was not refused"
    check "$TAG rollback: a lossy conversion is refused naming the rules ($lossy)" \
        grep -q "'b 1:3 r' and 'c 1:3 rw'" <<<"$lossy"
    ns rmdir "$SCRATCH"
    SCRATCH=
    for vm in "${N}a" "${N}b"; do
        read -r cg pcg _ <<<"$(vm_cgroups "$vm")"
        before=$(admin list "$pcg")
        admin to-libvirt "$pcg" >/dev/null || fail "$TAG rollback: to-libvirt $pcg failed"
        note_progs "$pcg"
        check "$TAG rollback: to-libvirt gives $vm libvirt's program (not the library's) with the same rules" \
            test "$(admin list "$pcg")" = "$before" -a "$(ours_count "$pcg")" = 0
    done
    start_daemon stock
    hotplug "${N}b" "$DISK" "$TAG rollback"
    pass "$TAG rollback: stock libvirt hot-plugs and unplugs $DISK on ${N}b after to-libvirt"
    for vm in "${N}a" "${N}b"; do
        virsh_ destroy "$vm" >/dev/null || fail "$TAG: destroy $vm under stock libvirt failed"
    done
}

# 10 VMs started, hot-plugged, unplugged and destroyed at once.
scenario_concurrency() {
    restart_daemon patched
    BASE_FDS=$(fds)
    local i t loops=() pids=() bad=0
    for i in $(seq 0 9); do
        new_loop
        loops+=("$LOOP")
    done
    t=$(now)
    for i in $(seq 0 9); do
        (vm_start "${N}c$i" && hotplug "${N}c$i" "${loops[$i]}" "$TAG concurrency ${N}c$i" &&
            virsh_ destroy "${N}c$i" >/dev/null) >"$ST/c$i.out" 2>&1 &
        pids+=($!)
        VMS+=("${N}c$i")
    done
    for i in $(seq 0 9); do
        wait "${pids[$i]}" || {
            bad=$((bad + 1))
            cat "$ST/c$i.out"
        }
    done
    CONC=$(since "$t")
    [ "$bad" = 0 ] || fail "$TAG concurrency: $bad of 10 VMs failed"
    pass "$TAG concurrency: 10 VMs started, hot-plugged, unplugged and destroyed concurrently in $CONC s"
}

# Nothing of the VMs is left: cgroups, programs, the daemon's fds.
scenario_clean_exit() {
    check "$TAG clean exit: no VM cgroup is left under /sys/fs/cgroup/machine" \
        test -z "$(ns find /sys/fs/cgroup/machine -maxdepth 1 -name "qemu-*-$N*")"
    local alive=() id seen
    seen=$(sort -un "$ST/progids" | grep -c .)
    for id in $(sort -un "$ST/progids"); do
        ns bpftool prog show id "$id" >/dev/null 2>&1 && alive+=("$id")
    done
    check "$TAG clean exit: none of the $seen device programs seen on the VMs is left (${alive[*]:-none})" \
        test ${#alive[@]} = 0
    wait_for 5 test "$(fds)" = "$BASE_FDS" || true
    END_FDS=$(fds)
    check "$TAG clean exit: the daemon's fd count is back at its baseline ($BASE_FDS -> $END_FDS)" \
        test "$END_FDS" = "$BASE_FDS"
}

# The same VM definition started by the stock and the patched daemon in
# turn, PAIRS pairs, each kind first in every other pair; per pair the
# difference and the ratio of the two starts (virsh create until it
# returns). Before each timed start the daemon is restarted and starts and
# destroys another VM, so that both kinds are timed in the same state:
# warm, with their QEMU capabilities cached (a daemon's first start after a
# restart takes seconds longer, and varies).
scenario_start_timing() {
    local i kind t dt s p vm=${N}t order diffs=() ratios=() ss=() ps=()
    for i in $(seq 1 "$PAIRS"); do
        order=(stock patched)
        [ $((i % 2)) = 1 ] || order=(patched stock)
        for kind in "${order[@]}"; do
            restart_daemon "$kind"
            vm_start "${N}w"
            virsh_ destroy "${N}w" >/dev/null || fail "$TAG: destroy ${N}w under $kind libvirt failed"
            t=$(now)
            vm_start "$vm"
            dt=$(since "$t" 3)
            if [ "$kind" = stock ]; then s=$dt; else p=$dt; fi
            virsh_ destroy "$vm" >/dev/null || fail "$TAG: destroy $vm under $kind libvirt failed"
        done
        ss+=("$s")
        ps+=("$p")
        diffs+=("$(awk -v a="$s" -v b="$p" 'BEGIN { printf "%+.3f", b - a }')")
        ratios+=("$(awk -v a="$s" -v b="$p" 'BEGIN { printf "%.2f", b / a }')")
    done
    echo "     VM start, $PAIRS pairs (stock, patched; same definition): stock median $(printf '%s\n' "${ss[@]}" | median) s ($(printf '%s\n' "${ss[@]}" | spread)), patched median $(printf '%s\n' "${ps[@]}" | median) s ($(printf '%s\n' "${ps[@]}" | spread)); per pair patched - stock median $(printf '%s\n' "${diffs[@]}" | median) s ($(printf '%s\n' "${diffs[@]}" | spread)), patched / stock median $(printf '%s\n' "${ratios[@]}" | median) ($(printf '%s\n' "${ratios[@]}" | spread))"
    echo "     start pairs (stock patched): $(paste -d' ' <(printf '%s\n' "${ss[@]}") <(printf '%s\n' "${ps[@]}") | tr '\n' ',' | sed 's/,$//')"
}

SCENARIOS=(
    scenario_stock_start
    scenario_upgrade
    scenario_start
    scenario_hotplug
    scenario_restart
    scenario_rollback
    scenario_concurrency
    scenario_clean_exit
    scenario_start_timing
)

vm_tests() {
    local s
    vm_setup "$1"
    for s in "${SCENARIOS[@]}"; do
        "$s"
    done
    echo "     numbers: first VM start stock $START_STOCK s, patched $START_PATCHED s; VM start (median of 3) stock $WARM_STOCK s, patched $WARM_PATCHED s; 10 concurrent VMs $CONC s; fds $BASE_FDS -> $END_FDS"
    vm_teardown
}

main() {
    local targets=("$@") t t0 t1
    [ ${#targets[@]} -gt 0 ] || targets=("${DEFAULT_TARGETS[@]}")
    [ "$(id -u)" = 0 ] || die "needs root"
    check_targets "${targets[@]}"
    [[ $PAIRS =~ ^[1-9][0-9]*$ ]] || die "E2E_PAIRS must be a positive number, not '$PAIRS'"
    t0=$(now)
    lock_file "$CACHE/lock" 0
    for t in "${targets[@]}"; do
        t1=$(now)
        build_target "$t"
        echo "== libvirt $t: builds ready in $(since "$t1") s"
        t1=$(now)
        vm_tests "$t"
        echo "== libvirt $t: VM tests in $(since "$t1") s"
    done
    echo "== e2e: $(since "$t0") s"
    echo "$passed passed, $failed failed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
