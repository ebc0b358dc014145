/* Fuzz target: the key=value operands of `mecapy run` (src/cli/cli-values.c):
 * mp_cli_parse_assignment and mp_cli_value_typed. The text is the user's own, but it is
 * often pasted from elsewhere. Input: one operand ("load=2.5", "m:={...}", "s==x"). */
#include "cli/cli-internal.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char *arg = fuzz_strndup(data, size), *key = NULL;
        json_t *value = NULL, *typed;
        struct mp_error err = { 0 };
        int r = mp_cli_parse_assignment(arg, &key, &value, &err);

        fuzz_check(r == 0 || r == -EINVAL || r == -ENOMEM);
        if (r == 0) {
                fuzz_check(key && *key && value);
                fuzz_check(strlen(key) < strlen(arg) && !strncmp(key, arg, strlen(key)));
                fuzz_check(mp_utf8_valid(key, strlen(key)));
                free(key);
                json_decref(value);
        } else
                fuzz_check(!key && !value);
        mp_error_clear(&err);
        /* NULL exactly when the text is not UTF-8; otherwise a value JSON can carry. */
        typed = mp_cli_value_typed(arg);
        fuzz_check(!typed == !mp_utf8_valid(arg, strlen(arg)));
        if (typed) {
                char *dumped = json_dumps(typed, JSON_ENCODE_ANY);
                fuzz_check(dumped);
                free(dumped);
        }
        json_decref(typed);
        free(arg);
        return 0;
}
