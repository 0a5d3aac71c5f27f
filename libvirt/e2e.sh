#!/usr/bin/env bash
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
CACHE=/var/cache/vircgroup-v2-devices/libvirt
JOBS=${E2E_JOBS:-2}
# Bumped when a build step below changes in a way the keys do not see.
RECIPE=1

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
    if [ -z "${apt_updated:-}" ]; then
        apt-get update -qq
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
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
# storage backend (its storage file code is what a block hot-plug inspects).
version_opts() {
    case "$1" in
        9.*) echo -Dyajl=enabled ;;
        # 11.x does not compile with libnl disabled.
        *) echo -Djson_c=enabled -Dlibnl=enabled ;;
    esac
}
prefix_of() { echo "/opt/lv${1%%.*}"; }
state_of() { echo "/run/lv${1%%.*}"; }
meson_opts() {
    local v=$1 pfx st
    pfx=$(prefix_of "$v")
    st=$(state_of "$v")
    echo --prefix="$pfx" --libdir=lib --localstatedir="$st" \
        --sysconfdir="$st/etc" --buildtype=debugoptimized \
        --auto-features=disabled -Ddriver_qemu=enabled \
        -Ddriver_libvirtd=enabled -Ddriver_remote=enabled \
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
# repository whose commit 'debian' is the unpatched tree.
prepare_tree() {
    local v=$1 debver=$2 src=$CACHE/$1/src p
    if [ "$(git -C "$src" log -1 --format=%s debian 2>/dev/null)" = "libvirt $debver" ]; then
        return
    fi
    rm -rf "$src" "$CACHE/$v/build"
    mkdir -p "$src"
    tar -xf "$CACHE/src/$debver/libvirt_$v.orig.tar.xz" -C "$src" \
        --strip-components=1 --no-same-owner
    tar -xf "$CACHE/src/$debver/libvirt_$debver.debian.tar.xz" -C "$src" --no-same-owner
    while read -r p _; do
        case "$p" in ''|'#'*) continue ;; esac
        patch -d "$src" -p1 -s --no-backup-if-mismatch <"$src/debian/patches/$p"
    done <"$src/debian/patches/series"
    git -C "$src" init -q
    git -C "$src" add -A
    git -C "$src" -c user.name=e2e -c user.email=e2e@localhost commit -q \
        -m "libvirt $debver"
    git -C "$src" branch -f debian
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
    LIB=$CACHE/lib/$key
    if [ -f "$LIB/.complete" ]; then
        echo "== library: cached ($LIB)"
        return
    fi
    t=$(now)
    rm -rf "$LIB" "$CACHE/lib-build"
    meson setup "$CACHE/lib-build" "$repo" --prefix="$LIB" --libdir=lib >/dev/null
    meson compile -C "$CACHE/lib-build" >/dev/null
    meson install -C "$CACHE/lib-build" >/dev/null
    # The probe that joins a cgroup and opens devices (src/bin/vcg2-probe.rs).
    cargo build --quiet --release --locked --manifest-path "$repo/Cargo.toml" \
        --target-dir "$CACHE/lib-build/cargo-target" --bin vcg2-probe
    install -m755 "$CACHE/lib-build/cargo-target/release/vcg2-probe" "$LIB/bin/"
    rm -rf "$CACHE/lib-build"
    find "$CACHE/lib" -mindepth 1 -maxdepth 1 ! -name "$key" -exec rm -rf {} +
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
    git -C "$src" checkout -q -f debian
    git -C "$src" clean -q -fdx
    if [ "$kind" = patched ]; then
        git -C "$src" -c user.name=e2e -c user.email=e2e@localhost am -q "$here/$v"/*.patch
    fi
    t=$(now)
    if [ ! -f "$build/build.ninja" ]; then
        # shellcheck disable=SC2046
        meson setup "$build" "$src" $(meson_opts "$v") >"$c/setup.log" 2>&1 ||
            { tail -30 "$c/setup.log"; die "libvirt $v: meson setup failed"; }
    fi
    ninja -C "$build" -j "$JOBS" >"$c/build-$kind.log" 2>&1 ||
        { grep -B2 -A20 -m3 'error' "$c/build-$kind.log" | head -60
          die "libvirt $v $kind: build failed (log: $c/build-$kind.log)"; }
    local tb
    tb=$(since "$t")
    t=$(now)
    run_libvirt_tests "$build" "$c/tests-$kind.new"
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
