/* The HTTP plumbing: daemon, request bodies with a cap, responses, problem+json, and
 * suspended long polls. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/json.h"
#include "api/api-events.h"
#include "api/api-guard.h"
#include "api/api-web.h"
#include "api/api-internal.h"
#include "api/api-sheets.h"
#include "api/api-tasks.h"
#include "api/api-tls.h"
#include "base/limits.h"
#include "base/log.h"

/* Every response's security headers, HSTS and CORS (api-guard.c); the dashboard page
 * gets a CSP that lets it load its own styles and scripts. */
static void add_common_headers(struct MHD_Connection *conn, struct MHD_Response *resp,
                               const char *content_type) {
        bool html = content_type && !strncmp(content_type, "text/html", 9);
        mp_api_add_headers(conn, resp, html ? MP_CSP_INDEX : MP_CSP_API);
}

enum MHD_Result mp_api_send_bytes(struct MHD_Connection *conn, unsigned status,
                                  const char *content_type, const char *data, size_t len) {
        struct MHD_Response *resp;
        enum MHD_Result r;

        resp = MHD_create_response_from_buffer(len, (void *) data, MHD_RESPMEM_MUST_COPY);
        if (!resp)
                return MHD_NO;
        if (content_type)
                MHD_add_response_header(resp, "Content-Type", content_type);
        add_common_headers(conn, resp, content_type);
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

static enum MHD_Result send_json_typed(struct MHD_Connection *conn, unsigned status, json_t *body,
                                       const char *type, const char *retry_after,
                                       const char *const *hdrs) {
        struct MHD_Response *resp;
        enum MHD_Result r;
        char *text;

        if (!body) {
                resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        } else {
                text = mp_json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        return MHD_NO;
                resp = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
        }
        if (!resp)
                return MHD_NO;
        if (body)
                MHD_add_response_header(resp, "Content-Type", type);
        if (retry_after)
                MHD_add_response_header(resp, "Retry-After", retry_after);
        for (; hdrs && hdrs[0]; hdrs += 2)
                MHD_add_response_header(resp, hdrs[0], hdrs[1]);
        add_common_headers(conn, resp, NULL);
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

enum MHD_Result mp_api_send_json(struct MHD_Connection *conn, unsigned status, json_t *body) {
        return send_json_typed(conn, status, body, "application/json", NULL, NULL);
}

static const char *status_title(unsigned s) {
        switch (s) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 405: return "Method Not Allowed";
        case 409: return "Conflict";
        case 413: return "Content Too Large";
        case 414: return "URI Too Long";
        case 415: return "Unsupported Media Type";
        case 422: return "Unprocessable Content";
        case 429: return "Too Many Requests";
        case 503: return "Service Unavailable";
        default: return "Internal Server Error";
        }
}

enum MHD_Result mp_api_send_problem(struct MHD_Connection *conn, const struct mp_error *err) {
        return mp_api_send_problem_headers(conn, err, NULL);
}

enum MHD_Result mp_api_send_problem_headers(struct MHD_Connection *conn, const struct mp_error *err,
                                            const char *const *hdrs) {
        unsigned status = err->status >= 400 && err->status < 600 ? (unsigned) err->status : 500;
        _cleanup_json_ json_t *body = NULL;
        char type[96];

        if (status >= 500 && status != 503)
                mp_err("internal error: %s", err->message[0] ? err->message : "(no message)");
        snprintf(type, sizeof(type), "urn:mecapy:problem:%s", err->code[0] ? err->code : "internal");
        body = json_pack("{s:s,s:s,s:i,s:s}", "type", type, "title", status_title(status), "status",
                         (int) status, "detail",
                         status >= 500 && status != 503 ? "the server failed; the error was logged"
                         : err->message[0] ? err->message : status_title(status));
        char retry[24] = "";
        if (json_is_array(err->errors) && status < 500)
                json_object_set(body, "errors", err->errors);
        /* errors as an object: extension members of the problem (RFC 9457 section 3.2),
         * such as QuotaExceeded's quota, limit and resets_at; an integer retry_after
         * is also the Retry-After header. */
        if (json_is_object(err->errors) && status < 500) {
                json_object_update_missing(body, err->errors);
                if (json_is_integer(json_object_get(err->errors, "retry_after")))
                        snprintf(retry, sizeof(retry), "%" JSON_INTEGER_FORMAT,
                                 json_integer_value(json_object_get(err->errors, "retry_after")));
        }
        return send_json_typed(conn, status, body, "application/problem+json",
                               status == 503 ? "2" : retry[0] ? retry : NULL, hdrs);
}

enum MHD_Result mp_api_send_throttled(struct MHD_Connection *conn, int retry_after_s, const char *what) {
        _cleanup_json_ json_t *body = NULL;
        char secs[16];

        snprintf(secs, sizeof(secs), "%d", retry_after_s < 1 ? 1 : retry_after_s);
        body = json_pack("{s:s,s:s,s:i,s:s,s:i}", "type", "urn:mecapy:problem:rate_limited", "title",
                         "Too Many Requests", "status", 429, "detail", what, "retry_after",
                         retry_after_s < 1 ? 1 : retry_after_s);
        return send_json_typed(conn, 429, body, "application/problem+json", secs, NULL);
}

enum MHD_Result mp_api_send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...) {
        struct mp_error err = { .status = (int) status };
        va_list ap;
        enum MHD_Result r;

