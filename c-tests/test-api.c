/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * api: every exported function through the header on a real scratch cgroup,
 * each with its error paths. A failing call must return -1 (NULL for list),
 * set errno, leave a message naming the bad thing in last_error, and change
 * nothing (the list and the state are compared before and after).
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define R VIRCGROUP_DEVICE_READ
#define W VIRCGROUP_DEVICE_WRITE
#define M VIRCGROUP_DEVICE_MKNOD
#define RW VIRCGROUP_DEVICE_RW
#define RWM VIRCGROUP_DEVICE_RWM

static const char *cg;

/* ---- bpf(2), to make maps of any shape ---------------------------------- */

static int map_create(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_type = type;
    attr.key_size = key_size;
    attr.value_size = value_size;
    attr.max_entries = max;
    return (int)syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr));
}

static int map_put(int fd, uint64_t key, uint32_t value)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.map_fd = (uint32_t)fd;
    attr.key = (uint64_t)(uintptr_t)&key;
    attr.value = (uint64_t)(uintptr_t)&value;
    attr.flags = BPF_ANY;
    return (int)syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &attr, sizeof(attr));
}

static bool fd_closed(int fd)
{
    return fcntl(fd, F_GETFD) < 0 && errno == EBADF;
}

/* ---- state helpers ------------------------------------------------------ */

static vircgroup_v2_devices state(void)
{
    vircgroup_v2_devices s = { -2, -2, -2, -2 };
    if (vircgroup_v2_devices_get_state(cg, &s) < 0)
        tap_diag("get_state failed: %s", vircgroup_v2_last_error());
    return s;
}

static bool same_state(vircgroup_v2_devices a, vircgroup_v2_devices b)
{
    return a.mapfd == b.mapfd && a.progfd == b.progfd && a.count == b.count && a.max == b.max;
}

static void is_list(const char *want, const char *what)
{
    char *got = h_list(cg);
    is_str(got, want, "list %s", what);
    free(got);
}

/* A failing call: -1 with `want_errno`, a message containing `needle`, and
 * neither the list nor the state changed. */
#define FAILS(call, want_errno, needle, ...)                                       \
    do {                                                                           \
        char *before_ = h_list(cg);                                                \
        vircgroup_v2_devices sbefore_ = state();                                   \
        char what_[256];                                                           \
        snprintf(what_, sizeof(what_), __VA_ARGS__);                               \
        errno = 0;                                                                 \
        int r_ = (call);                                                           \
        int e_ = errno;                                                            \
        h_failed(r_, e_, (want_errno), (needle), what_);                           \
        char *after_ = h_list(cg);                                                 \
        vircgroup_v2_devices safter_ = state();                                    \
        ok(strcmp(before_, after_) == 0 && same_state(sbefore_, safter_),          \
           "%s changes nothing", what_);                                           \
        free(before_);                                                             \
        free(after_);                                                              \
    } while (0)

/* The paths every group_path argument is tried with. */
struct bad_path {
    const char *path;
    int err;
    const char *needle;
    const char *what;
};

static const struct bad_path bad_paths[] = {
    { NULL, EINVAL, "NULL", "NULL path" },
    { "", EINVAL, "empty", "empty path" },
    { "sys/fs/cgroup", EINVAL, "not absolute", "relative path" },
    { "/nonexistent-vcg2/x", ENOENT, "/nonexistent-vcg2/x", "missing path" },
    { "/tmp", EINVAL, "cgroup v2", "non-cgroup2 path (/tmp)" },
};
#define N_BAD_PATHS (sizeof(bad_paths) / sizeof(bad_paths[0]))

