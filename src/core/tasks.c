/* Tasks: creation (execute), reading, cancelling. The worker's side is in work.c. */
#include <string.h>

#include "base/limits.h"
#include "blobs/blobs.h"
#include "base/log.h"
#include "core/core-internal.h"
#include "core/flow.h"
#include "exec/exec.h"
#include "queue/queue.h"

/* A task is its owner's; a company admin also sees (and may cancel) the tasks made in
 * the company by its members. Anyone else gets the same 404 as for an unknown id. */
static bool task_visible(const struct mp_principal *p, json_t *task) {
        const char *owner = json_string_value(json_object_get(task, "owner_id"));
        const char *company = json_string_value(json_object_get(task, "company_id"));
        if (owner && !strcmp(owner, p->user_id))
                return true;
        return mp_core_is_company_admin(p) && company && !strcmp(company, p->company_id);
}

static void append_url_escaped(char *buf, size_t size, const char *s) {
        size_t off = strlen(buf);
        for (; *s && off + 4 < size; s++) {
                unsigned char c = (unsigned char) *s;
                if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    strchr("-._~", c))
                        buf[off++] = (char) c;
                else
                        off += (size_t) snprintf(buf + off, size - off, "%%%02X", c);
        }
        buf[off] = 0;
}

/* An object a task row names (its spilled result, error or logs) could not be read:
 * the task has them, so this is never "no result": 503, to be tried again (the object
 * store is down or the object was lost, which the log says). */
static int blob_failed(int r, const char *task_id, const char *what, const char *key,
                       struct mp_error *err) {
        mp_err("task %s: its %s (object %s) cannot be read: %s", task_id, what, key,
               err && err->message[0] ? err->message : strerror(-r));
        mp_error_clear(err);
        return mp_error_set(err, r == -ENOMEM ? ENOMEM : EAGAIN, 503, "unavailable",
                            "the %s of task %s is kept in the object store, which cannot be read now",
                            what, task_id);
}

/* Read the object named by row[blob_field] (if set), at most max bytes. *ret = NULL
 * when the row names none. */
static int read_spilled(struct mp_core *core, json_t *row, const char *blob_field, const char *what,
                        size_t max, char **ret, size_t *ret_len, struct mp_error *err) {
        const char *key = json_string_value(json_object_get(row, blob_field));
        int r;

        *ret = NULL;
        *ret_len = 0;
        if (!key)
                return 0;
        r = MP_BLOBS(core->blobs)->get(core->blobs, key, max, ret, ret_len, err);
        if (r < 0)
                return blob_failed(r, json_string_value(json_object_get(row, "id")) ?: "?", what, key, err);
        return 0;
}

enum { RENDER_RESULT = 1 << 0, RENDER_LOGS = 1 << 1 };

/* Make a whole task row (from task_get) what the API shows, in place. The result is
 * left as "result_json": its stored JSON text (a string, or null when there is none),
 * which the API sends as it is (api-tasks.c): a stored result is never parsed on a
 * read, so a small text that would parse into a huge tree stays small. Spilled
 * result, error and logs are read back from the object store (what says which); one
 * that cannot be read is a 503, never a task without its result. */
