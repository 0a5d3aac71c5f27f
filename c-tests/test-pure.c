/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * pure: get_key and get_perms, bit for bit what libvirt's C code computes
 * (the reference implementations below are libvirt's
 * virCgroupV2DevicesGetKey / virCgroupV2DevicesGetPerms), plus literal
 * tables so that a wrong reference cannot hide a wrong library.
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <linux/bpf.h>
#include <stdint.h>

/* libvirt: src/util/vircgroupv2devices.c */
static uint32_t virCgroupV2DevicesGetPerms(int perms, char type)
{
    uint32_t ret = 0;

    if (perms & VIRCGROUP_DEVICE_MKNOD)
        ret |= BPF_DEVCG_ACC_MKNOD << 16;
    if (perms & VIRCGROUP_DEVICE_READ)
        ret |= BPF_DEVCG_ACC_READ << 16;
    if (perms & VIRCGROUP_DEVICE_WRITE)
        ret |= BPF_DEVCG_ACC_WRITE << 16;

    if (type == 'b')
        ret |= BPF_DEVCG_DEV_BLOCK;
    else if (type == 'c')
        ret |= BPF_DEVCG_DEV_CHAR;
    else
        ret |= BPF_DEVCG_DEV_BLOCK | BPF_DEVCG_DEV_CHAR;

    return ret;
}

static uint64_t virCgroupV2DevicesGetKey(int major, int minor)
{
    return (uint64_t)major << 32 | ((uint64_t)minor & 0x00000000ffffffff);
}

int main(void)
{
    tap_init();

    /* Literal encodings. */
    static const struct { int major, minor; uint64_t key; } keys[] = {
        { 0, 0, 0x0000000000000000ULL },
        { 1, 3, 0x0000000100000003ULL },
        { 8, 0, 0x0000000800000000ULL },
        { 136, -1, 0x00000088ffffffffULL },
        { -1, 5, 0xffffffff00000005ULL },
        { -1, -1, 0xffffffffffffffffULL },
        { 4095, 1048575, 0x00000fff000fffffULL },
        { 240, 1, 0x000000f000000001ULL },
    };
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        is_int(vircgroup_v2_devices_get_key(keys[i].major, keys[i].minor), keys[i].key,
               "get_key(%d, %d) = %#018llx", keys[i].major, keys[i].minor,
               (unsigned long long)keys[i].key);

    static const struct { int perms; char type; uint32_t value; } perms[] = {
        { VIRCGROUP_DEVICE_READ, 'c', 0x00020002 },
        { VIRCGROUP_DEVICE_WRITE, 'c', 0x00040002 },
        { VIRCGROUP_DEVICE_MKNOD, 'c', 0x00010002 },
        { VIRCGROUP_DEVICE_RW, 'c', 0x00060002 },
        { VIRCGROUP_DEVICE_RWM, 'c', 0x00070002 },
        { VIRCGROUP_DEVICE_RW, 'b', 0x00060001 },
        { VIRCGROUP_DEVICE_READ, 'b', 0x00020001 },
        { VIRCGROUP_DEVICE_RWM, 'a', 0x00070003 },
        { VIRCGROUP_DEVICE_RW, 'x', 0x00060003 },
        { 0, 'c', 0x00000002 },
    };
    for (size_t i = 0; i < sizeof(perms) / sizeof(perms[0]); i++)
        is_int(vircgroup_v2_devices_get_perms(perms[i].perms, perms[i].type), perms[i].value,
               "get_perms(%d, '%c') = %#010x", perms[i].perms, perms[i].type,
               (unsigned)perms[i].value);

    /* Against libvirt's code, exhaustively over perms and types. */
    const char types[] = { 'a', 'b', 'c', 'x', '\0', 'C' };
    int mismatches = 0;
    for (int p = 0; p <= VIRCGROUP_DEVICE_RWM; p++)
        for (size_t t = 0; t < sizeof(types); t++) {
            uint32_t got = vircgroup_v2_devices_get_perms(p, types[t]);
            uint32_t want = virCgroupV2DevicesGetPerms(p, types[t]);
            if (got != want) {
                mismatches++;
                tap_diag("get_perms(%d, %#x) = %#x, libvirt %#x", p, types[t], got, want);
            }
        }
    is_int(mismatches, 0, "get_perms matches libvirt for perms 0-7 and types a b c x NUL C");

    const int numbers[] = { -1, 0, 1, 3, 7, 8, 136, 240, 254, 255, 256, 4095, 65535,
                            1048575, 0x7fffffff };
    mismatches = 0;
    for (size_t a = 0; a < sizeof(numbers) / sizeof(numbers[0]); a++)
        for (size_t b = 0; b < sizeof(numbers) / sizeof(numbers[0]); b++) {
            uint64_t got = vircgroup_v2_devices_get_key(numbers[a], numbers[b]);
            uint64_t want = virCgroupV2DevicesGetKey(numbers[a], numbers[b]);
            if (got != want) {
                mismatches++;
                tap_diag("get_key(%d, %d) = %#llx, libvirt %#llx", numbers[a], numbers[b],
                         (unsigned long long)got, (unsigned long long)want);
            }
        }
    is_int(mismatches, 0, "get_key matches libvirt on %zu number pairs",
           (sizeof(numbers) / sizeof(numbers[0])) * (sizeof(numbers) / sizeof(numbers[0])));

    /* Pure functions leave no error behind. */
    is_str(vircgroup_v2_last_error(), "", "last_error is empty when nothing failed");
    return tap_done();
}
