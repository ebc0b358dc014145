#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
#include "exec/exec.h"
#include "queue/queue.h"

static json_t *split_list(const char *csv) {
        json_t *a = json_array();
        const char *p = csv;
        while (p && *p) {
                const char *e = strchr(p, ',');
                size_t n = e ? (size_t) (e - p) : strlen(p);
                if (n)
                        json_array_append_new(a, json_stringn(p, n));
                p = e ? e + 1 : NULL;
        }
        return a;
}

/* Temporary files of answers (a PDF sheet, a workbook, an export) go in the data folder's
 * tmp/, not /tmp: they may be large, and /tmp may be a small tmpfs. What a crash left
 * there an hour ago or more is removed at start (the folder may be shared by a server
 * and workers on one machine, whose files are younger). */
#define SCRATCH_STALE_S 3600
static int scratch_open(struct mp_core *c, struct mp_error *err) {
        int r;

        if (asprintf(&c->scratch, "%s/tmp", c->config->data_dir) < 0) {
                c->scratch = NULL;
                return -ENOMEM;
        }
        if ((r = mp_mkdir_p(c->scratch, 0700)) < 0)
                return mp_error_set(err, -r, 500, "config", "cannot create the temporary folder %s: %s", c->scratch,
                                    strerror(-r));
        DIR *d = opendir(c->scratch);
        struct dirent *de;
        time_t now = time(NULL);
        while (d && (de = readdir(d))) {
                struct stat st;
                if (de->d_name[0] != '.' && fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                    S_ISREG(st.st_mode) && st.st_mtime + SCRATCH_STALE_S < now)
                        (void) unlinkat(dirfd(d), de->d_name, 0);
        }
        if (d)
                closedir(d);
        return 0;
}

int mp_core_open(const struct mp_config *config, struct mp_core **ret, struct mp_error *err) {
        struct mp_core *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->config = config;
        mp_core_stats_init(&c->stats);
        if ((r = mp_auth_init()) < 0) {
                mp_error_set(err, -r, 500, "internal", "libsodium could not start");
                goto fail;
        }
        if ((r = mp_mkdir_p(config->data_dir, 0700)) < 0) {
                mp_error_set(err, -r, 500, "config", "cannot create the data folder %s: %s",
                             config->data_dir, strerror(-r));
                goto fail;
        }
        if ((r = scratch_open(c, err)) < 0)
                goto fail;
        if ((r = mp_store_open(config->db_url, &c->store, err)) < 0)
                goto fail;
        if ((r = mp_blobs_open(config->blobs_url, &c->blobs, err)) < 0)
                goto fail;
        if ((r = mp_queue_open(config->queue_url, c->store, &c->queue, err)) < 0)
                goto fail;
        if (config->oidc_issuer) {
                struct mp_oidc_settings os = {
                        .issuer = config->oidc_issuer, .audience = config->oidc_audience,
                        .client_id = config->oidc_client_id, .client_secret = config->oidc_client_secret,
                        .company_claim = config->oidc_company_claim, .role_map = config->oidc_role_map,
                };
                if ((r = mp_oidc_new(&os, &c->oidc, err)) < 0)
                        goto fail;
        }
        if ((r = mp_core_envs_open(c, err)) < 0)
                goto fail;
        c->policy = json_pack("{s:o,s:o}", "forbidden_imports", split_list(config->forbidden_imports),
                              "forbidden_calls", split_list(config->forbidden_calls));
        *ret = c;
        return 0;
fail:
        mp_core_close(c);
        return r;
}

void mp_core_close(struct mp_core *c) {
        if (!c)
                return;
        mp_core_envs_close(c);
        mp_queue_close(c->queue);
        mp_blobs_close(c->blobs);
        mp_store_close(c->store);
        mp_oidc_free(c->oidc);
        if (c->policy)
                json_decref(c->policy);
        free(c->scratch);
        free(c);
}

/* --- helpers shared by the core files --- */

int mp_core_field_string(json_t *body, const char *key, bool required, size_t max,
                         const char **ret, struct mp_error *err) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v)) {
                if (required) {
                        mp_error_add_field(err, key, "is required");
                        return -EINVAL;
                }
                *ret = NULL;
                return 0;
        }
        if (!json_is_string(v)) {
                mp_error_add_field(err, key, "must be a string");
                return -EINVAL;
        }
        if (json_string_length(v) > max) {
                mp_error_add_field(err, key, "is longer than %zu bytes", max);
                return -EINVAL;
        }
        if (strlen(json_string_value(v)) != json_string_length(v)) {
                mp_error_add_field(err, key, "contains a NUL character");
                return -EINVAL;
        }
        *ret = json_string_value(v);
        return 0;
}

int mp_core_field_int(json_t *body, const char *key, long min, long max, int *ret,
                      struct mp_error *err) {
        json_t *v = json_object_get(body, key);
        if (!v || json_is_null(v))
                return 0;
        if (!json_is_integer(v)) {
                mp_error_add_field(err, key, "must be a whole number");
                return -EINVAL;
        }
        if (json_integer_value(v) < min || json_integer_value(v) > max) {
                mp_error_add_field(err, key, "must be between %ld and %ld", min, max);
                return -EINVAL;
        }
        *ret = (int) json_integer_value(v);
        return 0;
}

