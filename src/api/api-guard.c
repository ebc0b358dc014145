/* The guards at the edge: client address, response headers, CORS, size checks and rate
 * limits (see api-guard.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api-guard.h"
#include "api/api-ratelimit.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"

struct mp_api_guard {
        char *origins[MP_MAX_CORS_ORIGINS];
        size_t n_origins;
        char proxies[MP_MAX_TRUSTED_PROXIES][INET6_ADDRSTRLEN];
        size_t n_proxies;
        struct mp_ratelimit *limits[5]; /* by enum mp_limit; NULL = off */
};

/* An address in its canonical text (so "::ffff:1.2.3.4" style spellings compare
 * equal to what inet_ntop gives); false when not an address. */
static bool canonical_address(const char *in, size_t len, char out[INET6_ADDRSTRLEN]) {
        char tmp[INET6_ADDRSTRLEN + 1];
        unsigned char bin[sizeof(struct in6_addr)];

        while (len && isspace((unsigned char) *in))
                in++, len--;
        while (len && isspace((unsigned char) in[len - 1]))
                len--;
        if (len == 0 || len >= sizeof(tmp))
                return false;
        memcpy(tmp, in, len);
        tmp[len] = 0;
        if (inet_pton(AF_INET, tmp, bin) == 1)
                return inet_ntop(AF_INET, bin, out, INET6_ADDRSTRLEN) != NULL;
        if (inet_pton(AF_INET6, tmp, bin) == 1)
                return inet_ntop(AF_INET6, bin, out, INET6_ADDRSTRLEN) != NULL;
        return false;
}

/* An origin as browsers send it: scheme://host[:port], no path, no trailing slash. */
static bool origin_plausible(const char *o, size_t n) {
        const char *rest;
        if (n > 5 + 3 + 253 + 6)
                return false;
        if (n > 8 && !strncmp(o, "https://", 8))
                rest = o + 8;
        else if (n > 7 && !strncmp(o, "http://", 7))
                rest = o + 7;
        else
                return false;
        for (const char *p = rest; p < o + n; p++)
                if (!(isalnum((unsigned char) *p) || *p == '.' || *p == '-' || *p == ':' || *p == '[' ||
                      *p == ']'))
                        return false;
        return rest < o + n;
}

int mp_api_guard_new(const struct mp_config *c, struct mp_api_guard **ret, struct mp_error *err) {
        struct mp_api_guard *g = calloc(1, sizeof(*g));
        const char *p;
        int r = 0;

        if (!g)
                return -ENOMEM;
        for (p = c->cors_origins; p && *p;) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                while (n && *p == ' ')
                        p++, n--;
                while (n && p[n - 1] == ' ')
                        n--;
                if (n) {
                        /* "*" is refused: with credentials allowed, echoing any origin
                         * would let every site act with a user's cookies. */
                        if (!origin_plausible(p, n) || g->n_origins == MP_MAX_CORS_ORIGINS) {
                                r = mp_error_set(err, EINVAL, 400, "config",
                                                 "--cors-origin: \"%.*s\" is not an origin like "
                                                 "https://app.example.com (at most %d, no *, no path)",
                                                 (int) MP_MIN(n, 200), p, MP_MAX_CORS_ORIGINS);
                                goto fail;
                        }
                        if (!(g->origins[g->n_origins++] = strndup(p, n))) {
                                r = -ENOMEM;
                                goto fail;
                        }
                }
                p = e ? e + 1 : p + n;
        }
        for (p = c->trusted_proxies; p && *p;) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (n && strspn(p, " ") < n) {
                        if (g->n_proxies == MP_MAX_TRUSTED_PROXIES ||
                            !canonical_address(p, n, g->proxies[g->n_proxies])) {
                                r = mp_error_set(err, EINVAL, 400, "config",
                                                 "--trusted-proxy: \"%.*s\" is not an IPv4 or IPv6 "
                                                 "address (at most %d)", (int) MP_MIN(n, 200), p,
                                                 MP_MAX_TRUSTED_PROXIES);
                                goto fail;
                        }
                        g->n_proxies++;
                }
                p = e ? e + 1 : p + n;
        }
        if (c->auth_rate_limit > 0) {
                /* A minute's worth at once, then one every 60/N s: people who share
                 * an address (an office behind NAT) can all log in in the morning, a
                 * password-guessing script gets N tries a minute. Keys are
                 * "<endpoint>:<address>", so logins, sign-ups and OpenID starts each
                 * have their own bucket. */
                if ((r = mp_ratelimit_new(c->auth_rate_limit, c->auth_rate_limit, MP_RATE_TABLE_SIZE,
                                          &g->limits[MP_LIMIT_AUTH])) < 0)
                        goto fail;
        }
        if (c->rate_limit > 0) {
                /* A minute's worth at once: a script that submits a batch is not
                 * slowed, a runaway loop is within a minute. */
                if ((r = mp_ratelimit_new(c->rate_limit, c->rate_limit, MP_RATE_TABLE_SIZE,
                                          &g->limits[MP_LIMIT_API])) < 0 ||
                    (r = mp_ratelimit_new(c->rate_limit, c->rate_limit, MP_RATE_TABLE_SIZE,
                                          &g->limits[MP_LIMIT_ANON])) < 0)
                        goto fail;
        }
        /* An OpenID start costs no password hash, only a slot of the pending logins
         * (4096, 10 minutes each): at MP_OIDC_START_FACTOR times the login rate, one
         * address holds at most a few hundred of them. */
        if (c->auth_rate_limit > 0 &&
            (r = mp_ratelimit_new((double) c->auth_rate_limit * MP_OIDC_START_FACTOR,
                                  (double) c->auth_rate_limit * MP_OIDC_START_FACTOR, MP_RATE_TABLE_SIZE,
                                  &g->limits[MP_LIMIT_OIDC_START])) < 0)
                goto fail;
        if (c->auth_rate_limit > 0 &&
            (r = mp_ratelimit_new(MP_LOGIN_FAILS_PER_HOUR, MP_LOGIN_FAILS_PER_HOUR / 60.0,
                                  MP_RATE_TABLE_SIZE, &g->limits[MP_LIMIT_LOGIN_FAILS])) < 0)
                goto fail;
        *ret = g;
        return 0;
