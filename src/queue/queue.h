/* queue/: the job queue port. A job is a task id; delivery is at-least-once with
 * leases, completion is idempotent in the store (task_finish moves a task once).
 * Every operation returns >= 0 or -errno with err filled; all are thread-safe. */
#pragma once

#include <stdint.h>

#include "base/error.h"
#include "base/util.h"

struct mp_store;
struct mp_queue;

struct mp_queue_ops {
        const char *scheme; /* "local" */
        /* url "local:": the jobs live in the store (its jobs table). */
        int (*open)(const char *url, struct mp_store *store, struct mp_queue **ret,
                    struct mp_error *err);
        void (*close)(struct mp_queue *q);
        /* The task (already stored with its job by task_create) is ready: wake a worker. */
        int (*push)(struct mp_queue *q, const char *task_id, struct mp_error *err);
        /* Wait up to wait_ms for a job and claim it for lease_ms: 1 with its task id in
         * ret_task_id (MP_ID_LEN + 1 bytes), 0 when none came (or the queue is closing). */
        int (*claim)(struct mp_queue *q, const char *worker_id, int64_t lease_ms,
                     int64_t wait_ms, char *ret_task_id, struct mp_error *err);
        /* Keep a claim alive while the job runs. */
        int (*extend)(struct mp_queue *q, const char *task_id, const char *worker_id,
                      int64_t lease_ms, struct mp_error *err);
        /* Jobs claimed by a process that is gone go back to the queue (start-up of the
         * embedded server). Returns how many. */
        int (*recover)(struct mp_queue *q, struct mp_error *err);
        /* Wake every waiting claim so workers can stop. */
        void (*shutdown)(struct mp_queue *q);
};

struct mp_queue_base {
        const struct mp_queue_ops *ops;
};
#define MP_QUEUE(q) (((struct mp_queue_base *) (q))->ops)

int mp_queue_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                  struct mp_error *err);
void mp_queue_close(struct mp_queue *q);
