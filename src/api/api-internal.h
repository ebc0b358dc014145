#pragma once

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "api/api.h"
#include "api/api-metrics.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "core/core.h"

#define MP_ROUTE_MAX_SEGS 16  /* path segments of a URL that can match a route (an artifact's
                               * name spans up to MP_MAX_ARTIFACT_DEPTH + 1 of them) */
#define MP_ROUTE_MAX_PARAMS 4 /* {…} segments in one pattern */
/* Server-sent event streams (api-events.c). */
#define MP_SSE_PER_USER 16               /* open at once per user (a 17th: 429) */
#define MP_SSE_MAX 1024                  /* open at once on this server */
#define MP_SSE_TICK_MS 1000              /* a stream looks at its task this often */
#define MP_SSE_STUDY_TICK_MS 250         /* a study's stream looks this often (its counts) */
#define MP_SSE_HEARTBEAT_MS 15000        /* a comment line when nothing else was sent */
#define MP_SSE_BUFFER_BYTES (8u << 20)   /* the events queued at once (logs: at most 1 MiB) */
#define MP_SSE_END_RESULT_BYTES (1u << 20) /* a larger result is left out of `end` */

/* What a route needs of its caller: exactly one of these, never 0 (a route table entry
 * must say; see MP_ROUTE in api-routes.c and tests/unit/test-api.c). Values other than
 * the two below are one MP_SCOPE_* bit (core.h): signed in, with a token holding it. */
enum {
        MP_NEED_UNSET = 0,              /* refused: the table must name a need */
        MP_NEED_PUBLIC = 1u << 30,      /* no authentication */
        MP_NEED_SIGNED_IN = 1u << 29,   /* any session or token, no scope */
};

/* Route flags. */
enum {
        MP_ROUTE_SLOW = 1u << 0,       /* may take long (argon2, analysis, the provider): run it
                                        * on the slow-work threads, the connection suspended */
        MP_ROUTE_AUTH_LIMIT = 1u << 1, /* per-address --auth-rate-limit, keyed by its last
                                        * path segment (login, signup, cli-exchange) */
        MP_ROUTE_REST = 1u << 2,       /* its last {…} takes the rest of the path, its
                                        * segments joined by '/' (an artifact in a folder) */
};

struct mp_route_ctx;
typedef enum MHD_Result (*mp_route_handler)(struct mp_route_ctx *c);

/* One route: method, path pattern ("/api/v1/functions/{id}"; a {name} segment matches
 * any one segment), what it needs, flags, handler. */
struct mp_api_route {
        const char *method;
        const char *pattern;
        unsigned need;
        unsigned flags;
        mp_route_handler handler;
};
/* The route table (api-routes.c): every route the server answers; openapi.json lists
 * the same ones (tests/unit/test-api.c). */
extern const struct mp_api_route mp_api_routes[];
extern const size_t mp_api_n_routes;
/* The name of a need: "public", "signed-in", a scope name, or NULL when it is not one
 * value that a route may hold (0, several bits, an unknown bit). */
const char *mp_api_need_name(unsigned need);

/* The state of one routed request: what the handlers read. It lives in its mp_request,
 * so a slow route can run on another thread while the connection is suspended. */
struct mp_route_ctx {
        struct mp_api *api;
        struct MHD_Connection *conn;
        struct mp_request *req;
        const char *method;
        const struct mp_api_route *route;
        const char *param[MP_ROUTE_MAX_PARAMS]; /* the {…} segments, percent-decoded */
        int nparam;
        char *seg[MP_ROUTE_MAX_SEGS];
        int nseg;
        char path[MP_MAX_URL_LEN + 1]; /* the split path the segments point into */
        char rest[MP_MAX_URL_LEN + 1]; /* an MP_ROUTE_REST route's last parameter */
        struct mp_principal principal;
        struct mp_error err;
        char client[48]; /* the client's address (api-guard.c) */
        bool authed;     /* principal is set */
};

/* One request's state, kept by MHD across the calls of the access handler. */
struct mp_request {
        struct mp_buf body;
        bool too_large;
        bool suspended;      /* waiting for a task to end (a long poll) */
        bool woken;          /* resumed: answer now */
        int64_t deadline_ms; /* monotonic end of the long poll */
        char wait_task[MP_ID_LEN + 1];
        bool wait_run;       /* wait_task names a workflow run, not a task */
        unsigned ended_status;   /* the HTTP status when the task ended */
        unsigned pending_status; /* ... and when the wait ran out first */
        struct mp_principal principal; /* who asked, for the answer after the wait */
        struct mp_request *next_waiter;
        struct MHD_Connection *conn;
        int64_t start_us;    /* the first call of the access handler (monotonic, /metrics) */
        bool held;           /* a long poll that was suspended: kind="wait" in /metrics */
        /* Slow work (mp_api_offload): queued or running on a slow-work thread, the
         * connection suspended; done: the job ended and resumed the connection, with
         * offload_result as the access handler's answer. */
        bool offloaded;
        bool offload_done;
        enum MHD_Result offload_result;
        mp_route_handler offload_fn;
        struct mp_request *next_job;
        struct mp_route_ctx route; /* filled by mp_api_route */
        struct mp_sse *sse;        /* an event stream this request answers with */
        bool omit_result;          /* GET /tasks/{id}?result=omit */
        char rerun_of[MP_ID_LEN + 1]; /* POST /tasks/{id}/rerun?wait: the task re-run (api-sheets.c) */
        /* X-Request-Id: the client's when sane, else ours; set as the log context of
         * whichever thread serves this request, echoed in the answer. */
        char request_id[MP_LOG_ID_MAX + 1];
        char access[160]; /* "METHOD URL" for the access log, cut short */
};