int mp_core_validation_done(struct mp_error *err, const char *what) {
        size_t n = err && err->errors ? json_array_size(err->errors) : 0;
        char list[768] = "";
        size_t off = 0;

        if (n == 0)
                return 0;
        for (size_t i = 0; i < n && off < sizeof(list) - 1; i++) {
                json_t *e = json_array_get(err->errors, i);
                int w = snprintf(list + off, sizeof(list) - off, "%s%s: %s", i ? "; " : "",
                                 json_string_value(json_object_get(e, "path")),
                                 json_string_value(json_object_get(e, "message")));
                if (w < 0)
                        break;
                off += (size_t) w;
        }
        json_t *errors = TAKE_PTR(err->errors);
        mp_error_set(err, EINVAL, 422, "validation", "%zu %s %s invalid: %s", n, what,
                     n == 1 ? "is" : "are", list);
        err->errors = errors;
        return -EINVAL;
}

void mp_core_shape(json_t *row, const char *const *times, const char *const *drop) {
        for (; times && *times; times++) {
                json_t *v = json_object_get(row, *times);
                if (!v)
                        continue;
                if (json_is_integer(v) && json_integer_value(v) > 0) {
                        char buf[40];
                        mp_format_time(json_integer_value(v), buf, sizeof(buf));
                        json_object_set_new(row, *times, json_string(buf));
                } else
                        json_object_set_new(row, *times, json_null());
        }
        for (; drop && *drop; drop++)
                json_object_del(row, *drop);
}

int mp_core_list_failed(int r, const char *cursor, struct mp_error *err) {
        if (r == -EINVAL)
                return mp_error_set(err, EINVAL, 400, "bad_request",
                                    "cursor \"%.64s\" is not one this server gave", cursor ? cursor : "");
        return r;
}

json_t *mp_core_page(json_t *items, struct mp_store_list *list) {
        json_t *page = json_pack("{s:o,s:s?}", "items", items, "next_cursor", list->next_cursor);
        json_decref(list->items);
        free(list->next_cursor);
        list->items = NULL;
        list->next_cursor = NULL;
        return page;
}

int mp_core_not_found(struct mp_error *err, const char *what, const char *id) {
        return mp_error_set(err, ENOENT, 404, "not_found", "no %s with id \"%.64s\"", what, id);
}

void mp_core_task_ended(struct mp_core *core, const char *task_id) {
        _cleanup_error_ struct mp_error err = { 0 };
        /* Through the queue, so waiters in every process hear it. A lost notice only
         * delays a waiter until its own deadline: the store has the end. */
        if (MP_QUEUE(core->queue)->notify_done(core->queue, task_id, &err) < 0)
                mp_debug("task %s ended, but the notice was not sent: %s", task_id, err.message);
}

bool mp_core_can_see_function(const struct mp_principal *p, json_t *fn) {
        const char *owner = json_string_value(json_object_get(fn, "owner_id"));
        const char *vis = json_string_value(json_object_get(fn, "visibility"));
        const char *company = json_string_value(json_object_get(fn, "company_id"));

        if (owner && !strcmp(owner, p->user_id))
                return true;
        if (vis && !strcmp(vis, "public"))
                return true;
        return vis && !strcmp(vis, "company") && company && p->company_id[0] &&
               !strcmp(company, p->company_id);
}

/* --- accounts --- */

static void fold_email(const char *in, char *out, size_t size) {
        size_t i = 0;
        for (; in[i] && i + 1 < size; i++)
                out[i] = (char) tolower((unsigned char) in[i]);
        out[i] = 0;
}

static bool email_plausible(const char *e) {
        const char *at = strchr(e, '@');
        return at && at != e && at[1] && !strchr(at + 1, '@') && !strpbrk(e, " \t\r\n");
}

static json_t *user_public(json_t *user) {
        json_t *u = json_pack("{s:O,s:O,s:O,s:O}", "id", json_object_get(user, "id"), "email",
                              json_object_get(user, "email"), "role", json_object_get(user, "role"),
                              "created_at", json_object_get(user, "created_at"));
        json_t *company = json_object_get(user, "company");
        json_object_set(u, "company", company ? company : json_null());
        static const char *const times[] = { "created_at", NULL };
        mp_core_shape(u, times, NULL);
        return u;
}