        snprintf(err.code, sizeof(err.code), "%s", code);
        va_start(ap, fmt);
        vsnprintf(err.message, sizeof(err.message), fmt, ap);
        va_end(ap);
        r = mp_api_send_problem(conn, &err);
        return r;
}

int mp_api_body_json(struct MHD_Connection *conn, struct mp_request *req, bool optional,
                     json_t **ret, struct mp_error *err) {
        struct mp_buf *b = &req->body;
        const char *ct = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
        json_error_t jerr;
        json_t *j;

        if (b->len == 0 && optional) {
                *ret = json_object();
                return 0;
        }
        if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' '))
                return mp_error_set(err, EINVAL, 415, "unsupported_media_type",
                                    "the body must be JSON with Content-Type: application/json (got %.64s)",
                                    ct ? ct : "no Content-Type");
        if (b->len == 0)
                return mp_error_set(err, EINVAL, 400, "malformed_json", "the body is empty; a JSON object is expected");
        if (!mp_utf8_valid(b->data, b->len))
                return mp_error_set(err, EINVAL, 400, "invalid_utf8",
                                    "the body is not valid UTF-8 (or holds a NUL byte)");
        j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return mp_error_set(err, EINVAL, 400, "malformed_json",
                                    "the body is not valid JSON: %s at line %d, column %d", jerr.text,
                                    jerr.line, jerr.column);
        *ret = j;
        return 0;
}

int mp_api_body_object(struct MHD_Connection *conn, struct mp_request *req, json_t **ret,
                       struct mp_error *err) {
        json_t *j = NULL;
        int r = mp_api_body_json(conn, req, false, &j, err);
        if (r < 0)
                return r;
        if (!json_is_object(j)) {
                json_decref(j);
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        }
        *ret = j;
        return 0;
}

/* --- long polls --- */

/* Set by mp_api_wait_task when it took over a request that a slow-work thread runs (its
 * connection already suspended): that thread must then leave the connection to the
 * long poll, which resumes it. Read by the slow-work thread that ran the handler. */
static _Thread_local bool handed_to_long_poll;

static void remove_waiter(struct mp_api *api, struct mp_request *req) {
        for (struct mp_request **p = &api->waiters; *p; p = &(*p)->next_waiter)
                if (*p == req) {
                        *p = req->next_waiter;
                        req->next_waiter = NULL;
                        return;
                }
}

/* What a long poll waits for: a task, or a workflow run (the same id space: UUIDs). */
static int look(struct mp_api *api, const struct mp_principal *p, const char *id, bool run, json_t **ret,
                bool *ended, struct mp_error *err) {
        if (run)
                return mp_core_workflow_run_get(api->core, p, id, ret, ended, err);
        return mp_core_task_get(api->core, p, id, ret, ended, err);
}

