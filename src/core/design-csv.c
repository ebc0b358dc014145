/* A list design from CSV text (RFC 4180): what engineers export from a spreadsheet. The
 * parser reads the text once, field by field, and stops at the first problem, named by
 * line and column (the field's number and its header), since a person fixes a CSV in an
 * editor that shows lines. Sizes are capped before anything grows. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "base/util.h"
#include "core/flow.h"

struct csv {
        const char *p, *end;
        size_t line;             /* of the current position, from 1 */
        json_t *header;          /* the names, a list of strings */
        struct mp_error *err;
};

static int csv_error(struct csv *c, size_t line, size_t column, const char *fmt, ...) _printf_(4, 5);
static int csv_error(struct csv *c, size_t line, size_t column, const char *fmt, ...) {
        const char *name = json_string_value(json_array_get(c->header, column - 1));
        char what[256], where[64 + MP_MAX_NAME_LEN];
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        if (name)
                snprintf(where, sizeof(where), "line %zu, column %zu (\"%.*s\")", line, column,
                         MP_MAX_NAME_LEN, name);
        else
                snprintf(where, sizeof(where), "line %zu, column %zu", line, column);
        mp_error_add_field(c->err, "csv", "%s: %s", where, what);
        return mp_error_set(c->err, EINVAL, 422, "validation", "CSV %s: %s", where, what);
}

/* A field's value: a number or a boolean when unquoted text reads as one, a string
 * otherwise; NULL for an empty unquoted field (the parameter is left out). */
static json_t *field_value(const char *s, size_t n, bool quoted) {
        char buf[64], *endp;

        if (quoted)
                return json_stringn(s, n);
        while (n && (*s == ' ' || *s == '\t'))
                s++, n--;
        while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
                n--;
        if (n == 0)
                return NULL;
        if (n == 4 && !memcmp(s, "true", 4))
                return json_true();
        if (n == 5 && !memcmp(s, "false", 5))
                return json_false();
        /* Numbers: digits, signs, a point and an exponent only, so strtod's "inf", "nan"
         * and hexadecimal forms stay strings. The field is not NUL-terminated: copy it. */
        if (n < sizeof(buf)) {
                memcpy(buf, s, n);
                buf[n] = 0;
        }
        if (n < sizeof(buf) && strspn(buf, "0123456789+-.eE") == n && strpbrk(buf, "0123456789")) {
                size_t sign = buf[0] == '-' || buf[0] == '+';
                if (strspn(buf + sign, "0123456789") == n - sign) {
                        long long ll;
                        errno = 0;
                        ll = strtoll(buf, &endp, 10);
                        if (!errno && !*endp)
                                return json_integer(ll);
                }
                errno = 0;
                double d = strtod(buf, &endp);
                if (!*endp && !errno && d == d && d - d == 0)
                        return json_real(d);
        }
        return json_stringn(s, n);
}

/* One field from c->p: its bytes in *ret (a new JSON value, or NULL when empty), and
 * whether the record ends after it. */
static int read_field(struct csv *c, size_t column, bool raw, json_t **ret, bool *ret_last) {
        const char *start = c->p;
        size_t line = c->line;
        bool quoted = c->p < c->end && *c->p == '"';
        _cleanup_free_ char *buf = NULL;
        size_t n = 0;

        if (quoted) {
                if (!(buf = malloc(MP_MAX_CSV_FIELD_BYTES)))
                        return -ENOMEM;
                for (c->p++;; c->p++) {
                        if (c->p >= c->end)
                                return csv_error(c, line, column, "%s", "a quoted field is not closed");
                        if (*c->p == '"') {
                                if (c->p + 1 < c->end && c->p[1] == '"')
                                        c->p++;
                                else
                                        break;
                        }
                        if (*c->p == '\n')
                                c->line++;
                        if (n == MP_MAX_CSV_FIELD_BYTES)
                                return csv_error(c, line, column, "a field is longer than %u bytes",
                                                 MP_MAX_CSV_FIELD_BYTES);
                        buf[n++] = *c->p;
                }
                c->p++; /* the closing quote */
                start = buf;
        } else {
                while (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r') {
                        if (*c->p == '"')
                                return csv_error(c, line, column, "%s",
                                                 "a quote inside an unquoted field (quote the whole field, "
                                                 "and double the quotes in it)");
                        c->p++;
                }
                n = (size_t) (c->p - start);
                if (n > MP_MAX_CSV_FIELD_BYTES)
                        return csv_error(c, line, column, "a field is longer than %u bytes",
                                         MP_MAX_CSV_FIELD_BYTES);
        }
        if (!mp_utf8_valid(start, n))
                return csv_error(c, line, column, "%s", "a field is not valid UTF-8 text (or holds a NUL byte)");
        if (c->p < c->end && *c->p == '\r' && (c->p + 1 >= c->end || c->p[1] != '\n'))
                return csv_error(c, line, column, "%s", "a carriage return that does not end a line");
        if (c->p < c->end && *c->p != ',' && *c->p != '\n' && *c->p != '\r')
                return csv_error(c, line, column, "%s", "text after the closing quote of a field");
        *ret_last = c->p >= c->end || *c->p != ',';
        if (c->p < c->end) {
                if (*c->p == '\r')
                        c->p++;
                if (*c->p == '\n')
                        c->line++;
                c->p++;
        }
        *ret = raw ? json_stringn(start, n) : field_value(start, n, quoted);
        return 0;
}

