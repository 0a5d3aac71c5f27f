#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The kernel matrix: the privileged tests on the host's kernel and inside
# Debian's own kernels, booted under QEMU (TCG: no KVM needed): bullseye's
# 5.10, bookworm's 6.1, trixie's 6.12, trixie-backports' 6.17 and the
# newest Debian ships (trixie-backports' or sid's). The host, 5.10 and the
# newest run the whole suite, the others all but its three long sweeps
# (full_rows and subset_skip below say which and why).
#
# The tests are every cargo integration test binary but the header check
# (a source check), built here, and the Meson build's C harness, run as
# root with CI=true (a privileged test that cannot run fails). A guest
# boots the kernel with a small initramfs made here: busybox, bash, the
# test binaries at their host paths and the libraries they link, with
# proc, sysfs, devtmpfs, cgroup2, bpf and a tmpfs TMPDIR mounted, and the
# kernel's default RLIMIT_MEMLOCK (never raised). Everything is in RAM, so
# a process start costs what it costs under TCG and no more (over 9p it
# was about ten times that). The logs come back on a second serial port.
#
# Prints one row per kernel and the failing tests' output; exits 1 if a
# test failed or a kernel did not boot or finish.
#
# Usage: scripts/kernel-matrix.sh [ROW]...   (no argument: every row)
# Rows: host; bullseye, bookworm, trixie (their linux-image-amd64: 5.10,
# 6.1, 6.12); backports-6.17 (trixie-backports' newest 6.17); newest (the
# newer of trixie-backports' and sid's linux-image-amd64).
# Environment:
#   KMATRIX_CACHE        kernels, apt lists, busybox, logs
#                        ($VCG2_CACHE/kernels; VCG2_CACHE is
#                        /var/cache/vircgroup-v2-devices unless set)
#   KMATRIX_MESON_BUILD  a compiled Meson build directory whose C harness
#                        runs (else one is set up in target/kernel-matrix)
#   VCG2_MIRROR          the Debian archive (else the host's, from its apt
#                        sources; KMATRIX_MIRROR is the same)
#   VCG2_APT_REFRESH=1   refresh the apt lists now (else after 30 days;
#                        KMATRIX_REFRESH is the same)
#   KMATRIX_FULL         rows that run the whole suite beside host, bullseye
#                        and newest ("backports-6.17 trixie"), or all
#   KMATRIX_ONLY         run only these tests ("rust-kernel c-api"), for
#                        iterations
#   KMATRIX_JOBS         guests at once (3)
#   KMATRIX_TIMEOUT      seconds one guest may take in all (2400)
#   ORACLE_CASES, ORACLE_SEED, RUST_BACKTRACE reach the tests in the guests.
#
# Nothing is installed on the host but qemu-system-x86 and binutils when
# they are missing: the kernels (from a private apt configuration, never
# the host's sources, unpacked and never installed) and busybox live in the
# cache, keyed by package and version (the candidate apt chooses), so a
# rerun downloads nothing. The private apt configurations and the
# installs are scripts/lib/common.sh's.
set -Eeuo pipefail
trap 'echo "kernel-matrix: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