/* What a long poll found: a run as it is, a task without its result when it asked so. */
static enum MHD_Result send_looked(struct mp_api *api, struct mp_request *req, struct MHD_Connection *conn,
                                   unsigned status, json_t *j) {
        if (req->rerun_of[0] && j) /* a re-run's answer (api-sheets.c) */
                return mp_api_send_rerun(api, conn, status, &req->principal, req->rerun_of, j);
        if (req->wait_run)
                return mp_api_send_json(conn, status, j);
        if (req->omit_result && j)
                mp_api_task_omit_result(j);
        return mp_api_send_task(conn, status, j);
}

static enum MHD_Result answer_task(struct mp_api *api, struct MHD_Connection *conn,
                                   struct mp_request *req) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *task = NULL;
        bool ended = false;

        if (look(api, &req->principal, req->wait_task, req->wait_run, &task, &ended, &err) < 0)
                return mp_api_send_problem(conn, &err);
        return send_looked(api, req, conn, ended ? req->ended_status : req->pending_status, task);
}

static enum MHD_Result wait_for(struct mp_api *api, struct MHD_Connection *conn, struct mp_request *req,
                                const struct mp_principal *p, const char *task_id, bool run, int wait_s,
                                unsigned ended_status, unsigned pending_status);

enum MHD_Result mp_api_wait_task(struct mp_api *api, struct MHD_Connection *conn,
                                 struct mp_request *req, const struct mp_principal *p,
                                 const char *task_id, int wait_s, unsigned ended_status,
                                 unsigned pending_status) {
        return wait_for(api, conn, req, p, task_id, false, wait_s, ended_status, pending_status);
}

enum MHD_Result mp_api_wait_run(struct mp_api *api, struct MHD_Connection *conn,
                                struct mp_request *req, const struct mp_principal *p,
                                const char *run_id, int wait_s, unsigned ended_status,
                                unsigned pending_status) {
        return wait_for(api, conn, req, p, run_id, true, wait_s, ended_status, pending_status);
}

static enum MHD_Result wait_for(struct mp_api *api, struct MHD_Connection *conn, struct mp_request *req,
                                const struct mp_principal *p, const char *task_id, bool run, int wait_s,
                                unsigned ended_status, unsigned pending_status) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *task = NULL;
        bool ended = false;

        req->wait_run = run;
        snprintf(req->wait_task, sizeof(req->wait_task), "%s", task_id);
        req->principal = *p;
        req->ended_status = ended_status;
        req->pending_status = pending_status;
        req->conn = conn;
        req->woken = false;
        if (wait_s > 0) {
                /* Register first, then look: a task that ends between the two is either
                 * seen ended by the look, or wakes the registered waiter. */
                pthread_mutex_lock(&api->lock);
                req->deadline_ms = mp_mono_ms() + (int64_t) wait_s * 1000;
                req->next_waiter = api->waiters;
                api->waiters = req;
                pthread_mutex_unlock(&api->lock);
        }
        if (look(api, p, task_id, run, &task, &ended, &err) < 0 || ended || wait_s <= 0) {
                if (wait_s > 0) {
                        pthread_mutex_lock(&api->lock);
                        remove_waiter(api, req);
                        pthread_mutex_unlock(&api->lock);
                }
                if (err.status)
                        return mp_api_send_problem(conn, &err);
                return send_looked(api, req, conn, ended ? ended_status : pending_status, task);
        }
        pthread_mutex_lock(&api->lock);
        if (req->woken) {
                /* Ended while we looked: answer now. */
                remove_waiter(api, req);
                pthread_mutex_unlock(&api->lock);
                return answer_task(api, conn, req);
        }
        /* Suspended under the lock, so a wake-up cannot come before the suspension. A
         * request run by a slow-work thread is suspended already: the long poll takes
         * it over, and resumes it when the task ends or the time runs out. */
        req->suspended = true;
        req->held = true;
        if (req->offloaded)
                handed_to_long_poll = true;
        else
                MHD_suspend_connection(conn);
        pthread_cond_signal(&api->cond); /* the timer may need an earlier deadline */
        pthread_mutex_unlock(&api->lock);
        return MHD_YES;
}

/* Wake (under api->lock) one waiter: resume it if suspended, else mark it. */
static void wake_locked(struct mp_api *api, struct mp_request *req) {
        remove_waiter(api, req);
        req->woken = true;
        if (req->suspended) {
                req->suspended = false;
                MHD_resume_connection(req->conn);
        }
}

