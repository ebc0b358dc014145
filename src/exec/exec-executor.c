/* The executor: one single-threaded process, forked before the server starts threads,
 * that forks every sandbox (a threaded process must not fork user code: another
 * thread's locks and fds would be copied mid-use). The server talks to it over
 * `channels` socketpairs, one call per channel at a time, in length-prefixed frames:
 *
 *   server -> executor  {"op","code","handler","inputs","policy","limits"}
 *   executor -> server  {"status","result","error","logs"(base64),"logs_truncated",
 *                        "artifacts":[{"name","data"(base64)}],"wall_ms","cpu_ms",
 *                        "peak_memory_kb"}  or  {"setup_error": "sentence"}
 *
 * A request with "live": true may get, before its reply, update frames
 * {"update":1,"progress"?:{"fraction","message"},"logs"?:base64}: what the call reported
 * and printed since the previous one, at most one per MP_LIVE_INTERVAL_MS (the reply
 * still carries all the logs). They start with {"update": so the server tells them
 * from a reply without parsing the reply twice.
 *
 * Cancels do not travel on the channels (the caller that owns a channel is blocked
 * reading its reply): one SOCK_SEQPACKET control socket, shared by every thread of the
 * server, carries {channel, call id} messages. The id is checked against the call the
 * executor holds for that channel, so a cancel that crosses the call's end (the
 * channel already serves someone else) never hits another call.
 *
 * The executor's loop polls every channel and every running sandbox at once: the
 * sandbox's guest socket (request out, reply in), its log pipe (drained and capped so
 * printing never blocks), its pidfd (exit), and the wall-clock deadlines.
 *
 * Everything the guest sends is untrusted: user code runs in the guest's process and
 * can write anything on fd 3. The executor re-checks sizes, counts and shapes. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/sockios.h>
#include <unistd.h>

#include "base/limits.h"
#include "base/log.h"
#include "base/util.h"
#include "exec/exec-internal.h"

extern const char mp_guest_py[];
extern const size_t mp_guest_py_len;

/* Server <-> executor replies carry base64 logs and artifacts next to the result. */
#define CHANNEL_MAX_FRAME (2 * (size_t) MP_MAX_FRAME_BYTES)
#define ANALYZE_TIMEOUT_S 10
#define ANALYZE_MEMORY_MB 256

/* A cancel on the control socket. */
struct ctl_msg {
        uint32_t ch;
        char call_id[MP_EXEC_CALL_ID_MAX + 1];
};

/* A thread of mp_executor_run waiting for a free channel (on its stack). */
struct chan_waiter {
        const char *call_id;
        bool cancelled;
        struct chan_waiter *next;
};

struct mp_executor {
        pid_t pid;
        unsigned n;
        int *fds;
        bool *busy;
        char **ids;          /* the call id each busy channel serves, or NULL */
        struct chan_waiter *waiters;
        int ctl;             /* control socket (cancels) */
        bool dead;
        pthread_mutex_t lock;
        pthread_cond_t cond;
};

/* ------------------------------------------------------------------ limits */

static int normalize_limits(enum mp_exec_op op, const struct mp_limits *in, struct mp_limits *out,
                            struct mp_error *err) {
        struct mp_limits l = *in;

        if (l.timeout_s == 0)
                l.timeout_s = MP_DEFAULT_TIMEOUT_S;
        if (l.memory_mb == 0)
                l.memory_mb = MP_DEFAULT_MEMORY_MB;
        if (l.cpus == 0)
                l.cpus = MP_DEFAULT_CPUS;
        if (l.max_procs == 0)
                l.max_procs = MP_DEFAULT_MAX_PROCS;
        if (l.tmp_mb == 0)
                l.tmp_mb = MP_DEFAULT_TMP_MB;
        if (l.timeout_s < 1 || l.timeout_s > MP_MAX_TIMEOUT_S)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.timeout_s must be 1..%d", MP_MAX_TIMEOUT_S);
        if (l.memory_mb < 32 || l.memory_mb > MP_MAX_MEMORY_MB)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.memory_mb must be 32..%d", MP_MAX_MEMORY_MB);
        if (l.cpus < 1 || l.cpus > MP_MAX_CPUS)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.cpus must be 1..%d", MP_MAX_CPUS);
        if (l.max_procs < 1 || l.max_procs > 4096)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.max_procs must be 1..4096");
        if (l.solvers & ~MP_SOLVER_ALL)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.solvers names an unknown solver");
        if (l.solvers && op != MP_EXEC_RUN)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.solvers is for calls only");
        if (l.tmp_mb < 1 || l.tmp_mb > MP_MAX_MEMORY_MB)
                return mp_error_set(err, EINVAL, 422, "validation", "limits.tmp_mb must be 1..%d", MP_MAX_MEMORY_MB);
        if (op == MP_EXEC_ANALYZE) {
                /* Parsing needs little; hostile source gets little. */
                l.timeout_s = MP_MIN(l.timeout_s, ANALYZE_TIMEOUT_S);
                l.memory_mb = MP_MIN(l.memory_mb, ANALYZE_MEMORY_MB);
                l.tmp_mb = MP_MIN(l.tmp_mb, 16);
                l.max_procs = MP_MIN(l.max_procs, 8);
                l.cpus = 1;
        }
        *out = l;
        return 0;
}

json_t *mp_exec_limits_json(const struct mp_limits *l) {
        return json_pack("{s:i,s:i,s:i,s:i,s:i,s:i}", "timeout_s", l->timeout_s, "memory_mb", l->memory_mb,
                         "cpus", l->cpus, "max_procs", l->max_procs, "tmp_mb", l->tmp_mb, "solvers",
                         (int) l->solvers);
}

int mp_exec_limits_from_json(json_t *j, struct mp_limits *l) {
        memset(l, 0, sizeof(*l));
        if (!json_is_object(j))
                return -EINVAL;
        l->timeout_s = (int) json_integer_value(json_object_get(j, "timeout_s"));
        l->memory_mb = (int) json_integer_value(json_object_get(j, "memory_mb"));
        l->cpus = (int) json_integer_value(json_object_get(j, "cpus"));
        l->max_procs = (int) json_integer_value(json_object_get(j, "max_procs"));
        l->tmp_mb = (int) json_integer_value(json_object_get(j, "tmp_mb"));
        l->solvers = (unsigned) json_integer_value(json_object_get(j, "solvers"));
        return 0;
}

/* ------------------------------------------------------------------ base64 */

static json_t *b64_json(const void *p, size_t n) {
        size_t enc = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
        _cleanup_free_ char *s = malloc(enc);
        if (!s)
                return NULL;
        sodium_bin2base64(s, enc, p, n, sodium_base64_VARIANT_ORIGINAL);
        return json_stringn_nocheck(s, enc - 1);
}

/* Decode; *ret is NUL-terminated for convenience. */
static int b64_decode(const char *s, size_t len, size_t max, char **ret, size_t *ret_len) {
        size_t cap = len / 4 * 3 + 3, out = 0;
        if (len / 4 * 3 > max + 3) /* padding: the text may announce up to 2 bytes more */
                return -E2BIG;
        _cleanup_free_ char *d = malloc(cap + 1);
        if (!d)
                return -ENOMEM;
        if (sodium_base642bin((unsigned char *) d, cap, s, len, NULL, &out, NULL,
                              sodium_base64_VARIANT_ORIGINAL) != 0)
                return -EINVAL;
        if (out > max)
                return -E2BIG;
        d[out] = 0;
        *ret = TAKE_PTR(d);
        *ret_len = out;
        return 0;
}

/* ------------------------------------------------------------------ bounded JSON */

/* Guest replies and request frames are parsed into trees, and a tree costs far more
 * than its text (see MP_MAX_RESULT_ELEMENTS): the text's shape is checked first, in one
 * pass over the bytes that allocates nothing. The scan only has to be conservative:
 * jansson validates afterwards, and builds one value for each value token the scan
 * counted (at most: on a malformed text it stops at the error). */
enum mp_json_shape mp_exec_json_scan(const char *p, size_t n, unsigned max_depth, size_t max_values,
                                     unsigned *ret_depth, size_t *ret_values) {
        /* One bit per open level: is it an object (then the next string after '{' or
         * ',' is a key, not a value)? Deeper than this is refused anyway. */
        bool is_obj[256];
        unsigned depth = 0, deepest = 0;
        size_t values = 0;
        bool in_str = false, esc = false, in_scalar = false, want_key = false;
        enum mp_json_shape shape = MP_JSON_FITS;

        if (max_depth >= ELEMENTSOF(is_obj))
                max_depth = ELEMENTSOF(is_obj) - 1;
        for (size_t i = 0; i < n; i++) {
                char c = p[i];
                if (in_str) {
                        if (esc)
                                esc = false;
                        else if (c == '\\')
                                esc = true;
                        else if (c == '"')
                                in_str = false;
                        continue;
                }
                switch (c) {
                case '"':
                        in_scalar = false;
                        in_str = true;
                        if (depth > 0 && is_obj[depth] && want_key)
                                want_key = false; /* a key: no value of its own */
                        else
                                values++;
                        break;
                case '[':
                case '{':
                        in_scalar = false;
                        values++;
                        if (++depth > max_depth) {
                                shape = MP_JSON_TOO_DEEP;
                                goto out;
                        }
                        deepest = MP_MAX(deepest, depth);
                        is_obj[depth] = c == '{';
                        want_key = c == '{';
                        break;
                case ']':
                case '}':
                        in_scalar = want_key = false;
                        if (depth > 0)
                                depth--;
                        break;
                case ',':
                        in_scalar = false;
                        want_key = depth > 0 && is_obj[depth];
                        break;
                case ':':
                        in_scalar = want_key = false;
                        break;
                case ' ':
                case '\t':
                case '\n':
                case '\r':
                        in_scalar = false;
                        break;
                default:
                        /* A number or a literal (true, false, null), or garbage the
                         * parser will refuse: one value per run of such bytes. */
                        if (!in_scalar) {
                                in_scalar = true;
                                values++;
                        }
                        break;
                }
                if (values > max_values) {
                        shape = MP_JSON_TOO_MANY;
                        goto out;
                }
        }
out:
        if (ret_depth)
                *ret_depth = shape == MP_JSON_TOO_DEEP ? depth : deepest;
        if (ret_values)
                *ret_values = values;
        return shape;
}

