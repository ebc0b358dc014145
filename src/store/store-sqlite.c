/* store/: the "sqlite:" driver. One connection in WAL mode, shared by every thread: a
 * mutex lends it to one operation at a time (SQLite writes one transaction at a time
 * anyway); atomic operations run in BEGIN IMMEDIATE transactions, which also order them
 * against other processes on the same file (busy_timeout).
 *
 * Durability (?durability=, docs/operations.md#durability):
 *  - full (the default): synchronous=FULL, so a commit is on disk when it returns. An
 *    fsync costs a fraction of a millisecond, paid by every accepted call, so the
 *    commits of operations that wait at once are grouped: the first waiting thread
 *    becomes the leader, takes every operation queued behind the connection, runs each
 *    in its own savepoint of one transaction and commits them with one sync; then each
 *    caller gets its own answer. An operation that fails is rolled back to its savepoint
 *    alone; one whose error aborts the whole transaction (disk full, I/O) is answered
 *    with its error and the others run again in a new one. Nothing is visible to another
 *    thread before it is on disk: the leader holds the connection until the sync is done.
 *    Claims, leases and the move to running (MP_RUN_LOSSY) skip the sync: a restart after
 *    a power cut releases and redoes them anyway, and the WAL keeps commits in order,
 *    so the next synced commit carries them.
 *  - fast: synchronous=NORMAL; commits are not synced (the WAL is, at checkpoints): a
 *    power cut may lose the last commits, never corrupt the file; a crash of the process
 *    loses nothing. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sqlite3.h>

#include "base/limits.h"
#include "base/util.h"
#include "store/store-internal.h"

#define BUSY_TIMEOUT_MS 5000
#define STMT_CACHE_MAX 128
#define SYNC_FULL 2
#define SYNC_NORMAL 1

struct stmt_slot {
        const char *sql; /* the key: the address of one of the static SQL texts */
        sqlite3_stmt *st;
};

struct sqlite_store;

struct sqlite_conn {
        struct mp_store_conn head; /* first */
        struct sqlite_store *s;
};

/* A durable write waiting for a group commit; it lives on its caller's stack. */
struct waiter {
        mp_store_fn fn;
        void *ctx;
        struct mp_error *err;
        int r;
        bool done;
        struct waiter *next;
};

struct sqlite_store {
        struct mp_store common;    /* first */
        sqlite3 *db;
        pthread_mutex_t lock;      /* the connection, lent to one operation at a time */
        struct sqlite_conn conn;
        bool full;                 /* durability=full */
        int sync_now;              /* PRAGMA synchronous as the connection has it now */
        size_t n_stmts;
        struct stmt_slot stmts[STMT_CACHE_MAX];
        /* the group commit: writes queued behind the connection, and whether a leader
         * is committing a group now */
        pthread_mutex_t qlock;
        pthread_cond_t qcond;
        struct waiter *queue, **queue_tail;
        bool leading;
        uint64_t groups, grouped;  /* group commits, and the writes they carried */
};

static struct sqlite_store *of(struct mp_store *s) {
        return (struct sqlite_store *) s;
}

/* ---- errors ---- */

static int errno_of(int rc) {
        switch (rc) {
        case SQLITE_CONSTRAINT_UNIQUE:
        case SQLITE_CONSTRAINT_PRIMARYKEY:
                return EEXIST;
        case SQLITE_CONSTRAINT_FOREIGNKEY:
                return ENOENT;
        }
        switch (rc & 0xff) {
        case SQLITE_CONSTRAINT:
        case SQLITE_MISMATCH:
        case SQLITE_RANGE:
                return EINVAL;
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
                return EBUSY;
        case SQLITE_NOMEM:
                return ENOMEM;
        case SQLITE_FULL:
                return ENOSPC;
        case SQLITE_READONLY:
                return EROFS;
        case SQLITE_PERM:
        case SQLITE_AUTH:
        case SQLITE_CANTOPEN:
                return EACCES;
        case SQLITE_TOOBIG:
                return E2BIG;
        default:
                return EIO;
        }
}

