/* Workflows (docs/workflows.md): definitions kept as immutable versions, and their runs.
 * The scheduling rules are the pure functions of flow.h; this file keeps a run's state in
 * the store and makes its tasks:
 *
 *  - a step is: read the run (its state and rev), change the state (a task's end, a
 *    cancel, a retry, a recovery), then mp_flow_run_next and a task for each start, and
 *    store the state and the new tasks over the rev read, in one transaction (compare
 *    and set: workflow_run_advance). A step that lost the race to another writer has
 *    written nothing; it reads again and is done again;
 *  - a start's task id is a digest of (run, node, element, generation), so a step done
 *    again, or redone after a crash, names the task it made the first time and the
 *    store makes it once; the generation grows with each retry of the run;
 *  - event-driven: a task's end (mp_core_on_task_end, work.c) runs a step at once; a step
 *    that made a task which has already ended when the step is stored (a fast worker)
 *    feeds that end itself, since the worker's own step may have read the state before
 *    the task was in it. */
#include <sodium.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
#include "core/flow.h"
#include "queue/queue.h"

/* A step that loses the compare and set this many times in a row gives up (logged; the
 * next end or a restart takes the run up again). */
#define STEP_MAX_TRIES 200

static const char *const wf_times[] = { "created_at", "updated_at", NULL };
static const char *const wf_drop[] = { "deleted_at", "company_id", "latest_version", NULL };

/* --- definitions --- */

/* The principal a run's tasks are made for: its owner, in the company the run was made
 * in. Scopes play no part past the route. */
static void owner_principal(json_t *run, struct mp_principal *ret) {
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->user_id, sizeof(ret->user_id), "%s", json_string_value(json_object_get(run, "owner_id")) ?: "");
        snprintf(ret->company_id, sizeof(ret->company_id), "%s",
                 json_string_value(json_object_get(run, "company_id")) ?: "");
        snprintf(ret->role, sizeof(ret->role), "member");
        ret->scopes = MP_SCOPE_ALL;
}

/* A function by id or name, as the caller may run it: an id they may see; else their
 * own function of that name; else the one function of that name they may see. */
static int find_callable(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                         json_t **ret_fn, json_t **ret_ver, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *filter = NULL;
        struct mp_store_list list = { 0 };
        int r;

        if (mp_id_valid(ref))
                return mp_core_load_callable(core, p, ref, version, ret_fn, ret_ver, err);
        r = MP_STORE(core->store)->function_find(core->store, p->user_id, ref, &fn, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                filter = json_pack("{s:s,s:s?,s:s,s:i}", "viewer_id", p->user_id, "company_id",
                                   p->company_id[0] ? p->company_id : NULL, "name", ref, "limit", 2);
                if (!filter)
                        return -ENOMEM;
                if ((r = MP_STORE(core->store)->function_list(core->store, filter, &list, err)) < 0)
                        return r;
                if (json_array_size(list.items) == 1)
                        fn = json_incref(json_array_get(list.items, 0));
                json_decref(list.items);
                free(list.next_cursor);
                if (!fn)
                        return mp_core_not_found(err, "function", ref);
        } else if (r < 0)
                return r;
        return mp_core_load_callable(core, p, json_string_value(json_object_get(fn, "id")), version, ret_fn,
                                     ret_ver, err);
}

struct resolver {
        struct mp_core *core;
        const struct mp_principal *p;
};

static int resolve(void *userdata, const char *function, int version, json_t **ret, struct mp_error *err) {
        struct resolver *rs = userdata;
        _cleanup_json_ json_t *fn = NULL, *ver = NULL;
        _cleanup_error_ struct mp_error ferr = { 0 };
        int r = find_callable(rs->core, rs->p, function, version, &fn, &ver, &ferr);

        (void) err;
        if (r == -ENOENT || r == -EACCES)
                return -ENOENT;
        if (r < 0)
                return r;
        /* The outcome of its verification cases, for require_verified (verify.c). */
        mp_verify_refresh(rs->core, json_string_value(json_object_get(fn, "id")), ver);
        _cleanup_json_ json_t *verification = mp_verify_render(ver);
        *ret = json_pack("{s:O,s:O,s:O,s:O}", "function_id", json_object_get(fn, "id"), "version",
                         json_object_get(ver, "version"), "input_schema",
                         json_object_get(ver, "input_schema") ?: json_null(), "verification_status",
                         json_object_get(verification, "status"));
        if (*ret && json_is_object(json_object_get(ver, "output_schema"))) /* units: edges check them */
                json_object_set(*ret, "result_schema", json_object_get(ver, "output_schema"));
        return *ret ? 0 : -ENOMEM;
}

/* The body of POST or PUT: visibility is ours, the rest the definition's. */
static int parse_definition(struct mp_core *core, const struct mp_principal *p, json_t *body,
                            json_t **ret_def, const char **ret_visibility, struct mp_error *err) {
        struct resolver rs = { core, p };
        _cleanup_json_ json_t *copy = NULL;
        json_t *vis;
        _cleanup_free_ char *text = NULL;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        text = mp_json_dumps(body, JSON_COMPACT);
        if (text && strlen(text) > MP_MAX_WORKFLOW_BYTES)
                return mp_error_set(err, E2BIG, 413, "too_large", "a workflow definition is at most %u bytes",
                                    MP_MAX_WORKFLOW_BYTES);
        copy = json_copy(body);
        vis = json_object_get(body, "visibility");
        *ret_visibility = NULL;
        if (vis) {
                const char *v = json_string_value(vis);
                if (!v || (strcmp(v, "private") && strcmp(v, "company") && strcmp(v, "public")))
                        mp_error_add_field(err, "visibility", "must be private, company or public");
                else
                        *ret_visibility = v;
                json_object_del(copy, "visibility");
        }
        int r = mp_workflow_def_parse(copy, resolve, &rs, ret_def, err);
        if (r < 0 || err->errors) {
                if (r >= 0) {
                        json_decref(*ret_def);
                        *ret_def = NULL;
                }
                if (err->errors)
                        return mp_core_validation_done(err, "fields");
                return r;
        }
        return 0;
}

static json_t *render_workflow(json_t *wf, json_t *ver) {
        json_t *out = json_deep_copy(wf), *def = json_object_get(ver, "definition");
        static const char *const keys[] = { "params", "input_schema", "nodes", "outputs", "cache", "layout", NULL };

        for (const char *const *k = keys; *k; k++)
                json_object_set(out, *k, json_object_get(def, *k) ?: json_null());
        json_object_set(out, "version", json_object_get(ver, "version"));
        mp_core_shape(out, wf_times, wf_drop);
        return out;
}

