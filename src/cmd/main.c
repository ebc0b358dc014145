/* mecapy: one binary, many roles (see docs/architecture.md). */
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "api/api-metrics.h"
#include "base/config.h"
#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "cli/cli.h"
#include "core/core.h"
#include "exec/exec.h"
#include "store/store.h"
#include "worker/worker.h"

static void usage(FILE *f) {
        fprintf(f,
                "MecaPy: Python calculations as sandboxed, versioned web services.\n\n"
                "Server:\n"
                "  mecapy serve [OPTIONS]       API, worker and sandbox in one process tree\n"
                "                               (--workers 0: API only, workers run elsewhere)\n"
                "  mecapy worker [OPTIONS] [--shard K] [--grace S]\n"
                "                               a standalone worker on a shared queue (--queue redis://...)\n"
                "  mecapy migrate [OPTIONS]     create or upgrade the metadata store, then exit\n"
                "  mecapy admin create-user --email E --password P [--company C] [--role admin|member|viewer]\n"
                "                               [--operator] [OPTIONS]\n"
                "  mecapy admin set-role --email E --role admin|member|viewer [OPTIONS]\n"
                "  mecapy admin gc [OPTIONS]    one pass of the collector (retention, orphaned objects)\n"
                "  mecapy admin quota [--company NAME] [--user EMAIL] [--concurrent-calls N] [--calls-per-day N]\n"
                "                     [--cpu-seconds-per-month N] [--storage-mb N] [OPTIONS]   (N or unlimited)\n"
                "  mecapy admin stats [--days N] [OPTIONS]   the operators' figures, as JSON\n\n"
                "Client (talks to MECAPY_URL, default http://127.0.0.1:8000):\n"
                "  mecapy login | logout\n"
                "  mecapy fn push FILE | ls | show NAME | rm NAME\n"
                "  mecapy run NAME key=value ... [--json FILE] [--no-wait]\n"
                "  mecapy task get | logs | wait | cancel | ls | artifact | rm ...\n"
                "  mecapy flow push FILE.json | run NAME key=value ... | show RUN | retry RUN\n"
                "  mecapy study create FILE.json | show ID | results ID [--csv]\n\n"
                "Server options (and the MECAPY_* variables that set them):\n%s",
                mp_config_usage);
}

/* The usage line of each server command, printed with an option error. */
static const char *usage_line(const char *cmd) {
        return !strcmp(cmd, "serve") ? "mecapy serve [OPTIONS]"
               : !strcmp(cmd, "worker") ? "mecapy worker [OPTIONS] [--shard K] [--grace S]"
               : !strcmp(cmd, "migrate") ? "mecapy migrate [OPTIONS]"
               : !strcmp(cmd, "admin set-role") ? "mecapy admin set-role --email E --role admin|member|viewer [OPTIONS]"
               : !strcmp(cmd, "admin gc") ? "mecapy admin gc [OPTIONS]"
               : !strcmp(cmd, "admin quota") ? "mecapy admin quota [--company NAME] [--user EMAIL] "
                                               "[--concurrent-calls N] [--calls-per-day N] "
                                               "[--cpu-seconds-per-month N] [--storage-mb N] [OPTIONS]"
               : !strcmp(cmd, "admin stats") ? "mecapy admin stats [--days N] [--worker-hour-cost EUR] [OPTIONS]"
                                          : "mecapy admin create-user --email E --password P [--company C] "
                                            "[--role admin|member|viewer] [--operator] [OPTIONS]";
}

/* cmd names the command in messages ("serve", "admin set-role"). */
static int open_config(const char *cmd, int argc, char **argv, struct mp_config **ret) {
        _cleanup_error_ struct mp_error err = { 0 };
        if (mp_config_parse(argc, argv, ret, &err) < 0) {
                fprintf(stderr, "mecapy %s: %s\nusage: %s\n(`mecapy --help` lists the options)\n",
                        cmd, err.message[0] ? err.message : "bad options", usage_line(cmd));
                return -1;
        }
        if ((*ret)->verbose)
                mp_log_set_level(MP_LOG_DEBUG);
        /* Before any thread or child: they all log in this format. */
        if ((*ret)->log_json)
                mp_log_set_format(MP_LOG_JSON);
        return 0;
}