int mp_core_create_user(struct mp_core *core, const char *email, const char *password,
                        const char *company, const char *role, json_t **ret_user,
                        struct mp_error *err) {
        char folded[MP_MAX_EMAIL_LEN + 1], hash[MP_AUTH_HASH_LEN], id[MP_ID_LEN + 1];
        _cleanup_json_ json_t *comp = NULL, *user = NULL;
        int r;

        if (!email || strlen(email) > MP_MAX_EMAIL_LEN || !email_plausible(email))
                return mp_error_set(err, EINVAL, 422, "validation", "email \"%s\" is not an email address",
                                    email ? email : "");
        if (!password || strlen(password) < MP_MIN_PASSWORD_LEN || strlen(password) > MP_MAX_PASSWORD_LEN)
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "password must be %d to %d characters", MP_MIN_PASSWORD_LEN,
                                    MP_MAX_PASSWORD_LEN);
        if (!role)
                role = "member";
        if (strcmp(role, "admin") && strcmp(role, "member") && strcmp(role, "viewer"))
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "role must be admin, member or viewer, not \"%s\"", role);
        fold_email(email, folded, sizeof(folded));
        if (company && *company) {
                r = MP_STORE(core->store)->company_ensure(core->store, company, &comp, err);
                if (r < 0)
                        return r;
        }
        if ((r = mp_auth_hash_password(password, hash)) < 0)
                return mp_error_set(err, -r, 500, "internal", "could not hash the password");
        mp_id_new(id);
        user = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", id, "email", folded, "password_hash", hash,
                         "role", role, "created_at", (json_int_t) mp_now_ms());
        json_object_set(user, "company_id", comp ? json_object_get(comp, "id") : json_null());
        r = MP_STORE(core->store)->user_create(core->store, user, err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict", "a user with email %s already exists",
                                    folded);
        if (r < 0)
                return r;
        if (ret_user) {
                json_object_set(user, "company", comp ? json_object_get(comp, "name") : json_null());
                *ret_user = user_public(user);
        }
        return 0;
}

/* --- readiness --- */

int mp_core_ready(struct mp_core *core, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *user = NULL;
        struct mp_error e = { 0 };
        int r;

        /* A trivial read: a user by an id no one has (-ENOENT is an answer, so: up). */
        r = MP_STORE(core->store)->user_get(core->store, "id", "00000000-0000-4000-8000-000000000000",
                                            &user, &e);
        if (r < 0 && r != -ENOENT) {
                r = mp_error_set(err, EIO, 503, "not_ready", "not ready: the store is down (%s)",
                                 e.message[0] ? e.message : strerror(-r));
                mp_error_clear(&e);
                return r;
        }
        mp_error_clear(&e);
        if ((r = MP_QUEUE(core->queue)->ping(core->queue, &e)) < 0) {
                r = mp_error_set(err, EIO, 503, "not_ready", "not ready: the queue is down (%s)",
                                 e.message[0] ? e.message : strerror(-r));
                mp_error_clear(&e);
                return r;
        }
        mp_error_clear(&e);
        if ((r = MP_BLOBS(core->blobs)->ping(core->blobs, &e)) < 0) {
                r = mp_error_set(err, EIO, 503, "not_ready", "not ready: the blobs (object storage) are down (%s)",
                                 e.message[0] ? e.message : strerror(-r));
                mp_error_clear(&e);
                return r;
        }
        mp_error_clear(&e);
        *ret = json_pack("{s:s,s:{s:s,s:s,s:s}}", "status", "ok", "checks", "store", "ok", "queue", "ok",
                         "blobs", "ok");
        return *ret ? 0 : -ENOMEM;
}

/* --- scopes of API tokens --- */

static const char *const scope_names[] = {
        "functions:read", "functions:write", "tasks:read", "tasks:write", "execute", "tokens",
};

const char *mp_core_scope_name(unsigned bit) {
        for (size_t i = 0; i < ELEMENTSOF(scope_names); i++)
                if (bit == 1u << i)
                        return scope_names[i];
        return NULL;
}

/* The names of the bits, in the documented order. */
static json_t *scopes_json(unsigned bits) {
        json_t *a = json_array();
        for (size_t i = 0; a && i < ELEMENTSOF(scope_names); i++)
                if (bits & (1u << i))
                        json_array_append_new(a, json_string(scope_names[i]));
        return a;
}

/* A stored scopes column: null (tokens made before scopes existed) is every scope. */
static unsigned scopes_bits(json_t *v) {
        unsigned bits = 0;
        size_t i;
        json_t *s;

        if (!json_is_array(v))
                return MP_SCOPE_ALL;
        json_array_foreach(v, i, s)
                for (size_t k = 0; k < ELEMENTSOF(scope_names); k++)
                        if (json_is_string(s) && !strcmp(json_string_value(s), scope_names[k]))
                                bits |= 1u << k;
        return bits;
}

static int new_token_scoped(struct mp_core *core, const char *user_id, const char *kind,
                            const char *name, int64_t ttl_ms, json_t *scopes, json_t **ret,
                            struct mp_error *err);

static int new_token(struct mp_core *core, const char *user_id, const char *kind,
                     const char *name, int64_t ttl_ms, json_t **ret, struct mp_error *err) {
        return new_token_scoped(core, user_id, kind, name, ttl_ms, NULL, ret, err);
}

static int new_token_scoped(struct mp_core *core, const char *user_id, const char *kind,
                            const char *name, int64_t ttl_ms, json_t *scopes, json_t **ret,
                            struct mp_error *err) {
        char token[MP_AUTH_TOKEN_LEN + 1], hash[MP_AUTH_TOKEN_HASH_LEN + 1], id[MP_ID_LEN + 1];
        int64_t now = mp_now_ms();
        _cleanup_json_ json_t *row = NULL;
        int r;

        mp_auth_new_token(token, hash);
        mp_id_new(id);
        row = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I}", "id", id, "user_id", user_id,
                        "token_hash", hash, "kind", kind, "name", name, "created_at", (json_int_t) now,
                        "expires_at", (json_int_t) (ttl_ms ? now + ttl_ms : 0), "revoked_at",
                        (json_int_t) 0, "last_used_at", (json_int_t) 0);
        if (scopes)
                json_object_set(row, "scopes", scopes);
        r = MP_STORE(core->store)->token_create(core->store, row, err);
        if (r < 0)
                return r;
        json_object_set_new(row, "token", json_string(token));
        static const char *const times[] = { "created_at", "expires_at", "last_used_at", NULL };
        static const char *const drop[] = { "token_hash", "user_id", "revoked_at", "kind", NULL };
        mp_core_shape(row, times, drop);
        *ret = TAKE_PTR(row);
        return 0;
}