json_t *mp_exec_json_load(const char *p, size_t n, unsigned max_depth, size_t max_values,
                          enum mp_json_shape *ret_shape) {
        enum mp_json_shape shape = mp_exec_json_scan(p, n, max_depth, max_values, NULL, NULL);
        json_t *j = NULL;

        if (shape == MP_JSON_FITS) {
                /* JSON_ALLOW_NUL: "\u0000" is valid JSON a function may return. */
                j = json_loadb(p, n, JSON_ALLOW_NUL, NULL);
                if (!j)
                        shape = MP_JSON_INVALID;
        }
        if (ret_shape)
                *ret_shape = shape;
        return j;
}

/* A reply frame holds the result one level down ({"status","result"}), next to a few
 * values of its own: status, error and its fields, up to MP_MAX_ARTIFACTS artifacts of
 * a name and data each. */
#define REPLY_FRAME_DEPTH 1
#define REPLY_FRAME_VALUES (16 + 3 * MP_MAX_ARTIFACTS)

json_t *mp_exec_reply_load(const char *p, size_t n, enum mp_json_shape *ret_shape) {
        return mp_exec_json_load(p, n, MP_MAX_RESULT_DEPTH + REPLY_FRAME_DEPTH,
                                 MP_MAX_RESULT_ELEMENTS + REPLY_FRAME_VALUES, ret_shape);
}

/* A string of user text (an error message, a traceback) cut to at most max bytes, at a
 * UTF-8 character boundary, ending with a marker that says so; a new reference (NULL:
 * not a string). The guest cuts the same way (guest.py, capped), so what it sends
 * passes here unchanged. */
#define CAP_MARK_ROOM 96
static json_t *capped_text(json_t *s, size_t max) {
        static const char fmt[] = "\n[truncated: %zu bytes in all, the first %zu kept]";
        const char *v = json_string_value(s);
        size_t len = json_string_length(s), cut = max > CAP_MARK_ROOM ? max - CAP_MARK_ROOM : 0;
        char mark[CAP_MARK_ROOM];

        if (!v)
                return NULL;
        if (len <= max)
                return json_incref(s);
        /* jansson holds valid UTF-8: back off continuation bytes to a character start. */
        while (cut > 0 && ((unsigned char) v[cut] & 0xC0) == 0x80)
                cut--;
        int m = snprintf(mark, sizeof(mark), fmt, len, cut);
        _cleanup_free_ char *t = malloc(cut + (size_t) m + 1);
        if (!t)
                return NULL;
        memcpy(t, v, cut);
        memcpy(t + cut, mark, (size_t) m + 1);
        return json_stringn_nocheck(t, cut + (size_t) m);
}

/* ------------------------------------------------------------------ live updates */

/* A progress frame's length has its top bit set: never a reply's (at most
 * MP_MAX_FRAME_BYTES), so the two are told apart before any byte of JSON is read. */
#define PROGRESS_FLAG 0x80000000u

int mp_exec_take_frames(struct mp_buf *rep, struct mp_live *lv) {
        size_t off = 0;
        int r = 0;

        while (rep->len - off >= 4) {
                uint32_t len;
                memcpy(&len, rep->data + off, 4);
                len = le32toh(len);
                if (!(len & PROGRESS_FLAG)) {
                        r = len > MP_MAX_FRAME_BYTES ? -1 : rep->len - off >= 4 + (size_t) len;
                        break;
                }
                len &= ~PROGRESS_FLAG;
                if (len > MP_MAX_PROGRESS_FRAME) {
                        r = -1;
                        break;
                }
                if (rep->len - off < 4 + (size_t) len)
                        break;
                /* Only the last one matters: kept as text, read when it is forwarded (a
                 * flood of frames costs a copy each, not a parse). */
                memcpy(lv->progress, rep->data + off + 4, len);
                lv->progress[len] = 0;
                lv->progress_len = len;
                lv->dirty = true;
                off += 4 + (size_t) len;
        }
        if (off) {
                memmove(rep->data, rep->data + off, rep->len - off);
                rep->len -= off;
                rep->data[rep->len] = 0;
        }
        return r;
}

/* How much of p[0..n) to send now: all but an unfinished UTF-8 sequence at its end (the
 * bytes that would finish it may come next), so that the text made of the pieces is
 * the text made of the whole (mp_utf8_sanitize replaces an unfinished sequence). */
static size_t utf8_whole(const char *p, size_t n) {
        for (size_t k = 1; k <= 3 && k <= n; k++) {
                unsigned char c = (unsigned char) p[n - k];
                if ((c & 0xC0) == 0x80)
                        continue;
                size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
                return need > k ? n - k : n;
        }
        return n;
}

/* The held progress frame, checked: {"fraction": 0..1, "message": at most
 * MP_MAX_PROGRESS_MESSAGE characters}, or NULL when it is not that. */
static json_t *progress_json(const struct mp_live *lv) {
        _cleanup_json_ json_t *j = mp_exec_json_load(lv->progress, lv->progress_len, 1, 8, NULL);
        json_t *f = json_object_get(j, "fraction"), *m = json_object_get(j, "message");
        double v = json_number_value(f);
        size_t i = 0, chars = 0, len = json_string_length(m);
        const char *msg = m ? json_string_value(m) : "";

        if (!json_is_number(f) || !(v >= 0.0 && v <= 1.0) || (m && !json_is_string(m)))
                return NULL;
        for (; i < len; i++)
                if (((unsigned char) msg[i] & 0xC0) != 0x80 && ++chars > MP_MAX_PROGRESS_MESSAGE)
                        break;
        return json_pack("{s:f,s:s%}", "fraction", v, "message", msg, i);
}

json_t *mp_exec_live_update(struct mp_live *lv, const struct mp_buf *logs, int64_t now, bool final) {
        size_t start = lv->logs_sent, n = 0;

        if (!lv->on)
                return NULL;
        if (!final) {
                if (now < lv->next_ms)
                        return NULL;
                lv->next_ms = now + MP_LIVE_INTERVAL_MS;
                if (logs && logs->len > start)
                        n = utf8_whole(logs->data + start, MP_MIN(logs->len - start, (size_t) MP_LIVE_MAX_LOG_CHUNK));
        }
        if (!lv->dirty && n == 0)
                return NULL;
        json_t *u = json_pack("{s:i}", "update", 1);
        if (!u)
                return NULL;
        if (lv->dirty) {
                json_t *p = progress_json(lv);
                if (p)
                        json_object_set_new(u, "progress", p);
                lv->dirty = false;
        }
        if (n) {
                json_object_set_new(u, "logs", b64_json(logs->data + start, n));
                lv->logs_sent = start + n;
        }
        if (json_object_size(u) < 2) {
                json_decref(u);
                return NULL;
        }
        return u;
}

int64_t mp_exec_live_due(const struct mp_live *lv, const struct mp_buf *logs) {
        if (!lv->on || (!lv->dirty && (!logs || logs->len <= lv->logs_sent)))
                return -1;
        return lv->next_ms;
}

/* ================================================================ executor side */

struct call {
        bool active;
        enum mp_exec_op op;
        struct mp_limits limits;
        pid_t pid;
        int pidfd, gfd, lfd;
        struct mp_buf req;   /* frame to the guest, sent as the socket takes it */
        size_t req_off;
        struct mp_buf rep;   /* frame from the guest */
        bool rep_complete, rep_oversize;
        struct mp_buf logs;  /* capped at MP_MAX_LOG_BYTES, the rest drained and dropped */
        struct mp_live live; /* progress and logs forwarded while it runs */
        int64_t start_ms, deadline_ms;
        bool timed_out, killed, cancelled;
        struct mp_cgroup cg;
        char workdir[64];    /* no-sandbox mode: a host temp dir, removed after */
};