fail:
        mp_api_guard_free(g);
        return r;
}

struct mp_api_guard *mp_api_guard_free(struct mp_api_guard *g) {
        if (!g)
                return NULL;
        for (size_t i = 0; i < g->n_origins; i++)
                free(g->origins[i]);
        for (size_t i = 0; i < ELEMENTSOF(g->limits); i++)
                mp_ratelimit_free(g->limits[i]);
        free(g);
        return NULL;
}

void mp_api_guard_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                                enum MHD_ConnectionNotificationCode code) {
        (void) conn;
        if (code == MHD_CONNECTION_NOTIFY_STARTED)
                *socket_context = cls;
}

static struct mp_api_guard *guard_of(struct MHD_Connection *conn) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        return ci ? ci->socket_context : NULL;
}

static bool trusted(struct mp_api_guard *g, const char *addr) {
        for (size_t i = 0; i < g->n_proxies; i++)
                if (!strcmp(g->proxies[i], addr))
                        return true;
        return false;
}

void mp_api_client_address(struct mp_api_guard *g, struct MHD_Connection *conn, char *buf,
                           size_t size) {
        const union MHD_ConnectionInfo *ci =
                MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char peer[INET6_ADDRSTRLEN] = "?";
        const char *xff;

        if (ci && ci->client_addr) {
                const struct sockaddr *sa = ci->client_addr;
                if (sa->sa_family == AF_INET)
                        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, peer, sizeof(peer));
                else if (sa->sa_family == AF_INET6) {
                        const struct in6_addr *a6 = &((const struct sockaddr_in6 *) sa)->sin6_addr;
                        /* A v4-mapped peer is the v4 address: one client, one bucket. */
                        if (IN6_IS_ADDR_V4MAPPED(a6))
                                inet_ntop(AF_INET, &a6->s6_addr[12], peer, sizeof(peer));
                        else
                                inet_ntop(AF_INET6, a6, peer, sizeof(peer));
                }
        }
        snprintf(buf, size, "%s", peer);
        /* X-Forwarded-For is whatever the client wrote, plus what each proxy appended.
         * Only a trusted peer's word counts, and only right to left: the nearest entry
         * that is not one of our proxies is the client; what lies left of it is the
         * client's own claim. */
        if (!g || !g->n_proxies || !trusted(g, peer))
                return;
        xff = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-For");
        if (!xff)
                return;
        size_t end = strnlen(xff, 4096);
        while (end > 0) {
                size_t start = end;
                char addr[INET6_ADDRSTRLEN];
                while (start > 0 && xff[start - 1] != ',')
                        start--;
                if (!canonical_address(xff + start, end - start, addr))
                        return; /* garbage: keep the last trusted hop */
                snprintf(buf, size, "%s", addr);
                if (!trusted(g, addr))
                        return;
                end = start > 0 ? start - 1 : 0;
        }
}

bool mp_api_request_tls(struct MHD_Connection *conn) {
        const char *p = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Forwarded-Proto");
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_PROTOCOL);
        /* Believed from anyone: it can only add Secure or HSTS, which tighten. */
        return (p && !strcasecmp(p, "https")) || (ci && ci->tls_session);
}

