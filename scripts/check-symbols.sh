#!/bin/sh
# SPDX-License-Identifier: LGPL-2.1-or-later
# Audits the dynamic symbols of the shared library: every function of the C
# ABI contract is exported, and nothing else but vircgroup_v2_* is (no Rust
# internals, no std, no dependencies); each is versioned, at the default
# version (@@), with the one version node the library defines, named after
# its SONAME (build.rs: GNU ld's --default-symver).
#
# Usage: scripts/check-symbols.sh [path/to/libvircgroup_v2_devices.so]
# (default: target/release/libvircgroup_v2_devices.so)
set -eu

lib=${1:-target/release/libvircgroup_v2_devices.so}
[ -f "$lib" ] || { echo "check-symbols: $lib: no such file" >&2; exit 1; }

expected='vircgroup_v2_allow_all_devices
vircgroup_v2_allow_device
vircgroup_v2_allow_device_path
vircgroup_v2_deny_all_devices
vircgroup_v2_deny_device
vircgroup_v2_deny_device_path
vircgroup_v2_devices_attach_prog
vircgroup_v2_devices_available
vircgroup_v2_devices_check
vircgroup_v2_devices_create_prog
vircgroup_v2_devices_detach_prog
vircgroup_v2_devices_detect_prog
vircgroup_v2_devices_explain
vircgroup_v2_devices_get_key
vircgroup_v2_devices_get_perms
vircgroup_v2_devices_get_state
vircgroup_v2_devices_list
vircgroup_v2_devices_prepare_prog
vircgroup_v2_devices_remove_prog
vircgroup_v2_last_error
vircgroup_v2_set_log_func'

status=0
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\]$/\1/p')
if [ -z "$soname" ]; then
    echo "$lib has no SONAME" >&2
    exit 1
fi
# The version definitions but the base one (the file's own name).
nodes=$(readelf -V "$lib" | sed -n 's/.*Flags: none .*Name: \(.*\)$/\1/p')
if [ "$nodes" != "$soname" ]; then
    echo "version nodes: '$(echo $nodes)', expected exactly '$soname'" >&2
    status=1
fi

# "TYPE NAME@@VERSION" per defined dynamic symbol; the version node itself is
# an absolute (A) symbol named after the node.
all=$(nm -D --defined-only --with-symbol-versions "$lib" | awk 'NF >= 3 { print $2 " " $3 }')
defined=$(printf '%s\n' "$all" | grep -vxF "A $soname" || true)
unversioned=$(printf '%s\n' "$defined" | grep -v "@@$soname\$" || true)
if [ -n "$unversioned" ]; then
    echo "symbols without the default version $soname:" >&2
    printf '  %s\n' "$unversioned" >&2
    status=1
fi
defined=$(printf '%s\n' "$defined" | sed 's/@.*//')

# Functions of the contract: present, as code (T).
for sym in $expected; do
    if ! printf '%s\n' "$defined" | grep -qx "T $sym"; then
        echo "missing export: $sym" >&2
        status=1
    fi
done

# Nothing else: every defined dynamic symbol is a vircgroup_v2_* one.
extra=$(printf '%s\n' "$defined" | awk '{ print $2 }' | grep -v '^vircgroup_v2_' || true)
if [ -n "$extra" ]; then
    echo "exported symbols outside vircgroup_v2_*:" >&2
    printf '  %s\n' $extra >&2
    status=1
fi

# And no vircgroup_v2_* symbol that the contract does not name.
unknown=$(printf '%s\n' "$defined" | awk '{ print $2 }' | grep '^vircgroup_v2_' |
          grep -vxF "$expected" || true)
if [ -n "$unknown" ]; then
    echo "exported symbols not in the contract (update docs/API.md and this list):" >&2
    printf '  %s\n' $unknown >&2
    status=1
fi

# The test seams of the `testing` feature are not in the product: no symbol
# of the bpf(2) hook, api::snapshot or sys::enable_stats, dynamic or not
# (a stripped library has no local symbols to show, which also passes).
seams=$(nm "$lib" 2>/dev/null | grep -E '3sys4hook|8snapshot|12enable_stats' || true)
if [ -n "$seams" ]; then
    echo "test seams (cargo feature 'testing') in $lib:" >&2
    printf '%s\n' "$seams" | sed 's/^/  /' >&2
    status=1
fi

[ $status -eq 0 ] && echo "check-symbols: $(printf '%s\n' "$expected" | wc -l) functions at version $soname, nothing else exported"
exit $status