struct loop {
        unsigned n;
        int *chan;           /* -1 once the server closed it */
        struct call *calls;  /* one per channel */
        int sigfd;
        bool sandbox;
        const char *python;
        struct mp_seccomp *seccomp;
        struct mp_cgroup *stale; /* cgroups whose rmdir said EBUSY, retried */
        size_t n_stale;
        unsigned long seq;
        struct mp_pool *pool;    /* warm path; NULL without the sandbox */
        bool *pending;           /* channel's request is with the pool */
        int ctl;                 /* control socket: cancels; -1 once the server closed it */
        /* Per channel: the call id of its current (or last) request, and a cancel that
         * came before its request (the server sends the request and the cancel on two
         * sockets, so the cancel may be read first). */
        char (*ids)[MP_EXEC_CALL_ID_MAX + 1];
        char (*cancel_next)[MP_EXEC_CALL_ID_MAX + 1];
};

/* nftw callback for the no-sandbox working directory: remove what can be, go on. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        (void) remove(path);
        return 0;
}

static void call_release(struct loop *L, struct call *c) {
        if (c->pidfd >= 0)
                close(c->pidfd);
        if (c->gfd >= 0)
                close(c->gfd);
        if (c->lfd >= 0)
                close(c->lfd);
        mp_buf_free(&c->req);
        mp_buf_free(&c->rep);
        mp_buf_free(&c->logs);
        if (mp_cgroup_destroy(&c->cg) == -EBUSY) {
                /* Killed tasks leave their cgroup asynchronously; retry from the loop. */
                struct mp_cgroup *s = realloc(L->stale, (L->n_stale + 1) * sizeof(*s));
                if (s) {
                        L->stale = s;
                        L->stale[L->n_stale++] = c->cg;
                }
        }
        if (c->workdir[0])
                (void) nftw(c->workdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        memset(c, 0, sizeof(*c));
        c->pidfd = c->gfd = c->lfd = -1;
}

static void retry_stale(struct loop *L) {
        size_t j = 0;
        for (size_t i = 0; i < L->n_stale; i++)
                if (mp_cgroup_destroy(&L->stale[i]) < 0)
                        L->stale[j++] = L->stale[i];
        L->n_stale = j;
}

static void channel_reply(struct loop *L, unsigned i, json_t *reply) {
        _cleanup_free_ char *s = json_dumps(reply, JSON_COMPACT);
        if (!s || L->chan[i] < 0)
                return;
        if (mp_frame_write(L->chan[i], s, strlen(s)) < 0) {
                close(L->chan[i]);
                L->chan[i] = -1;
        }
}

static void reply_setup_error(struct loop *L, unsigned i, const char *msg) {
        _cleanup_json_ json_t *j = json_pack("{s:s}", "setup_error", msg);
        channel_reply(L, i, j);
}

static void pool_reply(void *ctx, unsigned ch, json_t *reply) {
        struct loop *L = ctx;
        L->pending[ch] = false;
        if (reply)
                channel_reply(L, ch, reply);
        else
                reply_setup_error(L, ch, "executor: out of memory building the reply");
}

/* A running call's live update (mp_pool_live_fn, and the cold calls'). Never blocks
 * the executor on a server thread that is slow to read (it stores each update before
 * it reads on): an update is sent only when the channel holds nothing unread; the final
 * one (a progress frame, before the reply) always. */
static void channel_live(void *ctx, unsigned ch, struct mp_live *lv, const struct mp_buf *logs, int64_t now,
                         bool final) {
        struct loop *L = ctx;
        int queued = 0;

        if (!lv->on || L->chan[ch] < 0)
                return;
        if (!final && mp_exec_live_due(lv, logs) > now)
                return;
        if (!final && ioctl(L->chan[ch], SIOCOUTQ, &queued) == 0 && queued > 0) {
                lv->next_ms = now + MP_LIVE_INTERVAL_MS;
                return;
        }
        _cleanup_json_ json_t *u = mp_exec_live_update(lv, logs, now, final);
        if (u)
                channel_reply(L, ch, u);
}

int mp_pollset_add(struct mp_pollset *ps, int fd, short events, void *tag) {
        if (ps->n == ps->cap) {
                size_t cap = ps->cap ? ps->cap * 2 : 64;
                struct pollfd *p = realloc(ps->pfd, cap * sizeof(*p));
                if (!p)
                        return -ENOMEM;
                ps->pfd = p;
                void **t = realloc(ps->tag, cap * sizeof(*t));
                if (!t)
                        return -ENOMEM;
                ps->tag = t;
                ps->cap = cap;
        }
        ps->pfd[ps->n] = (struct pollfd) { .fd = fd, .events = events };
        ps->tag[ps->n++] = tag;
        return 0;
}

/* Read one request from channel i and start its sandbox. */
static void call_start(struct loop *L, unsigned i) {
        _cleanup_free_ char *frame = NULL;
        _cleanup_json_ json_t *req = NULL, *greq = NULL;
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_close_ int gchild = -1, lchild = -1;
        struct call *c = &L->calls[i];
        struct mp_limits lim;
        int sp[2], lp[2], r;

        size_t flen = 0;
        r = mp_frame_read(L->chan[i], CHANNEL_MAX_FRAME, &frame, &flen);
        if (r < 0) {
                /* EOF: the server closed this channel (stop, or the server died). */
                close(L->chan[i]);
                L->chan[i] = -1;
                return;
        }
        /* The side that holds privilege re-checks every request it receives. The
         * inputs in it are the caller's: bounded like a result (the API already caps
         * their size and depth), before a tree is built. */
        req = mp_exec_json_load(frame, flen, MP_MAX_JSON_DEPTH + 2, MP_MAX_RESULT_ELEMENTS, NULL);
        const char *op = json_string_value(json_object_get(req, "op"));
        const char *code = json_string_value(json_object_get(req, "code"));
        const char *handler = json_string_value(json_object_get(req, "handler"));
        if (op && strcmp(op, "stats") == 0) {
                _cleanup_json_ json_t *st = json_pack("{s:o}", "stats", L->pool ? mp_pool_stats(L->pool) : json_object());
                channel_reply(L, i, st);
                return;
        }
        const char *call_id = json_string_value(json_object_get(req, "call_id"));
        snprintf(L->ids[i], sizeof(L->ids[i]), "%s", call_id && strlen(call_id) <= MP_EXEC_CALL_ID_MAX ? call_id : "");
        bool cancel_now = L->ids[i][0] && strcmp(L->ids[i], L->cancel_next[i]) == 0;
        L->cancel_next[i][0] = 0;
        if (cancel_now) {
                /* Cancelled before we read it: it never starts. */
                _cleanup_json_ json_t *cr = mp_exec_cancelled_reply();
                channel_reply(L, i, cr);
                return;
        }
        enum mp_exec_op eop = op && strcmp(op, "analyze") == 0 ? MP_EXEC_ANALYZE : MP_EXEC_RUN;
        /* The call's line in the log (--verbose), with the task and the request it serves. */
        mp_log_set_task_id(L->ids[i]);
        mp_log_set_request_id(json_string_value(json_object_get(req, "request_id")));
        mp_debug("exec: %s on channel %u (%s)", eop == MP_EXEC_ANALYZE ? "analysis" : "call", i,
                 eop == MP_EXEC_RUN && L->pool && json_is_string(json_object_get(req, "function_key"))
                         ? "warm pool" : "cold sandbox");
        mp_log_set_task_id(NULL);
        mp_log_set_request_id(NULL);
        if (!op || !code || !handler || strlen(code) > MP_MAX_CODE_BYTES ||
            mp_exec_limits_from_json(json_object_get(req, "limits"), &lim) < 0 ||
            normalize_limits(eop, &lim, &lim, &err) < 0) {
                reply_setup_error(L, i, err.message[0] ? err.message : "executor: malformed request");
                return;
        }
        if (eop == MP_EXEC_RUN && L->pool && json_is_string(json_object_get(req, "function_key"))) {
                /* Warm: the pool finds (or makes) an instance and replies later. */
                json_object_set_new(req, "limits", mp_exec_limits_json(&lim));
                L->pending[i] = true;
                mp_pool_submit(L->pool, i, TAKE_PTR(req));
                return;
        }
        if (lim.solvers && L->sandbox) {
                /* The solver environment (process creation, Landlock's execute rules)
                 * exists in warm instances only; a cold sandbox cannot start a solver. */
                reply_setup_error(L, i, "sandbox: solvers run in warm instances only (no warm pool here)");
                return;
        }

        memset(c, 0, sizeof(*c));
        c->pidfd = c->gfd = c->lfd = -1;
        c->op = eop;
        c->limits = lim;
        c->logs.cap = MP_MAX_LOG_BYTES;
        c->live.on = eop == MP_EXEC_RUN && json_is_true(json_object_get(req, "live"));
        c->start_ms = mp_mono_ms();
        c->live.next_ms = c->start_ms + MP_LIVE_INTERVAL_MS;
        c->deadline_ms = c->start_ms + (int64_t) lim.timeout_s * 1000;

        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                reply_setup_error(L, i, "executor: socketpair failed");
                return;
        }
        c->gfd = sp[0];
        gchild = sp[1];
        if (pipe2(lp, O_CLOEXEC) < 0) {
                reply_setup_error(L, i, "executor: pipe failed");
                call_release(L, c);
                return;
        }
        c->lfd = lp[0];
        lchild = lp[1];

        if (!L->sandbox) {
                snprintf(c->workdir, sizeof(c->workdir), "/tmp/mecapy-call-XXXXXX");
                char out[128];
                if (!mkdtemp(c->workdir) ||
                    (snprintf(out, sizeof(out), "%s/outputs", c->workdir), mkdir(out, 0700) < 0)) {
                        reply_setup_error(L, i, "executor: cannot create a working directory");
                        call_release(L, c);
                        return;
                }
        } else {
                char name[64];
                snprintf(name, sizeof(name), "call-%d-%lu", (int) getpid(), ++L->seq);
                if (mp_cgroup_create(name, &lim, &c->cg, &err) < 0) {
                        reply_setup_error(L, i, err.message);
                        call_release(L, c);
                        return;
                }
        }

        struct mp_spawn spawn = {
                .sandbox = L->sandbox,
                .python = L->python,
                .guest_src = mp_guest_py,
                .workdir = c->workdir,
                .limits = lim,
                .seccomp = L->seccomp,
                .cgroup = &c->cg,
                .guest_fd = gchild,
                .log_fd = lchild,
                .zygote_exe_fd = -1,
        };
        r = mp_sandbox_spawn(&spawn, &c->pid, &c->pidfd, &err);
        if (r < 0) {
                reply_setup_error(L, i, err.message);
                call_release(L, c);
                return;
        }
        c->active = true;

        /* The guest's request: what to do, plus the caps it should respect itself (we
         * re-check them on the way back). */
        greq = json_pack("{s:s,s:O,s:O,s:O?,s:O?,s:s,s:I,s:I,s:I,s:i}", "op",
                         eop == MP_EXEC_ANALYZE ? "analyze" : "run", "code", json_object_get(req, "code"),
                         "handler", json_object_get(req, "handler"), "inputs", json_object_get(req, "inputs"),
                         "policy", json_object_get(req, "policy"), "workdir",
                         L->sandbox ? MP_SANDBOX_WORKDIR : c->workdir, "max_result_bytes",
                         (json_int_t) MP_MAX_RESULT_BYTES, "max_artifacts", (json_int_t) MP_MAX_ARTIFACTS,
                         "max_artifact_bytes", (json_int_t) MP_MAX_ARTIFACT_BYTES, "memory_mb", lim.memory_mb);
        _cleanup_free_ char *gs = greq ? json_dumps(greq, JSON_COMPACT) : NULL;
        uint32_t len = gs ? htole32((uint32_t) strlen(gs)) : 0;
        if (!gs || mp_buf_append(&c->req, &len, 4) < 0 || mp_buf_append(&c->req, gs, strlen(gs)) < 0) {
                (void) kill(c->pid, SIGKILL);
                c->killed = true;
        }
        (void) fcntl(c->gfd, F_SETFL, O_NONBLOCK);
        (void) fcntl(c->lfd, F_SETFL, O_NONBLOCK);
}

