/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include "harness.h"

#include <vircgroup_v2_devices.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- TAP ---------------------------------------------------------------- */

static int tap_count;
static int tap_failed;

static void vdiag(const char *fmt, va_list ap)
{
    char buf[4096];
    vsnprintf(buf, sizeof(buf), fmt, ap);
    /* One "# " per line, so multi-line values stay comments. */
    for (char *line = buf, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        if (next && !*next)
            next = NULL;
        printf("# %s\n", line);
    }
}

void tap_diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vdiag(fmt, ap);
    va_end(ap);
}

static bool vok(bool cond, const char *fmt, va_list ap)
{
    char name[1024];
    vsnprintf(name, sizeof(name), fmt, ap);
    for (char *p = name; *p; p++)
        if (*p == '#' || *p == '\n')
            *p = ' ';
    tap_count++;
    if (!cond)
        tap_failed++;
    printf("%sok %d - %s\n", cond ? "" : "not ", tap_count, name);
    return cond;
}

bool tap_ok(bool cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vok(cond, fmt, ap);
    va_end(ap);
    return cond;
}

bool tap_is_int(long long got, long long want, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool r = vok(got == want, fmt, ap);
    va_end(ap);
    if (!r)
        tap_diag("got %lld (%#llx), expected %lld (%#llx)", got, got, want, want);
    return r;
}

bool tap_is_str(const char *got, const char *want, const char *fmt, ...)
{
    va_list ap;
    bool same = got && want ? strcmp(got, want) == 0 : got == want;
    va_start(ap, fmt);
    bool r = vok(same, fmt, ap);
    va_end(ap);
    if (!r)
        tap_diag("got:\n%s\nexpected:\n%s", got ? got : "(null)", want ? want : "(null)");
    return r;
}

void tap_skip_all(const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    printf("1..0 # SKIP %s\n", reason);
    exit(0);
}

void tap_bail(const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    printf("Bail out! %s\n", reason);
    exit(1);
}

int tap_done(void)
{
    printf("1..%d\n", tap_count);
    if (tap_failed)
        tap_diag("%d of %d checks failed", tap_failed, tap_count);
    return tap_failed ? 1 : 0;
}

bool h_failed(int ret, int saved_errno, int want_errno, const char *needle, const char *what)
{
    const char *msg = vircgroup_v2_last_error();
    bool good = ret == -1 && saved_errno == want_errno && msg && *msg &&
                (!needle || strstr(msg, needle));
    ok(good, "%s fails with %s", what, strerror(want_errno));
    if (!good)
        tap_diag("returned %d, errno %d (%s), last_error '%s', expected -1, errno %d, "
                 "a message containing '%s'", ret, saved_errno, strerror(saved_errno),
                 msg ? msg : "(null)", want_errno, needle ? needle : "");
    return good;
}

/* ---- cleanup ------------------------------------------------------------ */

#define MAX_CGROUPS 16
#define MAX_NODES 64

static char *cgroups[MAX_CGROUPS];
static char node_dir[256];
static char *nodes[MAX_NODES];
static pid_t owner_pid;

static void cleanup(void)
{
    /* Children forked by the tests inherit the atexit handler: only the
     * process that created the resources removes them. */
    if (getpid() != owner_pid)
        return;
    for (int i = 0; i < MAX_CGROUPS; i++)
        if (cgroups[i])
            h_remove_cgroup(cgroups[i]);
    for (int i = 0; i < MAX_NODES; i++) {
        if (nodes[i]) {
            unlink(nodes[i]);
            free(nodes[i]);
            nodes[i] = NULL;
        }
    }
    if (node_dir[0]) {
        rmdir(node_dir);
        node_dir[0] = '\0';
    }
}

static void on_signal(int sig)
{
    /* Not async-signal-safe, but the test is dying anyway and leaving
     * cgroups behind is worse. */
    printf("Bail out! killed by signal %d\n", sig);
    cleanup();
    _exit(128 + sig);
}

void tap_init(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    /* The tests make BPF maps of their own (as libvirt's C code would):
     * before Linux 5.11 those count against RLIMIT_MEMLOCK, 64 KiB by
     * default there. The library raises it for its own maps; the harness
     * does for its, as a daemon that creates maps must. */
    struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
    (void)setrlimit(RLIMIT_MEMLOCK, &unlimited);
    owner_pid = getpid();
    atexit(cleanup);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
}

/* ---- cgroups ------------------------------------------------------------ */

/* mountinfo escapes space, tab, newline and backslash as \ooo. */
static void unescape(char *s)
{
    char *out = s;
    while (*s) {
        if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] >= '0' && s[2] <= '7' &&
            s[3] >= '0' && s[3] <= '7') {
            *out++ = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 4;
        } else {
            *out++ = *s++;
        }
    }
    *out = '\0';
}