case $0 in */*) repo=${0%/*}/.. ;; *) repo=.. ;; esac
repo=$(cd "$repo" && pwd) # no dirname: the guest runs this before its PATH is set
self=$repo/scripts/kernel-matrix.sh
passed_env=(ORACLE_CASES ORACLE_SEED V1_CASES V1_SEED V1N_CASES EFFECTIVE_CASES VCG2_KILLS
            RUST_BACKTRACE)
# Under TCG a test runs 15 to 90 times slower than on the host. The
# guests run the oracles (tests/oracle.rs, tests/v1.rs flat and nested,
# tests/effective.rs) on their first 200 cases and the killed-writer
# attack 20 times (ORACLE_CASES, V1_CASES, V1N_CASES, EFFECTIVE_CASES,
# VCG2_KILLS override; the host's row runs their defaults, 1,000 cases and
# 100 kills) and skip what has no kernel in it (each TEST::NAME here runs
# in the host's row).
guest_cases=200
guest_kills=20
guest_skip=(
    oracle::model_and_interpreter_agree_without_the_kernel # 2,000 cases, userspace only
)
# The rows that run the whole suite: the host, the oldest kernel and the
# newest. The others (6.1, 6.12, 6.17) run all but the long sweeps below
# unless KMATRIX_FULL names them: each sweep takes 5 to 17 minutes in a guest, and
# what they stress (fault injection at every bpf(2) call, thousands of
# random rules against a model and against cgroup v1) reaches the kernel
# through the same commands and map types on every kernel from 5.11 on,
# which the newest row covers (and the oldest row 5.10's fallbacks).
# Every test of the attach, replace, query and detach paths, upgrades,
# rollback, daemons, locked memory and the C harness runs on every row.
full_rows=(host bullseye newest)
subset_skip=(rust-failclosed rust-oracle rust-v1)
# What the guest needs built into the kernel (no modules are loaded).
kernel_config=(BLK_DEV_INITRD DEVTMPFS TMPFS SERIAL_8250_CONSOLE BPF_SYSCALL CGROUPS CGROUP_BPF)

# ---------------------------------------------------------------------------
# Running the tests: on the host, and in a guest.

# Runs each line of DIR/tests.list ("NAME<TAB>TIMEOUT<TAB>COMMAND") with
# CI=true from the repository, into DIR/NAME.log, and its exit status and
# seconds into DIR/NAME.rc, then calls "$after_test NAME" if set. DIR/kernel
# gets the kernel's release and version and RLIMIT_MEMLOCK (soft, hard).
after_test=
run_tests() {
    local dir=$1 name tmo cmd t0 rc
    {
        uname -r
        uname -v
        echo "memlock $(ulimit -Sl) $(ulimit -Hl)"
        echo "uptime $(cut -d' ' -f1 /proc/uptime)"
    } >"$dir/kernel"
    cd "$repo"
    while IFS=$'\t' read -r name tmo cmd; do
        t0=$EPOCHREALTIME
        rc=0
        CI=true timeout -k 10 "$tmo" sh -c "$cmd" </dev/null >"$dir/$name.log" 2>&1 || rc=$?
        echo "$rc $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" >"$dir/$name.rc"
        [ -z "$after_test" ] || "$after_test" "$name"
    done <"$dir/tests.list"
}

# The guest's init (PID 1, root), from the initramfs: /kmatrix holds
# tests.list and env; each result file goes to the host through ttyS1,
# base64 between "==> NAME" and "<== NAME" lines, "done" last.
ship() {
    local f
    for f in "$@"; do
        echo "==> ${f##*/}"
        base64 "$f"
        echo "<== ${f##*/}"
    done >/dev/ttyS1
}
ship_test() { ship "/kmatrix/$1.log" "/kmatrix/$1.rc"; }
guest() {
    export PATH=/bin:/usr/bin HOME=/ TMPDIR=/tmp
    trap 'poweroff -f' EXIT
    /bin/busybox --install -s /bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev
    # As on a hybrid host: cgroup2 beside cgroup v1's devices controller.
    mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup
    mkdir /sys/fs/cgroup/unified /sys/fs/cgroup/devices
    mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
    mount -t cgroup -o devices devices /sys/fs/cgroup/devices
    mount -t bpf bpf /sys/fs/bpf
    # A tmpfs TMPDIR, unless the repository is under /tmp (a clone there):
    # the initramfs's own /tmp, in RAM too, then.
    case $repo/ in
        /tmp/*) chmod 1777 /tmp ;;
        *) mount -t tmpfs -o mode=1777 tmpfs /tmp ;;
    esac
    # /run as on a host: kernels without cgroup.kill (before 5.14) have
    # the library's lock files in /run/vircgroup-v2-devices.
    mkdir -p /run
    mount -t tmpfs -o mode=755 tmpfs /run
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs tmpfs /dev/shm
    ln -sf /proc/self/fd /dev/fd
    # shellcheck disable=SC1091
    . /kmatrix/env
    # The row's list: kmatrix=full or kmatrix=subset on the command line.
    local list
    list=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^kmatrix=//p')
    cp "/kmatrix/${list:-full}.list" /kmatrix/tests.list
    echo "kernel-matrix: $(uname -r), memlock $(ulimit -Sl) KiB, running the tests"
    after_test=ship_test
    run_tests /kmatrix
    dmesg >/kmatrix/dmesg
    touch /kmatrix/done
    ship /kmatrix/kernel /kmatrix/dmesg /kmatrix/done
}

if [ "${1:-}" = --guest ]; then
    guest
    exit 0
fi

# ---------------------------------------------------------------------------
# Host side.

all_rows=(host bullseye bookworm trixie backports-6.17 newest)
[ $# -gt 0 ] || set -- "${all_rows[@]}"
rows=("$@")
for row in "${rows[@]}"; do
    case " ${all_rows[*]} " in
        *" $row "*) ;;
        *) echo "kernel-matrix: unknown row '$row' (expected one of: ${all_rows[*]})" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" != 0 ]; then
    echo "kernel-matrix: needs root (the tests load BPF programs and create cgroups)" >&2
    exit 1
fi

# shellcheck source=scripts/lib/common.sh
. "$repo/scripts/lib/common.sh"
cache=${KMATRIX_CACHE:-$CACHE_ROOT/kernels}
VCG2_MIRROR=${VCG2_MIRROR:-${KMATRIX_MIRROR:-}}
VCG2_APT_REFRESH=${VCG2_APT_REFRESH:-${KMATRIX_REFRESH:-}}

apt_install qemu-system-x86 binutils
lock_file "$cache/.lock" 3600

secs() { since "$1" 0; }

# The private apt configuration of SUITE's binary packages (apt_dir).
apt_dir=
private_apt() {
    apt_dir=$cache/apt/$1
    apt_private_init "$apt_dir" "deb $1"
}

# The kernel package of ROW in a private apt configuration: sets apt_dir,
# kpkg (linux-image-ABI-amd64) and kpkg_ver (its candidate version).
#   bullseye, bookworm, trixie: what the suite's linux-image-amd64 depends on;
#   backports-6.17: trixie-backports' newest linux-image-6.17.*-amd64 (its
#     6.17 and later kernels run the new cgroup attach code, and 6.17 to 7.1
#     write 8 bytes past a BPF_PROG_QUERY attr);
#   newest: the newer of trixie-backports' and sid's linux-image-amd64's.
resolve_kernel() {
    local row=$1 suite pkg ver best_dir='' best_pkg='' best_ver=''
    case $row in
        bullseye | bookworm | trixie) set -- "$row" ;;
        backports-6.17)
            private_apt trixie-backports
            kpkg=
            while read -r pkg; do
                ver=$(apt_private_candidate "$apt_dir" "$pkg")
                [ -z "$ver" ] || { kpkg=$pkg kpkg_ver=$ver; }
            done < <(apt_private_packages "$apt_dir" '^linux-image-6\.17\.[0-9.]+\+[a-z0-9]+-amd64$' | sort -V)
            [ -n "$kpkg" ] || die "trixie-backports has no linux-image-6.17.*-amd64 any more"
            return
            ;;
        newest) set -- trixie-backports sid ;;
    esac
    for suite in "$@"; do
        private_apt "$suite"
        pkg=$(apt_private_cache "$apt_dir" depends linux-image-amd64 | awk '/^  Depends: linux-image-/ { print $2; exit }')
        [ -n "$pkg" ] || die "$suite's linux-image-amd64 depends on no linux-image-*"
        ver=$(apt_private_candidate "$apt_dir" "$pkg")
        [ -n "$ver" ] || die "$suite has no $pkg"
        if [ -z "$best_ver" ] || dpkg --compare-versions "$ver" gt "$best_ver"; then
            best_dir=$apt_dir best_pkg=$pkg best_ver=$ver
        fi
    done
    apt_dir=$best_dir kpkg=$best_pkg kpkg_ver=$best_ver
}

# Sets kimg, kver and kpkg ("PACKAGE VERSION") for ROW's kernel, unpacked
# under $cache/ROW/PACKAGE_VERSION: the kernel and its config, not its
# modules (the guest loads none). Up to 6.x linux-image-ABI-amd64 holds
# them (boot/); from 7.x it is empty and depends on linux-binary-ABI-amd64
# (usr/lib/modules/ABI/vmlinuz) and linux-base-ABI-amd64 (.../config).
kernel() {
    local row=$1 dir deb pkgs opt config
    resolve_kernel "$row"
    dir=$cache/$row/${kpkg}_$kpkg_ver
    if [ ! -e "$dir/ready" ]; then
        say "fetching $kpkg $kpkg_ver ($row)"
        rm -rf "${cache:?}/$row"
        mapfile -t pkgs < <(apt_private_cache "$apt_dir" depends "$kpkg" |
            awk '/^  Depends: linux-(binary|base)-[0-9]/ { print $2 }')
        apt_private_download "$apt_dir" "$dir/debs" "$kpkg=$kpkg_ver" "${pkgs[@]/%/=$kpkg_ver}"
        mkdir -p "$dir/root"
        for deb in "$dir"/debs/*.deb; do
            dpkg-deb --fsys-tarfile "$deb" |
                tar -x -C "$dir/root" --wildcards --exclude='*/kernel/*' --exclude='./usr/share/*'
        done
        rm -rf "$dir/debs"
        touch "$dir/ready"
    fi
    kimg=$(find "$dir/root/boot" "$dir/root/usr/lib/modules" -maxdepth 2 \( -name 'vmlinuz-*' -o -name vmlinuz \) 2>/dev/null | head -n1 || true)
    [ -n "$kimg" ] || die "$kpkg $kpkg_ver: no boot/vmlinuz-* nor usr/lib/modules/*/vmlinuz in $dir/root"
    case $kimg in
        */boot/vmlinuz-*) kver=${kimg##*/vmlinuz-} config=$dir/root/boot/config-$kver ;;
        *) kver=${kimg%/vmlinuz} kver=${kver##*/} config=${kimg%/vmlinuz}/config ;;
    esac
    [ -f "$config" ] || die "$kpkg $kpkg_ver: no kernel config ($config)"
    kpkg="$kpkg $kpkg_ver"
    for opt in "${kernel_config[@]}"; do
        grep -q "^CONFIG_$opt=y" "$config" || die "$kpkg lacks CONFIG_$opt=y, which the guest needs"
    done
}

