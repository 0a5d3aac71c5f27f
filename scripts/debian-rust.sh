#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Debian's own Rust 1.85 for bookworm (rustc-web and cargo-web, the toolchain
# Debian builds Firefox with), downloaded through a private apt configuration
# and unpacked under /var/cache/vircgroup-v2-devices/rust-1.85/ with
# dpkg-deb -x: never installed, so the host's rustup toolchain stays the only
# one on PATH. 1.85 is the crate's rust-version; scripts/check-msrv.sh and
# the Debian package build (scripts/build-deb.sh) use it.
#
# Usage: scripts/debian-rust.sh COMMAND [ARG]...   (runs COMMAND with it
#        first on PATH; e.g. scripts/debian-rust.sh cargo --version)
#        scripts/debian-rust.sh --root            (prints where it is)
set -eu

version=1.85.0+dfsg3-1~deb12u3
cache=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}
root=$cache/rust-1.85
apt_dir=$cache/apt-bookworm
# The toolchain, and what its binaries need that a fresh bookworm lacks.
packages="rustc-web=$version cargo-web=$version libstd-rust-web-1.85=$version
libstd-rust-web-dev=$version libllvm19 libz3-4 libhttp-parser2.9 libpcre3"

if [ ! -f "$root/.complete" ]; then
    echo "debian-rust: fetching Debian's rustc-web/cargo-web $version into $root" >&2
    mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
    cat >"$apt_dir/sources.list" <<SOURCES
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian bookworm-updates main
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security bookworm-security main
SOURCES
    apt() {
        apt-get -o Dir::Etc::SourceList="$apt_dir/sources.list" -o Dir::Etc::SourceParts=/dev/null \
            -o Dir::State::Lists="$apt_dir/lists" -o Dir::Cache::Archives="$apt_dir/archives" \
            -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Architectures=amd64 \
            -o APT::Sandbox::User=root -qq "$@"
    }
    apt update
    rm -rf "$root.new"
    mkdir -p "$root.new/debs"
    # shellcheck disable=SC2086 # one word per package
    if ! (cd "$root.new/debs" && apt download $packages); then
        echo "debian-rust: cannot download $packages (has the archive dropped $version?)" >&2
        exit 1
    fi
    for deb in "$root.new"/debs/*.deb; do
        dpkg-deb -x "$deb" "$root.new"
    done
    rm -rf "$root.new/debs" "$root"
    mv "$root.new" "$root"
    missing=$(LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu \
        ldd "$root/usr/bin/rustc" "$root/usr/bin/cargo" "$root"/usr/lib/x86_64-linux-gnu/librustc_driver-*.so |
        sed -n 's/^\t\(.*\) => not found$/\1/p' | sort -u)
    if [ -n "$missing" ]; then
        echo "debian-rust: libraries missing on this host: $missing" >&2
        exit 1
    fi
    touch "$root/.complete"
fi

if [ "${1:-}" = --root ]; then
    echo "$root"
    exit 0
fi
PATH=$root/usr/bin:$PATH
# The unpacked libraries (libLLVM, libpcre...) only: the host has none of them.
LD_LIBRARY_PATH=$root/usr/lib/x86_64-linux-gnu:$root/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
RUSTC=$root/usr/bin/rustc
CARGO=$root/usr/bin/cargo
RUSTDOC=$root/usr/bin/rustdoc
export PATH LD_LIBRARY_PATH RUSTC CARGO RUSTDOC
exec "$@"
