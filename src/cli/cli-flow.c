/* `mecapy flow push|run|show|retry`: workflows from the command line (docs/cli.md,
 * docs/workflows.md). push saves a JSON or YAML definition (a new version when the caller already
 * has a workflow of that name); run starts a run and follows it to its end with long
 * polls; show prints a run; retry re-runs what failed. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "base/json.h"
#include "cli/cli-internal.h"

static const char flow_usage[] =
        "usage: mecapy flow push FILE.json|FILE.yaml [--json]\n"
        "       mecapy flow run NAME|ID [key=value ...] [--no-wait] [--timeout S] [--json]\n"
        "       mecapy flow show RUN_ID [--json]\n"
        "       mecapy flow retry RUN_ID [--no-wait] [--timeout S] [--json]\n"
        "push saves the definition (a new version when you already have a workflow of\n"
        "that name); run and retry wait for the run to end (exit 1 unless it completed).\n";

/* A run as text: its status, each node's line, its outputs or error. */
static void print_run(json_t *run) {
        json_t *n, *v;
        size_t i;

        printf("run      ");
        mp_cli_put_safe(stdout, mp_cli_str(run, "id"));
        printf("\nstatus   ");
        mp_cli_put_safe(stdout, mp_cli_str(run, "status"));
        printf("\n");
        json_array_foreach(json_object_get(run, "nodes"), i, n) {
                printf("node     %-20.64s %-10.16s ", mp_cli_str(n, "id"), mp_cli_str(n, "status"));
                if (json_is_string(v = json_object_get(n, "skipped_reason")))
                        mp_cli_put_safe(stdout, json_string_value(v));
                else if (json_is_object(v = json_object_get(n, "error")))
                        mp_cli_put_safe(stdout, mp_cli_str(v, "message"));
                else if (json_is_string(v = json_object_get(n, "task_id")))
                        printf("task %s", json_string_value(v));
                else if (json_is_array(v = json_object_get(n, "task_ids")))
                        printf("%zu tasks", json_array_size(v));
                printf("\n");
        }
        if (json_is_object(v = json_object_get(run, "error"))) {
                printf("error    ");
                mp_cli_put_safe(stdout, mp_cli_str(v, "message"));
                printf("\n");
        }
        if ((v = json_object_get(run, "outputs")) && !json_is_null(v)) {
                _cleanup_free_ char *text = mp_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                printf("outputs  ");
                mp_cli_put_safe(stdout, text ? text : "?");
                printf("\n");
        }
}

static int print_result(struct mp_cli *c, json_t *run) {
        if (c->json)
                mp_cli_print_json(stdout, run);
        else
                print_run(run);
        return !strcmp(mp_cli_str(run, "status"), "completed") ? MP_CLI_EXIT_OK : MP_CLI_EXIT_FAILED;
}

/* Follow a run with long polls until it ended (finished_at set) or timeout_s (0: no
 * limit) ran out; prints it. Takes *run. */
static int follow(struct mp_cli *c, json_t **run, long timeout_s) {
        int64_t deadline = timeout_s ? mp_mono_ms() + timeout_s * 1000 : 0;
        _cleanup_free_ char *id = strdup(mp_cli_str(*run, "id")), *esc = NULL;

        if (!id || !(esc = mp_cli_escape(c, id)))
                return MP_CLI_EXIT_HTTP;
        while (json_is_null(json_object_get(*run, "finished_at")) || !json_object_get(*run, "finished_at")) {
                _cleanup_free_ char *path = NULL;
                long w = MP_CLI_POLL_WAIT_S;
                if (deadline) {
                        int64_t left = (deadline - mp_mono_ms()) / 1000;
                        if (left <= 0) {
                                fprintf(stderr, "mecapy flow: run %s has not ended after %ld s\n", id, timeout_s);
                                print_result(c, *run);
                                return MP_CLI_EXIT_FAILED;
                        }
                        w = MP_MIN(w, (long) left);
                }
                if (asprintf(&path, "/api/v1/workflow-runs/%s?wait=%ld", esc, w) < 0)
                        return MP_CLI_EXIT_HTTP;
                json_decref(*run);
                *run = NULL;
                if (mp_cli_api(c, "GET", path, NULL, NULL, (int) w, run, NULL) < 0 || !json_is_object(*run))
                        return MP_CLI_EXIT_HTTP;
        }
        return print_result(c, *run);
}

