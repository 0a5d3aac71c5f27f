#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# libvirt/build.sh [TARGET...]: the build step of libvirt/e2e.sh, on its
# own: libvirt from Debian's source package, built stock and with a patch
# series of libvirt/TARGET/, its own test suite (meson test, syntax-check
# included) run on each build, the results compared. No VMs.
#
# A TARGET is a directory of libvirt/: its name is the upstream version the
# series applies to (9.0.0), or VERSION-NAME for another series on that
# version (11.3.0-upstream). A series that adds libvirt's
# 'vircgroup_v2_devices' Meson option is built twice: with the option
# enabled (the library must be found) and disabled (libvirt's own code);
# the others once, with the library.
#
# As root, from a fresh Debian machine, per TARGET:
#   1. fetches libvirt's Debian source package (apt-get source, deb-src
#      lines in a private apt configuration, never the host's), installs the
#      build dependencies, builds and installs this library (Meson) into a
#      private prefix;
#   2. builds a minimal libvirt (QEMU driver and daemons) stock, runs its
#      meson test and installs it; applies the series in the same git tree,
#      rebuilds (ccache) in a build directory per configuration, runs meson
#      test again and installs; every configuration's results must equal
#      stock's.
# Builds are cached under $VCG2_CACHE/libvirt/ (/var/cache/vircgroup-v2-devices),
# keyed by what they are built from. docs/libvirt.md explains it all.
#
# Sourced (by e2e.sh) it only defines functions and variables; build_target
# TARGET then sets LIB, STOCK and PATCHED (the installs the VMs run) and
# STOCK_IS (what STOCK is).
set -euo pipefail

BUILD_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_REPO=$(dirname "$BUILD_HERE")
: "${VCG2_PROG:=e2e}"
# shellcheck source=scripts/lib/common.sh
. "$BUILD_REPO/scripts/lib/common.sh"

CACHE=${E2E_CACHE:-$CACHE_ROOT/libvirt}
JOBS=${E2E_JOBS:-2}
# Bumped when a build step below changes in a way the keys do not see.
RECIPE=3
DEFAULT_TARGETS=(9.0.0 11.3.0 11.3.0-upstream)

