/* Validation of a call's inputs against the JSON Schema that the analysis of the
 * handler's signature produced. The subset: type (a name or a list), properties,
 * required, additionalProperties, items, anyOf, enum. Every failure is reported with
 * its path ("inputs.loads[2]"), so one answer tells the caller all that is wrong. */
#include <math.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "core/core-internal.h"

static const char *json_type_name(json_t *v) {
        switch (json_typeof(v)) {
        case JSON_OBJECT: return "an object";
        case JSON_ARRAY: return "a list";
        case JSON_STRING: return "a string";
        case JSON_INTEGER: return "an integer";
        case JSON_REAL: return "a number";
        case JSON_TRUE:
        case JSON_FALSE: return "a boolean";
        default: return "null";
        }
}

static bool type_matches(const char *t, json_t *v) {
        if (!strcmp(t, "number"))
                return json_is_number(v);
        if (!strcmp(t, "integer"))
                return json_is_integer(v);
        if (!strcmp(t, "string"))
                return json_is_string(v);
        if (!strcmp(t, "boolean"))
                return json_is_boolean(v);
        if (!strcmp(t, "array"))
                return json_is_array(v);
        if (!strcmp(t, "object"))
                return json_is_object(v);
        if (!strcmp(t, "null"))
                return json_is_null(v);
        return true; /* an unknown type name constrains nothing */
}

static void validate(json_t *schema, json_t *v, const char *path, int depth, struct mp_error *err);

/* Silent check used by anyOf: does v match without adding errors? */
static bool matches(json_t *schema, json_t *v, int depth) {
        struct mp_error tmp = { 0 };
        bool ok;
        validate(schema, v, "", depth, &tmp);
        ok = !tmp.errors;
        mp_error_clear(&tmp);
        return ok;
}

static void validate(json_t *schema, json_t *v, const char *path, int depth, struct mp_error *err) {
        json_t *type, *e;
        char sub[512];
        size_t i;

        if (!json_is_object(schema))
                return;
        if (depth > MP_MAX_JSON_DEPTH) {
                mp_error_add_field(err, path, "is nested deeper than %d levels", MP_MAX_JSON_DEPTH);
                return;
        }
        type = json_object_get(schema, "type");
        if (json_is_string(type) && !type_matches(json_string_value(type), v)) {
                mp_error_add_field(err, path, "expected %s%s, got %s",
                                   strchr("aeiou", json_string_value(type)[0]) ? "an " : "a ",
                                   json_string_value(type), json_type_name(v));
                return;
        }
        if (json_is_array(type)) {
                bool any = false;
                json_array_foreach(type, i, e)
                        any |= json_is_string(e) && type_matches(json_string_value(e), v);
                if (!any) {
                        _cleanup_free_ char *names = mp_json_dumps(type, JSON_COMPACT);
                        mp_error_add_field(err, path, "expected one of the types %s, got %s", names,
                                           json_type_name(v));
                        return;
                }
        }
        if (json_is_real(v) && !isfinite(json_real_value(v))) {
                mp_error_add_field(err, path, "must be a finite number");
                return;
        }
        if ((e = json_object_get(schema, "enum")) && json_is_array(e)) {
                bool found = false;
                json_t *x;
                json_array_foreach(e, i, x)
                        found |= json_equal(x, v);
                if (!found) {
                        _cleanup_free_ char *names = mp_json_dumps(e, JSON_COMPACT);
                        mp_error_add_field(err, path, "must be one of %s", names ? names : "the allowed values");
                        return;
                }
        }
        if ((e = json_object_get(schema, "anyOf")) && json_is_array(e)) {
                bool any = false;
                json_t *alt;
                json_array_foreach(e, i, alt)
                        if (!any && matches(alt, v, depth + 1))
                                any = true;
                if (!any) {
                        /* Report against the first non-null alternative: it is the one a
                         * person meant (Optional[float] -> "expected a number"). */
                        json_array_foreach(e, i, alt) {
                                json_t *t = json_object_get(alt, "type");
                                if (!(json_is_string(t) && !strcmp(json_string_value(t), "null"))) {
                                        validate(alt, v, path, depth + 1, err);
                                        return;
                                }
                        }
                        mp_error_add_field(err, path, "matches none of the allowed shapes");
                        return;
                }
        }
        if (json_is_object(v)) {
                json_t *props = json_object_get(schema, "properties");
                json_t *req = json_object_get(schema, "required");
                json_t *addl = json_object_get(schema, "additionalProperties");
                const char *key;
                json_t *val;

                json_array_foreach(req, i, e) {
                        if (json_is_string(e) && !json_object_get(v, json_string_value(e))) {
                                snprintf(sub, sizeof(sub), "%s.%s", path, json_string_value(e));
                                mp_error_add_field(err, sub, "is required");
                        }
                }
                json_object_foreach(v, key, val) {
                        json_t *ps = json_object_get(props, key);
                        snprintf(sub, sizeof(sub), "%s.%s", path, key);
                        if (ps)
                                validate(ps, val, sub, depth + 1, err);
                        else if (json_is_false(addl))
                                mp_error_add_field(err, sub, "is not a parameter of this function");
                        else if (json_is_object(addl))
                                validate(addl, val, sub, depth + 1, err);
                }
        }
        if (json_is_array(v) && (e = json_object_get(schema, "items"))) {
                json_t *item;
                json_array_foreach(v, i, item) {
                        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                        validate(e, item, sub, depth + 1, err);
                }
        }
}

int mp_core_schema_validate(json_t *schema, json_t *inputs, struct mp_error *err) {
        if (!json_is_object(inputs)) {
                mp_error_add_field(err, "inputs", "expected an object of parameters, got %s",
                                   json_type_name(inputs));
                return mp_core_validation_done(err, "inputs");
        }
        validate(schema, inputs, "inputs", 0, err);
        return mp_core_validation_done(err, "inputs");
}
