/* store/: every operation of the port (store.h), written once over the driver interface
 * (store-internal.h). An operation is two parts: the public function checks its
 * arguments and asks the driver to run the body as MP_RUN_* says (read, atomic, a
 * write whose loss in a power cut is harmless); the body runs statements on the
 * connection it is lent. A new operation is one body, one wrapper and a line in the
 * tables at the end; no driver changes. The SQL lives in store-sql.h. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/util.h"
#include "store/store-internal.h"
#include "store/store-sql.h"

/* ---- what the drivers share ---- */

bool mp_store_is_json_column(const char *name) {
        return is_json_column(name);
}

json_t *mp_store_text_json(const char *p, size_t n) {
        return text_json(p, n);
}

int mp_store_text_value(const char *column, const char *text, size_t len, json_t **ret,
                        struct mp_error *err) {
        if (is_json_column(column)) {
                json_error_t jerr;
                *ret = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
                if (!*ret)
                        return mp_error_set(err, EIO, 500, "storage",
                                            "column %s holds JSON that does not parse: %s", column,
                                            jerr.text);
                return 0;
        }
        *ret = text_json(text ? text : "", len);
        return *ret ? 0 : -ENOMEM;
}

/* ---- statements ---- */

#define PARAMS(...) (struct mp_store_param[]) { __VA_ARGS__ }, \
        ELEMENTSOF(((struct mp_store_param[]) { __VA_ARGS__ }))
#define NO_PARAMS NULL, 0

/* A statement whose rows do not matter: the count of rows it changed. */
static int q_exec(struct mp_store_conn *c, const char *sql, struct mp_store_param *p, size_t n,
                  const char *what, struct mp_error *err) {
        return c->drv->query(c, sql, true, p, n, NULL, what, err);
}

/* Every row, appended to arr: the count. */
static int q_all(struct mp_store_conn *c, const char *sql, struct mp_store_param *p, size_t n,
                 json_t *arr, const char *what, struct mp_error *err) {
        return c->drv->query(c, sql, true, p, n, arr, what, err);
}

/* The first row: 0, or -ENOENT without a message (the caller names what is missing). */
static int q_row(struct mp_store_conn *c, const char *sql, struct mp_store_param *p, size_t n,
                 json_t **ret, const char *what, struct mp_error *err) {
        _cleanup_json_ json_t *rows = json_array();

        if (!rows) {
                mp_store_params_free(p, n);
                return -ENOMEM;
        }
        TRY(q_all(c, sql, p, n, rows, what, err));
        if (json_array_size(rows) == 0)
                return -ENOENT;
        *ret = json_incref(json_array_get(rows, 0));
        return 0;
}

/* Does the query return a row? 1, 0 or -errno. */
static int q_exists(struct mp_store_conn *c, const char *sql, struct mp_store_param *p, size_t n,
                    const char *what, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int r = q_row(c, sql, p, n, &row, what, err);

        return r == -ENOENT ? 0 : r < 0 ? r : 1;
}

/* Column `col` of the first row, an integer: 0 or -ENOENT. */
static int q_int(struct mp_store_conn *c, const char *sql, struct mp_store_param *p, size_t n,
                 const char *col, int64_t *ret, const char *what, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        json_t *v;

        TRY(q_row(c, sql, p, n, &row, what, err));
        v = json_object_get(row, col);
        if (!json_is_integer(v))
                return mp_error_set(err, EIO, 500, "storage", "%s: %s is not an integer", what, col);
        *ret = json_integer_value(v);
        return 0;
}

/* ---- rows from callers ---- */

/* How a caller's field becomes a parameter: defaults, types, allowed values. */
static int col_param(const struct col *c, json_t *row, const char *what,
                     struct mp_store_param *ret, struct mp_error *err) {
        json_t *v = json_object_get(row, c->name);

        if (!v || json_is_null(v)) {
                if (c->flags & COL_REQUIRED)
                        return invalid(err, "%s: `%s` is missing", what, c->name);
                if (c->kind == COL_INT && (c->flags & COL_NULL))
                        *ret = PI_NULL;
                else if (c->kind == COL_INT)
                        *ret = PI((c->flags & COL_NOW) ? mp_now_ms() : 0);
                else
                        *ret = PT(c->def);
                return 0;
        }
        switch (c->kind) {
        case COL_JSON: {
                char *text = mp_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
                if (!text)
                        return mp_error_set(err, ENOMEM, 500, "storage", "%s: cannot serialize `%s`",
                                            what, c->name);
                *ret = PT(text);
                ret->owned = text;
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
                *ret = (struct mp_store_param) { .type = MP_STORE_TEXT, .text = json_string_value(v),
                                                 .len = json_string_length(v) };
                return 0;
        }
        return -EINVAL;
}

/* Parameters for columns cols[0..n) from a caller's row; on failure none is left owned. */
static int cols_params(const struct col *const *cols, size_t n, json_t *row, const char *what,
                       struct mp_store_param *p, struct mp_error *err) {
        for (size_t i = 0; i < n; i++) {
                int r = col_param(cols[i], row, what, &p[i], err);
                if (r < 0) {
                        mp_store_params_free(p, i);
                        return r;
                }
        }
        return 0;
}

#define MAX_COLS 32

/* A table a caller's rows are inserted into; the INSERT text is built once. */
struct table {
        const char *name;
        const struct col *cols;
        size_t n_cols;
        pthread_once_t once;
        char sql[1024];
};

#define TABLE(name, cols) { name, cols, ELEMENTSOF(cols), PTHREAD_ONCE_INIT, "" }

static struct table users_table = TABLE("users", user_cols);
static struct table tokens_table = TABLE("tokens", token_cols);
static struct table audit_table = TABLE("audit", audit_cols);
static struct table functions_table = TABLE("functions", function_cols);
static struct table versions_table = TABLE("function_versions", version_cols);
static struct table tasks_table = TABLE("tasks", task_cols);
static struct table workflows_table = TABLE("workflows", workflow_cols);
static struct table workflow_versions_table = TABLE("workflow_versions", workflow_version_cols);
static struct table workflow_runs_table = TABLE("workflow_runs", workflow_run_cols);
static struct table studies_table = TABLE("studies", study_cols);
static struct table *const tables[] = {
        &users_table, &tokens_table, &audit_table, &functions_table, &versions_table, &tasks_table,
        &workflows_table, &workflow_versions_table, &workflow_runs_table, &studies_table,
};

static void tables_build(void) {
        for (size_t k = 0; k < ELEMENTSOF(tables); k++) {
                struct table *t = tables[k];
                size_t n = (size_t) snprintf(t->sql, sizeof(t->sql), "INSERT INTO %s (", t->name);
                for (size_t i = 0; i < t->n_cols; i++)
                        n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, "%s%s", i ? ", " : "",
                                               t->cols[i].name);
                n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, ") VALUES (");
                for (size_t i = 0; i < t->n_cols; i++)
                        n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, "%s?%zu", i ? ", " : "",
                                               i + 1);
                n += (size_t) snprintf(t->sql + n, sizeof(t->sql) - n, ")");
                assert(n < sizeof(t->sql) && t->n_cols <= MAX_COLS);
        }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

/* INSERT a row built from the caller's object. */
static int insert_row(struct mp_store_conn *c, struct table *t, json_t *row, const char *what,
                      struct mp_error *err) {
        struct mp_store_param p[MAX_COLS] = { 0 };
        const struct col *cols[MAX_COLS];
        int r;

        pthread_once(&tables_once, tables_build);
        for (size_t i = 0; i < t->n_cols; i++)
                cols[i] = &t->cols[i];
        TRY(cols_params(cols, t->n_cols, row, what, p, err));
        r = q_exec(c, t->sql, p, t->n_cols, what, err);
        return r < 0 ? r : 0;
}

/* INSERT a task: every stored task (not a cache copy) is a call of its day, the daily
 * quota's count (usage.c), counted in the same transaction. */
static int insert_task(struct mp_store_conn *c, json_t *task, const char *what, struct mp_error *err) {
        TRY(insert_row(c, &tasks_table, task, what, err));
        int r = q_exec(c, SQL_CALLS_ADD, PARAMS(PT(json_string_value(json_object_get(task, "id")))),
                       "counting a call", err);
        return r < 0 ? r : 0;
}

/* "UPDATE table SET <fixed>, col = ?N, ... WHERE <where>": the columns named in fields
 * (each must be in `allowed`; `always` of them are set whether present or not), numbered
 * after the n_fixed parameters the caller's fixed text uses; `where` may use ?W, the
 * parameter that follows them (the caller binds it last). The text is built on the fly;
 * the parameters are filled from fields. The one update builder of the store. */
struct update {
        const char *table, *fixed, *where, *what;
        const struct col *allowed;
        size_t n_allowed, always;
        const char *not_allowed; /* the message's end when a field is not in allowed */
};

static int update_build(const struct update *u, json_t *fields, size_t n_fixed, char *sql,
                        size_t size, struct mp_store_param *p, size_t *ret_n,
                        struct mp_error *err) {
        const struct col *set[MAX_COLS];
        size_t n_set = 0, len;
        const char *key;
        json_t *value;

        for (size_t i = 0; i < u->always; i++)
                set[n_set++] = &u->allowed[i];
        json_object_foreach(fields, key, value) {
                size_t i;
                for (i = 0; i < u->n_allowed; i++)
                        if (strcmp(key, u->allowed[i].name) == 0)
                                break;
                if (i == u->n_allowed)
                        return invalid(err, "%s: `%s` %s", u->what, key, u->not_allowed);
                if (i >= u->always && n_set < MAX_COLS)
                        set[n_set++] = &u->allowed[i];
        }
        len = (size_t) snprintf(sql, size, "UPDATE %s SET %s", u->table, u->fixed ? u->fixed : "");
        for (size_t i = 0; i < n_set; i++)
                len += (size_t) snprintf(sql + len, size - len, "%s%s = ?%zu",
                                         i || u->fixed ? ", " : "", set[i]->name, n_fixed + i + 1);
        len += (size_t) snprintf(sql + len, size - len, " WHERE ");
        for (const char *w = u->where; *w && len + 8 < size; w++) {
                if (w[0] == '?' && w[1] == 'W') {
                        len += (size_t) snprintf(sql + len, size - len, "?%zu", n_fixed + n_set + 1);
                        w++;
                } else
                        sql[len++] = *w;
        }
        sql[len] = 0;
        assert(len + 1 < size);
        TRY(cols_params(set, n_set, fields, u->what, p + n_fixed, err));
        *ret_n = n_fixed + n_set;
        return 0;
}

/* Run an update built by update_build: fixed parameters first, then the fields', then
 * `last`. The count of rows changed. */
static int update_run(struct mp_store_conn *c, const struct update *u, json_t *fields,
                      const struct mp_store_param *fixed, size_t n_fixed,
                      struct mp_store_param last, struct mp_error *err) {
        struct mp_store_param p[MAX_COLS + 4] = { 0 };
        char sql[1024];
        size_t n;

        assert(n_fixed <= 2);
        for (size_t i = 0; i < n_fixed; i++)
                p[i] = fixed[i];
        TRY(update_build(u, fields, n_fixed, sql, sizeof(sql), p, &n, err));
        p[n++] = last;
        return c->drv->query(c, sql, false, p, n, NULL, u->what, err);
}

/* ---- lists ---- */

/* The filters of a list, in parameter order (a, b, c), then a cursor and a limit. */
struct list_args {
        const char *a, *b, *c;
        const char *cursor;
        int64_t cursor_t;
        char cursor_id[CURSOR_MAX_ID + 1];
        int limit;
        bool audit;    /* audit_list: a fourth filter, since (an integer or absent) */
        json_t *since;
        bool span;     /* task_list: since and until (?7, ?8: integers or absent) */
        json_t *until;
        const char *sql, *time_col, *what;
        struct mp_store_list out;
};

static int list_args_read(json_t *filter, struct list_args *l, struct mp_error *err) {
        TRY(filter_str(filter, "cursor", &l->cursor, err));
        TRY(filter_limit(filter, &l->limit, err));
        if (l->cursor)
                TRY(cursor_decode(l->cursor, &l->cursor_t, l->cursor_id, err));
        return 0;
}

/* Rows asked for are limit + 1: the extra one says there is a next page. */
static int page_fn(struct mp_store_conn *c, json_t *items, int limit, const char *time_col,
                   struct mp_store_list *ret) {
        _cleanup_free_ char *next = NULL;

        if (json_array_size(items) > (size_t) limit) {
                json_t *last;
                json_array_remove(items, (size_t) limit);
                last = json_array_get(items, (size_t) limit - 1);
                next = cursor_encode(json_integer_value(json_object_get(last, time_col)),
                                     json_string_value(json_object_get(last, "id")));
                if (!next)
                        return -ENOMEM;
        }
        json_decref(ret->items);
        free(ret->next_cursor);
        ret->items = json_incref(items);
        ret->next_cursor = TAKE_PTR(next);
        return 0;
}

static int list_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct list_args *l = ctx;
        _cleanup_json_ json_t *items = json_array();

        if (!items)
                return -ENOMEM;
        if (l->audit)
                TRY(q_all(c, l->sql,
                          PARAMS(PT(l->a), PT(l->b), PT(l->c),
                                 json_is_integer(l->since) ? PI(json_integer_value(l->since)) : PI_NULL,
                                 l->cursor ? PI(l->cursor_t) : PI_NULL,
                                 PT(l->cursor ? l->cursor_id : NULL), PI(l->limit + 1)),
                          items, l->what, err));
        else if (l->span)
                TRY(q_all(c, l->sql,
                          PARAMS(PT(l->a), PT(l->b), PT(l->c), l->cursor ? PI(l->cursor_t) : PI_NULL,
                                 PT(l->cursor ? l->cursor_id : NULL), PI(l->limit + 1),
                                 json_is_integer(l->since) ? PI(json_integer_value(l->since)) : PI_NULL,
                                 json_is_integer(l->until) ? PI(json_integer_value(l->until)) : PI_NULL),
                          items, l->what, err));
        else
                TRY(q_all(c, l->sql,
                          PARAMS(PT(l->a), PT(l->b), PT(l->c), l->cursor ? PI(l->cursor_t) : PI_NULL,
                                 PT(l->cursor ? l->cursor_id : NULL), PI(l->limit + 1)),
                          items, l->what, err));
        return page_fn(c, items, l->limit, l->time_col, &l->out);
}

static int list_run(struct mp_store *s, struct list_args *l, struct mp_store_list *ret,
                    struct mp_error *err) {
        int r = s->drv->run(s, MP_RUN_READ, list_fn, l, err);

        if (r < 0) {
                json_decref(l->out.items);
                free(l->out.next_cursor);
                return r;
        }
        *ret = l->out;
        return 0;
}

/* ---- migrations ---- */

static int migration_apply(struct mp_store_conn *c, int version, struct mp_error *err) {
        int r = q_exists(c, SQL_MIGRATION_HAS, PARAMS(PI(version)), "reading schema_migrations", err);

        if (r != 0)
                return r; /* already applied (another process may just have done it) */
        r = c->drv->script(c, migrations[version - 1], "applying a migration", err);
        if (r < 0) {
                mp_error_prefix(err, "migration %d", version);
                return r;
        }
        r = q_exec(c, SQL_MIGRATION_ADD, PARAMS(PI(version), PI(mp_now_ms())), "recording a migration",
                   err);
        return r < 0 ? r : 0;
}

