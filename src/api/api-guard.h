/* api/: the guards at the edge of the HTTP server (docs/identity.md#abuse-limits): the
 * client's address (X-Forwarded-For only from --trusted-proxy peers), the headers every
 * response carries (security headers, HSTS, CORS for --cors-origin origins), the size
 * checks on URLs and query strings, and the rate limits (token buckets of
 * api-ratelimit.c). One guard per server, made from the config at start. */
#pragma once

#include <microhttpd.h>
#include <stdbool.h>

#include "base/config.h"
#include "base/error.h"

struct mp_api_guard;

/* The CSP of API answers (JSON, problems, text); the dashboard page has its own. */
#define MP_CSP_API "default-src 'none'; frame-ancestors 'none'"
/* The dashboard's page: no inline script or style. api-web.c sends index.html with a
 * fresh nonce after style-src (MP_CSP_INDEX_HEAD " 'nonce-...'" MP_CSP_INDEX_TAIL), for the
 * editor's own style element. */
#define MP_CSP_INDEX_HEAD "default-src 'none'; script-src 'self'; style-src 'self'"
#define MP_CSP_INDEX_TAIL                                                                   \
        "; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; " \
        "frame-ancestors 'none'"
#define MP_CSP_INDEX MP_CSP_INDEX_HEAD MP_CSP_INDEX_TAIL
/* Downloaded artifacts: user content, never run by the browser in our origin. */
#define MP_CSP_ARTIFACT "sandbox; default-src 'none'"

/* 0, or -EINVAL with err naming the bad --cors-origin / --trusted-proxy entry. */
int mp_api_guard_new(const struct mp_config *config, struct mp_api_guard **ret, struct mp_error *err);
struct mp_api_guard *mp_api_guard_free(struct mp_api_guard *g);

/* The per-connection context MHD keeps for us: the guard, so that every response can
 * find it from its connection. Pass to MHD_OPTION_NOTIFY_CONNECTION with the guard. */
void mp_api_guard_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                enum MHD_ConnectionNotificationCode code);

/* The client's address as text ("?" when unknown): the socket's peer, or, when the
 * peer is a trusted proxy, the nearest address of X-Forwarded-For that is not one. */
void mp_api_client_address(struct mp_api_guard *g, struct MHD_Connection *conn, char *buf,
                           size_t size);
/* Did the request come over TLS (ours, or a proxy's that says X-Forwarded-Proto: https)? */
bool mp_api_request_tls(struct MHD_Connection *conn);

/* Add the headers of every response: nosniff, no-store, no referrer, no framing, CORP
 * same-origin, the CSP given (NULL: MP_CSP_API), HSTS over TLS, and CORS headers when
 * the request's Origin is allowed. */
void mp_api_add_headers(struct MHD_Connection *conn, struct MHD_Response *resp, const char *csp);
/* Answer an OPTIONS request (a CORS preflight): 204, with the allowed methods and
 * headers only for an allowed Origin. */
enum MHD_Result mp_api_cors_preflight(struct MHD_Connection *conn);

/* URL and query string within their caps (MP_MAX_URL_LEN, MP_MAX_QUERY_ARGS,
 * MP_MAX_QUERY_VALUE_LEN): 0, or -E2BIG with err set (414 or 400). */
int mp_api_check_sizes(struct MHD_Connection *conn, const char *url, struct mp_error *err);

/* The rate limits: each returns 0 to go on, else the seconds to wait; *ret_first says it
 * is the first refusal of an episode (to audit it once). Off (0) when configured so. */
enum mp_limit {
        MP_LIMIT_AUTH,        /* login, sign-up, OpenID starts: per client address */
        MP_LIMIT_API,         /* authenticated API requests: per user */
        MP_LIMIT_ANON,        /* requests refused 401: per client address */
        MP_LIMIT_LOGIN_FAILS, /* failed logins: per email (taken only on a failure) */
        MP_LIMIT_OIDC_START,  /* OpenID logins started: per client address */
};
int mp_api_limit(struct mp_api_guard *g, enum mp_limit which, const char *key, bool *ret_first);
/* For MP_LIMIT_LOGIN_FAILS: is there still room, without taking? 0 or seconds. */
int mp_api_limit_peek(struct mp_api_guard *g, enum mp_limit which, const char *key);
const char *mp_api_limit_name(enum mp_limit which);
