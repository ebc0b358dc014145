/* Unit tests of store/ through its port. Every case runs against the sqlite: backend,
 * each on a fresh database in its own temporary folder, and again against the
 * postgres: backend when MECAPY_TEST_POSTGRES_URL names a server (tests/services/
 * postgres.sh starts one), each on an emptied schema; a few cases are PostgreSQL's
 * own (processes claiming at once, connections killed, a server that is unreachable).
 * Case names end in [sqlite] or [postgres]. */
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <libpq-fe.h>

#include "check.h"

#include "base/config.h"
#include "base/limits.h"
#include "base/util.h"
#include "store/store.h"

/* ---- fixtures ---- */

static char tmp_dir[4096];
/* The backend under test: "sqlite" or "postgres" (then pg_url is the server's URL). */
static const char *backend = "sqlite";
static const char *pg_url;

static bool is_pg(void) {
        return strcmp(backend, "postgres") == 0;
}

static void quiet(void *arg, const char *message) {
}

/* A direct connection to the test server, beside the store's own. */
static PGconn *pg_admin(void) {
        PGconn *pg = PQconnectdb(pg_url);
        if (PQstatus(pg) != CONNECTION_OK) {
                fprintf(stderr, "connecting to %s: %s\n", pg_url, PQerrorMessage(pg));
                exit(2);
        }
        PQsetNoticeProcessor(pg, quiet, NULL);
        return pg;
}

static int pg_exec(PGconn *pg, const char *sql) {
        PGresult *res = PQexec(pg, sql);
        int ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;
        if (!ok)
                fprintf(stderr, "  %s: %s", sql, PQresultErrorMessage(res));
        PQclear(res);
        return ok ? 0 : -1;
}

static int64_t pg_scalar(PGconn *pg, const char *sql) {
        PGresult *res = PQexec(pg, sql);
        int64_t n = -1;
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
                n = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
        return n;
}

/* An empty database for the next case: the schema dropped with every table. */
static void pg_empty(void) {
        PGconn *pg = pg_admin();
        if (pg_exec(pg, "SET client_min_messages = warning; DROP SCHEMA IF EXISTS public CASCADE;"
                        " CREATE SCHEMA public") < 0)
                exit(2);
        PQfinish(pg);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *f) {
        (void) st;
        (void) flag;
        (void) f;
        return remove(path);
}

static void tmp_make(void) {
        const char *base = getenv("TMPDIR");
        snprintf(tmp_dir, sizeof(tmp_dir), "%s/mp-test-store-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmp_dir)) {
                perror("mkdtemp");
                exit(2);
        }
}

static void tmp_remove(void) {
        if (tmp_dir[0])
                nftw(tmp_dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        tmp_dir[0] = 0;
}

static void db_url(char *buf, size_t size) {
        if (is_pg()) {
                snprintf(buf, size, "%s", pg_url);
                return;
        }
        /* a folder that does not exist yet: open must create it */
        snprintf(buf, size, "sqlite:%s/data/mecapy.db", tmp_dir);
}

/* A fresh store in a new temporary folder. */
static struct mp_store *fresh(void) {
        struct mp_error err = { 0 };
        struct mp_store *s = NULL;
        char url[4200];
        int r;

        if (is_pg())
                pg_empty();
        else
                tmp_make();
        db_url(url, sizeof(url));
        r = mp_store_open(url, &s, &err);
        if (r < 0) {
                fprintf(stderr, "open %s: %d %s\n", url, r, err.message);
                exit(2);
        }
        mp_error_clear(&err);
        return s;
}

static void done(struct mp_store *s) {
        mp_store_close(s);
        tmp_remove();
}

struct world {
        char company_a[MP_ID_LEN + 1], company_b[MP_ID_LEN + 1];
        char u1[MP_ID_LEN + 1], u2[MP_ID_LEN + 1], u3[MP_ID_LEN + 1]; /* u1, u2 in A; u3 in B */
};

static void make_user(struct mp_store *s, char *id, const char *email, const char *company) {
        json_t *u;
        int r;

        mp_id_new(id);
        u = json_pack("{s:s,s:s,s:s,s:s?,s:s,s:I}", "id", id, "email", email, "password_hash", "h",
                      "company_id", company, "role", "member", "created_at", (json_int_t) 1000);
        r = MP_STORE(s)->user_create(s, u, NULL);
        json_decref(u);
        if (r < 0) {
                fprintf(stderr, "user_create %s: %d\n", email, r);
                exit(2);
        }
}

static void make_world(struct mp_store *s, struct world *w) {
        json_t *c = NULL;

        MP_STORE(s)->company_ensure(s, "Acme", &c, NULL);
        snprintf(w->company_a, sizeof(w->company_a), "%s", json_string_value(json_object_get(c, "id")));
        json_decref(c);
        MP_STORE(s)->company_ensure(s, "Globex", &c, NULL);
        snprintf(w->company_b, sizeof(w->company_b), "%s", json_string_value(json_object_get(c, "id")));
        json_decref(c);
        make_user(s, w->u1, "u1@acme.test", w->company_a);
        make_user(s, w->u2, "u2@acme.test", w->company_a);
        make_user(s, w->u3, "u3@globex.test", w->company_b);
}

/* Create a function; id is filled. Returns the store's answer. */
static int make_function(struct mp_store *s, char *id, const char *owner, const char *company,
                         const char *name, const char *visibility, int64_t created_at) {
        json_t *fn, *v;
        int r;

        mp_id_new(id);
        fn = json_pack("{s:s,s:s,s:s?,s:s,s:s,s:s,s:I}", "id", id, "owner_id", owner, "company_id",
                       company, "name", name, "description", "a beam", "visibility", visibility,
                       "created_at", (json_int_t) created_at);
        v = json_pack("{s:s,s:s,s:[s],s:{s:s},s:n,s:s,s:I}", "code", "def f(x): return x",
                      "handler", "f", "requirements", "numpy", "input_schema", "type", "object",
                      "limits", "isolation", "warm", "created_at", (json_int_t) created_at);
        r = MP_STORE(s)->function_create(s, fn, v, NULL);
        json_decref(fn);
        json_decref(v);
        return r;
}

/* The error of the last make_task. */
static struct mp_error task_err;

static int make_task(struct mp_store *s, char *id, const char *fn, const char *owner,
                     const char *key, int64_t queued_at, json_t **ret_existing) {
        json_t *t;
        int r;

        mp_id_new(id);
        t = json_pack("{s:s,s:s,s:i,s:s,s:n,s:{s:f},s:s?,s:I}", "id", id, "function_id", fn,
                      "version", 1, "owner_id", owner, "company_id", "inputs", "length", 2.5,
                      "idempotency_key", key, "queued_at", (json_int_t) queued_at);
        mp_error_clear(&task_err);
        r = MP_STORE(s)->task_create(s, t, ret_existing, &task_err);
        json_decref(t);
        return r;
}

static const char *str(json_t *row, const char *key) {
        return json_string_value(json_object_get(row, key));
}
static int64_t num(json_t *row, const char *key) {
        return json_integer_value(json_object_get(row, key));
}

/* ---- cases ---- */

TEST(open_bad_urls) {
        struct mp_error err = { 0 };
        struct mp_store *s = NULL;

        CHECK_INT(mp_store_open("nosuch:/x", &s, &err), ==, -EPROTONOSUPPORT);
        CHECK(strstr(err.message, "nosuch") != NULL);
        CHECK_INT(mp_store_open("no-scheme-at-all", &s, &err), ==, -EINVAL);
        CHECK_INT(mp_store_open("sqlite:", &s, &err), ==, -EINVAL);
        CHECK(s == NULL);
        mp_error_clear(&err);
}

TEST(identity) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = mp_store_ops(s);
        struct mp_error err = { 0 };
        json_t *c1 = NULL, *c2 = NULL, *u = NULL, *row = NULL;
        char id[MP_ID_LEN + 1], other[MP_ID_LEN + 1];

        CHECK_STR(ops->scheme, backend);
        CHECK_INT(ops->company_ensure(s, "Acme", &c1, &err), ==, 0);
        CHECK_INT(ops->company_ensure(s, "Acme", &c2, &err), ==, 0);
        REQUIRE(c1 && c2);
        CHECK_STR(str(c1, "id"), str(c2, "id"));
        CHECK_STR(str(c1, "name"), "Acme");
        CHECK_INT(num(c1, "created_at"), >, 0);
        CHECK_INT(ops->company_ensure(s, "", NULL, &err), ==, -EINVAL);

        mp_id_new(id);
        u = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", id, "email", "ada@acme.test", "password_hash",
                      "argon", "company_id", str(c1, "id"), "role", "admin");
        CHECK_INT(ops->user_create(s, u, &err), ==, 0);
        /* the same email again, under another id */
        mp_id_new(other);
        json_object_set_new(u, "id", json_string(other));
        CHECK_INT(ops->user_create(s, u, &err), ==, -EEXIST);
        CHECK(strstr(err.message, "ada@acme.test") != NULL);
        /* unknown company, unknown role, missing email */
        json_object_set_new(u, "email", json_string("bob@acme.test"));
        json_object_set_new(u, "company_id", json_string("no-such-company"));
        CHECK_INT(ops->user_create(s, u, &err), ==, -ENOENT);
        json_object_set_new(u, "company_id", json_null());
        json_object_set_new(u, "role", json_string("root"));
        CHECK_INT(ops->user_create(s, u, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "role") != NULL);
        json_object_del(u, "role");
        json_object_del(u, "email");
        CHECK_INT(ops->user_create(s, u, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "email") != NULL);
        json_decref(u);

        CHECK_INT(ops->user_get(s, "email", "ada@acme.test", &row, &err), ==, 0);
        REQUIRE(row);
        CHECK_STR(str(row, "id"), id);
        CHECK_STR(str(row, "role"), "admin");
        CHECK_STR(str(row, "password_hash"), "argon");
        CHECK_INT(num(row, "created_at"), >, 0);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->user_get(s, "id", id, &row, &err), ==, 0);
        CHECK_STR(str(row, "email"), "ada@acme.test");
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->user_get(s, "id", other, &row, &err), ==, -ENOENT);
        CHECK(row == NULL);
        CHECK_INT(ops->user_get(s, "name", "x", &row, &err), ==, -EINVAL);

        CHECK_INT(ops->user_set_password(s, id, "argon2", &err), ==, 0);
        CHECK_INT(ops->user_get(s, "id", id, &row, &err), ==, 0);
        CHECK_STR(str(row, "password_hash"), "argon2");
        json_decref(row);
        CHECK_INT(ops->user_set_password(s, other, "x", &err), ==, -ENOENT);

        json_decref(c1);
        json_decref(c2);
        mp_error_clear(&err);
        done(s);
}

TEST(tokens) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char t1[MP_ID_LEN + 1], t2[MP_ID_LEN + 1], t3[MP_ID_LEN + 1], t4[MP_ID_LEN + 1];
        json_t *t, *got = NULL, *list = NULL;

        make_world(s, &w);
        mp_id_new(t1);
        mp_id_new(t2);
        mp_id_new(t3);
        mp_id_new(t4);
        t = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", t1, "user_id", w.u1, "token_hash", "h1", "kind",
                      "session", "created_at", (json_int_t) 100);
        CHECK_INT(ops->token_create(s, t, &err), ==, 0);
        json_decref(t);
        t = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "id", t2, "user_id", w.u1, "token_hash", "h2",
                      "kind", "api", "name", "ci", "created_at", (json_int_t) 200);
        CHECK_INT(ops->token_create(s, t, &err), ==, 0);
        /* the same hash again */
        json_object_set_new(t, "id", json_string(t4));
        CHECK_INT(ops->token_create(s, t, &err), ==, -EEXIST);
        json_decref(t);
        t = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "id", t3, "user_id", w.u1, "token_hash", "h3",
                      "kind", "api", "name", "old", "created_at", (json_int_t) 300, "expires_at",
                      (json_int_t) 5000);
        CHECK_INT(ops->token_create(s, t, &err), ==, 0);
        json_decref(t);
        t = json_pack("{s:s,s:s,s:s,s:s}", "id", t4, "user_id", w.u1, "token_hash", "h4", "kind", "magic");
        CHECK_INT(ops->token_create(s, t, &err), ==, -EINVAL);
        json_object_set_new(t, "kind", json_string("api"));
        json_object_set_new(t, "user_id", json_string("nobody"));
        CHECK_INT(ops->token_create(s, t, &err), ==, -ENOENT);
        json_decref(t);

        /* Use is recorded to the minute: the first use, then not again within 60 s. */
        CHECK_INT(ops->token_lookup(s, "h1", 61234, &got, &err), ==, 0);
        REQUIRE(got);
        CHECK_STR(str(json_object_get(got, "token"), "id"), t1);
        CHECK_INT(num(json_object_get(got, "token"), "last_used_at"), ==, 61234);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "h1", 62000, &got, &err), ==, 0);
        REQUIRE(got);
        CHECK_INT(num(json_object_get(got, "token"), "last_used_at"), ==, 61234);
        CHECK_STR(str(json_object_get(got, "user"), "email"), "u1@acme.test");
        json_decref(got);
        got = NULL;
        /* the bump was stored */
        CHECK_INT(ops->token_lookup(s, "h1", 1300, &got, &err), ==, 0);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "nope", 1234, &got, &err), ==, -ENOENT);
        /* expiry: live before expires_at, dead at and after it */
        CHECK_INT(ops->token_lookup(s, "h3", 4999, &got, &err), ==, 0);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "h3", 5000, &got, &err), ==, -ENOENT);
        CHECK(got == NULL);

        CHECK_INT(ops->token_list(s, w.u1, &list, &err), ==, 0);
        REQUIRE(list);
        CHECK_INT(json_array_size(list), ==, 2);
        CHECK_STR(str(json_array_get(list, 0), "id"), t3); /* newest first */
        CHECK_STR(str(json_array_get(list, 1), "id"), t2);
        CHECK(json_object_get(json_array_get(list, 0), "token_hash") == NULL);
        CHECK_STR(str(json_array_get(list, 1), "name"), "ci");
        json_decref(list);

        /* revoke: another user's token is not found; twice is fine; revoked is dead */
        CHECK_INT(ops->token_revoke(s, w.u2, t2, 2000, &err), ==, -ENOENT);
        CHECK_INT(ops->token_revoke(s, w.u1, t2, 2000, &err), ==, 0);
        CHECK_INT(ops->token_revoke(s, w.u1, t2, 2001, &err), ==, 0);
        CHECK_INT(ops->token_lookup(s, "h2", 2100, &got, &err), ==, -ENOENT);
        CHECK_INT(ops->token_list(s, w.u1, &list, &err), ==, 0);
        CHECK_INT(num(json_array_get(list, 1), "revoked_at"), ==, 2000);
        json_decref(list);
        mp_error_clear(&err);
        done(s);
}

TEST(functions) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], f2[MP_ID_LEN + 1], f3[MP_ID_LEN + 1];
        json_t *row = NULL, *fields, *v2, *list = NULL;
        int version = -1;

        make_world(s, &w);
        CHECK_INT(make_function(s, f1, w.u1, w.company_a, "beam", "private", 1000), ==, 0);
        /* same owner, same name: conflict; another owner may use it */
        CHECK_INT(make_function(s, f2, w.u1, w.company_a, "beam", "public", 1001), ==, -EEXIST);
        CHECK_INT(make_function(s, f2, w.u2, w.company_a, "beam", "public", 1002), ==, 0);
        CHECK_INT(make_function(s, f3, "nobody", NULL, "ghost", "public", 1003), ==, -ENOENT);
        CHECK_INT(make_function(s, f3, w.u1, NULL, "bad", "everyone", 1003), ==, -EINVAL);

        CHECK_INT(ops->function_get(s, f1, &row, &err), ==, 0);
        REQUIRE(row);
        CHECK_STR(str(row, "name"), "beam");
        CHECK_STR(str(row, "owner_id"), w.u1);
        CHECK_STR(str(row, "company_id"), w.company_a);
        CHECK_STR(str(row, "visibility"), "private");
        CHECK_INT(num(row, "latest_version"), ==, 1);
        CHECK_INT(num(row, "created_at"), ==, 1000);
        CHECK_INT(num(row, "updated_at"), ==, 1000);
        CHECK_INT(num(row, "deleted_at"), ==, 0);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->function_find(s, w.u1, "beam", &row, &err), ==, 0);
        CHECK_STR(str(row, "id"), f1);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->function_find(s, w.u3, "beam", &row, &err), ==, -ENOENT);

        /* version 1 with its JSON columns parsed */
        CHECK_INT(ops->function_get_version(s, f1, 0, &row, &err), ==, 0);
        REQUIRE(row);
        CHECK_INT(num(row, "version"), ==, 1);
        CHECK_STR(str(row, "function_id"), f1);
        CHECK_STR(str(row, "code"), "def f(x): return x");
        CHECK(json_is_array(json_object_get(row, "requirements")));
        CHECK_STR(json_string_value(json_array_get(json_object_get(row, "requirements"), 0)), "numpy");
        CHECK_STR(str(json_object_get(row, "input_schema"), "type"), "object");
        CHECK(json_is_null(json_object_get(row, "limits")));
        json_decref(row);
        row = NULL;

        /* update metadata and add version 2 */
        fields = json_pack("{s:s,s:s}", "description", "a better beam", "visibility", "company");
        v2 = json_pack("{s:s,s:s,s:[]}", "code", "def f(x): return 2*x", "handler", "f",
                       "requirements");
        CHECK_INT(ops->function_update(s, f1, fields, v2, 5000, &version, &err), ==, 0);
        CHECK_INT(version, ==, 2);
        json_decref(fields);
        /* metadata only: the version stays */
        fields = json_pack("{s:s}", "description", "best");
        CHECK_INT(ops->function_update(s, f1, fields, NULL, 6000, &version, &err), ==, 0);
        CHECK_INT(version, ==, 2);
        json_decref(fields);
        fields = json_pack("{s:s}", "visibility", "world");
        CHECK_INT(ops->function_update(s, f1, fields, NULL, 6000, &version, &err), ==, -EINVAL);
        json_decref(fields);
        fields = json_pack("{s:s}", "owner_id", w.u3);
        CHECK_INT(ops->function_update(s, f1, fields, NULL, 6000, &version, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "owner_id") != NULL);
        json_decref(fields);
        CHECK_INT(ops->function_update(s, "nope", NULL, v2, 6000, &version, &err), ==, -ENOENT);
        json_decref(v2);

        CHECK_INT(ops->function_get(s, f1, &row, &err), ==, 0);
        CHECK_STR(str(row, "description"), "best");
        CHECK_STR(str(row, "visibility"), "company");
        CHECK_INT(num(row, "latest_version"), ==, 2);
        CHECK_INT(num(row, "updated_at"), ==, 6000);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->function_get_version(s, f1, 0, &row, &err), ==, 0);
        CHECK_INT(num(row, "version"), ==, 2);
        CHECK_STR(str(row, "code"), "def f(x): return 2*x");
        CHECK_INT(num(row, "created_at"), ==, 5000);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->function_get_version(s, f1, 1, &row, &err), ==, 0);
        CHECK_STR(str(row, "code"), "def f(x): return x");
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->function_get_version(s, f1, 3, &row, &err), ==, -ENOENT);
        CHECK_INT(ops->function_get_version(s, "nope", 0, &row, &err), ==, -ENOENT);

        CHECK_INT(ops->function_list_versions(s, f1, &list, &err), ==, 0);
        REQUIRE(list);
        CHECK_INT(json_array_size(list), ==, 2);
        CHECK_INT(num(json_array_get(list, 0), "version"), ==, 2);
        CHECK_INT(num(json_array_get(list, 1), "version"), ==, 1);
        CHECK(json_object_get(json_array_get(list, 0), "code") == NULL);
        json_decref(list);
        list = NULL;
        CHECK_INT(ops->function_list_versions(s, "nope", &list, &err), ==, -ENOENT);

        /* soft delete: gone for get and find, name free again, versions still readable */
        CHECK_INT(ops->function_delete(s, f1, 7000, &err), ==, 0);
        CHECK_INT(ops->function_delete(s, f1, 7001, &err), ==, -ENOENT);
        CHECK_INT(ops->function_get(s, f1, &row, &err), ==, -ENOENT);
        CHECK(strstr(err.message, f1) != NULL);
        CHECK_INT(ops->function_find(s, w.u1, "beam", &row, &err), ==, -ENOENT);
        CHECK_INT(ops->function_update(s, f1, NULL, NULL, 8000, &version, &err), ==, -ENOENT);
        CHECK_INT(ops->function_get_version(s, f1, 2, &row, &err), ==, 0);
        json_decref(row);
        row = NULL;
        CHECK_INT(make_function(s, f3, w.u1, w.company_a, "beam", "private", 9000), ==, 0);
        CHECK_INT(ops->function_find(s, w.u1, "beam", &row, &err), ==, 0);
        CHECK_STR(str(row, "id"), f3);
        json_decref(row);
        mp_error_clear(&err);
        done(s);
}

