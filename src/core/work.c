/* The worker's side of a task: claim, run in the sandbox, record the end. */
#include <sodium.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
#include "exec/exec.h"
#include "queue/queue.h"

/* A finished call whose end cannot be recorded (the object store or the store is
 * down) is kept in memory and recorded again with backoff for this long; after that
 * its job is released, to be taken again after RELEASE_DELAY_MS. */
#define RECORD_RETRY_MS 60000
#define RECORD_BACKOFF_FIRST_MS 250
#define RECORD_BACKOFF_MAX_MS 4000
#define RELEASE_DELAY_MS 3000

int mp_core_recover(struct mp_core *core, struct mp_error *err) {
        int r = MP_QUEUE(core->queue)->recover(core->queue, err);
        if (r > 0)
                mp_warn("%d task(s) were running when the previous process stopped: they go back to the queue", r);
        if (r < 0)
                return r;
        _cleanup_error_ struct mp_error werr = { 0 };
        if (mp_core_workflow_recover(core, &werr) < 0)
                mp_warn("workflow runs could not be taken up again now: %s", werr.message);
        if (mp_study_recover(core, &werr) < 0)
                mp_warn("studies could not be taken up again now: %s", werr.message);
        mp_error_clear(&werr);
        if (mp_verify_recover(core, &werr) < 0)
                mp_warn("verification cases could not be taken up again now: %s", werr.message);
        return 0;
}

/* Does a task row name something its end matters to (a workflow run, ...)? */
static bool task_belongs(json_t *task) {
        return json_is_string(json_object_get(task, "workflow_run_id")) ||
               json_is_string(json_object_get(task, "study_id")) ||
               json_is_string(json_object_get(task, "verification_of"));
}

/* The task-end hook: what tasks made by a workflow run or a study do when they end. One
 * line per feature here, and its column in task_belongs. */
void mp_core_on_task_end(struct mp_core *core, const char *task_id, json_t *known) {
        _cleanup_json_ json_t *task = NULL;
        _cleanup_error_ struct mp_error err = { 0 };

        /* A plain call's end costs no read. */
        if (known && !task_belongs(known))
                return;
        if (MP_STORE(core->store)->task_get(core->store, task_id, &task, &err) < 0)
                return;
        mp_core_count_member_end(core, task);
        if (json_is_string(json_object_get(task, "workflow_run_id")))
                mp_core_workflow_task_ended(core, task);
        if (json_is_string(json_object_get(task, "study_id")))
                mp_study_task_ended(core, task_id);
        if (json_is_string(json_object_get(task, "verification_of")))
                mp_verify_task_ended(core, task);
}

/* Store a value inline, or spill it to a blob when large: sets field or field_blob. */
static int keep(struct mp_core *core, json_t *fields, const char *field, const char *blob_key,
                const char *data, size_t len, json_t *inline_value, struct mp_error *err) {
        char key_field[64];
        int r;

        snprintf(key_field, sizeof(key_field), "%s_blob", field);
        if (len <= MP_INLINE_MAX_BYTES) {
                json_object_set(fields, field, inline_value);
                return 0;
        }
        r = MP_BLOBS(core->blobs)->put(core->blobs, blob_key, data, len, err);
        if (r < 0)
                return r;
        json_object_set_new(fields, field, json_null());
        json_object_set_new(fields, key_field, json_string(blob_key));
        return 0;
}

static const char *end_status(enum mp_exec_status s) {
        switch (s) {
        case MP_EXEC_OK: return "completed";
        case MP_EXEC_TIMEOUT: return "timed_out";
        default: return "failed";
        }
}

