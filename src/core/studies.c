/* Parameter studies (docs/studies.md): a function swept over a design's points, each
 * point an ordinary task. The design is made into points and every point validated
 * before anything is stored; points live in the store (study_points), and the study
 * advances only when one of its tasks ends (mp_study_task_ended, called where a task's
 * end is recorded): the point takes the task's outputs and the next pending points start
 * in the same transaction, under the study's lock. Nothing polls. After a crash,
 * mp_study_recover accounts the ends that were recorded without the study hearing of
 * them and starts what is pending.
 *
 * The result cache of plain calls is in tasks.c; for points the store copies a cached
 * result when a point starts (study_start), keyed by the cache_key computed here. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
#include "core/flow.h"
#include "queue/queue.h"

#define STUDY_END_TRIES 4 /* 100, 400, 1600 ms apart */
#define STUDY_TIMES ((const char *const[]) { "created_at", "finished_at", NULL })

static const char *str_of(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* A study is its owner's alone: anyone else gets the 404 of an unknown id. */
static int load_study(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                      struct mp_error *err) {
        json_t *s = NULL;
        int r;

        if (!mp_id_valid(id))
                return mp_core_not_found(err, "study", id);
        r = MP_STORE(core->store)->study_get(core->store, id, &s, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "study", id);
        if (r < 0)
                return r;
        if (strcmp(str_of(s, "owner_id") ?: "", p->user_id)) {
                json_decref(s);
                return mp_core_not_found(err, "study", id);
        }
        *ret = s;
        return 0;
}

/* The study as the API shows it; takes row. */
static json_t *render(json_t *row) {
        json_int_t total = json_integer_value(json_object_get(row, "total"));
        json_int_t running = json_integer_value(json_object_get(row, "running"));
        json_int_t completed = json_integer_value(json_object_get(row, "completed"));
        json_int_t failed = json_integer_value(json_object_get(row, "failed"));
        json_int_t cancelled = json_integer_value(json_object_get(row, "cancelled"));
        json_int_t queued = total - running - completed - failed - cancelled;
        static const char *const drop[] = { "owner_id", "company_id", "total", "started", "running",
                                            "completed", "failed", "cancelled", "cache_refresh", "request_id",
                                            NULL };

        json_object_set_new(row, "progress",
                            json_pack("{s:I,s:I,s:I,s:I,s:I,s:I}", "total", total, "queued",
                                      queued < 0 ? 0 : queued, "running", running, "completed", completed,
                                      "failed", failed, "cancelled", cancelled));
        json_object_set_new(row, "cache", json_string(json_integer_value(json_object_get(row, "cache_refresh"))
                                                              ? "refresh" : "use"));
        json_t *target = json_object_get(row, "target");
        json_object_set_new(row, "kind", json_string(!target || json_is_null(target) ? "group" : "sweep"));
        mp_core_shape(row, STUDY_TIMES, drop);
        if (!json_object_get(row, "finished_at"))
                json_object_set_new(row, "finished_at", json_null());
        return row;
}

static void run_ends(struct mp_core *core, json_t *study, json_t *todo);

/* A point's task was stored: it counts as created (mecapy_tasks_created_total, as a call's
 * or a workflow node's); a cached one's end goes on the work list todo, the others to
 * the queue. */
static void start_task(struct mp_core *core, const char *function_id, json_t *s, json_t *todo) {
        mp_core_count_created(core);
        if (json_is_true(json_object_get(s, "cached"))) {
                mp_core_count_cache_hit(core);
                json_array_append(todo, json_object_get(s, "task_id"));
        } else
                MP_QUEUE(core->queue)->push(core->queue, str_of(s, "task_id"), function_id, NULL);
}

/* Hand the uncached tasks of a start to the queue, and record the ends of the cached
 * ones (each may start more points: a work list, not recursion). A workflow's points
 * become runs; a run that ended as it was made (every node failed in place) is
 * recorded through the same work list. study: {id, owner_id, company_id, target}. */
static void started(struct mp_core *core, json_t *study, json_t *list) {
        _cleanup_json_ json_t *todo = json_array(), *runs = json_array();
        const char *function_id = str_of(json_object_get(study, "target"), "function_id");
        size_t i;
        json_t *s;

        json_array_foreach(list, i, s) {
                const char *tid = str_of(s, "task_id");
                if (json_is_true(json_object_get(s, "run"))) {
                        _cleanup_json_ json_t *run = NULL;
                        _cleanup_error_ struct mp_error err = { 0 };
                        if (mp_core_workflow_point_run(core, study, tid, json_integer_value(json_object_get(s, "point_index")),
                                                       json_object_get(s, "inputs"), &run, &err) < 0)
                                mp_warn("study %s: the run of point %" JSON_INTEGER_FORMAT " cannot be made now "
                                        "(%s); it is made on recovery", str_of(study, "id"),
                                        json_integer_value(json_object_get(s, "point_index")), err.message);
                        else if (json_integer_value(json_object_get(run, "finished_at")) != 0)
                                json_array_append(runs, run);
                } else
                        start_task(core, function_id, s, todo);
        }
        json_array_foreach(todo, i, s)
                mp_study_task_ended(core, json_string_value(s));
        if (json_array_size(runs))
                run_ends(core, study, runs);
}

/* A point's inputs: the key that finds it again in its study (extend), and the result
 * cache key when the version caches. */
static int point_keys(json_t *inputs, const char *version_key, const char *env, json_t **ret,
                      struct mp_error *err) {
        char key[MP_CACHE_KEY_HEX_LEN + 1], ckey[MP_CACHE_KEY_HEX_LEN + 1];
        int r;

        if ((r = mp_cache_key("study-point", "", inputs, key, err)) < 0)
                return r;
        if (version_key && (r = mp_cache_key(version_key, env ? env : "", inputs, ckey, err)) < 0)
                return r;
        *ret = json_pack("{s:O,s:s,s:s?}", "inputs", inputs, "inputs_key", key, "cache_key",
                         version_key ? ckey : NULL);
        return *ret ? 0 : -ENOMEM;
}

/* "fid:version" when the version caches (into buf), else NULL; env gets its environment. */
static const char *cache_version_key(json_t *ver, const char *function_id, char *buf, size_t size, char *env,
                                     size_t env_size) {
        if (json_integer_value(json_object_get(ver, "cache")) == 0)
                return NULL;
        snprintf(buf, size, "%s:%" JSON_INTEGER_FORMAT, function_id,
                 json_integer_value(json_object_get(ver, "version")));
        if (!mp_core_version_env(ver, env, env_size))
                snprintf(env, env_size, "base");
        return buf;
}

/* Points (a list of input objects) with their keys. */
static int keyed_points(json_t *points, json_t *ver, const char *function_id, json_t **ret,
                        struct mp_error *err) {
        _cleanup_json_ json_t *out = json_array();
        char vbuf[160], env[80];
        const char *vkey = cache_version_key(ver, function_id, vbuf, sizeof(vbuf), env, sizeof(env));
        size_t i;
        json_t *pt;

        if (!out)
                return -ENOMEM;
        json_array_foreach(points, i, pt) {
                json_t *k = NULL;
                int r = point_keys(pt, vkey, env, &k, err);
                if (r < 0) {
                        mp_error_prefix(err, "points[%zu]", i);
                        return r;
                }
                json_array_append_new(out, k);
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* The function a target names (an id, or a name of the caller's own functions), and the
 * version (0: the latest), if the caller may run it. */
static int resolve_target(struct mp_core *core, const struct mp_principal *p, json_t *target, json_t **ret_fn,
                          json_t **ret_ver, struct mp_error *err) {
        const char *fn = str_of(target, "function");
        json_t *v = json_object_get(target, "version");
        _cleanup_json_ json_t *found = NULL;
        int version = 0;

        if (!json_is_object(target)) {
                mp_error_add_field(err, "target", "is required: {\"function\": name or id}");
                return mp_core_validation_done(err, "fields");
        }
        if (json_object_get(target, "workflow")) {
                const char *wf = str_of(target, "workflow");
                const char *key;
                json_t *val;
                json_object_foreach(target, key, val)
                        if (strcmp(key, "workflow") && strcmp(key, "version"))
                                mp_error_add_field(err, "target", "\"%s\" is not a field of a target", key);
                if (!wf || !*wf)
                        mp_error_add_field(err, "target.workflow", "must be a workflow's name or id");
                if (v && !json_is_null(v) &&
                    (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30)))
                        mp_error_add_field(err, "target.version", "must be a version number (1 or more)");
                if (err->errors)
                        return mp_core_validation_done(err, "fields");
                return mp_core_workflow_resolve(core, p, wf, json_is_integer(v) ? (int) json_integer_value(v) : 0,
                                                ret_fn, ret_ver, err);
        }
        if (!fn || !*fn) {
                mp_error_add_field(err, "target.function", "is required (a function's name or id)");
                return mp_core_validation_done(err, "fields");
        }
        if (v && !json_is_null(v)) {
                if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30)) {
                        mp_error_add_field(err, "target.version", "must be a version number (1 or more)");
                        return mp_core_validation_done(err, "fields");
                }
                version = (int) json_integer_value(v);
        }
        if (!mp_id_valid(fn)) {
                int r = MP_STORE(core->store)->function_find(core->store, p->user_id, fn, &found, err);
                if (r == -ENOENT) {
                        mp_error_clear(err);
                        return mp_error_set(err, ENOENT, 404, "not_found", "no function named \"%.128s\"", fn);
                }
                if (r < 0)
                        return r;
                fn = str_of(found, "id");
        }
        return mp_core_load_callable(core, p, fn, version, ret_fn, ret_ver, err);
}

/* The outputs: a list of paths into {"result": the task's result}; each checked. */
static int read_outputs(json_t *v, const char *root, struct mp_error *err) {
        size_t rl = strlen(root);
        size_t i;
        json_t *o;

        if (!v || json_is_null(v))
                return 0;
        if (!json_is_array(v) || json_array_size(v) > MP_MAX_STUDY_OUTPUTS) {
                mp_error_add_field(err, "outputs", "must be a list of at most %d paths such as \"result.sigma\"",
                                   MP_MAX_STUDY_OUTPUTS);
                return -EINVAL;
        }
        json_array_foreach(v, i, o) {
                char field[64];
                const char *path = json_string_value(o);
                snprintf(field, sizeof(field), "outputs[%zu]", i);
                if (!path) {
                        mp_error_add_field(err, field, "must be a string");
                        continue;
                }
                if (strncmp(path, root, rl) || (path[rl] && path[rl] != '.')) {
                        if (!strcmp(root, "result"))
                                mp_error_add_field(err, field, "must start with \"result\" (the task's result), "
                                                   "like \"result.deflection_mm\"");
                        else
                                mp_error_add_field(err, field, "must start with \"outputs\" (the workflow run's "
                                                   "outputs), like \"outputs.sigma\"");
                        continue;
                }
                _cleanup_error_ struct mp_error perr = { 0 };
                if (mp_jsonpath_check(path, field, &perr) < 0)
                        mp_error_add_field(err, field, "%s", perr.message[0] ? perr.message : "is not a path");
        }
        return 0;
}

/* mp_core_study_create; keep_design (may be NULL) is the design the study is stored
 * with in place of the body's, whose points it runs (a re-run: the original's design,
 * its points given as a list). */
static int create_study(struct mp_core *core, const struct mp_principal *p, json_t *body, const char *csv,
                        size_t csv_len, bool cache_refresh, json_t *keep_design, json_t **ret,
                        struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL, *points = NULL, *keyed = NULL, *study = NULL,
                              *design = NULL, *list = NULL, *start = NULL;
        const char *name = NULL, *notes = NULL;
        int concurrency = MP_DEFAULT_STUDY_CONCURRENCY, r;
        size_t count = 0;
        char id[MP_ID_LEN + 1];
        json_t *fixed;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        static const char *const known[] = { "name", "notes", "target", "fixed", "design", "outputs",
                                             "concurrency", NULL };
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v) {
                bool ok = false;
                for (const char *const *k = known; *k && !ok; k++)
                        ok = !strcmp(*k, key);
                if (!ok)
                        mp_error_add_field(err, key, "is not a field of a study");
        }
        mp_core_field_string(body, "name", false, MP_MAX_NAME_LEN, &name, err);
        mp_core_field_string(body, "notes", false, MP_MAX_STUDY_NOTES_LEN, &notes, err);
        mp_core_field_int(body, "concurrency", 1, MP_MAX_STUDY_CONCURRENCY, &concurrency, err);
        fixed = json_object_get(body, "fixed");
        if (fixed && !json_is_null(fixed) && !json_is_object(fixed))
                mp_error_add_field(err, "fixed", "must be an object of input values");
        if (fixed && json_is_null(fixed))
                fixed = NULL;
        json_t *tg = json_object_get(body, "target");
        bool of_workflow = json_is_object(tg) && json_object_get(tg, "workflow");
        read_outputs(json_object_get(body, "outputs"), of_workflow ? "outputs" : "result", err);
        /* No target and no design: a group of the caller's tasks and runs (members). */
        if (!csv && !tg && !json_object_get(body, "design")) {
                static const char *const sweep_only[] = { "fixed", "outputs", "concurrency", NULL };
                for (const char *const *k = sweep_only; *k; k++)
                        if (json_object_get(body, *k))
                                mp_error_add_field(err, *k, "is for a study with a target and a design; a study "
                                                   "without them only groups tasks and runs");
                if ((r = mp_core_validation_done(err, "fields")) < 0)
                        return r;
                if (cache_refresh)
                        return mp_error_set(err, EINVAL, 400, "bad_request", "cache=refresh is for a study with "
                                            "a target and a design");
                _cleanup_json_ json_t *none = json_array(), *done = NULL;
                mp_id_new(id);
                study = json_pack("{s:s,s:s,s:s,s:s,s:i,s:I}", "id", id, "owner_id", p->user_id, "name",
                                  name ? name : "", "notes", notes ? notes : "", "concurrency", 1, "created_at",
                                  (json_int_t) mp_now_ms());
                if (!study || !none)
                        return -ENOMEM;
                json_object_set_new(study, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
                if ((r = MP_STORE(core->store)->study_create(core->store, study, none, err)) < 0)
                        return r;
                /* nothing to run: the start completes it at once */
                if ((r = MP_STORE(core->store)->study_start(core->store, id, &done, err)) < 0)
                        return r;
                return mp_core_study_get(core, p, id, ret, err);
        }
        if (csv) {
                if (json_object_get(body, "design"))
                        mp_error_add_field(err, "design", "comes from the CSV body: leave it out");
                else if ((r = mp_design_csv(csv, csv_len, &list, err)) < 0)
                        return r;
                else
                        design = json_pack("{s:s,s:O}", "type", "list", "points", list);
        } else if (!json_is_object(json_object_get(body, "design")))
                mp_error_add_field(err, "design", "is required: {\"type\": \"grid\" | \"list\" | \"random\" | "
                                   "\"lhs\", ...}");
        else
                design = json_incref(json_object_get(body, "design"));
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = resolve_target(core, p, json_object_get(body, "target"), &fn, &ver, err)) < 0)
                return r;
        if ((r = mp_design_count(design, &count, err)) < 0 ||
            (r = mp_design_points(design, fixed, json_object_get(ver, "input_schema"), &points, err)) < 0)
                return r;
        if ((r = keyed_points(points, ver, str_of(fn, "id"), &keyed, err)) < 0)
                return r;

        mp_id_new(id);
        /* A list design is stored as its size: the points themselves are the study's rows. */
        if (keep_design) {
                json_decref(design);
                design = json_incref(keep_design);
        } else if (!strcmp(str_of(design, "type") ?: "", "list")) {
                json_decref(design);
                design = json_pack("{s:s,s:I}", "type", "list", "count", (json_int_t) json_array_size(points));
        }
        study = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:O},s:O,s:i,s:i,s:I}", "id", id, "owner_id", p->user_id,
                          "name", name ? name : "", "notes", notes ? notes : "", "target",
                          of_workflow ? "workflow_id" : "function_id",
                          str_of(fn, "id"), "version", json_object_get(ver, "version"), "design", design,
                          "concurrency", concurrency, "cache_refresh", cache_refresh, "created_at",
                          (json_int_t) mp_now_ms());
        if (!study)
                return -ENOMEM;
        json_object_set_new(study, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        json_object_set_new(study, "fixed", fixed ? json_incref(fixed) : json_object());
        json_t *outputs = json_object_get(body, "outputs");
        json_object_set_new(study, "outputs", json_is_array(outputs) ? json_incref(outputs) : json_array());
        /* Its points' tasks (and runs) log the request that made the study. */
        json_object_set_new(study, "request_id", mp_log_request_id() ? json_string(mp_log_request_id()) : json_null());
        if ((r = MP_STORE(core->store)->study_create(core->store, study, keyed, err)) < 0)
                return r;
        if ((r = MP_STORE(core->store)->study_start(core->store, id, &start, err)) < 0)
                mp_warn("study %s: its first points could not start now (%s); they start on recovery", id,
                        err->message);
        mp_error_clear(err);
        started(core, study, start);
        return mp_core_study_get(core, p, id, ret, err);
}

