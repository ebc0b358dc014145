/* Verification cases (docs/functions.md#verification-cases): reference calls a function
 * carries, each with the values its result must hold and a tolerance. Every new version
 * runs them as ordinary tasks of that version, owned by its author and marked
 * verification_of ("function_id:version") and verification_case (the index); when the
 * last one ends the version's "verification" column gets its outcome.
 *
 * The outcome is written only once every case's task has ended, and it is computed from
 * the tasks alone: two ends racing both compute the same answer. A process that stopped
 * before writing it, or before its case tasks were stored, is made good at the next
 * start (mp_verify_recover, with the queue's and the studies' recovery) and by any read
 * of the version meanwhile (mp_verify_refresh). */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
#include "core/flow.h"
#include "queue/queue.h"

#define DEFAULT_REL_TOL 1e-9

/* Kept off libm, which the binary does not link. */
static double absd(double x) {
        return x < 0 ? -x : x;
}

static double maxd(double a, double b) {
        return a > b ? a : b;
}

static bool is_finite(double x) {
        return x == x && x - x == 0;
}

static bool number(json_t *v) {
        return json_is_integer(v) || json_is_real(v);
}

/* One case of the body; field errors under prefix ("verification[2]"). */
static void read_case(json_t *c, const char *prefix, json_t *schema, struct mp_error *err) {
        char path[160];
        const char *key;
        json_t *v;

        if (!json_is_object(c)) {
                mp_error_add_field(err, prefix, "must be an object {\"name\", \"inputs\", \"expected\", ...}");
                return;
        }
        json_object_foreach(c, key, v) {
                if (!strcmp(key, "name") || !strcmp(key, "inputs") || !strcmp(key, "expected") ||
                    !strcmp(key, "rel_tol") || !strcmp(key, "abs_tol") || !strcmp(key, "source"))
                        continue;
                snprintf(path, sizeof(path), "%s.%.60s", prefix, key);
                mp_error_add_field(err, path, "is not a field of a verification case "
                                   "(name, inputs, expected, rel_tol, abs_tol, source)");
        }
        v = json_object_get(c, "name");
        snprintf(path, sizeof(path), "%s.name", prefix);
        if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) > MP_MAX_NAME_LEN)
                mp_error_add_field(err, path, "must be a string of 1 to %d bytes", MP_MAX_NAME_LEN);
        v = json_object_get(c, "source");
        snprintf(path, sizeof(path), "%s.source", prefix);
        if (v && !json_is_null(v) && (!json_is_string(v) || json_string_length(v) > MP_MAX_VERIFICATION_SOURCE))
                mp_error_add_field(err, path, "must be a string of at most %d bytes (a reference such as "
                                   "\"Roark 7th ed., table 8.1 case 1a\")", MP_MAX_VERIFICATION_SOURCE);
        static const char *const tols[] = { "rel_tol", "abs_tol" };
        for (size_t i = 0; i < 2; i++) {
                v = json_object_get(c, tols[i]);
                snprintf(path, sizeof(path), "%s.%s", prefix, tols[i]);
                if (v && (!number(v) || json_number_value(v) < 0 || !is_finite(json_number_value(v))))
                        mp_error_add_field(err, path, "must be a number >= 0");
        }
        v = json_object_get(c, "inputs");
        snprintf(path, sizeof(path), "%s.inputs", prefix);
        if (!json_is_object(v)) {
                mp_error_add_field(err, path, "must be an object of the function's parameters");
        } else if (schema) {
                /* The inputs as a call would give them: the schema's errors, under the case. */
                _cleanup_error_ struct mp_error serr = { 0 };
                size_t i;
                json_t *e;
                if (mp_core_schema_validate(schema, v, &serr) < 0) {
                        json_array_foreach(serr.errors, i, e) {
                                const char *p = json_string_value(json_object_get(e, "path"));
                                const char *m = json_string_value(json_object_get(e, "message"));
                                snprintf(path, sizeof(path), "%s.%s", prefix, p ? p : "inputs");
                                mp_error_add_field(err, path, "%s", m ? m : "is not valid");
                        }
                        if (!json_array_size(serr.errors))
                                mp_error_add_field(err, path, "%s", serr.message);
                }
        }
        v = json_object_get(c, "expected");
        snprintf(path, sizeof(path), "%s.expected", prefix);
        if (!json_is_object(v) || !json_object_size(v)) {
                mp_error_add_field(err, path, "must be an object of at least one {path in the result: value}");
                return;
        }
        json_t *ev;
        json_object_foreach(v, key, ev) {
                snprintf(path, sizeof(path), "%s.expected.%.80s", prefix, key);
                mp_jsonpath_check(key, path, err);
        }
}

