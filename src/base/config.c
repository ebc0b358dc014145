#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/config.h"
#include "base/limits.h"
#include "base/util.h"

const char mp_config_usage[] =
        "  --host HOST            address to listen on (MECAPY_HOST, 127.0.0.1)\n"
        "  --port PORT            port (MECAPY_PORT, 8000)\n"
        "  --data-dir DIR         data folder (MECAPY_DATA_DIR, ./mecapy-data)\n"
        "  --db URL               metadata store (MECAPY_DB, sqlite:DIR/mecapy.db)\n"
        "  --durability MODE      full: an accepted call is on disk before it is answered;\n"
        "                         fast: a power cut may lose the last calls (SQLite store;\n"
        "                         MECAPY_DURABILITY, full)\n"
        "  --queue URL            job queue (MECAPY_QUEUE, local:)\n"
        "  --blobs URL            object store (MECAPY_BLOBS, file:DIR/objects)\n"
        "  --workers N            calls run at once (MECAPY_WORKERS, 4; 0: serve runs no worker)\n"
        "  --http-threads N       HTTP threads (MECAPY_HTTP_THREADS, 4)\n"
        "  --python PATH          interpreter for user code (MECAPY_PYTHON, /usr/bin/python3)\n"
        "  --forbidden-imports L  comma-separated modules refused at upload\n"
        "                         (MECAPY_FORBIDDEN_IMPORTS, os,subprocess,sys,socket)\n"
        "  --forbidden-calls L    comma-separated builtins refused at upload\n"
        "                         (MECAPY_FORBIDDEN_CALLS, eval,exec)\n"
        "  --max-timeout S        largest timeout a function may ask (MECAPY_MAX_TIMEOUT, 3600)\n"
        "  --max-memory MB        largest memory a function may ask (MECAPY_MAX_MEMORY, 16384)\n"
        "  --default-timeout S    (MECAPY_DEFAULT_TIMEOUT, 300)\n"
        "  --default-memory MB    (MECAPY_DEFAULT_MEMORY, 2048)\n"
        "  --max-instances N      warm function instances kept (MECAPY_MAX_INSTANCES, 64)\n"
        "  --pool-memory MB       their private memory together (MECAPY_POOL_MEMORY, 25% of RAM)\n"
        "  --instance-idle S      an idle instance, and an environment's unused zygote, retires after S\n"
        "                         seconds (MECAPY_INSTANCE_IDLE, 600)\n"
        "  --instance-calls N     an instance retires after N calls (MECAPY_INSTANCE_CALLS, 10000)\n"
        "  --function-concurrency N  calls of one function and user at once\n"
        "                         (MECAPY_FUNCTION_CONCURRENCY, 4)\n"
        "  --preload L            modules every zygote imports (MECAPY_PRELOAD,\n"
        "                         numpy,scipy,scipy.optimize)\n"
        "  --shard K              worker: the queue shard to take work from first\n"
        "                         (MECAPY_SHARD, picked by the queue)\n"
        "  --grace S              worker: on SIGTERM, running calls get S seconds to end\n"
        "                         (MECAPY_GRACE, 30)\n"
        "  --no-sandbox           DEVELOPMENT ONLY: run user code without isolation\n"
        "                         (MECAPY_NO_SANDBOX=1)\n"
        "  --cgroup-root PATH     delegated cgroup v2 directory for the sandboxes' limits\n"
        "                         (MECAPY_CGROUP_ROOT; default: cgroup v1, else our own cgroup)\n"
        "  --allow-unlimited-sandbox  start even where no cgroup limit can be applied; user\n"
        "                         code then has rlimits only (MECAPY_ALLOW_UNLIMITED_SANDBOX=1)\n"
        "  --verbose              debug logging\n"
        "  --auth LIST            identity providers: local, oidc:ISSUER-URL, or both\n"
        "                         comma separated (MECAPY_AUTH, local)\n"
        "  --oidc-audience AUD    audience required in access tokens (MECAPY_OIDC_AUDIENCE)\n"
        "  --oidc-client-id ID    client of the browser/CLI login (MECAPY_OIDC_CLIENT_ID)\n"
        "  --oidc-client-secret S for a confidential client (MECAPY_OIDC_CLIENT_SECRET)\n"
        "  --oidc-company-claim C claim naming the company (MECAPY_OIDC_COMPANY_CLAIM, company)\n"
        "  --oidc-role-map MAP    idp-role=admin|member|viewer,... (MECAPY_OIDC_ROLE_MAP)\n"
        "  --oidc-redirect-uri U  callback URL registered at the provider\n"
        "                         (MECAPY_OIDC_REDIRECT_URI, from the request's Host)\n"
        "  --allow-signup         anyone may create a local account (MECAPY_ALLOW_SIGNUP=1)\n"
        "  --rate-limit N         API requests a minute per user (MECAPY_RATE_LIMIT, 600; 0 off)\n"
        "  --auth-rate-limit N    logins, sign-ups and OpenID starts a minute per client\n"
        "                         address (MECAPY_AUTH_RATE_LIMIT, 10; 0 off)\n"
        "  --cors-origin LIST     comma-separated origins allowed by CORS (MECAPY_CORS_ORIGIN)\n"
        "  --trusted-proxy LIST   comma-separated proxy addresses whose X-Forwarded-For is\n"
        "                         believed (MECAPY_TRUSTED_PROXY)\n"
        "  --metrics-allow LIST   addresses or ADDR/BITS besides loopback that may read\n"
        "                         /metrics; none: nobody (MECAPY_METRICS_ALLOW)\n"
        "  --metrics-port PORT    worker: serve /metrics and /healthz on this port\n"
        "                         (MECAPY_METRICS_PORT, 0: off)\n"
        "  --web-dir DIR          the built dashboard (MECAPY_WEB_DIR, web/dist beside the\n"
        "                         binary's build folder or the source tree)\n"
        "  --gc-interval S        serve: the collector (retention, orphaned objects) runs\n"
        "                         every S seconds (MECAPY_GC_INTERVAL, 3600; 0: off)\n"
        "  --log-format FORMAT    text, or json: one JSON object a line with time, level, msg\n"
        "                         and the request_id and task_id it is about\n"
        "                         (MECAPY_LOG_FORMAT, text)\n"
        "  --tls-cert FILE        serve: HTTPS with this PEM certificate chain, read again on\n"
        "                         SIGHUP (MECAPY_TLS_CERT; needs --tls-key)\n"
        "  --tls-key FILE         serve: the certificate's PEM private key (MECAPY_TLS_KEY)\n"
        "  --worker-hour-cost EUR what an hour of one worker slot costs, for the operators'\n"
        "                         cost per call (MECAPY_WORKER_HOUR_COST, unset: none)\n"
        "  --wheelhouse DIR       a folder of wheels that functions' requirements are built\n"
        "                         from, offline; repeatable (MECAPY_WHEELHOUSE, ':' between)\n"
        "  --package-index URL    a PEP 503 simple index (http or https) whose wheels the\n"
        "                         server fetches for functions' requirements; repeatable\n"
        "                         (MECAPY_PACKAGE_INDEX, spaces between)\n";