int mp_core_login(struct mp_core *core, json_t *body, json_t **ret, struct mp_error *err) {
        return mp_core_login_from(core, body, NULL, ret, err);
}

/* A failed login, for the admins of the account's company (unknown emails: of none). */
static int login_failed(struct mp_core *core, const char *folded, json_t *user, const char *client,
                        struct mp_error *err) {
        mp_core_audit(core, "login_failed", NULL,
                      user ? json_string_value(json_object_get(user, "company_id")) : NULL, client,
                      user ? json_string_value(json_object_get(user, "id")) : NULL,
                      json_pack("{s:s}", "email", folded));
        return mp_error_set(err, EACCES, 401, "unauthorized", "wrong email or password");
}

int mp_core_login_from(struct mp_core *core, json_t *body, const char *client, json_t **ret,
                       struct mp_error *err) {
        const char *email = NULL, *password = NULL;
        char folded[MP_MAX_EMAIL_LEN + 1];
        _cleanup_json_ json_t *user = NULL, *tok = NULL;
        int r;

        if (!core->config->auth_local)
                return mp_error_set(err, EACCES, 403, "forbidden",
                                    "password login is off on this server; log in with OpenID "
                                    "(GET /api/v1/auth/oidc/login)");
        mp_core_field_string(body, "email", true, MP_MAX_EMAIL_LEN, &email, err);
        mp_core_field_string(body, "password", true, MP_MAX_PASSWORD_LEN, &password, err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        fold_email(email, folded, sizeof(folded));
        r = MP_STORE(core->store)->user_get(core->store, "email", folded, &user, err);
        if (r == -ENOENT) {
                /* Spend the same time as a real check so timing does not reveal which
                 * emails have accounts. */
                mp_auth_verify_password("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
                                        "2bRrRUOA0bbwE/nvxkYHwbqFZlh0DLAUsfzS1WsuHxM", password);
                mp_error_clear(err);
                return login_failed(core, folded, NULL, client, err);
        }
        if (r < 0)
                return r;
        /* A user made by an OpenID provider has no password: it logs in there only. */
        if (!json_string_value(json_object_get(user, "password_hash"))) {
                mp_auth_verify_password("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"
                                        "2bRrRUOA0bbwE/nvxkYHwbqFZlh0DLAUsfzS1WsuHxM", password);
                return login_failed(core, folded, user, client, err);
        }
        if (!mp_auth_verify_password(json_string_value(json_object_get(user, "password_hash")), password))
                return login_failed(core, folded, user, client, err);
        r = new_token(core, json_string_value(json_object_get(user, "id")), "session", "login",
                      (int64_t) MP_SESSION_TTL_S * 1000, &tok, err);
        if (r < 0)
                return r;
        mp_core_audit(core, "login", json_string_value(json_object_get(user, "id")),
                      json_string_value(json_object_get(user, "company_id")), client,
                      json_string_value(json_object_get(tok, "id")), NULL);
        *ret = json_pack("{s:O,s:O,s:o}", "token", json_object_get(tok, "token"), "expires_at",
                         json_object_get(tok, "expires_at"), "user", user_public(user));
        return 0;
}

int mp_core_signup(struct mp_core *core, json_t *body, const char *client, json_t **ret,
                   struct mp_error *err) {
        const char *email = NULL, *password = NULL;
        _cleanup_json_ json_t *user = NULL;
        int r;

        /* Off: the route does not exist, as far as a client can tell. */
        if (!core->config->allow_signup || !core->config->auth_local)
                return mp_error_set(err, ENOENT, 404, "not_found", "no route auth/signup");
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "email", true, MP_MAX_EMAIL_LEN, &email, err);
        mp_core_field_string(body, "password", true, MP_MAX_PASSWORD_LEN, &password, err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        /* A member of no company: joining a company is an admin's act, never a claim. */
        if ((r = mp_core_create_user(core, email, password, NULL, "member", &user, err)) < 0)
                return r;
        const char *uid = json_string_value(json_object_get(user, "id"));
        mp_core_audit(core, "signup", uid, NULL, client, uid,
                      json_pack("{s:O}", "email", json_object_get(user, "email")));
        *ret = TAKE_PTR(user);
        return 0;
}

int mp_core_password_change(struct mp_core *core, const struct mp_principal *p, json_t *body,
                            struct mp_error *err) {
        const char *current = NULL, *fresh = NULL, *hash;
        char new_hash[MP_AUTH_HASH_LEN];
        _cleanup_json_ json_t *user = NULL;
        int r;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "current_password", true, MP_MAX_PASSWORD_LEN, &current, err);
        mp_core_field_string(body, "new_password", true, MP_MAX_PASSWORD_LEN, &fresh, err);
        if (fresh && (strlen(fresh) < MP_MIN_PASSWORD_LEN))
                mp_error_add_field(err, "new_password", "must be %d to %d characters",
                                   MP_MIN_PASSWORD_LEN, MP_MAX_PASSWORD_LEN);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = MP_STORE(core->store)->user_get(core->store, "id", p->user_id, &user, err)) < 0)
                return r;
        hash = json_string_value(json_object_get(user, "password_hash"));
        if (!hash)
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "this account signs in with its OpenID provider: change the "
                                    "password there");
        if (!mp_auth_verify_password(hash, current)) {
                mp_error_add_field(err, "current_password", "is not the account's password");
                mp_core_validation_done(err, "fields");
                return -EACCES;
        }
        if ((r = mp_auth_hash_password(fresh, new_hash)) < 0)
                return mp_error_set(err, -r, 500, "internal", "could not hash the password");
        if ((r = MP_STORE(core->store)->user_set_password(core->store, p->user_id, new_hash, err)) < 0)
                return r;
        /* Whoever else holds a session (a stolen cookie, a forgotten browser) is out; the
         * session that changed it stays, and API tokens stay: they are revoked one by
         * one, on purpose. */
        r = MP_STORE(core->store)->token_revoke_sessions(core->store, p->user_id,
                                                         p->session ? p->token_id : NULL,
                                                         mp_now_ms(), err);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, "password_changed", p->user_id,
                         json_pack("{s:i}", "sessions_revoked", r));
        return 0;
}

