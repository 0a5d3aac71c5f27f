/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qemu-start: the calls libvirt's QEMU driver makes when it starts a guest
 * (qemuSetupDevicesCgroup), replayed against the library, with a process in
 * the cgroup checking what the guest could open:
 *
 *   deny_all_devices; allow c 136:* rw (ptys); allow the default devices
 *   that exist (cgroup_device_acl) rw by path; allow the disk rw and its
 *   backing image r by path; then hot-unplug the disk (deny rwm); then
 *   remove_prog and rmdir.
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RW VIRCGROUP_DEVICE_RW
#define R VIRCGROUP_DEVICE_READ
#define RWM VIRCGROUP_DEVICE_RWM

/* libvirt's default cgroup_device_acl (qemu.conf). */
static const char *const default_acl[] = {
    "/dev/null", "/dev/full", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/ptmx",
    "/dev/kvm",
};
#define N_ACL (sizeof(default_acl) / sizeof(default_acl[0]))

static bool is_char_dev(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISCHR(st.st_mode);
}

int main(void)
{
    tap_init();
    h_require_cgroup2();
    const char *cg = h_scratch_cgroup();
    tap_diag("scratch cgroup %s", cg);

    const char *pty = h_mknode('c', 136, 5);      /* a /dev/pts/5 */
    const char *disk = h_mknode('b', 240, 0);     /* the guest's disk */
    const char *backing = h_mknode('b', 240, 1);  /* its backing image */
    const char *other_blk = h_mknode('b', 240, 2); /* a disk the guest does not have */
    const char *other_chr = h_mknode('c', 240, 1); /* an unlisted char device */
    const char *tty = h_mknode('c', 5, 0);         /* /dev/tty, not in the ACL */

    /* The replay. */
    is_int(vircgroup_v2_deny_all_devices(cg), 0, "deny_all_devices");
    is_int(vircgroup_v2_allow_device(cg, 'c', 136, -1, RW), 0, "allow c 136:* rw");
    const char *present[N_ACL];
    size_t n_present = 0;
    for (size_t i = 0; i < N_ACL; i++) {
        if (!is_char_dev(default_acl[i])) {
            tap_diag("%s is not present: not allowed", default_acl[i]);
            continue;
        }
        is_int(vircgroup_v2_allow_device_path(cg, default_acl[i], RW), 0,
               "allow_device_path %s rw", default_acl[i]);
        present[n_present++] = default_acl[i];
    }
    is_int(vircgroup_v2_allow_device_path(cg, disk, RW), 0, "allow_device_path disk (b 240:0) rw");
    is_int(vircgroup_v2_allow_device_path(cg, backing, R), 0,
           "allow_device_path backing image (b 240:1) r");
    char *list = h_list(cg);
    ok(strstr(list, "c 136:* rw\n") && strstr(list, "b 240:0 rw\n") && strstr(list, "b 240:1 r\n") &&
       strstr(list, "c 1:3 rw\n"), "list has the pty, disk, backing and /dev/null rules");
    tap_diag("policy:\n%s", list);
    free(list);
    vircgroup_v2_devices s;
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state");
    is_int(s.count, (ssize_t)n_present + 3, "count = %zu default devices + pty + disk + backing",
           n_present);

    /* The guest's view, all from one process in the cgroup. */
    struct h_probe p[32];
    size_t n = 0;
    for (size_t i = 0; i < n_present; i++)
        p[n++] = (struct h_probe){ .op = H_RW, .path = present[i] };
    size_t first_fixed = n;
    p[n++] = (struct h_probe){ .op = H_RW, .path = pty };
    p[n++] = (struct h_probe){ .op = H_RW, .path = disk };
    p[n++] = (struct h_probe){ .op = H_READ, .path = backing };
    p[n++] = (struct h_probe){ .op = H_WRITE, .path = backing };
    p[n++] = (struct h_probe){ .op = H_READ, .path = other_blk };
    p[n++] = (struct h_probe){ .op = H_READ, .path = other_chr };
    p[n++] = (struct h_probe){ .op = H_READ, .path = tty };
    p[n++] = (struct h_probe){ .op = H_MKNOD, .type = 'c', .major = 1, .minor = 3 };
    p[n++] = (struct h_probe){ .op = H_MKNOD, .type = 'b', .major = 240, .minor = 0 };
    static const struct { bool allowed; const char *what; } fixed[] = {
        { true, "pty c 136:5 rw" },
        { true, "disk b 240:0 rw" },
        { true, "backing b 240:1 r" },
        { false, "backing b 240:1 w" },
        { false, "unlisted disk b 240:2 r" },
        { false, "unlisted c 240:1 r" },
        { false, "/dev/tty c 5:0 r (not in the ACL)" },
        { false, "mknod c 1:3 (no m)" },
        { false, "mknod b 240:0 (no m)" },
    };
    if (h_probe(cg, p, n)) {
        for (size_t i = 0; i < first_fixed; i++)
            ok(h_allowed(p[i].err), "guest: %s rw allowed (errno %d)", present[i], p[i].err);
        for (size_t i = first_fixed; i < n; i++) {
            bool allowed = fixed[i - first_fixed].allowed;
            ok(allowed ? h_allowed(p[i].err) : p[i].err == EPERM, "guest: %s %s (errno %d)",
               fixed[i - first_fixed].what, allowed ? "allowed" : "denied", p[i].err);
        }
    }

    /* Hot-unplug of the disk (qemuTeardownImageCgroup: deny rwm). */
    is_int(vircgroup_v2_deny_device_path(cg, disk, RWM), 0, "hot-unplug: deny_device_path disk rwm");
    list = h_list(cg);
    ok(!strstr(list, "b 240:0 ") && strstr(list, "b 240:1 r\n"),
       "the disk rule is gone, the backing rule stays");
    free(list);
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state");
    is_int(s.count, (ssize_t)n_present + 2, "count dropped by one");
    struct h_probe after[] = {
        { .op = H_READ, .path = disk },
        { .op = H_WRITE, .path = disk },
        { .op = H_READ, .path = backing },
        { .op = H_RW, .path = "/dev/null" },
        { .op = H_RW, .path = pty },
    };
    if (h_probe(cg, after, sizeof(after) / sizeof(after[0]))) {
        is_int(after[0].err, EPERM, "after unplug: disk r denied");
        is_int(after[1].err, EPERM, "after unplug: disk w denied");
        ok(h_allowed(after[2].err), "after unplug: backing r still allowed (errno %d)", after[2].err);
        ok(h_allowed(after[3].err), "after unplug: /dev/null rw still allowed (errno %d)", after[3].err);
        ok(h_allowed(after[4].err), "after unplug: pty rw still allowed (errno %d)", after[4].err);
    }

    /* Guest stopped: libvirt forgets the program and removes the cgroup. */
    is_int(vircgroup_v2_devices_remove_prog(cg), 0, "remove_prog");
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state");
    ok(s.mapfd == -1 && s.progfd == -1, "state forgotten");
    char path[4096];
    snprintf(path, sizeof(path), "%s", cg);
    ok(h_remove_cgroup(cg), "rmdir of the guest's cgroup");
    struct stat st;
    ok(stat(path, &st) < 0 && errno == ENOENT, "the cgroup is gone");
    return tap_done();
}
