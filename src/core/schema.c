/* Validation of a call's inputs against the JSON Schema that the analysis of the
 * handler's signature produced. The subset: type (a name or a list), properties,
 * required, additionalProperties, items, anyOf, enum. Every failure is reported with
 * its path ("inputs.loads[2]"), so one answer tells the caller all that is wrong. */
#include <math.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "core/core-internal.h"
#include "core/units.h"

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

/* ---- units: "x-unit" on a property (the analysis of the code put it there) */

static const char *article(const char *word) {
        return strchr("aeiou", word[0]) ? "an" : "a";
}

/* A parameter with a unit given as a quantity ("2.5 ft", {"value": 2.5, "unit": "ft"}):
 * its value in the declared unit replaces it in `inputs`. A plain number is already in
 * the declared unit. A wrong dimension or an unknown unit is an error at the path. */
static void convert_quantity(json_t *ps, const char *key, const char *declared, json_t *inputs, const char *path,
                             struct mp_error *err) {
        json_t *v = json_object_get(inputs, key);
        struct mp_unit want, got;
        char given[160], unit[160], want_dim[96], got_dim[96];
        double value, out;
        int q;

        if (!v || json_is_number(v) || mp_units_parse(declared, &want) < 0)
                return;
        q = mp_units_quantity(v, &value, unit, sizeof(unit));
        if (q == 0)
                return; /* not a quantity: the validation below says what it expected */
        mp_units_dimension_name(&want, declared, want_dim, sizeof(want_dim));
        if (q < 0) {
                mp_error_add_field(err, path, "expected a number (in %s) or a quantity like \"2.5 %s\"", declared,
                                   declared);
                return;
        }
        if (json_is_string(v))
                snprintf(given, sizeof(given), "%s", json_string_value(v));
        else
                snprintf(given, sizeof(given), "%.17g %s", value, unit);
        if (mp_units_parse(unit, &got) < 0) {
                mp_error_add_field(err, path, "unknown unit \"%s\" in \"%s\"; %s is %s %s (%s)", unit, given, key,
                                   article(want_dim), want_dim, declared);
                return;
        }
        if (!mp_units_same_dimension(&got, &want)) {
                mp_units_dimension_name(&got, unit, got_dim, sizeof(got_dim));
                mp_error_add_field(err, path, "%s is %s %s; %s is %s %s (%s)", given, article(got_dim), got_dim,
                                   key, article(want_dim), want_dim, declared);
                return;
        }
        out = mp_units_convert(value, &got, &want);
        if (!isfinite(out)) {
                mp_error_add_field(err, path, "%s is out of range in %s", given, declared);
                return;
        }
        /* An integer parameter keeps an integer when the conversion gives a whole number. */
        json_t *type = json_object_get(ps, "type");
        if (json_is_string(type) && !strcmp(json_string_value(type), "integer") && out > -9007199254740992.0 &&
            out < 9007199254740992.0 && (double) (json_int_t) out == out)
                json_object_set_new(inputs, key, json_integer((json_int_t) out));
        else
                json_object_set_new(inputs, key, json_real(out));
}

/* Convert every quantity; the number of errors added. */
static size_t convert_all(json_t *schema, json_t *inputs, struct mp_error *err) {
        json_t *props = json_object_get(schema, "properties"), *ps;
        size_t before = json_array_size(err->errors);
        const char *key;
        char path[320];

        if (!json_is_object(inputs))
                return 0;
        json_object_foreach(props, key, ps) {
                json_t *unit = json_object_get(ps, "x-unit");
                if (!json_is_string(unit))
                        continue;
                snprintf(path, sizeof(path), "inputs.%s", key);
                convert_quantity(ps, key, json_string_value(unit), inputs, path, err);
        }
        return json_array_size(err->errors) - before;
}

int mp_core_schema_convert(json_t *schema, json_t *inputs, struct mp_error *err) {
        convert_all(schema, inputs, err);
        return mp_core_validation_done(err, "inputs");
}

/* Each property's "x-unit" gains its "x-dimension". */
static void annotate(json_t *schema) {
        json_t *ps;
        const char *key;
        char dim[96];

        json_object_foreach(json_object_get(schema, "properties"), key, ps) {
                json_t *unit = json_object_get(ps, "x-unit");
                struct mp_unit u;
                if (json_is_string(unit) && mp_units_parse(json_string_value(unit), &u) == 0) {
                        mp_units_dimension_name(&u, json_string_value(unit), dim, sizeof(dim));
                        json_object_set_new(ps, "x-dimension", json_string(dim));
                }
        }
}

int mp_core_schema_units(json_t *analysis, struct mp_error *err) {
        json_t *u;
        size_t i;
        int bad = 0;

        json_array_foreach(json_object_get(analysis, "units"), i, u) {
                const char *unit = json_string_value(json_object_get(u, "unit"));
                const char *field = json_string_value(json_object_get(u, "field"));
                json_int_t line = json_integer_value(json_object_get(u, "line"));
                struct mp_unit parsed;
                if (unit && mp_units_parse(unit, &parsed) == 0)
                        continue;
                if (json_is_true(json_object_get(u, "docstring")) && field) {
                        /* "x: a value [optional]": a bracket in a docstring that names no
                         * unit is only text, not an error */
                        json_t *props = json_object_get(json_object_get(analysis, "input_schema"), "properties");
                        json_object_del(json_object_get(props, field), "x-unit");
                        continue;
                }
                mp_error_add_field(err, "code", "line %lld: unknown unit \"%s\" for %s", (long long) line,
                                   unit ? unit : "", field ? field : "a field");
                json_t *last = json_array_get(err->errors, json_array_size(err->errors) - 1);
                if (last)
                        json_object_set_new(last, "line", json_integer(line));
                bad++;
        }
        annotate(json_object_get(analysis, "input_schema"));
        annotate(json_object_get(analysis, "output_schema"));
        return bad;
}

