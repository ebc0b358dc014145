/* The routes: each handler parses, authenticates, calls core/ and renders. */
#include <string.h>

#include "api/api-internal.h"
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

/* Parse the JSON body: 415 unless JSON, 400 with line and column when malformed. */
static int body_json(struct route_ctx *c, bool optional, json_t **ret) {
        struct mp_buf *b = &c->req->body;
        const char *ct = header(c, "Content-Type");
        json_error_t jerr;
        json_t *j;

        if (b->len == 0 && optional) {
                *ret = json_object();
                return 0;
        }
        if (!ct || strncasecmp(ct, "application/json", 16) || (ct[16] && ct[16] != ';' && ct[16] != ' '))
                return mp_error_set(&c->err, EINVAL, 415, "unsupported_media_type",
                                    "the body must be JSON with Content-Type: application/json (got %.64s)",
                                    ct ? ct : "no Content-Type");
        if (b->len == 0)
                return mp_error_set(&c->err, EINVAL, 400, "malformed_json", "the body is empty; a JSON object is expected");
        if (!mp_utf8_valid(b->data, b->len))
                return mp_error_set(&c->err, EINVAL, 400, "invalid_utf8",
                                    "the body is not valid UTF-8 (or holds a NUL byte)");
        j = json_loadb(b->data, b->len, JSON_REJECT_DUPLICATES, &jerr);
        if (!j)
                return mp_error_set(&c->err, EINVAL, 400, "malformed_json",
                                    "the body is not valid JSON: %s at line %d, column %d", jerr.text,
                                    jerr.line, jerr.column);
        *ret = j;
        return 0;
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
        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
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

static enum MHD_Result route_auth(struct route_ctx *c) {
        json_t *out = NULL;
        if (c->nseg == 2 && !strcmp(c->seg[1], "login")) {
                _cleanup_json_ json_t *body = NULL;
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (body_json(c, false, &body) < 0)
                        return problem(c);
                if (!json_is_object(body)) {
                        mp_error_set(&c->err, EINVAL, 422, "validation", "the body must be a JSON object");
                        return problem(c);
                }
                if (mp_core_login(c->api->core, body, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        if (c->nseg == 2 && !strcmp(c->seg[1], "logout")) {
                if (!IS("POST"))
                        return method_not_allowed(c, "POST");
                if (authenticate(c) < 0 || mp_core_logout(c->api->core, &c->principal, &c->err) < 0)
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
                        if (body_json(c, false, &body) < 0 ||
                            mp_core_function_update(core, &c->principal, id, body, &out, &c->err) < 0)
                                return problem(c);
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
                        return mp_api_send_json(c->conn, ended ? 200 : 202, task);
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
                return send_owned(c, 200, out);
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
                MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
                MHD_add_response_header(resp, "Content-Security-Policy", "sandbox");
                enum MHD_Result r = MHD_queue_response(c->conn, 200, resp);
                MHD_destroy_response(resp);
                return r;
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no such route");
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

        if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
                _cleanup_json_ json_t *ok = json_pack("{s:s}", "status", "ok");
                return mp_api_send_json(conn, 200, ok);
        }
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
                r = problem(c);
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
        } else
                r = mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);
        mp_error_clear(&c->err);
        return r;
}
