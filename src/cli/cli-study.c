/* `mecapy study create FILE.json | show ID | results ID [--csv]` (docs/studies.md). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "base/json.h"
#include "cli/cli-internal.h"

#define STUDY_MAX_FILE_BYTES ((size_t) MP_MAX_BODY_BYTES)
/* A CSV export is read whole before it is written out: capped. */
#define STUDY_MAX_CSV_BYTES  (512u * 1024 * 1024)

static const char study_usage[] =
        "usage: mecapy study create FILE.json [--wait] [--json]\n"
        "       mecapy study show ID [--wait] [--json]\n"
        "       mecapy study results ID [--csv] [--json]\n"
        "  create   submit a study (the body of POST /api/v1/studies) and print its progress\n"
        "  show     the study's progress; --wait follows it until it stops running\n"
        "  results  the results: a line per point, or --csv the CSV table (to stdout)\n";

/* "<id> <status>: <completed>/<total> completed, <failed> failed, ...", then end. */
static void progress_text(FILE *f, json_t *s, const char *end) {
        json_t *p = json_object_get(s, "progress");
#define N(k) (long long) json_integer_value(json_object_get(p, k))
        mp_cli_put_safe(f, mp_cli_str(s, "id"));
        fputc(' ', f);
        mp_cli_put_safe(f, mp_cli_str(s, "status"));
        fprintf(f, ": %lld/%lld completed, %lld failed, %lld running, %lld queued, %lld cancelled%s",
                N("completed"), N("total"), N("failed"), N("running"), N("queued"), N("cancelled"), end);
#undef N
}

static void progress_line(FILE *f, json_t *s) {
        progress_text(f, s, "\n");
}

static int exit_code(json_t *s) {
        return json_integer_value(json_object_get(json_object_get(s, "progress"), "failed")) ? MP_CLI_EXIT_FAILED
                                                                                            : MP_CLI_EXIT_OK;
}

/* ---- following the study's event stream (docs/api.md#workflow-run-and-study-events) ---- */

#define STUDY_MAX_EVENT (1u << 20) /* a status event is the study object */

struct study_follow {
        bool tty;      /* one line redrawn in place, else a plain line per change */
        bool drawn;
        json_t *last;  /* the study as the last event showed it */
        bool ended;
};

/* A `status` (at each change of its progress) or the `end` event: the study object. */
static bool on_study_event(const char *name, const char *data, size_t len, void *ctx) {
        struct study_follow *f = ctx;
        bool end = !strcmp(name, "end");
        json_t *s;

        if (!end && strcmp(name, "status"))
                return true;
        s = json_loadb(data, len, 0, NULL);
        if (!json_is_object(s)) {
                json_decref(s);
                return !end;
        }
        bool same = f->last && json_equal(json_object_get(s, "status"), json_object_get(f->last, "status")) &&
                    json_equal(json_object_get(s, "progress"), json_object_get(f->last, "progress"));
        json_decref(f->last);
        f->last = s;
        f->ended = end;
        if (f->tty) {
                fputc('\r', stdout);
                progress_text(stdout, s, end ? "\033[K\n" : "\033[K");
                f->drawn = !end;
        } else if (!same)
                progress_line(stdout, s);
        fflush(stdout);
        return !end;
}

/* Follow GET /studies/{id}/events to the study's end, its progress on one line (or a
 * plain line per change when stdout is no terminal). true with *ret_code once it ended;
 * false when the stream cannot be followed (an older server, a lost connection): the
 * caller polls instead. */
static bool follow_study(struct mp_cli *c, const char *eid, int *ret_code) {
        struct study_follow f = { 0 };
        struct mp_cli_sse sse;
        char path[256];
        long status = 0;

        f.tty = isatty(STDOUT_FILENO) && getenv("TERM") && strcmp(getenv("TERM"), "dumb") != 0;
        snprintf(path, sizeof(path), "/api/v1/studies/%s/events", eid);
        mp_cli_sse_init(&sse, STUDY_MAX_EVENT, on_study_event, &f);
        (void) mp_cli_stream(c, path, 0, mp_cli_sse_feed, &sse, &status);
        mp_cli_sse_free(&sse);
        if (f.drawn)
                fputs("\r\033[K", stdout);
        if (f.ended)
                *ret_code = exit_code(f.last);
        json_decref(f.last);
        return f.ended;
}