/* Notices may have been lost (the queue's connection broke): look at every held task
 * again and wake those that ended. Ids and principals are copied under the lock and
 * looked up outside it, since a lookup reads the store. */
static void recheck_waiters(struct mp_api *api) {
        enum { MAX_RECHECK = 4096 };
        struct held {
                char task[MP_ID_LEN + 1];
                bool run;
                struct mp_principal p;
        } *held = calloc(MAX_RECHECK, sizeof(*held));
        size_t n = 0;

        if (!held)
                return;
        pthread_mutex_lock(&api->lock);
        for (struct mp_request *w = api->waiters; w && n < MAX_RECHECK; w = w->next_waiter) {
                snprintf(held[n].task, sizeof(held[n].task), "%s", w->wait_task);
                held[n].run = w->wait_run;
                held[n++].p = w->principal;
        }
        pthread_mutex_unlock(&api->lock);
        for (size_t i = 0; i < n; i++) {
                _cleanup_error_ struct mp_error err = { 0 };
                _cleanup_json_ json_t *task = NULL;
                bool ended = false;
                if (look(api, &held[i].p, held[i].task, held[i].run, &task, &ended, &err) >= 0 && ended)
                        mp_api_task_ended(api, held[i].task);
        }
        free(held);
}

void mp_api_task_ended(void *userdata, const char *task_id) {
        struct mp_api *api = userdata;
        pthread_mutex_lock(&api->lock);
        mp_api_events_wake_locked(api, task_id); /* event streams look for themselves */
        pthread_mutex_unlock(&api->lock);
        if (!task_id) {
                recheck_waiters(api);
                return;
        }
        pthread_mutex_lock(&api->lock);
        for (struct mp_request *w = api->waiters, *next; w; w = next) {
                next = w->next_waiter;
                if (!strcmp(w->wait_task, task_id)) {
                        /* A waiter that is not suspended yet is marked and removed; the
                         * handler sees `woken` and answers. */
                        if (w->suspended)
                                wake_locked(api, w);
                        else
                                w->woken = true;
                }
        }
        pthread_mutex_unlock(&api->lock);
}

/* Resumes long polls whose time ran out; sleeps until the nearest deadline. */
static void *timer_main(void *userdata) {
        struct mp_api *api = userdata;

        pthread_mutex_lock(&api->lock);
        while (!api->stopping) {
                int64_t now = mp_mono_ms(), next = now + 60000;
                for (struct mp_request *w = api->waiters, *n; w; w = n) {
                        n = w->next_waiter;
                        if (!w->suspended)
                                continue;
                        if (w->deadline_ms <= now)
                                wake_locked(api, w);
                        else if (w->deadline_ms < next)
                                next = w->deadline_ms;
                }
                next = mp_api_events_tick_locked(api, now, next);
                struct timespec ts = mp_mono_deadline(next - now);
                pthread_cond_timedwait(&api->cond, &api->lock, &ts);
        }
        /* Stopping: let every held request answer. */
        while (api->waiters)
                wake_locked(api, api->waiters);
        mp_api_events_tick_locked(api, mp_mono_ms(), 0); /* streams end */
        pthread_mutex_unlock(&api->lock);
        return NULL;
}

/* --- slow work: argon2, code analysis, the OpenID provider --- */

/* The same mechanism as the long polls: the HTTP thread suspends the connection and goes
 * on serving others; a slow-work thread runs the handler, which queues its answer (MHD
 * allows that from another thread while the connection is suspended), then resumes the
 * connection. After the resume the request may be answered and freed at once: nothing
 * here touches it again. */
