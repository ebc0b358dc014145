/* Fuzz target: the pagination cursor (cursor_decode in src/store/store-sql.h), which a
 * client sends back in ?cursor=, and the other text helpers of that header that see
 * user text (like_pattern for catalogue searches, text_json for logs). The header is
 * all static inline: included here as the backends include it.
 * Input: the cursor text. */
#include <jansson.h>

#include "store/store-sql.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *c = fuzz_strndup(data, size), *pat = NULL;
        char id[CURSOR_MAX_ID + 1];
        struct mp_error err = { 0 };
        int64_t t = -1;

        if (cursor_decode(c, &t, id, &err) == 0) {
                /* What decodes, encodes back to a cursor that decodes the same. */
                char id2[CURSOR_MAX_ID + 1];
                int64_t t2;
                char *again = cursor_encode(t, id);
                fuzz_check(t >= 0 && strlen(id) >= 1 && strlen(id) <= CURSOR_MAX_ID);
                fuzz_check(again);
                fuzz_check(cursor_decode(again, &t2, id2, NULL) == 0);
                fuzz_check(t2 == t && !strcmp(id, id2));
                free(again);
        } else
                fuzz_check(err.status == 422);
        mp_error_clear(&err);

        if (like_pattern("%", c, "%", &pat) == 0) {
                fuzz_check(pat && pat[0] == '%');
                free(pat);
        }
        json_t *j = text_json((const char *) data, size);
        fuzz_check(j && json_is_string(j));
        fuzz_check(mp_utf8_valid(json_string_value(j), strlen(json_string_value(j))));
        json_decref(j);
        free(c);
        return 0;
}