static int read_file(const char *path, json_t **ret) {
        json_error_t jerr;
        FILE *f = strcmp(path, "-") ? fopen(path, "re") : stdin;
        struct mp_buf b = { .cap = STUDY_MAX_FILE_BYTES };
        char chunk[8192];
        size_t n;

        if (!f) {
                fprintf(stderr, "mecapy study create: cannot open %s: %m\n", path);
                return -errno;
        }
        while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                if (mp_buf_append(&b, chunk, n) < 0) {
                        fprintf(stderr, "mecapy study create: %s is larger than %zu bytes\n", path,
                                STUDY_MAX_FILE_BYTES);
                        if (f != stdin)
                                fclose(f);
                        mp_buf_free(&b);
                        return -E2BIG;
                }
        if (f != stdin)
                fclose(f);
        *ret = json_loadb(b.data ? b.data : "", b.len, 0, &jerr);
        mp_buf_free(&b);
        if (!json_is_object(*ret)) {
                fprintf(stderr, "mecapy study create: %s: not a JSON object (line %d: %s)\n", path, jerr.line,
                        jerr.text);
                json_decref(*ret);
                return -EINVAL;
        }
        return 0;
}

/* Follow the study until it stops running (with --wait), printing its progress. */
static int show(struct mp_cli *c, const char *id, bool wait, bool json) {
        _cleanup_free_ char *eid = mp_cli_escape(c, id);
        char path[256];

        if (!eid)
                return MP_CLI_EXIT_HTTP;
        if (wait && !json) {
                int code = MP_CLI_EXIT_OK;
                if (follow_study(c, eid, &code))
                        return code;
        }
        for (;;) {
                _cleanup_json_ json_t *s = NULL;
                snprintf(path, sizeof(path), "/api/v1/studies/%s%s", eid, wait ? "?wait=" "30" : "");
                if (mp_cli_api(c, "GET", path, NULL, NULL, wait ? MP_CLI_POLL_WAIT_S : 0, &s, NULL) < 0)
                        return MP_CLI_EXIT_HTTP;
                bool running = !strcmp(mp_cli_str(s, "status"), "running");
                if (json && (!wait || !running))
                        mp_cli_print_json(stdout, s);
                else if (!json)
                        progress_line(stdout, s);
                fflush(stdout);
                if (!wait || !running)
                        return exit_code(s);
        }
}

static int results(struct mp_cli *c, const char *id, bool csv, bool json) {
        _cleanup_free_ char *eid = mp_cli_escape(c, id);
        _cleanup_json_ json_t *all = json_array();
        _cleanup_free_ char *cursor = NULL;
        char path[512];

        if (!eid || !all)
                return MP_CLI_EXIT_HTTP;
        if (csv) {
                struct mp_cli_reply reply = { .body.cap = STUDY_MAX_CSV_BYTES };
                snprintf(path, sizeof(path), "/api/v1/studies/%s/results?format=csv", eid);
                if (mp_cli_request(c, "GET", path, NULL, NULL, 0, &reply) < 0)
                        return MP_CLI_EXIT_HTTP;
                if (reply.status != 200) {
                        mp_cli_print_problem(&reply);
                        mp_cli_reply_free(&reply);
                        return MP_CLI_EXIT_HTTP;
                }
                if (reply.body.len && fwrite(reply.body.data, 1, reply.body.len, stdout) != reply.body.len) {
                        fprintf(stderr, "mecapy study results: cannot write the CSV: %m\n");
                        mp_cli_reply_free(&reply);
                        return MP_CLI_EXIT_HTTP;
                }
                mp_cli_reply_free(&reply);
                return MP_CLI_EXIT_OK;
        }
        for (int page = 0; page < MP_CLI_MAX_PAGES * 10; page++) {
                _cleanup_json_ json_t *r = NULL;
                _cleanup_free_ char *ec = cursor ? mp_cli_escape(c, cursor) : NULL;
                size_t i;
                json_t *it;
                snprintf(path, sizeof(path), "/api/v1/studies/%s/results?limit=%d%s%s", eid, MP_MAX_PAGE,
                         ec ? "&cursor=" : "", ec ? ec : "");
                if (mp_cli_api(c, "GET", path, NULL, NULL, 0, &r, NULL) < 0)
                        return MP_CLI_EXIT_HTTP;
                json_array_foreach(json_object_get(r, "items"), i, it) {
                        if (json) {
                                json_array_append(all, it);
                                continue;
                        }
                        _cleanup_free_ char *in = mp_json_dumps(json_object_get(it, "inputs"), JSON_COMPACT);
                        _cleanup_free_ char *out = mp_json_dumps(json_object_get(it, "outputs"),
                                                             JSON_COMPACT | JSON_ENCODE_ANY);
                        printf("%lld ", (long long) json_integer_value(json_object_get(it, "index")));
                        mp_cli_put_safe(stdout, mp_cli_str(it, "status"));
                        fputc(' ', stdout);
                        mp_cli_put_safe(stdout, in ? in : "");
                        fputs(" -> ", stdout);
                        mp_cli_put_safe(stdout, out ? out : "null");
                        if (json_is_object(json_object_get(it, "error"))) {
                                fputs("  ", stdout);
                                mp_cli_put_safe(stdout, mp_cli_str(json_object_get(it, "error"), "message"));
                        }
                        fputc('\n', stdout);
                }
                free(cursor);
                cursor = json_is_string(json_object_get(r, "next_cursor"))
                                 ? strdup(json_string_value(json_object_get(r, "next_cursor"))) : NULL;
                if (!cursor)
                        break;
        }
        if (json)
                mp_cli_print_json(stdout, all);
        return MP_CLI_EXIT_OK;
}

