#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The kernel matrix: the privileged tests on the host's kernel and inside
# Debian's own kernels, booted under QEMU (TCG: no KVM needed): bullseye's
# 5.10, bookworm's 6.1 and trixie's 6.12.
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
# Usage: scripts/kernel-matrix.sh [host|bullseye|bookworm|trixie]...
#        (no argument: all four)
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
#   KMATRIX_TIMEOUT      seconds one guest may take in all (1500)
#   ORACLE_CASES, ORACLE_SEED, RUST_BACKTRACE reach the tests in the guests.
#
# Nothing is installed on the host but qemu-system-x86 and binutils when
# they are missing: the kernels (from a private apt configuration, never
# the host's sources, unpacked and never installed) and busybox live in the
# cache, keyed by package version, so a rerun downloads nothing.
set -Eeuo pipefail
trap 'echo "kernel-matrix: line $LINENO: \"$BASH_COMMAND\" failed" >&2' ERR

case $0 in */*) repo=${0%/*}/.. ;; *) repo=.. ;; esac
repo=$(cd "$repo" && pwd) # no dirname: the guest runs this before its PATH is set
self=$repo/scripts/kernel-matrix.sh
passed_env=(ORACLE_CASES ORACLE_SEED V1_CASES V1_SEED RUST_BACKTRACE)
# Under TCG a test runs 15 to 90 times slower than on the host. The
# guests run the oracle and tests/v1.rs on their first 200 cases
# (ORACLE_CASES, V1_CASES override; the host's row runs their default
# 1,000) and skip what has no kernel in it (each TEST::NAME here runs in
# the host's row).
guest_cases=200
guest_skip=(
    oracle::model_and_interpreter_agree_without_the_kernel # 2,000 cases, userspace only
)
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
    mount -t tmpfs -o mode=1777 tmpfs /tmp
    mkdir -p /dev/pts /dev/shm
    mount -t devpts -o ptmxmode=0666 devpts /dev/pts
    mount -t tmpfs tmpfs /dev/shm
    ln -sf /proc/self/fd /dev/fd
    # shellcheck disable=SC1091
    . /kmatrix/env
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

[ $# -gt 0 ] || set -- host bullseye bookworm trixie
rows=("$@")
for row in "${rows[@]}"; do
    case $row in
        host | bullseye | bookworm | trixie) ;;
        *) echo "kernel-matrix: unknown row '$row' (expected host, bullseye, bookworm or trixie)" >&2; exit 2 ;;
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

# Sets kimg, kver and kpkg for SUITE's linux-image-amd64, whose .deb's
# boot/ is kept under $cache/SUITE/VERSION (the modules are not needed).
kernel() {
    local suite=$1 dir ver opt
    private_apt "$suite"
    kpkg=$(apt_private_cache "$apt_dir" depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
    ver=$(apt_private_candidate "$apt_dir" "$kpkg")
    dir=$cache/$suite/$ver
    if [ ! -e "$dir/ready" ]; then
        echo "== kernel-matrix: fetching $kpkg $ver ($suite)"
        rm -rf "${cache:?}/$suite"
        apt_private_unpack "$apt_dir" "$dir/root" "$kpkg=$ver" ./boot
        touch "$dir/ready"
    fi
    kimg=$(ls "$dir"/root/boot/vmlinuz-*)
    kver=${kimg##*/vmlinuz-}
    kpkg="$kpkg $ver"
    for opt in "${kernel_config[@]}"; do
        grep -q "^CONFIG_$opt=y" "$dir/root/boot/config-$kver" ||
            die "$kpkg lacks CONFIG_$opt=y, which the guest needs"
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
# guests (tests_list, guest_list), one test a line:
# NAME<TAB>TIMEOUT<TAB>COMMAND. Sets elves: every executable and library
# the commands need.
tests_list=
guest_list=
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
    # tests/upgrade.rs asks scripts/old-builds.sh for the earlier formats'
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
    cp "$guest_list" "$root/kmatrix/tests.list"
    echo "export ORACLE_CASES=$guest_cases V1_CASES=$guest_cases" >"$root/kmatrix/env"
    local v
    for v in "${passed_env[@]}"; do
        [ -z "${!v:-}" ] || printf 'export %s=%q\n' "$v" "${!v}" >>"$root/kmatrix/env"
    done
    guest_note="In the guests: ORACLE_CASES=${ORACLE_CASES:-$guest_cases} V1_CASES=${V1_CASES:-$guest_cases}; not run (they run in the host's row): ${guest_skip[*]}"
    (cd "$root" && find . | "$busybox" cpio -o -H newc 2>/dev/null) >"$initramfs"
}

