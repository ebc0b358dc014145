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
/* Read the --tls-cert and --tls-key files again (SIGHUP): new connections get the new
 * certificate, the listener and open connections stay. A pair that does not load
 * leaves the previous one in service: -EINVAL with err saying why. */
int mp_api_tls_reload(struct mp_api *api, struct mp_error *err);
