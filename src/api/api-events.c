/* Server-sent events for one task, workflow run or study (docs/api.md#task-events).
 *
 * A stream is a response whose body comes from a callback (sse_read): no HTTP thread is
 * held while it waits. When it has nothing to send, the callback suspends the connection
 * (MHD allows that from a content reader) and returns 0; three things resume it: the
 * core's notice that the task (or run) ended (the same notice that wakes the ?wait= long
 * polls), its tick (every tick_ms of its kind it looks at its subject, to see what the
 * core does not announce: queued → running, progress, logs, a run's nodes, a study's
 * counts), and its heartbeat. On resume the callback looks at the subject and writes
 * the events due, then at the end `end`, and the stream closes.
 *
 * A task's stream sends `status` when its status changed; while it runs, `progress`
 * when its last mecapy.progress() changed and `log` with the whole lines it printed
 * since (both read from the task's row, where the worker that runs it writes them, in
 * this process or another); at the end the rest of its logs and `end`. A run's or a
 * study's stream sends `status` with the whole object each time it changed.
 * Streams are bounded per user and in all, whatever their kind (MP_SSE_PER_USER,
 * MP_SSE_MAX): one more is a 429. */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "api/api-events.h"
#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-tasks.h"
#include "base/log.h"

/* What a stream follows. */
struct sse_kind {
        int64_t tick_ms;
        /* The subject as GET shows it, and whether it ended (nothing of it runs). */
        int (*get)(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                   bool *ret_ended, struct mp_error *err);
        void (*look)(struct mp_sse *s);
};

struct mp_sse {
        struct mp_sse *next;
        struct mp_api *api;
        struct MHD_Connection *conn; /* NULL once its request completed */
        struct mp_principal principal;
        const struct sse_kind *kind;
        char id[MP_ID_LEN + 1];
        char status[32];          /* task: the last status sent */
        char progress_at[40];     /* task: the "at" of the last progress sent */
        int64_t log_chars;        /* task: characters of its logs sent */
        uint64_t digest;          /* run, study: of the last object sent */
        struct mp_buf out;        /* events to send, from out_off */
        size_t out_off;
        bool suspended, woken;    /* under api->lock */
        bool finished;            /* the end (or an error) is in out: close once sent */
        int64_t next_tick_ms, next_heartbeat_ms;
};

/* One event: "event: NAME\n", each line of data as "data: LINE\n", then "\n" (a JSON
 * text's newlines are whitespace, so splitting it keeps it JSON once joined again). */
static int add_event(struct mp_sse *s, const char *name, const char *data, size_t len) {
        static const char ev[] = "event: ", dl[] = "data: ";
        int r = mp_buf_append(&s->out, ev, sizeof(ev) - 1);
        r = r < 0 ? r : mp_buf_append(&s->out, name, strlen(name));
        r = r < 0 ? r : mp_buf_append(&s->out, "\n", 1);
        for (size_t i = 0; r >= 0 && (i < len || i == 0);) {
                const char *nl = memchr(data + i, '\n', len - i);
                size_t n = nl ? (size_t) (nl - (data + i)) : len - i;
                if (n && data[i + n - 1] == '\r')
                        n--; /* a CR before LF would end the line early in a client */
                r = mp_buf_append(&s->out, dl, sizeof(dl) - 1);
                r = r < 0 ? r : mp_buf_append(&s->out, data + i, n);
                r = r < 0 ? r : mp_buf_append(&s->out, "\n", 1);
                i += (nl ? (size_t) (nl - (data + i)) + 1 : len - i);
                if (i == len)
                        break;
        }
        return r < 0 ? r : mp_buf_append(&s->out, "\n", 1);
}

static int add_json_event(struct mp_sse *s, const char *name, json_t *j) {
        _cleanup_free_ char *text = mp_json_dumps(j, JSON_COMPACT);
        return text ? add_event(s, name, text, strlen(text)) : -ENOMEM;
}

