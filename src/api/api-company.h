/* api/: the handlers of companies, roles and the catalogue (api-company.c), routed by
 * the table of api-routes.c. Handlers parse, call core/ and render; the rules (who may,
 * 403 or 404) live in core/company.c. Each answers the request (an MHD result). */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_company_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_members(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_create(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_update(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_remove(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_tokens(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_token_revoke(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_member_tasks(struct mp_route_ctx *c);
enum MHD_Result mp_api_catalogue(struct mp_route_ctx *c);
