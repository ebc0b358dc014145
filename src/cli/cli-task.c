/* `mecapy run` and `mecapy task get|logs|wait|cancel|ls|artifact|rm`. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli-internal.h"

static const char run_usage[] =
        "usage: mecapy run NAME|ID [key=value ...] [--json FILE|-] [--version N]\n"
        "                  [--timeout S] [--no-wait] [--json]\n"
        "\n"
        "Call a function and print its result (pretty JSON on stdout; logs on stderr, as the\n"
        "function prints them, and its progress: a bar on a terminal, else a line each).\n"
        "\n"
        "Inputs:\n"
        "  key=value     the value is read as JSON when it parses: L=2.5 (number), n=3\n"
        "                (integer), ok=true (boolean), xs=[1,2] (list), o='{\"a\":1}' (object),\n"
        "                s='\"3\"' (string); otherwise it is the text itself: name=steel\n"
        "  key:=json     the value must be JSON (an error otherwise)\n"
        "  key==text     the value is always the string text (e.g. id==42 gives \"42\")\n"
        "  --json FILE   read the inputs object from FILE ('-': standard input); key=value\n"
        "                operands override its keys. Also --inputs FILE, or --json=FILE.\n"
        "\n"
        "Options:\n"
        "  --version N   run version N instead of the latest\n"
        "  --timeout S   wait at most S seconds for the task to end (default: until it ends)\n"
        "  --no-wait     queue the task, print its id and exit 0\n"
        "  --json        (with no FILE after it) print the task as JSON\n"
        "\n"
        "Exit: 0 completed, 1 failed/timed_out/cancelled or still running after --timeout,\n"
        "2 usage error, 3 HTTP, authentication or connection error.\n";

static const char task_usage[] =
        "usage: mecapy task get ID [--json]\n"
        "       mecapy task logs ID\n"
        "       mecapy task wait ID [--timeout S] [--json]\n"
        "       mecapy task cancel ID [--json]\n"
        "       mecapy task ls [--function NAME|ID] [--status S] [--limit N] [--cursor C] [--json]\n"
        "       mecapy task artifact ID NAME [-o FILE|-]\n"
        "       mecapy task rm ID [--json]\n"
        "\n"
        "get      a task's status, timings, result or error\n"
        "logs     what the function printed (stdout and stderr)\n"
        "wait     follow the task to its end (its logs and progress on stderr) and print\n"
        "         it as run does (same exit codes)\n"
        "cancel   cancel a queued or running task\n"
        "ls       your tasks, newest first, one line each: id, status, function, version,\n"
        "         queued time, execution time and the error's type (S: queued, running,\n"
        "         completed, failed, timed_out, cancelled; N: 1-200, default 50); a list\n"
        "         holds no results nor logs: `task get ID` shows them\n"
        "artifact save a file the function wrote in outputs/ to ./NAME (never overwritten)\n"
        "         or to FILE (-o -: standard output)\n"
        "rm       delete an ended task with its result, logs and artifacts (cancel a\n"
        "         running one first)\n";

static bool ended(const char *status) {
        return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
               strcmp(status, "timed_out") == 0 || strcmp(status, "cancelled") == 0;
}

static int task_path(struct mp_cli *c, const char *id, const char *suffix, char **ret) {
        _cleanup_free_ char *esc = mp_cli_escape(c, id);
        if (!esc || asprintf(ret, "/api/v1/tasks/%s%s", esc, suffix) < 0)
                return -ENOMEM;
        return 0;
}

/* What of a task's logs went to stderr already, while it ran (follow_task): all of
 * them (its stream reached the end), or the text of the log events a stream showed
 * before it was lost. */
struct logs_shown {
        bool all;
        const char *text;
        size_t len;
};

/* The part of the final logs not shown yet: after the shown text when the logs start
 * with it (each shown event ended with a newline, which the logs' last line may lack);
 * all of them, said so, when they do not (the call ran again: a retry starts its logs
 * anew). */
static const char *logs_not_shown(const char *logs, const struct logs_shown *shown) {
        size_t n = strlen(logs);

        if (!shown || shown->len == 0)
                return logs;
        if (n >= shown->len && !memcmp(logs, shown->text, shown->len))
                return logs + shown->len;
        if (n + 1 == shown->len && shown->text[n] == '\n' && !memcmp(logs, shown->text, n))
                return logs + n;
        fprintf(stderr, "mecapy: the task's logs are not those shown so far (it ran again); all of them "
                        "follow\n");
        return logs;
}

