#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The one command that runs every test: ./run-tests.sh (as root, so the
# kernel tests run; with CI=true a privileged test that cannot run fails).
# Installs what a fresh Debian machine lacks (strace: the benchmark counts
# syscalls with it), then runs, in order:
#   lint:    cargo fmt --check, cargo clippy -D warnings
#   rust:    unit tests, kernel tests, C-boundary tests, header freshness,
#            the admin tool, the oracle, the fail-closed tests, the daemon
#            tests, upgrades from every earlier format (old builds cached
#            under /var/cache/vircgroup-v2-devices), locked memory
#   old kernels: the privileged suites again with a 5.4 and a 4.15 feature
#            set emulated (VCG2_EMULATE_KERNEL: newer bpf(2) commands,
#            flags and instructions refused as those kernels do), and
#            with 6.17's BPF_PROG_QUERY write at offset 56 emulated
#   bench:   the benchmark once in --quick mode, so it keeps working
#   meson:   the library built and installed as distros do, the symbol
#            audit, SONAME, pkg-config, and the C harness (TAP)
#   valgrind: the C harness again under valgrind
#   packaging: the release tarball built offline, MSRV, the Debian packages
#            (scripts/packaging-tests.sh)
#   kernels: the privileged tests on this kernel and under QEMU on Debian's
#            5.10, 6.1, 6.12, trixie-backports' 6.17 and the newest Debian
#            kernel (scripts/kernel-matrix.sh)
#   libvirt: libvirt 9.0.0 and 11.3.0 built with the library, and 11.3.0
#            with the upstream series (its Meson option on and off), their
#            own tests and real QEMU guests (libvirt/e2e.sh, docs/libvirt.md)
#   distro:  Debian's libvirt package rebuilt with the series and this
#            project's .debs, installed with apt over stock in a booted
#            Debian 13 under systemd, VMs run with virsh
#            (libvirt/distro-e2e.sh, docs/libvirt.md "On a distribution")
set -euo pipefail
cd "$(dirname "$0")"

# Runs "$@" as stage $1, printing how long it took; at the end (also on
# a failure) every stage's time again, and the total.
times=() current=
stage() {
    local name=$1 start=$SECONDS
    shift
    current=$name
    echo "== $name"
    "$@"
    echo "== $name: $((SECONDS - start)) s"
    times+=("$(printf '%6d s  %s' $((SECONDS - start)) "$name")")
    current=
}
summary() {
    local rc=$? t
    echo "== stage times"
    for t in "${times[@]}"; do echo "$t"; done
    [ -z "$current" ] || echo "  (failed) $current"
    printf '%6d s  in all (%d min), exit %d\n' "$SECONDS" $((SECONDS / 60)) "$rc"
}
trap summary EXIT

need=()
for tool in meson:meson ninja:ninja-build pkg-config:pkg-config valgrind:valgrind \
            bpftool:bpftool nm:binutils readelf:binutils cc:gcc strace:strace \
            abidiff:abigail-tools help2man:help2man lintian:lintian dh:debhelper \
            dpkg-buildpackage:dpkg-dev; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing on this host with apt-get (README: what a test run installs): ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

lint() {
    cargo fmt --check
    cargo clippy --locked --all-targets -- -D warnings
    cargo clippy --locked --all-targets --features testing -- -D warnings
}
stage lint lint

stage "rust tests" cargo test --locked --features testing

# The suites that reach the kernel, on emulated older kernels (before
# 5.14 the writers' lock is a file under /run: no cgroup.kill). The
# killed-writer attack runs 20 rounds there, 100 in the stage above.
old_kernel() {
    VCG2_EMULATE_KERNEL=$1 VCG2_KILLS=20 cargo test --locked --features testing \
        --test kernel --test capi --test cli --test failclosed --test oracle \
        --test daemon --test upgrade --test memlock --test v1 --test rollback \
        --test attacks --test effective
}
stage "rust tests, Linux 5.4 feature set" old_kernel 5.4
stage "rust tests, Linux 4.15 feature set" old_kernel 4.15
# Linux 6.17 to 7.1 write 8 bytes at offset 56 of every BPF_PROG_QUERY
# attr, whatever its size: emulated, the whole privileged suite again.
stage "rust tests, Linux 6.17 BPF_PROG_QUERY write-back" old_kernel 6.17

bench_smoke() {
    local log
    log=$(mktemp)
    if ! cargo bench --locked --features testing --bench devices -- --quick >"$log" 2>&1; then
        cat "$log"; rm -f "$log"; return 1
    fi
    rm -f "$log"
}
stage "benchmark smoke run (numbers: cargo bench --bench devices, BENCHMARKS.md)" bench_smoke

build=build-tests
meson_tests() {
    rm -rf "$build"
    meson setup "$build" >/dev/null
    meson compile -C "$build"
    meson test -C "$build" --print-errorlogs
}
stage "meson build and C tests" meson_tests
stage "C tests under valgrind" \
    meson test -C "$build" --setup valgrind --print-errorlogs --no-rebuild

stage "packaging: release tarball offline, MSRV, Debian packages" scripts/packaging-tests.sh

stage "kernel matrix: Debian's 5.10, 6.1, 6.12, 6.17 and newest under QEMU, and this kernel" \
    env KMATRIX_MESON_BUILD="$build" scripts/kernel-matrix.sh

stage "libvirt e2e: libvirt 9.0.0, 11.3.0 and 11.3.0 with the upstream series, with real QEMU guests (libvirt/e2e.sh)" \
    libvirt/e2e.sh 9.0.0 11.3.0 11.3.0-upstream

stage "distro e2e: Debian 13's libvirt package rebuilt with the series, installed with apt over stock in a booted trixie under systemd (libvirt/distro-e2e.sh)" \
    libvirt/distro-e2e.sh
