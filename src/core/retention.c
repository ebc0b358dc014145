/* core/: deleting tasks, the companies' retention of tasks, and the collector that
 * applies it and removes orphaned objects (docs/api.md#deleting-a-task,
 * docs/operations.md#the-collector).
 *
 * A task's objects (its spilled result, error and logs, its artifacts) live under
 * "tasks/<id>/" in the object store. A result-cache hit copies a task's row, not its
 * objects: the copy names the task it copied (cached_from) and shows that task's
 * objects. So a task's objects go once no row is that task or a copy of it, and a
 * deletion removes the row first and the objects after: a crash between the two leaves
 * objects that no row shows, which the collector finds and removes. */
#include <inttypes.h>
#include <pthread.h>
#include <string.h>

#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"

static const char *str_field(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* Remove the objects under tasks/<id>/ when no row shows them any more. */
static int drop_objects(struct mp_core *core, const char *id, struct mp_error *err) {
        char prefix[MP_ID_LEN + 16];
        int r = MP_STORE(core->store)->task_refs(core->store, id, err);

        if (r != 0)
                return r < 0 ? r : 0;
        snprintf(prefix, sizeof(prefix), "tasks/%s/", id);
        return MP_BLOBS(core->blobs)->del_prefix(core->blobs, prefix, err);
}

/* Delete an ended task (t: its row) and then its objects, and those of the task it
 * copied when that one is gone and this was its last copy. 1 deleted, 0 not ended,
 * -ENOENT gone already. Objects that cannot be deleted now are left to the collector
 * (they are orphans once the row is gone): logged, not an error. */
static int delete_task(struct mp_core *core, json_t *t, struct mp_error *err) {
        _cleanup_error_ struct mp_error berr = { 0 };
        const char *id = str_field(t, "id"), *from = str_field(t, "cached_from");
        int r = MP_STORE(core->store)->task_delete(core->store, id, err);

        if (r <= 0)
                return r;
        if (drop_objects(core, id, &berr) < 0 || (from && drop_objects(core, from, &berr) < 0))
                mp_warn("task %s was deleted, but not its stored objects: %s (the collector removes them later)",
                        id, berr.message[0] ? berr.message : "(no message)");
        return 1;
}

int mp_core_task_delete(struct mp_core *core, const struct mp_principal *p, const char *id,
                        struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL, *member = NULL;
        const char *status, *run, *study;
        int r;

        if ((r = mp_core_task_load(core, p, id, &t, err)) < 0)
                return r;
        status = str_field(t, "status");
        if (!mp_core_status_ended(status))
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "task %s is %s: cancel it first (POST /api/v1/tasks/%s/cancel), then "
                                    "delete it", id, status ? status : "not ended", id);
        /* A run's or a study's task is part of its record (its state and results name
         * it): those go with the company's retention, not one by one. */
        if ((run = str_field(t, "workflow_run_id")))
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "task %s belongs to workflow run %s: a run's tasks are not deleted one "
                                    "by one (the company's retention removes them)", id, run);
        if ((study = str_field(t, "study_id")))
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "task %s is point %" JSON_INTEGER_FORMAT " of study %s: a study's tasks "
                                    "are not deleted one by one (the company's retention removes them)", id,
                                    json_integer_value(json_object_get(t, "point_index")), study);
        r = MP_STORE(core->store)->task_study_member(core->store, id, &member, err);
        if (r == 0)
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "task %s is grouped in study %s: a study's tasks are not deleted one by "
                                    "one (the company's retention removes them)", id, str_field(member, "study_id"));
        if (r != -ENOENT)
                return r;
        mp_error_clear(err);
        r = delete_task(core, t, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "task", id);
        }
        if (r < 0)
                return r;
        if (r == 0) /* it cannot leave an end state; kept for the store's contract */
                return mp_error_set(err, EBUSY, 409, "conflict", "task %s has not ended", id);
        mp_core_audit_by(core, p, "task_deleted", id, NULL);
        return 0;
}

/* --- a company's retention --- */

static int company_of(const struct mp_principal *p, struct mp_error *err) {
        if (!p->company_id[0])
                return mp_error_set(err, ENOENT, 404, "not_found",
                                    "you belong to no company: retention is set per company");
        return 0;
}

static int retention_view(struct mp_core *core, const char *company_id, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        json_t *days;
        int r = MP_STORE(core->store)->company_retention(core->store, company_id, &row, err);

        if (r < 0)
                return r;
        days = json_object_get(row, "task_retention_days");
        *ret = json_pack("{s:O}", "task_days", json_is_integer(days) ? days : json_null());
        return *ret ? 0 : -ENOMEM;
}

