/* Companies and roles: what each role may do, and a company admin's management of the
 * company's members and their API tokens (docs/identity.md has the table).
 *
 * Two rules run through this file. An object of another company answers 404, the same
 * as an unknown id, so ids never reveal what exists elsewhere. A role that may not do
 * something answers 403: that is the caller's own company's rule, and hides nothing. */
#include <ctype.h>
#include <string.h>

#include "auth/auth.h"
#include "base/limits.h"
#include "core/core-internal.h"

bool mp_core_is_company_admin(const struct mp_principal *p) {
        return p->company_id[0] && !strcmp(p->role, "admin");
}

bool mp_core_tag_valid(const char *tag) {
        size_t n = tag ? strlen(tag) : 0;
        if (n == 0 || n > MP_MAX_TAG_LEN)
                return false;
        for (; *tag; tag++)
                if (!((*tag >= 'a' && *tag <= 'z') || (*tag >= '0' && *tag <= '9') || *tag == '-'))
                        return false;
        return true;
}

int mp_core_authorize(const struct mp_principal *p, enum mp_action action, struct mp_error *err) {
        switch (action) {
        case MP_ACTION_FUNCTION_WRITE:
                if (strcmp(p->role, "viewer"))
                        return 0;
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "a viewer may read and call functions, not create, change or "
                                    "delete them; ask an admin of your company for the member role");
        case MP_ACTION_TOKEN_CREATE:
                if (strcmp(p->role, "viewer"))
                        return 0;
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "a viewer may not create API tokens; ask an admin of your company "
                                    "for the member role");
        case MP_ACTION_COMPANY_MANAGE:
                if (!p->company_id[0])
                        return mp_error_set(err, ENOENT, 404, "not_found", "you belong to no company");
                if (mp_core_is_company_admin(p))
                        return 0;
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "only an admin of your company may manage its members");
        }
        return mp_error_set(err, EPERM, 403, "forbidden", "not allowed");
}

/* A member as the API shows it. */
static json_t *member_public(json_t *u) {
        json_t *m = json_pack("{s:O,s:O,s:O,s:O,s:s}", "id", json_object_get(u, "id"), "email",
                              json_object_get(u, "email"), "role", json_object_get(u, "role"),
                              "created_at", json_object_get(u, "created_at"), "identity",
                              json_is_string(json_object_get(u, "external_id")) ? "oidc" : "local");
        static const char *const times[] = { "created_at", NULL };
        if (m)
                mp_core_shape(m, times, NULL);
        return m;
}

/* The user id of the caller's company, as stored (with "company", "external_id"); 404
 * for an unknown id and for a user of another company or of none alike. */
static int load_member(struct mp_core *core, const struct mp_principal *p, const char *id,
                       json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_COMPANY_MANAGE, err)) < 0)
                return r;
        if (!id || !mp_id_valid(id))
                return mp_core_not_found(err, "member", id ? id : "");
        r = MP_STORE(core->store)->user_get(core->store, "id", id, &u, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "member", id);
        }
        if (r < 0)
                return r;
        if (strcmp(json_string_value(json_object_get(u, "company_id")) ?: "", p->company_id))
                return mp_core_not_found(err, "member", id);
        *ret = TAKE_PTR(u);
        return 0;
}

/* The provider sets role and company on every sight of an OpenID user: a change made
 * here would be undone at its next request, so it is refused. */
static int managed_by_provider(json_t *u, struct mp_error *err) {
        if (!json_is_string(json_object_get(u, "external_id")))
                return 0;
        return mp_error_set(err, EPERM, 409, "conflict",
                            "%s is managed by the OpenID provider, which sets role and company at "
                            "each sign-in: change them there",
                            json_string_value(json_object_get(u, "email")));
}

static int store_member_error(int r, const char *id, struct mp_error *err) {
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "member", id);
        }
        if (r == -EPERM) {
                mp_error_clear(err);
                return mp_error_set(err, EPERM, 409, "conflict",
                                    "the company would be left without an admin: make another member "
                                    "admin first");
        }
        return r;
}