static void *slow_main(void *userdata) {
        struct mp_api *api = userdata;

        pthread_mutex_lock(&api->slow_lock);
        for (;;) {
                struct mp_request *req = api->slow_head;
                if (!req) {
                        if (api->slow_stopping)
                                break;
                        pthread_cond_wait(&api->slow_cond, &api->slow_lock);
                        continue;
                }
                api->slow_head = req->next_job;
                if (!api->slow_head)
                        api->slow_tail = NULL;
                api->slow_queued--;
                pthread_mutex_unlock(&api->slow_lock);

                struct MHD_Connection *conn = req->route.conn;
                handed_to_long_poll = false;
                mp_log_set_request_id(req->request_id);
                enum MHD_Result r = req->offload_fn(&req->route);
                mp_log_set_request_id(NULL);
                if (!handed_to_long_poll) {
                        req->offload_result = r;
                        req->offload_done = true;
                        MHD_resume_connection(conn);
                }
                pthread_mutex_lock(&api->slow_lock);
        }
        pthread_mutex_unlock(&api->slow_lock);
        return NULL;
}

enum MHD_Result mp_api_offload(struct mp_api *api, struct mp_request *req, mp_route_handler fn) {
        struct MHD_Connection *conn = req->route.conn;

        pthread_mutex_lock(&api->slow_lock);
        if (api->slow_stopping || api->n_slow_threads == 0 || api->slow_queued >= MP_API_SLOW_QUEUE_MAX) {
                bool stopping = api->slow_stopping;
                pthread_mutex_unlock(&api->slow_lock);
                return mp_api_send_error(conn, 503, "busy",
                                         stopping ? "the server is stopping"
                                                  : "too many slow requests (logins, uploads) at once; retry shortly");
        }
        req->offloaded = true;
        req->offload_fn = fn;
        req->next_job = NULL;
        /* Suspended before a thread can see it: its answer cannot come first. */
        MHD_suspend_connection(conn);
        if (api->slow_tail)
                api->slow_tail->next_job = req;
        else
                api->slow_head = req;
        api->slow_tail = req;
        api->slow_queued++;
        pthread_cond_signal(&api->slow_cond);
        pthread_mutex_unlock(&api->slow_lock);
        return MHD_YES;
}

static void slow_stop(struct mp_api *api) {
        pthread_mutex_lock(&api->slow_lock);
        api->slow_stopping = true;
        pthread_cond_broadcast(&api->slow_cond);
        pthread_mutex_unlock(&api->slow_lock);
        /* The threads drain the queue first: every suspended request gets its answer. */
        for (int i = 0; i < api->n_slow_threads; i++)
                pthread_join(api->slow_threads[i], NULL);
        api->n_slow_threads = 0;
}

/* --- the access handler --- */

static enum MHD_Result serve_request(struct mp_api *api, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *upload_data,
                                     size_t *upload_data_size, struct mp_request *req);

/* The request's id: a sane X-Request-Id from the client (a proxy's, a script's), else a
 * new one; both are logged, stored with the task it creates, and echoed. */
static void request_id_init(struct MHD_Connection *conn, struct mp_request *req) {
        const char *given = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");

        if (given && mp_log_id_valid(given))
                snprintf(req->request_id, sizeof(req->request_id), "%s", given);
        else
                mp_id_new(req->request_id);
}

/* MHD's access handler: the request's id is the log context of this thread while it
 * serves it (any thread of the pool may serve any call of it). */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
        struct mp_request *req = *con_cls;
        enum MHD_Result r;

        (void) version;
        if (!req) {
                req = calloc(1, sizeof(*req));
                if (!req)
                        return MHD_NO;
                request_id_init(conn, req);
                snprintf(req->access, sizeof(req->access), "%s %s", method, url);
                *con_cls = req;
        }
        mp_log_set_request_id(req->request_id);
        r = serve_request(cls, conn, url, method, upload_data, upload_data_size, req);
        mp_log_set_request_id(NULL);
        return r;
}

