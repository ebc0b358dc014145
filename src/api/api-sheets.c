/* Calculation sheets (HTML, PDF), re-runs and comparisons of tasks. The sheet's page has
 * an inline style and data: figures and nothing else: its CSP allows exactly those. */
#include <string.h>
#include <strings.h>

#include "api/api-guard.h"
#include "api/api-sheets.h"
#include "api/api-tasks.h"
#include "base/macro.h"

#define MP_CSP_SHEET "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"

/* Answer status with body (malloc'ed, taken even on failure) of this type, with a
 * Content-Disposition when disp is set and the CSP given (NULL: the API's). */
static enum MHD_Result send_owned(struct MHD_Connection *conn, unsigned status, const char *type,
                                  const char *disp, const char *csp, char *body, size_t len) {
        struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", type);
        if (disp)
                MHD_add_response_header(resp, "Content-Disposition", disp);
        mp_api_add_headers(conn, resp, csp);
        enum MHD_Result r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

/* ?format=: html (the default) or pdf; 400 otherwise. */
static int sheet_format(struct mp_route_ctx *c, bool *ret_pdf) {
        const char *format = mp_route_query(c, "format");
        *ret_pdf = format && !strcmp(format, "pdf");
        if (format && !*ret_pdf && strcmp(format, "html")) {
                mp_error_add_field(&c->err, "format", "must be \"html\" or \"pdf\"");
                return mp_error_set(&c->err, EINVAL, 400, "bad_request", "query parameter format must be \"html\" "
                                    "or \"pdf\", not \"%.32s\"", format);
        }
        return 0;
}

static enum MHD_Result send_sheet(struct mp_route_ctx *c, char *html, size_t len, bool pdf) {
        char *body = NULL;
        size_t body_len;

        if (!pdf)
                return send_owned(c->conn, 200, "text/html; charset=utf-8", NULL, MP_CSP_SHEET, html, len);
        int r = mp_core_sheet_pdf(c->api->core, html, len, &body, &body_len, &c->err);
        free(html);
        if (r < 0)
                return mp_route_problem(c);
        return send_owned(c->conn, 200, "application/pdf", "inline; filename=\"sheet.pdf\"", MP_CSP_SHEET, body,
                          body_len);
}

enum MHD_Result mp_api_task_sheet(struct mp_route_ctx *c) {
        char *html = NULL;
        size_t len;
        bool pdf;
        if (sheet_format(c, &pdf) < 0 ||
            mp_core_task_sheet(c->api->core, &c->principal, c->param[0], &html, &len, &c->err) < 0)
                return mp_route_problem(c);
        return send_sheet(c, html, len, pdf);
}

enum MHD_Result mp_api_run_sheet(struct mp_route_ctx *c) {
        char *html = NULL;
        size_t len;
        bool pdf;
        if (sheet_format(c, &pdf) < 0 ||
            mp_core_run_sheet(c->api->core, &c->principal, c->param[0], &html, &len, &c->err) < 0)
                return mp_route_problem(c);
        return send_sheet(c, html, len, pdf);
}

enum MHD_Result mp_api_send_rerun(struct mp_api *api, struct MHD_Connection *conn, unsigned status,
                                  const struct mp_principal *p, const char *orig_id, json_t *task) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *orig = NULL;
        _cleanup_free_ char *text = NULL;
        int same = -1;
        size_t len;

        if (mp_core_task_get(api->core, p, orig_id, &orig, NULL, &err) >= 0)
                same = mp_core_results_identical(orig, task);
        text = mp_api_task_text(task, &len);
        if (!text)
                return MHD_NO;
        const char *head = same < 0 ? "{\"identical\":null,\"task\":" : same ? "{\"identical\":true,\"task\":"
                                                                              : "{\"identical\":false,\"task\":";
        size_t hlen = strlen(head), total = hlen + len + 1;
        char *body = malloc(total + 1);
        if (!body)
                return MHD_NO;
        memcpy(body, head, hlen);
        memcpy(body + hlen, text, len);
        body[total - 1] = '}';
        body[total] = 0;
        return send_owned(conn, status, "application/json", NULL, NULL, body, total);
}

enum MHD_Result mp_api_task_rerun(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *task = NULL;
        long wait;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0 ||
            mp_core_task_rerun(c->api->core, &c->principal, c->param[0], &task, &c->err) < 0)
                return mp_route_problem(c);
        bool ended = mp_core_status_ended(json_string_value(json_object_get(task, "status")));
        if (wait == 0 || ended)
                return mp_api_send_rerun(c->api, c->conn, ended ? 200 : 202, &c->principal, c->param[0], task);
        snprintf(c->req->rerun_of, sizeof(c->req->rerun_of), "%s", c->param[0]);
        return mp_api_wait_task(c->api, c->conn, c->req, &c->principal,
                                json_string_value(json_object_get(task, "id")), (int) wait, 200, 202);
}

enum MHD_Result mp_api_task_diff(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_task_diff(c->api->core, &c->principal, c->param[0], c->param[1], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* --- spreadsheets --- */

#define XLSX_TYPE "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

bool mp_api_wants_xlsx(struct mp_route_ctx *c) {
        const char *a = mp_route_header(c, "Accept"), *f = mp_route_query(c, "format");
        return (a && strstr(a, XLSX_TYPE)) || (f && !strcmp(f, "xlsx"));
}

static enum MHD_Result send_xlsx(struct mp_route_ctx *c, char *data, size_t len, const char *what) {
        char disp[160];
        snprintf(disp, sizeof(disp), "attachment; filename=\"%s-%.40s.xlsx\"", what, c->param[0]);
        return send_owned(c->conn, 200, XLSX_TYPE, disp, NULL, data, len);
}

enum MHD_Result mp_api_task_xlsx(struct mp_route_ctx *c) {
        char *data = NULL;
        size_t len;
        /* Writing a workbook takes a while for a large table: on a slow-work thread. */
        if (!c->req->offloaded)
                return mp_api_offload(c->api, c->req, mp_api_task_xlsx);
        if (mp_core_task_xlsx(c->api->core, &c->principal, c->param[0], &data, &len, &c->err) < 0)
                return mp_route_problem(c);
        return send_xlsx(c, data, len, "task");
}

enum MHD_Result mp_api_study_xlsx(struct mp_route_ctx *c) {
        char *data = NULL;
        size_t len;
        /* Writing a workbook takes a while for a large table: on a slow-work thread. */
        if (!c->req->offloaded)
                return mp_api_offload(c->api, c->req, mp_api_study_xlsx);
        if (mp_core_study_xlsx(c->api->core, &c->principal, c->param[0], &data, &len, &c->err) < 0)
                return mp_route_problem(c);
        return send_xlsx(c, data, len, "study");
}

bool mp_api_is_xlsx(const char *type) {
        size_t n = strlen(XLSX_TYPE);
        return type && !strncasecmp(type, XLSX_TYPE, n) && (!type[n] || type[n] == ';' || type[n] == ' ');
}