# A static busybox from Debian (bookworm's) for the initramfs.
busybox=
fetch_busybox() {
    local ver dir
    private_apt bookworm
    ver=$(apt_private_candidate "$apt_dir" busybox-static)
    dir=$cache/busybox/$ver
    if [ ! -x "$dir/root/bin/busybox" ]; then
        rm -rf "$cache/busybox"
        apt_private_unpack "$apt_dir" "$dir/root" "busybox-static=$ver" ./bin/busybox
    fi
    busybox=$dir/root/bin/busybox
}

# Builds the tests and writes the lists of the host's row and of the
# guests (tests_list, guest_list; subset_list: guest_list less
# subset_skip), one test a line: NAME<TAB>TIMEOUT<TAB>COMMAND. Sets elves: every executable and library
# the commands need.
tests_list=
guest_list=
subset_list=
elves=()
old_builds=
build() {
    local features=() json meson_build=${KMATRIX_MESON_BUILD:-} work=$repo/target/kernel-matrix
    mkdir -p "$work"
    if cargo metadata --no-deps --format-version 1 --manifest-path "$repo/Cargo.toml" |
        python3 -c 'import json,sys; sys.exit("testing" not in json.load(sys.stdin)["packages"][0]["features"])'; then
        features=(--features testing)
    fi
    echo "== kernel-matrix: cargo test --no-run --locked ${features[*]}"
    json=$work/cargo.json
    (cd "$repo" && cargo test --no-run --locked "${features[@]}" --message-format=json-render-diagnostics >"$json")
    if [ -z "$meson_build" ]; then
        meson_build=$work/meson
        echo "== kernel-matrix: meson build of the C harness in $meson_build"
        [ -f "$meson_build/build.ninja" ] || meson setup "$meson_build" "$repo" >"$work/meson.log"
        meson compile -C "$meson_build" >>"$work/meson.log" 2>&1 || { cat "$work/meson.log"; exit 1; }
    fi
    meson_build=$(cd "$meson_build" && pwd)
    # tests/upgrade/releases.rs asks scripts/old-builds.sh for the earlier formats'
    # libraries, which it builds with git and cargo: here, so that the
    # guests get its answer and the libraries (make_initramfs).
    old_builds=
    if [ -x "$repo/scripts/old-builds.sh" ]; then
        echo "== kernel-matrix: scripts/old-builds.sh"
        old_builds=$("$repo/scripts/old-builds.sh" "$repo")
    fi
    tests_list=$work/tests.list
    guest_list=$work/guest.list
    # Every integration test binary but header.rs (a source check, no
    # kernel in it); the C harness (TAP) with Meson's environment and ten
    # times its timeout. Then the files to put in the initramfs.
    python3 - "$json" "$meson_build" "$tests_list" "$guest_list" "${guest_skip[@]}" >"$work/elves" <<'EOF'
import json, os, shlex, subprocess, sys
cargo, meson, out, guest_out, *skips = sys.argv[1:]
tests, elves = [], set()
for line in open(cargo):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if t["kind"] == ["bin"]:
        elves.add(m["executable"])  # the tests run them (CARGO_BIN_EXE_*)
    elif t["kind"] == ["test"] and t["name"] != "header":
        tests.append((f"rust-{t['name']}", 1800, [m["executable"]]))
        elves.add(m["executable"])
for t in json.loads(subprocess.check_output(["meson", "introspect", "--tests", meson])):
    if t["protocol"] == "tap" and any(s.endswith(":c") for s in t["suite"]):
        env = [f"{k}={v}" for k, v in t["env"].items()]
        tests.append((f"c-{t['name']}", t["timeout"] * 10, ["env", *env, *t["cmd"]]))
        elves.add(t["cmd"][0])
for f in os.listdir(meson):
    if f.startswith("libvircgroup_v2_devices.so"):
        elves.add(os.path.join(meson, f))
with open(out, "w") as host, open(guest_out, "w") as guest:
    for name, timeout, cmd in tests:
        print(f"{name}\t{timeout}\t{shlex.join(cmd)}", file=host)
        for skip in skips:
            binary, test = skip.split("::", 1)
            if name == f"rust-{binary}":
                cmd = [*cmd, "--skip", test, "--exact"]
        print(f"{name}\t{timeout}\t{shlex.join(cmd)}", file=guest)
print("\n".join(sorted(elves)))
EOF
    if [ -n "${KMATRIX_ONLY:-}" ]; then
        local l
        for l in "$tests_list" "$guest_list"; do
            awk -F'\t' -v only=" $KMATRIX_ONLY " 'index(only, " " $1 " ")' "$l" >"$l.only"
            mv "$l.only" "$l"
        done
    fi
    subset_list=$work/subset.list
    printf '%s\n' "${subset_skip[@]}" | awk -F'\t' 'NR == FNR { skip[$1] = 1; next } !($1 in skip)' - "$guest_list" >"$subset_list"
    mapfile -t elves <"$work/elves"
    # Programs the tests run from PATH that busybox lacks.
    elves+=("$(command -v flock)")
    [ -z "$old_builds" ] || mapfile -t -O ${#elves[@]} elves < <(echo "$old_builds" | cut -d' ' -f2-)
}

# The initramfs (uncompressed cpio): busybox, bash, this script as /init's
# body, every file in elves at its own path (debug info stripped) and the
# shared libraries they load, at the paths ldd names.
initramfs=
guest_note=
make_initramfs() {
    local root=$repo/target/kernel-matrix/initramfs f lib
    initramfs=$repo/target/kernel-matrix/initramfs.cpio
    rm -rf "$root"
    mkdir -p "$root"/{bin,dev,proc,sys,tmp,kmatrix}
    cp "$busybox" "$root/bin/busybox"
    cp "$(command -v bash)" "$root/bin/bash"
    printf '#!/bin/bash\nexec /bin/bash %q --guest\n' "$self" >"$root/init"
    chmod +x "$root/init"
    mkdir -p "$root$(dirname "$self")"
    cp "$self" "$root$self"
    for f in "${elves[@]}"; do
        mkdir -p "$root$(dirname "$f")"
        if [ -L "$f" ]; then
            cp -P "$f" "$root$f"
        else
            objcopy --strip-debug "$f" "$root$f"
        fi
    done
    for f in "$(command -v bash)" "${elves[@]}"; do
        [ -L "$f" ] && continue
        ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/.* \(0x/ { print $1 }'
    done | sort -u | while read -r lib; do
        case $lib in */libvircgroup_v2_devices.so*) continue ;; esac # in elves
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    if [ -n "$old_builds" ]; then
        printf '#!/bin/sh\n# old-builds.sh as the host answered\ncat <<"EOF"\n%s\nEOF\n' "$old_builds" \
            >"$root$repo/scripts/old-builds.sh"
        chmod +x "$root$repo/scripts/old-builds.sh"
    fi
    cp "$guest_list" "$root/kmatrix/full.list"
    cp "$subset_list" "$root/kmatrix/subset.list"
    echo "export ORACLE_CASES=$guest_cases V1_CASES=$guest_cases V1N_CASES=$guest_cases" \
        "EFFECTIVE_CASES=$guest_cases VCG2_KILLS=$guest_kills" >"$root/kmatrix/env"
    local v
    for v in "${passed_env[@]}"; do
        [ -z "${!v:-}" ] || printf 'export %s=%q\n' "$v" "${!v}" >>"$root/kmatrix/env"
    done
    guest_note="In the guests: ORACLE_CASES=${ORACLE_CASES:-$guest_cases} V1_CASES=${V1_CASES:-$guest_cases} V1N_CASES=${V1N_CASES:-$guest_cases} EFFECTIVE_CASES=${EFFECTIVE_CASES:-$guest_cases} VCG2_KILLS=${VCG2_KILLS:-$guest_kills}; not run (they run in the host's row): ${guest_skip[*]}"
    (cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null) >"$initramfs"
}

guest_pids=()
# How many guests still run (bash reaps its children as they end).
running_guests() {
    local pid n=0
    for pid in "${guest_pids[@]}"; do
        if kill -0 "$pid" 2>/dev/null; then n=$((n + 1)); fi
    done
    echo "$n"
}
stop_guests() {
    local pid
    for pid in "${guest_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
}
trap stop_guests EXIT
trap 'stop_guests; exit 130' INT
trap 'stop_guests; exit 143' TERM

# Starts QEMU on kimg with the initramfs and LIST (full or subset), in
# the background: the console
# goes to DIR/console.log and the results to DIR/results. timeout leads
# its own process group, which the traps end if this script is stopped;
# -no-reboot: a panic (panic=-1) ends QEMU too. no_timer_check: on a
# loaded host the emulated timer is late for the kernel's boot-time check
# of the IO-APIC timer, and 5.10 then panics ("IO-APIC + timer doesn't
# work!").
start_guest() {
    local dir=$1 list=$2
    echo "$EPOCHREALTIME" >"$dir/start"
    timeout -k 10 "${KMATRIX_TIMEOUT:-2400}" qemu-system-x86_64 \
        -machine q35 -cpu max -accel tcg,thread=multi -smp 2 -m 1G \
        -display none -monitor none -no-reboot \
        -kernel "$kimg" -initrd "$initramfs" \
        -append "console=ttyS0 panic=-1 quiet no_timer_check kmatrix=$list" \
        -serial "file:$dir/console.log" -serial "file:$dir/results" </dev/null >"$dir/qemu.log" 2>&1 &
    guest_pids+=($!)
}

# Decodes DIR/results into DIR; DIR/wall: from the start to QEMU's last
# output.
collect_guest() {
    local dir=$1 b64
    awk -v a="$(cat "$dir/start")" -v b="$(stat -c %Y "$dir/console.log" "$dir/results" | sort -n | tail -n1)" \
        'BEGIN { printf "%.0f\n", b - a }' >"$dir/wall"
    tr -d '\r' <"$dir/results" | awk -v dir="$dir" '
        /^==> / { f = dir "/" $2 ".b64"; printf "" > f; next }
        /^<== / { close(f); f = ""; next }
        f { print > f }'
    for b64 in "$dir"/*.b64; do
        [ -e "$b64" ] || continue
        base64 -d "$b64" >"${b64%.b64}"
        rm "$b64"
    done
}

failures=()
total_passed=0
total_failed=0
row_format='%-14s %-24s %-44s %-6s %9s %6s %6s %6s %5s %6s %6s %7s %8s\n'

# Prints ROW's line of the table (its logs in DIR, PKG its kernel package,
# SUITE full or subset)
# and adds its failures to the report.
summarize() {
    local row=$1 pkg=$2 dir=$3 suite=$4 name tmo rc secs run=0 passed=0 failed=0 ignored=0 filtered=0 \
        p f i x line kernel="?" memlock="?" test_secs=0 boot=- note
    if [ -f "$dir/kernel" ]; then
        kernel=$(sed -n 1p "$dir/kernel")
        memlock=$(sed -n 's/^memlock \([^ ]*\) .*/\1/p' "$dir/kernel")
        [ "$row" = host ] || boot=$(sed -n 's/^uptime \([0-9]*\).*/\1/p' "$dir/kernel")
    fi
    while IFS=$'\t' read -r name tmo _; do
        if [ ! -f "$dir/$name.rc" ]; then
            failed=$((failed + 1))
            failures+=("$row: $name did not run")
            continue
        fi
        read -r rc secs <"$dir/$name.rc"
        test_secs=$(awk -v a="$test_secs" -v b="$secs" 'BEGIN { print a + b }')
        case $name in
            rust-*)
                line=$(grep -E '^test result: ' "$dir/$name.log" | tail -n1 || true)
                p=$(echo "$line" | sed -n 's/.* \([0-9]*\) passed.*/\1/p')
                f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
                i=$(echo "$line" | sed -n 's/.* \([0-9]*\) ignored.*/\1/p')
                x=$(echo "$line" | sed -n 's/.* \([0-9]*\) filtered out.*/\1/p')
                ;;
            c-*)
                p=$(grep -c '^ok ' "$dir/$name.log" || true)
                f=$(grep -c '^not ok ' "$dir/$name.log" || true)
                i=0 x=0
                ;;
        esac
        p=${p:-0} f=${f:-0} i=${i:-0} x=${x:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            f=1 # ended without naming a failure: a crash, a timeout, no plan
        fi
        run=$((run + p + f))
        passed=$((passed + p))
        failed=$((failed + f))
        ignored=$((ignored + i))
        filtered=$((filtered + x))
        if [ "$f" != 0 ]; then
            note="exit $rc"
            if awk -v s="$secs" -v t="$tmo" 'BEGIN { exit !(s >= t) }'; then
                note="timed out after $tmo s"
            fi
            failures+=("$row: $name ($note, $f failed): $dir/$name.log")
        fi
    done <"$dir/tests.list"
    if [ "$row" != host ] && [ ! -f "$dir/done" ]; then
        failed=$((failed + 1))
        if [ -f "$dir/kernel" ]; then note="booted, then stopped"; else note="did not boot"; fi
        failures+=("$row: the guest did not finish ($note after $(cat "$dir/wall") s): $dir/console.log")
    fi
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    # shellcheck disable=SC2059
    printf "$row_format" "$row" "$kernel" "$pkg" "$suite" "$memlock" "$boot" "$(cat "$dir/wall")" \
        "$(printf '%.0f' "$test_secs")" "$run" "$passed" "$failed" "$ignored" "$filtered"
}

