/* api/: the routes of companies, roles and the catalogue (api-company.c). */
#pragma once

#include <stdbool.h>

#include "api/api-internal.h"

/* Answer the request when it is one of these routes: GET /company, /company/members...,
 * GET /catalogue; or when a role rule refuses a route of api-routes.c first (POST
 * /tokens by a viewer). true when it answered (*ret is MHD's result), false when the
 * request is not its own. p is the authenticated caller; seg the path after /api/v1. */
bool mp_api_company_route(struct mp_api *api, struct MHD_Connection *conn, struct mp_request *req,
                          const char *method, char **seg, int nseg, const struct mp_principal *p,
                          enum MHD_Result *ret);