enum {
        OPT_HOST = 1000, OPT_PORT, OPT_DATA_DIR, OPT_DB, OPT_QUEUE, OPT_BLOBS, OPT_WORKERS,
        OPT_HTTP_THREADS, OPT_PYTHON, OPT_FIMPORTS, OPT_FCALLS, OPT_MAX_TIMEOUT,
        OPT_MAX_MEMORY, OPT_DEF_TIMEOUT, OPT_DEF_MEMORY, OPT_NO_SANDBOX, OPT_VERBOSE,
        OPT_AUTH = 1100, OPT_OIDC_AUDIENCE, OPT_OIDC_CLIENT_ID, OPT_OIDC_CLIENT_SECRET,
        OPT_OIDC_COMPANY_CLAIM, OPT_OIDC_ROLE_MAP, OPT_OIDC_REDIRECT_URI,
        OPT_MAX_INSTANCES = 1200, OPT_POOL_MEMORY, OPT_INSTANCE_IDLE, OPT_INSTANCE_CALLS,
        OPT_FUNCTION_CONCURRENCY, OPT_PRELOAD, OPT_SHARD, OPT_GRACE,
        OPT_ALLOW_SIGNUP = 1300, OPT_RATE_LIMIT, OPT_AUTH_RATE_LIMIT, OPT_CORS_ORIGIN,
        OPT_TRUSTED_PROXY, OPT_METRICS_ALLOW = 1400, OPT_METRICS_PORT,
        OPT_CGROUP_ROOT = 1500, OPT_ALLOW_UNLIMITED,
        OPT_DURABILITY = 1600,
        OPT_WEB_DIR = 1700,
        OPT_GC_INTERVAL = 1800, OPT_LOG_FORMAT, OPT_TLS_CERT, OPT_TLS_KEY, OPT_WORKER_HOUR_COST,
        OPT_WHEELHOUSE = 1900, OPT_PACKAGE_INDEX,
};