int mp_core_study_create(struct mp_core *core, const struct mp_principal *p, json_t *body, const char *csv,
                         size_t csv_len, bool cache_refresh, json_t **ret, struct mp_error *err) {
        return create_study(core, p, body, csv, csv_len, cache_refresh, NULL, ret, err);
}

int mp_core_study_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                      struct mp_error *err) {
        json_t *s = NULL, *m;
        _cleanup_json_ json_t *members = NULL;
        size_t i;
        int r = load_study(core, p, id, &s, err);

        if (r < 0)
                return r;
        if ((r = MP_STORE(core->store)->study_members(core->store, id, &members, err)) < 0) {
                json_decref(s);
                return r;
        }
        json_t *tasks = json_array(), *runs = json_array();
        json_array_foreach(members, i, m)
                json_array_append(strcmp(str_of(m, "kind") ?: "", "run") ? tasks : runs,
                                  json_object_get(m, "member_id"));
        *ret = render(s);
        json_object_set_new(*ret, "members", json_pack("{s:o,s:o}", "task_ids", tasks, "run_ids", runs));
        return 0;
}

/* Members: the caller's own tasks and runs only; any other id is the 404 of an unknown
 * one (naming it), so nothing is added. */
int mp_core_study_add_members(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                              json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *members = json_array();
        static const char *const lists[] = { "task_ids", "run_ids", NULL };
        const char *key;
        json_t *v;
        int r, added;

        if ((r = load_study(core, p, id, &s, err)) < 0)
                return r;
        if (!members)
                return -ENOMEM;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object like "
                                    "{\"task_ids\": [...], \"run_ids\": [...]}");
        json_object_foreach(body, key, v)
                if (strcmp(key, "task_ids") && strcmp(key, "run_ids"))
                        mp_error_add_field(err, key, "is not a field (only task_ids and run_ids)");
        for (const char *const *l = lists; *l; l++) {
                json_t *ids = json_object_get(body, *l), *x;
                size_t i;
                if (!ids)
                        continue;
                if (!json_is_array(ids) || json_array_size(ids) > MP_MAX_PAGE) {
                        mp_error_add_field(err, *l, "must be a list of at most %d ids", MP_MAX_PAGE);
                        continue;
                }
                json_array_foreach(ids, i, x)
                        if (!json_is_string(x) || !mp_id_valid(json_string_value(x)))
                                mp_error_add_field(err, *l, "[%zu] is not an id", i);
        }
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        for (const char *const *l = lists; *l; l++) {
                bool run = !strcmp(*l, "run_ids");
                json_t *x;
                size_t i;
                json_array_foreach(json_object_get(body, *l), i, x) {
                        _cleanup_json_ json_t *row = NULL;
                        _cleanup_error_ struct mp_error gerr = { 0 };
                        const char *mid = json_string_value(x);
                        r = run ? MP_STORE(core->store)->workflow_run_get(core->store, mid, &row, &gerr)
                                : MP_STORE(core->store)->task_get(core->store, mid, &row, &gerr);
                        if (r < 0 && r != -ENOENT) {
                                mp_error_set(err, -r, gerr.status ? gerr.status : 503, "unavailable", "%s", gerr.message);
                                return r;
                        }
                        if (r < 0 || strcmp(str_of(row, "owner_id") ?: "", p->user_id))
                                return mp_core_not_found(err, run ? "workflow run" : "task", mid);
                        json_array_append_new(members, json_pack("{s:s,s:s}", "kind", run ? "run" : "task", "id", mid));
                }
        }
        if ((added = MP_STORE(core->store)->study_add_members(core->store, id, members, MP_MAX_STUDY_POINTS, err)) < 0)
                return added;
        if ((r = mp_core_study_get(core, p, id, ret, err)) < 0)
                return r;
        json_object_set_new(*ret, "added", json_integer(added));
        return 0;
}

