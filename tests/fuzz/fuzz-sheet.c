/* Fuzz target: what a calculation sheet makes of user text (src/core/sheet.c): the
 * docstring scanner over a version's code and the Markdown renderer. Input: code whose
 * handler is "main". The page must never hold markup the text did not come from: no
 * "<script", no "<a ", no "<img" (figures are the sheet's own, not the docstring's). */
#include "../../src/core/sheet.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *code = strndup((const char *) data, size);
        struct sheet s = { 0 };

        if (!code)
                return 0;
        char *doc = docstring_of(code, "main");
        markdown(&s, doc ? doc : code);
        if (s.b.data) {
                mp_buf_append(&s.b, "", 1);
                fuzz_check(!strstr(s.b.data, "<script") && !strstr(s.b.data, "<a ") && !strstr(s.b.data, "<img"));
        }
        mp_buf_free(&s.b);
        free(doc);
        free(code);
        return 0;
}
