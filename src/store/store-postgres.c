/* store/: the "postgres:" driver (libpq), for several processes on several hosts
 * sharing one database. The operations are store-ops.c's, the same as SQLite's; this
 * file is the connections, parameters ($N), row decoding and transactions.
 *
 * Connections: a small pool (?pool=N in the URL, default 4). Each operation takes one
 * connection for its whole duration, so a transaction never spans two connections and
 * operations from different threads run in parallel on the server.
 *
 * Concurrency: the server's row locks do what SQLite's single writer did (row_locks:
 * the operations lock what they decide on, and job_claim skips rows another claimer
 * holds); migrations run under a session advisory lock, so processes starting together
 * apply each one exactly once. An atomic operation that meets a deadlock or a
 * serialization failure is run again, up to DEADLOCK_TRIES times.
 *
 * Durability is the server's (synchronous_commit): PostgreSQL groups the commits of
 * concurrent sessions by itself; ?durability= is SQLite's.
 *
 * Connection loss: a connection found broken when it is taken is reset first. One that
 * breaks during an operation is reset and the operation run once more when nothing it
 * sent can have been committed (reads, and writes inside a transaction that had not
 * reached COMMIT); otherwise the caller gets -EAGAIN, since the change may or may not
 * have been saved. An unreachable server gives -EAGAIN with status 503 and code
 * "unavailable", naming the host, after at most connect_timeout (5 s unless the URL
 * says otherwise). */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>

#include "base/limits.h"
#include "base/util.h"
#include "store/store-internal.h"

#define POOL_DEFAULT 4
#define POOL_MAX 64
#define POOL_WAIT_MS 30000
#define MAX_PARAMS 32
#define SQL_MAX 4096
#define DEADLOCK_TRIES 3
/* pg_advisory_lock key held while migrating: "mecapy" in ASCII, then 1. */
#define MIGRATION_LOCK_KEY INT64_C(0x6d6563617079)

/* Type OIDs (server/catalog/pg_type_d.h, which libpq-dev does not ship). */
#define OID_BOOL 16
#define OID_INT8 20
#define OID_INT2 21
#define OID_INT4 23
#define OID_TEXT 25
#define OID_FLOAT4 700
#define OID_FLOAT8 701
#define OID_NUMERIC 1700

struct conn {
        struct mp_store_conn head; /* first */
        struct pg_store *s;
        PGconn *pg;          /* NULL until first used */
        bool busy;           /* taken by an operation */
        bool sent_write;     /* this attempt sent a change that a server may have committed */
        char state[6];       /* the SQLSTATE of the last failure, "" */
};

struct pg_store {
        struct mp_store common;    /* first */
        pthread_mutex_t lock;      /* guards busy flags */
        pthread_cond_t freed;
        size_t n_conns;
        struct conn *conns;
        char *conninfo;            /* the URL less our own parameters, for libpq */
        char where[320];           /* "host:port/dbname", for messages */
};

/* ---- errors ---- */

/* libpq's message on one line, without the trailing newline. */
static void one_line(const char *msg, char *buf, size_t size) {
        size_t n = 0;

        for (const char *p = msg ? msg : ""; *p && n + 3 < size; p++) {
                if (*p == '\n') {
                        if (p[1] && n > 0) {
                                buf[n++] = ';';
                                buf[n++] = ' ';
                        }
                        continue;
                }
                buf[n++] = *p;
        }
        while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == ';'))
                n--;
        buf[n] = 0;
}

static int unavailable(struct pg_store *s, PGconn *pg, const char *what, struct mp_error *err) {
        char msg[512];

        one_line(pg ? PQerrorMessage(pg) : "out of memory", msg, sizeof(msg));
        return mp_error_set(err, EAGAIN, 503, "unavailable",
                            "%s: cannot reach the database at %s (%s); try again when it is back",
                            what, s->where, msg);
}