/* Which of the named functions does the list hold? A string of letters, in list order. */
static void listed(json_t *items, const char *ids[], const char *letters, char *out, size_t size) {
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(items) && n + 1 < size; i++) {
                const char *id = str(json_array_get(items, i), "id");
                char c = '?';
                for (size_t k = 0; letters[k]; k++)
                        if (strcmp(id, ids[k]) == 0)
                                c = letters[k];
                out[n++] = c;
        }
        out[n] = 0;
}

TEST(function_visibility) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char a[MP_ID_LEN + 1], b[MP_ID_LEN + 1], c[MP_ID_LEN + 1], d[MP_ID_LEN + 1],
                e[MP_ID_LEN + 1], f[MP_ID_LEN + 1], g[MP_ID_LEN + 1];
        const char *ids[] = { a, b, c, d, e, f, g };
        struct mp_store_list l = { 0 };
        json_t *filter;
        char got[16];

        make_world(s, &w);
        REQUIRE(make_function(s, a, w.u1, w.company_a, "a", "private", 1) == 0);
        REQUIRE(make_function(s, b, w.u1, w.company_a, "b", "company", 2) == 0);
        REQUIRE(make_function(s, c, w.u1, w.company_a, "c", "public", 3) == 0);
        REQUIRE(make_function(s, d, w.u2, w.company_a, "d", "private", 4) == 0);
        REQUIRE(make_function(s, e, w.u3, w.company_b, "e", "company", 5) == 0);
        REQUIRE(make_function(s, f, w.u3, w.company_b, "f", "public", 6) == 0);
        REQUIRE(make_function(s, g, w.u3, w.company_b, "g", "public", 7) == 0);
        REQUIRE(ops->function_delete(s, g, 100, NULL) == 0);

        filter = json_pack("{s:s,s:s}", "viewer_id", w.u1, "company_id", w.company_a);
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        listed(l.items, ids, "abcdefg", got, sizeof(got));
        CHECK_STR(got, "abcf");
        CHECK(l.next_cursor == NULL);
        /* each row carries its latest version's fields, without the code */
        json_t *row0 = json_array_get(l.items, 0);
        CHECK_INT(json_integer_value(json_object_get(row0, "version")), ==, 1);
        CHECK_STR(json_string_value(json_object_get(row0, "handler")), "f");
        CHECK(json_is_object(json_object_get(row0, "input_schema")));
        CHECK(json_object_get(row0, "code") == NULL);
        json_decref(l.items);
        json_decref(filter);

        /* a colleague sees the company's "company" functions, not its private ones */
        filter = json_pack("{s:s,s:s}", "viewer_id", w.u2, "company_id", w.company_a);
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        listed(l.items, ids, "abcdefg", got, sizeof(got));
        CHECK_STR(got, "bcdf");
        json_decref(l.items);
        json_decref(filter);

        /* another company: only public ones, and its own */
        filter = json_pack("{s:s,s:s}", "viewer_id", w.u3, "company_id", w.company_b);
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        listed(l.items, ids, "abcdefg", got, sizeof(got));
        CHECK_STR(got, "cef");
        json_decref(l.items);
        json_decref(filter);

        /* no company: company visibility never matches a null company */
        filter = json_pack("{s:s,s:n}", "viewer_id", w.u3, "company_id");
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        listed(l.items, ids, "abcdefg", got, sizeof(got));
        CHECK_STR(got, "cef");
        json_decref(l.items);
        json_decref(filter);

        /* exact name filter, still under the visibility rule */
        filter = json_pack("{s:s,s:s,s:s}", "viewer_id", w.u3, "company_id", w.company_b, "name", "a");
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 0);
        json_decref(l.items);
        json_object_set_new(filter, "name", json_string("c"));
        CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
        listed(l.items, ids, "abcdefg", got, sizeof(got));
        CHECK_STR(got, "c");
        json_decref(l.items);
        json_decref(filter);
        mp_error_clear(&err);
        done(s);
}

TEST(pagination) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char fid[7][MP_ID_LEN + 1], tid[5][MP_ID_LEN + 1], name[8];
        /* equal times on purpose: the id breaks ties */
        const int64_t times[7] = { 10, 20, 20, 20, 30, 40, 40 };
        json_t *filter, *seen = json_object();
        struct mp_store_list l = { 0 };
        int pages = 0, total = 0;
        int64_t last_t = -1;

        make_world(s, &w);
        for (int i = 0; i < 7; i++) {
                snprintf(name, sizeof(name), "f%d", i);
                REQUIRE(make_function(s, fid[i], w.u1, NULL, name, "private", times[i]) == 0);
        }
        filter = json_pack("{s:s,s:i}", "viewer_id", w.u1, "limit", 3);
        for (;;) {
                CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
                REQUIRE(l.items);
                pages++;
                for (size_t i = 0; i < json_array_size(l.items); i++) {
                        json_t *row = json_array_get(l.items, i);
                        CHECK(json_object_get(seen, str(row, "id")) == NULL);
                        json_object_set_new(seen, str(row, "id"), json_true());
                        CHECK_INT(num(row, "created_at"), >=, last_t);
                        last_t = num(row, "created_at");
                        total++;
                }
                json_decref(l.items);
                if (!l.next_cursor)
                        break;
                json_object_set_new(filter, "cursor", json_string(l.next_cursor));
                free(l.next_cursor);
                l.next_cursor = NULL;
                REQUIRE(pages < 10);
        }
        CHECK_INT(pages, ==, 3);
        CHECK_INT(total, ==, 7);
        json_decref(filter);
        json_decref(seen);

        /* tasks: newest first across pages */
        for (int i = 0; i < 5; i++)
                REQUIRE(make_task(s, tid[i], fid[0], w.u1, NULL, 100 + (i / 2), NULL) == 0);
        filter = json_pack("{s:s,s:i}", "owner_id", w.u1, "limit", 2);
        seen = json_object();
        pages = total = 0;
        last_t = INT64_MAX;
        for (;;) {
                CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
                REQUIRE(l.items);
                pages++;
                for (size_t i = 0; i < json_array_size(l.items); i++) {
                        json_t *row = json_array_get(l.items, i);
                        CHECK(json_object_get(seen, str(row, "id")) == NULL);
                        json_object_set_new(seen, str(row, "id"), json_true());
                        CHECK_INT(num(row, "queued_at"), <=, last_t);
                        last_t = num(row, "queued_at");
                        total++;
                }
                json_decref(l.items);
                if (!l.next_cursor)
                        break;
                json_object_set_new(filter, "cursor", json_string(l.next_cursor));
                free(l.next_cursor);
                l.next_cursor = NULL;
                REQUIRE(pages < 10);
        }
        CHECK_INT(pages, ==, 3);
        CHECK_INT(total, ==, 5);
        CHECK_INT(last_t, ==, 100);
        json_decref(seen);
        json_decref(filter);

        /* a time span: since <= queued_at < until (queued at 100, 100, 101, 101, 102) */
        {
                const struct {
                        json_int_t since, until;
                        size_t n;
                } spans[] = { { 101, -1, 3 }, { -1, 101, 2 }, { 101, 102, 2 }, { 103, -1, 0 } };
                for (size_t k = 0; k < ELEMENTSOF(spans); k++) {
                        filter = json_pack("{s:s,s:i}", "owner_id", w.u1, "limit", 10);
                        if (spans[k].since >= 0)
                                json_object_set_new(filter, "since", json_integer(spans[k].since));
                        if (spans[k].until >= 0)
                                json_object_set_new(filter, "until", json_integer(spans[k].until));
                        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
                        CHECK_INT(json_array_size(l.items), ==, spans[k].n);
                        for (size_t i = 0; i < json_array_size(l.items); i++) {
                                json_int_t t = num(json_array_get(l.items, i), "queued_at");
                                CHECK(spans[k].since < 0 || t >= spans[k].since);
                                CHECK(spans[k].until < 0 || t < spans[k].until);
                        }
                        json_decref(l.items);
                        json_decref(filter);
                }
        }

        /* an exact multiple of the page size ends without an empty page */
        filter = json_pack("{s:s,s:i}", "owner_id", w.u1, "limit", 5);
        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 5);
        CHECK(l.next_cursor == NULL);
        json_decref(l.items);
        json_decref(filter);
        mp_error_clear(&err);
        done(s);
}

TEST(bad_cursors) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        /* not hex; odd length; hex of "garbage"; hex of "12:../x"; hex of "-5:abc";
         * hex of ":abc"; empty */
        const char *bad[] = { "zzzz", "abc", "67617262616765", "31323a2e2e2f78", "2d353a616263",
                              "3a616263", "" };
        struct mp_store_list l = { 0 };

        make_world(s, &w);
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                json_t *filter = json_pack("{s:s,s:s}", "viewer_id", w.u1, "cursor", bad[i]);
                mp_error_clear(&err);
                CHECK_INT(ops->function_list(s, filter, &l, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "cursor") != NULL);
                CHECK(l.items == NULL);
                json_object_set_new(filter, "owner_id", json_string(w.u1));
                CHECK_INT(ops->task_list(s, filter, &l, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "cursor") != NULL);
                json_decref(filter);
        }
        /* a cursor that decodes fine is accepted */
        {
                json_t *filter = json_pack("{s:s,s:s}", "viewer_id", w.u1, "cursor", "31323a616263");
                CHECK_INT(ops->function_list(s, filter, &l, &err), ==, 0);
                json_decref(l.items);
                json_object_set_new(filter, "limit", json_integer(-1));
                CHECK_INT(ops->function_list(s, filter, &l, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "limit") != NULL);
                json_decref(filter);
        }
        /* task_list needs an owner */
        {
                json_t *filter = json_pack("{s:i}", "limit", 5);
                CHECK_INT(ops->task_list(s, filter, &l, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "owner_id") != NULL);
                json_decref(filter);
        }
        mp_error_clear(&err);
        done(s);
}

TEST(tasks_and_idempotency) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], f2[MP_ID_LEN + 1], t1[MP_ID_LEN + 1], t2[MP_ID_LEN + 1],
                t3[MP_ID_LEN + 1], t4[MP_ID_LEN + 1], t5[MP_ID_LEN + 1], t6[MP_ID_LEN + 1];
        json_t *row = NULL, *existing = NULL, *filter;
        struct mp_store_list l = { 0 };

        make_world(s, &w);
        REQUIRE(make_function(s, f1, w.u1, w.company_a, "beam", "company", 1) == 0);
        REQUIRE(make_function(s, f2, w.u1, w.company_a, "plate", "company", 2) == 0);

        CHECK_INT(make_task(s, t1, f1, w.u1, "k1", 100, &existing), ==, 0);
        CHECK(existing == NULL);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        REQUIRE(row);
        CHECK_STR(str(row, "status"), "queued");
        CHECK_INT(num(row, "attempts"), ==, 0);
        CHECK_INT(num(row, "version"), ==, 1);
        CHECK_INT(num(row, "queued_at"), ==, 100);
        CHECK_INT(num(row, "started_at"), ==, 0);
        CHECK_INT(num(row, "finished_at"), ==, 0);
        CHECK(json_real_value(json_object_get(json_object_get(row, "inputs"), "length")) == 2.5);
        CHECK(json_is_null(json_object_get(row, "result_json")));
        CHECK(json_object_get(row, "result") == NULL);
        CHECK(json_is_null(json_object_get(row, "worker_id")));
        CHECK(json_is_null(json_object_get(row, "company_id")));
        CHECK_STR(str(row, "idempotency_key"), "k1");
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->task_get(s, "nope", &row, &err), ==, -ENOENT);

        /* same owner, function and key: the first task comes back */
        CHECK_INT(make_task(s, t2, f1, w.u1, "k1", 101, &existing), ==, -EEXIST);
        REQUIRE(existing);
        CHECK_STR(str(existing, "id"), t1);
        CHECK(strstr(task_err.message, "k1") != NULL);
        json_decref(existing);
        existing = NULL;
        CHECK_INT(ops->task_get(s, t2, &row, &err), ==, -ENOENT); /* nothing was stored */
        /* the key is per owner and function */
        CHECK_INT(make_task(s, t2, f2, w.u1, "k1", 102, &existing), ==, 0);
        CHECK_INT(make_task(s, t3, f1, w.u2, "k1", 103, &existing), ==, 0);
        CHECK_INT(make_task(s, t4, f1, w.u1, NULL, 104, &existing), ==, 0);
        CHECK_INT(make_task(s, t5, f1, w.u1, NULL, 105, &existing), ==, 0);
        CHECK(existing == NULL);
        CHECK_INT(make_task(s, t6, "no-such-function", w.u1, NULL, 106, NULL), ==, -ENOENT);

        /* filters */
        filter = json_pack("{s:s,s:s}", "owner_id", w.u1, "function_id", f1);
        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 3);
        CHECK_STR(str(json_array_get(l.items, 0), "id"), t5);
        /* a list holds summaries: none of the large columns is read */
        {
                static const char *const absent[] = { "inputs", "result", "result_json", "error",
                                                      "error_blob", "logs", "logs_blob", "artifacts" };
                for (size_t i = 0; i < sizeof(absent) / sizeof(absent[0]); i++)
                        CHECK(json_object_get(json_array_get(l.items, 0), absent[i]) == NULL);
                CHECK_STR(str(json_array_get(l.items, 0), "status"), "queued");
                CHECK(json_is_null(json_object_get(json_array_get(l.items, 0), "error_type")));
        }
        json_decref(l.items);
        json_decref(filter);

        /* queued -> running, exactly once */
        CHECK_INT(ops->task_start(s, t1, "w1", 200, &err), ==, 1);
        CHECK_INT(ops->task_start(s, t1, "w2", 201, &err), ==, 0);
        CHECK_INT(ops->task_start(s, "nope", "w1", 200, &err), ==, -ENOENT);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "running");
        CHECK_STR(str(row, "worker_id"), "w1");
        CHECK_INT(num(row, "started_at"), ==, 200);
        CHECK_INT(num(row, "attempts"), ==, 1);
        json_decref(row);
        row = NULL;

        /* running -> running again for the worker that took over its job */
        CHECK_INT(ops->task_retry(s, t1, "w3", 250, &err), ==, 1);
        CHECK_INT(ops->task_retry(s, "nope", "w3", 250, &err), ==, -ENOENT);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "running");
        CHECK_STR(str(row, "worker_id"), "w3");
        CHECK_INT(num(row, "started_at"), ==, 250);
        CHECK_INT(num(row, "attempts"), ==, 2);
        json_decref(row);
        row = NULL;

        filter = json_pack("{s:s,s:s}", "owner_id", w.u1, "status", "running");
        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 1);
        json_decref(l.items);

        /* running -> completed, exactly once */
        {
                json_t *fields = json_pack("{s:s,s:{s:f},s:s,s:b,s:[{s:s,s:i,s:s}],s:I,s:i,s:i,s:i}",
                                           "status", "completed", "result", "stress", 1.5, "logs",
                                           "hello\n", "logs_truncated", 1, "artifacts", "name",
                                           "plot.png", "size", 10, "blob", "tasks/x/plot.png",
                                           "finished_at", (json_int_t) 300, "execution_ms", 90,
                                           "cpu_ms", 80, "peak_memory_kb", 4096);
                json_t *again = json_pack("{s:s,s:s}", "status", "failed", "logs", "late");
                CHECK_INT(ops->task_finish(s, t1, fields, &err), ==, 1);
                CHECK_INT(ops->task_finish(s, t1, again, &err), ==, 0);
                CHECK_INT(ops->task_finish(s, "nope", again, &err), ==, -ENOENT);
                json_decref(fields);
                json_decref(again);
        }
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "completed");
        /* the result comes back as its stored JSON text, not parsed */
        CHECK_STR(str(row, "result_json"), "{\"stress\":1.5}");
        CHECK_STR(str(row, "logs"), "hello\n");
        CHECK_INT(num(row, "logs_truncated"), ==, 1);
        CHECK_STR(str(json_array_get(json_object_get(row, "artifacts"), 0), "name"), "plot.png");
        CHECK_INT(num(row, "finished_at"), ==, 300);
        CHECK_INT(num(row, "execution_ms"), ==, 90);
        CHECK_INT(num(row, "peak_memory_kb"), ==, 4096);
        CHECK(json_is_null(json_object_get(row, "error")));
        json_decref(row);
        row = NULL;
        json_object_set_new(filter, "status", json_string("running"));
        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 0);
        json_decref(l.items);
        json_decref(filter);

        /* a queued task can be cancelled; finished_at defaults to now */
        {
                json_t *fields = json_pack("{s:s,s:{s:s},s:s}", "status", "cancelled", "error", "type",
                                           "Cancelled", "error_type", "Cancelled");
                CHECK_INT(ops->task_finish(s, t4, fields, &err), ==, 1);
                CHECK_INT(ops->task_start(s, t4, "w1", 400, &err), ==, 0);
                json_decref(fields);
        }
        CHECK_INT(ops->task_get(s, t4, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "cancelled");
        CHECK_INT(num(row, "finished_at"), >, 1000);
        CHECK_STR(str(json_object_get(row, "error"), "type"), "Cancelled");
        CHECK_STR(str(row, "error_type"), "Cancelled");
        json_decref(row);
        row = NULL;
        filter = json_pack("{s:s,s:s}", "owner_id", w.u1, "status", "cancelled");
        CHECK_INT(ops->task_list(s, filter, &l, &err), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 1);
        CHECK_STR(str(json_array_get(l.items, 0), "error_type"), "Cancelled");
        CHECK(json_object_get(json_array_get(l.items, 0), "error") == NULL);
        json_decref(l.items);
        json_decref(filter);

        /* bad finishes change nothing */
        {
                json_t *bad = json_pack("{s:s}", "status", "running");
                CHECK_INT(ops->task_finish(s, t5, bad, &err), ==, -EINVAL);
                json_decref(bad);
                bad = json_pack("{s:s,s:s}", "status", "failed", "finshed_at", "typo");
                CHECK_INT(ops->task_finish(s, t5, bad, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "finshed_at") != NULL);
                json_decref(bad);
                bad = json_pack("{s:s,s:s}", "status", "failed", "cpu_ms", "many");
                CHECK_INT(ops->task_finish(s, t5, bad, &err), ==, -EINVAL);
                json_decref(bad);
                CHECK_INT(ops->task_get(s, t5, &row, &err), ==, 0);
                CHECK_STR(str(row, "status"), "queued");
                json_decref(row);
                row = NULL;
        }

        /* running -> queued (requeue) once, then it can start again */
        CHECK_INT(ops->task_requeue(s, t5, &err), ==, 0); /* queued: no move */
        CHECK_INT(ops->task_start(s, t5, "w1", 500, &err), ==, 1);
        CHECK_INT(ops->task_requeue(s, t5, &err), ==, 1);
        CHECK_INT(ops->task_requeue(s, t5, &err), ==, 0);
        CHECK_INT(ops->task_requeue(s, "nope", &err), ==, -ENOENT);
        CHECK_INT(ops->task_get(s, t5, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "queued");
        CHECK(json_is_null(json_object_get(row, "worker_id")));
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->task_start(s, t5, "w2", 600, &err), ==, 1);
        CHECK_INT(ops->task_get(s, t5, &row, &err), ==, 0);
        CHECK_INT(num(row, "attempts"), ==, 2);
        json_decref(row);
        row = NULL;

        /* logs are whatever the function printed: bytes that are not UTF-8 must not make
         * the task unreadable */
        {
                json_t *fields = json_pack("{s:s,s:o}", "status", "failed", "logs",
                                           json_stringn_nocheck("ok\xff\xc3 end", 8));
                CHECK_INT(ops->task_finish(s, t5, fields, &err), ==, 1);
                json_decref(fields);
        }
        CHECK_INT(ops->task_get(s, t5, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "ok\xef\xbf\xbd\xef\xbf\xbd end");
        json_decref(row);
        mp_error_clear(&err);
        done(s);
}

TEST(jobs) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f[MP_ID_LEN + 1], t1[MP_ID_LEN + 1], t2[MP_ID_LEN + 1], t3[MP_ID_LEN + 1];
        char got[MP_ID_LEN + 1];

        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        CHECK_INT(ops->job_claim(s, "w1", 1000, 2000, got, &err), ==, 0); /* empty queue */
        /* created out of order: claims follow queued_at */
        REQUIRE(make_task(s, t2, f, w.u1, NULL, 200, NULL) == 0);
        REQUIRE(make_task(s, t1, f, w.u1, NULL, 100, NULL) == 0);
        REQUIRE(make_task(s, t3, f, w.u1, NULL, 300, NULL) == 0);

        CHECK_INT(ops->job_claim(s, "w1", 1000, 2000, got, &err), ==, 1);
        CHECK_STR(got, t1);
        CHECK_INT(ops->job_claim(s, "w2", 1000, 2000, got, &err), ==, 1);
        CHECK_STR(got, t2);
        CHECK_INT(ops->job_claim(s, "w3", 1000, 2000, got, &err), ==, 1);
        CHECK_STR(got, t3);
        CHECK_INT(ops->job_claim(s, "w4", 1500, 2500, got, &err), ==, 0);

        /* only the holder extends */
        CHECK_INT(ops->job_extend(s, t1, "w1", 5000, &err), ==, 0);
        CHECK_INT(ops->job_extend(s, t1, "w2", 9000, &err), ==, -ENOENT);
        CHECK(strstr(err.message, t1) != NULL);
        CHECK_INT(ops->job_extend(s, "nope", "w1", 9000, &err), ==, -ENOENT);

        /* at 2500 the leases of t2 and t3 have run out, t1's has not */
        CHECK_INT(ops->job_claim(s, "w5", 2500, 3500, got, &err), ==, 1);
        CHECK_STR(got, t2);
        CHECK_INT(ops->job_extend(s, t2, "w2", 9000, &err), ==, -ENOENT); /* w2 lost it */
        CHECK_INT(ops->job_claim(s, "w5", 2500, 3500, got, &err), ==, 1);
        CHECK_STR(got, t3);
        CHECK_INT(ops->job_claim(s, "w5", 2500, 3500, got, &err), ==, 0);

        /* a finished task leaves the queue */
        {
                json_t *fields = json_pack("{s:s}", "status", "completed");
                REQUIRE(ops->task_start(s, t1, "w1", 1100, &err) == 1);
                CHECK_INT(ops->task_finish(s, t1, fields, &err), ==, 1);
                json_decref(fields);
        }
        CHECK_INT(ops->job_extend(s, t1, "w1", 9000, &err), ==, -ENOENT);

        /* start-up of a new process: every claim released, oldest first again */
        CHECK_INT(ops->job_release_all(s, &err), ==, 2);
        CHECK_INT(ops->job_release_all(s, &err), ==, 0);
        CHECK_INT(ops->job_claim(s, "w6", 2600, 3600, got, &err), ==, 1);
        CHECK_STR(got, t2);

        /* a requeued task's job is released for the next claim */
        REQUIRE(ops->task_start(s, t2, "w6", 2600, &err) == 1);
        CHECK_INT(ops->job_claim(s, "w7", 2700, 3700, got, &err), ==, 1);
        CHECK_STR(got, t3);
        CHECK_INT(ops->job_claim(s, "w7", 2700, 3700, got, &err), ==, 0);
        CHECK_INT(ops->task_requeue(s, t2, &err), ==, 1);
        CHECK_INT(ops->job_claim(s, "w8", 2700, 3700, got, &err), ==, 1);
        CHECK_STR(got, t2);
        mp_error_clear(&err);
        done(s);
}

