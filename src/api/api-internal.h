#pragma once

#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <jansson.h>

#include "api/api.h"
#include "api/api-metrics.h"
#include "base/util.h"
#include "core/core.h"

/* One request's state, kept by MHD across the calls of the access handler. */
struct mp_request {
        struct mp_buf body;
        bool too_large;
        bool suspended;      /* waiting for a task to end (a long poll) */
        bool woken;          /* resumed: answer now */
        int64_t deadline_ms; /* monotonic end of the long poll */
        char wait_task[MP_ID_LEN + 1];
        unsigned ended_status;   /* the HTTP status when the task ended */
        unsigned pending_status; /* ... and when the wait ran out first */
        struct mp_principal principal; /* who asked, for the answer after the wait */
        struct mp_request *next_waiter;
        struct MHD_Connection *conn;
        int64_t start_us;    /* the first call of the access handler (monotonic, /metrics) */
        bool held;           /* a long poll that was suspended: kind="wait" in /metrics */
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
};

/* Route a request whose body is complete. Returns an MHD result. */
enum MHD_Result mp_api_route(struct mp_api *api, struct MHD_Connection *conn,
                             struct mp_request *req, const char *method, const char *url);

/* The request's JSON body: 415 unless Content-Type is JSON, 400 (with line and column)
 * when empty, not UTF-8 or malformed; optional: an empty body reads as {}. *ret is a
 * new reference. 0 or -EINVAL with err filled. */
int mp_api_body_json(struct MHD_Connection *conn, struct mp_request *req, bool optional,
                     json_t **ret, struct mp_error *err);

/* Responses. */
enum MHD_Result mp_api_send_json(struct MHD_Connection *conn, unsigned status, json_t *body);
enum MHD_Result mp_api_send_bytes(struct MHD_Connection *conn, unsigned status,
                                  const char *content_type, const char *data, size_t len);
enum MHD_Result mp_api_send_problem(struct MHD_Connection *conn, const struct mp_error *err);
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
/* Called by core when a task ends (any thread). */
void mp_api_task_ended(void *userdata, const char *task_id);