static const struct {
        int opt;
        const char *name, *env;
} table[] = {
        { OPT_HOST, "host", "MECAPY_HOST" },
        { OPT_PORT, "port", "MECAPY_PORT" },
        { OPT_DATA_DIR, "data-dir", "MECAPY_DATA_DIR" },
        { OPT_DB, "db", "MECAPY_DB" },
        { OPT_QUEUE, "queue", "MECAPY_QUEUE" },
        { OPT_BLOBS, "blobs", "MECAPY_BLOBS" },
        { OPT_WORKERS, "workers", "MECAPY_WORKERS" },
        { OPT_HTTP_THREADS, "http-threads", "MECAPY_HTTP_THREADS" },
        { OPT_PYTHON, "python", "MECAPY_PYTHON" },
        { OPT_FIMPORTS, "forbidden-imports", "MECAPY_FORBIDDEN_IMPORTS" },
        { OPT_FCALLS, "forbidden-calls", "MECAPY_FORBIDDEN_CALLS" },
        { OPT_MAX_TIMEOUT, "max-timeout", "MECAPY_MAX_TIMEOUT" },
        { OPT_MAX_MEMORY, "max-memory", "MECAPY_MAX_MEMORY" },
        { OPT_DEF_TIMEOUT, "default-timeout", "MECAPY_DEFAULT_TIMEOUT" },
        { OPT_DEF_MEMORY, "default-memory", "MECAPY_DEFAULT_MEMORY" },
        { OPT_NO_SANDBOX, "no-sandbox", "MECAPY_NO_SANDBOX" },
        { OPT_VERBOSE, "verbose", "MECAPY_VERBOSE" },
        { OPT_AUTH, "auth", "MECAPY_AUTH" },
        { OPT_OIDC_AUDIENCE, "oidc-audience", "MECAPY_OIDC_AUDIENCE" },
        { OPT_OIDC_CLIENT_ID, "oidc-client-id", "MECAPY_OIDC_CLIENT_ID" },
        { OPT_OIDC_CLIENT_SECRET, "oidc-client-secret", "MECAPY_OIDC_CLIENT_SECRET" },
        { OPT_OIDC_COMPANY_CLAIM, "oidc-company-claim", "MECAPY_OIDC_COMPANY_CLAIM" },
        { OPT_OIDC_ROLE_MAP, "oidc-role-map", "MECAPY_OIDC_ROLE_MAP" },
        { OPT_OIDC_REDIRECT_URI, "oidc-redirect-uri", "MECAPY_OIDC_REDIRECT_URI" },
        { OPT_MAX_INSTANCES, "max-instances", "MECAPY_MAX_INSTANCES" },
        { OPT_POOL_MEMORY, "pool-memory", "MECAPY_POOL_MEMORY" },
        { OPT_INSTANCE_IDLE, "instance-idle", "MECAPY_INSTANCE_IDLE" },
        { OPT_INSTANCE_CALLS, "instance-calls", "MECAPY_INSTANCE_CALLS" },
        { OPT_FUNCTION_CONCURRENCY, "function-concurrency", "MECAPY_FUNCTION_CONCURRENCY" },
        { OPT_PRELOAD, "preload", "MECAPY_PRELOAD" },
        { OPT_SHARD, "shard", "MECAPY_SHARD" },
        { OPT_GRACE, "grace", "MECAPY_GRACE" },
        { OPT_ALLOW_SIGNUP, "allow-signup", "MECAPY_ALLOW_SIGNUP" },
        { OPT_RATE_LIMIT, "rate-limit", "MECAPY_RATE_LIMIT" },
        { OPT_AUTH_RATE_LIMIT, "auth-rate-limit", "MECAPY_AUTH_RATE_LIMIT" },
        { OPT_CORS_ORIGIN, "cors-origin", "MECAPY_CORS_ORIGIN" },
        { OPT_TRUSTED_PROXY, "trusted-proxy", "MECAPY_TRUSTED_PROXY" },
        { OPT_METRICS_ALLOW, "metrics-allow", "MECAPY_METRICS_ALLOW" },
        { OPT_METRICS_PORT, "metrics-port", "MECAPY_METRICS_PORT" },
        { OPT_CGROUP_ROOT, "cgroup-root", "MECAPY_CGROUP_ROOT" },
        { OPT_ALLOW_UNLIMITED, "allow-unlimited-sandbox", "MECAPY_ALLOW_UNLIMITED_SANDBOX" },
        { OPT_DURABILITY, "durability", "MECAPY_DURABILITY" },
        { OPT_WEB_DIR, "web-dir", "MECAPY_WEB_DIR" },
        { OPT_GC_INTERVAL, "gc-interval", "MECAPY_GC_INTERVAL" },
        { OPT_LOG_FORMAT, "log-format", "MECAPY_LOG_FORMAT" },
        { OPT_TLS_CERT, "tls-cert", "MECAPY_TLS_CERT" },
        { OPT_TLS_KEY, "tls-key", "MECAPY_TLS_KEY" },
        { OPT_WORKER_HOUR_COST, "worker-hour-cost", "MECAPY_WORKER_HOUR_COST" },
        { OPT_WHEELHOUSE, "wheelhouse", "MECAPY_WHEELHOUSE" },
        { OPT_PACKAGE_INDEX, "package-index", "MECAPY_PACKAGE_INDEX" },
};

