/* Fuzz target: what the HTTP edge (src/api/api-guard.c, api-ratelimit.c) parses from
 * request headers: the addresses of X-Forwarded-For, walked right to left as
 * mp_api_client_address walks them (canonical_address), an Origin
 * (origin_plausible), and the keys of the rate-limit table (mp_ratelimit_take/peek with
 * eviction). The two parsers are static: the file is compiled into this target, so
 * nothing is exposed for it.
 * Input: an X-Forwarded-For value; its lines are also rate-limit keys and origins. */
#include "../../src/api/api-guard.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static struct mp_ratelimit *rl;
        char *xff = fuzz_strndup(data, size);
        size_t end = strnlen(xff, 4096), len;
        const uint8_t *p = data;
        size_t n = size;
        static int64_t now = 1000; /* a monotonic clock: never goes back */

        while (end > 0) {
                size_t start = end;
                char addr[INET6_ADDRSTRLEN];
                while (start > 0 && xff[start - 1] != ',')
                        start--;
                memset(addr, 0, sizeof(addr));
                if (canonical_address(xff + start, end - start, addr)) {
                        char again[INET6_ADDRSTRLEN];
                        fuzz_check(strlen(addr) < INET6_ADDRSTRLEN);
                        /* The canonical form is a fixed point. */
                        fuzz_check(canonical_address(addr, strlen(addr), again) && !strcmp(addr, again));
                }
                end = start > 0 ? start - 1 : 0;
        }

        if (!rl && mp_ratelimit_new(3, 60, 4, &rl) < 0)
                abort();
        while (n) {
                const uint8_t *line = fuzz_split(&p, &n, '\n', &len);
                char *key = fuzz_strndup(line, len);
                bool first = false;
                (void) origin_plausible(key, len);
                int w = mp_ratelimit_take(rl, key, now, &first);
                fuzz_check(w >= 0 && (w == 0 || w >= 1));
                fuzz_check(mp_ratelimit_peek(rl, key, now) >= 0);
                fuzz_check(mp_ratelimit_count(rl) <= 4);
                now += len ? line[0] * 97 : 1;
                free(key);
        }
        free(xff);
        return 0;
}
