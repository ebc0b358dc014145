#include <ctype.h>
#include <string.h>

#include "auth/auth.h"
#include "base/limits.h"
#include "base/log.h"
#include "blobs/blobs.h"
#include "core/core-internal.h"
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

int mp_core_open(const struct mp_config *config, struct mp_core **ret, struct mp_error *err) {
        struct mp_core *c = calloc(1, sizeof(*c));
        int r;

        if (!c)
                return -ENOMEM;
        c->config = config;
        if ((r = mp_auth_init()) < 0) {
                mp_error_set(err, -r, 500, "internal", "libsodium could not start");
                goto fail;
        }
        if ((r = mp_mkdir_p(config->data_dir, 0700)) < 0) {
                mp_error_set(err, -r, 500, "config", "cannot create the data folder %s: %s",
                             config->data_dir, strerror(-r));
                goto fail;
        }
        if ((r = mp_store_open(config->db_url, &c->store, err)) < 0)
                goto fail;
        if ((r = mp_blobs_open(config->blobs_url, &c->blobs, err)) < 0)
                goto fail;
        if ((r = mp_queue_open(config->queue_url, c->store, &c->queue, err)) < 0)
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
        mp_queue_close(c->queue);
        mp_blobs_close(c->blobs);
        mp_store_close(c->store);
        if (c->policy)
                json_decref(c->policy);
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

int mp_core_not_found(struct mp_error *err, const char *what, const char *id) {
        return mp_error_set(err, ENOENT, 404, "not_found", "no %s with id \"%.64s\"", what, id);
}

void mp_core_task_ended(struct mp_core *core, const char *task_id) {
        if (core->on_task_end)
                core->on_task_end(core->on_task_end_userdata, task_id);
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

static int new_token(struct mp_core *core, const char *user_id, const char *kind,
                     const char *name, int64_t ttl_ms, json_t **ret, struct mp_error *err) {
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
        const char *email = NULL, *password = NULL;
        char folded[MP_MAX_EMAIL_LEN + 1];
        _cleanup_json_ json_t *user = NULL, *tok = NULL;
        int r;

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
                return mp_error_set(err, EACCES, 401, "unauthorized", "wrong email or password");
        }
        if (r < 0)
                return r;
        if (!mp_auth_verify_password(json_string_value(json_object_get(user, "password_hash")), password))
                return mp_error_set(err, EACCES, 401, "unauthorized", "wrong email or password");
        r = new_token(core, json_string_value(json_object_get(user, "id")), "session", "login",
                      (int64_t) MP_SESSION_TTL_S * 1000, &tok, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:O,s:O,s:o}", "token", json_object_get(tok, "token"), "expires_at",
                         json_object_get(tok, "expires_at"), "user", user_public(user));
        return 0;
}

int mp_core_authenticate(struct mp_core *core, const char *token, struct mp_principal *ret,
                         struct mp_error *err) {
        char hash[MP_AUTH_TOKEN_HASH_LEN + 1];
        _cleanup_json_ json_t *found = NULL;
        json_t *user, *tok;
        int r;

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
        return 0;
}

int mp_core_logout(struct mp_core *core, const struct mp_principal *p, struct mp_error *err) {
        /* Logging out ends the login session; an API token is revoked only on purpose,
         * through DELETE /api/v1/tokens/{id}. */
        if (!p->session)
                return 0;
        int r = MP_STORE(core->store)->token_revoke(core->store, p->user_id, p->token_id,
                                                    mp_now_ms(), err);
        return r < 0 ? r : 0;
}

int mp_core_me(struct mp_core *core, const struct mp_principal *p, json_t **ret,
               struct mp_error *err) {
        _cleanup_json_ json_t *user = NULL;
        int r = MP_STORE(core->store)->user_get(core->store, "id", p->user_id, &user, err);
        if (r < 0)
                return r;
        *ret = user_public(user);
        return 0;
}

int mp_core_token_create(struct mp_core *core, const struct mp_principal *p, json_t *body,
                         json_t **ret, struct mp_error *err) {
        const char *name = NULL;
        int days = 0;
        int r;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "name", true, MP_MAX_TOKEN_NAME_LEN, &name, err);
        mp_core_field_int(body, "expires_in_days", 1, MP_MAX_TOKEN_TTL_DAYS, &days, err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        return new_token(core, p->user_id, "api", name, (int64_t) days * 86400 * 1000, ret, err);
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
        return r < 0 ? r : 0;
}

bool mp_core_status_ended(const char *s) {
        return s && (!strcmp(s, "completed") || !strcmp(s, "failed") || !strcmp(s, "timed_out") ||
                     !strcmp(s, "cancelled"));
}
