/* api/: the handlers of parameter studies (api-studies.c, docs/studies.md), routed by
 * the table of api-routes.c. The rules live in core/studies.c. */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_study_create(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_list(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_results(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_extend(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_retry(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_members(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_cancel(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_rerun(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_diff(struct mp_route_ctx *c);