# ------------------------------------------------------------------ targets
# The upstream version of TARGET $1 (9.0.0, 11.3.0-upstream -> 11.3.0).
version_of() { echo "${1%%-*}"; }
# Whether TARGET $1's series adds the 'vircgroup_v2_devices' option.
has_option() { grep -q "^+option('vircgroup_v2_devices'" "$BUILD_HERE/$1"/*.patch; }
check_targets() {
    local t
    for t in "$@"; do
        [ -d "$BUILD_HERE/$t" ] && compgen -G "$BUILD_HERE/$t/*.patch" >/dev/null ||
            die "no patch series for libvirt $t (libvirt/$t/*.patch)"
        [[ $(version_of "$t") =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] ||
            die "libvirt/$t: a target is VERSION or VERSION-NAME (VERSION like 11.3.0)"
    done
}

# ---------------------------------------------------------------- packages
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
# Short paths: libvirt's UNIX sockets live below the state directory, and a
# socket path has at most 108 bytes.
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
# A private apt configuration with the deb-src lines of the suites that
# carry libvirt: bookworm (9.0.0), trixie (11.3.0), trixie-backports and
# sid (12.x); the host's sources are never read or changed.
APT_DIR=$CACHE/apt
apt_ready=
apt_ready() {
    [ -z "$apt_ready" ] || return 0
    apt_private_init "$APT_DIR" "deb-src bookworm" "deb-src trixie" \
        "deb-src trixie-backports" "deb-src sid"
    apt_ready=1
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
    apt_ready >&2
    debver=$(apt_private_source_version "$APT_DIR" libvirt "$v")
    [ -n "$debver" ] || die "no libvirt $v source package in bookworm, trixie, trixie-backports or sid"
    dir=$CACHE/src/$debver
    mkdir -p "$dir"
    # 11.3.0's .dsc and .orig.tar.xz.asc are missing on the mirror (404):
    # apt-get then fails although the two tarballs came, which is all the
    # tree needs (they are checked against the Sources index by apt).
    (cd "$dir" && apt_private_get "$APT_DIR" source --download-only -qq "libvirt=$debver" >&2) ||
        echo "$VCG2_PROG: apt-get source libvirt=$debver reported missing files" >&2
    [ -f "$dir/libvirt_$v.orig.tar.xz" ] && [ -f "$dir/libvirt_$debver.debian.tar.xz" ] ||
        die "libvirt $debver: the .orig.tar.xz or .debian.tar.xz is not on the mirror ($(debian_mirror))"
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
        case "$p" in '' | '#'*) continue ;; esac
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
    (cd "$BUILD_REPO" && find Cargo.toml Cargo.lock meson.build \
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
    meson setup "$CACHE/lib-build" "$BUILD_REPO" --prefix="$LIB" --libdir=lib >/dev/null
    meson compile -C "$CACHE/lib-build" >/dev/null
    meson install -C "$CACHE/lib-build" >/dev/null
    # The probe that joins a cgroup and opens devices (src/bin/vcg2-probe.rs).
    cargo build --quiet --release --locked --manifest-path "$BUILD_REPO/Cargo.toml" \
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

# build_libvirt VERSION NAME KEY SERIES BUILDDIR [MESON-OPTION...]: builds
# libvirt VERSION (the tree at tag 'debian', plus libvirt/SERIES/*.patch
# unless SERIES is '-') in $CACHE/VERSION/BUILDDIR, runs its tests and
# installs it into $CACHE/VERSION/NAME-KEY (a DESTDIR), unless that is there.
build_libvirt() {
    local v=$1 name=$2 key=$3 series=$4 c=$CACHE/$1 t dest
    local build=$c/$5
    shift 5
    dest=$c/$name-$key
    if [ -f "$dest/.complete" ]; then
        echo "== libvirt $v $name: cached ($dest)"
        return
    fi
    local src=$c/src
    git -C "$src" checkout -q -f --detach debian
    git -C "$src" clean -q -fd
    if [ "$series" != - ]; then
        git -C "$src" am -q "$BUILD_HERE/$series"/*.patch ||
            die "libvirt/$series does not apply to libvirt $v"
    fi
    t=$(now)
    # The tree remembers the library's paths pkg-config gave it: a new
    # prefix is a new configuration.
    local opts
    opts=$(meson_opts "$v"; [ $# = 0 ] || echo "$*"; echo "$LIB")
    if [ "$(cat "$build/e2e-options" 2>/dev/null)" != "$opts" ]; then
        rm -rf "$build"
        # shellcheck disable=SC2046
        meson setup "$build" "$src" $(meson_opts "$v") "$@" >"$c/setup-$name.log" 2>&1 ||
            { tail -30 "$c/setup-$name.log"; die "libvirt $v $name: meson setup failed"; }
        echo "$opts" >"$build/e2e-options"
    fi
    ninja -C "$build" -j "$JOBS" >"$c/build-$name.log" 2>&1 ||
        { grep -B2 -A20 -m3 'error' "$c/build-$name.log" | head -60
          die "libvirt $v $name: build failed (log: $c/build-$name.log)"; }
    local tb tt
    tb=$(since "$t")
    t=$(now)
    run_libvirt_tests "$build" "$c/tests-$name.new"
    # Some of libvirt's tests create the runtime directories of the build.
    rm -rf "$(state_of "$v")"
    tt=$(since "$t")
    rm -rf "$dest"
    DESTDIR=$dest meson install -C "$build" --no-rebuild >/dev/null
    mv "$c/tests-$name.new" "$dest/tests"
    mv "$c/tests-$name.new.log" "$dest/tests.log"
    echo "build $tb test $tt" >"$dest/times"
    find "$c" -mindepth 1 -maxdepth 1 -name "$name-*" ! -name "$name-$key" -exec rm -rf {} +
    touch "$dest/.complete"
    echo "== libvirt $v $name: built in $tb s, tested in $tt s ($(counts "$dest/tests"))"
}

# same_tests CLAIM A B: PASS CLAIM when the installs A and B had the same
# per-test results (syntax-check's rules included), else FAIL with the diff.
same_tests() {
    local claim=$1 a=$2 b=$3 diff=$CACHE/tests.diff
    if diff -u "$a/tests" "$b/tests" >"$diff"; then
        pass "$claim"
    else
        cat "$diff"
        fail "$claim: not so, the results above differ"
    fi
}

# Builds TARGET $1 and sets STOCK, PATCHED (the installs the VMs run) and
# STOCK_IS. For a series with the option, PATCHED is the build with the
# library and STOCK the build of the same tree without it.
build_target() {
    local target=$1 v debver skey pkey key suffix
    v=$(version_of "$target")
    # shellcheck disable=SC2046
    apt_install "${common_deps[@]}" $(version_deps "$v")
    [ -n "$LIB" ] || build_library
    debver=$(fetch_source "$v")
    prepare_tree "$v" "$debver"
    export PKG_CONFIG_PATH=$LIB/lib/pkgconfig
    export LD_LIBRARY_PATH=$LIB/lib
    export CCACHE_DIR=$CACHE/ccache CCACHE_NOHASHDIR=1 CCACHE_MAXSIZE=3G
    skey=$( (echo "$RECIPE $debver"; meson_opts "$v") | sha)
    key=$( (echo "$skey"; cat "$BUILD_HERE/$target"/*.patch; grep -m1 '^version' "$BUILD_REPO/Cargo.toml"
            cat "$LIB/include/vircgroup_v2_devices.h") | sha)
    build_libvirt "$v" stock "$skey" - build
    local stock=$CACHE/$v/stock-$skey tag="libvirt $target"
    echo "$tag meson test  unpatched: $(counts "$stock/tests")"
    if has_option "$target"; then
        # NAME-KEY directories per target: 'lib-upstream', 'nolib-upstream'.
        suffix=${target#"$v"}
        build_libvirt "$v" "lib$suffix" "$key" "$target" "build-lib$suffix" \
            -Dvircgroup_v2_devices=enabled
        pkey=$( (echo "$key"; echo nolib) | sha)
        build_libvirt "$v" "nolib$suffix" "$pkey" "$target" "build-nolib$suffix" \
            -Dvircgroup_v2_devices=disabled
        PATCHED=$CACHE/$v/lib$suffix-$key
        STOCK=$CACHE/$v/nolib$suffix-$pkey
        # shellcheck disable=SC2034 # e2e.sh prints it
        STOCK_IS="the series built with -Dvircgroup_v2_devices=disabled"
        echo "$tag meson test  with the library (-Dvircgroup_v2_devices=enabled): $(counts "$PATCHED/tests")"
        echo "$tag meson test  without it (-Dvircgroup_v2_devices=disabled):   $(counts "$STOCK/tests")"
        same_tests "$tag: meson test gives the same results with the library as stock" "$stock" "$PATCHED"
        same_tests "$tag: meson test gives the same results without the library as stock" "$stock" "$STOCK"
    else
        build_libvirt "$v" patched "$key" "$target" build
        PATCHED=$CACHE/$v/patched-$key
        STOCK=$stock
        # shellcheck disable=SC2034 # e2e.sh prints it
        STOCK_IS="Debian's libvirt $debver unpatched"
        echo "$tag meson test    patched: $(counts "$PATCHED/tests")"
        same_tests "$tag: meson test gives the same results patched and unpatched" "$stock" "$PATCHED"
    fi
}

# -------------------------------------------------------------- assertions
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
# A failed assertion ends the run (later ones build on it); on_fail (set by
# e2e.sh) prints what helps, such as the daemon's log.
on_fail() { :; }
fail() {
    failed=$((failed + 1))
    echo "FAIL: $*"
    on_fail
    exit 1
}
check() { # check 'description' command...
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}

build_main() {
    local targets=("$@") t t0
    [ ${#targets[@]} -gt 0 ] || targets=("${DEFAULT_TARGETS[@]}")
    [ "$(id -u)" = 0 ] || die "needs root"
    check_targets "${targets[@]}"
    t0=$(now)
    lock_file "$CACHE/lock" 0
    for t in "${targets[@]}"; do
        build_target "$t"
    done
    echo "== libvirt builds: $(since "$t0") s"
    echo "$passed passed, $failed failed"
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    build_main "$@"
fi