json_t *mp_verify_read_cases(json_t *v, json_t *input_schema, struct mp_error *err) {
        size_t i;
        json_t *c;
        bool ok = true;

        if (!json_is_array(v) || json_array_size(v) > MP_MAX_VERIFICATION_CASES) {
                mp_error_add_field(err, "verification", "must be a list of at most %d cases",
                                   MP_MAX_VERIFICATION_CASES);
                return NULL;
        }
        size_t before = json_array_size(err->errors);
        json_array_foreach(v, i, c) {
                char prefix[48];
                snprintf(prefix, sizeof(prefix), "verification[%zu]", i);
                read_case(c, prefix, input_schema, err);
                json_t *name = json_object_get(c, "name");
                for (size_t k = 0; k < i && json_is_string(name); k++)
                        if (json_equal(json_object_get(json_array_get(v, k), "name"), name)) {
                                char path[64];
                                snprintf(path, sizeof(path), "%s.name", prefix);
                                mp_error_add_field(err, path, "repeats the name of case %zu", k);
                                break;
                        }
        }
        ok = json_array_size(err->errors) == before;
        return ok ? json_incref(v) : NULL;
}

json_t *mp_verify_initial(json_t *cases) {
        if (!json_array_size(cases))
                return json_null();
        return json_pack("{s:s,s:[]}", "status", "running", "cases");
}

json_t *mp_verify_render(json_t *ver) {
        json_t *v = json_object_get(ver, "verification");
        if (json_is_object(v))
                return json_incref(v);
        return json_pack("{s:s,s:[]}", "status", "none", "cases");
}

static void version_key(const char *function_id, json_int_t version, char *buf, size_t size) {
        snprintf(buf, size, "%s:%" JSON_INTEGER_FORMAT, function_id, version);
}

/* Store and queue the task of case i, keyed (idempotency key "verification:<key>:<i>")
 * so that queueing it again, after a gap or by two readers at once, finds the first. */
static int queue_case(struct mp_core *core, const char *owner_id, const char *company_id, const char *function_id,
                      json_int_t version, const char *key, size_t i, json_t *c, struct mp_error *err) {
        _cleanup_json_ json_t *task = NULL, *existing = NULL;
        char id[MP_ID_LEN + 1], ikey[MP_ID_LEN + 64];
        int r;

        mp_id_new(id);
        snprintf(ikey, sizeof(ikey), "verification:%s:%zu", key, i);
        task = json_pack("{s:s,s:s,s:I,s:s,s:O,s:I,s:s,s:I,s:s}", "id", id, "function_id", function_id, "version",
                         version, "owner_id", owner_id, "inputs", json_object_get(c, "inputs"), "queued_at",
                         (json_int_t) mp_now_ms(), "verification_of", key, "verification_case", (json_int_t) i,
                         "idempotency_key", ikey);
        if (!task)
                return -ENOMEM;
        json_object_set_new(task, "company_id", company_id && *company_id ? json_string(company_id) : json_null());
        r = MP_STORE(core->store)->task_create(core->store, task, &existing, err);
        if (r == -EEXIST) {
                mp_error_clear(err);
                return 0;
        }
        if (r < 0)
                return r;
        mp_core_count_created(core);
        MP_QUEUE(core->queue)->push(core->queue, id, function_id, NULL);
        return 0;
}

int mp_verify_start(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                    json_int_t version, json_t *cases, struct mp_error *err) {
        char key[MP_ID_LEN + 32];
        size_t i;
        json_t *c;
        int r;

        version_key(function_id, version, key, sizeof(key));
        json_array_foreach(cases, i, c)
                if ((r = queue_case(core, p->user_id, p->company_id, function_id, version, key, i, c, err)) < 0)
                        return r;
        return 0;
}

/* A version still running with fewer case tasks than cases (stored, then the process
 * stopped or the queueing failed): queue the missing cases again, as the function's
 * owner. Keyed, so two readers doing it at once make one task per case. */
static int requeue_missing(struct mp_core *core, const char *function_id, json_int_t version, const char *key,
                           json_t *cases, json_t *tasks, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL;
        json_t *c, *task;
        size_t i, k;
        int r;

        if ((r = MP_STORE(core->store)->function_get(core->store, function_id, &fn, err)) < 0)
                return r;
        json_array_foreach(cases, i, c) {
                bool have = false;
                json_array_foreach(tasks, k, task)
                        have = have || json_integer_value(json_object_get(task, "verification_case")) == (json_int_t) i;
                if (have)
                        continue;
                mp_warn("function %s: verification case %zu of version %" JSON_INTEGER_FORMAT
                        " had no task; queued again", function_id, i, version);
                if ((r = queue_case(core, json_string_value(json_object_get(fn, "owner_id")),
                                    json_string_value(json_object_get(fn, "company_id")), function_id, version, key,
                                    i, c, err)) < 0)
                        return r;
        }
        return 0;
}

