#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The guest half of libvirt/distro-e2e.sh. It runs as root inside the
# booted Debian 13 image (vcg2-run.service), from the 9p share at
# /mnt/share, which also holds:
#   boot           1 or 2: which boot of the same disk this is
#   repo/          a local apt repository: this project's .debs, Debian's
#                  libvirt rebuilt with the series, and the stock .debs
#   upgrade.list   PACKAGE=VERSION of the rebuilt libvirt packages to install
#   stock.list     PACKAGE=VERSION of the stock ones (the image's)
#   vcg2-probe     the probe (src/bin/vcg2-probe.rs)
# It writes one line per assertion ("PASS: ..." or "FAIL: ..." with an
# excerpt of the journal) to stdout, which vcg2-run.service puts in
# /mnt/share/guest.out, and what the second boot needs to state/.
#
# Boot 1 starts with Debian's stock libvirt installed, boot 2 with the
# rebuilt one and the autostarted VM defined in boot 1.
set -uo pipefail

SHARE=/mnt/share
STATE=$SHARE/state
PROBE=$SHARE/vcg2-probe
CG=/sys/fs/cgroup
TAG=vcg2e2e
VIRSH_TIMEOUT=300
export LC_ALL=C.UTF-8
mkdir -p "$STATE"
WORK=$(mktemp -d /var/tmp/vcg2-e2e.XXXXXX)

# ------------------------------------------------------------ reporting
REASON=
passed=0
failed=0
# expect WHAT COMMAND...: runs COMMAND; if it fails, WHAT is the reason
# the assertion fails (returns 1).
expect() {
    local what=$1
    shift
    if "$@" >/dev/null 2>&1; then return 0; fi
    REASON=$what
    return 1
}
# flunk WHAT: the assertion fails with reason WHAT (returns 1).
flunk() { REASON=$1; return 1; }
note() { echo "     $*"; }

# The journal around a failure: libvirtd's and the warnings of this boot.
journal_excerpt() {
    echo "---- journalctl -b -u libvirtd (last 40 lines)"
    journalctl -b --no-pager -o short-monotonic -n 40 -u libvirtd 2>&1 | sed 's/^/   | /'
    echo "---- journalctl -b -p warning (last 25 lines)"
    journalctl -b --no-pager -o short-monotonic -n 25 -p warning 2>&1 | sed 's/^/   | /'
    echo "----"
}

# assertion NAME FUNCTION: runs the scenario FUNCTION (which sets SUMMARY,
# or REASON and returns 1) and prints its one line.
assertion() {
    local name=$1 fn=$2 t=$EPOCHREALTIME
    REASON='' SUMMARY=''
    if "$fn"; then
        passed=$((passed + 1))
        echo "PASS: $name: $SUMMARY ($(secs "$t") s)"
    else
        failed=$((failed + 1))
        echo "FAIL: $name: ${REASON:-$fn returned an error} ($(secs "$t") s)"
        journal_excerpt
    fi
}
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

# --------------------------------------------------------------- libvirt
virsh_() { timeout "$VIRSH_TIMEOUT" virsh -q -c qemu:///system "$@"; }

vm_xml() {
    cat <<XML
<domain type='qemu'>
  <name>$1</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='network'/></os>
  <features><acpi/></features>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <controller type='usb' model='piix3-uhci'/>
    <memballoon model='none'/>
  </devices>
</domain>
XML
}

# vm_start NAME: starts a transient VM; START_S is how long virsh took.
vm_start() {
    local t=$EPOCHREALTIME
    vm_xml "$1" >"$WORK/$1.xml"
    virsh_ create "$WORK/$1.xml" >"$WORK/$1.start" 2>&1 ||
        flunk "virsh create $1 failed: $(tr '\n' ' ' <"$WORK/$1.start")" || return 1
    START_S=$(secs "$t")
}

vm_pid() { cat "/run/libvirt/qemu/$1.pid" 2>/dev/null; }
# vm_cg NAME: sets QLINE (QEMU's line of /proc/PID/cgroup, '0::/...'),
# QCG (its directory), LCG (the nested 'libvirt' cgroup) and SCOPE.
vm_cg() {
    local pid rel
    pid=$(vm_pid "$1") || { flunk "no pid file for VM $1"; return 1; }
    QLINE=$(grep '^0::' "/proc/$pid/cgroup") || { flunk "no cgroup2 line in /proc/$pid/cgroup"; return 1; }
    rel=${QLINE#0::}
    QCG=$CG$rel
    case $rel in
        /machine.slice/machine-qemu*.scope/libvirt/emulator) ;;
        *) flunk "QEMU of $1 is in '$rel', not machine.slice/machine-qemu…scope/libvirt/emulator"; return 1 ;;
    esac
    LCG=${QCG%/emulator}
    SCOPE=${LCG%/libvirt}
}

