/* HTTP for the client: libcurl with caps on every response, connect and total
 * timeouts, no redirects, http(s) only; problem+json answers printed for a person. */
#include <string.h>

#include <curl/curl.h>

#include "base/json.h"
#include "base/config.h"
#include "cli/cli-internal.h"

void mp_cli_reply_free(struct mp_cli_reply *r) {
        free(r->content_type);
        r->content_type = NULL;
        mp_buf_free(&r->body);
}

void mp_cli_done(struct mp_cli *c) {
        if (c->curl)
                curl_easy_cleanup(c->curl);
        c->curl = NULL;
        free(c->url);
        c->url = NULL;
        if (c->token)
                explicit_bzero(c->token, strlen(c->token));
        free(c->token);
        c->token = NULL;
}

int mp_cli_session(struct mp_cli *c, bool need_token) {
        _cleanup_free_ char *path = NULL, *file_url = NULL, *file_token = NULL;
        const char *env_url = mp_config_client_env("MECAPY_URL");
        const char *env_token = mp_config_client_env("MECAPY_TOKEN");
        int r;

        if (mp_cli_config_path(&path) >= 0) {
                r = mp_cli_config_read(path, &file_url, &file_token);
                if (r == -EINVAL)
                        fprintf(stderr, "mecapy: warning: ignoring %s: not a JSON object\n", path);
                else if (r < 0 && r != -ENOENT)
                        fprintf(stderr, "mecapy: warning: cannot read %s: %s\n", path,
                                strerror(-r));
                if (file_url && mp_cli_url_normalize(file_url) < 0) {
                        free(file_url);
                        file_url = NULL;
                }
        }
        c->url = strdup(env_url && *env_url ? env_url : file_url ? file_url : MP_CLI_DEFAULT_URL);
        if (!c->url)
                return -ENOMEM;
        if (mp_cli_url_normalize(c->url) < 0) {
                fprintf(stderr, "mecapy: MECAPY_URL must be an http:// or https:// URL without "
                                "query, got '");
                mp_cli_put_safe(stderr, c->url);
                fprintf(stderr, "'\n");
                return -EINVAL;
        }
        if (env_token && *env_token)
                c->token = strdup(env_token);
        else if (file_token && file_url && strcmp(file_url, c->url) == 0)
                c->token = TAKE_PTR(file_token);
        if (file_token)
                explicit_bzero(file_token, strlen(file_token));
        if (need_token && !c->token) {
                if (file_token)
                        fprintf(stderr, "mecapy: the saved token is for %s, not %s: run "
                                        "'mecapy login --url %s' or set MECAPY_TOKEN\n",
                                file_url, c->url, c->url);
                else
                        fprintf(stderr, "mecapy: not logged in to %s: run 'mecapy login' or set "
                                        "MECAPY_TOKEN\n", c->url);
                return -ENOKEY;
        }
        if (c->token && (strlen(c->token) > MP_CLI_MAX_TOKEN_LEN || strpbrk(c->token, "\r\n"))) {
                fprintf(stderr, "mecapy: the token is malformed\n");
                return -EINVAL;
        }
        return 0;
}

static int ensure_curl(struct mp_cli *c) {
        if (!c->curl)
                c->curl = curl_easy_init();
        return c->curl ? 0 : -ENOMEM;
}

char *mp_cli_escape(struct mp_cli *c, const char *s) {
        char *e, *copy;

        if (ensure_curl(c) < 0)
                return NULL;
        e = curl_easy_escape(c->curl, s, 0);
        if (!e)
                return NULL;
        copy = strdup(e);
        curl_free(e);
        return copy;
}

static size_t on_body(char *p, size_t size, size_t n, void *userdata) {
        struct mp_buf *b = userdata;
        /* Returning less than given aborts the transfer: the cap is a hard stop. */
        if (mp_buf_append(b, p, size * n) < 0)
                return 0;
        return size * n;
}

/* What every request to the server sets: its address and headers, the client's name,
 * only http(s) and never a redirect (a token must not travel to another place), no
 * signals, and the time limits (timeout_s 0: none). */
static void set_common(CURL *curl, const char *url, struct curl_slist *headers, long timeout_s) {
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "mecapy-cli");
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long) MP_CLI_CONNECT_TIMEOUT_S);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT, timeout_s);
}