static void drain_logs(struct call *c) {
        char buf[65536];
        /* Bounded per wake-up so one chatty sandbox cannot starve the others. */
        for (int k = 0; k < 64 && c->lfd >= 0; k++) {
                ssize_t n = read(c->lfd, buf, sizeof(buf));
                if (n > 0) {
                        mp_buf_append_trunc(&c->logs, buf, (size_t) n);
                        continue;
                }
                if (n == 0) {
                        close(c->lfd);
                        c->lfd = -1;
                }
                break;
        }
}

static void guest_io(struct call *c, short revents) {
        if ((revents & POLLOUT) && c->req_off < c->req.len) {
                ssize_t n = send(c->gfd, c->req.data + c->req_off, c->req.len - c->req_off, MSG_NOSIGNAL);
                if (n > 0)
                        c->req_off += (size_t) n;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                        c->req_off = c->req.len; /* guest gone; its exit tells the rest */
        }
        if (!(revents & (POLLIN | POLLHUP | POLLERR)) || c->rep_complete || c->rep_oversize)
                return;
        char buf[65536];
        for (int k = 0; k < 64; k++) {
                ssize_t n = recv(c->gfd, buf, sizeof(buf), 0);
                if (n <= 0)
                        break;
                if (mp_buf_append(&c->rep, buf, (size_t) n) < 0) {
                        c->rep_oversize = true;
                        break;
                }
                int f = mp_exec_take_frames(&c->rep, &c->live);
                if (f < 0) {
                        c->rep_oversize = true;
                        break;
                }
                if (f > 0) {
                        c->rep_complete = true;
                        break;
                }
        }
        if ((c->rep_complete || c->rep_oversize) && !c->killed) {
                /* The answer is in (or refused): nothing the process does from now on
                 * matters, and a user thread left running must not hold the call. */
                (void) kill(c->pid, SIGKILL);
                c->killed = true;
        }
}