/* SQLSTATE classes and codes, as SQLite's result codes map in store-sqlite.c. */
static int errno_of_state(const char *st) {
        if (!st || strlen(st) != 5)
                return EIO;
        if (strcmp(st, "23505") == 0) /* unique_violation */
                return EEXIST;
        if (strcmp(st, "23503") == 0) /* foreign_key_violation */
                return ENOENT;
        if (strncmp(st, "23", 2) == 0 || strncmp(st, "22", 2) == 0) /* constraint, data */
                return EINVAL;
        if (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0 || strcmp(st, "55P03") == 0 ||
            strcmp(st, "57014") == 0) /* serialization, deadlock, lock timeout, cancelled */
                return EBUSY;
        if (strncmp(st, "08", 2) == 0 || strcmp(st, "57P01") == 0 || strcmp(st, "57P02") == 0 ||
            strcmp(st, "57P03") == 0 || strcmp(st, "53300") == 0) /* connection, shutdown */
                return EAGAIN;
        if (strcmp(st, "53100") == 0) /* disk_full */
                return ENOSPC;
        if (strcmp(st, "53200") == 0) /* out_of_memory */
                return ENOMEM;
        if (strcmp(st, "25006") == 0) /* read_only_sql_transaction */
                return EROFS;
        if (strcmp(st, "42501") == 0 || strncmp(st, "28", 2) == 0) /* privilege, auth */
                return EACCES;
        if (strcmp(st, "54000") == 0) /* program_limit_exceeded */
                return E2BIG;
        return EIO;
}

/* Fill err from a failed statement; returns -errno. */
static int sql_fail(struct pg_store *s, struct conn *c, PGresult *res, const char *what,
                    struct mp_error *err) {
        char msg[512];
        int e;

        one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg), msg, sizeof(msg));
        if (!msg[0])
                one_line(PQerrorMessage(c->pg), msg, sizeof(msg));
        if (PQstatus(c->pg) == CONNECTION_BAD) {
                if (c->sent_write)
                        return mp_error_set(err, EAGAIN, 503, "unavailable",
                                            "%s: the connection to the database at %s broke after "
                                            "the change was sent, so it may or may not have been "
                                            "saved (%s); check, then try again",
                                            what, s->where, msg);
                return mp_error_set(err, EAGAIN, 503, "unavailable",
                                    "%s: lost the connection to the database at %s (%s); try again",
                                    what, s->where, msg);
        }
        {
                const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
                snprintf(c->state, sizeof(c->state), "%s", st ? st : "");
                e = errno_of_state(st);
        }
        switch (e) {
        case EEXIST:
                return mp_error_set(err, e, 409, "conflict", "%s: %s", what, msg);
        case ENOENT:
                return mp_error_set(err, e, 404, "not_found", "%s: %s", what, msg);
        case EINVAL:
                return mp_error_set(err, e, 422, "validation", "%s: %s", what, msg);
        case EBUSY:
                return mp_error_set(err, e, 503, "busy",
                                    "%s: the database at %s stayed busy (%s); try again", what,
                                    s->where, msg);
        case EAGAIN:
                return mp_error_set(err, e, 503, "unavailable",
                                    "%s: the database at %s is not accepting work (%s); try again",
                                    what, s->where, msg);
        default:
                return mp_error_set(err, e, 500, "storage", "%s: %s", what, msg);
        }
}

/* ---- the pool ---- */

/* The server's notices ("relation already exists, skipping") are not for users. */
static void ignore_notice(void *arg, const char *message) {
}

static int conn_open(struct pg_store *s, struct conn *c, struct mp_error *err) {
        /* Defaults first: libpq lets later keywords (the URL's, expanded from dbname)
         * override earlier ones. connect_timeout bounds an unreachable server; the TCP
         * keepalives and user timeout notice a peer that vanished without closing. */
        static const char *const keys[] = {
                "connect_timeout", "application_name", "client_encoding", "keepalives",
                "keepalives_idle", "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                "dbname", NULL,
        };
        const char *const values[] = {
                "5", "mecapy", "UTF8", "1", "30", "10", "3", "60000", s->conninfo, NULL,
        };
        int r;

        c->pg = PQconnectdbParams(keys, values, 1);
        if (!c->pg)
                return mp_error_set(err, ENOMEM, 500, "storage", "connecting to the database: out of memory");
        if (PQstatus(c->pg) != CONNECTION_OK) {
                r = unavailable(s, c->pg, "connecting", err);
                PQfinish(c->pg);
                c->pg = NULL;
                return r;
        }
        PQsetNoticeProcessor(c->pg, ignore_notice, NULL); /* kept across PQreset */
        return 0;
}

/* Is the idle connection still usable? An idle connection has nothing to read: data
 * or EOF means the server ended the session (pg_terminate_backend, a restart). */
static bool conn_healthy(struct conn *c) {
        struct pollfd p = { .fd = PQsocket(c->pg), .events = POLLIN };

        if (PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE || p.fd < 0)
                return false;
        return poll(&p, 1, 0) == 0;
}