bool mp_core_study_ended(json_t *study) {
        const char *st = str_of(study, "status");
        return st && strcmp(st, "running");
}

int mp_core_study_list(struct mp_core *core, const struct mp_principal *p, const char *status, const char *name,
                       const char *cursor, int limit, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *filter = json_pack("{s:s,s:i}", "owner_id", p->user_id, "limit", limit);
        struct mp_store_list list = { 0 };
        _cleanup_json_ json_t *items = json_array();
        size_t i;
        json_t *s;
        int r;

        if (!filter || !items)
                return -ENOMEM;
        if (status)
                json_object_set_new(filter, "status", json_string(status));
        if (name)
                json_object_set_new(filter, "name", json_string(name));
        if (cursor)
                json_object_set_new(filter, "cursor", json_string(cursor));
        r = MP_STORE(core->store)->study_list(core->store, filter, &list, err);
        if (r < 0)
                return mp_core_list_failed(r, cursor, err);
        json_array_foreach(list.items, i, s) {
                json_array_append(items, render(json_incref(s)));
                json_decref(s);
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

/* A point row as the API shows it. */
static json_t *render_point(json_t *row) {
        const char *st = str_of(row, "status");
        json_t *o = json_pack("{s:O,s:O,s:O,s:s,s:O,s:O}", "index", json_object_get(row, "point_index"), "inputs",
                              json_object_get(row, "inputs"), "outputs",
                              json_object_get(row, "outputs") ?: json_null(), "status",
                              !st ? "pending" : !strcmp(st, "started") ? "running" : st, "task_id",
                              json_object_get(row, "task_id") ?: json_null(), "error",
                              json_object_get(row, "error") ?: json_null());
        return o;
}

int mp_core_study_points(struct mp_core *core, const struct mp_principal *p, const char *id, int64_t after,
                         int limit, json_t **ret_study, json_t **ret_rows, struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL;
        int r = load_study(core, p, id, &s, err);

        if (r < 0 || (r = MP_STORE(core->store)->study_points(core->store, id, after, limit, ret_rows, err)) < 0)
                return r;
        if (ret_study)
                *ret_study = TAKE_PTR(s);
        return 0;
}

int mp_core_study_results(struct mp_core *core, const struct mp_principal *p, const char *id, const char *cursor,
                          int limit, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL, *items = json_array(), *study = NULL;
        long after = -1;
        size_t i;
        json_t *row;
        int r;

        if (cursor && mp_parse_long(cursor, 0, MP_MAX_STUDY_POINTS, &after) < 0) {
                mp_error_add_field(err, "cursor", "not a cursor from a previous page");
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "`cursor` is not one this server handed out; start again without it");
        }
        if ((r = mp_core_study_points(core, p, id, after, limit + 1, &study, &rows, err)) < 0)
                return r;
        bool runs = str_of(json_object_get(study, "target"), "workflow_id") != NULL;
        json_array_foreach(rows, i, row) {
                if (i == (size_t) limit)
                        break;
                json_t *item = render_point(row);
                /* a workflow's point is a run: its id is run_id, and it has no task of its own */
                json_object_set(item, "run_id", runs ? json_object_get(item, "task_id") : json_null());
                if (runs)
                        json_object_set_new(item, "task_id", json_null());
                json_array_append_new(items, item);
        }
        char next[32] = "";
        if (json_array_size(rows) > (size_t) limit)
                snprintf(next, sizeof(next), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(json_array_get(rows, (size_t) limit - 1), "point_index")));
        *ret = json_pack("{s:O,s:s?}", "items", items, "next_cursor", next[0] ? next : NULL);
        /* units: the units of the columns that have one ({"L": "m", "result.deflection": "mm"}) */
        _cleanup_json_ json_t *units = NULL, *cols = json_array();
        _cleanup_error_ struct mp_error uerr = { 0 };
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(json_array_get(items, 0), "inputs"), key, v)
                json_array_append_new(cols, json_string(key));
        if (*ret && cols && mp_core_study_column_units(core, p, study, cols, &units, NULL, &uerr) == 0)
                json_object_set(*ret, "units", units);
        return *ret ? 0 : -ENOMEM;
}

