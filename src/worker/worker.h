/* worker/: the job loop. N threads each claim a job, run it through core/ (which asks
 * exec/ to run it sandboxed) and record the end. */
#pragma once

#include "base/error.h"

struct mp_core;
struct mp_worker_pool;

/* Start n worker threads named "<prefix>-<i>". 0 or -errno. */
int mp_worker_pool_start(struct mp_core *core, int n, const char *prefix,
                         struct mp_worker_pool **ret, struct mp_error *err);
/* Let running calls finish, then stop the threads and free the pool. NULL is fine. */
void mp_worker_pool_stop(struct mp_worker_pool *pool);