int mp_core_company_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                        struct mp_error *err) {
        _cleanup_json_ json_t *c = NULL;
        int r;

        if (!p->company_id[0])
                return mp_error_set(err, ENOENT, 404, "not_found", "you belong to no company");
        r = MP_STORE(core->store)->company_get(core->store, p->company_id, &c, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_error_set(err, ENOENT, 404, "not_found", "you belong to no company");
        }
        if (r < 0)
                return r;
        static const char *const times[] = { "created_at", NULL };
        mp_core_shape(c, times, NULL);
        *ret = TAKE_PTR(c);
        return 0;
}

int mp_core_company_members(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                            struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL, *items = NULL;
        size_t i;
        json_t *u;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_COMPANY_MANAGE, err)) < 0)
                return r;
        if ((r = MP_STORE(core->store)->company_members(core->store, p->company_id, &rows, err)) < 0)
                return r;
        items = json_array();
        json_array_foreach(rows, i, u)
                json_array_append_new(items, member_public(u));
        *ret = json_pack("{s:O}", "items", items);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_company_member_create(struct mp_core *core, const struct mp_principal *p,
                                  json_t *body, json_t **ret, struct mp_error *err) {
        const char *email = NULL, *password = NULL, *role = NULL;
        char generated[MP_OIDC_RANDOM_LEN + 1] = "";
        _cleanup_json_ json_t *company = NULL, *user = NULL;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_COMPANY_MANAGE, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "email", true, MP_MAX_EMAIL_LEN, &email, err);
        mp_core_field_string(body, "password", false, MP_MAX_PASSWORD_LEN, &password, err);
        mp_core_field_string(body, "role", false, 16, &role, err);
        if (email && (!strchr(email, '@') || strpbrk(email, " \t\r\n")))
                mp_error_add_field(err, "email", "is not an email address");
        if (password && strlen(password) < MP_MIN_PASSWORD_LEN)
                mp_error_add_field(err, "password", "must be at least %d characters", MP_MIN_PASSWORD_LEN);
        if (role && strcmp(role, "admin") && strcmp(role, "member") && strcmp(role, "viewer"))
                mp_error_add_field(err, "role", "must be admin, member or viewer");
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
                if (strcmp(key, "email") && strcmp(key, "password") && strcmp(key, "role"))
                        mp_error_add_field(err, key, "is not a field of a member (email, password, role)");
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        /* No password given: one is made and shown once, for the admin to hand over. */
        if (!password) {
                mp_oidc_random(generated);
                password = generated;
        }
        if ((r = MP_STORE(core->store)->company_get(core->store, p->company_id, &company, err)) < 0)
                return r;
        r = mp_core_create_user(core, email, password, json_string_value(json_object_get(company, "name")),
                                role ? role : "member", &user, err);
        if (r < 0)
                return r;
        *ret = json_pack("{s:O,s:O,s:O,s:O,s:s}", "id", json_object_get(user, "id"), "email",
                         json_object_get(user, "email"), "role", json_object_get(user, "role"),
                         "created_at", json_object_get(user, "created_at"), "identity", "local");
        if (*ret && generated[0])
                json_object_set_new(*ret, "password", json_string(generated));
        return *ret ? 0 : -ENOMEM;
}

