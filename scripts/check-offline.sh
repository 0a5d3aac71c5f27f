#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds and tests the release tarball as a distribution's build machine
# does: no network at all (a new network namespace, `unshare -n`), an empty
# CARGO_HOME (no registry cache to fall back on), CARGO_NET_OFFLINE=true.
# Every crate must come from the tarball's vendor/; every test suite must
# pass, and the only test skipped is header-fresh (it builds cbindgen).
#
# Usage: scripts/check-offline.sh path/to/vircgroup-v2-devices-X.Y.Z.tar.gz
set -eu

tarball=$(realpath "$1")
work=$(mktemp -d "${TMPDIR:-/tmp}/vcg2-offline.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM
tar -xzf "$tarball" -C "$work"
src=$(echo "$work"/vircgroup-v2-devices-*)
[ -f "$src/meson.build" ] || { echo "$tarball: no vircgroup-v2-devices-*/meson.build" >&2; exit 1; }
mkdir "$work/cargo-home"

unshare --net env CARGO_NET_OFFLINE=true CARGO_HOME="$work/cargo-home" sh -euc '
    # Only the loopback device, and it is down: nothing can be reached.
    links=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " ")
    [ "$links" = lo ] || { echo "network namespace has links: $links" >&2; exit 1; }
    meson setup "$1/build" "$1" >/dev/null
    meson compile -C "$1/build" >"$1/compile.log" 2>&1 || { cat "$1/compile.log" >&2; exit 1; }
    meson test -C "$1/build" --print-errorlogs
' sh "$src"

# The skip is the only one: no other suite passed by skipping.
skipped=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)
    if t["result"] != "OK":
        print(t["name"].split(" / ")[-1], t["result"], t.get("stdout", "").strip())
' "$src/build/meson-logs/testlog.json")
case $skipped in
"header-fresh SKIP header-fresh: skipped: "*) ;;
*)
    echo "offline: expected only header-fresh skipped, got: ${skipped:-nothing}" >&2
    exit 1
    ;;
esac
echo "offline: $(basename "$tarball") built and passed its tests with no network; ${skipped#header-fresh SKIP }"