static const char *allowed_origin(struct mp_api_guard *g, struct MHD_Connection *conn) {
        const char *o = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
        if (!g || !o)
                return NULL;
        /* Exact match only: a prefix or suffix match would let evil-example.com in. */
        for (size_t i = 0; i < g->n_origins; i++)
                if (!strcmp(g->origins[i], o))
                        return g->origins[i];
        return NULL;
}

void mp_api_add_headers(struct MHD_Connection *conn, struct MHD_Response *resp, const char *csp) {
        struct mp_api_guard *g = guard_of(conn);
        const char *origin = allowed_origin(g, conn);

        MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(resp, "Cache-Control", "no-store");
        MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
        MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
        MHD_add_response_header(resp, "Content-Security-Policy", csp ? csp : MP_CSP_API);
        /* The request's id (api-server.c sets it as this thread's log context). */
        if (mp_log_request_id())
                MHD_add_response_header(resp, "X-Request-Id", mp_log_request_id());
        if (mp_api_request_tls(conn))
                MHD_add_response_header(resp, "Strict-Transport-Security", "max-age=31536000");
        if (g && g->n_origins)
                MHD_add_response_header(resp, "Vary", "Origin");
        if (origin) {
                /* The allowed origin echoed, never "*": credentials (the session cookie)
                 * are allowed, and only for the listed origins. */
                MHD_add_response_header(resp, "Access-Control-Allow-Origin", origin);
                MHD_add_response_header(resp, "Access-Control-Allow-Credentials", "true");
                MHD_add_response_header(resp, "Access-Control-Expose-Headers", "Retry-After, Location, X-Request-Id");
        }
}

enum MHD_Result mp_api_cors_preflight(struct MHD_Connection *conn) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        enum MHD_Result r;

        if (!resp)
                return MHD_NO;
        mp_api_add_headers(conn, resp, NULL);
        if (allowed_origin(guard_of(conn), conn) &&
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Access-Control-Request-Method")) {
                MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                        "GET, HEAD, POST, PUT, PATCH, DELETE");
                MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                        "Authorization, Content-Type, Idempotency-Key, X-CSRF-Token, X-Request-Id");
                MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
        }
        r = MHD_queue_response(conn, 204, resp);
        MHD_destroy_response(resp);
        return r;
}

struct query_count {
        unsigned n;
        bool too_long;
        char name[40];
};

static enum MHD_Result count_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value) {
        struct query_count *q = cls;
        (void) kind;
        q->n++;
        if ((key && strlen(key) > MP_MAX_QUERY_VALUE_LEN) || (value && strlen(value) > MP_MAX_QUERY_VALUE_LEN)) {
                q->too_long = true;
                snprintf(q->name, sizeof(q->name), "%.32s", key ? key : "");
                return MHD_NO;
        }
        return MHD_YES;
}

int mp_api_check_sizes(struct MHD_Connection *conn, const char *url, struct mp_error *err) {
        struct query_count q = { 0 };

        if (strlen(url) > MP_MAX_URL_LEN)
                return mp_error_set(err, E2BIG, 414, "uri_too_long",
                                    "the URL path is longer than %d bytes", MP_MAX_URL_LEN);
        MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, count_arg, &q);
        if (q.too_long)
                return mp_error_set(err, E2BIG, 400, "bad_request",
                                    "query parameter %s is longer than %d bytes", q.name,
                                    MP_MAX_QUERY_VALUE_LEN);
        if (q.n > MP_MAX_QUERY_ARGS)
                return mp_error_set(err, E2BIG, 400, "bad_request",
                                    "more than %d query parameters", MP_MAX_QUERY_ARGS);
        return 0;
}

int mp_api_limit(struct mp_api_guard *g, enum mp_limit which, const char *key, bool *ret_first) {
        if (ret_first)
                *ret_first = false;
        if (!g || !g->limits[which] || !key)
                return 0;
        return mp_ratelimit_take(g->limits[which], key, mp_mono_ms(), ret_first);
}

int mp_api_limit_peek(struct mp_api_guard *g, enum mp_limit which, const char *key) {
        if (!g || !g->limits[which] || !key)
                return 0;
        return mp_ratelimit_peek(g->limits[which], key, mp_mono_ms());
}

const char *mp_api_limit_name(enum mp_limit which) {
        switch (which) {
        case MP_LIMIT_AUTH: return "auth";
        case MP_LIMIT_API: return "api";
        case MP_LIMIT_ANON: return "unauthenticated";
        case MP_LIMIT_LOGIN_FAILS: return "login_failures";
        case MP_LIMIT_OIDC_START: return "oidc_start";
        }
        return "?";
}