#define CLAIM_THREADS 8
#define CLAIM_JOBS 240
#define CLAIM_CAP 320 /* the most one claimer records */

struct claimer {
        struct mp_store *s;
        int index;
        int n, errors;
        char ids[CLAIM_CAP][MP_ID_LEN + 1];
};

static void *claim_loop(void *arg) {
        struct claimer *c = arg;
        char worker[32];

        snprintf(worker, sizeof(worker), "w%d", c->index);
        for (;;) {
                char id[MP_ID_LEN + 1];
                int r = MP_STORE(c->s)->job_claim(c->s, worker, 1000, 1000000, id, NULL);
                if (r < 0) {
                        c->errors++;
                        continue;
                }
                if (r == 0)
                        break;
                if (c->n < CLAIM_CAP)
                        memcpy(c->ids[c->n++], id, sizeof(id));
                /* also read and move the task, as a worker would */
                if (MP_STORE(c->s)->task_start(c->s, id, worker, 1001, NULL) != 1)
                        c->errors++;
        }
        return NULL;
}

static int cmp_id(const void *a, const void *b) {
        return strcmp(a, b);
}

TEST(concurrent_claims) {
        struct mp_store *s = fresh();
        struct world w;
        char f[MP_ID_LEN + 1], t[MP_ID_LEN + 1];
        static struct claimer c[CLAIM_THREADS];
        static char all[CLAIM_JOBS * 2][MP_ID_LEN + 1];
        pthread_t th[CLAIM_THREADS];
        int total = 0, errors = 0;
        struct mp_store *s2 = NULL;
        char url[4200];

        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        for (int i = 0; i < CLAIM_JOBS; i++)
                REQUIRE(make_task(s, t, f, w.u1, NULL, 100 + i, NULL) == 0);
        /* half the threads go through a second connection to the same file, as a second
         * process would: BEGIN IMMEDIATE and the busy timeout keep claims apart there */
        db_url(url, sizeof(url));
        REQUIRE(mp_store_open(url, &s2, NULL) == 0);
        for (int i = 0; i < CLAIM_THREADS; i++) {
                c[i] = (struct claimer) { .s = i % 2 ? s2 : s, .index = i };
                REQUIRE(pthread_create(&th[i], NULL, claim_loop, &c[i]) == 0);
        }
        for (int i = 0; i < CLAIM_THREADS; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < CLAIM_THREADS; i++) {
                for (int k = 0; k < c[i].n && total < CLAIM_JOBS * 2; k++)
                        memcpy(all[total++], c[i].ids[k], MP_ID_LEN + 1);
                errors += c[i].errors;
        }
        CHECK_INT(errors, ==, 0);
        CHECK_INT(total, ==, CLAIM_JOBS);
        /* How the jobs spread over the threads is the scheduler's business; what must
         * hold is that every job went out exactly once. */
        qsort(all, (size_t) total, sizeof(all[0]), cmp_id);
        for (int i = 1; i < total; i++)
                if (strcmp(all[i - 1], all[i]) == 0)
                        CHECK_FAIL("job %s handed out twice", all[i]);
        mp_store_close(s2);
        done(s);
}

/* A number the database answers, read beside the store (path: the SQLite file). */
static int64_t count_rows(const char *path, const char *sql) {
        sqlite3 *db = NULL;
        sqlite3_stmt *st = NULL;
        int64_t n = -1;

        if (is_pg()) {
                PGconn *pg = pg_admin();
                n = pg_scalar(pg, sql);
                PQfinish(pg);
                return n;
        }
        if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK &&
            sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
                n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        sqlite3_close(db);
        return n;
}

