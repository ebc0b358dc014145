/* store/: the "sqlite:" backend. One connection in WAL mode, shared by every thread: a
 * mutex around each operation serializes them (SQLite writes one transaction at a time
 * anyway), and operations that touch several rows run in one BEGIN IMMEDIATE transaction,
 * which also orders them against other processes on the same file (busy_timeout).
 *
 * The SQL is written to be shared with a PostgreSQL backend where the dialects agree:
 * plain types (TEXT, INTEGER, BIGINT), JSON as TEXT, ON CONFLICT upserts, partial unique
 * indexes. Only the PRAGMAs and the ?N parameter syntax are SQLite's. The schema, the
 * shared texts and the column lists live in store-sql.h. */
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
#include "store/store-sql.h"

#define BUSY_TIMEOUT_MS 5000
#define STMT_CACHE_MAX 64

struct stmt_slot {
        const char *sql; /* the key: the address of one of the static SQL texts below */
        sqlite3_stmt *st;
};

struct mp_store {
        struct mp_store_base base; /* first, for MP_STORE() */
        sqlite3 *db;
        pthread_mutex_t lock;
        size_t n_stmts;
        struct stmt_slot stmts[STMT_CACHE_MAX];
};

/* ---- schema ---- */

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
static int sql_fail(struct mp_store *s, int rc, struct mp_error *err, const char *what) {
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

/* ---- locking, statements, transactions ---- */

static pthread_mutex_t *lock_store(struct mp_store *s) {
        pthread_mutex_lock(&s->lock);
        return &s->lock;
}
static void unlockp(pthread_mutex_t **m) {
        if (*m)
                pthread_mutex_unlock(*m);
}
/* First declaration of every operation: the lock is released last, after the statements
 * declared below it are reset. */
#define LOCKED(s) _cleanup_(unlockp) pthread_mutex_t *_lock_ _unused_ = lock_store(s)

/* A cached statement is reset when the variable holding it goes out of scope, so that no
 * read transaction lingers (it would pin the WAL and block a COMMIT). */
static void stmt_resetp(sqlite3_stmt **st) {
        if (*st) {
                sqlite3_reset(*st);
                sqlite3_clear_bindings(*st);
        }
}
#define _cleanup_stmt_ _cleanup_(stmt_resetp)
static void stmt_finalizep(sqlite3_stmt **st) {
        if (*st)
                sqlite3_finalize(*st);
}
#define _cleanup_stmt_free_ _cleanup_(stmt_finalizep)

/* The prepared statement for one of the static SQL texts (keyed by its address). */
static int stmt(struct mp_store *s, const char *sql, sqlite3_stmt **ret, struct mp_error *err) {
        sqlite3_stmt *st;
        int rc;

        for (size_t i = 0; i < s->n_stmts; i++)
                if (s->stmts[i].sql == sql) {
                        *ret = s->stmts[i].st;
                        return 0;
                }
        /* Our own invariant: the SQL texts are a fixed set, smaller than the cache. */
        assert(s->n_stmts < STMT_CACHE_MAX);
        rc = sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (rc != SQLITE_OK)
                return sql_fail(s, rc, err, "preparing a statement");
        s->stmts[s->n_stmts++] = (struct stmt_slot) { sql, st };
        *ret = st;
        return 0;
}

static int prepare_dynamic(struct mp_store *s, const char *sql, sqlite3_stmt **ret,
                           struct mp_error *err) {
        int rc = sqlite3_prepare_v2(s->db, sql, -1, ret, NULL);
        return rc == SQLITE_OK ? 0 : sql_fail(s, rc, err, "preparing a statement");
}

static int exec_sql(struct mp_store *s, const char *sql, const char *what, struct mp_error *err) {
        int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
        return rc == SQLITE_OK ? 0 : sql_fail(s, rc, err, what);
}

static int tx_begin(struct mp_store *s, struct mp_error *err) {
        /* IMMEDIATE takes the write lock now, so two writers never both read and then
         * race to write (the basis of job_claim's atomicity). */
        return exec_sql(s, "BEGIN IMMEDIATE", "starting a transaction", err);
}

/* Commit when r >= 0 (returning r), roll back otherwise (returning r). */
static int tx_end(struct mp_store *s, int r, struct mp_error *err) {
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

/* ---- binding ---- */

static int bind_rc(struct mp_store *s, int rc, struct mp_error *err) {
        return rc == SQLITE_OK ? 0 : sql_fail(s, rc, err, "binding a value");
}

static int bind_text(struct mp_store *s, sqlite3_stmt *st, int i, const char *v,
                     struct mp_error *err) {
        int rc = v ? sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i);
        return bind_rc(s, rc, err);
}

static int bind_int(struct mp_store *s, sqlite3_stmt *st, int i, int64_t v, struct mp_error *err) {
        return bind_rc(s, sqlite3_bind_int64(st, i, v), err);
}

static int bind_col(struct mp_store *s, sqlite3_stmt *st, int i, const struct col *c, json_t *row,
                    const char *what, struct mp_error *err) {
        json_t *v = json_object_get(row, c->name);

        if (!v || json_is_null(v)) {
                if (c->flags & COL_REQUIRED)
                        return invalid(err, "%s: `%s` is missing", what, c->name);
                if (c->kind == COL_INT)
                        return bind_int(s, st, i, (c->flags & COL_NOW) ? mp_now_ms() : 0, err);
                return bind_text(s, st, i, c->def, err);
        }
        switch (c->kind) {
        case COL_JSON: {
                char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        return mp_error_set(err, ENOMEM, 500, "storage", "%s: cannot serialize `%s`",
                                            what, c->name);
                /* sqlite frees text, even when binding fails */
                return bind_rc(s, sqlite3_bind_text(st, i, text, -1, free), err);
        }
        case COL_INT:
                if (json_is_integer(v))
                        return bind_int(s, st, i, json_integer_value(v), err);
                if (json_is_boolean(v))
                        return bind_int(s, st, i, json_is_true(v) ? 1 : 0, err);
                return invalid(err, "%s: `%s` must be an integer", what, c->name);
        case COL_TEXT:
                if (!json_is_string(v))
                        return invalid(err, "%s: `%s` must be a string", what, c->name);
                if (c->allowed) {
                        bool ok = false;
                        for (const char *const *a = c->allowed; *a && !ok; a++)
                                ok = strcmp(*a, json_string_value(v)) == 0;
                        if (!ok)
                                return invalid(err, "%s: `%s` cannot be '%s'", what, c->name,
                                               json_string_value(v));
                }
                return bind_rc(s, sqlite3_bind_text(st, i, json_string_value(v),
                                                    (int) json_string_length(v), SQLITE_TRANSIENT),
                               err);
        }
        return -EINVAL;
}

/* INSERT a row built from the caller's object; the SQL text is built once per table and
 * cached under the address of its column list. */
struct table {
        const char *name;
        const struct col *cols;
        size_t n_cols;
        char sql[1024]; /* built on first use, under the store's lock */
};

static int insert_row(struct mp_store *s, struct table *t, json_t *row, const char *what,
                      struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;
        int rc;

        /* The tables are shared by every open store, each with its own lock. */
        pthread_mutex_lock(&build_lock);
        if (!t->sql[0]) {
                size_t n = (size_t) snprintf(t->sql, sizeof(t->sql), "INSERT INTO %s (", t->name);
                for (size_t i = 0; i < t->n_cols; i++)
                        n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, "%s%s", i ? ", " : "",
                                               t->cols[i].name);
                n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, ") VALUES (");
                for (size_t i = 0; i < t->n_cols; i++)
                        n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, "%s?%zu", i ? ", " : "",
                                               i + 1);
                n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, ")");
                assert(n < sizeof(t->sql));
        }
        pthread_mutex_unlock(&build_lock);
        TRY(stmt(s, t->sql, &st, err));
        for (size_t i = 0; i < t->n_cols; i++)
                TRY(bind_col(s, st, (int) i + 1, &t->cols[i], row, what, err));
        rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return sql_fail(s, rc, err, what);
        return 0;
}

