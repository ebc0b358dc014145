/* api/: environments of functions' requirements (api-envs.c), routed by the table of
 * api-routes.c; the rules are core's (core/environments.c). */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "api/api-internal.h"

/* GET /api/v1/environments/{id} */
enum MHD_Result mp_api_environment_get(struct mp_route_ctx *c);
/* A call refused with 409 EnvironmentNotReady while its environment is queued or
 * building, and ?wait=S leaves time (S seconds from start_ms): true after a pause of
 * 200 ms with c->err cleared, to call again; false (c->err kept) otherwise. Only on a
 * slow-work thread (it sleeps). */
bool mp_api_env_wait_more(struct mp_route_ctx *c, int64_t start_ms, long wait_s);
/* Is c->err a 409 EnvironmentNotReady of an environment still to be built? */
bool mp_api_env_pending(struct mp_route_ctx *c);
