#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
#
# The kernel matrix: the privileged tests on the host's kernel and inside
# Debian's own kernels, booted under QEMU (TCG, no KVM needed) with
# virtme-ng: bullseye's 5.10, bookworm's 6.1 and trixie's 6.12.
#
# The tests are every cargo integration test binary but the header check
# (built here, run as root with CI=true so a privileged test that cannot
# run fails) and the Meson build's C harness. A guest runs them on the
# host's files (9p, read-only), with cgroup2, devtmpfs and bpf, a real
# tmpfs as TMPDIR, and the kernel's default RLIMIT_MEMLOCK.
#
# Prints one row per kernel and the failing tests' output; exits 1 if a
# test failed or a kernel did not boot.
#
# Usage: scripts/kernel-matrix.sh [host|bullseye|bookworm|trixie]...
#        (no argument: all four)
# Environment:
#   KMATRIX_CACHE        kernels, apt lists, virtme-ng, busybox, logs
#                        (/var/cache/vircgroup-v2-devices/kernels)
#   KMATRIX_MESON_BUILD  a compiled Meson build directory whose C harness
#                        runs (else one is set up in target/kernel-matrix)
#   KMATRIX_MIRROR       the Debian archive (else the host's, from its apt
#                        sources)
#   KMATRIX_REFRESH=1    refresh the apt lists now (else after 30 days)
#   KMATRIX_TIMEOUT      seconds one guest may take in all (1200)
#   ORACLE_CASES, ORACLE_SEED, RUST_BACKTRACE reach the tests in the guests.
#
# Nothing is installed on the host but qemu-system-x86 and kmod when they
# are missing: the kernels (from a private apt configuration, never the
# host's sources), busybox for virtme-ng's initramfs and virtme-ng's venv
# live in the cache, keyed by version, so a rerun downloads nothing.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
self=$repo/scripts/kernel-matrix.sh
cache=${KMATRIX_CACHE:-/var/cache/vircgroup-v2-devices/kernels}
vng_version=1.42
guest_path=$repo/scripts/guest-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
passed_env=(ORACLE_CASES ORACLE_SEED RUST_BACKTRACE)

# ---------------------------------------------------------------------------
# Running the tests: on the host, and in a guest through --guest.

# Runs each line of DIR/tests.list ("NAME<TAB>TIMEOUT<TAB>COMMAND") with
# CI=true from the repository, into DIR/NAME.log, and its exit status and
# seconds into DIR/NAME.rc. DIR/kernel gets the kernel's release, version
# and `ulimit -l`; DIR/done is written last.
run_tests() {
    local dir=$1 name tmo cmd t0 rc
    {
        uname -r
        uname -v
        echo "memlock $(ulimit -l)"
    } >"$dir/kernel"
    cd "$repo"
    while IFS=$'\t' read -r name tmo cmd; do
        t0=$(date +%s.%N)
        rc=0
        CI=true timeout -k 10 "$tmo" sh -c "$cmd" </dev/null >"$dir/$name.log" 2>&1 || rc=$?
        echo "$rc $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')" >"$dir/$name.rc"
    done <"$dir/tests.list"
    touch "$dir/done"
}

# Inside the guest (the init runs this as root): what the tests need that
# virtme-ng's init does not set up. RLIMIT_MEMLOCK stays the kernel's.
guest() {
    local dir=$1 tmp=/run/kmatrix-tmp
    grep -q ' - cgroup2 ' /proc/self/mountinfo || mount -t cgroup2 cgroup2 /sys/fs/cgroup
    grep -q ' - bpf ' /proc/self/mountinfo || mount -t bpf bpf /sys/fs/bpf
    # /tmp is an overlayfs here, which refuses mknod of char 0:0 (its whiteout).
    mkdir -p "$tmp"
    mount -t tmpfs -o mode=1777 kmatrix-tmp "$tmp"
    export TMPDIR=$tmp
    # shellcheck disable=SC1091
    [ -f "$dir/env" ] && . "$dir/env"
    run_tests "$dir"
}

if [ "${1:-}" = --guest ]; then
    guest "$2"
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

need=()
for tool in qemu-system-x86_64:qemu-system-x86 depmod:kmod strings:binutils; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== kernel-matrix: installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        --no-install-recommends "${need[@]}" >/dev/null
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -w 3600 9 || { echo "kernel-matrix: $cache is locked by another run" >&2; exit 1; }

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.0f", b - a }'; }

