/* The embedded queue: jobs are rows of the store's jobs table, so they survive a crash
 * with the tasks they belong to; a condition variable wakes the workers of this process
 * the moment a job is pushed (no polling on the call path). A timed wait still re-checks
 * the table now and then, for leases that expire. */
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

#include "queue/queue-internal.h"
#include "store/store.h"

#define LEASE_RECHECK_MS 1000

struct local_queue {
        struct mp_queue_base base;
        struct mp_store *store;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        uint64_t pushes;   /* bumped by push, so a claim never sleeps past one */
        bool closing;
        /* Completion: one process, so the listener is called directly. The rwlock lets
         * listen_done(NULL) wait for calls in flight. */
        pthread_rwlock_t listen_lock;
        mp_queue_done_fn done_cb;
        void *done_userdata;
        mp_queue_cancel_fn cancel_cb; /* under listen_lock too */
        void *cancel_userdata;
        /* This process's worker record, for workers(). */
        bool registered;
        struct mp_queue_worker me;
        int64_t started_at, last_heartbeat;
};

static int local_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                      struct mp_error *err) {
        struct local_queue *q = calloc(1, sizeof(*q));

        if (!q)
                return -ENOMEM;
        q->base.ops = &mp_queue_local_ops;
        q->store = store;
        pthread_mutex_init(&q->lock, NULL);
        mp_cond_init_monotonic(&q->cond);
        pthread_rwlock_init(&q->listen_lock, NULL);
        *ret = (struct mp_queue *) q;
        return 0;
}

static void local_close(struct mp_queue *qq) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_mutex_destroy(&q->lock);
        pthread_cond_destroy(&q->cond);
        pthread_rwlock_destroy(&q->listen_lock);
        free(q);
}

static int local_push(struct mp_queue *qq, const char *task_id, const char *function_id,
                      struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_mutex_lock(&q->lock);
        q->pushes++;
        pthread_cond_signal(&q->cond);
        pthread_mutex_unlock(&q->lock);
        return 0;
}

static int local_claim(struct mp_queue *qq, const char *worker_id, int64_t lease_ms,
                       int64_t wait_ms, char *ret_task_id, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        int64_t deadline = mp_mono_ms() + wait_ms;

        for (;;) {
                uint64_t seen;
                int64_t now, left;
                int r;

                pthread_mutex_lock(&q->lock);
                seen = q->pushes;
                bool closing = q->closing;
                pthread_mutex_unlock(&q->lock);
                if (closing)
                        return 0;

                now = mp_now_ms();
                r = MP_STORE(q->store)->job_claim(q->store, worker_id, now, now + lease_ms,
                                                  ret_task_id, err);
                if (r != 0)
                        return r;

                left = deadline - mp_mono_ms();
                if (left <= 0)
                        return 0;
                pthread_mutex_lock(&q->lock);
                if (q->pushes == seen && !q->closing) {
                        struct timespec ts = mp_mono_deadline(MP_MIN(left, LEASE_RECHECK_MS));
                        pthread_cond_timedwait(&q->cond, &q->lock, &ts);
                }
                pthread_mutex_unlock(&q->lock);
        }
}

static int local_extend(struct mp_queue *qq, const char *task_id, const char *worker_id,
                        int64_t lease_ms, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        return MP_STORE(q->store)->job_extend(q->store, task_id, worker_id,
                                              mp_now_ms() + lease_ms, err);
}

static int local_recover(struct mp_queue *qq, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        return MP_STORE(q->store)->job_release_all(q->store, err);
}

static void local_shutdown(struct mp_queue *qq) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_mutex_lock(&q->lock);
        q->closing = true;
        pthread_cond_broadcast(&q->cond);
        pthread_mutex_unlock(&q->lock);
}

/* task_finish already deleted the job row: nothing left to forget. */
static int local_ack(struct mp_queue *qq, const char *task_id, const char *worker_id,
                     struct mp_error *err) {
        return 0;
}

/* Shorten the claim's lease to the delay: the job is claimable again when it ends. */
static int local_release(struct mp_queue *qq, const char *task_id, const char *worker_id,
                         int64_t delay_ms, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        int r = MP_STORE(q->store)->job_extend(q->store, task_id, worker_id,
                                               mp_now_ms() + MP_MAX(delay_ms, 0), err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return 0;
        }
        return r < 0 ? r : 1;
}

