/* The dashboard's files: the single-page app that `vite build` writes (web/dist), served
 * from a folder (--web-dir, or found next to the binary or the source tree). The app's
 * pages live under /functions, /tasks, /account and /sign-in (is_app_address in
 * api-web.c and web/src/App.svelte name the same ones). */
#pragma once

#include <microhttpd.h>

#include "base/config.h"
#include "base/error.h"

struct mp_route_ctx;

/* Find and open the dashboard folder: --web-dir when given (an error when it holds no
 * index.html: the operator named it), else the first of <binary's dir>/../web/dist,
 * <binary's dir>/web and <source tree>/web/dist that holds an index.html. *ret_fd is
 * -1 when none does: `/` then says how to build it. */
int mp_api_web_open(const struct mp_config *config, int *ret_fd, char *ret_path, size_t path_size,
                    struct mp_error *err);

/* Answer a GET or HEAD for a path outside /api/ that no route takes: the file when the
 * folder holds it (hashed assets under assets/ cached for a year, the rest revalidated),
 * index.html for an app address such as /tasks/{id} (the app routes it), 404 otherwise.
 * Segments that are empty, "." , ".." or start with "." never reach the file system. */
enum MHD_Result mp_api_web_serve(struct mp_route_ctx *c);