struct mp_api {
        struct mp_core *core;
        struct MHD_Daemon *daemon;
        int port;
        /* Suspended long polls, guarded by lock; timer wakes expired ones. */
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct mp_request *waiters;
        pthread_t timer;
        bool stopping;
        struct mp_api_guard *guard; /* addresses, headers, CORS, rate limits (api-guard.h) */
        struct mp_api_metrics *metrics; /* HTTP counts and the /metrics access list */
        /* The slow-work threads (MP_API_SLOW_THREADS) and their queue of suspended
         * requests, guarded by slow_lock. */
        pthread_mutex_t slow_lock;
        pthread_cond_t slow_cond;
        struct mp_request *slow_head, *slow_tail;
        int slow_queued;
        bool slow_stopping;
        pthread_t slow_threads[MP_API_SLOW_THREADS];
        int n_slow_threads;
        /* The dashboard's folder (api-web.c): -1 when none was found. */
        int web_fd;
        char web_dir[4096];
        /* Server-sent event streams (api-events.c), guarded by lock. */
        struct mp_sse *streams;
        int n_streams;
        /* HTTPS (--tls-cert): NULL when off (api-tls.h). */
        struct mp_api_tls *tls;
};

/* Run fn(&req->route) on a slow-work thread: the connection is suspended now and
 * resumed once fn answered (fn may also hand the request to a long poll, see
 * mp_api_wait_task). 503 with Retry-After when the queue is full or the server stops. */
enum MHD_Result mp_api_offload(struct mp_api *api, struct mp_request *req, mp_route_handler fn);

/* Route a request whose body is complete. Returns an MHD result. */
enum MHD_Result mp_api_route(struct mp_api *api, struct MHD_Connection *conn,
                             struct mp_request *req, const char *method, const char *url);

/* The request's JSON body: 415 unless Content-Type is JSON, 400 (with line and column)
 * when empty, not UTF-8 or malformed; optional: an empty body reads as {}. *ret is a
 * new reference. 0 or -EINVAL with err filled. */
int mp_api_body_json(struct MHD_Connection *conn, struct mp_request *req, bool optional,
                     json_t **ret, struct mp_error *err);
/* What every handler needs of its request (api-routes.c): a query parameter or header
 * (NULL when absent); an integer query parameter in [min, max] (def when absent; -EINVAL
 * with a 400 naming it in c->err); the JSON object body (415, 400 or 422 in c->err). */
const char *mp_route_query(struct mp_route_ctx *c, const char *name);
const char *mp_route_header(struct mp_route_ctx *c, const char *name);
int mp_route_query_int(struct mp_route_ctx *c, const char *name, long min, long max, long def, long *ret);
int mp_route_body_object(struct mp_route_ctx *c, json_t **ret);
/* ?cache=refresh (compute again, docs/functions.md#result-cache) or nothing: *ret; a 400
 * naming the parameter for any other value. */
int mp_route_cache_refresh(struct mp_route_ctx *c, bool *ret);
/* Answers: c->err as problem+json; j (then released) as JSON. */
enum MHD_Result mp_route_problem(struct mp_route_ctx *c);
enum MHD_Result mp_route_send_owned(struct mp_route_ctx *c, unsigned status, json_t *j);
/* mp_api_body_json of a body that must be an object (never optional): 422 otherwise. */
int mp_api_body_object(struct MHD_Connection *conn, struct mp_request *req, json_t **ret,
                       struct mp_error *err);

/* Responses. */
enum MHD_Result mp_api_send_json(struct MHD_Connection *conn, unsigned status, json_t *body);
enum MHD_Result mp_api_send_bytes(struct MHD_Connection *conn, unsigned status,
                                  const char *content_type, const char *data, size_t len);
enum MHD_Result mp_api_send_problem(struct MHD_Connection *conn, const struct mp_error *err);
/* The same, with extra headers (name, value, ..., NULL; may be NULL): Allow on a 405. */
enum MHD_Result mp_api_send_problem_headers(struct MHD_Connection *conn, const struct mp_error *err,
                                            const char *const *hdrs);
/* 429 problem+json with Retry-After: retry_after_s (>= 1); `what` names the limit. */
enum MHD_Result mp_api_send_throttled(struct MHD_Connection *conn, int retry_after_s, const char *what);
enum MHD_Result mp_api_send_error(struct MHD_Connection *conn, unsigned status, const char *code,
                                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Hold the request until task_id ends or wait_s passes, then answer with the task,
 * with ended_status when it ended and pending_status when the time ran out first.
 * Answers at once when it already ended or wait_s is 0. */
enum MHD_Result mp_api_wait_task(struct mp_api *api, struct MHD_Connection *conn,
                                 struct mp_request *req, const struct mp_principal *p,
                                 const char *task_id, int wait_s, unsigned ended_status,
                                 unsigned pending_status);
/* The same for a workflow run (mp_core_workflow_run_get): it ends when the run has
 * ended and no call of it runs. */
enum MHD_Result mp_api_wait_run(struct mp_api *api, struct MHD_Connection *conn,
                                struct mp_request *req, const struct mp_principal *p,
                                const char *run_id, int wait_s, unsigned ended_status,
                                unsigned pending_status);
/* Called by core when a task ends (any thread). */
void mp_api_task_ended(void *userdata, const char *task_id);