# progs DIR: "ID FLAGS NAME" of the device programs attached to DIR
# (FLAGS '-' for none; NAME '-' for a program with no name).
progs() {
    bpftool cgroup show "$1" 2>/dev/null | awk '
        $2 == "cgroup_device" || $2 == "device" {
            if (NF >= 4) print $1, $3, $NF; else if (NF == 3) print $1, "-", $3; else print $1, "-", "-" }'
}
prog_ids() { progs "$1" | awk '{ print $1 }' | tr '\n' ' ' | sed 's/ $//'; }
is_ours() { [[ $1 =~ ^(vcg2dev_f[0-9]+|vircgroup_v2dev)$ ]]; }
# only_ours DIR: exactly one device program on DIR, and it is the library's.
only_ours() {
    local p
    p=$(progs "$1")
    [ "$(grep -c . <<<"$p")" = 1 ] && is_ours "$(awk '{ print $3 }' <<<"$p")"
}
note_progs() { progs "$1" | awk '{ print $1 }' >>"$WORK/progids"; }

admin() { timeout 60 vircgroup-devices "$@"; }

# node TYPE MAJOR MINOR: prints the path of a node made with mknod in a
# private directory (never a real device is opened).
node() {
    local p=$WORK/nodes/$1-$2-$3
    mkdir -p "$WORK/nodes"
    [ -e "$p" ] || mknod -m 600 "$p" "$1" "$2" "$3"
    echo "$p"
}
# probe LCG ACCESS...: a probe process joins LCG (a domain cgroup), moves
# its thread into LCG/emulator (threaded, where QEMU runs) and tries each
# access with access(2): one result per line, 'ok' or 'EPERM'...
probe() {
    local lcg=$1
    shift
    timeout 30 "$PROBE" --thread "$lcg/emulator" "$lcg" "$@" | tr '\n' ' ' | sed 's/ $//'
}
numbers() { printf '%d %d' "0x$(stat -c %t "$1")" "0x$(stat -c %T "$1")"; }

# What libvirt allows at a VM's start: the default cgroup_device_acl (the
# comment in Debian's /etc/libvirt/qemu.conf) for the nodes that exist,
# and the ptys.
expected_acl() {
    local p
    sed -n '/^#cgroup_device_acl = \[/,/^#\]/p' /etc/libvirt/qemu.conf |
        grep -o '"/dev/[^"]*"' | tr -d '"' | while read -r p; do
            [ -c "$p" ] && printf 'c %d:%d rw\n' "0x$(stat -c %t "$p")" "0x$(stat -c %T "$p")"
        done
    echo 'c 136:* rw'
}