/* Is got within tolerance of expected? Numbers as math.isclose does; anything else
 * must be equal. */
static bool close_enough(json_t *got, json_t *expected, double rel_tol, double abs_tol) {
        if (number(got) && number(expected)) {
                double a = json_number_value(got), b = json_number_value(expected);
                if (a == b)
                        return true;
                double tol = maxd(rel_tol * maxd(absd(a), absd(b)), abs_tol);
                return is_finite(a) && is_finite(b) && absd(a - b) <= tol;
        }
        return got && json_equal(got, expected);
}

/* The task's result as a tree, or NULL (none, or the object store cannot be read:
 * *ret_again is then set, to settle on a later read). */

/* One case's outcome from its task (ended). */
static json_t *case_outcome(struct mp_core *core, json_t *c, json_t *task, bool *ret_again) {
        json_t *expected = json_object_get(c, "expected"), *ev;
        json_t *rt = json_object_get(c, "rel_tol"), *at = json_object_get(c, "abs_tol");
        double rel_tol = number(rt) ? json_number_value(rt) : DEFAULT_REL_TOL;
        double abs_tol = number(at) ? json_number_value(at) : 0;
        const char *status = json_string_value(json_object_get(task, "status"));
        _cleanup_json_ json_t *result = NULL;
        json_t *got = json_object(), *out;
        const char *path;
        bool passed = status && !strcmp(status, "completed");

        if (passed)
                result = mp_core_task_result(core, task, ret_again);
        json_object_foreach(expected, path, ev) {
                _cleanup_error_ struct mp_error perr = { 0 };
                json_t *value = NULL;
                if (!result || mp_jsonpath_get(result, path, &value, &perr) < 0)
                        value = NULL;
                json_object_set(got, path, value ? value : json_null());
                if (!value || !close_enough(value, ev, rel_tol, abs_tol))
                        passed = false;
        }
        out = json_pack("{s:O,s:b,s:o,s:O,s:O,s:O}", "name", json_object_get(c, "name"), "passed", passed,
                        "got", got, "expected", expected, "source",
                        json_object_get(c, "source") ? json_object_get(c, "source") : json_null(), "task_id",
                        json_object_get(task, "id"));
        if (out && status && strcmp(status, "completed")) {
                json_t *e = json_object_get(task, "error");
                const char *msg = json_string_value(json_object_get(e, "message"));
                json_object_set_new(out, "error", json_sprintf("the task ended %s%s%s", status, msg ? ": " : "",
                                                               msg ? msg : ""));
        }
        return out;
}

int mp_verify_settle(struct mp_core *core, const char *function_id, json_t *ver, struct mp_error *err) {
        _cleanup_json_ json_t *tasks = NULL, *outcome = NULL, *cases_out = NULL;
        json_t *cases = json_object_get(ver, "verification_cases"), *c, *task;
        const char *status = json_string_value(json_object_get(json_object_get(ver, "verification"), "status"));
        json_int_t version = json_integer_value(json_object_get(ver, "version"));
        char key[MP_ID_LEN + 32];
        bool all_passed = true, again = false;
        size_t i;
        int r;

        if (!status || strcmp(status, "running"))
                return 0;
        version_key(function_id, version, key, sizeof(key));
        if ((r = MP_STORE(core->store)->verification_tasks(core->store, key, &tasks, err)) < 0)
                return r;
        if (json_array_size(tasks) < json_array_size(cases))
                return requeue_missing(core, function_id, version, key, cases, tasks, err);
        json_array_foreach(tasks, i, task)
                if (!mp_core_status_ended(json_string_value(json_object_get(task, "status"))))
                        return 0;
        cases_out = json_array();
        json_array_foreach(cases, i, c) {
                json_t *t = NULL, *one;
                size_t k;
                json_array_foreach(tasks, k, task)
                        if (json_integer_value(json_object_get(task, "verification_case")) == (json_int_t) i)
                                t = task;
                if (!t)
                        return 0;
                if (!(one = case_outcome(core, c, t, &again)))
                        return -ENOMEM;
                all_passed = all_passed && json_is_true(json_object_get(one, "passed"));
                json_array_append_new(cases_out, one);
        }
        if (again)
                return 0;
        outcome = json_pack("{s:s,s:O}", "status", all_passed ? "passed" : "failed", "cases", cases_out);
        if (!outcome)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->version_set_meta(core->store, function_id, (int) version, "verification",
                                                          outcome, err)) < 0)
                return r;
        json_object_set(ver, "verification", outcome);
        return 0;
}