static int migrate_locked(struct mp_store_conn *c, struct mp_error *err) {
        const int known = (int) ELEMENTSOF(migrations);
        int64_t have = 0;

        TRY(q_exec(c, SQL_MIGRATIONS_TABLE, NO_PARAMS, "creating schema_migrations", err));
        TRY(q_int(c, SQL_MIGRATION_MAX, NO_PARAMS, "n", &have, "reading schema_migrations", err));
        if (have > known)
                return mp_error_set(err, EPROTO, 500, "storage",
                                    "the database is at schema version %" PRId64 ", newer than "
                                    "this program knows (%d): run a newer mecapy", have, known);
        for (int v = (int) have + 1; v <= known; v++) {
                int r;
                TRY(c->drv->tx(c, 1, err));
                r = migration_apply(c, v, err);
                if (r >= 0)
                        r = c->drv->tx(c, 0, err);
                if (r < 0) {
                        c->drv->tx(c, -1, NULL);
                        return r;
                }
        }
        return 0;
}

/* Each migration runs once, in its own transaction; processes that start together take
 * turns where the driver has a lock for it (a session lock, released with the
 * connection of a process that dies mid-migration). */
static int migrate_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        int r;

        if (!c->drv->migration_lock)
                return migrate_locked(c, err);
        TRY(c->drv->migration_lock(c, true, err));
        r = migrate_locked(c, err);
        {
                int q = c->drv->migration_lock(c, false, r < 0 ? NULL : err);
                if (r >= 0 && q < 0)
                        r = q;
        }
        return r;
}

/* ---- identity ---- */

struct company_ensure_args {
        const char *name;
        json_t *row;
};

static int company_ensure_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct company_ensure_args *a = ctx;
        json_t *row = NULL;
        char id[MP_ID_LEN + 1];
        int r;

        mp_id_new(id);
        TRY(q_exec(c, SQL_COMPANY_INSERT, PARAMS(PT(id), PT(a->name), PI(mp_now_ms())),
                   "creating a company", err));
        r = q_row(c, SQL_COMPANY_BY_NAME, PARAMS(PT(a->name)), &row, "reading a company", err);
        if (r == -ENOENT)
                return mp_error_set(err, EIO, 500, "storage", "company %s vanished", a->name);
        if (r < 0)
                return r;
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_company_ensure(struct mp_store *s, const char *name, json_t **ret_company,
                              struct mp_error *err) {
        struct company_ensure_args a = { .name = name };
        int r;

        if (!name || !*name)
                return invalid(err, "a company needs a `name`");
        r = s->drv->run(s, MP_RUN_ATOMIC, company_ensure_fn, &a, err);
        if (r < 0 || !ret_company) {
                json_decref(a.row);
                return r < 0 ? r : 0;
        }
        *ret_company = a.row;
        return 0;
}

static int user_create_fn(struct mp_store_conn *c, void *user, struct mp_error *err) {
        int r = insert_row(c, &users_table, user, "creating a user", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "a user with the email '%s' (or that id) already exists",
                                    json_string_value(json_object_get(user, "email")));
        if (r == -ENOENT)
                return not_found(err, "creating a user: company %s does not exist",
                                 json_string_value(json_object_get(user, "company_id")));
        return r;
}

static int ops_user_create(struct mp_store *s, json_t *user, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_WRITE, user_create_fn, user, err);
}

/* A read of one row by one text parameter; `missing` is the -ENOENT message. */
struct get_args {
        const char *sql, *value, *what;
        json_t *row;
};

static int get_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct get_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, a->sql, PARAMS(PT(a->value)), &row, a->what, err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int get_run(struct mp_store *s, struct get_args *a, json_t **ret, struct mp_error *err) {
        int r = s->drv->run(s, MP_RUN_READ, get_fn, a, err);

        if (r < 0) {
                json_decref(a->row);
                return r;
        }
        *ret = a->row;
        return 0;
}

static int ops_user_get(struct mp_store *s, const char *field, const char *value, json_t **ret,
                        struct mp_error *err) {
        struct get_args a = { .value = value, .what = "reading a user" };
        int r;

        if (field && strcmp(field, "id") == 0)
                a.sql = SQL_USER_BY_ID;
        else if (field && strcmp(field, "email") == 0)
                a.sql = SQL_USER_BY_EMAIL;
        else if (field && strcmp(field, "external_id") == 0)
                a.sql = SQL_USER_BY_EXTERNAL_ID;
        else
                return invalid(err, "users are looked up by id, email or external_id, not by '%s'",
                               field ? field : "(null)");
        if (!value)
                return not_found(err, "no user with an empty %s", field);
        r = get_run(s, &a, ret, err);
        if (r == -ENOENT)
                return not_found(err, "no user with %s '%s'", field, value);
        return r;
}

/* One statement with text and integer parameters, changing rows that must exist: 0, or
 * -ENOENT ("no <missing> with id '<missing_id>'") when it changed none, unless none_ok
 * (then the count). Most small writes are this. */
struct change_args {
        const char *sql, *what, *missing, *missing_id;
        struct mp_store_param p[5];
        size_t n;
        bool none_ok;   /* 0 rows is fine: return the count */
};

static int change_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct change_args *a = ctx;
        struct mp_store_param p[ELEMENTSOF(a->p)];
        int r;

        memcpy(p, a->p, sizeof(p)); /* the driver consumes them; a retry needs them again */
        r = q_exec(c, a->sql, p, a->n, a->what, err);
        if (r == 0 && !a->none_ok)
                return not_found(err, "no %s with id '%s'", a->missing, a->missing_id ? a->missing_id : "");
        return r < 0 ? r : a->none_ok ? r : 0;
}

#define CHANGE(sql_, what_, missing_, id_, ...)                                           \
        ((struct change_args) { .sql = (sql_), .what = (what_), .missing = (missing_),   \
                                .missing_id = (id_), .p = { __VA_ARGS__ },                \
                                .n = ELEMENTSOF(((struct mp_store_param[]) { __VA_ARGS__ })) })

static int ops_user_set_password(struct mp_store *s, const char *user_id, const char *hash,
                                 struct mp_error *err) {
        struct change_args a = CHANGE(SQL_USER_SET_PASSWORD, "setting a password", "user",
                                      user_id, PT(hash), PT(user_id));

        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_user_set_identity(struct mp_store *s, const char *user_id, const char *email,
                                 const char *role, const char *company_id, struct mp_error *err) {
        struct change_args a = CHANGE(SQL_USER_SET_IDENTITY, "updating a user's identity",
                                      "user", user_id, PT(email), PT(role),
                                      PT(company_id), PT(user_id));
        int r = s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "another user already has the email '%s'", email ? email : "");
        return r;
}

static int token_create_fn(struct mp_store_conn *c, void *token, struct mp_error *err) {
        int r = insert_row(c, &tokens_table, token, "creating a token", err);

        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "creating a token: a token with that id or hash already exists");
        if (r == -ENOENT)
                return not_found(err, "creating a token: user %s does not exist",
                                 json_string_value(json_object_get(token, "user_id")));
        return r;
}

static int ops_token_create(struct mp_store *s, json_t *token, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_WRITE, token_create_fn, token, err);
}

struct token_lookup_args {
        const char *hash;
        int64_t now;
        json_t *out;
};

static int token_lookup_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct token_lookup_args *a = ctx;
        _cleanup_json_ json_t *token = NULL, *user = NULL;
        json_t *o;
        int r;

        r = q_row(c, SQL_TOKEN_LIVE, PARAMS(PT(a->hash), PI(a->now)), &token, "looking up a token", err);
        if (r == -ENOENT)
                return not_found(err, "no live token matches");
        if (r < 0)
                return r;
        r = q_row(c, SQL_USER_BY_ID, PARAMS(PT(json_string_value(json_object_get(token, "user_id")))),
                  &user, "reading a user", err);
        if (r == -ENOENT)
                return not_found(err, "the token's user no longer exists");
        if (r < 0)
                return r;
        r = q_exec(c, SQL_TOKEN_TOUCH, PARAMS(PI(a->now), PT(json_string_value(json_object_get(token, "id")))),
                   "recording a token's use", err);
        if (r < 0)
                return r;
        if (r > 0)
                json_object_set_new(token, "last_used_at", json_integer(a->now));
        o = json_pack("{s:O,s:O}", "token", token, "user", user);
        if (!o)
                return -ENOMEM;
        json_decref(a->out);
        a->out = o;
        return 0;
}

static int ops_token_lookup(struct mp_store *s, const char *token_hash, int64_t now, json_t **ret,
                            struct mp_error *err) {
        struct token_lookup_args a = { .hash = token_hash, .now = now };
        int r;

        if (!token_hash)
                return not_found(err, "no live token matches");
        /* No transaction: this runs on every authenticated request. Two reads and a touch
         * that writes at most once a minute are each consistent on their own, and a
         * touch lost in a power cut costs nothing: nobody waits for the disk. */
        r = s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, token_lookup_fn, &a, err);
        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

/* Every row of a query with one text parameter, as an array. */
struct all_args {
        const char *sql, *value, *what;
        json_t *arr;
};

static int all_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct all_args *a = ctx;
        json_t *arr = json_array();
        int n;

        if (!arr)
                return -ENOMEM;
        n = q_all(c, a->sql, PARAMS(PT(a->value)), arr, a->what, err);
        if (n < 0) {
                json_decref(arr);
                return n;
        }
        json_decref(a->arr);
        a->arr = arr;
        return n;
}

static int all_run(struct mp_store *s, struct all_args *a, json_t **ret, struct mp_error *err) {
        int n = s->drv->run(s, MP_RUN_READ, all_fn, a, err);

        if (n < 0) {
                json_decref(a->arr);
                return n;
        }
        *ret = a->arr;
        return n;
}

static int ops_token_list(struct mp_store *s, const char *user_id, json_t **ret,
                          struct mp_error *err) {
        struct all_args a = { SQL_TOKEN_LIST, user_id, "listing tokens", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

struct token_revoke_args {
        const char *user_id, *token_id;
        int64_t now;
};

static int token_revoke_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct token_revoke_args *a = ctx;
        int r = q_exec(c, SQL_TOKEN_REVOKE, PARAMS(PI(a->now), PT(a->token_id), PT(a->user_id)),
                       "revoking a token", err);

        if (r != 0)
                return r < 0 ? r : 0;
        /* Nothing changed: revoked before (fine, revoking is idempotent) or not theirs. */
        r = q_exists(c, SQL_TOKEN_OF_USER, PARAMS(PT(a->token_id), PT(a->user_id)), "revoking a token",
                     err);
        if (r == 0)
                return not_found(err, "you have no token with id '%s'", a->token_id ? a->token_id : "");
        return r < 0 ? r : 0;
}

static int ops_token_revoke(struct mp_store *s, const char *user_id, const char *token_id,
                            int64_t now, struct mp_error *err) {
        struct token_revoke_args a = { user_id, token_id, now };

        return s->drv->run(s, MP_RUN_WRITE, token_revoke_fn, &a, err);
}

static int ops_token_revoke_sessions(struct mp_store *s, const char *user_id,
                                     const char *except_token_id, int64_t now,
                                     struct mp_error *err) {
        struct change_args a = CHANGE(SQL_TOKEN_REVOKE_SESSIONS, "revoking a user's sessions", NULL, NULL,
                                      PI(now), PT(user_id), PT(except_token_id));

        a.none_ok = true;
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

/* ---- the audit log ---- */

static int audit_append_fn(struct mp_store_conn *c, void *event, struct mp_error *err) {
        return insert_row(c, &audit_table, event, "writing an audit event", err);
}

static int ops_audit_append(struct mp_store *s, json_t *event, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_WRITE, audit_append_fn, event, err);
}

static int ops_audit_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                          struct mp_error *err) {
        struct list_args l = { .sql = SQL_AUDIT_LIST, .time_col = "at", .what = "listing audit events" };

        TRY(filter_str(filter, "company_id", &l.a, err));
        TRY(filter_str(filter, "kind", &l.b, err));
        TRY(filter_str(filter, "actor_id", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        l.audit = true;
        l.since = json_object_get(filter, "since");
        return list_run(s, &l, ret, err);
}

/* ---- functions ---- */

/* Insert `version` as version n of function id (a shallow copy gets the key columns). */
static int version_insert(struct mp_store_conn *c, const char *id, int n, json_t *version,
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
        return insert_row(c, &versions_table, v, "storing a function version", err);
}

struct function_create_args {
        json_t *fn, *version;
};

static int function_create_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct function_create_args *a = ctx;
        _cleanup_json_ json_t *f = json_copy(a->fn);
        json_t *created = json_object_get(a->fn, "created_at");
        int r;

        if (!f)
                return -ENOMEM;
        if (json_is_integer(created) && !json_object_get(a->fn, "updated_at"))
                json_object_set(f, "updated_at", created);
        r = insert_row(c, &functions_table, f, "creating a function", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "you already have a function named '%s'",
                                    json_string_value(json_object_get(a->fn, "name")));
        if (r == -ENOENT)
                return not_found(err, "creating a function: its owner or company does not exist");
        if (r < 0)
                return r;
        return version_insert(c, json_string_value(json_object_get(a->fn, "id")), 1, a->version,
                              json_is_integer(created) ? json_integer_value(created) : 0, err);
}

static int ops_function_create(struct mp_store *s, json_t *fn, json_t *version,
                               struct mp_error *err) {
        struct function_create_args a = { fn, version };

        if (!json_is_object(fn))
                return invalid(err, "a function must be an object");
        return s->drv->run(s, MP_RUN_ATOMIC, function_create_fn, &a, err);
}

static int ops_function_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_FUNCTION_GET, id, "reading a function", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no function with id '%s'", id ? id : "");
        return r;
}

struct find_args {
        const char *owner_id, *name;
        json_t *row;
};

static int function_find_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct find_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, SQL_FUNCTION_FIND, PARAMS(PT(a->owner_id), PT(a->name)), &row, "reading a function",
                  err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_function_find(struct mp_store *s, const char *owner_id, const char *name,
                             json_t **ret, struct mp_error *err) {
        struct find_args a = { owner_id, name, NULL };
        int r = s->drv->run(s, MP_RUN_READ, function_find_fn, &a, err);

        if (r == -ENOENT)
                return not_found(err, "you have no function named '%s'", name ? name : "");
        if (r < 0) {
                json_decref(a.row);
                return r;
        }
        *ret = a.row;
        return 0;
}

