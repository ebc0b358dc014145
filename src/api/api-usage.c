/* api/: usage, quotas and the operators' figures (docs/api.md#usage). The route table
 * (api-routes.c) has already authenticated the caller and checked the token's scope. */
#include <string.h>

#include "api/api-usage.h"
#include "base/limits.h"

/* GET /api/v1/usage?from&to&group_by: JSON, or CSV for Accept: text/csv (or ?format=csv). */
enum MHD_Result mp_api_usage(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *out = NULL;
        _cleanup_free_ char *csv = NULL;
        const char *accept = mp_route_header(c, "Accept"), *format = mp_route_query(c, "format");
        size_t len = 0;

        if (mp_core_usage(c->api->core, &c->principal, mp_route_query(c, "from"), mp_route_query(c, "to"),
                          mp_route_query(c, "group_by"), &out, &c->err) < 0)
                return mp_route_problem(c);
        if ((accept && strstr(accept, "text/csv")) || (format && !strcmp(format, "csv"))) {
                if (mp_core_usage_csv(out, &csv, &len) < 0)
                        return mp_api_send_error(c->conn, 500, "internal", "the usage could not be rendered");
                return mp_api_send_bytes(c->conn, 200, "text/csv; charset=utf-8", csv, len);
        }
        return mp_route_send_owned(c, 200, TAKE_PTR(out));
}

enum MHD_Result mp_api_quotas_get(struct mp_route_ctx *c) {
        json_t *out = NULL;

        if (mp_core_quotas_get(c->api->core, &c->principal, mp_route_query(c, "user_id"), &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_quotas_put(struct mp_route_ctx *c) {
        _cleanup_json_ json_t *body = NULL;
        json_t *out = NULL;

        /* Who may comes before what the body holds. */
        if (mp_core_authorize(&c->principal, MP_ACTION_COMPANY_MANAGE, &c->err) < 0 ||
            mp_route_body_object(c, &body) < 0 ||
            mp_core_quotas_put(c->api->core, &c->principal, body, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

enum MHD_Result mp_api_admin_stats(struct mp_route_ctx *c) {
        json_t *out = NULL;
        long days;

        if (mp_route_query_int(c, "days", 1, MP_MAX_USAGE_DAYS, 7, &days) < 0 ||
            mp_core_admin_stats(c->api->core, &c->principal, (int) days, &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}