/* Make c ready for an operation: connect, or reconnect when it broke. */
static int conn_ready(struct pg_store *s, struct conn *c, struct mp_error *err) {
        c->sent_write = false;
        if (!c->pg)
                return conn_open(s, c, err);
        if (conn_healthy(c))
                return 0;
        PQreset(c->pg);
        if (PQstatus(c->pg) != CONNECTION_OK)
                return unavailable(s, c->pg, "reconnecting", err);
        return 0;
}


/* Take a free connection (waiting up to POOL_WAIT_MS), ready for use. */
static int conn_take(struct pg_store *s, struct conn **ret, struct mp_error *err) {
        struct conn *c = NULL;
        struct timespec deadline;
        int r;

        deadline = mp_mono_deadline(POOL_WAIT_MS);
        pthread_mutex_lock(&s->lock);
        for (;;) {
                /* an already connected one first: new connections only when needed */
                for (size_t i = 0; i < s->n_conns && !c; i++)
                        if (!s->conns[i].busy && s->conns[i].pg)
                                c = &s->conns[i];
                for (size_t i = 0; i < s->n_conns && !c; i++)
                        if (!s->conns[i].busy)
                                c = &s->conns[i];
                if (c)
                        break;
                if (pthread_cond_timedwait(&s->freed, &s->lock, &deadline) == ETIMEDOUT) {
                        pthread_mutex_unlock(&s->lock);
                        return mp_error_set(err, EBUSY, 503, "busy",
                                            "all %zu connections to the database at %s stayed in "
                                            "use for %d s; try again, or raise ?pool= in the "
                                            "store URL", s->n_conns, s->where, POOL_WAIT_MS / 1000);
                }
        }
        c->busy = true;
        pthread_mutex_unlock(&s->lock);
        r = conn_ready(s, c, err);
        if (r < 0) {
                pthread_mutex_lock(&s->lock);
                c->busy = false;
                pthread_cond_signal(&s->freed);
                pthread_mutex_unlock(&s->lock);
                return r;
        }
        *ret = c;
        return 0;
}

static void conn_give(struct pg_store *s, struct conn *c) {
        /* Our own invariant is that every operation ends its transaction; a connection
         * left inside one would leak locks to the next operation. */
        if (c->pg && PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
                PGresult *res = PQexec(c->pg, "ROLLBACK");
                PQclear(res);
        }
        pthread_mutex_lock(&s->lock);
        c->busy = false;
        pthread_cond_signal(&s->freed);
        pthread_mutex_unlock(&s->lock);
}

/* ---- statements ---- */

static void pqclearp(PGresult **r) {
        if (*r)
                PQclear(*r);
}
#define _cleanup_result_ _cleanup_(pqclearp)

/* The shared texts number their parameters ?N; PostgreSQL wants $N. */
static int to_dollars(const char *sql, char *out, size_t size) {
        bool quoted = false;
        size_t n = strlen(sql);

        if (n >= size)
                return -E2BIG;
        for (size_t i = 0; i <= n; i++) {
                char ch = sql[i];
                if (ch == '\'')
                        quoted = !quoted;
                else if (ch == '?' && !quoted && sql[i + 1] >= '0' && sql[i + 1] <= '9')
                        ch = '$';
                out[i] = ch;
        }
        return 0;
}

/* Does sending sql now risk a change being committed? Inside a transaction nothing is
 * until COMMIT; outside one, any statement but a SELECT commits on its own. */
static bool commits(struct conn *c, const char *sql) {
        if (strcmp(sql, "COMMIT") == 0)
                return true;
        if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
                return false;
        return strncmp(sql, "SELECT", 6) != 0 && strcmp(sql, "BEGIN") != 0 &&
               strcmp(sql, "ROLLBACK") != 0;
}

