/* api/: the HTTP server (libmicrohttpd, a thread pool on epoll). Handlers are thin:
 * parse, authenticate, call core/, render. Long polls (?wait=) suspend the connection
 * instead of blocking a thread and are resumed the moment core reports the task ended. */
#pragma once

#include "base/error.h"

struct mp_core;
struct mp_api;

/* Start listening on config host:port. 0 or -errno with err saying why (port taken). */
int mp_api_start(struct mp_core *core, struct mp_api **ret, struct mp_error *err);
/* The port actually bound (useful with --port 0). */
int mp_api_port(struct mp_api *api);
/* Stop accepting, answer suspended requests, stop threads. NULL is fine. */
void mp_api_stop(struct mp_api *api);