static int set_str(char **dst, const char *v) {
        char *d = strdup(v);
        if (!d)
                return -ENOMEM;
        free(*dst);
        *dst = d;
        return 0;
}

static int set_int(int *dst, const char *v, long min, long max, const char *name,
                   struct mp_error *err) {
        long n;
        if (mp_parse_long(v, min, max, &n) < 0)
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--%s must be a whole number from %ld to %ld, not \"%s\"",
                                    name, min, max, v);
        *dst = (int) n;
        return 0;
}

/* --wheelhouse DIR, once per folder (the variable: folders separated by ':'): each
 * must be an existing folder; kept absolute, one a line, in the order given. */
static int add_wheelhouse(struct mp_config *c, const char *v, struct mp_error *err) {
        for (const char *p = v; *p;) {
                const char *e = strchr(p, ':');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                _cleanup_free_ char *dir = strndup(p, n), *abs = NULL;
                struct stat st;
                char *joined;
                if (!dir)
                        return -ENOMEM;
                if (n > 0) {
                        abs = realpath(dir, NULL);
                        if (!abs || stat(abs, &st) < 0 || !S_ISDIR(st.st_mode) || strchr(abs, '\n'))
                                return mp_error_set(err, EINVAL, 400, "config",
                                                    "--wheelhouse %.200s is not a folder", dir);
                        if (asprintf(&joined, "%s%s%s", c->wheelhouse ? c->wheelhouse : "",
                                     c->wheelhouse ? "\n" : "", abs) < 0)
                                return -ENOMEM;
                        free(c->wheelhouse);
                        c->wheelhouse = joined;
                }
                p = e ? e + 1 : p + n;
        }
        return 0;
}

/* --package-index URL, once per index (the variable: URLs separated by spaces): http://
 * or https://, no spaces or control characters; kept one a line, without a trailing
 * '/', in the order given. */
