/* The shared queue: Redis, for workers on many machines.
 *
 * Keys (all under one database of one Redis):
 *   mecapy:jobs, or mecapy:jobs:{n} with ?shards=N   the queue: task ids, LPUSH'ed, taken
 *                                                    from the right (oldest first)
 *   mecapy:processing:{worker}   the jobs a worker process holds; BLMOVE moves a job here
 *                                atomically, so a job is always in exactly one list
 *   mecapy:worker:{worker}       the worker's record (hash), expiring after worker_ttl
 *                                unless its heartbeat renews it: the lease of its jobs
 *   mecapy:workers               set of the workers that registered (the reaper's list)
 *   mecapy:reaper                SET NX PX lock: one reaper at a time, across processes
 *   mecapy:alive                 a marker: when it is missing, Redis lost its data
 *   mecapy:delayed               sorted set: jobs a worker released (see release),
 *                                scored by when they may be taken again; moved back to
 *                                their shard by promote
 *   task:{id}                    live status (status, worker, proc, hash, updated_at);
 *                                informational and for de-duplication, the store is
 *                                the truth
 *   result:{id}                  the ended task's row as JSON, for an hour
 *   channel mecapy:done          a task id per ended task
 *   channel mecapy:cancel        a task id per task cancelled while queued or running:
 *                                the worker running it kills its call
 *
 * Delivery is at-least-once and duplicates are expected: the store has every job (the
 * jobs table that task_create fills), and a job the queue may have lost is pushed again
 * from there (see sweep). A claim confirms itself against task:{id} before it is handed
 * out, so a duplicate of a task that a live worker runs, or that ended, is dropped; the
 * store's state machine (task_start, task_finish move a task once) covers what is left.
 * That is also why every command may be repeated after a reconnection. */
#include <ctype.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/config.h"
#include "base/log.h"
#include "queue/queue-internal.h"
#include "store/store.h"

#define POOL_MAX 64                  /* idle connections kept */
#define CONNECT_TIMEOUT_MS 2000
#define IO_TIMEOUT_MS 10000          /* longer than any blocking command we send */
#define BACKOFF_MAX_MS 2000
#define CLAIM_SLICE_MS 1000          /* longest block, so shutdown is seen quickly */
#define STEAL_SLICE_MS 250           /* block on the home shard this long before stealing */
#define MAX_SHARDS 256
#define DEFAULT_TTL_S 10
#define TASK_TTL_S 86400             /* task:{id} of a live task */
#define RESULT_TTL_S 3600            /* result:{id} and task:{id} of an ended task */
#define RESULT_CACHE_MAX (256 * 1024) /* larger rows are not cached */
#define SWEEP_EVERY_MS 5000
#define SWEEP_BATCH 1000             /* store rows looked at per sweep */
#define SWEEP_RECHECK_MS 30000       /* a row is looked at again this much later */
#define REQUEUE_AGE_MS 2000          /* a queued task younger than this may be being pushed */
#define MAX_WORKERS_LISTED 1024
#define FIELD_MAX 256                /* longest worker record field we read back */
#define SWEEPER_ID "mecapy-queue-sweep"
#define PROMOTE_EVERY_MS 250         /* a process looks for due released jobs this often */
#define PROMOTE_BATCH 100
#define STR_(x) #x
#define MP_STRINGIFY(x) STR_(x)

struct redis_queue {
        struct mp_queue_base base;
        struct mp_store *store;
        char host[256];
        int port, db, shards;
        int64_t ttl_ms;
        char where[300]; /* "redis://host:port/db" for messages */
        /* AUTH on every connection when the URL has user info (redis://[user]:password@):
         * user empty for the default user (requirepass), else an ACL user (Redis 6+). */
        bool auth;
        char user[128], password[256];

        pthread_mutex_t lock; /* pool, backoff, registration */
        redisContext *idle[POOL_MAX];
        int n_idle;
        int64_t retry_at, backoff_ms;
        atomic_bool closing;

        bool registered;
        struct mp_queue_worker me;
        int home;
        _Atomic int64_t promote_at; /* next look at mecapy:delayed (monotonic ms) */
        int64_t started_at;

        /* Heartbeat, reaper and sweep: one thread per process that works or listens. */
        pthread_t maint;
        bool maint_running;
        pthread_mutex_t maint_lock;
        pthread_cond_t maint_cond;
        bool maint_stop;
        int64_t full_sweep_at; /* Redis lost its data: sweep everything then (0 = no) */

        /* Completion listener. */
        pthread_mutex_t listen_lock;
        mp_queue_done_fn done_cb;
        void *done_userdata;
        /* Cancel listener: the same subscriber thread and connection. */
        mp_queue_cancel_fn cancel_cb;
        void *cancel_userdata;
        pthread_t sub;
        bool sub_running;
        atomic_bool sub_stop;
};

/* Free a reply we do not read (NULL is fine). */
static void reply_free(redisReply *r) {
        if (r)
                freeReplyObject(r);
}

static void reply_freep(redisReply **r) {
        reply_free(*r);
}
#define _cleanup_reply_ _cleanup_(reply_freep)

static void sleep_ms(int64_t ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000 };
        nanosleep(&ts, NULL);
}

/* ---- connections ---- */

static int unreachable(struct redis_queue *q, const char *why, struct mp_error *err) {
        return mp_error_set(err, EIO, 503, "unavailable", "the Redis queue at %s is unreachable: %s",
                            q->where, why);
}

/* AUTH on a new connection when the URL gave a password: 0, or -1 with why filled
 * (Redis's own refusal, "WRONGPASS ..." or "NOAUTH ..."). */
static int authenticate(struct redis_queue *q, redisContext *c, char *why, size_t size) {
        redisReply *r;

        if (!q->auth)
                return 0;
        r = q->user[0] ? redisCommand(c, "AUTH %s %s", q->user, q->password)
                       : redisCommand(c, "AUTH %s", q->password);
        if (r && r->type != REDIS_REPLY_ERROR) {
                freeReplyObject(r);
                return 0;
        }
        snprintf(why, size, "authentication refused: %s", r && r->str ? r->str : c->errstr);
        if (r)
                freeReplyObject(r);
        return -1;
}

/* A new connection, or NULL with err set. While Redis is down, attempts are spaced out
 * (a shared backoff) so that N threads do not hammer it; callers back off too. */