/* Print an ended (or given-up-on) task as run does; returns the exit code. shown: what
 * of its logs went to stderr already (NULL: none). */
static int report_task(struct mp_cli *c, json_t *task, bool gave_up, const struct logs_shown *shown) {
        const char *status = mp_cli_str(task, "status");
        const char *logs = mp_cli_str(task, "logs");
        json_t *error = json_object_get(task, "error");
        int code = strcmp(status, "completed") == 0 ? MP_CLI_EXIT_OK : MP_CLI_EXIT_FAILED;

        if (c->json) {
                mp_cli_print_json(stdout, task);
                return code;
        }
        if (*logs && !(shown && shown->all)) {
                const char *rest = logs_not_shown(logs, shown);
                fputs(rest, stderr); /* the function's own output, as it printed it */
                if (*rest && rest[strlen(rest) - 1] != '\n')
                        fputc('\n', stderr);
        }
        if (json_is_true(json_object_get(task, "logs_truncated")))
                fprintf(stderr, "mecapy: (logs truncated at 1 MiB)\n");
        if (gave_up) {
                fprintf(stderr, "mecapy: task ");
                mp_cli_put_safe(stderr, mp_cli_str(task, "id"));
                fprintf(stderr, " is still %s; follow it with: mecapy task wait ", status);
                mp_cli_put_safe(stderr, mp_cli_str(task, "id"));
                fprintf(stderr, "\n");
                return MP_CLI_EXIT_FAILED;
        }
        if (code == MP_CLI_EXIT_OK) {
                json_t *result = json_object_get(task, "result");
                mp_cli_print_json(stdout, result ? result : json_null());
                return code;
        }
        fprintf(stderr, "mecapy: task ");
        mp_cli_put_safe(stderr, mp_cli_str(task, "id"));
        fprintf(stderr, " %s", status);
        if (json_is_object(error)) {
                fprintf(stderr, ": ");
                mp_cli_put_safe(stderr, mp_cli_str(error, "type"));
                if (*mp_cli_str(error, "message")) {
                        fprintf(stderr, ": ");
                        mp_cli_put_safe(stderr, mp_cli_str(error, "message"));
                }
                if (*mp_cli_str(error, "limit")) {
                        fprintf(stderr, " (limit: ");
                        mp_cli_put_safe(stderr, mp_cli_str(error, "limit"));
                        fprintf(stderr, ")");
                }
                fprintf(stderr, "\n");
                if (*mp_cli_str(error, "traceback")) {
                        mp_cli_put_safe(stderr, mp_cli_str(error, "traceback"));
                        fprintf(stderr, "\n");
                }
        } else
                fprintf(stderr, "\n");
        return code;
}

/* Long-poll GET /tasks/{id}?wait= until the task ends or timeout_s (0: no limit)
 * passes. *task is replaced by the newest state. shown: what of its logs a lost
 * stream showed already (NULL: none). Returns the exit code. */
static int wait_task(struct mp_cli *c, json_t **task, const char *id, long timeout_s,
                     const struct logs_shown *shown) {
        int64_t deadline = timeout_s > 0 ? mp_mono_ms() + timeout_s * 1000 : 0;

        while (!ended(mp_cli_str(*task, "status"))) {
                _cleanup_free_ char *path = NULL;
                json_t *next = NULL;
                long wait = MP_CLI_POLL_WAIT_S;

                if (deadline) {
                        int64_t left = deadline - mp_mono_ms();
                        if (left <= 0)
                                return report_task(c, *task, true, shown);
                        wait = MP_MIN(wait, (long) ((left + 999) / 1000));
                }
                char suffix[32];
                snprintf(suffix, sizeof(suffix), "?wait=%ld", wait);
                if (task_path(c, id, suffix, &path) < 0)
                        return MP_CLI_EXIT_HTTP;
                if (mp_cli_api(c, "GET", path, NULL, NULL, (int) wait, &next, NULL) < 0 ||
                    !json_is_object(next)) {
                        json_decref(next);
                        fprintf(stderr, "mecapy: lost track of task %s; follow it with: "
                                        "mecapy task wait %s\n", id, id);
                        return MP_CLI_EXIT_HTTP;
                }
                json_decref(*task);
                *task = next;
        }
        return report_task(c, *task, false, shown);
}

/* ---- following a task's event stream (docs/api.md#task-events) ---- */