static void bad_paths_everywhere(void)
{
    for (size_t i = 0; i < N_BAD_PATHS; i++) {
        const struct bad_path *b = &bad_paths[i];
        FAILS(vircgroup_v2_devices_detect_prog(b->path), b->err, b->needle, "detect_prog: %s", b->what);
        FAILS(vircgroup_v2_devices_create_prog(b->path), b->err, b->needle, "create_prog: %s", b->what);
        FAILS(vircgroup_v2_devices_prepare_prog(b->path), b->err, b->needle, "prepare_prog: %s", b->what);
        FAILS(vircgroup_v2_devices_remove_prog(b->path), b->err, b->needle, "remove_prog: %s", b->what);
        FAILS(vircgroup_v2_devices_detach_prog(b->path), b->err, b->needle, "detach_prog: %s", b->what);
        FAILS(vircgroup_v2_allow_device(b->path, 'c', 1, 3, RW), b->err, b->needle, "allow_device: %s", b->what);
        FAILS(vircgroup_v2_deny_device(b->path, 'c', 1, 3, RW), b->err, b->needle, "deny_device: %s", b->what);
        FAILS(vircgroup_v2_allow_all_devices(b->path, RW), b->err, b->needle, "allow_all_devices: %s", b->what);
        FAILS(vircgroup_v2_deny_all_devices(b->path), b->err, b->needle, "deny_all_devices: %s", b->what);
        FAILS(vircgroup_v2_allow_device_path(b->path, "/dev/null", RW), b->err, b->needle,
              "allow_device_path: %s", b->what);
        FAILS(vircgroup_v2_deny_device_path(b->path, "/dev/null", RW), b->err, b->needle,
              "deny_device_path: %s", b->what);
        FAILS(vircgroup_v2_devices_check(b->path, 'c', 1, 3, R), b->err, b->needle, "check: %s", b->what);
        vircgroup_v2_devices out;
        FAILS(vircgroup_v2_devices_get_state(b->path, &out), b->err, b->needle, "get_state: %s", b->what);
        FAILS(vircgroup_v2_devices_list(b->path) ? 0 : -1, b->err, b->needle, "list: %s", b->what);
        ok(!vircgroup_v2_devices_available(b->path), "available: %s is false", b->what);

        int mapfd = map_create(BPF_MAP_TYPE_HASH, 8, 4, 64);
        FAILS(vircgroup_v2_devices_attach_prog(b->path, mapfd, 64), b->err, b->needle,
              "attach_prog: %s", b->what);
        ok(fd_closed(mapfd), "attach_prog: %s closed the map fd it was given", b->what);
    }
}

static void bad_rules_everywhere(void)
{
    static const struct {
        char type;
        int major, minor, perms;
        const char *needle, *what;
    } bad[] = {
        { 'x', 1, 3, RW, "type", "type 'x'" },
        { '\0', 1, 3, RW, "type", "type NUL" },
        { 'C', 1, 3, RW, "type", "type 'C'" },
        { 'c', 4096, 3, RW, "major", "major 4096" },
        { 'c', -2, 3, RW, "major", "major -2" },
        { 'c', 1, 1048576, RW, "minor", "minor 1048576" },
        { 'c', 1, -2, RW, "minor", "minor -2" },
        { 'c', 1, 3, 0, "permissions", "perms 0" },
        { 'c', 1, 3, 8, "permissions", "perms 8" },
        { 'c', 1, 3, 15, "permissions", "perms 15" },
        { 'c', 1, 3, -1, "permissions", "perms -1" },
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FAILS(vircgroup_v2_allow_device(cg, bad[i].type, bad[i].major, bad[i].minor, bad[i].perms),
              EINVAL, bad[i].needle, "allow_device: %s", bad[i].what);
        FAILS(vircgroup_v2_deny_device(cg, bad[i].type, bad[i].major, bad[i].minor, bad[i].perms),
              EINVAL, bad[i].needle, "deny_device: %s", bad[i].what);
        FAILS(vircgroup_v2_devices_check(cg, bad[i].type, bad[i].major, bad[i].minor, bad[i].perms),
              EINVAL, bad[i].needle, "check: %s", bad[i].what);
    }
    FAILS(vircgroup_v2_allow_all_devices(cg, 0), EINVAL, "permissions", "allow_all_devices: perms 0");
    FAILS(vircgroup_v2_allow_all_devices(cg, 8), EINVAL, "permissions", "allow_all_devices: perms 8");
    FAILS(vircgroup_v2_allow_device_path(cg, "/dev/null", 0), EINVAL, "permissions",
          "allow_device_path: perms 0");
    FAILS(vircgroup_v2_deny_device_path(cg, "/dev/null", 9), EINVAL, "permissions",
          "deny_device_path: perms 9");
    FAILS(vircgroup_v2_allow_device_path(cg, NULL, RW), EINVAL, "NULL", "allow_device_path: NULL dev_path");
    FAILS(vircgroup_v2_deny_device_path(cg, NULL, RW), EINVAL, "NULL", "deny_device_path: NULL dev_path");
    FAILS(vircgroup_v2_allow_device_path(cg, "", RW), EINVAL, "empty", "allow_device_path: empty dev_path");
    FAILS(vircgroup_v2_allow_device_path(cg, "/dev/nonexistent-vcg2", RW), ENOENT,
          "/dev/nonexistent-vcg2", "allow_device_path: missing dev_path");
    FAILS(vircgroup_v2_devices_get_state(cg, NULL), EINVAL, "NULL", "get_state: NULL out");
}

