/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * harness.h: the C harness's shared pieces.
 *
 * - TAP output (meson test runs every executable with protocol 'tap').
 * - A scratch cgroup v2 directory per test, uniquely named, removed at exit
 *   even when a check fails (or the test is killed by SIGTERM/SIGINT), after
 *   its processes are killed and the library has forgotten it. The harness
 *   never touches a cgroup it did not create.
 * - Device nodes made with mknod(2) in a scratch directory, and a probe that
 *   forks a child (the tests are single-threaded when they probe), moves it
 *   into the cgroup and reports the errno of each access: EPERM means the
 *   device program denied it; 0 or ENXIO (no driver for those numbers) means
 *   it was allowed (EIO: the pty driver, for a pty that does not exist).
 */
#ifndef VCG2_HARNESS_H
#define VCG2_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

#define H_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define H_NORETURN __attribute__((noreturn))

/* ---- TAP ---------------------------------------------------------------- */

/* Starts a test program: line-buffered stdout, cleanup at exit and on
 * SIGTERM/SIGINT/SIGHUP. */
void tap_init(void);
bool tap_ok(bool cond, const char *fmt, ...) H_PRINTF(2, 3);
bool tap_is_int(long long got, long long want, const char *fmt, ...) H_PRINTF(3, 4);
bool tap_is_str(const char *got, const char *want, const char *fmt, ...) H_PRINTF(3, 4);
void tap_diag(const char *fmt, ...) H_PRINTF(1, 2);
/* "1..0 # SKIP reason" and exit 0. */
void tap_skip_all(const char *fmt, ...) H_PRINTF(1, 2) H_NORETURN;
/* "Bail out! ..." and exit 1 (cleanup still runs). */
void tap_bail(const char *fmt, ...) H_PRINTF(1, 2) H_NORETURN;
/* Prints the plan; the exit status for main(). */
int tap_done(void);

#define ok(cond, ...) tap_ok(!!(cond), __VA_ARGS__)
#define is_int(got, want, ...) tap_is_int((long long)(got), (long long)(want), __VA_ARGS__)
#define is_str(got, want, ...) tap_is_str((got), (want), __VA_ARGS__)

/* ---- Error paths -------------------------------------------------------- */

/* Checks a failed call: `ret` is -1, errno (saved by the caller right after
 * the call) is `want_errno`, and last_error is non-empty and contains
 * `needle` (when not NULL). */
bool h_failed(int ret, int saved_errno, int want_errno, const char *needle,
              const char *what);

/* ---- cgroups ------------------------------------------------------------ */

/* The cgroup2 mount point from /proc/self/mountinfo, or NULL. */
const char *h_cgroup2_mount(void);
/* Needs root, a cgroup2 mount and device programs: otherwise skips the
 * whole test with a reason, or fails it when CI=true. */
void h_require_cgroup2(void);
/* A new, empty cgroup (<mount>/vcg2-ctest-<pid>-<n>), removed at exit. */
const char *h_scratch_cgroup(void);
/* Removes a scratch cgroup now (kills what runs in it, remove_prog, rmdir);
 * true on success. */
bool h_remove_cgroup(const char *path);

/* ---- device nodes and probes -------------------------------------------- */

/* A device node made with mknod(2) in the harness's scratch directory
 * (removed at exit); `type` 'c' or 'b'. The string is the harness's. */
const char *h_mknode(char type, int major, int minor);

enum h_op {
    H_READ,   /* open(O_RDONLY) */
    H_WRITE,  /* open(O_WRONLY) */
    H_RW,     /* open(O_RDWR) */
    H_MKNOD,  /* mknod(2) of a node with type/major/minor */
};

struct h_probe {
    enum h_op op;
    const char *path; /* H_READ/H_WRITE/H_RW */
    char type;        /* H_MKNOD */
    int major, minor; /* H_MKNOD */
    int err;          /* out: 0 or the errno */
};

/* Runs the probes in a child moved into `cgroup`; false if the child could
 * not be run (reported as a failed check). */
bool h_probe(const char *cgroup, struct h_probe *probes, size_t n);
/* Allowed by the device program: success, or ENXIO/ENODEV/EIO from the
 * driver, which is only reached after the cgroup check. */
bool h_allowed(int err);
/* One probe, checked: `want_allowed` true expects 0/ENXIO, false EPERM. */
bool h_expect(const char *cgroup, enum h_op op, const char *path, bool want_allowed,
              const char *what);
bool h_expect_mknod(const char *cgroup, char type, int major, int minor,
                    bool want_allowed, const char *what);

/* The rules as the library lists them (a malloc'ed string, "" on error). */
char *h_list(const char *cgroup);

#endif /* VCG2_HARNESS_H */