static bool can_see_workflow(const struct mp_principal *p, json_t *wf) {
        return mp_core_can_see_function(p, wf); /* the same rule: owner, company, public */
}

/* A live workflow the principal may see, by id or by the caller's own name; else 404. */
static int load_workflow(struct mp_core *core, const struct mp_principal *p, const char *ref, json_t **ret,
                         struct mp_error *err) {
        json_t *wf = NULL;
        int r;

        if (mp_id_valid(ref))
                r = MP_STORE(core->store)->workflow_get(core->store, ref, &wf, err);
        else
                r = MP_STORE(core->store)->workflow_find(core->store, p->user_id, ref, &wf, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "workflow", ref);
        }
        if (r < 0)
                return r;
        if (!can_see_workflow(p, wf)) {
                json_decref(wf);
                return mp_core_not_found(err, "workflow", ref);
        }
        *ret = wf;
        return 0;
}

static int load_owned_workflow(struct mp_core *core, const struct mp_principal *p, const char *ref,
                               json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL;
        int r = load_workflow(core, p, ref, &wf, err);

        if (r < 0)
                return r;
        if ((r = mp_core_authorize(p, MP_ACTION_FUNCTION_WRITE, err)) < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(wf, "owner_id")) ?: "", p->user_id))
                return mp_error_set(err, EPERM, 403, "forbidden", "only the owner of workflow %s may change or "
                                    "delete it", ref);
        *ret = TAKE_PTR(wf);
        return 0;
}

int mp_core_workflow_resolve(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                             json_t **ret_wf, json_t **ret_ver, struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL;
        int r = load_workflow(core, p, ref, &wf, err);

        if (r < 0)
                return r;
        r = MP_STORE(core->store)->workflow_get_version(core->store, json_string_value(json_object_get(wf, "id")),
                                                        version, ret_ver, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_error_set(err, ENOENT, 404, "not_found", "workflow %s has no version %d", ref, version);
        }
        if (r < 0)
                return r;
        *ret_wf = TAKE_PTR(wf);
        return 0;
}

