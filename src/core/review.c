/* Review of function versions (docs/identity.md#review): a version is submitted by its
 * author (or a member of the company with write rights), then approved or sent back
 * with comments by another member of the same company (admin or member, never the
 * version's author). A company may require an approved review before publishing
 * (its settings, also here). Every step is in the audit log.
 *
 * A version's author is its function's owner: only the owner adds versions. */
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "core/core-internal.h"

json_t *mp_review_render(json_t *ver) {
        json_t *v = json_object_get(ver, "review");
        if (json_is_object(v))
                return json_incref(v);
        return json_pack("{s:s,s:n,s:n,s:[]}", "status", "draft", "reviewer_id", "at", "comments");
}

static bool same_company(const struct mp_principal *p, json_t *fn) {
        const char *company = json_string_value(json_object_get(fn, "company_id"));
        return company && p->company_id[0] && !strcmp(company, p->company_id);
}

int mp_core_version_review(struct mp_core *core, const struct mp_principal *p, const char *function_id,
                           const char *version_text, const char *action, json_t *body, json_t **ret,
                           struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL, *review = NULL;
        const char *comment = NULL, *owner, *status;
        bool submit = !strcmp(action, "submit"), approve = !strcmp(action, "approve");
        char *end = NULL, at[40];
        long version;
        int r;

        version = version_text ? strtol(version_text, &end, 10) : 0;
        if (!version_text || !*version_text || *end || version < 1 || version > (1L << 30))
                return mp_error_set(err, ENOENT, 404, "not_found", "function %s has no version %s", function_id,
                                    version_text ? version_text : "");
        /* The store's rows, not mp_core_load_callable: a version submitted for review is
         * shown to the company's reviewers whatever the function's visibility. */
        if (!mp_id_valid(function_id))
                return mp_core_not_found(err, "function", function_id);
        r = MP_STORE(core->store)->function_get(core->store, function_id, &fn, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "function", function_id);
        if (r < 0)
                return r;
        owner = json_string_value(json_object_get(fn, "owner_id"));
        bool is_author = owner && !strcmp(owner, p->user_id);
        /* A review is the company's business: a function of another company (even a
         * public one) is not there to review. */
        if (!is_author && !same_company(p, fn))
                return mp_core_not_found(err, "function", function_id);
        r = MP_STORE(core->store)->function_get_version(core->store, function_id, (int) version, &ver, err);
        if (r == -ENOENT)
                return mp_error_set(err, ENOENT, 404, "not_found", "function %s has no version %ld", function_id,
                                    version);
        if (r < 0)
                return r;
        status = json_string_value(json_object_get(json_object_get(ver, "review"), "status"));
        /* A private draft stays its author's: only a submitted (or reviewed) version is
         * the company's to see. */
        if (!is_author && !mp_core_can_see_function(p, fn) && (!status || !strcmp(status, "draft")))
                return mp_core_not_found(err, "function", function_id);
        if (!strcmp(p->role, "viewer") && !is_author)
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "a viewer may not review function versions; ask an admin of your company "
                                    "for the member role");
        if (!submit && is_author)
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "the author of a version may not %s it: another member of the company reviews it",
                                    action);
        if (body && !json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object {\"comment\"}");
        const char *key;
        json_t *v;
        json_object_foreach(body, key, v)
                if (strcmp(key, "comment"))
                        mp_error_add_field(err, key, "is not a field of a review (only \"comment\")");
        mp_core_field_string(body, "comment", !submit && !approve, MP_MAX_REVIEW_COMMENT, &comment, err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;

        review = mp_review_render(ver);
        json_t *copy = json_deep_copy(review);
        json_decref(review);
        review = copy;
        status = json_string_value(json_object_get(review, "status"));
        if (submit && status && strcmp(status, "draft") && strcmp(status, "rejected"))
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "version %ld of function %s is already %s; a rejected version may be "
                                    "submitted again", version, function_id, status);
        if (!submit && (!status || strcmp(status, "submitted")))
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "version %ld of function %s is %s, not submitted for review", version,
                                    function_id, status ? status : "draft");
        json_t *comments = json_object_get(review, "comments");
        if (json_array_size(comments) >= MP_MAX_REVIEW_COMMENTS)
                return mp_error_set(err, EBUSY, 409, "conflict",
                                    "the review of version %ld already holds %d steps", version,
                                    MP_MAX_REVIEW_COMMENTS);
        mp_format_time(mp_now_ms(), at, sizeof(at));
        const char *new_status = submit ? "submitted" : approve ? "approved" : "rejected";
        json_array_append_new(comments, json_pack("{s:s,s:s,s:s,s:s?}", "by", p->user_id, "at", at, "action",
                                                  action, "comment", comment));
        json_object_set_new(review, "status", json_string(new_status));
        json_object_set_new(review, "reviewer_id", submit ? json_null() : json_string(p->user_id));
        json_object_set_new(review, "at", submit ? json_null() : json_string(at));
        /* Compare-and-set against the review read above: of two simultaneous steps, the
         * second finds the column changed and answers 409 rather than erasing the first. */
        r = MP_STORE(core->store)->version_swap_review(core->store, function_id, (int) version,
                                                       json_object_get(ver, "review"), review, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "function", function_id);
        if (r < 0)
                return r;
        mp_core_audit_by(core, p, submit ? "version_review_submitted" : approve ? "version_approved" : "version_rejected",
                         function_id, json_pack("{s:I,s:s?}", "version", (json_int_t) version, "comment", comment));
        json_object_set(ver, "review", review);
        mp_verify_refresh(core, function_id, ver);
        *ret = mp_core_function_render(core, fn, ver);
        return *ret ? 0 : -ENOMEM;
}

/* --- the company's settings --- */

static json_t *settings_render(json_t *row) {
        json_t *s = json_object_get(row, "settings");
        return json_pack("{s:b}", "require_review_to_publish",
                         json_is_true(json_object_get(s, "require_review_to_publish")));
}

int mp_core_company_settings_get(struct mp_core *core, const struct mp_principal *p, json_t **ret,
                                 struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL;
        int r;

        if (!p->company_id[0])
                return mp_error_set(err, ENOENT, 404, "not_found", "you belong to no company");
        if ((r = MP_STORE(core->store)->company_settings(core->store, p->company_id, &row, err)) < 0)
                return r;
        *ret = settings_render(row);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_company_settings_set(struct mp_core *core, const struct mp_principal *p, json_t *body,
                                 json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *row = NULL, *settings = NULL;
        const char *key;
        json_t *v;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_COMPANY_MANAGE, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        json_object_foreach(body, key, v) {
                if (strcmp(key, "require_review_to_publish"))
                        mp_error_add_field(err, key, "is not a company setting (require_review_to_publish)");
                else if (!json_is_boolean(v))
                        mp_error_add_field(err, key, "must be true or false");
        }
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if ((r = MP_STORE(core->store)->company_settings(core->store, p->company_id, &row, err)) < 0)
                return r;
        settings = settings_render(row);
        json_object_update(settings, body);
        if ((r = MP_STORE(core->store)->company_set_settings(core->store, p->company_id, settings, err)) < 0)
                return r;
        mp_core_audit_by(core, p, "company_settings_changed", p->company_id, json_deep_copy(settings));
        *ret = json_incref(settings);
        return 0;
}