const char *h_cgroup2_mount(void)
{
    static char mount[4096];
    static bool looked;
    if (looked)
        return mount[0] ? mount : NULL;
    looked = true;
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        /* id parent major:minor root mountpoint options [optional...] - fstype source superopts */
        char *fields[5] = { 0 };
        char *save = NULL, *tok = strtok_r(line, " ", &save);
        for (int i = 0; tok && i < 5; i++, tok = strtok_r(NULL, " ", &save))
            fields[i] = tok;
        while (tok && strcmp(tok, "-") != 0)
            tok = strtok_r(NULL, " ", &save);
        char *fstype = tok ? strtok_r(NULL, " ", &save) : NULL;
        if (fields[4] && fstype && strcmp(fstype, "cgroup2") == 0) {
            snprintf(mount, sizeof(mount), "%s", fields[4]);
            unescape(mount);
            break;
        }
    }
    free(line);
    fclose(f);
    return mount[0] ? mount : NULL;
}

H_PRINTF(1, 2) H_NORETURN static void cannot_run(const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    const char *ci = getenv("CI");
    if (ci && strcmp(ci, "true") == 0) {
        ok(false, "privileged tests can run (CI=true makes a skip a failure): %s", reason);
        exit(tap_done());
    }
    tap_skip_all("%s", reason);
}

void h_require_cgroup2(void)
{
    if (geteuid() != 0)
        cannot_run("needs root (to load BPF programs and create cgroups)");
    const char *mount = h_cgroup2_mount();
    if (!mount)
        cannot_run("no cgroup2 filesystem in /proc/self/mountinfo");
    if (!vircgroup_v2_devices_available(mount))
        cannot_run("BPF_CGROUP_DEVICE programs cannot be queried at %s", mount);
}

const char *h_scratch_cgroup(void)
{
    static unsigned counter;
    const char *mount = h_cgroup2_mount();
    if (!mount)
        tap_bail("no cgroup2 mount");
    int slot = -1;
    for (int i = 0; i < MAX_CGROUPS; i++)
        if (!cgroups[i]) {
            slot = i;
            break;
        }
    if (slot < 0)
        tap_bail("too many scratch cgroups");
    char path[4096];
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(path, sizeof(path), "%s/vcg2-ctest-%ld-%u-%lx", mount, (long)getpid(),
             counter++, (unsigned long)ts.tv_nsec);
    if (mkdir(path, 0755) < 0)
        tap_bail("mkdir %s: %s", path, strerror(errno));
    cgroups[slot] = strdup(path);
    if (!cgroups[slot])
        tap_bail("out of memory");
    return cgroups[slot];
}

static void kill_members(const char *path)
{
    char procs[4200];
    snprintf(procs, sizeof(procs), "%s/cgroup.procs", path);
    FILE *f = fopen(procs, "re");
    if (!f)
        return;
    long pid;
    while (fscanf(f, "%ld", &pid) == 1)
        if (pid > 0 && pid != getpid())
            kill((pid_t)pid, SIGKILL);
    fclose(f);
    /* Our own children: reap them so they do not linger as zombies. */
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
}

bool h_remove_cgroup(const char *path)
{
    int slot = -1;
    for (int i = 0; i < MAX_CGROUPS; i++)
        if (cgroups[i] && (cgroups[i] == path || strcmp(cgroups[i], path) == 0)) {
            slot = i;
            break;
        }
    if (slot < 0)
        return false; /* not ours: never touched */
    char *mine = cgroups[slot];
    bool removed = false;
    for (int attempt = 0; attempt < 50; attempt++) {
        kill_members(mine);
        /* The library closes its fds for the cgroup; errors do not matter
         * (the directory may already be gone). */
        vircgroup_v2_devices_remove_prog(mine);
        if (rmdir(mine) == 0 || errno == ENOENT) {
            removed = true;
            break;
        }
        if (errno != EBUSY)
            break;
        usleep(20000);
    }
    if (!removed)
        printf("# could not remove scratch cgroup %s: %s\n", mine, strerror(errno));
    cgroups[slot] = NULL;
    free(mine);
    return removed;
}

/* ---- device nodes and probes -------------------------------------------- */