/* Run one statement with typed parameters; *ret is the result (PQclear it). */
static int value_json(PGresult *res, int row, int col, json_t **ret, struct mp_error *err) {
        const char *name = PQfname(res, col), *v;
        size_t len;
        char *end;

        if (PQgetisnull(res, row, col)) {
                *ret = json_null();
                return 0;
        }
        v = PQgetvalue(res, row, col);
        len = (size_t) PQgetlength(res, row, col);
        switch (PQftype(res, col)) {
        case OID_INT2:
        case OID_INT4:
        case OID_INT8: {
                long long i;
                errno = 0;
                i = strtoll(v, &end, 10);
                if (errno || end == v || *end)
                        return mp_error_set(err, EIO, 500, "storage",
                                            "column %s holds '%s', not an integer", name, v);
                *ret = json_integer((json_int_t) i);
                break;
        }
        case OID_FLOAT4:
        case OID_FLOAT8:
        case OID_NUMERIC:
                *ret = json_real(strtod(v, NULL));
                break;
        case OID_BOOL: /* SQLite has no booleans: 1 or 0, as it would answer */
                *ret = json_integer(v[0] == 't');
                break;
        default:
                return mp_store_text_value(name, v, len, ret, err);
        }
        return *ret ? 0 : -ENOMEM;
}

static int row_json(PGresult *res, int row, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *o = json_object();
        int n = PQnfields(res);

        if (!o)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                json_t *v = NULL;
                TRY(value_json(res, row, i, &v, err));
                if (json_object_set_new(o, PQfname(res, i), v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}


static int pg_query(struct mp_store_conn *cc, const char *sql, bool stable,
                    struct mp_store_param *p, size_t n, json_t *rows, const char *what,
                    struct mp_error *err) {
        struct conn *c = (struct conn *) cc;
        struct pg_store *s = c->s;
        const char *values[MAX_PARAMS];
        Oid types[MAX_PARAMS];
        char nums[MAX_PARAMS][24];
        char *clean[MAX_PARAMS] = { 0 };
        char text[SQL_MAX];
        _cleanup_result_ PGresult *res = NULL;
        ExecStatusType st;
        int r = 0;

        /* Our own invariant: the statements are ours, with few parameters. */
        assert(n <= MAX_PARAMS);
        if (to_dollars(sql, text, sizeof(text)) < 0) {
                mp_store_params_free(p, n);
                return mp_error_set(err, E2BIG, 500, "storage", "%s: statement too long", what);
        }
        for (size_t i = 0; i < n; i++) {
                types[i] = p[i].type == MP_STORE_INT ? OID_INT8 : OID_TEXT;
                if (p[i].null)
                        values[i] = NULL;
                else if (p[i].type == MP_STORE_INT) {
                        snprintf(nums[i], sizeof(nums[i]), "%" PRId64, p[i].num);
                        values[i] = nums[i];
                } else if (!mp_utf8_valid(p[i].text, p[i].len)) {
                        /* Text that is not UTF-8 (logs hold whatever a function printed)
                         * is stored with U+FFFD for the bad bytes, which is what SQLite
                         * hands back for it; the server would refuse it. */
                        _cleanup_json_ json_t *v = mp_store_text_json(p[i].text, p[i].len);
                        clean[i] = v ? strdup(json_string_value(v)) : NULL;
                        if (!clean[i])
                                r = -ENOMEM;
                        values[i] = clean[i];
                } else
                        values[i] = p[i].text;
        }
        if (r >= 0) {
                if (commits(c, text))
                        c->sent_write = true;
                res = PQexecParams(c->pg, text, (int) n, types, values, NULL, NULL, 0);
        }
        for (size_t i = 0; i < n; i++)
                free(clean[i]);
        mp_store_params_free(p, n);
        if (r < 0)
                return r;
        st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
                return sql_fail(s, c, res, what, err);
        if (rows) {
                int count = PQntuples(res);
                for (int i = 0; i < count; i++) {
                        json_t *row = NULL;
                        TRY(row_json(res, i, &row, err));
                        if (json_array_append_new(rows, row) < 0)
                                return -ENOMEM;
                }
                return count;
        }
        {
                const char *t = PQcmdTuples(res);
                long count = 0;
                if (t && *t && mp_parse_long(t, 0, INT32_MAX, &count) < 0)
                        return mp_error_set(err, EIO, 500, "storage", "%s: the server reported '%s' rows",
                                            what, t);
                return (int) count;
        }
}

static int simple(struct conn *c, const char *sql, const char *what, struct mp_error *err) {
        int r = pg_query(&c->head, sql, true, NULL, 0, NULL, what, err);
        return r < 0 ? r : 0;
}

/* Commit when r >= 0 (returning r), roll back otherwise (returning r). */
static int tx_end(struct conn *c, int r, struct mp_error *err) {
        if (r >= 0) {
                int q = simple(c, "COMMIT", "committing a transaction", err);
                if (q >= 0)
                        return r;
                r = q;
        }
        if (PQstatus(c->pg) == CONNECTION_OK && PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
                PGresult *res = PQexec(c->pg, "ROLLBACK");
                PQclear(res);
        }
        return r;
}

static int pg_tx(struct mp_store_conn *cc, int what, struct mp_error *err) {
        struct conn *c = (struct conn *) cc;

        if (what > 0)
                return simple(c, "BEGIN", "starting a transaction", err);
        return tx_end(c, what == 0 ? 0 : -1, err);
}

/* The DDL is several statements: the simple query protocol runs them all. */
static int pg_script(struct mp_store_conn *cc, const char *sql, const char *what,
                     struct mp_error *err) {
        struct conn *c = (struct conn *) cc;
        _cleanup_result_ PGresult *res = PQexec(c->pg, sql);

        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK)
                return sql_fail(c->s, c, res, what, err);
        return 0;
}

/* Processes that start together take turns: the advisory lock is held by the session,
 * so a process that dies mid-migration releases it with its connection. */
static int pg_migration_lock(struct mp_store_conn *cc, bool lock, struct mp_error *err) {
        struct mp_store_param p[] = { PI(MIGRATION_LOCK_KEY) };
        int r;

        if (!lock && PQstatus(((struct conn *) cc)->pg) != CONNECTION_OK)
                return 0;
        r = pg_query(cc, lock ? "SELECT pg_advisory_lock(?1)" : "SELECT pg_advisory_unlock(?1)", true, p,
                     1, NULL, lock ? "waiting for the migration lock" : "releasing the migration lock",
                     err);
        return r < 0 ? r : 0;
}

/* A failure that running the transaction again cures. */
static bool deadlock(struct conn *c) {
        return strcmp(c->state, "40P01") == 0 || strcmp(c->state, "40001") == 0;
}

/* fn on a pooled connection; run once more on a fresh connection when the first broke
 * before anything it sent could have been committed, and again when an atomic one met
 * a deadlock (the server rolled it back). */
static int pg_run(struct mp_store *ss, unsigned kind, mp_store_fn fn, void *ctx,
                  struct mp_error *err) {
        struct pg_store *s = (struct pg_store *) ss;
        int broken = 0, deadlocks = 0;

        for (;;) {
                struct conn *c = NULL;
                bool again;
                int r = conn_take(s, &c, err);

                if (r < 0)
                        return r;
                c->state[0] = 0;
                if (kind & MP_RUN_ATOMIC) {
                        r = pg_tx(&c->head, 1, err);
                        if (r >= 0)
                                r = tx_end(c, fn(&c->head, ctx, err), err);
                } else
                        r = fn(&c->head, ctx, err);
                again = r == -EAGAIN && broken++ == 0 && !c->sent_write && PQstatus(c->pg) == CONNECTION_BAD;
                if (!again && r == -EBUSY && (kind & MP_RUN_ATOMIC) && deadlock(c))
                        again = ++deadlocks < DEADLOCK_TRIES;
                conn_give(s, c);
                if (!again)
                        return r;
        }
}

static int show_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        return pg_query(c, "SHOW synchronous_commit", true, NULL, 0, ctx, "reading a setting", err);
}