/* ---- reading rows ---- */

static int row_json(struct mp_store *s, sqlite3_stmt *st, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *o = json_object();
        int n = sqlite3_column_count(st);

        if (!o)
                return -ENOMEM;
        for (int i = 0; i < n; i++) {
                const char *name = sqlite3_column_name(st, i);
                json_t *v;

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
                default: {
                        const char *text = (const char *) sqlite3_column_text(st, i);
                        size_t len = (size_t) sqlite3_column_bytes(st, i);
                        if (is_json_column(name)) {
                                json_error_t jerr;
                                v = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
                                if (!v)
                                        return mp_error_set(err, EIO, 500, "storage",
                                                            "column %s holds JSON that does not "
                                                            "parse: %s", name, jerr.text);
                        } else {
                                v = text_json(text ? text : "", len);
                        }
                }
                }
                if (!v || json_object_set_new(o, name, v) < 0)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(o);
        return 0;
}

/* One row into *ret: 0, -ENOENT (no message: the caller names what is missing). */
static int step_row(struct mp_store *s, sqlite3_stmt *st, json_t **ret, const char *what,
                    struct mp_error *err) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return row_json(s, st, ret, err);
        if (rc == SQLITE_DONE)
                return -ENOENT;
        return sql_fail(s, rc, err, what);
}

/* Every row, appended to arr; returns the count. */
static int step_all(struct mp_store *s, sqlite3_stmt *st, json_t *arr, const char *what,
                    struct mp_error *err) {
        int n = 0, rc;

        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                json_t *row;
                TRY(row_json(s, st, &row, err));
                if (json_array_append_new(arr, row) < 0)
                        return -ENOMEM;
                n++;
        }
        if (rc != SQLITE_DONE)
                return sql_fail(s, rc, err, what);
        return n;
}

/* A statement without rows: returns the number of rows it changed. */
static int step_done(struct mp_store *s, sqlite3_stmt *st, const char *what, struct mp_error *err) {
        int rc = sqlite3_step(st);
        if (rc != SQLITE_DONE)
                return sql_fail(s, rc, err, what);
        return sqlite3_changes(s->db);
}

/* Does the statement (bound already) return a row? 1, 0 or -errno. */
static int step_exists(struct mp_store *s, sqlite3_stmt *st, const char *what, struct mp_error *err) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW)
                return 1;
        if (rc == SQLITE_DONE)
                return 0;
        return sql_fail(s, rc, err, what);
}

/* ---- filters and cursors ---- */

/* Run a list query bound up to its cursor and limit (limit + 1 rows asked for), and
 * turn the extra row into next_cursor. */