TEST(reopen_and_migrations) {
        struct mp_store *s = fresh();
        struct mp_error err = { 0 };
        struct world w;
        char url[4200], path[4200], f[MP_ID_LEN + 1], t[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        json_t *row = NULL;
        int64_t versions;

        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        REQUIRE(make_task(s, t, f, w.u1, "k", 100, NULL) == 0);
        mp_store_close(s);
        s = NULL;

        db_url(url, sizeof(url));
        snprintf(path, sizeof(path), "%s", is_pg() ? "" : url + strlen("sqlite:"));
        versions = count_rows(path, "SELECT COUNT(*) FROM schema_migrations");
        CHECK_INT(versions, >=, 1);
        if (!is_pg())
                CHECK_INT(count_rows(path, "SELECT journal_mode = 'wal' FROM pragma_journal_mode"), ==, 1);

        for (int round = 0; round < 2; round++) {
                CHECK_INT(mp_store_open(url, &s, &err), ==, 0);
                REQUIRE(s);
                CHECK_INT(MP_STORE(s)->user_get(s, "email", "u2@acme.test", &row, &err), ==, 0);
                CHECK_STR(str(row, "id"), w.u2);
                json_decref(row);
                row = NULL;
                CHECK_INT(MP_STORE(s)->task_get(s, t, &row, &err), ==, 0);
                CHECK_STR(str(row, "idempotency_key"), "k");
                json_decref(row);
                row = NULL;
                mp_store_close(s);
                s = NULL;
        }
        /* migrations ran once each */
        CHECK_INT(count_rows(path, "SELECT COUNT(*) FROM schema_migrations"), ==, versions);
        /* the queue survived */
        CHECK_INT(mp_store_open(url, &s, &err), ==, 0);
        CHECK_INT(MP_STORE(s)->job_claim(s, "w", 1000, 2000, got, &err), ==, 1);
        CHECK_STR(got, t);
        mp_store_close(s);
        s = NULL;

        /* a database from a newer program is refused, not silently used */
        if (is_pg()) {
                PGconn *pg = pg_admin();
                CHECK_INT(pg_exec(pg, "INSERT INTO schema_migrations VALUES (9999, 0)"), ==, 0);
                PQfinish(pg);
        } else {
                sqlite3 *db = NULL;
                REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
                sqlite3_exec(db, "INSERT INTO schema_migrations VALUES (9999, 0)", NULL, NULL, NULL);
                sqlite3_close(db);
        }
        CHECK_INT(mp_store_open(url, &s, &err), <, 0);
        CHECK(s == NULL);
        CHECK(strstr(err.message, "9999") != NULL);
        mp_error_clear(&err);
        tmp_remove();
}

/* The server's option parser, as `serve` calls it (argv[0] is the command). */
static int parse_config(int argc, char **argv, struct mp_config **ret, struct mp_error *err) {
        return mp_config_parse(argc, argv, ret, err);
}

/* What the store runs with. SQLite: an accepted change is on disk before the call
 * returns by default (synchronous=FULL, which PRAGMA synchronous reads as 2), even after
 * the lossy writes (claims, starts) that skip the sync; ?durability=fast gives NORMAL (1).
 * PostgreSQL's durability is the server's. */
TEST(durability) {
        struct mp_store *s = fresh();
        struct mp_error err = { 0 };
        struct world w;
        char url[4300], f[MP_ID_LEN + 1], t[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        json_t *info = NULL;

        CHECK_INT(mp_store_info(s, &info, &err), ==, 0);
        REQUIRE(info);
        CHECK_STR(str(info, "backend"), backend);
        if (is_pg()) {
                CHECK_STR(str(info, "durability"), "server");
                CHECK(str(info, "synchronous_commit") != NULL);
                json_decref(info);
                done(s);
                return;
        }
        CHECK_STR(str(info, "durability"), "full");
        CHECK_INT(num(info, "synchronous"), ==, 2);
        json_decref(info);
        info = NULL;
        /* after a durable write, a lossy claim and start: durable commits are still FULL */
        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        REQUIRE(make_task(s, t, f, w.u1, NULL, 100, NULL) == 0);
        CHECK_INT(MP_STORE(s)->job_claim(s, "w", 1000, 2000, got, &err), ==, 1);
        CHECK_INT(MP_STORE(s)->task_start(s, got, "w", 1000, &err), ==, 1);
        CHECK_INT(mp_store_info(s, &info, &err), ==, 0);
        CHECK_INT(num(info, "synchronous"), ==, 2);
        json_decref(info);
        info = NULL;
        mp_store_close(s);

        /* fast: the same file, synchronous=NORMAL */
        db_url(url, sizeof(url));
        strcat(url, "?durability=fast");
        s = NULL;
        CHECK_INT(mp_store_open(url, &s, &err), ==, 0);
        REQUIRE(s);
        CHECK_INT(mp_store_info(s, &info, &err), ==, 0);
        CHECK_STR(str(info, "durability"), "fast");
        CHECK_INT(num(info, "synchronous"), ==, 1);
        json_decref(info);
        info = NULL;
        /* and the data written under full is there */
        CHECK_INT(MP_STORE(s)->task_get(s, t, &info, &err), ==, 0);
        CHECK_STR(str(info, "status"), "running");
        json_decref(info);
        mp_store_close(s);

        /* the server's --durability (and MECAPY_DURABILITY) reaches the store by its URL */
        {
                char dir[4200];
                char *argv[] = { "serve", "--durability", "fast", "--data-dir", dir, NULL };
                char *argv_db[] = { "serve", "--durability", "fast", "--db", url, NULL };
                char *argv_bad[] = { "serve", "--durability", "sometimes", NULL };
                char *argv_env[] = { "serve", "--data-dir", dir, NULL };
                struct mp_config *cfg = NULL;

                snprintf(dir, sizeof(dir), "%s/data", tmp_dir);
                CHECK_INT(parse_config(5, argv, &cfg, &err), ==, 0);
                REQUIRE(cfg);
                CHECK_INT(mp_store_open(cfg->db_url, &s, &err), ==, 0);
                REQUIRE(s);
                CHECK_INT(mp_store_info(s, &info, &err), ==, 0);
                CHECK_INT(num(info, "synchronous"), ==, 1);
                json_decref(info);
                info = NULL;
                mp_store_close(s);
                mp_config_free(cfg);
                cfg = NULL;
                /* a URL that says durability= itself keeps it */
                db_url(url, sizeof(url));
                strcat(url, "?durability=full");
                CHECK_INT(parse_config(5, argv_db, &cfg, &err), ==, 0);
                REQUIRE(cfg);
                CHECK_STR(cfg->db_url, url);
                mp_config_free(cfg);
                cfg = NULL;
                setenv("MECAPY_DURABILITY", "fast", 1);
                CHECK_INT(parse_config(3, argv_env, &cfg, &err), ==, 0);
                unsetenv("MECAPY_DURABILITY");
                REQUIRE(cfg);
                CHECK(strstr(cfg->db_url, "?durability=fast") != NULL);
                mp_config_free(cfg);
                cfg = NULL;
                CHECK_INT(parse_config(3, argv_bad, &cfg, &err), ==, -EINVAL);
                CHECK(strstr(err.message, "sometimes") != NULL);
        }

        /* an unknown parameter is refused, naming it */
        db_url(url, sizeof(url));
        strcat(url, "?durability=eventually");
        s = NULL;
        CHECK_INT(mp_store_open(url, &s, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "durability=eventually") != NULL);
        CHECK(s == NULL);
        mp_error_clear(&err);
        tmp_remove();
}

#define WRITERS 16
#define WRITES 40

struct writer {
        struct mp_store *s;
        const char *fn, *owner;
        int index;
        int created, finished, conflicts, refused, errors;
        char ids[WRITES][MP_ID_LEN + 1];
};

/* One caller's calls: create a task, start it, finish it, as the worker does; every
 * fourth with an idempotency key another writer uses too (one of them wins), every
 * fifth finish first refused (a column a task does not record), then done right. */
static void *write_loop(void *arg) {
        struct writer *wr = arg;
        char worker[32];

        snprintf(worker, sizeof(worker), "w%d", wr->index);
        for (int i = 0; i < WRITES; i++) {
                char id[MP_ID_LEN + 1], key[32];
                struct mp_error err = { 0 };
                json_t *t, *existing = NULL, *fields;
                int r;

                mp_id_new(id);
                snprintf(key, sizeof(key), "k%d-%d", wr->index / 2, i);
                t = json_pack("{s:s,s:s,s:i,s:s,s:{s:i},s:s?,s:I}", "id", id, "function_id", wr->fn,
                              "version", 1, "owner_id", wr->owner, "inputs", "i", i, "idempotency_key",
                              i % 4 == 0 ? key : NULL, "queued_at", (json_int_t) 1000 + i);
                r = MP_STORE(wr->s)->task_create(wr->s, t, &existing, &err);
                json_decref(t);
                if (r == -EEXIST && existing) {
                        wr->conflicts++;
                        json_decref(existing);
                        mp_error_clear(&err);
                        continue;
                }
                if (r < 0) {
                        fprintf(stderr, "  writer %d: task_create %d %s\n", wr->index, r, err.message);
                        wr->errors++;
                        mp_error_clear(&err);
                        continue;
                }
                memcpy(wr->ids[wr->created++], id, sizeof(id));
                if (MP_STORE(wr->s)->task_start(wr->s, id, worker, 2000, &err) != 1)
                        wr->errors++;
                if (i % 5 == 0) {
                        fields = json_pack("{s:s,s:i}", "status", "completed", "owner_id", 1);
                        if (MP_STORE(wr->s)->task_finish(wr->s, id, fields, &err) == -EINVAL)
                                wr->refused++;
                        json_decref(fields);
                }
                fields = json_pack("{s:s,s:{s:i,s:i},s:I}", "status", "completed", "result", "writer",
                                   wr->index, "i", i, "finished_at", (json_int_t) 3000);
                r = MP_STORE(wr->s)->task_finish(wr->s, id, fields, &err);
                json_decref(fields);
                if (r == 1)
                        wr->finished++;
                else {
                        fprintf(stderr, "  writer %d: task_finish %d %s\n", wr->index, r, err.message);
                        wr->errors++;
                }
                mp_error_clear(&err);
        }
        return NULL;
}

/* Many callers write at once (the group commit path on SQLite): every call that was
 * answered as stored is there afterwards, completed with its own result, and the
 * refusals and conflicts among them changed nothing else. */
TEST(concurrent_writes) {
        struct mp_store *s = fresh();
        static struct writer wr[WRITERS];
        pthread_t th[WRITERS];
        struct world w;
        char f[MP_ID_LEN + 1], path[4200];
        int created = 0, finished = 0, conflicts = 0, refused = 0, errors = 0;

        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        for (int i = 0; i < WRITERS; i++) {
                wr[i] = (struct writer) { .s = s, .fn = f, .owner = w.u1, .index = i };
                REQUIRE(pthread_create(&th[i], NULL, write_loop, &wr[i]) == 0);
        }
        for (int i = 0; i < WRITERS; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < WRITERS; i++) {
                created += wr[i].created;
                finished += wr[i].finished;
                conflicts += wr[i].conflicts;
                refused += wr[i].refused;
                errors += wr[i].errors;
        }
        CHECK_INT(errors, ==, 0);
        /* pairs of writers share their keys: one of each pair's keyed calls wins */
        CHECK_INT(conflicts, ==, (WRITERS / 2) * (WRITES / 4));
        CHECK_INT(created, ==, WRITERS * WRITES - conflicts);
        CHECK_INT(finished, ==, created);
        CHECK_INT(refused, >, 0);
        for (int i = 0; i < WRITERS; i++)
                for (int k = 0; k < wr[i].created; k++) {
                        json_t *row = NULL;
                        if (MP_STORE(s)->task_get(s, wr[i].ids[k], &row, NULL) != 0) {
                                CHECK_FAIL("task %s of writer %d is missing", wr[i].ids[k], i);
                                continue;
                        }
                        CHECK_STR(str(row, "status"), "completed");
                        {
                                /* the result as stored: parsed, or its JSON text */
                                json_t *res = json_object_get(row, "result");
                                json_t *text = json_object_get(row, "result_json");
                                json_t *parsed = json_is_string(text) ?
                                                 json_loads(json_string_value(text), 0, NULL) : NULL;
                                CHECK_INT(num(parsed ? parsed : res, "writer"), ==, i);
                                json_decref(parsed);
                        }
                        CHECK_INT(num(row, "attempts"), ==, 1);
                        json_decref(row);
                }
        if (!is_pg()) {
                json_t *info = NULL;
                REQUIRE(mp_store_info(s, &info, NULL) == 0);
                /* how many commits the writes shared depends on the scheduler and the disk */
                printf("     (%" PRId64 " durable writes in %" PRId64 " group commits)\n",
                       num(info, "grouped_writes"), num(info, "group_commits"));
                CHECK_INT(num(info, "grouped_writes"), >=, num(info, "group_commits"));
                json_decref(info);
        }
        /* read beside the store, once it is closed: every change is in the file */
        db_url(path, sizeof(path));
        mp_store_close(s);
        {
                const char *file = is_pg() ? "" : path + strlen("sqlite:");
                CHECK_INT(count_rows(file, "SELECT COUNT(*) FROM tasks WHERE status = 'completed'"), ==, created);
                CHECK_INT(count_rows(file, "SELECT COUNT(*) FROM tasks"), ==, created);
                CHECK_INT(count_rows(file, "SELECT COUNT(*) FROM jobs"), ==, 0);
        }
        tmp_remove();
}

/* ---- PostgreSQL only ---- */

#define PG_JOBS 300

/* The URL of the test server with extra query parameters. */
static void pg_url_with(char *buf, size_t size, const char *params) {
        snprintf(buf, size, "%s%s%s", pg_url, strchr(pg_url, '?') ? "&" : "?", params);
}

/* The host named in the test server's URL ("127.0.0.1" in postgres://u@127.0.0.1:5/db). */
static void pg_host(char *buf, size_t size) {
        const char *p = strstr(pg_url, "://"), *at, *end;
        p = p ? p + 3 : pg_url;
        at = strchr(p, '@');
        if (at && (!strchr(p, '/') || at < strchr(p, '/')))
                p = at + 1;
        end = p + strcspn(p, ":/?");
        snprintf(buf, size, "%.*s", (int) (end - p), p);
}

static void claim_all(struct mp_store *s, struct claimer *c, int first_index) {
        pthread_t th[CLAIM_THREADS];

        for (int i = 0; i < CLAIM_THREADS; i++) {
                c[i] = (struct claimer) { .s = s, .index = first_index + i };
                if (pthread_create(&th[i], NULL, claim_loop, &c[i]) != 0)
                        exit(2);
        }
        for (int i = 0; i < CLAIM_THREADS; i++)
                pthread_join(th[i], NULL);
}

/* 8 threads in each of 2 processes, each process with its own connections, claim 300
 * jobs: every job is handed out exactly once, and each task starts exactly once. */
TEST(pg_processes_claim) {
        struct mp_store *s = fresh();
        struct world w;
        char f[MP_ID_LEN + 1], t[MP_ID_LEN + 1], url[4200];
        static struct claimer c[CLAIM_THREADS];
        static char all[PG_JOBS * 2][MP_ID_LEN + 1];
        int to_parent[2], total = 0, errors = 0, child_n = 0, status = 0;
        pid_t pid;

        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        for (int i = 0; i < PG_JOBS; i++)
                REQUIRE(make_task(s, t, f, w.u1, NULL, 100 + i, NULL) == 0);
        pg_url_with(url, sizeof(url), "pool=8");
        REQUIRE(pipe(to_parent) == 0);
        fflush(NULL);
        pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
                /* The child never touches the parent's store: its connections are the
                 * parent's sockets. It opens its own, says so, and claims. */
                struct mp_store *mine = NULL;
                char ready = 1;
                int errs = 0;

                close(to_parent[0]);
                if (mp_store_open(url, &mine, NULL) < 0)
                        _exit(3);
                if (write(to_parent[1], &ready, 1) != 1)
                        _exit(3);
                claim_all(mine, c, 100);
                for (int i = 0; i < CLAIM_THREADS; i++) {
                        errs += c[i].errors;
                        for (int k = 0; k < c[i].n; k++)
                                if (mp_write_all(to_parent[1], c[i].ids[k], MP_ID_LEN) < 0)
                                        _exit(3);
                }
                mp_store_close(mine);
                _exit(errs ? 4 : 0);
        }
        close(to_parent[1]);
        {
                char ready = 0;
                CHECK_INT(read(to_parent[0], &ready, 1), ==, 1);
        }
        claim_all(s, c, 0);
        for (int i = 0; i < CLAIM_THREADS; i++) {
                for (int k = 0; k < c[i].n && total < PG_JOBS * 2; k++)
                        memcpy(all[total++], c[i].ids[k], MP_ID_LEN + 1);
                errors += c[i].errors;
        }
        for (;;) {
                char id[MP_ID_LEN + 1];
                if (mp_read_full(to_parent[0], id, MP_ID_LEN) < 0)
                        break;
                id[MP_ID_LEN] = 0;
                if (total < PG_JOBS * 2)
                        memcpy(all[total++], id, sizeof(id));
                child_n++;
        }
        close(to_parent[0]);
        REQUIRE(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK_INT(WEXITSTATUS(status), ==, 0);
        CHECK_INT(errors, ==, 0);
        CHECK_INT(total, ==, PG_JOBS);
        CHECK_INT(child_n, >, 0);
        CHECK_INT(total - child_n, >, 0);
        qsort(all, (size_t) total, sizeof(all[0]), cmp_id);
        for (int i = 1; i < total; i++)
                if (strcmp(all[i - 1], all[i]) == 0)
                        CHECK_FAIL("job %s handed out twice", all[i]);
        CHECK_INT(count_rows("", "SELECT COUNT(*) FROM tasks WHERE status = 'running' AND attempts = 1"),
                  ==, PG_JOBS);
        done(s);
}

/* The test server's URL for another database on it, with extra parameters. */
static void pg_url_db(char *buf, size_t size, const char *db, const char *params) {
        const char *p = strstr(pg_url, "://"), *slash, *q;
        p = p ? p + 3 : pg_url;
        slash = strchr(p, '/');
        q = strchr(pg_url, '?');
        if (!slash || (q && q < slash))
                slash = q ? q : pg_url + strlen(pg_url);
        snprintf(buf, size, "%.*s/%s?%s%s%s", (int) (slash - pg_url), pg_url, db, params,
                 q ? "&" : "", q ? q + 1 : "");
}

/* Terminate every connection of the store's pool; wait until the server has let them go. */
static void pg_kill_pool(PGconn *admin) {
        pg_exec(admin, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE application_name = 'mecapy' AND pid <> pg_backend_pid()");
        for (int i = 0; i < 500; i++) {
                if (pg_scalar(admin, "SELECT COUNT(*) FROM pg_stat_activity"
                                     " WHERE application_name = 'mecapy'") == 0)
                        return;
                usleep(10000);
        }
}

TEST(pg_connection_killed) {
        struct mp_store *s = NULL;
        struct mp_error err = { 0 };
        struct world w;
        char url[4200], host[256], f[MP_ID_LEN + 1], t[MP_ID_LEN + 1], got[MP_ID_LEN + 1];
        PGconn *admin;
        json_t *row = NULL;
        int r;

        /* a database of its own, which the test can close to new sessions */
        admin = pg_admin();
        REQUIRE(pg_exec(admin, "DROP DATABASE IF EXISTS mecapy_killed WITH (FORCE)") == 0);
        REQUIRE(pg_exec(admin, "CREATE DATABASE mecapy_killed") == 0);
        pg_url_db(url, sizeof(url), "mecapy_killed", "pool=2");
        REQUIRE(mp_store_open(url, &s, &err) == 0);
        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);

        /* killed while idle: the next read, write and claim each go through */
        pg_kill_pool(admin);
        CHECK_INT(MP_STORE(s)->function_get(s, f, &row, &err), ==, 0);
        json_decref(row);
        row = NULL;
        pg_kill_pool(admin);
        CHECK_INT(make_task(s, t, f, w.u1, "k", 100, NULL), ==, 0);
        pg_kill_pool(admin);
        CHECK_INT(MP_STORE(s)->job_claim(s, "w1", 1000, 2000, got, &err), ==, 1);
        CHECK_STR(got, t);
        pg_kill_pool(admin);
        CHECK_INT(MP_STORE(s)->task_start(s, t, "w1", 1001, &err), ==, 1);
        CHECK_INT(MP_STORE(s)->task_get(s, t, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "running");
        json_decref(row);
        row = NULL;

        /* the server refuses new sessions: 503 "unavailable", naming the host; then
         * back to work once it accepts them again */
        pg_exec(admin, "ALTER DATABASE mecapy_killed ALLOW_CONNECTIONS false");
        pg_kill_pool(admin);
        mp_error_clear(&err);
        r = MP_STORE(s)->task_get(s, t, &row, &err);
        pg_exec(admin, "ALTER DATABASE mecapy_killed ALLOW_CONNECTIONS true");
        CHECK_INT(r, ==, -EAGAIN);
        CHECK_INT(err.status, ==, 503);
        CHECK_STR(err.code, "unavailable");
        pg_host(host, sizeof(host));
        CHECK(strstr(err.message, host) != NULL);
        CHECK(row == NULL);
        CHECK_INT(MP_STORE(s)->task_get(s, t, &row, &err), ==, 0);
        json_decref(row);
        mp_error_clear(&err);
        mp_store_close(s);
        pg_exec(admin, "DROP DATABASE IF EXISTS mecapy_killed WITH (FORCE)");
        PQfinish(admin);
}

static double elapsed_s(const struct timespec *t0) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        return (double) (t1.tv_sec - t0->tv_sec) + (double) (t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* No server at the address, then one that accepts and never answers: 503 "unavailable"
 * naming the host, within the connect timeout, never a hang. */
TEST(pg_unreachable) {
        struct mp_error err = { 0 };
        struct mp_store *s = NULL;
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        struct timespec t0;
        char url[256];
        int fd;

        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
                getsockname(fd, (struct sockaddr *) &a, &len) == 0);
        snprintf(url, sizeof(url), "postgres://mecapy@127.0.0.1:%d/mecapy", ntohs(a.sin_port));
        close(fd); /* nobody listens there now */
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_INT(mp_store_open(url, &s, &err), ==, -EAGAIN);
        CHECK(s == NULL);
        CHECK_INT(err.status, ==, 503);
        CHECK_STR(err.code, "unavailable");
        CHECK(strstr(err.message, "127.0.0.1") != NULL);
        CHECK(elapsed_s(&t0) < 3.0);

        /* a listener that never accepts: the TCP handshake succeeds in the kernel, the
         * server never speaks */
        a.sin_port = 0;
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        len = sizeof(a);
        REQUIRE(fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 && listen(fd, 8) == 0 &&
                getsockname(fd, (struct sockaddr *) &a, &len) == 0);
        snprintf(url, sizeof(url), "postgresql://mecapy@127.0.0.1:%d/mecapy?connect_timeout=2",
                 ntohs(a.sin_port));
        mp_error_clear(&err);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        CHECK_INT(mp_store_open(url, &s, &err), ==, -EAGAIN);
        CHECK(elapsed_s(&t0) < 6.0);
        CHECK_INT(err.status, ==, 503);
        CHECK(strstr(err.message, "127.0.0.1") != NULL);
        close(fd);

        /* our own parameter is checked, the rest go to libpq */
        CHECK_INT(mp_store_open("postgres://mecapy@127.0.0.1/x?pool=0", &s, &err), ==, -EINVAL);
        CHECK(strstr(err.message, "pool") != NULL);
        CHECK_INT(mp_store_open("postgres://mecapy@127.0.0.1/x?nosuchoption=1", &s, &err), ==, -EINVAL);
        CHECK(s == NULL);
        mp_error_clear(&err);
}

struct opener {
        int r;
        struct mp_store *s;
};

static void *open_one(void *arg) {
        struct opener *o = arg;
        o->r = mp_store_open(pg_url, &o->s, NULL);
        return NULL;
}

/* Processes that start at once on an empty database apply each migration once. */
TEST(pg_concurrent_migrations) {
        struct opener o[6] = { 0 };
        pthread_t th[6];

        pg_empty();
        for (int i = 0; i < 6; i++)
                REQUIRE(pthread_create(&th[i], NULL, open_one, &o[i]) == 0);
        for (int i = 0; i < 6; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < 6; i++) {
                CHECK_INT(o[i].r, ==, 0);
                mp_store_close(o[i].s);
        }
        CHECK_INT(count_rows("", "SELECT COUNT(*) FROM schema_migrations"), ==,
                  count_rows("", "SELECT MAX(version) FROM schema_migrations"));
        CHECK_INT(count_rows("", "SELECT COUNT(*) FROM schema_migrations"), >=, 1);
}

#define KEY_THREADS 8

struct keyed {
        struct mp_store *s;
        const char *fn, *owner;
        int r;
        char id[MP_ID_LEN + 1], existing[MP_ID_LEN + 1];
};

static void *create_keyed(void *arg) {
        struct keyed *k = arg;
        json_t *t, *existing = NULL;

        mp_id_new(k->id);
        t = json_pack("{s:s,s:s,s:i,s:s,s:s,s:I}", "id", k->id, "function_id", k->fn, "version", 1,
                      "owner_id", k->owner, "idempotency_key", "same", "queued_at", (json_int_t) 5);
        k->r = MP_STORE(k->s)->task_create(k->s, t, &existing, NULL);
        if (existing)
                snprintf(k->existing, sizeof(k->existing), "%s", str(existing, "id"));
        json_decref(existing);
        json_decref(t);
        return NULL;
}

/* Calls with one idempotency key at once (on separate connections): one task is
 * stored, every other call gets -EEXIST and that task. */
TEST(pg_idempotency_race) {
        struct mp_store *s = NULL;
        struct world w;
        struct keyed k[KEY_THREADS];
        pthread_t th[KEY_THREADS];
        char url[4200], f[MP_ID_LEN + 1];
        const char *winner = NULL;
        int created = 0;

        pg_empty();
        pg_url_with(url, sizeof(url), "pool=8");
        REQUIRE(mp_store_open(url, &s, NULL) == 0);
        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        for (int i = 0; i < KEY_THREADS; i++) {
                k[i] = (struct keyed) { .s = s, .fn = f, .owner = w.u1 };
                REQUIRE(pthread_create(&th[i], NULL, create_keyed, &k[i]) == 0);
        }
        for (int i = 0; i < KEY_THREADS; i++)
                pthread_join(th[i], NULL);
        for (int i = 0; i < KEY_THREADS; i++)
                if (k[i].r == 0) {
                        created++;
                        winner = k[i].id;
                }
        CHECK_INT(created, ==, 1);
        for (int i = 0; i < KEY_THREADS && winner; i++)
                if (k[i].r != 0) {
                        CHECK_INT(k[i].r, ==, -EEXIST);
                        CHECK_STR(k[i].existing, winner);
                }
        CHECK_INT(count_rows("", "SELECT COUNT(*) FROM jobs"), ==, 1);
        mp_store_close(s);
}

/* Companies: members, roles with the last-admin rule, removal; the catalogue's search. */
TEST(companies_and_catalogue) {
        struct mp_store *s = fresh();
        struct world w;
        struct mp_error err = { 0 };
        struct mp_store_list l = { 0 };
        json_t *row = NULL, *filter, *tok;
        char f1[MP_ID_LEN + 1], f2[MP_ID_LEN + 1], f3[MP_ID_LEN + 1];

        make_world(s, &w);
        CHECK_INT(MP_STORE(s)->company_get(s, w.company_a, &row, NULL), ==, 0);
        CHECK_STR(str(row, "name"), "Acme");
        CHECK_INT(num(row, "members"), ==, 2);
        json_decref(row);
        CHECK_INT(MP_STORE(s)->company_members(s, w.company_a, &row, NULL), ==, 0);
        CHECK_INT(json_array_size(row), ==, 2);
        CHECK(json_object_get(json_array_get(row, 0), "password_hash") == NULL);
        json_decref(row);

        /* u1 admin; u2 made admin then u1 steps down; u2, the last, cannot */
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u1, "admin", NULL), ==, 0);
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u1, "member", &err), ==, -EPERM);
        mp_error_clear(&err);
        CHECK_INT(MP_STORE(s)->member_remove(s, w.company_a, w.u1, 5000, NULL), ==, -EPERM);
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u2, "admin", NULL), ==, 0);
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u1, "viewer", NULL), ==, 0);
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u2, "viewer", NULL), ==, -EPERM);
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u2, "owner", NULL), ==, -EINVAL);
        /* another company's user is not a member */
        CHECK_INT(MP_STORE(s)->member_set_role(s, w.company_a, w.u3, "admin", NULL), ==, -ENOENT);
        CHECK_INT(MP_STORE(s)->member_remove(s, w.company_a, w.u3, 5000, NULL), ==, -ENOENT);

        /* removal: no company, viewer, no password, tokens revoked */
        tok = json_pack("{s:s,s:s,s:s,s:s,s:s}", "id", "00000000-0000-4000-8000-0000000000c1", "user_id",
                        w.u1, "token_hash", "hash-c1", "kind", "api", "name", "ci");
        CHECK_INT(MP_STORE(s)->token_create(s, tok, NULL), ==, 0);
        json_decref(tok);
        CHECK_INT(MP_STORE(s)->member_remove(s, w.company_a, w.u1, 5000, NULL), ==, 0);
        CHECK_INT(MP_STORE(s)->user_get(s, "id", w.u1, &row, NULL), ==, 0);
        CHECK(json_is_null(json_object_get(row, "company_id")));
        CHECK(json_is_null(json_object_get(row, "password_hash")));
        CHECK_STR(str(row, "role"), "viewer");
        json_decref(row);
        CHECK_INT(MP_STORE(s)->token_lookup(s, "hash-c1", 6000, &row, NULL), ==, -ENOENT);

        /* the catalogue: public and live only, search text, tag, author, newest first */
        CHECK_INT(make_function(s, f1, w.u2, w.company_a, "beam", "public", 10000), ==, 0);
        CHECK_INT(make_function(s, f2, w.u3, w.company_b, "plate", "public", 20000), ==, 0);
        CHECK_INT(make_function(s, f3, w.u3, w.company_b, "secret", "private", 30000), ==, 0);
        json_t *fields = json_pack("{s:[s,s],s:s}", "tags", "steel", "50%_off", "search", "beam\na beam\nsteel");
        CHECK_INT(MP_STORE(s)->function_update(s, f1, fields, NULL, 15000, NULL, NULL), ==, 0);
        json_decref(fields);

        filter = json_pack("{s:i}", "limit", 10);
        CHECK_INT(MP_STORE(s)->function_catalogue(s, filter, &l, NULL), ==, 0);
        CHECK_INT(json_array_size(l.items), ==, 2);
        CHECK_STR(str(json_array_get(l.items, 0), "id"), f2); /* newest first */
        CHECK_STR(str(json_array_get(l.items, 1), "author"), "u2@acme.test");
        CHECK_INT(num(json_array_get(l.items, 1), "version"), ==, 1);
        CHECK(json_is_array(json_object_get(json_array_get(l.items, 1), "tags")));
        CHECK(json_is_object(json_object_get(json_array_get(l.items, 1), "input_schema")));
        json_decref(l.items);
        free(l.next_cursor);
        json_decref(filter);

        static const struct { const char *key, *value; int n; } searches[] = {
                { "q", "steel", 1 }, { "q", "eam", 1 }, { "q", "globex", 1 }, { "q", "secret", 0 },
                { "q", "%", 0 }, { "q", "_", 0 }, { "tag", "steel", 1 }, { "tag", "stee", 0 },
                { "tag", "50%_off", 1 }, { "author_email", "u3@globex.test", 1 },
                { "author_name", "u2", 1 }, { "author_name", "u", 0 },
        };
        for (size_t i = 0; i < ELEMENTSOF(searches); i++) {
                filter = json_pack("{s:s,s:i}", searches[i].key, searches[i].value, "limit", 10);
                CHECK_INT(MP_STORE(s)->function_catalogue(s, filter, &l, NULL), ==, 0);
                if (json_array_size(l.items) != (size_t) searches[i].n)
                        CHECK_FAIL("catalogue %s=%s: %zu items, expected %d", searches[i].key,
                                   searches[i].value, json_array_size(l.items), searches[i].n);
                json_decref(l.items);
                free(l.next_cursor);
                json_decref(filter);
        }
        /* pages */
        filter = json_pack("{s:i}", "limit", 1);
        CHECK_INT(MP_STORE(s)->function_catalogue(s, filter, &l, NULL), ==, 0);
        CHECK(l.next_cursor != NULL);
        json_object_set_new(filter, "cursor", json_string(l.next_cursor));
        json_decref(l.items);
        free(l.next_cursor);
        CHECK_INT(MP_STORE(s)->function_catalogue(s, filter, &l, NULL), ==, 0);
        CHECK_STR(str(json_array_get(l.items, 0), "id"), f1);
        CHECK(l.next_cursor == NULL);
        json_decref(l.items);
        json_decref(filter);
        done(s);
}

