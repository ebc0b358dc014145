/* api/: deleting tasks, the company's retention and the export of a user's data
 * (api-retention.c), routed by the table of api-routes.c. Handlers parse, call core/
 * (core/retention.c, core/export.c: the rules) and render. */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_task_delete(struct mp_route_ctx *c);
enum MHD_Result mp_api_retention_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_retention_set(struct mp_route_ctx *c);
enum MHD_Result mp_api_export(struct mp_route_ctx *c);