static int run_page(struct mp_store *s, sqlite3_stmt *st, int limit, const char *time_col,
                    struct mp_store_list *ret, const char *what, struct mp_error *err) {
        _cleanup_json_ json_t *items = json_array();
        _cleanup_free_ char *next = NULL;
        int n;

        if (!items)
                return -ENOMEM;
        n = step_all(s, st, items, what, err);
        if (n < 0)
                return n;
        if (n > limit) {
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

static int migration_apply(struct mp_store *s, int version, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *has = NULL, *add = NULL;
        int r;

        TRY(stmt(s, SQL_MIGRATION_HAS, &has, err));
        TRY(bind_int(s, has, 1, version, err));
        r = step_exists(s, has, "reading schema_migrations", err);
        if (r != 0)
                return r; /* already applied (another process may just have done it) */
        r = exec_sql(s, migrations[version - 1], "applying a migration", err);
        if (r < 0) {
                mp_error_prefix(err, "migration %d", version);
                return r;
        }
        TRY(stmt(s, SQL_MIGRATION_ADD, &add, err));
        TRY(bind_int(s, add, 1, version, err));
        TRY(bind_int(s, add, 2, mp_now_ms(), err));
        return step_done(s, add, "recording a migration", err);
}

static int migrate(struct mp_store *s, struct mp_error *err) {
        const int known = (int) ELEMENTSOF(migrations);
        int64_t have;

        TRY(exec_sql(s, SQL_MIGRATIONS_TABLE, "creating schema_migrations", err));
        {
                _cleanup_stmt_ sqlite3_stmt *max = NULL;
                int rc;
                TRY(stmt(s, SQL_MIGRATION_MAX, &max, err));
                rc = sqlite3_step(max);
                if (rc != SQLITE_ROW)
                        return sql_fail(s, rc, err, "reading schema_migrations");
                have = sqlite3_column_int64(max, 0);
        }
        if (have > known)
                return mp_error_set(err, EPROTO, 500, "storage",
                                    "the database is at schema version %" PRId64 ", newer than "
                                    "this program knows (%d): run a newer mecapy", have, known);
        for (int v = (int) have + 1; v <= known; v++) {
                TRY(tx_begin(s, err));
                TRY(tx_end(s, migration_apply(s, v, err), err));
        }
        return 0;
}

static void sqlite_close(struct mp_store *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_stmts; i++)
                sqlite3_finalize(s->stmts[i].st);
        if (s->db)
                sqlite3_close_v2(s->db);
        pthread_mutex_destroy(&s->lock);
        free(s);
}
static void sqlite_closep(struct mp_store **s) {
        sqlite_close(*s);
}

static int sqlite_open(const char *url, struct mp_store **ret, struct mp_error *err) {
        _cleanup_(sqlite_closep) struct mp_store *s = NULL;
        const char *path;
        int rc;

        if (strncmp(url, "sqlite:", 7) != 0)
                return mp_error_set(err, EINVAL, 500, "config", "store URL '%s' is not sqlite:", url);
        path = url + 7;
        if (strncmp(path, "//", 2) == 0) /* sqlite:///abs/path */
                path += 2;
        if (!*path)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "store URL '%s' names no file: write sqlite:/path/to/mecapy.db",
                                    url);
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
        s->base.ops = &mp_store_sqlite_ops;
        pthread_mutex_init(&s->lock, NULL);
        rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
        if (rc != SQLITE_OK) {
                int e = errno_of(rc);
                return mp_error_set(err, e, 500, "storage", "cannot open the database %s: %s", path,
                                    s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        }
        sqlite3_extended_result_codes(s->db, 1);
        sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);
        /* WAL: readers never block the writer; NORMAL sync is durable across crashes of
         * the process and keeps the file consistent across power loss. */
        TRY(exec_sql(s, "PRAGMA journal_mode = WAL", "switching to WAL mode", err));
        TRY(exec_sql(s, "PRAGMA synchronous = NORMAL", "setting synchronous", err));
        TRY(exec_sql(s, "PRAGMA foreign_keys = ON", "enabling foreign keys", err));
        rc = migrate(s, err);
        if (rc < 0) {
                mp_error_prefix(err, "opening %s", path);
                return rc;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* ---- identity ---- */

static int company_ensure_tx(struct mp_store *s, const char *name, json_t **ret,
                             struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *ins = NULL, *get = NULL;
        char id[MP_ID_LEN + 1];
        int r;

        mp_id_new(id);
        TRY(stmt(s, SQL_COMPANY_INSERT, &ins, err));
        TRY(bind_text(s, ins, 1, id, err));
        TRY(bind_text(s, ins, 2, name, err));
        TRY(bind_int(s, ins, 3, mp_now_ms(), err));
        TRY(step_done(s, ins, "creating a company", err));
        TRY(stmt(s, SQL_COMPANY_BY_NAME, &get, err));
        TRY(bind_text(s, get, 1, name, err));
        r = step_row(s, get, ret, "reading a company", err);
        if (r == -ENOENT)
                return mp_error_set(err, EIO, 500, "storage", "company %s vanished", name);
        return r;
}

static int sqlite_company_ensure(struct mp_store *s, const char *name, json_t **ret_company,
                                 struct mp_error *err) {
        LOCKED(s);
        json_t *row = NULL;
        int r;

        if (!name || !*name)
                return invalid(err, "a company needs a `name`");
        TRY(tx_begin(s, err));
        r = tx_end(s, company_ensure_tx(s, name, &row, err), err);
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

static struct table users_table = { "users", user_cols, ELEMENTSOF(user_cols), "" };

static int sqlite_user_create(struct mp_store *s, json_t *user, struct mp_error *err) {
        LOCKED(s);
        int r = insert_row(s, &users_table, user, "creating a user", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "a user with the email '%s' (or that id) already exists",
                                    json_string_value(json_object_get(user, "email")));
        if (r == -ENOENT)
                return not_found(err, "creating a user: company %s does not exist",
                                 json_string_value(json_object_get(user, "company_id")));
        return r;
}

static int user_get_locked(struct mp_store *s, const char *sql, const char *value, json_t **ret,
                           struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, sql, &st, err));
        TRY(bind_text(s, st, 1, value, err));
        return step_row(s, st, ret, "reading a user", err);
}

static int sqlite_user_get(struct mp_store *s, const char *field, const char *value, json_t **ret,
                           struct mp_error *err) {
        LOCKED(s);
        const char *sql;
        int r;

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
        r = user_get_locked(s, sql, value, ret, err);
        if (r == -ENOENT)
                return not_found(err, "no user with %s '%s'", field, value);
        return r;
}

static int sqlite_user_set_password(struct mp_store *s, const char *user_id, const char *hash,
                                    struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_USER_SET_PASSWORD, &st, err));
        TRY(bind_text(s, st, 1, hash, err));
        TRY(bind_text(s, st, 2, user_id, err));
        r = step_done(s, st, "setting a password", err);
        if (r == 0)
                return not_found(err, "no user with id '%s'", user_id ? user_id : "");
        return r < 0 ? r : 0;
}

static int sqlite_user_set_identity(struct mp_store *s, const char *user_id, const char *email,
                                    const char *role, const char *company_id,
                                    struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_USER_SET_IDENTITY, &st, err));
        TRY(bind_text(s, st, 1, email, err));
        TRY(bind_text(s, st, 2, role, err));
        TRY(bind_text(s, st, 3, company_id, err));
        TRY(bind_text(s, st, 4, user_id, err));
        r = step_done(s, st, "updating a user's identity", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "another user already has the email '%s'", email ? email : "");
        if (r == 0)
                return not_found(err, "no user with id '%s'", user_id ? user_id : "");
        return r < 0 ? r : 0;
}

static struct table tokens_table = { "tokens", token_cols, ELEMENTSOF(token_cols), "" };

static int sqlite_token_create(struct mp_store *s, json_t *token, struct mp_error *err) {
        LOCKED(s);
        int r = insert_row(s, &tokens_table, token, "creating a token", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "creating a token: a token with that id or hash already exists");
        if (r == -ENOENT)
                return not_found(err, "creating a token: user %s does not exist",
                                 json_string_value(json_object_get(token, "user_id")));
        return r;
}