/* Migration 4: scopes on tokens, sessions revoked together, the audit log. */
TEST(scopes_sessions_audit) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct mp_store_list page = { 0 };
        struct world w;
        char ids[4][MP_ID_LEN + 1];
        json_t *t, *got = NULL, *list = NULL, *f;
        static const char *const kinds[] = { "session", "session", "api", "session" };

        make_world(s, &w);
        for (int i = 0; i < 4; i++) {
                char hash[8];
                snprintf(hash, sizeof(hash), "s%d", i);
                mp_id_new(ids[i]);
                t = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I}", "id", ids[i], "user_id", i == 3 ? w.u2 : w.u1,
                              "token_hash", hash, "kind", kinds[i], "name", "n", "created_at",
                              (json_int_t) 100 + i);
                if (i == 2)
                        json_object_set_new(t, "scopes", json_pack("[s,s]", "functions:read", "execute"));
                CHECK_INT(ops->token_create(s, t, &err), ==, 0);
                json_decref(t);
        }
        /* scopes come back parsed; a token without is null (every scope) */
        CHECK_INT(ops->token_lookup(s, "s2", 1000, &got, &err), ==, 0);
        REQUIRE(got);
        CHECK_STR(json_string_value(json_array_get(json_object_get(json_object_get(got, "token"), "scopes"), 1)),
                  "execute");
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "s0", 1000, &got, &err), ==, 0);
        REQUIRE(got);
        CHECK(json_is_null(json_object_get(json_object_get(got, "token"), "scopes")));
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_list(s, w.u1, &list, &err), ==, 0);
        CHECK_INT(json_array_size(list), ==, 1);
        CHECK(json_is_array(json_object_get(json_array_get(list, 0), "scopes")));
        json_decref(list);

        /* u1's sessions but s0 go; its API token and u2's session stay */
        CHECK_INT(ops->token_revoke_sessions(s, w.u1, ids[0], 2000, &err), ==, 1);
        CHECK_INT(ops->token_lookup(s, "s1", 3000, &got, &err), ==, -ENOENT);
        CHECK_INT(ops->token_lookup(s, "s0", 3000, &got, &err), ==, 0);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "s2", 3000, &got, &err), ==, 0);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_lookup(s, "s3", 3000, &got, &err), ==, 0);
        json_decref(got);
        got = NULL;
        CHECK_INT(ops->token_revoke_sessions(s, w.u1, NULL, 4000, &err), ==, 1);
        CHECK_INT(ops->token_lookup(s, "s0", 5000, &got, &err), ==, -ENOENT);

        /* audit: 5 events of company A, 2 of none, 1 of B */
        for (int i = 0; i < 8; i++) {
                char id[MP_ID_LEN + 1];
                mp_id_new(id);
                t = json_pack("{s:s,s:I,s:s,s:s,s:s,s:{s:i}}", "id", id, "at", (json_int_t) 1000 + i,
                              "kind", i % 2 ? "login" : "login_failed", "actor_id", i < 3 ? w.u1 : w.u2,
                              "client", "192.0.2.1", "detail", "n", i);
                if (i < 5)
                        json_object_set_new(t, "company_id", json_string(w.company_a));
                else if (i == 7)
                        json_object_set_new(t, "company_id", json_string(w.company_b));
                CHECK_INT(ops->audit_append(s, t, &err), ==, 0);
                json_decref(t);
        }
        t = json_pack("{s:s}", "id", "x");
        CHECK_INT(ops->audit_append(s, t, &err), ==, -EINVAL); /* no kind */
        json_decref(t);

        f = json_pack("{s:s,s:i}", "company_id", w.company_a, "limit", 3);
        CHECK_INT(ops->audit_list(s, f, &page, &err), ==, 0);
        CHECK_INT(json_array_size(page.items), ==, 3);
        CHECK_INT(num(json_array_get(page.items, 0), "at"), ==, 1004); /* newest first */
        CHECK_INT(num(json_object_get(json_array_get(page.items, 0), "detail"), "n"), ==, 4);
        CHECK_STR(str(json_array_get(page.items, 0), "client"), "192.0.2.1");
        REQUIRE(page.next_cursor);
        json_object_set_new(f, "cursor", json_string(page.next_cursor));
        json_decref(page.items);
        free(page.next_cursor);
        page = (struct mp_store_list) { 0 };
        CHECK_INT(ops->audit_list(s, f, &page, &err), ==, 0);
        CHECK_INT(json_array_size(page.items), ==, 2);
        CHECK(page.next_cursor == NULL);
        json_decref(page.items);
        json_decref(f);
        page = (struct mp_store_list) { 0 };

        /* filters: kind, actor, since; and the events of no company */
        f = json_pack("{s:s,s:s,s:s,s:I}", "company_id", w.company_a, "kind", "login", "actor_id", w.u1,
                      "since", (json_int_t) 1001);
        CHECK_INT(ops->audit_list(s, f, &page, &err), ==, 0);
        CHECK_INT(json_array_size(page.items), ==, 1); /* at 1001 */
        json_decref(page.items);
        json_decref(f);
        page = (struct mp_store_list) { 0 };
        f = json_pack("{s:n}", "company_id");
        CHECK_INT(ops->audit_list(s, f, &page, &err), ==, 0);
        CHECK_INT(json_array_size(page.items), ==, 2);
        CHECK(json_is_null(json_object_get(json_array_get(page.items, 0), "company_id")));
        json_decref(page.items);
        json_decref(f);
        mp_store_close(s);
}


/* ---- workflows ---- */

static int make_workflow(struct mp_store *s, char *id, const char *owner, const char *company,
                         const char *name, const char *visibility, int64_t created_at) {
        json_t *wf, *v;
        int r;

        mp_id_new(id);
        wf = json_pack("{s:s,s:s,s:s?,s:s,s:s,s:I}", "id", id, "owner_id", owner, "company_id", company,
                       "name", name, "visibility", visibility, "created_at", (json_int_t) created_at);
        v = json_pack("{s:{s:s,s:[{s:s,s:s}]},s:{s:s}}", "definition", "name", name, "nodes", "id", "beam",
                      "function", "cantilever", "input_schema", "type", "object");
        r = MP_STORE(s)->workflow_create(s, wf, v, NULL);
        json_decref(wf);
        json_decref(v);
        return r;
}

/* Definitions are kept as immutable versions, runs by compare and set, and a task says
 * which run, node and element it was made for. */
TEST(workflows) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char wf1[MP_ID_LEN + 1], wf2[MP_ID_LEN + 1], fn[MP_ID_LEN + 1], run[MP_ID_LEN + 1];
        char task[MP_ID_LEN + 1];
        json_t *row = NULL, *v2, *existing = NULL, *r1, *fields;
        struct mp_store_list list = { 0 };
        int version = 0;

        make_world(s, &w);
        CHECK_INT(make_workflow(s, wf1, w.u1, w.company_a, "beam-check", "private", 1000), ==, 0);
        CHECK_INT(make_workflow(s, wf2, w.u1, w.company_a, "beam-check", "private", 1001), ==, -EEXIST);
        CHECK_INT(make_workflow(s, wf2, w.u2, w.company_a, "beam-check", "company", 1002), ==, 0);

        CHECK_INT(ops->workflow_find(s, w.u1, "beam-check", &row, &err), ==, 0);
        CHECK_STR(str(row, "id"), wf1);
        CHECK_INT(num(row, "latest_version"), ==, 1);
        json_decref(row);
        row = NULL;
        /* a new version; version 1 stays as it was */
        v2 = json_pack("{s:{s:s,s:[]},s:{s:s}}", "definition", "name", "beam-check", "nodes",
                       "input_schema", "type", "object");
        fields = json_pack("{s:s}", "description", "second");
        CHECK_INT(ops->workflow_update(s, wf1, fields, v2, 2000, &version, &err), ==, 0);
        CHECK_INT(version, ==, 2);
        json_decref(v2);
        json_decref(fields);
        CHECK_INT(ops->workflow_get_version(s, wf1, 1, &row, &err), ==, 0);
        CHECK_INT(json_array_size(json_object_get(json_object_get(row, "definition"), "nodes")), ==, 1);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->workflow_get_version(s, wf1, 0, &row, &err), ==, 0);
        CHECK_INT(num(row, "version"), ==, 2);
        CHECK_INT(json_array_size(json_object_get(json_object_get(row, "definition"), "nodes")), ==, 0);
        json_decref(row);
        row = NULL;
        CHECK_INT(ops->workflow_get_version(s, wf1, 3, &row, &err), ==, -ENOENT);
        mp_error_clear(&err);

        /* visibility: u3 (another company) sees neither; u2 sees its own and none of u1's */
        json_t *filter = json_pack("{s:s,s:s,s:i}", "viewer_id", w.u3, "company_id", w.company_b, "limit", 10);
        CHECK_INT(ops->workflow_list(s, filter, &list, &err), ==, 0);
        CHECK_INT(json_array_size(list.items), ==, 0);
        json_decref(list.items);
        json_decref(filter);
        filter = json_pack("{s:s,s:s,s:i}", "viewer_id", w.u1, "company_id", w.company_a, "limit", 10);
        CHECK_INT(ops->workflow_list(s, filter, &list, &err), ==, 0);
        CHECK_INT(json_array_size(list.items), ==, 2); /* its own, and u2's company one */
        json_decref(list.items);
        json_decref(filter);

        /* a run, with an idempotency key */
        make_function(s, fn, w.u1, w.company_a, "cantilever", "private", 1000);
        mp_id_new(run);
        r1 = json_pack("{s:s,s:s,s:i,s:s,s:s,s:{s:i},s:{s:s,s:{}},s:s,s:I}", "id", run, "workflow_id", wf1,
                       "version", 2, "owner_id", w.u1, "company_id", w.company_a, "inputs", "L", 2, "state",
                       "status", "running", "nodes", "idempotency_key", "k1", "created_at", (json_int_t) 3000);
        CHECK_INT(ops->workflow_run_create(s, r1, NULL, &existing, &err), ==, 0);
        json_object_set_new(r1, "id", json_string("00000000-0000-4000-8000-000000000000"));
        {
                /* the same key again, with a first step's task: nothing is stored */
                json_t *tasks = json_pack("[{s:s,s:s,s:i,s:s,s:{}}]", "id", "00000000-0000-4000-8000-0000000000aa",
                                          "function_id", fn, "version", 1, "owner_id", w.u1, "inputs");
                json_t *none = NULL;
                CHECK_INT(ops->workflow_run_create(s, r1, tasks, &existing, &err), ==, -EEXIST);
                CHECK_INT(ops->task_get(s, "00000000-0000-4000-8000-0000000000aa", &none, &err), ==, -ENOENT);
                json_decref(tasks);
                mp_error_clear(&err);
        }
        REQUIRE(existing);
        CHECK_STR(str(existing, "id"), run);
        json_decref(existing);
        json_decref(r1);
        mp_error_clear(&err);
        CHECK_INT(ops->workflow_run_get(s, run, &row, &err), ==, 0);
        CHECK_INT(num(row, "rev"), ==, 0);
        CHECK_STR(str(json_object_get(row, "state"), "status"), "running");
        CHECK_INT(num(json_object_get(row, "inputs"), "L"), ==, 2);
        json_decref(row);
        row = NULL;

        /* compare and set: the writer that read rev 0 stores; a second one over rev 0 does not */
        fields = json_pack("{s:{s:s},s:s}", "state", "status", "completed", "status", "completed");
        CHECK_INT(ops->workflow_run_update(s, run, 0, fields, &err), ==, 1);
        CHECK_INT(ops->workflow_run_update(s, run, 0, fields, &err), ==, 0);
        CHECK_INT(ops->workflow_run_update(s, "00000000-0000-4000-8000-000000000001", 0, fields, &err), ==,
                  -ENOENT);
        mp_error_clear(&err);
        json_decref(fields);
        /* open runs: this one until its finished_at is set */
        CHECK_INT(ops->workflow_run_open(s, &row, &err), ==, 0);
        CHECK_INT(json_array_size(row), ==, 1);
        json_decref(row);
        fields = json_pack("{s:{s:s},s:s,s:{s:i},s:I}", "state", "status", "completed", "status", "completed",
                           "outputs", "sigma", 5, "finished_at", (json_int_t) 4000);
        CHECK_INT(ops->workflow_run_update(s, run, 1, fields, &err), ==, 1);
        json_decref(fields);
        CHECK_INT(ops->workflow_run_open(s, &row, &err), ==, 0);
        CHECK_INT(json_array_size(row), ==, 0);
        json_decref(row);
        CHECK_INT(ops->workflow_run_get(s, run, &row, &err), ==, 0);
        CHECK_INT(num(row, "rev"), ==, 2);
        CHECK_INT(num(json_object_get(row, "outputs"), "sigma"), ==, 5);
        json_decref(row);
        row = NULL;
        filter = json_pack("{s:s,s:s,s:i}", "owner_id", w.u1, "workflow_id", wf1, "limit", 10);
        CHECK_INT(ops->workflow_run_list(s, filter, &list, &err), ==, 0);
        CHECK_INT(json_array_size(list.items), ==, 1);
        CHECK(!json_object_get(json_array_get(list.items, 0), "state"));
        json_decref(list.items);
        json_decref(filter);

        /* a task of the run names its run, node and element; a plain task has nulls */
        mp_id_new(task);
        json_t *t = json_pack("{s:s,s:s,s:i,s:s,s:{},s:s,s:s,s:i}", "id", task, "function_id", fn, "version", 1,
                              "owner_id", w.u1, "inputs", "workflow_run_id", run, "node_id", "each",
                              "element_index", 3);
        CHECK_INT(ops->task_create(s, t, NULL, &err), ==, 0);
        json_decref(t);
        CHECK_INT(ops->task_get(s, task, &row, &err), ==, 0);
        CHECK_STR(str(row, "workflow_run_id"), run);
        CHECK_STR(str(row, "node_id"), "each");
        CHECK_INT(num(row, "element_index"), ==, 3);
        json_decref(row);
        row = NULL;
        CHECK_INT(make_task(s, task, fn, w.u1, NULL, 5000, NULL), ==, 0);
        CHECK_INT(ops->task_get(s, task, &row, &err), ==, 0);
        CHECK(json_is_null(json_object_get(row, "workflow_run_id")));
        CHECK(json_is_null(json_object_get(row, "element_index")));
        json_decref(row);
        row = NULL;

        /* a step stores its state and its tasks in one transaction: a stale rev writes
         * neither; a task that exists already is not made again */
        {
                char t1[MP_ID_LEN + 1];
                json_t *tasks, *created = NULL, *after = NULL;
                mp_id_new(t1);
                tasks = json_pack("[{s:s,s:s,s:i,s:s,s:{},s:s,s:s}]", "id", t1, "function_id", fn, "version", 1,
                                  "owner_id", w.u1, "inputs", "workflow_run_id", run, "node_id", "next");
                fields = json_pack("{s:{s:s},s:s}", "state", "status", "running", "status", "running");
                CHECK_INT(ops->workflow_run_advance(s, run, 0, fields, tasks, &created, &err), ==, 0);
                CHECK_INT(ops->task_get(s, t1, &after, &err), ==, -ENOENT);
                mp_error_clear(&err);
                CHECK_INT(ops->workflow_run_advance(s, run, 2, fields, tasks, &created, &err), ==, 1);
                CHECK_INT(json_array_size(created), ==, 1);
                json_decref(created);
                created = NULL;
                CHECK_INT(ops->task_get(s, t1, &after, &err), ==, 0);
                CHECK_STR(str(after, "status"), "queued");
                json_decref(after);
                CHECK_INT(ops->workflow_run_advance(s, run, 3, fields, tasks, &created, &err), ==, 1);
                CHECK_INT(json_array_size(created), ==, 0);
                json_decref(created);
                json_decref(tasks);
                json_decref(fields);
        }

        CHECK_INT(ops->workflow_delete(s, wf1, 6000, &err), ==, 0);
        CHECK_INT(ops->workflow_get(s, wf1, &row, &err), ==, -ENOENT);
        mp_error_clear(&err);
        /* its name is free again; its versions are still read (its runs name them) */
        CHECK_INT(make_workflow(s, wf2, w.u1, w.company_a, "beam-check", "private", 7000), ==, 0);
        CHECK_INT(ops->workflow_get_version(s, wf1, 2, &row, &err), ==, 0);
        json_decref(row);
        done(s);
}