static int ops_function_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                             struct mp_error *err) {
        struct list_args l = { .sql = SQL_FUNCTION_LIST, .time_col = "created_at",
                               .what = "listing functions" };

        TRY(filter_str(filter, "viewer_id", &l.a, err));
        TRY(filter_str(filter, "company_id", &l.b, err));
        TRY(filter_str(filter, "name", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        return list_run(s, &l, ret, err);
}

static const struct update function_update_set = {
        .table = "functions", .fixed = "updated_at = ?1, latest_version = ?2", .where = "id = ?W",
        .what = "updating a function", .allowed = function_update_cols,
        .n_allowed = ELEMENTSOF(function_update_cols), .always = 0,
        .not_allowed = "cannot be changed (description and visibility can)",
};

struct function_update_args {
        const char *id;
        json_t *fields, *version;
        int64_t now;
        int latest;
};

static int function_update_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct function_update_args *a = ctx;
        int64_t latest = 0;
        int v, r;

        r = q_int(c, c->drv->row_locks ? SQL_FUNCTION_LATEST_LOCK : SQL_FUNCTION_LATEST,
                  PARAMS(PT(a->id)), "latest_version", &latest, "reading a function", err);
        if (r == -ENOENT)
                return not_found(err, "no function with id '%s'", a->id ? a->id : "");
        if (r < 0)
                return r;
        v = (int) latest;
        if (a->version) {
                /* the fields first: a refused field must not leave a version behind */
                char sql[1024];
                struct mp_store_param p[MAX_COLS + 4] = { 0 };
                size_t n;
                TRY(update_build(&function_update_set, a->fields, 0, sql, sizeof(sql), p, &n, err));
                mp_store_params_free(p, n);
                TRY(version_insert(c, a->id, v + 1, a->version, a->now, err));
                v++;
        }
        TRY(update_run(c, &function_update_set, a->fields, PARAMS(PI(a->now), PI(v)), PT(a->id), err));
        a->latest = v;
        return 0;
}

static int ops_function_update(struct mp_store *s, const char *id, json_t *fields,
                               json_t *version, int64_t now, int *ret_version,
                               struct mp_error *err) {
        struct function_update_args a = { id, fields, version, now, 0 };
        int r = s->drv->run(s, MP_RUN_ATOMIC, function_update_fn, &a, err);

        if (r >= 0 && ret_version)
                *ret_version = a.latest;
        return r < 0 ? r : 0;
}

struct version_args {
        const char *id;
        int version;
        json_t *row;
};

static int function_get_version_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct version_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, SQL_VERSION_GET, PARAMS(PT(a->id), PI(a->version)), &row,
                  "reading a function version", err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_function_get_version(struct mp_store *s, const char *id, int version, json_t **ret,
                                    struct mp_error *err) {
        struct version_args a = { id, version, NULL };
        int r;

        if (version < 0)
                return invalid(err, "a function version is a positive number, not %d", version);
        r = s->drv->run(s, MP_RUN_READ, function_get_version_fn, &a, err);
        if (r == -ENOENT) {
                if (version)
                        return not_found(err, "function '%s' has no version %d", id ? id : "", version);
                return not_found(err, "no function with id '%s'", id ? id : "");
        }
        if (r < 0) {
                json_decref(a.row);
                return r;
        }
        *ret = a.row;
        return 0;
}

static int ops_function_list_versions(struct mp_store *s, const char *id, json_t **ret,
                                      struct mp_error *err) {
        struct all_args a = { SQL_VERSION_LIST, id, "listing function versions", NULL };
        json_t *arr = NULL;
        int n = all_run(s, &a, &arr, err);

        if (n < 0)
                return n;
        if (n == 0) { /* every function has version 1 */
                json_decref(arr);
                return not_found(err, "no function with id '%s'", id ? id : "");
        }
        *ret = arr;
        return 0;
}

static int ops_function_delete(struct mp_store *s, const char *id, int64_t now,
                               struct mp_error *err) {
        /* 0 would mean "live" */
        struct change_args a = CHANGE(SQL_FUNCTION_DELETE, "deleting a function", "function",
                                      id, PI(now > 0 ? now : 1), PT(id));

        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

/* ---- tasks ---- */

struct task_create_args {
        json_t *task, *key;
        json_t *existing;
        bool raced; /* the INSERT met another call's row with the same key */
};

static int task_by_key(struct mp_store_conn *c, struct task_create_args *a, json_t **ret,
                       struct mp_error *err) {
        return q_row(c, SQL_TASK_BY_KEY,
                     PARAMS(PT(json_string_value(json_object_get(a->task, "owner_id"))),
                            PT(json_string_value(json_object_get(a->task, "function_id"))),
                            PT(json_string_value(a->key))),
                     ret, "looking up an idempotency key", err);
}

static int key_conflict(struct task_create_args *a, json_t *existing, struct mp_error *err) {
        json_t *old = a->existing;

        a->existing = json_incref(existing);
        json_decref(old);
        return mp_error_set(err, EEXIST, 409, "conflict",
                            "a task with idempotency key '%s' already exists for this function",
                            json_string_value(a->key));
}

static int task_key_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_create_args *a = ctx;
        json_t *found = NULL;

        TRY(task_by_key(c, a, &found, err));
        json_decref(a->existing);
        a->existing = found;
        return 0;
}

static int quota_admit(struct mp_store_conn *c, json_t *task, struct mp_error *err);

static int task_create_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_create_args *a = ctx;
        int r;

        if (json_is_true(json_object_get(a->task, "quota_check")))
                TRY(quota_admit(c, a->task, err));
        if (a->key) {
                _cleanup_json_ json_t *existing = NULL;
                r = task_by_key(c, a, &existing, err);
                if (r >= 0)
                        return key_conflict(a, existing, err);
                if (r != -ENOENT)
                        return r;
        }
        r = insert_task(c, a->task, "creating a task", err);
        a->raced = r == -EEXIST && a->key;
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "a task with id '%s' already exists",
                                    json_string_value(json_object_get(a->task, "id")));
        if (r == -ENOENT)
                return not_found(err, "creating a task: its function or owner does not exist");
        if (r < 0)
                return r;
        r = q_exec(c, SQL_JOB_PUSH, PARAMS(PT(json_string_value(json_object_get(a->task, "id")))),
                   "queueing a task", err);
        return r < 0 ? r : 0;
}

static int ops_task_create(struct mp_store *s, json_t *task, json_t **ret_existing,
                           struct mp_error *err) {
        struct task_create_args a = { .task = task };
        int r;

        if (!json_is_object(task))
                return invalid(err, "a task must be an object");
        a.key = json_object_get(task, "idempotency_key");
        if (a.key && json_is_null(a.key))
                a.key = NULL;
        if (a.key && (!json_is_string(a.key) || json_string_length(a.key) == 0 ||
                      json_string_length(a.key) > MP_MAX_IDEMPOTENCY_KEY_LEN))
                return invalid(err, "`idempotency_key` must be a string of 1 to %d bytes",
                               MP_MAX_IDEMPOTENCY_KEY_LEN);
        r = s->drv->run(s, MP_RUN_ATOMIC, task_create_fn, &a, err);
        /* Two calls with one key at once, where writers run at once: the second one's
         * INSERT met the first's row in the unique index (its transaction is over: the
         * error ended it). Answer as if it had come second: with the task the first one
         * stored. */
        if (r == -EEXIST && a.raced && !a.existing && s->drv->run(s, MP_RUN_READ, task_key_fn, &a, NULL) == 0)
                r = key_conflict(&a, a.existing, err);
        /* *ret_existing is the answer to a conflict, not a result: given with -EEXIST */
        if (r == -EEXIST && a.existing && ret_existing)
                *ret_existing = TAKE_PTR(a.existing);
        json_decref(a.existing);
        return r < 0 ? r : 0;
}

static int ops_task_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_TASK_GET, id, "reading a task", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r;
}

/* After an update that changed n rows of task id: 1 moved, 0 not in the state, -ENOENT. */
static int moved_or_missing(struct mp_store_conn *c, int n, const char *id, struct mp_error *err) {
        int r;

        if (n != 0)
                return n < 0 ? n : 1;
        r = q_exists(c, SQL_TASK_EXISTS, PARAMS(PT(id)), "reading a task", err);
        if (r == 0)
                return not_found(err, "no task with id '%s'", id ? id : "");
        return r < 0 ? r : 0;
}

static int ops_task_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                         struct mp_error *err) {
        struct list_args l = { .sql = SQL_TASK_LIST, .time_col = "queued_at", .what = "listing tasks" };

        TRY(filter_str(filter, "owner_id", &l.a, err));
        if (!l.a)
                return invalid(err, "listing tasks needs `owner_id`");
        TRY(filter_str(filter, "function_id", &l.b, err));
        TRY(filter_str(filter, "status", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        l.span = true;
        l.since = json_object_get(filter, "since");
        l.until = json_object_get(filter, "until");
        return list_run(s, &l, ret, err);
}

struct task_move_args {
        const char *sql, *id, *worker_id, *what;
        int64_t now;
};

static int task_move_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_move_args *a = ctx;

        return moved_or_missing(c, q_exec(c, a->sql, PARAMS(PI(a->now), PT(a->worker_id), PT(a->id)),
                                          a->what, err),
                                a->id, err);
}

/* Starting (and retrying) is lossy: after a power cut the restart releases every claim,
 * and a task that was moved to running and lost it is queued again, which is what
 * happens to a running one then too. Its end (task_finish) is durable, and syncs this
 * move with it. */
static int ops_task_start(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                          struct mp_error *err) {
        struct task_move_args a = { SQL_TASK_START, id, worker_id, "starting a task", now };

        return s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, task_move_fn, &a, err);
}

static int ops_task_retry(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                          struct mp_error *err) {
        struct task_move_args a = { SQL_TASK_RETRY, id, worker_id, "retrying a task", now };

        return s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, task_move_fn, &a, err);
}

/* status and finished_at always; the others when present. */
static const struct update task_finish_set = {
        .table = "tasks", .where = "id = ?W AND status IN ('queued', 'running')",
        .what = "finishing a task", .allowed = finish_cols, .n_allowed = ELEMENTSOF(finish_cols),
        .always = 2, .not_allowed = "is not a column a finished task records",
};

struct task_finish_args {
        const char *id;
        json_t *fields;
};

static int task_finish_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_finish_args *a = ctx;
        int r;

        r = moved_or_missing(c, update_run(c, &task_finish_set, a->fields, NULL, 0, PT(a->id), err),
                             a->id, err);
        if (r <= 0)
                return r;
        TRY(q_exec(c, SQL_JOB_DELETE, PARAMS(PT(a->id)), "removing a finished task's job", err));
        TRY(q_exec(c, SQL_USAGE_ADD, PARAMS(PT(a->id)), "counting a task's usage", err));
        return 1;
}

static int ops_task_finish(struct mp_store *s, const char *id, json_t *fields, struct mp_error *err) {
        struct task_finish_args a = { id, fields };

        if (!json_is_object(fields))
                return invalid(err, "finishing a task needs an object of fields");
        return s->drv->run(s, MP_RUN_ATOMIC, task_finish_fn, &a, err);
}

static int task_requeue_fn(struct mp_store_conn *c, void *id, struct mp_error *err) {
        int r = moved_or_missing(c, q_exec(c, SQL_TASK_REQUEUE, PARAMS(PT(id)), "requeueing a task", err),
                                 id, err);

        if (r <= 0)
                return r;
        TRY(q_exec(c, SQL_JOB_RELEASE, PARAMS(PT(id)), "releasing a task's job", err));
        return 1;
}

static int ops_task_requeue(struct mp_store *s, const char *id, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_ATOMIC, task_requeue_fn, (void *) id, err);
}

/* ---- the local queue (jobs) ---- */

struct job_claim_args {
        const char *worker_id;
        int64_t now, lease_until;
        char id[MP_ID_LEN + 1];
};

static int job_claim_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct job_claim_args *a = ctx;
        _cleanup_json_ json_t *rows = json_array();
        const char *t;

        if (!rows)
                return -ENOMEM;
        TRY(q_all(c, c->drv->row_locks ? SQL_JOB_CLAIM_SKIP_LOCKED : SQL_JOB_CLAIM,
                  PARAMS(PT(a->worker_id), PI(a->lease_until), PI(a->now)), rows, "claiming a job", err));
        if (json_array_size(rows) == 0)
                return 0;
        t = json_string_value(json_object_get(json_array_get(rows, 0), "task_id"));
        if (!t || strlen(t) > MP_ID_LEN)
                return mp_error_set(err, EIO, 500, "storage", "a job has a malformed task id");
        memcpy(a->id, t, strlen(t) + 1);
        return 1;
}

/* Claims and leases are lossy: a restart after a power cut releases them all. */
static int ops_job_claim(struct mp_store *s, const char *worker_id, int64_t now, int64_t lease_until,
                         char *ret_task_id, struct mp_error *err) {
        struct job_claim_args a = { .worker_id = worker_id, .now = now, .lease_until = lease_until };
        int r = s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, job_claim_fn, &a, err);

        if (r == 1)
                memcpy(ret_task_id, a.id, strlen(a.id) + 1);
        return r;
}

static int ops_job_extend(struct mp_store *s, const char *task_id, const char *worker_id,
                          int64_t lease_until, struct mp_error *err) {
        struct change_args a = CHANGE(SQL_JOB_EXTEND, "extending a lease", NULL, NULL, PI(lease_until),
                                      PT(task_id), PT(worker_id));
        int r;

        a.none_ok = true;
        r = s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, change_fn, &a, err);
        if (r == 0)
                return not_found(err, "worker %s holds no job for task %s (finished, or its lease "
                                      "went to another worker)",
                                 worker_id ? worker_id : "", task_id ? task_id : "");
        return r < 0 ? r : 0;
}

static int job_release_all_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        return q_exec(c, SQL_JOB_RELEASE_ALL, NO_PARAMS, "releasing jobs", err);
}

static int ops_job_release_all(struct mp_store *s, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, job_release_all_fn, NULL, err);
}


/* ---- workflows (docs/workflows.md) ----
 * Definitions as immutable versions (like functions), and runs whose state object is
 * changed only by compare and set on rev: a writer stores over the rev it read, so two
 * workers that end tasks of one run at once cannot lose each other's change (the second
 * store changes no row, and its caller reads again and redoes its step). */

static int workflow_version_insert(struct mp_store_conn *c, const char *id, int n, json_t *version,
                                   int64_t default_time, struct mp_error *err) {
        _cleanup_json_ json_t *v = json_is_object(version) ? json_copy(version) : NULL;
        json_t *t;

        if (!v)
                return invalid(err, "a workflow version must be an object");
        if (json_object_set_new(v, "workflow_id", json_string(id)) < 0 ||
            json_object_set_new(v, "version", json_integer(n)) < 0)
                return -ENOMEM;
        t = json_object_get(v, "created_at");
        if ((!t || json_is_null(t)) && default_time > 0)
                json_object_set_new(v, "created_at", json_integer(default_time));
        return insert_row(c, &workflow_versions_table, v, "storing a workflow version", err);
}

static int workflow_create_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct function_create_args *a = ctx;
        _cleanup_json_ json_t *w = json_copy(a->fn);
        json_t *created = json_object_get(a->fn, "created_at");
        int r;

        if (!w)
                return -ENOMEM;
        if (json_is_integer(created) && !json_object_get(a->fn, "updated_at"))
                json_object_set(w, "updated_at", created);
        r = insert_row(c, &workflows_table, w, "creating a workflow", err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "you already have a workflow named '%s'",
                                    json_string_value(json_object_get(a->fn, "name")));
        if (r == -ENOENT)
                return not_found(err, "creating a workflow: its owner does not exist");
        if (r < 0)
                return r;
        return workflow_version_insert(c, json_string_value(json_object_get(a->fn, "id")), 1, a->version,
                                       json_is_integer(created) ? json_integer_value(created) : 0, err);
}

static int ops_workflow_create(struct mp_store *s, json_t *wf, json_t *version, struct mp_error *err) {
        struct function_create_args a = { wf, version };

        if (!json_is_object(wf))
                return invalid(err, "a workflow must be an object");
        return s->drv->run(s, MP_RUN_ATOMIC, workflow_create_fn, &a, err);
}

static int ops_workflow_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_WORKFLOW_GET, id, "reading a workflow", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no workflow with id '%s'", id ? id : "");
        return r;
}

static int workflow_find_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct find_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, SQL_WORKFLOW_FIND, PARAMS(PT(a->owner_id), PT(a->name)), &row, "reading a workflow",
                  err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_workflow_find(struct mp_store *s, const char *owner_id, const char *name, json_t **ret,
                             struct mp_error *err) {
        struct find_args a = { owner_id, name, NULL };
        int r = s->drv->run(s, MP_RUN_READ, workflow_find_fn, &a, err);

        if (r == -ENOENT)
                return not_found(err, "you have no workflow named '%s'", name ? name : "");
        if (r < 0) {
                json_decref(a.row);
                return r;
        }
        *ret = a.row;
        return 0;
}

