/* api/: GET /metrics in the Prometheus text format 0.0.4 (docs/operations.md#metrics).
 * The HTTP counts are relaxed atomics bumped once per answer, in MHD's
 * request-completed callback (api-server.c); the task and pool figures come from core/
 * and exec/ when scraped. Only loopback clients and --metrics-allow addresses are
 * answered; everyone else gets the 404 of an unknown route. */
#pragma once

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/config.h"
#include "base/error.h"
#include "core/core.h"

#define MP_METRICS_MAX_ALLOW 32
#define MP_HTTP_CODE_MAX 600 /* statuses 100..599; anything else counts as code "other" */

enum mp_http_kind { MP_HTTP_KIND_REQUEST, MP_HTTP_KIND_WAIT, MP_HTTP_KIND_N };

struct mp_api_metrics {
        atomic_uint_fast64_t by_code[MP_HTTP_CODE_MAX]; /* [0]: a status out of range */
        /* From the first call of the access handler to completion; held long polls
         * (?wait= that suspended) apart, as kind="wait". */
        struct mp_hist duration[MP_HTTP_KIND_N];
        /* --metrics-allow, parsed */
        bool none; /* "none": refuse everyone, loopback too */
        int nallow;
        struct {
                int family;       /* AF_INET or AF_INET6 */
                uint8_t addr[16];
                int bits;         /* prefix length */
        } allow[MP_METRICS_MAX_ALLOW];
        /* The API's HTTPS certificate, for its expiry gauge; NULL without --tls-cert. */
        const struct mp_api_tls *tls;
};

/* Parse --metrics-allow into m and zero the counts. 0, or -EINVAL with err naming the
 * bad entry. */
int mp_api_metrics_init(struct mp_api_metrics *m, const struct mp_config *c, struct mp_error *err);
/* The monotonic clock in microseconds, for request durations. */
int64_t mp_api_metrics_now_us(void);
/* One answer: its status and how long it took; held: a suspended long poll. */
void mp_api_metrics_count(struct mp_api_metrics *m, unsigned status, int64_t duration_us, bool held);
/* May this client address (text, as mp_api_client_address gives it) read /metrics? */
bool mp_api_metrics_allowed(const struct mp_api_metrics *m, const char *client);
/* The whole exposition: build info, process figures, the HTTP counts when http is not
 * NULL, the core's task counts, and the warm pool's when core has an executor. *ret is
 * NUL-terminated, for free(). 0 or -ENOMEM. */
int mp_metrics_render(struct mp_core *core, const struct mp_api_metrics *http, char **ret,
                      size_t *ret_len);
/* Answer /metrics: 404 unless the client may read it, 405 unless GET or HEAD. */
enum MHD_Result mp_api_metrics_answer(struct mp_api_metrics *m, struct mp_core *core,
                                      struct MHD_Connection *conn, const char *client,
                                      const char *method);

/* `mecapy worker --metrics-port`: a small HTTP server of its own that answers only
 * GET /metrics (same access rule) and /healthz. 0 or -errno with err saying why. */
struct mp_metrics_server;
int mp_metrics_server_start(struct mp_core *core, struct mp_metrics_server **ret, struct mp_error *err);
/* The port bound (for --metrics-port 0). */
int mp_metrics_server_port(struct mp_metrics_server *s);
void mp_metrics_server_stop(struct mp_metrics_server *s);
