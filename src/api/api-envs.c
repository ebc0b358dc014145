/* api/: environments of functions' requirements. The route table (api-routes.c) has
 * already authenticated the caller and checked the token's scope. */
#include <errno.h>
#include <string.h>
#include <time.h>

#include "api/api-envs.h"
#include "base/util.h"

enum MHD_Result mp_api_environment_get(struct mp_route_ctx *c) {
        json_t *out = NULL;
        if (mp_core_environment_get(c->api->core, &c->principal, c->param[0], &out, &c->err) < 0)
                return mp_route_problem(c);
        return mp_route_send_owned(c, 200, out);
}

bool mp_api_env_pending(struct mp_route_ctx *c) {
        const char *status = json_string_value(json_object_get(json_object_get(c->err.errors, "environment"), "status"));
        return c->err.status == 409 && !strcmp(c->err.code, "EnvironmentNotReady") && status &&
               strcmp(status, "failed");
}

bool mp_api_env_wait_more(struct mp_route_ctx *c, int64_t start_ms, long wait_s) {
        struct timespec ts = { 0, 200 * 1000000L };

        if (!mp_api_env_pending(c) || mp_mono_ms() + 200 > start_ms + wait_s * 1000)
                return false;
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
        mp_error_clear(&c->err);
        return true;
}