static void bad_maps(void)
{
    int fds[2];
    if (pipe(fds) < 0)
        tap_bail("pipe: %s", strerror(errno));
    close(fds[1]);
    FAILS(vircgroup_v2_devices_attach_prog(cg, fds[0], 64), EINVAL, "not a BPF map",
          "attach_prog: a pipe");
    ok(fd_closed(fds[0]), "attach_prog closed the pipe fd");

    int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
    FAILS(vircgroup_v2_devices_attach_prog(cg, null, 64), EINVAL, "not a BPF map",
          "attach_prog: /dev/null");
    ok(fd_closed(null), "attach_prog closed the /dev/null fd");

    FAILS(vircgroup_v2_devices_attach_prog(cg, -1, 64), EINVAL, "-1", "attach_prog: mapfd -1");

    static const struct {
        uint32_t type, key, value, max;
        size_t claimed;
        const char *needle, *what;
    } shapes[] = {
        { BPF_MAP_TYPE_ARRAY, 4, 4, 64, 64, "hash map", "an array map" },
        { BPF_MAP_TYPE_HASH, 4, 4, 64, 64, "hash map", "a hash map with 4-byte keys" },
        { BPF_MAP_TYPE_HASH, 8, 8, 64, 64, "hash map", "a hash map with 8-byte values" },
        { BPF_MAP_TYPE_HASH, 8, 4, 64, 32, "max", "max 32 for a 64-entry map" },
        { BPF_MAP_TYPE_HASH, 8, 4, 64, 0, "max", "max 0 for a 64-entry map" },
        { BPF_MAP_TYPE_HASH, 8, 4, 16, 64, "max", "max 64 for a 16-entry map" },
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        int fd = map_create(shapes[i].type, shapes[i].key, shapes[i].value, shapes[i].max);
        if (!ok(fd >= 0, "bpf(BPF_MAP_CREATE) for %s", shapes[i].what))
            continue;
        FAILS(vircgroup_v2_devices_attach_prog(cg, fd, shapes[i].claimed), EINVAL,
              shapes[i].needle, "attach_prog: %s", shapes[i].what);
        ok(fd_closed(fd), "attach_prog closed %s", shapes[i].what);
    }

    /* max wider than max_entries can be (size_t vs the kernel's u32). */
    int wide = map_create(BPF_MAP_TYPE_HASH, 8, 4, 64);
    FAILS(vircgroup_v2_devices_attach_prog(cg, wide, ((size_t)1 << 32) + 64), EINVAL, "max",
          "attach_prog: max 2^32+64 for a 64-entry map");
    ok(fd_closed(wide), "attach_prog closed that map");

    /* Right shape, wrong contents: a value that is not in the encoding. */
    int fd = map_create(BPF_MAP_TYPE_HASH, 8, 4, 64);
    ok(fd >= 0 && map_put(fd, 0x0000000100000003ULL, 0) == 0, "a map holding a 0 value");
    FAILS(vircgroup_v2_devices_attach_prog(cg, fd, 64), EINVAL, "not a rule",
          "attach_prog: a map holding a foreign value");
    ok(fd_closed(fd), "attach_prog closed the map with foreign contents");
    fd = map_create(BPF_MAP_TYPE_HASH, 8, 4, 64);
    ok(fd >= 0 && map_put(fd, 0x0000000100000003ULL, 0x00060002) == 0,
       "a map holding a libvirt-encoded value (0x60002)");
    FAILS(vircgroup_v2_devices_attach_prog(cg, fd, 64), EINVAL, "not a rule",
          "attach_prog: a map in libvirt's value encoding");
    ok(fd_closed(fd), "attach_prog closed that map");
}

