/* Unit tests of api/'s pure parts: the token buckets of api-ratelimit.c (refill, burst,
 * the Retry-After they give, one refusal reported per episode, and the bound on the
 * table with least-recently-seen eviction); and the route table of api-routes.c: every
 * route names what it needs (fail closed), and openapi.json lists exactly its routes
 * with the same needs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "check.h"

#include "api/api-internal.h"
#include "api/api-ratelimit.h"

extern const char mp_openapi_json[];
extern const size_t mp_openapi_json_len;

TEST(burst_then_refused) {
        struct mp_ratelimit *rl = NULL;
        bool first = false;

        REQUIRE(mp_ratelimit_new(5, 60, 16, &rl) == 0); /* 5 at once, one a second */
        for (int i = 0; i < 5; i++)
                CHECK_INT(mp_ratelimit_take(rl, "a", 1000, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "a", 1000, &first), ==, 1);
        CHECK(first);
        CHECK_INT(mp_ratelimit_take(rl, "a", 1000, &first), ==, 1);
        CHECK(!first); /* the same episode */
        /* another key is not touched */
        CHECK_INT(mp_ratelimit_take(rl, "b", 1000, NULL), ==, 0);
        mp_ratelimit_free(rl);
}

TEST(refill_and_retry_after) {
        struct mp_ratelimit *rl = NULL;
        bool first;

        REQUIRE(mp_ratelimit_new(2, 6, 16, &rl) == 0); /* one every 10 s */
        CHECK_INT(mp_ratelimit_take(rl, "k", 0, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "k", 0, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "k", 0, NULL), ==, 10);
        CHECK_INT(mp_ratelimit_take(rl, "k", 2500, NULL), ==, 8); /* rounded up */
        CHECK_INT(mp_ratelimit_peek(rl, "k", 9999), ==, 1);
        /* waiting what it said is always enough */
        CHECK_INT(mp_ratelimit_take(rl, "k", 10000, &first), ==, 0);
        CHECK(!first);
        /* refill stops at the burst */
        CHECK_INT(mp_ratelimit_take(rl, "k", 10000000, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "k", 10000000, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "k", 10000000, NULL), >, 0);
        /* a clock that goes back never adds tokens */
        CHECK_INT(mp_ratelimit_take(rl, "k", 5, NULL), >, 0);
        mp_ratelimit_free(rl);
}

TEST(peek_takes_nothing) {
        struct mp_ratelimit *rl = NULL;

        REQUIRE(mp_ratelimit_new(1, 1, 4, &rl) == 0);
        for (int i = 0; i < 10; i++)
                CHECK_INT(mp_ratelimit_peek(rl, "p", 0), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "p", 0, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_peek(rl, "p", 0), ==, 60);
        mp_ratelimit_free(rl);
}