static int token_lookup_rows(struct mp_store *s, const char *hash, int64_t now, json_t **ret,
                             struct mp_error *err) {
        _cleanup_json_ json_t *token = NULL, *user = NULL;
        _cleanup_stmt_ sqlite3_stmt *st = NULL, *touch = NULL;
        const char *id;
        json_t *o;
        int r;

        TRY(stmt(s, SQL_TOKEN_LIVE, &st, err));
        TRY(bind_text(s, st, 1, hash, err));
        TRY(bind_int(s, st, 2, now, err));
        r = step_row(s, st, &token, "looking up a token", err);
        if (r == -ENOENT)
                return not_found(err, "no live token matches");
        if (r < 0)
                return r;
        id = json_string_value(json_object_get(token, "id"));
        r = user_get_locked(s, SQL_USER_BY_ID, json_string_value(json_object_get(token, "user_id")),
                            &user, err);
        if (r == -ENOENT)
                return not_found(err, "the token's user no longer exists");
        if (r < 0)
                return r;
        TRY(stmt(s, SQL_TOKEN_TOUCH, &touch, err));
        TRY(bind_int(s, touch, 1, now, err));
        TRY(bind_text(s, touch, 2, id, err));
        r = step_done(s, touch, "recording a token's use", err);
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

static int sqlite_token_lookup(struct mp_store *s, const char *token_hash, int64_t now,
                               json_t **ret, struct mp_error *err) {
        LOCKED(s);
        json_t *o = NULL;
        int r;

        if (!token_hash)
                return not_found(err, "no live token matches");
        /* No transaction: this runs on every authenticated request, and BEGIN IMMEDIATE
         * would take the database's write lock each time. Two reads and a touch that
         * writes at most once a minute are each consistent on their own. */
        r = token_lookup_rows(s, token_hash, now, &o, err);
        if (r < 0) {
                json_decref(o);
                return r;
        }
        *ret = o;
        return 0;
}

static int sqlite_token_list(struct mp_store *s, const char *user_id, json_t **ret,
                             struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_t *arr = json_array();

        if (!arr)
                return -ENOMEM;
        TRY(stmt(s, SQL_TOKEN_LIST, &st, err));
        TRY(bind_text(s, st, 1, user_id, err));
        TRY(step_all(s, st, arr, "listing tokens", err));
        *ret = TAKE_PTR(arr);
        return 0;
}

static int sqlite_token_revoke(struct mp_store *s, const char *user_id, const char *token_id,
                               int64_t now, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL, *has = NULL;
        int r;

        TRY(stmt(s, SQL_TOKEN_REVOKE, &st, err));
        TRY(bind_int(s, st, 1, now, err));
        TRY(bind_text(s, st, 2, token_id, err));
        TRY(bind_text(s, st, 3, user_id, err));
        r = step_done(s, st, "revoking a token", err);
        if (r != 0)
                return r < 0 ? r : 0;
        /* Nothing changed: revoked before (fine, revoking is idempotent) or not theirs. */
        TRY(stmt(s, SQL_TOKEN_OF_USER, &has, err));
        TRY(bind_text(s, has, 1, token_id, err));
        TRY(bind_text(s, has, 2, user_id, err));
        r = step_exists(s, has, "revoking a token", err);
        if (r == 0)
                return not_found(err, "you have no token with id '%s'", token_id ? token_id : "");
        return r < 0 ? r : 0;
}

static int sqlite_token_revoke_sessions(struct mp_store *s, const char *user_id,
                                        const char *except_token_id, int64_t now,
                                        struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, SQL_TOKEN_REVOKE_SESSIONS, &st, err));
        TRY(bind_int(s, st, 1, now, err));
        TRY(bind_text(s, st, 2, user_id, err));
        TRY(bind_text(s, st, 3, except_token_id, err));
        return step_done(s, st, "revoking a user's sessions", err);
}

/* ---- the audit log ---- */

static struct table audit_table = { "audit", audit_cols, ELEMENTSOF(audit_cols), "" };

static int sqlite_audit_append(struct mp_store *s, json_t *event, struct mp_error *err) {
        LOCKED(s);
        return insert_row(s, &audit_table, event, "writing an audit event", err);
}

static int sqlite_audit_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                             struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const char *company, *kind, *actor, *cursor;
        char before_id[CURSOR_MAX_ID + 1];
        int64_t before_t = 0;
        json_t *since = json_object_get(filter, "since");
        int limit;

        TRY(filter_str(filter, "company_id", &company, err));
        TRY(filter_str(filter, "kind", &kind, err));
        TRY(filter_str(filter, "actor_id", &actor, err));
        TRY(filter_str(filter, "cursor", &cursor, err));
        TRY(filter_limit(filter, &limit, err));
        if (cursor)
                TRY(cursor_decode(cursor, &before_t, before_id, err));

        TRY(stmt(s, SQL_AUDIT_LIST, &st, err));
        TRY(bind_text(s, st, 1, company, err));
        TRY(bind_text(s, st, 2, kind, err));
        TRY(bind_text(s, st, 3, actor, err));
        if (json_is_integer(since))
                TRY(bind_int(s, st, 4, json_integer_value(since), err));
        if (cursor) {
                TRY(bind_int(s, st, 5, before_t, err));
                TRY(bind_text(s, st, 6, before_id, err));
        }
        TRY(bind_int(s, st, 7, limit + 1, err));
        return run_page(s, st, limit, "at", ret, "listing audit events", err);
}

/* ---- functions ---- */

static struct table functions_table = { "functions", function_cols, ELEMENTSOF(function_cols), "" };

static struct table versions_table = { "function_versions", version_cols, ELEMENTSOF(version_cols), "" };

/* Insert `version` as version n of function id (a shallow copy gets the key columns). */
static int version_insert(struct mp_store *s, const char *id, int n, json_t *version,
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
        return insert_row(s, &versions_table, v, "storing a function version", err);
}

