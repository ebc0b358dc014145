/* GET /metrics: the Prometheus text exposition format 0.0.4. Rendered on demand from
 * atomics (HTTP, tasks), the executor's counters and /proc/self; nothing here takes a
 * lock on the call path. */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-metrics.h"
#include "api/api-tls.h"
#include "base/log.h"
#include "exec/exec.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Request durations in seconds: half a millisecond to ten seconds. */
static const double http_bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
static const char *const kind_names[MP_HTTP_KIND_N] = { "request", "wait" };

int64_t mp_api_metrics_now_us(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* "ADDR" or "ADDR/BITS" of --metrics-allow. */
static int parse_net(struct mp_api_metrics *m, const char *p, size_t n, struct mp_error *err) {
        char text[INET6_ADDRSTRLEN + 8];
        char *slash;
        long bits = -1;
        int i = m->nallow;

        if (n == 0 || n >= sizeof(text))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--metrics-allow: \"%.*s\" is not an address or ADDR/BITS",
                                    (int) MP_MIN(n, 64), p);
        if (i == MP_METRICS_MAX_ALLOW)
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--metrics-allow names more than %d entries", MP_METRICS_MAX_ALLOW);
        memcpy(text, p, n);
        text[n] = 0;
        if ((slash = strchr(text, '/'))) {
                *slash = 0;
                if (mp_parse_long(slash + 1, 0, 128, &bits) < 0)
                        bits = -2;
        }
        if (inet_pton(AF_INET, text, m->allow[i].addr) == 1) {
                m->allow[i].family = AF_INET;
                m->allow[i].bits = bits == -1 ? 32 : (int) bits;
        } else if (inet_pton(AF_INET6, text, m->allow[i].addr) == 1) {
                m->allow[i].family = AF_INET6;
                m->allow[i].bits = bits == -1 ? 128 : (int) bits;
        } else
                m->allow[i].family = 0;
        if (!m->allow[i].family || m->allow[i].bits < 0 ||
            m->allow[i].bits > (m->allow[i].family == AF_INET ? 32 : 128))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--metrics-allow: \"%.*s\" is not an address or ADDR/BITS", (int) n, p);
        m->nallow++;
        return 0;
}

int mp_api_metrics_init(struct mp_api_metrics *m, const struct mp_config *c, struct mp_error *err) {
        const char *p = c->metrics_allow ? c->metrics_allow : "";
        int r;

        for (int i = 0; i < MP_HTTP_CODE_MAX; i++)
                atomic_init(&m->by_code[i], 0);
        for (int k = 0; k < MP_HTTP_KIND_N; k++)
                mp_hist_init(&m->duration[k], http_bounds, (int) ELEMENTSOF(http_bounds));
        m->none = false;
        m->nallow = 0;
        while (*p) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                const char *s = p;
                size_t len = n;
                while (len && (*s == ' ' || *s == '\t'))
                        s++, len--;
                while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
                        len--;
                if (len == 4 && !strncmp(s, "none", 4))
                        m->none = true;
                else if (len && (r = parse_net(m, s, len, err)) < 0)
                        return r;
                p = e ? e + 1 : p + n;
        }
        if (m->none && m->nallow)
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--metrics-allow none refuses everyone; it cannot be listed with addresses");
        return 0;
}

void mp_api_metrics_count(struct mp_api_metrics *m, unsigned status, int64_t duration_us, bool held) {
        atomic_fetch_add_explicit(&m->by_code[status >= 100 && status < MP_HTTP_CODE_MAX ? status : 0], 1,
                                  memory_order_relaxed);
        mp_hist_observe(&m->duration[held ? MP_HTTP_KIND_WAIT : MP_HTTP_KIND_REQUEST],
                        (double) (duration_us < 0 ? 0 : duration_us) / 1e6);
}

static bool prefix_match(const uint8_t *a, const uint8_t *b, int bits) {
        int bytes = bits / 8, rest = bits % 8;
        if (memcmp(a, b, (size_t) bytes))
                return false;
        if (!rest)
                return true;
        uint8_t mask = (uint8_t) (0xff << (8 - rest));
        return (a[bytes] & mask) == (b[bytes] & mask);
}

