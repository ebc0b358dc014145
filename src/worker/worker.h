/* worker/: the job loop. N threads each claim a job, run it through core/ (which asks
 * exec/ to run it sandboxed) and record the end. The pool joins the queue as one worker
 * process (register_worker), so other processes see it, and its jobs go back to the
 * queue if it dies. */
#pragma once

#include "base/error.h"

struct mp_core;
struct mp_worker_pool;

/* Start n worker threads (n may be 0: nothing starts, *ret = NULL). shard: the home
 * shard of a sharded queue, -1 to let the queue pick. 0 or -errno. */
int mp_worker_pool_start(struct mp_core *core, int n, int shard, struct mp_worker_pool **ret,
                         struct mp_error *err);
/* Stop claiming and give running calls up to grace_ms to finish: 0 when every thread
 * is done (the pool can be stopped), -ETIMEDOUT when some still run. */
int mp_worker_pool_drain(struct mp_worker_pool *pool, int64_t grace_ms);
/* Calls running now. */
int mp_worker_pool_running(struct mp_worker_pool *pool);
/* Let running calls finish, then stop the threads, leave the queue and free the pool.
 * NULL is fine. */
void mp_worker_pool_stop(struct mp_worker_pool *pool);
/* After a drain that timed out: hand the jobs still running back to the queue and
 * leave it, without waiting for the threads (the process exits next). */
void mp_worker_pool_abandon(struct mp_worker_pool *pool);
