/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * log-threads: the log callback receives the library's messages with the
 * caller's opaque pointer, and stops when unset; last_error is per thread
 * (two threads fail differently at the same moment and each reads its own
 * message and errno). Needs no privileges: the failures are bad arguments.
 */
#include <vircgroup_v2_devices.h>

#include "harness.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct log_ctx {
    pthread_mutex_t lock;
    int calls;
    int bad_opaque;
    int min_level, max_level;
    char last[1024];
    bool saw_nonexistent;
};

static void on_log(int level, const char *message, void *opaque)
{
    struct log_ctx *ctx = opaque;
    pthread_mutex_lock(&ctx->lock);
    ctx->calls++;
    if (level < ctx->min_level)
        ctx->min_level = level;
    if (level > ctx->max_level)
        ctx->max_level = level;
    snprintf(ctx->last, sizeof(ctx->last), "%s", message ? message : "(null)");
    if (message && strstr(message, "/nonexistent-vcg2"))
        ctx->saw_nonexistent = true;
    pthread_mutex_unlock(&ctx->lock);
}

#define ROUNDS 200

static pthread_barrier_t barrier;

struct worker {
    const char *path;
    char type;
    int major;
    const char *needle; /* must be in this thread's message */
    const char *other;  /* must not be */
    int wrong;          /* rounds where the thread saw something else */
    char seen[512];
};

static void *work(void *arg)
{
    struct worker *w = arg;
    for (int i = 0; i < ROUNDS; i++) {
        errno = 0;
        int r = vircgroup_v2_allow_device(w->path, w->type, w->major, 3, VIRCGROUP_DEVICE_RW);
        int e = errno;
        /* Both threads have failed before either reads its message. */
        pthread_barrier_wait(&barrier);
        const char *msg = vircgroup_v2_last_error();
        if (r != -1 || e != EINVAL || !strstr(msg, w->needle) || strstr(msg, w->other)) {
            w->wrong++;
            snprintf(w->seen, sizeof(w->seen), "ret %d errno %d '%s'", r, e, msg);
        }
        pthread_barrier_wait(&barrier);
    }
    return NULL;
}

int main(void)
{
    tap_init();

    struct log_ctx ctx = { .lock = PTHREAD_MUTEX_INITIALIZER, .min_level = 99 };
    vircgroup_v2_set_log_func(on_log, &ctx);
    ok(!vircgroup_v2_devices_available("/nonexistent-vcg2"), "available() on a missing path is false");
    pthread_mutex_lock(&ctx.lock);
    ok(ctx.calls > 0, "the log callback received %d message(s)", ctx.calls);
    ok(ctx.saw_nonexistent, "a message names the path: '%s'", ctx.last);
    ok(ctx.min_level >= 1 && ctx.max_level <= 4, "levels are virLogPriority values (1-4): %d-%d",
       ctx.min_level, ctx.max_level);
    int before = ctx.calls;
    pthread_mutex_unlock(&ctx.lock);

    errno = 0;
    int r = vircgroup_v2_allow_device("relative/vcg2", 'c', 1, 3, VIRCGROUP_DEVICE_RW);
    h_failed(r, errno, EINVAL, "not absolute", "allow_device on a relative path");
    pthread_mutex_lock(&ctx.lock);
    ok(ctx.calls > before, "a failure is logged too: '%s'", ctx.last);
    pthread_mutex_unlock(&ctx.lock);

    vircgroup_v2_set_log_func(NULL, NULL);
    pthread_mutex_lock(&ctx.lock);
    before = ctx.calls;
    pthread_mutex_unlock(&ctx.lock);
    vircgroup_v2_devices_available("/nonexistent-vcg2");
    vircgroup_v2_allow_device("relative/vcg2", 'c', 1, 3, VIRCGROUP_DEVICE_RW);
    pthread_mutex_lock(&ctx.lock);
    is_int(ctx.calls, before, "no message after set_log_func(NULL, NULL)");
    pthread_mutex_unlock(&ctx.lock);

    /* last_error per thread. The main thread's message stays its own. */
    errno = 0;
    r = vircgroup_v2_deny_device("/", 'c', 1, 3, 0);
    h_failed(r, errno, EINVAL, "permissions", "deny_device with perms 0 (main thread)");
    char main_msg[512];
    snprintf(main_msg, sizeof(main_msg), "%s", vircgroup_v2_last_error());

    pthread_barrier_init(&barrier, NULL, 2);
    struct worker a = { .path = "/", .type = 'x', .major = 1, .needle = "type",
                        .other = "major" };
    struct worker b = { .path = "/", .type = 'c', .major = 5000, .needle = "major",
                        .other = "type" };
    pthread_t ta, tb;
    ok(pthread_create(&ta, NULL, work, &a) == 0 && pthread_create(&tb, NULL, work, &b) == 0,
       "two threads started");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    pthread_barrier_destroy(&barrier);
    is_int(a.wrong, 0, "thread A read its own error (bad type) in all %d rounds %s", ROUNDS, a.seen);
    is_int(b.wrong, 0, "thread B read its own error (bad major) in all %d rounds %s", ROUNDS, b.seen);
    is_str(vircgroup_v2_last_error(), main_msg, "the main thread's last_error is untouched");

    return tap_done();
}