int mp_core_workflow_create(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                            struct mp_error *err) {
        _cleanup_json_ json_t *def = NULL, *wf = NULL, *ver = NULL;
        const char *visibility = NULL;
        char id[MP_ID_LEN + 1];
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_FUNCTION_WRITE, err)) < 0)
                return r;
        if ((r = parse_definition(core, p, body, &def, &visibility, err)) < 0)
                return r;
        mp_id_new(id);
        int64_t now = mp_now_ms();
        wf = json_pack("{s:s,s:s,s:O,s:O,s:s,s:I,s:I}", "id", id, "owner_id", p->user_id, "name",
                       json_object_get(def, "name"), "description", json_object_get(def, "description"),
                       "visibility", visibility ? visibility : "private", "created_at", (json_int_t) now,
                       "updated_at", (json_int_t) now);
        ver = json_pack("{s:O,s:O,s:I}", "definition", def, "input_schema", json_object_get(def, "input_schema"),
                        "created_at", (json_int_t) now);
        if (!wf || !ver)
                return -ENOMEM;
        json_object_set_new(wf, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        r = MP_STORE(core->store)->workflow_create(core->store, wf, ver, err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "you already have a workflow named \"%s\": use "
                                    "PUT /api/v1/workflows/{id} to add a version",
                                    json_string_value(json_object_get(def, "name")));
        if (r < 0)
                return r;
        json_object_set_new(ver, "version", json_integer(1));
        *ret = render_workflow(wf, ver);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_workflow_update(struct mp_core *core, const struct mp_principal *p, const char *ref, json_t *body,
                            json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL, *def = NULL, *ver = NULL, *fields = NULL, *after = NULL;
        const char *visibility = NULL;
        int version = 0, r;

        if ((r = load_owned_workflow(core, p, ref, &wf, err)) < 0)
                return r;
        if ((r = parse_definition(core, p, body, &def, &visibility, err)) < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(def, "name")) ?: "",
                   json_string_value(json_object_get(wf, "name")) ?: "")) {
                mp_error_add_field(err, "name", "is \"%s\": a new version keeps the workflow's name",
                                   json_string_value(json_object_get(wf, "name")));
                return mp_core_validation_done(err, "fields");
        }
        const char *id = json_string_value(json_object_get(wf, "id"));
        int64_t now = mp_now_ms();
        fields = json_pack("{s:O}", "description", json_object_get(def, "description"));
        if (visibility)
                json_object_set_new(fields, "visibility", json_string(visibility));
        ver = json_pack("{s:O,s:O,s:I}", "definition", def, "input_schema", json_object_get(def, "input_schema"),
                        "created_at", (json_int_t) now);
        if (!fields || !ver)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->workflow_update(core->store, id, fields, ver, now, &version, err)) < 0)
                return r == -ENOENT ? mp_core_not_found(err, "workflow", ref) : r;
        if ((r = MP_STORE(core->store)->workflow_get(core->store, id, &after, err)) < 0)
                return r;
        json_object_set_new(ver, "version", json_integer(version));
        *ret = render_workflow(after, ver);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_workflow_get(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                         json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL, *ver = NULL;
        int r = mp_core_workflow_resolve(core, p, ref, version, &wf, &ver, err);

        if (r < 0)
                return r;
        *ret = render_workflow(wf, ver);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_workflow_list(struct mp_core *core, const struct mp_principal *p, const char *name,
                          const char *cursor, int limit, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *filter = NULL, *items = json_array();
        struct mp_store_list list = { 0 };
        json_t *w;
        size_t i;
        int r;

        filter = json_pack("{s:s,s:s?,s:s?,s:s?,s:i}", "viewer_id", p->user_id, "company_id",
                           p->company_id[0] ? p->company_id : NULL, "name", name, "cursor", cursor, "limit", limit);
        if (!filter || !items)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->workflow_list(core->store, filter, &list, err)) < 0)
                return mp_core_list_failed(r, cursor, err);
        json_array_foreach(list.items, i, w) {
                _cleanup_json_ json_t *ver = NULL;
                _cleanup_error_ struct mp_error verr = { 0 };
                if (MP_STORE(core->store)->workflow_get_version(core->store, json_string_value(json_object_get(w, "id")),
                                                                0, &ver, &verr) < 0)
                        continue;
                json_array_append_new(items, render_workflow(w, ver));
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_workflow_delete(struct mp_core *core, const struct mp_principal *p, const char *ref,
                            struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL;
        int r = load_owned_workflow(core, p, ref, &wf, err);

        if (r < 0)
                return r;
        r = MP_STORE(core->store)->workflow_delete(core->store, json_string_value(json_object_get(wf, "id")),
                                                   mp_now_ms(), err);
        return r == -ENOENT ? mp_core_not_found(err, "workflow", ref) : r < 0 ? r : 0;
}

/* --- runs --- */

/* What a step does to the state before scheduling. 1: changed (store it), 0: nothing to
 * do (the step stops here, nothing stored), -errno: refused (err says why). */
typedef int (*step_change_fn)(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                              struct mp_error *err);

/* A task's result or error as the state keeps them. */
static int task_outcome(struct mp_core *core, json_t *task, json_t **ret_result, json_t **ret_error) {
        _cleanup_error_ struct mp_error err = { 0 };
        const char *status = json_string_value(json_object_get(task, "status"));
        const char *key;

        *ret_result = *ret_error = NULL;
        if (status && !strcmp(status, "completed")) {
                json_t *text = json_object_get(task, "result_json");
                if (json_is_string(text))
                        *ret_result = json_loadb(json_string_value(text), json_string_length(text),
                                                 JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                else if ((key = json_string_value(json_object_get(task, "result_blob")))) {
                        _cleanup_free_ char *data = NULL;
                        size_t len = 0;
                        if (MP_BLOBS(core->blobs)->get(core->blobs, key, MP_MAX_RESULT_BYTES + 1, &data, &len, &err) < 0)
                                return -EAGAIN; /* the object store is down: try again later */
                        *ret_result = json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                }
                if (!*ret_result)
                        *ret_result = json_null();
                return 0;
        }
        json_t *e = json_object_get(task, "error");
        if (json_is_object(e))
                *ret_error = json_incref(e);
        else
                *ret_error = json_pack("{s:s,s:s}", "type",
                                       json_string_value(json_object_get(task, "error_type")) ?: "TaskFailed",
                                       "message", status ? status : "failed");
        json_object_set_new(*ret_error, "task_id", json_incref(json_object_get(task, "id")));
        return 0;
}

/* Feed a task's end into the state when it is the task the state waits for there. 1 when
 * recorded, 0 otherwise. */
static int feed_end(struct mp_core *core, json_t *def, json_t *state, json_t *task) {
        const char *node = json_string_value(json_object_get(task, "node_id"));
        json_t *el = json_object_get(task, "element_index");
        int element = json_is_integer(el) ? (int) json_integer_value(el) : -1;
        json_t *ns = json_object_get(json_object_get(state, "nodes"), node ? node : "");
        json_t *cs = element < 0 ? ns : json_array_get(json_object_get(ns, "elements"), (size_t) element);
        _cleanup_json_ json_t *result = NULL, *error = NULL;
        const char *tid = json_string_value(json_object_get(task, "id"));

        if (!cs || !mp_core_status_ended(json_string_value(json_object_get(task, "status"))))
                return 0;
        /* A task made by a step whose store was lost to another writer is not this
         * state's: its end is none of the run's business. */
        if (!json_is_string(json_object_get(cs, "task_id")) || strcmp(json_string_value(json_object_get(cs, "task_id")), tid))
                return 0;
        if (task_outcome(core, task, &result, &error) < 0)
                return 0;
        return mp_flow_run_task_ended(def, state, node, element, json_string_value(json_object_get(task, "status")),
                                      result, error) == 0;
}

/* Node timings kept beside the scheduler's fields: started when first running, finished
 * when ended; a node back to pending (retry) loses both. */
static void stamp_times(json_t *state, int64_t now) {
        const char *id;
        json_t *ns;

        json_object_foreach(json_object_get(state, "nodes"), id, ns) {
                const char *st = json_string_value(json_object_get(ns, "status")) ?: "";
                if (!strcmp(st, "pending")) {
                        json_object_del(ns, "started_at");
                        json_object_del(ns, "finished_at");
                        continue;
                }
                if (!strcmp(st, "running")) {
                        json_object_del(ns, "finished_at");
                        if (!json_object_get(ns, "started_at"))
                                json_object_set_new(ns, "started_at", json_integer(now));
                        continue;
                }
                if (!json_object_get(ns, "finished_at"))
                        json_object_set_new(ns, "finished_at", json_integer(now));
        }
}

/* The id of a start's task: a UUID-shaped BLAKE2b digest of (run, node, element,
 * generation), so a step done again (a lost race, a restart) names the same task, and
 * the store makes it once. The generation grows with each retry of the run. */
static void start_task_id(json_t *run, json_t *state, const char *node, int element, char ret[MP_ID_LEN + 1]) {
        char key[3 * MP_ID_LEN + MP_MAX_NODE_ID_LEN];
        unsigned char h[16];
        int n = snprintf(key, sizeof(key), "wf:%s:%s:%d:%" JSON_INTEGER_FORMAT,
                         json_string_value(json_object_get(run, "id")) ?: "", node, element,
                         json_integer_value(json_object_get(state, "generation")));

        crypto_generichash(h, sizeof(h), (const unsigned char *) key, (size_t) MP_MIN(n, (int) sizeof(key) - 1),
                           NULL, 0);
        h[6] = (unsigned char) ((h[6] & 0x0f) | 0x40); /* version 4 */
        h[8] = (unsigned char) ((h[8] & 0x3f) | 0x80); /* variant 1 */
        snprintf(ret, MP_ID_LEN + 1,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", h[0], h[1], h[2],
                 h[3], h[4], h[5], h[6], h[7], h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]);
}

/* The task of one start, checked as a plain execute checks one (the run owner's
 * tenancy, the function's visibility and input schema): its row in *ret_task, to be
 * stored with the step. A start that cannot become a task (the function is gone or no
 * longer visible to the owner, inputs its schema refuses) fails in the state instead:
 * 0 and *ret_task NULL. */
static int make_task(struct mp_core *core, json_t *run, json_t *state, json_t *start, json_t **ret_task,
                     struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL, *task = NULL;
        _cleanup_error_ struct mp_error verr = { 0 };
        struct mp_principal owner;
        const char *node = json_string_value(json_object_get(start, "node"));
        int element = (int) json_integer_value(json_object_get(start, "element"));
        const char *fid = json_string_value(json_object_get(start, "function_id"));
        json_t *inputs = json_object_get(start, "inputs");
        char id[MP_ID_LEN + 1];
        int r;

        *ret_task = NULL;
        owner_principal(run, &owner);
        r = mp_core_load_callable(core, &owner, fid, (int) json_integer_value(json_object_get(start, "version")), &fn,
                                  &ver, &verr);
        if (r >= 0)
                r = mp_core_schema_validate(json_object_get(ver, "input_schema"), inputs, &verr);
        if (r < 0) {
                if (verr.status == 0 || verr.status >= 500) {
                        mp_error_set(err, -r, verr.status ? verr.status : 503, "unavailable", "%s", verr.message);
                        return r;
                }
                _cleanup_json_ json_t *e = json_pack("{s:s,s:s}", "type",
                                                     r == -ENOENT ? "FunctionUnavailable" : "ValidationError",
                                                     "message", verr.message);
                if (verr.errors)
                        json_object_set(e, "errors", verr.errors);
                mp_flow_run_task_ended(NULL, state, node, element, "failed", NULL, e);
                return 0;
        }
        start_task_id(run, state, node, element, id);
        task = json_pack("{s:s,s:s,s:O,s:s,s:O,s:I,s:O,s:s}", "id", id, "function_id", fid, "version",
                         json_object_get(ver, "version"), "owner_id", owner.user_id, "inputs", inputs, "queued_at",
                         (json_int_t) mp_now_ms(), "workflow_run_id", json_object_get(run, "id"), "node_id", node);
        if (!task)
                return -ENOMEM;
        json_object_set_new(task, "company_id", owner.company_id[0] ? json_string(owner.company_id) : json_null());
        json_object_set_new(task, "element_index", element >= 0 ? json_integer(element) : json_null());
        /* The request that made the run (or its study): the worker logs it with the task. */
        json_object_set(task, "request_id", json_object_get(run, "request_id") ?: json_null());
        /* A node of a function version declared "cache" carries the key a plain call
         * would (tasks.c), and is answered from the cache as a plain call is: the store
         * copies the owner's computed task of that key in the step's transaction
         * (cached_from, no job), unless the run asked for a refresh. */
        if (json_integer_value(json_object_get(ver, "cache")) != 0) {
                char vkey[MP_ID_LEN + 24], env[80], key[MP_CACHE_KEY_HEX_LEN + 1];
                _cleanup_error_ struct mp_error kerr = { 0 };
                snprintf(vkey, sizeof(vkey), "%s:%" JSON_INTEGER_FORMAT, fid,
                         json_integer_value(json_object_get(ver, "version")));
                if (!mp_core_version_env(ver, env, sizeof(env)))
                        snprintf(env, sizeof(env), "base");
                if (mp_cache_key(vkey, env, inputs, key, &kerr) >= 0) {
                        json_object_set_new(task, "cache_key", json_string(key));
                        json_object_set_new(task, "cache_lookup",
                                            json_boolean(!json_is_true(json_object_get(state, "cache_refresh"))));
                }
        }
        *ret_task = TAKE_PTR(task);
        return 0;
}

/* Schedule: the starts of this step, each with its task row in tasks (stored with the
 * state, in one transaction). */
static int schedule(struct mp_core *core, json_t *run, json_t *def, json_t *state, json_t *tasks,
                    struct mp_error *err) {
        for (int round = 0; round < MP_MAX_WORKFLOW_NODES * 4; round++) {
                _cleanup_json_ json_t *starts = NULL;
                bool again = false;
                json_t *s;
                size_t i;
                int r = mp_flow_run_next(def, json_object_get(run, "inputs"), state, &starts, err);
                if (r < 0)
                        return r;
                json_array_foreach(starts, i, s) {
                        json_t *task = NULL;
                        if ((r = make_task(core, run, state, s, &task, err)) < 0)
                                return r;
                        if (!task) {
                                again = true; /* failed in place: its downstream is to skip */
                                continue;
                        }
                        mp_flow_run_set_task(state, json_string_value(json_object_get(s, "node")),
                                             (int) json_integer_value(json_object_get(s, "element")),
                                             json_string_value(json_object_get(task, "id")));
                        json_array_append_new(tasks, task);
                }
                if (!again)
                        return 0;
        }
        return 0;
}

/* A task stored with a step goes to the queue, unless the store answered it from the
 * result cache (cached_from: completed, no job). */
static void push_task(struct mp_core *core, json_t *t) {
        mp_core_count_created(core);
        if (json_object_get(t, "cached_from")) {
                mp_core_count_cache_hit(core);
                return;
        }
        MP_QUEUE(core->queue)->push(core->queue, json_string_value(json_object_get(t, "id")),
                                    json_string_value(json_object_get(t, "function_id")), NULL);
}

static int step(struct mp_core *core, const char *run_id, step_change_fn change, void *ctx, json_t **ret_run,
                json_t **ret_ended, struct mp_error *err);

static int change_tasks_ended(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                              struct mp_error *err) {
        json_t *t;
        size_t i;
        int fed = 0;

        (void) run;
        (void) err;
        json_array_foreach((json_t *) ctx, i, t)
                fed += feed_end(core, def, state, t) > 0;
        return fed > 0;
}

/* The rows of the tasks in made (a step's, or a run's creation's) that have already
 * ended: cache hits, and tasks a fast worker ended before the step was stored. */
static json_t *ended_rows(struct mp_core *core, json_t *made) {
        json_t *ended = json_array(), *t;
        size_t i;

        json_array_foreach(made, i, t) {
                _cleanup_json_ json_t *row = NULL;
                _cleanup_error_ struct mp_error terr = { 0 };
                if (MP_STORE(core->store)->task_get(core->store, json_string_value(json_object_get(t, "id")), &row,
                                                    &terr) >= 0 &&
                    mp_core_status_ended(json_string_value(json_object_get(row, "status"))))
                        json_array_append(ended, row);
        }
        return ended;
}

/* Feed ended tasks (rows) to their run, one step for all of them (a map of many cached
 * elements is one step, not one per element), and again for those the steps make that
 * have ended by then: a loop, not a recursion, however long a chain of cached nodes is.
 * 1 when something was fed. */
static int feed_ended(struct mp_core *core, const char *run_id, json_t *rows) {
        _cleanup_json_ json_t *todo = json_incref(rows);
        int fed = 0;

        while (json_array_size(todo)) {
                _cleanup_error_ struct mp_error err = { 0 };
                json_t *more = NULL;
                if (step(core, run_id, change_tasks_ended, todo, NULL, &more, &err) < 0) {
                        mp_warn("workflow run %s: the ends of %zu task(s) could not be recorded now (%s); a "
                                "restart takes them up", run_id, json_array_size(todo), err.message);
                        break;
                }
                fed = 1;
                json_decref(todo);
                todo = more;
        }
        return fed;
}

static bool run_over(json_t *state) {
        const char *st = json_string_value(json_object_get(state, "status")) ?: "running";
        return strcmp(st, "running") != 0;
}

/* The run's columns that follow its state. */
static void run_set_state(json_t *run, json_t *state, bool over, int64_t now) {
        json_object_set(run, "state", state);
        json_object_set(run, "status", json_object_get(state, "status"));
        json_object_set(run, "outputs", json_object_get(state, "outputs") ?: json_null());
        json_object_set(run, "error", json_object_get(state, "error") ?: json_null());
        json_object_set_new(run, "finished_at", json_integer(over ? now : 0));
}

/* A thread making the run of a study's point (mp_core_workflow_point_run) records the
 * point's end itself, from the run it made, in its study's work list: the steps of that
 * creation leave it alone (no recursion from one point's run to the next). */
static _Thread_local int making_point_run;

/* One step on a run, redone until its store wins. change may be NULL (just schedule).
 * ret_run (may be NULL): the run row after the step. ret_ended: the rows of the tasks it
 * made that have already ended (for feed_ended), or NULL to feed them here. */
static int step(struct mp_core *core, const char *run_id, step_change_fn change, void *ctx, json_t **ret_run,
                json_t **ret_ended, struct mp_error *err) {
        for (int attempt = 0; attempt < STEP_MAX_TRIES; attempt++) {
                _cleanup_json_ json_t *run = NULL, *ver = NULL, *state = NULL, *made = json_array(), *fields = NULL;
                int r;

                if (!made)
                        return -ENOMEM;
                if ((r = MP_STORE(core->store)->workflow_run_get(core->store, run_id, &run, err)) < 0)
                        return r;
                if ((r = MP_STORE(core->store)->workflow_get_version(core->store,
                                json_string_value(json_object_get(run, "workflow_id")),
                                (int) json_integer_value(json_object_get(run, "version")), &ver, err)) < 0)
                        return r;
                json_t *def = json_object_get(ver, "definition");
                state = json_deep_copy(json_object_get(run, "state"));
                if (!state)
                        return -ENOMEM;
                bool was_over = run_over(state) && !mp_flow_run_busy(state);
                if (change) {
                        r = change(core, run, def, state, ctx, err);
                        if (r < 0)
                                return r;
                        if (r == 0) {
                                if (ret_run)
                                        *ret_run = TAKE_PTR(run);
                                return 0;
                        }
                }
                if (!run_over(state) && (r = schedule(core, run, def, state, made, err)) < 0)
                        return r;
                int64_t now = mp_now_ms();
                stamp_times(state, now);
                bool over = run_over(state) && !mp_flow_run_busy(state);
                fields = json_pack("{s:O,s:O,s:O,s:O,s:I}", "state", state, "status",
                                   json_object_get(state, "status"), "outputs",
                                   json_object_get(state, "outputs") ?: json_null(), "error",
                                   json_object_get(state, "error") ?: json_null(), "finished_at",
                                   (json_int_t) (over ? now : 0));
                if (!fields)
                        return -ENOMEM;
                _cleanup_json_ json_t *created = NULL;
                r = MP_STORE(core->store)->workflow_run_advance(core->store, run_id,
                                                                json_integer_value(json_object_get(run, "rev")), fields,
                                                                made, &created, err);
                if (r < 0)
                        return r;
                if (r == 0) {
                        mp_error_clear(err);
                        continue; /* another writer's step came first: read again */
                }
                size_t i;
                json_t *t;
                /* The tasks and their jobs are stored: a lost wake-up only delays them. */
                json_array_foreach(made, i, t) {
                        for (size_t k = 0; k < json_array_size(created); k++)
                                if (json_equal(json_array_get(created, k), json_object_get(t, "id"))) {
                                        push_task(core, t);
                                        break;
                                }
                }
                if (over && !was_over) {
                        mp_core_count_run_end(core, json_string_value(json_object_get(state, "status")));
                        mp_core_task_ended(core, run_id); /* wakes GET /workflow-runs/{id}?wait= */
                        if (json_is_string(json_object_get(run, "study_id")) && !making_point_run) {
                                _cleanup_json_ json_t *ended = json_deep_copy(run);
                                if (ended) {
                                        json_object_set(ended, "status", json_object_get(state, "status"));
                                        json_object_set(ended, "outputs", json_object_get(state, "outputs") ?: json_null());
                                        json_object_set(ended, "error", json_object_get(state, "error") ?: json_null());
                                        json_object_set_new(ended, "finished_at", json_integer(now));
                                        mp_study_run_ended(core, ended);
                                }
                        }
                }
                /* Tasks of this step that have ended by now: answered from the cache, made
                 * by an earlier try of it (a restart), or so fast that their worker's step
                 * read the state before they were in it. Fed next. */
                _cleanup_json_ json_t *ended = ended_rows(core, made);
                if (ret_ended) {
                        *ret_ended = TAKE_PTR(ended);
                } else if (feed_ended(core, run_id, ended) && ret_run) {
                        _cleanup_error_ struct mp_error gerr = { 0 };
                        if (MP_STORE(core->store)->workflow_run_get(core->store, run_id, ret_run, &gerr) >= 0)
                                return 0;
                }
                if (ret_run && !*ret_run) {
                        run_set_state(run, state, over, now);
                        *ret_run = TAKE_PTR(run);
                }
                return 0;
        }
        mp_err("workflow run %s: %d steps in a row lost to other writers; it goes on at the next end",
               run_id, STEP_MAX_TRIES);
        return mp_error_set(err, EBUSY, 503, "unavailable", "workflow run %s is too busy now; try again", run_id);
}

static int change_task_ended(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                             struct mp_error *err) {
        (void) run;
        (void) err;
        return feed_end(core, def, state, ctx);
}

void mp_core_workflow_task_ended(struct mp_core *core, json_t *task) {
        _cleanup_error_ struct mp_error err = { 0 };
        const char *run_id = json_string_value(json_object_get(task, "workflow_run_id"));

        if (!run_id)
                return;
        if (step(core, run_id, change_task_ended, task, NULL, NULL, &err) < 0)
                mp_warn("workflow run %s: the end of task %s could not be recorded now (%s); a restart "
                        "takes it up", run_id, json_string_value(json_object_get(task, "id")) ?: "?", err.message);
}

/* After a restart: starts that never got their task are made again (found by their
 * key), and the ends of tasks that ended while nobody listened are fed. */
static int change_recover(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                          struct mp_error *err) {
        const char *id;
        json_t *ns;

        (void) run;
        (void) ctx;
        (void) err;
        mp_flow_run_recover(state);
        json_object_foreach(json_object_get(state, "nodes"), id, ns) {
                json_t *calls = json_object_get(ns, "elements"), *one[1] = { ns }, *cs;
                size_t n = calls ? json_array_size(calls) : 1;
                for (size_t i = 0; i < n; i++) {
                        _cleanup_json_ json_t *t = NULL;
                        _cleanup_error_ struct mp_error terr = { 0 };
                        cs = calls ? json_array_get(calls, i) : one[0];
                        const char *tid = json_string_value(json_object_get(cs, "task_id"));
                        if (!tid || strcmp(json_string_value(json_object_get(cs, "status")) ?: "", "running"))
                                continue;
                        if (MP_STORE(core->store)->task_get(core->store, tid, &t, &terr) >= 0)
                                feed_end(core, def, state, t);
                }
        }
        return 1;
}

int mp_core_workflow_recover(struct mp_core *core, struct mp_error *err) {
        _cleanup_json_ json_t *open = NULL;
        json_t *r;
        size_t i;
        int n = 0;

        if (MP_STORE(core->store)->workflow_run_open(core->store, &open, err) < 0)
                return -EIO;
        json_array_foreach(open, i, r) {
                _cleanup_error_ struct mp_error serr = { 0 };
                const char *id = json_string_value(json_object_get(r, "id"));
                if (step(core, id, change_recover, NULL, NULL, NULL, &serr) < 0)
                        mp_warn("workflow run %s: not taken up again: %s", id, serr.message);
                else
                        n++;
        }
        if (n > 0)
                mp_info("%d workflow run(s) taken up again after the restart", n);
        return n;
}

/* The run as the API shows it. */
static json_t *render_run(json_t *run, json_t *def) {
        static const char *const times[] = { "started_at", "finished_at", NULL };
        static const char *const run_times[] = { "created_at", "finished_at", NULL };
        json_t *state = json_object_get(run, "state"), *node, *nodes = json_array();
        size_t i;

        json_array_foreach(json_object_get(def, "nodes"), i, node) {
                const char *id = json_string_value(json_object_get(node, "id"));
                json_t *ns = json_object_get(json_object_get(state, "nodes"), id);
                json_t *out = json_pack("{s:s,s:s,s:O,s:I,s:I,s:O,s:O}", "id", id, "status",
                                        json_string_value(json_object_get(ns, "status")) ?: "pending", "task_id",
                                        json_object_get(ns, "task_id") ?: json_null(), "started_at",
                                        json_integer_value(json_object_get(ns, "started_at")), "finished_at",
                                        json_integer_value(json_object_get(ns, "finished_at")), "error",
                                        json_object_get(ns, "error") ?: json_null(), "skipped_reason",
                                        json_object_get(ns, "skipped_reason") ?: json_null());
                json_t *elements = json_object_get(ns, "elements"), *el;
                if (json_object_get(node, "map")) {
                        json_t *ids = json_array();
                        size_t k;
                        json_array_foreach(elements, k, el)
                                json_array_append(ids, json_object_get(el, "task_id") ?: json_null());
                        json_object_set_new(out, "task_ids", ids);
                        json_t *errs = json_object_get(ns, "element_errors");
                        json_object_set_new(out, "element_errors", errs ? json_incref(errs) : json_array());
                }
                mp_core_shape(out, times, NULL);
                json_array_append_new(nodes, out);
        }
        json_t *out = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:O,s:o,s:O,s:O}", "id", json_object_get(run, "id"),
                                "workflow_id", json_object_get(run, "workflow_id"), "version",
                                json_object_get(run, "version"), "status", json_object_get(run, "status"),
                                "inputs", json_object_get(run, "inputs") ?: json_null(), "outputs",
                                json_object_get(run, "outputs") ?: json_null(), "error",
                                json_object_get(run, "error") ?: json_null(), "nodes", nodes, "created_at",
                                json_object_get(run, "created_at"), "finished_at",
                                json_object_get(run, "finished_at"));
        json_object_set(out, "cached_from", json_object_get(run, "cached_from") ?: json_null());
        json_object_set(out, "study_id", json_object_get(run, "study_id") ?: json_null());
        json_object_set(out, "point_index", json_object_get(run, "point_index") ?: json_null());
        mp_core_shape(out, run_times, NULL);
        return out;
}