/* Fill err from the connection's last error; returns -errno. */
static int sql_fail(struct sqlite_store *s, int rc, struct mp_error *err, const char *what) {
        int e = errno_of(rc);
        int status = e == EEXIST ? 409 : e == ENOENT ? 404 : e == EINVAL ? 422 : e == EBUSY ? 503 : 500;
        const char *code = e == EEXIST ? "conflict" : e == ENOENT ? "not_found" :
                           e == EINVAL ? "validation" : e == EBUSY ? "busy" : "storage";

        if (e == EBUSY)
                return mp_error_set(err, e, status, code,
                                    "%s: the database stayed locked for %d ms (another process "
                                    "holds a write transaction); try again",
                                    what, BUSY_TIMEOUT_MS);
        return mp_error_set(err, e, status, code, "%s: %s", what,
                            s && s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
}

static int exec_sql(struct sqlite_store *s, const char *sql, const char *what, struct mp_error *err) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : sql_fail(s, rc, err, what);
}

/* ---- statements ---- */

/* The prepared statement for one of the static SQL texts (keyed by its address);
 * *ret_cached false when the cache is full and the caller must finalize it. */
static int prepare(struct sqlite_store *s, const char *sql, bool stable, sqlite3_stmt **ret,
                   bool *ret_cached, struct mp_error *err) {
        sqlite3_stmt *st;
        int rc;

        if (stable)
                for (size_t i = 0; i < s->n_stmts; i++)
                        if (s->stmts[i].sql == sql) {
                                *ret = s->stmts[i].st;
                                *ret_cached = true;
                                return 0;
                        }
        stable = stable && s->n_stmts < STMT_CACHE_MAX;
        rc = sqlite3_prepare_v3(s->db, sql, -1, stable ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL);
        if (rc != SQLITE_OK)
                return sql_fail(s, rc, err, "preparing a statement");
        if (stable)
                s->stmts[s->n_stmts++] = (struct stmt_slot) { sql, st };
        *ret = st;
        *ret_cached = stable;
        return 0;
}

