/* The server's configuration, parsed once from the command line and MECAPY_*
 * variables (the command line wins) into an immutable struct. Nothing outside config.c
 * reads the environment. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/error.h"

struct mp_config {
        char *listen_host;   /* --host / MECAPY_HOST, "127.0.0.1" */
        int port;            /* --port / MECAPY_PORT, 8000 */
        char *data_dir;      /* --data-dir / MECAPY_DATA_DIR, "./mecapy-data" */
        char *web_dir;       /* --web-dir / MECAPY_WEB_DIR: the built dashboard, NULL: found */
        char *db_url;        /* --db / MECAPY_DB, "sqlite:<data-dir>/mecapy.db" */
        bool durability_fast; /* --durability fast / MECAPY_DURABILITY=fast: SQLite commits
                               * without a sync (a power cut may lose the last calls);
                               * db_url then ends in "?durability=fast" */
        char *queue_url;     /* --queue / MECAPY_QUEUE, "local:" */
        char *blobs_url;     /* --blobs / MECAPY_BLOBS, "file:<data-dir>/objects" */
        int workers;         /* --workers / MECAPY_WORKERS, calls run at once, 4 */
        int http_threads;    /* --http-threads / MECAPY_HTTP_THREADS, 4 */
        bool sandbox;        /* false with --no-sandbox / MECAPY_NO_SANDBOX=1 */
        char *cgroup_root;   /* --cgroup-root / MECAPY_CGROUP_ROOT: a delegated cgroup v2
                              * directory for the sandboxes' limits; NULL: found */
        bool allow_unlimited_sandbox; /* --allow-unlimited-sandbox: start even when no
                                       * cgroup limit can be applied (a loud warning) */
        char *python;        /* --python / MECAPY_PYTHON, "/usr/bin/python3" */
        /* Import policy checked at upload (not the security boundary). */
        char *forbidden_imports; /* --forbidden-imports, comma separated */
        char *forbidden_calls;   /* --forbidden-calls, comma separated */
        /* Default and maximum limits per call. */
        int default_timeout_s, max_timeout_s;
        int default_memory_mb, max_memory_mb;
        int default_cpus, max_cpus;
        int max_procs;
        int tmp_mb;
        bool verbose;
        /* The warm pool (0 = exec/'s default). */
        int pool_max_instances;   /* --max-instances */
        int pool_memory_mb;       /* --pool-memory */
        int instance_idle_s;      /* --instance-idle */
        int instance_calls;       /* --instance-calls */
        int function_concurrency; /* --function-concurrency */
        char *preload;            /* --preload, NULL = the default set */
        int shard;                /* worker --shard, -1: the queue picks */
        int grace_s;              /* worker --grace: SIGTERM drain time */
        /* Identity (docs/identity.md). */
        char *auth;               /* --auth / MECAPY_AUTH, "local"; "local,oidc:<issuer>" */
        bool auth_local;          /* "local" is in --auth: password login is on */
        char *oidc_issuer;        /* the <issuer> of "oidc:<issuer>", NULL when off */
        char *oidc_audience;      /* --oidc-audience: required in access tokens' aud */
        char *oidc_client_id;     /* --oidc-client-id: for the login flow (ID token aud) */
        char *oidc_client_secret; /* --oidc-client-secret: NULL for a public PKCE client */
        char *oidc_company_claim; /* --oidc-company-claim, "company" */
        char *oidc_role_map;      /* --oidc-role-map "idp-role=mecapy-role,...", NULL */
        char *oidc_redirect_uri;  /* --oidc-redirect-uri: our callback URL as the provider
                                   * knows it; NULL = derived from the request's Host */
        /* Abuse limits (docs/identity.md#abuse-limits). */
        bool allow_signup;        /* --allow-signup / MECAPY_ALLOW_SIGNUP=1: POST auth/signup */
        int rate_limit;           /* --rate-limit N: API requests a minute per user, 600; 0 off */
        int auth_rate_limit;      /* --auth-rate-limit N: login, sign-up and OpenID starts a
                                   * minute per client address, 10; 0 off */
        char *cors_origins;       /* --cors-origin LIST: origins allowed by CORS, NULL none */
        char *trusted_proxies;    /* --trusted-proxy LIST: peers whose X-Forwarded-For is
                                   * believed, NULL none */
        /* Monitoring (docs/operations.md#metrics). */
        char *metrics_allow;      /* --metrics-allow LIST: addresses (or ADDR/BITS) besides
                                   * loopback that may read /metrics; "none": nobody */
        int metrics_port;         /* worker --metrics-port: serve /metrics there, 0 off */
        /* Retention (docs/operations.md#the-collector). */
        int gc_interval_s;        /* serve --gc-interval S: a collector pass every S seconds,
                                   * 3600; 0 off */
        /* Operations (docs/operations.md#logs, docs/deployment.md#tls). */
        bool log_json;            /* --log-format json / MECAPY_LOG_FORMAT: one JSON object a line */
        char *tls_cert;           /* --tls-cert FILE: serve HTTPS with this PEM chain ... */
        char *tls_key;            /* --tls-key FILE: ... and this key; both or neither */
        /* The operators' figures (docs/operations.md#cost-per-call). */
        double worker_hour_cost;  /* --worker-hour-cost EUR: an hour of one worker slot; -1
                                   * when unset */        /* Per-function requirements (docs/operations.md#environments). */
        char *wheelhouse;         /* --wheelhouse DIR (repeatable): folders of wheels the
                                   * environments are built from, absolute, one a line;
                                   * MECAPY_WHEELHOUSE: folders separated by ':'. NULL none */
        char *package_index;      /* --package-index URL (repeatable): PEP 503 simple indexes
                                   * whose wheels the server fetches itself into
                                   * LAYERS/.wheels, one a line, no trailing '/'. NULL none */
};

/* Parse the server options of `serve`, `worker`, `migrate` and `admin` from argv
 * (argv[0] is the command). An unknown option, a known one without its value, or an
 * operand is refused: -EINVAL with err naming it. Returns 0 or -EINVAL/-ENOMEM. */
int mp_config_parse(int argc, char **argv, struct mp_config **ret, struct mp_error *err);
void mp_config_free(struct mp_config *c);
/* The value of a MECAPY_* variable for the client (MECAPY_URL, MECAPY_TOKEN,
 * MECAPY_CONFIG_DIR), or NULL. */
const char *mp_config_client_env(const char *name);
/* url with the password of its user info ("scheme://user:PASSWORD@host") and of a
 * password= parameter replaced by "***", into buf: what may be logged. */
void mp_config_redact_url(const char *url, char *buf, size_t size);
/* Usage text for the server options. */
extern const char mp_config_usage[];