static bool run_visible(const struct mp_principal *p, json_t *run) {
        const char *owner = json_string_value(json_object_get(run, "owner_id"));
        const char *company = json_string_value(json_object_get(run, "company_id"));
        if (owner && !strcmp(owner, p->user_id))
                return true;
        return mp_core_is_company_admin(p) && company && !strcmp(company, p->company_id);
}

static int load_run(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                    struct mp_error *err) {
        json_t *run = NULL;
        int r;

        if (!mp_id_valid(id))
                return mp_core_not_found(err, "workflow run", id);
        r = MP_STORE(core->store)->workflow_run_get(core->store, id, &run, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "workflow run", id);
        }
        if (r < 0)
                return r;
        if (!run_visible(p, run)) {
                json_decref(run);
                return mp_core_not_found(err, "workflow run", id);
        }
        *ret = run;
        return 0;
}

static int shape_run(struct mp_core *core, json_t *run, json_t **ret, bool *ret_ended, struct mp_error *err) {
        _cleanup_json_ json_t *ver = NULL;
        int r = MP_STORE(core->store)->workflow_get_version(core->store,
                        json_string_value(json_object_get(run, "workflow_id")),
                        (int) json_integer_value(json_object_get(run, "version")), &ver, err);
        if (r < 0)
                return r;
        if (ret_ended)
                *ret_ended = json_integer_value(json_object_get(run, "finished_at")) != 0;
        *ret = render_run(run, json_object_get(ver, "definition"));
        return *ret ? 0 : -ENOMEM;
}

