/* api/: the review of function versions and the company's settings (api-review.c),
 * routed by the table of api-routes.c. Handlers parse, call core/ (core/review.c: the
 * rules) and render. */
#pragma once

#include "api/api-internal.h"

enum MHD_Result mp_api_review_submit(struct mp_route_ctx *c);
enum MHD_Result mp_api_review_approve(struct mp_route_ctx *c);
enum MHD_Result mp_api_review_reject(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_settings_get(struct mp_route_ctx *c);
enum MHD_Result mp_api_company_settings_set(struct mp_route_ctx *c);