int mp_cli_request(struct mp_cli *c, const char *method, const char *path, json_t *body,
                   const char *idempotency_key, int wait_s, struct mp_cli_reply *ret) {
        _cleanup_free_ char *url = NULL, *auth = NULL, *idem = NULL, *payload = NULL;
        struct curl_slist *headers = NULL, *h;
        struct mp_cli_reply reply = { .body = { .cap = ret->body.cap ? ret->body.cap
                                                                     : MP_CLI_MAX_RESPONSE_BYTES } };
        char errbuf[CURL_ERROR_SIZE] = "";
        const char *ct = NULL;
        CURLcode cr;
        int r = 0;

        if (ensure_curl(c) < 0)
                return -ENOMEM;
        curl_easy_reset(c->curl);
        if (asprintf(&url, "%s%s", c->url, path) < 0)
                return -ENOMEM;
        if (body) {
                payload = mp_json_dumps(body, JSON_COMPACT);
                if (!payload)
                        return -ENOMEM;
        }

        h = curl_slist_append(NULL, "Accept: application/json, application/problem+json, */*");
        if (h && payload)
                h = curl_slist_append(h, "Content-Type: application/json");
        if (h)
                h = curl_slist_append(h, "Expect:"); /* no 100-continue round trip */
        if (h && c->token) {
                if (asprintf(&auth, "Authorization: Bearer %s", c->token) < 0)
                        auth = NULL;
                h = auth ? curl_slist_append(h, auth) : NULL;
        }
        if (h && idempotency_key) {
                if (asprintf(&idem, "Idempotency-Key: %s", idempotency_key) < 0)
                        idem = NULL;
                h = idem ? curl_slist_append(h, idem) : NULL;
        }
        if (!h) {
                r = -ENOMEM;
                goto out;
        }
        headers = h;

        set_common(c->curl, url, headers, (long) (MP_MAX(wait_s, 0) + MP_CLI_SLACK_TIMEOUT_S));
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
        if (strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0) {
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, payload ? payload : "");
                curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t) (payload ? strlen(payload) : 0));
        }
        curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t) reply.body.cap);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &reply.body);
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);

        cr = curl_easy_perform(c->curl);
        if (cr != CURLE_OK) {
                if (cr == CURLE_WRITE_ERROR || cr == CURLE_FILESIZE_EXCEEDED)
                        fprintf(stderr, "mecapy: %s %s: the answer is larger than %zu bytes; "
                                        "refused\n", method, url, reply.body.cap);
                else
                        fprintf(stderr, "mecapy: %s %s: %s\n", method, url,
                                errbuf[0] ? errbuf : curl_easy_strerror(cr));
                r = cr == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
                goto out;
        }
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &reply.status);
        if (curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
                reply.content_type = strdup(ct);
        *ret = reply;
        reply = (struct mp_cli_reply) { 0 };
out:
        if (auth)
                explicit_bzero(auth, strlen(auth));
        curl_slist_free_all(headers);
        mp_cli_reply_free(&reply);
        return r;
}

struct stream_ctx {
        struct mp_cli *c;
        bool (*on_data)(const char *p, size_t n, void *ctx);
        void *ctx;
        long status;
};

static size_t on_stream(char *p, size_t size, size_t n, void *userdata) {
        struct stream_ctx *s = userdata;
        if (!s->status)
                curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &s->status);
        if (s->status != 200 || !s->on_data(p, size * n, s->ctx))
                return 0; /* stops the transfer */
        return size * n;
}

int mp_cli_stream(struct mp_cli *c, const char *path, long timeout_s,
                  bool (*on_data)(const char *p, size_t n, void *ctx), void *ctx, long *ret_status) {
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct curl_slist *headers = NULL;
        struct stream_ctx s = { c, on_data, ctx, 0 };
        CURLcode cr;

        if (ensure_curl(c) < 0 || asprintf(&url, "%s%s", c->url, path) < 0)
                return -ENOMEM;
        curl_easy_reset(c->curl);
        headers = curl_slist_append(NULL, "Accept: text/event-stream, application/problem+json");
        if (headers && c->token) {
                if (asprintf(&auth, "Authorization: Bearer %s", c->token) < 0)
                        auth = NULL;
                headers = auth ? curl_slist_append(headers, auth) : NULL;
        }
        if (!headers)
                return -ENOMEM;
        set_common(c->curl, url, headers, timeout_s > 0 ? timeout_s : 0L);
        /* The server sends a heartbeat every 15 s: a minute of silence is a lost link. */
        curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(c->curl, CURLOPT_LOW_SPEED_TIME, 60L);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_stream);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &s);
        cr = curl_easy_perform(c->curl);
        if (auth)
                explicit_bzero(auth, strlen(auth));
        curl_slist_free_all(headers);
        if (!s.status)
                curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &s.status);
        if (ret_status)
                *ret_status = s.status;
        if (s.status && s.status != 200)
                return -EPROTO;
        if (cr == CURLE_OPERATION_TIMEDOUT)
                return -ETIMEDOUT;
        return cr == CURLE_OK || cr == CURLE_WRITE_ERROR ? 0 : -EIO;
}

void mp_cli_sse_init(struct mp_cli_sse *s, size_t max_event,
                     bool (*on_event)(const char *name, const char *data, size_t len, void *ctx), void *ctx) {
        *s = (struct mp_cli_sse) { .line = { .cap = max_event }, .data = { .cap = max_event },
                                   .on_event = on_event, .ctx = ctx };
}

void mp_cli_sse_free(struct mp_cli_sse *s) {
        mp_buf_free(&s->line);
        mp_buf_free(&s->data);
}

