/* The server's configuration, parsed once from the command line and MECAPY_*
 * variables (the command line wins) into an immutable struct. Nothing outside config.c
 * reads the environment. */
#pragma once

#include <stdbool.h>

#include "base/error.h"

struct mp_config {
        char *listen_host;   /* --host / MECAPY_HOST, "127.0.0.1" */
        int port;            /* --port / MECAPY_PORT, 8000 */
        char *data_dir;      /* --data-dir / MECAPY_DATA_DIR, "./mecapy-data" */
        char *db_url;        /* --db / MECAPY_DB, "sqlite:<data-dir>/mecapy.db" */
        char *queue_url;     /* --queue / MECAPY_QUEUE, "local:" */
        char *blobs_url;     /* --blobs / MECAPY_BLOBS, "file:<data-dir>/objects" */
        int workers;         /* --workers / MECAPY_WORKERS, calls run at once, 4 */
        int http_threads;    /* --http-threads / MECAPY_HTTP_THREADS, 4 */
        bool sandbox;        /* false with --no-sandbox / MECAPY_NO_SANDBOX=1 */
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
};

/* Parse the options of `serve`, `worker`, `migrate` and `admin` from argv (options it
 * does not know are left for the caller: they are moved to the end and *ret_rest says
 * where they start). Returns 0 or -EINVAL with err naming the option. */
int mp_config_parse(int argc, char **argv, struct mp_config **ret, int *ret_rest,
                    struct mp_error *err);
void mp_config_free(struct mp_config *c);
/* The value of a MECAPY_* variable for the client (MECAPY_URL, MECAPY_TOKEN,
 * MECAPY_CONFIG_DIR), or NULL. */
const char *mp_config_client_env(const char *name);
/* Usage text for the server options. */
extern const char mp_config_usage[];
