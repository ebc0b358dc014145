/* queue/: the job queue port. A job is a task id; delivery is at-least-once with
 * leases, completion is idempotent in the store (task_finish moves a task once).
 * Every operation returns >= 0 or -errno with err (may be NULL) filled; all are
 * thread-safe.
 *
 * Besides jobs, the port carries what several processes must share: which workers are
 * alive (register_worker, heartbeat, workers), that a task ended (notify_done,
 * listen_done) and that a running task was cancelled (notify_cancel, listen_cancel), so that nothing above it knows whether it runs in one process (local:)
 * or across machines (redis://). */
#pragma once

#include <stdint.h>
#include <jansson.h>

#include "base/error.h"
#include "base/util.h"

struct mp_store;
struct mp_queue;

/* Told that a task ended. task_id NULL means "notices may have been lost (the
 * connection to the queue broke): look again at whatever you wait for". */
typedef void (*mp_queue_done_fn)(void *userdata, const char *task_id);
/* Told that a running task was cancelled: stop its call if this process runs it. */
typedef void (*mp_queue_cancel_fn)(void *userdata, const char *task_id);

/* A worker process as it joins. Thread ids given to claim/ack are "<id>/<n>", so the
 * process behind any claim can be found from the id a task row keeps. */
#define MP_QUEUE_WORKER_ID_MAX 96
struct mp_queue_worker {
        char id[MP_QUEUE_WORKER_ID_MAX]; /* unique per process: "<host>-<pid>-<random>" */
        char host[64];
        int pid;
        int capacity; /* calls it runs at once */
        int shard;    /* home shard; -1: let the queue pick */
        /* The live figures the heartbeat publishes: a new object {"running": n,
         * "warm_instances": n|null, "cache_hit_rate": x|null}, or NULL. Called from the
         * queue's heartbeat thread. */
        json_t *(*status)(void *userdata);
        void *userdata;
};

struct mp_queue_ops {
        const char *scheme; /* "local", "redis" */
        /* url "local:": the jobs live in the store (its jobs table).
         * url "redis://host:port[/db][?shards=N&worker_ttl=S]": see queue-redis.c. The
         * store is where jobs are recovered from when the queue lost them. */
        int (*open)(const char *url, struct mp_store *store, struct mp_queue **ret,
                    struct mp_error *err);
        /* Stops the queue's threads; does not unregister (a close without
         * unregister_worker is what a crash looks like to the other processes). */
        void (*close)(struct mp_queue *q);
        /* The task (already stored with its job by task_create) is ready: wake a worker.
         * function_id picks the shard (a function's calls go where its instances are
         * warm). A failure loses nothing (the store has the job; see recover). */
        int (*push)(struct mp_queue *q, const char *task_id, const char *function_id,
                    struct mp_error *err);
        /* Wait up to wait_ms for a job and claim it for lease_ms: 1 with its task id in
         * ret_task_id (MP_ID_LEN + 1 bytes), 0 when none came (or the queue is closing). */
        int (*claim)(struct mp_queue *q, const char *worker_id, int64_t lease_ms,
                     int64_t wait_ms, char *ret_task_id, struct mp_error *err);
        /* Keep a claim alive while the job runs. */
        int (*extend)(struct mp_queue *q, const char *task_id, const char *worker_id,
                      int64_t lease_ms, struct mp_error *err);
        /* The claimed job is done with (its task ended, or there was nothing to run):
         * forget it. Called after task_finish. */
        int (*ack)(struct mp_queue *q, const char *task_id, const char *worker_id,
                   struct mp_error *err);
        /* The claimed job could not be run or its end could not be recorded (the store
         * or the object store is down): give up the claim without ending the task, so
         * that any worker may take the job again, not before delay_ms (a dead backend
         * is not hammered). 1 when released, 0 when worker_id did not hold it. */
        int (*release)(struct mp_queue *q, const char *task_id, const char *worker_id,
                       int64_t delay_ms, struct mp_error *err);
        /* Jobs claimed by a process that is gone go back to the queue, and jobs the
         * queue lost are taken again from the store (start-up). Returns how many. */
        int (*recover)(struct mp_queue *q, struct mp_error *err);
        /* Wake every waiting claim so workers can stop. */
        void (*shutdown)(struct mp_queue *q);

        /* task_finish moved this task to an end state: tell every listener, in every
         * process. */
        int (*notify_done)(struct mp_queue *q, const char *task_id, struct mp_error *err);
        /* Call cb for every task that ends from now on (one listener per queue; cb NULL
         * stops listening and waits until no call is in flight). */
        int (*listen_done)(struct mp_queue *q, mp_queue_done_fn cb, void *userdata,
                           struct mp_error *err);
        /* A task was cancelled (the store already says so): tell every process, so the
         * one running its call kills it. Best effort: a lost notice leaves the call to
         * run to its end or its time limit, and its result is dropped as before. */
        int (*notify_cancel)(struct mp_queue *q, const char *task_id, struct mp_error *err);
        /* Call cb for every cancel notice from now on (one listener per queue, the
         * worker pool's; cb NULL stops and waits until no call is in flight). */
        int (*listen_cancel)(struct mp_queue *q, mp_queue_cancel_fn cb, void *userdata,
                             struct mp_error *err);

        /* This process is a worker (w is copied; w->id filled when empty): from now on
         * the queue keeps its record alive with a heartbeat, and claims of this process
         * live as long as it does. */
        int (*register_worker)(struct mp_queue *q, struct mp_queue_worker *w,
                               struct mp_error *err);
        /* Publish the worker's record now (the heartbeat thread does it on its own). */
        int (*heartbeat)(struct mp_queue *q, struct mp_error *err);
        /* Leaving: jobs this process still holds go back to the queue, its record goes. */
        int (*unregister_worker)(struct mp_queue *q, struct mp_error *err);
        /* Live workers: {"items": [{"id","host","pid","started_at","last_heartbeat",
         * "running","capacity","shard","warm_instances","cache_hit_rate"}]} (times in
         * epoch ms). */
        int (*workers)(struct mp_queue *q, json_t **ret, struct mp_error *err);
        /* Is the queue reachable? A cheap round trip (Redis: PING), for GET /readyz: 0, or
         * -errno with a 503 in err. */
        int (*ping)(struct mp_queue *q, struct mp_error *err);
};

struct mp_queue_base {
        const struct mp_queue_ops *ops;
};
#define MP_QUEUE(q) (((struct mp_queue_base *) (q))->ops)

int mp_queue_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                  struct mp_error *err);
void mp_queue_close(struct mp_queue *q);

/* The stable hash that places a function on a shard (FNV-1a, 32 bits): the same in
 * every process and every version, since shards are shared. */
uint32_t mp_queue_shard_hash(const char *s);
/* The process part of a worker thread id ("<id>/<n>" -> "<id>") into buf. */
void mp_queue_worker_process(const char *worker_id, char *buf, size_t size);