static int add_package_index(struct mp_config *c, const char *v, struct mp_error *err) {
        for (const char *p = v; *p;) {
                size_t n = strcspn(p, " ");
                if (n > 0) {
                        _cleanup_free_ char *url = strndup(p, n);
                        char *joined;
                        if (!url)
                                return -ENOMEM;
                        bool ok = n < 1024 && (!strncmp(url, "http://", 7) || !strncmp(url, "https://", 8));
                        for (size_t i = 0; ok && i < n; i++)
                                ok = (unsigned char) url[i] > ' ' && url[i] != 0x7f && url[i] != '#' && url[i] != '?';
                        if (!ok)
                                return mp_error_set(err, EINVAL, 400, "config",
                                                    "--package-index %.200s is not an http:// or https:// URL "
                                                    "(without a query or fragment)", url);
                        for (size_t e = n; e > 8 && url[e - 1] == '/';)
                                url[--e] = 0;
                        if (asprintf(&joined, "%s%s%s", c->package_index ? c->package_index : "",
                                     c->package_index ? "\n" : "", url) < 0)
                                return -ENOMEM;
                        free(c->package_index);
                        c->package_index = joined;
                }
                p += n;
                while (*p == ' ')
                        p++;
        }
        return 0;
}

static bool truthy(const char *v) {
        return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

static int apply(struct mp_config *c, int opt, const char *name, const char *v,
                 struct mp_error *err) {
        switch (opt) {
        case OPT_HOST: return set_str(&c->listen_host, v);
        case OPT_PORT: return set_int(&c->port, v, 0, 65535, name, err);
        case OPT_DATA_DIR: return set_str(&c->data_dir, v);
        case OPT_WEB_DIR: return set_str(&c->web_dir, v);
        case OPT_DB: return set_str(&c->db_url, v);
        case OPT_QUEUE: return set_str(&c->queue_url, v);
        case OPT_BLOBS: return set_str(&c->blobs_url, v);
        /* serve may run no worker threads (a pure API node); `worker` needs one. */
        case OPT_WORKERS: return set_int(&c->workers, v, 0, 256, name, err);
        case OPT_HTTP_THREADS: return set_int(&c->http_threads, v, 1, 256, name, err);
        case OPT_PYTHON: return set_str(&c->python, v);
        case OPT_FIMPORTS: return set_str(&c->forbidden_imports, v);
        case OPT_FCALLS: return set_str(&c->forbidden_calls, v);
        case OPT_MAX_TIMEOUT: return set_int(&c->max_timeout_s, v, 1, MP_MAX_TIMEOUT_S, name, err);
        case OPT_MAX_MEMORY: return set_int(&c->max_memory_mb, v, 64, MP_MAX_MEMORY_MB, name, err);
        case OPT_DEF_TIMEOUT: return set_int(&c->default_timeout_s, v, 1, MP_MAX_TIMEOUT_S, name, err);
        case OPT_DEF_MEMORY: return set_int(&c->default_memory_mb, v, 64, MP_MAX_MEMORY_MB, name, err);
        case OPT_NO_SANDBOX: c->sandbox = !(v ? truthy(v) : true); return 0;
        case OPT_VERBOSE: c->verbose = v ? truthy(v) : true; return 0;
        case OPT_AUTH: return set_str(&c->auth, v);
        case OPT_OIDC_AUDIENCE: return set_str(&c->oidc_audience, v);
        case OPT_OIDC_CLIENT_ID: return set_str(&c->oidc_client_id, v);
        case OPT_OIDC_CLIENT_SECRET: return set_str(&c->oidc_client_secret, v);
        case OPT_OIDC_COMPANY_CLAIM: return set_str(&c->oidc_company_claim, v);
        case OPT_OIDC_ROLE_MAP: return set_str(&c->oidc_role_map, v);
        case OPT_OIDC_REDIRECT_URI: return set_str(&c->oidc_redirect_uri, v);
        /* The warm pool; 0 leaves exec/'s default. */
        case OPT_MAX_INSTANCES: return set_int(&c->pool_max_instances, v, 0, 100000, name, err);
        case OPT_POOL_MEMORY: return set_int(&c->pool_memory_mb, v, 0, 1 << 24, name, err);
        case OPT_INSTANCE_IDLE: return set_int(&c->instance_idle_s, v, 0, 86400 * 7, name, err);
        case OPT_INSTANCE_CALLS: return set_int(&c->instance_calls, v, 0, 1 << 30, name, err);
        case OPT_FUNCTION_CONCURRENCY: return set_int(&c->function_concurrency, v, 0, 4096, name, err);
        case OPT_PRELOAD: return set_str(&c->preload, v);
        case OPT_SHARD: return set_int(&c->shard, v, 0, 255, name, err);
        case OPT_GRACE: return set_int(&c->grace_s, v, 0, 86400, name, err);
        case OPT_ALLOW_SIGNUP: c->allow_signup = v ? truthy(v) : true; return 0;
        case OPT_RATE_LIMIT: return set_int(&c->rate_limit, v, 0, MP_MAX_RATE_PER_MIN, name, err);
        case OPT_AUTH_RATE_LIMIT: return set_int(&c->auth_rate_limit, v, 0, MP_MAX_RATE_PER_MIN, name, err);
        case OPT_CORS_ORIGIN: return set_str(&c->cors_origins, v);
        case OPT_TRUSTED_PROXY: return set_str(&c->trusted_proxies, v);
        case OPT_METRICS_ALLOW: return set_str(&c->metrics_allow, v);
        case OPT_METRICS_PORT: return set_int(&c->metrics_port, v, 0, 65535, name, err);
        case OPT_CGROUP_ROOT:
                if (v[0] != '/')
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--cgroup-root must be an absolute path, not \"%s\"", v);
                return set_str(&c->cgroup_root, v);
        case OPT_ALLOW_UNLIMITED: c->allow_unlimited_sandbox = v ? truthy(v) : true; return 0;
        case OPT_DURABILITY:
                if (strcmp(v, "full") && strcmp(v, "fast"))
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--durability takes full or fast, not \"%s\"", v);
                c->durability_fast = strcmp(v, "fast") == 0;
                return 0;
        case OPT_GC_INTERVAL: return set_int(&c->gc_interval_s, v, 0, MP_MAX_GC_INTERVAL_S, name, err);
        case OPT_LOG_FORMAT:
                if (strcmp(v, "text") && strcmp(v, "json"))
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--log-format takes text or json, not \"%s\"", v);
                c->log_json = strcmp(v, "json") == 0;
                return 0;
        case OPT_TLS_CERT: return set_str(&c->tls_cert, v);
        case OPT_TLS_KEY: return set_str(&c->tls_key, v);
        case OPT_WORKER_HOUR_COST: {
                char *end = NULL;
                double d = strtod(v, &end);
                if (!end || end == v || *end || !(d >= 0) || d > 1e9)
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--worker-hour-cost takes an amount from 0 to 1e9, not \"%s\"", v);
                c->worker_hour_cost = d;
                return 0;
        }
        case OPT_WHEELHOUSE: return add_wheelhouse(c, v, err);
        case OPT_PACKAGE_INDEX: return add_package_index(c, v, err);
        }
        return 0;
}