/* Load the study and its function version, for a change that makes points. */
static int load_for_points(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret_study,
                           json_t **ret_ver, struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *fn = NULL;
        json_t *target;
        int r;

        if ((r = load_study(core, p, id, &s, err)) < 0)
                return r;
        target = json_object_get(s, "target");
        if (!json_is_object(target))
                return mp_error_set(err, EINVAL, 409, "conflict", "study %s only groups tasks and runs: it has no "
                                    "target to run points of", id);
        if (str_of(target, "workflow_id")) {
                if ((r = mp_core_workflow_resolve(core, p, str_of(target, "workflow_id"),
                                                  (int) json_integer_value(json_object_get(target, "version")), &fn,
                                                  ret_ver, err)) < 0)
                        return r;
                *ret_study = TAKE_PTR(s);
                return 0;
        }
        if ((r = mp_core_load_callable(core, p, str_of(target, "function_id"),
                                       (int) json_integer_value(json_object_get(target, "version")), &fn, ret_ver,
                                       err)) < 0)
                return r;
        *ret_study = TAKE_PTR(s);
        return 0;
}

static int advance(struct mp_core *core, const char *id, json_t *study, struct mp_error *err) {
        _cleanup_json_ json_t *start = NULL;
        int r = MP_STORE(core->store)->study_start(core->store, id, &start, err);

        if (r < 0)
                return r;
        started(core, study, start);
        return 0;
}