static int function_create_tx(struct mp_store *s, json_t *fn, json_t *version,
                              struct mp_error *err) {
        _cleanup_json_ json_t *f = json_copy(fn);
        json_t *created = json_object_get(fn, "created_at");
        int r;

        if (!f)
                return -ENOMEM;
        if (json_is_integer(created) && !json_object_get(fn, "updated_at"))
                json_object_set(f, "updated_at", created);
        r = insert_row(s, &functions_table, f, "creating a function", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "you already have a function named '%s'",
                                    json_string_value(json_object_get(fn, "name")));
        if (r == -ENOENT)
                return not_found(err, "creating a function: its owner or company does not exist");
        if (r < 0)
                return r;
        return version_insert(s, json_string_value(json_object_get(fn, "id")), 1, version,
                              json_is_integer(created) ? json_integer_value(created) : 0, err);
}

static int sqlite_function_create(struct mp_store *s, json_t *fn, json_t *version,
                                  struct mp_error *err) {
        LOCKED(s);

        if (!json_is_object(fn))
                return invalid(err, "a function must be an object");
        TRY(tx_begin(s, err));
        return tx_end(s, function_create_tx(s, fn, version, err), err);
}

static int sqlite_function_get(struct mp_store *s, const char *id, json_t **ret,
                               struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_FUNCTION_GET, &st, err));
        TRY(bind_text(s, st, 1, id, err));
        r = step_row(s, st, ret, "reading a function", err);
        if (r == -ENOENT)
                return not_found(err, "no function with id '%s'", id ? id : "");
        return r;
}

static int sqlite_function_find(struct mp_store *s, const char *owner_id, const char *name,
                                json_t **ret, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_FUNCTION_FIND, &st, err));
        TRY(bind_text(s, st, 1, owner_id, err));
        TRY(bind_text(s, st, 2, name, err));
        r = step_row(s, st, ret, "reading a function", err);
        if (r == -ENOENT)
                return not_found(err, "you have no function named '%s'", name ? name : "");
        return r;
}

static int sqlite_function_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const char *viewer, *company, *name, *cursor;
        char after_id[CURSOR_MAX_ID + 1];
        int64_t after_t = 0;
        int limit;

        TRY(filter_str(filter, "viewer_id", &viewer, err));
        TRY(filter_str(filter, "company_id", &company, err));
        TRY(filter_str(filter, "name", &name, err));
        TRY(filter_str(filter, "cursor", &cursor, err));
        TRY(filter_limit(filter, &limit, err));
        if (cursor)
                TRY(cursor_decode(cursor, &after_t, after_id, err));

        TRY(stmt(s, SQL_FUNCTION_LIST, &st, err));
        TRY(bind_text(s, st, 1, viewer, err));
        TRY(bind_text(s, st, 2, company, err));
        TRY(bind_text(s, st, 3, name, err));
        if (cursor) {
                TRY(bind_int(s, st, 4, after_t, err));
                TRY(bind_text(s, st, 5, after_id, err));
        }
        TRY(bind_int(s, st, 6, limit + 1, err));
        return run_page(s, st, limit, "created_at", ret, "listing functions", err);
}

static int function_update_tx(struct mp_store *s, const char *id, json_t *fields, json_t *version,
                              int64_t now, int *ret_version, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *latest = NULL;
        _cleanup_stmt_free_ sqlite3_stmt *up = NULL;
        char sql[512];
        const struct col *set[ELEMENTSOF(function_update_cols)];
        size_t n_set = 0, len;
        const char *key;
        json_t *value;
        int v, rc, p;

        TRY(stmt(s, SQL_FUNCTION_LATEST, &latest, err));
        TRY(bind_text(s, latest, 1, id, err));
        rc = sqlite3_step(latest);
        if (rc == SQLITE_DONE)
                return not_found(err, "no function with id '%s'", id ? id : "");
        if (rc != SQLITE_ROW)
                return sql_fail(s, rc, err, "reading a function");
        v = sqlite3_column_int(latest, 0);
        sqlite3_reset(latest);

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
                TRY(version_insert(s, id, v + 1, version, now, err));
                v++;
        }

        len = (size_t) snprintf(sql, sizeof(sql),
                                "UPDATE functions SET updated_at = ?1, latest_version = ?2");
        for (size_t i = 0; i < n_set; i++)
                len += (size_t) snprintf(sql + len, sizeof(sql) - len, ", %s = ?%zu", set[i]->name, i + 3);
        snprintf(sql + len, sizeof(sql) - len, " WHERE id = ?%zu", n_set + 3);
        TRY(prepare_dynamic(s, sql, &up, err));
        TRY(bind_int(s, up, 1, now, err));
        TRY(bind_int(s, up, 2, v, err));
        p = 3;
        for (size_t i = 0; i < n_set; i++)
                TRY(bind_col(s, up, p++, set[i], fields, "updating a function", err));
        TRY(bind_text(s, up, p, id, err));
        TRY(step_done(s, up, "updating a function", err));
        if (ret_version)
                *ret_version = v;
        return 0;
}

static int sqlite_function_update(struct mp_store *s, const char *id, json_t *fields,
                                  json_t *version, int64_t now, int *ret_version,
                                  struct mp_error *err) {
        LOCKED(s);
        int v = 0, r;

        TRY(tx_begin(s, err));
        r = tx_end(s, function_update_tx(s, id, fields, version, now, &v, err), err);
        if (r >= 0 && ret_version)
                *ret_version = v;
        return r;
}

static int sqlite_function_get_version(struct mp_store *s, const char *id, int version,
                                       json_t **ret, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        if (version < 0)
                return invalid(err, "a function version is a positive number, not %d", version);
        TRY(stmt(s, SQL_VERSION_GET, &st, err));
        TRY(bind_text(s, st, 1, id, err));
        TRY(bind_int(s, st, 2, version, err));
        r = step_row(s, st, ret, "reading a function version", err);
        if (r == -ENOENT) {
                if (version)
                        return not_found(err, "function '%s' has no version %d", id ? id : "", version);
                return not_found(err, "no function with id '%s'", id ? id : "");
        }
        return r;
}

static int sqlite_function_list_versions(struct mp_store *s, const char *id, json_t **ret,
                                         struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_t *arr = json_array();
        int n;

        if (!arr)
                return -ENOMEM;
        TRY(stmt(s, SQL_VERSION_LIST, &st, err));
        TRY(bind_text(s, st, 1, id, err));
        n = step_all(s, st, arr, "listing function versions", err);
        if (n < 0)
                return n;
        if (n == 0) /* every function has version 1 */
                return not_found(err, "no function with id '%s'", id ? id : "");
        *ret = TAKE_PTR(arr);
        return 0;
}