/* --auth "local", "oidc:<issuer>" or both, comma separated. The issuer is taken whole
 * after "oidc:" up to the next comma (an issuer URL has none). */
static int parse_auth(struct mp_config *c, struct mp_error *err) {
        const char *p = c->auth ? c->auth : "local";
        int r;

        c->auth_local = false;
        while (*p) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (n == 5 && !strncmp(p, "local", 5))
                        c->auth_local = true;
                else if (n > 5 && !strncmp(p, "oidc:", 5)) {
                        char *iss = strndup(p + 5, n - 5);
                        if (!iss)
                                return -ENOMEM;
                        free(c->oidc_issuer);
                        c->oidc_issuer = iss;
                } else if (n > 0)
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--auth takes local and oidc:<issuer-url>, comma "
                                            "separated, not \"%.*s\"", (int) MP_MIN(n, 200), p);
                p = e ? e + 1 : p + n;
        }
        if (!c->auth_local && !c->oidc_issuer)
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--auth names no identity provider; use local, oidc:<issuer-url> or both");
        if (c->oidc_issuer && (strncmp(c->oidc_issuer, "https://", 8) && strncmp(c->oidc_issuer, "http://", 7)))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "the OpenID issuer \"%s\" must be an https:// URL", c->oidc_issuer);
        if (c->oidc_issuer && (!c->oidc_audience || !*c->oidc_audience))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--oidc-audience is required with oidc: it is the aud that "
                                    "access tokens for MecaPy must carry");
        if (!c->oidc_company_claim && (r = set_str(&c->oidc_company_claim, "company")) < 0)
                return r;
        return 0;
}

