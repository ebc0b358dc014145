/* Fuzz target: the .xlsx reader of list designs (src/core/xlsx-read.c), fed with the raw
 * body of POST /studies when it is an .xlsx upload. Input: the file's bytes. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mp_error err = { 0 };
        char *csv = NULL;
        size_t len = 0;
        int r = mp_xlsx_to_csv((const char *) data, size, &csv, &len, &err);

        fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM);
        fuzz_check(r == 0 || (err.status == 422 && err.message[0]) || r == -ENOMEM);
        fuzz_check((r == 0) == (csv != NULL));
        fuzz_check(!csv || strlen(csv) <= len);
        mp_error_clear(&err);
        free(csv);
        return 0;
}