const char *h_mknode(char type, int major, int minor)
{
    if (!node_dir[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(node_dir, sizeof(node_dir), "%s/vcg2-nodes-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(node_dir)) {
            int e = errno;
            node_dir[0] = '\0';
            tap_bail("mkdtemp: %s", strerror(e));
        }
    }
    int slot = -1;
    for (int i = 0; i < MAX_NODES; i++)
        if (!nodes[i]) {
            slot = i;
            break;
        }
    if (slot < 0)
        tap_bail("too many device nodes");
    char path[512];
    snprintf(path, sizeof(path), "%s/%c-%d-%d", node_dir, type, major, minor);
    mode_t mode = (type == 'b' ? S_IFBLK : S_IFCHR) | 0600;
    if (mknod(path, mode, makedev(major, minor)) < 0 && errno != EEXIST)
        tap_bail("mknod %s: %s", path, strerror(errno));
    nodes[slot] = strdup(path);
    if (!nodes[slot])
        tap_bail("out of memory");
    return nodes[slot];
}

static int run_probe(const struct h_probe *p, int idx)
{
    int fd;
    switch (p->op) {
    case H_READ:
        fd = open(p->path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        break;
    case H_WRITE:
        fd = open(p->path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        break;
    case H_RW:
        fd = open(p->path, O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
        break;
    case H_MKNOD: {
        char path[600];
        snprintf(path, sizeof(path), "%s/mknod-%ld-%d", node_dir[0] ? node_dir : "/tmp",
                 (long)getpid(), idx);
        mode_t mode = (p->type == 'b' ? S_IFBLK : S_IFCHR) | 0600;
        if (mknod(path, mode, makedev(p->major, p->minor)) < 0)
            return errno;
        unlink(path);
        return 0;
    }
    default:
        return EINVAL;
    }
    if (fd < 0)
        return errno;
    close(fd);
    return 0;
}

bool h_probe(const char *cgroup, struct h_probe *probes, size_t n)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        ok(false, "pipe: %s", strerror(errno));
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        ok(false, "fork: %s", strerror(errno));
        close(pipefd[0]);
        close(pipefd[1]);
        return false;
    }
    if (pid == 0) {
        /* Child: single-threaded parent, so only async-signal-safe-ish
         * calls that cannot deadlock; leave with _exit. */
        close(pipefd[0]);
        char procs[4200];
        snprintf(procs, sizeof(procs), "%s/cgroup.procs", cgroup);
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
            _exit(2);
        close(fd);
        for (size_t i = 0; i < n; i++) {
            int err = run_probe(&probes[i], (int)i);
            if (write(pipefd[1], &err, sizeof(err)) != sizeof(err))
                _exit(3);
        }
        _exit(0);
    }
    close(pipefd[1]);
    size_t got = 0;
    for (; got < n; got++) {
        int err;
        ssize_t r;
        do
            r = read(pipefd[0], &err, sizeof(err));
        while (r < 0 && errno == EINTR);
        if (r != sizeof(err))
            break;
        probes[got].err = err;
    }
    close(pipefd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != n || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        ok(false, "probe child in %s ran (status %#x, %zu of %zu results)", cgroup, status, got, n);
        return false;
    }
    return true;
}

bool h_allowed(int err)
{
    /* ENXIO/ENODEV: no driver for the numbers; EIO: the pty driver's answer
     * for a pty that does not exist. All come after the cgroup check. */
    return err == 0 || err == ENXIO || err == ENODEV || err == EIO;
}

static const char *op_name(enum h_op op)
{
    switch (op) {
    case H_READ: return "read";
    case H_WRITE: return "write";
    case H_RW: return "read-write";
    case H_MKNOD: return "mknod";
    }
    return "?";
}

static bool expect(const char *cgroup, struct h_probe *p, bool want_allowed, const char *what)
{
    if (!h_probe(cgroup, p, 1))
        return false;
    bool good = want_allowed ? h_allowed(p->err) : p->err == EPERM;
    ok(good, "%s: %s %s", what, op_name(p->op), want_allowed ? "allowed" : "denied (EPERM)");
    if (!good)
        tap_diag("errno %d (%s)", p->err, strerror(p->err));
    return good;
}

bool h_expect(const char *cgroup, enum h_op op, const char *path, bool want_allowed,
              const char *what)
{
    struct h_probe p = { .op = op, .path = path };
    return expect(cgroup, &p, want_allowed, what);
}

bool h_expect_mknod(const char *cgroup, char type, int major, int minor, bool want_allowed,
                    const char *what)
{
    struct h_probe p = { .op = H_MKNOD, .type = type, .major = major, .minor = minor };
    return expect(cgroup, &p, want_allowed, what);
}

char *h_list(const char *cgroup)
{
    char *s = vircgroup_v2_devices_list(cgroup);
    if (!s) {
        tap_diag("list(%s) failed: %s", cgroup, vircgroup_v2_last_error());
        s = strdup("");
    }
    return s;
}