/* getopt_long takes any unambiguous prefix ("--data" for --data-dir); a server option is
 * only taken spelled out, so that a typo is never read as some other option. */
static bool spelled_out(const char *given, const char *name) {
        size_t n = strlen(name);
        return given && !strncmp(given, "--", 2) && !strncmp(given + 2, name, n) &&
               (given[2 + n] == 0 || given[2 + n] == '=');
}

/* --durability fast reaches the SQLite store as its URL's parameter (the store reads no
 * configuration); a URL that says durability= itself keeps what it says. PostgreSQL's
 * durability is the server's (synchronous_commit). */
static int durability_url(struct mp_config *c) {
        char *url;

        if (!c->durability_fast || strncmp(c->db_url, "sqlite:", 7) || strstr(c->db_url, "durability="))
                return 0;
        if (asprintf(&url, "%s%cdurability=fast", c->db_url, strchr(c->db_url, '?') ? '&' : '?') < 0)
                return -ENOMEM;
        free(c->db_url);
        c->db_url = url;
        return 0;
}

int mp_config_parse(int argc, char **argv, struct mp_config **ret, struct mp_error *err) {
        struct option longopts[ELEMENTSOF(table) + 1];
        struct mp_config *c = calloc(1, sizeof(*c));
        int r, o, idx;

        if (!c)
                return -ENOMEM;
        c->port = 8000;
        c->workers = 4;
        c->shard = -1;
        c->grace_s = 30;
        c->http_threads = 4;
        c->worker_hour_cost = -1;
        c->sandbox = true;
        c->default_timeout_s = MP_DEFAULT_TIMEOUT_S;
        c->max_timeout_s = MP_MAX_TIMEOUT_S;
        c->default_memory_mb = MP_DEFAULT_MEMORY_MB;
        c->max_memory_mb = MP_MAX_MEMORY_MB;
        c->default_cpus = MP_DEFAULT_CPUS;
        c->max_cpus = MP_MAX_CPUS;
        c->max_procs = MP_DEFAULT_MAX_PROCS;
        c->tmp_mb = MP_DEFAULT_TMP_MB;
        c->rate_limit = MP_DEFAULT_RATE_PER_MIN;
        c->auth_rate_limit = MP_DEFAULT_AUTH_RATE_PER_MIN;
        c->gc_interval_s = MP_DEFAULT_GC_INTERVAL_S;
        if ((r = set_str(&c->listen_host, "127.0.0.1")) < 0 ||
            (r = set_str(&c->data_dir, "./mecapy-data")) < 0 ||
            (r = set_str(&c->queue_url, "local:")) < 0 ||
            (r = set_str(&c->python, "/usr/bin/python3")) < 0 ||
            (r = set_str(&c->forbidden_imports, "os,subprocess,sys,socket")) < 0 ||
            (r = set_str(&c->forbidden_calls, "eval,exec")) < 0)
                goto fail;

        /* The environment first, the command line over it. */
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                const char *v = getenv(table[i].env);
                if (v && *v && (r = apply(c, table[i].opt, table[i].name, v, err)) < 0)
                        goto fail;
        }
        for (size_t i = 0; i < ELEMENTSOF(table); i++) {
                bool flag = table[i].opt == OPT_NO_SANDBOX || table[i].opt == OPT_VERBOSE ||
                            table[i].opt == OPT_ALLOW_SIGNUP || table[i].opt == OPT_ALLOW_UNLIMITED;
                longopts[i] = (struct option) { table[i].name, flag ? no_argument : required_argument,
                                                NULL, table[i].opt };
        }
        longopts[ELEMENTSOF(table)] = (struct option) { 0 };
        optind = 1;
        opterr = 0;
        /* "-" first: operands come back as 1, in place, so they can be named; ":" makes a
         * missing value ':' rather than '?'. A mistyped option must never be ignored: the
         * operator would run with a default they did not choose. */
        while ((o = getopt_long(argc, argv, "-:", longopts, &idx)) != -1) {
                const char *arg = argv[optind - 1];
                if (o == 1)
                        r = mp_error_set(err, EINVAL, 400, "config", "unexpected argument \"%.200s\"", arg);
                else if (o == ':')
                        r = mp_error_set(err, EINVAL, 400, "config", "%.200s needs a value", arg);
                else if (o == '?' && optopt >= OPT_HOST)
                        r = mp_error_set(err, EINVAL, 400, "config", "%.200s: the option takes no value", arg);
                else if (o == '?')
                        r = mp_error_set(err, EINVAL, 400, "config", "unknown option \"%.200s\"", arg);
                else if (!spelled_out(optarg && optarg == arg ? argv[optind - 2] : arg, longopts[idx].name))
                        r = mp_error_set(err, EINVAL, 400, "config", "unknown option \"%.200s\" (did you mean --%s?)",
                                         optarg && optarg == arg ? argv[optind - 2] : arg, longopts[idx].name);
                else
                        r = apply(c, o, longopts[idx].name, optarg, err);
                if (r < 0)
                        goto fail;
        }
        if (!c->db_url && asprintf(&c->db_url, "sqlite:%s/mecapy.db", c->data_dir) < 0)
                c->db_url = NULL;
        if (!c->blobs_url && asprintf(&c->blobs_url, "file:%s/objects", c->data_dir) < 0)
                c->blobs_url = NULL;
        if (!c->db_url || !c->blobs_url) {
                r = -ENOMEM;
                goto fail;
        }
        if ((r = durability_url(c)) < 0)
                goto fail;
        if ((r = parse_auth(c, err)) < 0)
                goto fail;
        if (!c->tls_cert != !c->tls_key) {
                r = mp_error_set(err, EINVAL, 400, "config", "%s is given without %s: HTTPS needs both the "
                                 "certificate and its key", c->tls_cert ? "--tls-cert" : "--tls-key",
                                 c->tls_cert ? "--tls-key" : "--tls-cert");
                goto fail;
        }
        if (c->default_timeout_s > c->max_timeout_s)
                c->default_timeout_s = c->max_timeout_s;
        if (c->default_memory_mb > c->max_memory_mb)
                c->default_memory_mb = c->max_memory_mb;
        *ret = c;
        return 0;
