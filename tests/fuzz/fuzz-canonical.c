/* Fuzz target: canonical JSON and the result cache key (src/core/canonical.c), fed with
 * the inputs of calls (HTTP bodies). The promise: the canonical text is JSON that reads
 * back to a value whose canonical text is the same bytes, so the key of a value and of
 * its canonical form agree. Input: a JSON value. */
#include <jansson.h>

#include "core/flow.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        json_t *v = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL), *back;
        char *text = NULL, *again = NULL, k1[MP_CACHE_KEY_HEX_LEN + 1], k2[MP_CACHE_KEY_HEX_LEN + 1];
        struct mp_error err = { 0 };
        size_t len = 0, len2 = 0;
        int r;

        if (!v)
                return 0;
        r = mp_canonical_dump(v, &text, &len, &err);
        fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM);
        fuzz_check(r == 0 || err.message[0]);
        mp_error_clear(&err);
        if (r == 0) {
                fuzz_check(strlen(text) <= len); /* NULs only inside escapes: none raw */
                fuzz_check(strlen(text) == len);
                back = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
                fuzz_check(back != NULL);
                fuzz_check(mp_canonical_dump(back, &again, &len2, &err) == 0);
                fuzz_check(len == len2 && !memcmp(text, again, len));
                fuzz_check(mp_cache_key("v", "e", v, k1, &err) == 0);
                fuzz_check(mp_cache_key("v", "e", back, k2, &err) == 0);
                fuzz_check(!strcmp(k1, k2) && strlen(k1) == MP_CACHE_KEY_HEX_LEN);
                json_decref(back);
        }
        free(text);
        free(again);
        json_decref(v);
        return 0;
}
