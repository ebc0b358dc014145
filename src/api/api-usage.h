/* api/: usage, quotas and the operators' figures (api-usage.c), routed by the table of
 * api-routes.c. Handlers parse, call core/usage.c and render; who may see what is
 * core's rule. Each answers the request (an MHD result). */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_usage(struct mp_route_ctx *c);
enum MHD_Result mp_api_quotas_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_quotas_put(struct mp_route_ctx *c);
enum MHD_Result mp_api_admin_stats(struct mp_route_ctx *c);
