/* api/: companies, roles and the catalogue. Handlers parse, call core/ and render; the
 * rules (who may, 403 or 404) live in core/company.c. The route table (api-routes.c)
 * has already authenticated the caller and checked the token's scope. */
#include <string.h>

#include "api/api-company.h"
#include "base/limits.h"

enum MHD_Result mp_api_company_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_get(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_members(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_members(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_create(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        /* Who may comes before what the body holds. */
        if (mp_core_authorize(&c->principal, MP_ACTION_COMPANY_MANAGE, &c->err) < 0 ||
            mp_route_body_object(c, &body) < 0 ||
            mp_core_company_member_create(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 201, out);
}

/* PUT and PATCH alike: the body names the fields that change ({"role"}). */
enum MHD_Result mp_api_company_member_update(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 ||
            mp_core_company_member_update(c->api->core, &c->principal, c->param[0], body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_remove(struct mp_route_ctx *c) {
        if (mp_core_company_member_remove(c->api->core, &c->principal, c->param[0], &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_company_member_tokens(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_member_tokens(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_member_token_revoke(struct mp_route_ctx *c) {
        if (mp_core_company_member_token_revoke(c->api->core, &c->principal, c->param[0], c->param[1],
                                                &c->err) < 0)
                return mp_route_problem(c);
        return mp_api_send_json(c->conn, 204, NULL);
}

enum MHD_Result mp_api_company_member_tasks(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_company_member_tasks(c->api->core, &c->principal, c->param[0], mp_route_query(c, "cursor"),
                                         (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_catalogue(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (mp_route_query_int(c, "limit", 1, MP_MAX_PAGE, MP_DEFAULT_PAGE, &limit) < 0 ||
            mp_core_catalogue(c->api->core, &c->principal, mp_route_query(c, "q"), mp_route_query(c, "tag"), mp_route_query(c, "author"),
                              mp_route_query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}