int mp_core_study_extend(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                         json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *ver = NULL, *points = NULL, *keyed = NULL, *design = NULL;
        json_t *list = json_object_get(body, "points");
        int r, added;

        if ((r = load_for_points(core, p, id, &s, &ver, err)) < 0)
                return r;
        if (!json_is_array(list)) {
                mp_error_add_field(err, "points", "is required: a list of points (objects of inputs)");
                return mp_core_validation_done(err, "fields");
        }
        if (json_array_size(list) + (size_t) json_integer_value(json_object_get(s, "total")) > MP_MAX_STUDY_POINTS)
                return mp_error_set(err, E2BIG, 422, "validation",
                                    "a study holds at most %d points; it has %" JSON_INTEGER_FORMAT
                                    " and %zu more were asked", MP_MAX_STUDY_POINTS,
                                    json_integer_value(json_object_get(s, "total")), json_array_size(list));
        design = json_pack("{s:s,s:O}", "type", "list", "points", list);
        json_t *fixed = json_object_get(s, "fixed");
        if ((r = mp_design_points(design, json_object_size(fixed) ? fixed : NULL,
                                  json_object_get(ver, "input_schema"), &points, err)) < 0 ||
            (r = keyed_points(points, ver, str_of(json_object_get(s, "target"), "function_id"), &keyed, err)) < 0)
                return r;
        if ((added = MP_STORE(core->store)->study_add_points(core->store, id, keyed, err)) < 0)
                return added;
        if ((r = advance(core, id, s, err)) < 0)
                return r;
        if ((r = mp_core_study_get(core, p, id, ret, err)) < 0)
                return r;
        json_object_set_new(*ret, "added", json_integer(added));
        return 0;
}

int mp_core_study_retry(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                        struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *ver = NULL;
        int r, n;

        /* The function must still be the caller's to call (its owner may have made it
         * private since): as for an extension. */
        if ((r = load_for_points(core, p, id, &s, &ver, err)) < 0)
                return r;
        if ((n = MP_STORE(core->store)->study_retry(core->store, id, err)) < 0)
                return n;
        if ((r = advance(core, id, s, err)) < 0 || (r = mp_core_study_get(core, p, id, ret, err)) < 0)
                return r;
        json_object_set_new(*ret, "retried", json_integer(n));
        return 0;
}

int mp_core_study_cancel(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                         struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *tasks = NULL;
        size_t i;
        json_t *t;
        int r;

        if ((r = load_study(core, p, id, &s, err)) < 0 ||
            (r = MP_STORE(core->store)->study_cancel(core->store, id, &tasks, err)) < 0)
                return r;
        json_array_foreach(tasks, i, t) {
                _cleanup_json_ json_t *out = NULL;
                _cleanup_error_ struct mp_error cerr = { 0 };
                /* A task that ended meanwhile answers 409: its end is counted anyway. */
                if (str_of(json_object_get(s, "target"), "workflow_id"))
                        (void) mp_core_workflow_run_cancel(core, p, str_of(t, "task_id"), &out, &cerr);
                else
                        (void) mp_core_task_cancel(core, p, str_of(t, "task_id"), &out, &cerr);
        }
        return mp_core_study_get(core, p, id, ret, err);
}

/* The task's result as a tree (NULL when it has none). */
json_t *mp_core_task_result(struct mp_core *core, json_t *task, bool *ret_unreadable) {
        json_t *text = json_object_get(task, "result_json");
        const char *blob = str_of(task, "result_blob");

        if (json_is_string(text))
                return json_loadb(json_string_value(text), json_string_length(text), JSON_DECODE_ANY, NULL);
        if (blob) {
                _cleanup_free_ char *data = NULL;
                _cleanup_error_ struct mp_error berr = { 0 };
                size_t len = 0;
                if (MP_BLOBS(core->blobs)->get(core->blobs, blob, MP_MAX_RESULT_BYTES + 1, &data, &len, &berr) < 0) {
                        if (ret_unreadable)
                                *ret_unreadable = true;
                        return NULL;
                }
                return json_loadb(data, len, JSON_DECODE_ANY, NULL);
        }
        return NULL;
}

/* The point's outputs: {path: value} for each of the study's output paths, read from
 * {"result": result}. A path that names nothing fails the point (*ret_error). */
static json_t *extract(json_t *study, const char *name, json_t *result, json_t **ret_error) {
        _cleanup_json_ json_t *root = json_pack("{s:O}", name, result ? result : json_null());
        json_t *out = json_object();
        size_t i;
        json_t *o;

        json_array_foreach(json_object_get(study, "outputs"), i, o) {
                const char *path = json_string_value(o);
                _cleanup_error_ struct mp_error perr = { 0 };
                json_t *v = NULL;
                if (!path)
                        continue;
                if (mp_jsonpath_get(root, path, &v, &perr) < 0) {
                        json_object_set_new(out, path, json_null());
                        if (!*ret_error)
                                *ret_error = json_pack("{s:s,s:s++}", "type", "OutputNotFound", "message",
                                                       path, ": ", perr.message);
                } else
                        json_object_set(out, path, v);
        }
        return out;
}

/* What a task's end needs of its study never changes (target, outputs, owner, cache
 * refresh: a workflow point's run is made with it): a few studies
 * are kept here, so a point's end reads its task and writes once. */