static int row_json(sqlite3_stmt *st, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *o = json_object();
        int n = sqlite3_column_count(st);

        if (!o)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                const char *name = sqlite3_column_name(st, i);
                json_t *v = NULL;

                switch (sqlite3_column_type(st, i)) {
                case SQLITE_INTEGER:
                        v = json_integer(sqlite3_column_int64(st, i));
                        break;
                case SQLITE_FLOAT:
                        v = json_real(sqlite3_column_double(st, i));
                        break;
                case SQLITE_NULL:
                        v = json_null();
                        break;
                default:
                        TRY(mp_store_text_value(name, (const char *) sqlite3_column_text(st, i),
                                                (size_t) sqlite3_column_bytes(st, i), &v, err));
                }
                if (!v || json_object_set_new(o, name, v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

static int steps(struct sqlite_store *s, sqlite3_stmt *st, json_t *rows, const char *what,
                 struct mp_error *err) {
        int n = 0, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                if (rows) {
                        json_t *row = NULL;
                        TRY(row_json(st, &row, err));
                        if (json_array_append_new(rows, row) < 0)
                                return -ENOMEM;
                }
                n++;
        }
        if (rc != SQLITE_DONE)
                return sql_fail(s, rc, err, what);
        if (rows)
                return n;
        return sqlite3_stmt_readonly(st) ? 0 : sqlite3_changes(s->db);
}

static int sqlite_query(struct mp_store_conn *c, const char *sql, bool stable,
                        struct mp_store_param *p, size_t n, json_t *rows, const char *what,
                        struct mp_error *err) {
        struct sqlite_store *s = ((struct sqlite_conn *) c)->s;
        sqlite3_stmt *st = NULL;
        bool cached = false;
        int r = prepare(s, sql, stable, &st, &cached, err);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                int rc;
                if (p[i].null)
                        rc = sqlite3_bind_null(st, (int) i + 1);
                else if (p[i].type == MP_STORE_INT)
                        rc = sqlite3_bind_int64(st, (int) i + 1, p[i].num);
                else if (p[i].len > INT_MAX)
                        rc = SQLITE_TOOBIG;
                else /* static: the bindings are cleared before p is freed */
                        rc = sqlite3_bind_text(st, (int) i + 1, p[i].text, (int) p[i].len, SQLITE_STATIC);
                if (rc != SQLITE_OK)
                        r = sql_fail(s, rc, err, "binding a value");
        }
        if (r >= 0)
                r = steps(s, st, rows, what, err);
        /* reset at once: no read transaction lingers (it would pin the WAL) */
        if (st) {
                sqlite3_reset(st);
                sqlite3_clear_bindings(st);
                if (!cached)
                        sqlite3_finalize(st);
        }
        mp_store_params_free(p, n);
        return r;
}

static int sqlite_script(struct mp_store_conn *c, const char *sql, const char *what,
                         struct mp_error *err) {
        return exec_sql(((struct sqlite_conn *) c)->s, sql, what, err);
}

/* Commit when r >= 0 (returning r), roll back otherwise (returning r). */
static int tx_end(struct sqlite_store *s, int r, struct mp_error *err) {
        if (r >= 0) {
                int q = exec_sql(s, "COMMIT", "committing a transaction", err);
                if (q >= 0)
                        return r;
                r = q;
        }
        if (!sqlite3_get_autocommit(s->db))
                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return r;
}

static int sqlite_tx(struct mp_store_conn *c, int what, struct mp_error *err) {
        struct sqlite_store *s = ((struct sqlite_conn *) c)->s;

        /* IMMEDIATE takes the write lock now, so two writers never both read and then
         * race to write. */
        if (what > 0)
                return exec_sql(s, "BEGIN IMMEDIATE", "starting a transaction", err);
        return tx_end(s, what == 0 ? 0 : -1, err);
}

/* ---- running operations ---- */

/* The synchronous level for what comes next (set outside transactions only). SQLite
 * reads it at each commit; a PRAGMA takes effect when it is prepared, so it is run
 * afresh each time, and only when the level changes. */
static int sync_level(struct sqlite_store *s, int level, struct mp_error *err) {
        if (s->sync_now == level)
                return 0;
        TRY(exec_sql(s, level == SYNC_FULL ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL",
                     "setting synchronous", err));
        s->sync_now = level;
        return 0;
}

/* The operation on the connection alone, in a transaction when atomic. */
static int run_alone(struct sqlite_store *s, unsigned kind, mp_store_fn fn, void *ctx,
                     struct mp_error *err) {
        int r;

        if (!(kind & MP_RUN_ATOMIC))
                return fn(&s->conn.head, ctx, err);
        TRY(sqlite_tx(&s->conn.head, 1, err));
        r = fn(&s->conn.head, ctx, err);
        return tx_end(s, r, err);
}

/* What went wrong for the group, said to one of its waiters. */
static void error_copy(struct mp_error *dst, int r, const struct mp_error *src) {
        mp_error_set(dst, -r, src->status ? src->status : 500, src->code[0] ? src->code : "storage",
                     "%s", src->message);
}

/* Run every waiter of the list in one transaction, each in its own savepoint, and
 * commit them with one sync. Each waiter's r is its answer. */
static void commit_group(struct sqlite_store *s, struct waiter *list) {
        struct mp_error gerr = { 0 };
        int r;

        pthread_mutex_lock(&s->lock);
        r = sync_level(s, SYNC_FULL, &gerr);
        while (list) {
                struct waiter *culprit = NULL;

                if (r >= 0)
                        r = exec_sql(s, "BEGIN IMMEDIATE", "starting a transaction", &gerr);
                if (r < 0) {
                        for (struct waiter *w = list; w; w = w->next) {
                                w->r = r;
                                error_copy(w->err, r, &gerr);
                        }
                        break;
                }
                for (struct waiter *w = list; w && !culprit; w = w->next) {
                        w->r = exec_sql(s, "SAVEPOINT op", "starting a savepoint", w->err);
                        if (w->r >= 0)
                                w->r = w->fn(&s->conn.head, w->ctx, w->err);
                        if (sqlite3_get_autocommit(s->db)) {
                                /* its error rolled the whole transaction back */
                                if (w->r >= 0)
                                        w->r = mp_error_set(w->err, EIO, 500, "storage",
                                                            "a transaction was rolled back under it");
                                culprit = w;
                        } else if (w->r < 0) {
                                sqlite3_exec(s->db, "ROLLBACK TO op; RELEASE op", NULL, NULL, NULL);
                        } else {
                                int q = exec_sql(s, "RELEASE op", "ending a savepoint", w->err);
                                if (q < 0)
                                        w->r = q;
                        }
                }
                if (culprit) {
                        /* answered: the others run again, in a new transaction */
                        struct waiter **pp = &list;
                        while (*pp != culprit)
                                pp = &(*pp)->next;
                        *pp = culprit->next;
                        if (!sqlite3_get_autocommit(s->db))
                                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                        continue;
                }
                /* the one sync of the group */
                r = exec_sql(s, "COMMIT", "committing a transaction", &gerr);
                if (r < 0) {
                        if (!sqlite3_get_autocommit(s->db))
                                sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
                        for (struct waiter *w = list; w; w = w->next)
                                if (w->r >= 0) {
                                        w->r = r;
                                        error_copy(w->err, r, &gerr);
                                }
                }
                break;
        }
        pthread_mutex_unlock(&s->lock);
        mp_error_clear(&gerr);
}

/* A durable write: queued behind the connection; the first waiter commits the group. */
static int run_grouped(struct sqlite_store *s, mp_store_fn fn, void *ctx, struct mp_error *err) {
        struct waiter me = { .fn = fn, .ctx = ctx, .err = err };
        struct waiter *group;

        pthread_mutex_lock(&s->qlock);
        *s->queue_tail = &me;
        s->queue_tail = &me.next;
        while (!me.done && s->leading)
                pthread_cond_wait(&s->qcond, &s->qlock);
        if (me.done) {
                pthread_mutex_unlock(&s->qlock);
                return me.r;
        }
        /* lead: take everything queued (this one included) */
        s->leading = true;
        s->groups++;
        for (struct waiter *w = s->queue; w; w = w->next)
                s->grouped++;
        group = s->queue;
        s->queue = NULL;
        s->queue_tail = &s->queue;
        pthread_mutex_unlock(&s->qlock);

        commit_group(s, group);

        pthread_mutex_lock(&s->qlock);
        for (struct waiter *w = group, *next; w; w = next) {
                next = w->next; /* read before done: a waiter's frame goes when it sees done */
                if (w != &me)
                        w->done = true;
        }
        s->leading = false;
        pthread_cond_broadcast(&s->qcond);
        pthread_mutex_unlock(&s->qlock);
        return me.r;
}

static int sqlite_run(struct mp_store *ss, unsigned kind, mp_store_fn fn, void *ctx,
                      struct mp_error *err) {
        struct sqlite_store *s = of(ss);
        int r;

        if (s->full && (kind & (MP_RUN_ATOMIC | MP_RUN_WRITE)) && !(kind & MP_RUN_LOSSY))
                return run_grouped(s, fn, ctx, err);
        pthread_mutex_lock(&s->lock);
        r = 0;
        if (kind & MP_RUN_LOSSY)
                r = sync_level(s, SYNC_NORMAL, err);
        if (r >= 0)
                r = run_alone(s, kind, fn, ctx, err);
        pthread_mutex_unlock(&s->lock);
        return r;
}

/* ---- open, close ---- */

static void sqlite_close(struct mp_store *ss) {
        struct sqlite_store *s = of(ss);

        if (!s)
                return;
        for (size_t i = 0; i < s->n_stmts; i++)
                sqlite3_finalize(s->stmts[i].st);
        if (s->db)
                sqlite3_close_v2(s->db);
        pthread_mutex_destroy(&s->lock);
        pthread_mutex_destroy(&s->qlock);
        pthread_cond_destroy(&s->qcond);
        free(s);
}
static void sqlite_closep(struct sqlite_store **s) {
        sqlite_close((struct mp_store *) *s);
}

/* "sqlite:PATH[?durability=full|fast]" (also sqlite:///abs/path). */
static int parse_url(const char *url, char **ret_path, bool *ret_full, struct mp_error *err) {
        const char *path, *q;

        if (strncmp(url, "sqlite:", 7) != 0)
                return mp_error_set(err, EINVAL, 500, "config", "store URL '%s' is not sqlite:", url);
        path = url + 7;
        if (strncmp(path, "//", 2) == 0) /* sqlite:///abs/path */
                path += 2;
        q = strchr(path, '?');
        *ret_full = true;
        for (const char *p = q ? q + 1 : NULL; p && *p;) {
                size_t len = strcspn(p, "&");
                if (len == strlen("durability=full") && strncmp(p, "durability=full", len) == 0)
                        *ret_full = true;
                else if (len == strlen("durability=fast") && strncmp(p, "durability=fast", len) == 0)
                        *ret_full = false;
                else if (len > 0)
                        return mp_error_set(err, EINVAL, 500, "config",
                                            "store URL '%s': unknown parameter '%.*s' (a sqlite: URL "
                                            "takes durability=full or durability=fast)",
                                            url, (int) MP_MIN(len, 100), p);
                p += len + (p[len] == '&');
        }
        if (path == q || !*path)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "store URL '%s' names no file: write sqlite:/path/to/mecapy.db",
                                    url);
        *ret_path = q ? strndup(path, (size_t) (q - path)) : strdup(path);
        return *ret_path ? 0 : -ENOMEM;
}