static int pg_info(struct mp_store *ss, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *rows = json_array();
        json_t *v;

        if (!rows)
                return -ENOMEM;
        TRY(pg_run(ss, MP_RUN_READ, show_fn, rows, err));
        v = json_object_get(json_array_get(rows, 0), "synchronous_commit");
        *ret = json_pack("{s:s,s:s,s:O}", "backend", "postgres", "durability", "server",
                         "synchronous_commit", v ? v : json_null());
        return *ret ? 0 : -ENOMEM;
}

static void postgres_close(struct pg_store *s) {
        if (!s)
                return;
        for (size_t i = 0; s->conns && i < s->n_conns; i++)
                if (s->conns[i].pg)
                        PQfinish(s->conns[i].pg);
        free(s->conns);
        free(s->conninfo);
        pthread_cond_destroy(&s->freed);
        pthread_mutex_destroy(&s->lock);
        free(s);
}
static void postgres_closep(struct pg_store **s) {
        postgres_close(*s);
}

static void conninfo_freep(PQconninfoOption **o) {
        if (*o)
                PQconninfoFree(*o);
}

/* Split our own parameters (pool=N) off the URL's query; the rest is for libpq. */
static int parse_url(struct pg_store *s, const char *url, struct mp_error *err) {
        _cleanup_(conninfo_freep) PQconninfoOption *opts = NULL;
        const char *q = strchr(url, '?'), *host = NULL, *port = NULL, *db = NULL;
        struct mp_buf b = { 0 };
        bool first = true;
        char *libpq_err = NULL;

        s->n_conns = POOL_DEFAULT;
        if (mp_buf_append(&b, url, q ? (size_t) (q - url) : strlen(url)) < 0)
                return -ENOMEM;
        for (const char *p = q ? q + 1 : NULL; p && *p;) {
                const char *amp = strchr(p, '&');
                size_t len = amp ? (size_t) (amp - p) : strlen(p);

                if (len > 5 && strncmp(p, "pool=", 5) == 0) {
                        char num[16];
                        long n;
                        snprintf(num, sizeof(num), "%.*s", (int) MP_MIN(len - 5, sizeof(num) - 1), p + 5);
                        if (len - 5 >= sizeof(num) || mp_parse_long(num, 1, POOL_MAX, &n) < 0) {
                                mp_buf_free(&b);
                                return mp_error_set(err, EINVAL, 500, "config",
                                                    "the store URL's pool= must be a number of "
                                                    "connections from 1 to %d", POOL_MAX);
                        }
                        s->n_conns = (size_t) n;
                } else if (len > 0) {
                        if (mp_buf_append(&b, first ? "?" : "&", 1) < 0 || mp_buf_append(&b, p, len) < 0) {
                                mp_buf_free(&b);
                                return -ENOMEM;
                        }
                        first = false;
                }
                p = amp ? amp + 1 : NULL;
        }
        s->conninfo = mp_buf_steal(&b);
        if (!s->conninfo)
                return -ENOMEM;

        opts = PQconninfoParse(s->conninfo, &libpq_err);
        if (!opts) {
                char line[512];
                one_line(libpq_err ? libpq_err : "out of memory", line, sizeof(line));
                PQfreemem(libpq_err);
                return mp_error_set(err, EINVAL, 500, "config",
                                    "the PostgreSQL store URL is not one libpq understands (%s): "
                                    "write postgres://user@host:port/dbname", line);
        }
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (!o->val || !*o->val)
                        continue;
                if (strcmp(o->keyword, "host") == 0 || (strcmp(o->keyword, "hostaddr") == 0 && !host))
                        host = o->val;
                else if (strcmp(o->keyword, "port") == 0)
                        port = o->val;
                else if (strcmp(o->keyword, "dbname") == 0)
                        db = o->val;
        }
        snprintf(s->where, sizeof(s->where), "%s%s%s/%s", host ? host : "localhost",
                 port ? ":" : "", port ? port : "", db ? db : "");
        return 0;
}