# The URI of the host's Debian archive: the apt source whose suite is the
# host's codename.
debian_mirror() {
    if [ -n "${KMATRIX_MIRROR:-}" ]; then
        echo "$KMATRIX_MIRROR"
        return
    fi
    local codename
    codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk -v c="$codename" '
            /^deb / { sub(/\[[^]]*\] */, ""); if ($3 == c) { print $2; exit } }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == c) found = 1 }
            /^[ \t]*$/ { if (found && uri) { print uri; exit } uri = ""; found = 0 }
            END { if (found && uri) print uri }' | head -n1
}

# apt options for a private configuration of SUITE: its own sources file,
# lists and cache; the host's sources and lists are never read.
apt_opts=()
private_apt() {
    local suite=$1 dir=$cache/apt/$1 mirror
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    if [ ! -s "$dir/sources.list" ]; then
        mirror=$(debian_mirror)
        if [ -z "$mirror" ]; then
            echo "kernel-matrix: no Debian archive in the host's apt sources; set KMATRIX_MIRROR" >&2
            exit 1
        fi
        echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg target=Packages] $mirror $suite main" \
            >"$dir/sources.list"
    fi
    apt_opts=(-q -o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
        -o APT::Architectures=amd64 -o APT::Sandbox::User=root)
    if [ "${KMATRIX_REFRESH:-}" = 1 ] || [ -z "$(find "$dir/lists" -maxdepth 1 -name '*_Packages*' -mtime -30)" ]; then
        apt-get "${apt_opts[@]}" update >"$dir/update.log" 2>&1 ||
            { cat "$dir/update.log" >&2; exit 1; }
    fi
}

# Downloads PACKAGE (the candidate of the private configuration in
# apt_opts) into DIR, once: "refresh the lists and try again" if the
# version is gone from the archive.
download() {
    local pkg=$1 dir=$2 suite=$3
    (cd "$dir" && apt-get "${apt_opts[@]}" download "$pkg" >download.log 2>&1) && return
    KMATRIX_REFRESH=1 private_apt "$suite"
    (cd "$dir" && apt-get "${apt_opts[@]}" download "$pkg" >download.log 2>&1) ||
        { cat "$dir/download.log" >&2; exit 1; }
}

candidate() {
    apt-cache "${apt_opts[@]}" show --no-all-versions "$1" | awk '/^Version:/ { print $2; exit }'
}