/* One record into a new list (empty fields as JSON null); raw: every field a string. */
static int read_record(struct csv *c, bool raw, json_t **ret) {
        _cleanup_json_ json_t *fields = json_array();
        bool last = false;
        int r;

        if (!fields)
                return -ENOMEM;
        while (!last) {
                json_t *v = NULL;
                if (json_array_size(fields) >= MP_MAX_CSV_COLUMNS)
                        return csv_error(c, c->line, json_array_size(fields) + 1, "more than %d columns",
                                         MP_MAX_CSV_COLUMNS);
                if ((r = read_field(c, json_array_size(fields) + 1, raw, &v, &last)) < 0)
                        return r;
                json_array_append_new(fields, v ? v : json_null());
        }
        *ret = TAKE_PTR(fields);
        return 0;
}

static int read_header(struct csv *c, size_t line) {
        json_t *name;
        size_t i;
        int r;

        if ((r = read_record(c, true, &c->header)) < 0)
                return r;
        json_array_foreach(c->header, i, name) {
                const char *s = json_string_value(name);
                if (!s || !*s || strlen(s) > MP_MAX_NAME_LEN)
                        return csv_error(c, line, i + 1, "a header must name a parameter (1 to %d bytes)",
                                         MP_MAX_NAME_LEN);
                for (size_t k = 0; k < i; k++)
                        if (!strcmp(s, json_string_value(json_array_get(c->header, k))))
                                return csv_error(c, line, i + 1, "%s", "a header names a parameter twice");
        }
        return 0;
}

int mp_design_csv(const char *text, size_t len, json_t **ret, struct mp_error *err) {
        struct csv c = { .p = text, .end = text + len, .line = 1, .err = err };
        _cleanup_json_ json_t *points = json_array(), *header = NULL;
        int r;

        if (!points)
                return -ENOMEM;
        if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
                c.p += 3; /* a byte order mark, as spreadsheets write */
        while (c.p < c.end && (*c.p == '\n' || *c.p == '\r')) {
                c.line += *c.p == '\n';
                c.p++;
        }
        if (c.p >= c.end)
                return mp_error_set(err, EINVAL, 422, "validation", "the CSV has no header line");
        r = read_header(&c, c.line);
        header = c.header;
        if (r < 0)
                return r;
        while (c.p < c.end) {
                _cleanup_json_ json_t *fields = NULL, *point = NULL;
                size_t line = c.line, i;
                json_t *v;

                if (*c.p == '\n' || (*c.p == '\r' && c.p + 1 < c.end && c.p[1] == '\n')) {
                        c.p += *c.p == '\r' ? 2 : 1; /* blank lines are skipped */
                        c.line++;
                        continue;
                }
                if (json_array_size(points) >= MP_MAX_STUDY_POINTS)
                        return csv_error(&c, line, 1, "more than %d rows (the limit of points in a study)",
                                         MP_MAX_STUDY_POINTS);
                if ((r = read_record(&c, false, &fields)) < 0)
                        return r;
                if (json_array_size(fields) != json_array_size(header)) {
                        char detail[96];
                        snprintf(detail, sizeof(detail), "the line has %zu fields, the header %zu",
                                 json_array_size(fields), json_array_size(header));
                        return csv_error(&c, line, MP_MIN(json_array_size(fields), json_array_size(header)) + 1,
                                         "%s", detail);
                }
                if (!(point = json_object()))
                        return -ENOMEM;
                json_array_foreach(fields, i, v)
                        if (!json_is_null(v))
                                json_object_set(point, json_string_value(json_array_get(header, i)), v);
                json_array_append_new(points, TAKE_PTR(point));
        }
        if (json_array_size(points) == 0)
                return mp_error_set(err, EINVAL, 422, "validation", "the CSV has a header but no points");
        *ret = TAKE_PTR(points);
        return 0;
}