#define SSE_MAX_EVENT (2u << 20) /* a log event holds at most 1 MiB of logs */
#define BAR_WIDTH 30

struct follow {
        bool bar;                 /* draw a bar (stderr is a terminal), else plain lines */
        bool bar_drawn;
        double fraction;
        char *message;
        bool logs_shown, ended;
        struct mp_buf shown;      /* the logs shown, for a long poll that takes over */
        json_t *task;             /* the `end` event's task */
};

static void bar_clear(struct follow *f) {
        if (f->bar && f->bar_drawn) {
                fputs("\r\033[K", stderr);
                f->bar_drawn = false;
        }
}

static void bar_draw(struct follow *f) {
        int fill = (int) (f->fraction * BAR_WIDTH + 0.5);
        fputc('\r', stderr);
        fputc('[', stderr);
        for (int i = 0; i < BAR_WIDTH; i++)
                fputc(i < fill ? '#' : '-', stderr);
        fprintf(stderr, "] %3d%% ", (int) (f->fraction * 100 + 0.5));
        mp_cli_put_safe(stderr, f->message ? f->message : "");
        fputs("\033[K", stderr);
        fflush(stderr);
        f->bar_drawn = true;
}

/* One event of the task's stream (mp_cli_sse); false after `end`, the last one. */
static bool on_event(const char *name, const char *data, size_t len, void *ctx) {
        struct follow *f = ctx;

        if (!strcmp(name, "log")) {
                /* The function's own output, as it printed it: whole lines, the last
                 * newline left out by the framing. */
                bar_clear(f);
                fwrite(data, 1, len, stderr);
                fputc('\n', stderr);
                f->logs_shown = true;
                /* Past its cap (the logs' own) it is no prefix: the fallback shows all. */
                if (!f->shown.truncated && (mp_buf_append(&f->shown, data, len) < 0 ||
                                            mp_buf_append(&f->shown, "\n", 1) < 0))
                        f->shown.truncated = true;
                if (f->bar && f->message)
                        bar_draw(f);
        } else if (!strcmp(name, "progress")) {
                _cleanup_json_ json_t *p = json_loadb(data, len, 0, NULL);
                if (!json_is_number(json_object_get(p, "fraction")))
                        return true;
                f->fraction = MP_MIN(MP_MAX(json_number_value(json_object_get(p, "fraction")), 0.0), 1.0);
                free(f->message);
                f->message = strdup(mp_cli_str(p, "message"));
                if (f->bar)
                        bar_draw(f);
                else {
                        fprintf(stderr, "mecapy: progress %3d%%%s", (int) (f->fraction * 100 + 0.5),
                                *mp_cli_str(p, "message") ? " " : "");
                        mp_cli_put_safe(stderr, mp_cli_str(p, "message"));
                        fputc('\n', stderr);
                }
        } else if (!strcmp(name, "end")) {
                bar_clear(f);
                json_decref(f->task);
                f->task = json_loadb(data, len, 0, NULL);
                f->ended = json_is_object(f->task);
        }
        return !f->ended;
}

/* Follow the task's event stream to its end: live logs and progress on stderr, then
 * print it as wait_task does. Falls back to the long poll when the stream cannot be
 * followed (an older server, a lost connection). Returns the exit code. */
static int follow_task(struct mp_cli *c, json_t **task, const char *id, long timeout_s) {
        _cleanup_free_ char *path = NULL;
        struct follow f = { .shown = { .cap = SSE_MAX_EVENT } };
        struct mp_cli_sse sse;
        int64_t start = mp_mono_ms();
        long status = 0;
        int r, code;

        if (c->json || ended(mp_cli_str(*task, "status")))
                return wait_task(c, task, id, timeout_s, NULL);
        f.bar = isatty(STDERR_FILENO) && isatty(STDOUT_FILENO) && getenv("TERM") &&
                strcmp(getenv("TERM"), "dumb") != 0;
        if (task_path(c, id, "/events", &path) < 0)
                return MP_CLI_EXIT_HTTP;
        mp_cli_sse_init(&sse, SSE_MAX_EVENT, on_event, &f);
        r = mp_cli_stream(c, path, timeout_s, mp_cli_sse_feed, &sse, &status);
        mp_cli_sse_free(&sse);
        bar_clear(&f);
        if (f.ended) {
                json_decref(*task);
                *task = TAKE_PTR(f.task);
                code = report_task(c, *task, false, &(struct logs_shown) { .all = f.logs_shown });
        } else {
                /* Timed out, or the stream stopped early: the long poll takes over, for
                 * what is left of the time. It prints the logs not shown yet at the end. */
                long left = 0;
                if (timeout_s > 0) {
                        left = timeout_s - (long) ((mp_mono_ms() - start) / 1000);
                        if (left <= 0 || r == -ETIMEDOUT)
                                left = 1;
                }
                if (f.logs_shown && r != -ETIMEDOUT)
                        fprintf(stderr, "mecapy: the event stream was lost; the rest of the logs "
                                        "follows once the task ends\n");
                struct logs_shown shown = { .text = f.shown.data, .len = f.shown.len };
                if (f.shown.truncated) /* not all of it kept: no prefix to trust */
                        shown.len = 0;
                code = wait_task(c, task, id, left, &shown);
        }
        mp_buf_free(&f.shown);
        free(f.message);
        json_decref(f.task);
        return code;
}