int mp_core_workflow_run_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                             bool *ret_ended, struct mp_error *err) {
        _cleanup_json_ json_t *run = NULL;
        int r = load_run(core, p, id, &run, err);
        return r < 0 ? r : shape_run(core, run, ret, ret_ended, err);
}

static bool key_ok(const char *k) {
        size_t n = strlen(k);
        if (n == 0 || n > MP_MAX_IDEMPOTENCY_KEY_LEN)
                return false;
        for (; *k; k++)
                if (*k < 0x20 || *k > 0x7e)
                        return false;
        return true;
}

/* The result cache of a workflow version declared "cache" (docs/workflows.md#result-cache):
 * the key is mp_cache_key over the version's id ("workflow:<id>:<version>") and the
 * canonical inputs, set on the run in run->cache_key. Unless refresh, the owner's newest
 * completed run with that key that is not itself a copy is copied into run (its state,
 * outputs, completed now, cached_from): 1. 0 to run it, -errno. The owner only, never
 * the company: another member's run is theirs to see. */
static int run_cache_lookup(struct mp_core *core, json_t *ver, json_t *inputs, bool refresh, json_t *run,
                            struct mp_error *err) {
        _cleanup_json_ json_t *src = NULL;
        _cleanup_error_ struct mp_error lerr = { 0 };
        char vkey[MP_ID_LEN + 40], key[MP_CACHE_KEY_HEX_LEN + 1];
        int r;

        if (!json_is_true(json_object_get(json_object_get(ver, "definition"), "cache")))
                return 0;
        snprintf(vkey, sizeof(vkey), "workflow:%s:%" JSON_INTEGER_FORMAT,
                 json_string_value(json_object_get(run, "workflow_id")) ?: "",
                 json_integer_value(json_object_get(run, "version")));
        if ((r = mp_cache_key(vkey, "workflow", inputs, key, err)) < 0)
                return r;
        json_object_set_new(run, "cache_key", json_string(key));
        if (refresh)
                return 0;
        r = MP_STORE(core->store)->workflow_run_find_cached(core->store,
                                                             json_string_value(json_object_get(run, "owner_id")),
                                                             key, &src, &lerr);
        if (r == -ENOENT)
                return 0;
        if (r < 0) {
                mp_error_set(err, -r, lerr.status ? lerr.status : 503, "unavailable", "%s", lerr.message);
                return r;
        }
        json_object_set(run, "state", json_object_get(src, "state"));
        json_object_set_new(run, "status", json_string("completed"));
        json_object_set(run, "outputs", json_object_get(src, "outputs") ?: json_null());
        json_object_set_new(run, "error", json_null());
        json_object_set_new(run, "finished_at", json_integer(mp_now_ms()));
        json_object_set(run, "cached_from", json_object_get(src, "id"));
        return 1;
}

