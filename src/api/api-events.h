/* Server-sent events: GET /api/v1/tasks/{id}/events (docs/api.md#task-events). */
#pragma once

#include <microhttpd.h>
#include <stdint.h>

struct mp_api;
struct mp_route_ctx;
struct mp_sse;

/* The route's handler. */
enum MHD_Result mp_api_task_events(struct mp_route_ctx *c);

/* Under api->lock. A task's end was noticed (task_id NULL: maybe any task's): wake its
 * streams, which look at the task again. */
void mp_api_events_wake_locked(struct mp_api *api, const char *task_id);
/* Under api->lock, from the timer: resume the streams whose tick or heartbeat is due;
 * returns the earliest time (monotonic ms, at most next) it must run again. With
 * api->stopping, resumes them all so that they end. */
int64_t mp_api_events_tick_locked(struct mp_api *api, int64_t now, int64_t next);
/* Under api->lock, when the request that holds the stream completes: the connection
 * is going, the stream must not resume it any more. */
void mp_api_events_detach_locked(struct mp_api *api, struct mp_sse *s);