static enum MHD_Result serve_request(struct mp_api *api, struct MHD_Connection *conn, const char *url,
                                     const char *method, const char *upload_data,
                                     size_t *upload_data_size, struct mp_request *req) {
        if (!req->start_us) {
                const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
                long n;
                req->body.cap = MP_MAX_BODY_BYTES;
                req->start_us = mp_api_metrics_now_us();
                /* Refuse an announced oversize body before reading any of it. */
                if (cl && (mp_parse_long(cl, 0, 1L << 40, &n) < 0 || n > (long) MP_MAX_BODY_BYTES)) {
                        req->too_large = true;
                        return mp_api_send_error(conn, 413, "too_large",
                                                 "the request body is larger than %u bytes",
                                                 MP_MAX_BODY_BYTES);
                }
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                if (!req->too_large && mp_buf_append(&req->body, upload_data, *upload_data_size) < 0)
                        req->too_large = true; /* keep reading, answer 413 at the end */
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (req->offload_done)
                return req->offload_result; /* resumed after slow work: already answered */
        if (req->wait_task[0] && req->woken) {
                /* Resumed long poll. */
                pthread_mutex_lock(&api->lock);
                remove_waiter(api, req);
                pthread_mutex_unlock(&api->lock);
                return answer_task(api, conn, req);
        }
        if (req->too_large)
                return mp_api_send_error(conn, 413, "too_large", "the request body is larger than %u bytes",
                                         MP_MAX_BODY_BYTES);
        return mp_api_route(api, conn, req, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
        struct mp_api *api = cls;
        struct mp_request *req = *con_cls;
        const union MHD_ConnectionInfo *ci;

        (void) toe;
        if (!req)
                return;
        /* Every answer passes here once, whatever queued it: count it by the status MHD
         * holds for it (none: the client left before an answer). */
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status) {
                int64_t us = mp_api_metrics_now_us() - req->start_us;
                mp_api_metrics_count(api->metrics, ci->http_status, us, req->held);
                /* The access log (--verbose): one line per answer, with its request id. */
                mp_log_set_request_id(req->request_id);
                mp_debug("http: %s %u %.1f ms", req->access, ci->http_status, (double) us / 1000.0);
                mp_log_set_request_id(NULL);
        }
        pthread_mutex_lock(&api->lock);
        remove_waiter(api, req);
        mp_api_events_detach_locked(api, req->sse);
        pthread_mutex_unlock(&api->lock);
        mp_buf_free(&req->body);
        free(req);
        *con_cls = NULL;
}

int mp_api_start(struct mp_core *core, struct mp_api **ret, struct mp_error *err) {
        const struct mp_config *c = core->config;
        struct mp_api *api = calloc(1, sizeof(*api));
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t) c->port) };
        const union MHD_DaemonInfo *info;

        if (!api)
                return -ENOMEM;
        if (inet_pton(AF_INET, c->listen_host, &addr.sin_addr) != 1) {
                free(api);
                return mp_error_set(err, EINVAL, 400, "config", "--host \"%s\" is not an IPv4 address",
                                    c->listen_host);
        }
        api->core = core;
        if (mp_api_web_open(c, &api->web_fd, api->web_dir, sizeof(api->web_dir), err) < 0) {
                free(api);
                return -EINVAL;
        }
        if (api->web_fd >= 0)
                mp_info("dashboard: serving %s", api->web_dir);
        else
                mp_info("dashboard: not built (make build writes web/dist; or --web-dir DIR)");
        api->metrics = calloc(1, sizeof(*api->metrics));
        if (!api->metrics) {
                if (api->web_fd >= 0)
                        close(api->web_fd);
                free(api);
                return -ENOMEM;
        }
        if (mp_api_metrics_init(api->metrics, c, err) < 0 || mp_api_guard_new(c, &api->guard, err) < 0) {
                if (api->web_fd >= 0)
                        close(api->web_fd);
                free(api->metrics);
                free(api);
                return -EINVAL;
        }
        if (c->tls_cert) {
                if (!MHD_is_feature_supported(MHD_FEATURE_TLS) ||
                    !MHD_is_feature_supported(MHD_FEATURE_HTTPS_CERT_CALLBACK)) {
                        mp_error_set(err, ENOTSUP, 500, "config", "--tls-cert: this libmicrohttpd was built "
                                     "without TLS (GnuTLS); serve plain HTTP behind a TLS proxy");
                } else if (mp_api_tls_open(c->tls_cert, c->tls_key, &api->tls, err) >= 0) {
                        api->metrics->tls = api->tls;
                }
                if (!api->tls) {
                        mp_api_guard_free(api->guard);
                        if (api->web_fd >= 0)
                                close(api->web_fd);
                        free(api->metrics);
                        free(api);
                        return -EINVAL;
                }
        }
        pthread_mutex_init(&api->lock, NULL);
        mp_cond_init_monotonic(&api->cond);
        pthread_mutex_init(&api->slow_lock, NULL);
        pthread_cond_init(&api->slow_cond, NULL);
        /* Before the daemon: its first request may be a login. */
        for (int i = 0; i < MP_API_SLOW_THREADS; i++)
                if (pthread_create(&api->slow_threads[i], NULL, slow_main, api) == 0)
                        api->n_slow_threads++;

        /* HTTPS: the certificate is given at each handshake (api-tls.h), so that SIGHUP
         * can swap it without touching the listener. */
        struct MHD_OptionItem tls_opts[] = {
                { api->tls ? MHD_OPTION_HTTPS_CERT_CALLBACK : MHD_OPTION_END, 0,
                  api->tls ? mp_api_tls_callback() : NULL },
                { MHD_OPTION_END, 0, NULL },
        };
        api->daemon = MHD_start_daemon(
                MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                        MHD_USE_ERROR_LOG | (api->tls ? MHD_USE_TLS : 0),
                (uint16_t) c->port, NULL, NULL, on_request, api,
                MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                MHD_OPTION_THREAD_POOL_SIZE, (unsigned) c->http_threads,
                MHD_OPTION_NOTIFY_COMPLETED, on_completed, api,
                /* Every response finds the guard through its connection. */
                MHD_OPTION_NOTIFY_CONNECTION, mp_api_guard_on_connection, api->guard,
                /* The request line and headers must fit here (MHD answers 431 or 414
                 * otherwise); bodies stream through it in pieces. */
                MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) MP_MAX_HEADER_BYTES,
                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 120,
                MHD_OPTION_CONNECTION_LIMIT, (unsigned) 4096,
                MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned) 1,
                MHD_OPTION_ARRAY, tls_opts,
                MHD_OPTION_END);
        if (!api->daemon) {
                int port = c->port;
                slow_stop(api);
                pthread_mutex_destroy(&api->lock);
                pthread_cond_destroy(&api->cond);
                pthread_mutex_destroy(&api->slow_lock);
                pthread_cond_destroy(&api->slow_cond);
                mp_api_guard_free(api->guard);
                mp_api_tls_free(api->tls);
                if (api->web_fd >= 0)
                        close(api->web_fd);
                free(api->metrics);
                free(api);
                return mp_error_set(err, EADDRINUSE, 500, "config",
                                    "cannot listen on %s:%d (is the port taken?)", c->listen_host, port);
        }
        info = MHD_get_daemon_info(api->daemon, MHD_DAEMON_INFO_BIND_PORT);
        api->port = info ? info->port : c->port;
        pthread_create(&api->timer, NULL, timer_main, api);
        /* Ends of tasks reach us through the queue, from whichever process ran them. */
        if (mp_core_listen_task_end(core, mp_api_task_ended, api, err) < 0) {
                mp_api_stop(api);
                return -EIO;
        }
        *ret = api;
        return 0;
}