#define RUN_WRITERS 8
#define RUN_STEPS 25

struct run_writer {
        struct mp_store *s;
        const char *run;
        int index, stored, lost, errors;
};

/* A worker's step on a run: read, change the state, store over the rev read; lost to
 * another writer: read again and redo. Each step adds one to its writer's counter. */
static void *run_write_loop(void *arg) {
        struct run_writer *wr = arg;
        char key[16];

        snprintf(key, sizeof(key), "w%d", wr->index);
        for (int i = 0; i < RUN_STEPS; i++) {
                for (;;) {
                        struct mp_error err = { 0 };
                        json_t *row = NULL, *state, *fields;
                        int r = MP_STORE(wr->s)->workflow_run_get(wr->s, wr->run, &row, &err);
                        if (r < 0) {
                                wr->errors++;
                                mp_error_clear(&err);
                                break;
                        }
                        state = json_deep_copy(json_object_get(row, "state"));
                        json_object_set_new(state, key, json_integer(json_integer_value(json_object_get(state, key)) + 1));
                        fields = json_pack("{s:o,s:s}", "state", state, "status", "running");
                        r = MP_STORE(wr->s)->workflow_run_update(wr->s, wr->run,
                                                                 json_integer_value(json_object_get(row, "rev")),
                                                                 fields, &err);
                        json_decref(fields);
                        json_decref(row);
                        mp_error_clear(&err);
                        if (r == 1) {
                                wr->stored++;
                                break;
                        }
                        if (r < 0 && r != -EBUSY) {
                                wr->errors++;
                                break;
                        }
                        wr->lost++;
                }
        }
        return NULL;
}

/* A run of a workflow with a cache key, as a step stores it. */
static void cache_run(struct mp_store *s, char *id, const char *wf, const char *owner, const char *company,
                      const char *key, const char *status, const char *cached_from, int64_t finished_at) {
        struct mp_error err = { 0 };
        json_t *r;

        mp_id_new(id);
        r = json_pack("{s:s,s:s,s:i,s:s,s:s,s:{s:i},s:{s:s},s:s,s:s,s:s?,s:I,s:I}", "id", id, "workflow_id", wf,
                      "version", 1, "owner_id", owner, "company_id", company, "inputs", "x", 1, "state", "status",
                      status, "status", status, "cache_key", key, "cached_from", cached_from, "created_at",
                      (json_int_t) finished_at, "finished_at", (json_int_t) finished_at);
        CHECK_INT(MP_STORE(s)->workflow_run_create(s, r, NULL, NULL, &err), ==, 0);
        json_decref(r);
        mp_error_clear(&err);
}

/* The result cache of workflow versions: the owner's newest completed run with the key
 * that is not a copy; never another user's, even in the same company. */
TEST(workflow_run_cache) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char wf[MP_ID_LEN + 1], a[MP_ID_LEN + 1], b[MP_ID_LEN + 1], c[MP_ID_LEN + 1], x[MP_ID_LEN + 1];
        json_t *row = NULL;
        const char *k = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

        make_world(s, &w);
        CHECK_INT(make_workflow(s, wf, w.u1, w.company_a, "cached", "company", 1000), ==, 0);
        CHECK_INT(ops->workflow_run_find_cached(s, w.u1, k, &row, &err), ==, -ENOENT);
        cache_run(s, a, wf, w.u1, w.company_a, k, "completed", NULL, 5000);
        cache_run(s, x, wf, w.u1, w.company_a, k, "failed", NULL, 6000);     /* never a source */
        cache_run(s, c, wf, w.u1, w.company_a, k, "completed", a, 7000);     /* a copy: never a source */
        cache_run(s, x, wf, w.u1, w.company_a, "other", "completed", NULL, 7500);
        CHECK_INT(ops->workflow_run_find_cached(s, w.u1, k, &row, &err), ==, 0);
        CHECK_STR(str(row, "id"), a);
        CHECK_STR(str(row, "cache_key"), k);
        CHECK(json_is_null(json_object_get(row, "cached_from")) || !json_object_get(row, "cached_from"));
        json_decref(row);
        row = NULL;
        /* u2, the same company, and u3 find nothing of u1's */
        CHECK_INT(ops->workflow_run_find_cached(s, w.u2, k, &row, &err), ==, -ENOENT);
        CHECK_INT(ops->workflow_run_find_cached(s, w.u3, k, &row, &err), ==, -ENOENT);
        /* the newest computed run serves */
        cache_run(s, b, wf, w.u1, w.company_a, k, "completed", NULL, 8000);
        CHECK_INT(ops->workflow_run_find_cached(s, w.u1, k, &row, &err), ==, 0);
        CHECK_STR(str(row, "id"), b);
        json_decref(row);
        row = NULL;
        /* a copy keeps the run it copied */
        CHECK_INT(ops->workflow_run_get(s, c, &row, &err), ==, 0);
        CHECK_STR(str(row, "cached_from"), a);
        json_decref(row);
        mp_error_clear(&err);
        done(s);
}

/* Several workers ending tasks of one run at once: no step is lost. */
TEST(workflow_run_concurrent_steps) {
        struct mp_store *s = fresh();
        struct mp_error err = { 0 };
        struct world w;
        char wf[MP_ID_LEN + 1], run[MP_ID_LEN + 1];
        struct run_writer wr[RUN_WRITERS];
        pthread_t th[RUN_WRITERS];
        json_t *r1, *row = NULL;
        int lost = 0;

        make_world(s, &w);
        REQUIRE(make_workflow(s, wf, w.u1, w.company_a, "busy", "private", 1000) == 0);
        mp_id_new(run);
        r1 = json_pack("{s:s,s:s,s:i,s:s,s:{},s:{}}", "id", run, "workflow_id", wf, "version", 1, "owner_id",
                       w.u1, "inputs", "state");
        REQUIRE(MP_STORE(s)->workflow_run_create(s, r1, NULL, NULL, &err) == 0);
        json_decref(r1);
        for (int i = 0; i < RUN_WRITERS; i++) {
                wr[i] = (struct run_writer) { .s = s, .run = run, .index = i };
                REQUIRE(pthread_create(&th[i], NULL, run_write_loop, &wr[i]) == 0);
        }
        for (int i = 0; i < RUN_WRITERS; i++)
                pthread_join(th[i], NULL);
        CHECK_INT(MP_STORE(s)->workflow_run_get(s, run, &row, &err), ==, 0);
        for (int i = 0; i < RUN_WRITERS; i++) {
                char key[16];
                snprintf(key, sizeof(key), "w%d", i);
                CHECK_INT(wr[i].errors, ==, 0);
                CHECK_INT(wr[i].stored, ==, RUN_STEPS);
                CHECK_INT(json_integer_value(json_object_get(json_object_get(row, "state"), key)), ==, RUN_STEPS);
                lost += wr[i].lost;
        }
        CHECK_INT(json_integer_value(json_object_get(row, "rev")), ==, RUN_WRITERS * RUN_STEPS);
        printf("  %d steps stored by %d writers, %d redone after a lost compare-and-set\n",
               RUN_WRITERS * RUN_STEPS, RUN_WRITERS, lost);
        json_decref(row);
        done(s);
}

/* ---- studies and the result cache ---- */

/* A point for study_create: inputs {"x": x}, its key "k<x>", a cache key when given. */
static json_t *point(int x, const char *cache_key) {
        char key[32];
        snprintf(key, sizeof(key), "k%d", x);
        return json_pack("{s:{s:i},s:s,s:s?}", "inputs", "x", x, "inputs_key", key, "cache_key", cache_key);
}

/* End the task of a started point as the worker would, then tell the study. */
static int end_point(struct mp_store *s, const char *study, const char *task_id, const char *status,
                     json_t **ret_started) {
        json_t *t = NULL, *f;
        int64_t index;
        int r;

        if (MP_STORE(s)->task_get(s, task_id, &t, NULL) < 0) {
                CHECK_FAIL("task %s not found", task_id);
                return -ENOENT;
        }
        index = json_integer_value(json_object_get(t, "point_index"));
        CHECK_STR(str(t, "study_id"), study);
        json_decref(t);
        f = json_pack("{s:s,s:{s:i}}", "status", status, "result", "y", 1);
        CHECK_INT(MP_STORE(s)->task_finish(s, task_id, f, NULL), ==, 1);
        json_decref(f);
        json_t *out = json_pack("{s:i}", "result.y", 1);
        r = MP_STORE(s)->study_point_end(s, study, index, task_id, status, out, NULL, ret_started, NULL);
        json_decref(out);
        return r;
}

TEST(studies_and_cache) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = mp_store_ops(s);
        struct mp_error err = { 0 };
        struct world w;
        char fn[MP_ID_LEN + 1], sid[MP_ID_LEN + 1], other[MP_ID_LEN + 1];
        json_t *study, *points, *started = NULL, *row = NULL, *rows = NULL, *more = NULL, *tasks = NULL;

        make_world(s, &w);
        REQUIRE(make_function(s, fn, w.u1, w.company_a, "beam", "private", 1000) == 0);
        mp_id_new(sid);
        study = json_pack("{s:s,s:s,s:s,s:s,s:{s:s,s:i},s:{},s:{s:s},s:[s],s:i}", "id", sid, "owner_id", w.u1,
                          "company_id", w.company_a, "name", "sweep", "target", "function_id", fn, "version", 1,
                          "fixed", "design", "type", "grid", "outputs", "result.y", "concurrency", 2);
        points = json_pack("[o,o,o,o,o]", point(0, NULL), point(1, NULL), point(2, NULL), point(3, NULL),
                           point(4, NULL));
        CHECK_INT(ops->study_create(s, study, points, &err), ==, 0);

        /* the first start makes tasks up to the concurrency, in index order */
        CHECK_INT(ops->study_start(s, sid, &started, &err), ==, 0);
        REQUIRE(json_array_size(started) == 2);
        CHECK_INT(ops->study_start(s, sid, &more, &err), ==, 0); /* full: nothing more */
        CHECK_INT(json_array_size(more), ==, 0);
        json_decref(more);
        CHECK_INT(ops->study_get(s, sid, &row, &err), ==, 0);
        CHECK_INT(num(row, "total"), ==, 5);
        CHECK_INT(num(row, "started"), ==, 2);
        CHECK_STR(str(row, "status"), "running");
        json_decref(row);
        {
                struct mp_store_list list = { 0 };
                json_t *filter = json_pack("{s:s}", "owner_id", w.u1);
                CHECK_INT(ops->study_list(s, filter, &list, &err), ==, 0);
                CHECK_INT(json_array_size(list.items), ==, 1);
                CHECK_STR(str(json_array_get(list.items, 0), "id"), sid);
                CHECK_INT(num(json_array_get(list.items, 0), "running"), ==, 0); /* queued, none claimed */
                json_decref(list.items);
                free(list.next_cursor);
                json_object_set_new(filter, "owner_id", json_string(w.u2));
                list = (struct mp_store_list) { 0 };
                CHECK_INT(ops->study_list(s, filter, &list, &err), ==, 0);
                CHECK_INT(json_array_size(list.items), ==, 0);
                json_decref(list.items);
                free(list.next_cursor);
                json_decref(filter);
        }

        /* a point's end is counted once and starts the next point */
        const char *t0 = str(json_array_get(started, 0), "task_id");
        char t0_id[MP_ID_LEN + 1];
        snprintf(t0_id, sizeof(t0_id), "%s", t0);
        CHECK_INT(end_point(s, sid, t0, "completed", &more), ==, 1);
        CHECK_INT(json_array_size(more), ==, 1);
        json_decref(more);
        CHECK_INT(ops->study_point_end(s, sid, 0, t0, "completed", NULL, NULL, &more, &err), ==, 0);
        CHECK_INT(json_array_size(more), ==, 0);
        json_decref(more);
        CHECK_INT(end_point(s, sid, str(json_array_get(started, 1), "task_id"), "failed", &more), ==, 1);
        json_decref(more);
        json_decref(started);
        started = NULL;

        /* the rest run to the end; then the study is completed */
        for (int round = 0; round < 5; round++) {
                CHECK_INT(ops->study_points(s, sid, -1, 100, &rows, &err), ==, 0);
                size_t i;
                json_t *p;
                json_array_foreach(rows, i, p)
                        if (!strcmp(str(p, "status"), "started")) {
                                CHECK_INT(end_point(s, sid, str(p, "task_id"), "completed", &more), ==, 1);
                                json_decref(more);
                        }
                json_decref(rows);
        }
        CHECK_INT(ops->study_get(s, sid, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "completed");
        CHECK_INT(num(row, "completed"), ==, 4);
        CHECK_INT(num(row, "failed"), ==, 1);
        CHECK_INT(num(row, "started"), ==, 0);
        CHECK(num(row, "finished_at") > 0);
        json_decref(row);
        CHECK_INT(ops->study_points(s, sid, 1, 2, &rows, &err), ==, 0);
        REQUIRE(json_array_size(rows) == 2);
        CHECK_INT(num(json_array_get(rows, 0), "point_index"), ==, 2);
        CHECK_INT(json_integer_value(json_object_get(json_object_get(json_array_get(rows, 0), "outputs"),
                                                     "result.y")), ==, 1);
        json_decref(rows);

        /* extend: known inputs are left out, the study runs again */
        more = json_pack("[o,o]", point(2, NULL), point(9, NULL));
        CHECK_INT(ops->study_add_points(s, sid, more, &err), ==, 1);
        json_decref(more);
        CHECK_INT(ops->study_get(s, sid, &row, &err), ==, 0);
        CHECK_INT(num(row, "total"), ==, 6);
        CHECK_STR(str(row, "status"), "running");
        json_decref(row);

        /* retry: only the failed point goes back to pending */
        CHECK_INT(ops->study_retry(s, sid, &err), ==, 1);
        CHECK_INT(ops->study_start(s, sid, &started, &err), ==, 0);
        CHECK_INT(json_array_size(started), ==, 2); /* the failed point 1 and the new point 5 */
        CHECK_INT(ops->study_points(s, sid, -1, 100, &rows, &err), ==, 0);
        CHECK_STR(str(json_array_get(rows, 1), "status"), "started");
        CHECK_STR(str(json_array_get(rows, 0), "status"), "completed");
        json_decref(rows);

        /* recovery sees the started points whose task ended unseen */
        json_t *f = json_pack("{s:s}", "status", "completed");
        CHECK_INT(ops->task_finish(s, str(json_array_get(started, 0), "task_id"), f, &err), ==, 1);
        json_decref(f);
        CHECK_INT(ops->study_recover(s, &rows, &err), ==, 0);
        REQUIRE(json_array_size(rows) == 1);
        CHECK_STR(str(json_array_get(rows, 0), "id"), sid);
        CHECK_INT(json_array_size(json_object_get(json_array_get(rows, 0), "ended")), ==, 1);
        json_decref(rows);

        /* cancel: pending none, started listed; a second cancel is refused */
        CHECK_INT(ops->study_cancel(s, sid, &tasks, &err), ==, 0);
        CHECK_INT(json_array_size(tasks), ==, 2);
        json_decref(tasks);
        CHECK_INT(ops->study_cancel(s, sid, &tasks, &err), ==, -EALREADY);
        CHECK_INT(ops->study_retry(s, sid, &err), ==, -EALREADY); /* a cancelled study */
        json_decref(started);
        started = NULL;

        /* the result cache: the owner's completed task with the key, never another's */
        char t1[MP_ID_LEN + 1];
        json_t *t = json_pack("{s:s,s:s,s:i,s:s,s:{s:i},s:s,s:I}", "id", (mp_id_new(t1), t1), "function_id", fn,
                              "version", 1, "owner_id", w.u1, "inputs", "x", 1, "cache_key", "ck1", "queued_at",
                              (json_int_t) 5);
        CHECK_INT(ops->task_create(s, t, NULL, &err), ==, 0);
        json_decref(t);
        CHECK_INT(ops->task_in_study(s, t1, &err), ==, 0);
        CHECK_INT(ops->task_in_study(s, t0_id, &err), ==, 1);
        json_t *hit = json_pack("{s:s,s:s,s:{s:i},s:I,s:s}", "id", (mp_id_new(other), other), "owner_id", w.u1,
                                "inputs", "x", 1, "queued_at", (json_int_t) 6, "cache_key", "ck1");
        CHECK_INT(ops->task_create_cached(s, hit, &err), ==, 0); /* not completed yet */
        f = json_pack("{s:s,s:{s:i}}", "status", "completed", "result", "y", 42);
        CHECK_INT(ops->task_finish(s, t1, f, &err), ==, 1);
        json_decref(f);
        CHECK_INT(ops->task_create_cached(s, hit, &err), ==, 1);
        CHECK_INT(ops->task_get(s, other, &row, &err), ==, 0);
        CHECK_STR(str(row, "cached_from"), t1);
        CHECK_STR(str(row, "status"), "completed");
        CHECK_STR(str(row, "result_json"), "{\"y\":42}");
        json_decref(row);
        json_object_set_new(hit, "id", json_string((mp_id_new(other), other)));
        json_object_set_new(hit, "owner_id", json_string(w.u2)); /* same company, another user */
        CHECK_INT(ops->task_create_cached(s, hit, &err), ==, 0);
        json_decref(hit);

        json_decref(study);
        json_decref(points);
        mp_error_clear(&err);
        done(s);
}

/* ---- retention and deletion ---- */

#define DAY_MS (86400LL * 1000)

/* A task of company (may be NULL) queued at queued_at, completed when ended. */
static void company_task(struct mp_store *s, char *id, const char *fn, const char *owner, const char *company,
                         int64_t queued_at, bool ended) {
        json_t *t, *fields;

        mp_id_new(id);
        t = json_pack("{s:s,s:s,s:i,s:s,s:s?,s:{},s:I}", "id", id, "function_id", fn, "version", 1, "owner_id",
                      owner, "company_id", company, "inputs", "queued_at", (json_int_t) queued_at);
        CHECK_INT(MP_STORE(s)->task_create(s, t, NULL, NULL), ==, 0);
        json_decref(t);
        if (!ended)
                return;
        fields = json_pack("{s:s,s:I,s:i}", "status", "completed", "finished_at", (json_int_t) queued_at + 1, "result",
                           1);
        CHECK_INT(MP_STORE(s)->task_finish(s, id, fields, NULL), ==, 1);
        json_decref(fields);
}

