/* api/: companies, roles and the catalogue. Handlers parse, call core/ and render; the
 * rules (who may, 403 or 404) live in core/company.c. */
#include <string.h>

#include "api/api-company.h"
#include "base/limits.h"

struct company_ctx {
        struct mp_api *api;
        struct MHD_Connection *conn;
        struct mp_request *req;
        const char *method;
        const struct mp_principal *p;
        struct mp_error err;
};

#define IS(m) (!strcmp(c->method, m))

static const char *query(struct company_ctx *c, const char *name) {
        return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static enum MHD_Result problem(struct company_ctx *c) {
        return mp_api_send_problem(c->conn, &c->err);
}

static enum MHD_Result send_owned(struct company_ctx *c, unsigned status, json_t *j) {
        enum MHD_Result r = mp_api_send_json(c->conn, status, j);
        json_decref(j);
        return r;
}

static enum MHD_Result not_allowed(struct company_ctx *c, const char *allowed) {
        mp_error_set(&c->err, EINVAL, 405, "method_not_allowed", "%s is not allowed here; use %s",
                     c->method, allowed);
        return problem(c);
}

/* ?limit= as the other lists take it: 1..MP_MAX_PAGE, 400 otherwise. */
static int query_limit(struct company_ctx *c, long *ret) {
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
static int body_object(struct company_ctx *c, json_t **ret) {
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

/* /company/members/{id}[/tokens[/{token_id}] | /tasks] */
static enum MHD_Result route_member(struct company_ctx *c, char **seg, int nseg) {
        struct mp_core *core = c->api->core;
        const char *id = seg[2];
        json_t *out = NULL;

        if (nseg == 3) {
                if (IS("PATCH") || IS("PUT")) {
                        _cleanup_json_ json_t *body = NULL;
                        if (body_object(c, &body) < 0 ||
                            mp_core_company_member_update(core, c->p, id, body, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 200, out);
                }
                if (IS("DELETE")) {
                        if (mp_core_company_member_remove(core, c->p, id, &c->err) < 0)
                                return problem(c);
                        return mp_api_send_json(c->conn, 204, NULL);
                }
                return not_allowed(c, "PATCH, DELETE");
        }
        if (nseg == 4 && !strcmp(seg[3], "tokens")) {
                if (!IS("GET"))
                        return not_allowed(c, "GET");
                if (mp_core_company_member_tokens(core, c->p, id, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        if (nseg == 5 && !strcmp(seg[3], "tokens")) {
                if (!IS("DELETE"))
                        return not_allowed(c, "DELETE");
                if (mp_core_company_member_token_revoke(core, c->p, id, seg[4], &c->err) < 0)
                        return problem(c);
                return mp_api_send_json(c->conn, 204, NULL);
        }
        if (nseg == 4 && !strcmp(seg[3], "tasks")) {
                long limit;
                if (!IS("GET"))
                        return not_allowed(c, "GET");
                if (query_limit(c, &limit) < 0 ||
                    mp_core_company_member_tasks(core, c->p, id, query(c, "cursor"), (int) limit, &out,
                                                 &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        return mp_api_send_error(c->conn, 404, "not_found", "no such route");
}

static enum MHD_Result route_company(struct company_ctx *c, char **seg, int nseg) {
        struct mp_core *core = c->api->core;
        json_t *out = NULL;

        if (nseg == 1) {
                if (!IS("GET"))
                        return not_allowed(c, "GET");
                if (mp_core_company_get(core, c->p, &out, &c->err) < 0)
                        return problem(c);
                return send_owned(c, 200, out);
        }
        if (strcmp(seg[1], "members"))
                return mp_api_send_error(c->conn, 404, "not_found", "no such route");
        if (nseg == 2) {
                if (IS("GET")) {
                        if (mp_core_company_members(core, c->p, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 200, out);
                }
                if (IS("POST")) {
                        _cleanup_json_ json_t *body = NULL;
                        /* Who may comes before what the body holds. */
                        if (mp_core_authorize(c->p, MP_ACTION_COMPANY_MANAGE, &c->err) < 0 ||
                            body_object(c, &body) < 0 ||
                            mp_core_company_member_create(core, c->p, body, &out, &c->err) < 0)
                                return problem(c);
                        return send_owned(c, 201, out);
                }
                return not_allowed(c, "GET, POST");
        }
        return route_member(c, seg, nseg);
}

static enum MHD_Result route_catalogue(struct company_ctx *c) {
        json_t *out = NULL;
        long limit;

        if (!IS("GET"))
                return not_allowed(c, "GET");
        if (query_limit(c, &limit) < 0 ||
            mp_core_catalogue(c->api->core, c->p, query(c, "q"), query(c, "tag"), query(c, "author"),
                              query(c, "cursor"), (int) limit, &out, &c->err) < 0)
                return problem(c);
        return send_owned(c, 200, out);
}

bool mp_api_company_route(struct mp_api *api, struct MHD_Connection *conn, struct mp_request *req,
                          const char *method, char **seg, int nseg, const struct mp_principal *p,
                          enum MHD_Result *ret) {
        struct company_ctx ctx = { .api = api, .conn = conn, .req = req, .method = method, .p = p },
                           *c = &ctx;
        bool mine = true;

        if (nseg >= 1 && !strcmp(seg[0], "company"))
                *ret = route_company(c, seg, nseg);
        else if (nseg == 1 && !strcmp(seg[0], "catalogue"))
                *ret = route_catalogue(c);
        else
                mine = false;
        mp_error_clear(&c->err);
        return mine;
}
