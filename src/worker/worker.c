#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "core/core.h"
#include "exec/exec.h"
#include "queue/queue.h"
#include "worker/worker.h"

struct worker {
        struct mp_worker_pool *pool;
        pthread_t thread;
        char id[MP_QUEUE_WORKER_ID_MAX + 16];
};

struct mp_worker_pool {
        struct mp_core *core;
        atomic_bool stopping;
        atomic_int running; /* calls being run */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        int exited;         /* threads that returned */
        int n;
        struct worker workers[];
};

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        struct mp_worker_pool *pool = w->pool;
        unsigned backoff_ms = 0;

        while (!atomic_load(&pool->stopping)) {
                struct mp_error err = { 0 };
                int r = mp_core_work_one_counted(pool->core, w->id, 1000, &pool->running, &err);
                if (r < 0) {
                        /* The store or the queue is unreachable: back off rather than
                         * spin, and try again; nothing is lost, the job stays queued. */
                        backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 100;
                        mp_warn("%s: %s (retrying in %u ms)", w->id, err.message[0] ? err.message : strerror(-r),
                                backoff_ms);
                        struct timespec ts = { backoff_ms / 1000, (long) (backoff_ms % 1000) * 1000000 };
                        nanosleep(&ts, NULL);
                } else
                        backoff_ms = 0;
                mp_error_clear(&err);
        }
        pthread_mutex_lock(&pool->lock);
        pool->exited++;
        pthread_cond_broadcast(&pool->cond);
        pthread_mutex_unlock(&pool->lock);
        return NULL;
}

/* A task was cancelled somewhere (the queue's listener thread): if one of our calls
 * runs it, the executor kills it; otherwise this is a no-op. */
static void on_cancel(void *userdata, const char *task_id) {
        struct mp_worker_pool *pool = userdata;
        int r = mp_executor_cancel(pool->core->executor, task_id);
        if (r < 0 && r != -EINVAL)
                mp_warn("task %s: cannot stop its call: %s", task_id, strerror(-r));
}

/* The heartbeat's figures (called from the queue's heartbeat thread). */
static json_t *pool_status(void *userdata) {
        struct mp_worker_pool *pool = userdata;
        json_t *st = mp_core_exec_status(pool->core);
        if (st)
                json_object_set_new(st, "running", json_integer(atomic_load(&pool->running)));
        return st;
}

int mp_worker_pool_start(struct mp_core *core, int n, int shard, struct mp_worker_pool **ret,
                         struct mp_error *err) {
        struct mp_worker_pool *pool;
        struct mp_queue_worker me = { .pid = (int) getpid(), .capacity = n, .shard = shard };
        int r;

        if (n <= 0) {
                *ret = NULL;
                return 0;
        }
        pool = calloc(1, sizeof(*pool) + (size_t) n * sizeof(struct worker));
        if (!pool)
                return -ENOMEM;
        pool->core = core;
        pthread_mutex_init(&pool->lock, NULL);
        mp_cond_init_monotonic(&pool->cond);
        if (gethostname(me.host, sizeof(me.host) - 1) < 0)
                snprintf(me.host, sizeof(me.host), "localhost");
        me.status = pool_status;
        me.userdata = pool;
        if ((r = MP_QUEUE(core->queue)->register_worker(core->queue, &me, err)) < 0) {
                mp_worker_pool_stop(pool);
                return r;
        }
        /* Before the threads: a cancel must find its call from the first claim on. */
        if (core->executor && (r = MP_QUEUE(core->queue)->listen_cancel(core->queue, on_cancel, pool, err)) < 0) {
                mp_worker_pool_stop(pool);
                return r;
        }
        for (int i = 0; i < n; i++) {
                struct worker *w = &pool->workers[i];
                w->pool = pool;
                /* "<process>/<n>": the queue finds the process (and its heartbeat) behind
                 * any claim, and the task row records which thread ran it. */
                snprintf(w->id, sizeof(w->id), "%s/%d", me.id, i);
                if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                        pool->n = i;
                        mp_worker_pool_stop(pool);
                        return mp_error_set(err, EAGAIN, 500, "internal", "cannot start worker threads");
                }
        }
        pool->n = n;
        mp_info("worker %s joined the queue with %d thread(s)", me.id, n);
        *ret = pool;
        return 0;
}

int mp_worker_pool_running(struct mp_worker_pool *pool) {
        return pool ? atomic_load(&pool->running) : 0;
}

int mp_worker_pool_drain(struct mp_worker_pool *pool, int64_t grace_ms) {
        struct timespec ts;
        int r = 0;

        if (!pool)
                return 0;
        atomic_store(&pool->stopping, true);
        /* Waiting claims return at once; running calls go on. */
        MP_QUEUE(pool->core->queue)->shutdown(pool->core->queue);
        ts = mp_mono_deadline(grace_ms);
        pthread_mutex_lock(&pool->lock);
        while (pool->exited < pool->n && r == 0)
                if (pthread_cond_timedwait(&pool->cond, &pool->lock, &ts) == ETIMEDOUT)
                        r = pool->exited < pool->n ? -ETIMEDOUT : 0;
        pthread_mutex_unlock(&pool->lock);
        return r;
}

void mp_worker_pool_stop(struct mp_worker_pool *pool) {
        _cleanup_error_ struct mp_error err = { 0 };
        if (!pool)
                return;
        atomic_store(&pool->stopping, true);
        MP_QUEUE(pool->core->queue)->shutdown(pool->core->queue);
        for (int i = 0; i < pool->n; i++)
                pthread_join(pool->workers[i].thread, NULL);
        /* Waits for a cancel callback in flight: none may run on a freed pool. */
        if (pool->core->executor)
                (void) MP_QUEUE(pool->core->queue)->listen_cancel(pool->core->queue, NULL, NULL, NULL);
        if (MP_QUEUE(pool->core->queue)->unregister_worker(pool->core->queue, &err) < 0)
                mp_warn("leaving the queue: %s", err.message);
        pthread_mutex_destroy(&pool->lock);
        pthread_cond_destroy(&pool->cond);
        free(pool);
}

void mp_worker_pool_abandon(struct mp_worker_pool *pool) {
        _cleanup_error_ struct mp_error err = { 0 };
        if (!pool)
                return;
        if (MP_QUEUE(pool->core->queue)->unregister_worker(pool->core->queue, &err) < 0)
                mp_warn("leaving the queue: %s (its jobs go back when its heartbeat expires)", err.message);
}
