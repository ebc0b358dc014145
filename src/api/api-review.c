/* api/: the review of function versions and the company's settings. The route table
 * (api-routes.c) has already authenticated the caller and checked the token's scope;
 * who may do what is core's (core/review.c). */
#include "api/api-review.h"

/* POST /api/v1/functions/{id}/versions/{v}/<action>: the body is optional ({"comment"}). */
static enum MHD_Result review(struct mp_route_ctx *c, const char *action) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_api_body_json(c->conn, c->req, true, &body, &c->err) < 0 ||
            mp_core_version_review(c->api->core, &c->principal, c->param[0], c->param[1], action, body, &out,
                                   &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_review_submit(struct mp_route_ctx *c) {
        return review(c, "submit");
}

enum MHD_Result mp_api_review_approve(struct mp_route_ctx *c) {
        return review(c, "approve");
}

enum MHD_Result mp_api_review_reject(struct mp_route_ctx *c) {
        return review(c, "reject");
}

enum MHD_Result mp_api_company_settings_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_company_settings_get(c->api->core, &c->principal, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_company_settings_set(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        if (mp_route_body_object(c, &body) < 0 ||
            mp_core_company_settings_set(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}