# Sets kimg, kver and kpkg for SUITE's linux-image-amd64: the .deb is
# unpacked (dpkg-deb -x, never installed) under $cache/SUITE/VERSION with
# the modules.dep that Debian's postinst would have made.
kernel() {
    local suite=$1 dir ver
    private_apt "$suite"
    kpkg=$(apt-cache "${apt_opts[@]}" depends linux-image-amd64 | awk '/Depends: linux-image-/ { print $2; exit }')
    ver=$(candidate "$kpkg")
    dir=$cache/$suite/$ver
    kpkg="$kpkg $ver"
    if [ ! -e "$dir/ready" ]; then
        echo "== kernel-matrix: fetching $kpkg ($suite)"
        rm -rf "${cache:?}/$suite"
        mkdir -p "$dir"
        download "${kpkg% *}" "$dir" "$suite"
        dpkg-deb -x "$dir"/*.deb "$dir/root"
        rm "$dir"/*.deb
        # trixie ships /usr/lib/modules only; depmod -b looks in ROOT/lib.
        [ -e "$dir/root/lib" ] || ln -s usr/lib "$dir/root/lib"
        kver=$(basename "$(ls -d "$dir"/root/lib/modules/*)")
        depmod -a -b "$dir/root" "$kver"
        touch "$dir/ready"
    fi
    kver=$(basename "$(ls -d "$dir"/root/lib/modules/*)")
    kimg=$dir/root/boot/vmlinuz-$kver
}

# virtme-ng from PyPI in a venv, and a static busybox from Debian for the
# initramfs it builds (the host has none).
vng=
busybox=
tools() {
    local venv=$cache/virtme-ng-$vng_version ver dir
    if ! "$venv/bin/vng" --version >/dev/null 2>&1; then
        echo "== kernel-matrix: virtme-ng $vng_version into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "virtme-ng==$vng_version"
    fi
    vng=$venv/bin/vng
    private_apt bookworm
    ver=$(candidate busybox-static)
    dir=$cache/busybox/$ver
    if [ ! -x "$dir/bin/busybox" ]; then
        rm -rf "$cache/busybox"
        mkdir -p "$dir"
        download busybox-static "$dir" bookworm
        dpkg-deb -x "$dir"/*.deb "$dir/root"
        mv "$dir/root/bin" "$dir/bin"
        rm -rf "$dir"/*.deb "$dir/root"
    fi
    busybox=$dir/bin/busybox
}

# The test list shared by every row: NAME<TAB>TIMEOUT<TAB>COMMAND.
tests_list=
build() {
    local features=() json meson_build=${KMATRIX_MESON_BUILD:-}
    if cargo metadata --no-deps --format-version 1 --manifest-path "$repo/Cargo.toml" |
        python3 -c 'import json,sys; sys.exit("testing" not in json.load(sys.stdin)["packages"][0]["features"])'; then
        features=(--features testing)
    fi
    echo "== kernel-matrix: cargo test --no-run --locked ${features[*]}"
    json=$(mktemp)
    (cd "$repo" && cargo test --no-run --locked "${features[@]}" --message-format=json-render-diagnostics >"$json")
    if [ -z "$meson_build" ]; then
        meson_build=$repo/target/kernel-matrix/meson
        [ -f "$meson_build/build.ninja" ] || meson setup "$meson_build" "$repo" >/dev/null
        meson compile -C "$meson_build" >/dev/null
    fi
    tests_list=$(mktemp)
    # Every integration test binary but header.rs (a source check, no
    # kernel in it), and the C harness (TAP) with Meson's environment.
    python3 - "$json" "$meson_build" >"$tests_list" <<'EOF'
import json, shlex, subprocess, sys
seen = set()
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("reason") != "compiler-artifact" or not m.get("executable"):
        continue
    t = m["target"]
    if t["kind"] == ["test"] and t["name"] != "header" and t["name"] not in seen:
        seen.add(t["name"])
        print(f"rust-{t['name']}\t1800\t{shlex.quote(m['executable'])}")
tests = json.loads(subprocess.check_output(["meson", "introspect", "--tests", sys.argv[2]]))
for t in tests:
    if t["protocol"] == "tap" and any(s.endswith(":c") for s in t["suite"]):
        env = [f"{k}={v}" for k, v in t["env"].items()]
        cmd = " ".join(shlex.quote(a) for a in ["env", *env, *t["cmd"]])
        print(f"c-{t['name']}\t{t['timeout'] * 10}\t{cmd}")
EOF
    rm -f "$json"
}

# ---------------------------------------------------------------------------
# One row: DIR holds tests.list, the logs and the results.

# Boots SUITE's kernel, runs the tests in it; the logs are in DIR.
run_guest() {
    local suite=$1 dir=$2 t0 tmo=${KMATRIX_TIMEOUT:-1200} v
    : >"$dir/env"
    for v in "${passed_env[@]}"; do
        [ -n "${!v:-}" ] && printf 'export %s=%q\n' "$v" "${!v}" >>"$dir/env"
    done
    t0=$(now)
    # --disable-kvm: TCG; --force-9p: qemu 7.2's virtiofsd fails here;
    # the udevd shim first in PATH (scripts/guest-bin/udevd); --verbose
    # puts the kernel's console in vng.log, after the tests' own output.
    # timeout leads its own process group: vng, virtme-run and QEMU, which
    # the EXIT trap ends if this script is stopped.
    (cd "$repo" && PATH=$(dirname "$vng"):$PATH exec timeout -k 10 "$tmo" "$vng" --verbose \
        --run "$kimg" --busybox "$busybox" --disable-kvm --force-9p \
        --cpus 2 --memory 2G -a "PATH=$guest_path" --rwdir="$dir" \
        --exec "$self --guest $dir" </dev/null >"$dir/vng.log" 2>&1) &
    guest_pid=$!
    wait "$guest_pid" || true
    guest_pid=
    secs "$t0" >"$dir/wall"
}
guest_pid=
stop_guest() { [ -z "$guest_pid" ] || kill -TERM -- "-$guest_pid" 2>/dev/null || true; }
trap stop_guest EXIT
trap 'stop_guest; exit 130' INT
trap 'stop_guest; exit 143' TERM

failures=()
total_run=0
total_passed=0
total_failed=0
table=()

# Adds DIR's row to the table and its failures to the report.
summarize() {
    local row=$1 pkg=$2 dir=$3 name rc secs run=0 passed=0 failed=0 ignored=0 \
        p f i line kernel="?" memlock="?" test_secs=0 wall boot
    if [ -f "$dir/kernel" ]; then
        kernel=$(sed -n 1p "$dir/kernel")
        memlock=$(sed -n 's/^memlock //p' "$dir/kernel")
    fi
    while IFS=$'\t' read -r name _ _; do
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
                ;;
            c-*)
                p=$(grep -c '^ok ' "$dir/$name.log" || true)
                f=$(grep -c '^not ok ' "$dir/$name.log" || true)
                i=0
                ;;
        esac
        p=${p:-0} f=${f:-0} i=${i:-0}
        if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
            f=1 # ended without naming a failure: a crash, a timeout, no plan
        fi
        run=$((run + p + f))
        passed=$((passed + p))
        failed=$((failed + f))
        ignored=$((ignored + i))
        if [ "$f" != 0 ]; then
            failures+=("$row: $name (exit $rc$([ "$rc" = 124 ] && echo ", timed out")): $dir/$name.log")
        fi
    done <"$dir/tests.list"
    wall=$(cat "$dir/wall" 2>/dev/null || echo 0)
    boot=$(awk -v a="$wall" -v b="$test_secs" 'BEGIN { printf "%.0f", a - b }')
    [ "$row" = host ] && boot=-
    if [ ! -f "$dir/done" ]; then
        failed=$((failed + 1))
        failures+=("$row: the guest did not finish ($(if [ -f "$dir/kernel" ]; then echo "booted, then stopped"; else echo "did not boot"; fi)): $dir/vng.log")
    fi
    total_run=$((total_run + run))
    total_passed=$((total_passed + passed))
    total_failed=$((total_failed + failed))
    table+=("$(printf '%-9s %-24s %-32s %6s %6s %5s %6s %6s %7s %6s' "$row" "$kernel" "$pkg" \
        "$memlock" "$boot" "$(printf '%.0f' "$test_secs")" "$run" "$passed" "$failed" "$ignored")")
}

# The failing tests' own output: libtest's "failures:" section, or the
# TAP log; the guest's console when it did not finish.
report_failures() {
    local dir=$1 name
    while IFS=$'\t' read -r name _ _; do
        [ -f "$dir/$name.rc" ] || continue
        if [ "$(cut -d' ' -f1 "$dir/$name.rc")" != 0 ]; then
            echo "---- $(basename "$dir"): $name"
            if grep -q '^failures:$' "$dir/$name.log"; then
                sed -n '/^failures:$/,/^test result:/p' "$dir/$name.log" | head -n 300
            else
                tail -n 60 "$dir/$name.log"
            fi
        fi
    done <"$dir/tests.list"
    if [ "$(basename "$dir")" != host ] && [ ! -f "$dir/done" ]; then
        echo "---- $(basename "$dir"): the guest's console (last 60 lines)"
        tail -n 60 "$dir/vng.log"
    fi
}

t_all=$(now)
build
if [ "${rows[*]}" != host ]; then
    tools
fi
logs=$cache/logs
for row in "${rows[@]}"; do
    dir=$logs/$row
    rm -rf "$dir"
    mkdir -p "$dir"
    cp "$tests_list" "$dir/tests.list"
    if [ "$row" = host ]; then
        echo "== kernel-matrix: host ($(uname -r))"
        t0=$(now)
        (run_tests "$dir")
        secs "$t0" >"$dir/wall"
        summarize host "-" "$dir"
    else
        t0=$(now)
        kernel "$row"
        echo "== kernel-matrix: $row ($kpkg, fetched in $(secs "$t0") s)"
        run_guest "$row" "$dir"
        summarize "$row" "$kpkg" "$dir"
    fi
done
rm -f "$tests_list"

echo
printf '%-9s %-24s %-32s %6s %6s %5s %6s %6s %7s %6s\n' row kernel package memlock boot_s test_s run passed failed ignored
printf '%s\n' "${table[@]}"
for row in "${rows[@]}"; do
    report_failures "$logs/$row"
done
if [ ${#failures[@]} -gt 0 ]; then
    echo
    echo "kernel-matrix: failed:"
    printf '  %s\n' "${failures[@]}"
fi
echo "kernel-matrix: $(secs "$t_all") s in all; logs in $logs"
echo "kernel-matrix: $total_passed passed, $total_failed failed"
[ "$total_failed" = 0 ]