/* Turn an execution result into the columns task_finish stores. */
static int result_fields(struct mp_core *core, const char *task_id, struct mp_exec_result *res,
                         json_t *fields, struct mp_error *err) {
        char key[256];
        json_t *arts = json_array();
        json_int_t kept = 0;
        int r;

        json_object_set_new(fields, "status", json_string(end_status(res->status)));
        json_object_set_new(fields, "error", json_null());
        json_object_set_new(fields, "error_type", json_null());
        if (res->status != MP_EXEC_OK && res->error) {
                /* The error is kept like the logs: inline when small, else in an object;
                 * its type also has a column of its own, which is all a list reads. */
                const char *type = json_string_value(json_object_get(res->error, "type"));
                _cleanup_free_ char *etext = mp_json_dumps(res->error, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!etext)
                        return -ENOMEM;
                json_object_set_new(fields, "error_type", type ? json_string(type) : json_null());
                kept += (json_int_t) strlen(etext);
                snprintf(key, sizeof(key), "tasks/%s/error.json", task_id);
                if ((r = keep(core, fields, "error", key, etext, strlen(etext), res->error, err)) < 0)
                        return r;
        }
        if (res->status == MP_EXEC_OK) {
                _cleanup_free_ char *text = mp_json_dumps(res->result, JSON_COMPACT | JSON_ENCODE_ANY);
                snprintf(key, sizeof(key), "tasks/%s/result.json", task_id);
                if (!text)
                        return -ENOMEM;
                kept += (json_int_t) strlen(text);
                if ((r = keep(core, fields, "result", key, text, strlen(text), res->result, err)) < 0)
                        return r;
                /* units: the checks the result declared, with their utilisation */
                json_object_set_new(fields, "checks", mp_core_result_checks(res->result));
        } else
                json_object_set_new(fields, "result", json_null());

        /* What the program printed is bytes; the task shows text. Invalid UTF-8 (or a
         * character cut by the log cap) becomes U+FFFD once, here. */
        size_t text_len = 0;
        _cleanup_free_ char *text = mp_utf8_sanitize(res->logs ? res->logs : "", res->logs_len, &text_len);
        if (!text)
                return -ENOMEM;
        _cleanup_json_ json_t *logs = json_stringn(text, text_len);
        snprintf(key, sizeof(key), "tasks/%s/logs.txt", task_id);
        if ((r = keep(core, fields, "logs", key, text, text_len, logs, err)) < 0)
                return r;
        json_object_set_new(fields, "logs_truncated", json_integer(res->logs_truncated));
        json_object_set_new(fields, "live_logs", json_null()); /* now in logs: kept once */

        for (size_t i = 0; i < res->n_artifacts; i++) {
                /* Blob keys use the index: artifact names may hold any character. */
                snprintf(key, sizeof(key), "tasks/%s/artifacts/%zu", task_id, i);
                r = MP_BLOBS(core->blobs)->put(core->blobs, key, res->artifacts[i].data,
                                                res->artifacts[i].size, err);
                if (r < 0) {
                        json_decref(arts);
                        return r;
                }
                json_array_append_new(arts, json_pack("{s:s,s:I,s:s}", "name", res->artifacts[i].name,
                                                      "size", (json_int_t) res->artifacts[i].size,
                                                      "blob", key));
        }
        json_object_set_new(fields, "artifacts", arts);
        /* What the task keeps, for the storage quota (usage.c). */
        kept += (json_int_t) text_len;
        for (size_t i = 0; i < res->n_artifacts; i++)
                kept += (json_int_t) res->artifacts[i].size;
        json_object_set_new(fields, "stored_bytes", json_integer(kept));
        json_object_set_new(fields, "execution_ms", json_integer(res->wall_ms));
        json_object_set_new(fields, "cpu_ms", json_integer(res->cpu_ms));
        json_object_set_new(fields, "peak_memory_kb", json_integer(res->peak_memory_kb));
        json_object_set_new(fields, "finished_at", json_integer(mp_now_ms()));
        return 0;
}

static int finish(struct mp_core *core, const char *task_id, json_t *task, json_t *fields,
                  struct mp_error *err) {
        int r = MP_STORE(core->store)->task_finish(core->store, task_id, fields, err);
        if (r > 0) {
                mp_core_count_end(core, fields);
                mp_core_task_ended(core, task_id);
                mp_core_on_task_end(core, task_id, task);
        }
        return r;
}

static int fail_task(struct mp_core *core, const char *task_id, json_t *task, const char *type,
                     const char *msg, struct mp_error *err) {
        _cleanup_json_ json_t *fields = json_pack("{s:s,s:s,s:{s:s,s:s},s:I,s:n}", "status", "failed",
                                                  "error_type", type, "error", "type", type, "message",
                                                  msg, "finished_at", (json_int_t) mp_now_ms(), "live_logs");
        if (!fields)
                return -ENOMEM;
        return finish(core, task_id, task, fields, err);
}