static redisContext *conn_new(struct redis_queue *q, struct mp_error *err) {
        struct timeval tv = { CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000 };
        struct timeval io = { IO_TIMEOUT_MS / 1000, 0 };
        redisContext *c;
        int64_t now = mp_mono_ms();

        pthread_mutex_lock(&q->lock);
        bool wait = now < q->retry_at;
        pthread_mutex_unlock(&q->lock);
        if (wait) {
                unreachable(q, "still down, retrying shortly", err);
                return NULL;
        }
        c = redisConnectWithTimeout(q->host, q->port, tv);
        if (c && !c->err && redisSetTimeout(c, io) == REDIS_OK) {
                char why[256];
                redisEnableKeepAlive(c);
                if (authenticate(q, c, why, sizeof(why)) < 0) {
                        unreachable(q, why, err);
                        redisFree(c);
                        return NULL;
                }
                if (q->db > 0) {
                        _cleanup_reply_ redisReply *r = redisCommand(c, "SELECT %d", q->db);
                        if (!r || r->type == REDIS_REPLY_ERROR) {
                                unreachable(q, r ? r->str : "SELECT failed", err);
                                redisFree(c);
                                return NULL;
                        }
                }
                pthread_mutex_lock(&q->lock);
                q->backoff_ms = 0;
                q->retry_at = 0;
                pthread_mutex_unlock(&q->lock);
                return c;
        }
        unreachable(q, c && c->errstr[0] ? c->errstr : "cannot connect", err);
        if (c)
                redisFree(c);
        pthread_mutex_lock(&q->lock);
        q->backoff_ms = q->backoff_ms ? MP_MIN(q->backoff_ms * 2, BACKOFF_MAX_MS) : 100;
        q->retry_at = mp_mono_ms() + q->backoff_ms;
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

static redisContext *conn_get(struct redis_queue *q, struct mp_error *err) {
        redisContext *c = NULL;
        pthread_mutex_lock(&q->lock);
        if (q->n_idle > 0)
                c = q->idle[--q->n_idle];
        pthread_mutex_unlock(&q->lock);
        return c ? c : conn_new(q, err);
}

static void conn_put(struct redis_queue *q, redisContext *c) {
        if (!c)
                return;
        if (!c->err) {
                pthread_mutex_lock(&q->lock);
                if (q->n_idle < POOL_MAX) {
                        q->idle[q->n_idle++] = c;
                        c = NULL;
                }
                pthread_mutex_unlock(&q->lock);
        }
        if (c)
                redisFree(c);
}

/* Run one command; a broken connection is dropped and the command tried once more on a
 * new one (Redis restarted, or an idle connection was closed). NULL with err set when
 * Redis cannot be reached or answers an error. */
static redisReply *cmdv(struct redis_queue *q, struct mp_error *err, const char *fmt, va_list ap) {
        for (int attempt = 0; attempt < 2; attempt++) {
                redisContext *c = conn_get(q, err);
                redisReply *r;
                va_list aq;

                if (!c)
                        return NULL;
                va_copy(aq, ap);
                r = redisvCommand(c, fmt, aq);
                va_end(aq);
                if (!r) {
                        if (attempt == 1)
                                unreachable(q, c->errstr[0] ? c->errstr : "connection lost", err);
                        redisFree(c);
                        continue;
                }
                conn_put(q, c);
                if (r->type == REDIS_REPLY_ERROR) {
                        mp_error_set(err, EIO, 500, "queue", "Redis at %s refused a command: %.200s",
                                     q->where, r->str ? r->str : "");
                        freeReplyObject(r);
                        return NULL;
                }
                return r;
        }
        return NULL;
}

static redisReply *cmd(struct redis_queue *q, struct mp_error *err, const char *fmt, ...) {
        va_list ap;
        va_start(ap, fmt);
        redisReply *r = cmdv(q, err, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- keys ---- */

static void jobs_key(struct redis_queue *q, int shard, char *buf, size_t size) {
        if (q->shards <= 1)
                snprintf(buf, size, "mecapy:jobs");
        else
                snprintf(buf, size, "mecapy:jobs:%d", shard);
}

/* A task id that came back from Redis: a UUID, or garbage we will not pass on. */
static bool reply_is_id(const redisReply *r) {
        return r && r->type == REDIS_REPLY_STRING && r->len == MP_ID_LEN && mp_id_valid(r->str);
}

/* ---- scripts: each runs atomically in Redis ---- */

/* KEYS task:{id}, jobs key. ARGV id, shard hash, now, force. A task that ended is not
 * pushed again; a live one keeps its status unless forced (a requeue). */
static const char LUA_PUSH[] =
        "local st = redis.call('HGET', KEYS[1], 'status')\n"
        "if st and st ~= 'queued' and st ~= 'running' then return 0 end\n"
        "if not st or ARGV[4] == '1' then\n"
        "  redis.call('HSET', KEYS[1], 'status', 'queued', 'worker', '', 'proc', '')\n"
        "end\n"
        "redis.call('HSET', KEYS[1], 'hash', ARGV[2], 'updated_at', ARGV[3])\n"
        "redis.call('EXPIRE', KEYS[1], " MP_STRINGIFY(TASK_TTL_S) ")\n"
        "redis.call('LPUSH', KEYS[2], ARGV[1])\n"
        "return 1\n";

/* KEYS task:{id}, processing list. ARGV id, worker (thread), proc, now. 1: the claim
 * stands; 0: a duplicate (the task ended, or a live worker runs it), dropped. */
static const char LUA_CONFIRM[] =
        "local st = redis.call('HGET', KEYS[1], 'status')\n"
        "if st and st ~= 'queued' and st ~= 'running' then\n"
        "  redis.call('LREM', KEYS[2], 1, ARGV[1]) return 0 end\n"
        "if st == 'running' then\n"
        "  local w = redis.call('HGET', KEYS[1], 'worker')\n"
        "  local p = redis.call('HGET', KEYS[1], 'proc')\n"
        "  if w and w ~= '' and w ~= ARGV[2] and p and p ~= '' and\n"
        "     redis.call('EXISTS', 'mecapy:worker:' .. p) == 1 then\n"
        "    redis.call('LREM', KEYS[2], 1, ARGV[1]) return 0 end\n"
        "end\n"
        "redis.call('HSET', KEYS[1], 'status', 'running', 'worker', ARGV[2], 'proc', ARGV[3],"
        " 'updated_at', ARGV[4])\n"
        "redis.call('EXPIRE', KEYS[1], " MP_STRINGIFY(TASK_TTL_S) ")\n"
        "return 1\n";

/* Inside a loop over job ids (`id`, with `shards` set): when the job's task is still
 * live, opens an `if` block with `k` its task key and `dest` the front of its shard.
 * Shared by the scripts that put jobs back. */
#define LUA_LIVE_JOB_DEST \
        "  local k = 'task:' .. id\n" \
        "  local st = redis.call('HGET', k, 'status')\n" \
        "  if not st or st == 'queued' or st == 'running' then\n" \
        "    local dest = 'mecapy:jobs'\n" \
        "    if shards > 1 then\n" \
        "      local h = tonumber(redis.call('HGET', k, 'hash') or '0') or 0\n" \
        "      dest = dest .. ':' .. math.floor(h % shards)\n" \
        "    end\n"

/* KEYS processing list. ARGV shards, now. Every job in the list goes back to the front
 * of its shard (it waited longest); jobs of ended tasks are dropped. Returns how many
 * went back. */
static const char LUA_REQUEUE_LIST[] =
        "local n = 0\n"
        "local shards = tonumber(ARGV[1])\n"
        "while true do\n"
        "  local id = redis.call('RPOP', KEYS[1])\n"
        "  if not id then break end\n"
        LUA_LIVE_JOB_DEST
        "    redis.call('HSET', k, 'status', 'queued', 'worker', '', 'proc', '', 'updated_at', ARGV[2])\n"
        "    redis.call('RPUSH', dest, id)\n"
        "    n = n + 1\n"
        "  end\n"
        "end\n"
        "return n\n";

/* KEYS processing list, task:{id}, mecapy:delayed. ARGV id, now, due. The job leaves
 * the processing list for the delayed set (unless its task ended); task:{id} says
 * queued, so that the next claim is not taken for a duplicate. 1: released, 0: the
 * list did not hold it. */
static const char LUA_RELEASE[] =
        "if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end\n"
        "local st = redis.call('HGET', KEYS[2], 'status')\n"
        "if st and st ~= 'queued' and st ~= 'running' then return 1 end\n"
        "redis.call('HSET', KEYS[2], 'status', 'queued', 'worker', '', 'proc', '', 'updated_at', ARGV[2])\n"
        "redis.call('EXPIRE', KEYS[2], " MP_STRINGIFY(TASK_TTL_S) ")\n"
        "redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])\n"
        "return 1\n";

/* KEYS mecapy:delayed. ARGV now, shards. Released jobs whose delay is over go back to
 * the front of their shard (jobs of ended tasks are dropped). Returns how many. */
static const char LUA_PROMOTE[] =
        "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, "
        MP_STRINGIFY(PROMOTE_BATCH) ")\n"
        "local shards = tonumber(ARGV[2])\n"
        "local n = 0\n"
        "for _, id in ipairs(ids) do\n"
        "  redis.call('ZREM', KEYS[1], id)\n"
        LUA_LIVE_JOB_DEST
        "    redis.call('RPUSH', dest, id)\n"
        "    n = n + 1\n"
        "  end\n"
        "end\n"
        "return n\n";

/* KEYS result:{id}, task:{id}. ARGV id, status, now, row JSON ("" = do not cache). */
static const char LUA_DONE[] =
        "if ARGV[4] ~= '' then redis.call('SET', KEYS[1], ARGV[4], 'EX', " MP_STRINGIFY(RESULT_TTL_S) ") end\n"
        "redis.call('HSET', KEYS[2], 'status', ARGV[2], 'updated_at', ARGV[3])\n"
        "redis.call('EXPIRE', KEYS[2], " MP_STRINGIFY(RESULT_TTL_S) ")\n"
        "redis.call('PUBLISH', 'mecapy:done', ARGV[1])\n"
        "return 1\n";

/* KEYS lock. ARGV token. Release the reaper lock only if it is still ours. */
static const char LUA_UNLOCK[] =
        "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
        "return 0\n";

/* ---- open, close ---- */

/* in[0..n) with %XX escapes decoded into out (NUL-terminated, no NUL inside): 0, or
 * -EINVAL when it does not fit or an escape is bad. */
static int percent_decode(const char *in, size_t n, char *out, size_t size) {
        size_t o = 0;

        for (size_t i = 0; i < n; i++) {
                char ch = in[i];
                if (ch == '%') {
                        char hex[3] = { 0 };
                        long v;
                        if (i + 2 >= n || !isxdigit((unsigned char) in[i + 1]) ||
                            !isxdigit((unsigned char) in[i + 2]))
                                return -EINVAL;
                        hex[0] = in[i + 1];
                        hex[1] = in[i + 2];
                        v = strtol(hex, NULL, 16);
                        if (v == 0)
                                return -EINVAL;
                        ch = (char) v;
                        i += 2;
                }
                if (o + 1 >= size)
                        return -EINVAL;
                out[o++] = ch;
        }
        out[o] = 0;
        return 0;
}

static int parse_url(struct redis_queue *q, const char *url, struct mp_error *err) {
        const char *p = url + strlen("redis://"), *e;
        char num[32];
        long v;
        char shown[512]; /* the URL as messages show it: no password */

        mp_config_redact_url(url, shown, sizeof(shown));

        if (!strncmp(url, "rediss://", 9))
                return mp_error_set(err, EINVAL, 400, "config",
                                    "--queue: rediss:// (TLS) is not supported: the hiredis of this build "
                                    "(Debian's 0.14) has no TLS; reach Redis over a private network or a "
                                    "TLS tunnel (stunnel, spiped) and give its local end as redis://");
        if (strncmp(url, "redis://", 8))
                return mp_error_set(err, EINVAL, 400, "config", "--queue: expected redis://[[user]:password@]host:port");
        /* User info, as in redis-cli's URLs: redis://:password@host, redis://user:password@host
         * (an ACL user); %XX escapes allowed. Never echoed in messages. */
        e = p + strcspn(p, "/?");
        const char *at = memrchr(p, '@', (size_t) (e - p));
        if (at) {
                const char *colon = memchr(p, ':', (size_t) (at - p));
                if (!colon || colon + 1 == at)
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--queue: the user info of a redis:// URL must be :password or "
                                            "user:password");
                if (percent_decode(p, (size_t) (colon - p), q->user, sizeof(q->user)) < 0 ||
                    percent_decode(colon + 1, (size_t) (at - colon - 1), q->password, sizeof(q->password)) < 0)
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--queue: the Redis user or password is too long or badly escaped");
                q->auth = true;
                p = at + 1;
        }
        e = p + strcspn(p, ":/?");
        if (e == p || (size_t) (e - p) >= sizeof(q->host))
                return mp_error_set(err, EINVAL, 400, "config", "--queue \"%s\": the host is missing or too long", shown);
        snprintf(q->host, sizeof(q->host), "%.*s", (int) (e - p), p);
        q->port = 6379;
        q->shards = 1;
        q->ttl_ms = DEFAULT_TTL_S * 1000;
        p = e;
        if (*p == ':') {
                p++;
                e = p + strcspn(p, "/?");
                snprintf(num, sizeof(num), "%.*s", (int) MP_MIN((size_t) (e - p), sizeof(num) - 1), p);
                if (mp_parse_long(num, 1, 65535, &v) < 0)
                        return mp_error_set(err, EINVAL, 400, "config", "--queue \"%s\": the port must be 1 to 65535", shown);
                q->port = (int) v;
                p = e;
        }
        if (*p == '/') {
                p++;
                e = p + strcspn(p, "?");
                if (e > p) {
                        snprintf(num, sizeof(num), "%.*s", (int) MP_MIN((size_t) (e - p), sizeof(num) - 1), p);
                        if (mp_parse_long(num, 0, 15, &v) < 0)
                                return mp_error_set(err, EINVAL, 400, "config",
                                                    "--queue \"%s\": the database must be 0 to 15", shown);
                        q->db = (int) v;
                }
                p = e;
        }
        if (*p == '?')
                p++;
        while (*p) {
                const char *amp = p + strcspn(p, "&"), *eq = memchr(p, '=', (size_t) (amp - p));
                if (!eq)
                        return mp_error_set(err, EINVAL, 400, "config", "--queue \"%s\": expected name=value options", shown);
                snprintf(num, sizeof(num), "%.*s", (int) MP_MIN((size_t) (amp - eq - 1), sizeof(num) - 1), eq + 1);
                if (eq - p == 6 && !strncmp(p, "shards", 6)) {
                        if (mp_parse_long(num, 1, MAX_SHARDS, &v) < 0)
                                return mp_error_set(err, EINVAL, 400, "config",
                                                    "--queue \"%s\": shards must be 1 to %d", shown, MAX_SHARDS);
                        q->shards = (int) v;
                } else if (eq - p == 10 && !strncmp(p, "worker_ttl", 10)) {
                        if (mp_parse_long(num, 1, 3600, &v) < 0)
                                return mp_error_set(err, EINVAL, 400, "config",
                                                    "--queue \"%s\": worker_ttl must be 1 to 3600 seconds", shown);
                        q->ttl_ms = v * 1000;
                } else
                        return mp_error_set(err, EINVAL, 400, "config",
                                            "--queue \"%s\": unknown option \"%.*s\" (known: shards, worker_ttl)",
                                            shown, (int) MP_MIN(eq - p, 40), p);
                p = *amp ? amp + 1 : amp;
        }
        snprintf(q->where, sizeof(q->where), "redis://%s:%d/%d", q->host, q->port, q->db);
        return 0;
}

static void listen_stop(struct redis_queue *q);
static void maint_stop(struct redis_queue *q);

static void redis_close(struct mp_queue *qq) {
        struct redis_queue *q = (struct redis_queue *) qq;
        atomic_store(&q->closing, true);
        listen_stop(q);
        maint_stop(q);
        while (q->n_idle > 0)
                redisFree(q->idle[--q->n_idle]);
        pthread_mutex_destroy(&q->lock);
        pthread_mutex_destroy(&q->maint_lock);
        pthread_cond_destroy(&q->maint_cond);
        pthread_mutex_destroy(&q->listen_lock);
        explicit_bzero(q->password, sizeof(q->password));
        free(q);
}

static int redis_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                      struct mp_error *err) {
        struct redis_queue *q = calloc(1, sizeof(*q));
        int r;

        if (!q)
                return -ENOMEM;
        q->base.ops = &mp_queue_redis_ops;
        q->store = store;
        pthread_mutex_init(&q->lock, NULL);
        pthread_mutex_init(&q->maint_lock, NULL);
        mp_cond_init_monotonic(&q->maint_cond);
        pthread_mutex_init(&q->listen_lock, NULL);
        if ((r = parse_url(q, url, err)) < 0) {
                redis_close((struct mp_queue *) q);
                return r;
        }
        /* Not reaching Redis now is not fatal: it may start after us, and every path
         * reconnects. Say so once, loudly. */
        redisContext *c = conn_new(q, err);
        if (!c)
                mp_warn("%s; MecaPy will keep trying", err && err->message[0] ? err->message : q->where);
        conn_put(q, c);
        if (err)
                mp_error_clear(err);
        *ret = (struct mp_queue *) q;
        return 0;
}

/* ---- jobs ---- */

static int push_job(struct redis_queue *q, const char *task_id, uint32_t hash, bool force,
                    struct mp_error *err) {
        char jobs[64], tkey[64];
        char hs[16], now[24];

        jobs_key(q, (int) (hash % (uint32_t) q->shards), jobs, sizeof(jobs));
        snprintf(tkey, sizeof(tkey), "task:%s", task_id);
        snprintf(hs, sizeof(hs), "%u", hash);
        snprintf(now, sizeof(now), "%lld", (long long) mp_now_ms());
        _cleanup_reply_ redisReply *r = cmd(q, err, "EVAL %s 2 %s %s %s %s %s %s", LUA_PUSH, tkey, jobs,
                                            task_id, hs, now, force ? "1" : "0");
        return r ? 0 : -EIO;
}

static int redis_push(struct mp_queue *qq, const char *task_id, const char *function_id,
                      struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        int r = push_job(q, task_id, mp_queue_shard_hash(function_id), false, err);
        /* Not fatal for the caller: the job is in the store, and the sweep pushes it
         * again once Redis answers. */
        if (r < 0)
                mp_warn("task %s: not queued in Redis now (%s); it will be taken from the store",
                        task_id, err && err->message[0] ? err->message : "Redis unreachable");
        return r;
}

static void maint_start(struct redis_queue *q);
static int promote(struct redis_queue *q, bool force, struct mp_error *err);

static int do_register(struct redis_queue *q, struct mp_queue_worker *w, struct mp_error *err) {
        if (!w->id[0]) {
                char rnd[MP_ID_LEN + 1];
                mp_id_new(rnd);
                snprintf(w->id, sizeof(w->id), "%.40s-%d-%.8s", w->host[0] ? w->host : "worker", w->pid, rnd);
        }
        if (w->shard < 0) {
                /* Home shards are dealt out in turn, so N workers cover N shards. */
                _cleanup_reply_ redisReply *r = q->shards > 1 ? cmd(q, NULL, "INCR mecapy:worker-seq") : NULL;
                w->shard = r && r->type == REDIS_REPLY_INTEGER ? (int) ((r->integer - 1) % q->shards) : 0;
        }
        pthread_mutex_lock(&q->lock);
        q->me = *w;
        q->home = w->shard % q->shards;
        q->me.shard = q->home;
        q->started_at = mp_now_ms();
        q->registered = true;
        pthread_mutex_unlock(&q->lock);
        MP_QUEUE((struct mp_queue *) q)->heartbeat((struct mp_queue *) q, err);
        maint_start(q);
        return 0;
}

static int redis_register(struct mp_queue *qq, struct mp_queue_worker *w, struct mp_error *err) {
        return do_register((struct redis_queue *) qq, w, err);
}

/* Take one job from a list into our processing list: 1 (id in ret), 0 none, -EIO. */
static int move_one(struct redis_queue *q, const char *src, const char *proc_key, int64_t block_ms,
                    char *ret, struct mp_error *err) {
        _cleanup_reply_ redisReply *r = NULL;
        if (block_ms > 0) {
                char t[32];
                snprintf(t, sizeof(t), "%.3f", (double) block_ms / 1000.0);
                r = cmd(q, err, "BLMOVE %s %s RIGHT LEFT %s", src, proc_key, t);
        } else
                r = cmd(q, err, "LMOVE %s %s RIGHT LEFT", src, proc_key);
        if (!r)
                return -EIO;
        if (r->type == REDIS_REPLY_NIL)
                return 0;
        if (!reply_is_id(r)) {
                /* Not ours to run: take it out so it does not come back forever. */
                _cleanup_reply_ redisReply *d = NULL;
                mp_warn("%s: dropping a malformed job from %s", q->where, src);
                if (r->type == REDIS_REPLY_STRING)
                        d = cmd(q, NULL, "LREM %s 1 %b", proc_key, r->str, r->len);
                return 0;
        }
        memcpy(ret, r->str, MP_ID_LEN);
        ret[MP_ID_LEN] = 0;
        return 1;
}

static int redis_claim(struct mp_queue *qq, const char *worker_id, int64_t lease_ms, int64_t wait_ms,
                       char *ret_task_id, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        int64_t deadline = mp_mono_ms() + wait_ms;
        char proc_key[160], id[MP_ID_LEN + 1], me[MP_QUEUE_WORKER_ID_MAX];
        int r;

        pthread_mutex_lock(&q->lock);
        bool registered = q->registered;
        pthread_mutex_unlock(&q->lock);
        if (!registered) {
                /* A claim needs a heartbeat to stand on: join under the thread's process
                 * name. */
                struct mp_queue_worker w = { .pid = (int) getpid(), .shard = -1 };
                mp_queue_worker_process(worker_id, w.id, sizeof(w.id));
                gethostname(w.host, sizeof(w.host) - 1);
                do_register(q, &w, NULL);
        }
        pthread_mutex_lock(&q->lock);
        snprintf(me, sizeof(me), "%s", q->me.id);
        int home = q->home;
        pthread_mutex_unlock(&q->lock);
        snprintf(proc_key, sizeof(proc_key), "mecapy:processing:%s", me);

        for (;;) {
                char src[64];
                int64_t left;

                if (atomic_load(&q->closing))
                        return 0;
                promote(q, false, NULL);
                left = deadline - mp_mono_ms();
                jobs_key(q, home, src, sizeof(src));
                r = move_one(q, src, proc_key,
                             left > 0 ? MP_MIN(left, q->shards > 1 ? STEAL_SLICE_MS : CLAIM_SLICE_MS) : 0,
                             id, err);
                /* The home shard is empty: take work from the others rather than wait
                 * (the warm instances are elsewhere, but an idle worker helps more). */
                for (int i = 1; r == 0 && i < q->shards; i++) {
                        jobs_key(q, (home + i) % q->shards, src, sizeof(src));
                        r = move_one(q, src, proc_key, 0, id, err);
                }
                if (r < 0)
                        return r;
                if (r == 1) {
                        char tkey[64], now[24];
                        snprintf(tkey, sizeof(tkey), "task:%s", id);
                        snprintf(now, sizeof(now), "%lld", (long long) mp_now_ms());
                        _cleanup_reply_ redisReply *c = cmd(q, err, "EVAL %s 2 %s %s %s %s %s %s", LUA_CONFIRM,
                                                            tkey, proc_key, id, worker_id, me, now);
                        if (!c)
                                return -EIO; /* the job stays in our list; see ack */
                        if (c->type == REDIS_REPLY_INTEGER && c->integer == 1) {
                                memcpy(ret_task_id, id, MP_ID_LEN + 1);
                                return 1;
                        }
                        mp_debug("task %s: duplicate job dropped", id);
                        continue;
                }
                if (left <= 0)
                        return 0;
        }
}

static int redis_extend(struct mp_queue *qq, const char *task_id, const char *worker_id, int64_t lease_ms,
                        struct mp_error *err) {
        /* The lease is the worker's heartbeat: nothing per job to renew. */
        return 0;
}

static int redis_ack(struct mp_queue *qq, const char *task_id, const char *worker_id, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        char proc[MP_QUEUE_WORKER_ID_MAX];

        mp_queue_worker_process(worker_id, proc, sizeof(proc));
        _cleanup_reply_ redisReply *r = cmd(q, err, "LREM mecapy:processing:%s 1 %s", proc, task_id);
        return r ? 0 : -EIO;
}

/* Released jobs whose delay is over go back to their shard: looked at by claims (at
 * most every PROMOTE_EVERY_MS per process) and by the maintenance thread. */
static int promote(struct redis_queue *q, bool force, struct mp_error *err) {
        int64_t now = mp_mono_ms(), at = atomic_load(&q->promote_at);
        char shards[16], wall[24];

        if (!force && (now < at || !atomic_compare_exchange_strong(&q->promote_at, &at, now + PROMOTE_EVERY_MS)))
                return 0;
        snprintf(shards, sizeof(shards), "%d", q->shards);
        snprintf(wall, sizeof(wall), "%lld", (long long) mp_now_ms());
        _cleanup_reply_ redisReply *r = cmd(q, err, "EVAL %s 1 mecapy:delayed %s %s", LUA_PROMOTE, wall, shards);
        if (!r)
                return -EIO;
        return r->type == REDIS_REPLY_INTEGER ? (int) MP_MIN(r->integer, PROMOTE_BATCH) : 0;
}

static int redis_release(struct mp_queue *qq, const char *task_id, const char *worker_id, int64_t delay_ms,
                         struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        char proc[MP_QUEUE_WORKER_ID_MAX], pkey[160], tkey[64], now[24], due[24];
        int64_t wall = mp_now_ms();

        mp_queue_worker_process(worker_id, proc, sizeof(proc));
        snprintf(pkey, sizeof(pkey), "mecapy:processing:%s", proc);
        snprintf(tkey, sizeof(tkey), "task:%s", task_id);
        snprintf(now, sizeof(now), "%lld", (long long) wall);
        snprintf(due, sizeof(due), "%lld", (long long) (wall + MP_MAX(delay_ms, 0)));
        _cleanup_reply_ redisReply *r = cmd(q, err, "EVAL %s 3 %s %s mecapy:delayed %s %s %s", LUA_RELEASE,
                                            pkey, tkey, task_id, now, due);
        if (!r)
                return -EIO;
        return r->type == REDIS_REPLY_INTEGER && r->integer == 1 ? 1 : 0;
}

static void redis_shutdown(struct mp_queue *qq) {
        struct redis_queue *q = (struct redis_queue *) qq;
        atomic_store(&q->closing, true);
}

/* ---- completion ---- */

static int redis_notify_done(struct mp_queue *qq, const char *task_id, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        _cleanup_json_ json_t *row = NULL;
        _cleanup_free_ char *text = NULL;
        char rkey[64], tkey[64], now[24];
        const char *status = "completed";

        if (q->store && MP_STORE(q->store)->task_get(q->store, task_id, &row, NULL) >= 0) {
                status = json_string_value(json_object_get(row, "status")) ?: status;
                text = json_dumps(row, JSON_COMPACT);
                if (text && strlen(text) > RESULT_CACHE_MAX)
                        text[0] = 0;
        }
        snprintf(rkey, sizeof(rkey), "result:%s", task_id);
        snprintf(tkey, sizeof(tkey), "task:%s", task_id);
        snprintf(now, sizeof(now), "%lld", (long long) mp_now_ms());
        _cleanup_reply_ redisReply *r = cmd(q, err, "EVAL %s 2 %s %s %s %s %s %s", LUA_DONE, rkey, tkey, task_id,
                                            status, now, text ? text : "");
        return r ? 0 : -EIO;
}

/* The subscriber: its own connection, read with poll() so that it can stop. After a
 * reconnection it calls cb(NULL): notices published meanwhile were lost. */
static void *sub_main(void *userdata) {
        struct redis_queue *q = userdata;
        redisContext *c = NULL;
        bool ever = false;
        int64_t backoff = 0;

        while (!atomic_load(&q->sub_stop)) {
                void *reply = NULL;

                if (!c) {
                        struct timeval tv = { CONNECT_TIMEOUT_MS / 1000, 0 };
                        char why[256];
                        c = redisConnectWithTimeout(q->host, q->port, tv);
                        /* Both channels on one connection; the second channel's
                         * confirmation comes through the reader below and is skipped. */
                        redisReply *r = c && !c->err && authenticate(q, c, why, sizeof(why)) == 0
                                                ? redisCommand(c, "SUBSCRIBE mecapy:done mecapy:cancel") : NULL;
                        if (!r || r->type == REDIS_REPLY_ERROR) {
                                if (r)
                                        freeReplyObject(r);
                                if (c)
                                        redisFree(c);
                                c = NULL;
                                backoff = backoff ? MP_MIN(backoff * 2, BACKOFF_MAX_MS) : 100;
                                sleep_ms(backoff);
                                continue;
                        }
                        freeReplyObject(r);
                        backoff = 0;
                        if (ever) {
                                mp_info("%s: completion notices resumed", q->where);
                                pthread_mutex_lock(&q->listen_lock);
                                if (q->done_cb)
                                        q->done_cb(q->done_userdata, NULL);
                                pthread_mutex_unlock(&q->listen_lock);
                        }
                        ever = true;
                }
                if (redisGetReplyFromReader(c, &reply) != REDIS_OK)
                        goto broken;
                if (reply) {
                        redisReply *r = reply;
                        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
                            r->element[0]->type == REDIS_REPLY_STRING && !strcmp(r->element[0]->str, "message") &&
                            r->element[1]->type == REDIS_REPLY_STRING && reply_is_id(r->element[2])) {
                                bool cancel = !strcmp(r->element[1]->str, "mecapy:cancel");
                                pthread_mutex_lock(&q->listen_lock);
                                if (cancel && q->cancel_cb)
                                        q->cancel_cb(q->cancel_userdata, r->element[2]->str);
                                else if (!cancel && q->done_cb)
                                        q->done_cb(q->done_userdata, r->element[2]->str);
                                pthread_mutex_unlock(&q->listen_lock);
                        }
                        freeReplyObject(r);
                        continue;
                }
                struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
                int n = poll(&pfd, 1, 500);
                if (n > 0 && redisBufferRead(c) != REDIS_OK)
                        goto broken;
                continue;
        broken:
                mp_warn("%s: completion notices interrupted (%s); reconnecting", q->where,
                        c->errstr[0] ? c->errstr : "connection lost");
                redisFree(c);
                c = NULL;
        }
        if (c)
                redisFree(c);
        return NULL;
}