fail:
        mp_config_free(c);
        return r;
}

void mp_config_free(struct mp_config *c) {
        if (!c)
                return;
        free(c->listen_host);
        free(c->data_dir);
        free(c->db_url);
        free(c->queue_url);
        free(c->blobs_url);
        free(c->python);
        free(c->forbidden_imports);
        free(c->forbidden_calls);
        free(c->preload);
        free(c->auth);
        free(c->oidc_issuer);
        free(c->oidc_audience);
        free(c->oidc_client_id);
        free(c->oidc_client_secret);
        free(c->oidc_company_claim);
        free(c->oidc_role_map);
        free(c->oidc_redirect_uri);
        free(c->cors_origins);
        free(c->trusted_proxies);
        free(c->metrics_allow);
        free(c->cgroup_root);
        free(c->web_dir);
        free(c->tls_cert);
        free(c->wheelhouse);
        free(c->package_index);
        free(c->tls_key);
        free(c);
}

void mp_config_redact_url(const char *url, char *buf, size_t size) {
        const char *scheme = strstr(url, "://"), *at, *colon, *pw;
        size_t n;

        snprintf(buf, size, "%s", url);
        /* user:password@ in the authority (before the first / after the scheme). */
        if (scheme) {
                const char *auth = scheme + 3, *end = auth + strcspn(auth, "/?#");
                at = memrchr(auth, '@', (size_t) (end - auth));
                colon = at ? memchr(auth, ':', (size_t) (at - auth)) : NULL;
                if (colon) {
                        n = (size_t) (colon + 1 - url);
                        snprintf(buf, size, "%.*s***%s", (int) n, url, at);
                }
        }
        /* libpq's password= parameter, in a query or a key=value string. */
        if ((pw = strstr(buf, "password=")) && (pw == buf || strchr("?& ", pw[-1]))) {
                char rest[1024];
                const char *e = pw + 9 + strcspn(pw + 9, "& ");
                snprintf(rest, sizeof(rest), "%s", e);
                n = (size_t) (pw + 9 - buf);
                if (n + 3 < size)
                        snprintf(buf + n, size - n, "***%s", rest);
        }
}

const char *mp_config_client_env(const char *name) {
        return getenv(name);
}