/* --- OpenID Connect: users known by their provider's subject --- */

/* The user behind verified claims: created on first sight, and its email, role and
 * company refreshed from the provider on every later sight (the provider is the
 * authority on them). *ret_user is the stored row (with "company"). */
static int oidc_user(struct mp_core *core, json_t *claims, json_t **ret_user, struct mp_error *err) {
        _cleanup_json_ json_t *user = NULL, *comp = NULL;
        struct mp_oidc_identity id;
        const char *company_id = NULL;
        int r;

        if ((r = mp_oidc_identity(core->oidc, claims, &id, err)) < 0)
                return r;
        if (id.company[0]) {
                if ((r = MP_STORE(core->store)->company_ensure(core->store, id.company, &comp, err)) < 0)
                        return r;
                company_id = json_string_value(json_object_get(comp, "id"));
        }
        r = MP_STORE(core->store)->user_get(core->store, "external_id", id.sub, &user, err);
        if (r == -ENOENT) {
                char uid[MP_ID_LEN + 1];
                _cleanup_json_ json_t *row = NULL;
                mp_error_clear(err);
                mp_id_new(uid);
                row = json_pack("{s:s,s:s,s:s,s:s,s:I}", "id", uid, "email", id.email, "role", id.role,
                                "external_id", id.sub, "created_at", (json_int_t) mp_now_ms());
                json_object_set_new(row, "company_id", company_id ? json_string(company_id) : json_null());
                r = MP_STORE(core->store)->user_create(core->store, row, err);
                /* An account with that email but not this subject (a local account, or
                 * one of another subject) is not taken over: linking is an admin's act. */
                if (r == -EEXIST)
                        return mp_error_set(err, EEXIST, 403, "forbidden",
                                            "an account with the email %s already exists and is not "
                                            "linked to this OpenID identity", id.email);
                if (r < 0)
                        return r;
                mp_info("OpenID: new user %s (%s, %s)", id.email, id.role,
                        id.company[0] ? id.company : "no company");
                return MP_STORE(core->store)->user_get(core->store, "id", uid, ret_user, err);
        }
        if (r < 0)
                return r;
        const char *old_email = json_string_value(json_object_get(user, "email"));
        const char *old_role = json_string_value(json_object_get(user, "role"));
        const char *old_cid = json_string_value(json_object_get(user, "company_id"));
        if (strcmp(old_email ?: "", id.email) || strcmp(old_role ?: "", id.role) ||
            strcmp(old_cid ?: "", company_id ?: "")) {
                const char *uid = json_string_value(json_object_get(user, "id"));
                r = MP_STORE(core->store)->user_set_identity(core->store, uid, id.email, id.role,
                                                             company_id, err);
                if (r == -EEXIST)
                        return mp_error_set(err, EEXIST, 403, "forbidden",
                                            "the email %s is taken by another account", id.email);
                if (r < 0)
                        return r;
                json_t *fresh = NULL;
                if ((r = MP_STORE(core->store)->user_get(core->store, "id", uid, &fresh, err)) < 0)
                        return r;
                json_decref(user);
                user = fresh;
        }
        *ret_user = TAKE_PTR(user);
        return 0;
}

static int oidc_authenticate(struct mp_core *core, const char *token, struct mp_principal *ret,
                             struct mp_error *err) {
        _cleanup_json_ json_t *claims = NULL, *user = NULL;
        int r;

        if ((r = mp_oidc_verify_access_token(core->oidc, token, &claims, err)) < 0)
                return r;
        if ((r = oidc_user(core, claims, &user, err)) < 0)
                return r;
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->user_id, sizeof(ret->user_id), "%s", json_string_value(json_object_get(user, "id")));
        const char *cid = json_string_value(json_object_get(user, "company_id"));
        snprintf(ret->company_id, sizeof(ret->company_id), "%s", cid ? cid : "");
        snprintf(ret->role, sizeof(ret->role), "%s", json_string_value(json_object_get(user, "role")));
        snprintf(ret->email, sizeof(ret->email), "%s", json_string_value(json_object_get(user, "email")));
        ret->session = false; /* the provider's token: nothing of ours to log out */
        ret->scopes = MP_SCOPE_ALL;
        ret->external = true;
        /* What it mints lives no longer than it (its exp was checked: in the future). */
        json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
        int64_t bound = mp_now_ms() + (int64_t) MP_OIDC_TOKEN_MAX_AGE_S * 1000;
        ret->expires_at_ms = exp > 0 && exp * 1000 < bound ? (int64_t) exp * 1000 : bound;
        return 0;
}