static int sqlite_open(const char *url, struct mp_store **ret, struct mp_error *err) {
        _cleanup_(sqlite_closep) struct sqlite_store *s = NULL;
        _cleanup_free_ char *path = NULL;
        bool full = true;
        int rc;

        TRY(parse_url(url, &path, &full, err));
        if (strcmp(path, ":memory:") != 0) {
                const char *slash = strrchr(path, '/');
                if (slash && slash != path) {
                        _cleanup_free_ char *dir = strndup(path, (size_t) (slash - path));
                        if (!dir)
                                return -ENOMEM;
                        rc = mp_mkdir_p(dir, 0700);
                        if (rc < 0)
                                return mp_error_set(err, -rc, 500, "storage",
                                                    "cannot create the database folder %s: %s", dir,
                                                    strerror(-rc));
                }
        }

        s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->common.drv = &mp_store_sqlite_driver;
        snprintf(s->common.where, sizeof(s->common.where), "%s", path);
        s->conn = (struct sqlite_conn) { { &mp_store_sqlite_driver }, s };
        s->full = full;
        s->queue_tail = &s->queue;
        pthread_mutex_init(&s->lock, NULL);
        pthread_mutex_init(&s->qlock, NULL);
        pthread_cond_init(&s->qcond, NULL);
        rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                int e = errno_of(rc);
                return mp_error_set(err, e, 500, "storage", "cannot open the database %s: %s", path,
                                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
        /* WAL: readers never block the writer. */
        TRY(exec_sql(s, "PRAGMA journal_mode = WAL", "switching to WAL mode", err));
        TRY(sync_level(s, full ? SYNC_FULL : SYNC_NORMAL, err));
        TRY(exec_sql(s, "PRAGMA foreign_keys = ON", "enabling foreign keys", err));
        *ret = (struct mp_store *) TAKE_PTR(s);
        return 0;
}

static int pragma_int(struct sqlite_store *s, const char *sql, int64_t *ret, struct mp_error *err) {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);

        if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
                *ret = sqlite3_column_int64(st, 0);
                rc = SQLITE_OK;
        }
        sqlite3_finalize(st);
        return rc == SQLITE_OK ? 0 : sql_fail(s, rc, err, "reading a setting");
}