static int flow_push(struct mp_cli *c, const char *file) {
        _cleanup_free_ char *text = NULL, *esc = NULL, *path = NULL;
        _cleanup_json_ json_t *def = NULL, *wf = NULL;
        struct mp_cli_reply reply = { 0 };
        json_error_t jerr;
        size_t len = 0;
        int r;

        if ((r = mp_read_file(file, MP_MAX_WORKFLOW_BYTES * 2, &text, &len)) < 0) {
                fprintf(stderr, "mecapy flow push: %s: %s\n", file, strerror(-r));
                return MP_CLI_EXIT_USAGE;
        }
        size_t n = strlen(file);
        if ((n > 5 && !strcasecmp(file + n - 5, ".yaml")) || (n > 4 && !strcasecmp(file + n - 4, ".yml"))) {
                char yerr[256];
                if ((r = mp_cli_yaml_load(text, len, &def, yerr, sizeof(yerr))) < 0 || !json_is_object(def)) {
                        fprintf(stderr, "mecapy flow push: %s: not a YAML mapping (%s)\n", file,
                                r < 0 ? (yerr[0] ? yerr : strerror(-r)) : "another value");
                        return MP_CLI_EXIT_USAGE;
                }
        } else
                def = json_loadb(text, len, 0, &jerr);
        if (!json_is_object(def)) {
                fprintf(stderr, "mecapy flow push: %s: not a JSON object (%s, line %d)\n", file,
                        def ? "another value" : jerr.text, jerr.line);
                return MP_CLI_EXIT_USAGE;
        }
        if (mp_cli_session(c, true) < 0)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_request(c, "POST", "/api/v1/workflows", def, NULL, 0, &reply) < 0)
                return MP_CLI_EXIT_HTTP;
        if (reply.status == 409 && json_is_string(json_object_get(def, "name"))) {
                /* The caller's own workflow of that name: a new version of it. */
                mp_cli_reply_free(&reply);
                reply = (struct mp_cli_reply) { 0 };
                if (!(esc = mp_cli_escape(c, json_string_value(json_object_get(def, "name")))) ||
                    asprintf(&path, "/api/v1/workflows/%s", esc) < 0)
                        return MP_CLI_EXIT_HTTP;
                if (mp_cli_request(c, "PUT", path, def, NULL, 0, &reply) < 0)
                        return MP_CLI_EXIT_HTTP;
        }
        if (reply.status < 200 || reply.status >= 300) {
                mp_cli_print_problem(&reply);
                mp_cli_reply_free(&reply);
                return MP_CLI_EXIT_HTTP;
        }
        wf = json_loadb(reply.body.data ? reply.body.data : "", reply.body.len, 0, NULL);
        mp_cli_reply_free(&reply);
        if (!json_is_object(wf)) {
                fprintf(stderr, "mecapy flow push: the server's answer is not a workflow\n");
                return MP_CLI_EXIT_HTTP;
        }
        if (c->json)
                mp_cli_print_json(stdout, wf);
        else {
                printf("pushed ");
                mp_cli_put_safe(stdout, mp_cli_str(wf, "name"));
                printf(" version %" JSON_INTEGER_FORMAT " (%s)\n", json_integer_value(json_object_get(wf, "version")),
                       mp_cli_str(wf, "id"));
        }
        return MP_CLI_EXIT_OK;
}

