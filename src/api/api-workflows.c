/* api/: workflows and their runs. Handlers parse, call core/ and render; the route table
 * (api-routes.c) has already authenticated the caller and checked the token's scope:
 * functions:read and functions:write for definitions, execute for execute, retry and
 * cancel, tasks:read for runs (docs/api.md#workflows). */
#include <string.h>

#include "api/api-workflows.h"
#include "base/limits.h"

enum MHD_Result mp_api_workflow_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_workflow_list(c->api->core, &c->principal, mp_route_query(c, "name"), mp_route_query(c, "cursor"), (int) limit,
                                  &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 || mp_core_workflow_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

enum MHD_Result mp_api_workflow_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long version;

        if (mp_route_query_int(c, "version", 1, 1L << 30, 0, &version) < 0 ||
            mp_core_workflow_get(c->api->core, &c->principal, c->param[0], (int) version, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_update(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 ||
            mp_core_workflow_update(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_delete(struct mp_route_ctx *c) {
        if (mp_core_workflow_delete(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_workflow_execute(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL, *run = NULL;
        long version, wait;
        bool ended = false, refresh = false;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0 ||
            mp_route_query_int(c, "version", 1, 1L << 30, 0, &version) < 0 || mp_route_cache_refresh(c, &refresh) < 0 ||
            mp_route_body_object(c, &body) < 0 ||
            mp_core_workflow_execute(c->api->core, &c->principal, c->param[0], (int) version, body,
                                     MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Idempotency-Key"),
                                     refresh, &run, &ended, &c->err) < 0)
                return mp_route_problem(c);
        if (wait == 0 || ended)
                return mp_api_send_json(c->conn, ended ? 200 : 202, run);
        return mp_api_wait_run(c->api, c->conn, c->req, &c->principal,
                               json_string_value(json_object_get(run, "id")), (int) wait, 200, 202);
}

enum MHD_Result mp_api_workflow_run_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_workflow_run_list(c->api->core, &c->principal, mp_route_query(c, "workflow_id"), mp_route_query(c, "status"),
                                      mp_route_query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_run_get(struct mp_route_ctx *c) {
        long wait;

        if (mp_route_query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                return mp_route_problem(c);
        return mp_api_wait_run(c->api, c->conn, c->req, &c->principal, c->param[0], (int) wait, 200, 200);
}

enum MHD_Result mp_api_workflow_run_retry(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_workflow_run_retry(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 202, out);
}

enum MHD_Result mp_api_workflow_run_cancel(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_workflow_run_cancel(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}