static int ops_workflow_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                             struct mp_error *err) {
        struct list_args l = { .sql = SQL_WORKFLOW_LIST, .time_col = "created_at",
                               .what = "listing workflows" };

        TRY(filter_str(filter, "viewer_id", &l.a, err));
        TRY(filter_str(filter, "company_id", &l.b, err));
        TRY(filter_str(filter, "name", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        return list_run(s, &l, ret, err);
}

static const struct update workflow_update_set = {
        .table = "workflows", .fixed = "updated_at = ?1, latest_version = ?2", .where = "id = ?W",
        .what = "updating a workflow", .allowed = workflow_update_cols,
        .n_allowed = ELEMENTSOF(workflow_update_cols), .always = 0,
        .not_allowed = "cannot be changed (description and visibility can)",
};

static int workflow_update_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct function_update_args *a = ctx;
        int64_t latest = 0;
        int v, r;

        r = q_int(c, c->drv->row_locks ? SQL_WORKFLOW_LATEST_LOCK : SQL_WORKFLOW_LATEST,
                  PARAMS(PT(a->id)), "latest_version", &latest, "reading a workflow", err);
        if (r == -ENOENT)
                return not_found(err, "no workflow with id '%s'", a->id ? a->id : "");
        if (r < 0)
                return r;
        v = (int) latest;
        if (a->version) {
                char sql[1024];
                struct mp_store_param p[MAX_COLS + 4] = { 0 };
                size_t n;
                TRY(update_build(&workflow_update_set, a->fields, 0, sql, sizeof(sql), p, &n, err));
                mp_store_params_free(p, n);
                TRY(workflow_version_insert(c, a->id, v + 1, a->version, a->now, err));
                v++;
        }
        TRY(update_run(c, &workflow_update_set, a->fields, PARAMS(PI(a->now), PI(v)), PT(a->id), err));
        a->latest = v;
        return 0;
}

static int ops_workflow_update(struct mp_store *s, const char *id, json_t *fields, json_t *version,
                               int64_t now, int *ret_version, struct mp_error *err) {
        _cleanup_json_ json_t *none = json_object();
        struct function_update_args a = { id, fields ? fields : none, version, now, 0 };
        int r = s->drv->run(s, MP_RUN_ATOMIC, workflow_update_fn, &a, err);

        if (r >= 0 && ret_version)
                *ret_version = a.latest;
        return r < 0 ? r : 0;
}

static int workflow_get_version_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct version_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, SQL_WORKFLOW_VERSION_GET, PARAMS(PT(a->id), PI(a->version)), &row,
                  "reading a workflow version", err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_workflow_get_version(struct mp_store *s, const char *id, int version, json_t **ret,
                                    struct mp_error *err) {
        struct version_args a = { id, version, NULL };
        int r;

        if (version < 0)
                return invalid(err, "a workflow version is a positive number, not %d", version);
        r = s->drv->run(s, MP_RUN_READ, workflow_get_version_fn, &a, err);
        if (r == -ENOENT)
                return not_found(err, "workflow '%s' has no version %d", id ? id : "", version);
        if (r < 0) {
                json_decref(a.row);
                return r;
        }
        *ret = a.row;
        return 0;
}

static int ops_workflow_delete(struct mp_store *s, const char *id, int64_t now, struct mp_error *err) {
        struct change_args a = CHANGE(SQL_WORKFLOW_DELETE, "deleting a workflow", "workflow", id,
                                      PI(now > 0 ? now : 1), PT(id));

        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

struct run_create_args {
        json_t *run, *key, *existing, *tasks;
};

static int run_by_key(struct mp_store_conn *c, struct run_create_args *a, json_t **ret,
                      struct mp_error *err) {
        return q_row(c, SQL_WORKFLOW_RUN_BY_KEY,
                     PARAMS(PT(json_string_value(json_object_get(a->run, "owner_id"))),
                            PT(json_string_value(json_object_get(a->run, "workflow_id"))),
                            PT(json_string_value(a->key))),
                     ret, "looking up an idempotency key", err);
}

static int run_key_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct run_create_args *a = ctx;
        json_t *found = NULL;

        TRY(run_by_key(c, a, &found, err));
        json_decref(a->existing);
        a->existing = found;
        return 0;
}

/* A workflow node's task, in the step's transaction. A row with "cache_lookup" (its
 * version declared "cache", no refresh asked) is answered as a plain call is
 * (task_create_cached): the owner's newest computed task with its cache_key is copied,
 * completed now, with no job; the caller's row then carries "cached_from". Otherwise
 * the task and its job. */
static int insert_node_task(struct mp_store_conn *c, json_t *t, struct mp_error *err) {
        const char *tid = json_string_value(json_object_get(t, "id"));
        const char *key = json_string_value(json_object_get(t, "cache_key"));
        int r;

        json_object_del(t, "cached_from"); /* a body run again decides again */
        if (key && json_is_true(json_object_get(t, "cache_lookup"))) {
                _cleanup_json_ json_t *src = NULL;
                r = q_row(c, SQL_CACHE_FIND, PARAMS(PT(json_string_value(json_object_get(t, "owner_id"))), PT(key)),
                          &src, "looking up the result cache", err);
                if (r < 0 && r != -ENOENT)
                        return r;
                if (r == 0) {
                        json_t *el = json_object_get(t, "element_index");
                        char *text = mp_json_dumps(json_object_get(t, "inputs"), JSON_COMPACT);
                        if (!text)
                                return -ENOMEM;
                        struct mp_store_param p[] = {
                                PT(tid), PT(json_string_value(json_object_get(t, "company_id"))), PT(text),
                                PI(json_integer_value(json_object_get(t, "queued_at"))),
                                PT(json_string_value(json_object_get(t, "workflow_run_id"))),
                                PT(json_string_value(json_object_get(t, "node_id"))),
                                json_is_integer(el) ? PI(json_integer_value(el)) : PI_NULL,
                                PT(json_string_value(json_object_get(src, "id")))
                        };
                        p[2].owned = text;
                        TRY(q_exec(c, SQL_CACHE_COPY_NODE, p, ELEMENTSOF(p), "copying a cached result", err));
                        json_object_set(t, "cached_from", json_object_get(src, "id"));
                        return 0;
                }
        }
        r = insert_task(c, t, "creating a task", err);
        if (r == -ENOENT)
                return not_found(err, "creating a task: its function or owner does not exist");
        if (r < 0)
                return r;
        r = q_exec(c, SQL_JOB_PUSH, PARAMS(PT(tid)), "queueing a task", err);
        return r < 0 ? r : 0;
}

static int run_create_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct run_create_args *a = ctx;
        int r;

        if (a->key) {
                _cleanup_json_ json_t *existing = NULL;
                r = run_by_key(c, a, &existing, err);
                if (r >= 0) {
                        json_decref(a->existing);
                        a->existing = TAKE_PTR(existing);
                        return mp_error_set(err, EEXIST, 409, "conflict",
                                            "a run with idempotency key '%s' already exists",
                                            json_string_value(a->key));
                }
                if (r != -ENOENT)
                        return r;
        }
        r = insert_row(c, &workflow_runs_table, a->run, "creating a workflow run", err);
        if (r == -ENOENT)
                return not_found(err, "creating a workflow run: its workflow or owner does not exist");
        if (r < 0)
                return r;
        json_t *t;
        size_t i;
        json_array_foreach(a->tasks, i, t)
                TRY(insert_node_task(c, t, err));
        return 0;
}

static int ops_workflow_run_create(struct mp_store *s, json_t *run, json_t *tasks, json_t **ret_existing,
                                   struct mp_error *err) {
        struct run_create_args a = { .run = run, .tasks = tasks };
        int r;

        if (!json_is_object(run))
                return invalid(err, "a workflow run must be an object");
        a.key = json_object_get(run, "idempotency_key");
        if (a.key && !json_is_string(a.key))
                a.key = NULL;
        r = s->drv->run(s, MP_RUN_ATOMIC, run_create_fn, &a, err);
        /* Two calls with one key at once: the second met the first's row in the unique
         * index; answer with the run the first one stored. */
        if (r == -EEXIST && a.key && !a.existing && s->drv->run(s, MP_RUN_READ, run_key_fn, &a, NULL) >= 0)
                mp_error_set(err, EEXIST, 409, "conflict", "a run with idempotency key '%s' already exists",
                             json_string_value(a.key));
        if (r == -EEXIST && ret_existing && a.existing)
                *ret_existing = TAKE_PTR(a.existing);
        json_decref(a.existing);
        return r;
}

static int ops_workflow_run_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_WORKFLOW_RUN_GET, id, "reading a workflow run", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no workflow run with id '%s'", id ? id : "");
        return r;
}

static int ops_workflow_run_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                 struct mp_error *err) {
        struct list_args l = { .sql = SQL_WORKFLOW_RUN_LIST, .time_col = "created_at",
                               .what = "listing workflow runs" };

        TRY(filter_str(filter, "owner_id", &l.a, err));
        TRY(filter_str(filter, "workflow_id", &l.b, err));
        TRY(filter_str(filter, "status", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        return list_run(s, &l, ret, err);
}

static const struct update workflow_run_update_set = {
        .table = "workflow_runs", .fixed = "rev = rev + 1", .where = "id = ?W AND rev = ?1",
        .what = "storing a workflow run's state", .allowed = workflow_run_update_cols,
        .n_allowed = ELEMENTSOF(workflow_run_update_cols), .always = 2,
        .not_allowed = "is not a column of a run's step",
};

struct run_update_args {
        const char *id;
        int64_t rev;
        json_t *fields;
};

static int run_update_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct run_update_args *a = ctx;
        int r = update_run(c, &workflow_run_update_set, a->fields, PARAMS(PI(a->rev)), PT(a->id), err);

        if (r == 0 && q_exists(c, SQL_WORKFLOW_RUN_GET, PARAMS(PT(a->id)), "reading a workflow run", err) == 0)
                return not_found(err, "no workflow run with id '%s'", a->id);
        return r < 0 ? r : r > 0 ? 1 : 0;
}

static int ops_workflow_run_update(struct mp_store *s, const char *id, int64_t rev, json_t *fields,
                                   struct mp_error *err) {
        struct run_update_args a = { id, rev, fields };

        if (!json_is_object(fields))
                return invalid(err, "storing a workflow run's state needs an object of fields");
        return s->drv->run(s, MP_RUN_ATOMIC, run_update_fn, &a, err);
}

struct run_advance_args {
        struct run_update_args update;
        json_t *tasks, *created;
};

static int run_advance_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct run_advance_args *a = ctx;
        _cleanup_json_ json_t *created = json_array();
        json_t *t;
        size_t i;
        int r;

        if (!created)
                return -ENOMEM;
        /* The compare and set first: a step that lost has written nothing. With row
         * locks the UPDATE holds the run's row until the end, so the tasks below are
         * made by one step only. */
        if ((r = run_update_fn(c, &a->update, err)) <= 0)
                return r;
        json_array_foreach(a->tasks, i, t) {
                const char *tid = json_string_value(json_object_get(t, "id"));
                if ((r = q_exists(c, SQL_TASK_EXISTS, PARAMS(PT(tid)), "looking up a task", err)) < 0)
                        return r;
                if (r > 0)
                        continue;
                TRY(insert_node_task(c, t, err));
                json_array_append_new(created, json_string(tid));
        }
        json_decref(a->created);
        a->created = TAKE_PTR(created);
        return 1;
}

static int ops_workflow_run_advance(struct mp_store *s, const char *id, int64_t rev, json_t *fields,
                                    json_t *tasks, json_t **ret_created, struct mp_error *err) {
        struct run_advance_args a = { { id, rev, fields }, tasks, NULL };
        int r;

        if (!json_is_object(fields) || (tasks && !json_is_array(tasks)))
                return invalid(err, "a run's step needs an object of fields and a list of tasks");
        r = s->drv->run(s, MP_RUN_ATOMIC, run_advance_fn, &a, err);
        if (r > 0 && ret_created)
                *ret_created = TAKE_PTR(a.created);
        json_decref(a.created);
        return r;
}

struct members_args {
        const char *id;
        json_t *members, *out;
        int64_t max;
        int added;
};

static int members_add_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct members_args *a = ctx;
        int64_t have = 0, now = mp_now_ms();
        size_t i;
        json_t *m;

        a->added = 0;
        TRY(q_int(c, SQL_MEMBERS_COUNT, PARAMS(PT(a->id)), "n", &have, "counting a study's members", err));
        json_array_foreach(a->members, i, m) {
                int n;
                TRY(n = q_exec(c, SQL_MEMBER_ADD,
                               PARAMS(PT(a->id), PT(json_string_value(json_object_get(m, "kind"))),
                                      PT(json_string_value(json_object_get(m, "id"))), PI(now)),
                               "adding a study member", err));
                a->added += n > 0;
        }
        if (have + a->added > a->max)
                return mp_error_set(err, E2BIG, 422, "validation", "a study groups at most %" PRId64 " tasks and "
                                    "runs; it has %" PRId64 " and %d more were asked", a->max, have, a->added);
        return 0;
}

static int ops_study_add_members(struct mp_store *s, const char *id, json_t *members, int64_t max,
                                 struct mp_error *err) {
        struct members_args a = { .id = id, .members = members, .max = max };
        int r;

        if (!id || !json_is_array(members))
                return invalid(err, "members are a list");
        r = s->drv->run(s, MP_RUN_ATOMIC, members_add_fn, &a, err);
        return r < 0 ? r : a.added;
}

static int members_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct members_args *a = ctx;
        json_t *rows = json_array();

        if (!rows)
                return -ENOMEM;
        int r = q_all(c, SQL_MEMBERS, PARAMS(PT(a->id)), rows, "reading a study's members", err);
        if (r < 0) {
                json_decref(rows);
                return r;
        }
        json_decref(a->out);
        a->out = rows;
        return 0;
}