static int sqlite_function_delete(struct mp_store *s, const char *id, int64_t now,
                                  struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_FUNCTION_DELETE, &st, err));
        TRY(bind_int(s, st, 1, now > 0 ? now : 1, err)); /* 0 would mean "live" */
        TRY(bind_text(s, st, 2, id, err));
        r = step_done(s, st, "deleting a function", err);
        if (r == 0)
                return not_found(err, "no function with id '%s'", id ? id : "");
        return r < 0 ? r : 0;
}

/* ---- tasks ---- */

static struct table tasks_table = { "tasks", task_cols, ELEMENTSOF(task_cols), "" };

static int task_create_tx(struct mp_store *s, json_t *task, json_t **ret_existing,
                          struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *byk = NULL, *push = NULL;
        json_t *key = json_object_get(task, "idempotency_key");
        int r;

        if (key && !json_is_null(key)) {
                _cleanup_json_ json_t *existing = NULL;

                if (!json_is_string(key) || json_string_length(key) == 0 ||
                    json_string_length(key) > MP_MAX_IDEMPOTENCY_KEY_LEN)
                        return invalid(err, "`idempotency_key` must be a string of 1 to %d bytes",
                                       MP_MAX_IDEMPOTENCY_KEY_LEN);
                TRY(stmt(s, SQL_TASK_BY_KEY, &byk, err));
                TRY(bind_text(s, byk, 1, json_string_value(json_object_get(task, "owner_id")), err));
                TRY(bind_text(s, byk, 2, json_string_value(json_object_get(task, "function_id")), err));
                TRY(bind_text(s, byk, 3, json_string_value(key), err));
                r = step_row(s, byk, &existing, "looking up an idempotency key", err);
                if (r >= 0) {
                        if (ret_existing)
                                *ret_existing = TAKE_PTR(existing);
                        return mp_error_set(err, EEXIST, 409, "conflict",
                                            "a task with idempotency key '%s' already exists "
                                            "for this function", json_string_value(key));
                }
                if (r != -ENOENT)
                        return r;
        }
        r = insert_row(s, &tasks_table, task, "creating a task", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "a task with id '%s' already exists",
                                    json_string_value(json_object_get(task, "id")));
        if (r == -ENOENT)
                return not_found(err, "creating a task: its function or owner does not exist");
        if (r < 0)
                return r;
        TRY(stmt(s, SQL_JOB_PUSH, &push, err));
        TRY(bind_text(s, push, 1, json_string_value(json_object_get(task, "id")), err));
        r = step_done(s, push, "queueing a task", err);
        return r < 0 ? r : 0;
}

static int sqlite_task_create(struct mp_store *s, json_t *task, json_t **ret_existing,
                              struct mp_error *err) {
        LOCKED(s);

        if (!json_is_object(task))
                return invalid(err, "a task must be an object");
        TRY(tx_begin(s, err));
        return tx_end(s, task_create_tx(s, task, ret_existing, err), err);
}

static int sqlite_task_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_TASK_GET, &st, err));
        TRY(bind_text(s, st, 1, id, err));
        r = step_row(s, st, ret, "reading a task", err);
        if (r == -ENOENT)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r;
}

/* Does task id exist? 1, 0 or -errno. */
static int task_exists(struct mp_store *s, const char *id, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, SQL_TASK_EXISTS, &st, err));
        TRY(bind_text(s, st, 1, id, err));
        return step_exists(s, st, "reading a task", err);
}

/* After an update that changed n rows of task id: 1 moved, 0 not in the state, -ENOENT. */
static int moved_or_missing(struct mp_store *s, int n, const char *id, struct mp_error *err) {
        int r;

        if (n != 0)
                return n < 0 ? n : 1;
        r = task_exists(s, id, err);
        if (r == 0)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r < 0 ? r : 0;
}

static int sqlite_task_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                            struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        const char *owner, *function, *status, *cursor;
        char before_id[CURSOR_MAX_ID + 1];
        int64_t before_t = 0;
        int limit;

        TRY(filter_str(filter, "owner_id", &owner, err));
        if (!owner)
                return invalid(err, "listing tasks needs `owner_id`");
        TRY(filter_str(filter, "function_id", &function, err));
        TRY(filter_str(filter, "status", &status, err));
        TRY(filter_str(filter, "cursor", &cursor, err));
        TRY(filter_limit(filter, &limit, err));
        if (cursor)
                TRY(cursor_decode(cursor, &before_t, before_id, err));

        TRY(stmt(s, SQL_TASK_LIST, &st, err));
        TRY(bind_text(s, st, 1, owner, err));
        TRY(bind_text(s, st, 2, function, err));
        TRY(bind_text(s, st, 3, status, err));
        if (cursor) {
                TRY(bind_int(s, st, 4, before_t, err));
                TRY(bind_text(s, st, 5, before_id, err));
        }
        TRY(bind_int(s, st, 6, limit + 1, err));
        return run_page(s, st, limit, "queued_at", ret, "listing tasks", err);
}

static int sqlite_task_start(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                             struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, SQL_TASK_START, &st, err));
        TRY(bind_int(s, st, 1, now, err));
        TRY(bind_text(s, st, 2, worker_id, err));
        TRY(bind_text(s, st, 3, id, err));
        return moved_or_missing(s, step_done(s, st, "starting a task", err), id, err);
}

static int sqlite_task_retry(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                             struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, SQL_TASK_RETRY, &st, err));
        TRY(bind_int(s, st, 1, now, err));
        TRY(bind_text(s, st, 2, worker_id, err));
        TRY(bind_text(s, st, 3, id, err));
        return moved_or_missing(s, step_done(s, st, "retrying a task", err), id, err);
}

