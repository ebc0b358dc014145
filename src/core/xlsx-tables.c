/* The tables that download as .xlsx: a task's tabular result and a study's results. */
#include <string.h>

#include "base/json.h"
#include "core/core-internal.h"

#define STUDY_PAGE 1000 /* points read per store call */

static const char *unit_in(json_t *schema, const char *key) {
        return json_string_value(json_object_get(json_object_get(json_object_get(schema, "properties"), key),
                                                 "x-unit"));
}

static bool has_string(json_t *arr, const char *s) {
        size_t i;
        json_t *v;
        json_array_foreach(arr, i, v)
                if (!strcmp(json_string_value(v), s))
                        return true;
        return false;
}

static int finish(struct mp_xlsx *x, int r, char **ret, size_t *ret_len, struct mp_error *err) {
        if (r >= 0)
                r = mp_xlsx_finish(x, ret, ret_len);
        mp_xlsx_free(x);
        if (r == -EFBIG)
                return mp_error_set(err, EFBIG, 413, "too_large", "the table is larger than a spreadsheet holds");
        if (r < 0)
                return mp_error_set(err, -r, 500, "internal", "the spreadsheet could not be written");
        return 0;
}

int mp_core_task_xlsx(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                      size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *task = NULL, *result = NULL, *columns = json_array(), *header = json_array(),
                              *ver = NULL;
        struct mp_xlsx *x = NULL;
        json_t *row, *v;
        const char *k;
        size_t i;
        int r;

        if (!columns || !header)
                return -ENOMEM;
        if ((r = mp_core_task_get(core, p, id, &task, NULL, err)) < 0)
                return r;
        json_t *rj = json_object_get(task, "result_json");
        if (json_is_string(rj))
                result = json_loadb(json_string_value(rj), json_string_length(rj), JSON_DECODE_ANY, NULL);
        bool table = json_is_array(result);
        json_array_foreach(result, i, row)
                table &= json_is_object(row);
        if (!table)
                return mp_error_set(err, EINVAL, 406, "not_acceptable", "task %s has no tabular result (a list of "
                                    "row objects) to give as a spreadsheet", id);
        json_array_foreach(result, i, row)
                json_object_foreach(row, k, v)
                        if (!has_string(columns, k))
                                json_array_append_new(columns, json_string(k));
        _cleanup_error_ struct mp_error verr = { 0 };
        (void) MP_STORE(core->store)->function_get_version(core->store,
                        json_string_value(json_object_get(task, "function_id")) ?: "",
                        (int) json_integer_value(json_object_get(task, "version")), &ver, &verr);
        /* A list result's columns are its items' properties. */
        json_t *items = json_object_get(json_object_get(ver, "output_schema"), "items");
        json_array_foreach(columns, i, v)
                json_array_append_new(header, mp_xlsx_header_cell(json_string_value(v),
                                                                  unit_in(items, json_string_value(v))));
        if ((r = mp_xlsx_new(core->scratch, "result", &x)) < 0)
                return r;
        r = mp_xlsx_row(x, header, true);
        json_array_foreach(result, i, row) {
                _cleanup_json_ json_t *cells = json_array();
                size_t j;
                if (r < 0 || !cells)
                        break;
                json_array_foreach(columns, j, v)
                        json_array_append(cells, json_object_get(row, json_string_value(v)) ?: json_null());
                r = mp_xlsx_row(x, cells, false);
        }
        return finish(x, r, ret, ret_len, err);
}