static json_t *err_json(const char *type, const char *limit, const char *fmt, ...) _printf_(3, 4);
static json_t *err_json(const char *type, const char *limit, const char *fmt, ...) {
        char msg[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        json_t *e = json_pack("{s:s,s:s}", "type", type, "message", msg);
        if (e && limit)
                json_object_set_new(e, "limit", json_string(limit));
        return e;
}

/* Standard base64 as the guest writes it: a multiple of 4, alphabet, '=' padding only
 * at the end. */
static bool b64_plausible(const char *s, size_t n) {
        size_t pad = 0;
        if (n % 4)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                if (c == '=') {
                        pad++;
                        continue;
                }
                if (pad || !((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                             c == '+' || c == '/'))
                        return false;
        }
        return pad <= 2;
}

/* An artifact's name: its path under outputs/, folders and file name joined by '/',
 * none of them empty, "." or "..", at most MP_MAX_ARTIFACT_DEPTH folders and
 * MP_MAX_ARTIFACT_NAME_LEN bytes. The guest sends no other (it walks the folders); the
 * server never opens a path by it (an artifact is an object keyed by its index), yet a
 * name that could climb out of a folder is refused here all the same. */
static bool artifact_name_ok(const char *name, size_t len) {
        int folders = 0;

        if (len == 0 || len > MP_MAX_ARTIFACT_NAME_LEN || strlen(name) != len)
                return false;
        for (const char *s = name;; folders++) {
                const char *e = strchrnul(s, '/');
                size_t n = (size_t) (e - s);
                if (n == 0 || (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.'))
                        return false;
                if (!*e)
                        break;
                s = e + 1;
        }
        return folders <= MP_MAX_ARTIFACT_DEPTH;
}

/* Check the artifacts list the guest sent: count, names (artifact_name_ok), base64 data,
 * decoded size. NULL = bad shape (the reply is refused: a protocol error, never a file
 * silently dropped or renamed), else a new reference; *ret_over when a cap was
 * exceeded. */
static json_t *check_artifacts(json_t *a, bool *ret_over) {
        size_t idx, total = 0;
        json_t *v;

        *ret_over = false;
        if (!a)
                return json_array();
        if (!json_is_array(a))
                return NULL;
        if (json_array_size(a) > MP_MAX_ARTIFACTS) {
                *ret_over = true;
                return json_array();
        }
        json_array_foreach(a, idx, v) {
                const char *name = json_string_value(json_object_get(v, "name"));
                const char *data = json_string_value(json_object_get(v, "data"));
                size_t dlen = json_string_length(json_object_get(v, "data"));
                if (!name || !data || !artifact_name_ok(name, json_string_length(json_object_get(v, "name"))) ||
                    !b64_plausible(data, dlen))
                        return NULL;
                total += json_string_length(json_object_get(v, "data")) / 4 * 3;
                if (total > MP_MAX_ARTIFACT_BYTES + 3) {
                        *ret_over = true;
                        return json_array();
                }
        }
        return json_incref(a);
}

json_t *mp_exec_cancelled_reply(void) {
        return json_pack("{s:s,s:{s:s,s:s},s:s,s:b,s:[],s:I,s:I,s:I}", "status", "cancelled", "error", "type",
                         "Cancelled", "message", "the task was cancelled while it ran", "logs", "", "logs_truncated",
                         0, "artifacts", "wall_ms", (json_int_t) 0, "cpu_ms", (json_int_t) 0,
                         "peak_memory_kb", (json_int_t) -1);
}

static const char *signame(int sig) {
        const char *s = sigabbrev_np(sig);
        return s ? s : "?";
}

json_t *mp_exec_reply(const struct mp_outcome *o, const struct mp_buf *logs, int64_t wall, int64_t cpu_ms,
                      int64_t peak_kb) {
        _cleanup_json_ json_t *grep = NULL;
        json_t *result = NULL, *error = NULL, *artifacts = NULL;
        const char *status = "crash";
        int ws = o->ws;

        enum mp_json_shape shape = MP_JSON_INVALID;
        if (o->rep_complete)
                grep = mp_exec_reply_load(o->rep->data + 4, o->rep->len - 4, &shape);

        if (o->cancelled) {
                /* Killed on request: what it may have sent before is not its result. */
                status = "cancelled";
                error = err_json("Cancelled", NULL, "the task was cancelled while it ran");
        } else if (o->timed_out) {
                status = "timeout";
                error = err_json("TimeLimitExceeded", "timeout", "the call ran longer than its %d s limit",
                                 o->timeout_s);
        } else if (o->rep_oversize) {
                status = "limit";
                error = err_json("ResultTooLarge", "result_size", "the result is larger than the %u MB limit",
                                 MP_MAX_RESULT_BYTES >> 20);
        } else if (o->rep_complete && shape == MP_JSON_TOO_DEEP) {
                status = "limit";
                error = err_json("ResultTooComplex", "result_depth",
                                 "the result nests lists and objects more than %d levels deep", MP_MAX_RESULT_DEPTH);
        } else if (o->rep_complete && shape == MP_JSON_TOO_MANY) {
                status = "limit";
                error = err_json("ResultTooComplex", "result_elements",
                                 "the result holds more than %u values (numbers, strings, lists, objects)",
                                 MP_MAX_RESULT_ELEMENTS);
        } else if (json_is_object(grep)) {
                const char *gs = json_string_value(json_object_get(grep, "status"));
                json_t *ge = json_object_get(grep, "error");
                bool over = false;
                artifacts = check_artifacts(json_object_get(grep, "artifacts"), &over);
                if (gs && strcmp(gs, "ok") == 0 && json_object_get(grep, "result")) {
                        result = json_incref(json_object_get(grep, "result"));
                        size_t sz = json_dumpb(result, NULL, 0, JSON_COMPACT | JSON_ENCODE_ANY);
                        if (sz > MP_MAX_RESULT_BYTES) {
                                json_decref(result);
                                result = NULL;
                                status = "limit";
                                error = err_json("ResultTooLarge", "result_size",
                                                 "the result is larger than the %u MB limit", MP_MAX_RESULT_BYTES >> 20);
                        } else {
                                status = "ok";
                        }
                } else if (gs && (strcmp(gs, "error") == 0 || strcmp(gs, "limit") == 0) && json_is_object(ge) &&
                           json_is_string(json_object_get(ge, "type")) &&
                           json_is_string(json_object_get(ge, "message"))) {
                        const char *lim = json_string_value(json_object_get(ge, "limit"));
                        if (strcmp(gs, "limit") == 0 && lim &&
                            (strcmp(lim, "memory") == 0 || strcmp(lim, "result_size") == 0 ||
                             strcmp(lim, "result_depth") == 0 || strcmp(lim, "result_elements") == 0 ||
                             strcmp(lim, "artifacts") == 0))
                                status = "limit";
                        else
                                status = "error";
                        /* User text, capped as logs are (the guest caps it too, but
                         * user code can write its own frame). The type is a class name
                         * the code chose: capped like a name. */
                        error = json_pack("{s:o*,s:o*}", "type",
                                          capped_text(json_object_get(ge, "type"), MP_MAX_NAME_LEN), "message",
                                          capped_text(json_object_get(ge, "message"), MP_MAX_ERROR_MESSAGE_BYTES));
                        if (error && json_is_string(json_object_get(ge, "traceback")))
                                json_object_set_new(error, "traceback",
                                                    capped_text(json_object_get(ge, "traceback"),
                                                                MP_MAX_TRACEBACK_BYTES));
                        if (error && strcmp(status, "limit") == 0)
                                json_object_set_new(error, "limit", json_string(lim));
                } else {
                        error = err_json("ProtocolError", NULL, "the interpreter answered something unreadable");
                }
                if (!artifacts) {
                        json_decref(result);
                        result = NULL;
                        json_decref(error);
                        status = "crash";
                        error = err_json("ProtocolError", NULL, "the interpreter listed an invalid output file");
                } else if (over) {
                        json_decref(result);
                        result = NULL;
                        json_decref(error);
                        json_decref(artifacts);
                        artifacts = json_array();
                        status = "limit";
                        error = err_json("ArtifactsTooLarge", "artifacts",
                                         "outputs/ holds more than %d files or %u MB", MP_MAX_ARTIFACTS,
                                         MP_MAX_ARTIFACT_BYTES >> 20);
                }
        } else if (o->oom || (o->exited && WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL && !o->killed)) {
                /* SIGKILL we did not send: the cgroup's OOM killer (PID 1 of a pid
                 * namespace ignores every other SIGKILL from inside). */
                status = "limit";
                error = err_json("MemoryLimitExceeded", "memory", "the call used more than its %d MB memory limit",
                                 o->memory_mb);
        } else if (o->rep_complete) {
                error = err_json("ProtocolError", NULL, "the interpreter answered something unreadable");
        } else if (o->crash_note) {
                error = err_json("Crash", NULL, "%s", o->crash_note);
        } else if (WIFSIGNALED(ws)) {
                error = err_json("Crash", NULL, "the interpreter was killed by signal SIG%s%s",
                                 signame(WTERMSIG(ws)),
                                 WTERMSIG(ws) == SIGXCPU ? " (CPU time limit)" : "");
        } else {
                error = err_json("Crash", NULL, "the interpreter exited with status %d without returning a result",
                                 WEXITSTATUS(ws));
        }

        return json_pack("{s:s,s:o*,s:o*,s:o*,s:b,s:o*,s:I,s:I,s:I}", "status", status, "result", result,
                         "error", error, "logs", b64_json(logs->data ? logs->data : "", logs->len),
                         "logs_truncated", logs->truncated, "artifacts", artifacts ? artifacts : json_array(),
                         "wall_ms", (json_int_t) wall, "cpu_ms", (json_int_t) cpu_ms,
                         "peak_memory_kb", (json_int_t) peak_kb);
}

/* The sandbox's PID 1 exited: reap it, read what is left, decide the outcome, reply. */
static void call_finish(struct loop *L, unsigned i) {
        struct call *c = &L->calls[i];
        _cleanup_json_ json_t *reply = NULL;
        struct rusage ru = { 0 };
        int ws = 0;
        int64_t peak_kb = -1;
        bool oom = false;

        if (wait4(c->pid, &ws, __WALL, &ru) < 0)
                ws = 0;
        int64_t wall = mp_mono_ms() - c->start_ms;
        drain_logs(c);
        guest_io(c, POLLIN);
        mp_cgroup_usage(&c->cg, &peak_kb, &oom);
        if (peak_kb < 0)
                peak_kb = ru.ru_maxrss;
        struct mp_outcome o = {
                .rep = &c->rep, .rep_complete = c->rep_complete, .rep_oversize = c->rep_oversize,
                .timed_out = c->timed_out, .killed = c->killed, .exited = true, .oom = oom, .ws = ws,
                .cancelled = c->cancelled, .timeout_s = c->limits.timeout_s, .memory_mb = c->limits.memory_mb,
        };
        reply = mp_exec_reply(&o, &c->logs, wall,
                              ru.ru_utime.tv_sec * 1000 + ru.ru_utime.tv_usec / 1000 + ru.ru_stime.tv_sec * 1000 +
                                      ru.ru_stime.tv_usec / 1000,
                              peak_kb);
        if (!c->cancelled)
                channel_live(L, i, &c->live, NULL, mp_mono_ms(), true);
        call_release(L, c);
        if (!reply)
                reply_setup_error(L, i, "executor: out of memory building the reply");
        else
                channel_reply(L, i, reply);
}

static void kill_all(struct loop *L) {
        if (L->pool)
                mp_pool_shutdown(L->pool);
        for (unsigned i = 0; i < L->n; i++) {
                struct call *c = &L->calls[i];
                if (!c->active)
                        continue;
                (void) kill(c->pid, SIGKILL);
                (void) waitpid(c->pid, NULL, __WALL);
                call_release(L, c);
        }
        for (int k = 0; k < 50 && L->n_stale; k++) {
                retry_stale(L);
                if (L->n_stale)
                        usleep(10000);
        }
}

/* Cancel what channel ch runs for call_id (see the comment at the top). */
static void cancel_channel(struct loop *L, unsigned ch, const char *call_id) {
        struct call *c = &L->calls[ch];

        if (!c->active && !L->pending[ch]) {
                /* Nothing running: either its request is not read yet (remember the
                 * cancel for it), or the call already ended (then the id is the one we
                 * last served, and the cancel is moot). */
                if (strcmp(L->ids[ch], call_id) != 0)
                        snprintf(L->cancel_next[ch], sizeof(L->cancel_next[ch]), "%s", call_id);
                return;
        }
        if (strcmp(L->ids[ch], call_id) != 0)
                return;
        if (L->pending[ch]) {
                if (L->pool)
                        (void) mp_pool_cancel(L->pool, ch);
                return;
        }
        /* Cold or no-sandbox: kill it; call_finish replies once PID 1 is reaped, so the
         * caller hears "cancelled" only when nothing of the call runs any more. */
        c->cancelled = true;
        if (c->killed)
                return;
        /* In a sandbox the pid is PID 1 of its pid namespace: everything in it dies. Without
         * one the interpreter leads its own session: kill the whole process group. */
        if (!L->sandbox)
                (void) kill(-c->pid, SIGKILL);
        (void) kill(c->pid, SIGKILL);
        c->killed = true;
}

static void ctl_event(struct loop *L) {
        for (int k = 0; k < 64 && L->ctl >= 0; k++) {
                struct ctl_msg m;
                ssize_t n = recv(L->ctl, &m, sizeof(m), MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EINTR))
                        return;
                if (n <= 0) {
                        close(L->ctl);
                        L->ctl = -1;
                        return;
                }
                /* The server is trusted, but a short or odd message is still dropped. */
                if (n != (ssize_t) sizeof(m) || m.ch >= L->n || !memchr(m.call_id, 0, sizeof(m.call_id)) ||
                    !m.call_id[0])
                        continue;
                cancel_channel(L, m.ch, m.call_id);
        }
}

/* A poll entry of the executor's own (channel or cold call i). */
static void add_own(struct mp_pollset *ps, size_t **idx, int fd, short events, void *tag, unsigned i) {
        size_t cap = ps->cap;
        if (mp_pollset_add(ps, fd, events, tag) < 0)
                _exit(1);
        if (ps->cap != cap || !*idx) {
                size_t *ni = realloc(*idx, ps->cap * sizeof(**idx));
                if (!ni)
                        _exit(1);
                *idx = ni;
        }
        (*idx)[ps->n - 1] = i;
}

static _noreturn_ void executor_main(struct loop *L) {
        struct mp_pollset ps = { 0 };
        /* Tags of our own entries: the address of one of these markers, plus index. */
        static char tag_sig, tag_ctl, tag_chan[1], tag_exit[1], tag_guest[1], tag_log[1];
        size_t *idx = NULL;

        for (;;) {
                bool any_open = false, any_active = false;
                int64_t now = mp_mono_ms(), timeout = -1;

                ps.n = 0;
                add_own(&ps, &idx, L->sigfd, POLLIN, &tag_sig, 0);
                if (L->ctl >= 0)
                        add_own(&ps, &idx, L->ctl, POLLIN, &tag_ctl, 0);
                for (unsigned i = 0; i < L->n; i++) {
                        struct call *c = &L->calls[i];
                        if (L->chan[i] >= 0)
                                any_open = true;
                        if (!c->active) {
                                if (L->chan[i] >= 0 && !L->pending[i])
                                        add_own(&ps, &idx, L->chan[i], POLLIN, tag_chan, i);
                        } else {
                                any_active = true;
                                add_own(&ps, &idx, c->pidfd, POLLIN, tag_exit, i);
                                add_own(&ps, &idx, c->gfd, (short) (POLLIN | (c->req_off < c->req.len ? POLLOUT : 0)),
                                        tag_guest, i);
                                if (c->lfd >= 0)
                                        add_own(&ps, &idx, c->lfd, POLLIN, tag_log, i);
                                if (!c->killed) {
                                        int64_t left = MP_MAX(c->deadline_ms - now, 0);
                                        timeout = timeout < 0 ? left : MP_MIN(timeout, left);
                                }
                                int64_t due = mp_exec_live_due(&c->live, &c->logs);
                                if (due >= 0 && !c->killed) {
                                        int64_t left = MP_MAX(due - now, 0);
                                        timeout = timeout < 0 ? left : MP_MIN(timeout, left);
                                }
                        }
                }
                size_t own = ps.n;
                if (L->pool)
                        mp_pool_watch(L->pool, &ps, now, &timeout);
                if (!any_open && !any_active) {
                        kill_all(L);
                        _exit(0);
                }
                if (L->n_stale)
                        timeout = timeout < 0 ? 100 : MP_MIN(timeout, 100);

                int r = poll(ps.pfd, ps.n, (int) timeout);
                if (r < 0 && errno != EINTR)
                        _exit(1);
                for (size_t k = 0; r > 0 && k < own; k++) {
                        if (!ps.pfd[k].revents)
                                continue;
                        if (ps.tag[k] == &tag_sig) {
                                /* SIGTERM/SIGINT: mp_executor_stop. */
                                kill_all(L);
                                _exit(0);
                        }
                        unsigned i = (unsigned) idx[k];
                        struct call *c = &L->calls[i];
                        if (ps.tag[k] == tag_chan) {
                                if (!c->active && !L->pending[i] && L->chan[i] >= 0)
                                        call_start(L, i);
                        } else if (ps.tag[k] == &tag_ctl) {
                                continue; /* below, after the channels: see ctl_event */
                        } else if (ps.tag[k] == tag_guest) {
                                if (c->active)
                                        guest_io(c, ps.pfd[k].revents);
                        } else if (ps.tag[k] == tag_log) {
                                if (c->active)
                                        drain_logs(c);
                        }
                }
                /* Cancels after the requests read in this round, so that a cancel read
                 * with its own request finds the call started (not the other way). */
                for (size_t k = 0; r > 0 && k < own; k++)
                        if (ps.pfd[k].revents && ps.tag[k] == &tag_ctl)
                                ctl_event(L);
                /* Exits last, so that data that arrived with the exit is read first. */
                for (size_t k = 0; r > 0 && k < own; k++)
                        if (ps.pfd[k].revents && ps.tag[k] == tag_exit && L->calls[idx[k]].active)
                                call_finish(L, (unsigned) idx[k]);
                for (size_t k = own; r > 0 && k < ps.n; k++)
                        if (ps.pfd[k].revents)
                                mp_pool_event(L->pool, ps.tag[k], ps.pfd[k].revents);

                now = mp_mono_ms();
                for (unsigned i = 0; i < L->n; i++) {
                        struct call *c = &L->calls[i];
                        if (c->active && !c->killed && now >= c->deadline_ms) {
                                /* PID 1 of its pid namespace: killing it kills every
                                 * process in the sandbox. */
                                (void) kill(c->pid, SIGKILL);
                                c->killed = c->timed_out = true;
                        }
                        if (c->active && !c->killed)
                                channel_live(L, i, &c->live, &c->logs, now, false);
                }
                if (L->pool)
                        mp_pool_tick(L->pool, now);
                if (L->n_stale)
                        retry_stale(L);
        }
}

/* Close every inherited fd except stdio and ours: the executor must not keep the
 * server's listening sockets or database files alive. */
static void close_other_fds(const int *keep, unsigned n) {
        DIR *d = opendir("/proc/self/fd");
        if (!d)
                return;
        int self = dirfd(d);
        struct dirent *de;
        while ((de = readdir(d))) {
                long fd;
                if (mp_parse_long(de->d_name, 0, INT_MAX, &fd) < 0 || fd <= 2 || fd == self)
                        continue;
                bool k = false;
                for (unsigned i = 0; i < n && !k; i++)
                        k = keep[i] == fd;
                if (!k)
                        close((int) fd);
        }
        closedir(d);
}

/* ================================================================ server side */

int mp_executor_start(const struct mp_exec_config *cfg, struct mp_executor **ret, struct mp_error *err) {
        struct mp_seccomp *sc = NULL;
        unsigned n = cfg->channels ? cfg->channels : 1;
        const char *python = cfg->python ? cfg->python : "/usr/bin/python3";
        int r;

        if (n > 1024)
                return mp_error_set(err, EINVAL, 500, "config", "exec: at most 1024 channels");
        if (python[0] != '/' || access(python, X_OK) < 0)
                return mp_error_set(err, ENOENT, 500, "config", "exec: the interpreter %s is not an executable absolute path",
                                    python);
        if (cfg->sandbox) {
                r = mp_cgroup_setup(cfg->cgroup_root, cfg->allow_unlimited, err);
                if (r < 0)
                        return r;
                r = mp_sandbox_probe(err);
                if (r < 0)
                        return r;
                r = mp_seccomp_build(&sc, err);
                if (r < 0)
                        return r;
        } else {
                mp_warn("*** exec: running user code WITHOUT A SANDBOX (--no-sandbox): any function "
                        "can read and change everything this server can. Development only. ***");
        }

        struct mp_executor *ex = calloc(1, sizeof(*ex));
        /* child_fds[n]: the executor's end of the control socket. */
        int *child_fds = calloc(n + 1, sizeof(int));
        if (!ex || !child_fds || !(ex->fds = calloc(n, sizeof(int))) || !(ex->busy = calloc(n, sizeof(bool))) ||
            !(ex->ids = calloc(n, sizeof(char *)))) {
                r = -ENOMEM;
                goto fail;
        }
        ex->n = n;
        ex->ctl = -1;
        for (unsigned i = 0; i <= n; i++)
                child_fds[i] = -1;
        for (unsigned i = 0; i < n; i++)
                ex->fds[i] = -1;
        {
                int sp[2];
                /* SEQPACKET: one cancel per message, sent whole by any thread at once. */
                if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
                        r = mp_error_set(err, errno, 500, "sandbox", "exec: socketpair: %m");
                        goto fail;
                }
                ex->ctl = sp[0];
                child_fds[n] = sp[1];
        }
        for (unsigned i = 0; i < n; i++) {
                int sp[2];
                if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
                        r = mp_error_set(err, errno, 500, "sandbox", "exec: socketpair: %m");
                        goto fail;
                }
                ex->fds[i] = sp[0];
                child_fds[i] = sp[1];
        }

        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                r = mp_error_set(err, errno, 500, "sandbox", "exec: cannot fork the executor: %m");
                goto fail;
        }
        if (pid == 0) {
                /* The executor dies with the server; its sandboxes die with it. */
                if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != parent)
                        _exit(1);
                (void) prctl(PR_SET_NAME, "mecapy-exec", 0, 0, 0);
                close_other_fds(child_fds, n + 1);
                signal(SIGPIPE, SIG_IGN);
                sigset_t ss;
                sigemptyset(&ss);
                sigaddset(&ss, SIGTERM);
                sigaddset(&ss, SIGINT);
                sigprocmask(SIG_BLOCK, &ss, NULL);
                struct loop L = {
                        .n = n,
                        .chan = child_fds,
                        .calls = calloc(n, sizeof(struct call)),
                        .sigfd = signalfd(-1, &ss, SFD_CLOEXEC),
                        .sandbox = cfg->sandbox,
                        .python = python,
                        .seccomp = sc,
                        .pending = calloc(n, sizeof(bool)),
                        .ctl = child_fds[n],
                        .ids = calloc(n, sizeof(*L.ids)),
                        .cancel_next = calloc(n, sizeof(*L.cancel_next)),
                };
                if (!L.calls || L.sigfd < 0 || !L.pending || !L.ids || !L.cancel_next)
                        _exit(1);
                if (cfg->sandbox) {
                        /* Our own binary, executed again as each environment's zygote. */
                        int exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
                        if (exe < 0 || mp_pool_new(cfg, python, exe, pool_reply, channel_live, &L, &L.pool) < 0)
                                mp_warn("exec: no warm pool (cannot open our own binary); every call runs cold");
                }
                for (unsigned i = 0; i < n; i++)
                        L.calls[i].pidfd = L.calls[i].gfd = L.calls[i].lfd = -1;
                executor_main(&L);
        }
        for (unsigned i = 0; i <= n; i++)
                close(child_fds[i]);
        free(child_fds);
        mp_seccomp_free(sc);
        ex->pid = pid;
        pthread_mutex_init(&ex->lock, NULL);
        pthread_cond_init(&ex->cond, NULL);
        *ret = ex;
        return 0;

