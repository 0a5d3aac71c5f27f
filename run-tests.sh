#!/usr/bin/env bash
# The one command that runs every test: ./run-tests.sh (as root, so the
# kernel tests run; with CI=true a privileged test that cannot run fails).
# Installs what a fresh Debian machine lacks, then runs, in order:
#   lint:    cargo fmt --check, cargo clippy -D warnings
#   rust:    unit tests, kernel tests, C-boundary tests, header freshness,
#            the admin tool, the oracle, the fail-closed tests
#   bench:   the benchmark once in --quick mode, so it keeps working
#   meson:   the library built and installed as distros do, the symbol
#            audit, SONAME, pkg-config, and the C harness (TAP)
#   valgrind: the C harness again under valgrind
#   libvirt: libvirt 9.0.0 and 11.3.0 built with the library, their own
#            tests and real QEMU guests (libvirt/e2e.sh, docs/libvirt.md)
set -euo pipefail
cd "$(dirname "$0")"

need=()
for tool in meson:meson ninja:ninja-build pkg-config:pkg-config valgrind:valgrind \
            bpftool:bpftool nm:binutils readelf:binutils cc:gcc; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "== installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== lint"
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings

echo "== rust tests"
cargo test --locked

echo "== benchmark smoke run (numbers: cargo bench --bench devices, BENCHMARKS.md)"
bench_log=$(mktemp)
if ! cargo bench --locked --bench devices -- --quick >"$bench_log" 2>&1; then
    cat "$bench_log"; rm -f "$bench_log"; exit 1
fi
rm -f "$bench_log"

echo "== meson build and C tests"
build=build-tests
rm -rf "$build"
meson setup "$build" >/dev/null
meson compile -C "$build"
meson test -C "$build" --print-errorlogs

echo "== C tests under valgrind"
meson test -C "$build" --setup valgrind --print-errorlogs --no-rebuild

echo "== libvirt e2e: patched libvirt 9.0.0 and 11.3.0 with real QEMU guests (libvirt/e2e.sh)"
stage=$(date +%s)
libvirt/e2e.sh 9.0.0 11.3.0
echo "== libvirt e2e: $(( $(date +%s) - stage )) s"