static void add_problem_event(struct mp_sse *s, const struct mp_error *err) {
        _cleanup_json_ json_t *p = json_pack("{s:s,s:i,s:s}", "code", err->code[0] ? err->code : "internal",
                                             "status", err->status, "detail", err->message);
        if (p)
                add_json_event(s, "error", p);
        s->finished = true;
}

/* Characters (not bytes) of UTF-8 text: what the store counts the live logs in. */
static int64_t utf8_chars(const char *p, size_t n) {
        int64_t c = 0;
        for (size_t i = 0; i < n; i++)
                c += ((unsigned char) p[i] & 0xC0) != 0x80;
        return c;
}

/* The byte offset of character `chars` in p (n if it holds fewer). */
static size_t utf8_skip(const char *p, size_t n, int64_t chars) {
        size_t i = 0;
        for (; i < n && chars > 0; i++)
                if (i + 1 == n || ((unsigned char) p[i + 1] & 0xC0) != 0x80)
                        chars--;
        return i;
}

/* While the task runs: the whole lines it printed since the last `log` (a line still
 * being written waits for its end, unless it is already long). */
#define LOG_PARTIAL_MAX (64u * 1024)
static void look_live_logs(struct mp_sse *s) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int64_t chars = 0;

        if (mp_core_task_live_logs(s->api->core, s->id, s->log_chars, &text, &len, &chars, &err) < 0)
                return; /* the next look tries again; the end sends what is missing */
        if (chars < s->log_chars) {
                s->log_chars = 0; /* the task runs again (its worker died): from the start */
                return;
        }
        const char *nl = len ? memrchr(text, '\n', len) : NULL;
        size_t n = nl ? (size_t) (nl - text) + 1 : len >= LOG_PARTIAL_MAX ? len : 0;
        if (n == 0)
                return;
        add_event(s, "log", text, n);
        s->log_chars += utf8_chars(text, n);
}

/* Look at the task; queue what changed. */
static void look_task(struct mp_sse *s) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *task = NULL, *summary = NULL;
        bool ended = false;
        const char *status;

        if (mp_core_task_get(s->api->core, &s->principal, s->id, &task, &ended, &err) < 0) {
                add_problem_event(s, &err);
                return;
        }
        status = json_string_value(json_object_get(task, "status"));
        if (status && strcmp(status, s->status)) {
                summary = json_deep_copy(task);
                if (summary) {
                        json_object_del(summary, "result_json");
                        json_object_del(summary, "result");
                        json_object_del(summary, "logs");
                        add_json_event(s, "status", summary);
                }
                snprintf(s->status, sizeof(s->status), "%s", status);
        }
        json_t *progress = json_object_get(task, "progress");
        const char *at = json_string_value(json_object_get(progress, "at"));
        if (at && strcmp(at, s->progress_at)) {
                add_json_event(s, "progress", progress);
                snprintf(s->progress_at, sizeof(s->progress_at), "%s", at);
        }
        if (!ended) {
                if (status && !strcmp(status, "running"))
                        look_live_logs(s);
                return;
        }
        _cleanup_error_ struct mp_error lerr = { 0 };
        _cleanup_free_ char *logs = NULL;
        size_t len = 0;
        if (mp_core_task_logs(s->api->core, &s->principal, s->id, &logs, &len, &lerr) >= 0) {
                /* What the live `log` events did not send yet. */
                size_t off = utf8_skip(logs, len, s->log_chars);
                if (len > off)
                        add_event(s, "log", logs + off, len - off);
        }
        json_t *rj = json_object_get(task, "result_json");
        if (json_is_string(rj) && json_string_length(rj) > MP_SSE_END_RESULT_BYTES)
                mp_api_task_omit_result(task); /* GET /tasks/{id} has it, for who wants it */
        size_t tlen;
        _cleanup_free_ char *text = mp_api_task_text(task, &tlen);
        if (text)
                add_event(s, "end", text, tlen);
        s->finished = true;
}

/* FNV-1a: enough to tell that an object changed since the last one sent. */
static uint64_t digest(const char *p, size_t n) {
        uint64_t h = 14695981039346656037ull;
        for (size_t i = 0; i < n; i++)
                h = (h ^ (unsigned char) p[i]) * 1099511628211ull;
        return h;
}