static int ops_study_members(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct members_args a = { .id = id };
        int r = s->drv->run(s, MP_RUN_READ, members_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

struct run_cache_args {
        const char *owner_id, *cache_key;
        json_t *row;
};

static int run_cache_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct run_cache_args *a = ctx;
        json_t *row = NULL;

        TRY(q_row(c, SQL_WORKFLOW_RUN_CACHE_FIND, PARAMS(PT(a->owner_id), PT(a->cache_key)), &row,
                  "looking up the workflow result cache", err));
        json_decref(a->row);
        a->row = row;
        return 0;
}

static int ops_workflow_run_find_cached(struct mp_store *s, const char *owner_id, const char *cache_key,
                                        json_t **ret, struct mp_error *err) {
        struct run_cache_args a = { owner_id, cache_key, NULL };
        int r;

        if (!owner_id || !cache_key)
                return invalid(err, "a cache lookup needs an owner and a key");
        r = s->drv->run(s, MP_RUN_READ, run_cache_fn, &a, err);
        if (r < 0) {
                json_decref(a.row);
                return r;
        }
        *ret = a.row;
        return 0;
}

static int ops_workflow_run_open(struct mp_store *s, json_t **ret, struct mp_error *err) {
        struct all_args a = { SQL_WORKFLOW_RUN_OPEN, NULL, "listing open workflow runs", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

/* ---- companies and the catalogue ---- */

static int ops_company_get(struct mp_store *s, const char *company_id, json_t **ret,
                           struct mp_error *err) {
        struct get_args a = { SQL_COMPANY_GET, company_id, "reading a company", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no company with id '%s'", company_id ? company_id : "");
        return r;
}

static int ops_company_members(struct mp_store *s, const char *company_id, json_t **ret,
                               struct mp_error *err) {
        struct all_args a = { SQL_COMPANY_MEMBERS, company_id, "listing a company's members", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

struct member_args {
        const char *company_id, *user_id, *role; /* role NULL: remove the member */
        int64_t now;
};

/* Whether changing the member's role to a->role (NULL: removing the member) leaves the
 * company an admin: 0, -ENOENT or -EPERM. */
static int member_check(struct mp_store_conn *c, struct member_args *a, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int64_t others = 0;
        int r;

        if (c->drv->row_locks)
                TRY(q_exec(c, SQL_ADMINS_LOCK, PARAMS(PT(a->company_id)), "locking a company's admins", err));
        r = q_row(c, SQL_MEMBER_ROLE, PARAMS(PT(a->user_id), PT(a->company_id)), &row,
                  "reading a member's role", err);
        if (r == -ENOENT)
                return not_found(err, "no member with id '%s' in this company", a->user_id ? a->user_id : "");
        if (r < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(row, "role")) ?: "", "admin") != 0 ||
            (a->role && strcmp(a->role, "admin") == 0))
                return 0;
        TRY(q_int(c, SQL_OTHER_ADMINS, PARAMS(PT(a->company_id), PT(a->user_id)), "n", &others,
                  "counting a company's admins", err));
        if (others == 0)
                return mp_error_set(err, EPERM, 409, "conflict",
                                    "the company would be left without an admin");
        return 0;
}

static int member_set_role_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct member_args *a = ctx;

        TRY(member_check(c, a, err));
        TRY(q_exec(c, SQL_MEMBER_SET_ROLE, PARAMS(PT(a->role), PT(a->user_id), PT(a->company_id)),
                   "setting a member's role", err));
        return 0;
}

static int ops_member_set_role(struct mp_store *s, const char *company_id, const char *user_id,
                               const char *role, struct mp_error *err) {
        struct member_args a = { company_id, user_id, role, 0 };
        bool known = false;

        for (const char *const *r = roles; *r && role; r++)
                known |= strcmp(*r, role) == 0;
        if (!known)
                return invalid(err, "a role is admin, member or viewer, not '%s'", role ? role : "");
        return s->drv->run(s, MP_RUN_ATOMIC, member_set_role_fn, &a, err);
}

static int member_remove_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct member_args *a = ctx;

        TRY(member_check(c, a, err));
        TRY(q_exec(c, SQL_MEMBER_REMOVE, PARAMS(PT(a->user_id), PT(a->company_id)), "removing a member",
                   err));
        TRY(q_exec(c, SQL_TOKENS_REVOKE_ALL, PARAMS(PI(a->now > 0 ? a->now : 1), PT(a->user_id)),
                   "revoking a removed member's tokens", err));
        return 0;
}

static int ops_member_remove(struct mp_store *s, const char *company_id, const char *user_id,
                             int64_t now, struct mp_error *err) {
        struct member_args a = { company_id, user_id, NULL, now };

        return s->drv->run(s, MP_RUN_ATOMIC, member_remove_fn, &a, err);
}

struct catalogue_run {
        struct catalogue_args a;
        struct mp_store_list out;
};

static int catalogue_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct catalogue_run *cr = ctx;
        struct catalogue_args *a = &cr->a;
        _cleanup_json_ json_t *items = json_array();

        if (!items)
                return -ENOMEM;
        TRY(q_all(c, SQL_CATALOGUE,
                  PARAMS(PT(a->q), PT(a->tag), PT(a->author_email), PT(a->author_name),
                         a->cursor ? PI(a->cursor_t) : PI_NULL, PT(a->cursor ? a->cursor_id : NULL),
                         PI(a->limit + 1)),
                  items, "searching the catalogue", err));
        return page_fn(c, items, a->limit, "created_at", &cr->out);
}

static int ops_function_catalogue(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                                  struct mp_error *err) {
        struct catalogue_run cr = { 0 };
        int r;

        TRY(catalogue_args_read(filter, &cr.a, err));
        r = s->drv->run(s, MP_RUN_READ, catalogue_fn, &cr, err);
        catalogue_args_free(&cr.a);
        if (r < 0) {
                json_decref(cr.out.items);
                free(cr.out.next_cursor);
                return r;
        }
        *ret = cr.out;
        return 0;
}

/* ---- open, close, the tables ---- */

static const struct mp_store_ops sqlite_ops, postgres_ops;

int mp_store_sql_open(const struct mp_store_driver *drv, const char *url, struct mp_store **ret,
                      struct mp_error *err) {
        struct mp_store *s = NULL;
        int r;

        TRY(drv->open(url, &s, err));
        s->drv = drv;
        s->base.ops = drv == &mp_store_postgres_driver ? &postgres_ops : &sqlite_ops;
        r = drv->run(s, MP_RUN_READ, migrate_fn, NULL, err);
        if (r < 0) {
                if (r != -EAGAIN) /* an unreachable server's message names it already */
                        mp_error_prefix(err, "opening %s", s->where);
                drv->close(s);
                return r;
        }
        *ret = s;
        return 0;
}

static int ops_open_sqlite(const char *url, struct mp_store **ret, struct mp_error *err) {
        return mp_store_sql_open(&mp_store_sqlite_driver, url, ret, err);
}

static int ops_open_postgres(const char *url, struct mp_store **ret, struct mp_error *err) {
        return mp_store_sql_open(&mp_store_postgres_driver, url, ret, err);
}

static void ops_close(struct mp_store *s) {
        if (s)
                s->drv->close(s);
}

int mp_store_info(struct mp_store *s, json_t **ret, struct mp_error *err) {
        return s->drv->info(s, ret, err);
}


/* ---- studies and the result cache (docs/studies.md) ---- */

static const char *str_of(json_t *o, const char *key) {
        return json_string_value(json_object_get(o, key));
}

/* The study row, locked for the transaction where the driver has row locks (SQLite's
 * write transaction holds the one write lock already). */
static int study_lock(struct mp_store_conn *c, const char *id, json_t **ret, struct mp_error *err) {
        int r = q_row(c, c->drv->row_locks ? SQL_STUDY_LOCK : SQL_STUDY_GET, PARAMS(PT(id)), ret,
                      "reading a study", err);

        if (r == -ENOENT)
                return not_found(err, "no study with id '%s'", id);
        return r;
}

/* Insert points[i] as index first + i: {inputs, inputs_key, cache_key?}. When dedup,
 * a point whose inputs_key the study already holds is left out. The count inserted. */
static int points_insert(struct mp_store_conn *c, const char *study_id, json_t *points, int64_t first,
                         bool dedup, struct mp_error *err) {
        int64_t n = 0;
        size_t i;
        json_t *pt;

        json_array_foreach(points, i, pt) {
                const char *key = str_of(pt, "inputs_key");
                char *text;

                if (!key || !json_is_object(json_object_get(pt, "inputs")))
                        return invalid(err, "a study point needs `inputs` and `inputs_key`");
                if (dedup) {
                        int r = q_exists(c, SQL_POINT_HAS_KEY, PARAMS(PT(study_id), PT(key)),
                                         "reading a study's points", err);
                        if (r < 0)
                                return r;
                        if (r > 0)
                                continue;
                }
                text = mp_json_dumps(json_object_get(pt, "inputs"), JSON_COMPACT);
                if (!text)
                        return -ENOMEM;
                struct mp_store_param p[] = { PT(study_id), PI(first + n), PT(text), PT(key),
                                              PT(str_of(pt, "cache_key")) };
                p[2].owned = text;
                TRY(q_exec(c, SQL_POINT_INSERT, p, ELEMENTSOF(p), "storing a study point", err));
                n++;
        }
        return (int) n;
}

/* Start pending points of a locked study up to its concurrency, in index order: per
 * point a task and its job (or, for a point with a cache key, a copy of a completed
 * task of the owner with that key: no job), the point marked started with the task's
 * id, all in the caller's transaction. Appends {"task_id", "cached"} per start to
 * started. Then, when nothing is pending or started, the study is completed. */
static int study_start_locked(struct mp_store_conn *c, json_t *study, json_t *started,
                              struct mp_error *err) {
        const char *id = str_of(study, "id"), *owner = str_of(study, "owner_id");
        const char *company = str_of(study, "company_id");
        json_t *target = json_object_get(study, "target");
        int64_t room = json_integer_value(json_object_get(study, "concurrency")) -
                       json_integer_value(json_object_get(study, "started"));
        bool refresh = json_integer_value(json_object_get(study, "cache_refresh")) != 0;
        _cleanup_json_ json_t *rows = json_array();
        int64_t n = 0;
        size_t i;
        json_t *row;

        if (!rows)
                return -ENOMEM;
        if (strcmp(str_of(study, "status") ?: "", "running"))
                return 0;
        if (room > 0)
                TRY(q_all(c, SQL_POINTS_PENDING, PARAMS(PT(id), PI(room)), rows, "reading a study's points", err));
        json_array_foreach(rows, i, row) {
                char tid[MP_ID_LEN + 1];
                int64_t now = mp_now_ms(), index = json_integer_value(json_object_get(row, "point_index"));
                const char *key = str_of(row, "cache_key");
                bool cached = false;

                mp_id_new(tid);
                /* A point of a workflow becomes a run, made by the caller once this is
                 * stored (it needs the scheduler): the point names the run's id. */
                if (json_object_get(target, "workflow_id")) {
                        TRY(q_exec(c, SQL_POINT_SET_TASK, PARAMS(PT(tid), PT(id), PI(index)),
                                   "starting a study point", err));
                        if (json_array_append_new(started, json_pack("{s:s,s:b,s:b,s:I,s:O}", "task_id", tid,
                                                                     "cached", 0, "run", 1, "point_index",
                                                                     (json_int_t) index, "inputs",
                                                                     json_object_get(row, "inputs"))) < 0)
                                return -ENOMEM;
                        n++;
                        continue;
                }
                if (key && !refresh) {
                        _cleanup_json_ json_t *src = NULL;
                        int r = q_row(c, SQL_CACHE_FIND, PARAMS(PT(owner), PT(key)), &src,
                                      "looking up the result cache", err);
                        if (r < 0 && r != -ENOENT)
                                return r;
                        if (r == 0) {
                                char *text = mp_json_dumps(json_object_get(row, "inputs"), JSON_COMPACT);
                                if (!text)
                                        return -ENOMEM;
                                struct mp_store_param p[] = { PT(tid), PT(company), PT(text), PI(now), PT(id),
                                                              PI(index), PT(str_of(src, "id")), PT(NULL) };
                                p[2].owned = text;
                                TRY(q_exec(c, SQL_CACHE_COPY, p, ELEMENTSOF(p), "copying a cached result", err));
                                cached = true;
                        }
                }
                if (!cached) {
                        _cleanup_json_ json_t *task = json_pack(
                                "{s:s,s:O,s:O,s:s,s:O,s:I,s:s,s:I}", "id", tid, "function_id",
                                json_object_get(target, "function_id"), "version",
                                json_object_get(target, "version"), "owner_id", owner, "inputs",
                                json_object_get(row, "inputs"), "queued_at", (json_int_t) now, "study_id", id,
                                "point_index", (json_int_t) index);
                        if (!task)
                                return -ENOMEM;
                        json_object_set(task, "company_id", json_object_get(study, "company_id"));
                        json_object_set(task, "cache_key", json_object_get(row, "cache_key"));
                        json_object_set(task, "request_id", json_object_get(study, "request_id") ?: json_null());
                        TRY(insert_task(c, task, "creating a study's task", err));
                        TRY(q_exec(c, SQL_JOB_PUSH, PARAMS(PT(tid)), "queueing a task", err));
                }
                TRY(q_exec(c, SQL_POINT_SET_TASK, PARAMS(PT(tid), PT(id), PI(index)), "starting a study point",
                           err));
                if (json_array_append_new(started, json_pack("{s:s,s:b}", "task_id", tid, "cached", cached)) < 0)
                        return -ENOMEM;
                n++;
        }
        if (n > 0)
                TRY(q_exec(c, SQL_STUDY_STARTED, PARAMS(PI(n), PT(id)), "counting a study's starts", err));
        /* Nothing runs any more: the study ends unless points are pending (a start that
         * found no room leaves started > 0, and an end will come). */
        if (json_integer_value(json_object_get(study, "started")) + n == 0)
                TRY(q_exec(c, SQL_STUDY_DONE, PARAMS(PI(mp_now_ms()), PT(id)), "ending a study", err));
        return 0;
}

struct study_args {
        const char *id, *task_id, *status;
        json_t *study, *points, *outputs, *error;
        int64_t index;
        json_t *out;   /* what the operation hands back (a new reference) */
        int count;
};

static void study_args_set_out(struct study_args *a, json_t *out) {
        json_decref(a->out);
        a->out = out;
}

static int study_create_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        int n;

        TRY(insert_row(c, &studies_table, a->study, "creating a study", err));
        TRY(n = points_insert(c, str_of(a->study, "id"), a->points, 0, false, err));
        TRY(q_exec(c, SQL_STUDY_ADD_TOTAL, PARAMS(PI(n), PT(str_of(a->study, "id"))), "counting a study's points",
                   err));
        return 0;
}

static int ops_study_create(struct mp_store *s, json_t *study, json_t *points, struct mp_error *err) {
        struct study_args a = { .study = study, .points = points };

        if (!json_is_object(study) || !json_is_array(points))
                return invalid(err, "a study is an object and its points a list");
        return s->drv->run(s, MP_RUN_ATOMIC, study_create_fn, &a, err);
}

static int study_get_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        json_t *row = NULL;
        int64_t running = 0;
        int r;

        r = q_row(c, SQL_STUDY_GET, PARAMS(PT(a->id)), &row, "reading a study", err);
        if (r == -ENOENT)
                return not_found(err, "no study with id '%s'", a->id);
        if (r < 0)
                return r;
        r = q_int(c, SQL_STUDY_RUNNING, PARAMS(PT(a->id)), "n", &running, "reading a study's progress", err);
        if (r < 0) {
                json_decref(row);
                return r;
        }
        json_object_set_new(row, "running", json_integer(running));
        study_args_set_out(a, row);
        return 0;
}

static int ops_study_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct study_args a = { .id = id };
        int r = s->drv->run(s, MP_RUN_READ, study_get_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int ops_study_list(struct mp_store *s, json_t *filter, struct mp_store_list *ret,
                          struct mp_error *err) {
        struct list_args l = { .sql = SQL_STUDY_LIST, .time_col = "created_at", .what = "listing studies" };

        TRY(filter_str(filter, "owner_id", &l.a, err));
        if (!l.a)
                return invalid(err, "listing studies needs `owner_id`");
        TRY(filter_str(filter, "status", &l.b, err));
        TRY(filter_str(filter, "name", &l.c, err));
        TRY(list_args_read(filter, &l, err));
        return list_run(s, &l, ret, err);
}

static int study_points_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *rows = json_array();

        if (!rows)
                return -ENOMEM;
        TRY(q_all(c, SQL_POINTS_PAGE, PARAMS(PT(a->id), PI(a->index), PI(a->count)), rows,
                  "reading a study's points", err));
        study_args_set_out(a, json_incref(rows));
        return 0;
}