static void listen_stop(struct redis_queue *q) {
        if (!q->sub_running)
                return;
        atomic_store(&q->sub_stop, true);
        pthread_join(q->sub, NULL);
        q->sub_running = false;
}

/* The subscriber runs while either listener is set. Callbacks run under listen_lock, so
 * clearing one under it is enough to know none of its calls is in flight. */
static int listen_set(struct redis_queue *q, bool cancel, void (*cb)(void *, const char *), void *userdata,
                      struct mp_error *err) {
        pthread_mutex_lock(&q->listen_lock);
        if (cancel) {
                q->cancel_cb = cb;
                q->cancel_userdata = cb ? userdata : NULL;
        } else {
                q->done_cb = cb;
                q->done_userdata = cb ? userdata : NULL;
        }
        bool any = q->cancel_cb || q->done_cb;
        pthread_mutex_unlock(&q->listen_lock);
        if (!any) {
                listen_stop(q);
                return 0;
        }
        if (!cb)
                return 0;
        if (!q->sub_running) {
                atomic_store(&q->sub_stop, false);
                if (pthread_create(&q->sub, NULL, sub_main, q) != 0)
                        return mp_error_set(err, EAGAIN, 500, "internal", "cannot start the Redis subscriber thread");
                q->sub_running = true;
        }
        /* A process that waits for tasks also reaps and sweeps (the API may run alone). */
        maint_start(q);
        return 0;
}