TEST(table_is_bounded_lru) {
        struct mp_ratelimit *rl = NULL;
        char key[32];

        REQUIRE(mp_ratelimit_new(1, 1, 8, &rl) == 0);
        CHECK_INT(mp_ratelimit_take(rl, "victim", 0, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_take(rl, "keep", 0, NULL), ==, 0);
        /* A flood of new keys: the table never grows past its size. */
        for (int i = 0; i < 10000; i++) {
                snprintf(key, sizeof(key), "flood-%d", i);
                CHECK_INT(mp_ratelimit_take(rl, key, 0, NULL), ==, 0);
                if (i % 3 == 0) /* "keep" stays recently seen */
                        CHECK_INT(mp_ratelimit_take(rl, "keep", 0, NULL), >, 0);
        }
        CHECK_INT(mp_ratelimit_count(rl), ==, 8);
        /* "keep" was seen all along: still empty. "victim" was evicted: a fresh bucket. */
        CHECK_INT(mp_ratelimit_take(rl, "keep", 0, NULL), >, 0);
        CHECK_INT(mp_ratelimit_take(rl, "victim", 0, NULL), ==, 0);
        CHECK_INT(mp_ratelimit_count(rl), ==, 8);
        mp_ratelimit_free(rl);
}

TEST(bad_arguments) {
        struct mp_ratelimit *rl = NULL;
        CHECK_INT(mp_ratelimit_new(0, 60, 8, &rl), ==, -EINVAL);
        CHECK_INT(mp_ratelimit_new(1, 0, 8, &rl), ==, -EINVAL);
        CHECK_INT(mp_ratelimit_new(1, 60, 0, &rl), ==, -EINVAL);
        CHECK(rl == NULL);
        CHECK(mp_ratelimit_free(NULL) == NULL);
}

/* Every entry names one need (public, signed-in or one known scope), a method, an
 * absolute pattern and a handler; no two entries share a method and pattern. */
TEST(every_route_names_its_need) {
        static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE" };

        REQUIRE(mp_api_n_routes > 30);
        for (size_t i = 0; i < mp_api_n_routes; i++) {
                const struct mp_api_route *r = &mp_api_routes[i];
                bool known = false;
                if (r->need == MP_NEED_UNSET || !mp_api_need_name(r->need))
                        CHECK_FAIL("%s %s: need %#x is not public, signed-in or one scope", r->method,
                                   r->pattern, r->need);
                for (size_t k = 0; k < ELEMENTSOF(methods); k++)
                        known |= !strcmp(r->method, methods[k]);
                if (!known)
                        CHECK_FAIL("%s %s: unknown method", r->method, r->pattern);
                CHECK(r->pattern[0] == '/');
                CHECK(r->handler != NULL);
                for (size_t j = 0; j < i; j++)
                        if (!strcmp(r->method, mp_api_routes[j].method) &&
                            !strcmp(r->pattern, mp_api_routes[j].pattern))
                                CHECK_FAIL("%s %s is in the table twice", r->method, r->pattern);
        }
        /* The sentinel and the non-values are refused by name too. */
        CHECK(mp_api_need_name(MP_NEED_UNSET) == NULL);
        CHECK(mp_api_need_name(MP_SCOPE_TASKS_READ | MP_SCOPE_TASKS_WRITE) == NULL);
        CHECK(mp_api_need_name(1u << 20) == NULL);
        CHECK_STR(mp_api_need_name(MP_NEED_PUBLIC), "public");
        CHECK_STR(mp_api_need_name(MP_SCOPE_EXECUTE), "execute");
}

static const struct mp_api_route *find_route(const char *method, const char *pattern) {
        for (size_t i = 0; i < mp_api_n_routes; i++)
                if (!strcmp(mp_api_routes[i].method, method) && !strcmp(mp_api_routes[i].pattern, pattern))
                        return &mp_api_routes[i];
        return NULL;
}

/* The routes the issue named: company administration needs a scope (it had none), and
 * the slow ones run off the HTTP threads. */
TEST(company_and_slow_routes) {
        static const char *const company[][2] = {
                { "GET", "/api/v1/company/members" }, { "POST", "/api/v1/company/members" },
                { "PUT", "/api/v1/company/members/{member_id}" },
                { "PATCH", "/api/v1/company/members/{member_id}" },
                { "DELETE", "/api/v1/company/members/{member_id}" },
                { "GET", "/api/v1/company/members/{member_id}/tokens" },
                { "DELETE", "/api/v1/company/members/{member_id}/tokens/{id}" },
                { "GET", "/api/v1/company/members/{member_id}/tasks" },
        };
        static const char *const slow[][2] = {
                { "POST", "/api/v1/auth/login" }, { "POST", "/api/v1/auth/signup" },
                { "POST", "/api/v1/me/password" }, { "POST", "/api/v1/company/members" },
                { "POST", "/api/v1/functions" }, { "PUT", "/api/v1/functions/{id}" },
                { "PATCH", "/api/v1/functions/{id}" }, { "GET", "/api/v1/auth/oidc/callback" },
                { "GET", "/readyz" },
        };
        for (size_t i = 0; i < ELEMENTSOF(company); i++) {
                const struct mp_api_route *r = find_route(company[i][0], company[i][1]);
                REQUIRE(r != NULL);
                CHECK_INT(r->need, ==, (unsigned) MP_SCOPE_TOKENS);
        }
        for (size_t i = 0; i < ELEMENTSOF(slow); i++) {
                const struct mp_api_route *r = find_route(slow[i][0], slow[i][1]);
                REQUIRE(r != NULL);
                CHECK(r->flags & MP_ROUTE_SLOW);
        }
        CHECK(!(find_route("GET", "/healthz")->flags & MP_ROUTE_SLOW));
        CHECK(!(find_route("POST", "/api/v1/functions/{id}/execute")->flags & MP_ROUTE_SLOW));
}

/* openapi.json and the table: the same (method, path) pairs, and each operation's
 * x-mecapy-scope is the route's need. */
TEST(openapi_lists_the_table) {
        json_error_t jerr;
        _cleanup_json_ json_t *doc = json_loadb(mp_openapi_json, mp_openapi_json_len, 0, &jerr);
        json_t *paths, *ops, *op;
        const char *path, *method;
        size_t n_ops = 0;

        REQUIRE(doc != NULL);
        paths = json_object_get(doc, "paths");
        REQUIRE(json_is_object(paths));
        json_object_foreach(paths, path, ops) {
                json_object_foreach(ops, method, op) {
                        char upper[16];
                        size_t k;
                        if (!strcmp(method, "parameters"))
                                continue;
                        for (k = 0; method[k] && k < sizeof(upper) - 1; k++)
                                upper[k] = (char) (method[k] - 'a' + 'A');
                        upper[k] = 0;
                        n_ops++;
                        const struct mp_api_route *r = find_route(upper, path);
                        if (!r) {
                                CHECK_FAIL("openapi.json has %s %s, the route table does not", upper, path);
                                continue;
                        }
                        const char *scope = json_string_value(json_object_get(op, "x-mecapy-scope"));
                        if (!scope || strcmp(scope, mp_api_need_name(r->need)))
                                CHECK_FAIL("%s %s: openapi.json says x-mecapy-scope %s, the table %s", upper,
                                           path, scope ? scope : "(none)", mp_api_need_name(r->need));
                }
        }
        for (size_t i = 0; i < mp_api_n_routes; i++) {
                const struct mp_api_route *r = &mp_api_routes[i];
                char lower[16];
                size_t k;
                for (k = 0; r->method[k] && k < sizeof(lower) - 1; k++)
                        lower[k] = (char) (r->method[k] - 'A' + 'a');
                lower[k] = 0;
                if (!json_object_get(json_object_get(paths, r->pattern), lower))
                        CHECK_FAIL("the route table has %s %s, openapi.json does not", r->method, r->pattern);
        }
        CHECK_INT(n_ops, ==, mp_api_n_routes);
}

static const struct check_case cases[] = {
        CASE(every_route_names_its_need),
        CASE(company_and_slow_routes),
        CASE(openapi_lists_the_table),
        CASE(burst_then_refused),
        CASE(refill_and_retry_after),
        CASE(peek_takes_nothing),
        CASE(table_is_bounded_lru),
        CASE(bad_arguments),
};

CHECK_MAIN(cases)