int mp_core_schema_validate(json_t *schema, json_t *inputs, struct mp_error *err) {
        if (!json_is_object(inputs)) {
                mp_error_add_field(err, "inputs", "expected an object of parameters, got %s",
                                   json_type_name(inputs));
                return mp_core_validation_done(err, "inputs");
        }
        /* a quantity that does not convert is reported once, not again as "not a number";
         * the other fields are validated all the same */
        size_t before = json_array_size(err->errors), added = convert_all(schema, inputs, err);
        struct mp_error rest = { 0 };
        json_t *e, *c;
        size_t i, k;
        validate(schema, inputs, "inputs", 0, &rest);
        json_array_foreach(rest.errors, i, e) {
                const char *path = json_string_value(json_object_get(e, "path"));
                bool dup = false;
                for (k = before; k < before + added && (c = json_array_get(err->errors, k)); k++)
                        dup |= path && !strcmp(path, json_string_value(json_object_get(c, "path")) ?: "");
                if (!dup)
                        mp_error_add_field(err, path ? path : "inputs", "%s",
                                           json_string_value(json_object_get(e, "message")) ?: "");
        }
        mp_error_clear(&rest);
        return mp_core_validation_done(err, "inputs");
}

/* ---- checks: named pass/fail criteria a result declares */

json_t *mp_core_result_checks(json_t *result) {
        json_t *out = json_array(), *c;
        size_t i;

        if (!out)
                return NULL;
        json_array_foreach(json_object_get(result, "checks"), i, c) {
                json_t *name = json_object_get(c, "name"), *value = json_object_get(c, "value");
                json_t *limit = json_object_get(c, "limit"), *unit = json_object_get(c, "unit");
                if (json_array_size(out) >= MP_MAX_CHECKS)
                        break;
                if (!json_is_string(name) || !json_is_number(value) || !json_is_number(limit))
                        continue; /* not a check: the result still shows it as it is */
                double v = json_number_value(value), l = json_number_value(limit);
                double u = l != 0 ? v / l : NAN;
                json_t *one = json_pack("{s:O,s:O,s:O,s:O}", "name", name, "value", value, "limit", limit, "unit",
                                        json_is_string(unit) ? unit : json_null());
                if (!one)
                        continue;
                json_object_set_new(one, "utilisation", isfinite(u) ? json_real(u) : json_null());
                json_object_set_new(one, "passed", json_boolean(isfinite(u) && u <= 1.0));
                json_array_append_new(out, one);
        }
        return out;
}

void mp_core_governing_check(json_t *outputs, json_t *checks) {
        json_t *c, *worst = NULL;
        size_t i;

        if (!json_is_object(outputs) || !json_array_size(checks))
                return;
        /* the highest utilisation governs; one without any (a limit of 0) governs all */
        json_array_foreach(checks, i, c) {
                json_t *u = json_object_get(c, "utilisation");
                json_t *wu = worst ? json_object_get(worst, "utilisation") : NULL;
                if (!worst || (!json_is_number(u) && json_is_number(wu)) ||
                    (json_is_number(u) && json_is_number(wu) && json_number_value(u) > json_number_value(wu)))
                        worst = c;
        }
        json_object_set(outputs, "check.governing", json_object_get(worst, "name"));
        json_object_set(outputs, "check.utilisation", json_object_get(worst, "utilisation"));
        json_object_set(outputs, "check.passed", json_object_get(worst, "passed"));
}

/* The unit of a study column: "result.x" from the output schema, an input name from
 * the input schema. NULL when it has none. */
static const char *column_unit(json_t *ver, const char *column) {
        json_t *schema = json_object_get(ver, "input_schema");
        if (!strncmp(column, "result.", 7)) {
                schema = json_object_get(ver, "output_schema");
                column += 7;
        }
        return json_string_value(json_object_get(json_object_get(json_object_get(schema, "properties"), column),
                                                 "x-unit"));
}

json_t *mp_core_study_units(json_t *ver, json_t *inputs, json_t *outputs) {
        json_t *out = json_object(), *v;
        size_t i;

        if (!out)
                return NULL;
        json_array_foreach(inputs, i, v)
                if (json_is_string(v) && column_unit(ver, json_string_value(v)))
                        json_object_set_new(out, json_string_value(v),
                                            json_string(column_unit(ver, json_string_value(v))));
        json_array_foreach(outputs, i, v)
                if (json_is_string(v) && !strncmp(json_string_value(v), "result.", 7) &&
                    column_unit(ver, json_string_value(v)))
                        json_object_set_new(out, json_string_value(v),
                                            json_string(column_unit(ver, json_string_value(v))));
        return out;
}