/* An admin command's own options (--email and the like, each with a value) are taken
 * out of argv into values[]; the server options left go to open_config, which refuses
 * anything it does not know. argv[0] stays first. Returns the new argc, or -1 when an
 * option of names[] lacks its value. */
static int take_options(const char *cmd, int argc, char **argv, const char *const *names,
                        const char **values) {
        int out = 1;
        for (int i = 1; i < argc; i++) {
                int k = 0;
                while (names[k] && strcmp(argv[i], names[k]))
                        k++;
                if (!names[k]) {
                        argv[out++] = argv[i];
                        continue;
                }
                if (i + 1 >= argc) {
                        fprintf(stderr, "mecapy %s: %s needs a value\nusage: %s\n", cmd, names[k],
                                usage_line(cmd));
                        return -1;
                }
                values[k] = argv[++i];
        }
        return out;
}

static int cmd_migrate(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;

        if (open_config("migrate", argc, argv, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0) {
                fprintf(stderr, "mecapy migrate: %s\n", err.message);
                mp_config_free(cfg);
                return 1;
        }
        char db[1024];
        mp_config_redact_url(cfg->db_url, db, sizeof(db));
        printf("the store at %s is up to date\n", db);
        mp_core_close(core);
        mp_config_free(cfg);
        return 0;
}

/* mecapy admin set-role --email E --role R: an operator's change (docs/identity.md). */
static int cmd_admin_set_role(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        static const char *const names[] = { "--email", "--role", NULL };
        const char *values[2] = { 0 }, *email, *role;
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *user = NULL;
        int rc = 1;

        /* argv: "admin" "set-role" ...: from here on argv[0] is "set-role". */
        if ((argc = take_options("admin set-role", argc - 1, argv + 1, names, values)) < 0)
                return 2;
        argv++;
        email = values[0];
        role = values[1];
        if (!email || !role) {
                fprintf(stderr, "mecapy admin set-role: --email and --role are required\nusage: %s\n",
                        usage_line("admin set-role"));
                return 2;
        }
        if (open_config("admin set-role", argc, argv, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0 || mp_core_admin_set_role(core, email, role, &user, &err) < 0) {
                fprintf(stderr, "mecapy admin set-role: %s\n", err.message);
                goto out;
        }
        printf("user %s is now %s\n", json_string_value(json_object_get(user, "email")),
               json_string_value(json_object_get(user, "role")));
        json_decref(user);
        rc = 0;
out:
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

/* mecapy admin gc: one pass of the collector, now, on the configured backends
 * (docs/operations.md#the-collector). */
static int cmd_admin_gc(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *report = NULL;
        int rc = 1;

        if (open_config("admin gc", argc - 1, argv + 1, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0 || mp_core_gc(core, &report, &err) < 0) {
                fprintf(stderr, "mecapy admin gc: %s\n", err.message);
                goto out;
        }
        printf("deleted %" JSON_INTEGER_FORMAT " task(s) past their company's retention and the objects of %"
               JSON_INTEGER_FORMAT " deleted task(s)\n",
               json_integer_value(json_object_get(report, "tasks_deleted")),
               json_integer_value(json_object_get(report, "orphans_deleted")));
        if (cfg->wheelhouse || cfg->package_index)
                printf("removed the layers of %" JSON_INTEGER_FORMAT " unused environment(s)\n",
                       json_integer_value(json_object_get(report, "layers_deleted")));
        if (cfg->package_index)
                printf("removed %" JSON_INTEGER_FORMAT " cached wheel(s) no environment uses (%" JSON_INTEGER_FORMAT
                       " bytes)\n",
                       json_integer_value(json_object_get(report, "wheels_deleted")),
                       json_integer_value(json_object_get(report, "wheel_bytes_deleted")));
        json_decref(report);
        rc = 0;
out:
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

/* A quota option's value: a whole number, or "unlimited"/"none" (null). NULL when it
 * is neither. */
static json_t *quota_value(const char *v) {
        long n;

        if (!strcmp(v, "unlimited") || !strcmp(v, "none"))
                return json_null();
        if (mp_parse_long(v, 0, 1000000000000L, &n) < 0)
                return NULL;
        return json_integer(n);
}

/* The end of an admin command that prints JSON: out (taken) on stdout when r >= 0, else
 * the error (and its field errors) on stderr; core and cfg closed. The exit code. */
static int admin_json_done(const char *cmd, int r, json_t *out, struct mp_error *err, struct mp_core *core,
                           struct mp_config *cfg) {
        if (r < 0) {
                fprintf(stderr, "mecapy %s: %s\n", cmd, err->message);
                if (json_is_array(err->errors))
                        json_dumpf(err->errors, stderr, JSON_COMPACT), fputc('\n', stderr);
        } else {
                json_dumpf(out, stdout, JSON_INDENT(2));
                putchar('\n');
        }
        json_decref(out);
        mp_core_close(core);
        mp_config_free(cfg);
        return r < 0 ? 1 : 0;
}

/* mecapy admin quota --company NAME [--user EMAIL] [--concurrent-calls N] ...: an
 * operator's change of a company's (or a member's) quota, on the store as the server
 * options name it; options not given keep their value. Prints the quota as JSON. */
static int cmd_admin_quota(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        static const char *const names[] = { "--company", "--user", "--concurrent-calls", "--calls-per-day",
                                             "--cpu-seconds-per-month", "--storage-mb", NULL };
        static const char *const fields[] = { "concurrent_calls", "calls_per_day", "cpu_seconds_per_month",
                                              "storage_mb" };
        const char *values[6] = { 0 };
        _cleanup_json_ json_t *changes = json_object();
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *out = NULL;
        int r;

        if ((argc = take_options("admin quota", argc - 1, argv + 1, names, values)) < 0)
                return 2;
        argv++;
        if (!values[0] && !values[1]) {
                fprintf(stderr, "mecapy admin quota: --company or --user is required\nusage: %s\n",
                        usage_line("admin quota"));
                return 2;
        }
        for (int i = 0; i < 4; i++) {
                json_t *v;
                if (!values[i + 2])
                        continue;
                if (!(v = quota_value(values[i + 2]))) {
                        fprintf(stderr, "mecapy admin quota: %s takes a whole number or \"unlimited\", not \"%s\"\n",
                                names[i + 2], values[i + 2]);
                        return 2;
                }
                json_object_set_new(changes, fields[i], v);
        }
        if (open_config("admin quota", argc, argv, &cfg) < 0)
                return 2;
        r = mp_core_open(cfg, &core, &err);
        if (r >= 0)
                r = mp_core_admin_quota(core, values[0], values[1], changes, &out, &err);
        return admin_json_done("admin quota", r, out, &err, core, cfg);
}

/* mecapy admin stats [--days N]: the operators' figures (GET /api/v1/admin/stats) read
 * from the store; --worker-hour-cost gives the cost per call. Prints JSON. */
static int cmd_admin_stats(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        static const char *const names[] = { "--days", NULL };
        const char *values[1] = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *out = NULL;
        long days = 7;
        int r;

        if ((argc = take_options("admin stats", argc - 1, argv + 1, names, values)) < 0)
                return 2;
        argv++;
        if (values[0] && mp_parse_long(values[0], 1, MP_MAX_USAGE_DAYS, &days) < 0) {
                fprintf(stderr, "mecapy admin stats: --days takes a whole number from 1 to %d\n", MP_MAX_USAGE_DAYS);
                return 2;
        }
        if (open_config("admin stats", argc, argv, &cfg) < 0)
                return 2;
        r = mp_core_open(cfg, &core, &err);
        if (r >= 0)
                r = mp_core_admin_stats(core, NULL, (int) days, &out, &err);
        return admin_json_done("admin stats", r, out, &err, core, cfg);
}

/* Take the flag `name` (no value) out of argv: true when it was there. */
static bool take_flag(int *argc, char **argv, const char *name) {
        bool found = false;
        int out = 0;

        for (int i = 0; i < *argc; i++) {
                if (i > 0 && !strcmp(argv[i], name))
                        found = true;
                else
                        argv[out++] = argv[i];
        }
        *argc = out;
        return found;
}

static int cmd_admin(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        static const char *const names[] = { "--email", "--password", "--company", "--role", NULL };
        const char *values[4] = { 0 }, *email, *password, *company, *role;
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *user = NULL;
        bool operator_flag;
        int rc = 1;

        if (argc >= 2 && !strcmp(argv[1], "set-role"))
                return cmd_admin_set_role(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "gc"))
                return cmd_admin_gc(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "quota"))
                return cmd_admin_quota(argc, argv);
        if (argc >= 2 && !strcmp(argv[1], "stats"))
                return cmd_admin_stats(argc, argv);
        operator_flag = take_flag(&argc, argv, "--operator");
        if (argc < 2 || strcmp(argv[1], "create-user")) {
                fprintf(stderr, "usage: %s\n       %s\n       %s\n       %s\n       %s\n",
                        usage_line("admin create-user"), usage_line("admin set-role"), usage_line("admin gc"),
                        usage_line("admin quota"), usage_line("admin stats"));
                return 2;
        }
        if ((argc = take_options("admin create-user", argc - 1, argv + 1, names, values)) < 0)
                return 2;
        argv++;
        email = values[0];
        password = values[1];
        company = values[2];
        role = values[3];
        if (!email || !password) {
                fprintf(stderr, "mecapy admin create-user: --email and --password are required\nusage: %s\n",
                        usage_line("admin create-user"));
                return 2;
        }
        if (open_config("admin create-user", argc, argv, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0 ||
            mp_core_create_user(core, email, password, company, role, &user, &err) < 0 ||
            (operator_flag &&
             mp_core_user_set_operator(core, json_string_value(json_object_get(user, "id")), true, &err) < 0)) {
                fprintf(stderr, "mecapy admin create-user: %s\n", err.message);
                goto out;
        }
        printf("created user %s (id %s, role %s%s%s%s)\n", json_string_value(json_object_get(user, "email")),
               json_string_value(json_object_get(user, "id")), json_string_value(json_object_get(user, "role")),
               company ? ", company " : "", company ? company : "", operator_flag ? ", operator" : "");
        json_decref(user);
        rc = 0;
out:
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

/* Fork the executor while this process still has a single thread: every sandbox is
 * forked from it, never from the threaded server (see docs/architecture.md). */
static int start_executor(const struct mp_config *cfg, unsigned extra_channels,
                          struct mp_executor **ret, struct mp_error *err) {
        /* Environments' layers (core/environments.c): DATA_DIR/layers, where serve
         * builds them (or any node brings them from the object store) and its executor
         * reads. */
        char layers[PATH_MAX] = "";
        int r;
        if ((r = mp_core_layers_dir(cfg, layers, sizeof(layers))) < 0 && (cfg->wheelhouse || cfg->package_index))
                return mp_error_set(err, -r, 500, "config", "cannot create the layers folder under %s: %s",
                                    cfg->data_dir, strerror(-r));
        if (r < 0)
                layers[0] = 0; /* the base environment only (core/environments.c says why) */
        struct mp_exec_config xcfg = {
                .sandbox = cfg->sandbox,
                .python = cfg->python,
                .channels = (unsigned) cfg->workers + extra_channels,
                .max_instances = (unsigned) cfg->pool_max_instances,
                .max_memory_mb = (uint64_t) cfg->pool_memory_mb,
                .max_per_function = (unsigned) cfg->function_concurrency,
                .max_calls = (unsigned) cfg->instance_calls,
                .idle_s = cfg->instance_idle_s,
                .preload = cfg->preload,
                .cgroup_root = cfg->cgroup_root,
                .allow_unlimited = cfg->allow_unlimited_sandbox,
                .layers_dir = layers[0] ? layers : NULL,
        };
        if (!cfg->sandbox)
                mp_warn("--no-sandbox: USER CODE RUNS WITHOUT ISOLATION. For development only; never "
                        "serve other people's code like this.");
        return mp_executor_start(&xcfg, ret, err);
}

/* What serve and worker share: the executor (forked first), the core on the configured
 * backends, queue recovery, and SIGINT/SIGTERM blocked for sigwait (before any thread
 * starts, so every thread inherits the mask). Errors are logged here. On failure the
 * caller still frees *ret_ex and *ret_core. */
static int start_node(const struct mp_config *cfg, unsigned extra_channels, bool recovery_fatal,
                      struct mp_executor **ret_ex, struct mp_core **ret_core, sigset_t *ret_sigs) {
        _cleanup_error_ struct mp_error err = { 0 };

        if (start_executor(cfg, extra_channels, ret_ex, &err) < 0) {
                mp_err("cannot start the sandbox executor: %s", err.message);
                return -1;
        }
        if (mp_core_open(cfg, ret_core, &err) < 0) {
                mp_err("%s", err.message);
                return -1;
        }
        (*ret_core)->executor = *ret_ex;
        if (mp_core_recover(*ret_core, &err) < 0) {
                if (recovery_fatal) {
                        mp_err("recovering the queue: %s", err.message);
                        return -1;
                }
                /* Jobs a crash or a Redis outage left behind: the reaper retries. */
                mp_warn("recovering the queue: %s (will retry)", err.message);
        }
        sigemptyset(ret_sigs);
        sigaddset(ret_sigs, SIGINT);
        sigaddset(ret_sigs, SIGTERM);
        /* SIGHUP: serve reads its TLS certificate again; blocked in every thread so that
         * it never ends the process. */
        sigaddset(ret_sigs, SIGHUP);
        pthread_sigmask(SIG_BLOCK, ret_sigs, NULL);
        signal(SIGPIPE, SIG_IGN);
        /* Environments a stopped node left queued or building are built again from their
         * locks (on the build thread, started now that the signals are blocked). */
        if (mp_core_envs_recover(*ret_core, &err) < 0)
                mp_warn("environments to build: %s", err.message);
        return 0;
}

static int cmd_serve(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        struct mp_executor *ex = NULL;
        struct mp_api *api = NULL;
        struct mp_worker_pool *workers = NULL;
        struct mp_gc *gc = NULL;
        char db[1024];
        sigset_t sigs;
        int sig = 0, rc = 1;

        if (open_config("serve", argc, argv, &cfg) < 0)
                return 2;
        /* Executor channels: the workers, and uploads being analyzed. */
        if (start_node(cfg, 4, true, &ex, &core, &sigs) < 0)
                goto out;
        if (mp_worker_pool_start(core, cfg->workers, cfg->shard, &workers, &err) < 0 ||
            mp_api_start(core, &api, &err) < 0 || mp_core_gc_start(core, cfg->gc_interval_s, &gc, &err) < 0) {
                mp_err("%s", err.message);
                goto out;
        }
        mp_config_redact_url(cfg->db_url, db, sizeof(db));
        mp_info("MecaPy serving on %s://%s:%d (data in %s, store %s, %d workers, sandbox %s)",
                cfg->tls_cert ? "https" : "http", cfg->listen_host, mp_api_port(api), cfg->data_dir, db,
                cfg->workers, cfg->sandbox ? "on" : "OFF");
        while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
                if (!cfg->tls_cert) {
                        mp_info("received SIGHUP: nothing to reload (no --tls-cert)");
                        continue;
                }
                /* A certificate that does not load leaves the current one in service. */
                if (mp_api_tls_reload(api, &err) < 0)
                        mp_err("received SIGHUP: %s; still serving the previous certificate", err.message);
                mp_error_clear(&err);
        }
        mp_info("received %s, stopping", strsignal(sig));
        rc = 0;
out:
        mp_core_gc_stop(gc);
        mp_api_stop(api);
        mp_worker_pool_stop(workers);
        mp_executor_stop(ex);
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

/* A standalone worker: the same backends as serve (named by the same URLs), no HTTP. */
static int cmd_worker(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        struct mp_executor *ex = NULL;
        struct mp_worker_pool *workers = NULL;
        struct mp_metrics_server *metrics = NULL;
        char queue[1024], db[1024];
        sigset_t sigs;
        int sig = 0, rc = 1;

        if (open_config("worker", argc, argv, &cfg) < 0)
                return 2;
        if (cfg->workers == 0 || !strncmp(cfg->queue_url, "local:", 6)) {
                fprintf(stderr, "mecapy worker: %s\n", cfg->workers == 0 ? "--workers must be at least 1" :
                        "a standalone worker needs a shared queue (--queue redis://host:port) and store "
                        "(--db postgres://...); the local queue only serves the workers inside `mecapy serve`");
                mp_config_free(cfg);
                return 2;
        }
        if (start_node(cfg, 1, false, &ex, &core, &sigs) < 0)
                goto out;
        if (mp_worker_pool_start(core, cfg->workers, cfg->shard, &workers, &err) < 0) {
                mp_err("%s", err.message);
                goto out;
        }
        /* No API here: --metrics-port serves /metrics and /healthz alone. */
        if (cfg->metrics_port > 0) {
                if (mp_metrics_server_start(core, &metrics, &err) < 0) {
                        mp_err("%s", err.message);
                        goto out;
                }
                mp_info("metrics on http://%s:%d/metrics", cfg->listen_host, mp_metrics_server_port(metrics));
        }
        mp_config_redact_url(cfg->queue_url, queue, sizeof(queue));
        mp_config_redact_url(cfg->db_url, db, sizeof(db));
        mp_info("MecaPy worker ready (queue %s, store %s, %d threads, sandbox %s)", queue, db, cfg->workers,
                cfg->sandbox ? "on" : "OFF");
        while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
                mp_info("received SIGHUP: a worker has nothing to reload");
        mp_info("received %s: no new jobs; waiting up to %d s for %d running call(s)", strsignal(sig),
                cfg->grace_s, mp_worker_pool_running(workers));
        if (mp_worker_pool_drain(workers, (int64_t) cfg->grace_s * 1000) < 0) {
                /* The calls still running would outlive the grace period: their jobs go
                 * back to the queue for another worker, and this process ends them by
                 * exiting (the executor and its sandboxes die with it). */
                mp_warn("grace period over with %d call(s) running: their jobs go back to the queue",
                        mp_worker_pool_running(workers));
                mp_worker_pool_abandon(workers);
                _exit(0);
        }
        mp_info("drained: every running call finished");
        rc = 0;
out:
        mp_metrics_server_stop(metrics);
        mp_worker_pool_stop(workers);
        mp_executor_stop(ex);
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

int main(int argc, char **argv) {
        const char *cmd = argc > 1 ? argv[1] : NULL;

        if (!cmd || !strcmp(cmd, "help") || !strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
                usage(cmd ? stdout : stderr);
                return cmd ? 0 : 2;
        }
        if (!strcmp(cmd, "--version") || !strcmp(cmd, "version")) {
                printf("mecapy %s\n", MECAPY_VERSION);
                return 0;
        }
        if (!strcmp(cmd, "serve"))
                return cmd_serve(argc - 1, argv + 1);
        if (!strcmp(cmd, "worker"))
                return cmd_worker(argc - 1, argv + 1);
        if (!strcmp(cmd, "migrate"))
                return cmd_migrate(argc - 1, argv + 1);
        if (!strcmp(cmd, "admin"))
                return cmd_admin(argc - 1, argv + 1);
        if (!strcmp(cmd, "login") || !strcmp(cmd, "logout") || !strcmp(cmd, "fn") ||
            !strcmp(cmd, "run") || !strcmp(cmd, "task") || !strcmp(cmd, "flow") || !strcmp(cmd, "study"))
                return mp_cli_main(cmd, argc - 1, argv + 1);
        fprintf(stderr, "mecapy: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        return 2;
}
