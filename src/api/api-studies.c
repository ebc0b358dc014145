/* api/: parameter studies. POST /studies takes a JSON study or, with Content-Type
 * text/csv, a CSV list design whose other fields come from the query (function,
 * version, name, outputs, concurrency, fixed). Results come as JSON pages, or with
 * Accept: text/csv as a CSV streamed a page of points at a time (an MHD callback), so
 * a 100,000-point table is never held whole. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "base/json.h"
#include "api/api-guard.h"
#include "api/api-sheets.h"
#include "api/api-studies.h"
#include "base/limits.h"
#include "base/log.h"
#include "store/store.h"

#define CSV_PAGE 1000 /* points read per store call while streaming */

static bool is_csv(const char *type) {
        return type && !strncasecmp(type, "text/csv", 8) && (!type[8] || type[8] == ';' || type[8] == ' ');
}

/* The study fields of a CSV upload, from the query. */
static int csv_study_body(struct mp_route_ctx *c, json_t **ret) {
        _cleanup_json_ json_t *body = json_object(), *target = json_object();
        const char *fn = mp_route_query(c, "function"), *v;
        long n;

        if (!body || !target)
                return -ENOMEM;
        if (!fn) {
                mp_error_add_field(&c->err, "function", "is required with a CSV body (?function=name or id)");
                return mp_error_set(&c->err, EINVAL, 422, "validation",
                                    "a CSV study names its function in the query: ?function=NAME");
        }
        json_object_set_new(target, "function", json_string(fn));
        if (mp_route_query(c, "version")) {
                if (mp_route_query_int(c, "version", 1, 1L << 30, 0, &n) < 0)
                        return -EINVAL;
                json_object_set_new(target, "version", json_integer(n));
        }
        json_object_set(body, "target", target);
        if ((v = mp_route_query(c, "name")))
                json_object_set_new(body, "name", json_string(v));
        if ((v = mp_route_query(c, "notes")))
                json_object_set_new(body, "notes", json_string(v));
        if (mp_route_query(c, "concurrency")) {
                if (mp_route_query_int(c, "concurrency", 1, MP_MAX_STUDY_CONCURRENCY, 0, &n) < 0)
                        return -EINVAL;
                json_object_set_new(body, "concurrency", json_integer(n));
        }
        if ((v = mp_route_query(c, "outputs"))) {
                /* comma-separated paths (a path holds no comma) */
                json_t *list = json_array();
                const char *p = v;
                while (list && *p) {
                        const char *e = strchr(p, ',');
                        size_t len = e ? (size_t) (e - p) : strlen(p);
                        json_array_append_new(list, json_stringn(p, len));
                        p += len + (e ? 1 : 0);
                }
                json_object_set_new(body, "outputs", list);
        }
        if ((v = mp_route_query(c, "fixed"))) {
                json_error_t jerr;
                json_t *fixed = json_loads(v, JSON_DECODE_ANY, &jerr);
                if (!json_is_object(fixed)) {
                        json_decref(fixed);
                        mp_error_add_field(&c->err, "fixed", "must be a JSON object");
                        return mp_error_set(&c->err, EINVAL, 422, "validation",
                                            "query parameter fixed must be a JSON object of input values");
                }
                json_object_set_new(body, "fixed", fixed);
        }
        *ret = TAKE_PTR(body);
        return 0;
}