/* One line of the stream (without its newline); false to stop. */
static bool sse_line(struct mp_cli_sse *s, const char *p, size_t n) {
        bool more = true;

        if (n && p[n - 1] == '\r')
                n--;
        if (n == 0) {
                if (s->event[0] || s->data.len)
                        more = s->on_event(s->event[0] ? s->event : "message", s->data.data ? s->data.data : "",
                                           s->data.len, s->ctx);
                s->event[0] = 0;
                s->data.len = 0;
                if (s->data.data)
                        s->data.data[0] = 0;
                return more;
        }
        if (p[0] == ':')
                return true;
        if (n >= 6 && !memcmp(p, "event:", 6)) {
                size_t skip = n > 6 && p[6] == ' ' ? 7 : 6;
                snprintf(s->event, sizeof(s->event), "%.*s", (int) (n - skip), p + skip);
        } else if (n >= 5 && !memcmp(p, "data:", 5)) {
                size_t skip = n > 5 && p[5] == ' ' ? 6 : 5;
                if ((s->data.len && mp_buf_append(&s->data, "\n", 1) < 0) ||
                    mp_buf_append(&s->data, p + skip, n - skip) < 0)
                        return false; /* an event past any the server sends: not our server */
        }
        return true;
}

bool mp_cli_sse_feed(const char *p, size_t n, void *sse) {
        struct mp_cli_sse *s = sse;
        for (size_t i = 0; i < n; i++) {
                if (p[i] != '\n') {
                        if (mp_buf_append(&s->line, p + i, 1) < 0)
                                return false; /* a line past any event's size: not our server */
                        continue;
                }
                bool more = sse_line(s, s->line.data ? s->line.data : "", s->line.len);
                s->line.len = 0;
                if (!more)
                        return false;
        }
        return true;
}

static bool is_json_type(const char *ct) {
        return ct && (strncmp(ct, "application/json", 16) == 0 ||
                      strncmp(ct, "application/problem+json", 24) == 0);
}

void mp_cli_print_problem(const struct mp_cli_reply *r) {
        _cleanup_json_ json_t *doc = NULL;
        json_error_t jerr;
        json_t *errors, *e;
        size_t i;

        if (r->body.len && is_json_type(r->content_type))
                doc = json_loadb(r->body.data, r->body.len, 0, &jerr);
        if (!json_is_object(doc)) {
                fprintf(stderr, "mecapy: the server answered %ld", r->status);
                if (r->body.len) {
                        char head[201];
                        size_t n = MP_MIN(r->body.len, sizeof(head) - 1);
                        memcpy(head, r->body.data, n);
                        head[n] = 0;
                        fprintf(stderr, ": ");
                        mp_cli_put_safe(stderr, head);
                }
                fprintf(stderr, "\n");
        } else {
                const char *title = mp_cli_str(doc, "title"), *detail = mp_cli_str(doc, "detail");
                fprintf(stderr, "mecapy: %ld", r->status);
                if (*title) {
                        fprintf(stderr, " ");
                        mp_cli_put_safe(stderr, title);
                }
                if (*detail) {
                        fprintf(stderr, ": ");
                        mp_cli_put_safe(stderr, detail);
                }
                fprintf(stderr, "\n");
                errors = json_object_get(doc, "errors");
                json_array_foreach(errors, i, e) {
                        json_t *line = json_object_get(e, "line");
                        fprintf(stderr, "  ");
                        mp_cli_put_safe(stderr, *mp_cli_str(e, "path") ? mp_cli_str(e, "path") : "-");
                        if (json_is_integer(line))
                                fprintf(stderr, ", line %" JSON_INTEGER_FORMAT, json_integer_value(line));
                        fprintf(stderr, ": ");
                        mp_cli_put_safe(stderr, mp_cli_str(e, "message"));
                        fprintf(stderr, "\n");
                }
        }
}

int mp_cli_api(struct mp_cli *c, const char *method, const char *path, json_t *body,
               const char *idempotency_key, int wait_s, json_t **ret, long *ret_status) {
        struct mp_cli_reply reply = { 0 };
        json_error_t jerr;
        json_t *doc = NULL;
        int r;

        if (ret_status)
                *ret_status = 0;
        r = mp_cli_request(c, method, path, body, idempotency_key, wait_s, &reply);
        if (r < 0)
                return r;
        if (ret_status)
                *ret_status = reply.status;
        if (reply.status < 200 || reply.status > 299) {
                mp_cli_print_problem(&reply);
                if (reply.status == 401 && c->token)
                        fprintf(stderr, "mecapy: run 'mecapy login' (or set MECAPY_TOKEN) and try "
                                        "again\n");
                mp_cli_reply_free(&reply);
                return -EPROTO;
        }
        if (reply.body.len) {
                doc = json_loadb(reply.body.data, reply.body.len, 0, &jerr);
                if (!doc) {
                        fprintf(stderr, "mecapy: %s %s: the answer is not JSON (line %d: %s)\n",
                                method, path, jerr.line, jerr.text);
                        mp_cli_reply_free(&reply);
                        return -EBADMSG;
                }
        }
        mp_cli_reply_free(&reply);
        *ret = doc;
        return 0;
}