static int render_into(struct mp_core *core, json_t *t, unsigned what, struct mp_error *err) {
        const char *id = json_string_value(json_object_get(t, "id"));
        json_t *arts = json_object_get(t, "artifacts"), *a;
        _cleanup_json_ json_t *out_arts = json_array();
        size_t i;
        int r;

        if (!out_arts)
                return -ENOMEM;
        if (!json_object_get(t, "result_json"))
                json_object_set_new(t, "result_json", json_null());
        if (what & RENDER_RESULT) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                if ((r = read_spilled(core, t, "result_blob", "result", MP_MAX_RESULT_BYTES + 1, &data,
                                      &len, err)) < 0)
                        return r;
                if (data) {
                        json_t *text = json_stringn(data, len);
                        if (!text)
                                return mp_error_set(err, EIO, 500, "storage", "the stored result of task "
                                                    "%s is not UTF-8 text", id);
                        json_object_set_new(t, "result_json", text);
                }
                /* A spilled error is read back whole; the executor caps what it holds. */
                _cleanup_free_ char *edata = NULL;
                if ((r = read_spilled(core, t, "error_blob", "error", MP_MAX_RESULT_BYTES + 1, &edata, &len,
                                      err)) < 0)
                        return r;
                if (edata) {
                        json_t *e = json_loadb(edata, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                        if (!e)
                                return mp_error_set(err, EIO, 500, "storage", "the stored error of task "
                                                    "%s does not parse", id);
                        json_object_set_new(t, "error", e);
                }
        }
        if (what & RENDER_LOGS) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                if ((r = read_spilled(core, t, "logs_blob", "logs", MP_MAX_LOG_BYTES + 1, &data, &len, err)) < 0)
                        return r;
                if (data)
                        json_object_set_new(t, "logs", json_stringn(data, len));
        }
        if (!json_is_string(json_object_get(t, "logs")))
                json_object_set_new(t, "logs", json_string(""));
        json_object_set_new(t, "logs_truncated",
                            json_boolean(json_is_true(json_object_get(t, "logs_truncated")) ||
                                         json_integer_value(json_object_get(t, "logs_truncated")) != 0));
        json_array_foreach(arts, i, a) {
                char url[1024];
                const char *name = json_string_value(json_object_get(a, "name"));
                snprintf(url, sizeof(url), "/api/v1/tasks/%s/artifacts/", id);
                append_url_escaped(url, sizeof(url), name ? name : "");
                json_array_append_new(out_arts, json_pack("{s:O,s:O,s:s}", "name", json_object_get(a, "name"),
                                                          "size", json_object_get(a, "size"), "url", url));
        }
        json_object_set_new(t, "artifacts", TAKE_PTR(out_arts));
        static const char *const times[] = { "queued_at", "started_at", "finished_at", NULL };
        static const char *const drop[] = { "owner_id", "company_id", "worker_id", "idempotency_key",
                                            "result", "result_blob", "logs_blob", "error_blob",
                                            "error_type", "cache_key", "request_id", NULL };
        mp_core_shape(t, times, drop);
        /* A study's point, and a result cache hit, say so; other tasks show nulls. */
        if (!json_is_string(json_object_get(t, "study_id"))) {
                json_object_set_new(t, "study_id", json_null());
                json_object_set_new(t, "point_index", json_null());
        }
        if (!json_object_get(t, "cached_from"))
                json_object_set_new(t, "cached_from", json_null());
        /* The last mecapy.progress() of its call ({"fraction", "message", "at"}), kept
         * after the end; null when it never reported any. */
        if (!json_is_object(json_object_get(t, "progress")))
                json_object_set_new(t, "progress", json_null());
        /* units: the inputs as sent (a task from before has only its inputs) and the checks */
        if (!json_object_get(t, "inputs_given") || json_is_null(json_object_get(t, "inputs_given")))
                json_object_set(t, "inputs_given", json_object_get(t, "inputs") ?: json_null());
        if (!json_is_array(json_object_get(t, "checks")))
                json_object_set_new(t, "checks", json_array());
        if (!json_is_integer(json_object_get(t, "execution_ms")) ||
            !mp_core_status_ended(json_string_value(json_object_get(t, "status"))))
                json_object_set_new(t, "execution_ms", json_null());
        return 0;
}

/* The whole task the API shows: takes row (a task_get row), *ret on success. */
static int render(struct mp_core *core, json_t *row, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *t = row;
        int r = render_into(core, t, RENDER_RESULT | RENDER_LOGS, err);
        if (r < 0)
                return r;
        mp_core_task_add_provenance(core, t); /* provenance.c */
        *ret = TAKE_PTR(t);
        return 0;
}

/* A task in a list: a summary row (task_list) shaped in place. */
static void render_summary(json_t *t) {
        static const char *const times[] = { "queued_at", "started_at", "finished_at", NULL };
        static const char *const drop[] = { "owner_id", "company_id", NULL };
        mp_core_shape(t, times, drop);
        if (!json_object_get(t, "error_type"))
                json_object_set_new(t, "error_type", json_null());
        if (!json_is_integer(json_object_get(t, "execution_ms")) ||
            !mp_core_status_ended(json_string_value(json_object_get(t, "status"))))
                json_object_set_new(t, "execution_ms", json_null());
}

