/* Fuzz target: the text checks of src/base/util.c that every request passes through:
 * mp_utf8_valid, mp_utf8_sanitize (program output shown as JSON text), mp_id_valid (ids
 * in URLs), mp_parse_long (numbers in query strings and headers). Input: any bytes. */
#include <jansson.h>
#include <limits.h>

#include "base/util.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        const char *s = (const char *) data;
        bool valid = mp_utf8_valid(s, size);
        size_t out_len = 0;
        char *out = mp_utf8_sanitize(s, size, &out_len);
        char *z;
        long v;

        fuzz_check(out);
        /* The promise of sanitize: valid UTF-8 without NUL, the input itself when it was
         * valid already, and something jansson accepts as a string. */
        fuzz_check(mp_utf8_valid(out, out_len));
        fuzz_check(strlen(out) == out_len);
        if (valid)
                fuzz_check(out_len == size && memcmp(out, data, size) == 0);
        json_t *j = json_stringn(out, out_len);
        fuzz_check(j);
        json_decref(j);
        /* What jansson calls valid UTF-8 (NUL aside), mp_utf8_valid does too. */
        if (!memchr(data, 0, size) && (j = json_stringn(s, size))) {
                fuzz_check(valid);
                json_decref(j);
        }
        free(out);

        z = fuzz_strndup(data, size);
        if (mp_id_valid(z)) {
                fuzz_check(strlen(z) == MP_ID_LEN);
                fuzz_check(z[8] == '-' && z[13] == '-' && z[18] == '-' && z[23] == '-');
        }
        if (mp_parse_long(z, -1000, 1000, &v) == 0)
                fuzz_check(v >= -1000 && v <= 1000);
        if (mp_parse_long(z, 0, LONG_MAX, &v) == 0)
                fuzz_check(v >= 0);
        free(z);
        return 0;
}