/* A new run (its row in run, its state fresh) made with its first step: the run and the
 * tasks of the nodes that can start now are one commit (workflow_run_create). A run
 * answered from the workflow cache (finished_at set) is stored ended, with no task. Node
 * tasks answered from the function cache are fed at once, and run then holds the run as
 * stored after that. ret_existing: workflow_run_create's. */
static int create_run(struct mp_core *core, json_t *run, json_t *ver, json_t *state, json_t **ret_existing,
                      struct mp_error *err) {
        _cleanup_json_ json_t *tasks = json_array();
        bool hits = false;
        size_t i;
        json_t *t;
        int r;

        if (!tasks)
                return -ENOMEM;
        if (json_integer_value(json_object_get(run, "finished_at")) == 0) {
                if ((r = schedule(core, run, json_object_get(ver, "definition"), state, tasks, err)) < 0)
                        return r;
                int64_t now = mp_now_ms();
                stamp_times(state, now);
                run_set_state(run, state, run_over(state) && !mp_flow_run_busy(state), now);
        }
        if ((r = MP_STORE(core->store)->workflow_run_create(core->store, run, tasks, ret_existing, err)) < 0)
                return r;
        json_array_foreach(tasks, i, t) {
                push_task(core, t);
                hits |= json_object_get(t, "cached_from") != NULL;
        }
        if (hits) {
                _cleanup_json_ json_t *after = NULL, *ended = ended_rows(core, tasks);
                _cleanup_error_ struct mp_error gerr = { 0 };
                const char *id = json_string_value(json_object_get(run, "id"));
                feed_ended(core, id, ended);
                if (MP_STORE(core->store)->workflow_run_get(core->store, id, &after, &gerr) >= 0)
                        json_object_update(run, after);
        }
        return 0;
}

