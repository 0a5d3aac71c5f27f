# SPDX-License-Identifier: LGPL-2.1-or-later
# shellcheck shell=bash
#
# The shell library of the test drivers (scripts/kernel-matrix.sh, the e2e
# scripts): the cache root, messages and timing, bounded waits, host
# packages, and private apt configurations of Debian suites.
#
#   . "$repo/scripts/lib/common.sh"
#
# Sourcing it only defines functions and sets CACHE_ROOT (and VCG2_PROG when
# unset): no shell options, traps or output. Every function works under
# `set -euo pipefail`. Names and arguments are stable; add, do not change.
#
# Environment:
#   VCG2_CACHE        the cache root (/var/cache/vircgroup-v2-devices)
#   VCG2_PROG         the name messages start with (the script's, less .sh)
#   VCG2_MIRROR       the Debian archive for private apt configurations
#                     (else the host's, from its apt sources, else
#                     http://deb.debian.org/debian)
#   VCG2_APT_REFRESH  1: refresh every private apt configuration's lists
#                     when it is set up (else when older than 30 days)

# The root of every cache (heavy builds, downloads), keyed by their inputs
# below it: kernels/, libvirt/, ...
# shellcheck disable=SC2034 # for the scripts that source this
CACHE_ROOT=${VCG2_CACHE:-/var/cache/vircgroup-v2-devices}
: "${VCG2_PROG:=$(basename "$0" .sh)}"

# ---------------------------------------------------------------------------
# Messages, timing, waiting.

# die MESSAGE...: prints "PROG: MESSAGE" on stderr and exits 1.
die() {
    echo "$VCG2_PROG: $*" >&2
    exit 1
}

# say MESSAGE...: prints "== PROG: MESSAGE" (a step of the run) on stdout.
say() { echo "== $VCG2_PROG: $*"; }

# now: prints the time in seconds since the epoch, with microseconds; the
# argument of since.
now() { echo "$EPOCHREALTIME"; }

# since T [DECIMALS]: prints the seconds from T (an earlier `now`) to now,
# with DECIMALS decimals (1).
since() {
    awk -v a="$1" -v b="$EPOCHREALTIME" -v d="${2:-1}" 'BEGIN { printf "%.*f", d, b - a }'
}

# wait_for SECONDS COMMAND [ARG]...: runs COMMAND (its output discarded)
# every 0.2 s until it succeeds (returns 0) or SECONDS (a whole number)
# have passed (returns 1).
wait_for() {
    local end=$((${EPOCHREALTIME/./} + $1 * 1000000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ "${EPOCHREALTIME/./}" -lt "$end" ] || return 1
        sleep 0.2
    done
}

# sha: prints the first 16 hex digits of the SHA-256 of stdin (a cache key).
sha() { sha256sum | cut -c1-16; }

# lock_file FILE SECONDS: takes an exclusive flock on FILE (created if
# missing) for the rest of the process, waiting up to SECONDS (0: not at
# all); dies naming FILE if another process keeps it.
lock_file() {
    local fd
    mkdir -p "$(dirname "$1")"
    exec {fd}>"$1"
    flock -w "$2" "$fd" || die "$1 is locked by another run (waited $2 s)"
}

# ---------------------------------------------------------------------------
# Host packages.

# apt_install PACKAGE...: installs (apt-get, no recommends) those of the
# Debian PACKAGEs that are not installed on the host, saying which and how
# long it took; runs `apt-get update` first, once per process. Waits up to
# 10 minutes for the dpkg lock (other runs install too).
apt_install() {
    local missing=() p t
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -gt 0 ] || return 0
    say "installing ${missing[*]}"
    t=$(now)
    if [ -z "${_vcg2_apt_updated:-}" ]; then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        _vcg2_apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=600 \
        --no-install-recommends "${missing[@]}" >/dev/null
    say "installed ${missing[*]} in $(since "$t") s"
}

# ---------------------------------------------------------------------------
# Private apt configurations: a directory DIR with its own sources.list,
# lists and package cache, and an empty dpkg status, so that neither the
# host's sources nor its installed packages play a part. Packages are
# downloaded and unpacked, never installed.

# debian_mirror: prints the Debian archive's URI: VCG2_MIRROR, else the
# host's apt source whose suite is the host's codename, else
# http://deb.debian.org/debian.
debian_mirror() {
    if [ -n "${VCG2_MIRROR:-}" ]; then
        echo "$VCG2_MIRROR"
        return
    fi
    local codename f uri
    codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
    uri=$(for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        [ ! -f "$f" ] || { cat "$f"; echo; }
    done | awk -v c="$codename" '
            /^deb / { sub(/\[[^]]*\] */, ""); if ($3 == c) { print $2; exit } }
            /^URIs:/ { uri = $2 }
            /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == c) found = 1 }
            /^[ \t]*$/ { if (found && uri) { print uri; exit } uri = ""; found = 0 }
            END { if (found && uri) print uri }' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