int mp_core_retention_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                          struct mp_error *err) {
        int r = company_of(p, err);
        return r < 0 ? r : retention_view(core, p->company_id, ret, err);
}

int mp_core_retention_set(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                          struct mp_error *err) {
        const char *key;
        json_t *v, *days;
        int r;

        _Static_assert(MP_MAX_RETENTION_DAYS == 36500, "the messages below name the bound");
        if ((r = company_of(p, err)) < 0)
                return r;
        if (!mp_core_is_company_admin(p))
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "only an admin of your company may set its retention");
        json_object_foreach(body, key, v)
                if (strcmp(key, "task_days"))
                        mp_error_add_field(err, key, "is not a field of a retention policy (only \"task_days\")");
        days = json_object_get(body, "task_days");
        if (!days)
                mp_error_add_field(err, "task_days",
                                   "is required: a number of days from 1 to 36500, or null to keep "
                                   "tasks forever");
        else if (!json_is_null(days) && (!json_is_integer(days) || json_integer_value(days) < 1 ||
                                         json_integer_value(days) > MP_MAX_RETENTION_DAYS))
                mp_error_add_field(err, "task_days",
                                   "must be a whole number of days from 1 to 36500, or null to keep "
                                   "tasks forever");
        if ((r = mp_core_validation_done(err, "retention policy")) < 0)
                return r;
        r = MP_STORE(core->store)->company_set_retention(core->store, p->company_id,
                                                         json_is_null(days) ? -1 : json_integer_value(days), err);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, "retention_changed", p->company_id, json_pack("{s:O}", "task_days", days));
        return retention_view(core, p->company_id, ret, err);
}

/* --- the collector --- */

/* Tasks past their company's retention, in batches, oldest first. */
static int collect_expired(struct mp_core *core, int64_t now, json_int_t *ret_n, struct mp_error *err) {
        for (;;) {
                _cleanup_json_ json_t *rows = NULL;
                json_t *row;
                size_t i, deleted = 0;
                int r = MP_STORE(core->store)->task_expired(core->store, now, MP_GC_BATCH, &rows, err);

                if (r < 0)
                        return r;
                json_array_foreach(rows, i, row) {
                        _cleanup_json_ json_t *t = NULL;
                        r = MP_STORE(core->store)->task_get(core->store, str_field(row, "id"), &t, err);
                        if (r == -ENOENT) { /* deleted meanwhile */
                                mp_error_clear(err);
                                continue;
                        }
                        if (r < 0 || (r = delete_task(core, t, err)) < 0) {
                                if (r != -ENOENT)
                                        return r;
                                mp_error_clear(err);
                                continue;
                        }
                        deleted += (size_t) r;
                }
                *ret_n += (json_int_t) deleted;
                /* A batch that deleted nothing would come back the same: stop. */
                if (json_array_size(rows) < MP_GC_BATCH || deleted == 0)
                        return 0;
        }
}

struct orphan_scan {
        struct mp_core *core;
        struct mp_error *err;
        char last[MP_ID_LEN + 1]; /* the task folder seen last: its other keys follow it */
        json_t *orphans;          /* task ids whose objects no row shows */
};

static int orphan_seen(void *ud, const char *key) {
        struct orphan_scan *s = ud;
        const char *p = key + strlen("tasks/"), *slash = strchr(p, '/');
        char id[MP_ID_LEN + 1];
        int r;

        if (!slash || slash - p != MP_ID_LEN)
                return 0; /* not a task's folder: not ours to judge */
        memcpy(id, p, MP_ID_LEN);
        id[MP_ID_LEN] = 0;
        if (!mp_id_valid(id) || !strcmp(id, s->last))
                return 0;
        memcpy(s->last, id, sizeof(id));
        r = MP_STORE(s->core->store)->task_refs(s->core->store, id, s->err);
        if (r != 0)
                return r < 0 ? r : 0;
        if (json_array_append_new(s->orphans, json_string(id)) < 0)
                return -ENOMEM;
        /* The rest waits for the next pass. */
        return json_array_size(s->orphans) >= MP_GC_MAX_ORPHANS ? 1 : 0;
}

/* Objects under tasks/ that no row shows (a crash between a row's deletion and its
 * objects', a call whose task was deleted while it ran): deleted after the listing. */
static int collect_orphans(struct mp_core *core, json_int_t *ret_n, struct mp_error *err) {
        _cleanup_json_ json_t *orphans = json_array();
        struct orphan_scan s = { .core = core, .err = err, .orphans = orphans };
        json_t *v;
        size_t i;
        int r;

        if (!orphans)
                return -ENOMEM;
        if ((r = MP_BLOBS(core->blobs)->list(core->blobs, "tasks/", orphan_seen, &s, err)) < 0)
                return r;
        json_array_foreach(orphans, i, v) {
                if ((r = drop_objects(core, json_string_value(v), err)) < 0)
                        return r;
                ++*ret_n;
        }
        return 0;
}