/* ---- workers ---- */

static int redis_listen_done(struct mp_queue *qq, mp_queue_done_fn cb, void *userdata, struct mp_error *err) {
        return listen_set((struct redis_queue *) qq, false, cb, userdata, err);
}

static int redis_listen_cancel(struct mp_queue *qq, mp_queue_cancel_fn cb, void *userdata, struct mp_error *err) {
        return listen_set((struct redis_queue *) qq, true, cb, userdata, err);
}

static int redis_notify_cancel(struct mp_queue *qq, const char *task_id, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        _cleanup_reply_ redisReply *r = cmd(q, err, "PUBLISH mecapy:cancel %s", task_id);
        return r ? 0 : -EIO;
}

static int redis_heartbeat(struct mp_queue *qq, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        struct mp_queue_worker me;
        char key[160], started[24], now[24], ttl[24], running[24] = "0", warm[24] = "", hit[24] = "";
        int64_t started_at;

        pthread_mutex_lock(&q->lock);
        bool registered = q->registered;
        me = q->me;
        started_at = q->started_at;
        pthread_mutex_unlock(&q->lock);
        if (!registered)
                return 0;
        if (me.status) {
                _cleanup_json_ json_t *st = me.status(me.userdata);
                json_t *v;
                snprintf(running, sizeof(running), "%lld", (long long) json_integer_value(json_object_get(st, "running")));
                if (json_is_integer(v = json_object_get(st, "warm_instances")))
                        snprintf(warm, sizeof(warm), "%lld", (long long) json_integer_value(v));
                if (json_is_number(v = json_object_get(st, "cache_hit_rate")))
                        snprintf(hit, sizeof(hit), "%.4f", json_number_value(v));
        }
        snprintf(key, sizeof(key), "mecapy:worker:%s", me.id);
        snprintf(started, sizeof(started), "%lld", (long long) started_at);
        snprintf(now, sizeof(now), "%lld", (long long) mp_now_ms());
        snprintf(ttl, sizeof(ttl), "%lld", (long long) q->ttl_ms);
        _cleanup_reply_ redisReply *r = cmd(q, err,
                "EVAL %s 1 %s %s %s %d %s %s %s %d %d %s %s %s", 
                "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'host', ARGV[2], 'pid', ARGV[3],"
                " 'started_at', ARGV[4], 'last_heartbeat', ARGV[5], 'running', ARGV[6],"
                " 'capacity', ARGV[7], 'shard', ARGV[8], 'warm_instances', ARGV[9],"
                " 'cache_hit_rate', ARGV[10])\n"
                "redis.call('PEXPIRE', KEYS[1], ARGV[11])\n"
                "redis.call('SADD', 'mecapy:workers', ARGV[1])\n"
                "return 1\n",
                key, me.id, me.host[0] ? me.host : "?", me.pid, started, now, running, me.capacity, me.shard,
                warm[0] ? warm : "-", hit[0] ? hit : "-", ttl);
        return r ? 0 : -EIO;
}