static int ops_study_points(struct mp_store *s, const char *id, int64_t after, int limit, json_t **ret,
                            struct mp_error *err) {
        struct study_args a = { .id = id, .index = after, .count = limit };
        int r = s->drv->run(s, MP_RUN_READ, study_points_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int study_add_points_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *study = NULL;
        int n;

        TRY(study_lock(c, a->id, &study, err));
        if (!strcmp(str_of(study, "status") ?: "", "cancelled"))
                return mp_error_set(err, EALREADY, 409, "conflict", "study %s was cancelled", a->id);
        TRY(n = points_insert(c, a->id, a->points, json_integer_value(json_object_get(study, "total")), true,
                              err));
        if (n > 0)
                TRY(q_exec(c, SQL_STUDY_ADD_TOTAL, PARAMS(PI(n), PT(a->id)), "counting a study's points", err));
        a->count = n;
        return n;
}

static int ops_study_add_points(struct mp_store *s, const char *id, json_t *points, struct mp_error *err) {
        struct study_args a = { .id = id, .points = points };

        if (!json_is_array(points))
                return invalid(err, "points must be a list");
        return s->drv->run(s, MP_RUN_ATOMIC, study_add_points_fn, &a, err);
}

static int study_start_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *study = NULL, *started = json_array();

        if (!started)
                return -ENOMEM;
        TRY(study_lock(c, a->id, &study, err));
        TRY(study_start_locked(c, study, started, err));
        study_args_set_out(a, json_incref(started));
        return 0;
}

/* Starts and point ends are MP_RUN_LOSSY: each is redone from what is durable after a
 * power cut. A point's end is read again from its task, whose end was synced before
 * (study_recover lists the started points whose task ended); starts lost with it were
 * never run (a worker's synced task_finish would have carried them to disk, in order),
 * and study_recover starts the pending points again. So a point's end costs no sync of
 * its own beside its task's. */
#define STUDY_STEP (MP_RUN_ATOMIC | MP_RUN_LOSSY)

static int ops_study_start(struct mp_store *s, const char *id, json_t **ret_started, struct mp_error *err) {
        struct study_args a = { .id = id };
        int r = s->drv->run(s, STUDY_STEP, study_start_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret_started = a.out;
        return 0;
}

static int study_point_end_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *study = NULL, *started = json_array();
        bool ok = !strcmp(a->status, "completed"), cancelled = !strcmp(a->status, "cancelled");
        _cleanup_free_ char *outputs = NULL, *error = NULL;
        int n;

        if (!started)
                return -ENOMEM;
        TRY(study_lock(c, a->id, &study, err));
        if (a->outputs && !(outputs = mp_json_dumps(a->outputs, JSON_COMPACT | JSON_ENCODE_ANY)))
                return -ENOMEM;
        if (a->error && !(error = mp_json_dumps(a->error, JSON_COMPACT | JSON_ENCODE_ANY)))
                return -ENOMEM;
        TRY(n = q_exec(c, SQL_POINT_END,
                       PARAMS(PT(ok ? "completed" : cancelled ? "cancelled" : "failed"), PT(outputs), PT(error),
                              PT(a->id), PI(a->index), PT(a->task_id)),
                       "ending a study point", err));
        if (n > 0) {
                TRY(q_exec(c, SQL_STUDY_COUNT_END, PARAMS(PI(ok), PI(!ok && !cancelled), PI(cancelled), PT(a->id)),
                           "counting a study point's end", err));
                /* What the start below reads of the row, as the update left it. */
                json_object_set_new(study, "started",
                                    json_integer(json_integer_value(json_object_get(study, "started")) - 1));
        }
        TRY(study_start_locked(c, study, started, err));
        study_args_set_out(a, json_incref(started));
        a->count = n > 0;
        return n > 0;
}

static int ops_study_point_end(struct mp_store *s, const char *study_id, int64_t index, const char *task_id,
                               const char *status, json_t *outputs, json_t *error, json_t **ret_started,
                               struct mp_error *err) {
        struct study_args a = { .id = study_id, .index = index, .task_id = task_id, .status = status,
                                .outputs = outputs, .error = error };
        int r;

        if (!study_id || !task_id || !status)
                return invalid(err, "a point's end needs its study, task and status");
        r = s->drv->run(s, STUDY_STEP, study_point_end_fn, &a, err);
        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret_started = a.out;
        return r;
}

static int study_retry_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *study = NULL;
        int n;

        TRY(study_lock(c, a->id, &study, err));
        if (!strcmp(str_of(study, "status") ?: "", "cancelled"))
                return mp_error_set(err, EALREADY, 409, "conflict",
                                    "study %s was cancelled: its failed points are not run again", a->id);
        TRY(n = q_exec(c, SQL_POINTS_RETRY, PARAMS(PT(a->id)), "retrying a study's points", err));
        if (n > 0)
                TRY(q_exec(c, SQL_STUDY_RETRY, PARAMS(PT(a->id)), "retrying a study", err));
        return n;
}

static int ops_study_retry(struct mp_store *s, const char *id, struct mp_error *err) {
        struct study_args a = { .id = id };

        return s->drv->run(s, MP_RUN_ATOMIC, study_retry_fn, &a, err);
}

static int study_cancel_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *study = NULL, *tasks = json_array();
        int n;

        if (!tasks)
                return -ENOMEM;
        TRY(study_lock(c, a->id, &study, err));
        if (strcmp(str_of(study, "status") ?: "", "running"))
                return mp_error_set(err, EALREADY, 409, "conflict", "study %s has already ended (%s)", a->id,
                                    str_of(study, "status") ?: "?");
        TRY(n = q_exec(c, SQL_POINTS_CANCEL, PARAMS(PT(a->id)), "cancelling a study's points", err));
        TRY(q_exec(c, SQL_STUDY_CANCEL, PARAMS(PI(mp_now_ms()), PI(n), PT(a->id)), "cancelling a study", err));
        TRY(q_all(c, SQL_POINTS_STARTED, PARAMS(PT(a->id)), tasks, "reading a study's points", err));
        study_args_set_out(a, json_incref(tasks));
        return 0;
}

static int ops_study_cancel(struct mp_store *s, const char *id, json_t **ret_tasks, struct mp_error *err) {
        struct study_args a = { .id = id };
        int r = s->drv->run(s, MP_RUN_ATOMIC, study_cancel_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret_tasks = a.out;
        return 0;
}

static int study_recover_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *ids = json_array(), *out = json_array();
        size_t i;
        json_t *row;

        if (!ids || !out)
                return -ENOMEM;
        TRY(q_all(c, SQL_STUDIES_RUNNING, NO_PARAMS, ids, "reading the running studies", err));
        json_array_foreach(ids, i, row) {
                json_t *ended = json_array(), *tasks = json_array(), *t;
                size_t k;
                int r = ended && tasks ? 0 : -ENOMEM;

                if (r >= 0)
                        r = q_all(c, SQL_POINTS_ENDED_UNSEEN, PARAMS(PT(str_of(row, "id"))), tasks,
                                  "reading a study's points", err);
                json_array_foreach(tasks, k, t)
                        json_array_append(ended, json_object_get(t, "task_id"));
                json_decref(tasks);
                if (r < 0 || json_array_append_new(out, json_pack("{s:O,s:o}", "id", json_object_get(row, "id"),
                                                                  "ended", ended)) < 0) {
                        if (r < 0)
                                json_decref(ended);
                        return r < 0 ? r : -ENOMEM;
                }
        }
        study_args_set_out(a, json_incref(out));
        return 0;
}

static int ops_study_recover(struct mp_store *s, json_t **ret, struct mp_error *err) {
        struct study_args a = { 0 };
        int r = s->drv->run(s, MP_RUN_READ, study_recover_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int ops_task_in_study(struct mp_store *s, const char *task_id, struct mp_error *err) {
        struct get_args a = { SQL_TASK_POINT, task_id, "reading a task", NULL };
        json_t *row = NULL;
        int r = get_run(s, &a, &row, err);

        json_decref(row);
        return r == -ENOENT ? 0 : r < 0 ? r : 1;
}

static int task_create_cached_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct study_args *a = ctx;
        _cleanup_json_ json_t *src = NULL;
        _cleanup_free_ char *text = NULL;
        json_t *t = a->study;
        int r;

        /* A call that repeats an Idempotency-Key is answered by the task of that key
         * (task_create's rule): no hit here. */
        if (str_of(t, "idempotency_key")) {
                r = q_exists(c, SQL_TASK_BY_KEY_EXISTS,
                             PARAMS(PT(str_of(t, "owner_id")), PT(str_of(t, "function_id")),
                                    PT(str_of(t, "idempotency_key"))),
                             "looking up an idempotency key", err);
                if (r != 0)
                        return r < 0 ? r : 0;
        }
        r = q_row(c, SQL_CACHE_FIND, PARAMS(PT(str_of(t, "owner_id")), PT(str_of(t, "cache_key"))), &src,
                  "looking up the result cache", err);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        if (!(text = mp_json_dumps(json_object_get(t, "inputs"), JSON_COMPACT)))
                return -ENOMEM;
        TRY(q_exec(c, SQL_CACHE_COPY,
                   PARAMS(PT(str_of(t, "id")), PT(str_of(t, "company_id")), PT(text),
                          PI(json_integer_value(json_object_get(t, "queued_at"))), PT(NULL), PI_NULL,
                          PT(str_of(src, "id")), PT(str_of(t, "idempotency_key"))),
                   "copying a cached result", err));
        return 1;
}

static int ops_task_create_cached(struct mp_store *s, json_t *task, struct mp_error *err) {
        struct study_args a = { .study = task };

        if (!str_of(task, "id") || !str_of(task, "owner_id") || !str_of(task, "cache_key"))
                return invalid(err, "a cached task needs `id`, `owner_id` and `cache_key`");
        int r = s->drv->run(s, MP_RUN_ATOMIC, task_create_cached_fn, &a, err);
        /* Another call with that Idempotency-Key stored its task meanwhile: no hit, the
         * caller's task_create answers with that task. */
        if (r == -EEXIST && str_of(task, "idempotency_key")) {
                mp_error_clear(err);
                return 0;
        }
        return r;
}

/* ---- retention and deletion (core/retention.c) ---- */

static int task_delete_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        const char *id = ctx;
        int r;

        TRY(q_exec(c, SQL_RETENTION_USAGE_RETURN, PARAMS(PT(id)), "giving back a task's stored bytes", err));
        r = q_exec(c, SQL_RETENTION_TASK_DELETE, PARAMS(PT(id)), "deleting a task", err);

        if (r < 0)
                return r;
        if (r == 0) {
                r = q_exists(c, SQL_RETENTION_TASK_EXISTS, PARAMS(PT(id)), "reading a task", err);
                return r < 0 ? r : r == 0 ? not_found(err, "no task with id '%s'", id) : 0;
        }
        TRY(q_exec(c, SQL_RETENTION_JOB_DELETE, PARAMS(PT(id)), "deleting a task's job", err));
        TRY(q_exec(c, SQL_RETENTION_MEMBER_DELETE, PARAMS(PT(id)), "deleting a task's study memberships", err));
        return 1;
}

static int ops_task_delete(struct mp_store *s, const char *id, struct mp_error *err) {
        if (!id)
                return invalid(err, "deleting a task needs its id");
        return s->drv->run(s, MP_RUN_ATOMIC, task_delete_fn, (void *) id, err);
}

static int ops_task_study_member(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_RETENTION_MEMBER_OF, id, "reading a task's studies", NULL };
        return get_run(s, &a, ret, err);
}

static int task_refs_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        int64_t n = 0;

        TRY(q_int(c, SQL_RETENTION_TASK_REFS, PARAMS(PT((const char *) ctx)), "n", &n,
                  "counting a task's references", err));
        return n > INT_MAX ? INT_MAX : (int) n;
}

static int ops_task_refs(struct mp_store *s, const char *id, struct mp_error *err) {
        return s->drv->run(s, MP_RUN_READ, task_refs_fn, (void *) id, err);
}

struct expired_args {
        int64_t now;
        int limit;
        json_t *rows;
};

static int task_expired_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct expired_args *a = ctx;
        json_t *rows = json_array();
        int n;

        if (!rows)
                return -ENOMEM;
        n = q_all(c, SQL_RETENTION_TASK_EXPIRED, PARAMS(PI(a->now), PI(a->limit)), rows,
                  "looking for tasks past their retention", err);
        if (n < 0) {
                json_decref(rows);
                return n;
        }
        json_decref(a->rows);
        a->rows = rows;
        return n;
}

static int ops_task_expired(struct mp_store *s, int64_t now, int limit, json_t **ret, struct mp_error *err) {
        struct expired_args a = { .now = now, .limit = limit };
        int r = s->drv->run(s, MP_RUN_READ, task_expired_fn, &a, err);

        if (r < 0) {
                json_decref(a.rows);
                return r;
        }
        *ret = a.rows;
        return 0;
}