TEST(retention) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char fn[MP_ID_LEN + 1], old[MP_ID_LEN + 1], recent[MP_ID_LEN + 1], running[MP_ID_LEN + 1],
                other[MP_ID_LEN + 1], alone[MP_ID_LEN + 1];
        const int64_t now = 1000 * DAY_MS;
        json_t *row = NULL, *rows = NULL;

        make_world(s, &w);
        CHECK_INT(make_function(s, fn, w.u1, w.company_a, "beam", "private", 1000), ==, 0);
        company_task(s, old, fn, w.u1, w.company_a, now - 40 * DAY_MS, true);
        company_task(s, recent, fn, w.u1, w.company_a, now - 1 * DAY_MS, true);
        company_task(s, running, fn, w.u2, w.company_a, now - 40 * DAY_MS, false);
        company_task(s, other, fn, w.u3, w.company_b, now - 40 * DAY_MS, true);
        company_task(s, alone, fn, w.u1, NULL, now - 400 * DAY_MS, true);

        /* A company keeps tasks forever until it says otherwise. */
        CHECK_INT(ops->company_retention(s, w.company_a, &row, &err), ==, 0);
        CHECK(json_is_null(json_object_get(row, "task_retention_days")));
        json_decref(row);
        CHECK_INT(ops->task_expired(s, now, 10, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 0);
        json_decref(rows);

        /* 30 days: only A's ended task older than that; the queued one waits, B and the
         * task of no company are kept. Days * 86400000 does not overflow (BIGINT). */
        CHECK_INT(ops->company_set_retention(s, w.company_a, 30, &err), ==, 0);
        CHECK_INT(ops->company_set_retention(s, w.company_b, 36500, &err), ==, 0);
        CHECK_INT(ops->company_retention(s, w.company_a, &row, &err), ==, 0);
        CHECK_INT(num(row, "task_retention_days"), ==, 30);
        json_decref(row);
        CHECK_INT(ops->task_expired(s, now, 10, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        CHECK_STR(str(json_array_get(rows, 0), "id"), old);
        json_decref(rows);
        CHECK_INT(ops->company_set_retention(s, "no-such-company", 3, &err), ==, -ENOENT);
        mp_error_clear(&err);

        /* Deletion: only an ended task; once. */
        CHECK_INT(ops->task_refs(s, old, &err), ==, 1);
        CHECK_INT(ops->task_delete(s, running, &err), ==, 0);
        CHECK_INT(ops->task_get(s, running, &row, &err), ==, 0);
        json_decref(row);
        CHECK_INT(ops->task_delete(s, old, &err), ==, 1);
        CHECK_INT(ops->task_delete(s, old, &err), ==, -ENOENT);
        mp_error_clear(&err);
        CHECK_INT(ops->task_get(s, old, &row, &err), ==, -ENOENT);
        mp_error_clear(&err);
        CHECK_INT(ops->task_refs(s, old, &err), ==, 0);
        CHECK_INT(ops->task_expired(s, now, 10, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 0);
        json_decref(rows);
        CHECK_INT(ops->task_study_member(s, recent, &row, &err), ==, -ENOENT);
        mp_error_clear(&err);

        /* Null again: forever. */
        CHECK_INT(ops->company_set_retention(s, w.company_a, -1, &err), ==, 0);
        CHECK_INT(ops->company_retention(s, w.company_a, &row, &err), ==, 0);
        CHECK(json_is_null(json_object_get(row, "task_retention_days")));
        json_decref(row);

        /* A user's functions, deleted ones too. */
        CHECK_INT(ops->function_delete(s, fn, now, &err), ==, 0);
        CHECK_INT(ops->function_list_owned(s, w.u1, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        CHECK_STR(str(json_array_get(rows, 0), "id"), fn);
        CHECK_INT(num(json_array_get(rows, 0), "deleted_at"), ==, now);
        json_decref(rows);
        CHECK_INT(ops->function_list_owned(s, w.u3, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 0);
        json_decref(rows);
        mp_error_clear(&err);
        done(s);
}

/* ---- usage, quotas and the operators' figures (migration 13) ---- */

#define DAY 86400000LL

/* A task of owner (in company, may be NULL) for fn, queued at `at`: created (with
 * quota_check when checked), started and ended as status with those figures. Returns
 * task_create's answer (the rest only when it stored the task). */
static int usage_task(struct mp_store *s, const char *fn, const char *owner, const char *company, int64_t at,
                      bool checked, const char *status, int64_t wall, int64_t cpu, int64_t peak, char *ret_id,
                      struct mp_error *err) {
        char id[MP_ID_LEN + 1];
        json_t *t, *f;
        int r;

        mp_id_new(id);
        if (ret_id)
                memcpy(ret_id, id, sizeof(id));
        t = json_pack("{s:s,s:s,s:i,s:s,s:s?,s:{},s:I,s:b}", "id", id, "function_id", fn, "version", 1, "owner_id",
                      owner, "company_id", company, "inputs", "queued_at", (json_int_t) at, "quota_check", checked);
        r = MP_STORE(s)->task_create(s, t, NULL, err);
        json_decref(t);
        if (r < 0 || !status)
                return r;
        CHECK_INT(MP_STORE(s)->task_start(s, id, "w/1", at + 1, NULL), ==, 1);
        f = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I}", "status", status, "finished_at", (json_int_t) (at + 2),
                      "execution_ms", (json_int_t) wall, "cpu_ms", (json_int_t) cpu, "peak_memory_kb",
                      (json_int_t) peak, "stored_bytes", (json_int_t) 1000);
        CHECK_INT(MP_STORE(s)->task_finish(s, id, f, NULL), ==, 1);
        json_decref(f);
        return r;
}

static json_t *usage_rows(struct mp_store *s, const char *who_key, const char *who, int64_t from, int64_t to,
                          const char *group) {
        json_t *filter = json_pack("{s:s,s:I,s:I,s:s}", who_key, who, "from_day", (json_int_t) from, "to_day",
                                   (json_int_t) to, "group_by", group), *rows = NULL;
        CHECK_INT(MP_STORE(s)->usage_query(s, filter, &rows, NULL), ==, 0);
        json_decref(filter);
        return rows;
}

/* Usage counted at each end, per day, function and owner; a cancelled-before-start task
 * and a cache hit are no calls that ran; company scope; quotas refused at admission
 * with their problem, starts held; the operators' raw figures. */
TEST(usage_and_quotas) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], f2[MP_ID_LEN + 1], t[MP_ID_LEN + 1];
        int64_t now = mp_now_ms(), today = now / DAY;
        json_t *rows, *q, *used = NULL, *stats = NULL;

        make_world(s, &w);
        REQUIRE(make_function(s, f1, w.u1, w.company_a, "beam", "company", 1) == 0);
        REQUIRE(make_function(s, f2, w.u1, w.company_a, "plate", "company", 2) == 0);
        /* u1: two calls of f1 yesterday, one failing; one of f2 today; u2 one today;
         * u3 (company B) one today. */
        usage_task(s, f1, w.u1, w.company_a, now - DAY, false, "completed", 100, 80, 5000, NULL, NULL);
        usage_task(s, f1, w.u1, w.company_a, now - DAY, false, "failed", 50, 40, 7000, NULL, NULL);
        usage_task(s, f2, w.u1, w.company_a, now, false, "timed_out", 1000, 900, 3000, NULL, NULL);
        usage_task(s, f1, w.u2, w.company_a, now, false, "completed", 10, 9, 100, NULL, NULL);
        usage_task(s, f1, w.u3, w.company_b, now, false, "completed", 1, 1, 1, NULL, NULL);
        /* cancelled while queued: no call that ran */
        usage_task(s, f1, w.u1, w.company_a, now, false, NULL, 0, 0, 0, t, NULL);
        q = json_pack("{s:s,s:I}", "status", "cancelled", "finished_at", (json_int_t) now);
        CHECK_INT(ops->task_finish(s, t, q, NULL), ==, 1);
        json_decref(q);

        rows = usage_rows(s, "owner_id", w.u1, today - 1, today, "day");
        REQUIRE(json_array_size(rows) == 2);
        CHECK_INT(num(json_array_get(rows, 0), "key"), ==, today - 1);
        CHECK_INT(num(json_array_get(rows, 0), "calls"), ==, 2);
        CHECK_INT(num(json_array_get(rows, 0), "failed"), ==, 1);
        CHECK_INT(num(json_array_get(rows, 0), "wall_ms"), ==, 150);
        CHECK_INT(num(json_array_get(rows, 0), "cpu_ms"), ==, 120);
        CHECK_INT(num(json_array_get(rows, 0), "max_peak_memory_kb"), ==, 7000);
        CHECK_INT(num(json_array_get(rows, 1), "calls"), ==, 1);
        CHECK_INT(num(json_array_get(rows, 1), "failed"), ==, 1); /* timed_out */
        json_decref(rows);
        rows = usage_rows(s, "owner_id", w.u1, today, today, "day"); /* the range is kept to */
        CHECK_INT(json_array_size(rows), ==, 1);
        json_decref(rows);
        rows = usage_rows(s, "company_id", w.company_a, today - 1, today, "owner_id");
        CHECK_INT(json_array_size(rows), ==, 2); /* u1 and u2; never u3 */
        json_decref(rows);
        rows = usage_rows(s, "company_id", w.company_a, today - 1, today, "function_id");
        CHECK_INT(json_array_size(rows), ==, 2);
        json_decref(rows);
        q = json_pack("{s:s,s:I,s:I,s:s}", "owner_id", w.u1, "from_day", (json_int_t) 0, "to_day", (json_int_t) 1,
                      "group_by", "owner_id; DROP TABLE tasks");
        CHECK_INT(ops->usage_query(s, q, &rows, &err), ==, -EINVAL);
        json_decref(q);
        mp_error_clear(&err);

        /* quotas: the company's and u1's own */
        q = json_pack("{s:s,s:s,s:i,s:n}", "company_id", w.company_a, "user_id", "", "concurrent_calls", 2,
                      "storage_mb");
        CHECK_INT(ops->quota_set(s, q, &err), ==, 0);
        json_decref(q);
        q = json_pack("{s:s,s:s,s:i}", "company_id", w.company_a, "user_id", w.u1, "calls_per_day", 2);
        CHECK_INT(ops->quota_set(s, q, &err), ==, 0);
        json_decref(q);
        CHECK_INT(ops->quota_list(s, w.company_a, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 2);
        CHECK_INT(num(json_array_get(rows, 0), "concurrent_calls"), ==, 2);
        CHECK(json_is_null(json_object_get(json_array_get(rows, 0), "calls_per_day")));
        json_decref(rows);
        /* u1 made 2 calls today (f2's and the cancelled one): the day's quota is used */
        CHECK_INT(usage_task(s, f1, w.u1, w.company_a, now, true, NULL, 0, 0, 0, NULL, &err), ==, -EDQUOT);
        CHECK_INT(err.status, ==, 429);
        CHECK_STR(err.code, "QuotaExceeded");
        CHECK_STR(str(err.errors, "quota"), "calls_per_day");
        CHECK_STR(str(err.errors, "scope"), "user");
        CHECK_INT(num(err.errors, "limit"), ==, 2);
        CHECK_INT(num(err.errors, "retry_after"), >, 0);
        REQUIRE(str(err.errors, "resets_at"));
        mp_error_clear(&err);
        /* u2 is held by the company's 2 concurrent calls only */
        char q1[MP_ID_LEN + 1], q2[MP_ID_LEN + 1];
        CHECK_INT(usage_task(s, f1, w.u2, w.company_a, now, true, NULL, 0, 0, 0, q1, &err), ==, 0);
        CHECK_INT(usage_task(s, f1, w.u2, w.company_a, now, true, NULL, 0, 0, 0, q2, &err), ==, 0);
        CHECK_INT(usage_task(s, f1, w.u2, w.company_a, now, true, NULL, 0, 0, 0, NULL, &err), ==, -EDQUOT);
        CHECK_STR(str(err.errors, "quota"), "concurrent_calls");
        CHECK_STR(str(err.errors, "scope"), "company");
        CHECK(json_is_null(json_object_get(err.errors, "resets_at")));
        mp_error_clear(&err);
        /* unchecked (a run's or a study's) calls are stored; their starts are held */
        CHECK_INT(usage_task(s, f1, w.u2, w.company_a, now, false, NULL, 0, 0, 0, t, &err), ==, 0);
        CHECK_INT(ops->task_start_quota(s, q1, "w/1", now, w.u2, w.company_a, true, &err), ==, 1);
        CHECK_INT(ops->task_start_quota(s, q2, "w/1", now, w.u2, w.company_a, true, &err), ==, 1);
        CHECK_INT(ops->task_start_quota(s, t, "w/1", now, w.u2, w.company_a, true, &err), ==, -EDQUOT);
        mp_error_clear(&err);
        q = json_pack("{s:s,s:I}", "status", "completed", "finished_at", (json_int_t) now);
        CHECK_INT(ops->task_finish(s, q1, q, NULL), ==, 1);
        CHECK_INT(ops->task_start_quota(s, t, "w/1", now, w.u2, w.company_a, true, &err), ==, 1);
        CHECK_INT(ops->task_start_quota(s, t, "w/1", now, w.u2, w.company_a, true, &err), ==, 0); /* running */
        CHECK_INT(ops->task_finish(s, q2, q, NULL), ==, 1);
        CHECK_INT(ops->task_finish(s, t, q, NULL), ==, 1);
        json_decref(q);
        /* a company without quotas starts as task_start does */
        CHECK_INT(usage_task(s, f1, w.u3, w.company_b, now, true, NULL, 0, 0, 0, t, &err), ==, 0);
        CHECK_INT(ops->task_start_quota(s, t, "w/1", now, w.u3, w.company_b, true, &err), ==, 1);
        CHECK_INT(ops->quota_used(s, NULL, w.company_a, now, &used, &err), ==, 0);
        CHECK_INT(num(used, "concurrent_calls"), ==, 0);
        CHECK_INT(num(used, "cpu_ms_this_month") >= 909, ==, 1); /* today's, and yesterday's when in this month */
        CHECK_INT(num(used, "stored_bytes") >= 2000, ==, 1);
        json_decref(used);
        /* all null removes the row */
        q = json_pack("{s:s,s:s}", "company_id", w.company_a, "user_id", w.u1);
        CHECK_INT(ops->quota_set(s, q, &err), ==, 0);
        json_decref(q);
        CHECK_INT(ops->quota_list(s, w.company_a, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        json_decref(rows);

        /* the operators' figures, and the flag */
        CHECK_INT(ops->admin_stats(s, (today - 1) * DAY, (today + 1) * DAY, &stats, &err), ==, 0);
        CHECK_INT(num(stats, "functions_created"), ==, 0); /* made at t=1 and 2 */
        CHECK_INT(num(stats, "functions_live"), ==, 2);
        CHECK_INT(num(stats, "active_users"), ==, 3);
        CHECK_INT(num(stats, "ran"), ==, 8); /* the first 5, and u2's 3 (u3's last runs still) */
        CHECK_INT(num(json_object_get(stats, "latency_ms"), "p50"), ==, 2);
        CHECK_INT(json_array_size(json_object_get(stats, "days")), ==, 2);
        json_decref(stats);
        CHECK_INT(ops->user_set_operator(s, w.u3, 1, &err), ==, 0);
        CHECK_INT(ops->user_get(s, "id", w.u3, &q, &err), ==, 0);
        CHECK_INT(num(q, "operator"), ==, 1);
        json_decref(q);
        CHECK_INT(ops->company_find(s, "Globex", &q, &err), ==, 0);
        CHECK_STR(str(q, "id"), w.company_b);
        json_decref(q);
        CHECK_INT(ops->company_find(s, "Nobody", &q, &err), ==, -ENOENT);
        mp_error_clear(&err);
        done(s);
}

/* Deleting a task gives its stored bytes back to the owner's and the company's storage
 * (a user at the storage quota can call again), while the day's calls stay counted. */
TEST(usage_storage_given_back) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], t1[MP_ID_LEN + 1], t2[MP_ID_LEN + 1];
        int64_t now = mp_now_ms(), today = now / DAY;
        json_t *used = NULL, *rows, *q;

        make_world(s, &w);
        REQUIRE(make_function(s, f1, w.u1, w.company_a, "beam", "company", 1) == 0);
        /* two calls that keep 512 KiB each: 1 MiB, u1's storage quota */
        for (int i = 0; i < 2; i++) {
                char *id = i ? t2 : t1;
                usage_task(s, f1, w.u1, w.company_a, now, false, NULL, 0, 0, 0, id, NULL);
                CHECK_INT(ops->task_start(s, id, "w/1", now + 1, NULL), ==, 1);
                q = json_pack("{s:s,s:I,s:I}", "status", i ? "failed" : "completed", "finished_at",
                              (json_int_t) (now + 2), "stored_bytes", (json_int_t) 524288);
                CHECK_INT(ops->task_finish(s, id, q, NULL), ==, 1);
                json_decref(q);
        }
        q = json_pack("{s:s,s:s,s:i}", "company_id", w.company_a, "user_id", w.u1, "storage_mb", 1);
        CHECK_INT(ops->quota_set(s, q, &err), ==, 0);
        json_decref(q);
        CHECK_INT(usage_task(s, f1, w.u1, w.company_a, now, true, NULL, 0, 0, 0, NULL, &err), ==, -EDQUOT);
        CHECK_STR(str(err.errors, "quota"), "storage_mb");
        mp_error_clear(&err);

        CHECK_INT(ops->task_delete(s, t1, &err), ==, 1);
        CHECK_INT(ops->quota_used(s, w.u1, NULL, now, &used, &err), ==, 0);
        CHECK_INT(num(used, "stored_bytes"), ==, 524288);
        json_decref(used);
        /* below the quota again: u1 may call */
        CHECK_INT(usage_task(s, f1, w.u1, w.company_a, now, true, NULL, 0, 0, 0, NULL, &err), ==, 0);
        mp_error_clear(&err);
        CHECK_INT(ops->task_delete(s, t2, &err), ==, 1);
        CHECK_INT(ops->quota_used(s, NULL, w.company_a, now, &used, &err), ==, 0);
        CHECK_INT(num(used, "stored_bytes"), ==, 0);
        json_decref(used);
        rows = usage_rows(s, "owner_id", w.u1, today, today, "day");
        REQUIRE(json_array_size(rows) == 1);
        CHECK_INT(num(json_array_get(rows, 0), "calls"), ==, 2);
        CHECK_INT(num(json_array_get(rows, 0), "failed"), ==, 1);
        json_decref(rows);
        done(s);
}

#define QUOTA_THREADS 16

struct quota_call {
        struct mp_store *s;
        const char *fn, *owner, *company;
        pthread_barrier_t *start;
        int r;
};

static void *quota_call(void *arg) {
        struct quota_call *c = arg;
        struct mp_error err = { 0 };

        pthread_barrier_wait(c->start);
        c->r = usage_task(c->s, c->fn, c->owner, c->company, mp_now_ms(), true, NULL, 0, 0, 0, NULL, &err);
        mp_error_clear(&err);
        return NULL;
}

/* Admissions at once on separate connections (as on several API nodes): the count and
 * the insert are one, under the user's row lock, so exactly the quota's worth get in. */
TEST(pg_quota_race) {
        struct mp_store *s = NULL;
        struct world w;
        struct quota_call c[QUOTA_THREADS];
        pthread_t th[QUOTA_THREADS];
        pthread_barrier_t start;
        char url[4200], f[MP_ID_LEN + 1];
        json_t *q;

        pg_empty();
        pg_url_with(url, sizeof(url), "pool=16");
        REQUIRE(mp_store_open(url, &s, NULL) == 0);
        make_world(s, &w);
        REQUIRE(make_function(s, f, w.u1, NULL, "beam", "private", 1) == 0);
        /* A few rounds, each its own user: a race lost once is enough to fail. */
        for (int round = 0; round < 5; round++) {
                char user[MP_ID_LEN + 1], email[64];
                int admitted = 0;

                snprintf(email, sizeof(email), "racer%d@acme.test", round);
                make_user(s, user, email, w.company_a);
                q = json_pack("{s:s,s:s,s:i}", "company_id", w.company_a, "user_id", user, "concurrent_calls", 3);
                REQUIRE(MP_STORE(s)->quota_set(s, q, NULL) == 0);
                json_decref(q);
                pthread_barrier_init(&start, NULL, QUOTA_THREADS);
                for (int i = 0; i < QUOTA_THREADS; i++) {
                        c[i] = (struct quota_call) { .s = s, .fn = f, .owner = user, .company = w.company_a,
                                                     .start = &start };
                        REQUIRE(pthread_create(&th[i], NULL, quota_call, &c[i]) == 0);
                }
                for (int i = 0; i < QUOTA_THREADS; i++)
                        pthread_join(th[i], NULL);
                pthread_barrier_destroy(&start);
                for (int i = 0; i < QUOTA_THREADS; i++) {
                        admitted += c[i].r == 0;
                        if (c[i].r != 0)
                                CHECK_INT(c[i].r, ==, -EDQUOT);
                }
                CHECK_INT(admitted, ==, 3);
        }
        CHECK_INT(count_rows("", "SELECT COUNT(*) FROM tasks"), ==, 15);
        mp_store_close(s);
}

static const struct check_case pg_cases[] = {
        CASE(pg_quota_race),
        CASE(pg_processes_claim),
        CASE(pg_connection_killed),
        CASE(pg_unreachable),
        CASE(pg_concurrent_migrations),
        CASE(pg_idempotency_race),
};

/* Progress and live logs of a running task (events): stored only while it runs, logs
 * appended and read back after a count of characters (the same on both backends, with
 * text that is not ASCII), the first update of a run replacing a retry's leftovers,
 * task_finish emptying the live logs and keeping the progress. */
TEST(task_live) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], t1[MP_ID_LEN + 1];
        json_t *row = NULL, *p = json_pack("{s:f,s:s,s:s}", "fraction", 0.25, "message", "étape 1", "at",
                                           "2026-12-07T02:00:00.000Z");

        make_world(s, &w);
        REQUIRE(make_function(s, f1, w.u1, w.company_a, "beam", "private", 1) == 0);
        REQUIRE(make_task(s, t1, f1, w.u1, NULL, 100, NULL) == 0);
        /* queued: nothing is stored */
        CHECK_INT(ops->task_live(s, t1, p, "too early\n", true, &err), ==, 0);
        CHECK_INT(ops->task_start(s, t1, "w1", 200, &err), ==, 1);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK(json_is_null(json_object_get(row, "progress")));
        json_decref(row);
        CHECK_INT(ops->task_live(s, t1, p, "ligne é 1\n", true, &err), ==, 1);
        CHECK_INT(ops->task_live(s, t1, NULL, "ligne € 2\n", false, &err), ==, 1);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK(json_equal(json_object_get(row, "progress"), p));
        CHECK(json_object_get(row, "live_logs") == NULL); /* a task row does not carry them */
        json_decref(row);
        CHECK_INT(ops->task_live_logs(s, t1, 0, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "ligne é 1\nligne € 2\n");
        CHECK_INT(num(row, "chars"), ==, 20);
        json_decref(row);
        CHECK_INT(ops->task_live_logs(s, t1, 10, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "ligne € 2\n");
        json_decref(row);
        CHECK_INT(ops->task_live_logs(s, t1, 25, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "");
        json_decref(row);
        CHECK_INT(ops->task_live_logs(s, "00000000-0000-0000-0000-000000000000", 0, &row, &err), ==, -ENOENT);
        /* a run again (its worker died): the first update starts from nothing */
        CHECK_INT(ops->task_live(s, t1, NULL, "again\n", true, &err), ==, 1);
        CHECK_INT(ops->task_live_logs(s, t1, 0, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "again\n");
        json_decref(row);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK(json_is_null(json_object_get(row, "progress")));
        json_decref(row);
        CHECK_INT(ops->task_live(s, t1, p, NULL, false, &err), ==, 1);
        /* the end keeps the progress, empties the live logs */
        json_t *fields = json_pack("{s:s,s:s,s:n,s:I}", "status", "completed", "logs", "again\n", "live_logs",
                                   "finished_at", (json_int_t) 300);
        CHECK_INT(ops->task_finish(s, t1, fields, &err), ==, 1);
        json_decref(fields);
        CHECK_INT(ops->task_live_logs(s, t1, 0, &row, &err), ==, 0);
        CHECK_STR(str(row, "logs"), "");
        CHECK_INT(num(row, "chars"), ==, 0);
        json_decref(row);
        CHECK_INT(ops->task_get(s, t1, &row, &err), ==, 0);
        CHECK(json_equal(json_object_get(row, "progress"), p));
        json_decref(row);
        CHECK_INT(ops->task_live(s, t1, p, "late\n", false, &err), ==, 0);
        json_decref(p);
        done(s);
}


/* A function (id into f1, in a fresh world) whose new version names the environment
 * env_id: that version. */
static int function_in_env(struct mp_store *s, char f1[static MP_ID_LEN + 1], const char *env_id) {
        struct mp_error err = { 0 };
        struct world w;
        int latest = 0;

        make_world(s, &w);
        CHECK_INT(make_function(s, f1, w.u1, w.company_a, "beam", "private", 1), ==, 0);
        json_t *ver = json_pack("{s:s,s:s,s:s,s:[s],s:{},s:{},s:s}", "code", "def main():\n    return 1\n", "handler",
                                "main", "isolation", "warm", "requirements", "beamlib==1.0", "input_schema", "limits",
                                "environment_id", env_id);
        json_t *fields = json_pack("{s:s}", "visibility", "private");
        CHECK_INT(MP_STORE(s)->function_update(s, f1, fields, ver, 3000, &latest, &err), ==, 0);
        json_decref(fields);
        json_decref(ver);
        mp_error_clear(&err);
        return latest;
}

/* Environments (migration 17): stored once per id, their state changed, a failed one
 * queued again, the unfinished ones listed; a version names its environment. */
TEST(environments) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        json_t *row = NULL, *rows = NULL;
        const char *id = "6064b8ffa5240ca0a36d045c431de65cc520267c7b3263f72ca4010c12223ed9";
        json_t *env = json_pack("{s:s,s:s,s:[s],s:[{s:s,s:s,s:s}],s:s,s:I}", "id", id, "status", "queued",
                                "requirements", "beamlib==1.0", "resolved", "name", "beamlib", "version", "1.0",
                                "sha256", "8c6ca3e5", "log", "resolved\n", "created_at", (json_int_t) 1000);

        CHECK_INT(ops->env_create(s, env, &err), ==, 1);
        CHECK_INT(ops->env_create(s, env, &err), ==, 0); /* the same lock: one environment */
        CHECK_INT(ops->env_get(s, id, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "queued");
        CHECK(json_equal(json_object_get(row, "resolved"), json_object_get(env, "resolved")));
        CHECK(json_equal(json_object_get(row, "requirements"), json_object_get(env, "requirements")));
        CHECK(json_is_null(json_object_get(row, "build_ms")) || !json_object_get(row, "build_ms"));
        json_decref(row);
        CHECK_INT(ops->env_unfinished(s, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        json_decref(rows);
        CHECK_INT(ops->env_requeue(s, id, "[]", "[]", &err), ==, 0); /* not failed: unchanged */
        CHECK_INT(ops->env_set(s, id, "failed", "pip said no\n", "No matching distribution found for beamlib==1.0",
                               1234, &err), ==, 0);
        CHECK_INT(ops->env_get(s, id, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "failed");
        CHECK_STR(str(row, "build_error"), "No matching distribution found for beamlib==1.0");
        CHECK_STR(str(row, "log"), "pip said no\n");
        CHECK_INT(num(row, "build_ms"), ==, 1234);
        json_decref(row);
        CHECK_INT(ops->env_unfinished(s, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 0);
        json_decref(rows);
        CHECK_INT(ops->env_requeue(s, id, "[\"beamlib\"]", "[]", &err), ==, 1);
        CHECK_INT(ops->env_get(s, id, &row, &err), ==, 0);
        CHECK_STR(str(row, "status"), "queued");
        CHECK(json_is_null(json_object_get(row, "build_error")) || !json_object_get(row, "build_error"));
        CHECK_STR(json_string_value(json_array_get(json_object_get(row, "requirements"), 0)), "beamlib");
        json_decref(row);
        CHECK_INT(ops->env_set(s, id, "ready", "ok\n", NULL, 2000, &err), ==, 0);
        CHECK_INT(ops->env_get(s, "0000000000000000000000000000000000000000000000000000000000000000", &row, &err),
                  ==, -ENOENT);
        CHECK_INT(ops->env_set(s, "nope", "ready", NULL, NULL, -1, &err), ==, -ENOENT);

        /* A version carries its environment id. */
        char f1[MP_ID_LEN + 1];
        int latest = function_in_env(s, f1, id);
        CHECK_INT(ops->function_get_version(s, f1, latest, &row, &err), ==, 0);
        CHECK_STR(str(row, "environment_id"), id);
        json_decref(row);
        json_decref(env);
        mp_error_clear(&err);
        mp_store_close(s);
}

/* Environments on every node (migration 18): the locks the collector keeps (recent, or
 * named by a live function's version) and the sha256 of a layer's archive. */
TEST(environments_in_use_and_archive) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        json_t *row = NULL, *rows = NULL;
        const char *used = "1111111111111111111111111111111111111111111111111111111111111111";
        const char *old = "2222222222222222222222222222222222222222222222222222222222222222";
        const char *young = "3333333333333333333333333333333333333333333333333333333333333333";
        const char *ids[] = { used, old, young };
        const json_int_t at[] = { 1000, 1000, 9000 };

        for (size_t i = 0; i < ELEMENTSOF(ids); i++) {
                json_t *env = json_pack("{s:s,s:s,s:[s],s:[{s:s,s:s,s:s}],s:s,s:I}", "id", ids[i], "status", "ready",
                                        "requirements", "beamlib", "resolved", "name", "beamlib", "version", "1.0",
                                        "sha256", ids[i], "log", "", "created_at", at[i]);
                CHECK_INT(ops->env_create(s, env, &err), ==, 1);
                json_decref(env);
        }
        char f1[MP_ID_LEN + 1];
        (void) function_in_env(s, f1, used);
        /* Kept: the one a live version names, and the one made at 5000 or after. */
        CHECK_INT(ops->env_in_use(s, 5000, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 2);
        CHECK_STR(str(json_array_get(rows, 0), "id"), used);
        CHECK_STR(str(json_array_get(rows, 1), "id"), young);
        CHECK_STR(json_string_value(json_object_get(json_array_get(json_object_get(json_array_get(rows, 1), "resolved"),
                                                                   0), "sha256")), young);
        json_decref(rows);
        /* Its function deleted, the version keeps nothing. */
        CHECK_INT(ops->function_delete(s, f1, 7000, &err), ==, 0);
        CHECK_INT(ops->env_in_use(s, 5000, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        CHECK_STR(str(json_array_get(rows, 0), "id"), young);
        json_decref(rows);

        CHECK_INT(ops->env_get(s, old, &row, &err), ==, 0);
        CHECK(!json_is_string(json_object_get(row, "archive_sha256")));
        json_decref(row);
        CHECK_INT(ops->env_set_archive(s, old, "abcdef", &err), ==, 0);
        CHECK_INT(ops->env_get(s, old, &row, &err), ==, 0);
        CHECK_STR(str(row, "archive_sha256"), "abcdef");
        json_decref(row);
        CHECK_INT(ops->env_set_archive(s, old, NULL, &err), ==, 0);
        CHECK_INT(ops->env_get(s, old, &row, &err), ==, 0);
        CHECK(!json_is_string(json_object_get(row, "archive_sha256")));
        json_decref(row);
        CHECK_INT(ops->env_set_archive(s, "nope", "abcdef", &err), ==, -ENOENT);
        mp_error_clear(&err);
        mp_store_close(s);
}

/* A review step is a compare-and-set on the version's review: two steps that read the
 * same review both try to write; the second, stale, is refused with 409. */
TEST(review_compare_and_set) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1];
        json_t *row = NULL, *read = NULL;

        make_world(s, &w);
        CHECK_INT(make_function(s, f1, w.u1, w.company_a, "beam", "private", 1000), ==, 0);
        json_t *submitted = json_pack("{s:s,s:n,s:n,s:[]}", "status", "submitted", "reviewer_id", "at", "comments");
        json_t *approved = json_pack("{s:s,s:s,s:n,s:[]}", "status", "approved", "reviewer_id", w.u2, "at",
                                     "comments");
        json_t *rejected = json_pack("{s:s,s:s,s:n,s:[]}", "status", "rejected", "reviewer_id", w.u2, "at",
                                     "comments");

        /* unset: only a writer that read it unset wins */
        CHECK_INT(ops->version_swap_review(s, f1, 1, submitted, approved, &err), ==, -ESTALE);
        CHECK_INT(err.status, ==, 409);
        mp_error_clear(&err);
        CHECK_INT(ops->version_swap_review(s, f1, 1, NULL, submitted, &err), ==, 0);
        /* two steps read "submitted"; the approval lands, the rejection finds it changed */
        CHECK_INT(ops->function_get_version(s, f1, 1, &read, &err), ==, 0);
        json_t *seen = json_object_get(read, "review");
        CHECK(json_equal(seen, submitted));
        CHECK_INT(ops->version_swap_review(s, f1, 1, seen, approved, &err), ==, 0);
        CHECK_INT(ops->version_swap_review(s, f1, 1, seen, rejected, &err), ==, -ESTALE);
        CHECK_INT(err.status, ==, 409);
        mp_error_clear(&err);
        CHECK_INT(ops->function_get_version(s, f1, 1, &row, &err), ==, 0);
        CHECK_STR(str(json_object_get(row, "review"), "status"), "approved");
        json_decref(row);
        /* a missing version is never written */
        CHECK_INT(ops->version_swap_review(s, f1, 7, NULL, submitted, &err), ==, -ESTALE);
        mp_error_clear(&err);
        json_decref(read);
        json_decref(submitted);
        json_decref(approved);
        json_decref(rejected);
        mp_error_clear(&err);
        done(s);
}

/* The versions whose verification is still running (the sweep at start): only those,
 * and only of functions not deleted; the outcome's cases may hold "running" as a value
 * and are still not listed once it has settled. */
TEST(verification_running) {
        struct mp_store *s = fresh();
        const struct mp_store_ops *ops = MP_STORE(s);
        struct mp_error err = { 0 };
        struct world w;
        char f1[MP_ID_LEN + 1], f2[MP_ID_LEN + 1], f3[MP_ID_LEN + 1];
        json_t *rows = NULL;
        json_t *running = json_pack("{s:s,s:[]}", "status", "running", "cases");
        json_t *passed = json_pack("{s:s,s:[{s:s,s:{s:s}}]}", "status", "passed", "cases", "name", "a", "got",
                                   "status", "running");

        make_world(s, &w);
        CHECK_INT(make_function(s, f1, w.u1, w.company_a, "beam", "private", 1000), ==, 0);
        CHECK_INT(make_function(s, f2, w.u1, w.company_a, "plate", "private", 1000), ==, 0);
        CHECK_INT(make_function(s, f3, w.u1, w.company_a, "shell", "private", 1000), ==, 0);
        CHECK_INT(ops->verification_running(s, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 0);
        json_decref(rows);
        CHECK_INT(ops->version_set_meta(s, f1, 1, "verification", running, &err), ==, 0);
        CHECK_INT(ops->version_set_meta(s, f2, 1, "verification", passed, &err), ==, 0);
        CHECK_INT(ops->version_set_meta(s, f3, 1, "verification", running, &err), ==, 0);
        CHECK_INT(ops->function_delete(s, f3, 2000, &err), ==, 0);
        CHECK_INT(ops->verification_running(s, &rows, &err), ==, 0);
        CHECK_INT(json_array_size(rows), ==, 1);
        CHECK_STR(str(json_array_get(rows, 0), "function_id"), f1);
        CHECK_INT(json_integer_value(json_object_get(json_array_get(rows, 0), "version")), ==, 1);
        json_decref(rows);
        json_decref(running);
        json_decref(passed);
        mp_error_clear(&err);
        done(s);
}

static const struct check_case cases[] = {
        CASE(open_bad_urls),
        CASE(identity),
        CASE(tokens),
        CASE(functions),
        CASE(function_visibility),
        CASE(pagination),
        CASE(bad_cursors),
        CASE(tasks_and_idempotency),
        CASE(jobs),
        CASE(concurrent_claims),
        CASE(reopen_and_migrations),
        CASE(scopes_sessions_audit),
        CASE(companies_and_catalogue),
        CASE(durability),
        CASE(concurrent_writes),
        CASE(workflows),
        CASE(workflow_run_concurrent_steps),
        CASE(workflow_run_cache),
        CASE(studies_and_cache),
        CASE(retention),
        CASE(task_live),
        CASE(usage_and_quotas),
        CASE(usage_storage_given_back),
        CASE(environments),
        CASE(review_compare_and_set),
        CASE(verification_running),
        CASE(environments_in_use_and_archive),
};

/* Not CHECK_MAIN: each case runs once per backend, named case[backend]. The last line
 * is the total, as tests/run.sh reads it; a line per backend comes before it. */
int check_failed_now;

static void run_cases(const struct check_case *list, size_t n, const char *filter, int *passed,
                      int *failed) {
        for (size_t i = 0; i < n; i++) {
                char name[128];
                snprintf(name, sizeof(name), "%s[%s]", list[i].name, backend);
                if (filter && !strstr(name, filter))
                        continue;
                check_failed_now = 0;
                list[i].fn();
                printf("%s %s\n", check_failed_now ? "FAIL" : "ok  ", name);
                fflush(stdout);
                if (check_failed_now)
                        (*failed)++;
                else
                        (*passed)++;
        }
}

int main(int argc, char **argv) {
        const char *filter = argc > 1 ? argv[1] : NULL;
        int passed = 0, failed = 0, p = 0, f = 0;

        run_cases(cases, ELEMENTSOF(cases), filter, &p, &f);
        printf("sqlite: %d passed, %d failed\n", p, f);
        passed += p;
        failed += f;

        pg_url = getenv("MECAPY_TEST_POSTGRES_URL");
        if (pg_url && *pg_url) {
                backend = "postgres";
                p = f = 0;
                run_cases(cases, ELEMENTSOF(cases), filter, &p, &f);
                run_cases(pg_cases, ELEMENTSOF(pg_cases), filter, &p, &f);
                printf("postgres: %d passed, %d failed\n", p, f);
                passed += p;
                failed += f;
        } else {
                printf("postgres: skipped (set MECAPY_TEST_POSTGRES_URL to a server's URL, "
                       "see tests/services/postgres.sh)\n");
        }
        printf("%d passed, %d failed\n", passed, failed);
        return failed ? 1 : 0;
}
