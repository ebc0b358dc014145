/* api/: workflows and their runs. Handlers parse, call core/ and render; the route table
 * (api-routes.c) has already authenticated the caller and checked the token's scope:
 * functions:read and functions:write for definitions, execute for execute, retry and
 * cancel, tasks:read for runs (docs/api.md#workflows). */
#include <string.h>

#include "api/api-workflows.h"
#include "base/limits.h"

static const char *query(struct mp_route_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result problem(struct mp_route_ctx *c) {
        return mp_api_send_problem(c->conn, &c->err);
}

static enum MHD_Result send_owned(struct mp_route_ctx *c, unsigned status, json_t *j) {
        enum MHD_Result r = mp_api_send_json(c->conn, status, j);
        json_decref(j);
        return r;
}

/* An integer query parameter in [min, max]; def when absent; 400 naming it otherwise. */
static int query_int(struct mp_route_ctx *c, const char *name, long min, long max, long def, long *ret) {
        const char *v = query(c, name);
        if (!v) {
                *ret = def;
                return 0;
        }
        if (mp_parse_long(v, min, max, ret) < 0) {
                mp_error_set(&c->err, EINVAL, 400, "bad_request",
                             "query parameter %s must be a whole number from %ld to %ld, not \"%.32s\"", name, min,
                             max, v);
                mp_error_add_field(&c->err, name, "must be a whole number from %ld to %ld", min, max);
                return -EINVAL;
        }
        return 0;
}

/* A JSON object body: 422 when it is not one. */
static int body_object(struct mp_route_ctx *c, json_t **ret) {
        json_t *j = NULL;
        int r = mp_api_body_json(c->conn, c->req, false, &j, &c->err);
        if (r < 0)
                return r;
        if (!json_is_object(j)) {
                json_decref(j);
                return mp_error_set(&c->err, EINVAL, 422, "validation", "the body must be a JSON object");
        }
        *ret = j;
        return 0;
}

enum MHD_Result mp_api_workflow_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_workflow_list(c->api->core, &c->principal, query(c, "name"), query(c, "cursor"), (int) limit,
                                  &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (body_object(c, &body) < 0 || mp_core_workflow_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 201, out);
}

enum MHD_Result mp_api_workflow_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long version;

        if (query_int(c, "version", 1, 1L << 30, 0, &version) < 0 ||
            mp_core_workflow_get(c->api->core, &c->principal, c->param[0], (int) version, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_update(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (body_object(c, &body) < 0 ||
            mp_core_workflow_update(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_delete(struct mp_route_ctx *c) {
        if (mp_core_workflow_delete(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

/* ?cache=refresh (docs/workflows.md#result-cache), or nothing. */
static int cache_refresh(struct mp_route_ctx *c, bool *ret) {
        const char *v = query(c, "cache");
        *ret = v && !strcmp(v, "refresh");
        if (v && !*ret) {
                mp_error_add_field(&c->err, "cache", "must be \"refresh\"");
                return mp_error_set(&c->err, EINVAL, 400, "bad_request",
                                    "query parameter cache must be \"refresh\" (compute again), not \"%.32s\"", v);
        }
        return 0;
}

enum MHD_Result mp_api_workflow_execute(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL, *run = NULL;
        long version, wait;
        bool ended = false, refresh = false;

        if (query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0 ||
            query_int(c, "version", 1, 1L << 30, 0, &version) < 0 || cache_refresh(c, &refresh) < 0 ||
            body_object(c, &body) < 0 ||
            mp_core_workflow_execute(c->api->core, &c->principal, c->param[0], (int) version, body,
                                     MHD_lookup_connection_value(c->conn, MHD_HEADER_KIND, "Idempotency-Key"),
                                     refresh, &run, &ended, &c->err) < 0)
                return problem(c);
        if (wait == 0 || ended)
                return mp_api_send_json(c->conn, ended ? 200 : 202, run);
        return mp_api_wait_run(c->api, c->conn, c->req, &c->principal,
                               json_string_value(json_object_get(run, "id")), (int) wait, 200, 202);
}

enum MHD_Result mp_api_workflow_run_list(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_workflow_run_list(c->api->core, &c->principal, query(c, "workflow_id"), query(c, "status"),
                                      query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_workflow_run_get(struct mp_route_ctx *c) {
        long wait;

        if (query_int(c, "wait", 0, MP_MAX_WAIT_S, 0, &wait) < 0)
                return problem(c);
        return mp_api_wait_run(c->api, c->conn, c->req, &c->principal, c->param[0], (int) wait, 200, 200);
}

enum MHD_Result mp_api_workflow_run_retry(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_workflow_run_retry(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 202, out);
}

enum MHD_Result mp_api_workflow_run_cancel(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_workflow_run_cancel(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}