int mp_core_authenticate(struct mp_core *core, const char *token, struct mp_principal *ret,
                         struct mp_error *err) {
        char hash[MP_AUTH_TOKEN_HASH_LEN + 1];
        _cleanup_json_ json_t *found = NULL;
        json_t *user, *tok;
        int r;

        /* A bearer that is not one of ours (mpy_...) and has a JWT's shape is an access
         * token of the OpenID provider, when one is configured. */
        if (core->oidc && token && strncmp(token, "mpy_", 4) && mp_oidc_looks_like_jwt(token))
                return oidc_authenticate(core, token, ret, err);
        if (!token || strlen(token) < 8 || strlen(token) > 512)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "missing or malformed bearer token");
        mp_auth_token_hash(token, hash);
        r = MP_STORE(core->store)->token_lookup(core->store, hash, mp_now_ms(), &found, err);
        if (r == -ENOENT)
                return mp_error_set(err, EACCES, 401, "unauthorized",
                                    "the token is unknown, expired or revoked");
        if (r < 0)
                return r;
        user = json_object_get(found, "user");
        tok = json_object_get(found, "token");
        memset(ret, 0, sizeof(*ret));
        snprintf(ret->user_id, sizeof(ret->user_id), "%s", json_string_value(json_object_get(user, "id")));
        snprintf(ret->token_id, sizeof(ret->token_id), "%s", json_string_value(json_object_get(tok, "id")));
        const char *cid = json_string_value(json_object_get(user, "company_id"));
        snprintf(ret->company_id, sizeof(ret->company_id), "%s", cid ? cid : "");
        snprintf(ret->role, sizeof(ret->role), "%s", json_string_value(json_object_get(user, "role")));
        snprintf(ret->email, sizeof(ret->email), "%s", json_string_value(json_object_get(user, "email")));
        ret->session = !strcmp(json_string_value(json_object_get(tok, "kind")) ?: "", "session");
        ret->scopes = ret->session ? MP_SCOPE_ALL : scopes_bits(json_object_get(tok, "scopes"));
        ret->expires_at_ms = json_integer_value(json_object_get(tok, "expires_at"));
        ret->external = json_string_value(json_object_get(user, "external_id")) != NULL;
        /* An OpenID user's role and company are the provider's word, re-read at each of
         * its logins: a credential of ours holds it at most MP_OIDC_TOKEN_MAX_AGE_S (new
         * tokens are minted with that expiry; this also ends older ones). */
        if (ret->external) {
                int64_t made = json_integer_value(json_object_get(tok, "created_at"));
                if (made + (int64_t) MP_OIDC_TOKEN_MAX_AGE_S * 1000 <= mp_now_ms()) {
                        memset(ret, 0, sizeof(*ret));
                        return mp_error_set(err, EACCES, 401, "unauthorized",
                                            "the token is unknown, expired or revoked (an OpenID user's "
                                            "tokens last at most %d hours: log in again)",
                                            MP_OIDC_TOKEN_MAX_AGE_S / 3600);
                }
                int64_t bound = made + (int64_t) MP_OIDC_TOKEN_MAX_AGE_S * 1000;
                if (!ret->expires_at_ms || ret->expires_at_ms > bound)
                        ret->expires_at_ms = bound;
        }
        return 0;
}

int mp_core_logout(struct mp_core *core, const struct mp_principal *p, struct mp_error *err) {
        /* Logging out ends the login session; an API token is revoked only on purpose,
         * through DELETE /api/v1/tokens/{id}. */
        if (!p->session)
                return 0;
        int r = MP_STORE(core->store)->token_revoke(core->store, p->user_id, p->token_id,
                                                    mp_now_ms(), err);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, "logout", p->token_id, NULL);
        return 0;
}

int mp_core_me(struct mp_core *core, const struct mp_principal *p, json_t **ret,
               struct mp_error *err) {
        _cleanup_json_ json_t *user = NULL;
        int r = MP_STORE(core->store)->user_get(core->store, "id", p->user_id, &user, err);
        if (r < 0)
                return r;
        *ret = user_public(user);
        if (!*ret)
                return -ENOMEM;
        /* Whether the platform's figures (GET /api/v1/admin/stats) are open to the caller. */
        json_object_set_new(*ret, "operator", json_boolean(json_integer_value(json_object_get(user, "operator")) == 1));
        return 0;
}