enum MHD_Result mp_api_study_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;
        bool refresh = false;
        bool csv = is_csv(mp_route_header(c, "Content-Type"));
        _cleanup_free_ char *from_xlsx = NULL; /* an .xlsx upload, read as CSV text (core/xlsx-read.c) */
        size_t from_xlsx_len = 0;
        int r;

        if (mp_route_cache_refresh(c, &refresh) < 0)
                return mp_route_problem(c);
        if (mp_api_is_xlsx(mp_route_header(c, "Content-Type"))) {
                if (c->req->body.len == 0 || mp_xlsx_to_csv(c->req->body.data, c->req->body.len, &from_xlsx,
                                                             &from_xlsx_len, &c->err) < 0) {
                        if (!c->err.status) {
                                mp_error_add_field(&c->err, "body", "is empty");
                                mp_error_set(&c->err, EINVAL, 422, "validation", "the .xlsx body is empty");
                        }
                        return mp_route_problem(c);
                }
                csv = true;
        }
        if (csv) {
                r = csv_study_body(c, &body);
                if (r >= 0 && c->req->body.len == 0) {
                        mp_error_add_field(&c->err, "body", "is an empty CSV text");
                        r = mp_error_set(&c->err, EINVAL, 422, "validation",
                                         "the CSV body is empty: a header line naming the inputs, "
                                         "then a line per point");
                }
        } else
                r = mp_api_body_json(c->conn, c->req, false, &body, &c->err);
        const char *text = from_xlsx ? from_xlsx : c->req->body.data ?: "";
        size_t text_len = from_xlsx ? from_xlsx_len : c->req->body.len;
        if (r < 0 || mp_core_study_create(c->api->core, &c->principal, body, csv ? text : NULL,
                                          csv ? text_len : 0, refresh, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

enum MHD_Result mp_api_study_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_study_list(c->api->core, &c->principal, mp_route_query(c, "status"), mp_route_query(c, "name"),
                               mp_route_query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

static void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* ?wait=S runs on a slow-work thread and reads the study again every 100 ms until it
 * stops running or S seconds pass (a study's progress has no single end to wait on). */
static enum MHD_Result study_get_wait(struct mp_route_ctx *c) {
        int64_t deadline;
        json_t *out = NULL;
        long wait;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                return mp_route_problem(c);
        deadline = mp_mono_ms() + wait * 1000;
        for (;;) {
                if (mp_core_study_get(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                        return mp_route_problem(c);
                if (mp_core_study_ended(out) || mp_mono_ms() >= deadline)
                        break;
                json_decref(out);
                out = NULL;
                sleep_ms(100);
        }
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_study_get(struct mp_route_ctx *c) {
        long wait;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                return mp_route_problem(c);
        if (wait > 0 && !c->req->offloaded)
                return mp_api_offload(c->api, c->req, study_get_wait);
        return study_get_wait(c);
}

/* --- the CSV export --- */

struct csv_stream {
        struct mp_core *core;
        char study_id[MP_ID_LEN + 1];
        json_t *columns;  /* input names, in first-seen order over the points */
        json_t *outputs;  /* output paths, the study's order */
        json_t *units;    /* {column: unit} (units: "result.x [mm]" in the header) */
        bool checks;      /* the governing check's columns (units) */
        int64_t after;    /* the last index sent */
        bool header_sent, done;
        struct mp_buf buf;
        size_t pos;
};

static void csv_stream_free(void *cls) {
        struct csv_stream *s = cls;
        json_decref(s->columns);
        json_decref(s->outputs);
        json_decref(s->units);
        mp_buf_free(&s->buf);
        free(s);
}

/* A field, after a comma unless first, quoted when it holds a comma, a quote, CR or
 * LF (RFC 4180: a quote inside is doubled). */
static int csv_field(struct mp_buf *b, const char *v, size_t n, bool first) {
        bool quote = n && (memchr(v, ',', n) || memchr(v, '"', n) || memchr(v, '\r', n) || memchr(v, '\n', n));
        int r = first ? 0 : mp_buf_append(b, ",", 1);

        if (r < 0 || !quote)
                return r < 0 ? r : mp_buf_append(b, v, n);
        if ((r = mp_buf_append(b, "\"", 1)) < 0)
                return r;
        for (size_t i = 0; i < n; i++)
                if ((r = mp_buf_append(b, v + i, 1)) < 0 || (v[i] == '"' && (r = mp_buf_append(b, "\"", 1)) < 0))
                        return r;
        return mp_buf_append(b, "\"", 1);
}

/* A JSON value as a cell: strings as they are, null as empty, others as JSON text. */
static int csv_value(struct mp_buf *b, json_t *v) {
        if (!v || json_is_null(v))
                return mp_buf_append(b, ",", 1);
        if (json_is_string(v))
                return csv_field(b, json_string_value(v), json_string_length(v), false);
        _cleanup_free_ char *text = mp_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!text)
                return -ENOMEM;
        return csv_field(b, text, strlen(text), false);
}

/* A column's name in the header, with its unit when it has one ("L [m]"). */
static int csv_name(struct csv_stream *s, json_t *v) {
        const char *unit = json_string_value(json_object_get(s->units, json_string_value(v)));
        char text[600];
        if (!unit)
                return csv_field(&s->buf, json_string_value(v), json_string_length(v), false);
        snprintf(text, sizeof(text), "%s [%s]", json_string_value(v), unit);
        return csv_field(&s->buf, text, strlen(text), false);
}

static int csv_header(struct csv_stream *s) {
        size_t i;
        json_t *v;
        int r = mp_buf_append(&s->buf, "index", 5);

        json_array_foreach(s->columns, i, v)
                if (r >= 0)
                        r = csv_name(s, v);
        json_array_foreach(s->outputs, i, v)
                if (r >= 0)
                        r = csv_name(s, v);
        if (r >= 0 && s->checks)
                r = mp_buf_append(&s->buf, ",check.governing,check.utilisation,check.passed", 47);
        return r < 0 ? r : mp_buf_append(&s->buf, ",status,error\r\n", 15);
}

static int csv_row(struct csv_stream *s, json_t *row) {
        char idx[32];
        const char *st = json_string_value(json_object_get(row, "status"));
        json_t *inputs = json_object_get(row, "inputs"), *outs = json_object_get(row, "outputs");
        json_t *error = json_object_get(row, "error");
        size_t i;
        json_t *v;
        int n = snprintf(idx, sizeof(idx), "%" JSON_INTEGER_FORMAT,
                         json_integer_value(json_object_get(row, "point_index")));
        int r = mp_buf_append(&s->buf, idx, (size_t) n);

        json_array_foreach(s->columns, i, v)
                if (r >= 0)
                        r = csv_value(&s->buf, json_object_get(inputs, json_string_value(v)));
        json_array_foreach(s->outputs, i, v)
                if (r >= 0)
                        r = csv_value(&s->buf, json_object_get(outs, json_string_value(v)));
        if (s->checks) {
                static const char *const cols[] = { "check.governing", "check.utilisation", "check.passed" };
                for (size_t k = 0; k < ELEMENTSOF(cols) && r >= 0; k++)
                        r = csv_value(&s->buf, json_object_get(outs, cols[k]));
        }
        if (r >= 0) {
                const char *shown = !st || !strcmp(st, "started") ? "running" : st;
                r = csv_field(&s->buf, shown, strlen(shown), false);
        }
        if (r >= 0) {
                const char *msg = json_string_value(json_object_get(error, "message"));
                const char *type = json_string_value(json_object_get(error, "type"));
                char text[1200];
                snprintf(text, sizeof(text), "%s%s%s", type ? type : "", type && msg ? ": " : "", msg ? msg : "");
                r = csv_field(&s->buf, text, strlen(text), false);
        }
        return r < 0 ? r : mp_buf_append(&s->buf, "\r\n", 2);
}

static ssize_t csv_read(void *cls, uint64_t pos, char *out, size_t max) {
        struct csv_stream *s = cls;
        (void) pos;

        while (s->pos == s->buf.len) {
                _cleanup_json_ json_t *rows = NULL;
                _cleanup_error_ struct mp_error err = { 0 };
                size_t i;
                json_t *row;

                if (s->done)
                        return MHD_CONTENT_READER_END_OF_STREAM;
                s->buf.len = 0;
                s->pos = 0;
                if (!s->header_sent) {
                        s->header_sent = true;
                        if (csv_header(s) < 0)
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                        continue;
                }
                if (MP_STORE(s->core->store)->study_points(s->core->store, s->study_id, s->after, CSV_PAGE, &rows,
                                                           &err) < 0) {
                        mp_warn("study %s: its CSV export stopped: %s", s->study_id, err.message);
                        return MHD_CONTENT_READER_END_WITH_ERROR;
                }
                if (json_array_size(rows) < CSV_PAGE)
                        s->done = true;
                json_array_foreach(rows, i, row) {
                        if (csv_row(s, row) < 0)
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                        s->after = json_integer_value(json_object_get(row, "point_index"));
                }
        }
        size_t n = MP_MIN(max, s->buf.len - s->pos);
        memcpy(out, s->buf.data + s->pos, n);
        s->pos += n;
        return (ssize_t) n;
}

/* The input columns: the varied inputs in the order the points first hold them (one
 * pass over the points' inputs, which keeps only the names), then the fixed ones. */
static int csv_columns(struct mp_route_ctx *c, json_t *fixed, json_t *columns) {
        int64_t after = -1;
        const char *fk;
        json_t *fv;

        for (;;) {
                _cleanup_json_ json_t *rows = NULL, *seen = NULL;
                size_t i;
                json_t *row;
                if (mp_core_study_points(c->api->core, &c->principal, c->param[0], after, CSV_PAGE, NULL, &rows,
                                         &c->err) < 0)
                        return -1;
                json_array_foreach(rows, i, row) {
                        const char *k;
                        json_t *v;
                        json_object_foreach(json_object_get(row, "inputs"), k, v) {
                                size_t j;
                                json_t *have;
                                bool found = json_object_get(fixed, k) != NULL;
                                json_array_foreach(columns, j, have)
                                        if (!strcmp(json_string_value(have), k)) {
                                                found = true;
                                                break;
                                        }
                                if (!found)
                                        json_array_append_new(columns, json_string(k));
                        }
                        after = json_integer_value(json_object_get(row, "point_index"));
                }
                if (json_array_size(rows) < CSV_PAGE)
                        break;
        }
        json_object_foreach(fixed, fk, fv)
                json_array_append_new(columns, json_string(fk));
        return 0;
}

static bool wants_csv(struct mp_route_ctx *c) {
        const char *a = mp_route_header(c, "Accept");
        return (a && strstr(a, "text/csv")) || (mp_route_query(c, "format") && !strcmp(mp_route_query(c, "format"), "csv"));
}

enum MHD_Result mp_api_study_results(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_api_wants_xlsx(c)) /* the table as a spreadsheet (api-sheets.c) */
                return mp_api_study_xlsx(c);
        if (!wants_csv(c)) {
                if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
                    mp_core_study_results(c->api->core, &c->principal, c->param[0], mp_route_query(c, "cursor"), (int) limit,
                                          &out, &c->err) < 0)
                        return mp_route_problem(c);
                return mp_route_send_owned(c, 200, out);
        }
        _cleanup_json_ json_t *study = NULL;
        struct csv_stream *s;
        if (mp_core_study_get(c->api->core, &c->principal, c->param[0], &study, &c->err) < 0)
                return mp_route_problem(c);
        s = calloc(1, sizeof(*s));
        if (!s)
                return mp_api_send_error(c->conn, 500, "internal", "out of memory");
        s->core = c->api->core;
        snprintf(s->study_id, sizeof(s->study_id), "%s", c->param[0]);
        s->columns = json_array();
        s->outputs = json_incref(json_object_get(study, "outputs"));
        s->after = -1;
        s->buf.cap = 4u * 1024 * 1024;
        if (!s->columns || csv_columns(c, json_object_get(study, "fixed"), s->columns) < 0) {
                csv_stream_free(s);
                return c->err.status ? mp_route_problem(c) : mp_api_send_error(c->conn, 500, "internal", "out of memory");
        }
        /* units: a function whose version cannot be read now still exports, without units */
        _cleanup_error_ struct mp_error uerr = { 0 };
        if (mp_core_study_column_units(c->api->core, &c->principal, study, s->columns, &s->units, &s->checks,
                                       &uerr) < 0)
                s->units = NULL;
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, csv_read, s,
                                                                      csv_stream_free);
        if (!resp) {
                csv_stream_free(s);
                return MHD_NO;
        }
        char disp[128];
        snprintf(disp, sizeof(disp), "attachment; filename=\"study-%s.csv\"", c->param[0]);
        MHD_add_response_header(resp, "Content-Type", "text/csv; charset=utf-8");
        MHD_add_response_header(resp, "Content-Disposition", disp);
        mp_api_add_headers(c->conn, resp, NULL);
        enum MHD_Result r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}

enum MHD_Result mp_api_study_extend(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_api_body_json(c->conn, c->req, false, &body, &c->err) < 0 ||
            mp_core_study_extend(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_study_members(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_api_body_json(c->conn, c->req, false, &body, &c->err) < 0 ||
            mp_core_study_add_members(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_study_retry(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_study_retry(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_study_cancel(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_study_cancel(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_study_rerun(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_api_body_json(c->conn, c->req, true, &body, &c->err) < 0 ||
            mp_core_study_rerun(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

enum MHD_Result mp_api_study_diff(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_study_diff(c->api->core, &c->principal, c->param[0], c->param[1], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}
