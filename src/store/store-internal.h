/* store/: what the operations (store-ops.c) need from a database driver, and what the
 * dispatch (store.c) needs from both. Each operation of the port is written once, in
 * store-ops.c, over this small interface; a driver (store-sqlite.c, store-postgres.c)
 * owns connections, binding, row decoding and transactions, and says where its dialect
 * differs as data (the flags in struct mp_store_driver).
 *
 * SQL texts number their parameters ?N (SQLite's form; the PostgreSQL driver writes $N).
 * ?N means the Nth bound value wherever it appears, in both dialects. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

/* Return from the function when expr fails. */
#define TRY(expr)                    \
        do {                         \
                int _r = (expr);     \
                if (_r < 0)          \
                        return _r;   \
        } while (0)

/* ---- values bound to ?N ---- */

enum mp_store_type { MP_STORE_TEXT, MP_STORE_INT };

struct mp_store_param {
        enum mp_store_type type;
        bool null;
        const char *text;  /* MP_STORE_TEXT: len bytes (the driver may stop at a NUL) */
        size_t len;
        int64_t num;       /* MP_STORE_INT */
        char *owned;       /* freed with the statement when set (text points into it) */
};

static inline struct mp_store_param mp_store_param_text(const char *v) {
        return (struct mp_store_param) { .type = MP_STORE_TEXT, .null = !v, .text = v,
                                         .len = v ? strlen(v) : 0 };
}

#define PT(v) mp_store_param_text(v)
#define PI(v) ((struct mp_store_param) { .type = MP_STORE_INT, .num = (v) })
#define PI_NULL ((struct mp_store_param) { .type = MP_STORE_INT, .null = true })

static inline void mp_store_params_free(struct mp_store_param *p, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(p[i].owned);
                p[i].owned = NULL;
        }
}

/* ---- running an operation ---- */

/* A driver's connection, lent to one operation for its whole run; each driver's own
 * connection struct starts with it. */
struct mp_store_conn {
        const struct mp_store_driver *drv;
};

/* The body of an operation: statements on c. It may be run again after a failed
 * attempt (a connection lost before anything was committed, a deadlock), so it writes
 * what it returns into ctx only when it succeeds, replacing what an earlier attempt
 * left there. >= 0 success (the value is returned to the caller), -errno failure. */
typedef int (*mp_store_fn)(struct mp_store_conn *c, void *ctx, struct mp_error *err);

/* How an operation runs (the `kind` of run()): */
enum {
        /* Reads only; no transaction (each statement sees what was committed). */
        MP_RUN_READ = 0,
        /* It writes, all or nothing: one transaction. When run() returns, the change is
         * committed and, unless MP_RUN_LOSSY, durable as the store's durability says. */
        MP_RUN_ATOMIC = 1 << 0,
        /* It writes, but each statement stands on its own (one statement, or a touch
         * beside reads): no transaction is needed. Durable as MP_RUN_ATOMIC. */
        MP_RUN_WRITE = 1 << 1,
        /* Its change may be lost in a power cut without harm, so nobody waits for the
         * disk: job claims, leases and the move to running, which a restart releases
         * and redoes anyway. What is committed after it is synced with it, in order. */
        MP_RUN_LOSSY = 1 << 2,
};

/* struct mp_store as the operations see it: every driver's store starts with it. */
struct mp_store {
        struct mp_store_base base; /* first, for MP_STORE() */
        const struct mp_store_driver *drv;
        char where[320];           /* the database, for messages: its path, or "the
                                    * database at host:port/db" */
};

struct mp_store_driver {
        const char *scheme; /* "sqlite", "postgres" */
        /* ---- the dialect, as data ---- */
        /* SELECT ... FOR UPDATE [SKIP LOCKED] exist and are needed: writers run at once
         * and lock the rows they decide on (PostgreSQL). Without them (SQLite) a write
         * transaction holds the database's one write lock from its start. */
        bool row_locks;

        /* Connect as the URL says (no migrations: the caller runs them next). */
        int (*open)(const char *url, struct mp_store **ret, struct mp_error *err);
        void (*close)(struct mp_store *s);
        /* Run fn on a connection as kind says (MP_RUN_*). Returns fn's result, or the
         * error that kept its change from being committed. */
        int (*run)(struct mp_store *s, unsigned kind, mp_store_fn fn, void *ctx,
                   struct mp_error *err);
        /* One statement. Its rows (objects keyed by column name; JSON columns parsed)
         * are appended to rows when rows is an array; p is freed (mp_store_params_free).
         * Returns the count of rows returned when rows != NULL, else of rows changed.
         * stable: sql is one of the program's static texts (the driver may cache its
         * prepared form under that address); false for a text built on the fly. */
        int (*query)(struct mp_store_conn *c, const char *sql, bool stable,
                     struct mp_store_param *p, size_t n, json_t *rows, const char *what,
                     struct mp_error *err);
        /* Several statements without parameters (a migration's DDL). */
        int (*script)(struct mp_store_conn *c, const char *sql, const char *what,
                      struct mp_error *err);
        /* Inside a MP_RUN_READ run: begin (1), commit (0) or roll back (-1) a transaction
         * (migrations take one each). */
        int (*tx)(struct mp_store_conn *c, int what, struct mp_error *err);
        /* Hold (lock = true) or release a lock that keeps other processes from migrating
         * at the same time; NULL when transactions suffice. */
        int (*migration_lock)(struct mp_store_conn *c, bool lock, struct mp_error *err);
        /* Settings worth showing: {"backend", "durability", ...}. */
        int (*info)(struct mp_store *s, json_t **ret, struct mp_error *err);
};

/* The drivers. */
extern const struct mp_store_driver mp_store_sqlite_driver;
extern const struct mp_store_driver mp_store_postgres_driver;

/* store-ops.c: open a store through a driver and run the migrations. */
int mp_store_sql_open(const struct mp_store_driver *drv, const char *url, struct mp_store **ret,
                      struct mp_error *err);

/* ---- what the drivers share ---- */

/* Columns whose text is JSON: parsed on the way out. */
bool mp_store_is_json_column(const char *name);
/* A column's text as the JSON value a row holds: parsed for a JSON column, else a
 * string (bytes that are not UTF-8 become U+FFFD). */
int mp_store_text_value(const char *column, const char *text, size_t len, json_t **ret,
                        struct mp_error *err);
/* Text as a JSON string, with U+FFFD for bytes that are not UTF-8; NULL: no memory. */
json_t *mp_store_text_json(const char *p, size_t n);