static int local_notify_done(struct mp_queue *qq, const char *task_id, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_rwlock_rdlock(&q->listen_lock);
        if (q->done_cb)
                q->done_cb(q->done_userdata, task_id);
        pthread_rwlock_unlock(&q->listen_lock);
        return 0;
}

static int local_listen_done(struct mp_queue *qq, mp_queue_done_fn cb, void *userdata,
                             struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_rwlock_wrlock(&q->listen_lock);
        q->done_cb = cb;
        q->done_userdata = cb ? userdata : NULL;
        pthread_rwlock_unlock(&q->listen_lock);
        return 0;
}

static int local_notify_cancel(struct mp_queue *qq, const char *task_id, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_rwlock_rdlock(&q->listen_lock);
        if (q->cancel_cb)
                q->cancel_cb(q->cancel_userdata, task_id);
        pthread_rwlock_unlock(&q->listen_lock);
        return 0;
}

static int local_listen_cancel(struct mp_queue *qq, mp_queue_cancel_fn cb, void *userdata,
                               struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_rwlock_wrlock(&q->listen_lock);
        q->cancel_cb = cb;
        q->cancel_userdata = cb ? userdata : NULL;
        pthread_rwlock_unlock(&q->listen_lock);
        return 0;
}

static int local_register(struct mp_queue *qq, struct mp_queue_worker *w, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        if (!w->id[0])
                snprintf(w->id, sizeof(w->id), "%.60s-%d", w->host[0] ? w->host : "local", w->pid);
        pthread_mutex_lock(&q->lock);
        q->me = *w;
        q->me.shard = 0; /* one queue, one shard */
        q->registered = true;
        q->started_at = q->last_heartbeat = mp_now_ms();
        pthread_mutex_unlock(&q->lock);
        return 0;
}

static int local_heartbeat(struct mp_queue *qq, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_mutex_lock(&q->lock);
        q->last_heartbeat = mp_now_ms();
        pthread_mutex_unlock(&q->lock);
        return 0;
}

static int local_unregister(struct mp_queue *qq, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        pthread_mutex_lock(&q->lock);
        q->registered = false;
        pthread_mutex_unlock(&q->lock);
        return 0;
}

static int local_workers(struct mp_queue *qq, json_t **ret, struct mp_error *err) {
        struct local_queue *q = (struct local_queue *) qq;
        json_t *items = json_array();
        struct mp_queue_worker me;
        bool registered;
        int64_t started, beat;

        pthread_mutex_lock(&q->lock);
        registered = q->registered;
        me = q->me;
        started = q->started_at;
        beat = q->last_heartbeat = mp_now_ms(); /* in this process, it is alive right now */
        pthread_mutex_unlock(&q->lock);
        if (registered) {
                _cleanup_json_ json_t *st = me.status ? me.status(me.userdata) : NULL;
                json_t *run = json_object_get(st, "running"), *warm = json_object_get(st, "warm_instances"),
                       *hit = json_object_get(st, "cache_hit_rate");
                json_array_append_new(items, json_pack("{s:s,s:s,s:i,s:I,s:I,s:I,s:i,s:i,s:O,s:O}",
                        "id", me.id, "host", me.host, "pid", me.pid, "started_at", (json_int_t) started,
                        "last_heartbeat", (json_int_t) beat, "running", (json_int_t) json_integer_value(run),
                        "capacity", me.capacity, "shard", 0, "warm_instances", warm ? warm : json_null(),
                        "cache_hit_rate", hit ? hit : json_null()));
        }
        *ret = json_pack("{s:o}", "items", items);
        return *ret ? 0 : -ENOMEM;
}

/* The jobs are the store's: the store's own check (GET /readyz) covers them. */
static int local_ping(struct mp_queue *qq, struct mp_error *err) {
        (void) qq;
        (void) err;
        return 0;
}

const struct mp_queue_ops mp_queue_local_ops = {
        .scheme = "local",
        .open = local_open,
        .close = local_close,
        .push = local_push,
        .claim = local_claim,
        .extend = local_extend,
        .recover = local_recover,
        .shutdown = local_shutdown,
        .ack = local_ack,
        .release = local_release,
        .notify_done = local_notify_done,
        .listen_done = local_listen_done,
        .notify_cancel = local_notify_cancel,
        .listen_cancel = local_listen_cancel,
        .register_worker = local_register,
        .heartbeat = local_heartbeat,
        .unregister_worker = local_unregister,
        .workers = local_workers,
        .ping = local_ping,
};