void mp_verify_refresh(struct mp_core *core, const char *function_id, json_t *ver) {
        _cleanup_error_ struct mp_error err = { 0 };
        if (mp_verify_settle(core, function_id, ver, &err) < 0)
                mp_warn("function %s: the outcome of the verification cases of version %" JSON_INTEGER_FORMAT
                        " could not be stored now: %s", function_id,
                        json_integer_value(json_object_get(ver, "version")), err.message);
}

int mp_verify_recover(struct mp_core *core, struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL;
        json_t *row;
        size_t i;
        int r, n = 0;

        if ((r = MP_STORE(core->store)->verification_running(core->store, &rows, err)) < 0)
                return r;
        json_array_foreach(rows, i, row) {
                _cleanup_json_ json_t *ver = NULL;
                _cleanup_error_ struct mp_error verr = { 0 };
                const char *function_id = json_string_value(json_object_get(row, "function_id"));
                int version = (int) json_integer_value(json_object_get(row, "version"));

                if (MP_STORE(core->store)->function_get_version(core->store, function_id, version, &ver, &verr) < 0) {
                        mp_warn("function %s: version %d could not be read to settle its verification cases: %s",
                                function_id, version, verr.message);
                        continue;
                }
                mp_verify_refresh(core, function_id, ver);
                n += strcmp(json_string_value(json_object_get(json_object_get(ver, "verification"), "status")) ?: "",
                            "running") != 0;
        }
        if (n)
                mp_info("%d version(s) whose verification cases had ended were settled", n);
        return 0;
}

void mp_verify_task_ended(struct mp_core *core, json_t *task) {
        _cleanup_json_ json_t *ver = NULL;
        _cleanup_error_ struct mp_error err = { 0 };
        const char *function_id = json_string_value(json_object_get(task, "function_id"));
        int version = (int) json_integer_value(json_object_get(task, "version"));

        if (!function_id || MP_STORE(core->store)->function_get_version(core->store, function_id, version, &ver,
                                                                         &err) < 0)
                return;
        mp_verify_refresh(core, function_id, ver);
}

int mp_verify_publish_check(struct mp_core *core, const char *function_id, json_t *fn, json_t *ver,
                            struct mp_error *err) {
        json_t *v = json_object_get(ver, "verification");
        const char *status = json_string_value(json_object_get(v, "status"));
        json_int_t version = json_integer_value(json_object_get(ver, "version"));
        const char *company = json_string_value(json_object_get(fn, "company_id"));
        int r;

        if (status && !strcmp(status, "running"))
                return mp_error_set(err, EBUSY, 409, "Unverified",
                                    "version %" JSON_INTEGER_FORMAT " of function %s is still running its "
                                    "verification cases: publish it once they have passed", version, function_id);
        if (status && !strcmp(status, "failed")) {
                char names[512] = "";
                size_t i, n = 0;
                json_t *c;
                json_array_foreach(json_object_get(v, "cases"), i, c)
                        if (!json_is_true(json_object_get(c, "passed")) && n < sizeof(names))
                                n += (size_t) snprintf(names + n, sizeof(names) - n, "%s\"%s\"", n ? ", " : "",
                                                       json_string_value(json_object_get(c, "name")) ?: "?");
                return mp_error_set(err, EPERM, 409, "Unverified",
                                    "version %" JSON_INTEGER_FORMAT " of function %s is unverified: its "
                                    "verification cases %s failed, so it cannot be published", version,
                                    function_id, names);
        }
        if (company) {
                _cleanup_json_ json_t *row = NULL;
                if ((r = MP_STORE(core->store)->company_settings(core->store, company, &row, err)) < 0)
                        return r;
                json_t *settings = json_object_get(row, "settings");
                const char *review = json_string_value(json_object_get(json_object_get(ver, "review"), "status"));
                if (json_is_true(json_object_get(settings, "require_review_to_publish")) &&
                    (!review || strcmp(review, "approved")))
                        return mp_error_set(err, EPERM, 409, "NotApproved",
                                            "your company requires an approved review before publishing: version "
                                            "%" JSON_INTEGER_FORMAT " of function %s is %s (POST "
                                            "/api/v1/functions/%s/versions/%" JSON_INTEGER_FORMAT "/review)",
                                            version, function_id, review ? review : "draft", function_id,
                                            version);
        }
        return 0;
}