fail:
        if (r == -ENOMEM)
                mp_error_set(err, ENOMEM, 500, "sandbox", "exec: out of memory");
        for (unsigned i = 0; ex && ex->fds && i < n; i++) {
                if (ex->fds[i] >= 0)
                        close(ex->fds[i]);
                if (child_fds && child_fds[i] >= 0)
                        close(child_fds[i]);
        }
        if (child_fds && child_fds[n] >= 0)
                close(child_fds[n]);
        if (ex) {
                if (ex->ctl >= 0)
                        close(ex->ctl);
                free(ex->fds);
                free(ex->busy);
                free(ex->ids);
        }
        free(ex);
        free(child_fds);
        mp_seccomp_free(sc);
        return r;
}

static int send_frame(int fd, const char *p, size_t n) {
        /* send(MSG_NOSIGNAL): a dead executor must be an error here, not a SIGPIPE that
         * takes the whole server down. */
        uint32_t len = htole32((uint32_t) n);
        char hdr[4];
        memcpy(hdr, &len, 4);
        for (int part = 0; part < 2; part++) {
                const char *c = part ? p : hdr;
                size_t left = part ? n : 4;
                while (left) {
                        ssize_t w = send(fd, c, left, MSG_NOSIGNAL);
                        if (w < 0) {
                                if (errno == EINTR)
                                        continue;
                                return -errno;
                        }
                        c += w;
                        left -= (size_t) w;
                }
        }
        return 0;
}