/* Return the jobs of one processing list to the queue. */
static int requeue_list(struct redis_queue *q, const char *worker, struct mp_error *err) {
        char key[160], shards[16], now[24];
        snprintf(key, sizeof(key), "mecapy:processing:%s", worker);
        snprintf(shards, sizeof(shards), "%d", q->shards);
        snprintf(now, sizeof(now), "%lld", (long long) mp_now_ms());
        _cleanup_reply_ redisReply *r = cmd(q, err, "EVAL %s 1 %s %s %s", LUA_REQUEUE_LIST, key, shards, now);
        if (!r)
                return -EIO;
        return r->type == REDIS_REPLY_INTEGER ? (int) MP_MIN(r->integer, 1 << 30) : 0;
}

static int redis_unregister(struct mp_queue *qq, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        char id[MP_QUEUE_WORKER_ID_MAX];
        int r;

        maint_stop(q);
        pthread_mutex_lock(&q->lock);
        bool registered = q->registered;
        q->registered = false;
        snprintf(id, sizeof(id), "%s", q->me.id);
        pthread_mutex_unlock(&q->lock);
        if (!registered)
                return 0;
        r = requeue_list(q, id, err);
        if (r > 0)
                mp_warn("%d job(s) this worker did not finish went back to the queue", r);
        if (r < 0)
                return r; /* our record expires; the reaper returns the jobs */
        _cleanup_reply_ redisReply *d = cmd(q, err, "DEL mecapy:worker:%s", id);
        _cleanup_reply_ redisReply *s = cmd(q, err, "SREM mecapy:workers %s", id);
        return d && s ? 0 : -EIO;
}