int mp_core_company_member_update(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, json_t *body, json_t **ret,
                                  struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL, *fresh = NULL;
        const char *role = NULL;
        int r;

        if ((r = load_member(core, p, id, &u, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "role", true, 16, &role, err);
        if (role && strcmp(role, "admin") && strcmp(role, "member") && strcmp(role, "viewer"))
                mp_error_add_field(err, "role", "must be admin, member or viewer");
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = managed_by_provider(u, err)) < 0)
                return r;
        r = MP_STORE(core->store)->member_set_role(core->store, p->company_id, id, role, err);
        if (r < 0)
                return store_member_error(r, id, err);
        if ((r = MP_STORE(core->store)->user_get(core->store, "id", id, &fresh, err)) < 0)
                return r;
        *ret = member_public(fresh);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_company_member_remove(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL;
        int r;

        if ((r = load_member(core, p, id, &u, err)) < 0)
                return r;
        if ((r = managed_by_provider(u, err)) < 0)
                return r;
        r = MP_STORE(core->store)->member_remove(core->store, p->company_id, id, mp_now_ms(), err);
        return r < 0 ? store_member_error(r, id, err) : 0;
}

int mp_core_company_member_tokens(struct mp_core *core, const struct mp_principal *p,
                                  const char *id, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL, *rows = NULL, *items = NULL;
        int64_t now = mp_now_ms();
        size_t i;
        json_t *row;
        int r;

        if ((r = load_member(core, p, id, &u, err)) < 0)
                return r;
        if ((r = MP_STORE(core->store)->token_list(core->store, id, &rows, err)) < 0)
                return r;
        items = json_array();
        json_array_foreach(rows, i, row) {
                static const char *const times[] = { "created_at", "expires_at", "last_used_at", NULL };
                static const char *const drop[] = { "token_hash", "user_id", "revoked_at", "kind", NULL };
                json_int_t exp = json_integer_value(json_object_get(row, "expires_at"));
                /* As in GET /tokens: only the tokens that still work. */
                if (json_integer_value(json_object_get(row, "revoked_at")) > 0 || (exp > 0 && exp <= now))
                        continue;
                mp_core_shape(row, times, drop);
                json_array_append(items, row);
        }
        *ret = json_pack("{s:O}", "items", items);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_company_member_token_revoke(struct mp_core *core, const struct mp_principal *p,
                                        const char *id, const char *token_id,
                                        struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL;
        int r;

        if ((r = load_member(core, p, id, &u, err)) < 0)
                return r;
        if (!token_id || !mp_id_valid(token_id))
                return mp_core_not_found(err, "token", token_id ? token_id : "");
        r = MP_STORE(core->store)->token_revoke(core->store, id, token_id, mp_now_ms(), err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_core_not_found(err, "token", token_id);
        }
        return r < 0 ? r : 0;
}

int mp_core_company_member_tasks(struct mp_core *core, const struct mp_principal *p,
                                 const char *id, const char *cursor, int limit, json_t **ret,
                                 struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL;
        int r;

        if ((r = load_member(core, p, id, &u, err)) < 0)
                return r;
        return mp_core_task_list_owner(core, id, p->company_id, NULL, NULL, cursor, limit, ret, err);
}

int mp_core_admin_set_role(struct mp_core *core, const char *email, const char *role,
                           json_t **ret_user, struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL, *fresh = NULL;
        _cleanup_free_ char *folded = email ? strdup(email) : NULL;
        const char *uid, *cid;
        int r;

        if (!role || (strcmp(role, "admin") && strcmp(role, "member") && strcmp(role, "viewer")))
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "role must be admin, member or viewer, not \"%s\"", role ? role : "");
        if (!folded)
                return email ? -ENOMEM : mp_error_set(err, EINVAL, 422, "validation", "an email is required");
        for (char *c = folded; *c; c++)
                *c = (char) tolower((unsigned char) *c);
        r = MP_STORE(core->store)->user_get(core->store, "email", folded, &u, err);
        if (r == -ENOENT) {
                mp_error_clear(err);
                return mp_error_set(err, ENOENT, 404, "not_found", "no user with email %s", folded);
        }
        if (r < 0 || (r = managed_by_provider(u, err)) < 0)
                return r;
        uid = json_string_value(json_object_get(u, "id"));
        cid = json_string_value(json_object_get(u, "company_id"));
        if (cid)
                r = MP_STORE(core->store)->member_set_role(core->store, cid, uid, role, err);
        else
                r = MP_STORE(core->store)->user_set_identity(core->store, uid, folded, role, NULL, err);
        if (r < 0)
                return store_member_error(r, uid, err);
        if (ret_user) {
                if ((r = MP_STORE(core->store)->user_get(core->store, "id", uid, &fresh, err)) < 0)
                        return r;
                *ret_user = member_public(fresh);
        }
        return 0;
}