LOOPS=()
# new_loop: a new 1 MiB loop device in LOOP, its rule in RULE and a node
# of its numbers in LNODE.
new_loop() {
    local img=$WORK/img.${#LOOPS[@]} mm
    truncate -s 1M "$img"
    LOOP=$(losetup -f --show "$img") || { flunk "losetup failed"; return 1; }
    LOOPS+=("$LOOP")
    mm=$(numbers "$LOOP")
    RULE="b ${mm% *}:${mm#* } rw"
    LNODE=$(node b "${mm% *}" "${mm#* }")
}

# grep without -q reads all of list's output: with pipefail, a grep -q that
# stops at the first line would fail the pipeline through SIGPIPE.
has_rule() { admin list "$1" | grep -x -- "$2" >/dev/null; }
# hotplug VM LOOP RULE NODE: attach-disk (USB: unplugs with no guest OS)
# adds RULE and the probe opens NODE; detach-disk removes it and the probe
# is denied. Returns 1 with the reason.
hotplug() {
    local vm=$1 dev=$2 rule=$3 nd=$4
    vm_cg "$vm" || return 1
    expect "$nd is allowed in $vm's cgroup before the hot-plug" \
        test "$(probe "$LCG" "ar:$nd")" = EPERM || return 1
    virsh_ attach-disk "$vm" "$dev" sdb --targetbus usb --sourcetype block >"$WORK/attach" 2>&1 ||
        flunk "attach-disk $dev to $vm failed: $(tr '\n' ' ' <"$WORK/attach")" || return 1
    expect "'$rule' is not in the rules of $LCG after attach-disk: $(admin list "$LCG" | tr '\n' ',')" \
        has_rule "$LCG" "$rule" || return 1
    expect "the probe is denied $rule after the hot-plug" \
        test "$(probe "$LCG" "ar:$nd" "aw:$nd")" = "ok ok" || return 1
    note_progs "$LCG"
    virsh_ detach-disk "$vm" sdb >"$WORK/detach" 2>&1 ||
        flunk "detach-disk from $vm failed: $(tr '\n' ' ' <"$WORK/detach")" || return 1
    local i
    for i in $(seq 50); do has_rule "$LCG" "$rule" || break; sleep 0.2; done
    expect "'$rule' is still in the rules of $LCG after detach-disk" \
        eval "! has_rule '$LCG' '$rule'" || return 1
    expect "the probe still reaches $rule after the unplug" \
        test "$(probe "$LCG" "ar:$nd")" = EPERM
}

daemon_pid() { systemctl show -P MainPID libvirtd.service; }
# Waits (bounded) until libvirtd answers.
wait_daemon() {
    local i
    for i in $(seq 240); do
        timeout 30 virsh -c qemu:///system version >/dev/null 2>&1 && return 0
        sleep 0.5
    done
    flunk "libvirtd does not answer after 120 s"
}
fds() { find "/proc/$(daemon_pid)/fd" -mindepth 1 -maxdepth 1 | wc -l; }

# ====================================================== boot 1: scenarios
# Each sets SUMMARY, or REASON and returns 1. They run in main's order and
# build on each other: VM up (stock), VM b (patched), LOOP1; one whose
# predecessor failed says so.
UP_LCG='' B_LCG='' B_QLINE='' STOCK_RULES='' LOOP1='' RULE1='' NODE1='' RB_LCG=''
STOCK_FIRST='?' STOCK_WARM='?' PATCHED_FIRST='?' PATCHED_WARM='?' UPGRADE_S='?' CONC_S='?'
need_b() { [ -n "$B_LCG" ] || flunk "VM ${TAG}b did not start (see placement)"; }
# LOOP1 (made by the upgrade scenario, or here if that failed early).
need_loop1() {
    [ -z "$LOOP1" ] || return 0
    new_loop || return 1
    LOOP1=$LOOP RULE1=$RULE NODE1=$LNODE
}

# The admin tool from the local repository; no libvirt package changes.
install_tool() {
    apt-get update -q >"$WORK/apt-update.log" 2>&1 || { cat "$WORK/apt-update.log"; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q vircgroup-devices >"$WORK/apt-tool.log" 2>&1 ||
        { cat "$WORK/apt-tool.log"; return 1; }
}

# Stock libvirt starts VM 'up' (and a second one, timed warm) before the
# upgrade.
stock_vm() {
    vm_start "${TAG}up" || return 1
    STOCK_FIRST=$START_S
    vm_start "${TAG}sw" || return 1
    STOCK_WARM=$START_S
    virsh_ destroy "${TAG}sw" >/dev/null
    vm_cg "${TAG}up" || return 1
    UP_LCG=$LCG
    STOCK_RULES=$(admin list "$UP_LCG") || { flunk "list on stock libvirt's program failed"; return 1; }
    STOCK_PROGS=$(progs "$UP_LCG")
    note_progs "$UP_LCG"
    note "stock libvirt $(dpkg-query -W -f '${Version}' libvirt-daemon): VM ${TAG}up started in $STOCK_FIRST s (a second VM $STOCK_WARM s); QEMU in $QLINE"
    note "stock program on …/libvirt: $(tr '\n' ' ' <<<"$STOCK_PROGS"); rules: $(tr '\n' ',' <<<"$STOCK_RULES")"
}

scenario_upgrade() {
    local before_pid after_pid t
    stock_vm || return 1
    before_pid=$(daemon_pid)
    t=$EPOCHREALTIME
    # shellcheck disable=SC2046 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold \
        $(cat "$SHARE/upgrade.list") >"$WORK/apt-upgrade.log" 2>&1 ||
        flunk "apt-get install of the rebuilt packages failed: $(tail -5 "$WORK/apt-upgrade.log" | tr '\n' ' ')" || return 1
    UPGRADE_S=$(secs "$t")
    local want
    want=$(head -n1 "$SHARE/upgrade.list")
    expect "${want%%=*} is not at ${want#*=} after the upgrade" \
        test "$(dpkg-query -W -f '${Version}' "${want%%=*}")" = "${want#*=}" || return 1
    wait_daemon || return 1
    after_pid=$(daemon_pid)
    expect "the packages did not restart libvirtd (pid $before_pid before and after)" \
        test "$after_pid" != "$before_pid" -a "$after_pid" != 0 || return 1
    expect "VM ${TAG}up is not running after the upgrade" \
        sh -c "virsh -c qemu:///system domstate ${TAG}up | grep -qx running" || return 1
    expect "VM ${TAG}up's rules changed with the upgrade: $(admin list "$UP_LCG" | tr '\n' ',')" \
        test "$(admin list "$UP_LCG")" = "$STOCK_RULES" || return 1
    new_loop || return 1
    LOOP1=$LOOP RULE1=$RULE NODE1=$LNODE
    hotplug "${TAG}up" "$LOOP1" "$RULE1" "$NODE1" || { REASON="after the upgrade: $REASON"; return 1; }
    expect "after the first hot-plug …/libvirt of ${TAG}up holds '$(progs "$UP_LCG" | tr '\n' ' ')', not the library's program alone" \
        only_ours "$UP_LCG" || return 1
    SUMMARY="apt-get install of $(wc -l <"$SHARE/upgrade.list") rebuilt packages ($UPGRADE_S s) restarted libvirtd (pid $before_pid -> $after_pid); VM ${TAG}up kept its $(grep -c . <<<"$STOCK_RULES") rules, hot-plug and unplug of $LOOP1 worked at once, and its program is now the library's alone"
}

scenario_placement() {
    vm_start "${TAG}b" || return 1
    PATCHED_FIRST=$START_S
    vm_start "${TAG}pw" || return 1
    PATCHED_WARM=$START_S
    virsh_ destroy "${TAG}pw" >/dev/null
    vm_cg "${TAG}b" || return 1
    B_LCG=$LCG B_SCOPE=$SCOPE B_QLINE=$QLINE
    note_progs "$B_LCG"
    note "patched libvirt: VM ${TAG}b started in $PATCHED_FIRST s (a second VM $PATCHED_WARM s); QEMU in $QLINE"
    expect "the scope $SCOPE is not directly under machine.slice" \
        test "$(dirname "$SCOPE")" = "$CG/machine.slice" || return 1
    expect "no device program on $B_LCG" test -n "$(progs "$B_LCG")" || return 1
    expect "$B_LCG holds '$(progs "$B_LCG" | tr '\n' ' ')', not exactly one program of the library" \
        only_ours "$B_LCG" || return 1
    expect "a device program on the scope itself: $(progs "$SCOPE" | tr '\n' ' ')" \
        test -z "$(progs "$SCOPE")" || return 1
    expect "a device program on machine.slice: $(progs "$CG/machine.slice" | tr '\n' ' ')" \
        test -z "$(progs "$CG/machine.slice")" || return 1
    SUMMARY="scope ${SCOPE#"$CG"/} under machine.slice; one program, the library's ($(progs "$B_LCG" | awk '{ print $1, $3 }')), on …scope/libvirt and none on the scope or machine.slice"
}

scenario_start_policy() {
    need_b || return 1
    local got want
    got=$(admin list "$B_LCG" | sort)
    want=$(expected_acl | sort -u)
    expect "list on …/libvirt is '$(tr '\n' ',' <<<"$got")', not libvirt's default ACL plus c 136:* rw '$(tr '\n' ',' <<<"$want")'" \
        test "$got" = "$want" || return 1
    expect "the patched start policy differs from stock libvirt's ($(tr '\n' ',' <<<"$STOCK_RULES"))" \
        test "$got" = "$(sort <<<"$STOCK_RULES")" || return 1
    SUMMARY="list on …/libvirt is libvirt's default ACL plus c 136:* rw, as stock libvirt's: $(tr '\n' ',' <<<"$got")"
}

# Depends on the observability work (effective list/check for a nested
# cgroup, API.md "check", "list", "The admin tool"): the path QEMU's
# /proc/PID/cgroup line names is …/libvirt/emulator, below the program.
scenario_start_policy_nested_path() {
    need_b || return 1
    local lib nested rule mm nd kernel
    lib=$(admin list "$B_LCG" | sort)
    nested=$(admin list "$B_QLINE" 2>"$WORK/nested.err" | sort) ||
        flunk "list '$B_QLINE' failed: $(cat "$WORK/nested.err")" || return 1
    expect "list '$B_QLINE' is '$(tr '\n' ',' <<<"$nested")', not what list on …/libvirt says '$(tr '\n' ',' <<<"$lib")'" \
        test "$nested" = "$lib" || return 1
    while read -r rule; do
        expect "check '$B_QLINE' '$rule' does not say allowed" admin check "$B_QLINE" "$rule" || return 1
    done <<<"$lib"
    # A device outside the list: the kernel denies it, check must too.
    new_loop || return 1
    mm=${RULE#b }
    nd=$LNODE
    kernel=$(probe "$B_LCG" "ar:$nd")
    local out rc=0
    out=$(admin check "$B_QLINE" "b ${mm% *} r" 2>&1) || rc=$?
    expect "check '$B_QLINE' 'b ${mm% *} r' printed '$out' (exit $rc), the kernel says $kernel" \
        test "$kernel" = EPERM -a "$rc" = 1 || return 1
    SUMMARY="list and check on '$B_QLINE' answer as on …/libvirt ($(grep -c . <<<"$lib") rules allowed, b ${mm% *} r denied as the kernel denies it)"
}

scenario_enforcement() {
    need_b || return 1
    local nul urnd out lmm
    nul=$(node c 1 3)
    urnd=$(node c 1 9)
    new_loop || return 1
    lmm=${RULE#b }
    out=$(probe "$B_LCG" "ar:$LNODE" "aw:$LNODE" "ar:$nul" "aw:$nul" "ar:$urnd")
    expect "probe in …/libvirt/emulator: '$out' for b ${lmm% *} r, w (outside the list) and c 1:3 r, w, c 1:9 r (inside), not 'EPERM EPERM ok ok ok'" \
        test "$out" = "EPERM EPERM ok ok ok" || return 1
    SUMMARY="a probe in …/libvirt/emulator (thread in the threaded cgroup) is denied b ${lmm% *} (EPERM) and allowed c 1:3 rw, c 1:9 r"
}

scenario_hotplug() {
    need_b && need_loop1 || return 1
    hotplug "${TAG}b" "$LOOP1" "$RULE1" "$NODE1" || return 1
    SUMMARY="attach-disk of $LOOP1 to ${TAG}b adds '$RULE1' and the probe reaches it; detach-disk removes it and the probe is denied"
}

scenario_reload_restart() {
    need_b || return 1
    local ids rules pid0
    ids=$(prog_ids "$B_LCG")
    rules=$(admin list "$B_LCG")
    pid0=$(daemon_pid)
    systemctl daemon-reload || { flunk "systemctl daemon-reload failed"; return 1; }
    expect "daemon-reload changed the program ids of …/libvirt ($ids -> $(prog_ids "$B_LCG"))" \
        test "$(prog_ids "$B_LCG")" = "$ids" || return 1
    timeout 120 systemctl restart libvirtd || { flunk "systemctl restart libvirtd failed"; return 1; }
    wait_daemon || return 1
    expect "libvirtd was not restarted (pid $pid0)" test "$(daemon_pid)" != "$pid0" || return 1
    expect "the restart changed the program ids of …/libvirt ($ids -> $(prog_ids "$B_LCG"))" \
        test "$(prog_ids "$B_LCG")" = "$ids" || return 1
    expect "the restart changed the rules" test "$(admin list "$B_LCG")" = "$rules" || return 1
    hotplug "${TAG}b" "$LOOP1" "$RULE1" "$NODE1" || { REASON="after the restart: $REASON"; return 1; }
    expect "the hot-plug after the restart changed the program ids ($ids -> $(prog_ids "$B_LCG"))" \
        test "$(prog_ids "$B_LCG")" = "$ids" || return 1
    SUMMARY="daemon-reload and restart of libvirtd (pid $pid0 -> $(daemon_pid)) with VMs running kept program $ids and the $(grep -c . <<<"$rules") rules; hot-plug works afterwards"
}

# An admin's DevicePolicy=closed with DeviceAllow=/dev/null on
# machine.slice: systemd attaches its own program (BPF_F_ALLOW_MULTI) at
# once. LOOP1 is plugged into VM b first, so the library's program allows
# it and systemd's does not.
SD_ON=
scenario_systemd_program() {
    local sd nul out
    need_b && need_loop1 || return 1
    virsh_ attach-disk "${TAG}b" "$LOOP1" sdb --targetbus usb --sourcetype block >"$WORK/attach" 2>&1 ||
        flunk "attach-disk $LOOP1 to ${TAG}b failed: $(tr '\n' ' ' <"$WORK/attach")" || return 1
    expect "'$RULE1' is not in the rules after the hot-plug" has_rule "$B_LCG" "$RULE1" || return 1
    expect "the probe is denied $RULE1 before systemd's policy" test "$(probe "$B_LCG" "ar:$NODE1")" = ok || return 1
    SD_ON=1
    systemctl set-property --runtime machine.slice DevicePolicy=closed "DeviceAllow=/dev/null rw" ||
        { flunk "systemctl set-property machine.slice DevicePolicy=closed failed"; return 1; }
    sd=$(progs "$CG/machine.slice")
    expect "systemd attached no program with BPF_F_ALLOW_MULTI to machine.slice ('$sd')" \
        grep -q ' multi ' <<<"$sd" || return 1
    SD_PROG=$(awk '{ print $1; exit }' <<<"$sd")
    nul=$(node c 1 3)
    out=$(probe "$B_LCG" "ar:$NODE1" "ar:$nul" "aw:$nul")
    expect "probe under both programs: '$out' for $RULE1 (ours allows, systemd's does not) and c 1:3 r, w (both allow), not 'EPERM ok ok'" \
        test "$out" = "EPERM ok ok" || return 1
    expect "…/libvirt's own program changed: $(progs "$B_LCG" | tr '\n' ' ')" only_ours "$B_LCG" || return 1
    SUMMARY="systemd's program $(awk '{ print $1, $3, "(" $2 ")" }' <<<"$sd") on machine.slice and the library's on …/libvirt both apply: $RULE1 (ours only) denied, c 1:3 rw (both) allowed"
}

# Depends on the observability work: check answers for every program the
# kernel runs, systemd's included (API.md "check").
scenario_systemd_check() {
    [ -n "$SD_ON" ] || { flunk "systemd's policy is not in place (the scenario before failed)"; return 1; }
    local mm=${RULE1#b } out rc
    mm=${mm% *}
    for path in "$B_LCG" "$B_QLINE"; do
        rc=0
        out=$(admin check "$path" "b $mm r" 2>&1) || rc=$?
        expect "check '$path' 'b $mm r' printed '$out' (exit $rc), the kernel denies it (systemd's program)" \
            test "$rc" = 1 || return 1
        rc=0
        out=$(admin check "$path" "c 1:3 rw" 2>&1) || rc=$?
        expect "check '$path' 'c 1:3 rw' printed '$out' (exit $rc), the kernel allows it" \
            test "$rc" = 0 || return 1
    done
    SUMMARY="check on …/libvirt and on QEMU's /proc/PID/cgroup line says denied for b $mm r and allowed for c 1:3 rw, as the kernel does under both programs"
}

systemd_program_off() {
    [ -n "$SD_ON" ] || return 0
    systemctl set-property --runtime machine.slice DevicePolicy=auto DeviceAllow= || true
    virsh_ detach-disk "${TAG}b" sdb >/dev/null 2>&1 || true
    SD_ON=
}

# The library's error for a foreign program: systemd's own (from a
# transient unit) is attached in place of the library's on VM b's
# …/libvirt; the next attach-disk fails, and libvirtd logs the library's
# message to the journal.
scenario_logging() {
    need_b || return 1
    local unit=${TAG}-foreign id since out
    systemd-run --quiet --unit="$unit" -p DevicePolicy=closed -p "DeviceAllow=/dev/null rw" sleep 600 ||
        { flunk "systemd-run of a unit with DevicePolicy=closed failed"; return 1; }
    local i
    for i in $(seq 100); do
        id=$(progs "$CG/system.slice/$unit.service" | awk '{ print $1; exit }')
        [ -z "$id" ] || break
        sleep 0.2
    done
    [ -n "$id" ] || { flunk "systemd attached no program to $unit.service"; return 1; }
    bpftool cgroup attach "$B_LCG" device id "$id" ||
        { systemctl stop "$unit"; flunk "bpftool cgroup attach of program $id to $B_LCG failed"; return 1; }
    since=$(date '+%Y-%m-%d %H:%M:%S')
    sleep 1
    out=$(virsh_ attach-disk "${TAG}b" "$LOOP1" sdb --targetbus usb --sourcetype block 2>&1) && {
        systemctl stop "$unit"; flunk "attach-disk succeeded next to a foreign program"; return 1; }
    systemctl stop "$unit" >/dev/null 2>&1
    sleep 1
    local j
    j=$(journalctl -u libvirtd --since "$since" --no-pager -o cat)
    expect "journalctl -u libvirtd has no error naming $B_LCG since the failed attach-disk ('$out'); it has: $(tail -5 <<<"$j" | tr '\n' ' ')" \
        grep -qF "$B_LCG" <<<"$j" || return 1
    expect "the journal's error is not the library's: $(grep -F "$B_LCG" <<<"$j" | head -2)" \
        grep -E -q "device program this library did not attach|is no longer attached|does not know" <<<"$j" || return 1
    SUMMARY="attach-disk next to a foreign program failed; journalctl -u libvirtd: $(grep -F "$B_LCG" <<<"$j" | head -1 | cut -c1-240)"
}

# 10 VMs started, hot-plugged and destroyed concurrently; then no scope,
# no program and libvirtd's fds back at the baseline.
scenario_load_cleanup() {
    local base i pids=() bad=0 t alive=() id
    virsh_ destroy "${TAG}b" >/dev/null 2>&1
    virsh_ destroy "${TAG}up" >/dev/null 2>&1
    # The baseline once the two VMs' clean-up has settled.
    base=$(fds)
    for i in $(seq 10); do
        sleep 1
        [ "$(fds)" = "$base" ] && break
        base=$(fds)
    done
    local loops=() rules=() nodes=()
    for i in $(seq 0 9); do
        new_loop || return 1
        loops+=("$LOOP") rules+=("$RULE") nodes+=("$LNODE")
    done
    t=$EPOCHREALTIME
    for i in $(seq 0 9); do
        (
            REASON=
            vm_start "${TAG}c$i" && hotplug "${TAG}c$i" "${loops[$i]}" "${rules[$i]}" "${nodes[$i]}" &&
                { vm_cg "${TAG}c$i"; echo "$SCOPE" >"$WORK/c$i.scope"; note_progs "$LCG"; } &&
                virsh_ destroy "${TAG}c$i" >/dev/null || { echo "${TAG}c$i: $REASON"; exit 1; }
        ) >"$WORK/c$i.out" 2>&1 &
        pids+=($!)
    done
    for i in $(seq 0 9); do
        wait "${pids[$i]}" || { bad=$((bad + 1)); note "$(cat "$WORK/c$i.out")"; }
    done
    CONC_S=$(secs "$t")
    [ "$bad" = 0 ] || { flunk "$bad of 10 concurrent VMs failed ($CONC_S s)"; return 1; }
    local left
    left=$(find "$CG/machine.slice" -maxdepth 1 -name "machine-qemu*$TAG*")
    for i in $(seq 50); do
        [ -n "$left" ] || break
        sleep 0.2
        left=$(find "$CG/machine.slice" -maxdepth 1 -name "machine-qemu*$TAG*")
    done
    expect "scopes left after destroy: $left" test -z "$left" || return 1
    for id in $(sort -un "$WORK/progids"); do
        bpftool prog show id "$id" >/dev/null 2>&1 && alive+=("$id")
    done
    expect "device programs left: ${alive[*]}" test ${#alive[@]} = 0 || return 1
    for i in $(seq 50); do [ "$(fds)" = "$base" ] && break; sleep 0.2; done
    expect "libvirtd's fds went $base -> $(fds)" test "$(fds)" = "$base" || return 1
    SUMMARY="10 VMs started, hot-plugged, unplugged and destroyed concurrently in $CONC_S s; no scope and none of the $(sort -un "$WORK/progids" | grep -c .) programs seen is left; libvirtd's fds $base -> $(fds)"
}

# For the reboot: a persistent VM with autostart, started now too.
define_autostart() {
    vm_xml "${TAG}rb" >"$WORK/rb.xml"
    virsh_ define "$WORK/rb.xml" >/dev/null && virsh_ autostart "${TAG}rb" >/dev/null &&
        virsh_ start "${TAG}rb" >/dev/null || { flunk "define/autostart/start of ${TAG}rb failed"; return 1; }
    vm_cg "${TAG}rb" && prog_ids "$LCG" >"$STATE/rb.prog1"
    note "boot 1 numbers: VM start stock $STOCK_FIRST s (second $STOCK_WARM s), patched $PATCHED_FIRST s (second $PATCHED_WARM s); apt upgrade $UPGRADE_S s; 10 concurrent VMs ${CONC_S:-?} s"
    {
        echo "stock_first=$STOCK_FIRST stock_warm=$STOCK_WARM patched_first=$PATCHED_FIRST patched_warm=$PATCHED_WARM"
        echo "upgrade=$UPGRADE_S concurrent=${CONC_S:-?}"
    } >"$STATE/numbers"
}

# ====================================================== boot 2: scenarios
scenario_reboot() {
    local i st out nul
    for i in $(seq 300); do
        st=$(timeout 30 virsh -c qemu:///system domstate "${TAG}rb" 2>/dev/null) && [ "$st" = running ] && break
        sleep 1
    done
    expect "autostarted VM ${TAG}rb is '$st' 300 s after the guest's unit started" test "$st" = running || return 1
    vm_cg "${TAG}rb" || return 1
    RB_LCG=$LCG
    expect "…/libvirt of ${TAG}rb holds '$(progs "$LCG" | tr '\n' ' ')', not the library's program alone" \
        only_ours "$LCG" || return 1
    expect "the rules of ${TAG}rb are '$(admin list "$LCG" | tr '\n' ',')', not libvirt's default ACL plus c 136:* rw" \
        test "$(admin list "$LCG" | sort)" = "$(expected_acl | sort -u)" || return 1
    new_loop || return 1
    LOOP2=$LOOP RULE2=$RULE NODE2=$LNODE
    nul=$(node c 1 3)
    out=$(probe "$LCG" "ar:$LNODE" "aw:$nul")
    expect "probe: '$out' for $RULE (outside) and c 1:3 w (inside), not 'EPERM ok'" test "$out" = "EPERM ok" || return 1
    SUMMARY="after the guest rebooted, ${TAG}rb was autostarted on the library's program $(prog_ids "$LCG") (boot 1: $(cat "$STATE/rb.prog1" 2>/dev/null)) with libvirt's default ACL plus c 136:* rw, enforced"
}

# Back to Debian's packages as the documentation says: stop the daemon,
# to-libvirt on each VM's …scope/libvirt, then apt installs the stock
# versions (its scripts start libvirtd again).
scenario_rollback() {
    local cg t n=0
    [ -n "$RB_LCG" ] || { flunk "VM ${TAG}rb is not running (see reboot)"; return 1; }
    [ -n "${LOOP2:-}" ] || { new_loop || return 1; LOOP2=$LOOP RULE2=$RULE NODE2=$LNODE; }
    systemctl stop libvirtd.service libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket ||
        { flunk "systemctl stop libvirtd failed"; return 1; }
    for cg in "$CG"/machine.slice/machine-qemu*.scope/libvirt; do
        [ -d "$cg" ] || continue
        admin to-libvirt "$cg" >"$WORK/to-libvirt" 2>&1 ||
            flunk "to-libvirt $cg failed: $(cat "$WORK/to-libvirt")" || return 1
        n=$((n + 1))
    done
    expect "after to-libvirt …/libvirt of ${TAG}rb still has the library's program" \
        test -z "$(progs "$RB_LCG" | awk '$3 ~ /^(vcg2dev_f[0-9]+|vircgroup_v2dev)$/')" || return 1
    t=$EPOCHREALTIME
    # shellcheck disable=SC2046 # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --allow-downgrades -o Dpkg::Options::=--force-confold \
        $(cat "$SHARE/stock.list") >"$WORK/apt-rollback.log" 2>&1 ||
        flunk "apt-get install of the stock packages failed: $(tail -5 "$WORK/apt-rollback.log" | tr '\n' ' ')" || return 1
    local want
    want=$(head -n1 "$SHARE/stock.list")
    expect "${want%%=*} is not back at ${want#*=}" \
        test "$(dpkg-query -W -f '${Version}' "${want%%=*}")" = "${want#*=}" || return 1
    systemctl start libvirtd.socket libvirtd-ro.socket libvirtd-admin.socket libvirtd.service ||
        { flunk "systemctl start libvirtd failed"; return 1; }
    wait_daemon || return 1
    hotplug "${TAG}rb" "$LOOP2" "$RULE2" "$NODE2" || { REASON="after the rollback: $REASON"; return 1; }
    SUMMARY="libvirtd stopped, to-libvirt on $n …scope/libvirt cgroup(s), apt-get install of $(wc -l <"$SHARE/stock.list") stock packages ($(secs "$t") s): stock libvirt hot-plugs and unplugs $LOOP2 on ${TAG}rb"
}

# ---------------------------------------------------------------- cleanup
cleanup() {
    local vm d
    systemd_program_off
    systemctl stop "${TAG}-foreign" >/dev/null 2>&1
    for vm in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep "^$TAG"); do
        [ "$(cat "$SHARE/boot")" = 1 ] && [ "$vm" = "${TAG}rb" ] && continue
        timeout 60 virsh -c qemu:///system destroy "$vm" >/dev/null 2>&1
        timeout 60 virsh -c qemu:///system undefine "$vm" >/dev/null 2>&1
    done
    for d in "${LOOPS[@]}"; do losetup -d "$d" 2>/dev/null; done
    rm -rf "$WORK"
}

# /dev/kvm (from -cpu max) appears when kvm_intel or kvm_amd loads, late
# in a boot: loaded now, and listed in modules-load.d for the second boot,
# so that every VM starts with the same nodes present (libvirt allows the
# ACL's nodes that exist at the start).
kvm_early() {
    local m
    for m in kvm_intel kvm_amd; do
        modprobe "$m" 2>/dev/null && echo "$m"
    done >/etc/modules-load.d/vcg2-kvm.conf
    udevadm settle --timeout=60 || true
}

boot_info() {
    note "boot $(cat "$SHARE/boot"): $(uname -r); guest.sh started at $(cut -d' ' -f1 /proc/uptime) s of uptime; /dev/kvm $(test -c /dev/kvm && echo present || echo absent) ($(tr '\n' ' ' </etc/modules-load.d/vcg2-kvm.conf 2>/dev/null))"
    note "$(systemctl is-enabled libvirtd.service) libvirtd.service, $(systemctl is-active libvirtd.socket) libvirtd.socket, $(systemctl is-active systemd-machined) systemd-machined, PID 1 $(cat /proc/1/comm)"
}

main() {
    trap cleanup EXIT
    [ "$(cat "$SHARE/boot")" != 1 ] || kvm_early
    boot_info
    case $(cat "$SHARE/boot") in
        1)
            install_tool || { echo "FAIL: setup: the admin tool did not install"; exit 1; }
            assertion "upgrade" scenario_upgrade
            assertion "placement" scenario_placement
            assertion "start policy" scenario_start_policy
            assertion "start policy: list and check on the path from /proc/QEMUPID/cgroup answer the same" \
                scenario_start_policy_nested_path
            assertion "enforcement" scenario_enforcement
            assertion "hot-plug" scenario_hotplug
            assertion "reload and restart" scenario_reload_restart
            assertion "systemd's program" scenario_systemd_program
            assertion "systemd's program: the library's check says what the kernel does" \
                scenario_systemd_check
            systemd_program_off
            assertion "logging" scenario_logging
            assertion "load and clean-up" scenario_load_cleanup
            define_autostart || echo "FAIL: setup for the reboot: $REASON"
            ;;
        2)
            assertion "reboot" scenario_reboot
            assertion "rollback" scenario_rollback
            ;;
    esac
    echo "boot $(cat "$SHARE/boot"): $passed passed, $failed failed"
}

main "$@"