static const char *field(redisReply *h, const char *name) {
        for (size_t i = 0; i + 1 < h->elements; i += 2)
                if (h->element[i]->type == REDIS_REPLY_STRING && !strcmp(h->element[i]->str, name) &&
                    h->element[i + 1]->type == REDIS_REPLY_STRING && h->element[i + 1]->len < FIELD_MAX)
                        return h->element[i + 1]->str;
        return NULL;
}

static json_t *int_field(redisReply *h, const char *name) {
        const char *v = field(h, name);
        long n;
        return v && mp_parse_long(v, -1, (long) (((uint64_t) 1 << 62)), &n) >= 0 ? json_integer(n) : json_null();
}

static int redis_workers(struct mp_queue *qq, json_t **ret, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        _cleanup_reply_ redisReply *ids = cmd(q, err, "SMEMBERS mecapy:workers");
        json_t *items;

        if (!ids)
                return -EIO;
        items = json_array();
        for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements && i < MAX_WORKERS_LISTED; i++) {
                redisReply *e = ids->element[i];
                if (e->type != REDIS_REPLY_STRING || e->len >= MP_QUEUE_WORKER_ID_MAX)
                        continue;
                _cleanup_reply_ redisReply *h = cmd(q, err, "HGETALL mecapy:worker:%s", e->str);
                if (!h) {
                        json_decref(items);
                        return -EIO;
                }
                if (h->type != REDIS_REPLY_ARRAY || h->elements == 0)
                        continue; /* expired: the reaper will deal with it */
                const char *hit = field(h, "cache_hit_rate");
                char *end = NULL;
                double rate = hit ? strtod(hit, &end) : 0;
                json_t *item = json_pack("{s:s,s:s?,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "id", e->str, "host",
                                         field(h, "host"), "pid", int_field(h, "pid"), "started_at",
                                         int_field(h, "started_at"), "last_heartbeat", int_field(h, "last_heartbeat"),
                                         "running", int_field(h, "running"), "capacity", int_field(h, "capacity"),
                                         "shard", int_field(h, "shard"), "warm_instances",
                                         int_field(h, "warm_instances"));
                if (!item)
                        continue;
                json_object_set_new(item, "cache_hit_rate",
                                    hit && end && end != hit && !*end ? json_real(rate) : json_null());
                json_array_append_new(items, item);
        }
        *ret = json_pack("{s:o}", "items", items);
        return *ret ? 0 : -ENOMEM;
}