# The failing tests' own output: libtest's "failures:" section, or the
# end of the log; the guest's console when it did not finish.
report_failures() {
    local row=$1 dir=$2 name rc
    while IFS=$'\t' read -r name _ _; do
        [ -f "$dir/$name.rc" ] || continue
        read -r rc _ <"$dir/$name.rc"
        [ "$rc" != 0 ] || continue
        echo "---- $row: $name"
        if grep -q '^failures:$' "$dir/$name.log"; then
            sed -n '/^failures:$/,/^test result:/p' "$dir/$name.log" | head -n 300
        else
            tail -n 60 "$dir/$name.log"
        fi
    done <"$dir/tests.list"
    if [ "$row" != host ] && [ ! -f "$dir/done" ]; then
        echo "---- $row: the guest's console (last 60 lines)"
        tail -n 60 "$dir/console.log"
    fi
}

t_all=$EPOCHREALTIME
build
echo "== kernel-matrix: tests built in $(secs "$t_all") s"
logs=$cache/logs
guests=()
pkgs=()
lists=()
host_row=0
for row in "${rows[@]}"; do
    rm -rf "${logs:?}/$row"
    mkdir -p "$logs/$row"
    if [ "$row" = host ]; then host_row=1; else guests+=("$row"); fi
done
# shellcheck disable=SC2059
header=$(printf "$row_format" row kernel package suite memlock_k boot_s wall_s test_s run passed failed ignored filtered)
if [ "$host_row" = 1 ]; then
    # The host's row meanwhile: its timings share the cores with the guests.
    cp "$tests_list" "$logs/host/tests.list"
    (
        t0=$EPOCHREALTIME
        run_tests "$logs/host"
        secs "$t0" >"$logs/host/wall"
    ) &