#define STUDY_CACHE 16
static struct {
        char id[MP_ID_LEN + 1];
        json_t *row; /* {"id", "target", "outputs"} */
} study_cache[STUDY_CACHE];
static unsigned study_cache_next;
static pthread_mutex_t study_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static int study_fixed_fields(struct mp_core *core, const char *id, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int r;

        pthread_mutex_lock(&study_cache_lock);
        for (unsigned i = 0; i < STUDY_CACHE; i++)
                if (!strcmp(study_cache[i].id, id)) {
                        *ret = json_incref(study_cache[i].row);
                        pthread_mutex_unlock(&study_cache_lock);
                        return 0;
                }
        pthread_mutex_unlock(&study_cache_lock);
        if ((r = MP_STORE(core->store)->study_get(core->store, id, &row, err)) < 0)
                return r;
        json_t *kept = json_pack("{s:O,s:O,s:O,s:O,s:O,s:I}", "id", json_object_get(row, "id"), "target",
                                 json_object_get(row, "target"), "outputs", json_object_get(row, "outputs"),
                                 "owner_id", json_object_get(row, "owner_id"), "company_id",
                                 json_object_get(row, "company_id") ?: json_null(), "cache_refresh",
                                 json_integer_value(json_object_get(row, "cache_refresh")));
        if (!kept)
                return -ENOMEM;
        pthread_mutex_lock(&study_cache_lock);
        unsigned k = study_cache_next++ % STUDY_CACHE;
        json_decref(study_cache[k].row);
        study_cache[k].row = json_incref(kept);
        snprintf(study_cache[k].id, sizeof(study_cache[k].id), "%s", id);
        pthread_mutex_unlock(&study_cache_lock);
        *ret = kept;
        return 0;
}

void mp_study_task_ended(struct mp_core *core, const char *task_id) {
        _cleanup_json_ json_t *todo = NULL, *study = NULL;

        /* Most tasks are plain calls: one small read says so (a failed read goes on to
         * the whole task's, which says what failed). */
        if (!task_id || MP_STORE(core->store)->task_in_study(core->store, task_id, NULL) == 0)
                return;
        todo = json_pack("[s]", task_id);

        /* Cached starts end at once: their ends join the list. */
        for (size_t n = 0; n < json_array_size(todo); n++) {
                _cleanup_json_ json_t *task = NULL, *result = NULL, *outputs = NULL, *error = NULL, *start = NULL;
                _cleanup_error_ struct mp_error err = { 0 };
                const char *tid = json_string_value(json_array_get(todo, n)), *sid, *status;
                int r;

                if (MP_STORE(core->store)->task_get(core->store, tid, &task, &err) < 0)
                        continue;
                sid = str_of(task, "study_id");
                status = str_of(task, "status");
                if (!sid || !status || !mp_core_status_ended(status))
                        continue;
                if (!study || strcmp(str_of(study, "id") ?: "", sid)) {
                        json_decref(study);
                        study = NULL;
                        if (study_fixed_fields(core, sid, &study, &err) < 0) {
                                mp_warn("study %s: the end of task %s cannot be recorded now (%s); it is on "
                                        "recovery", sid, tid, err.message);
                                continue;
                        }
                }
                if (!strcmp(status, "completed")) {
                        result = mp_core_task_result(core, task, NULL);
                        if (!result && json_array_size(json_object_get(study, "outputs"))) {
                                mp_warn("study %s: the result of task %s cannot be read now; its point is "
                                        "recorded on recovery", sid, tid);
                                continue;
                        }
                        outputs = extract(study, "result", result, &error);
                        mp_core_governing_check(outputs, json_object_get(task, "checks")); /* units */
                        if (error)
                                status = "failed";
                } else {
                        error = json_incref(json_object_get(task, "error"));
                        if (!error || json_is_null(error)) {
                                json_decref(error);
                                error = json_pack("{s:s,s:s}", "type", status, "message", "the task did not complete");
                        }
                }
                /* A store busy or briefly away (a deadlock, a lost connection) is tried
                 * again a few times: a point whose end is not recorded holds its study's
                 * next start until the next recovery. */
                for (int attempt = 0;; attempt++) {
                        mp_error_clear(&err);
                        r = MP_STORE(core->store)->study_point_end(
                                core->store, sid, json_integer_value(json_object_get(task, "point_index")), tid,
                                status, outputs, error, &start, &err);
                        if (r >= 0 || attempt == STUDY_END_TRIES - 1 || (r != -EBUSY && r != -EAGAIN && r != -EIO))
                                break;
                        struct timespec ts = { 0, (long) (100 << (2 * attempt)) * 1000000L };
                        nanosleep(&ts, NULL);
                }
                if (r < 0) {
                        mp_warn("study %s: the end of task %s cannot be recorded now (%s); it is on recovery", sid,
                                tid, err.message);
                        continue;
                }
                size_t i;
                json_t *s;
                json_array_foreach(start, i, s)
                        start_task(core, str_of(json_object_get(study, "target"), "function_id"), s, todo);
        }
}

/* The ends of a workflow study's runs (rows with status, outputs, error): each point
 * takes the run's outputs read by the study's paths from {"outputs": ...}, and the next
 * points start; runs that end as they are made join the list (no recursion). */
static void run_ends(struct mp_core *core, json_t *study, json_t *todo) {
        const char *sid = str_of(study, "id");

        for (size_t n = 0; n < json_array_size(todo); n++) {
                _cleanup_json_ json_t *outputs = NULL, *error = NULL, *start = NULL;
                _cleanup_error_ struct mp_error err = { 0 };
                json_t *run = json_array_get(todo, n);
                const char *status = str_of(run, "status") ?: "failed";
                int r;

                if (!strcmp(status, "completed")) {
                        outputs = extract(study, "outputs", json_object_get(run, "outputs"), &error);
                        if (error)
                                status = "failed";
                } else {
                        error = json_incref(json_object_get(run, "error"));
                        if (!error || json_is_null(error)) {
                                json_decref(error);
                                error = json_pack("{s:s,s:s}", "type", status, "message", "the run did not complete");
                        }
                        json_object_set(error, "run_id", json_object_get(run, "id"));
                }
                for (int attempt = 0;; attempt++) {
                        mp_error_clear(&err);
                        r = MP_STORE(core->store)->study_point_end(
                                core->store, sid, json_integer_value(json_object_get(run, "point_index")),
                                str_of(run, "id"), status, outputs, error, &start, &err);
                        if (r >= 0 || attempt == STUDY_END_TRIES - 1 || (r != -EBUSY && r != -EAGAIN && r != -EIO))
                                break;
                        struct timespec ts = { 0, (long) (100 << (2 * attempt)) * 1000000L };
                        nanosleep(&ts, NULL);
                }
                if (r < 0) {
                        mp_warn("study %s: the end of run %s cannot be recorded now (%s); it is on recovery", sid,
                                str_of(run, "id"), err.message);
                        continue;
                }
                size_t i;
                json_t *st;
                json_array_foreach(start, i, st) {
                        _cleanup_json_ json_t *made = NULL;
                        _cleanup_error_ struct mp_error merr = { 0 };
                        if (!json_is_true(json_object_get(st, "run")))
                                continue;
                        if (mp_core_workflow_point_run(core, study, str_of(st, "task_id"),
                                                       json_integer_value(json_object_get(st, "point_index")),
                                                       json_object_get(st, "inputs"), &made, &merr) < 0)
                                mp_warn("study %s: the run of point %" JSON_INTEGER_FORMAT " cannot be made now "
                                        "(%s); it is made on recovery", sid,
                                        json_integer_value(json_object_get(st, "point_index")), merr.message);
                        else if (json_integer_value(json_object_get(made, "finished_at")) != 0)
                                json_array_append(todo, made);
                }
        }
}