static bool idempotency_key_ok(const char *k) {
        size_t n = strlen(k);
        if (n == 0 || n > MP_MAX_IDEMPOTENCY_KEY_LEN)
                return false;
        for (; *k; k++)
                if (*k < 0x20 || *k > 0x7e)
                        return false;
        return true;
}

int mp_core_execute_body(json_t *body, json_t *schema, const char *what, json_t **ret_inputs,
                         struct mp_error *err) {
        _cleanup_free_ char *canon = NULL;
        json_t *inputs, *v;
        const char *key;
        size_t canon_len;
        int r;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object "
                                    "like {\"inputs\": {...}}");
        inputs = json_object_get(body, "inputs");
        if (!inputs)
                mp_error_add_field(err, "inputs", "is required (an object of the %s's parameters)", what);
        json_object_foreach(body, key, v)
                if (strcmp(key, "inputs"))
                        mp_error_add_field(err, key, "is not a field of an execute request (only \"inputs\")");
        if (err->errors)
                return mp_core_validation_done(err, "fields");
        if ((r = mp_core_schema_validate(schema, inputs, err)) < 0)
                return r;
        /* What the executor could not take (too deep for a call): refused here. */
        if (mp_canonical_dump(inputs, &canon, &canon_len, err) < 0) {
                char msg[sizeof(err->message)];
                snprintf(msg, sizeof(msg), "%s", err->message);
                mp_error_clear(err);
                mp_error_add_field(err, "inputs", "%s", msg);
                return mp_core_validation_done(err, "fields");
        }
        *ret_inputs = inputs;
        return 0;
}

int mp_core_execute(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    int version, json_t *body, const char *idempotency_key, json_t **ret,
                    struct mp_error *err) {
        return mp_core_execute_cache(core, p, function_id, version, body, idempotency_key, false, ret, err);
}

/* The result cache (docs/functions.md#result-cache): a version declared "cache" keys
 * each call by mp_cache_key (its version, environment and canonical inputs). A call
 * whose key a completed task of the same owner holds is answered by a copy of that task
 * (cached_from), completed at once, without a run; the owner only, never the company:
 * another member's call is theirs to see and pay for. 1 when answered (*ret set), 0
 * to run, with *ret_key set for the task to carry. */
