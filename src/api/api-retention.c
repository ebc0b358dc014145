/* api/: deleting tasks, the company's retention and the export of a user's data. The
 * route table (api-routes.c) has already authenticated the caller and checked the
 * token's scope; who may do what is core's (core/retention.c, core/export.c). */
#include <stdio.h>
#include <unistd.h>

#include "api/api-guard.h"
#include "api/api-retention.h"

/* DELETE /api/v1/tasks/{id}: 204, nothing else to say. */
enum MHD_Result mp_api_task_delete(struct mp_route_ctx *c) {
        if (mp_core_task_delete(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_retention_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_retention_get(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_retention_set(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 ||
            mp_core_retention_set(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

/* GET /api/v1/me/export: the zip core wrote into a temporary file, sent from that file
 * (MHD reads it as the client takes it, and closes it). */
enum MHD_Result mp_api_export(struct mp_route_ctx *c) {
        struct MHD_Response *resp;
        enum MHD_Result r;
        uint64_t size = 0;
        char disp[96], day[40];
        int fd = -1;

        if (mp_core_export(c->api->core, &c->principal, &fd, &size, &c->err) < 0)
                return mp_route_problem(c);
        resp = MHD_create_response_from_fd64(size, fd);
        if (!resp) {
                close(fd);
                return MHD_NO;
        }
        mp_format_time(mp_now_ms(), day, sizeof(day));
        day[10] = 0; /* YYYY-MM-DD */
        snprintf(disp, sizeof(disp), "attachment; filename=\"mecapy-export-%s.zip\"", day);
        MHD_add_response_header(resp, "Content-Type", "application/zip");
        MHD_add_response_header(resp, "Content-Disposition", disp);
        mp_api_add_headers(c->conn, resp, NULL);
        r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp);
        return r;
}