/* ---- the reaper and the sweep ---- */

/* Workers whose record expired: their jobs go back to the queue. */
static int reap(struct redis_queue *q, struct mp_error *err) {
        _cleanup_reply_ redisReply *ids = cmd(q, err, "SMEMBERS mecapy:workers");
        int total = 0;

        if (!ids)
                return -EIO;
        for (size_t i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements && i < MAX_WORKERS_LISTED * 4; i++) {
                redisReply *e = ids->element[i];
                if (e->type != REDIS_REPLY_STRING || e->len >= MP_QUEUE_WORKER_ID_MAX)
                        continue;
                _cleanup_reply_ redisReply *alive = cmd(q, err, "EXISTS mecapy:worker:%s", e->str);
                if (!alive)
                        return -EIO;
                if (alive->type != REDIS_REPLY_INTEGER || alive->integer != 0)
                        continue;
                int n = requeue_list(q, e->str, err);
                if (n < 0)
                        return n;
                if (n > 0)
                        mp_warn("worker %s stopped sending heartbeats: %d job(s) went back to the queue", e->str, n);
                total += n;
                reply_free(cmd(q, NULL, "SREM mecapy:workers %s", e->str));
        }
        return total;
}

/* Jobs the store has and Redis may not (a push while Redis was down, or Redis lost its
 * data): each unfinished job's row is looked at every SWEEP_RECHECK_MS (its lease in
 * the jobs table says when), and pushed again when task:{id} is missing and the task
 * is queued (older than min_age_ms), or running on a worker that has no heartbeat.
 * Returns how many were pushed. */