static int valid_identifier(const char *s) {
        if (!s || !*s || strlen(s) > MP_MAX_NAME_LEN || (*s >= '0' && *s <= '9'))
                return 0;
        for (; *s; s++)
                if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_'))
                        return 0;
        return 1;
}

static enum mp_exec_status status_from(const char *s) {
        if (!s)
                return MP_EXEC_CRASH;
        if (strcmp(s, "ok") == 0)
                return MP_EXEC_OK;
        if (strcmp(s, "error") == 0)
                return MP_EXEC_ERROR;
        if (strcmp(s, "timeout") == 0)
                return MP_EXEC_TIMEOUT;
        if (strcmp(s, "limit") == 0)
                return MP_EXEC_LIMIT;
        if (strcmp(s, "cancelled") == 0)
                return MP_EXEC_CANCELLED;
        return MP_EXEC_CRASH;
}

static int parse_reply(const char *frame, size_t len, struct mp_exec_result *ret, struct mp_error *err) {
        /* JSON_ALLOW_NUL: "\u0000" is valid JSON a function may return. */
        _cleanup_json_ json_t *j = json_loadb(frame, len, JSON_ALLOW_NUL, NULL);
        struct mp_exec_result r = { 0 };
        json_t *v;
        size_t idx;

        if (!json_is_object(j))
                return mp_error_set(err, EPROTO, 500, "sandbox", "exec: unreadable reply from the executor");
        const char *setup = json_string_value(json_object_get(j, "setup_error"));
        if (setup)
                return mp_error_set(err, EIO, 503, "sandbox", "%s", setup);

        r.status = status_from(json_string_value(json_object_get(j, "status")));
        r.result = json_incref(json_object_get(j, "result"));
        r.error = json_incref(json_object_get(j, "error"));
        if (r.status == MP_EXEC_OK && !r.result)
                r.result = json_null();
        r.logs_truncated = json_is_true(json_object_get(j, "logs_truncated"));
        r.wall_ms = json_integer_value(json_object_get(j, "wall_ms"));
        r.cpu_ms = json_integer_value(json_object_get(j, "cpu_ms"));
        r.peak_memory_kb = json_integer_value(json_object_get(j, "peak_memory_kb"));
        const char *logs = json_string_value(json_object_get(j, "logs"));
        if (!logs || b64_decode(logs, strlen(logs), MP_MAX_LOG_BYTES, &r.logs, &r.logs_len) < 0) {
                r.logs = strdup("");
                r.logs_len = 0;
        }
        json_t *arts = json_object_get(j, "artifacts");
        size_t na = json_array_size(arts);
        if (na) {
                r.artifacts = calloc(na, sizeof(*r.artifacts));
                if (!r.artifacts) {
                        mp_exec_result_clear(&r);
                        return -ENOMEM;
                }
        }
        json_array_foreach(arts, idx, v) {
                const char *name = json_string_value(json_object_get(v, "name"));
                const char *data = json_string_value(json_object_get(v, "data"));
                struct mp_exec_artifact *a = &r.artifacts[r.n_artifacts];
                if (!name || !data)
                        continue;
                if (b64_decode(data, strlen(data), MP_MAX_ARTIFACT_BYTES, &a->data, &a->size) < 0)
                        continue;
                a->name = strdup(name);
                if (!a->name) {
                        free(a->data);
                        continue;
                }
                r.n_artifacts++;
        }
        *ret = r;
        return 0;
}

/* An update frame (mp_exec_live_update) for the request's callback. The executor is
 * trusted, but what it forwards came from user code: the shape is checked again. */
#define UPDATE_PREFIX "{\"update\":"
static void deliver_update(const struct mp_exec_request *req, const char *frame, size_t len) {
        _cleanup_json_ json_t *j = json_loadb(frame, len, JSON_ALLOW_NUL, NULL);
        _cleanup_free_ char *logs = NULL;
        json_t *p = json_object_get(j, "progress");
        const char *b64 = json_string_value(json_object_get(j, "logs"));
        struct mp_exec_live live = { 0 };

        if (!req->on_live || !json_is_object(j))
                return;
        if (json_is_number(json_object_get(p, "fraction")) && json_is_string(json_object_get(p, "message"))) {
                live.has_progress = true;
                live.fraction = json_number_value(json_object_get(p, "fraction"));
                live.message = json_string_value(json_object_get(p, "message"));
        }
        if (b64 && b64_decode(b64, strlen(b64), MP_LIVE_MAX_LOG_CHUNK, &logs, &live.logs_len) == 0)
                live.logs = logs;
        if (live.has_progress || live.logs_len)
                req->on_live(req->live_ctx, &live);
}