/* A workflow run or a study: `status` with the object when it changed, `end` with the
 * last one. */
static void look_object(struct mp_sse *s) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *obj = NULL;
        bool ended = false;

        if (s->kind->get(s->api->core, &s->principal, s->id, &obj, &ended, &err) < 0) {
                add_problem_event(s, &err);
                return;
        }
        _cleanup_free_ char *text = mp_json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
        if (!text)
                return;
        size_t len = strlen(text);
        uint64_t d = digest(text, len);
        if (d != s->digest) {
                add_event(s, "status", text, len);
                s->digest = d;
        }
        if (ended) {
                add_event(s, "end", text, len);
                s->finished = true;
        }
}

static int run_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                   bool *ret_ended, struct mp_error *err) {
        return mp_core_workflow_run_get(core, p, id, ret, ret_ended, err);
}

static int study_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                     bool *ret_ended, struct mp_error *err) {
        int r = mp_core_study_get(core, p, id, ret, err);
        if (r >= 0)
                *ret_ended = mp_core_study_ended(*ret);
        return r;
}

static int task_get(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                    bool *ret_ended, struct mp_error *err) {
        return mp_core_task_get(core, p, id, ret, ret_ended, err);
}

static const struct sse_kind kind_task = { MP_SSE_TICK_MS, task_get, look_task };
static const struct sse_kind kind_run = { MP_SSE_TICK_MS, run_get, look_object };
/* A study's counts move with each point: looked at more often, so that a progress bar
 * moves smoothly (at most 1000 / MP_SSE_STUDY_TICK_MS updates a second). */
static const struct sse_kind kind_study = { MP_SSE_STUDY_TICK_MS, study_get, look_object };

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
        struct mp_sse *s = cls;
        struct mp_api *api = s->api;

        (void) pos;
        for (;;) {
                if (s->out_off < s->out.len) {
                        size_t n = s->out.len - s->out_off;
                        if (n > max)
                                n = max;
                        memcpy(buf, s->out.data + s->out_off, n);
                        s->out_off += n;
                        return (ssize_t) n;
                }
                s->out.len = s->out_off = 0;
                if (s->finished)
                        return MHD_CONTENT_READER_END_OF_STREAM;

                pthread_mutex_lock(&api->lock);
                bool stopping = api->stopping, woken = s->woken;
                s->woken = false;
                pthread_mutex_unlock(&api->lock);
                if (stopping)
                        return MHD_CONTENT_READER_END_OF_STREAM;

                int64_t now = mp_mono_ms();
                if (woken || now >= s->next_tick_ms) {
                        s->next_tick_ms = now + s->kind->tick_ms;
                        s->kind->look(s);
                }
                if (s->out.len == 0 && now >= s->next_heartbeat_ms) {
                        static const char hb[] = ": heartbeat\n\n";
                        mp_buf_append(&s->out, hb, sizeof(hb) - 1);
                }
                if (s->out.len) {
                        s->next_heartbeat_ms = now + MP_SSE_HEARTBEAT_MS;
                        continue;
                }
                /* Nothing to say: wait, unless a notice came while we looked. */
                pthread_mutex_lock(&api->lock);
                if (s->woken || api->stopping || !s->conn) {
                        pthread_mutex_unlock(&api->lock);
                        if (!s->conn)
                                return MHD_CONTENT_READER_END_WITH_ERROR;
                        continue;
                }
                s->suspended = true;
                MHD_suspend_connection(s->conn);
                pthread_cond_signal(&api->cond); /* the timer may need an earlier tick */
                pthread_mutex_unlock(&api->lock);
                return 0;
        }
}

static void unlink_locked(struct mp_api *api, struct mp_sse *s) {
        for (struct mp_sse **p = &api->streams; *p; p = &(*p)->next)
                if (*p == s) {
                        *p = s->next;
                        api->n_streams--;
                        return;
                }
}

static void sse_free(void *cls) {
        struct mp_sse *s = cls;
        pthread_mutex_lock(&s->api->lock);
        unlink_locked(s->api, s);
        pthread_mutex_unlock(&s->api->lock);
        mp_buf_free(&s->out);
        free(s);
}

