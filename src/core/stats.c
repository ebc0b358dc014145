/* This process's counts for GET /metrics: tasks made and ended, and how long runs took.
 * Relaxed atomics only: counting costs an atomic add on the call path, never a lock. */
#include <string.h>

#include "core/core-internal.h"

const char *const mp_task_end_names[MP_END_N] = { "completed", "failed", "timed_out", "cancelled" };

/* execution_ms of runs, in seconds: from a trivial call to the longest timeout. */
static const double execution_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1,
                                           2.5, 5, 10, 30, 60, 300, 1800, 3600 };

void mp_hist_init(struct mp_hist *h, const double *bounds, int nbounds) {
        h->bounds = bounds;
        h->nbounds = nbounds < 0 ? 0 : nbounds > MP_HIST_MAX_BOUNDS ? MP_HIST_MAX_BOUNDS : nbounds;
        for (int i = 0; i <= MP_HIST_MAX_BOUNDS; i++)
                atomic_init(&h->counts[i], 0);
        atomic_init(&h->sum_us, 0);
}

void mp_hist_observe(struct mp_hist *h, double seconds) {
        int i = 0;

        if (!(seconds >= 0)) /* also NaN */
                seconds = 0;
        while (i < h->nbounds && seconds > h->bounds[i])
                i++;
        atomic_fetch_add_explicit(&h->counts[i], 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&h->sum_us, (uint_fast64_t) (seconds * 1e6), memory_order_relaxed);
}

void mp_core_stats_init(struct mp_core_stats *st) {
        st->start_ms = mp_now_ms();
        atomic_init(&st->tasks_created, 0);
        for (int i = 0; i < MP_END_N; i++)
                atomic_init(&st->tasks_ended[i], 0);
        mp_hist_init(&st->execution, execution_bounds, (int) ELEMENTSOF(execution_bounds));
        for (int i = 0; i < MP_RUN_END_N; i++)
                atomic_init(&st->runs_ended[i], 0);
        for (int i = 0; i < MP_END_N; i++) {
                atomic_init(&st->nodes_ended[i], 0);
                atomic_init(&st->points_ended[i], 0);
        }
        for (int i = 0; i < MP_QUOTA_N; i++)
                atomic_init(&st->quota_refused[i], 0);
        atomic_init(&st->cache_hits, 0);
        atomic_init(&st->quota_held, 0);
        for (int i = 0; i < 2; i++)
                atomic_init(&st->env_builds[i], 0);
        atomic_init(&st->env_build_ms, 0);
}

void mp_core_count_created(struct mp_core *core) {
        atomic_fetch_add_explicit(&core->stats.tasks_created, 1, memory_order_relaxed);
}

void mp_core_count_end(struct mp_core *core, json_t *fields) {
        const char *status = json_string_value(json_object_get(fields, "status"));
        json_t *ms = json_object_get(fields, "execution_ms");

        if (!status)
                return;
        for (int i = 0; i < MP_END_N; i++)
                if (!strcmp(status, mp_task_end_names[i])) {
                        atomic_fetch_add_explicit(&core->stats.tasks_ended[i], 1, memory_order_relaxed);
                        break;
                }
        if (json_is_integer(ms))
                mp_hist_observe(&core->stats.execution, (double) json_integer_value(ms) / 1000.0);
}

/* --- what wave 2 added --- */

const char *const mp_run_end_names[MP_RUN_END_N] = { "completed", "failed", "cancelled" };
const char *const mp_quota_names[MP_QUOTA_N] = { "concurrent_calls", "calls_per_day", "cpu_seconds_per_month",
                                                 "storage_mb" };

static void bump(atomic_uint_fast64_t *c) {
        atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* The index of name in names[n], or -1. */
static int index_of(const char *const *names, int n, const char *name) {
        for (int i = 0; name && i < n; i++)
                if (!strcmp(names[i], name))
                        return i;
        return -1;
}

void mp_core_count_run_end(struct mp_core *core, const char *status) {
        int i = index_of(mp_run_end_names, MP_RUN_END_N, status);
        if (i >= 0)
                bump(&core->stats.runs_ended[i]);
}

void mp_core_count_member_end(struct mp_core *core, json_t *task) {
        int i = index_of(mp_task_end_names, MP_END_N, json_string_value(json_object_get(task, "status")));
        if (i < 0)
                return;
        if (json_is_string(json_object_get(task, "workflow_run_id")))
                bump(&core->stats.nodes_ended[i]);
        if (json_is_string(json_object_get(task, "study_id")))
                bump(&core->stats.points_ended[i]);
}

void mp_core_count_cache_hit(struct mp_core *core) {
        bump(&core->stats.cache_hits);
}

void mp_core_count_quota_refused(struct mp_core *core, const struct mp_error *err) {
        int i = index_of(mp_quota_names, MP_QUOTA_N,
                         err && json_is_object(err->errors) ? json_string_value(json_object_get(err->errors, "quota"))
                                                            : NULL);
        if (i >= 0)
                bump(&core->stats.quota_refused[i]);
}

void mp_core_count_quota_held(struct mp_core *core) {
        bump(&core->stats.quota_held);
}

void mp_core_count_env_build(struct mp_core *core, bool ok, int64_t ms) {
        bump(&core->stats.env_builds[ok ? 0 : 1]);
        atomic_fetch_add_explicit(&core->stats.env_build_ms, (uint_fast64_t) (ms > 0 ? ms : 0), memory_order_relaxed);
}