# apt_private_init DIR LINE...: sets up the private apt configuration DIR
# from LINEs "TYPE SUITE [COMPONENT...]" (TYPE deb or deb-src; COMPONENT
# main unless given), e.g. "deb trixie-backports" "deb-src bookworm", all
# on debian_mirror's archive, checked with Debian's archive keyring. Its
# lists are downloaded (apt_private_update) when the sources changed, are
# older than 30 days, or VCG2_APT_REFRESH=1. Dies with apt's output if that
# fails.
apt_private_init() {
    local dir=$1 line type suite comps mirror keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    shift
    [ $# -gt 0 ] || die "apt_private_init $dir: no sources given"
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial"
    mirror=$(debian_mirror)
    for line in "$@"; do
        read -r type suite comps <<<"$line"
        case $type in deb | deb-src) ;; *) die "apt_private_init $dir: '$line' is not 'deb|deb-src SUITE [COMPONENT...]'" ;; esac
        [ -n "$suite" ] || die "apt_private_init $dir: '$line' names no suite"
        # deb lines: the package indices only (no Contents, no translations).
        if [ "$type" = deb ]; then
            echo "deb [signed-by=$keyring target=Packages] $mirror $suite ${comps:-main}"
        else
            echo "deb-src [signed-by=$keyring] $mirror $suite ${comps:-main}"
        fi
    done >"$dir/sources.list.new"
    if cmp -s "$dir/sources.list.new" "$dir/sources.list"; then
        rm "$dir/sources.list.new"
    else
        mv "$dir/sources.list.new" "$dir/sources.list"
        rm -f "$dir/updated"
    fi
    if [ "${VCG2_APT_REFRESH:-}" = 1 ] || [ -z "$(find "$dir" -maxdepth 1 -name updated -mtime -30)" ]; then
        apt_private_update "$dir"
    fi
}

# apt_private_update DIR: downloads the lists of DIR (set up by
# apt_private_init) now; dies with apt's output if that fails.
apt_private_update() {
    local dir=$1
    rm -f "$dir/updated"
    apt_private_get "$dir" update >"$dir/update.log" 2>&1 ||
        { cat "$dir/update.log" >&2; die "apt-get update failed for $dir/sources.list"; }
    touch "$dir/updated"
}

# apt_private_opts DIR: sets the array APT_PRIVATE_OPTS to the apt-get and
# apt-cache options of DIR's configuration (for commands the two wrappers
# below do not cover).
apt_private_opts() {
    local dir=$1
    APT_PRIVATE_OPTS=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o Dir::Etc::sourceparts=-
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
        -o Dir::State::status=/dev/null -o "APT::Architectures=$(dpkg --print-architecture)"
        -o APT::Sandbox::User=root)
}

# apt_private_get DIR ARG...: apt-get ARG... in DIR's configuration (e.g.
# download PKG, source --download-only PKG=VER, in the current directory).
apt_private_get() {
    apt_private_opts "$1"
    apt-get -q "${APT_PRIVATE_OPTS[@]}" "${@:2}"
}

# apt_private_cache DIR ARG...: apt-cache ARG... in DIR's configuration.
apt_private_cache() {
    apt_private_opts "$1"
    apt-cache "${APT_PRIVATE_OPTS[@]}" "${@:2}"
}

# apt_private_candidate DIR PACKAGE: prints the version apt would take of
# binary PACKAGE in DIR's configuration (nothing if it has none).
apt_private_candidate() {
    LC_ALL=C apt_private_cache "$1" policy "$2" 2>/dev/null | awk '/^ *Candidate:/ { if ($2 != "(none)") print $2; exit }'
}

# apt_private_source_version DIR SOURCE [UPSTREAM]: prints the newest
# version of source package SOURCE in DIR's deb-src lines (whose upstream
# version is UPSTREAM, if given); nothing if there is none.
apt_private_source_version() {
    apt_private_cache "$1" showsrc "$2" 2>/dev/null |
        awk -v up="${3:-}" '$1 == "Version:" && (up == "" || index($2, up "-") == 1) { print $2 }' |
        sort -V | tail -n1
}

# apt_private_packages DIR REGEX: prints the names of the binary packages
# of DIR's configuration that match the extended REGEX (anchor it), one a
# line, sorted.
apt_private_packages() {
    apt_private_cache "$1" pkgnames 2>/dev/null | grep -E "$2" | LC_ALL=C sort || true
}

# apt_private_download DIR DEST PACKAGE[=VERSION]...: downloads the .debs
# into DEST (created). If that fails (the version left the archive), the
# lists are refreshed and it is tried once more; dies with apt's output if
# it still fails.
apt_private_download() {
    local dir=$1 dest=$2
    shift 2
    mkdir -p "$dest"
    if ! (cd "$dest" && apt_private_get "$dir" download "$@" >"$dir/download.log" 2>&1); then
        apt_private_update "$dir"
        (cd "$dest" && apt_private_get "$dir" download "$@" >"$dir/download.log" 2>&1) ||
            { cat "$dir/download.log" >&2; die "cannot download $* ($dir/sources.list)"; }
    fi
}

# apt_private_unpack DIR ROOT PACKAGE[=VERSION] [PATH...]: downloads
# PACKAGE and unpacks it into ROOT (created) with dpkg-deb, never
# installing it: only the PATHs of its data (./boot, ./usr/lib/modules),
# or all of it. The .deb is not kept.
apt_private_unpack() {
    local dir=$1 root=$2 pkg=$3 tmp
    shift 3
    tmp=$(mktemp -d "$dir/unpack.XXXXXX")
    apt_private_download "$dir" "$tmp" "$pkg"
    mkdir -p "$root"
    dpkg-deb --fsys-tarfile "$tmp"/*.deb | tar -x -C "$root" "$@" ||
        { rm -rf "$tmp"; die "cannot unpack ${*:-all} of $pkg"; }
    rm -rf "$tmp"
}