/* A run's row and fresh state; refresh: recompute the nodes of cached functions. */
static json_t *new_run(json_t *ver, const char *id, const char *workflow_id, json_t *owner, json_t *company,
                       json_t *inputs, bool refresh, json_t **ret_state) {
        json_t *state = mp_flow_run_new(json_object_get(ver, "definition"));
        json_t *run = json_pack("{s:s,s:s,s:O,s:O,s:O,s:O,s:s,s:I}", "id", id, "workflow_id", workflow_id,
                                "version", json_object_get(ver, "version"), "owner_id", owner, "company_id",
                                company ?: json_null(), "inputs", inputs, "status", "running", "created_at",
                                (json_int_t) mp_now_ms());

        if (!state || !run) {
                json_decref(state);
                json_decref(run);
                return NULL;
        }
        json_object_set_new(state, "generation", json_integer(0));
        if (refresh)
                json_object_set_new(state, "cache_refresh", json_true());
        *ret_state = state;
        return run;
}

int mp_core_workflow_execute(struct mp_core *core, const struct mp_principal *p, const char *ref, int version,
                             json_t *body, const char *idempotency_key, bool cache_refresh, json_t **ret,
                             bool *ret_ended, struct mp_error *err) {
        _cleanup_json_ json_t *wf = NULL, *ver = NULL, *run = NULL, *state = NULL, *existing = NULL;
        _cleanup_json_ json_t *owner = json_string(p->user_id);
        _cleanup_json_ json_t *company = p->company_id[0] ? json_string(p->company_id) : json_null();
        char id[MP_ID_LEN + 1];
        json_t *inputs;
        int r;

        if ((r = mp_core_workflow_resolve(core, p, ref, version, &wf, &ver, err)) < 0)
                return r;
        /* What no node could take (too deep for a call) is refused here, not node by node. */
        if ((r = mp_core_execute_body(body, json_object_get(ver, "input_schema"), "workflow", &inputs, err)) < 0)
                return r;
        if (idempotency_key && !key_ok(idempotency_key))
                return mp_error_set(err, EINVAL, 400, "bad_request", "the Idempotency-Key header must be 1 to %d "
                                    "printable ASCII characters", MP_MAX_IDEMPOTENCY_KEY_LEN);
        mp_id_new(id);
        run = new_run(ver, id, json_string_value(json_object_get(wf, "id")), owner, company, inputs, cache_refresh,
                      &state);
        if (!run)
                return -ENOMEM;
        if (idempotency_key)
                json_object_set_new(run, "idempotency_key", json_string(idempotency_key));
        /* Its tasks, made now and as it goes on, log this request's id (make_task). */
        json_object_set_new(run, "request_id", mp_log_request_id() ? json_string(mp_log_request_id()) : json_null());
        if ((r = run_cache_lookup(core, ver, inputs, cache_refresh, run, err)) < 0)
                return r;
        r = create_run(core, run, ver, state, &existing, err);
        if (r == -EEXIST && existing) {
                if (!json_equal(json_object_get(existing, "inputs"), inputs))
                        return mp_error_set(err, EEXIST, 409, "conflict", "Idempotency-Key \"%s\" was already used "
                                            "for a run with other inputs (run %s)", idempotency_key,
                                            json_string_value(json_object_get(existing, "id")));
                mp_error_clear(err);
                return shape_run(core, existing, ret, ret_ended, err);
        }
        if (r < 0)
                return r;
        return shape_run(core, run, ret, ret_ended, err);
}

