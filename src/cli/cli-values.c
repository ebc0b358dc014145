/* Typing of the key=value operands of `mecapy run`. */
#include <string.h>

#include "cli/cli-internal.h"

static json_t *parse_json(const char *text) {
        json_error_t jerr;
        /* JSON_DECODE_ANY: a bare 2.5 or true is a whole document here. */
        return json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
}

json_t *mp_cli_value_typed(const char *text) {
        json_t *v;

        /* Text that is not UTF-8 cannot travel as JSON: refuse it here, not later. */
        if (!mp_utf8_valid(text, strlen(text)))
                return NULL;
        if (strlen(text) > MP_MAX_INPUTS_BYTES)
                return json_string(text); /* the server refuses it with a clear message */
        v = parse_json(text);
        if (v)
                return v;
        /* Not JSON: the text itself, e.g. name=steel. */
        return json_string(text);
}

int mp_cli_parse_assignment(const char *arg, char **ret_key, json_t **ret_value,
                            struct mp_error *err) {
        const char *eq = strchr(arg, '=');
        _cleanup_free_ char *key = NULL;
        _cleanup_json_ json_t *value = NULL;
        size_t klen;

        if (!eq)
                return mp_error_set(err, EINVAL, 0, "usage",
                                    "'%s' is not key=value (also key:=json, key==text)", arg);
        klen = (size_t) (eq - arg);
        if (klen > 0 && arg[klen - 1] == ':') {
                /* key:=json */
                klen--;
                value = parse_json(eq + 1);
                if (!value)
                        return mp_error_set(err, EINVAL, 0, "usage",
                                            "'%s': the value after := is not valid JSON", arg);
        } else if (eq[1] == '=') {
                /* key==text */
                value = json_string(eq + 2);
                if (!value)
                        return mp_error_set(err, EINVAL, 0, "usage",
                                            "'%s': the value is not valid UTF-8", arg);
        } else {
                value = mp_cli_value_typed(eq + 1);
                if (!value)
                        return mp_error_set(err, EINVAL, 0, "usage",
                                            "'%s': the value is not valid UTF-8", arg);
        }
        if (klen == 0)
                return mp_error_set(err, EINVAL, 0, "usage", "'%s' has an empty key", arg);
        key = strndup(arg, klen);
        if (!key)
                return -ENOMEM;
        if (!mp_utf8_valid(key, klen))
                return mp_error_set(err, EINVAL, 0, "usage", "'%s': the key is not valid UTF-8",
                                    arg);
        *ret_key = TAKE_PTR(key);
        *ret_value = TAKE_PTR(value);
        return 0;
}