int mp_core_token_create(struct mp_core *core, const struct mp_principal *p, json_t *body,
                         json_t **ret, struct mp_error *err) {
        const char *name = NULL;
        int days = 0;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_TOKEN_CREATE, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "name", true, MP_MAX_TOKEN_NAME_LEN, &name, err);
        mp_core_field_int(body, "expires_in_days", 1, MP_MAX_TOKEN_TTL_DAYS, &days, err);
        /* Scopes: a subset of the caller's own (default: all of them), so a token that
         * may make tokens cannot make one that may do more than itself. */
        unsigned want = p->scopes;
        json_t *sc = json_object_get(body, "scopes");
        if (sc && !json_is_null(sc)) {
                size_t i;
                json_t *v;
                want = 0;
                if (!json_is_array(sc) || json_array_size(sc) == 0 || json_array_size(sc) > 16)
                        mp_error_add_field(err, "scopes", "must be a non-empty array of scope names");
                else
                        json_array_foreach(sc, i, v) {
                                unsigned bit = 0;
                                for (size_t k = 0; json_is_string(v) && k < ELEMENTSOF(scope_names); k++)
                                        if (!strcmp(json_string_value(v), scope_names[k]))
                                                bit = 1u << k;
                                if (!bit) {
                                        mp_error_add_field(err, "scopes", "\"%.40s\" is not one of functions:read, "
                                                           "functions:write, tasks:read, tasks:write, execute, tokens",
                                                           json_is_string(v) ? json_string_value(v) : "(not a string)");
                                        break;
                                }
                                if (!(bit & p->scopes)) {
                                        mp_error_add_field(err, "scopes", "%s is more than the token used may do",
                                                           mp_core_scope_name(bit));
                                        break;
                                }
                                want |= bit;
                        }
        }
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        _cleanup_json_ json_t *names = scopes_json(want);
        if (!names)
                return -ENOMEM;
        /* Nor can it make one that outlives itself: the child expires at the latest when
         * the credential used does (asked for longer, or for no expiry: that moment). A
         * local account's login session is the exception: the password was just proven,
         * and the account holder may make a token for up to MP_MAX_TOKEN_TTL_DAYS. An
         * OpenID user's session is not: the provider's word lasts MP_OIDC_TOKEN_MAX_AGE_S. */
        int64_t now = mp_now_ms(), ttl_ms = (int64_t) days * 86400 * 1000;
        if ((!p->session || p->external) && p->expires_at_ms > 0) {
                int64_t left = p->expires_at_ms - now;
                if (left < 1000)
                        return mp_error_set(err, EACCES, 401, "unauthorized", "the token used has expired");
                if (!ttl_ms || ttl_ms > left)
                        ttl_ms = left;
        }
        r = new_token_scoped(core, p->user_id, "api", name, ttl_ms, names, ret, err);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, "token_created", json_string_value(json_object_get(*ret, "id")),
                         json_pack("{s:s,s:O}", "name", name, "scopes", names));
        return 0;
}

int mp_core_token_list(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                       struct mp_error *err) {
        _cleanup_json_ json_t *items = NULL, *live = json_array();
        int64_t now = mp_now_ms();
        size_t i;
        json_t *row;
        int r = MP_STORE(core->store)->token_list(core->store, p->user_id, &items, err);
        if (r < 0)
                return r;
        /* Only tokens that still work: a revoked or expired one is gone for the user. */
        json_array_foreach(items, i, row) {
                json_int_t exp = json_integer_value(json_object_get(row, "expires_at"));
                if (json_integer_value(json_object_get(row, "revoked_at")) > 0 || (exp > 0 && exp <= now))
                        continue;
                json_array_append(live, row);
        }
        json_array_foreach(live, i, row) {
                static const char *const times[] = { "created_at", "expires_at", "last_used_at", NULL };
                static const char *const drop[] = { "token_hash", "user_id", "revoked_at", "kind", NULL };
                mp_core_shape(row, times, drop);
                json_object_set_new(row, "scopes", scopes_json(scopes_bits(json_object_get(row, "scopes"))));
        }
        *ret = json_pack("{s:O}", "items", live);
        return 0;
}

int mp_core_token_revoke(struct mp_core *core, const struct mp_principal *p, const char *id,
                         struct mp_error *err) {
        int r;
        if (!mp_id_valid(id))
                return mp_core_not_found(err, "token", id);
        r = MP_STORE(core->store)->token_revoke(core->store, p->user_id, id, mp_now_ms(), err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "token", id);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, "token_revoked", id, NULL);
        return 0;
}

/* --- OpenID Connect login --- */

static int session_for(struct mp_core *core, json_t *user, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *tok = NULL;
        int r = new_token(core, json_string_value(json_object_get(user, "id")), "session", "oidc",
                          (int64_t) MP_SESSION_TTL_S * 1000, &tok, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:O,s:O,s:o}", "token", json_object_get(tok, "token"), "expires_at",
                         json_object_get(tok, "expires_at"), "user", user_public(user));
        return 0;
}

static int oidc_off(struct mp_error *err) {
        return mp_error_set(err, ENOENT, 404, "not_found",
                            "OpenID login is not configured on this server (--auth oidc:<issuer>)");
}