int mp_core_study_xlsx(struct mp_core *core, const struct mp_principal *p, const char *id, char **ret,
                       size_t *ret_len, struct mp_error *err) {
        _cleanup_json_ json_t *study = NULL, *columns = json_array(), *header = json_array(), *ver = NULL;
        struct mp_xlsx *x = NULL;
        int64_t after = -1;
        const char *k;
        json_t *v;
        size_t i;
        int r;

        if (!columns || !header)
                return -ENOMEM;
        if ((r = mp_core_study_get(core, p, id, &study, err)) < 0)
                return r;
        /* The columns as the CSV export has them: the inputs the points hold, first
         * seen first, then the fixed ones. */
        for (;;) {
                _cleanup_json_ json_t *rows = NULL;
                json_t *row;
                if ((r = mp_core_study_points(core, p, id, after, STUDY_PAGE, NULL, &rows, err)) < 0)
                        return r;
                json_array_foreach(rows, i, row) {
                        json_object_foreach(json_object_get(row, "inputs"), k, v)
                                if (!has_string(columns, k) && !json_object_get(json_object_get(study, "fixed"), k))
                                        json_array_append_new(columns, json_string(k));
                        after = json_integer_value(json_object_get(row, "point_index"));
                }
                if (json_array_size(rows) < STUDY_PAGE)
                        break;
        }
        json_object_foreach(json_object_get(study, "fixed"), k, v)
                json_array_append_new(columns, json_string(k));
        json_t *target = json_object_get(study, "target");
        _cleanup_error_ struct mp_error verr = { 0 };
        if (json_is_string(json_object_get(target, "function_id")))
                (void) MP_STORE(core->store)->function_get_version(core->store,
                                json_string_value(json_object_get(target, "function_id")),
                                (int) json_integer_value(json_object_get(target, "version")), &ver, &verr);
        json_array_append_new(header, json_string("index"));
        json_array_foreach(columns, i, v)
                json_array_append_new(header, mp_xlsx_header_cell(json_string_value(v),
                                                                  unit_in(json_object_get(ver, "input_schema"),
                                                                          json_string_value(v))));
        json_t *outputs = json_object_get(study, "outputs");
        json_array_foreach(outputs, i, v) {
                const char *path = json_string_value(v) ?: "";
                const char *top = !strncmp(path, "result.", 7) ? path + 7 : NULL;
                json_array_append_new(header, mp_xlsx_header_cell(path, top && !strchr(top, '.') && !strchr(top, '[')
                                                                                ? unit_in(json_object_get(ver, "output_schema"), top)
                                                                                : NULL));
        }
        json_array_append_new(header, json_string("status"));
        json_array_append_new(header, json_string("error"));
        if ((r = mp_xlsx_new(core->scratch, "results", &x)) < 0)
                return r;
        r = mp_xlsx_row(x, header, true);
        after = -1;
        while (r >= 0) {
                _cleanup_json_ json_t *rows = NULL;
                json_t *row;
                if ((r = mp_core_study_points(core, p, id, after, STUDY_PAGE, NULL, &rows, err)) < 0) {
                        mp_xlsx_free(x);
                        return r;
                }
                json_array_foreach(rows, i, row) {
                        _cleanup_json_ json_t *cells = json_array();
                        json_t *inputs = json_object_get(row, "inputs"), *outs = json_object_get(row, "outputs");
                        json_t *e = json_object_get(row, "error");
                        const char *st = json_string_value(json_object_get(row, "status"));
                        size_t j;
                        json_t *c;
                        if (!cells) {
                                r = -ENOMEM;
                                break;
                        }
                        json_array_append(cells, json_object_get(row, "point_index"));
                        json_array_foreach(columns, j, c)
                                json_array_append(cells, json_object_get(inputs, json_string_value(c)) ?: json_null());
                        json_array_foreach(outputs, j, c)
                                json_array_append(cells, json_object_get(outs, json_string_value(c)) ?: json_null());
                        json_array_append_new(cells, json_string(!st || !strcmp(st, "started") ? "running" : st));
                        if (json_is_object(e)) {
                                char text[1200];
                                const char *type = json_string_value(json_object_get(e, "type"));
                                const char *msg = json_string_value(json_object_get(e, "message"));
                                snprintf(text, sizeof(text), "%s%s%s", type ?: "", type && msg ? ": " : "", msg ?: "");
                                json_array_append_new(cells, json_string(text));
                        }
                        after = json_integer_value(json_object_get(row, "point_index"));
                        if ((r = mp_xlsx_row(x, cells, false)) < 0)
                                break;
                }
                if (json_array_size(rows) < STUDY_PAGE)
                        break;
        }
        return finish(x, r, ret, ret_len, err);
}
