/* Unit tests of api/'s pure parts: the token buckets of api-ratelimit.c (refill, burst,
 * the Retry-After they give, one refusal reported per episode, and the bound on the
 * table with least-recently-seen eviction). */
#include <errno.h>
#include <stdio.h>

#include "check.h"

#include "api/api-ratelimit.h"

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

static const struct check_case cases[] = {
        CASE(burst_then_refused),
        CASE(refill_and_retry_after),
        CASE(peek_takes_nothing),
        CASE(table_is_bounded_lru),
        CASE(bad_arguments),
};

CHECK_MAIN(cases)
