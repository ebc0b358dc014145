#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/log.h"
#include "core/core.h"
#include "queue/queue.h"
#include "worker/worker.h"

struct worker {
        struct mp_worker_pool *pool;
        pthread_t thread;
        char id[96];
};

struct mp_worker_pool {
        struct mp_core *core;
        atomic_bool stopping;
        int n;
        struct worker workers[];
};

static void *worker_main(void *userdata) {
        struct worker *w = userdata;
        struct mp_worker_pool *pool = w->pool;
        unsigned backoff_ms = 0;

        while (!atomic_load(&pool->stopping)) {
                struct mp_error err = { 0 };
                int r = mp_core_work_one(pool->core, w->id, 1000, &err);
                if (r < 0) {
                        /* The store is unreachable: back off rather than spin, and try
                         * again; nothing is lost, the job stays in the queue. */
                        backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 100;
                        mp_warn("%s: %s (retrying in %u ms)", w->id, err.message[0] ? err.message : strerror(-r),
                                backoff_ms);
                        struct timespec ts = { backoff_ms / 1000, (long) (backoff_ms % 1000) * 1000000 };
                        nanosleep(&ts, NULL);
                } else
                        backoff_ms = 0;
                mp_error_clear(&err);
        }
        return NULL;
}

int mp_worker_pool_start(struct mp_core *core, int n, const char *prefix,
                         struct mp_worker_pool **ret, struct mp_error *err) {
        struct mp_worker_pool *pool = calloc(1, sizeof(*pool) + (size_t) n * sizeof(struct worker));
        char host[64] = "local";

        if (!pool)
                return -ENOMEM;
        pool->core = core;
        gethostname(host, sizeof(host) - 1);
        for (int i = 0; i < n; i++) {
                struct worker *w = &pool->workers[i];
                w->pool = pool;
                snprintf(w->id, sizeof(w->id), "%s-%.40s-%d-%d", prefix, host, (int) getpid(), i);
                if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
                        pool->n = i;
                        mp_worker_pool_stop(pool);
                        return mp_error_set(err, EAGAIN, 500, "internal", "cannot start worker threads");
                }
        }
        pool->n = n;
        *ret = pool;
        return 0;
}

void mp_worker_pool_stop(struct mp_worker_pool *pool) {
        if (!pool)
                return;
        atomic_store(&pool->stopping, true);
        MP_QUEUE(pool->core->queue)->shutdown(pool->core->queue);
        for (int i = 0; i < pool->n; i++)
                pthread_join(pool->workers[i].thread, NULL);
        free(pool);
}