void mp_study_run_ended(struct mp_core *core, json_t *run) {
        _cleanup_json_ json_t *study = NULL, *todo = NULL;
        _cleanup_error_ struct mp_error err = { 0 };
        const char *sid = str_of(run, "study_id");

        if (!sid)
                return;
        if (study_fixed_fields(core, sid, &study, &err) < 0) {
                mp_warn("study %s: the end of run %s cannot be recorded now (%s); it is on recovery", sid,
                        str_of(run, "id") ?: "?", err.message);
                return;
        }
        todo = json_pack("[O]", run);
        if (todo)
                run_ends(core, study, todo);
}

/* After a restart, a workflow study's started points: a run that was never made is made
 * (its id is the point's), a run that ended unheard is recorded. */
static void recover_runs(struct mp_core *core, json_t *study) {
        _cleanup_json_ json_t *ended = json_array();
        int64_t after = -1;

        for (;;) {
                _cleanup_json_ json_t *rows = NULL;
                _cleanup_error_ struct mp_error err = { 0 };
                size_t i;
                json_t *row;
                if (MP_STORE(core->store)->study_points(core->store, str_of(study, "id"), after, 500, &rows, &err) < 0) {
                        mp_warn("study %s: its points cannot be read now (%s)", str_of(study, "id"), err.message);
                        break;
                }
                json_array_foreach(rows, i, row) {
                        _cleanup_json_ json_t *run = NULL;
                        _cleanup_error_ struct mp_error rerr = { 0 };
                        after = json_integer_value(json_object_get(row, "point_index"));
                        if (strcmp(str_of(row, "status") ?: "", "started") || !str_of(row, "task_id"))
                                continue;
                        if (mp_core_workflow_point_run(core, study, str_of(row, "task_id"), after,
                                                       json_object_get(row, "inputs"), &run, &rerr) < 0)
                                mp_warn("study %s: the run of point %" PRId64 " cannot be made now (%s)",
                                        str_of(study, "id"), after, rerr.message);
                        else if (json_integer_value(json_object_get(run, "finished_at")) != 0)
                                json_array_append(ended, run);
                }
                if (json_array_size(rows) < 500)
                        break;
        }
        if (json_array_size(ended))
                run_ends(core, study, ended);
}

int mp_study_recover(struct mp_core *core, struct mp_error *err) {
        _cleanup_json_ json_t *list = NULL;
        size_t i, k;
        json_t *s, *t;
        int r;

        if ((r = MP_STORE(core->store)->study_recover(core->store, &list, err)) < 0)
                return r;
        json_array_foreach(list, i, s) {
                _cleanup_json_ json_t *study = NULL;
                _cleanup_error_ struct mp_error serr = { 0 };
                json_array_foreach(json_object_get(s, "ended"), k, t)
                        mp_study_task_ended(core, json_string_value(t));
                /* Points never started (a crash before their start was stored) start now. */
                if (MP_STORE(core->store)->study_get(core->store, str_of(s, "id"), &study, &serr) < 0)
                        mp_warn("study %s: could not resume: %s", str_of(s, "id"), serr.message);
                else if (str_of(json_object_get(study, "target"), "workflow_id"))
                        recover_runs(core, study);
                if (study && (r = advance(core, str_of(s, "id"), study, &serr)) < 0)
                        mp_warn("study %s: could not resume: %s", str_of(s, "id"), serr.message);
        }
        if (json_array_size(list))
                mp_info("%zu unfinished stud%s resumed", json_array_size(list),
                        json_array_size(list) == 1 ? "y" : "ies");
        return 0;
}

int mp_core_study_column_units(struct mp_core *core, const struct mp_principal *p, json_t *study, json_t *inputs,
                               json_t **ret, bool *ret_checks, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL;
        json_t *target = json_object_get(study, "target");
        int r;

        if (ret_checks)
                *ret_checks = false;
        if (!json_is_object(target) || !str_of(target, "function_id")) {
                *ret = json_object();
                return *ret ? 0 : -ENOMEM;
        }
        if ((r = mp_core_load_callable(core, p, str_of(target, "function_id"),
                                       (int) json_integer_value(json_object_get(target, "version")), &fn, &ver,
                                       err)) < 0)
                return r;
        *ret = mp_core_study_units(ver, inputs, json_object_get(study, "outputs"));
        /* the fixed inputs are columns too */
        const char *key;
        json_t *v;
        json_object_foreach(json_object_get(study, "fixed"), key, v) {
                const char *unit = json_string_value(json_object_get(
                        json_object_get(json_object_get(json_object_get(ver, "input_schema"), "properties"), key),
                        "x-unit"));
                if (*ret && unit)
                        json_object_set_new(*ret, key, json_string(unit));
        }
        if (ret_checks)
                *ret_checks = json_object_get(json_object_get(json_object_get(ver, "output_schema"), "properties"),
                                              "checks") != NULL;
        return *ret ? 0 : -ENOMEM;
}

/* --- a study re-run on another version, and two studies compared --- */