/* The level durable commits run at (what the connection is set to before a group). */
static int sqlite_info(struct mp_store *ss, json_t **ret, struct mp_error *err) {
        struct sqlite_store *s = of(ss);
        int64_t sync = -1;
        uint64_t groups, grouped;
        int r;

        pthread_mutex_lock(&s->lock);
        r = sync_level(s, s->full ? SYNC_FULL : SYNC_NORMAL, err);
        if (r >= 0)
                r = pragma_int(s, "PRAGMA synchronous", &sync, err);
        pthread_mutex_unlock(&s->lock);
        if (r < 0)
                return r;
        pthread_mutex_lock(&s->qlock);
        groups = s->groups;
        grouped = s->grouped;
        pthread_mutex_unlock(&s->qlock);
        *ret = json_pack("{s:s,s:s,s:I,s:s,s:I,s:I}", "backend", "sqlite", "durability",
                         s->full ? "full" : "fast", "synchronous", (json_int_t) sync, "path",
                         s->common.where, "group_commits", (json_int_t) groups, "grouped_writes",
                         (json_int_t) grouped);
        return *ret ? 0 : -ENOMEM;
}

const struct mp_store_driver mp_store_sqlite_driver = {
        .scheme = "sqlite",
        .row_locks = false,
        .open = sqlite_open,
        .close = sqlite_close,
        .run = sqlite_run,
        .query = sqlite_query,
        .script = sqlite_script,
        .tx = sqlite_tx,
        .migration_lock = NULL,
        .info = sqlite_info,
};