static int ops_company_set_retention(struct mp_store *s, const char *company_id, int64_t days,
                                     struct mp_error *err) {
        struct change_args a = CHANGE(SQL_RETENTION_COMPANY_SET, "setting a company's retention", "company",
                                      company_id, days < 0 ? PI_NULL : PI(days), PT(company_id));
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_company_retention(struct mp_store *s, const char *company_id, json_t **ret,
                                 struct mp_error *err) {
        struct get_args a = { SQL_RETENTION_COMPANY_GET, company_id, "reading a company's retention", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no company with id '%s'", company_id ? company_id : "");
        return r;
}

static int ops_function_list_owned(struct mp_store *s, const char *owner_id, json_t **ret,
                                   struct mp_error *err) {
        struct all_args a = { SQL_RETENTION_FUNCTIONS_OWNED, owner_id, "listing a user's functions", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

/* ---- usage, quotas and the operators' figures (core/usage.c, migration 13) ---- */

#define DAY_MS 86400000LL

/* The first instant (epoch ms) of the UTC month holding ms, moved by `months`. */
static int64_t month_start(int64_t ms, int months) {
        time_t t = (time_t) (ms / 1000);
        struct tm tm;

        gmtime_r(&t, &tm);
        int m = tm.tm_year * 12 + tm.tm_mon + months;
        tm = (struct tm) { .tm_year = m / 12, .tm_mon = m % 12, .tm_mday = 1 };
        return (int64_t) timegm(&tm) * 1000;
}

/* The problem of a refused (or held) call: 429 for what frees itself soon (concurrent
 * calls, the day's count), 403 for what a month or a deletion frees; resets_at in epoch
 * ms (0: when a running call ends, or never by itself). */
static int quota_refused(struct mp_error *err, const char *quota, const char *scope, int64_t limit,
                         int64_t resets_at, int64_t now) {
        bool soon = !strcmp(quota, "concurrent_calls") || !strcmp(quota, "calls_per_day");
        int64_t retry = soon ? (resets_at ? (resets_at - now + 999) / 1000 : 1) : 0;
        char when[40] = "";

        if (resets_at)
                mp_format_time(resets_at, when, sizeof(when));
        mp_error_set(err, EDQUOT, soon ? 429 : 403, "QuotaExceeded",
                     "the %s quota of %s %s is used up (limit %" PRId64 ")%s%s", quota,
                     !strcmp(scope, "company") ? "the" : "your", !strcmp(scope, "company") ? "company" : "account",
                     limit, resets_at ? "; it resets at " : soon ? "; try again when a call ends" : "",
                     when);
        if (err) {
                json_decref(err->errors);
                err->errors = json_pack("{s:s,s:s,s:I,s:o,s:o}", "quota", quota, "scope", scope, "limit",
                                        (json_int_t) limit, "resets_at", resets_at ? json_string(when) : json_null(),
                                        "retry_after", soon ? json_integer(retry < 1 ? 1 : retry) : json_null());
        }
        return -EDQUOT;
}

static int quota_count(struct mp_store_conn *c, const char *sql, const char *who, int64_t arg, int64_t *ret,
                       struct mp_error *err) {
        return q_int(c, sql, PARAMS(PT(who), PI(arg)), "n", ret, "counting a quota's use", err);
}

/* Check the quotas of owner in company ("" none) in the caller's transaction: on a
 * call's admission (starting false) every quota; on its start (true) the calls running
 * and the month's CPU. With row locks the user's row, and the company's when it has a
 * quota, are locked first: admissions on several API nodes are counted one after the
 * other. 0 within the quotas, -EDQUOT (err filled) over one. */
/* When a quota is checked: a direct call as it is stored (admitted or refused); then its
 * start; a run's or a study's task, never admitted (it is throttled, not refused), only
 * at its start, where the day's calls and the storage hold it too. */
enum quota_when { QUOTA_ADMIT, QUOTA_START, QUOTA_START_UNADMITTED };

static int quota_check(struct mp_store_conn *c, const char *owner, const char *company, int64_t now,
                       enum quota_when when, struct mp_error *err) {
        bool starting = when != QUOTA_ADMIT, holding_all = when != QUOTA_START;
        _cleanup_json_ json_t *rows = json_array();
        bool company_quota = false;
        size_t i;
        json_t *q;

        if (!rows)
                return -ENOMEM;
        company = company ? company : "";
        TRY(q_all(c, SQL_QUOTAS_FOR, PARAMS(PT(company), PT(owner)), rows, "reading quotas", err));
        if (json_array_size(rows) == 0)
                return 0;
        json_array_foreach(rows, i, q)
                company_quota |= !strcmp(str_of(q, "user_id") ?: "", "");
        if (c->drv->row_locks) {
                TRY(q_exec(c, SQL_QUOTA_LOCK_USER, PARAMS(PT(owner)), "locking a user's quota", err));
                if (company_quota)
                        TRY(q_exec(c, SQL_QUOTA_LOCK_COMPANY, PARAMS(PT(company)), "locking a company's quota",
                                   err));
        }
        int64_t day0 = now - now % DAY_MS, month0 = month_start(now, 0), month1 = month_start(now, 1);
        json_array_foreach(rows, i, q) {
                int k = !strcmp(str_of(q, "user_id") ?: "", "") ? 1 : 0;
                const char *who = k ? company : owner, *scope = k ? "company" : "user";
                json_t *v;
                int64_t n;

                if (json_is_integer(v = json_object_get(q, "concurrent_calls"))) {
                        TRY(quota_count(c, SQL_QUOTA_ACTIVE[k], who, starting, &n, err));
                        if (n >= json_integer_value(v))
                                return quota_refused(err, "concurrent_calls", scope, json_integer_value(v), 0, now);
                }
                if (holding_all && json_is_integer(v = json_object_get(q, "calls_per_day"))) {
                        /* Admitting: the calls made today. Starting a task never admitted:
                         * those that ran today (ended, and running now), since its own
                         * and its study's queued ones are among the calls made. */
                        if (starting) {
                                int64_t running;
                                TRY(quota_count(c, SQL_QUOTA_RAN[k], who, day0 / DAY_MS, &n, err));
                                TRY(quota_count(c, SQL_QUOTA_ACTIVE[k], who, 1, &running, err));
                                n += running;
                        } else
                                TRY(quota_count(c, SQL_QUOTA_DAY[k], who, day0 / DAY_MS, &n, err));
                        if (n >= json_integer_value(v))
                                return quota_refused(err, "calls_per_day", scope, json_integer_value(v),
                                                     day0 + DAY_MS, now);
                }
                if (json_is_integer(v = json_object_get(q, "cpu_seconds_per_month"))) {
                        TRY(quota_count(c, SQL_QUOTA_CPU[k], who, month0 / DAY_MS, &n, err));
                        if (n >= json_integer_value(v) * 1000)
                                return quota_refused(err, "cpu_seconds_per_month", scope, json_integer_value(v),
                                                     month1, now);
                }
                if (holding_all && json_is_integer(v = json_object_get(q, "storage_mb"))) {
                        TRY(quota_count(c, SQL_QUOTA_STORAGE[k], who, 0, &n, err));
                        if (n >= json_integer_value(v) * 1048576)
                                return quota_refused(err, "storage_mb", scope, json_integer_value(v), 0, now);
                }
        }
        return 0;
}

static int quota_admit(struct mp_store_conn *c, json_t *task, struct mp_error *err) {
        json_t *q = json_object_get(task, "queued_at");

        return quota_check(c, str_of(task, "owner_id") ?: "", str_of(task, "company_id"),
                           json_is_integer(q) ? json_integer_value(q) : mp_now_ms(), QUOTA_ADMIT, err);
}

struct usage_args {
        json_t *filter, *out;
        int64_t from, to;
        const char *owner, *company, *group, *id;
        int64_t now;
        json_t *quota;
        bool admitted;
};

static void usage_args_set_out(struct usage_args *a, json_t *out) {
        json_decref(a->out);
        a->out = out;
}

static int usage_query_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct usage_args *a = ctx;
        _cleanup_json_ json_t *rows = json_array();
        char sql[768];

        if (!rows)
                return -ENOMEM;
        /* Built from fixed names only (group was checked against three). */
        snprintf(sql, sizeof(sql),
                 "SELECT %s AS key, CAST(SUM(calls) AS BIGINT) AS calls, CAST(SUM(failed) AS BIGINT) AS failed,"
                 " CAST(SUM(wall_ms) AS BIGINT) AS wall_ms, CAST(SUM(cpu_ms) AS BIGINT) AS cpu_ms,"
                 " MAX(max_peak_memory_kb) AS max_peak_memory_kb FROM usage_daily"
                 " WHERE %s = ?1 AND day >= ?2 AND day <= ?3 GROUP BY %s ORDER BY %s",
                 a->group, a->owner ? "owner_id" : "company_id", a->group, a->group);
        TRY(c->drv->query(c, sql, false, PARAMS(PT(a->owner ? a->owner : a->company), PI(a->from), PI(a->to)),
                          rows, "reading usage", err));
        usage_args_set_out(a, json_incref(rows));
        return 0;
}

static int ops_usage_query(struct mp_store *s, json_t *filter, json_t **ret, struct mp_error *err) {
        struct usage_args a = { 0 };
        static const char *const groups[] = { "day", "function_id", "owner_id" };
        int r;

        TRY(filter_str(filter, "owner_id", &a.owner, err));
        TRY(filter_str(filter, "company_id", &a.company, err));
        TRY(filter_str(filter, "group_by", &a.group, err));
        if (!a.owner == !a.company)
                return invalid(err, "reading usage needs one of `owner_id` and `company_id`");
        for (size_t i = 0; a.group && i < ELEMENTSOF(groups); i++)
                if (!strcmp(a.group, groups[i]))
                        a.group = groups[i];
        if (!a.group || (a.group != groups[0] && a.group != groups[1] && a.group != groups[2]))
                return invalid(err, "`group_by` must be day, function_id or owner_id");
        a.from = json_integer_value(json_object_get(filter, "from_day"));
        a.to = json_integer_value(json_object_get(filter, "to_day"));
        r = s->drv->run(s, MP_RUN_READ, usage_query_fn, &a, err);
        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int ops_quota_list(struct mp_store *s, const char *company_id, json_t **ret, struct mp_error *err) {
        struct all_args a = { SQL_QUOTAS_OF_COMPANY, company_id ? company_id : "", "reading quotas", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

static const char *const quota_names[] = { "concurrent_calls", "calls_per_day", "cpu_seconds_per_month",
                                           "storage_mb" };

static struct mp_store_param quota_param(json_t *row, const char *name) {
        json_t *v = json_object_get(row, name);
        return json_is_integer(v) ? PI(json_integer_value(v)) : PI_NULL;
}

static int quota_set_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct usage_args *a = ctx;
        json_t *q = a->quota;
        bool any = false;

        for (size_t i = 0; i < ELEMENTSOF(quota_names); i++)
                any |= json_is_integer(json_object_get(q, quota_names[i]));
        if (!any)
                return q_exec(c, SQL_QUOTA_DELETE, PARAMS(PT(a->company), PT(a->owner)), "removing a quota", err);
        return q_exec(c, SQL_QUOTA_UPSERT,
                      PARAMS(PT(a->company), PT(a->owner), quota_param(q, quota_names[0]),
                             quota_param(q, quota_names[1]), quota_param(q, quota_names[2]),
                             quota_param(q, quota_names[3]), PI(mp_now_ms())),
                      "setting a quota", err);
}

static int ops_quota_set(struct mp_store *s, json_t *quota, struct mp_error *err) {
        struct usage_args a = { .quota = quota };

        a.company = str_of(quota, "company_id") ?: "";
        a.owner = str_of(quota, "user_id") ?: "";
        if (!*a.company && !*a.owner)
                return invalid(err, "a quota is a company's or a user's: `company_id` or `user_id` is needed");
        int r = s->drv->run(s, MP_RUN_ATOMIC, quota_set_fn, &a, err);
        return r < 0 ? r : 0;
}

static int quota_used_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct usage_args *a = ctx;
        int k = a->owner ? 0 : 1;
        const char *who = a->owner ? a->owner : a->company;
        int64_t active, day, cpu, stored;

        TRY(quota_count(c, SQL_QUOTA_ACTIVE[k], who, 0, &active, err));
        TRY(quota_count(c, SQL_QUOTA_DAY[k], who, a->now / DAY_MS, &day, err));
        TRY(quota_count(c, SQL_QUOTA_CPU[k], who, month_start(a->now, 0) / DAY_MS, &cpu, err));
        TRY(quota_count(c, SQL_QUOTA_STORAGE[k], who, 0, &stored, err));
        usage_args_set_out(a, json_pack("{s:I,s:I,s:I,s:I}", "concurrent_calls", (json_int_t) active, "calls_today",
                                        (json_int_t) day, "cpu_ms_this_month", (json_int_t) cpu, "stored_bytes",
                                        (json_int_t) stored));
        return a->out ? 0 : -ENOMEM;
}

static int ops_quota_used(struct mp_store *s, const char *owner_id, const char *company_id, int64_t now,
                          json_t **ret, struct mp_error *err) {
        struct usage_args a = { .owner = owner_id, .company = company_id, .now = now };

        if (!owner_id == !company_id)
                return invalid(err, "a quota's use is an owner's or a company's");
        int r = s->drv->run(s, MP_RUN_READ, quota_used_fn, &a, err);
        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int task_start_quota_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct usage_args *a = ctx;
        int r = q_exists(c, SQL_TASK_QUEUED, PARAMS(PT(a->id)), "reading a task", err);

        /* Not queued (started by another claim, cancelled): nothing to hold. */
        if (r <= 0)
                return r < 0 ? r : moved_or_missing(c, 0, a->id, err);
        TRY(quota_check(c, a->owner, a->company, a->now, a->admitted ? QUOTA_START : QUOTA_START_UNADMITTED, err));
        return moved_or_missing(c, q_exec(c, SQL_TASK_START, PARAMS(PI(a->now), PT(a->group), PT(a->id)),
                                          "starting a task", err),
                                a->id, err);
}

/* A start without quota is task_start (lossy, see there); with one, the count and the
 * start are one transaction. */
static int ops_task_start_quota(struct mp_store *s, const char *id, const char *worker_id, int64_t now,
                                const char *owner_id, const char *company_id, bool admitted, struct mp_error *err) {
        struct usage_args a = { .id = id, .group = worker_id, .owner = owner_id ? owner_id : "",
                                .company = company_id ? company_id : "", .now = now, .admitted = admitted };
        _cleanup_json_ json_t *rows = NULL;
        int r;

        /* The common case, no quota that holds a start, costs one small read. */
        r = ops_quota_list(s, a.company, &rows, err);
        if (r < 0)
                return r;
        bool applies = false;
        size_t i;
        json_t *row;
        json_array_foreach(rows, i, row) {
                const char *u = str_of(row, "user_id") ?: "";
                if ((!*u && *a.company) || !strcmp(u, a.owner))
                        applies |= json_is_integer(json_object_get(row, "concurrent_calls")) ||
                                   json_is_integer(json_object_get(row, "cpu_seconds_per_month")) ||
                                   (!admitted && (json_is_integer(json_object_get(row, "calls_per_day")) ||
                                                  json_is_integer(json_object_get(row, "storage_mb"))));
        }
        if (!applies)
                return ops_task_start(s, id, worker_id, now, err);
        /* Lossy as task_start is (a start lost in a power cut is redone at restart), but
         * one transaction: the count and the start go together. */
        return s->drv->run(s, MP_RUN_ATOMIC | MP_RUN_LOSSY, task_start_quota_fn, &a, err);
}

static int ops_user_set_operator(struct mp_store *s, const char *user_id, int operator_flag,
                                 struct mp_error *err) {
        struct change_args a = CHANGE(SQL_USER_SET_OPERATOR, "setting a user's operator flag", "user", user_id,
                                      PI(operator_flag ? 1 : 0), PT(user_id));

        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

/* Nearest rank: the value below which p of the n values lie. */
static int latency_at(struct mp_store_conn *c, int64_t from, int64_t to, int64_t n, double p, json_t *out,
                      const char *name, struct mp_error *err) {
        int64_t rank = (int64_t) (p * (double) n + 0.999999), ms;

        if (n == 0) {
                json_object_set_new(out, name, json_null());
                return 0;
        }
        TRY(q_int(c, SQL_STATS_LATENCY_AT, PARAMS(PI(from), PI(to), PI(MP_MAX(rank, 1) - 1)), "ms", &ms,
                  "reading latencies", err));
        json_object_set_new(out, name, json_integer(ms));
        return 0;
}

static int admin_stats_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct usage_args *a = ctx;
        _cleanup_json_ json_t *fns = NULL, *ended = NULL, *days = json_array(), *lat = json_object();
        int64_t users, from_day = a->from / DAY_MS, to_day = (a->to - 1) / DAY_MS;

        if (!days || !lat)
                return -ENOMEM;
        TRY(q_row(c, SQL_STATS_FUNCTIONS, PARAMS(PI(a->from), PI(a->to)), &fns, "counting functions", err));
        TRY(q_all(c, SQL_STATS_DAYS, PARAMS(PI(from_day), PI(to_day)), days, "reading usage", err));
        TRY(q_int(c, SQL_STATS_ACTIVE_USERS, PARAMS(PI(from_day), PI(to_day)), "n", &users, "counting users",
                  err));
        TRY(q_row(c, SQL_STATS_ENDED, PARAMS(PI(a->from), PI(a->to)), &ended, "counting calls", err));
        int64_t ran = json_integer_value(json_object_get(ended, "ran"));
        TRY(latency_at(c, a->from, a->to, ran, 0.50, lat, "p50", err));
        TRY(latency_at(c, a->from, a->to, ran, 0.95, lat, "p95", err));
        TRY(latency_at(c, a->from, a->to, ran, 0.99, lat, "p99", err));
        usage_args_set_out(a, json_pack("{s:O,s:O,s:O,s:I,s:O,s:O,s:O,s:O}", "functions_created",
                                        json_object_get(fns, "created"), "functions_live",
                                        json_object_get(fns, "live"), "days", days, "active_users",
                                        (json_int_t) users, "ended", json_object_get(ended, "n"), "cache_hits",
                                        json_object_get(ended, "hits"), "ran", json_object_get(ended, "ran"),
                                        "latency_ms", lat));
        return a->out ? 0 : -ENOMEM;
}

static int ops_admin_stats(struct mp_store *s, int64_t from_ms, int64_t to_ms, json_t **ret,
                           struct mp_error *err) {
        struct usage_args a = { .from = from_ms, .to = to_ms };
        int r = s->drv->run(s, MP_RUN_READ, admin_stats_fn, &a, err);

        if (r < 0) {
                json_decref(a.out);
                return r;
        }
        *ret = a.out;
        return 0;
}

static int ops_company_find(struct mp_store *s, const char *name, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_COMPANY_BY_NAME, name, "reading a company", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no company named '%s'", name ? name : "");
        return r;
}

#define USAGE_OPS                                                                        \
        .usage_query = ops_usage_query, .quota_list = ops_quota_list,                   \
        .quota_set = ops_quota_set, .quota_used = ops_quota_used,                       \
        .task_start_quota = ops_task_start_quota,                                        \
        .user_set_operator = ops_user_set_operator, .admin_stats = ops_admin_stats,    \
        .company_find = ops_company_find,

/* ---- verification cases and review (core/verify.c, core/review.c) ---- */

static int ops_version_set_meta(struct mp_store *s, const char *function_id, int version, const char *field,
                                json_t *value, struct mp_error *err) {
        _cleanup_free_ char *text = value ? mp_json_dumps(value, JSON_COMPACT) : NULL;
        const char *sql = field && !strcmp(field, "verification") ? SQL_VERSION_SET_VERIFICATION
                          : field && !strcmp(field, "review")     ? SQL_VERSION_SET_REVIEW
                                                                  : NULL;

        if (!sql)
                return invalid(err, "a version's %s cannot be set", field ? field : "(null)");
        if (value && !text)
                return -ENOMEM;
        struct change_args a = CHANGE(sql, "setting a version's verification or review", "function version",
                                      function_id, PT(text), PT(function_id), PI(version));
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_version_swap_review(struct mp_store *s, const char *function_id, int version, json_t *expected,
                                   json_t *value, struct mp_error *err) {
        _cleanup_free_ char *text = mp_json_dumps(value, JSON_COMPACT);
        _cleanup_free_ char *was = expected && !json_is_null(expected) ? mp_json_dumps(expected, JSON_COMPACT)
                                                                       : strdup("");

        if (!text || !was)
                return -ENOMEM;
        struct change_args a = CHANGE(SQL_VERSION_SWAP_REVIEW, "setting a version's review", "function version",
                                      function_id, PT(text), PT(function_id), PI(version), PT(was));
        a.none_ok = true;
        int r = s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
        if (r == 0)
                return mp_error_set(err, ESTALE, 409, "conflict",
                                    "the review of version %d of function %s changed meanwhile; read it again",
                                    version, function_id);
        return r < 0 ? r : 0;
}

static int ops_verification_tasks(struct mp_store *s, const char *key, json_t **ret, struct mp_error *err) {
        struct all_args a = { SQL_VERIFICATION_TASKS, key, "listing a version's verification tasks", NULL };
        int n = all_run(s, &a, ret, err);
        return n < 0 ? n : 0;
}

static int ops_company_settings(struct mp_store *s, const char *company_id, json_t **ret,
                                struct mp_error *err) {
        struct get_args a = { SQL_COMPANY_SETTINGS_GET, company_id, "reading a company's settings", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no company with id '%s'", company_id ? company_id : "");
        return r;
}

static int ops_company_set_settings(struct mp_store *s, const char *company_id, json_t *settings,
                                    struct mp_error *err) {
        _cleanup_free_ char *text = mp_json_dumps(settings, JSON_COMPACT);

        if (!text)
                return -ENOMEM;
        struct change_args a = CHANGE(SQL_COMPANY_SETTINGS_SET, "setting a company's settings", "company",
                                      company_id, PT(text), PT(company_id));
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_verification_running(struct mp_store *s, json_t **ret, struct mp_error *err) {
        struct all_args a = { SQL_VERIFICATION_RUNNING, "%\"status\":\"running\"%",
                              "listing the versions running their verification cases", NULL };
        json_t *rows = NULL, *row;
        int n = all_run(s, &a, &rows, err);
        size_t i;

        if (n < 0)
                return n;
        /* the pattern also matches a settled outcome whose cases hold the text */
        for (i = json_array_size(rows); i-- > 0;) {
                row = json_array_get(rows, i);
                const char *st = str_of(json_object_get(row, "verification"), "status");
                if (!st || strcmp(st, "running"))
                        json_array_remove(rows, i);
                else
                        json_object_del(row, "verification");
        }
        *ret = rows;
        return 0;
}

#define VERIFY_OPS                                                                       \
        .version_set_meta = ops_version_set_meta, .verification_tasks = ops_verification_tasks, \
        .version_swap_review = ops_version_swap_review,                                  \
        .company_settings = ops_company_settings, .company_set_settings = ops_company_set_settings, \
        .verification_running = ops_verification_running,
/* ---- environments (core/environments.c, migration 17) ---- */

struct env_insert_args {
        struct mp_store_param p[8];
};

static int env_insert_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct env_insert_args *a = ctx;
        struct mp_store_param p[ELEMENTSOF(a->p)];

        memcpy(p, a->p, sizeof(p)); /* the driver consumes them; a retry needs them again */
        return q_exec(c, SQL_ENV_INSERT, p, ELEMENTSOF(p), "storing an environment", err);
}

static int ops_env_create(struct mp_store *s, json_t *env, struct mp_error *err) {
        json_t *lock = json_object_get(env, "resolved"), *ms = json_object_get(env, "build_ms");
        _cleanup_free_ char *reqs = json_dumps(json_object_get(env, "requirements"), JSON_COMPACT);
        _cleanup_free_ char *locked = json_is_array(lock) ? json_dumps(lock, JSON_COMPACT) : NULL;
        const char *id = json_string_value(json_object_get(env, "id"));
        const char *status = json_string_value(json_object_get(env, "status"));
        const char *log = json_string_value(json_object_get(env, "log"));

        if (!id || !status || !reqs)
                return invalid(err, "an environment needs an id, a status and its requirements");
        struct env_insert_args a = { {
                PT(id), PT(status), PT(reqs), PT(locked), PT(log ? log : ""),
                PT(json_string_value(json_object_get(env, "build_error"))),
                json_is_integer(ms) ? PI(json_integer_value(ms)) : PI_NULL,
                PI(json_integer_value(json_object_get(env, "created_at"))),
        } };
        return s->drv->run(s, MP_RUN_WRITE, env_insert_fn, &a, err);
}

static int ops_env_get(struct mp_store *s, const char *id, json_t **ret, struct mp_error *err) {
        struct get_args a = { SQL_ENV_GET, id, "reading an environment", NULL };
        int r = get_run(s, &a, ret, err);

        if (r == -ENOENT)
                return not_found(err, "no environment with id '%s'", id ? id : "");
        return r;
}

static int ops_env_set(struct mp_store *s, const char *id, const char *status, const char *log,
                       const char *build_error, int64_t build_ms, struct mp_error *err) {
        struct change_args a = CHANGE(SQL_ENV_SET, "updating an environment", "environment", id, PT(status),
                                      PT(log ? log : ""), PT(build_error), build_ms < 0 ? PI_NULL : PI(build_ms),
                                      PT(id));
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_env_requeue(struct mp_store *s, const char *id, const char *requirements, const char *resolved,
                           struct mp_error *err) {
        struct change_args a = CHANGE(SQL_ENV_REQUEUE, "building an environment again", "environment", id,
                                      PT(id), PT(requirements), PT(resolved));
        a.none_ok = true;
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

static int ops_env_unfinished(struct mp_store *s, json_t **ret, struct mp_error *err) {
        struct all_args a = { SQL_ENV_UNFINISHED, NULL, "listing the environments to build", NULL };
        int n = all_run(s, &a, ret, err);

        return n < 0 ? n : 0;
}

struct env_unused_args {
        int64_t before;
        json_t *arr;
        const char *sql, *what; /* SQL_ENV_UNUSED or SQL_ENV_IN_USE (migration 18) */
};

static int env_unused_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct env_unused_args *a = ctx;
        json_t *arr = json_array();
        int n;

        if (!arr)
                return -ENOMEM;
        n = q_all(c, a->sql, PARAMS(PI(a->before)), arr, a->what, err);
        if (n < 0) {
                json_decref(arr);
                return n;
        }
        json_decref(a->arr);
        a->arr = arr;
        return 0;
}

static int env_list(struct mp_store *s, struct env_unused_args a, json_t **ret, struct mp_error *err) {
        int r = s->drv->run(s, MP_RUN_READ, env_unused_fn, &a, err);

        if (r < 0) {
                json_decref(a.arr);
                return r;
        }
        *ret = a.arr;
        return 0;
}

static int ops_env_unused(struct mp_store *s, int64_t before_ms, json_t **ret, struct mp_error *err) {
        return env_list(s, (struct env_unused_args) { before_ms, NULL, SQL_ENV_UNUSED, "listing unused environments" },
                        ret, err);
}

/* ---- environments on every node (core/environments.c, migration 18) ---- */

static int ops_env_in_use(struct mp_store *s, int64_t before_ms, json_t **ret, struct mp_error *err) {
        return env_list(s, (struct env_unused_args) { before_ms, NULL, SQL_ENV_IN_USE,
                                                      "listing the environments in use" }, ret, err);
}

static int ops_env_set_archive(struct mp_store *s, const char *id, const char *sha256, struct mp_error *err) {
        struct change_args a = CHANGE(SQL_ENV_SET_ARCHIVE, "recording an environment's layer archive", "environment",
                                      id, PT(sha256), PT(id));
        return s->drv->run(s, MP_RUN_WRITE, change_fn, &a, err);
}

#define ENV_OPS                                                                          \
        .env_create = ops_env_create, .env_get = ops_env_get, .env_set = ops_env_set,   \
        .env_requeue = ops_env_requeue, .env_unfinished = ops_env_unfinished,           \
        .env_unused = ops_env_unused,                                                   \
        .env_in_use = ops_env_in_use, .env_set_archive = ops_env_set_archive,

/* One table per scheme, the same operations in each. */
#define OPS_TABLE(scheme_, open_)                                                        \
        {                                                                                \
                .scheme = scheme_, .open = open_, .close = ops_close,                    \
                .company_ensure = ops_company_ensure, .user_create = ops_user_create,   \
                .user_get = ops_user_get, .user_set_password = ops_user_set_password,   \
                .user_set_identity = ops_user_set_identity,                              \
                .token_create = ops_token_create, .token_lookup = ops_token_lookup,     \
                .token_list = ops_token_list, .token_revoke = ops_token_revoke,         \
                .token_revoke_sessions = ops_token_revoke_sessions,                      \
                .audit_append = ops_audit_append, .audit_list = ops_audit_list,         \
                .function_create = ops_function_create, .function_get = ops_function_get, \
                .function_find = ops_function_find, .function_list = ops_function_list, \
                .function_update = ops_function_update,                                  \
                .function_get_version = ops_function_get_version,                        \
                .function_list_versions = ops_function_list_versions,                    \
                .function_delete = ops_function_delete, .task_create = ops_task_create, \
                .task_get = ops_task_get, .task_list = ops_task_list,                   \
                .task_start = ops_task_start, .task_retry = ops_task_retry,             \
                .task_finish = ops_task_finish, .task_requeue = ops_task_requeue,       \
                .job_claim = ops_job_claim, .job_extend = ops_job_extend,               \
                .job_release_all = ops_job_release_all, .company_get = ops_company_get, \
                .company_members = ops_company_members,                                  \
                .member_set_role = ops_member_set_role,                                  \
                .member_remove = ops_member_remove,                                      \
                .function_catalogue = ops_function_catalogue,                            \
                WORKFLOW_OPS                                                             \
                .study_create = ops_study_create, .study_get = ops_study_get,           \
                .study_list = ops_study_list, .study_points = ops_study_points,         \
                .study_add_points = ops_study_add_points, .study_start = ops_study_start, \
                .study_point_end = ops_study_point_end, .study_retry = ops_study_retry, \
                .study_cancel = ops_study_cancel, .study_recover = ops_study_recover,   \
                .task_create_cached = ops_task_create_cached,                            \
                .task_in_study = ops_task_in_study,                                      \
                RETENTION_OPS                                                            \
                .task_live = ops_task_live, .task_live_logs = ops_task_live_logs,       \
                USAGE_OPS                                                                \
                VERIFY_OPS                                                               \
                ENV_OPS                                                                  \
        }

/* Retention and deletion's operations, in one block of the table. */
#define RETENTION_OPS                                                                    \
        .task_delete = ops_task_delete, .task_study_member = ops_task_study_member,     \
        .task_refs = ops_task_refs, .task_expired = ops_task_expired,                   \
        .company_set_retention = ops_company_set_retention,                              \
        .company_retention = ops_company_retention,                                      \
        .function_list_owned = ops_function_list_owned,

/* The workflows' operations, in one block of the table. */
#define WORKFLOW_OPS                                                                     \
        .workflow_create = ops_workflow_create, .workflow_get = ops_workflow_get,       \
        .workflow_find = ops_workflow_find, .workflow_list = ops_workflow_list,         \
        .workflow_update = ops_workflow_update,                                          \
        .workflow_get_version = ops_workflow_get_version,                                \
        .workflow_delete = ops_workflow_delete,                                          \
        .workflow_run_create = ops_workflow_run_create,                                  \
        .workflow_run_get = ops_workflow_run_get, .workflow_run_list = ops_workflow_run_list, \
        .workflow_run_update = ops_workflow_run_update,                                  \
        .workflow_run_advance = ops_workflow_run_advance,                                \
        .workflow_run_open = ops_workflow_run_open,                                      \
        .workflow_run_find_cached = ops_workflow_run_find_cached,                        \
        .study_add_members = ops_study_add_members, .study_members = ops_study_members,

/* ---- progress and live logs of a running task (events) ---- */

struct task_live_args {
        const char *id, *logs;
        char *progress;
        bool first;
};

static int task_live_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_live_args *a = ctx;
        int r = q_exec(c, SQL_TASK_LIVE, PARAMS(PT(a->progress), PT(a->logs), PI(a->first), PT(a->id)),
                       "storing a task's progress", err);
        return r < 0 ? r : r > 0;
}

static int ops_task_live(struct mp_store *s, const char *id, json_t *progress, const char *logs, bool first,
                         struct mp_error *err) {
        _cleanup_free_ char *text = progress ? mp_json_dumps(progress, JSON_COMPACT) : NULL;
        struct task_live_args a = { id, logs, text, first };

        if (progress && !text)
                return -ENOMEM;
        return s->drv->run(s, MP_RUN_WRITE | MP_RUN_LOSSY, task_live_fn, &a, err);
}

struct task_live_logs_args {
        const char *id;
        int64_t after;
        json_t *row;
};

static int task_live_logs_fn(struct mp_store_conn *c, void *ctx, struct mp_error *err) {
        struct task_live_logs_args *a = ctx;
        return q_row(c, SQL_TASK_LIVE_LOGS, PARAMS(PT(a->id), PI(a->after)), &a->row, "reading a task's logs", err);
}

static int ops_task_live_logs(struct mp_store *s, const char *id, int64_t after, json_t **ret,
                              struct mp_error *err) {
        struct task_live_logs_args a = { id, after < 0 ? 0 : after, NULL };
        int r = s->drv->run(s, MP_RUN_READ, task_live_logs_fn, &a, err);

        if (r == -ENOENT)
                return not_found(err, "no task with id '%s'", id ? id : "");
        if (r < 0)
                return r;
        *ret = a.row;
        return 0;
}

static const struct mp_store_ops sqlite_ops = OPS_TABLE("sqlite", ops_open_sqlite);
static const struct mp_store_ops postgres_ops = OPS_TABLE("postgres", ops_open_postgres);