/* A backend that is down for now: worth trying again, unlike a refusal. */
static bool transient(int r, const struct mp_error *err) {
        if (err && err->status == 503)
                return true;
        return r == -EAGAIN || r == -EBUSY || r == -ETIMEDOUT || r == -ECONNREFUSED ||
               (r == -EIO && (!err || err->status == 0));
}

static void sleep_ms(int64_t ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Record the end of a run: its objects, then task_finish. While a backend is down the
 * result stays here and is recorded again with backoff (puts of the same keys and
 * task_finish may be repeated), for up to RECORD_RETRY_MS; the claim is kept alive
 * meanwhile. 1 once recorded (or the task had ended), -errno when it could not be. A
 * refusal that will not change (not a backend being down) fails the task instead. */
static int record(struct mp_core *core, const char *worker_id, const char *task_id, json_t *task,
                  struct mp_exec_result *res, struct mp_error *err) {
        int64_t deadline = mp_mono_ms() + RECORD_RETRY_MS, backoff = RECORD_BACKOFF_FIRST_MS;
        int64_t lease_ms = ((int64_t) core->config->max_timeout_s + 60) * 1000;

        for (int attempt = 1;; attempt++) {
                _cleanup_json_ json_t *fields = json_object();
                int r;

                mp_error_clear(err);
                if (!fields)
                        return -ENOMEM;
                r = result_fields(core, task_id, res, fields, err);
                if (r >= 0) {
                        r = MP_STORE(core->store)->task_finish(core->store, task_id, fields, err);
                        if (r > 0)
                                mp_core_count_end(core, fields);
                        /* After a failed try, 0 may mean that the try was saved after all:
                         * tell the waiters in any case (a notice is idempotent). */
                        if (r > 0 || (r == 0 && attempt > 1)) {
                                mp_core_task_ended(core, task_id);
                                mp_core_on_task_end(core, task_id, task);
                        }
                        if (r >= 0) {
                                if (attempt > 1)
                                        mp_info("task %s: its end was recorded at the %d%s try", task_id,
                                                attempt, attempt == 2 ? "nd" : attempt == 3 ? "rd" : "th");
                                return 1;
                        }
                }
                if (!transient(r, err)) {
                        char msg[sizeof(err->message) + 64];
                        mp_err("task %s: its end cannot be recorded: %s", task_id, err->message);
                        snprintf(msg, sizeof(msg), "the result could not be stored: %s", err->message);
                        return fail_task(core, task_id, task, "StorageError", msg, NULL) < 0 ? r : 1;
                }
                if (mp_mono_ms() + backoff > deadline) {
                        mp_err("task %s: its end could not be recorded for %d s: %s", task_id,
                               RECORD_RETRY_MS / 1000, err->message);
                        return r;
                }
                if (attempt == 1)
                        mp_warn("task %s: its end cannot be recorded now (%s); the result is kept and "
                                "recorded again for up to %d s", task_id, err->message, RECORD_RETRY_MS / 1000);
                sleep_ms(backoff);
                backoff = MP_MIN(backoff * 2, RECORD_BACKOFF_MAX_MS);
                /* Keep the claim while we hold the result (a no-op where the lease is the
                 * worker's heartbeat). */
                MP_QUEUE(core->queue)->extend(core->queue, task_id, worker_id, lease_ms, NULL);
        }
}

/* Move the claimed task to running. 1 to run it, 0 when there is nothing to run. */
static int start(struct mp_core *core, const char *worker_id, const char *task_id, json_t *task,
                 struct mp_error *err) {
        const char *status = json_string_value(json_object_get(task, "status"));

        /* Within the quotas of its owner and company (the calls running, the month's
         * CPU; for a run's or a study's task, never admitted, the day's calls and the
         * storage too): -EDQUOT holds it, and the caller gives its job back for a while. */
        if (!strcmp(status, "queued")) {
                bool admitted = !json_is_string(json_object_get(task, "workflow_run_id")) &&
                                !json_is_string(json_object_get(task, "study_id"));
                return MP_STORE(core->store)->task_start_quota(core->store, task_id, worker_id, mp_now_ms(),
                                                               json_string_value(json_object_get(task, "owner_id")),
                                                               json_string_value(json_object_get(task, "company_id")),
                                                               admitted, err);
        }
        if (strcmp(status, "running"))
                return 0;
        /* Running but claimable: the process that ran it died. Retry, a bounded number of
         * times, since the function may be what kills its worker. */
        if (json_integer_value(json_object_get(task, "attempts")) >= MP_MAX_ATTEMPTS) {
                char msg[256];
                /* Either cause ends here: a worker that died mid-call, or an end that could
                 * not be recorded (store or object store down) and was released. */
                snprintf(msg, sizeof(msg), "the task was started %d times without its end being "
                         "recorded (its worker stopped, or the store or object store could not be "
                         "reached); it is not retried again", MP_MAX_ATTEMPTS);
                int r = fail_task(core, task_id, task, "WorkerLost", msg, err);
                return r < 0 ? r : 0;
        }
        mp_warn("task %s: its previous run was interrupted, running it again", task_id);
        /* This worker holds the job's claim: it runs the task again in place, so no other
         * worker can take it meanwhile. */
        return MP_STORE(core->store)->task_retry(core->store, task_id, worker_id, mp_now_ms(), err);
}

static int cmp_str(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/* The former environment key (before environments had ids): NULL without
 * requirements, else "req-" and a content hash of the sorted requirement strings. Calls
 * now run in mp_core_version_env's environment. */
static const char *env_key_of(json_t *reqs, char *buf, size_t size) {
        const char *names[MP_MAX_REQUIREMENTS];
        size_t n = 0, i;
        json_t *r;
        crypto_hash_sha256_state st;
        unsigned char h[crypto_hash_sha256_BYTES];
        char hex[2 * crypto_hash_sha256_BYTES + 1];

        json_array_foreach(reqs, i, r)
                if (json_is_string(r) && n < ELEMENTSOF(names))
                        names[n++] = json_string_value(r);
        if (n == 0)
                return NULL;
        qsort(names, n, sizeof(names[0]), cmp_str);
        crypto_hash_sha256_init(&st);
        for (i = 0; i < n; i++)
                crypto_hash_sha256_update(&st, (const unsigned char *) names[i], strlen(names[i]) + 1);
        crypto_hash_sha256_final(&st, h);
        sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
        snprintf(buf, size, "req-%.32s", hex);
        return buf;
}

const char *mp_core_env_key(json_t *reqs, char *buf, size_t size) {
        return env_key_of(reqs, buf, size);
}

/* Progress and live logs (docs/api.md#task-events): the executor forwards what a call
 * reported and printed, at most once per MP_LIVE_INTERVAL_MS; each forward is one
 * unsynced write to the task's row, where every API node reads it (so it works the same
 * with `mecapy worker` processes on PostgreSQL and Redis). A write that fails keeps its
 * text for the next one, so that the stored live logs stay a prefix of the final logs
 * (streams send the rest at the end). */
struct live_ctx {
        struct mp_core *core;
        const char *task_id;
        bool first;              /* the first write of this run replaces a retry's leftovers */
        struct mp_buf unsent;    /* sanitized text not stored yet (capped like the logs) */
        json_t *progress;        /* the last progress not stored yet */
};

static void on_live(void *ctx, const struct mp_exec_live *live) {
        struct live_ctx *lc = ctx;
        _cleanup_error_ struct mp_error err = { 0 };

        if (live->has_progress) {
                char at[40];
                mp_format_time(mp_now_ms(), at, sizeof(at));
                json_decref(lc->progress);
                lc->progress = json_pack("{s:f,s:s,s:s}", "fraction", live->fraction, "message",
                                         live->message ? live->message : "", "at", at);
        }
        if (live->logs_len) {
                size_t n = 0;
                _cleanup_free_ char *text = mp_utf8_sanitize(live->logs, live->logs_len, &n);
                if (!text || mp_buf_append(&lc->unsent, text, n) < 0)
                        return; /* over the cap: the rest only comes with the end */
        }
        if (!lc->progress && lc->unsent.len == 0)
                return;
        int r = MP_STORE(lc->core->store)->task_live(lc->core->store, lc->task_id, lc->progress,
                                                       lc->unsent.len ? lc->unsent.data : NULL, lc->first, &err);
        if (r < 0) {
                mp_debug("task %s: its progress was not stored now: %s", lc->task_id, err.message);
                return;
        }
        lc->first = false;
        lc->unsent.len = 0;
        json_decref(lc->progress);
        lc->progress = NULL;
}

/* Run a claimed job: 1 when its fate is settled (the task ended, or there was nothing
 * to run), -errno when it must run again later (the caller releases its job). */
static int work_claimed(struct mp_core *core, const char *worker_id, const char *task_id,
                        struct mp_error *err) {
        _cleanup_json_ json_t *task = NULL, *ver = NULL;
        _cleanup_error_ struct mp_error xerr = { 0 }, lerr = { 0 };
        struct mp_exec_result res = { 0 };
        const struct mp_config *c = core->config;
        int r;

        if ((r = MP_STORE(core->store)->task_get(core->store, task_id, &task, err)) < 0)
                return r == -ENOENT ? 1 : r;
        /* Every line about this task from here on carries the request that made it. */
        mp_log_set_request_id(json_string_value(json_object_get(task, "request_id")));
        if (mp_core_status_ended(json_string_value(json_object_get(task, "status"))))
                return 1; /* cancelled meanwhile, or ended by a run whose ack was lost */

        /* The version before the start: a store that fails here gives the job back
         * without counting a run. Only a version that is really gone fails the task. */
        r = MP_STORE(core->store)->function_get_version(core->store,
                        json_string_value(json_object_get(task, "function_id")),
                        (int) json_integer_value(json_object_get(task, "version")), &ver, err);
        if (r == -ENOENT) {
                if ((r = fail_task(core, task_id, task, "FunctionGone",
                                   "the function version of this task no longer exists", err)) < 0)
                        return r;
                return 1;
        }
        if (r < 0) {
                mp_warn("task %s: its function version cannot be read now: %s", task_id,
                        err && err->message[0] ? err->message : strerror(-r));
                return r;
        }
        if ((r = start(core, worker_id, task_id, task, err)) <= 0)
                return r < 0 ? r : 1;

        json_t *lim = json_object_get(ver, "limits");
        /* Warm path: instances are keyed by function version and tenant; the zygote
         * by environment (the id of the version's environment, "base" when none). */
        char fkey[160], env[80];
        /* Its environment must be built (a call is refused before; a workflow's or a
         * study's task may be queued while it builds). */
        _cleanup_error_ struct mp_error eerr = { 0 };
        if (mp_core_env_check(core, ver, &eerr) < 0) {
                if (eerr.status != 409)
                        return mp_error_set(err, EIO, 503, "storage", "%s", eerr.message);
                if ((r = fail_task(core, task_id, task, "EnvironmentNotReady", eerr.message, err)) < 0)
                        return r;
                return 1;
        }
        snprintf(fkey, sizeof(fkey), "%s:%d", json_string_value(json_object_get(task, "function_id")) ?: "",
                 (int) json_integer_value(json_object_get(task, "version")));
        const char *env_key = mp_core_version_env(ver, env, sizeof(env));
        const char *isolation = json_string_value(json_object_get(ver, "isolation"));
        struct mp_exec_request req = {
                .function_key = fkey,
                .tenant = json_string_value(json_object_get(task, "owner_id")),
                .env_key = env_key,
                .per_call = isolation && strcmp(isolation, "per_call") == 0,
                .op = MP_EXEC_RUN,
                .code = json_string_value(json_object_get(ver, "code")),
                .handler = json_string_value(json_object_get(ver, "handler")),
                .inputs = json_object_get(task, "inputs"),
                .call_id = task_id, /* mp_core_task_cancel stops it by this name */
                .request_id = mp_log_request_id(),
                .limits = {
                        .timeout_s = (int) json_integer_value(json_object_get(lim, "timeout_s")),
                        .memory_mb = (int) json_integer_value(json_object_get(lim, "memory_mb")),
                        .cpus = (int) json_integer_value(json_object_get(lim, "cpus")),
                        .max_procs = c->max_procs,
                        .tmp_mb = c->tmp_mb,
                        .solvers = mp_core_solver_bits(ver),
                },
        };
        mp_debug("task started: function %s, attempt %d", fkey,
                 (int) json_integer_value(json_object_get(task, "attempts")) + 1);
        struct live_ctx live = { .core = core, .task_id = task_id, .first = true,
                                 .unsent = { .cap = MP_MAX_LOG_BYTES } };
        req.on_live = on_live;
        req.live_ctx = &live;
        r = mp_executor_run(core->executor, &req, &res, &xerr);
        mp_buf_free(&live.unsent);
        json_decref(live.progress);
        if (r >= 0)
                mp_debug("task ran: %s in %lld ms", res.status == MP_EXEC_OK ? "ok" : "not ok",
                         (long long) res.wall_ms);
        if (r < 0) {
                mp_err("task %s: could not run: %s", task_id, xerr.message);
                /* Not recorded (the store is down): the job goes back, and the run again. */
                if ((r = fail_task(core, task_id, task, "SandboxError", xerr.message, err)) < 0)
                        return r;
                return 1;
        }
        if (res.status == MP_EXEC_CANCELLED) {
                /* The cancel already ended the task in the store: nothing to record, the
                 * job is done with (acknowledged by the caller). */
                mp_info("task %s: its call was stopped (cancelled)", task_id);
                mp_exec_result_clear(&res);
                return 1;
        }
        r = record(core, worker_id, task_id, task, &res, err ? err : &lerr);
        mp_exec_result_clear(&res);
        return r;
}

int mp_core_work_one(struct mp_core *core, const char *worker_id, int64_t wait_ms,
                     struct mp_error *err) {
        return mp_core_work_one_counted(core, worker_id, wait_ms, NULL, err);
}

int mp_core_work_one_counted(struct mp_core *core, const char *worker_id, int64_t wait_ms,
                             atomic_int *busy, struct mp_error *err) {
        char task_id[MP_ID_LEN + 1];
        int64_t lease_ms = ((int64_t) core->config->max_timeout_s + 60) * 1000;
        int r;

        r = MP_QUEUE(core->queue)->claim(core->queue, worker_id, lease_ms, wait_ms, task_id, err);
        if (r <= 0)
                return r;
        if (busy)
                atomic_fetch_add(busy, 1);
        mp_log_set_task_id(task_id);
        r = work_claimed(core, worker_id, task_id, err);
        if (busy)
                atomic_fetch_sub(busy, 1);
        if (r == -EDQUOT) {
                /* Held by a quota (a run's or a study's call: throttled, not refused): its
                 * job goes back, claimable again when the quota may let it pass. */
                json_t *retry = json_object_get(err->errors, "retry_after");
                int64_t hold = json_is_integer(retry) ? json_integer_value(retry) * 1000 : MP_QUOTA_HOLD_MAX_MS;
                mp_core_count_quota_held(core);
                mp_error_clear(err);
                (void) MP_QUEUE(core->queue)->release(core->queue, task_id, worker_id,
                                                      MP_MAX(MP_QUOTA_HOLD_MS, MP_MIN(hold, MP_QUOTA_HOLD_MAX_MS)),
                                                      NULL);
                return 1;
        }
        if (r < 0) {
                _cleanup_error_ struct mp_error rerr = { 0 };
                /* Not settled (a backend is down): give the job back rather than hold it
                 * until this worker stops; the task runs again, here or elsewhere. */
                int q = MP_QUEUE(core->queue)->release(core->queue, task_id, worker_id, RELEASE_DELAY_MS, &rerr);
                if (q < 0)
                        mp_warn("task %s: its job could not be released (%s); it goes back to the queue "
                                "when this worker stops", task_id, rerr.message);
                else if (q > 0)
                        mp_warn("task %s: not settled, its job goes back to the queue in %d s", task_id,
                                RELEASE_DELAY_MS / 1000);
        }
        if (r == 1) {
                _cleanup_error_ struct mp_error aerr = { 0 };
                /* After task_finish: a job acknowledged before would be lost with this
                 * worker; one acknowledged late at worst runs again, and the store ends
                 * its task once. */
                if (MP_QUEUE(core->queue)->ack(core->queue, task_id, worker_id, &aerr) < 0)
                        mp_warn("task %s: ended, but its job could not be acknowledged: %s", task_id,
                                aerr.message);
        }
        mp_log_set_task_id(NULL);
        mp_log_set_request_id(NULL);
        return r;
}