int mp_cli_study(int argc, char **argv) {
        bool help = false, json = false, csv = false, wait = false;
        const struct mp_cli_opt opts[] = {
                { "csv", 0, MP_CLI_OPT_FLAG, &csv, NULL },
                { "wait", 0, MP_CLI_OPT_FLAG, &wait, NULL },
                { "json", 0, MP_CLI_OPT_FLAG, &json, NULL },
                { "help", 'h', MP_CLI_OPT_FLAG, &help, NULL },
        };
        _cleanup_free_ char **pos = calloc((size_t) argc + 1, sizeof(char *));
        struct mp_cli c = { 0 };
        const char *sub;
        int npos, code;

        if (!pos)
                return MP_CLI_EXIT_HTTP;
        if (mp_cli_parse_args("study", argc, argv, 1, opts, ELEMENTSOF(opts), pos, &npos) < 0)
                return MP_CLI_EXIT_USAGE;
        if (help) {
                fputs(study_usage, stdout);
                return MP_CLI_EXIT_OK;
        }
        if (npos != 2 || (strcmp(pos[0], "create") && strcmp(pos[0], "show") && strcmp(pos[0], "results"))) {
                fputs(study_usage, stderr);
                return MP_CLI_EXIT_USAGE;
        }
        sub = pos[0];
        if ((csv && strcmp(sub, "results")) || (wait && !strcmp(sub, "results"))) {
                fprintf(stderr, "mecapy study %s: an option given does not go with %s\n%s", sub, sub, study_usage);
                return MP_CLI_EXIT_USAGE;
        }
        if (mp_cli_session(&c, true) < 0) {
                mp_cli_done(&c);
                return MP_CLI_EXIT_USAGE;
        }
        c.json = json;
        if (!strcmp(sub, "create")) {
                _cleanup_json_ json_t *body = NULL, *s = NULL;
                if (read_file(pos[1], &body) < 0)
                        code = MP_CLI_EXIT_USAGE;
                else if (mp_cli_api(&c, "POST", "/api/v1/studies", body, NULL, 0, &s, NULL) < 0)
                        code = MP_CLI_EXIT_HTTP;
                else if (wait)
                        code = show(&c, mp_cli_str(s, "id"), true, json);
                else {
                        if (json)
                                mp_cli_print_json(stdout, s);
                        else
                                progress_line(stdout, s);
                        code = MP_CLI_EXIT_OK;
                }
        } else if (!strcmp(sub, "show"))
                code = show(&c, pos[1], wait, json);
        else
                code = results(&c, pos[1], csv, json);
        mp_cli_done(&c);
        return code;
}
