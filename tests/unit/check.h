/* A small unit-test harness: assertions print both operands (after libuv's test
 * macros); each TEST is one case; the runner prints "N passed, N failed". */
#pragma once

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct check_case {
        const char *name;
        void (*fn)(void);
};

extern int check_failed_now;

#define CHECK_FAIL(...)                                                                  \
        do {                                                                             \
                fprintf(stderr, "  %s:%d: ", __FILE__, __LINE__);                        \
                fprintf(stderr, __VA_ARGS__);                                            \
                fprintf(stderr, "\n");                                                   \
                check_failed_now = 1;                                                    \
        } while (0)

#define CHECK(cond)                                                                      \
        do {                                                                             \
                if (!(cond))                                                             \
                        CHECK_FAIL("expected %s", #cond);                                \
        } while (0)

#define CHECK_INT(a, op, b)                                                              \
        do {                                                                             \
                int64_t _a = (int64_t) (a), _b = (int64_t) (b);                          \
                if (!(_a op _b))                                                         \
                        CHECK_FAIL("%s %s %s: %" PRId64 " vs %" PRId64, #a, #op, #b, _a, _b); \
        } while (0)

#define CHECK_STR(a, b)                                                                  \
        do {                                                                             \
                const char *_a = (a), *_b = (b);                                         \
                if (!_a || !_b || strcmp(_a, _b) != 0)                                   \
                        CHECK_FAIL("%s == %s: \"%s\" vs \"%s\"", #a, #b, _a ? _a : "(null)", \
                                   _b ? _b : "(null)");                                  \
        } while (0)

/* Stop the current case (for a precondition the rest depends on). */
#define REQUIRE(cond)                                                                    \
        do {                                                                             \
                if (!(cond)) {                                                           \
                        CHECK_FAIL("required %s", #cond);                                \
                        return;                                                          \
                }                                                                        \
        } while (0)

#define TEST(name) static void name(void)

/* In the test file: static const struct check_case cases[] = { CASE(a), CASE(b) };
 * then CHECK_MAIN(cases) */
#define CASE(fn) { #fn, fn }
#define CHECK_MAIN(cases)                                                                \
        int check_failed_now;                                                            \
        int main(int argc, char **argv) {                                                \
                int passed = 0, failed = 0;                                              \
                for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {          \
                        if (argc > 1 && !strstr(cases[i].name, argv[1]))                 \
                                continue;                                                \
                        check_failed_now = 0;                                            \
                        cases[i].fn();                                                   \
                        printf("%s %s\n", check_failed_now ? "FAIL" : "ok  ", cases[i].name); \
                        fflush(stdout);                                                  \
                        if (check_failed_now)                                            \
                                failed++;                                                \
                        else                                                             \
                                passed++;                                                \
                }                                                                        \
                printf("%d passed, %d failed\n", passed, failed);                        \
                return failed ? 1 : 0;                                                   \
        }
