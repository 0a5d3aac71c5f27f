/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * daemon-restart: libvirtd configures a guest's cgroup and is restarted
 * while the guest runs. Process A (this binary re-executed as "phase-a
 * <cgroup>") sets rules, enough of them to make the map grow, and exits
 * without any cleanup; this process, B, has never held state for the
 * cgroup: it must find A's program and map (detect_prog), see the right
 * count and max, add a rule to the live policy, and list it all.
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RW VIRCGROUP_DEVICE_RW
#define R VIRCGROUP_DEVICE_READ
#define RWM VIRCGROUP_DEVICE_RWM

/* A's rules: 4 named ones plus c 241:0-65, 70 in all (> 64: the map grew). */
#define A_EXTRA 66
#define A_RULES (4 + A_EXTRA)

static int phase_a(const char *cg)
{
    int bad = 0;
    bad += vircgroup_v2_deny_all_devices(cg) != 0;
    bad += vircgroup_v2_allow_device(cg, 'c', 1, 3, RW) != 0;
    bad += vircgroup_v2_allow_device(cg, 'c', 136, -1, RW) != 0;
    bad += vircgroup_v2_allow_device(cg, 'b', 240, 0, R) != 0;
    bad += vircgroup_v2_allow_device(cg, 'c', 240, 1, RWM) != 0;
    for (int i = 0; i < A_EXTRA; i++)
        bad += vircgroup_v2_allow_device(cg, 'c', 241, i, RW) != 0;
    vircgroup_v2_devices s = { -2, -2, -2, -2 };
    bad += vircgroup_v2_devices_get_state(cg, &s) != 0;
    /* Diagnostics only: the TAP stream is B's. */
    printf("# phase A (pid %ld): %d failed calls, count %zd, max %zd%s%s\n", (long)getpid(), bad,
           s.count, s.max, bad ? ": " : "", bad ? vircgroup_v2_last_error() : "");
    fflush(stdout);
    /* Exit as a killed or restarted daemon would: no remove_prog. */
    _exit(bad || s.count != A_RULES || s.max != 128 ? 1 : 0);
}

static bool run_phase_a(const char *cg)
{
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (len < 0) {
        ok(false, "readlink /proc/self/exe: %s", strerror(errno));
        return false;
    }
    self[len] = '\0';
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execl(self, self, "phase-a", cg, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0) {
        ok(false, "run phase A: %s", strerror(errno));
        return false;
    }
    return ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "process A configured %d rules and exited without cleanup (status %#x)", A_RULES,
              status);
}

static char *expected_list(bool with_b_rule)
{
    size_t cap = 8192, len = 0;
    char *s = malloc(cap);
    if (!s)
        tap_bail("out of memory");
    len += (size_t)snprintf(s + len, cap - len, "b 240:0 r\nc 1:3 rw\n");
    if (with_b_rule)
        len += (size_t)snprintf(s + len, cap - len, "c 1:5 rw\n");
    len += (size_t)snprintf(s + len, cap - len, "c 136:* rw\nc 240:1 rwm\n");
    for (int i = 0; i < A_EXTRA; i++)
        len += (size_t)snprintf(s + len, cap - len, "c 241:%d rw\n", i);
    return s;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "phase-a") == 0)
        return phase_a(argv[2]);

    tap_init();
    h_require_cgroup2();
    const char *cg = h_scratch_cgroup();
    tap_diag("scratch cgroup %s", cg);
    const char *c240 = h_mknode('c', 240, 1);
    const char *c242 = h_mknode('c', 242, 0);

    if (!run_phase_a(cg))
        return tap_done();

    /* B: a fresh process, nothing held for the cgroup. */
    vircgroup_v2_devices s = { -2, -2, -2, -2 };
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state in B");
    ok(s.mapfd == -1 && s.progfd == -1 && s.count == 0 && s.max == 0,
       "B holds nothing before detecting");
    is_int(vircgroup_v2_devices_detect_prog(cg), 0, "detect_prog finds A's program");
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state");
    ok(s.mapfd >= 0 && s.progfd >= 0, "B now holds a map (%d) and a program (%d)", s.mapfd,
       s.progfd);
    is_int(s.count, A_RULES, "count recounted from the map");
    is_int(s.max, 128, "max is the grown map's max_entries");
    char *want = expected_list(false);
    char *got = h_list(cg);
    is_str(got, want, "list shows A's rules");
    free(got);
    free(want);

    is_int(vircgroup_v2_allow_device(cg, 'c', 1, 5, RW), 0, "B allows c 1:5 rw");
    is_int(vircgroup_v2_devices_get_state(cg, &s), 0, "get_state");
    ok(s.count == A_RULES + 1 && s.max == 128, "count %zd (one more), max %zd", s.count, s.max);
    want = expected_list(true);
    got = h_list(cg);
    is_str(got, want, "list shows A's rules and B's");
    free(got);
    free(want);
    is_int(vircgroup_v2_devices_detect_prog(cg), 0, "detect_prog again");
    vircgroup_v2_devices s2;
    vircgroup_v2_devices_get_state(cg, &s2);
    ok(s2.mapfd == s.mapfd && s2.progfd == s.progfd && s2.count == s.count && s2.max == s.max,
       "detect_prog with the program held changes nothing");

    /* B's rule is in the live policy, A's rules still hold. */
    struct h_probe p[] = {
        { .op = H_RW, .path = "/dev/zero" },     /* c 1:5, B */
        { .op = H_RW, .path = "/dev/null" },     /* c 1:3, A */
        { .op = H_RW, .path = c240 },            /* c 240:1 rwm, A */
        { .op = H_MKNOD, .type = 'c', .major = 240, .minor = 1 },
        { .op = H_READ, .path = c242 },          /* unlisted */
        { .op = H_READ, .path = "/dev/urandom" },/* c 1:9, unlisted here */
    };
    if (h_probe(cg, p, sizeof(p) / sizeof(p[0]))) {
        ok(h_allowed(p[0].err), "B's rule: /dev/zero rw allowed (errno %d)", p[0].err);
        ok(h_allowed(p[1].err), "A's rule: /dev/null rw allowed (errno %d)", p[1].err);
        ok(h_allowed(p[2].err), "A's rule: c 240:1 rw allowed (errno %d)", p[2].err);
        ok(h_allowed(p[3].err), "A's rule: mknod c 240:1 allowed (errno %d)", p[3].err);
        is_int(p[4].err, EPERM, "unlisted c 242:0 denied");
        is_int(p[5].err, EPERM, "unlisted /dev/urandom denied");
    }

    is_int(vircgroup_v2_devices_remove_prog(cg), 0, "remove_prog");
    ok(h_remove_cgroup(cg), "scratch cgroup removed");
    return tap_done();
}