guest_pids=()
stop_guests() {
    local pid
    for pid in "${guest_pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
}
trap stop_guests EXIT
trap 'stop_guests; exit 130' INT
trap 'stop_guests; exit 143' TERM

# Starts QEMU on kimg with the initramfs, in the background: the console
# goes to DIR/console.log and the results to DIR/results. timeout leads
# its own process group, which the traps end if this script is stopped;
# -no-reboot: a panic (panic=-1) ends QEMU too.
start_guest() {
    local dir=$1
    echo "$EPOCHREALTIME" >"$dir/start"
    timeout -k 10 "${KMATRIX_TIMEOUT:-1500}" qemu-system-x86_64 \
        -machine q35 -cpu max -accel tcg,thread=multi -smp 2 -m 1G \
        -display none -monitor none -no-reboot \
        -kernel "$kimg" -initrd "$initramfs" \
        -append "console=ttyS0 panic=-1 quiet" \
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
row_format='%-9s %-24s %-34s %9s %6s %6s %6s %5s %6s %6s %7s %8s\n'

# Prints ROW's line of the table (its logs in DIR, PKG its kernel package)
# and adds its failures to the report.
summarize() {
    local row=$1 pkg=$2 dir=$3 name tmo rc secs run=0 passed=0 failed=0 ignored=0 filtered=0 \
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
    printf "$row_format" "$row" "$kernel" "$pkg" "$memlock" "$boot" "$(cat "$dir/wall")" \
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
host_row=0
for row in "${rows[@]}"; do
    rm -rf "${logs:?}/$row"
    mkdir -p "$logs/$row"
    if [ "$row" = host ]; then host_row=1; else guests+=("$row"); fi
done
if [ ${#guests[@]} -gt 0 ]; then
    t0=$EPOCHREALTIME
    fetch_busybox
    make_initramfs
    # All guests at once: each runs mostly one test at a time, so two
    # cores serve more than one of them.
    for row in "${guests[@]}"; do
        kernel "$row"
        pkgs+=("$kpkg")
        cp "$guest_list" "$logs/$row/tests.list"
        start_guest "$logs/$row"
    done
    echo "== kernel-matrix: kernels and initramfs ready in $(secs "$t0") s; booted ${guests[*]} (logs in $logs)"
fi
# shellcheck disable=SC2059
header=$(printf "$row_format" row kernel package memlock_k boot_s wall_s test_s run passed failed ignored filtered)
if [ "$host_row" = 1 ]; then
    # The host's row meanwhile: its timings share the cores with the guests.
    cp "$tests_list" "$logs/host/tests.list"
    t0=$EPOCHREALTIME
    (run_tests "$logs/host")
    secs "$t0" >"$logs/host/wall"
fi
wait
guest_pids=()
echo "$header"
[ "$host_row" = 0 ] || summarize host - "$logs/host"
for i in "${!guests[@]}"; do
    collect_guest "$logs/${guests[$i]}"
    summarize "${guests[$i]}" "${pkgs[$i]}" "$logs/${guests[$i]}"
done
echo "(memlock_k: RLIMIT_MEMLOCK in KiB as the tests saw it; boot_s: guest seconds to its init;"
echo " wall_s: from QEMU's start to its last output; test_s: the tests' own time)"
[ ${#guests[@]} -eq 0 ] || echo "$guest_note"

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