static int postgres_open(const char *url, struct mp_store **ret, struct mp_error *err) {
        _cleanup_(postgres_closep) struct pg_store *s = NULL;
        struct conn *c = NULL;

        if (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "a PostgreSQL store URL starts with postgres:// (write "
                                    "postgres://user@host:port/dbname)");
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->common.drv = &mp_store_postgres_driver;
        pthread_mutex_init(&s->lock, NULL);
        mp_cond_init_monotonic(&s->freed);
        TRY(parse_url(s, url, err));
        snprintf(s->common.where, sizeof(s->common.where), "the database at %s", s->where);
        s->conns = calloc(s->n_conns, sizeof(*s->conns));
        if (!s->conns)
                return -ENOMEM;
        for (size_t i = 0; i < s->n_conns; i++)
                s->conns[i] = (struct conn) { .head = { &mp_store_postgres_driver }, .s = s };

        /* One connection now, so that a bad URL or an unreachable server is said at
         * start-up (before the migrations, which the caller runs next); the others
         * connect when first needed. */
        TRY(conn_take(s, &c, err));
        conn_give(s, c);
        *ret = (struct mp_store *) TAKE_PTR(s);
        return 0;
}

static void pg_close(struct mp_store *s) {
        postgres_close((struct pg_store *) s);
}

const struct mp_store_driver mp_store_postgres_driver = {
        .scheme = "postgres",
        .row_locks = true,
        .open = postgres_open,
        .close = pg_close,
        .run = pg_run,
        .query = pg_query,
        .script = pg_script,
        .tx = pg_tx,
        .migration_lock = pg_migration_lock,
        .info = pg_info,
};