int mp_core_oidc_begin(struct mp_core *core, const char *redirect_uri, const char *return_to,
                       const char *cli_redirect, const char *cli_state, const char *cli_challenge,
                       char **ret_url, char *ret_binding, size_t binding_size,
                       struct mp_error *err) {
        char binding[MP_OIDC_RANDOM_LEN + 1];
        struct mp_oidc_login_start in = { .redirect_uri = redirect_uri, .return_to = return_to,
                                          .cli_redirect = cli_redirect, .cli_state = cli_state,
                                          .cli_challenge = cli_challenge };
        int r;

        if (!core->oidc)
                return oidc_off(err);
        if ((r = mp_oidc_login_begin(core->oidc, &in, ret_url, binding, err)) < 0)
                return r;
        snprintf(ret_binding, binding_size, "%s", binding);
        return 0;
}

int mp_core_oidc_callback(struct mp_core *core, const char *state, const char *binding,
                          const char *code, json_t **ret, char **ret_location,
                          struct mp_error *err) {
        struct mp_oidc_login_result res = { 0 };
        _cleanup_json_ json_t *user = NULL;
        int r;

        if (!core->oidc)
                return oidc_off(err);
        if ((r = mp_oidc_login_finish(core->oidc, state, binding, code, &res, err)) < 0)
                return r;
        r = oidc_user(core, res.claims, &user, err);
        json_decref(res.claims);
        if (r < 0)
                return r;
        *ret = NULL;
        *ret_location = NULL;
        if (res.cli_redirect[0]) {
                char code_out[MP_OIDC_RANDOM_LEN + 1];
                if ((r = mp_oidc_cli_code_new(core->oidc, json_string_value(json_object_get(user, "id")),
                                              res.cli_challenge, code_out, err)) < 0)
                        return r;
                /* cli_state was checked to be base64url and code_out is: no escaping needed. */
                if (asprintf(ret_location, "%s%ccode=%s&state=%s", res.cli_redirect,
                             strchr(res.cli_redirect, '?') ? '&' : '?', code_out, res.cli_state) < 0) {
                        *ret_location = NULL;
                        return -ENOMEM;
                }
                return 0;
        }
        if ((r = session_for(core, user, ret, err)) < 0)
                return r;
        if (res.return_to[0] && !(*ret_location = strdup(res.return_to))) {
                json_decref(*ret);
                *ret = NULL;
                return -ENOMEM;
        }
        return 0;
}

int mp_core_oidc_cli_exchange(struct mp_core *core, json_t *body, json_t **ret,
                              struct mp_error *err) {
        const char *code = NULL, *verifier = NULL;
        char uid[MP_ID_LEN + 1];
        _cleanup_json_ json_t *user = NULL;
        int r;

        if (!core->oidc)
                return oidc_off(err);
        mp_core_field_string(body, "code", true, 256, &code, err);
        mp_core_field_string(body, "code_verifier", true, 256, &verifier, err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = mp_oidc_cli_code_take(core->oidc, code, verifier, uid, sizeof(uid), err)) < 0)
                return r;
        if ((r = MP_STORE(core->store)->user_get(core->store, "id", uid, &user, err)) < 0)
                return r;
        return session_for(core, user, ret, err);
}

bool mp_core_status_ended(const char *s) {
        return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "timed_out") ||
                     !strcmp(s, "cancelled"));
}

/* The queue calls this; core->on_task_end says who listens. */
static void task_end_relay(void *userdata, const char *task_id) {
        struct mp_core *core = userdata;
        if (core->on_task_end)
                core->on_task_end(core->on_task_end_userdata, task_id);
}

int mp_core_listen_task_end(struct mp_core *core, void (*cb)(void *userdata, const char *task_id),
                            void *userdata, struct mp_error *err) {
        if (!cb) {
                /* Stop the queue's calls first, so none runs with a half-cleared pair. */
                int r = MP_QUEUE(core->queue)->listen_done(core->queue, NULL, NULL, err);
                core->on_task_end = NULL;
                core->on_task_end_userdata = NULL;
                return r;
        }
        core->on_task_end_userdata = userdata;
        core->on_task_end = cb;
        return MP_QUEUE(core->queue)->listen_done(core->queue, task_end_relay, core, err);
}

json_t *mp_core_exec_status(struct mp_core *core) {
        _cleanup_json_ json_t *st = NULL;
        json_t *out = json_pack("{s:n,s:n}", "warm_instances", "cache_hit_rate");

        if (!out || !core->executor || mp_executor_stats(core->executor, &st) < 0 || !st)
                return out;
        json_int_t hits = json_integer_value(json_object_get(st, "hits"));
        json_int_t misses = json_integer_value(json_object_get(st, "misses"));
        json_object_set_new(out, "warm_instances", json_integer(json_integer_value(json_object_get(st, "instances"))));
        /* A hit: an idle instance of the same function and tenant was warm. */
        if (hits + misses > 0)
                json_object_set_new(out, "cache_hit_rate", json_real((double) hits / (double) (hits + misses)));
        return out;
}

int mp_core_workers(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                    struct mp_error *err) {
        static const char *const times[] = { "started_at", "last_heartbeat", NULL };
        json_t *out = NULL, *w;
        size_t i;
        int r;

        if ((r = MP_QUEUE(core->queue)->workers(core->queue, &out, err)) < 0)
                return err && !err->status ? mp_error_set(err, -r, 503, "unavailable",
                                                          "the list of workers cannot be read now") : r;
        json_array_foreach(json_object_get(out, "items"), i, w)
                mp_core_shape(w, times, NULL);
        *ret = out;
        return 0;
}
