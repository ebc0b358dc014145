/* Tasks: creation (execute), reading, cancelling. The worker's side is in work.c. */
#include <string.h>

#include "base/limits.h"
#include "blobs/blobs.h"
#include "base/log.h"
#include "core/core-internal.h"
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

/* A task row as the API shows it. Spilled result and logs are read back from blobs. */
static json_t *render(struct mp_core *core, json_t *row) {
        json_t *t = json_deep_copy(row);
        const char *id = json_string_value(json_object_get(t, "id"));
        json_t *arts = json_object_get(t, "artifacts"), *a, *out_arts = json_array();
        const char *key;
        size_t i;

        if ((key = json_string_value(json_object_get(t, "result_blob")))) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                if (MP_BLOBS(core->blobs)->get(core->blobs, key, MP_MAX_RESULT_BYTES + 1, &data, &len, NULL) >= 0)
                        json_object_set_new(t, "result", json_loadb(data, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL));
        }
        if ((key = json_string_value(json_object_get(t, "logs_blob")))) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                if (MP_BLOBS(core->blobs)->get(core->blobs, key, MP_MAX_LOG_BYTES + 1, &data, &len, NULL) >= 0)
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
        json_object_set_new(t, "artifacts", out_arts);
        static const char *const times[] = { "queued_at", "started_at", "finished_at", NULL };
        static const char *const drop[] = { "owner_id", "company_id", "worker_id", "idempotency_key",
                                            "result_blob", "logs_blob", NULL };
        mp_core_shape(t, times, drop);
        if (!json_is_integer(json_object_get(t, "execution_ms")) ||
            !mp_core_status_ended(json_string_value(json_object_get(t, "status"))))
                json_object_set_new(t, "execution_ms", json_null());
        return t;
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

int mp_core_execute(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    int version, json_t *body, const char *idempotency_key, json_t **ret,
                    struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL, *task = NULL, *existing = NULL;
        char id[MP_ID_LEN + 1];
        json_t *inputs;
        int r;

        if ((r = mp_core_load_callable(core, p, function_id, version, &fn, &ver, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object "
                                    "like {\"inputs\": {...}}");
        inputs = json_object_get(body, "inputs");
        if (!inputs) {
                mp_error_add_field(err, "inputs", "is required (an object of the function's parameters)");
                return mp_core_validation_done(err, "fields");
        }
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
                if (strcmp(key, "inputs"))
                        mp_error_add_field(err, key, "is not a field of an execute request (only \"inputs\")");
        if (err->errors)
                return mp_core_validation_done(err, "fields");
        if ((r = mp_core_schema_validate(json_object_get(ver, "input_schema"), inputs, err)) < 0)
                return r;
        if (idempotency_key && !idempotency_key_ok(idempotency_key))
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "the Idempotency-Key header must be 1 to %d printable ASCII characters",
                                    MP_MAX_IDEMPOTENCY_KEY_LEN);

        mp_id_new(id);
        task = json_pack("{s:s,s:s,s:O,s:s,s:O,s:I}", "id", id, "function_id", function_id, "version",
                         json_object_get(ver, "version"), "owner_id", p->user_id, "inputs", inputs,
                         "queued_at", (json_int_t) mp_now_ms());
        json_object_set_new(task, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        json_object_set_new(task, "idempotency_key", idempotency_key ? json_string(idempotency_key) : json_null());
        r = MP_STORE(core->store)->task_create(core->store, task, &existing, err);
        if (r == -EEXIST && existing) {
                if (!json_equal(json_object_get(existing, "inputs"), inputs) ||
                    json_integer_value(json_object_get(existing, "version")) !=
                            json_integer_value(json_object_get(ver, "version")))
                        return mp_error_set(err, EEXIST, 409, "conflict",
                                            "Idempotency-Key \"%s\" was already used for a call with "
                                            "other inputs (task %s)", idempotency_key,
                                            json_string_value(json_object_get(existing, "id")));
                *ret = render(core, existing);
                return 0;
        }
        if (r < 0)
                return r;
        mp_core_count_created(core);
        /* The task and its job are stored: a lost wake-up only delays it, never loses it. */
        MP_QUEUE(core->queue)->push(core->queue, id, function_id, NULL);
        json_object_set_new(task, "status", json_string("queued"));
        json_object_set_new(task, "attempts", json_integer(0));
        *ret = render(core, task);
        return 0;
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
        if (ret_ended)
                *ret_ended = mp_core_status_ended(json_string_value(json_object_get(t, "status")));
        *ret = render(core, t);
        return 0;
}

int mp_core_task_list(struct mp_core *core, const struct mp_principal *p,
                      const char *function_id, const char *status, const char *cursor,
                      int limit, json_t **ret, struct mp_error *err) {
        return mp_core_task_list_owner(core, p->user_id, NULL, function_id, status, cursor, limit,
                                       ret, err);
}

int mp_core_task_list_owner(struct mp_core *core, const char *owner_id, const char *company_id,
                            const char *function_id, const char *status, const char *cursor,
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
                json_array_append_new(items, render(core, t));
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_task_logs(struct mp_core *core, const struct mp_principal *p, const char *id,
                      char **ret, size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *t = NULL;
        const char *logs;
        int r = mp_core_task_get(core, p, id, &t, NULL, err);
        if (r < 0)
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
                if (n && !strcmp(n, name))
                        return MP_BLOBS(core->blobs)->get(core->blobs,
                                        json_string_value(json_object_get(a, "blob")),
                                        MP_MAX_ARTIFACT_BYTES, ret, ret_len, err);
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
        fields = json_pack("{s:s,s:I,s:{s:s,s:s}}", "status", "cancelled", "finished_at",
                           (json_int_t) mp_now_ms(), "error", "type", "Cancelled", "message",
                           by_owner ? "the task was cancelled by its owner"
                                    : "the task was cancelled by an admin of its company");
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
        return mp_core_task_get(core, p, id, ret, NULL, err);
}