static int flow_run(struct mp_cli *c, const char *target, int n, char **ops, bool no_wait, long timeout_s) {
        _cleanup_json_ json_t *inputs = json_object(), *body = NULL, *run = NULL;
        _cleanup_free_ char *esc = NULL, *path = NULL;
        char idem[MP_ID_LEN + 1];

        if (!inputs)
                return MP_CLI_EXIT_HTTP;
        for (int i = 0; i < n; i++) {
                _cleanup_error_ struct mp_error err = { 0 };
                _cleanup_free_ char *key = NULL;
                json_t *value = NULL;
                if (mp_cli_parse_assignment(ops[i], &key, &value, &err) < 0) {
                        fprintf(stderr, "mecapy flow run: %s\n", err.message);
                        return MP_CLI_EXIT_USAGE;
                }
                json_object_set_new(inputs, key, value);
        }
        body = json_pack("{s:O}", "inputs", inputs);
        if (!body || mp_cli_session(c, true) < 0)
                return MP_CLI_EXIT_HTTP;
        long w = no_wait ? 0 : timeout_s ? MP_MIN(timeout_s, MP_CLI_POLL_WAIT_S) : MP_CLI_POLL_WAIT_S;
        if (!(esc = mp_cli_escape(c, target)) ||
            asprintf(&path, "/api/v1/workflows/%s/execute?wait=%ld", esc, w) < 0)
                return MP_CLI_EXIT_HTTP;
        mp_id_new(idem); /* a retried request still starts one run */
        if (mp_cli_api(c, "POST", path, body, idem, (int) w, &run, NULL) < 0 || !json_is_object(run))
                return MP_CLI_EXIT_HTTP;
        if (no_wait) {
                if (c->json)
                        mp_cli_print_json(stdout, run);
                else
                        printf("%s\n", mp_cli_str(run, "id"));
                return MP_CLI_EXIT_OK;
        }
        return follow(c, &run, timeout_s);
}

static int run_path(struct mp_cli *c, const char *id, const char *suffix, char **ret) {
        _cleanup_free_ char *esc = NULL;

        if (!mp_id_valid(id)) {
                fprintf(stderr, "mecapy flow: '%s' is not a run id\n", id);
                return -EINVAL;
        }
        if (!(esc = mp_cli_escape(c, id)) || asprintf(ret, "/api/v1/workflow-runs/%s%s", esc, suffix) < 0)
                return -ENOMEM;
        return 0;
}

int mp_cli_flow(int argc, char **argv) {
        const char *timeout = NULL;
        bool help = false, json = false, no_wait = false;
        const struct mp_cli_opt opts[] = {
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "no-wait", 0, MP_CLI_OPT_FLAG, &no_wait, NULL },
                { "timeout", 0, MP_CLI_OPT_VALUE, &timeout, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *run = NULL;
        struct mp_cli c = { 0 };
        long timeout_s = 0;
        int npos, code = MP_CLI_EXIT_USAGE;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("flow", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(flow_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (timeout && mp_parse_long(timeout, 1, 365L * 24 * 3600, &timeout_s) < 0) {
                fprintf(stderr, "mecapy flow: --timeout must be a number of seconds >= 1\n");
                return MP_CLI_EXIT_USAGE;
        }
        if (npos < 2) {
                fputs(flow_usage, stderr);
                return MP_CLI_EXIT_USAGE;
        }
        c.json = json;
        const char *sub = pos[0];
        if (!strcmp(sub, "push") && npos == 2)
                code = flow_push(&c, pos[1]);
        else if (!strcmp(sub, "run"))
                code = flow_run(&c, pos[1], npos - 2, pos + 2, no_wait, timeout_s);
        else if ((!strcmp(sub, "show") || !strcmp(sub, "retry")) && npos == 2) {
                bool retry = !strcmp(sub, "retry");
                code = MP_CLI_EXIT_HTTP;
                if (run_path(&c, pos[1], retry ? "/retry" : "", &path) < 0) {
                        code = MP_CLI_EXIT_USAGE;
                        goto out;
                }
                if (mp_cli_session(&c, true) < 0 ||
                    mp_cli_api(&c, retry ? "POST" : "GET", path, NULL, NULL, 0, &run, NULL) < 0 ||
                    !json_is_object(run))
                        goto out;
                if (!retry)
                        code = c.json ? (mp_cli_print_json(stdout, run), MP_CLI_EXIT_OK) : (print_run(run), MP_CLI_EXIT_OK);
                else if (no_wait)
                        code = print_result(&c, run) == MP_CLI_EXIT_HTTP ? MP_CLI_EXIT_HTTP : MP_CLI_EXIT_OK;
                else
                        code = follow(&c, &run, timeout_s);
        } else
                fputs(flow_usage, stderr);
out:
        mp_cli_done(&c);
        return code;
}
