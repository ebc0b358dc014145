/* The routes: each handler parses, authenticates, calls core/ and renders. */
#include <ctype.h>
#include <string.h>

#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-tasks.h"
#include "api/api-company.h"
#include "auth/auth.h"
#include "base/limits.h"
#include "base/log.h"

extern const char mp_openapi_json[];
extern const size_t mp_openapi_json_len;
extern const char mp_index_html[];
extern const size_t mp_index_html_len;

#define MAX_SEGS 8

struct route_ctx {
        struct mp_api *api;
        struct MHD_Connection *conn;
        struct mp_request *req;
        const char *method;
        char *seg[MAX_SEGS]; /* path segments after /api/v1 */
        int nseg;
        struct mp_principal principal;
        struct mp_error err;
        char client[48]; /* the client's address (api-guard.c) */
        bool authed;     /* principal is set */
};

static const char *query(struct route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static const char *header(struct route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, name);
}

/* An integer query parameter; -EINVAL with a 400 in c->err when malformed. */
static int query_int(struct route_ctx *c, const char *name, long min, long max, long def, long *ret) {
        const char *v = query(c, name);
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

static enum MHD_Result problem(struct route_ctx *c) {
        return mp_api_send_problem(c->conn, &c->err);
}

#define IS(m) (!strcmp(c->method, m))

static const char *cookie(struct route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_COOKIE_KIND, name);
}

/* A browser sends cookies with requests that other sites make it send (CSRF). So a
 * session cookie authenticates a GET or HEAD (which change nothing) on its own, and
 * anything else only with an X-CSRF-Token header equal to the mecapy_csrf cookie: a
 * value another site can neither read nor set (double submit; docs/api.md). */