int mp_core_study_rerun(struct mp_core *core, const struct mp_principal *p, const char *id, json_t *body,
                        json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *s = NULL, *rows = NULL, *list = NULL, *req = NULL;
        json_t *v = NULL, *row, *fixed, *target;
        const char *key, *wf, *fn;
        size_t i;
        int r;

        if (body && !json_is_null(body) && !json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object {\"version\"}");
        json_object_foreach(body, key, v)
                if (strcmp(key, "version"))
                        mp_error_add_field(err, key, "is not a field of a re-run (only \"version\")");
        v = json_object_get(body, "version");
        if (v && !json_is_null(v) &&
            (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > (1 << 30)))
                mp_error_add_field(err, "version", "must be a version number (1 or more); leave it out for the "
                                   "latest");
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = load_study(core, p, id, &s, err)) < 0)
                return r;
        target = json_object_get(s, "target");
        wf = str_of(target, "workflow_id");
        fn = str_of(target, "function_id");
        if (!wf && !fn)
                return mp_error_set(err, EINVAL, 409, "conflict",
                                    "study %s groups tasks and runs: only a study with a target can be re-run", id);
        /* The same points, in the same order: the inputs each point ran with, less the
         * fixed ones given apart; the study keeps the original's design (a grid stays a
         * grid), its points not made again from it (the new version's schema might make
         * others). */
        if ((r = MP_STORE(core->store)->study_points(core->store, id, -1, MP_MAX_STUDY_POINTS, &rows, err)) < 0)
                return r;
        fixed = json_object_get(s, "fixed");
        list = json_array();
        json_array_foreach(rows, i, row) {
                json_t *in = json_deep_copy(json_object_get(row, "inputs"));
                json_t *fv;
                if (!in)
                        return -ENOMEM;
                json_object_foreach(fixed, key, fv)
                        json_object_del(in, key);
                json_array_append_new(list, in);
        }
        req = json_pack("{s:s,s:{s:s,s:O},s:O,s:{s:s,s:O},s:O,s:O}", "name", str_of(s, "name") ?: "", "target",
                        wf ? "workflow" : "function", wf ? wf : fn, "version", v ? v : json_null(), "fixed",
                        json_is_object(fixed) ? fixed : json_null(), "design", "type", "list", "points", list,
                        "outputs", json_object_get(s, "outputs"), "concurrency", json_object_get(s, "concurrency"));
        if (!req)
                return -ENOMEM;
        if (!json_is_integer(json_object_get(req, "concurrency")))
                json_object_del(req, "concurrency");
        return create_study(core, p, req, NULL, 0, false, json_object_get(s, "design"), ret, err);
}

/* The points of a study by their inputs (canonical text): {key: point row}. */
static int points_by_inputs(struct mp_core *core, const char *id, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL;
        json_t *row;
        size_t i;
        int r;

        if ((r = MP_STORE(core->store)->study_points(core->store, id, -1, MP_MAX_STUDY_POINTS, &rows, err)) < 0)
                return r;
        *ret = json_object();
        json_array_foreach(rows, i, row) {
                _cleanup_free_ char *k = mp_json_dumps(json_object_get(row, "inputs"), JSON_COMPACT | JSON_SORT_KEYS);
                if (!k || !*ret)
                        return -ENOMEM;
                json_object_set(*ret, k, row);
        }
        return 0;
}

int mp_core_study_diff(struct mp_core *core, const struct mp_principal *p, const char *a_id, const char *b_id,
                       json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *a = NULL, *b = NULL, *pa = NULL, *pb = NULL;
        json_t *outputs, *points, *only_a, *only_b, *summary, *ra, *rb, *o;
        const char *key;
        size_t j;
        int r;

        if ((r = load_study(core, p, a_id, &a, err)) < 0 || (r = load_study(core, p, b_id, &b, err)) < 0 ||
            (r = points_by_inputs(core, a_id, &pa, err)) < 0 || (r = points_by_inputs(core, b_id, &pb, err)) < 0)
                return r;
        outputs = json_object_get(a, "outputs");
        *ret = json_pack("{s:s,s:s,s:O,s:{},s:[],s:[],s:[]}", "a", a_id, "b", b_id, "outputs", outputs, "summary",
                         "points", "only_in_a", "only_in_b");
        if (!*ret)
                return -ENOMEM;
        summary = json_object_get(*ret, "summary");
        points = json_object_get(*ret, "points");
        only_a = json_object_get(*ret, "only_in_a");
        only_b = json_object_get(*ret, "only_in_b");
        json_array_foreach(outputs, j, o)
                json_object_set_new(summary, json_string_value(o), json_pack("{s:n,s:n,s:i}", "max_abs_diff",
                                                                             "max_rel_diff", "different", 0));
        json_object_foreach(pb, key, rb)
                if (!json_object_get(pa, key))
                        json_array_append(only_b, json_object_get(rb, "inputs"));
        json_object_foreach(pa, key, ra) {
                rb = json_object_get(pb, key);
                if (!rb) {
                        json_array_append(only_a, json_object_get(ra, "inputs"));
                        continue;
                }
                json_t *diff = json_object();
                json_array_foreach(outputs, j, o) {
                        const char *name = json_string_value(o);
                        json_t *va = json_object_get(json_object_get(ra, "outputs"), name);
                        json_t *vb = json_object_get(json_object_get(rb, "outputs"), name);
                        json_t *sum = json_object_get(summary, name), *d;
                        bool numbers = (json_is_integer(va) || json_is_real(va)) &&
                                       (json_is_integer(vb) || json_is_real(vb));
                        if (numbers) {
                                double x = json_number_value(va), y = json_number_value(vb);
                                double ad = fabs(y - x), scale = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
                                double rd = scale > 0 ? ad / scale : 0;
                                d = json_pack("{s:O,s:O,s:f,s:f}", "a", va, "b", vb, "abs_diff", ad, "rel_diff", rd);
                                json_t *m = json_object_get(sum, "max_rel_diff");
                                if (!json_is_real(m) || json_real_value(m) < rd)
                                        json_object_set_new(sum, "max_rel_diff", json_real(rd));
                                m = json_object_get(sum, "max_abs_diff");
                                if (!json_is_real(m) || json_real_value(m) < ad)
                                        json_object_set_new(sum, "max_abs_diff", json_real(ad));
                        } else {
                                d = json_pack("{s:O,s:O,s:n,s:n}", "a", va ? va : json_null(), "b",
                                              vb ? vb : json_null(), "abs_diff", "rel_diff");
                        }
                        if (!(va && vb && json_equal(va, vb)))
                                json_object_set_new(sum, "different",
                                                    json_integer(json_integer_value(json_object_get(sum, "different")) + 1));
                        json_object_set_new(diff, name, d);
                }
                json_array_append_new(points, json_pack("{s:O,s:o}", "inputs", json_object_get(ra, "inputs"), "outputs",
                                                        diff));
        }
        return 0;
}
