/* The client's private interface, shared by the files of src/cli/ and by
 * tests/unit/test-cli.c. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include <jansson.h>

#include "base/error.h"
#include "base/limits.h"
#include "base/macro.h"
#include "base/util.h"

/* Exit codes (docs/cli.md). */
#define MP_CLI_EXIT_OK     0
#define MP_CLI_EXIT_FAILED 1 /* the task failed, timed out, was cancelled or did not end in time */
#define MP_CLI_EXIT_USAGE  2
#define MP_CLI_EXIT_HTTP   3

#define MP_CLI_DEFAULT_URL "http://127.0.0.1:8000"

/* Caps of the client. A hostile server cannot make it eat memory: every response body
 * is read into a capped buffer. A task carries its inputs, result and logs inline. */
#define MP_CLI_MAX_RESPONSE_BYTES ((size_t) MP_MAX_RESULT_BYTES + MP_MAX_LOG_BYTES + \
                                   MP_MAX_INPUTS_BYTES + 1024u * 1024)
#define MP_CLI_MAX_CONFIG_BYTES   (64u * 1024)    /* config.json */
#define MP_CLI_MAX_URL_LEN        2048
#define MP_CLI_MAX_TOKEN_LEN      4096
#define MP_CLI_CONNECT_TIMEOUT_S  10
#define MP_CLI_SLACK_TIMEOUT_S    60             /* added to ?wait= for the whole request */
#define MP_CLI_POLL_WAIT_S        30             /* ?wait= of one long poll */
#define MP_CLI_MAX_PAGES          100            /* pages followed by a listing */

/* ---- values: key=value operands of `mecapy run` (cli-values.c) ---- */

/* Type a value written on the command line: JSON when it parses as JSON (number,
 * integer, true/false/null, list, object, "quoted string"), else the text itself as a
 * string. Returns a new reference, or NULL when the text is not valid UTF-8 (or out of
 * memory). */
json_t *mp_cli_value_typed(const char *text);
/* One YAML document (text, len bytes) as JSON in *ret (cli-yaml.c): 0, or -EINVAL with
 * err saying what and where (aliases, several documents, .inf/.nan, non-scalar or
 * duplicate keys, depth past MP_MAX_JSON_DEPTH are refused), -ENOMEM. */
int mp_cli_yaml_load(const char *text, size_t len, json_t **ret, char *err, size_t errsize);

/* Parse one operand into *ret_key (malloc'ed) and *ret_value (new reference):
 *   key=value   typed as by mp_cli_value_typed()
 *   key:=json   must be valid JSON (else -EINVAL)
 *   key==text   always the string "text"
 * -EINVAL with err filled when the operand has no '=' or an empty key. */
int mp_cli_parse_assignment(const char *arg, char **ret_key, json_t **ret_value,
                            struct mp_error *err);

/* ---- config: where the client keeps its url and token (cli-config.c) ---- */

/* The config file path from the three candidate bases (any may be NULL or empty):
 * <config_dir>/mecapy/config.json, else <xdg_config_home>/mecapy/config.json, else
 * <home>/.config/mecapy/config.json. -ENOENT when all three are empty. */
int mp_cli_config_path_from(const char *config_dir, const char *xdg_config_home,
                            const char *home, char **ret);
/* The same from MECAPY_CONFIG_DIR, XDG_CONFIG_HOME and HOME. */
int mp_cli_config_path(char **ret);
/* Write {"url", "token"} to path atomically with mode 0600, creating the parent
 * directory (0700). 0 or -errno. */
int mp_cli_config_write(const char *path, const char *url, const char *token);
/* Read the file; *ret_url and *ret_token are malloc'ed or NULL when absent.
 * -ENOENT when there is no file, -EINVAL when it is not a JSON object. */
int mp_cli_config_read(const char *path, char **ret_url, char **ret_token);
/* Strip trailing slashes from a URL in place, and check it is http(s)://. */
int mp_cli_url_normalize(char *url);

/* ---- arguments (cli-args.c) ---- */

enum mp_cli_opt_kind {
        MP_CLI_OPT_FLAG,     /* bool *ret */
        MP_CLI_OPT_VALUE,    /* const char **ret: needs a value */
        MP_CLI_OPT_LIST,     /* repeated values, const char **ret: last one wins */
        /* `run --json [FILE]`: takes the next argument as its value when it is "-" or
         * does not start with '-' and has no '='; sets the bool *flag otherwise. */
        MP_CLI_OPT_OPTIONAL,
};

struct mp_cli_opt {
        const char *name;   /* long name without "--" */
        char short_name;    /* or 0 */
        enum mp_cli_opt_kind kind;
        void *ret;
        bool *flag;         /* MP_CLI_OPT_OPTIONAL only */
};

/* Parse argv[start..argc) against opts; operands (and everything after "--") go to
 * ret_pos (an array of argc pointers the caller provides). "--name=value" and
 * "--name value" both work. Prints the problem and returns -EINVAL on an unknown
 * option or a missing value. */
int mp_cli_parse_args(const char *verb, int argc, char **argv, int start,
                      const struct mp_cli_opt *opts, size_t n_opts,
                      char **ret_pos, int *ret_npos);