int main(void)
{
    tap_init();
    h_require_cgroup2();
    const char *mount = h_cgroup2_mount();
    cg = h_scratch_cgroup();
    tap_diag("scratch cgroup %s", cg);
    const char *c240 = h_mknode('c', 240, 1);
    const char *b240 = h_mknode('b', 240, 0);

    /* available */
    ok(vircgroup_v2_devices_available(mount), "available at the cgroup2 mount %s", mount);
    ok(vircgroup_v2_devices_available(cg), "available at the scratch cgroup");

    /* A fresh cgroup: nothing held, nothing attached, everything allowed. */
    vircgroup_v2_devices s = state();
    ok(s.mapfd == -1 && s.progfd == -1 && s.count == 0 && s.max == 0,
       "get_state of a fresh cgroup is {-1, -1, 0, 0}");
    is_list("a *:* rwm\n", "of a cgroup with no device program");
    is_int(vircgroup_v2_devices_check(cg, 'c', 240, 1, RWM), 1, "check: no program allows all");
    is_int(vircgroup_v2_devices_detect_prog(cg), 0, "detect_prog with no program returns 0");
    s = state();
    ok(s.mapfd == -1 && s.progfd == -1, "detect_prog with no program keeps the state empty");
    h_expect(cg, H_READ, c240, true, "no program: c 240:1");

    /* The paths and arguments every function refuses, on an empty state. */
    bad_paths_everywhere();

    /* A file inside the cgroup is not a cgroup: open(O_DIRECTORY)'s errno. */
    char procs[4200];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
    FAILS(vircgroup_v2_allow_device(procs, 'c', 1, 3, RW), ENOTDIR, "cgroup.procs",
          "allow_device: a file in the cgroup");
    FAILS(vircgroup_v2_devices_create_prog(procs), ENOTDIR, "cgroup.procs",
          "create_prog: a file in the cgroup");

    /* create_prog */
    is_int(vircgroup_v2_devices_create_prog(cg), 0, "create_prog");
    s = state();
    ok(s.mapfd >= 0 && s.progfd >= 0 && s.count == 0 && s.max == 64,
       "state after create_prog: mapfd %d progfd %d count %zd max %zd", s.mapfd, s.progfd,
       s.count, s.max);
    is_list("", "after create_prog (empty policy)");
    h_expect(cg, H_READ, "/dev/null", false, "after create_prog: /dev/null");
    vircgroup_v2_devices s2 = state();
    is_int(vircgroup_v2_devices_create_prog(cg), 0, "create_prog again");
    ok(same_state(s, state()), "create_prog with a program held changes nothing");
    (void)s2;

    /* allow_device accumulates; count counts keys. */
    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 3, R), 0, "allow c 1:3 r");
    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 3, W), 0, "allow c 1:3 w");
    is_list("c 1:3 rw\n", "after allow r then w");
    is_int(state().count, 1, "count 1");
    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 3, RW), 0, "allow c 1:3 rw again");
    is_int(state().count, 1, "re-allowing does not count twice");
    is_int(vircgroup_v2_devices_check(cg, 'c', 1, 3, RW), 1, "check c 1:3 rw: allowed");
    is_int(vircgroup_v2_devices_check(cg, 'c', 1, 3, M), 0, "check c 1:3 m: denied");
    is_int(vircgroup_v2_devices_check(cg, 'b', 1, 3, R), 0, "check b 1:3 r: denied");
    /* explain: one line for the program, the rule that granted, the answer. */
    char *why = vircgroup_v2_devices_explain(cg, 'c', 1, 3, RW);
    ok(why && strncmp(why, "cgroup=", 7) == 0 && strstr(why, " owner=vircgroup-v2-devices/") &&
           strstr(why, " verdict=allow rule=\"c 1:3 rw\"\nresult=allowed\n") &&
           why[strlen(why) - 1] == '\n' && strchr(why, '\n') != strrchr(why, '\n'),
       "explain c 1:3 rw: %s", why ? why : vircgroup_v2_last_error());
    free(why);
    why = vircgroup_v2_devices_explain(cg, 'b', 1, 3, R);
    ok(why && strstr(why, " verdict=deny\nresult=denied\n"), "explain b 1:3 r: %s",
       why ? why : vircgroup_v2_last_error());
    free(why);
    errno = 0;
    ok(vircgroup_v2_devices_explain(cg, 'x', 1, 3, R) == NULL && errno == EINVAL,
       "explain: a bad type is EINVAL");
    h_expect(cg, H_RW, "/dev/null", true, "c 1:3 rw: /dev/null");
    h_expect_mknod(cg, 'c', 1, 3, false, "c 1:3 rw: no m");

    is_int(vircgroup_v2_allow_device(cg, 'b', 1, 3, M), 0, "allow b 1:3 m");
    is_list("b 1:3 m\nc 1:3 rw\n", "char and block rules on the same numbers");
    is_int(state().count, 1, "one key for both rules: count 1");
    is_int(vircgroup_v2_deny_device(cg, 'b', 1, 3, RWM), 0, "deny b 1:3 rwm");
    is_list("c 1:3 rw\n", "the char rule survives denying the block rule");
    is_int(vircgroup_v2_deny_device(cg, 'c', 9, 9, RW), 0, "deny of a rule that does not exist");
    is_list("c 1:3 rw\n", "unchanged by denying a missing rule");
    is_int(vircgroup_v2_deny_device(cg, 'c', 1, 3, W), 0, "deny c 1:3 w");
    is_list("c 1:3 r\n", "c 1:3 r left");
    h_expect(cg, H_WRITE, "/dev/null", false, "c 1:3 r: write /dev/null");
    h_expect(cg, H_READ, "/dev/null", true, "c 1:3 r: read /dev/null");

    /* Wildcards. */
    is_int(vircgroup_v2_allow_device(cg, 'c', 240, -1, RWM), 0, "allow c 240:* rwm");
    is_int(vircgroup_v2_allow_device(cg, 'b', -1, -1, R), 0, "allow b *:* r");
    is_list("b *:* r\nc 1:3 r\nc 240:* rwm\n", "with wildcards");
    is_int(vircgroup_v2_devices_check(cg, 'c', 240, 77, RWM), 1, "check c 240:77 rwm");
    is_int(vircgroup_v2_devices_check(cg, 'b', 240, 0, W), 0, "check b 240:0 w");
    h_expect(cg, H_RW, c240, true, "c 240:* rwm: c 240:1");
    h_expect_mknod(cg, 'c', 240, 9, true, "c 240:* rwm: mknod c 240:9");
    h_expect(cg, H_READ, b240, true, "b *:* r: read b 240:0");
    h_expect(cg, H_WRITE, b240, false, "b *:* r: write b 240:0");

    /* The argument errors, now with rules in place. */
    bad_rules_everywhere();
    bad_maps();

    /* *_device_path */
    is_int(vircgroup_v2_allow_device_path(cg, "/dev/zero", RW), 0, "allow_device_path /dev/zero rw");
    is_int(vircgroup_v2_devices_check(cg, 'c', 1, 5, RW), 1, "check c 1:5 rw after allow_device_path");
    char *before = h_list(cg);
    is_int(vircgroup_v2_allow_device_path(cg, "/tmp", RW), 1, "allow_device_path of a directory returns 1");
    is_int(vircgroup_v2_deny_device_path(cg, "/proc/self/status", RW), 1,
           "deny_device_path of a regular file returns 1");
    is_list(before, "unchanged by paths that are not device nodes");
    free(before);
    is_int(vircgroup_v2_deny_device_path(cg, "/dev/zero", W), 0, "deny_device_path /dev/zero w");
    is_int(vircgroup_v2_devices_check(cg, 'c', 1, 5, W), 0, "check c 1:5 w after deny_device_path");
    is_int(vircgroup_v2_allow_device_path(cg, b240, W), 0, "allow_device_path b 240:0 w");
    /* As in cgroup v1 and libvirt's program, one rule must grant all of an
     * access: r from b *:* and w from b 240:0 do not add up to rw. */
    h_expect(cg, H_WRITE, b240, true, "b 240:0 w: write b 240:0");
    h_expect(cg, H_RW, b240, false, "b 240:0 w + b *:* r: read-write needs one rule with rw");
    is_int(vircgroup_v2_devices_check(cg, 'b', 240, 0, RW), 0, "check b 240:0 rw agrees: 0");

    /* allow_all / deny_all */
    is_int(vircgroup_v2_allow_all_devices(cg, RWM), 0, "allow_all_devices rwm");
    is_int(vircgroup_v2_devices_check(cg, 'b', 7, 7, RWM), 1, "check b 7:7 rwm after allow_all");
    /* As cgroup v1 lists what libvirt's v1 backend writes for it: two lines,
     * never "a *:* rwm", which only a cgroup with no program shows. */
    before = h_list(cg);
    ok(strstr(before, "b *:* rwm\n") && strstr(before, "c *:* rwm\n") &&
           !strstr(before, "a *:* rwm"),
       "allow_all lists b *:* rwm and c *:* rwm, not a *:* rwm");
    free(before);
    h_expect_mknod(cg, 'b', 241, 3, true, "allow_all rwm: mknod b 241:3");
    is_int(vircgroup_v2_deny_all_devices(cg), 0, "deny_all_devices");
    is_list("", "after deny_all_devices");
    s = state();
    ok(s.count == 0 && s.mapfd >= 0 && s.progfd >= 0, "deny_all keeps the program, count 0");
    h_expect(cg, H_READ, "/dev/null", false, "deny_all: /dev/null");
    h_expect(cg, H_READ, b240, false, "deny_all: b 240:0");

    /* prepare_prog grows a full map, keeping every rule (key 0 included). */
    is_int(vircgroup_v2_allow_device(cg, 'c', 0, 0, R), 0, "allow c 0:0 r (key 0)");
    int fails = 0;
    for (int i = 0; i < 63; i++)
        fails += vircgroup_v2_allow_device(cg, 'c', 242, i, RW) != 0;
    is_int(fails, 0, "allow c 242:0-62 rw");
    s = state();
    ok(s.count == 64 && s.max == 64, "full map: count %zd, max %zd", s.count, s.max);
    is_int(vircgroup_v2_devices_prepare_prog(cg), 0, "prepare_prog on a full map");
    s = state();
    ok(s.count == 64 && s.max == 128, "prepare_prog doubled the map: count %zd, max %zd",
       s.count, s.max);
    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 3, RW), 0, "allow c 1:3 rw (65th rule)");
    s = state();
    ok(s.count == 65 && s.max == 128, "count %zd, max %zd", s.count, s.max);
    is_int(vircgroup_v2_devices_check(cg, 'c', 0, 0, R), 1, "key 0 (c 0:0 r) survived the growth");
    is_int(vircgroup_v2_devices_check(cg, 'c', 242, 62, RW), 1, "c 242:62 survived the growth");
    h_expect(cg, H_RW, "/dev/null", true, "after growth: /dev/null");
    h_expect_mknod(cg, 'c', 242, 5, false, "after growth: mknod c 242:5");
    h_expect(cg, H_READ, c240, false, "after growth: c 240:1");
    is_int(vircgroup_v2_devices_prepare_prog(cg), 0, "prepare_prog when not full");
    ok(same_state(s, state()), "prepare_prog with room changes nothing");

    /* remove_prog forgets; detect_prog adopts again. */
    is_int(vircgroup_v2_devices_remove_prog(cg), 0, "remove_prog");
    s = state();
    ok(s.mapfd == -1 && s.progfd == -1 && s.count == 0 && s.max == 0, "state forgotten");
    h_expect(cg, H_RW, "/dev/null", true, "remove_prog leaves the program attached: /dev/null");
    h_expect(cg, H_READ, c240, false, "remove_prog leaves the program attached: c 240:1");
    is_int(vircgroup_v2_devices_detect_prog(cg), 0, "detect_prog");
    s = state();
    ok(s.mapfd >= 0 && s.progfd >= 0 && s.count == 65 && s.max == 128,
       "detect_prog adopted it: count %zd, max %zd", s.count, s.max);

    /* attach_prog with a map of our own, replacing the program. */
    int mapfd = map_create(BPF_MAP_TYPE_HASH, 8, 4, 32);
    ok(mapfd >= 0 && map_put(mapfd, 0x0000000100000003ULL, 0x00000e00) == 0 &&
       map_put(mapfd, 0x000000f0ffffffffULL, 0x00000a00) == 0,
       "a 32-entry map holding c 1:3 rw and c 240:* r");
    is_int(vircgroup_v2_devices_attach_prog(cg, mapfd, 32), 0, "attach_prog");
    s = state();
    ok(s.mapfd == mapfd && s.progfd >= 0 && s.count == 2 && s.max == 32,
       "state after attach_prog: mapfd %d (given %d), count %zd, max %zd", s.mapfd, mapfd,
       s.count, s.max);
    is_list("c 1:3 rw\nc 240:* r\n", "from the attached map");
    h_expect(cg, H_READ, c240, true, "attached map: read c 240:1");
    h_expect(cg, H_WRITE, c240, false, "attached map: write c 240:1");
    h_expect_mknod(cg, 'c', 242, 5, false, "attached map replaced the old one: mknod c 242:5");

    /* detach_prog: nothing attached, everything allowed again. */
    is_int(vircgroup_v2_devices_detach_prog(cg), 0, "detach_prog");
    s = state();
    ok(s.mapfd == -1 && s.progfd == -1, "detach_prog forgets the state");
    is_list("a *:* rwm\n", "after detach_prog");
    h_expect(cg, H_WRITE, c240, true, "after detach_prog: write c 240:1");
    is_int(vircgroup_v2_devices_detach_prog(cg), 0, "detach_prog with nothing attached");

    /* fd 0 is a valid fd: a map that gets it is a map like any other. */
    int saved_stdin = dup(0);
    close(0);
    int zero = map_create(BPF_MAP_TYPE_HASH, 8, 4, 16);
    is_int(zero, 0, "a map created with stdin closed gets fd 0");
    is_int(vircgroup_v2_devices_attach_prog(cg, zero, 16), 0, "attach_prog with mapfd 0");
    s = state();
    ok(s.mapfd == 0 && s.progfd > 0 && s.count == 0 && s.max == 16,
       "state holds mapfd 0: {%d, %d, %zd, %zd}", s.mapfd, s.progfd, s.count, s.max);
    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 3, RW), 0, "allow c 1:3 rw into map fd 0");
    is_list("c 1:3 rw\n", "from map fd 0");
    h_expect(cg, H_READ, c240, false, "map fd 0 is the live policy: c 240:1");
    is_int(vircgroup_v2_devices_detach_prog(cg), 0, "detach_prog");
    ok(fd_closed(0), "detach_prog closed map fd 0");
    if (saved_stdin >= 0) {
        dup2(saved_stdin, 0);
        close(saved_stdin);
    }

    ok(h_remove_cgroup(cg), "scratch cgroup removed");
    return tap_done();
}