static void resume_locked(struct mp_sse *s) {
        if (s->suspended && s->conn) {
                s->suspended = false;
                MHD_resume_connection(s->conn);
        }
}

void mp_api_events_wake_locked(struct mp_api *api, const char *task_id) {
        for (struct mp_sse *s = api->streams; s; s = s->next)
                if (!task_id || !strcmp(s->id, task_id)) {
                        s->woken = true;
                        resume_locked(s);
                }
}

int64_t mp_api_events_tick_locked(struct mp_api *api, int64_t now, int64_t next) {
        for (struct mp_sse *s = api->streams; s; s = s->next) {
                if (!s->suspended)
                        continue;
                int64_t due = s->next_tick_ms < s->next_heartbeat_ms ? s->next_tick_ms : s->next_heartbeat_ms;
                if (api->stopping || due <= now)
                        resume_locked(s);
                else if (due < next)
                        next = due;
        }
        return next;
}

void mp_api_events_detach_locked(struct mp_api *api, struct mp_sse *s) {
        (void) api;
        if (s) {
                s->conn = NULL;
                s->suspended = false;
        }
}

static enum MHD_Result open_stream(struct mp_route_ctx *c, const struct sse_kind *kind) {
        struct mp_api *api = c->api;
        _cleanup_json_ json_t *obj = NULL;
        struct MHD_Response *resp;
        bool ended = false;
        int mine = 0;
        enum MHD_Result r;

        /* Not found, or not the caller's: the same answers as its GET. */
        if (kind->get(api->core, &c->principal, c->param[0], &obj, &ended, &c->err) < 0)
                return mp_api_send_problem(c->conn, &c->err);

        struct mp_sse *s = calloc(1, sizeof(*s));
        if (!s)
                return MHD_NO;
        s->api = api;
        s->conn = c->conn;
        s->principal = c->principal;
        s->out.cap = MP_SSE_BUFFER_BYTES;
        s->kind = kind;
        snprintf(s->id, sizeof(s->id), "%s", c->param[0]);

        pthread_mutex_lock(&api->lock);
        for (struct mp_sse *o = api->streams; o; o = o->next)
                mine += !strcmp(o->principal.user_id, c->principal.user_id);
        if (mine >= MP_SSE_PER_USER || api->n_streams >= MP_SSE_MAX || api->stopping) {
                pthread_mutex_unlock(&api->lock);
                free(s);
                char what[160];
                if (mine >= MP_SSE_PER_USER)
                        snprintf(what, sizeof(what), "too many event streams open for this user (at most %d); "
                                 "close one", MP_SSE_PER_USER);
                else
                        snprintf(what, sizeof(what), "too many event streams open on this server");
                return mp_api_send_throttled(c->conn, 5, what);
        }
        s->next = api->streams;
        api->streams = s;
        api->n_streams++;
        pthread_mutex_unlock(&api->lock);

        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, sse_read, s, sse_free);
        if (!resp) {
                sse_free(s);
                return MHD_NO;
        }
        c->req->sse = s;
        c->req->held = true; /* kind="wait" in /metrics, as the long polls */
        MHD_add_response_header(resp, "Content-Type", "text/event-stream; charset=utf-8");
        MHD_add_response_header(resp, "X-Accel-Buffering", "no"); /* a proxy must not hold events */
        mp_api_add_headers(c->conn, resp, NULL);
        r = MHD_queue_response(c->conn, 200, resp);
        MHD_destroy_response(resp); /* not queued: this freed the stream */
        if (r != MHD_YES)
                c->req->sse = NULL;
        return r;
}

enum MHD_Result mp_api_task_events(struct mp_route_ctx *c) {
        return open_stream(c, &kind_task);
}

enum MHD_Result mp_api_run_events(struct mp_route_ctx *c) {
        return open_stream(c, &kind_run);
}

enum MHD_Result mp_api_study_events(struct mp_route_ctx *c) {
        return open_stream(c, &kind_study);
}