static int parse_timeout(const char *verb, const char *s, long *ret) {
        if (!s) {
                *ret = 0;
                return 0;
        }
        if (mp_parse_long(s, 1, 365L * 24 * 3600, ret) < 0) {
                fprintf(stderr, "mecapy %s: --timeout must be a number of seconds >= 1\n", verb);
                return -EINVAL;
        }
        return 0;
}

/* Build the inputs object from --json FILE and the key=value operands. */
static int build_inputs(const char *file, int n, char **ops, json_t **ret) {
        _cleanup_json_ json_t *inputs = NULL;
        json_error_t jerr;

        if (file) {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                int r;
                if (strcmp(file, "-") == 0) {
                        struct mp_buf b = { .cap = MP_MAX_INPUTS_BYTES };
                        char chunk[65536];
                        ssize_t got;
                        r = 0;
                        while ((got = read(STDIN_FILENO, chunk, sizeof(chunk))) != 0) {
                                if (got < 0 && errno == EINTR)
                                        continue;
                                if (got < 0) {
                                        r = -errno;
                                        break;
                                }
                                if (mp_buf_append(&b, chunk, (size_t) got) < 0) {
                                        r = -EFBIG;
                                        break;
                                }
                        }
                        len = b.len;
                        text = mp_buf_steal(&b);
                } else
                        r = mp_read_file(file, MP_MAX_INPUTS_BYTES, &text, &len);
                if (r < 0) {
                        fprintf(stderr, "mecapy run: --json %s: %s\n", file,
                                r == -EFBIG ? "larger than the 1 MiB inputs may have" : strerror(-r));
                        return -EINVAL;
                }
                inputs = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
                if (!json_is_object(inputs)) {
                        fprintf(stderr, "mecapy run: --json %s: %s (line %d, column %d)\n", file,
                                inputs ? "not a JSON object" : jerr.text, jerr.line, jerr.column);
                        return -EINVAL;
                }
        } else if (!(inputs = json_object()))
                return -ENOMEM;

        for (int i = 0; i < n; i++) {
                _cleanup_error_ struct mp_error err = { 0 };
                _cleanup_free_ char *key = NULL;
                json_t *value = NULL;
                if (mp_cli_parse_assignment(ops[i], &key, &value, &err) < 0) {
                        fprintf(stderr, "mecapy run: %s\n", err.message[0] ? err.message : "out of memory");
                        return -EINVAL;
                }
                json_object_set_new(inputs, key, value);
        }
        *ret = TAKE_PTR(inputs);
        return 0;
}

