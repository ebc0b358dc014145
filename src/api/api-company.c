/* api/: companies, roles and the catalogue. Handlers parse, call core/ and render; the
 * rules (who may, 403 or 404) live in core/company.c. The route table (api-routes.c)
 * has already authenticated the caller and checked the token's scope. */
#include <string.h>

#include "api/api-company.h"
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

/* ?limit= as the other lists take it: 1..MP_MAX_PAGE, 400 otherwise. */
static int query_limit(struct mp_route_ctx *c, long *ret) {
        const char *v = query(c, "limit");
        if (!v) {
                *ret = MP_DEFAULT_PAGE;
                return 0;
        }
        if (mp_parse_long(v, 1, MP_MAX_PAGE, ret) < 0) {
                mp_error_set(&c->err, EINVAL, 400, "bad_request",
                             "query parameter limit must be a whole number from 1 to %d, not \"%.32s\"",
                             MP_MAX_PAGE, v);
                mp_error_add_field(&c->err, "limit", "must be a whole number from 1 to %d", MP_MAX_PAGE);
                return -EINVAL;
        }
        return 0;
}

/* The JSON object body: 415 unless JSON, 400 when malformed, 422 when not an object
 * (the same answers as the other routes give). */
static int body_object(struct mp_route_ctx *c, json_t **ret) {
        return mp_api_body_object(c->conn, c->req, ret, &c->err);
}

enum MHD_Result mp_api_company_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_get(c->api->core, &c->principal, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_members(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_members(c->api->core, &c->principal, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        /* Who may comes before what the body holds. */
        if (mp_core_authorize(&c->principal, MP_ACTION_COMPANY_MANAGE, &c->err) < 0 ||
            body_object(c, &body) < 0 ||
            mp_core_company_member_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 201, out);
}

/* PUT and PATCH alike: the body names the fields that change ({"role"}). */
enum MHD_Result mp_api_company_member_update(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (body_object(c, &body) < 0 ||
            mp_core_company_member_update(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_remove(struct mp_route_ctx *c) {
        if (mp_core_company_member_remove(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_company_member_tokens(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_member_tokens(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_token_revoke(struct mp_route_ctx *c) {
        if (mp_core_company_member_token_revoke(c->api->core, &c->principal, c->param[0], c->param[1],
                                                &c->err) < 0)
                return problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_company_member_tasks(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (query_limit(c, &limit) < 0 ||
            mp_core_company_member_tasks(c->api->core, &c->principal, c->param[0], query(c, "cursor"),
                                         (int) limit, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

enum MHD_Result mp_api_catalogue(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (query_limit(c, &limit) < 0 ||
            mp_core_catalogue(c->api->core, &c->principal, query(c, "q"), query(c, "tag"), query(c, "author"),
                              query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}