int mp_executor_run(struct mp_executor *ex, const struct mp_exec_request *req, struct mp_exec_result *ret,
                    struct mp_error *err) {
        _cleanup_json_ json_t *j = NULL;
        _cleanup_free_ char *s = NULL, *reply = NULL;
        struct mp_limits lim;
        size_t rlen = 0;
        unsigned ch = 0;
        int r;

        if (!ex)
                return mp_error_set(err, EINVAL, 500, "sandbox", "exec: no executor");
        if (!req->code || strlen(req->code) > MP_MAX_CODE_BYTES)
                return mp_error_set(err, E2BIG, 422, "validation", "the code is missing or larger than %u KB",
                                    MP_MAX_CODE_BYTES >> 10);
        if (!valid_identifier(req->handler))
                return mp_error_set(err, EINVAL, 422, "validation", "handler must be a Python identifier");
        if (req->op == MP_EXEC_RUN && req->inputs && !json_is_object(req->inputs))
                return mp_error_set(err, EINVAL, 422, "validation", "inputs must be a JSON object");
        r = normalize_limits(req->op, &req->limits, &lim, err);
        if (r < 0)
                return r;
        if (req->inputs && json_dumpb(req->inputs, NULL, 0, JSON_COMPACT) > MP_MAX_INPUTS_BYTES)
                return mp_error_set(err, E2BIG, 422, "validation", "the inputs are larger than %u KB",
                                    MP_MAX_INPUTS_BYTES >> 10);
        json_t *inputs = NULL;
        if (req->op == MP_EXEC_RUN)
                inputs = req->inputs ? json_incref(req->inputs) : json_object();
        j = json_pack("{s:s,s:s,s:s,s:o?,s:O?,s:o}", "op", req->op == MP_EXEC_ANALYZE ? "analyze" : "run", "code",
                      req->code, "handler", req->handler, "inputs", inputs, "policy", req->policy, "limits",
                      mp_exec_limits_json(&lim));
        if (req->call_id && (!*req->call_id || strlen(req->call_id) > MP_EXEC_CALL_ID_MAX))
                return mp_error_set(err, EINVAL, 422, "validation", "exec: the call id is empty or too long");
        if (j && req->call_id)
                json_object_set_new(j, "call_id", json_string(req->call_id));
        if (j && req->request_id && mp_log_id_valid(req->request_id))
                json_object_set_new(j, "request_id", json_string(req->request_id));
        if (j && req->op == MP_EXEC_RUN && req->on_live)
                json_object_set_new(j, "live", json_true());
        if (j && req->op == MP_EXEC_RUN && req->function_key) {
                if (strlen(req->function_key) > 256 || (req->tenant && strlen(req->tenant) > 256) ||
                    (req->env_key && strlen(req->env_key) > 128))
                        return mp_error_set(err, EINVAL, 422, "validation", "exec: function, tenant or environment key too long");
                json_object_set_new(j, "function_key", json_string(req->function_key));
                json_object_set_new(j, "tenant", json_string(req->tenant ? req->tenant : ""));
                json_object_set_new(j, "env", json_string(req->env_key ? req->env_key : "base"));
                json_object_set_new(j, "per_call", json_boolean(req->per_call));
        }
        if (!j || !(s = json_dumps(j, JSON_COMPACT)))
                return mp_error_set(err, EINVAL, 422, "validation", "exec: the request is not valid JSON (UTF-8?)");

        _cleanup_free_ char *id = req->call_id ? strdup(req->call_id) : NULL;
        if (req->call_id && !id)
                return mp_error_set(err, ENOMEM, 500, "internal", "exec: out of memory");
        /* Waiting for a channel, a call can be cancelled too (mp_executor_cancel finds
         * it in the list and wakes us). */
        struct chan_waiter me = { .call_id = id };
        pthread_mutex_lock(&ex->lock);
        me.next = ex->waiters;
        ex->waiters = &me;
        for (;;) {
                if (ex->dead || me.cancelled)
                        break;
                for (ch = 0; ch < ex->n && ex->busy[ch]; ch++)
                        ;
                if (ch < ex->n)
                        break;
                pthread_cond_wait(&ex->cond, &ex->lock);
        }
        for (struct chan_waiter **w = &ex->waiters; *w; w = &(*w)->next)
                if (*w == &me) {
                        *w = me.next;
                        break;
                }
        if (ex->dead) {
                pthread_mutex_unlock(&ex->lock);
                return mp_error_set(err, EPIPE, 503, "sandbox", "exec: the executor process is gone");
        }
        if (me.cancelled) {
                pthread_mutex_unlock(&ex->lock);
                _cleanup_json_ json_t *cj = mp_exec_cancelled_reply();
                _cleanup_free_ char *cr = cj ? json_dumps(cj, JSON_COMPACT) : NULL;
                return cr ? parse_reply(cr, strlen(cr), ret, err) : mp_error_set(err, ENOMEM, 500, "internal", "exec: out of memory");
        }
        ex->busy[ch] = true;
        ex->ids[ch] = TAKE_PTR(id);
        pthread_mutex_unlock(&ex->lock);

        r = send_frame(ex->fds[ch], s, strlen(s));
        while (r >= 0) {
                r = mp_frame_read(ex->fds[ch], CHANNEL_MAX_FRAME, &reply, &rlen);
                if (r < 0 || rlen < sizeof(UPDATE_PREFIX) - 1 ||
                    memcmp(reply, UPDATE_PREFIX, sizeof(UPDATE_PREFIX) - 1) != 0)
                        break;
                deliver_update(req, reply, rlen);
                free(TAKE_PTR(reply));
        }

        pthread_mutex_lock(&ex->lock);
        ex->busy[ch] = false;
        free(ex->ids[ch]);
        ex->ids[ch] = NULL;
        if (r < 0)
                ex->dead = true; /* a channel out of step is as good as gone */
        pthread_cond_broadcast(&ex->cond);
        pthread_mutex_unlock(&ex->lock);
        if (r < 0)
                return mp_error_set(err, -r, 503, "sandbox", "exec: the executor process is gone (%s)", strerror(-r));
        return parse_reply(reply, rlen, ret, err);
}

int mp_executor_cancel(struct mp_executor *ex, const char *call_id) {
        struct ctl_msg m = { 0 };
        bool found = false;

        if (!ex || !call_id || !*call_id || strlen(call_id) > MP_EXEC_CALL_ID_MAX)
                return -EINVAL;
        pthread_mutex_lock(&ex->lock);
        if (ex->dead) {
                pthread_mutex_unlock(&ex->lock);
                return -EPIPE;
        }
        for (struct chan_waiter *w = ex->waiters; w; w = w->next)
                if (w->call_id && strcmp(w->call_id, call_id) == 0) {
                        w->cancelled = true;
                        pthread_cond_broadcast(&ex->cond);
                        found = true;
                }
        for (unsigned i = 0; i < ex->n && !found; i++)
                if (ex->ids[i] && strcmp(ex->ids[i], call_id) == 0) {
                        m.ch = i;
                        found = true;
                        snprintf(m.call_id, sizeof(m.call_id), "%s", call_id);
                }
        pthread_mutex_unlock(&ex->lock);
        if (!m.call_id[0])
                return 0; /* waiting (woken above), unknown or finished */
        /* Outside the lock: the channel may be released meanwhile, and the executor's
         * id check makes that harmless. A SEQPACKET message is sent whole, so threads
         * need no lock of their own here. */
        for (;;) {
                ssize_t w = send(ex->ctl, &m, sizeof(m), MSG_NOSIGNAL);
                if (w == (ssize_t) sizeof(m))
                        return 0;
                if (w < 0 && errno == EINTR)
                        continue;
                return w < 0 ? -errno : -EIO;
        }
}

int mp_executor_stats(struct mp_executor *ex, json_t **ret) {
        _cleanup_free_ char *reply = NULL;
        size_t rlen = 0;
        unsigned ch;
        int r;

        if (!ex)
                return -EINVAL;
        pthread_mutex_lock(&ex->lock);
        for (;;) {
                if (ex->dead) {
                        pthread_mutex_unlock(&ex->lock);
                        return -EPIPE;
                }
                for (ch = 0; ch < ex->n && ex->busy[ch]; ch++)
                        ;
                if (ch < ex->n)
                        break;
                pthread_cond_wait(&ex->cond, &ex->lock);
        }
        ex->busy[ch] = true;
        pthread_mutex_unlock(&ex->lock);
        static const char q[] = "{\"op\":\"stats\"}";
        r = send_frame(ex->fds[ch], q, sizeof(q) - 1);
        if (r >= 0)
                r = mp_frame_read(ex->fds[ch], CHANNEL_MAX_FRAME, &reply, &rlen);
        pthread_mutex_lock(&ex->lock);
        ex->busy[ch] = false;
        if (r < 0)
                ex->dead = true;
        pthread_cond_broadcast(&ex->cond);
        pthread_mutex_unlock(&ex->lock);
        if (r < 0)
                return r;
        json_t *j = json_loadb(reply, rlen, 0, NULL);
        json_t *st = json_incref(json_object_get(j, "stats"));
        json_decref(j);
        if (!json_is_object(st)) {
                json_decref(st);
                return -EPROTO;
        }
        *ret = st;
        return 0;
}

void mp_exec_result_clear(struct mp_exec_result *r) {
        if (!r)
                return;
        if (r->result)
                json_decref(r->result);
        if (r->error)
                json_decref(r->error);
        free(r->logs);
        for (size_t i = 0; i < r->n_artifacts; i++) {
                free(r->artifacts[i].name);
                free(r->artifacts[i].data);
        }
        free(r->artifacts);
        memset(r, 0, sizeof(*r));
}

void mp_executor_stop(struct mp_executor *ex) {
        if (!ex)
                return;
        /* SIGTERM: the executor kills its sandboxes, removes their cgroups and exits. */
        (void) kill(ex->pid, SIGTERM);
        int ws;
        pid_t w = 0;
        for (int k = 0; k < 500 && (w = waitpid(ex->pid, &ws, WNOHANG)) == 0; k++)
                usleep(10000);
        if (w == 0) {
                (void) kill(ex->pid, SIGKILL);
                (void) waitpid(ex->pid, &ws, 0);
        }
        for (unsigned i = 0; i < ex->n; i++) {
                close(ex->fds[i]);
                free(ex->ids[i]);
        }
        close(ex->ctl);
        pthread_mutex_destroy(&ex->lock);
        pthread_cond_destroy(&ex->cond);
        free(ex->fds);
        free(ex->busy);
        free(ex->ids);
        free(ex);
}