static int sweep(struct redis_queue *q, int64_t min_age_ms, struct mp_error *err) {
        int pushed = 0;

        if (!q->store)
                return 0;
        for (int i = 0; i < SWEEP_BATCH && !atomic_load(&q->closing); i++) {
                char id[MP_ID_LEN + 1];
                int64_t now = mp_now_ms();
                _cleanup_json_ json_t *task = NULL;
                int r = MP_STORE(q->store)->job_claim(q->store, SWEEPER_ID, now, now + SWEEP_RECHECK_MS, id, err);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
                _cleanup_reply_ redisReply *known = cmd(q, err, "EXISTS task:%s", id);
                if (!known)
                        return -EIO;
                if (known->type == REDIS_REPLY_INTEGER && known->integer == 1)
                        continue;
                if (MP_STORE(q->store)->task_get(q->store, id, &task, NULL) < 0)
                        continue;
                const char *status = json_string_value(json_object_get(task, "status")) ?: "";
                const char *fid = json_string_value(json_object_get(task, "function_id")) ?: "";
                bool again = false;
                if (!strcmp(status, "queued"))
                        again = json_integer_value(json_object_get(task, "queued_at")) <= now - min_age_ms;
                else if (!strcmp(status, "running")) {
                        char proc[MP_QUEUE_WORKER_ID_MAX];
                        mp_queue_worker_process(json_string_value(json_object_get(task, "worker_id")) ?: "",
                                                proc, sizeof(proc));
                        _cleanup_reply_ redisReply *alive = cmd(q, err, "EXISTS mecapy:worker:%s", proc);
                        if (!alive)
                                return -EIO;
                        again = alive->type == REDIS_REPLY_INTEGER && alive->integer == 0 &&
                                json_integer_value(json_object_get(task, "started_at")) <= now - q->ttl_ms;
                }
                if (again) {
                        if ((r = push_job(q, id, mp_queue_shard_hash(fid), true, err)) < 0)
                                return r;
                        pushed++;
                }
        }
        return pushed;
}

static int redis_recover(struct mp_queue *qq, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        int n, m;

        if ((n = reap(q, err)) < 0)
                return n;
        /* Look at every row now, not at their next check. */
        if (q->store && (m = MP_STORE(q->store)->job_release_all(q->store, err)) < 0)
                return m;
        if ((m = sweep(q, 0, err)) < 0)
                return m;
        return n + m;
}

static bool maint_wait(struct redis_queue *q, int64_t ms) {
        struct timespec ts;
        pthread_mutex_lock(&q->maint_lock);
        if (!q->maint_stop) {
                ts = mp_mono_deadline(ms);
                pthread_cond_timedwait(&q->maint_cond, &q->maint_lock, &ts);
        }
        bool stop = q->maint_stop;
        pthread_mutex_unlock(&q->maint_lock);
        return !stop;
}

/* Heartbeat every ttl/3; reaper and sweep under the shared lock, so that one process
 * at a time does them. */
static void *maint_main(void *userdata) {
        struct redis_queue *q = userdata;
        int64_t tick = MP_MAX(q->ttl_ms / 3, 100), next_sweep = 0;
        char token[MP_ID_LEN + 1];

        mp_id_new(token);
        do {
                _cleanup_error_ struct mp_error err = { 0 };
                int64_t now = mp_mono_ms();

                if (redis_heartbeat((struct mp_queue *) q, &err) < 0)
                        continue;
                promote(q, true, NULL);
                /* A missing marker means Redis restarted empty: every queued job it had is
                 * gone. Sweep everything once the live workers have beaten again. */
                _cleanup_reply_ redisReply *mark = cmd(q, NULL, "SET mecapy:alive 1 NX");
                if (mark && mark->type == REDIS_REPLY_STATUS) {
                        mp_info("%s holds no MecaPy data (new, or restarted empty): jobs will be taken "
                                "from the store", q->where);
                        q->full_sweep_at = now + q->ttl_ms;
                }
                char px[24];
                snprintf(px, sizeof(px), "%lld", (long long) tick * 2);
                _cleanup_reply_ redisReply *lock = cmd(q, NULL, "SET mecapy:reaper %s NX PX %s", token, px);
                if (!lock || lock->type != REDIS_REPLY_STATUS)
                        continue;
                reap(q, NULL);
                if (q->full_sweep_at && now >= q->full_sweep_at) {
                        q->full_sweep_at = 0;
                        if (q->store)
                                MP_STORE(q->store)->job_release_all(q->store, NULL);
                        int n = sweep(q, REQUEUE_AGE_MS, NULL);
                        if (n > 0)
                                mp_warn("%d job(s) the queue had lost were taken again from the store", n);
                        next_sweep = now + SWEEP_EVERY_MS;
                } else if (now >= next_sweep) {
                        int n = sweep(q, REQUEUE_AGE_MS, NULL);
                        if (n > 0)
                                mp_warn("%d job(s) missing from the queue were taken again from the store", n);
                        next_sweep = now + SWEEP_EVERY_MS;
                }
                reply_free(cmd(q, NULL, "EVAL %s 1 mecapy:reaper %s", LUA_UNLOCK, token));
        } while (maint_wait(q, tick));
        return NULL;
}

static void maint_start(struct redis_queue *q) {
        pthread_mutex_lock(&q->maint_lock);
        if (!q->maint_running) {
                q->maint_stop = false;
                q->maint_running = pthread_create(&q->maint, NULL, maint_main, q) == 0;
        }
        pthread_mutex_unlock(&q->maint_lock);
}

static void maint_stop(struct redis_queue *q) {
        pthread_mutex_lock(&q->maint_lock);
        bool running = q->maint_running;
        q->maint_stop = true;
        q->maint_running = false;
        pthread_cond_broadcast(&q->maint_cond);
        pthread_mutex_unlock(&q->maint_lock);
        if (running)
                pthread_join(q->maint, NULL);
}

static int redis_ping(struct mp_queue *qq, struct mp_error *err) {
        struct redis_queue *q = (struct redis_queue *) qq;
        _cleanup_reply_ redisReply *r = cmd(q, err, "PING");
        return r ? 0 : -EIO; /* err says why */
}

const struct mp_queue_ops mp_queue_redis_ops = {
        .scheme = "redis",
        .open = redis_open,
        .close = redis_close,
        .push = redis_push,
        .claim = redis_claim,
        .extend = redis_extend,
        .ack = redis_ack,
        .release = redis_release,
        .recover = redis_recover,
        .shutdown = redis_shutdown,
        .notify_done = redis_notify_done,
        .listen_done = redis_listen_done,
        .notify_cancel = redis_notify_cancel,
        .listen_cancel = redis_listen_cancel,
        .register_worker = redis_register,
        .heartbeat = redis_heartbeat,
        .unregister_worker = redis_unregister,
        .workers = redis_workers,
        .ping = redis_ping,
};