bool mp_api_metrics_allowed(const struct mp_api_metrics *m, const char *client) {
        uint8_t a[16];
        int family;

        if (m->none || !client)
                return false;
        if (inet_pton(AF_INET, client, a) == 1)
                family = AF_INET;
        else if (inet_pton(AF_INET6, client, a) == 1)
                family = AF_INET6;
        else
                return false;
        if (family == AF_INET && a[0] == 127)
                return true;
        if (family == AF_INET6 && IN6_IS_ADDR_LOOPBACK((const struct in6_addr *) a))
                return true;
        for (int i = 0; i < m->nallow; i++)
                if (m->allow[i].family == family && prefix_match(a, m->allow[i].addr, m->allow[i].bits))
                        return true;
        return false;
}

/* --- rendering --- */

static void head(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(FILE *f, const char *name, const char *type, const char *help, double v) {
        head(f, name, type, help);
        fprintf(f, "%s %.15g\n", name, v);
}

/* The series of one histogram; label: "kind=\"request\"," or "". */
static void hist_series(FILE *f, const char *name, const char *label, const struct mp_hist *h) {
        uint64_t cum = 0;
        int i;

        for (i = 0; i < h->nbounds; i++) {
                cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
                fprintf(f, "%s_bucket{%sle=\"%g\"} %llu\n", name, label, h->bounds[i], (unsigned long long) cum);
        }
        cum += atomic_load_explicit(&h->counts[i], memory_order_relaxed);
        fprintf(f, "%s_bucket{%sle=\"+Inf\"} %llu\n", name, label, (unsigned long long) cum);
        /* The label without its trailing comma, in braces, for _sum and _count. */
        size_t ln = strlen(label);
        fprintf(f, "%s_sum%s%.*s%s %.6f\n", name, ln ? "{" : "", ln ? (int) ln - 1 : 0, label,
                ln ? "}" : "",
                (double) atomic_load_explicit(&h->sum_us, memory_order_relaxed) / 1e6);
        fprintf(f, "%s_count%s%.*s%s %llu\n", name, ln ? "{" : "", ln ? (int) ln - 1 : 0, label,
                ln ? "}" : "", (unsigned long long) cum);
}

/* /proc/self/stat: utime, stime (ticks), vsize (bytes), rss (pages). */
static void process_metrics(FILE *f, const struct mp_core *core) {
        char buf[1024];
        FILE *s = fopen("/proc/self/stat", "re");
        size_t n = s ? fread(buf, 1, sizeof(buf) - 1, s) : 0;
        unsigned long long utime = 0, stime = 0, vsize = 0, rss = 0;
        long tck = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        struct rlimit rl;
        bool have = false;

        if (s)
                fclose(s);
        buf[n] = 0;
        char *p = strrchr(buf, ')');
        if (p) {
                /* Field 3 (state) follows ") "; utime is field 14, stime 15, vsize 23, rss 24. */
                char *q = p + 1;
                for (int field = 3; field <= 24 && *q; field++) {
                        char *end;
                        while (*q == ' ')
                                q++;
                        unsigned long long v = strtoull(q, &end, 10);
                        if (field == 14)
                                utime = v;
                        else if (field == 15)
                                stime = v;
                        else if (field == 23)
                                vsize = v;
                        else if (field == 24) {
                                rss = v;
                                have = true;
                        }
                        q = end;
                        while (*q && *q != ' ')
                                q++;
                }
        }
        if (have) {
                one(f, "process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.",
                    (double) (utime + stime) / (double) (tck > 0 ? tck : 100));
                one(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                    (double) rss * (double) (page > 0 ? page : 4096));
                one(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", (double) vsize);
        }
        DIR *d = opendir("/proc/self/fd");
        if (d) {
                long fds = 0;
                for (struct dirent *e; (e = readdir(d));)
                        if (e->d_name[0] != '.')
                                fds++;
                closedir(d);
                one(f, "process_open_fds", "gauge", "Number of open file descriptors.",
                    (double) (fds > 0 ? fds - 1 : 0)); /* less the one reading the folder */
        }
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
                one(f, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
                    (double) rl.rlim_cur);
        one(f, "process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.",
            (double) core->stats.start_ms / 1000.0);
}

/* The warm pool's counters (exec.h: mp_executor_stats), when this process has one. */
static void pool_metrics(FILE *f, struct mp_core *core) {
        static const struct {
                const char *field, *name, *type, *help;
                double scale;
        } map[] = {
                { "hits", "mecapy_pool_hits_total", "counter", "Calls that found an idle warm instance.", 1 },
                { "misses", "mecapy_pool_misses_total", "counter", "Calls that found no idle warm instance.", 1 },
                { "cold_starts", "mecapy_pool_cold_starts_total", "counter", "Instances started (forked from a zygote).", 1 },
                { "evictions", "mecapy_pool_evictions_total", "counter", "Idle instances evicted to make room.", 1 },
                { "retired", "mecapy_pool_retired_total", "counter", "Instances retired (idle time or call count).", 1 },
                { "crashes", "mecapy_pool_crashes_total", "counter", "Instances that died unexpectedly.", 1 },
                { "per_call", "mecapy_pool_per_call_total", "counter", "Calls run in a fresh sandbox (isolation per_call).", 1 },
                { "instances", "mecapy_pool_instances", "gauge", "Warm instances alive.", 1 },
                { "spares", "mecapy_pool_spares", "gauge", "Spare pre-forked instances.", 1 },
                { "busy", "mecapy_pool_busy", "gauge", "Instances running a call.", 1 },
                { "queued", "mecapy_pool_queued", "gauge", "Calls waiting for an instance.", 1 },
                { "zygotes", "mecapy_pool_zygotes", "gauge", "Zygotes (one per environment).", 1 },
                { "memory_kb", "mecapy_pool_memory_bytes", "gauge", "Private memory of the warm instances in bytes.", 1024 },
                { "zygotes_retired", "mecapy_pool_zygotes_retired_total", "counter", "Environments' zygotes retired (idle).", 1 },
        };
        _cleanup_json_ json_t *st = NULL;

        if (!core->executor || mp_executor_stats(core->executor, &st) < 0 || !st)
                return;
        for (size_t i = 0; i < ELEMENTSOF(map); i++) {
                json_t *v = json_object_get(st, map[i].field);
                if (json_is_number(v))
                        one(f, map[i].name, map[i].type, map[i].help, json_number_value(v) * map[i].scale);
        }
}

/* What the alert rules watch besides the counts (deploy/prometheus/alerts.yml): the
 * space left where the data folder lies, and when the HTTPS certificate expires. */
static void ops_metrics(FILE *f, const struct mp_core *core, const struct mp_api_metrics *http) {
        struct statvfs sv;

        if (core->config->data_dir && statvfs(core->config->data_dir, &sv) == 0) {
                one(f, "mecapy_data_dir_free_bytes", "gauge",
                    "Bytes available to this process in the file system of the data folder.",
                    (double) sv.f_bavail * (double) sv.f_frsize);
                one(f, "mecapy_data_dir_size_bytes", "gauge", "Size of the file system of the data folder in bytes.",
                    (double) sv.f_blocks * (double) sv.f_frsize);
        }
        if (http && http->tls)
                one(f, "mecapy_tls_certificate_expiry_seconds", "gauge",
                    "When the served HTTPS certificate expires (notAfter), in seconds since the epoch.",
                    (double) mp_api_tls_not_after(http->tls));
}

/* What wave 2 added: workflow runs and their nodes, study points, result cache hits and
 * quotas, and environment builds, as this process recorded them. */
static void counter_series(FILE *f, const char *name, const char *help, const char *label,
                           const char *const *names, const atomic_uint_fast64_t *counts, int n) {
        head(f, name, "counter", help);
        for (int i = 0; i < n; i++)
                fprintf(f, "%s{%s=\"%s\"} %llu\n", name, label, names[i],
                        (unsigned long long) atomic_load_explicit(&counts[i], memory_order_relaxed));
}

static void wave2_metrics(FILE *f, struct mp_core *core) {
        const struct mp_core_stats *st = &core->stats;

        counter_series(f, "mecapy_workflow_runs_ended_total",
                       "Workflow runs whose end this process recorded, by final state.", "status",
                       mp_run_end_names, st->runs_ended, MP_RUN_END_N);
        counter_series(f, "mecapy_workflow_nodes_ended_total",
                       "Tasks of workflow runs (node calls) whose end this process handled, by final state.",
                       "status", mp_task_end_names, st->nodes_ended, MP_END_N);
        counter_series(f, "mecapy_study_points_ended_total",
                       "Tasks of study points whose end this process handled, by final state.", "status",
                       mp_task_end_names, st->points_ended, MP_END_N);
        one(f, "mecapy_result_cache_hits_total", "counter",
            "Tasks answered from the result cache by this process (no run): calls, workflow nodes, study points.",
            (double) atomic_load_explicit(&st->cache_hits, memory_order_relaxed));
        counter_series(f, "mecapy_quota_refusals_total",
                       "Calls this process refused because a quota was used up, by quota.", "quota",
                       mp_quota_names, st->quota_refused, MP_QUOTA_N);
        one(f, "mecapy_quota_held_starts_total", "counter",
            "Starts of workflow or study calls this process's workers held back by a quota (tried again).",
            (double) atomic_load_explicit(&st->quota_held, memory_order_relaxed));
        static const char *const env_states[] = { "ready", "failed" };
        counter_series(f, "mecapy_environment_builds_total",
                       "Environment builds (per-function requirements) this process ended, by outcome.", "status",
                       env_states, st->env_builds, 2);
        one(f, "mecapy_environment_build_seconds_total", "counter",
            "Time this process spent building environments, in seconds.",
            (double) atomic_load_explicit(&st->env_build_ms, memory_order_relaxed) / 1000.0);
}

int mp_metrics_render(struct mp_core *core, const struct mp_api_metrics *http, char **ret,
                      size_t *ret_len) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                return -ENOMEM;
        head(f, "mecapy_build_info", "gauge", "The version of this mecapy binary (always 1).");
        fprintf(f, "mecapy_build_info{version=\"%s\"} 1\n", MECAPY_VERSION);
        one(f, "mecapy_start_time_seconds", "gauge", "When this process started, in seconds since the epoch.",
            (double) core->stats.start_ms / 1000.0);
        process_metrics(f, core);
        ops_metrics(f, core, http);

        if (http) {
                head(f, "mecapy_http_requests_total", "counter",
                     "HTTP answers by status code (those MHD gives on its own, 431 and the like, excepted).");
                for (int code = 100; code < MP_HTTP_CODE_MAX; code++) {
                        uint64_t n = atomic_load_explicit(&http->by_code[code], memory_order_relaxed);
                        if (n)
                                fprintf(f, "mecapy_http_requests_total{code=\"%d\"} %llu\n", code,
                                        (unsigned long long) n);
                }
                uint64_t other = atomic_load_explicit(&http->by_code[0], memory_order_relaxed);
                if (other)
                        fprintf(f, "mecapy_http_requests_total{code=\"other\"} %llu\n", (unsigned long long) other);
                head(f, "mecapy_http_request_duration_seconds", "histogram",
                     "Time from the request's arrival to its answer; kind=\"wait\": long polls that were held.");
                for (int k = 0; k < MP_HTTP_KIND_N; k++) {
                        char label[32];
                        snprintf(label, sizeof(label), "kind=\"%s\",", kind_names[k]);
                        hist_series(f, "mecapy_http_request_duration_seconds", label, &http->duration[k]);
                }
        }

        one(f, "mecapy_tasks_created_total", "counter", "Tasks this process stored: calls, workflow nodes, study points, verification cases.",
            (double) atomic_load_explicit(&core->stats.tasks_created, memory_order_relaxed));
        head(f, "mecapy_tasks_ended_total", "counter",
             "Tasks whose end this process recorded (its workers' runs, its cancels), by status.");
        for (int i = 0; i < MP_END_N; i++)
                fprintf(f, "mecapy_tasks_ended_total{status=\"%s\"} %llu\n", mp_task_end_names[i],
                        (unsigned long long) atomic_load_explicit(&core->stats.tasks_ended[i],
                                                                  memory_order_relaxed));
        head(f, "mecapy_task_execution_seconds", "histogram",
             "Execution time (execution_ms) of the runs this process's workers ended.");
        hist_series(f, "mecapy_task_execution_seconds", "", &core->stats.execution);
        pool_metrics(f, core);
        wave2_metrics(f, core);

        if (fclose(f) != 0 || !text) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        if (ret_len)
                *ret_len = len;
        return 0;
}

enum MHD_Result mp_api_metrics_answer(struct mp_api_metrics *m, struct mp_core *core,
                                      struct MHD_Connection *conn, const char *client,
                                      const char *method) {
        _cleanup_free_ char *text = NULL;
        size_t len = 0;

        /* Refused like an unknown route: a scanner learns nothing from it. */
        if (!mp_api_metrics_allowed(m, client))
                return mp_api_send_error(conn, 404, "not_found", "no route /metrics");
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
                return mp_api_send_error(conn, 405, "method_not_allowed",
                                         "%s is not allowed here; use GET", method);
        if (mp_metrics_render(core, m, &text, &len) < 0)
                return mp_api_send_error(conn, 500, "internal", "the metrics could not be rendered");
        return mp_api_send_bytes(conn, 200, CONTENT_TYPE, text, len);
}

/* --- the worker's own small server (--metrics-port) --- */

struct mp_metrics_server {
        struct mp_core *core;
        struct MHD_Daemon *daemon;
        struct mp_api_metrics *http; /* only the access list; its counts stay at zero */
        int port;
};

static enum MHD_Result on_metrics_request(void *cls, struct MHD_Connection *conn, const char *url,
                                          const char *method, const char *version,
                                          const char *upload_data, size_t *upload_data_size,
                                          void **con_cls) {
        struct mp_metrics_server *s = cls;
        char client[48];

        (void) version;
        (void) upload_data;
        if (!*con_cls) { /* headers only so far: wait for the end of the request */
                *con_cls = s;
                return MHD_YES;
        }
        if (*upload_data_size) {
                *upload_data_size = 0; /* a body is ignored */
                return MHD_YES;
        }
        if (!strcmp(url, "/healthz") || !strcmp(url, "/readyz")) {
                static const char ok[] = "{\"status\":\"ok\"}";
                return mp_api_send_bytes(conn, 200, "application/json", ok, sizeof(ok) - 1);
        }
        if (strcmp(url, "/metrics"))
                return mp_api_send_error(conn, 404, "not_found", "no route %.200s", url);
        mp_api_client_address(NULL, conn, client, sizeof(client));
        if (!mp_api_metrics_allowed(s->http, client))
                return mp_api_send_error(conn, 404, "not_found", "no route /metrics");
        if (strcmp(method, "GET") && strcmp(method, "HEAD"))
                return mp_api_send_error(conn, 405, "method_not_allowed", "%s is not allowed here; use GET", method);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        if (mp_metrics_render(s->core, NULL, &text, &len) < 0)
                return mp_api_send_error(conn, 500, "internal", "the metrics could not be rendered");
        return mp_api_send_bytes(conn, 200, CONTENT_TYPE, text, len);
}

int mp_metrics_server_start(struct mp_core *core, struct mp_metrics_server **ret, struct mp_error *err) {
        const struct mp_config *c = core->config;
        struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t) c->metrics_port) };
        struct mp_metrics_server *s;
        const union MHD_DaemonInfo *info;
        int r;

        if (inet_pton(AF_INET, c->listen_host, &addr.sin_addr) != 1)
                return mp_error_set(err, EINVAL, 400, "config", "--host \"%s\" is not an IPv4 address",
                                    c->listen_host);
        s = calloc(1, sizeof(*s));
        if (!s || !(s->http = calloc(1, sizeof(*s->http)))) {
                free(s);
                return -ENOMEM;
        }
        s->core = core;
        if ((r = mp_api_metrics_init(s->http, c, err)) < 0) {
                free(s->http);
                free(s);
                return r;
        }
        s->daemon = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG,
                                     (uint16_t) c->metrics_port, NULL, NULL, on_metrics_request, s,
                                     MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                                     MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 16384,
                                     MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) 30,
                                     MHD_OPTION_CONNECTION_LIMIT, (unsigned) 64,
                                     MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned) 1,
                                     MHD_OPTION_END);
        if (!s->daemon) {
                free(s->http);
                free(s);
                return mp_error_set(err, EADDRINUSE, 500, "config",
                                    "cannot listen on %s:%d for metrics (is the port taken?)",
                                    c->listen_host, c->metrics_port);
        }
        info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
        s->port = info ? info->port : c->metrics_port;
        *ret = s;
        return 0;
}

int mp_metrics_server_port(struct mp_metrics_server *s) {
        return s->port;
}

void mp_metrics_server_stop(struct mp_metrics_server *s) {
        if (!s)
                return;
        MHD_stop_daemon(s->daemon);
        free(s->http);
        free(s);
}
