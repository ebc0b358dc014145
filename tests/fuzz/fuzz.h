/* What the fuzz targets share: the libFuzzer entry point, and splitting one input into
 * parts. A target must never abort on input it is given; it aborts (fuzz_check) only
 * when the code under test broke a promise its header makes. */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_check(cond)                                                                   \
        do {                                                                               \
                if (!(cond)) {                                                             \
                        fprintf(stderr, "%s:%d: broken promise: %s\n", __FILE__, __LINE__, \
                                #cond);                                                    \
                        abort();                                                           \
                }                                                                          \
        } while (0)

/* A NUL-terminated copy of n bytes (embedded NULs stay: C callers then see a prefix). */
static inline char *fuzz_strndup(const uint8_t *p, size_t n) {
        char *s = malloc(n + 1);
        if (!s)
                abort();
        memcpy(s, p, n);
        s[n] = 0;
        return s;
}

/* The next part of *data up to sep (or the end); the part's length in *ret_len. */
static inline const uint8_t *fuzz_split(const uint8_t **data, size_t *size, uint8_t sep,
                                        size_t *ret_len) {
        const uint8_t *p = *data, *e = *size ? memchr(p, sep, *size) : NULL;
        size_t n = e ? (size_t) (e - p) : *size;
        *ret_len = n;
        *data = p + n + (e ? 1 : 0);
        *size -= n + (e ? 1 : 0);
        return p;
}
