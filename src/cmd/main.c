/* mecapy: one binary, many roles (see docs/architecture.md). */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "api/api.h"
#include "base/config.h"
#include "base/log.h"
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
                "  mecapy migrate [OPTIONS]     create or upgrade the metadata store, then exit\n"
                "  mecapy admin create-user --email E --password P [--company C] [--role admin|member|viewer]\n"
                "                               [OPTIONS]\n\n"
                "Client (talks to MECAPY_URL, default http://127.0.0.1:8000):\n"
                "  mecapy login | logout\n"
                "  mecapy fn push FILE | ls | show NAME | rm NAME\n"
                "  mecapy run NAME key=value ... [--json FILE] [--no-wait]\n"
                "  mecapy task get | logs | wait | cancel | ls | artifact ...\n\n"
                "Server options (and the MECAPY_* variables that set them):\n%s",
                mp_config_usage);
}

static int open_config(int argc, char **argv, struct mp_config **ret) {
        _cleanup_error_ struct mp_error err = { 0 };
        if (mp_config_parse(argc, argv, ret, NULL, &err) < 0) {
                fprintf(stderr, "mecapy: %s\n", err.message[0] ? err.message : "bad options");
                return -1;
        }
        if ((*ret)->verbose)
                mp_log_set_level(MP_LOG_DEBUG);
        return 0;
}

static int cmd_migrate(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;

        if (open_config(argc, argv, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0) {
                fprintf(stderr, "mecapy migrate: %s\n", err.message);
                mp_config_free(cfg);
                return 1;
        }
        printf("the store at %s is up to date\n", cfg->db_url);
        mp_core_close(core);
        mp_config_free(cfg);
        return 0;
}

static int cmd_admin(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        const char *email = NULL, *password = NULL, *company = NULL, *role = NULL;
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        json_t *user = NULL;
        int rc = 1;

        if (argc < 2 || strcmp(argv[1], "create-user")) {
                fprintf(stderr, "usage: mecapy admin create-user --email E --password P [--company C] "
                                "[--role admin|member|viewer] [--data-dir D | --db URL]\n");
                return 2;
        }
        for (int i = 2; i < argc; i++) {
                const char **dst = !strcmp(argv[i], "--email") ? &email
                                   : !strcmp(argv[i], "--password") ? &password
                                   : !strcmp(argv[i], "--company") ? &company
                                   : !strcmp(argv[i], "--role") ? &role : NULL;
                if (dst && i + 1 < argc)
                        *dst = argv[++i];
        }
        if (!email || !password) {
                fprintf(stderr, "mecapy admin create-user: --email and --password are required\n");
                return 2;
        }
        if (open_config(argc - 1, argv + 1, &cfg) < 0)
                return 2;
        if (mp_core_open(cfg, &core, &err) < 0 ||
            mp_core_create_user(core, email, password, company, role, &user, &err) < 0) {
                fprintf(stderr, "mecapy admin create-user: %s\n", err.message);
                goto out;
        }
        printf("created user %s (id %s, role %s%s%s)\n", json_string_value(json_object_get(user, "email")),
               json_string_value(json_object_get(user, "id")), json_string_value(json_object_get(user, "role")),
               company ? ", company " : "", company ? company : "");
        json_decref(user);
        rc = 0;
out:
        mp_core_close(core);
        mp_config_free(cfg);
        return rc;
}

static int cmd_serve(int argc, char **argv) {
        _cleanup_error_ struct mp_error err = { 0 };
        struct mp_config *cfg = NULL;
        struct mp_core *core = NULL;
        struct mp_executor *ex = NULL;
        struct mp_api *api = NULL;
        struct mp_worker_pool *workers = NULL;
        sigset_t sigs;
        int sig = 0, rc = 1;

        if (open_config(argc, argv, &cfg) < 0)
                return 2;
        /* The executor is forked first, while this process has a single thread: every
         * sandbox is forked from it, never from the threaded server. */
        struct mp_exec_config xcfg = {
                .sandbox = cfg->sandbox,
                .python = cfg->python,
                .channels = (unsigned) cfg->workers + 4, /* workers + uploads being analyzed */
        };
        if (!cfg->sandbox)
                mp_warn("--no-sandbox: USER CODE RUNS WITHOUT ISOLATION. For development only; never "
                        "serve other people's code like this.");
        if (mp_executor_start(&xcfg, &ex, &err) < 0) {
                mp_err("cannot start the sandbox executor: %s", err.message);
                goto out;
        }
        if (mp_core_open(cfg, &core, &err) < 0) {
                mp_err("%s", err.message);
                goto out;
        }
        core->executor = ex;
        if (mp_core_recover(core, &err) < 0) {
                mp_err("recovering the queue: %s", err.message);
                goto out;
        }
        sigemptyset(&sigs);
        sigaddset(&sigs, SIGINT);
        sigaddset(&sigs, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &sigs, NULL);
        signal(SIGPIPE, SIG_IGN);
        if (mp_worker_pool_start(core, cfg->workers, "worker", &workers, &err) < 0 ||
            mp_api_start(core, &api, &err) < 0) {
                mp_err("%s", err.message);
                goto out;
        }
        mp_info("MecaPy serving on http://%s:%d (data in %s, store %s, %d workers, sandbox %s)",
                cfg->listen_host, mp_api_port(api), cfg->data_dir, cfg->db_url, cfg->workers,
                cfg->sandbox ? "on" : "OFF");
        sigwait(&sigs, &sig);
        mp_info("received %s, stopping", strsignal(sig));
        rc = 0;
out:
        mp_api_stop(api);
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
        if (!strcmp(cmd, "migrate"))
                return cmd_migrate(argc - 1, argv + 1);
        if (!strcmp(cmd, "admin"))
                return cmd_admin(argc - 1, argv + 1);
        if (!strcmp(cmd, "login") || !strcmp(cmd, "logout") || !strcmp(cmd, "fn") ||
            !strcmp(cmd, "run") || !strcmp(cmd, "task"))
                return mp_cli_main(cmd, argc - 1, argv + 1);
        fprintf(stderr, "mecapy: unknown command \"%s\"\n\n", cmd);
        usage(stderr);
        return 2;
}
