/* YAML to JSON for `mecapy flow push FILE.yaml` (docs/cli.md): one document of mappings,
 * sequences and scalars, read with libyaml's event parser and made into the same JSON
 * body a .json file gives. Plain scalars are typed by YAML 1.2's core schema (null,
 * true/false, integers, floats); quoted ones, and those tagged !!str, are strings.
 * Aliases are refused (an alias bomb would expand without bound), as are more than one
 * document, non-scalar keys, duplicate keys, .inf and .nan (JSON has neither), and
 * nesting deeper than MP_MAX_JSON_DEPTH. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/limits.h"
#include "cli/cli-internal.h"

static bool is_int(const char *s) {
        if (*s == '-' || *s == '+')
                s++;
        if (!*s)
                return false;
        for (; *s; s++)
                if (*s < '0' || *s > '9')
                        return false;
        return true;
}

static bool is_float(const char *s) {
        bool digits = false;

        if (*s == '-' || *s == '+')
                s++;
        for (; *s >= '0' && *s <= '9'; s++)
                digits = true;
        if (*s == '.')
                for (s++; *s >= '0' && *s <= '9'; s++)
                        digits = true;
        if (!digits)
                return false;
        if (*s == 'e' || *s == 'E') {
                s++;
                if (*s == '-' || *s == '+')
                        s++;
                if (*s < '0' || *s > '9')
                        return false;
                while (*s >= '0' && *s <= '9')
                        s++;
        }
        return *s == 0;
}

static bool one_of(const char *s, const char *const *list) {
        for (; *list; list++)
                if (!strcmp(s, *list))
                        return true;
        return false;
}

/* A scalar as JSON; NULL with err set when it has no JSON value. */
static json_t *scalar(const yaml_event_t *ev, char *err, size_t errsize) {
        const char *s = (const char *) ev->data.scalar.value, *tag = (const char *) ev->data.scalar.tag;
        static const char *const nulls[] = { "", "~", "null", "Null", "NULL", NULL };
        static const char *const trues[] = { "true", "True", "TRUE", NULL };
        static const char *const falses[] = { "false", "False", "FALSE", NULL };
        static const char *const specials[] = { ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf",
                                                "-.Inf", "-.INF", ".nan", ".NaN", ".NAN", NULL };

        if (strlen(s) != ev->data.scalar.length) {
                snprintf(err, errsize, "line %zu: a NUL byte in a scalar", ev->start_mark.line + 1);
                return NULL;
        }
        if (ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE || (tag && !strcmp(tag, YAML_STR_TAG)))
                return json_string(s);
        if (one_of(s, nulls))
                return json_null();
        if (one_of(s, trues))
                return json_true();
        if (one_of(s, falses))
                return json_false();
        if (one_of(s, specials)) {
                snprintf(err, errsize, "line %zu: %s has no JSON value", ev->start_mark.line + 1, s);
                return NULL;
        }
        if (is_int(s)) {
                errno = 0;
                long long v = strtoll(s, NULL, 10);
                if (errno == 0)
                        return json_integer(v);
        }
        if (is_float(s)) {
                double d = strtod(s, NULL);
                if (isfinite(d))
                        return json_real(d);
                snprintf(err, errsize, "line %zu: %s is out of range", ev->start_mark.line + 1, s);
                return NULL;
        }
        return json_string(s);
}

int mp_cli_yaml_load(const char *text, size_t len, json_t **ret, char *err, size_t errsize) {
        yaml_parser_t parser;
        json_t *stack[MP_MAX_JSON_DEPTH + 1];
        char *keys[MP_MAX_JSON_DEPTH + 1] = { 0 };
        json_t *root = NULL;
        int depth = 0, docs = 0, r = -EINVAL;
        bool done = false;

        err[0] = 0;
        if (!yaml_parser_initialize(&parser))
                return -ENOMEM;
        yaml_parser_set_input_string(&parser, (const unsigned char *) text, len);
        while (!done) {
                yaml_event_t ev;
                json_t *value = NULL;
                if (!yaml_parser_parse(&parser, &ev)) {
                        snprintf(err, errsize, "line %zu: %s", parser.problem_mark.line + 1,
                                 parser.problem ? parser.problem : "not YAML");
                        goto out;
                }
                switch (ev.type) {
                case YAML_STREAM_END_EVENT:
                        done = true;
                        break;
                case YAML_DOCUMENT_START_EVENT:
                        if (++docs > 1)
                                snprintf(err, errsize, "line %zu: one document only", ev.start_mark.line + 1);
                        break;
                case YAML_ALIAS_EVENT:
                        snprintf(err, errsize, "line %zu: aliases (*%s) are not supported", ev.start_mark.line + 1,
                                 (const char *) ev.data.alias.anchor);
                        break;
                case YAML_SCALAR_EVENT:
                        if (depth > 0 && json_is_object(stack[depth - 1]) && !keys[depth - 1]) {
                                if (strlen((const char *) ev.data.scalar.value) != ev.data.scalar.length) {
                                        snprintf(err, errsize, "line %zu: a NUL byte in a key", ev.start_mark.line + 1);
                                        break;
                                }
                                keys[depth - 1] = strdup((const char *) ev.data.scalar.value);
                                if (!keys[depth - 1])
                                        snprintf(err, errsize, "out of memory");
                                else if (json_object_get(stack[depth - 1], keys[depth - 1]))
                                        snprintf(err, errsize, "line %zu: the key \"%.64s\" twice",
                                                 ev.start_mark.line + 1, keys[depth - 1]);
                                break;
                        }
                        value = scalar(&ev, err, errsize);
                        break;
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT:
                        if (depth > 0 && json_is_object(stack[depth - 1]) && !keys[depth - 1]) {
                                snprintf(err, errsize, "line %zu: a key must be a scalar", ev.start_mark.line + 1);
                                break;
                        }
                        if (depth >= MP_MAX_JSON_DEPTH) {
                                snprintf(err, errsize, "line %zu: nested deeper than %d", ev.start_mark.line + 1,
                                         MP_MAX_JSON_DEPTH);
                                break;
                        }
                        stack[depth] = ev.type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
                        keys[depth] = NULL;
                        if (!stack[depth])
                                snprintf(err, errsize, "out of memory");
                        else
                                depth++;
                        break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                        value = stack[--depth];
                        break;
                default:
                        break;
                }
                yaml_event_delete(&ev);
                if (err[0]) {
                        json_decref(value);
                        goto out;
                }
                if (!value)
                        continue;
                if (depth == 0) {
                        root = value;
                        continue;
                }
                json_t *parent = stack[depth - 1];
                if (json_is_array(parent))
                        json_array_append_new(parent, value);
                else {
                        json_object_set_new(parent, keys[depth - 1], value);
                        free(keys[depth - 1]);
                        keys[depth - 1] = NULL;
                }
        }
        if (!root)
                snprintf(err, errsize, "an empty document");
        else {
                *ret = root;
                root = NULL;
                r = 0;
        }
out:
        for (int i = 0; i < depth; i++) {
                json_decref(stack[i]);
                free(keys[i]);
        }
        json_decref(root);
        yaml_parser_delete(&parser);
        return r;
}
