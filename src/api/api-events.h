/* Server-sent events: GET /api/v1/tasks/{id}/events, /workflow-runs/{id}/events and
 * /studies/{id}/events (docs/api.md#task-events). */
#pragma once

#include <microhttpd.h>
#include <stdint.h>

struct mp_api;
struct mp_route_ctx;
struct mp_sse;

/* The routes' handlers. */
enum MHD_Result mp_api_task_events(struct mp_route_ctx *c);
enum MHD_Result mp_api_run_events(struct mp_route_ctx *c);
enum MHD_Result mp_api_study_events(struct mp_route_ctx *c);

/* Under api->lock. A task's (or run's) end was noticed (task_id NULL: maybe any
 * one's): wake its streams, which look at it again. */
void mp_api_events_wake_locked(struct mp_api *api, const char *task_id);
/* Under api->lock, from the timer: resume the streams whose tick or heartbeat is due;
 * returns the earliest time (monotonic ms, at most next) it must run again. With
 * api->stopping, resumes them all so that they end. */
int64_t mp_api_events_tick_locked(struct mp_api *api, int64_t now, int64_t next);
/* Under api->lock, when the request that holds the stream completes: the connection
 * is going, the stream must not resume it any more. */
void mp_api_events_detach_locked(struct mp_api *api, struct mp_sse *s);