static int cache_lookup(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                        json_t *ver, json_t *inputs, const char *idempotency_key, bool refresh, char *ret_key,
                        json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *task = NULL, *row = NULL;
        char vkey[160], env[80], id[MP_ID_LEN + 1];
        int r;

        ret_key[0] = 0;
        if (json_integer_value(json_object_get(ver, "cache")) == 0)
                return 0;
        snprintf(vkey, sizeof(vkey), "%s:%" JSON_INTEGER_FORMAT, function_id,
                 json_integer_value(json_object_get(ver, "version")));
        if (!mp_core_version_env(ver, env, sizeof(env)))
                snprintf(env, sizeof(env), "base");
        if ((r = mp_cache_key(vkey, env, inputs, ret_key, err)) < 0)
                return r;
        if (refresh)
                return 0;
        mp_id_new(id);
        task = json_pack("{s:s,s:s,s:s,s:O,s:I,s:s,s:s?}", "id", id, "function_id", function_id, "owner_id",
                         p->user_id, "inputs", inputs, "queued_at", (json_int_t) mp_now_ms(), "cache_key", ret_key,
                         "idempotency_key", idempotency_key);
        if (!task)
                return -ENOMEM;
        json_object_set_new(task, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        if ((r = MP_STORE(core->store)->task_create_cached(core->store, task, err)) <= 0)
                return r;
        mp_core_count_created(core);
        mp_core_count_cache_hit(core);
        if ((r = MP_STORE(core->store)->task_get(core->store, id, &row, err)) < 0 ||
            (r = render(core, TAKE_PTR(row), ret, err)) < 0)
                return r;
        return 1;
}

int mp_core_execute_cache(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                          int version, json_t *body, const char *idempotency_key, bool cache_refresh,
                          json_t **ret, struct mp_error *err) {
        char cache_key[MP_CACHE_KEY_HEX_LEN + 1];
        _cleanup_json_ json_t *fn = NULL, *ver = NULL, *task = NULL, *existing = NULL;
        char id[MP_ID_LEN + 1];
        json_t *inputs;
        int r;

        if ((r = mp_core_load_callable(core, p, function_id, version, &fn, &ver, err)) < 0)
                return r;
        /* units: the inputs as sent are kept; validation converts quantities in place */
        _cleanup_json_ json_t *given = json_is_object(body) ? json_deep_copy(json_object_get(body, "inputs")) : NULL;
        if ((r = mp_core_execute_body(body, json_object_get(ver, "input_schema"), "function", &inputs, err)) < 0)
                return r;
        if (idempotency_key && !idempotency_key_ok(idempotency_key))
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "the Idempotency-Key header must be 1 to %d printable ASCII characters",
                                    MP_MAX_IDEMPOTENCY_KEY_LEN);
        /* 409 EnvironmentNotReady while its requirements are being installed (or failed). */
        if ((r = mp_core_env_check(core, ver, err)) < 0)
                return r;
        if ((r = cache_lookup(core, p, function_id, ver, inputs, idempotency_key, cache_refresh, cache_key, ret,
                              err)) != 0)
                return r < 0 ? r : 0;

        mp_id_new(id);
        task = json_pack("{s:s,s:s,s:O,s:s,s:O,s:I}", "id", id, "function_id", function_id, "version",
                         json_object_get(ver, "version"), "owner_id", p->user_id, "inputs", inputs,
                         "queued_at", (json_int_t) mp_now_ms());
        json_object_set_new(task, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        json_object_set_new(task, "idempotency_key", idempotency_key ? json_string(idempotency_key) : json_null());
        json_object_set_new(task, "cache_key", cache_key[0] ? json_string(cache_key) : json_null());
        json_object_set(task, "inputs_given", given);
        /* The API request's id (the log context api-server.c set): the worker and the
         * executor log it with every line about this task. */
        json_object_set_new(task, "request_id", mp_log_request_id() ? json_string(mp_log_request_id()) : json_null());
        /* A direct call is admitted within its owner's and company's quotas (checked with
         * the insert, in one transaction: usage.c); a run's or a study's calls are not
         * refused, their starts wait instead (work.c). */
        json_object_set_new(task, "quota_check", json_true());
        r = MP_STORE(core->store)->task_create(core->store, task, &existing, err);
        if (r == -EDQUOT)
                mp_core_count_quota_refused(core, err);
        if (r == -EEXIST && existing) {
                json_int_t first_version = json_integer_value(json_object_get(existing, "version"));
                /* A retry is the same call: same key, function and inputs give the first
                 * task back, whatever the latest version is now (a version published
                 * between the two must not turn a retry into a conflict). Only a retry
                 * that names another version explicitly is a different call. */
                if (!json_equal(json_object_get(existing, "inputs"), inputs))
                        return mp_error_set(err, EEXIST, 409, "conflict",
                                            "Idempotency-Key \"%s\" was already used for a call with "
                                            "other inputs (task %s)", idempotency_key,
                                            json_string_value(json_object_get(existing, "id")));
                if (version != 0 && first_version != version)
                        return mp_error_set(err, EEXIST, 409, "conflict",
                                            "Idempotency-Key \"%s\" was already used for a call of "
                                            "version %d (task %s)", idempotency_key, (int) first_version,
                                            json_string_value(json_object_get(existing, "id")));
                mp_error_clear(err);
                return render(core, TAKE_PTR(existing), ret, err);
        }
        if (r < 0)
                return r;
        mp_core_count_created(core);
        /* The task and its job are stored: a lost wake-up only delays it, never loses it. */
        MP_QUEUE(core->queue)->push(core->queue, id, function_id, NULL);
        json_object_set_new(task, "status", json_string("queued"));
        json_object_set_new(task, "attempts", json_integer(0));
        return render(core, TAKE_PTR(task), ret, err);
}

static int load_task(struct mp_core *core, const struct mp_principal *p, const char *id,
                     json_t **ret, struct mp_error *err) {
        json_t *t = NULL;
        int r;
        if (!mp_id_valid(id))
                return mp_core_not_found(err, "task", id);
        r = MP_STORE(core->store)->task_get(core->store, id, &t, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "task", id);
        if (r < 0)
                return r;
        if (!task_visible(p, t)) {
                json_decref(t);
                return mp_core_not_found(err, "task", id);
        }
        *ret = t;
        return 0;
}

int mp_core_task_get(struct mp_core *core, const struct mp_principal *p, const char *id,
                     json_t **ret, bool *ret_ended, struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL;
        int r = load_task(core, p, id, &t, err);
        if (r < 0)
                return r;
        bool ended = mp_core_status_ended(json_string_value(json_object_get(t, "status")));
        if ((r = render(core, TAKE_PTR(t), ret, err)) < 0)
                return r;
        if (ret_ended)
                *ret_ended = ended;
        return 0;
}

static int task_list(struct mp_core *core, const char *owner_id, const char *company_id,
                     const char *function_id, const char *status, json_t *span, const char *cursor,
                     int limit, json_t **ret, struct mp_error *err);

int mp_core_task_list(struct mp_core *core, const struct mp_principal *p,
                      const char *function_id, const char *status, const char *since,
                      const char *until, const char *cursor, int limit, json_t **ret,
                      struct mp_error *err) {
        _cleanup_json_ json_t *span = json_object();
        const char *names[] = { "since", "until" }, *values[] = { since, until };
        int64_t ms;

        if (!span)
                return -ENOMEM;
        for (size_t k = 0; k < ELEMENTSOF(names); k++) {
                if (!values[k])
                        continue;
                if (mp_core_parse_rfc3339(values[k], &ms) < 0) {
                        mp_error_set(err, EINVAL, 400, "bad_request",
                                     "query parameter %s must be an RFC 3339 UTC time like "
                                     "2024-05-01T12:00:00Z, not \"%.40s\"", names[k], values[k]);
                        mp_error_add_field(err, names[k], "must be an RFC 3339 UTC time");
                        return -EINVAL;
                }
                json_object_set_new(span, names[k], json_integer(ms));
        }
        return task_list(core, p->user_id, NULL, function_id, status, span, cursor, limit, ret, err);
}

int mp_core_task_list_owner(struct mp_core *core, const char *owner_id, const char *company_id,
                            const char *function_id, const char *status, const char *cursor,
                            int limit, json_t **ret, struct mp_error *err) {
        return task_list(core, owner_id, company_id, function_id, status, NULL, cursor, limit, ret, err);
}

/* span: {since?, until?} in epoch ms, or NULL. */
static int task_list(struct mp_core *core, const char *owner_id, const char *company_id,
                     const char *function_id, const char *status, json_t *span, const char *cursor,
                     int limit, json_t **ret, struct mp_error *err) {
        static const char *const statuses[] = { "queued", "running", "completed", "failed",
                                                "timed_out", "cancelled" };
        _cleanup_json_ json_t *filter = NULL, *items = NULL;
        struct mp_store_list list = { 0 };
        bool known = !status;
        size_t i;
        json_t *t;
        int r;

        for (size_t k = 0; status && k < ELEMENTSOF(statuses); k++)
                known |= !strcmp(status, statuses[k]);
        if (!known)
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "status must be one of queued, running, completed, failed, "
                                    "timed_out, cancelled");
        filter = json_pack("{s:s,s:i}", "owner_id", owner_id, "limit", limit);
        if (function_id)
                json_object_set_new(filter, "function_id", json_string(function_id));
        if (status)
                json_object_set_new(filter, "status", json_string(status));
        if (span)
                json_object_update(filter, span);
        if (cursor)
                json_object_set_new(filter, "cursor", json_string(cursor));
        r = MP_STORE(core->store)->task_list(core->store, filter, &list, err);
        if (r < 0)
                return mp_core_list_failed(r, cursor, err);
        items = json_array();
        json_array_foreach(list.items, i, t) {
                /* A member's tasks from before they joined company_id are not its. A page
                 * may come out shorter; next_cursor still leads on. */
                const char *tc = json_string_value(json_object_get(t, "company_id"));
                if (company_id && (!tc || strcmp(tc, company_id)))
                        continue;
                render_summary(t);
                json_array_append(items, t);
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_task_logs(struct mp_core *core, const struct mp_principal *p, const char *id,
                      char **ret, size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL;
        const char *logs;
        int r = load_task(core, p, id, &t, err);
        if (r < 0)
                return r;
        if (!strcmp(json_string_value(json_object_get(t, "status")) ?: "", "running")) {
                int64_t chars;
                return mp_core_task_live_logs(core, id, 0, ret, ret_len, &chars, err);
        }
        if ((r = render_into(core, t, RENDER_LOGS, err)) < 0)
                return r;
        logs = json_string_value(json_object_get(t, "logs"));
        *ret_len = json_string_length(json_object_get(t, "logs"));
        *ret = malloc(*ret_len + 1);
        if (!*ret)
                return -ENOMEM;
        memcpy(*ret, logs ? logs : "", *ret_len);
        (*ret)[*ret_len] = 0;
        return 0;
}

int mp_core_task_artifact(struct mp_core *core, const struct mp_principal *p, const char *id,
                          const char *name, char **ret, size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL;
        json_t *a;
        size_t i;
        int r = load_task(core, p, id, &t, err);
        if (r < 0)
                return r;
        json_array_foreach(json_object_get(t, "artifacts"), i, a) {
                const char *n = json_string_value(json_object_get(a, "name"));
                const char *key = json_string_value(json_object_get(a, "blob"));
                if (n && !strcmp(n, name)) {
                        /* The task lists it: an object that cannot be read is a 503. */
                        r = MP_BLOBS(core->blobs)->get(core->blobs, key, MP_MAX_ARTIFACT_BYTES, ret,
                                                       ret_len, err);
                        return r < 0 ? blob_failed(r, id, "artifact", key ? key : "?", err) : r;
                }
        }
        return mp_error_set(err, ENOENT, 404, "not_found", "task %s has no artifact named \"%.128s\"", id,
                            name);
}

int mp_core_task_cancel(struct mp_core *core, const struct mp_principal *p, const char *id,
                        json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL, *fields = NULL;
        int r = load_task(core, p, id, &t, err);
        if (r < 0)
                return r;
        bool by_owner = !strcmp(json_string_value(json_object_get(t, "owner_id")) ?: "", p->user_id);
        fields = json_pack("{s:s,s:I,s:s,s:{s:s,s:s},s:n}", "status", "cancelled", "finished_at",
                           (json_int_t) mp_now_ms(), "error_type", "Cancelled", "error", "type",
                           "Cancelled", "message",
                           by_owner ? "the task was cancelled by its owner"
                                    : "the task was cancelled by an admin of its company",
                           "live_logs"); /* no logs of a stopped call are kept */
        r = MP_STORE(core->store)->task_finish(core->store, id, fields, err);
        if (r < 0)
                return r;
        if (r == 0)
                return mp_error_set(err, EALREADY, 409, "conflict", "task %s has already ended (%s)", id,
                                    json_string_value(json_object_get(t, "status")));
        mp_core_count_end(core, fields);
        /* Stop the call if one runs: here when this process has the executor (embedded
         * serve), and through the queue for every other worker process. Best effort: a
         * notice lost, or one that crosses the worker's start of the call, lets the
         * call run to its end or its time limit, and its result is dropped (the task
         * has ended). A task that was only queued has no call: both are no-ops. */
        if (core->executor)
                (void) mp_executor_cancel(core->executor, id);
        _cleanup_error_ struct mp_error cerr = { 0 };
        if (MP_QUEUE(core->queue)->notify_cancel(core->queue, id, &cerr) < 0)
                mp_warn("task %s was cancelled, but the notice to its worker was not sent: %s", id, cerr.message);
        mp_core_task_ended(core, id);
        mp_core_on_task_end(core, id, t);
        return mp_core_task_get(core, p, id, ret, NULL, err);
}

int mp_core_task_load(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                      struct mp_error *err) {
        return load_task(core, p, id, ret, err);
}

int mp_core_task_live_logs(struct mp_core *core, const char *id, int64_t after, char **ret, size_t *ret_len,
                           int64_t *ret_chars, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int r = MP_STORE(core->store)->task_live_logs(core->store, id, after, &row, err);
        if (r < 0)
                return r;
        json_t *logs = json_object_get(row, "logs");
        size_t n = json_string_length(logs);
        char *text = malloc(n + 1);
        if (!text)
                return -ENOMEM;
        memcpy(text, json_string_value(logs) ?: "", n);
        text[n] = 0;
        *ret = text;
        *ret_len = n;
        *ret_chars = json_integer_value(json_object_get(row, "chars"));
        return 0;
}