int mp_core_gc(struct mp_core *core, json_t **ret, struct mp_error *err) {
        json_int_t tasks = 0, orphans = 0, layers = 0, wheels = 0, wheel_bytes = 0;
        int r;

        if ((r = collect_expired(core, mp_now_ms(), &tasks, err)) < 0 ||
            (r = collect_orphans(core, &orphans, err)) < 0 ||
            (r = mp_core_envs_gc(core, mp_now_ms(), &layers, err)) < 0 ||
            (r = mp_core_wheels_gc(core, mp_now_ms(), &wheels, &wheel_bytes, err)) < 0)
                return r;
        *ret = json_pack("{s:I,s:I,s:I,s:I,s:I}", "tasks_deleted", tasks, "orphans_deleted", orphans,
                         "layers_deleted", layers, "wheels_deleted", wheels, "wheel_bytes_deleted", wheel_bytes);
        return *ret ? 0 : -ENOMEM;
}

struct mp_gc {
        struct mp_core *core;
        int64_t interval_ms;
        pthread_t thread;
        pthread_mutex_t lock;
        pthread_cond_t cond; /* on CLOCK_MONOTONIC */
        bool stopping;
};

static void *gc_main(void *arg) {
        struct mp_gc *g = arg;

        pthread_mutex_lock(&g->lock);
        while (!g->stopping) {
                struct timespec at = mp_mono_deadline(g->interval_ms);
                while (!g->stopping && pthread_cond_timedwait(&g->cond, &g->lock, &at) == 0)
                        ;
                if (g->stopping)
                        break;
                pthread_mutex_unlock(&g->lock);

                _cleanup_error_ struct mp_error err = { 0 };
                _cleanup_json_ json_t *report = NULL;
                if (mp_core_gc(g->core, &report, &err) < 0)
                        mp_warn("collector: %s (trying again in %" PRId64 " s)",
                                err.message[0] ? err.message : "failed", g->interval_ms / 1000);
                else if (json_integer_value(json_object_get(report, "layers_deleted")))
                        mp_info("collector: removed the layers of %" JSON_INTEGER_FORMAT " unused environment(s)",
                                json_integer_value(json_object_get(report, "layers_deleted")));
                if (json_integer_value(json_object_get(report, "wheels_deleted")))
                        mp_info("collector: removed %" JSON_INTEGER_FORMAT " cached wheel(s) no environment uses (%"
                                JSON_INTEGER_FORMAT " bytes)",
                                json_integer_value(json_object_get(report, "wheels_deleted")),
                                json_integer_value(json_object_get(report, "wheel_bytes_deleted")));
                if (json_integer_value(json_object_get(report, "tasks_deleted")) ||
                    json_integer_value(json_object_get(report, "orphans_deleted")))
                        mp_info("collector: deleted %" JSON_INTEGER_FORMAT " task(s) past their company's "
                                "retention and the objects of %" JSON_INTEGER_FORMAT " deleted task(s)",
                                json_integer_value(json_object_get(report, "tasks_deleted")),
                                json_integer_value(json_object_get(report, "orphans_deleted")));
                pthread_mutex_lock(&g->lock);
        }
        pthread_mutex_unlock(&g->lock);
        return NULL;
}

int mp_core_gc_start(struct mp_core *core, int interval_s, struct mp_gc **ret, struct mp_error *err) {
        struct mp_gc *g;
        int r;

        if (interval_s <= 0) {
                *ret = NULL;
                return 0;
        }
        if (!(g = calloc(1, sizeof(*g))))
                return -ENOMEM;
        g->core = core;
        g->interval_ms = (int64_t) interval_s * 1000;
        pthread_mutex_init(&g->lock, NULL);
        mp_cond_init_monotonic(&g->cond);
        if ((r = pthread_create(&g->thread, NULL, gc_main, g)) != 0) {
                pthread_cond_destroy(&g->cond);
                pthread_mutex_destroy(&g->lock);
                free(g);
                return mp_error_set(err, r, 500, "internal", "cannot start the collector's thread: %s",
                                    strerror(r));
        }
        *ret = g;
        return 0;
}

struct mp_gc *mp_core_gc_stop(struct mp_gc *g) {
        if (!g)
                return NULL;
        pthread_mutex_lock(&g->lock);
        g->stopping = true;
        pthread_cond_signal(&g->cond);
        pthread_mutex_unlock(&g->lock);
        pthread_join(g->thread, NULL);
        pthread_cond_destroy(&g->cond);
        pthread_mutex_destroy(&g->lock);
        free(g);
        return NULL;
}