static int task_finish_tx(struct mp_store *s, const char *id, json_t *fields, struct mp_error *err) {
        _cleanup_stmt_free_ sqlite3_stmt *up = NULL;
        _cleanup_stmt_ sqlite3_stmt *del = NULL;
        const struct col *set[ELEMENTSOF(finish_cols)];
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
                len += (size_t) snprintf(sql + len, sizeof(sql) - len, "%s%s = ?%zu", i ? ", " : "",
                                         set[i]->name, i + 1);
        snprintf(sql + len, sizeof(sql) - len,
                 " WHERE id = ?%zu AND status IN ('queued', 'running')", n_set + 1);
        TRY(prepare_dynamic(s, sql, &up, err));
        for (size_t i = 0; i < n_set; i++)
                TRY(bind_col(s, up, (int) i + 1, set[i], fields, "finishing a task", err));
        TRY(bind_text(s, up, (int) n_set + 1, id, err));
        r = moved_or_missing(s, step_done(s, up, "finishing a task", err), id, err);
        if (r <= 0)
                return r;
        TRY(stmt(s, SQL_JOB_DELETE, &del, err));
        TRY(bind_text(s, del, 1, id, err));
        TRY(step_done(s, del, "removing a finished task's job", err));
        return 1;
}

static int sqlite_task_finish(struct mp_store *s, const char *id, json_t *fields,
                              struct mp_error *err) {
        LOCKED(s);

        if (!json_is_object(fields))
                return invalid(err, "finishing a task needs an object of fields");
        TRY(tx_begin(s, err));
        return tx_end(s, task_finish_tx(s, id, fields, err), err);
}

static int task_requeue_tx(struct mp_store *s, const char *id, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *up = NULL, *rel = NULL;
        int r;

        TRY(stmt(s, SQL_TASK_REQUEUE, &up, err));
        TRY(bind_text(s, up, 1, id, err));
        r = moved_or_missing(s, step_done(s, up, "requeueing a task", err), id, err);
        if (r <= 0)
                return r;
        TRY(stmt(s, SQL_JOB_RELEASE, &rel, err));
        TRY(bind_text(s, rel, 1, id, err));
        TRY(step_done(s, rel, "releasing a task's job", err));
        return 1;
}

static int sqlite_task_requeue(struct mp_store *s, const char *id, struct mp_error *err) {
        LOCKED(s);

        TRY(tx_begin(s, err));
        return tx_end(s, task_requeue_tx(s, id, err), err);
}

/* ---- jobs ---- */

static const char SQL_JOB_NEXT[] =
        "SELECT task_id FROM jobs WHERE lease_until = 0 OR lease_until < ?1"
        " ORDER BY enqueued_at, task_id LIMIT 1";
static const char SQL_JOB_CLAIM[] =
        "UPDATE jobs SET worker_id = ?1, lease_until = ?2 WHERE task_id = ?3";

static int job_claim_tx(struct mp_store *s, const char *worker_id, int64_t now, int64_t lease_until,
                        char id[MP_ID_LEN + 1], struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *next = NULL, *claim = NULL;
        const char *t;
        int rc;

        TRY(stmt(s, SQL_JOB_NEXT, &next, err));
        TRY(bind_int(s, next, 1, now, err));
        rc = sqlite3_step(next);
        if (rc == SQLITE_DONE)
                return 0;
        if (rc != SQLITE_ROW)
                return sql_fail(s, rc, err, "looking for a job");
        t = (const char *) sqlite3_column_text(next, 0);
        if (!t || strlen(t) > MP_ID_LEN)
                return mp_error_set(err, EIO, 500, "storage", "a job has a malformed task id");
        memcpy(id, t, strlen(t) + 1);
        sqlite3_reset(next);

        TRY(stmt(s, SQL_JOB_CLAIM, &claim, err));
        TRY(bind_text(s, claim, 1, worker_id, err));
        TRY(bind_int(s, claim, 2, lease_until, err));
        TRY(bind_text(s, claim, 3, id, err));
        TRY(step_done(s, claim, "claiming a job", err));
        return 1;
}

static int sqlite_job_claim(struct mp_store *s, const char *worker_id, int64_t now,
                            int64_t lease_until, char *ret_task_id, struct mp_error *err) {
        LOCKED(s);
        char id[MP_ID_LEN + 1];
        int r;

        TRY(tx_begin(s, err));
        r = tx_end(s, job_claim_tx(s, worker_id, now, lease_until, id, err), err);
        if (r == 1)
                memcpy(ret_task_id, id, strlen(id) + 1);
        return r;
}

static int sqlite_job_extend(struct mp_store *s, const char *task_id, const char *worker_id,
                             int64_t lease_until, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_JOB_EXTEND, &st, err));
        TRY(bind_int(s, st, 1, lease_until, err));
        TRY(bind_text(s, st, 2, task_id, err));
        TRY(bind_text(s, st, 3, worker_id, err));
        r = step_done(s, st, "extending a lease", err);
        if (r == 0)
                return not_found(err, "worker %s holds no job for task %s (finished, or its lease "
                                      "went to another worker)",
                                 worker_id ? worker_id : "", task_id ? task_id : "");
        return r < 0 ? r : 0;
}

static int sqlite_job_release_all(struct mp_store *s, struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;

        TRY(stmt(s, SQL_JOB_RELEASE_ALL, &st, err));
        return step_done(s, st, "releasing jobs", err);
}

/* ---- companies and the catalogue ---- */

static int sqlite_company_get(struct mp_store *s, const char *company_id, json_t **ret,
                              struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        int r;

        TRY(stmt(s, SQL_COMPANY_GET, &st, err));
        TRY(bind_text(s, st, 1, company_id, err));
        r = step_row(s, st, ret, "reading a company", err);
        if (r == -ENOENT)
                return not_found(err, "no company with id '%s'", company_id ? company_id : "");
        return r;
}

static int sqlite_company_members(struct mp_store *s, const char *company_id, json_t **ret,
                                  struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        _cleanup_json_ json_t *arr = json_array();

        if (!arr)
                return -ENOMEM;
        TRY(stmt(s, SQL_COMPANY_MEMBERS, &st, err));
        TRY(bind_text(s, st, 1, company_id, err));
        TRY(step_all(s, st, arr, "listing a company's members", err));
        *ret = TAKE_PTR(arr);
        return 0;
}

/* The member's role now, and whether changing it to new_role (NULL: removing the member)
 * leaves the company an admin: 0, -ENOENT or -EPERM. */
