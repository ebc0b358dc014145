#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "base/limits.h"
#include "base/util.h"

const char mp_config_usage[] =
        "  --host HOST            address to listen on (MECAPY_HOST, 127.0.0.1)\n"
        "  --port PORT            port (MECAPY_PORT, 8000)\n"
        "  --data-dir DIR         data folder (MECAPY_DATA_DIR, ./mecapy-data)\n"
        "  --db URL               metadata store (MECAPY_DB, sqlite:DIR/mecapy.db)\n"
        "  --queue URL            job queue (MECAPY_QUEUE, local:)\n"
        "  --blobs URL            object store (MECAPY_BLOBS, file:DIR/objects)\n"
        "  --workers N            calls run at once (MECAPY_WORKERS, 4)\n"
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
        "  --no-sandbox           DEVELOPMENT ONLY: run user code without isolation\n"
        "                         (MECAPY_NO_SANDBOX=1)\n"
        "  --verbose              debug logging\n";

enum {
        OPT_HOST = 1000, OPT_PORT, OPT_DATA_DIR, OPT_DB, OPT_QUEUE, OPT_BLOBS, OPT_WORKERS,
        OPT_HTTP_THREADS, OPT_PYTHON, OPT_FIMPORTS, OPT_FCALLS, OPT_MAX_TIMEOUT,
        OPT_MAX_MEMORY, OPT_DEF_TIMEOUT, OPT_DEF_MEMORY, OPT_NO_SANDBOX, OPT_VERBOSE,
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

static bool truthy(const char *v) {
        return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes"));
}

static int apply(struct mp_config *c, int opt, const char *name, const char *v,
                 struct mp_error *err) {
        switch (opt) {
        case OPT_HOST: return set_str(&c->listen_host, v);
        case OPT_PORT: return set_int(&c->port, v, 0, 65535, name, err);
        case OPT_DATA_DIR: return set_str(&c->data_dir, v);
        case OPT_DB: return set_str(&c->db_url, v);
        case OPT_QUEUE: return set_str(&c->queue_url, v);
        case OPT_BLOBS: return set_str(&c->blobs_url, v);
        case OPT_WORKERS: return set_int(&c->workers, v, 1, 256, name, err);
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
        }
        return 0;
}

int mp_config_parse(int argc, char **argv, struct mp_config **ret, int *ret_rest,
                    struct mp_error *err) {
        struct option longopts[ELEMENTSOF(table) + 1];
        struct mp_config *c = calloc(1, sizeof(*c));
        int r, o, idx;

        if (!c)
                return -ENOMEM;
        c->port = 8000;
        c->workers = 4;
        c->http_threads = 4;
        c->sandbox = true;
        c->default_timeout_s = MP_DEFAULT_TIMEOUT_S;
        c->max_timeout_s = MP_MAX_TIMEOUT_S;
        c->default_memory_mb = MP_DEFAULT_MEMORY_MB;
        c->max_memory_mb = MP_MAX_MEMORY_MB;
        c->default_cpus = MP_DEFAULT_CPUS;
        c->max_cpus = MP_MAX_CPUS;
        c->max_procs = MP_DEFAULT_MAX_PROCS;
        c->tmp_mb = MP_DEFAULT_TMP_MB;
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
                bool flag = table[i].opt == OPT_NO_SANDBOX || table[i].opt == OPT_VERBOSE;
                longopts[i] = (struct option) { table[i].name, flag ? no_argument : required_argument,
                                                NULL, table[i].opt };
        }
        longopts[ELEMENTSOF(table)] = (struct option) { 0 };
        optind = 1;
        opterr = 0;
        /* "-" first: non-options and unknown options are left in place for the caller. */
        while ((o = getopt_long(argc, argv, "-", longopts, &idx)) != -1) {
                if (o == 1 || o == '?')
                        continue;
                if ((r = apply(c, o, longopts[idx].name, optarg, err)) < 0)
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
        if (c->default_timeout_s > c->max_timeout_s)
                c->default_timeout_s = c->max_timeout_s;
        if (c->default_memory_mb > c->max_memory_mb)
                c->default_memory_mb = c->max_memory_mb;
        *ret = c;
        if (ret_rest)
                *ret_rest = 1;
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
        free(c);
}

const char *mp_config_client_env(const char *name) {
        return getenv(name);
}
