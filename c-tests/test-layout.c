/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * layout: the header's struct and constants are libvirt's, so libvirt can
 * hand its own virCgroupV2Devices to the library (or read ours) unchanged.
 * The copies below are verbatim from libvirt (src/util/vircgrouppriv.h and
 * src/util/vircgroup.h); the checks are compile-time, the TAP lines report
 * them.
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <assert.h>
#include <stddef.h>
#include <sys/types.h>

/* libvirt: src/util/vircgrouppriv.h */
struct _virCgroupV2Devices {
    int mapfd;
    int progfd;
    ssize_t count;
    ssize_t max;
};
typedef struct _virCgroupV2Devices virCgroupV2Devices;

/* libvirt: src/util/vircgroup.h */
typedef enum {
    VIR_CGROUP_DEVICE_READ  = 1,
    VIR_CGROUP_DEVICE_WRITE = 2,
    VIR_CGROUP_DEVICE_MKNOD = 4,
    VIR_CGROUP_DEVICE_RW    = VIR_CGROUP_DEVICE_READ | VIR_CGROUP_DEVICE_WRITE,
    VIR_CGROUP_DEVICE_RWM   = VIR_CGROUP_DEVICE_RW | VIR_CGROUP_DEVICE_MKNOD,
} virCgroupDevicePerms;

#define SAME_FIELD(f) \
    static_assert(offsetof(vircgroup_v2_devices, f) == offsetof(virCgroupV2Devices, f), \
                  "offset of " #f); \
    static_assert(sizeof(((vircgroup_v2_devices *)0)->f) == sizeof(((virCgroupV2Devices *)0)->f), \
                  "size of " #f)

static_assert(sizeof(vircgroup_v2_devices) == sizeof(virCgroupV2Devices), "struct size");
static_assert(_Alignof(vircgroup_v2_devices) == _Alignof(virCgroupV2Devices), "struct alignment");
SAME_FIELD(mapfd);
SAME_FIELD(progfd);
SAME_FIELD(count);
SAME_FIELD(max);

static_assert(VIRCGROUP_DEVICE_READ == VIR_CGROUP_DEVICE_READ, "READ");
static_assert(VIRCGROUP_DEVICE_WRITE == VIR_CGROUP_DEVICE_WRITE, "WRITE");
static_assert(VIRCGROUP_DEVICE_MKNOD == VIR_CGROUP_DEVICE_MKNOD, "MKNOD");
static_assert(VIRCGROUP_DEVICE_RW == VIR_CGROUP_DEVICE_RW, "RW");
static_assert(VIRCGROUP_DEVICE_RWM == VIR_CGROUP_DEVICE_RWM, "RWM");

/* The field types themselves, not only their sizes: a pointer to the
 * library's field converts to a pointer to libvirt's type without a cast
 * (-Werror would reject an incompatible pointer type). */
static void same_types(vircgroup_v2_devices *d)
{
    int *mapfd = &d->mapfd;
    int *progfd = &d->progfd;
    ssize_t *count = &d->count;
    ssize_t *max = &d->max;
    (void)mapfd, (void)progfd, (void)count, (void)max;
}

int main(void)
{
    tap_init();
    vircgroup_v2_devices d = { .mapfd = -1, .progfd = -1, .count = 0, .max = 0 };
    same_types(&d);

    is_int(sizeof(vircgroup_v2_devices), sizeof(virCgroupV2Devices), "struct size %zu",
           sizeof(vircgroup_v2_devices));
    is_int(offsetof(vircgroup_v2_devices, mapfd), offsetof(virCgroupV2Devices, mapfd),
           "offset of mapfd");
    is_int(offsetof(vircgroup_v2_devices, progfd), offsetof(virCgroupV2Devices, progfd),
           "offset of progfd");
    is_int(offsetof(vircgroup_v2_devices, count), offsetof(virCgroupV2Devices, count),
           "offset of count");
    is_int(offsetof(vircgroup_v2_devices, max), offsetof(virCgroupV2Devices, max),
           "offset of max");

    /* A libvirt struct read through the library's type, byte for byte. */
    virCgroupV2Devices v = { .mapfd = 7, .progfd = 0, .count = -3, .max = 1 << 20 };
    const vircgroup_v2_devices *as_lib = (const vircgroup_v2_devices *)(const void *)&v;
    ok(as_lib->mapfd == 7 && as_lib->progfd == 0 && as_lib->count == -3 &&
       as_lib->max == 1 << 20, "libvirt's struct reads the same through the library's type");

    is_int(VIRCGROUP_DEVICE_READ, VIR_CGROUP_DEVICE_READ, "VIRCGROUP_DEVICE_READ");
    is_int(VIRCGROUP_DEVICE_WRITE, VIR_CGROUP_DEVICE_WRITE, "VIRCGROUP_DEVICE_WRITE");
    is_int(VIRCGROUP_DEVICE_MKNOD, VIR_CGROUP_DEVICE_MKNOD, "VIRCGROUP_DEVICE_MKNOD");
    is_int(VIRCGROUP_DEVICE_RW, VIR_CGROUP_DEVICE_RW, "VIRCGROUP_DEVICE_RW");
    is_int(VIRCGROUP_DEVICE_RWM, VIR_CGROUP_DEVICE_RWM, "VIRCGROUP_DEVICE_RWM");
    return tap_done();
}
