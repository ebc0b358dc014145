/* store/: the "postgres:" backend (libpq), for several processes on several hosts
 * sharing one database. Same tables, migrations, rows and errors as the SQLite backend:
 * the DDL, most SQL texts and the column lists come from store-sql.h.
 *
 * Connections: a small pool (?pool=N in the URL, default 4). Each operation takes one
 * connection for its whole duration, so a transaction never spans two connections and
 * operations from different threads run in parallel on the server.
 *
 * Concurrency: the server's row locks do what SQLite's single writer did. job_claim is
 * one UPDATE whose subquery picks the oldest claimable job FOR UPDATE SKIP LOCKED, so
 * workers on many hosts claim at once and never get the same job; function_update
 * locks the function row before it numbers the new version; migrations run under a
 * session advisory lock, so processes starting together apply each one exactly once.
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
#include "store/store-sql.h"

#define POOL_DEFAULT 4
#define POOL_MAX 64
#define POOL_WAIT_MS 30000
#define MAX_PARAMS 32
#define SQL_MAX 2048
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
        PGconn *pg;          /* NULL until first used */
        bool busy;           /* taken by an operation */
        bool sent_write;     /* this attempt sent a change that a server may have committed */
};

struct mp_store {
        struct mp_store_base base; /* first, for MP_STORE() */
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

static int unavailable(struct mp_store *s, PGconn *pg, const char *what, struct mp_error *err) {
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
static int sql_fail(struct mp_store *s, struct conn *c, PGresult *res, const char *what,
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
        e = errno_of_state(res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL);
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

static int conn_open(struct mp_store *s, struct conn *c, struct mp_error *err) {
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
static int conn_ready(struct mp_store *s, struct conn *c, struct mp_error *err) {
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
static int conn_take(struct mp_store *s, struct conn **ret, struct mp_error *err) {
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

static void conn_give(struct mp_store *s, struct conn *c) {
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

/* The body of every operation: `call` runs with `c`, a pooled connection, and runs
 * once more on a fresh connection when the first broke before anything it sent could
 * have been committed. */
#define WITH_CONN(s, err, call)                                                          \
        do {                                                                             \
                for (int _try = 0;; _try++) {                                            \
                        struct conn *c = NULL;                                           \
                        bool _again;                                                     \
                        int _r = conn_take((s), &c, (err));                              \
                        if (_r < 0)                                                      \
                                return _r;                                               \
                        _r = (call);                                                     \
                        _again = _r == -EAGAIN && _try == 0 && !c->sent_write &&         \
                                 PQstatus(c->pg) == CONNECTION_BAD;                      \
                        conn_give((s), c);                                               \
                        if (!_again)                                                     \
                                return _r;                                               \
                }                                                                        \
        } while (0)

/* ---- statements ---- */

struct param {
        Oid type;      /* OID_TEXT or OID_INT8 */
        bool null;
        const char *text;
        int64_t num;
        char *owned;   /* freed after the statement, when set (text points into it) */
};

#define PT(v) ((struct param) { .type = OID_TEXT, .null = (v) == NULL, .text = (v) })
#define PI(v) ((struct param) { .type = OID_INT8, .num = (v) })
#define PI_NULL ((struct param) { .type = OID_INT8, .null = true })

static void params_free(struct param *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(p[i].owned);
                p[i].owned = NULL;
        }
}

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
static int run(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
               PGresult **ret, const char *what, struct mp_error *err) {
        const char *values[MAX_PARAMS];
        Oid types[MAX_PARAMS];
        char nums[MAX_PARAMS][24];
        char text[SQL_MAX];
        PGresult *res;
        ExecStatusType st;

        /* Our own invariant: the statements are ours, with few parameters. */
        assert(n <= MAX_PARAMS);
        if (to_dollars(sql, text, sizeof(text)) < 0) {
                params_free(p, n);
                return mp_error_set(err, E2BIG, 500, "storage", "%s: statement too long", what);
        }
        for (size_t i = 0; i < n; i++) {
                types[i] = p[i].type;
                if (p[i].null)
                        values[i] = NULL;
                else if (p[i].type == OID_INT8) {
                        snprintf(nums[i], sizeof(nums[i]), "%" PRId64, p[i].num);
                        values[i] = nums[i];
                } else
                        values[i] = p[i].text;
        }
        if (commits(c, text))
                c->sent_write = true;
        res = PQexecParams(c->pg, text, (int) n, types, values, NULL, NULL, 0);
        params_free(p, n);
        st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
        if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
                int r = sql_fail(s, c, res, what, err);
                PQclear(res);
                return r;
        }
        *ret = res;
        return 0;
}

/* A statement without rows (or whose rows do not matter): the count it changed. */
static int run_count(struct mp_store *s, struct conn *c, const char *sql, struct param *p,
                     size_t n, const char *what, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;
        const char *t;
        long count = 0;

        TRY(run(s, c, sql, p, n, &res, what, err));
        t = PQcmdTuples(res);
        if (t && *t && mp_parse_long(t, 0, INT32_MAX, &count) < 0)
                return mp_error_set(err, EIO, 500, "storage", "%s: the server reported '%s' rows", what, t);
        return (int) count;
}

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
                if (is_json_column(name)) {
                        json_error_t jerr;
                        *ret = json_loadb(v, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
                        if (!*ret)
                                return mp_error_set(err, EIO, 500, "storage",
                                                    "column %s holds JSON that does not parse: %s",
                                                    name, jerr.text);
                } else
                        *ret = text_json(v, len);
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

/* One row into *ret: 0, -ENOENT (no message: the caller names what is missing). */
static int get_row(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
                   json_t **ret, const char *what, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;

        TRY(run(s, c, sql, p, n, &res, what, err));
        if (PQntuples(res) < 1)
                return -ENOENT;
        return row_json(res, 0, ret, err);
}

/* Every row, appended to arr; returns the count. */
static int get_all(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
                   json_t *arr, const char *what, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;
        int rows;

        TRY(run(s, c, sql, p, n, &res, what, err));
        rows = PQntuples(res);
        for (int i = 0; i < rows; i++) {
                json_t *row = NULL;
                TRY(row_json(res, i, &row, err));
                if (json_array_append_new(arr, row) < 0)
                        return -ENOMEM;
        }
        return rows;
}

/* Does the query return a row? 1, 0 or -errno. */
static int exists(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
                  const char *what, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;

        TRY(run(s, c, sql, p, n, &res, what, err));
        return PQntuples(res) > 0;
}

/* The first column of the first row as an integer. */
static int get_int(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
                   int64_t *ret, const char *what, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;
        _cleanup_json_ json_t *v = NULL;

        TRY(run(s, c, sql, p, n, &res, what, err));
        if (PQntuples(res) < 1 || PQnfields(res) < 1)
                return -ENOENT;
        TRY(value_json(res, 0, 0, &v, err));
        if (!json_is_integer(v))
                return mp_error_set(err, EIO, 500, "storage", "%s: not an integer", what);
        *ret = json_integer_value(v);
        return 0;
}

static int tx_begin(struct mp_store *s, struct conn *c, struct mp_error *err) {
        int r = run_count(s, c, "BEGIN", NULL, 0, "starting a transaction", err);
        return r < 0 ? r : 0;
}

/* Commit when r >= 0 (returning r), roll back otherwise (returning r). */
static int tx_end(struct mp_store *s, struct conn *c, int r, struct mp_error *err) {
        if (r >= 0) {
                int q = run_count(s, c, "COMMIT", NULL, 0, "committing a transaction", err);
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

/* ---- rows from callers ---- */

/* How a caller's field becomes a parameter: the same rules and messages as SQLite's
 * bind_col. Text that is not UTF-8 (logs hold whatever a function printed) is stored
 * with U+FFFD for the bad bytes, which is what SQLite hands back for it. */
static int col_param(const struct col *c, json_t *row, const char *what, struct param *ret,
                     struct mp_error *err) {
        json_t *v = json_object_get(row, c->name);

        if (!v || json_is_null(v)) {
                if (c->flags & COL_REQUIRED)
                        return invalid(err, "%s: `%s` is missing", what, c->name);
                if (c->kind == COL_INT)
                        *ret = PI((c->flags & COL_NOW) ? mp_now_ms() : 0);
                else
                        *ret = PT(c->def);
                return 0;
        }
        switch (c->kind) {
        case COL_JSON: {
                char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        return mp_error_set(err, ENOMEM, 500, "storage", "%s: cannot serialize `%s`",
                                            what, c->name);
                *ret = (struct param) { .type = OID_TEXT, .text = text, .owned = text };
                return 0;
        }
        case COL_INT:
                if (json_is_integer(v))
                        *ret = PI(json_integer_value(v));
                else if (json_is_boolean(v))
                        *ret = PI(json_is_true(v) ? 1 : 0);
                else
                        return invalid(err, "%s: `%s` must be an integer", what, c->name);
                return 0;
        case COL_TEXT: {
                const char *t;
                size_t len;
                if (!json_is_string(v))
                        return invalid(err, "%s: `%s` must be a string", what, c->name);
                t = json_string_value(v);
                len = json_string_length(v);
                if (c->allowed) {
                        bool ok = false;
                        for (const char *const *a = c->allowed; *a && !ok; a++)
                                ok = strcmp(*a, t) == 0;
                        if (!ok)
                                return invalid(err, "%s: `%s` cannot be '%s'", what, c->name, t);
                }
                if (!mp_utf8_valid(t, len)) {
                        _cleanup_json_ json_t *clean = text_json(t, len);
                        char *copy = clean ? strdup(json_string_value(clean)) : NULL;
                        if (!copy)
                                return -ENOMEM;
                        *ret = (struct param) { .type = OID_TEXT, .text = copy, .owned = copy };
                } else
                        *ret = PT(t);
                return 0;
        }
        }
        return -EINVAL;
}

/* INSERT a row built from the caller's object. */
static int insert_row(struct mp_store *s, struct conn *c, const char *table, const struct col *cols,
                      size_t n_cols, json_t *row, const char *what, struct mp_error *err) {
        struct param p[MAX_PARAMS] = { 0 };
        char sql[SQL_MAX];
        size_t n;
        int r;

        assert(n_cols <= MAX_PARAMS);
        n = (size_t) snprintf(sql, sizeof(sql), "INSERT INTO %s (", table);
        for (size_t i = 0; i < n_cols; i++)
                n += (size_t) snprintf(sql + n, sizeof(sql) - n, "%s%s", i ? ", " : "", cols[i].name);
        n += (size_t) snprintf(sql + n, sizeof(sql) - n, ") VALUES (");
        for (size_t i = 0; i < n_cols; i++)
                n += (size_t) snprintf(sql + n, sizeof(sql) - n, "%s$%zu", i ? ", " : "", i + 1);
        n += (size_t) snprintf(sql + n, sizeof(sql) - n, ")");
        assert(n < sizeof(sql));
        for (size_t i = 0; i < n_cols; i++) {
                r = col_param(&cols[i], row, what, &p[i], err);
                if (r < 0) {
                        params_free(p, i);
                        return r;
                }
        }
        r = run_count(s, c, sql, p, n_cols, what, err);
        return r < 0 ? r : 0;
}

/* ---- lists ---- */

static int run_page(struct mp_store *s, struct conn *c, const char *sql, struct param *p, size_t n,
                    int limit, const char *time_col, struct mp_store_list *ret, const char *what,
                    struct mp_error *err) {
        _cleanup_json_ json_t *items = json_array();
        _cleanup_free_ char *next = NULL;
        int rows;

        if (!items) {
                params_free(p, n);
                return -ENOMEM;
        }
        rows = get_all(s, c, sql, p, n, items, what, err);
        if (rows < 0)
                return rows;
        if (rows > limit) {
                json_t *last;
                json_array_remove(items, (size_t) limit);
                last = json_array_get(items, (size_t) limit - 1);
                next = cursor_encode(json_integer_value(json_object_get(last, time_col)),
                                     json_string_value(json_object_get(last, "id")));
                if (!next)
                        return -ENOMEM;
        }
        ret->items = TAKE_PTR(items);
        ret->next_cursor = TAKE_PTR(next);
        return 0;
}

/* ---- open, migrate, close ---- */

static int migration_apply(struct mp_store *s, struct conn *c, int version, struct mp_error *err) {
        PGresult *res;
        int r;

        r = exists(s, c, SQL_MIGRATION_HAS, (struct param[]) { PI(version) }, 1,
                   "reading schema_migrations", err);
        if (r != 0)
                return r; /* already applied */
        /* The DDL is several statements: the simple query protocol runs them all. */
        res = PQexec(c->pg, migrations[version - 1]);
        if (!res || PQresultStatus(res) != PGRES_COMMAND_OK) {
                r = sql_fail(s, c, res, "applying a migration", err);
                PQclear(res);
                mp_error_prefix(err, "migration %d", version);
                return r;
        }
        PQclear(res);
        return run_count(s, c, SQL_MIGRATION_ADD,
                         (struct param[]) { PI(version), PI(mp_now_ms()) }, 2,
                         "recording a migration", err);
}

static int migrate_locked(struct mp_store *s, struct conn *c, struct mp_error *err) {
        const int known = (int) ELEMENTSOF(migrations);
        int64_t have = 0;

        TRY(run_count(s, c, SQL_MIGRATIONS_TABLE, NULL, 0, "creating schema_migrations", err));
        TRY(get_int(s, c, SQL_MIGRATION_MAX, NULL, 0, &have, "reading schema_migrations", err));
        if (have > known)
                return mp_error_set(err, EPROTO, 500, "storage",
                                    "the database is at schema version %" PRId64 ", newer than "
                                    "this program knows (%d): run a newer mecapy", have, known);
        for (int v = (int) have + 1; v <= known; v++) {
                TRY(tx_begin(s, c, err));
                TRY(tx_end(s, c, migration_apply(s, c, v, err), err));
        }
        return 0;
}

/* Processes that start together take turns: the advisory lock is held by the session,
 * so a process that dies mid-migration releases it with its connection. */
static int migrate(struct mp_store *s, struct conn *c, struct mp_error *err) {
        int r;

        TRY(run_count(s, c, "SELECT pg_advisory_lock(?1)", (struct param[]) { PI(MIGRATION_LOCK_KEY) },
                      1, "waiting for the migration lock", err));
        r = migrate_locked(s, c, err);
        if (PQstatus(c->pg) == CONNECTION_OK) {
                int q = run_count(s, c, "SELECT pg_advisory_unlock(?1)",
                                  (struct param[]) { PI(MIGRATION_LOCK_KEY) }, 1,
                                  "releasing the migration lock", r < 0 ? NULL : err);
                if (r >= 0 && q < 0)
                        r = q;
        }
        return r;
}

static void postgres_close(struct mp_store *s) {
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
static void postgres_closep(struct mp_store **s) {
        postgres_close(*s);
}

static void conninfo_freep(PQconninfoOption **o) {
        if (*o)
                PQconninfoFree(*o);
}

/* Split our own parameters (pool=N) off the URL's query; the rest is for libpq. */
static int parse_url(struct mp_store *s, const char *url, struct mp_error *err) {
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
        _cleanup_(postgres_closep) struct mp_store *s = NULL;
        struct conn *c = NULL;
        int r;

        if (strncmp(url, "postgres://", 11) != 0 && strncmp(url, "postgresql://", 13) != 0)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "a PostgreSQL store URL starts with postgres:// (write "
                                    "postgres://user@host:port/dbname)");
        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->base.ops = &mp_store_postgres_ops;
        pthread_mutex_init(&s->lock, NULL);
        mp_cond_init_monotonic(&s->freed);
        TRY(parse_url(s, url, err));
        s->conns = calloc(s->n_conns, sizeof(*s->conns));
        if (!s->conns)
                return -ENOMEM;

        /* One connection now, so that a bad URL or an unreachable server is said at
         * start-up; the others connect when first needed. */
        TRY(conn_take(s, &c, err));
        r = migrate(s, c, err);
        conn_give(s, c);
        if (r < 0) {
                if (r != -EAGAIN)
                        mp_error_prefix(err, "opening the database at %s", s->where);
                return r;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- identity ---- */

static int company_ensure_tx(struct mp_store *s, struct conn *c, const char *name, json_t **ret,
                             struct mp_error *err) {
        char id[MP_ID_LEN + 1];
        int r;

        mp_id_new(id);
        TRY(run_count(s, c, SQL_COMPANY_INSERT, (struct param[]) { PT(id), PT(name), PI(mp_now_ms()) },
                      3, "creating a company", err));
        r = get_row(s, c, SQL_COMPANY_BY_NAME, (struct param[]) { PT(name) }, 1, ret,
                    "reading a company", err);
        if (r == -ENOENT)
                return mp_error_set(err, EIO, 500, "storage", "company %s vanished", name);
        return r;
}

static int company_ensure_on(struct mp_store *s, struct conn *c, const char *name,
                             json_t **ret_company, struct mp_error *err) {
        json_t *row = NULL;
        int r;

        TRY(tx_begin(s, c, err));
        r = tx_end(s, c, company_ensure_tx(s, c, name, &row, err), err);
        if (r < 0) {
                json_decref(row);
                return r;
        }
        if (ret_company)
                *ret_company = row;
        else
                json_decref(row);
        return 0;
}

static int postgres_company_ensure(struct mp_store *s, const char *name, json_t **ret_company,
                                   struct mp_error *err) {
        if (!name || !*name)
                return invalid(err, "a company needs a `name`");
        WITH_CONN(s, err, company_ensure_on(s, c, name, ret_company, err));
}

static int user_create_on(struct mp_store *s, struct conn *c, json_t *user, struct mp_error *err) {
        int r = insert_row(s, c, "users", user_cols, ELEMENTSOF(user_cols), user, "creating a user", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "a user with the email '%s' (or that id) already exists",
                                    json_string_value(json_object_get(user, "email")));
        if (r == -ENOENT)
                return not_found(err, "creating a user: company %s does not exist",
                                 json_string_value(json_object_get(user, "company_id")));
        return r;
}

static int postgres_user_create(struct mp_store *s, json_t *user, struct mp_error *err) {
        WITH_CONN(s, err, user_create_on(s, c, user, err));
}

static int user_get_on(struct mp_store *s, struct conn *c, const char *sql, const char *value,
                       json_t **ret, struct mp_error *err) {
        return get_row(s, c, sql, (struct param[]) { PT(value) }, 1, ret, "reading a user", err);
}

static int user_get_named(struct mp_store *s, struct conn *c, const char *sql, const char *field,
                          const char *value, json_t **ret, struct mp_error *err) {
        int r = user_get_on(s, c, sql, value, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no user with %s '%s'", field, value);
        return r;
}

static int postgres_user_get(struct mp_store *s, const char *field, const char *value,
                             json_t **ret, struct mp_error *err) {
        const char *sql;

        if (field && strcmp(field, "id") == 0)
                sql = SQL_USER_BY_ID;
        else if (field && strcmp(field, "email") == 0)
                sql = SQL_USER_BY_EMAIL;
        else if (field && strcmp(field, "external_id") == 0)
                sql = SQL_USER_BY_EXTERNAL_ID;
        else
                return invalid(err, "users are looked up by id, email or external_id, not by '%s'",
                               field ? field : "(null)");
        if (!value)
                return not_found(err, "no user with an empty %s", field);
        WITH_CONN(s, err, user_get_named(s, c, sql, field, value, ret, err));
}

static int user_set_password_on(struct mp_store *s, struct conn *c, const char *user_id,
                                const char *hash, struct mp_error *err) {
        int r = run_count(s, c, SQL_USER_SET_PASSWORD, (struct param[]) { PT(hash), PT(user_id) }, 2,
                          "setting a password", err);

        if (r == 0)
                return not_found(err, "no user with id '%s'", user_id ? user_id : "");
        return r < 0 ? r : 0;
}

static int postgres_user_set_password(struct mp_store *s, const char *user_id, const char *hash,
                                      struct mp_error *err) {
        WITH_CONN(s, err, user_set_password_on(s, c, user_id, hash, err));
}

static int user_set_identity_on(struct mp_store *s, struct conn *c, const char *user_id,
                                const char *email, const char *role, const char *company_id,
                                struct mp_error *err) {
        int r = run_count(s, c, SQL_USER_SET_IDENTITY,
                          (struct param[]) { PT(email), PT(role), PT(company_id), PT(user_id) }, 4,
                          "updating a user's identity", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "another user already has the email '%s'", email ? email : "");
        if (r == 0)
                return not_found(err, "no user with id '%s'", user_id ? user_id : "");
        return r < 0 ? r : 0;
}

static int postgres_user_set_identity(struct mp_store *s, const char *user_id, const char *email,
                                      const char *role, const char *company_id,
                                      struct mp_error *err) {
        WITH_CONN(s, err, user_set_identity_on(s, c, user_id, email, role, company_id, err));
}

static int token_create_on(struct mp_store *s, struct conn *c, json_t *token, struct mp_error *err) {
        int r = insert_row(s, c, "tokens", token_cols, ELEMENTSOF(token_cols), token,
                           "creating a token", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "creating a token: a token with that id or hash already exists");
        if (r == -ENOENT)
                return not_found(err, "creating a token: user %s does not exist",
                                 json_string_value(json_object_get(token, "user_id")));
        return r;
}

static int postgres_token_create(struct mp_store *s, json_t *token, struct mp_error *err) {
        WITH_CONN(s, err, token_create_on(s, c, token, err));
}

static int token_lookup_rows(struct mp_store *s, struct conn *c, const char *hash, int64_t now,
                             json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *token = NULL, *user = NULL;
        const char *id;
        json_t *o;
        int r;

        r = get_row(s, c, SQL_TOKEN_LIVE, (struct param[]) { PT(hash), PI(now) }, 2, &token,
                    "looking up a token", err);
        if (r == -ENOENT)
                return not_found(err, "no live token matches");
        if (r < 0)
                return r;
        id = json_string_value(json_object_get(token, "id"));
        r = user_get_on(s, c, SQL_USER_BY_ID, json_string_value(json_object_get(token, "user_id")),
                        &user, err);
        if (r == -ENOENT)
                return not_found(err, "the token's user no longer exists");
        if (r < 0)
                return r;
        r = run_count(s, c, SQL_TOKEN_TOUCH, (struct param[]) { PI(now), PT(id) }, 2,
                      "recording a token's use", err);
        if (r < 0)
                return r;
        if (r > 0)
                json_object_set_new(token, "last_used_at", json_integer(now));
        o = json_pack("{s:O,s:O}", "token", token, "user", user);
        if (!o)
                return -ENOMEM;
        *ret = o;
        return 0;
}

static int token_lookup_on(struct mp_store *s, struct conn *c, const char *hash, int64_t now,
                           json_t **ret, struct mp_error *err) {
        json_t *o = NULL;
        int r;

        /* No transaction: this runs on every authenticated request, and BEGIN/COMMIT
         * would add two round trips to it. Two reads and a touch that writes at most
         * once a minute are each consistent on their own. */
        r = token_lookup_rows(s, c, hash, now, &o, err);
        if (r < 0) {
                json_decref(o);
                return r;
        }
        *ret = o;
        return 0;
}

static int postgres_token_lookup(struct mp_store *s, const char *token_hash, int64_t now,
                                 json_t **ret, struct mp_error *err) {
        if (!token_hash)
                return not_found(err, "no live token matches");
        WITH_CONN(s, err, token_lookup_on(s, c, token_hash, now, ret, err));
}

static int token_list_on(struct mp_store *s, struct conn *c, const char *user_id, json_t **ret,
                         struct mp_error *err) {
        _cleanup_json_ json_t *arr = json_array();

        if (!arr)
                return -ENOMEM;
        TRY(get_all(s, c, SQL_TOKEN_LIST, (struct param[]) { PT(user_id) }, 1, arr,
                    "listing tokens", err));
        *ret = TAKE_PTR(arr);
        return 0;
}

static int postgres_token_list(struct mp_store *s, const char *user_id, json_t **ret,
                               struct mp_error *err) {
        WITH_CONN(s, err, token_list_on(s, c, user_id, ret, err));
}

static int token_revoke_on(struct mp_store *s, struct conn *c, const char *user_id,
                           const char *token_id, int64_t now, struct mp_error *err) {
        int r = run_count(s, c, SQL_TOKEN_REVOKE, (struct param[]) { PI(now), PT(token_id), PT(user_id) },
                          3, "revoking a token", err);

        if (r != 0)
                return r < 0 ? r : 0;
        /* Nothing changed: revoked before (fine, revoking is idempotent) or not theirs. */
        r = exists(s, c, SQL_TOKEN_OF_USER, (struct param[]) { PT(token_id), PT(user_id) }, 2,
                   "revoking a token", err);
        if (r == 0)
                return not_found(err, "you have no token with id '%s'", token_id ? token_id : "");
        return r < 0 ? r : 0;
}

static int postgres_token_revoke(struct mp_store *s, const char *user_id, const char *token_id,
                                 int64_t now, struct mp_error *err) {
        WITH_CONN(s, err, token_revoke_on(s, c, user_id, token_id, now, err));
}

static int postgres_token_revoke_sessions(struct mp_store *s, const char *user_id,
                                          const char *except_token_id, int64_t now,
                                          struct mp_error *err) {
        WITH_CONN(s, err, run_count(s, c, SQL_TOKEN_REVOKE_SESSIONS,
                                    (struct param[]) { PI(now), PT(user_id), PT(except_token_id) }, 3,
                                    "revoking a user's sessions", err));
}

/* ---- functions ---- */

/* Insert `version` as version n of function id (a shallow copy gets the key columns). */
static int version_insert(struct mp_store *s, struct conn *c, const char *id, int n, json_t *version,
                          int64_t default_time, struct mp_error *err) {
        _cleanup_json_ json_t *v = json_is_object(version) ? json_copy(version) : NULL;
        json_t *t;

        if (!v)
                return invalid(err, "a function version must be an object");
        if (json_object_set_new(v, "function_id", json_string(id)) < 0 ||
            json_object_set_new(v, "version", json_integer(n)) < 0)
                return -ENOMEM;
        t = json_object_get(v, "created_at");
        if ((!t || json_is_null(t)) && default_time > 0)
                json_object_set_new(v, "created_at", json_integer(default_time));
        return insert_row(s, c, "function_versions", version_cols, ELEMENTSOF(version_cols), v,
                          "storing a function version", err);
}

static int function_create_tx(struct mp_store *s, struct conn *c, json_t *fn, json_t *version,
                              struct mp_error *err) {
        _cleanup_json_ json_t *f = json_copy(fn);
        json_t *created = json_object_get(fn, "created_at");
        int r;

        if (!f)
                return -ENOMEM;
        if (json_is_integer(created) && !json_object_get(fn, "updated_at"))
                json_object_set(f, "updated_at", created);
        r = insert_row(s, c, "functions", function_cols, ELEMENTSOF(function_cols), f,
                       "creating a function", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "you already have a function named '%s'",
                                    json_string_value(json_object_get(fn, "name")));
        if (r == -ENOENT)
                return not_found(err, "creating a function: its owner or company does not exist");
        if (r < 0)
                return r;
        return version_insert(s, c, json_string_value(json_object_get(fn, "id")), 1, version,
                              json_is_integer(created) ? json_integer_value(created) : 0, err);
}

static int function_create_on(struct mp_store *s, struct conn *c, json_t *fn, json_t *version,
                              struct mp_error *err) {
        TRY(tx_begin(s, c, err));
        return tx_end(s, c, function_create_tx(s, c, fn, version, err), err);
}

static int postgres_function_create(struct mp_store *s, json_t *fn, json_t *version,
                                    struct mp_error *err) {
        if (!json_is_object(fn))
                return invalid(err, "a function must be an object");
        WITH_CONN(s, err, function_create_on(s, c, fn, version, err));
}

static int function_get_on(struct mp_store *s, struct conn *c, const char *id, json_t **ret,
                           struct mp_error *err) {
        int r = get_row(s, c, SQL_FUNCTION_GET, (struct param[]) { PT(id) }, 1, ret,
                        "reading a function", err);

        if (r == -ENOENT)
                return not_found(err, "no function with id '%s'", id ? id : "");
        return r;
}

static int postgres_function_get(struct mp_store *s, const char *id, json_t **ret,
                                 struct mp_error *err) {
        WITH_CONN(s, err, function_get_on(s, c, id, ret, err));
}

static int function_find_on(struct mp_store *s, struct conn *c, const char *owner_id,
                            const char *name, json_t **ret, struct mp_error *err) {
        int r = get_row(s, c, SQL_FUNCTION_FIND, (struct param[]) { PT(owner_id), PT(name) }, 2, ret,
                        "reading a function", err);

        if (r == -ENOENT)
                return not_found(err, "you have no function named '%s'", name ? name : "");
        return r;
}

static int postgres_function_find(struct mp_store *s, const char *owner_id, const char *name,
                                  json_t **ret, struct mp_error *err) {
        WITH_CONN(s, err, function_find_on(s, c, owner_id, name, ret, err));
}

struct list_args {
        const char *a, *b, *c; /* the text filters, in parameter order */
        const char *cursor;
        int64_t cursor_t;
        char cursor_id[CURSOR_MAX_ID + 1];
        int limit;
};

static int list_on(struct mp_store *s, struct conn *c, const char *sql, const struct list_args *l,
                   const char *time_col, struct mp_store_list *ret, const char *what,
                   struct mp_error *err) {
        struct param p[] = {
                PT(l->a), PT(l->b), PT(l->c),
                l->cursor ? PI(l->cursor_t) : PI_NULL,
                PT(l->cursor ? l->cursor_id : NULL),
                PI(l->limit + 1),
        };
        return run_page(s, c, sql, p, ELEMENTSOF(p), l->limit, time_col, ret, what, err);
}

static int postgres_function_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                  struct mp_error *err) {
        struct list_args l = { 0 };

        TRY(filter_str(filter, "viewer_id", &l.a, err));
        TRY(filter_str(filter, "company_id", &l.b, err));
        TRY(filter_str(filter, "name", &l.c, err));
        TRY(filter_str(filter, "cursor", &l.cursor, err));
        TRY(filter_limit(filter, &l.limit, err));
        if (l.cursor)
                TRY(cursor_decode(l.cursor, &l.cursor_t, l.cursor_id, err));
        WITH_CONN(s, err, list_on(s, c, SQL_FUNCTION_LIST, &l, "created_at", ret,
                                  "listing functions", err));
}

/* The function row is locked until the transaction ends, so two updates at once
 * number their versions one after the other (SQLite's single writer did this). */
static const char SQL_FUNCTION_LATEST_LOCK[] =
        "SELECT latest_version FROM functions WHERE id = ?1 AND deleted_at = 0 FOR UPDATE";

static int function_update_tx(struct mp_store *s, struct conn *c, const char *id, json_t *fields,
                              json_t *version, int64_t now, int *ret_version, struct mp_error *err) {
        const struct col *set[ELEMENTSOF(function_update_cols)];
        struct param p[ELEMENTSOF(function_update_cols) + 3] = { 0 };
        char sql[512];
        size_t n_set = 0, len, np;
        const char *key;
        json_t *value;
        int64_t latest = 0;
        int v, r;

        r = get_int(s, c, SQL_FUNCTION_LATEST_LOCK, (struct param[]) { PT(id) }, 1, &latest,
                    "reading a function", err);
        if (r == -ENOENT)
                return not_found(err, "no function with id '%s'", id ? id : "");
        if (r < 0)
                return r;
        v = (int) latest;

        json_object_foreach(fields, key, value) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(function_update_cols); i++)
                        if (strcmp(key, function_update_cols[i].name) == 0)
                                break;
                if (i == ELEMENTSOF(function_update_cols))
                        return invalid(err, "updating a function: `%s` cannot be changed "
                                            "(description and visibility can)", key);
                set[n_set++] = &function_update_cols[i];
        }
        if (version) {
                TRY(version_insert(s, c, id, v + 1, version, now, err));
                v++;
        }

        len = (size_t) snprintf(sql, sizeof(sql),
                                "UPDATE functions SET updated_at = $1, latest_version = $2");
        for (size_t i = 0; i < n_set; i++)
                len += (size_t) snprintf(sql + len, sizeof(sql) - len, ", %s = $%zu", set[i]->name, i + 3);
        snprintf(sql + len, sizeof(sql) - len, " WHERE id = $%zu", n_set + 3);
        p[0] = PI(now);
        p[1] = PI(v);
        np = 2;
        for (size_t i = 0; i < n_set; i++) {
                r = col_param(set[i], fields, "updating a function", &p[np], err);
                if (r < 0) {
                        params_free(p, np);
                        return r;
                }
                np++;
        }
        p[np++] = PT(id);
        TRY(run_count(s, c, sql, p, np, "updating a function", err));
        if (ret_version)
                *ret_version = v;
        return 0;
}

static int function_update_on(struct mp_store *s, struct conn *c, const char *id, json_t *fields,
                              json_t *version, int64_t now, int *ret_version, struct mp_error *err) {
        int v = 0, r;

        TRY(tx_begin(s, c, err));
        r = tx_end(s, c, function_update_tx(s, c, id, fields, version, now, &v, err), err);
        if (r >= 0 && ret_version)
                *ret_version = v;
        return r;
}

static int postgres_function_update(struct mp_store *s, const char *id, json_t *fields,
                                    json_t *version, int64_t now, int *ret_version,
                                    struct mp_error *err) {
        WITH_CONN(s, err, function_update_on(s, c, id, fields, version, now, ret_version, err));
}

static int function_get_version_on(struct mp_store *s, struct conn *c, const char *id, int version,
                                   json_t **ret, struct mp_error *err) {
        int r = get_row(s, c, SQL_VERSION_GET, (struct param[]) { PT(id), PI(version) }, 2, ret,
                        "reading a function version", err);

        if (r == -ENOENT) {
                if (version)
                        return not_found(err, "function '%s' has no version %d", id ? id : "", version);
                return not_found(err, "no function with id '%s'", id ? id : "");
        }
        return r;
}

static int postgres_function_get_version(struct mp_store *s, const char *id, int version,
                                         json_t **ret, struct mp_error *err) {
        if (version < 0)
                return invalid(err, "a function version is a positive number, not %d", version);
        WITH_CONN(s, err, function_get_version_on(s, c, id, version, ret, err));
}

static int function_list_versions_on(struct mp_store *s, struct conn *c, const char *id,
                                     json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *arr = json_array();
        int n;

        if (!arr)
                return -ENOMEM;
        n = get_all(s, c, SQL_VERSION_LIST, (struct param[]) { PT(id) }, 1, arr,
                    "listing function versions", err);
        if (n < 0)
                return n;
        if (n == 0) /* every function has version 1 */
                return not_found(err, "no function with id '%s'", id ? id : "");
        *ret = TAKE_PTR(arr);
        return 0;
}

static int postgres_function_list_versions(struct mp_store *s, const char *id, json_t **ret,
                                           struct mp_error *err) {
        WITH_CONN(s, err, function_list_versions_on(s, c, id, ret, err));
}

static int function_delete_on(struct mp_store *s, struct conn *c, const char *id, int64_t now,
                              struct mp_error *err) {
        /* 0 would mean "live" */
        int r = run_count(s, c, SQL_FUNCTION_DELETE, (struct param[]) { PI(now > 0 ? now : 1), PT(id) },
                          2, "deleting a function", err);

        if (r == 0)
                return not_found(err, "no function with id '%s'", id ? id : "");
        return r < 0 ? r : 0;
}

static int postgres_function_delete(struct mp_store *s, const char *id, int64_t now,
                                    struct mp_error *err) {
        WITH_CONN(s, err, function_delete_on(s, c, id, now, err));
}

/* ---- tasks ---- */

static int task_by_key(struct mp_store *s, struct conn *c, json_t *task, json_t *key,
                       json_t **ret, struct mp_error *err) {
        return get_row(s, c, SQL_TASK_BY_KEY,
                       (struct param[]) { PT(json_string_value(json_object_get(task, "owner_id"))),
                                          PT(json_string_value(json_object_get(task, "function_id"))),
                                          PT(json_string_value(key)) },
                       3, ret, "looking up an idempotency key", err);
}

static int key_conflict(json_t *existing, json_t *key, json_t **ret_existing, struct mp_error *err) {
        if (ret_existing)
                *ret_existing = json_incref(existing);
        return mp_error_set(err, EEXIST, 409, "conflict",
                            "a task with idempotency key '%s' already exists for this function",
                            json_string_value(key));
}

static int task_create_tx(struct mp_store *s, struct conn *c, json_t *task, json_t *key,
                          json_t **ret_existing, struct mp_error *err) {
        int r;

        if (key) {
                _cleanup_json_ json_t *existing = NULL;
                r = task_by_key(s, c, task, key, &existing, err);
                if (r >= 0)
                        return key_conflict(existing, key, ret_existing, err);
                if (r != -ENOENT)
                        return r;
        }
        r = insert_row(s, c, "tasks", task_cols, ELEMENTSOF(task_cols), task, "creating a task", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "a task with id '%s' already exists",
                                    json_string_value(json_object_get(task, "id")));
        if (r == -ENOENT)
                return not_found(err, "creating a task: its function or owner does not exist");
        if (r < 0)
                return r;
        r = run_count(s, c, SQL_JOB_PUSH,
                      (struct param[]) { PT(json_string_value(json_object_get(task, "id"))) }, 1,
                      "queueing a task", err);
        return r < 0 ? r : 0;
}

static int task_create_on(struct mp_store *s, struct conn *c, json_t *task, json_t *key,
                          json_t **ret_existing, struct mp_error *err) {
        json_t *existing = NULL;
        int r;

        TRY(tx_begin(s, c, err));
        r = tx_end(s, c, task_create_tx(s, c, task, key, &existing, err), err);
        /* Two calls with one key at once: the second one's INSERT met the first's row in
         * the unique index (SQLite's single writer never lets this happen). Answer as if
         * it had come second: with the task the first one stored. */
        if (r == -EEXIST && key && !existing) {
                _cleanup_json_ json_t *found = NULL;
                if (task_by_key(s, c, task, key, &found, NULL) == 0)
                        r = key_conflict(found, key, &existing, err);
        }
        if (existing) {
                if (ret_existing)
                        *ret_existing = existing;
                else
                        json_decref(existing);
        }
        return r;
}

static int postgres_task_create(struct mp_store *s, json_t *task, json_t **ret_existing,
                                struct mp_error *err) {
        json_t *key;

        if (!json_is_object(task))
                return invalid(err, "a task must be an object");
        key = json_object_get(task, "idempotency_key");
        if (key && json_is_null(key))
                key = NULL;
        if (key && (!json_is_string(key) || json_string_length(key) == 0 ||
                    json_string_length(key) > MP_MAX_IDEMPOTENCY_KEY_LEN))
                return invalid(err, "`idempotency_key` must be a string of 1 to %d bytes",
                               MP_MAX_IDEMPOTENCY_KEY_LEN);
        WITH_CONN(s, err, task_create_on(s, c, task, key, ret_existing, err));
}

static int task_get_on(struct mp_store *s, struct conn *c, const char *id, json_t **ret,
                       struct mp_error *err) {
        int r = get_row(s, c, SQL_TASK_GET, (struct param[]) { PT(id) }, 1, ret, "reading a task", err);

        if (r == -ENOENT)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r;
}

static int postgres_task_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        WITH_CONN(s, err, task_get_on(s, c, id, ret, err));
}

/* After an update that changed n rows of task id: 1 moved, 0 not in the state, -ENOENT. */
static int moved_or_missing(struct mp_store *s, struct conn *c, int n, const char *id,
                            struct mp_error *err) {
        int r;

        if (n != 0)
                return n < 0 ? n : 1;
        r = exists(s, c, SQL_TASK_EXISTS, (struct param[]) { PT(id) }, 1, "reading a task", err);
        if (r == 0)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r < 0 ? r : 0;
}

static int postgres_task_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                              struct mp_error *err) {
        struct list_args l = { 0 };

        TRY(filter_str(filter, "owner_id", &l.a, err));
        if (!l.a)
                return invalid(err, "listing tasks needs `owner_id`");
        TRY(filter_str(filter, "function_id", &l.b, err));
        TRY(filter_str(filter, "status", &l.c, err));
        TRY(filter_str(filter, "cursor", &l.cursor, err));
        TRY(filter_limit(filter, &l.limit, err));
        if (l.cursor)
                TRY(cursor_decode(l.cursor, &l.cursor_t, l.cursor_id, err));
        WITH_CONN(s, err, list_on(s, c, SQL_TASK_LIST, &l, "queued_at", ret, "listing tasks", err));
}

static int task_move_on(struct mp_store *s, struct conn *c, const char *sql, const char *id,
                        const char *worker_id, int64_t now, const char *what, struct mp_error *err) {
        return moved_or_missing(s, c,
                                run_count(s, c, sql, (struct param[]) { PI(now), PT(worker_id), PT(id) },
                                          3, what, err),
                                id, err);
}

static int postgres_task_start(struct mp_store *s, const char *id, const char *worker_id,
                               int64_t now, struct mp_error *err) {
        WITH_CONN(s, err, task_move_on(s, c, SQL_TASK_START, id, worker_id, now, "starting a task", err));
}

static int postgres_task_retry(struct mp_store *s, const char *id, const char *worker_id,
                               int64_t now, struct mp_error *err) {
        WITH_CONN(s, err, task_move_on(s, c, SQL_TASK_RETRY, id, worker_id, now, "retrying a task", err));
}

static int task_finish_tx(struct mp_store *s, struct conn *c, const char *id, json_t *fields,
                          struct mp_error *err) {
        const struct col *set[ELEMENTSOF(finish_cols)];
        struct param p[ELEMENTSOF(finish_cols) + 1] = { 0 };
        size_t n_set = 0, len;
        const char *key;
        json_t *value;
        char sql[1024];
        int r;

        /* status and finished_at always; the others when present */
        set[n_set++] = &finish_cols[0];
        set[n_set++] = &finish_cols[1];
        json_object_foreach(fields, key, value) {
                size_t i;
                for (i = 0; i < ELEMENTSOF(finish_cols); i++)
                        if (strcmp(key, finish_cols[i].name) == 0)
                                break;
                if (i == ELEMENTSOF(finish_cols))
                        return invalid(err, "finishing a task: `%s` is not a column a finished "
                                            "task records", key);
                if (i >= 2)
                        set[n_set++] = &finish_cols[i];
        }
        len = (size_t) snprintf(sql, sizeof(sql), "UPDATE tasks SET ");
        for (size_t i = 0; i < n_set; i++)
                len += (size_t) snprintf(sql + len, sizeof(sql) - len, "%s%s = $%zu", i ? ", " : "",
                                         set[i]->name, i + 1);
        snprintf(sql + len, sizeof(sql) - len,
                 " WHERE id = $%zu AND status IN ('queued', 'running')", n_set + 1);
        for (size_t i = 0; i < n_set; i++) {
                r = col_param(set[i], fields, "finishing a task", &p[i], err);
                if (r < 0) {
                        params_free(p, i);
                        return r;
                }
        }
        p[n_set] = PT(id);
        r = moved_or_missing(s, c, run_count(s, c, sql, p, n_set + 1, "finishing a task", err), id, err);
        if (r <= 0)
                return r;
        TRY(run_count(s, c, SQL_JOB_DELETE, (struct param[]) { PT(id) }, 1,
                      "removing a finished task's job", err));
        return 1;
}

static int task_finish_on(struct mp_store *s, struct conn *c, const char *id, json_t *fields,
                          struct mp_error *err) {
        TRY(tx_begin(s, c, err));
        return tx_end(s, c, task_finish_tx(s, c, id, fields, err), err);
}

static int postgres_task_finish(struct mp_store *s, const char *id, json_t *fields,
                                struct mp_error *err) {
        if (!json_is_object(fields))
                return invalid(err, "finishing a task needs an object of fields");
        WITH_CONN(s, err, task_finish_on(s, c, id, fields, err));
}

static int task_requeue_tx(struct mp_store *s, struct conn *c, const char *id, struct mp_error *err) {
        int r;

        r = moved_or_missing(s, c,
                             run_count(s, c, SQL_TASK_REQUEUE, (struct param[]) { PT(id) }, 1,
                                       "requeueing a task", err),
                             id, err);
        if (r <= 0)
                return r;
        TRY(run_count(s, c, SQL_JOB_RELEASE, (struct param[]) { PT(id) }, 1,
                      "releasing a task's job", err));
        return 1;
}

static int task_requeue_on(struct mp_store *s, struct conn *c, const char *id, struct mp_error *err) {
        TRY(tx_begin(s, c, err));
        return tx_end(s, c, task_requeue_tx(s, c, id, err), err);
}

static int postgres_task_requeue(struct mp_store *s, const char *id, struct mp_error *err) {
        WITH_CONN(s, err, task_requeue_on(s, c, id, err));
}

/* ---- jobs ---- */

/* One statement: the subquery locks the oldest claimable job, skipping rows another
 * claimer holds locked right now, and the UPDATE takes it. A row whose lease another
 * claimer renewed meanwhile is re-checked against the WHERE after the lock (READ
 * COMMITTED), so a job is never handed out twice. */
static const char SQL_JOB_CLAIM_ONE[] =
        "UPDATE jobs SET worker_id = ?1, lease_until = ?2 WHERE task_id = ("
        " SELECT task_id FROM jobs WHERE lease_until = 0 OR lease_until < ?3"
        " ORDER BY enqueued_at, task_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING task_id";

static int job_claim_on(struct mp_store *s, struct conn *c, const char *worker_id, int64_t now,
                        int64_t lease_until, char *ret_task_id, struct mp_error *err) {
        _cleanup_result_ PGresult *res = NULL;
        const char *t;

        TRY(run(s, c, SQL_JOB_CLAIM_ONE, (struct param[]) { PT(worker_id), PI(lease_until), PI(now) },
                3, &res, "claiming a job", err));
        if (PQntuples(res) < 1)
                return 0;
        t = PQgetvalue(res, 0, 0);
        if (PQgetisnull(res, 0, 0) || strlen(t) > MP_ID_LEN)
                return mp_error_set(err, EIO, 500, "storage", "a job has a malformed task id");
        memcpy(ret_task_id, t, strlen(t) + 1);
        return 1;
}

static int postgres_job_claim(struct mp_store *s, const char *worker_id, int64_t now,
                              int64_t lease_until, char *ret_task_id, struct mp_error *err) {
        WITH_CONN(s, err, job_claim_on(s, c, worker_id, now, lease_until, ret_task_id, err));
}

static int job_extend_on(struct mp_store *s, struct conn *c, const char *task_id,
                         const char *worker_id, int64_t lease_until, struct mp_error *err) {
        int r = run_count(s, c, SQL_JOB_EXTEND,
                          (struct param[]) { PI(lease_until), PT(task_id), PT(worker_id) }, 3,
                          "extending a lease", err);

        if (r == 0)
                return not_found(err, "worker %s holds no job for task %s (finished, or its lease "
                                      "went to another worker)",
                                 worker_id ? worker_id : "", task_id ? task_id : "");
        return r < 0 ? r : 0;
}

static int postgres_job_extend(struct mp_store *s, const char *task_id, const char *worker_id,
                               int64_t lease_until, struct mp_error *err) {
        WITH_CONN(s, err, job_extend_on(s, c, task_id, worker_id, lease_until, err));
}

static int postgres_job_release_all(struct mp_store *s, struct mp_error *err) {
        WITH_CONN(s, err, run_count(s, c, SQL_JOB_RELEASE_ALL, NULL, 0, "releasing jobs", err));
}

/* ---- the audit log ---- */

static int postgres_audit_append(struct mp_store *s, json_t *event, struct mp_error *err) {
        WITH_CONN(s, err, insert_row(s, c, "audit", audit_cols, ELEMENTSOF(audit_cols), event,
                                     "writing an audit event", err));
}

static int audit_list_on(struct mp_store *s, struct conn *c, const char *company, const char *kind,
                         const char *actor, json_t *since, const struct list_args *l,
                         struct mp_store_list *ret, struct mp_error *err) {
        struct param p[] = {
                PT(company), PT(kind), PT(actor),
                json_is_integer(since) ? PI(json_integer_value(since)) : PI_NULL,
                l->cursor ? PI(l->cursor_t) : PI_NULL,
                PT(l->cursor ? l->cursor_id : NULL),
                PI(l->limit + 1),
        };
        return run_page(s, c, SQL_AUDIT_LIST, p, ELEMENTSOF(p), l->limit, "at", ret,
                        "listing audit events", err);
}

static int postgres_audit_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                               struct mp_error *err) {
        struct list_args l = { 0 };
        const char *company, *kind, *actor;
        json_t *since = json_object_get(filter, "since");

        TRY(filter_str(filter, "company_id", &company, err));
        TRY(filter_str(filter, "kind", &kind, err));
        TRY(filter_str(filter, "actor_id", &actor, err));
        TRY(filter_str(filter, "cursor", &l.cursor, err));
        TRY(filter_limit(filter, &l.limit, err));
        if (l.cursor)
                TRY(cursor_decode(l.cursor, &l.cursor_t, l.cursor_id, err));
        WITH_CONN(s, err, audit_list_on(s, c, company, kind, actor, since, &l, ret, err));
}

/* ---- companies and the catalogue ---- */

static int company_get_on(struct mp_store *s, struct conn *c, const char *company_id, json_t **ret,
                          struct mp_error *err) {
        int r = get_row(s, c, SQL_COMPANY_GET, (struct param[]) { PT(company_id) }, 1, ret,
                        "reading a company", err);

        if (r == -ENOENT)
                return not_found(err, "no company with id '%s'", company_id ? company_id : "");
        return r;
}

static int postgres_company_get(struct mp_store *s, const char *company_id, json_t **ret,
                                struct mp_error *err) {
        WITH_CONN(s, err, company_get_on(s, c, company_id, ret, err));
}

static int company_members_on(struct mp_store *s, struct conn *c, const char *company_id,
                              json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *arr = json_array();

        if (!arr)
                return -ENOMEM;
        TRY(get_all(s, c, SQL_COMPANY_MEMBERS, (struct param[]) { PT(company_id) }, 1, arr,
                    "listing a company's members", err));
        *ret = TAKE_PTR(arr);
        return 0;
}

static int postgres_company_members(struct mp_store *s, const char *company_id, json_t **ret,
                                    struct mp_error *err) {
        WITH_CONN(s, err, company_members_on(s, c, company_id, ret, err));
}

/* The company's admins are locked until the transaction ends, so two admins who demote
 * (or remove) each other at once are counted one after the other: the second sees the
 * first's change and is refused (SQLite's single writer does this by itself). */
static const char SQL_ADMINS_LOCK[] =
        "SELECT id FROM users WHERE company_id = ?1 AND role = 'admin' FOR UPDATE";

/* As in the SQLite backend: 0, -ENOENT or -EPERM. */
static int member_check(struct mp_store *s, struct conn *c, const char *company_id,
                        const char *user_id, const char *new_role, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int64_t others = 0;
        int r;

        TRY(run_count(s, c, SQL_ADMINS_LOCK, (struct param[]) { PT(company_id) }, 1,
                      "locking a company's admins", err));
        r = get_row(s, c, SQL_MEMBER_ROLE, (struct param[]) { PT(user_id), PT(company_id) }, 2, &row,
                    "reading a member's role", err);
        if (r == -ENOENT)
                return not_found(err, "no member with id '%s' in this company", user_id ? user_id : "");
        if (r < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(row, "role")) ?: "", "admin") != 0 ||
            (new_role && strcmp(new_role, "admin") == 0))
                return 0;
        TRY(get_int(s, c, SQL_OTHER_ADMINS, (struct param[]) { PT(company_id), PT(user_id) }, 2, &others,
                    "counting a company's admins", err));
        if (others == 0)
                return mp_error_set(err, EPERM, 409, "conflict",
                                    "the company would be left without an admin");
        return 0;
}

static int member_set_role_tx(struct mp_store *s, struct conn *c, const char *company_id,
                              const char *user_id, const char *role, struct mp_error *err) {
        TRY(member_check(s, c, company_id, user_id, role, err));
        TRY(run_count(s, c, SQL_MEMBER_SET_ROLE, (struct param[]) { PT(role), PT(user_id), PT(company_id) },
                      3, "setting a member's role", err));
        return 0;
}

static int member_set_role_on(struct mp_store *s, struct conn *c, const char *company_id,
                              const char *user_id, const char *role, struct mp_error *err) {
        TRY(tx_begin(s, c, err));
        return tx_end(s, c, member_set_role_tx(s, c, company_id, user_id, role, err), err);
}

static int postgres_member_set_role(struct mp_store *s, const char *company_id, const char *user_id,
                                    const char *role, struct mp_error *err) {
        bool known = false;

        for (const char *const *r = roles; *r && role; r++)
                known |= strcmp(*r, role) == 0;
        if (!known)
                return invalid(err, "a role is admin, member or viewer, not '%s'", role ? role : "");
        WITH_CONN(s, err, member_set_role_on(s, c, company_id, user_id, role, err));
}

static int member_remove_tx(struct mp_store *s, struct conn *c, const char *company_id,
                            const char *user_id, int64_t now, struct mp_error *err) {
        TRY(member_check(s, c, company_id, user_id, NULL, err));
        TRY(run_count(s, c, SQL_MEMBER_REMOVE, (struct param[]) { PT(user_id), PT(company_id) }, 2,
                      "removing a member", err));
        TRY(run_count(s, c, SQL_TOKENS_REVOKE_ALL, (struct param[]) { PI(now > 0 ? now : 1), PT(user_id) },
                      2, "revoking a removed member's tokens", err));
        return 0;
}

static int member_remove_on(struct mp_store *s, struct conn *c, const char *company_id,
                            const char *user_id, int64_t now, struct mp_error *err) {
        TRY(tx_begin(s, c, err));
        return tx_end(s, c, member_remove_tx(s, c, company_id, user_id, now, err), err);
}

static int postgres_member_remove(struct mp_store *s, const char *company_id, const char *user_id,
                                  int64_t now, struct mp_error *err) {
        WITH_CONN(s, err, member_remove_on(s, c, company_id, user_id, now, err));
}

static int catalogue_on(struct mp_store *s, struct conn *c, const struct catalogue_args *a,
                        struct mp_store_list *ret, struct mp_error *err) {
        struct param p[] = {
                PT(a->q), PT(a->tag), PT(a->author_email), PT(a->author_name),
                a->cursor ? PI(a->cursor_t) : PI_NULL,
                PT(a->cursor ? a->cursor_id : NULL),
                PI(a->limit + 1),
        };
        return run_page(s, c, SQL_CATALOGUE, p, ELEMENTSOF(p), a->limit, "created_at", ret,
                        "searching the catalogue", err);
}

static int catalogue_with_conn(struct mp_store *s, const struct catalogue_args *a,
                               struct mp_store_list *ret, struct mp_error *err) {
        WITH_CONN(s, err, catalogue_on(s, c, a, ret, err));
}

static int postgres_function_catalogue(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                       struct mp_error *err) {
        struct catalogue_args a;
        int r;

        TRY(catalogue_args_read(filter, &a, err));
        r = catalogue_with_conn(s, &a, ret, err);
        catalogue_args_free(&a);
        return r;
}

const struct mp_store_ops mp_store_postgres_ops = {
        .scheme = "postgres",
        .open = postgres_open,
        .close = postgres_close,
        .company_ensure = postgres_company_ensure,
        .user_create = postgres_user_create,
        .user_get = postgres_user_get,
        .user_set_password = postgres_user_set_password,
        .user_set_identity = postgres_user_set_identity,
        .token_create = postgres_token_create,
        .token_lookup = postgres_token_lookup,
        .token_list = postgres_token_list,
        .token_revoke = postgres_token_revoke,
        .token_revoke_sessions = postgres_token_revoke_sessions,
        .audit_append = postgres_audit_append,
        .audit_list = postgres_audit_list,
        .function_create = postgres_function_create,
        .function_get = postgres_function_get,
        .function_find = postgres_function_find,
        .function_list = postgres_function_list,
        .function_update = postgres_function_update,
        .function_get_version = postgres_function_get_version,
        .function_list_versions = postgres_function_list_versions,
        .function_delete = postgres_function_delete,
        .task_create = postgres_task_create,
        .task_get = postgres_task_get,
        .task_list = postgres_task_list,
        .task_start = postgres_task_start,
        .task_retry = postgres_task_retry,
        .task_finish = postgres_task_finish,
        .task_requeue = postgres_task_requeue,
        .job_claim = postgres_job_claim,
        .job_extend = postgres_job_extend,
        .job_release_all = postgres_job_release_all,
        .company_get = postgres_company_get,
        .company_members = postgres_company_members,
        .member_set_role = postgres_member_set_role,
        .member_remove = postgres_member_remove,
        .function_catalogue = postgres_function_catalogue,
};
