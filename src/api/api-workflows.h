/* api/: the handlers of workflows and their runs (api-workflows.c), routed by the table
 * of api-routes.c. The rules (who may see, run, change) live in core/workflows.c. */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_workflow_list(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_create(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_update(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_delete(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_execute(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_run_list(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_run_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_run_retry(struct mp_route_ctx *c);
enum MHD_Result mp_api_workflow_run_cancel(struct mp_route_ctx *c);