static int member_check(struct mp_store *s, const char *company_id, const char *user_id,
                        const char *new_role, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *role = NULL, *others = NULL;
        bool was_admin;
        int rc;

        TRY(stmt(s, SQL_MEMBER_ROLE, &role, err));
        TRY(bind_text(s, role, 1, user_id, err));
        TRY(bind_text(s, role, 2, company_id, err));
        rc = sqlite3_step(role);
        if (rc == SQLITE_DONE)
                return not_found(err, "no member with id '%s' in this company", user_id ? user_id : "");
        if (rc != SQLITE_ROW)
                return sql_fail(s, rc, err, "reading a member's role");
        was_admin = strcmp((const char *) sqlite3_column_text(role, 0), "admin") == 0;
        if (!was_admin || (new_role && strcmp(new_role, "admin") == 0))
                return 0;
        TRY(stmt(s, SQL_OTHER_ADMINS, &others, err));
        TRY(bind_text(s, others, 1, company_id, err));
        TRY(bind_text(s, others, 2, user_id, err));
        rc = sqlite3_step(others);
        if (rc != SQLITE_ROW)
                return sql_fail(s, rc, err, "counting a company's admins");
        if (sqlite3_column_int64(others, 0) == 0)
                return mp_error_set(err, EPERM, 409, "conflict",
                                    "the company would be left without an admin");
        return 0;
}

static int member_set_role_tx(struct mp_store *s, const char *company_id, const char *user_id,
                              const char *role, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *up = NULL;

        TRY(member_check(s, company_id, user_id, role, err));
        TRY(stmt(s, SQL_MEMBER_SET_ROLE, &up, err));
        TRY(bind_text(s, up, 1, role, err));
        TRY(bind_text(s, up, 2, user_id, err));
        TRY(bind_text(s, up, 3, company_id, err));
        TRY(step_done(s, up, "setting a member's role", err));
        return 0;
}

static int sqlite_member_set_role(struct mp_store *s, const char *company_id, const char *user_id,
                                  const char *role, struct mp_error *err) {
        LOCKED(s);
        bool known = false;

        for (const char *const *r = roles; *r && role; r++)
                known |= strcmp(*r, role) == 0;
        if (!known)
                return invalid(err, "a role is admin, member or viewer, not '%s'", role ? role : "");
        TRY(tx_begin(s, err));
        return tx_end(s, member_set_role_tx(s, company_id, user_id, role, err), err);
}

static int member_remove_tx(struct mp_store *s, const char *company_id, const char *user_id,
                            int64_t now, struct mp_error *err) {
        _cleanup_stmt_ sqlite3_stmt *up = NULL, *revoke = NULL;

        TRY(member_check(s, company_id, user_id, NULL, err));
        TRY(stmt(s, SQL_MEMBER_REMOVE, &up, err));
        TRY(bind_text(s, up, 1, user_id, err));
        TRY(bind_text(s, up, 2, company_id, err));
        TRY(step_done(s, up, "removing a member", err));
        TRY(stmt(s, SQL_TOKENS_REVOKE_ALL, &revoke, err));
        TRY(bind_int(s, revoke, 1, now > 0 ? now : 1, err));
        TRY(bind_text(s, revoke, 2, user_id, err));
        TRY(step_done(s, revoke, "revoking a removed member's tokens", err));
        return 0;
}

static int sqlite_member_remove(struct mp_store *s, const char *company_id, const char *user_id,
                                int64_t now, struct mp_error *err) {
        LOCKED(s);

        TRY(tx_begin(s, err));
        return tx_end(s, member_remove_tx(s, company_id, user_id, now, err), err);
}

static int sqlite_function_catalogue(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                     struct mp_error *err) {
        LOCKED(s);
        _cleanup_stmt_ sqlite3_stmt *st = NULL;
        struct catalogue_args a;
        int r;

        TRY(catalogue_args_read(filter, &a, err));
        if ((r = stmt(s, SQL_CATALOGUE, &st, err)) < 0 || (r = bind_text(s, st, 1, a.q, err)) < 0 ||
            (r = bind_text(s, st, 2, a.tag, err)) < 0 || (r = bind_text(s, st, 3, a.author_email, err)) < 0 ||
            (r = bind_text(s, st, 4, a.author_name, err)) < 0 ||
            (a.cursor && ((r = bind_int(s, st, 5, a.cursor_t, err)) < 0 ||
                          (r = bind_text(s, st, 6, a.cursor_id, err)) < 0)) ||
            (r = bind_int(s, st, 7, a.limit + 1, err)) < 0) {
                catalogue_args_free(&a);
                return r;
        }
        r = run_page(s, st, a.limit, "created_at", ret, "searching the catalogue", err);
        catalogue_args_free(&a);
        return r;
}

const struct mp_store_ops mp_store_sqlite_ops = {
        .scheme = "sqlite",
        .open = sqlite_open,
        .close = sqlite_close,
        .company_ensure = sqlite_company_ensure,
        .user_create = sqlite_user_create,
        .user_get = sqlite_user_get,
        .user_set_password = sqlite_user_set_password,
        .user_set_identity = sqlite_user_set_identity,
        .token_create = sqlite_token_create,
        .token_lookup = sqlite_token_lookup,
        .token_list = sqlite_token_list,
        .token_revoke = sqlite_token_revoke,
        .token_revoke_sessions = sqlite_token_revoke_sessions,
        .audit_append = sqlite_audit_append,
        .audit_list = sqlite_audit_list,
        .function_create = sqlite_function_create,
        .function_get = sqlite_function_get,
        .function_find = sqlite_function_find,
        .function_list = sqlite_function_list,
        .function_update = sqlite_function_update,
        .function_get_version = sqlite_function_get_version,
        .function_list_versions = sqlite_function_list_versions,
        .function_delete = sqlite_function_delete,
        .task_create = sqlite_task_create,
        .task_get = sqlite_task_get,
        .task_list = sqlite_task_list,
        .task_start = sqlite_task_start,
        .task_retry = sqlite_task_retry,
        .task_finish = sqlite_task_finish,
        .task_requeue = sqlite_task_requeue,
        .job_claim = sqlite_job_claim,
        .job_extend = sqlite_job_extend,
        .job_release_all = sqlite_job_release_all,
        .company_get = sqlite_company_get,
        .company_members = sqlite_company_members,
        .member_set_role = sqlite_member_set_role,
        .member_remove = sqlite_member_remove,
        .function_catalogue = sqlite_function_catalogue,
};