fi
if [ ${#guests[@]} -gt 0 ]; then
    t0=$EPOCHREALTIME
    fetch_busybox
    make_initramfs
    order=()
    for i in "${!guests[@]}"; do
        row=${guests[$i]}
        list=subset
        if [ "${KMATRIX_FULL:-}" = all ] || [[ " ${full_rows[*]} ${KMATRIX_FULL:-} " == *" $row "* ]]; then list=full; fi
        lists+=("$list")
        if [ "$list" = full ]; then cp "$guest_list" "$logs/$row/tests.list"; else cp "$subset_list" "$logs/$row/tests.list"; fi
        # The whole suites start first: they take longest.
        if [ "$list" = full ]; then order=("$i" "${order[@]}"); else order+=("$i"); fi
    done
    # At most KMATRIX_JOBS guests at once (3): each runs mostly one test
    # at a time, so two cores serve more than one, but with more at once
    # the tests that bound their own time (a daemon's 1,000 lifecycles in
    # 300 s, threads within 120 s) run out of it.
    booted=()
    for i in "${order[@]}"; do
        row=${guests[$i]}
        kernel "$row"
        pkgs[i]=$kpkg
        while [ "$(running_guests)" -ge "${KMATRIX_JOBS:-3}" ]; do sleep 2; done
        start_guest "$logs/$row" "${lists[$i]}"
        booted+=("$row (${lists[$i]})")
        say "booted $row (${lists[$i]} suite) after $(secs "$t0") s"
    done
    say "kernels and initramfs ready and every guest booted in $(secs "$t0") s: ${booted[*]} (logs in $logs)"
fi
wait
guest_pids=()
echo "$header"
[ "$host_row" = 0 ] || summarize host - "$logs/host" full
for i in "${!guests[@]}"; do
    collect_guest "$logs/${guests[$i]}"
    summarize "${guests[$i]}" "${pkgs[$i]}" "$logs/${guests[$i]}" "${lists[$i]}"
done
echo "(memlock_k: RLIMIT_MEMLOCK in KiB as the tests saw it; boot_s: guest seconds to its init;"
echo " wall_s: from QEMU's start to its last output; test_s: the tests' own time)"
[ ${#guests[@]} -eq 0 ] || echo "$guest_note"
[[ " ${lists[*]} " != *" subset "* ]] ||
    echo "suite subset: all but ${subset_skip[*]} (KMATRIX_FULL=all runs the whole suite on every row)"

for row in "${rows[@]}"; do
    report_failures "$row" "$logs/$row"
done
if [ ${#failures[@]} -gt 0 ]; then
    echo "kernel-matrix: failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "kernel-matrix: $(secs "$t_all") s in all"
echo "kernel-matrix: $total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ] || exit 1