int mp_api_port(struct mp_api *api) {
        return api->port;
}

void mp_api_stop(struct mp_api *api) {
        if (!api)
                return;
        /* Slow work first: a handler it runs may still hand its request to a long poll,
         * which the timer then answers as it stops. */
        slow_stop(api);
        pthread_mutex_lock(&api->lock);
        api->stopping = true;
        pthread_cond_signal(&api->cond);
        pthread_mutex_unlock(&api->lock);
        pthread_join(api->timer, NULL);
        /* No notice may come in once the daemon and the waiters are gone. */
        mp_core_listen_task_end(api->core, NULL, NULL, NULL);
        MHD_stop_daemon(api->daemon);
        pthread_mutex_destroy(&api->lock);
        pthread_cond_destroy(&api->cond);
        pthread_mutex_destroy(&api->slow_lock);
        pthread_cond_destroy(&api->slow_cond);
        mp_api_guard_free(api->guard);
        mp_api_tls_free(api->tls);
        if (api->web_fd >= 0)
                close(api->web_fd);
        free(api->metrics);
        free(api);
}

int mp_api_tls_reload(struct mp_api *api, struct mp_error *err) {
        if (!api->tls)
                return mp_error_set(err, EINVAL, 400, "config", "HTTPS is off (no --tls-cert)");
        return mp_api_tls_load(api->tls, err);
}