static int cookie_session(struct route_ctx *c, const char *session) {
        const char *csrf = cookie(c, "mecapy_csrf"), *sent = header(c, "X-CSRF-Token");

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

static int authenticate(struct route_ctx *c) {
        const char *h = header(c, "Authorization");
        if (!h && cookie(c, "mecapy_session"))
                return cookie_session(c, cookie(c, "mecapy_session"));
        if (!h || strncasecmp(h, "Bearer ", 7))
                return mp_error_set(&c->err, EACCES, 401, "unauthorized",
                                    "this route needs an Authorization: Bearer <token> header "
                                    "(get a token from POST /api/v1/auth/login)");
        return mp_core_authenticate(c->api->core, h + 7, &c->principal, &c->err);
}

/* --- abuse limits, scopes, and the audit of refusals (docs/identity.md) --- */

/* 429 with Retry-After; the first refusal of an episode goes to the audit log (one row
 * per episode, not per request: a flood must not become a flood of writes). */
static enum MHD_Result throttled(struct route_ctx *c, enum mp_limit which, int wait, bool first) {
        if (first)
                mp_core_audit(c->api->core, "rate_limited", c->authed ? c->principal.user_id : NULL,
                              c->authed ? c->principal.company_id : NULL, c->client, NULL,
                              json_pack("{s:s,s:i,s:s}", "limit", mp_api_limit_name(which),
                                        "retry_after", wait, "method", c->method));
        char what[160];
        snprintf(what, sizeof(what), "too many requests (%s limit); retry in %d s",
                 mp_api_limit_name(which), wait);
        return mp_api_send_throttled(c->conn, wait, what);
}

static void audit_denied(struct route_ctx *c) {
        mp_core_audit(c->api->core, "access_denied", c->authed ? c->principal.user_id : NULL,
                      c->authed ? c->principal.company_id : NULL, c->client, NULL,
                      json_pack("{s:i,s:s,s:s,s:s}", "status", c->err.status, "code", c->err.code,
                                "method", c->method, "route", c->nseg > 0 ? c->seg[0] : ""));
}

/* Authentication failed: refusals count against the client's address, so guessing
 * tokens (or flooding the audit log with 401s) is as bounded as using the API. */
static enum MHD_Result denied(struct route_ctx *c) {
        bool first;
        int wait = mp_api_limit(c->api->guard, MP_LIMIT_ANON, c->client, &first);
        if (wait)
                return throttled(c, MP_LIMIT_ANON, wait, first);
        audit_denied(c);
        return problem(c);
}

/* The scope a route needs from an API token (0: none beyond being signed in). */
static unsigned required_scope(struct route_ctx *c) {
        const char *s0 = c->seg[0];
        if (!strcmp(s0, "functions")) {
                if (c->nseg == 3 && !strcmp(c->seg[2], "execute"))
                        return MP_SCOPE_EXECUTE;
                return IS("GET") || IS("HEAD") ? MP_SCOPE_FUNCTIONS_READ : MP_SCOPE_FUNCTIONS_WRITE;
        }
        if (!strcmp(s0, "tasks"))
                return IS("GET") || IS("HEAD") ? MP_SCOPE_TASKS_READ : MP_SCOPE_TASKS_WRITE;
        /* Tokens, the password and the audit log are the account's administration. */
        if (!strcmp(s0, "tokens") || !strcmp(s0, "audit") || (!strcmp(s0, "me") && c->nseg > 1))
                return MP_SCOPE_TOKENS;
        return 0;
}

/* After authentication: the user's rate limit, then the token's scopes. True when it
 * answered (*r set). */
static bool admit(struct route_ctx *c, enum MHD_Result *r) {
        char key[MP_ID_LEN + 8];
        unsigned need;
        bool first;
        int wait;

        c->authed = true;
        snprintf(c->principal.client, sizeof(c->principal.client), "%s", c->client);
        snprintf(key, sizeof(key), "user:%s", c->principal.user_id);
        if ((wait = mp_api_limit(c->api->guard, MP_LIMIT_API, key, &first))) {
                *r = throttled(c, MP_LIMIT_API, wait, first);
                return true;
        }
        need = required_scope(c);
        if (need && !(c->principal.scopes & need)) {
                mp_error_set(&c->err, EACCES, 403, "insufficient_scope",
                             "this token lacks the scope \"%s\" that %s /api/v1/%s needs",
                             mp_core_scope_name(need), c->method, c->seg[0]);
                mp_error_add_field(&c->err, "scopes", "missing %s", mp_core_scope_name(need));
                *r = problem(c);
                return true;
        }
        return false;
}

/* A function's audience changed: published (to its company or everyone) or back to
 * private. before: the visibility before the change (NULL for a new function). */
static void audit_visibility(struct route_ctx *c, const char *before, json_t *fn) {
        const char *after = json_string_value(json_object_get(fn, "visibility"));
        bool now_private = after && !strcmp(after, "private");

        if (!after || (before && !strcmp(before, after)) || (!before && now_private))
                return;
        mp_core_audit_by(c->api->core, &c->principal, now_private ? "function_unpublished" : "function_published",
                         json_string_value(json_object_get(fn, "id")),
                         json_pack("{s:s,s:s}", "from", before ? before : "new", "to", after));
}

static int body_json(struct route_ctx *c, bool optional, json_t **ret) {
        return mp_api_body_json(c->conn, c->req, optional, ret, &c->err);
}

static enum MHD_Result method_not_allowed(struct route_ctx *c, const char *allowed) {
        mp_error_set(&c->err, EINVAL, 405, "method_not_allowed", "%s is not allowed here; use %s",
                     c->method, allowed);
        return problem(c);
}

static enum MHD_Result send_owned(struct route_ctx *c, unsigned status, json_t *j) {
        enum MHD_Result r = mp_api_send_json(c->conn, status, j);
        json_decref(j);
        return r;
}

/* --- OpenID login: cookies and redirects --- */

/* A response with extra headers (name, value, ..., NULL): Set-Cookie, Location. */
static enum MHD_Result send_with_headers(struct route_ctx *c, unsigned status, json_t *body,
                                         const char *const *hdrs) {
        struct MHD_Response *resp;
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
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
static const char *secure_attr(struct route_ctx *c) {
        const char *p = header(c, "X-Forwarded-Proto");
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_PROTOCOL);
        return (p && !strcasecmp(p, "https")) || (ci && ci->tls_session) ? "; Secure" : "";
}

/* Our callback URL: configured (what is registered at the provider), or this request's
 * scheme and Host. A forged Host can only name a URL the provider will refuse. */
static int callback_uri(struct route_ctx *c, char *buf, size_t size) {
        const char *host = header(c, "Host"), *proto = header(c, "X-Forwarded-Proto");

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

static enum MHD_Result oidc_login(struct route_ctx *c) {
        _cleanup_free_ char *url = NULL;
        char redirect_uri[MP_OIDC_MAX_URL_LEN + 1], binding[MP_OIDC_RANDOM_LEN + 1], set[256];

        if (!IS("GET"))
                return method_not_allowed(c, "GET");
        if (callback_uri(c, redirect_uri, sizeof(redirect_uri)) < 0 ||
            mp_core_oidc_begin(c->api->core, redirect_uri, query(c, "redirect"), query(c, "cli_redirect"),
                               query(c, "cli_state"), query(c, "cli_challenge"), &url, binding,
                               sizeof(binding), &c->err) < 0)
                return problem(c);
        /* The login is bound to this browser by a cookie only it holds; SameSite=Lax
         * still sends it on the provider's top-level redirect back to us. */
        snprintf(set, sizeof(set), "mecapy_oidc=%s; Path=/api/v1/auth/oidc; HttpOnly; SameSite=Lax; Max-Age=%d%s",
                 binding, MP_OIDC_LOGIN_TTL_S, secure_attr(c));
        /* ?mode=json: a dashboard script navigates itself (same cookie, same login). */
        if (query(c, "mode") && !strcmp(query(c, "mode"), "json")) {
                _cleanup_json_ json_t *out = json_pack("{s:s}", "authorization_url", url);
                const char *hdrs[] = { "Set-Cookie", set, NULL };
                return send_with_headers(c, 200, out, hdrs);
        }
        const char *hdrs[] = { "Location", url, "Set-Cookie", set, NULL };
        return send_with_headers(c, 302, NULL, hdrs);
}

static enum MHD_Result oidc_callback(struct route_ctx *c) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *location = NULL;
        char session[256], csrf[256], clear[160], token_csrf[MP_OIDC_RANDOM_LEN + 1];
        const char *secure = secure_attr(c);

        if (!IS("GET"))
                return method_not_allowed(c, "GET");
        if (query(c, "error")) {
                mp_error_set(&c->err, EACCES, 401, "unauthorized", "the OpenID provider refused the login: %.100s",
                             query(c, "error"));
                return problem(c);
        }
        if (mp_core_oidc_callback(c->api->core, query(c, "state"), cookie(c, "mecapy_oidc"), query(c, "code"),
                                  &out, &location, &c->err) < 0)
                return problem(c);
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

static enum MHD_Result route_oidc(struct route_ctx *c) {
        if (c->nseg == 3 && !strcmp(c->seg[2], "login"))
                return oidc_login(c);
        if (c->nseg == 3 && !strcmp(c->seg[2], "callback"))
                return oidc_callback(c);
        if (c->nseg == 3 && !strcmp(c->seg[2], "cli-exchange")) {
                _cleanup_json_ json_t *body = NULL;
                json_t *out = NULL;
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (body_json(c, false, &body) < 0)
                        return problem(c);
                if (!json_is_object(body)) {
                        mp_error_set(&c->err, EINVAL, 422, "validation", "the body must be a JSON object");
                        return problem(c);
                }
                if (mp_core_oidc_cli_exchange(c->api->core, body, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no route auth/oidc/%s",
                                 c->nseg >= 3 ? c->seg[2] : "");
}

/* Password login, with two limits: per client address (before anything, in
 * route_auth) and per email for failures, so that a guesser spread over many addresses
 * still gets MP_LOGIN_FAILS_PER_HOUR tries at one account. The email's bucket is looked
 * at before the password is checked (no argon2 for a locked email) and taken only on
 * a failure; the answer to a locked email is the same 429 whatever the password. */
static enum MHD_Result auth_login(struct route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL, *email;
        char key[MP_MAX_EMAIL_LEN + 8] = "";
        int wait;

        if (!IS("POST"))
                return method_not_allowed(c, "POST");
        if (body_json(c, false, &body) < 0)
                return problem(c);
        if (!json_is_object(body)) {
                mp_error_set(&c->err, EINVAL, 422, "validation", "the body must be a JSON object");
                return problem(c);
        }
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
                return problem(c);
        }
        return send_owned(c, 200, out);
}

static enum MHD_Result auth_signup(struct route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (!c->api->core->config->allow_signup)
                return mp_api_send_error(c->conn, 404, "not_found", "no route auth/signup");
        if (!IS("POST"))
                return method_not_allowed(c, "POST");
        if (body_json(c, false, &body) < 0 || mp_core_signup(c->api->core, body, c->client, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 201, out);
}

static enum MHD_Result route_auth(struct route_ctx *c) {
        const char *what = c->nseg >= 2 ? c->seg[1] : "";
        bool oidc_start = c->nseg == 3 && !strcmp(what, "oidc") && !strcmp(c->seg[2], "login");
        char key[96];
        bool first;
        int wait;

        /* Per client address: each endpoint its own bucket. An OpenID start is counted
         * only when it holds a pending login (the table of those is shared by all). */
        if ((c->nseg == 2 && (!strcmp(what, "login") || !strcmp(what, "signup"))) || oidc_start ||
            (c->nseg == 3 && !strcmp(what, "oidc") && !strcmp(c->seg[2], "cli-exchange"))) {
                snprintf(key, sizeof(key), "%s:%s", c->nseg == 3 ? c->seg[2] : what, c->client);
                wait = oidc_start ? mp_api_limit_peek(c->api->guard, MP_LIMIT_OIDC_START, key)
                                  : mp_api_limit(c->api->guard, MP_LIMIT_AUTH, key, &first);
                if (wait)
                        return throttled(c, oidc_start ? MP_LIMIT_OIDC_START : MP_LIMIT_AUTH, wait,
                                         oidc_start || first);
                if (oidc_start) {
                        enum MHD_Result r = route_oidc(c);
                        if (!c->err.status)
                                mp_api_limit(c->api->guard, MP_LIMIT_OIDC_START, key, NULL);
                        return r;
                }
        }
        if (c->nseg == 2 && !strcmp(c->seg[1], "login"))
                return auth_login(c);
        if (c->nseg == 2 && !strcmp(c->seg[1], "signup"))
                return auth_signup(c);
        if (c->nseg == 2 && !strcmp(c->seg[1], "logout")) {
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (authenticate(c) < 0)
                        return denied(c);
                snprintf(c->principal.client, sizeof(c->principal.client), "%s", c->client);
                if (mp_core_logout(c->api->core, &c->principal, &c->err) < 0)
                        return problem(c);
                /* The session is revoked; the browser's cookies go too. */
                char s1[128], s2[128];
                snprintf(s1, sizeof(s1), "mecapy_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0%s",
                         secure_attr(c));
                snprintf(s2, sizeof(s2), "mecapy_csrf=; Path=/; SameSite=Lax; Max-Age=0%s", secure_attr(c));
                const char *hdrs[] = { "Set-Cookie", s1, "Set-Cookie", s2, NULL };
                return send_with_headers(c, 204, NULL, hdrs);
        }
        if (c->nseg >= 2 && !strcmp(c->seg[1], "oidc"))
                return route_oidc(c);
        return mp_api_send_error(c->conn, 404, "not_found", "no route %s", c->seg[1]);
}

static enum MHD_Result route_tokens(struct route_ctx *c) {
        json_t *out = NULL;
        if (c->nseg == 1) {
                if (IS("GET")) {
                        if (mp_core_token_list(c->api->core, &c->principal, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 200, out);
                }
                if (IS("POST")) {
                        _cleanup_json_ json_t *body = NULL;
                        if (body_json(c, false, &body) < 0 ||
                            mp_core_token_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 201, out);
                }
                return method_not_allowed(c, "GET, POST");
        }
        if (c->nseg == 2) {
                if (!IS("DELETE"))
                        return method_not_allowed(c, "DELETE");
                if (mp_core_token_revoke(c->api->core, &c->principal, c->seg[1], &c->err) < 0)
                        return problem(c);
                return mp_api_send_json(c->conn, 204, NULL);
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no such route");
}

static enum MHD_Result route_functions(struct route_ctx *c) {
        struct mp_core *core = c->api->core;
        json_t *out = NULL;
        long version = 0, limit, wait;

        if (c->nseg == 1) {
                if (IS("GET")) {
                        if (query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
                            mp_core_function_list(core, &c->principal, query(c, "name"), query(c, "cursor"),
                                                  (int) limit, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 200, out);
                }
                if (IS("POST")) {
                        _cleanup_json_ json_t *body = NULL;
                        if (body_json(c, false, &body) < 0 ||
                            mp_core_function_create(core, &c->principal, body, &out, &c->err) < 0)
                                return problem(c);
                        audit_visibility(c, NULL, out);
                        return send_owned(c, 201, out);
                }
                return method_not_allowed(c, "GET, POST");
        }
        const char *id = c->seg[1];
        if (c->nseg == 2) {
                if (IS("GET")) {
                        if (query_int(c, "version", 1, 1L << 30, 0, &version) < 0 ||
                            mp_core_function_get(core, &c->principal, id, (int) version, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 200, out);
                }
                if (IS("PUT") || IS("PATCH")) {
                        _cleanup_json_ json_t *body = NULL;
                        _cleanup_json_ json_t *before = NULL;
                        if (body_json(c, false, &body) < 0)
                                return problem(c);
                        /* The audience before, to audit a change of it (one read, only when
                         * the body names a visibility). */
                        if (json_object_get(body, "visibility") &&
                            mp_core_function_get(core, &c->principal, id, 0, &before, &c->err) < 0)
                                return problem(c);
                        if (mp_core_function_update(core, &c->principal, id, body, &out, &c->err) < 0)
                                return problem(c);
                        if (before)
                                audit_visibility(c, json_string_value(json_object_get(before, "visibility")), out);
                        return send_owned(c, 200, out);
                }
                if (IS("DELETE")) {
                        if (mp_core_function_delete(core, &c->principal, id, &c->err) < 0)
                                return problem(c);
                        return mp_api_send_json(c->conn, 204, NULL);
                }
                return method_not_allowed(c, "GET, PUT, DELETE");
        }
        if (c->nseg == 3 && !strcmp(c->seg[2], "versions")) {
                if (!IS("GET"))
                        return method_not_allowed(c, "GET");
                if (mp_core_function_versions(core, &c->principal, id, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        if (c->nseg == 3 && !strcmp(c->seg[2], "execute")) {
                _cleanup_json_ json_t *body = NULL, *task = NULL;
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0 ||
                    query_int(c, "version", 1, 1L << 30, 0, &version) < 0 || body_json(c, false, &body) < 0 ||
                    mp_core_execute(core, &c->principal, id, (int) version, body,
                                    header(c, "Idempotency-Key"), &task, &c->err) < 0)
                        return problem(c);
                bool ended = mp_core_status_ended(json_string_value(json_object_get(task, "status")));
                if (wait == 0 || ended)
                        return mp_api_send_task(c->conn, ended ? 200 : 202, task);
                return mp_api_wait_task(c->api, c->conn, c->req, &c->principal,
                                        json_string_value(json_object_get(task, "id")), (int) wait, 200, 202);
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no such route");
}

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

static enum MHD_Result route_tasks(struct route_ctx *c) {
        struct mp_core *core = c->api->core;
        json_t *out = NULL;
        long limit, wait;

        if (c->nseg == 1) {
                if (!IS("GET"))
                        return method_not_allowed(c, "GET");
                if (query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
                    mp_core_task_list(core, &c->principal, query(c, "function_id"), query(c, "status"),
                                      query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        const char *id = c->seg[1];
        if (c->nseg == 2) {
                if (!IS("GET"))
                        return method_not_allowed(c, "GET");
                if (query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                        return problem(c);
                return mp_api_wait_task(c->api, c->conn, c->req, &c->principal, id, (int) wait, 200, 200);
        }
        if (c->nseg == 3 && !strcmp(c->seg[2], "logs")) {
                _cleanup_free_ char *logs = NULL;
                size_t len;
                if (!IS("GET"))
                        return method_not_allowed(c, "GET");
                if (mp_core_task_logs(core, &c->principal, id, &logs, &len, &c->err) < 0)
                        return problem(c);
                return mp_api_send_bytes(c->conn, 200, "text/plain; charset=utf-8", logs, len);
        }
        if (c->nseg == 3 && !strcmp(c->seg[2], "cancel")) {
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (mp_core_task_cancel(core, &c->principal, id, &out, &c->err) < 0)
                        return problem(c);
                _cleanup_json_ json_t *task = out;
                return mp_api_send_task(c->conn, 200, task);
        }
        if (c->nseg == 4 && !strcmp(c->seg[2], "artifacts")) {
                _cleanup_free_ char *data = NULL;
                size_t len;
                if (!IS("GET"))
                        return method_not_allowed(c, "GET");
                if (mp_core_task_artifact(core, &c->principal, id, c->seg[3], &data, &len, &c->err) < 0)
                        return problem(c);
                struct MHD_Response *resp = MHD_create_response_from_buffer(len, TAKE_PTR(data),
                                                                            MHD_RESPMEM_MUST_FREE);
                char disp[512];
                snprintf(disp, sizeof(disp), "attachment; filename=\"artifact%s\"",
                         strrchr(c->seg[3], '.') && strlen(strrchr(c->seg[3], '.')) < 16 &&
                                         !strpbrk(strrchr(c->seg[3], '.'), "\"\\\r\n")
                                 ? strrchr(c->seg[3], '.') : "");
                MHD_add_response_header(resp, "Content-Type", content_type_for(c->seg[3]));
                MHD_add_response_header(resp, "Content-Disposition", disp);
                mp_api_add_headers(c->conn, resp, MP_CSP_ARTIFACT);
                enum MHD_Result r = MHD_queue_response(c->conn, 200, resp);
                MHD_destroy_response(resp);
                return r;
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no such route");
}

/* POST /me/password: a wrong current password counts as a failed login of the
 * account's email, so a stolen session cannot be used to guess it at the API's rate. */
static enum MHD_Result route_password(struct route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        char key[MP_MAX_EMAIL_LEN + 8];
        int wait, r;

        if (!IS("POST"))
                return method_not_allowed(c, "POST");
        snprintf(key, sizeof(key), "email:%s", c->principal.email);
        if ((wait = mp_api_limit_peek(c->api->guard, MP_LIMIT_LOGIN_FAILS, key)))
                return throttled(c, MP_LIMIT_LOGIN_FAILS, wait, false);
        if (body_json(c, false, &body) < 0)
                return problem(c);
        r = mp_core_password_change(c->api->core, &c->principal, body, &c->err);
        if (r == -EACCES)
                mp_api_limit(c->api->guard, MP_LIMIT_LOGIN_FAILS, key, NULL);
        if (r < 0)
                return problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

static enum MHD_Result route_audit(struct route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (!IS("GET"))
                return method_not_allowed(c, "GET");
        if (query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_audit_list(c->api->core, &c->principal, query(c, "kind"), query(c, "actor"),
                               query(c, "since"), query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

/* Split "/a/b/c" into segments, percent-decoded (MHD gives the path undecoded). */
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

enum MHD_Result mp_api_route(struct mp_api *api, struct MHD_Connection *conn,
                             struct mp_request *req, const char *method, const char *url) {
        struct route_ctx ctx = { .api = api, .conn = conn, .req = req, .method = method }, *c = &ctx;
        char path[1024];
        enum MHD_Result r;

        /* A CORS preflight names no credentials: answered here, for any path. */
        if (IS("OPTIONS"))
                return mp_api_cors_preflight(conn);
        if (mp_api_check_sizes(conn, url, &c->err) < 0) {
                r = problem(c);
                mp_error_clear(&c->err);
                return r;
        }
        mp_api_client_address(api->guard, conn, c->client, sizeof(c->client));
        if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
                _cleanup_json_ json_t *ok = json_pack("{s:s}", "status", "ok");
                return mp_api_send_json(conn, 200, ok);
        }
        if (!strcmp(url, "/metrics"))
                return mp_api_metrics_answer(api->metrics, api->core, conn, c->client, method);
        if (!strcmp(url, "/") || !strcmp(url, "/index.html"))
                return mp_api_send_bytes(conn, 200, "text/html; charset=utf-8", mp_index_html, mp_index_html_len);
        if (!strcmp(url, "/api/v1/openapi.json"))
                return mp_api_send_bytes(conn, 200, "application/json", mp_openapi_json, mp_openapi_json_len);
        if (strncmp(url, "/api/v1/", 8) || strlen(url) >= sizeof(path))
                return mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);
        snprintf(path, sizeof(path), "%s", url + 8);
        c->nseg = split_path(path, c->seg, MAX_SEGS);
        if (c->nseg <= 0)
                return mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);

        if (!strcmp(c->seg[0], "auth"))
                r = route_auth(c);
        else if (authenticate(c) < 0)
                r = denied(c);
        else if (admit(c, &r))
                ; /* throttled, or a scope the token lacks */
        else if (mp_api_company_route(api, conn, req, method, c->seg, c->nseg, &c->principal, &r))
                ; /* company/, catalogue, role rules (api-company.c) */
        else if (!strcmp(c->seg[0], "me") && c->nseg == 1) {
                json_t *out = NULL;
                if (!IS("GET"))
                        r = method_not_allowed(c, "GET");
                else if (mp_core_me(api->core, &c->principal, &out, &c->err) < 0)
                        r = problem(c);
                else
                        r = send_owned(c, 200, out);
        } else if (!strcmp(c->seg[0], "tokens"))
                r = route_tokens(c);
        else if (!strcmp(c->seg[0], "functions"))
                r = route_functions(c);
        else if (!strcmp(c->seg[0], "tasks"))
                r = route_tasks(c);
        else if (!strcmp(c->seg[0], "workers") && c->nseg == 1) {
                /* Any signed-in user: the list holds hosts and counts, no tenant data. */
                json_t *out = NULL;
                if (!IS("GET"))
                        r = method_not_allowed(c, "GET");
                else if (mp_core_workers(api->core, &c->principal, &out, &c->err) < 0)
                        r = problem(c);
                else
                        r = send_owned(c, 200, out);
        } else if (!strcmp(c->seg[0], "me") && c->nseg == 2 && !strcmp(c->seg[1], "password"))
                r = route_password(c);
        else if (!strcmp(c->seg[0], "audit") && c->nseg == 1)
                r = route_audit(c);
        else
                r = mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);
        /* A signed-in caller refused something: for the admins to see. */
        if (c->authed && c->err.status == 403)
                audit_denied(c);
        mp_error_clear(&c->err);
        return r;
}