/* ---- HTTP (cli-http.c) ---- */

struct mp_cli {
        char *url;          /* base URL, no trailing '/' */
        char *token;        /* bearer token or NULL */
        bool json;          /* --json: print the raw API JSON */
        void *curl;         /* CURL *, reused between requests */
};

struct mp_cli_reply {
        long status;
        char *content_type;     /* malloc'ed or NULL */
        struct mp_buf body;     /* capped at MP_CLI_MAX_RESPONSE_BYTES */
};

void mp_cli_reply_free(struct mp_cli_reply *r);
void mp_cli_done(struct mp_cli *c);

/* Fill c->url and c->token: MECAPY_URL, else the config file's url, else the default;
 * MECAPY_TOKEN, else the config file's token, used only when the file's url is the url
 * in use (a token is never sent to a server it was not issued by). With need_token and
 * none, prints how to log in and returns -ENOKEY. */
int mp_cli_session(struct mp_cli *c, bool need_token);

/* One request. ret must be zeroed; ret->body.cap, when the caller sets it, replaces
 * the default cap (MP_CLI_MAX_RESPONSE_BYTES). path starts with "/" (query included, already escaped). body may be
 * NULL. wait_s > 0 lengthens the timeout for long polls. idempotency_key may be NULL.
 * Returns 0 when an answer came (any status; see ret->status), or -errno after
 * printing the transport problem to stderr. */
int mp_cli_request(struct mp_cli *c, const char *method, const char *path, json_t *body,
                   const char *idempotency_key, int wait_s, struct mp_cli_reply *ret);
/* A request whose 2xx answer is JSON (or empty: *ret = NULL). A non-2xx answer is
 * printed as a problem (detail and field paths) and gives -EPROTO; *ret_status (may be
 * NULL) always gets the status, 0 on a transport error. */
int mp_cli_api(struct mp_cli *c, const char *method, const char *path, json_t *body,
               const char *idempotency_key, int wait_s, json_t **ret, long *ret_status);
/* GET path as a stream (server-sent events): each piece of the body goes to on_data as
 * it arrives (returning false stops the transfer), for at most timeout_s seconds (0: no
 * limit; a connection silent for 60 s counts as lost). 0 once the server closed it,
 * -ETIMEDOUT, -EPROTO when the answer is not 200 (*ret_status says what it was; nothing
 * printed), -EIO on a transport error (nothing printed). */
int mp_cli_stream(struct mp_cli *c, const char *path, long timeout_s,
                  bool (*on_data)(const char *p, size_t n, void *ctx), void *ctx, long *ret_status);
/* A reader of server-sent events for mp_cli_stream: pass mp_cli_sse_feed as on_data and
 * the reader as its ctx. on_event gets each event's name ("message" when it has none)
 * and its data (its data: lines joined by "\n", NUL-terminated, len bytes); returning
 * false stops the stream (after the last event). A line or an event past max_event
 * bytes stops it too. mp_cli_sse_free frees the buffers (the reader itself is the
 * caller's). */
struct mp_cli_sse {
        struct mp_buf line, data;
        char event[32];
        bool (*on_event)(const char *name, const char *data, size_t len, void *ctx);
        void *ctx;
};
void mp_cli_sse_init(struct mp_cli_sse *s, size_t max_event,
                     bool (*on_event)(const char *name, const char *data, size_t len, void *ctx), void *ctx);
bool mp_cli_sse_feed(const char *p, size_t n, void *sse);
void mp_cli_sse_free(struct mp_cli_sse *s);
/* Print a problem+json (or any error) answer to stderr. */
void mp_cli_print_problem(const struct mp_cli_reply *r);
/* URL-escape one path segment or query value (malloc'ed). */
char *mp_cli_escape(struct mp_cli *c, const char *s);

/* ---- output helpers (cli-main.c) ---- */

/* Print s with control characters (other than newline and tab) shown as '?', so a
 * server cannot drive the terminal. */
void mp_cli_put_safe(FILE *f, const char *s);
void mp_cli_print_json(FILE *f, json_t *j);
const char *mp_cli_str(json_t *obj, const char *key); /* "" when absent or not a string */

/* ---- verbs ---- */
int mp_cli_login(int argc, char **argv);
/* `mecapy login --oidc` (cli-oidc.c): c->url is set; returns an exit code. */
int mp_cli_login_oidc(struct mp_cli *c, bool json);
int mp_cli_logout(int argc, char **argv);
int mp_cli_fn(int argc, char **argv);
int mp_cli_run(int argc, char **argv);
int mp_cli_task(int argc, char **argv);
int mp_cli_flow(int argc, char **argv); /* cli-flow.c */
int mp_cli_study(int argc, char **argv); /* cli-study.c */

/* Resolve NAME|ID to a function id (malloc'ed). own_only: among the caller's own
 * functions (for push and rm). Returns 0, -ENOENT (printed), or -errno (printed). */
int mp_cli_resolve_function(struct mp_cli *c, const char *target, bool own_only, char **ret_id);