/* The run of a workflow study's point, of id the point's (made once: a run of that id
 * already made is handed back). It is answered from the workflow's result cache as an
 * execute is, within the study owner's runs (refresh: the study's cache=refresh). */
int mp_core_workflow_point_run(struct mp_core *core, json_t *study, const char *id, int64_t index, json_t *inputs,
                               json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *ver = NULL, *run = NULL, *state = NULL, *existing = NULL;
        json_t *target = json_object_get(study, "target");
        const char *wid = json_string_value(json_object_get(target, "workflow_id"));
        bool refresh = json_integer_value(json_object_get(study, "cache_refresh")) != 0;
        int r;

        r = MP_STORE(core->store)->workflow_run_get(core->store, id, &existing, err);
        if (r == 0) {
                *ret = TAKE_PTR(existing);
                return 0;
        }
        if (r != -ENOENT)
                return r;
        mp_error_clear(err);
        if ((r = MP_STORE(core->store)->workflow_get_version(core->store, wid ? wid : "",
                        (int) json_integer_value(json_object_get(target, "version")), &ver, err)) < 0)
                return r;
        run = new_run(ver, id, wid ? wid : "", json_object_get(study, "owner_id"), json_object_get(study, "company_id"),
                      inputs, refresh, &state);
        if (!run)
                return -ENOMEM;
        json_object_set(run, "study_id", json_object_get(study, "id"));
        json_object_set_new(run, "point_index", json_integer(index));
        json_object_set(run, "request_id", json_object_get(study, "request_id") ?: json_null());
        /* The owner's tenancy: each node's function is checked for the owner when its
         * task is made (a function no longer theirs fails the node, and so the point). */
        if ((r = run_cache_lookup(core, ver, inputs, refresh, run, err)) < 0)
                return r;
        making_point_run++;
        r = create_run(core, run, ver, state, NULL, err);
        making_point_run--;
        if (r == -EEXIST) { /* made meanwhile (a recovery beside a live end) */
                mp_error_clear(err);
                return MP_STORE(core->store)->workflow_run_get(core->store, id, ret, err);
        }
        if (r < 0)
                return r;
        *ret = TAKE_PTR(run);
        return 0;
}

int mp_core_workflow_run_list(struct mp_core *core, const struct mp_principal *p, const char *workflow_id,
                              const char *status, const char *cursor, int limit, json_t **ret,
                              struct mp_error *err) {
        static const char *const times[] = { "created_at", "finished_at", NULL };
        static const char *const drop[] = { "owner_id", "company_id", NULL };
        _cleanup_json_ json_t *filter = NULL, *items = json_array();
        struct mp_store_list list = { 0 };
        json_t *r1;
        size_t i;
        int r;

        if (status && strcmp(status, "running") && strcmp(status, "completed") && strcmp(status, "failed") &&
            strcmp(status, "cancelled"))
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "status must be one of running, completed, failed, cancelled");
        filter = json_pack("{s:s,s:s?,s:s?,s:s?,s:i}", "owner_id", p->user_id, "workflow_id", workflow_id,
                           "status", status, "cursor", cursor, "limit", limit);
        if (!filter || !items)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->workflow_run_list(core->store, filter, &list, err)) < 0)
                return mp_core_list_failed(r, cursor, err);
        json_array_foreach(list.items, i, r1) {
                mp_core_shape(r1, times, drop);
                json_array_append(items, r1);
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

static int change_retry(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                        struct mp_error *err) {
        (void) core;
        (void) ctx;
        int r = mp_flow_run_retry(def, state);
        if (r == -EBUSY)
                return mp_error_set(err, EBUSY, 409, "conflict", "workflow run %s is still running: retry it once "
                                    "it has ended", json_string_value(json_object_get(run, "id")));
        if (r < 0)
                return r;
        if (r == 0)
                return mp_error_set(err, EALREADY, 409, "conflict", "workflow run %s has nothing to retry: every "
                                    "node completed", json_string_value(json_object_get(run, "id")));
        json_object_set_new(state, "generation",
                            json_integer(json_integer_value(json_object_get(state, "generation")) + 1));
        json_object_del(state, "outputs");
        json_object_del(state, "error");
        return 1;
}

int mp_core_workflow_run_retry(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                               struct mp_error *err) {
        _cleanup_json_ json_t *run = NULL, *after = NULL;
        int r = load_run(core, p, id, &run, err);

        if (r < 0 || (r = step(core, id, change_retry, NULL, &after, NULL, err)) < 0)
                return r;
        return shape_run(core, after, ret, NULL, err);
}

static int change_cancel(struct mp_core *core, json_t *run, json_t *def, json_t *state, void *ctx,
                         struct mp_error *err) {
        json_t **ret_ids = ctx;
        (void) core;
        (void) def;
        json_decref(*ret_ids);
        *ret_ids = NULL;
        int r = mp_flow_run_cancel(state, ret_ids);
        if (r == -EALREADY)
                return mp_error_set(err, EALREADY, 409, "conflict", "workflow run %s has already ended (%s)",
                                    json_string_value(json_object_get(run, "id")),
                                    json_string_value(json_object_get(state, "status")));
        return r < 0 ? r : 1;
}

int mp_core_workflow_run_cancel(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                                struct mp_error *err) {
        _cleanup_json_ json_t *run = NULL, *after = NULL, *ids = NULL, *again = NULL;
        struct mp_principal owner;
        json_t *tid;
        size_t i;
        int r = load_run(core, p, id, &run, err);

        if (r < 0 || (r = step(core, id, change_cancel, &ids, &after, NULL, err)) < 0)
                return r;
        /* The tasks still running are cancelled as their owner would: each end comes
         * back through the task-end hook and is recorded in the run. */
        owner_principal(after, &owner);
        json_array_foreach(ids, i, tid) {
                _cleanup_json_ json_t *t = NULL;
                _cleanup_error_ struct mp_error cerr = { 0 };
                (void) mp_core_task_cancel(core, &owner, json_string_value(tid), &t, &cerr);
        }
        if ((r = load_run(core, p, id, &again, err)) < 0)
                return r;
        return shape_run(core, again, ret, NULL, err);
}
