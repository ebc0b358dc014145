/* The routes: one table (mp_api_routes, at the end) of method, path pattern, what the
 * caller needs and handler. The dispatcher matches the path, answers 404 or 405 itself,
 * authenticates, applies the rate limit and the token's scope, then calls the handler;
 * each handler parses, calls core/ and renders. A route cannot be added without naming
 * what it needs (MP_ROUTE refuses 0 at compile time; tests/unit/test-api.c checks every
 * entry and that openapi.json lists exactly these routes). */
#include <ctype.h>
#include <string.h>

#include "base/json.h"
#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-sheets.h"
#include "api/api-tasks.h"
#include "api/api-company.h"
#include "api/api-retention.h"
#include "api/api-review.h"
#include "api/api-envs.h"
#include "api/api-events.h"
#include "api/api-web.h"
#include "api/api-workflows.h"
#include "api/api-studies.h"
#include "api/api-usage.h"
#include "auth/auth.h"
#include "base/limits.h"
#include "base/log.h"

extern const char mp_openapi_json[];
extern const size_t mp_openapi_json_len;

const char *mp_route_query(struct mp_route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

const char *mp_route_header(struct mp_route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

int mp_route_query_int(struct mp_route_ctx *c, const char *name, long min, long max, long def, long *ret) {
        const char *v = mp_route_query(c, name);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (mp_parse_long(v, min, max, ret) < 0) {
                mp_error_set(&c->err, EINVAL, 400, "bad_request",
                             "query parameter %s must be a whole number from %ld to %ld, not \"%.32s\"",
                             name, min, max, v);
                mp_error_add_field(&c->err, name, "must be a whole number from %ld to %ld", min, max);
                return -EINVAL;
        }
        return 0;
}

enum MHD_Result mp_route_problem(struct mp_route_ctx *c) {
        return mp_api_send_problem(c->conn, &c->err);
}

#define IS(m) (!strcmp(c->method, m))

static const char *cookie(struct mp_route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, name);
}

/* A browser sends cookies with requests that other sites make it send (CSRF). So a
 * session cookie authenticates a GET or HEAD (which change nothing) on its own, and
 * anything else only with an X-CSRF-Token header equal to the mecapy_csrf cookie: a
 * value another site can neither read nor set (double submit; docs/api.md). */
static int cookie_session(struct mp_route_ctx *c, const char *session) {
        const char *csrf = cookie(c, "mecapy_csrf"), *sent = mp_route_header(c, "X-CSRF-Token");

        if (strncmp(session, "mpy_", 4))
                return mp_error_set(&c->err, EACCES, 401, "unauthorized",
                                    "the mecapy_session cookie does not hold a MecaPy session");
        if (!IS("GET") && !IS("HEAD") &&
            (!csrf || !sent || strlen(csrf) < 32 || !mp_streq_ct(csrf, sent)))
                return mp_error_set(&c->err, EACCES, 403, "csrf",
                                    "a %s authenticated by the session cookie needs an X-CSRF-Token "
                                    "header equal to the mecapy_csrf cookie", c->method);
        return mp_core_authenticate(c->api->core, session, &c->principal, &c->err);
}

static int authenticate(struct mp_route_ctx *c) {
        const char *h = mp_route_header(c, "Authorization");
        if (!h && cookie(c, "mecapy_session"))
                return cookie_session(c, cookie(c, "mecapy_session"));
        if (!h || strncasecmp(h, "Bearer ", 7))
                return mp_error_set(&c->err, EACCES, 401, "unauthorized",
                                    "this route needs an Authorization: Bearer <token> header "
                                    "(get a token from POST /api/v1/auth/login)");
        return mp_core_authenticate(c->api->core, h + 7, &c->principal, &c->err);
}

/* Will authenticating this request ask the OpenID provider (a JWT bearer: its keys may
 * have to be fetched)? Then it is slow work. */
static bool bearer_is_provider_token(struct mp_route_ctx *c) {
        const char *h = mp_route_header(c, "Authorization");
        return c->api->core->oidc && h && !strncasecmp(h, "Bearer ", 7) && strncmp(h + 7, "mpy_", 4) &&
               mp_oidc_looks_like_jwt(h + 7);
}

/* --- abuse limits, scopes, and the audit of refusals (docs/identity.md) --- */

/* 429 with Retry-After; the first refusal of an episode goes to the audit log (one row
 * per episode, not per request: a flood must not become a flood of writes). */
static enum MHD_Result throttled(struct mp_route_ctx *c, enum mp_limit which, int wait, bool first) {
        if (first)
                mp_core_audit(c->api->core, "rate_limited", c->authed ? c->principal.user_id : NULL,
                              c->authed ? c->principal.company_id : NULL, c->client, NULL,
                              json_pack("{s:s,s:i,s:s}", "limit", mp_api_limit_name(which),
                                        "retry_after", wait, "method", c->method));
        char what[400];
        if (which == MP_LIMIT_API)
                /* Polling tasks is what meets this limit first: say what to do instead. */
                snprintf(what, sizeof(what),
                         "too many requests (api limit); retry in %d s. To follow tasks, do not "
                         "poll: GET /api/v1/tasks/{id}?wait=60 (or POST .../execute?wait=60) "
                         "answers the moment the task ends, one request per task (server-sent "
                         "events are coming); see docs/api.md#following-tasks", wait);
        else
                snprintf(what, sizeof(what), "too many requests (%s limit); retry in %d s",
                         mp_api_limit_name(which), wait);
        return mp_api_send_throttled(c->conn, wait, what);
}

static void audit_denied(struct mp_route_ctx *c) {
        mp_core_audit(c->api->core, "access_denied", c->authed ? c->principal.user_id : NULL,
                      c->authed ? c->principal.company_id : NULL, c->client, NULL,
                      json_pack("{s:i,s:s,s:s,s:s}", "status", c->err.status, "code", c->err.code,
                                "method", c->method, "route", c->route ? c->route->pattern : ""));
}

/* Authentication failed: refusals count against the client's address, so guessing
 * tokens (or flooding the audit log with 401s) is as bounded as using the API. */
static enum MHD_Result denied(struct mp_route_ctx *c) {
        bool first;
        int wait = mp_api_limit(c->api->guard, MP_LIMIT_ANON, c->client, &first);
        if (wait)
                return throttled(c, MP_LIMIT_ANON, wait, first);
        audit_denied(c);
        return mp_route_problem(c);
}

/* After authentication: the user's rate limit, then what the route needs of the token.
 * True when it answered (*r set). */
static bool admit(struct mp_route_ctx *c, enum MHD_Result *r) {
        char key[MP_ID_LEN + 8];
        unsigned need = c->route->need;
        bool first;
        int wait;

        c->authed = true;
        snprintf(c->principal.client, sizeof(c->principal.client), "%s", c->client);
        snprintf(key, sizeof(key), "user:%s", c->principal.user_id);
        if ((wait = mp_api_limit(c->api->guard, MP_LIMIT_API, key, &first))) {
                *r = throttled(c, MP_LIMIT_API, wait, first);
                return true;
        }
        if (need == MP_NEED_SIGNED_IN)
                return false;
        /* Fail closed: anything but one known scope the token holds is a refusal. */
        if (!mp_core_scope_name(need) || !(c->principal.scopes & need)) {
                mp_error_set(&c->err, EACCES, 403, "insufficient_scope",
                             "this token lacks the scope \"%s\" that %s %s needs",
                             mp_core_scope_name(need) ?: "?", c->method, c->route->pattern);
                mp_error_add_field(&c->err, "scopes", "missing %s", mp_core_scope_name(need) ?: "?");
                *r = mp_route_problem(c);
                return true;
        }
        return false;
}

/* A function's audience changed: published (to its company or everyone) or back to
 * private. before: the visibility before the change (NULL for a new function). */
static void audit_visibility(struct mp_route_ctx *c, const char *before, json_t *fn) {
        const char *after = json_string_value(json_object_get(fn, "visibility"));
        bool now_private = after && !strcmp(after, "private");

        if (!after || (before && !strcmp(before, after)) || (!before && now_private))
                return;
        mp_core_audit_by(c->api->core, &c->principal, now_private ? "function_unpublished" : "function_published",
                         json_string_value(json_object_get(fn, "id")),
                         json_pack("{s:s,s:s}", "from", before ? before : "new", "to", after));
}

static int body_json(struct mp_route_ctx *c, bool optional, json_t **ret) {
        return mp_api_body_json(c->conn, c->req, optional, ret, &c->err);
}

int mp_route_body_object(struct mp_route_ctx *c, json_t **ret) {
        return mp_api_body_object(c->conn, c->req, ret, &c->err);
}

enum MHD_Result mp_route_send_owned(struct mp_route_ctx *c, unsigned status, json_t *j) {
        enum MHD_Result r = mp_api_send_json(c->conn, status, j);
        json_decref(j);
        return r;
}

/* --- public routes: probes, documents, the dashboard --- */

static enum MHD_Result get_healthz(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *ok = json_pack("{s:s}", "status", "ok");
        return mp_api_send_json(c->conn, 200, ok);
}

/* Ready: the store, the queue and the object store answer (slow work: a backend that is
 * down may take its connect timeout to say so). */
static enum MHD_Result get_readyz(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_ready(c->api->core, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result get_metrics(struct mp_route_ctx *c) {
        return mp_api_metrics_answer(c->api->metrics, c->api->core, c->conn, c->client, c->method);
}

static enum MHD_Result get_index(struct mp_route_ctx *c) {
        return mp_api_web_serve(c);
}

static enum MHD_Result get_openapi(struct mp_route_ctx *c) {
        return mp_api_send_bytes(c->conn, 200, "application/json", mp_openapi_json, mp_openapi_json_len);
}

/* --- OpenID login: cookies and redirects --- */

/* A response with extra headers (name, value, ..., NULL): Set-Cookie, Location. */
static enum MHD_Result send_with_headers(struct mp_route_ctx *c, unsigned status, json_t *body,
                                         const char *const *hdrs) {
        struct MHD_Response *resp;
        char *text = body ? mp_json_dumps(body, JSON_COMPACT) : NULL;
        enum MHD_Result r;

        if (body && !text)
                return MHD_NO;
        resp = text ? MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE)
                    : MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp) {
                free(text);
                return MHD_NO;
        }
        if (text)
                MHD_add_response_header(resp, "Content-Type", "application/json");
        mp_api_add_headers(c->conn, resp, NULL);
        for (; hdrs && hdrs[0]; hdrs += 2)
                MHD_add_response_header(resp, hdrs[0], hdrs[1]);
        r = MHD_queue_response(c->conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

/* Cookies get Secure when the request came over TLS (a TLS proxy says so with
 * X-Forwarded-Proto: the flag only ever tightens, so trusting the header is harmless). */
static const char *secure_attr(struct mp_route_ctx *c) {
        const char *p = mp_route_header(c, "X-Forwarded-Proto");
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_PROTOCOL);
        return (p && !strcasecmp(p, "https")) || (ci && ci->tls_session) ? "; Secure" : "";
}

/* Our callback URL: configured (what is registered at the provider), or this request's
 * scheme and Host. A forged Host can only name a URL the provider will refuse. */
static int callback_uri(struct mp_route_ctx *c, char *buf, size_t size) {
        const char *host = mp_route_header(c, "Host"), *proto = mp_route_header(c, "X-Forwarded-Proto");

        if (c->api->core->config->oidc_redirect_uri) {
                snprintf(buf, size, "%s", c->api->core->config->oidc_redirect_uri);
                return 0;
        }
        if (!host || !*host || strlen(host) > 255 || strspn(host, "abcdefghijklmnopqrstuvwxyz"
                                                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != strlen(host))
                return mp_error_set(&c->err, EINVAL, 400, "bad_request",
                                    "the Host header is missing or not a host name; set --oidc-redirect-uri");
        snprintf(buf, size, "%s://%s/api/v1/auth/oidc/callback",
                 proto && !strcasecmp(proto, "https") ? "https" : "http", host);
        return 0;
}

static enum MHD_Result oidc_login_started(struct mp_route_ctx *c) {
        _cleanup_free_ char *url = NULL;
        char redirect_uri[MP_OIDC_MAX_URL_LEN + 1], binding[MP_OIDC_RANDOM_LEN + 1], set[256];

        if (callback_uri(c, redirect_uri, sizeof(redirect_uri)) < 0 ||
            mp_core_oidc_begin(c->api->core, redirect_uri, mp_route_query(c, "redirect"), mp_route_query(c, "cli_redirect"),
                               mp_route_query(c, "cli_state"), mp_route_query(c, "cli_challenge"), &url, binding,
                               sizeof(binding), &c->err) < 0)
                return mp_route_problem(c);
        /* The login is bound to this browser by a cookie only it holds; SameSite=Lax
         * still sends it on the provider's top-level redirect back to us. */
        snprintf(set, sizeof(set), "mecapy_oidc=%s; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=%d%s",
                 binding, MP_OIDC_LOGIN_TTL_S, secure_attr(c));
        /* ?mode=json: a dashboard script navigates itself (same cookie, same login). */
        if (mp_route_query(c, "mode") && !strcmp(mp_route_query(c, "mode"), "json")) {
                _cleanup_json_ json_t *out = json_pack("{s:s}", "authorization_url", url);
                const char *hdrs[] = { "Set-Cookie", set, NULL };
                return send_with_headers(c, 200, out, hdrs);
        }
        const char *hdrs[] = { "Location", url, "Set-Cookie", set, NULL };
        return send_with_headers(c, 302, NULL, hdrs);
}

/* An OpenID start costs a slot of the pending logins: counted per address only when it
 * holds one (the table of those is shared by all). */
static enum MHD_Result oidc_login(struct mp_route_ctx *c) {
        char key[96];
        enum MHD_Result r;
        int wait;

        snprintf(key, sizeof(key), "login:%s", c->client);
        if ((wait = mp_api_limit_peek(c->api->guard, MP_LIMIT_OIDC_START, key)))
                return throttled(c, MP_LIMIT_OIDC_START, wait, true);
        r = oidc_login_started(c);
        if (!c->err.status)
                mp_api_limit(c->api->guard, MP_LIMIT_OIDC_START, key, NULL);
        return r;
}

static enum MHD_Result oidc_callback(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *location = NULL;
        char session[256], csrf[256], clear[160], token_csrf[MP_OIDC_RANDOM_LEN + 1];
        const char *secure = secure_attr(c);

        if (mp_route_query(c, "error")) {
                mp_error_set(&c->err, EACCES, 401, "unauthorized", "the OpenID provider refused the login: %.100s",
                             mp_route_query(c, "error"));
                return mp_route_problem(c);
        }
        if (mp_core_oidc_callback(c->api->core, mp_route_query(c, "state"), cookie(c, "mecapy_oidc"), mp_route_query(c, "code"),
                                  &out, &location, &c->err) < 0)
                return mp_route_problem(c);
        snprintf(clear, sizeof(clear), "mecapy_oidc=; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=0%s",
                 secure);
        if (!out) { /* a CLI's login: back to its loopback listener with a one-time code */
                const char *hdrs[] = { "Location", location, "Set-Cookie", clear, NULL };
                return send_with_headers(c, 302, NULL, hdrs);
        }
        mp_oidc_random(token_csrf);
        snprintf(session, sizeof(session), "mecapy_session=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s",
                 json_string_value(json_object_get(out, "token")), MP_SESSION_TTL_S, secure);
        snprintf(csrf, sizeof(csrf), "mecapy_csrf=%s; Path=/; SameSite=Lax; Max-Age=%d%s", token_csrf,
                 MP_SESSION_TTL_S, secure);
        json_object_set_new(out, "csrf_token", json_string(token_csrf));
        const char *hdrs[] = { "Set-Cookie", session, "Set-Cookie", csrf, "Set-Cookie", clear,
                               location ? "Location" : NULL, location, NULL };
        return send_with_headers(c, location ? 302 : 200, out, hdrs);
}

/* How one signs in here (the dashboard's sign-in page asks before it draws). */
static enum MHD_Result auth_providers(struct mp_route_ctx *c) {
        const struct mp_config *cf = c->api->core->config;
        _cleanup_json_ json_t *out = json_pack("{s:b,s:b,s:b}", "local", cf->auth_local, "oidc",
                                               c->api->core->oidc != NULL && cf->oidc_client_id != NULL,
                                               "signup", cf->allow_signup);
        return mp_api_send_json(c->conn, 200, out);
}

static enum MHD_Result oidc_cli_exchange(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 || mp_core_oidc_cli_exchange(c->api->core, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* Answer 200 with a login's session (out, owned) and set it as the browser's cookies:
 * mecapy_session (HttpOnly) and mecapy_csrf, whose value the answer also carries as
 * csrf_token (the X-CSRF-Token of the cookie rule). */
static enum MHD_Result session_cookies(struct mp_route_ctx *c, json_t *out) {
        _cleanup_json_ json_t *owned = out;
        char session[256], csrf[256], token_csrf[MP_OIDC_RANDOM_LEN + 1];
        const char *secure = secure_attr(c);

        mp_oidc_random(token_csrf);
        snprintf(session, sizeof(session), "mecapy_session=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%d%s",
                 json_string_value(json_object_get(owned, "token")), MP_SESSION_TTL_S, secure);
        snprintf(csrf, sizeof(csrf), "mecapy_csrf=%s; Path=/; SameSite=Lax; Max-Age=%d%s", token_csrf,
                 MP_SESSION_TTL_S, secure);
        json_object_set_new(owned, "csrf_token", json_string(token_csrf));
        json_object_del(owned, "token"); /* the script needs it not: the cookie carries it */
        const char *hdrs[] = { "Set-Cookie", session, "Set-Cookie", csrf, NULL };
        return send_with_headers(c, 200, owned, hdrs);
}

/* --- accounts --- */

/* Password login, with two limits: per client address (MP_ROUTE_AUTH_LIMIT, before
 * anything) and per email for failures, so that a guesser spread over many addresses
 * still gets MP_LOGIN_FAILS_PER_HOUR tries at one account. The email's bucket is looked
 * at before the password is checked (no argon2 for a locked email) and taken only on
 * a failure; the answer to a locked email is the same 429 whatever the password. */
static enum MHD_Result auth_login(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL, *email;
        char key[MP_MAX_EMAIL_LEN + 8] = "";
        int wait;

        if (mp_route_body_object(c, &body) < 0)
                return mp_route_problem(c);
        email = json_object_get(body, "email");
        if (json_is_string(email) && json_string_length(email) <= MP_MAX_EMAIL_LEN) {
                size_t n = snprintf(key, sizeof(key), "email:%s", json_string_value(email)) > 0 ? strlen(key) : 0;
                for (size_t i = 6; i < n; i++)
                        key[i] = (char) tolower((unsigned char) key[i]);
        }
        if (key[0] && (wait = mp_api_limit_peek(c->api->guard, MP_LIMIT_LOGIN_FAILS, key))) {
                mp_core_audit(c->api->core, "rate_limited", NULL, NULL, c->client, NULL,
                              json_pack("{s:s,s:i,s:s}", "limit", mp_api_limit_name(MP_LIMIT_LOGIN_FAILS),
                                        "retry_after", wait, "email", key + 6));
                return mp_api_send_throttled(c->conn, wait, "too many failed logins for this email; retry later");
        }
        if (mp_core_login_from(c->api->core, body, c->client, &out, &c->err) < 0) {
                if (c->err.status == 401 && key[0])
                        mp_api_limit(c->api->guard, MP_LIMIT_LOGIN_FAILS, key, NULL);
                return mp_route_problem(c);
        }
        /* ?cookie=true: a browser's login (the dashboard), the same cookies as an OpenID
         * login's, so that its scripts never hold the session token. */
        if (mp_route_query(c, "cookie") && !strcmp(mp_route_query(c, "cookie"), "true"))
                return session_cookies(c, out);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result auth_signup(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (!c->api->core->config->allow_signup)
                return mp_api_send_error(c->conn, 404, "not_found", "no route auth/signup");
        if (body_json(c, false, &body) < 0 || mp_core_signup(c->api->core, body, c->client, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

static enum MHD_Result auth_logout(struct mp_route_ctx *c) {
        char s1[128], s2[128];

        if (mp_core_logout(c->api->core, &c->principal, &c->err) < 0)
                return mp_route_problem(c);
        /* The session is revoked; the browser's cookies go too. */
        snprintf(s1, sizeof(s1), "mecapy_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0%s", secure_attr(c));
        snprintf(s2, sizeof(s2), "mecapy_csrf=; Path=/; SameSite=Lax; Max-Age=0%s", secure_attr(c));
        const char *hdrs[] = { "Set-Cookie", s1, "Set-Cookie", s2, NULL };
        return send_with_headers(c, 204, NULL, hdrs);
}

static enum MHD_Result get_me(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_me(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* POST /me/password: a wrong current password counts as a failed login of the
 * account's email, so a stolen session cannot be used to guess it at the API's rate. */
static enum MHD_Result change_password(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        char key[MP_MAX_EMAIL_LEN + 8];
        int wait, r;

        snprintf(key, sizeof(key), "email:%s", c->principal.email);
        if ((wait = mp_api_limit_peek(c->api->guard, MP_LIMIT_LOGIN_FAILS, key)))
                return throttled(c, MP_LIMIT_LOGIN_FAILS, wait, false);
        if (body_json(c, false, &body) < 0)
                return mp_route_problem(c);
        r = mp_core_password_change(c->api->core, &c->principal, body, &c->err);
        if (r == -EACCES)
                mp_api_limit(c->api->guard, MP_LIMIT_LOGIN_FAILS, key, NULL);
        if (r < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

static enum MHD_Result token_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_token_list(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result token_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;
        if (body_json(c, false, &body) < 0 ||
            mp_core_token_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

static enum MHD_Result token_revoke(struct mp_route_ctx *c) {
        if (mp_core_token_revoke(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

static enum MHD_Result audit_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_audit_list(c->api->core, &c->principal, mp_route_query(c, "kind"), mp_route_query(c, "actor"),
                               mp_route_query(c, "since"), mp_route_query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* Any signed-in user: the list holds hosts and counts, no tenant data. */
static enum MHD_Result workers_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_workers(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* --- functions --- */

static enum MHD_Result function_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_function_list(c->api->core, &c->principal, mp_route_query(c, "name"), mp_route_query(c, "cursor"),
                                  (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result function_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (body_json(c, false, &body) < 0 ||
            mp_core_function_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        audit_visibility(c, NULL, out);
        return mp_route_send_owned(c, 201, out);
}

static enum MHD_Result function_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long version;

        if (mp_route_query_int(c, "version", 1, 1L << 30, 0, &version) < 0 ||
            mp_core_function_get(c->api->core, &c->principal, c->param[0], (int) version, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* PUT and PATCH: both merge the fields given (docs/api.md). */
static enum MHD_Result function_update(struct mp_route_ctx *c) {
        struct mp_core *core = c->api->core;
        _cleanup_json_ json_t *body = NULL, *before = NULL;
        const char *id = c->param[0];
        json_t *out = NULL;

        if (body_json(c, false, &body) < 0)
                return mp_route_problem(c);
        /* The audience before, to audit a change of it (one read, only when the body
         * names a visibility). */
        if (json_object_get(body, "visibility") &&
            mp_core_function_get(core, &c->principal, id, 0, &before, &c->err) < 0)
                return mp_route_problem(c);
        if (mp_core_function_update(core, &c->principal, id, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        if (before)
                audit_visibility(c, json_string_value(json_object_get(before, "visibility")), out);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result function_delete(struct mp_route_ctx *c) {
        if (mp_core_function_delete(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

static enum MHD_Result function_versions(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_function_versions(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

int mp_route_cache_refresh(struct mp_route_ctx *c, bool *ret) {
        const char *v = mp_route_query(c, "cache");
        *ret = v && !strcmp(v, "refresh");
        if (v && !*ret) {
                mp_error_add_field(&c->err, "cache", "must be \"refresh\"");
                return mp_error_set(&c->err, EINVAL, 400, "bad_request",
                                    "query parameter cache must be \"refresh\" (compute again), not \"%.32s\"", v);
        }
        return 0;
}

static enum MHD_Result function_execute(struct mp_route_ctx *c) {
        struct mp_core *core = c->api->core;
        _cleanup_json_ json_t *body = NULL, *task = NULL;
        long version = 0, wait;
        bool refresh = false;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0 ||
            mp_route_query_int(c, "version", 1, 1L << 30, 0, &version) < 0 || body_json(c, false, &body) < 0 ||
            mp_route_cache_refresh(c, &refresh) < 0)
                return mp_route_problem(c);
        /* ?wait=S while the version's environment is being built (409 EnvironmentNotReady):
         * on a slow-work thread the call is made again every 200 ms until it is accepted
         * or S seconds pass; what is left of S then waits for the result. */
        int64_t start = mp_mono_ms();
        while (mp_core_execute_cache(core, &c->principal, c->param[0], (int) version, body,
                                     mp_route_header(c, "Idempotency-Key"), refresh, &task, &c->err) < 0) {
                if (wait > 0 && !c->req->offloaded && mp_api_env_pending(c)) {
                        mp_error_clear(&c->err);
                        return mp_api_offload(c->api, c->req, function_execute);
                }
                if (!c->req->offloaded || !mp_api_env_wait_more(c, start, wait))
                        return mp_route_problem(c);
        }
        if (wait > 0)
                wait = MP_MAX(1, wait - (long) ((mp_mono_ms() - start) / 1000));
        bool ended = mp_core_status_ended(json_string_value(json_object_get(task, "status")));
        if (wait == 0 || ended)
                return mp_api_send_task(c->conn, ended ? 200 : 202, task);
        return mp_api_wait_task(c->api, c->conn, c->req, &c->principal,
                                json_string_value(json_object_get(task, "id")), (int) wait, 200, 202);
}

/* --- tasks --- */

static const char *content_type_for(const char *name) {
        static const struct { const char *ext, *type; } types[] = {
                { ".csv", "text/csv; charset=utf-8" }, { ".txt", "text/plain; charset=utf-8" },
                { ".json", "application/json" }, { ".png", "image/png" }, { ".svg", "image/svg+xml" },
                { ".pdf", "application/pdf" }, { ".html", "text/plain; charset=utf-8" },
        };
        const char *dot = strrchr(name, '.');
        for (size_t i = 0; dot && i < ELEMENTSOF(types); i++)
                if (!strcasecmp(dot, types[i].ext))
                        return types[i].type;
        return "application/octet-stream";
}

static enum MHD_Result task_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_task_list(c->api->core, &c->principal, mp_route_query(c, "function_id"), mp_route_query(c, "status"),
                              mp_route_query(c, "since"), mp_route_query(c, "until"),
                              mp_route_query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

static enum MHD_Result task_get(struct mp_route_ctx *c) {
        const char *result = mp_route_query(c, "result");
        long wait;

        if (mp_api_wants_xlsx(c)) /* a tabular result as a spreadsheet (api-sheets.c) */
                return mp_api_task_xlsx(c);

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                return mp_route_problem(c);
        /* ?result=omit: the task without its result (its size instead), so that a page
         * can decide before loading a large one. */
        if (result && strcmp(result, "omit")) {
                mp_error_set(&c->err, EINVAL, 400, "bad_request", "query parameter result must be \"omit\", not \"%.32s\"",
                             result);
                mp_error_add_field(&c->err, "result", "must be \"omit\"");
                return mp_route_problem(c);
        }
        c->req->omit_result = result != NULL;
        return mp_api_wait_task(c->api, c->conn, c->req, &c->principal, c->param[0], (int) wait, 200, 200);
}

static enum MHD_Result task_logs(struct mp_route_ctx *c) {
        _cleanup_free_ char *logs = NULL;
        size_t len;

        if (mp_core_task_logs(c->api->core, &c->principal, c->param[0], &logs, &len, &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_bytes(c->conn, 200, "text/plain; charset=utf-8", logs, len);
}

static enum MHD_Result task_cancel(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_task_cancel(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        _cleanup_json_ json_t *task = out;
        return mp_api_send_task(c->conn, 200, task);
}

static enum MHD_Result task_artifact(struct mp_route_ctx *c) {
        const char *name = c->param[1], *dot = strrchr(name, '.');
        _cleanup_free_ char *data = NULL;
        size_t len;

        if (mp_core_task_artifact(c->api->core, &c->principal, c->param[0], name, &data, &len, &c->err) < 0)
                return mp_route_problem(c);
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, TAKE_PTR(data), MHD_RESPMEM_MUST_FREE);
        char disp[512];
        snprintf(disp, sizeof(disp), "attachment; filename=\"artifact%s\"",
                 dot && strlen(dot) < 16 && !strpbrk(dot, "\"\\\r\n") ? dot : "");
        MHD_add_response_header(resp, "Content-Type", content_type_for(name));
        MHD_add_response_header(resp, "Content-Disposition", disp);
        mp_api_add_headers(c->conn, resp, MP_CSP_ARTIFACT);
        enum MHD_Result r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

/* --- the table --- */

/* need must be a constant other than MP_NEED_UNSET: an entry without one does not compile
 * (a negative array size), and test-api.c checks that it is one known value. */
#define MP_ROUTE(m, pattern, need, flags, handler) \
        { m, pattern, (unsigned) (need) + 0 * sizeof(char[(unsigned) (need) != 0u ? 1 : -1]), flags, handler }

#define PUBLIC MP_NEED_PUBLIC
#define SIGNED_IN MP_NEED_SIGNED_IN
#define SLOW MP_ROUTE_SLOW

/* Scopes (docs/api.md#scopes): reading or writing functions, reading tasks, cancelling
 * them (tasks:write), executing, and "tokens": the account's administration (tokens,
 * password, audit log, the company's members). */
const struct mp_api_route mp_api_routes[] = {
        MP_ROUTE("GET", "/healthz", PUBLIC, 0, get_healthz),
        MP_ROUTE("GET", "/readyz", PUBLIC, SLOW, get_readyz),
        MP_ROUTE("GET", "/metrics", PUBLIC, 0, get_metrics), /* its own access list */
        MP_ROUTE("GET", "/", PUBLIC, 0, get_index),
        MP_ROUTE("GET", "/index.html", PUBLIC, 0, get_index),
        MP_ROUTE("GET", "/api/v1/openapi.json", PUBLIC, 0, get_openapi),

        MP_ROUTE("POST", "/api/v1/auth/login", PUBLIC, SLOW | MP_ROUTE_AUTH_LIMIT, auth_login),
        MP_ROUTE("POST", "/api/v1/auth/signup", PUBLIC, SLOW | MP_ROUTE_AUTH_LIMIT, auth_signup),
        MP_ROUTE("POST", "/api/v1/auth/logout", SIGNED_IN, 0, auth_logout),
        MP_ROUTE("GET", "/api/v1/auth/providers", PUBLIC, 0, auth_providers),
        MP_ROUTE("GET", "/api/v1/auth/oidc/login", PUBLIC, SLOW, oidc_login),
        MP_ROUTE("GET", "/api/v1/auth/oidc/callback", PUBLIC, SLOW, oidc_callback),
        MP_ROUTE("POST", "/api/v1/auth/oidc/cli-exchange", PUBLIC, SLOW | MP_ROUTE_AUTH_LIMIT, oidc_cli_exchange),

        MP_ROUTE("GET", "/api/v1/me", SIGNED_IN, 0, get_me),
        MP_ROUTE("POST", "/api/v1/me/password", MP_SCOPE_TOKENS, SLOW, change_password),
        MP_ROUTE("GET", "/api/v1/tokens", MP_SCOPE_TOKENS, 0, token_list),
        MP_ROUTE("POST", "/api/v1/tokens", MP_SCOPE_TOKENS, 0, token_create),
        MP_ROUTE("DELETE", "/api/v1/tokens/{id}", MP_SCOPE_TOKENS, 0, token_revoke),
        MP_ROUTE("GET", "/api/v1/audit", MP_SCOPE_TOKENS, 0, audit_list),
        MP_ROUTE("GET", "/api/v1/workers", SIGNED_IN, 0, workers_list),

        MP_ROUTE("GET", "/api/v1/functions", MP_SCOPE_FUNCTIONS_READ, 0, function_list),
        MP_ROUTE("POST", "/api/v1/functions", MP_SCOPE_FUNCTIONS_WRITE, SLOW, function_create),
        MP_ROUTE("GET", "/api/v1/functions/{id}", MP_SCOPE_FUNCTIONS_READ, 0, function_get),
        MP_ROUTE("PUT", "/api/v1/functions/{id}", MP_SCOPE_FUNCTIONS_WRITE, SLOW, function_update),
        MP_ROUTE("PATCH", "/api/v1/functions/{id}", MP_SCOPE_FUNCTIONS_WRITE, SLOW, function_update),
        MP_ROUTE("DELETE", "/api/v1/functions/{id}", MP_SCOPE_FUNCTIONS_WRITE, 0, function_delete),
        MP_ROUTE("GET", "/api/v1/functions/{id}/versions", MP_SCOPE_FUNCTIONS_READ, 0, function_versions),
        MP_ROUTE("POST", "/api/v1/functions/{id}/execute", MP_SCOPE_EXECUTE, 0, function_execute),
        MP_ROUTE("GET", "/api/v1/catalogue", MP_SCOPE_FUNCTIONS_READ, 0, mp_api_catalogue),

        MP_ROUTE("GET", "/api/v1/tasks", MP_SCOPE_TASKS_READ, 0, task_list),
        MP_ROUTE("GET", "/api/v1/tasks/{id}", MP_SCOPE_TASKS_READ, 0, task_get),
        MP_ROUTE("GET", "/api/v1/tasks/{id}/logs", MP_SCOPE_TASKS_READ, 0, task_logs),
        MP_ROUTE("GET", "/api/v1/tasks/{id}/events", MP_SCOPE_TASKS_READ, 0, mp_api_task_events),
        MP_ROUTE("POST", "/api/v1/tasks/{id}/cancel", MP_SCOPE_TASKS_WRITE, 0, task_cancel),
        MP_ROUTE("GET", "/api/v1/tasks/{id}/artifacts/{name}", MP_SCOPE_TASKS_READ, MP_ROUTE_REST, task_artifact),
        /* Studies (docs/studies.md): making, extending, retrying and cancelling one runs
         * calls (execute); reading one reads tasks (tasks:read). */
        MP_ROUTE("GET", "/api/v1/studies", MP_SCOPE_TASKS_READ, 0, mp_api_study_list),
        MP_ROUTE("POST", "/api/v1/studies", MP_SCOPE_EXECUTE, SLOW, mp_api_study_create),
        MP_ROUTE("GET", "/api/v1/studies/{id}", MP_SCOPE_TASKS_READ, 0, mp_api_study_get),
        MP_ROUTE("GET", "/api/v1/studies/{id}/results", MP_SCOPE_TASKS_READ, 0, mp_api_study_results),
        MP_ROUTE("POST", "/api/v1/studies/{id}/points", MP_SCOPE_EXECUTE, SLOW, mp_api_study_extend),
        MP_ROUTE("POST", "/api/v1/studies/{id}/retry", MP_SCOPE_EXECUTE, SLOW, mp_api_study_retry),
        MP_ROUTE("POST", "/api/v1/studies/{id}/members", MP_SCOPE_EXECUTE, SLOW, mp_api_study_members),
        MP_ROUTE("POST", "/api/v1/studies/{id}/cancel", MP_SCOPE_EXECUTE, SLOW, mp_api_study_cancel),
        MP_ROUTE("GET", "/api/v1/studies/{id}/events", MP_SCOPE_TASKS_READ, 0, mp_api_study_events),

        /* Workflows (docs/workflows.md): definitions are read and written with the
         * functions' scopes, runs are started, retried and cancelled with "execute",
         * and read with "tasks:read". */
        MP_ROUTE("GET", "/api/v1/workflows", MP_SCOPE_FUNCTIONS_READ, 0, mp_api_workflow_list),
        MP_ROUTE("POST", "/api/v1/workflows", MP_SCOPE_FUNCTIONS_WRITE, 0, mp_api_workflow_create),
        MP_ROUTE("GET", "/api/v1/workflows/{id}", MP_SCOPE_FUNCTIONS_READ, 0, mp_api_workflow_get),
        MP_ROUTE("PUT", "/api/v1/workflows/{id}", MP_SCOPE_FUNCTIONS_WRITE, 0, mp_api_workflow_update),
        MP_ROUTE("DELETE", "/api/v1/workflows/{id}", MP_SCOPE_FUNCTIONS_WRITE, 0, mp_api_workflow_delete),
        MP_ROUTE("POST", "/api/v1/workflows/{id}/execute", MP_SCOPE_EXECUTE, 0, mp_api_workflow_execute),
        MP_ROUTE("GET", "/api/v1/workflow-runs", MP_SCOPE_TASKS_READ, 0, mp_api_workflow_run_list),
        MP_ROUTE("GET", "/api/v1/workflow-runs/{id}", MP_SCOPE_TASKS_READ, 0, mp_api_workflow_run_get),
        MP_ROUTE("POST", "/api/v1/workflow-runs/{id}/retry", MP_SCOPE_EXECUTE, 0, mp_api_workflow_run_retry),
        MP_ROUTE("POST", "/api/v1/workflow-runs/{id}/cancel", MP_SCOPE_EXECUTE, 0, mp_api_workflow_run_cancel),
        MP_ROUTE("GET", "/api/v1/workflow-runs/{id}/events", MP_SCOPE_TASKS_READ, 0, mp_api_run_events),

        /* The company: what it is, for any member; its members, for its admins (the
         * role rule is core's; the scope is the administration's). */
        MP_ROUTE("GET", "/api/v1/company", SIGNED_IN, 0, mp_api_company_get),
        MP_ROUTE("GET", "/api/v1/company/members", MP_SCOPE_TOKENS, 0, mp_api_company_members),
        MP_ROUTE("POST", "/api/v1/company/members", MP_SCOPE_TOKENS, SLOW, mp_api_company_member_create),
        MP_ROUTE("PUT", "/api/v1/company/members/{member_id}", MP_SCOPE_TOKENS, 0, mp_api_company_member_update),
        MP_ROUTE("PATCH", "/api/v1/company/members/{member_id}", MP_SCOPE_TOKENS, 0, mp_api_company_member_update),
        MP_ROUTE("DELETE", "/api/v1/company/members/{member_id}", MP_SCOPE_TOKENS, 0, mp_api_company_member_remove),
        MP_ROUTE("GET", "/api/v1/company/members/{member_id}/tokens", MP_SCOPE_TOKENS, 0, mp_api_company_member_tokens),
        MP_ROUTE("DELETE", "/api/v1/company/members/{member_id}/tokens/{id}", MP_SCOPE_TOKENS, 0,
                 mp_api_company_member_token_revoke),
        MP_ROUTE("GET", "/api/v1/company/members/{member_id}/tasks", MP_SCOPE_TOKENS, 0, mp_api_company_member_tasks),
        /* Deletion, retention and export (docs/api.md#deleting-a-task): deleting a task is
         * tasks:write, as cancelling it; the retention is the company's administration
         * (read by any member); the export holds code and results alike: "tokens", the
         * account's own administration. */
        MP_ROUTE("DELETE", "/api/v1/tasks/{id}", MP_SCOPE_TASKS_WRITE, 0, mp_api_task_delete),
        MP_ROUTE("GET", "/api/v1/company/retention", SIGNED_IN, 0, mp_api_retention_get),
        MP_ROUTE("PUT", "/api/v1/company/retention", MP_SCOPE_TOKENS, 0, mp_api_retention_set),
        MP_ROUTE("GET", "/api/v1/me/export", MP_SCOPE_TOKENS, SLOW, mp_api_export),

        /* Usage, quotas and the operators' figures (docs/api.md#usage): usage is read
         * with tasks:read; quotas are the company's administration ("tokens"); the
         * figures are the operators' (core's rule). */
        MP_ROUTE("GET", "/api/v1/usage", MP_SCOPE_TASKS_READ, 0, mp_api_usage),
        MP_ROUTE("GET", "/api/v1/company/quotas", MP_SCOPE_TOKENS, 0, mp_api_quotas_get),
        MP_ROUTE("PUT", "/api/v1/company/quotas", MP_SCOPE_TOKENS, 0, mp_api_quotas_put),
        MP_ROUTE("GET", "/api/v1/admin/stats", MP_SCOPE_TOKENS, SLOW, mp_api_admin_stats),

        /* Review of function versions (docs/identity.md#review): a step changes the
         * function's record (functions:write); the company's settings are its
         * administration (read by any member). */
        MP_ROUTE("POST", "/api/v1/functions/{id}/versions/{version}/review", MP_SCOPE_FUNCTIONS_WRITE, 0,
                 mp_api_review_submit),
        MP_ROUTE("POST", "/api/v1/functions/{id}/versions/{version}/approve", MP_SCOPE_FUNCTIONS_WRITE, 0,
                 mp_api_review_approve),
        MP_ROUTE("POST", "/api/v1/functions/{id}/versions/{version}/reject", MP_SCOPE_FUNCTIONS_WRITE, 0,
                 mp_api_review_reject),
        MP_ROUTE("GET", "/api/v1/company/settings", SIGNED_IN, 0, mp_api_company_settings_get),
        MP_ROUTE("PUT", "/api/v1/company/settings", MP_SCOPE_TOKENS, 0, mp_api_company_settings_set),
        /* Calculation sheets, re-runs and comparisons (docs/sheets.md, docs/api.md#provenance):
         * reading a sheet or a comparison reads tasks; a re-run is a call (execute). A PDF
         * sheet runs weasyprint: slow work. */
        MP_ROUTE("GET", "/api/v1/tasks/{id}/sheet", MP_SCOPE_TASKS_READ, SLOW, mp_api_task_sheet),
        MP_ROUTE("GET", "/api/v1/workflow-runs/{id}/sheet", MP_SCOPE_TASKS_READ, SLOW, mp_api_run_sheet),
        MP_ROUTE("POST", "/api/v1/tasks/{id}/rerun", MP_SCOPE_EXECUTE, 0, mp_api_task_rerun),
        MP_ROUTE("GET", "/api/v1/tasks/{a}/diff/{b}", MP_SCOPE_TASKS_READ, 0, mp_api_task_diff),
        /* Environments of functions' requirements (docs/functions.md#requirements): read
         * with the functions' scope. */
        MP_ROUTE("GET", "/api/v1/environments/{id}", MP_SCOPE_FUNCTIONS_READ, 0, mp_api_environment_get),
        /* A study re-run on another version, and two studies compared (docs/api.md#studies):
         * both read every point of a study: slow work. */
        MP_ROUTE("POST", "/api/v1/studies/{id}/rerun", MP_SCOPE_EXECUTE, SLOW, mp_api_study_rerun),
        MP_ROUTE("GET", "/api/v1/studies/{a}/diff/{b}", MP_SCOPE_TASKS_READ, SLOW, mp_api_study_diff),
};
const size_t mp_api_n_routes = ELEMENTSOF(mp_api_routes);

const char *mp_api_need_name(unsigned need) {
        if (need == MP_NEED_PUBLIC)
                return "public";
        if (need == MP_NEED_SIGNED_IN)
                return "signed-in";
        return mp_core_scope_name(need); /* NULL for 0, several bits or an unknown one */
}

/* --- dispatch --- */

/* Split "/a/b/c" into segments, percent-decoded (MHD gives the path undecoded). -1 when
 * there are more than max. */
static int split_path(char *path, char **segs, int max) {
        int n = 0;
        char *save = NULL;
        for (char *s = strtok_r(path, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
                if (n == max)
                        return -1;
                MHD_http_unescape(s);
                segs[n++] = s;
        }
        return n;
}

/* Does the route's pattern match these segments? Fills c->param on a match. */
static bool pattern_match(struct mp_route_ctx *c, const struct mp_api_route *rt) {
        const char *p = rt->pattern;
        int i = 0, np = 0;

        while (*p == '/' && p[1]) {
                const char *s = p + 1, *e = strchrnul(s, '/');
                size_t n = (size_t) (e - s);
                if (i >= c->nseg)
                        return false;
                if (n >= 2 && s[0] == '{' && s[n - 1] == '}') {
                        if (np == MP_ROUTE_MAX_PARAMS)
                                return false;
                        if ((rt->flags & MP_ROUTE_REST) && !*e) {
                                /* The last one takes every segment left, each decoded; the
                                 * handler looks the joined name up, never opens it. */
                                size_t off = 0;
                                for (c->rest[0] = 0; i < c->nseg; i++)
                                        off += (size_t) snprintf(c->rest + off, sizeof(c->rest) - off, "%s%s",
                                                                 off ? "/" : "", c->seg[i]);
                                c->param[np++] = c->rest;
                                break;
                        }
                        c->param[np++] = c->seg[i];
                } else if (strlen(c->seg[i]) != n || strncmp(c->seg[i], s, n))
                        return false;
                i++;
                p = e;
        }
        if (i != c->nseg)
                return false;
        c->nparam = np;
        return true;
}

/* Authenticate (unless public), admit, call the handler, audit a refusal. On the HTTP
 * thread, or on a slow-work thread for MP_ROUTE_SLOW routes and provider tokens. */
static enum MHD_Result run_route(struct mp_route_ctx *c) {
        enum MHD_Result r;

        if (c->route->need == MP_NEED_PUBLIC)
                r = c->route->handler(c);
        else if (authenticate(c) < 0)
                r = denied(c);
        else if (admit(c, &r))
                ; /* throttled, or a scope the token lacks */
        else
                r = c->route->handler(c);
        /* A signed-in caller refused something: for the admins to see. */
        if (c->authed && c->err.status == 403)
                audit_denied(c);
        mp_error_clear(&c->err);
        return r;
}

static enum MHD_Result not_allowed(struct mp_route_ctx *c, const char *allow) {
        enum MHD_Result r;
        const char *hdrs[] = { "Allow", allow, NULL };

        mp_error_set(&c->err, EINVAL, 405, "method_not_allowed", "%s is not allowed here; use %s",
                     c->method, allow);
        r = mp_api_send_problem_headers(c->conn, &c->err, hdrs);
        mp_error_clear(&c->err);
        return r;
}

enum MHD_Result mp_api_route(struct mp_api *api, struct MHD_Connection *conn,
                             struct mp_request *req, const char *method, const char *url) {
        struct mp_route_ctx *c = &req->route;
        const char *want = !strcmp(method, "HEAD") ? "GET" : method;
        char allow[96] = "";
        enum MHD_Result r;

        memset(c, 0, sizeof(*c));
        c->api = api;
        c->conn = conn;
        c->req = req;
        c->method = method;
        /* A CORS preflight names no credentials: answered here, for any path. */
        if (IS("OPTIONS"))
                return mp_api_cors_preflight(conn);
        if (mp_api_check_sizes(conn, url, &c->err) < 0) {
                r = mp_route_problem(c);
                mp_error_clear(&c->err);
                return r;
        }
        mp_api_client_address(api->guard, conn, c->client, sizeof(c->client));
        snprintf(c->path, sizeof(c->path), "%s", url);
        c->nseg = split_path(c->path, c->seg, MP_ROUTE_MAX_SEGS);
        for (size_t i = 0; c->nseg >= 0 && i < mp_api_n_routes; i++) {
                const struct mp_api_route *rt = &mp_api_routes[i];
                if (!pattern_match(c, rt))
                        continue;
                if (!strcmp(rt->method, want)) {
                        c->route = rt;
                        break;
                }
                size_t n = strlen(allow);
                snprintf(allow + n, sizeof(allow) - n, "%s%s%s", n ? ", " : "", rt->method,
                         !strcmp(rt->method, "GET") ? ", HEAD" : "");
        }
        if (!c->route && allow[0])
                return not_allowed(c, allow);
        /* Outside /api/: the dashboard's files, and its addresses (/tasks/{id}). */
        if (!c->route && !strcmp(want, "GET") && (c->nseg <= 0 || strcmp(c->seg[0], "api")))
                return mp_api_web_serve(c);
        if (!c->route)
                return mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);
        if (c->route->need == MP_NEED_UNSET || !mp_api_need_name(c->route->need)) {
                /* Never in a built server (test-api.c); refused, not opened, if it were. */
                mp_err("route %s %s names no need: refused", c->route->method, c->route->pattern);
                return mp_api_send_error(conn, 500, "internal", "route without a need");
        }
        if (c->route->flags & MP_ROUTE_AUTH_LIMIT) {
                /* Per client address, each endpoint its own bucket, before any work. */
                char key[96];
                bool first;
                int wait;
                snprintf(key, sizeof(key), "%s:%s", c->seg[c->nseg - 1], c->client);
                if ((wait = mp_api_limit(api->guard, MP_LIMIT_AUTH, key, &first))) {
                        r = throttled(c, MP_LIMIT_AUTH, wait, first);
                        mp_error_clear(&c->err);
                        return r;
                }
        }
        if ((c->route->flags & MP_ROUTE_SLOW) ||
            (c->route->need != MP_NEED_PUBLIC && bearer_is_provider_token(c)))
                return mp_api_offload(api, req, run_route);
        return run_route(c);
}