int mp_cli_run(int argc, char **argv) {
        const char *json_file = NULL, *inputs_file = NULL, *version = NULL, *timeout = NULL;
        bool help = false, json = false, no_wait = false;
        const struct mp_cli_opt opts[] = {
                { "json", 0, MP_CLI_OPT_OPTIONAL, &json_file, &json },
                { "inputs", 0, MP_CLI_OPT_VALUE, &inputs_file, NULL },
                { "version", 0, MP_CLI_OPT_VALUE, &version, NULL },
                { "timeout", 0, MP_CLI_OPT_VALUE, &timeout, NULL },
                { "no-wait", 0, MP_CLI_OPT_FLAG, &no_wait, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        _cleanup_free_ char *fn_id = NULL, *esc = NULL, *path = NULL, *task_id = NULL;
        _cleanup_json_ json_t *inputs = NULL, *body = NULL, *task = NULL;
        struct mp_cli c = { 0 };
        char idem[MP_ID_LEN + 1];
        long v = 0, timeout_s = 0, first_wait;
        int npos, code = MP_CLI_EXIT_HTTP;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("run", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(run_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos < 1) {
                fprintf(stderr, "mecapy run: which function?\n%s", run_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (json_file && inputs_file) {
                fprintf(stderr, "mecapy run: give --json FILE or --inputs FILE, not both\n");
                return MP_CLI_EXIT_USAGE;
        }
        if (version && mp_parse_long(version, 1, 1000000000L, &v) < 0) {
                fprintf(stderr, "mecapy run: --version must be a positive integer\n");
                return MP_CLI_EXIT_USAGE;
        }
        if (parse_timeout("run", timeout, &timeout_s) < 0)
                return MP_CLI_EXIT_USAGE;
        if (build_inputs(json_file ? json_file : inputs_file, npos - 1, pos + 1, &inputs) < 0)
                return MP_CLI_EXIT_USAGE;
        body = json_pack("{s:O}", "inputs", inputs);
        if (!body)
                return MP_CLI_EXIT_HTTP;

        if (mp_cli_session(&c, true) < 0)
                goto out;
        c.json = json;
        if (mp_cli_resolve_function(&c, pos[0], false, &fn_id) < 0)
                goto out;
        /* Without --json the task's event stream is followed from the start (its logs
         * and progress as they come); with --json the long poll answers. */
        first_wait = no_wait || !json ? 0 : timeout_s ? MP_MIN(timeout_s, MP_CLI_POLL_WAIT_S) : MP_CLI_POLL_WAIT_S;
        esc = mp_cli_escape(&c, fn_id);
        if (!esc || (v ? asprintf(&path, "/api/v1/functions/%s/execute?wait=%ld&version=%ld", esc,
                                  first_wait, v)
                       : asprintf(&path, "/api/v1/functions/%s/execute?wait=%ld", esc, first_wait)) < 0)
                goto out;
        /* A fresh key per invocation: should this request be retried by a proxy or a
         * later version of this client, the function still runs once. */
        mp_id_new(idem);
        {
                int64_t start = mp_mono_ms();
                if (mp_cli_api(&c, "POST", path, body, idem, (int) first_wait, &task, NULL) < 0)
                        goto out;
                if (!json_is_object(task) || !mp_id_valid(mp_cli_str(task, "id"))) {
                        fprintf(stderr, "mecapy run: the server's answer has no task id\n");
                        goto out;
                }
                if (timeout_s)
                        timeout_s = MP_MAX(1, timeout_s - (mp_mono_ms() - start) / 1000);
        }
        task_id = strdup(mp_cli_str(task, "id"));
        if (!task_id)
                goto out;
        if (no_wait) {
                if (c.json)
                        mp_cli_print_json(stdout, task);
                else
                        printf("%s\n", task_id);
                code = MP_CLI_EXIT_OK;
                goto out;
        }
        code = follow_task(&c, &task, task_id, timeout_s);
out:
        mp_cli_done(&c);
        return code;
}

static int task_get(struct mp_cli *c, const char *id) {
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *t = NULL;
        json_t *x;

        if (task_path(c, id, "", &path) < 0 || mp_cli_api(c, "GET", path, NULL, NULL, 0, &t, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json) {
                mp_cli_print_json(stdout, t);
                return MP_CLI_EXIT_OK;
        }
        static const char *const fields[] = { "id", "function_id", "status", "queued_at",
                                              "started_at", "finished_at" };
        for (size_t i = 0; i < ELEMENTSOF(fields); i++) {
                printf("%-13s ", fields[i]);
                mp_cli_put_safe(stdout, *mp_cli_str(t, fields[i]) ? mp_cli_str(t, fields[i]) : "-");
                printf("\n");
                if (i == 1)
                        printf("%-13s %" JSON_INTEGER_FORMAT "\n", "version",
                               json_integer_value(json_object_get(t, "version")));
        }
        if (json_is_integer(x = json_object_get(t, "execution_ms")))
                printf("%-13s %" JSON_INTEGER_FORMAT " ms\n", "execution", json_integer_value(x));
        if (json_is_integer(x = json_object_get(t, "cpu_ms")))
                printf("%-13s %" JSON_INTEGER_FORMAT " ms\n", "cpu", json_integer_value(x));
        if (json_is_integer(x = json_object_get(t, "peak_memory_kb")))
                printf("%-13s %" JSON_INTEGER_FORMAT " KiB\n", "peak memory", json_integer_value(x));
        if (json_array_size(json_object_get(t, "artifacts")) > 0) {
                size_t i;
                json_t *a;
                printf("artifacts:\n");
                json_array_foreach(json_object_get(t, "artifacts"), i, a) {
                        printf("  ");
                        mp_cli_put_safe(stdout, mp_cli_str(a, "name"));
                        printf(" (%" JSON_INTEGER_FORMAT " bytes)\n",
                               json_integer_value(json_object_get(a, "size")));
                }
        }
        if (json_is_object(x = json_object_get(t, "error"))) {
                printf("error:        ");
                mp_cli_put_safe(stdout, mp_cli_str(x, "type"));
                printf(": ");
                mp_cli_put_safe(stdout, mp_cli_str(x, "message"));
                printf("\n");
                if (*mp_cli_str(x, "traceback")) {
                        mp_cli_put_safe(stdout, mp_cli_str(x, "traceback"));
                        printf("\n");
                }
        }
        if (strcmp(mp_cli_str(t, "status"), "completed") == 0) {
                printf("result:\n");
                mp_cli_print_json(stdout, json_object_get(t, "result") ? json_object_get(t, "result")
                                                                        : json_null());
        }
        return MP_CLI_EXIT_OK;
}

static int task_logs(struct mp_cli *c, const char *id) {
        _cleanup_free_ char *path = NULL;
        struct mp_cli_reply reply = { 0 };
        int code = MP_CLI_EXIT_OK;

        if (task_path(c, id, "/logs", &path) < 0 ||
            mp_cli_request(c, "GET", path, NULL, NULL, 0, &reply) < 0)
                return MP_CLI_EXIT_HTTP;
        if (reply.status < 200 || reply.status > 299) {
                mp_cli_print_problem(&reply);
                code = MP_CLI_EXIT_HTTP;
        } else if (reply.body.len)
                fwrite(reply.body.data, 1, reply.body.len, stdout);
        mp_cli_reply_free(&reply);
        return code;
}

static int task_wait(struct mp_cli *c, const char *id, long timeout_s) {
        _cleanup_free_ char *path = NULL;
        json_t *t = NULL;
        int code;

        if (task_path(c, id, "", &path) < 0 || mp_cli_api(c, "GET", path, NULL, NULL, 0, &t, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (!json_is_object(t)) {
                json_decref(t);
                return MP_CLI_EXIT_HTTP;
        }
        code = follow_task(c, &t, id, timeout_s);
        json_decref(t);
        return code;
}

static int task_cancel(struct mp_cli *c, const char *id) {
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *t = NULL;

        if (task_path(c, id, "/cancel", &path) < 0 ||
            mp_cli_api(c, "POST", path, NULL, NULL, 0, &t, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json)
                mp_cli_print_json(stdout, t);
        else
                printf("cancelled %s\n", id);
        return MP_CLI_EXIT_OK;
}

static int task_rm(struct mp_cli *c, const char *id) {
        _cleanup_free_ char *path = NULL;
        _cleanup_json_ json_t *answer = NULL;

        if (task_path(c, id, "", &path) < 0 || mp_cli_api(c, "DELETE", path, NULL, NULL, 0, &answer, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json)
                printf("{\"deleted\": \"%s\"}\n", id);
        else
                printf("deleted task %s\n", id);
        return MP_CLI_EXIT_OK;
}

static int task_ls(struct mp_cli *c, const char *function, const char *status, const char *limit,
                   const char *cursor) {
        _cleanup_free_ char *fn_id = NULL, *path = NULL, *q_fn = NULL, *q_cursor = NULL;
        _cleanup_json_ json_t *list = NULL;
        long n = MP_DEFAULT_PAGE;
        json_t *t;
        size_t i;

        if (limit)
                (void) mp_parse_long(limit, 1, MP_MAX_PAGE, &n); /* checked by mp_cli_task */
        if (function && mp_cli_resolve_function(c, function, false, &fn_id) < 0)
                return MP_CLI_EXIT_HTTP;
        if ((fn_id && !(q_fn = mp_cli_escape(c, fn_id))) ||
            (cursor && !(q_cursor = mp_cli_escape(c, cursor))))
                return MP_CLI_EXIT_HTTP;
        if (asprintf(&path, "/api/v1/tasks?limit=%ld%s%s%s%s%s%s", n,
                     q_fn ? "&function_id=" : "", q_fn ? q_fn : "",
                     status ? "&status=" : "", status ? status : "",
                     q_cursor ? "&cursor=" : "", q_cursor ? q_cursor : "") < 0)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_api(c, "GET", path, NULL, NULL, 0, &list, NULL) < 0)
                return MP_CLI_EXIT_HTTP;
        if (c->json) {
                mp_cli_print_json(stdout, list);
                return MP_CLI_EXIT_OK;
        }
        printf("%-36s %-10s %-36s %7s %-24s %-10s %s\n", "ID", "STATUS", "FUNCTION", "VERSION",
               "QUEUED", "EXECUTION", "ERROR");
        json_array_foreach(json_object_get(list, "items"), i, t) {
                json_t *ms = json_object_get(t, "execution_ms");
                char exec_ms[32] = "-";
                mp_cli_put_safe(stdout, mp_cli_str(t, "id"));
                printf(" %-10.10s ", mp_cli_str(t, "status"));
                mp_cli_put_safe(stdout, mp_cli_str(t, "function_id"));
                printf(" %7" JSON_INTEGER_FORMAT " %-24.24s ",
                       json_integer_value(json_object_get(t, "version")), mp_cli_str(t, "queued_at"));
                if (json_is_integer(ms))
                        snprintf(exec_ms, sizeof(exec_ms), "%" JSON_INTEGER_FORMAT " ms", json_integer_value(ms));
                printf("%-10s ", exec_ms);
                /* The error's type is the function's exception class name: untrusted text. */
                mp_cli_put_safe(stdout, *mp_cli_str(t, "error_type") ? mp_cli_str(t, "error_type") : "-");
                printf("\n");
        }
        if (*mp_cli_str(list, "next_cursor")) {
                fprintf(stderr, "mecapy: more tasks: --cursor ");
                mp_cli_put_safe(stderr, mp_cli_str(list, "next_cursor"));
                fprintf(stderr, "\n");
        }
        return MP_CLI_EXIT_OK;
}

static int task_artifact(struct mp_cli *c, const char *id, const char *name, const char *out) {
        _cleanup_free_ char *path = NULL, *esc = NULL, *suffix = NULL;
        struct mp_cli_reply reply = { .body = { .cap = MP_MAX_ARTIFACT_BYTES } };
        const char *target;
        bool to_stdout = out && strcmp(out, "-") == 0;
        int code = MP_CLI_EXIT_HTTP, fd = -1;

        esc = mp_cli_escape(c, name);
        if (!esc || asprintf(&suffix, "/artifacts/%s", esc) < 0 || task_path(c, id, suffix, &path) < 0)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_request(c, "GET", path, NULL, NULL, 0, &reply) < 0)
                return MP_CLI_EXIT_HTTP;
        if (reply.status < 200 || reply.status > 299) {
                mp_cli_print_problem(&reply);
                goto out;
        }
        if (to_stdout) {
                if (mp_write_all(STDOUT_FILENO, reply.body.data ? reply.body.data : "", reply.body.len) == 0)
                        code = MP_CLI_EXIT_OK;
                goto out;
        }
        if (out) {
                target = out;
                fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        } else {
                /* ./NAME by default: only the last path component, never over a file. */
                target = strrchr(name, '/') ? strrchr(name, '/') + 1 : name;
                if (!*target || strcmp(target, ".") == 0 || strcmp(target, "..") == 0) {
                        fprintf(stderr, "mecapy task artifact: pass -o FILE for '%s'\n", name);
                        goto out;
                }
                fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
        }
        if (fd < 0) {
                fprintf(stderr, "mecapy task artifact: %s: %m%s\n", target,
                        errno == EEXIST ? " (pass -o FILE to overwrite)" : "");
                goto out;
        }
        if (mp_write_all(fd, reply.body.data ? reply.body.data : "", reply.body.len) < 0 ||
            close(fd) < 0) {
                fprintf(stderr, "mecapy task artifact: writing %s: %m\n", target);
                fd = -1;
                goto out;
        }
        fd = -1;
        if (c->json) {
                _cleanup_json_ json_t *j = json_pack("{s:s, s:I}", "path", target, "size",
                                                     (json_int_t) reply.body.len);
                if (j)
                        mp_cli_print_json(stdout, j);
        } else
                fprintf(stderr, "saved %s (%zu bytes)\n", target, reply.body.len);
        code = MP_CLI_EXIT_OK;
out:
        if (fd >= 0)
                close(fd);
        mp_cli_reply_free(&reply);
        return code;
}

static const char *const statuses[] = { "queued", "running", "completed", "failed",
                                        "timed_out", "cancelled" };

int mp_cli_task(int argc, char **argv) {
        const char *timeout = NULL, *function = NULL, *status = NULL, *limit = NULL,
                   *cursor = NULL, *out = NULL;
        bool help = false, json = false;
        const struct mp_cli_opt opts[] = {
                { "timeout", 0, MP_CLI_OPT_VALUE, &timeout, NULL },
                { "function", 0, MP_CLI_OPT_VALUE, &function, NULL },
                { "status", 0, MP_CLI_OPT_VALUE, &status, NULL },
                { "limit", 0, MP_CLI_OPT_VALUE, &limit, NULL },
                { "cursor", 0, MP_CLI_OPT_VALUE, &cursor, NULL },
                { "output", 'o', MP_CLI_OPT_VALUE, &out, NULL },
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        static const struct { const char *name; int operands; } subs[] = {
                { "get", 1 }, { "logs", 1 }, { "wait", 1 }, { "cancel", 1 }, { "ls", 0 },
                { "artifact", 2 }, { "rm", 1 },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        struct mp_cli c = { 0 };
        long timeout_s = 0;
        const char *sub;
        int npos, code = -1;
        size_t k;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("task", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(task_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos < 1) {
                fputs(task_usage, stderr);
                return MP_CLI_EXIT_USAGE;
        }
        sub = pos[0];
        for (k = 0; k < ELEMENTSOF(subs); k++)
                if (strcmp(subs[k].name, sub) == 0)
                        break;
        if (k == ELEMENTSOF(subs)) {
                fprintf(stderr, "mecapy task: unknown command '");
                mp_cli_put_safe(stderr, sub);
                fprintf(stderr, "'\n%s", task_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (npos - 1 != subs[k].operands) {
                fprintf(stderr, "mecapy task %s: wrong number of operands\n%s", sub, task_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if ((timeout && strcmp(sub, "wait") != 0) || (out && strcmp(sub, "artifact") != 0) ||
            ((function || status || limit || cursor) && strcmp(sub, "ls") != 0)) {
                fprintf(stderr, "mecapy task %s: an option given does not go with %s\n%s", sub, sub,
                        task_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (parse_timeout("task wait", timeout, &timeout_s) < 0)
                return MP_CLI_EXIT_USAGE;
        if (limit && mp_parse_long(limit, 1, MP_MAX_PAGE, &(long) { 0 }) < 0) {
                fprintf(stderr, "mecapy task ls: --limit must be 1 to %d\n", MP_MAX_PAGE);
                return MP_CLI_EXIT_USAGE;
        }
        if (status) {
                bool known = false;
                for (size_t i = 0; i < ELEMENTSOF(statuses); i++)
                        known |= strcmp(statuses[i], status) == 0;
                if (!known) {
                        fprintf(stderr, "mecapy task ls: --status is one of queued, running, "
                                        "completed, failed, timed_out, cancelled\n");
                        return MP_CLI_EXIT_USAGE;
                }
        }
        if (subs[k].operands >= 1 && !mp_id_valid(pos[1])) {
                fprintf(stderr, "mecapy task %s: '", sub);
                mp_cli_put_safe(stderr, pos[1]);
                fprintf(stderr, "' is not a task id\n");
                return MP_CLI_EXIT_USAGE;
        }
        if (mp_cli_session(&c, true) < 0) {
                mp_cli_done(&c);
                return MP_CLI_EXIT_HTTP;
        }
        c.json = json;
        if (strcmp(sub, "get") == 0)
                code = task_get(&c, pos[1]);
        else if (strcmp(sub, "logs") == 0)
                code = task_logs(&c, pos[1]);
        else if (strcmp(sub, "wait") == 0)
                code = task_wait(&c, pos[1], timeout_s);
        else if (strcmp(sub, "cancel") == 0)
                code = task_cancel(&c, pos[1]);
        else if (strcmp(sub, "ls") == 0)
                code = task_ls(&c, function, status, limit, cursor);
        else if (strcmp(sub, "rm") == 0)
                code = task_rm(&c, pos[1]);
        else
                code = task_artifact(&c, pos[1], pos[2], out);
        mp_cli_done(&c);
        return code;
}
