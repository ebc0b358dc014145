/* core/: the audit log of identity and access events (docs/identity.md#audit).
 *
 * Writes are one INSERT each and never fail the request that caused them: an event
 * that cannot be stored is logged instead. Reads are for company admins, and show the
 * events of their own company only. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/json.h"
#include "base/limits.h"
#include "base/log.h"
#include "core/core-internal.h"

void mp_core_audit(struct mp_core *core, const char *kind, const char *actor_id,
                   const char *company_id, const char *client, const char *target_id,
                   json_t *detail) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *ev = NULL, *d = detail;
        char id[MP_ID_LEN + 1];
        char *text;

        /* A detail is ours (never a request body), but cap it anyway: the table must not
         * grow by what a caller typed. */
        if (d && (text = mp_json_dumps(d, JSON_COMPACT))) {
                size_t n = strlen(text);
                free(text);
                if (n > MP_MAX_AUDIT_DETAIL_BYTES) {
                        json_decref(d);
                        d = json_pack("{s:b}", "truncated", 1);
                }
        }
        mp_id_new(id);
        ev = json_pack("{s:s,s:I,s:s}", "id", id, "at", (json_int_t) mp_now_ms(), "kind", kind);
        if (!ev) {
                mp_warn("audit: no memory for a %s event", kind);
                return;
        }
        if (actor_id && *actor_id)
                json_object_set_new(ev, "actor_id", json_string(actor_id));
        if (company_id && *company_id)
                json_object_set_new(ev, "company_id", json_string(company_id));
        if (client && *client)
                json_object_set_new(ev, "client", json_string(client));
        if (target_id && *target_id)
                json_object_set_new(ev, "target_id", json_stringn(target_id, strnlen(target_id, 256)));
        if (d)
                json_object_set(ev, "detail", d);
        if (MP_STORE(core->store)->audit_append(core->store, ev, &err) < 0)
                mp_warn("audit: the %s event of %s could not be stored: %s", kind,
                        actor_id && *actor_id ? actor_id : "an anonymous client",
                        err.message[0] ? err.message : "(no message)");
}

void mp_core_audit_by(struct mp_core *core, const struct mp_principal *p, const char *kind,
                      const char *target_id, json_t *detail) {
        mp_core_audit(core, kind, p->user_id, p->company_id, p->client, target_id, detail);
}

int mp_core_parse_rfc3339(const char *s, int64_t *ret) {
        struct tm tm = { 0 };
        int y, mo, d, h, mi, sec, n = 0;
        const char *p;

        if (strlen(s) > 40 || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 ||
            n != 19)
                return -EINVAL;
        p = s + n;
        if (*p == '.')
                for (p++; *p >= '0' && *p <= '9'; p++)
                        ;
        if (strcmp(p, "Z") && strcmp(p, "z") && strcmp(p, "+00:00"))
                return -EINVAL;
        if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
                return -EINVAL;
        tm.tm_year = y - 1900;
        tm.tm_mon = mo - 1;
        tm.tm_mday = d;
        tm.tm_hour = h;
        tm.tm_min = mi;
        tm.tm_sec = sec;
        *ret = (int64_t) timegm(&tm) * 1000;
        return 0;
}

int mp_core_audit_list(struct mp_core *core, const struct mp_principal *p, const char *kind,
                       const char *actor, const char *since, const char *cursor, int limit,
                       json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *filter = NULL;
        struct mp_store_list list = { 0 };
        static const char *const times[] = { "at", NULL };
        json_t *row;
        size_t i;
        int64_t since_ms;
        int r;

        /* Only an admin reads the log, and only their company's part of it: the events
         * of users of no company (sign-ups, unknown emails) belong to the admins of no
         * company, the operator's accounts. */
        if (strcmp(p->role, "admin"))
                return mp_error_set(err, EACCES, 403, "forbidden",
                                    "only an admin may read the audit log");
        filter = json_pack("{s:i}", "limit", limit);
        if (!filter)
                return -ENOMEM;
        json_object_set_new(filter, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        if (kind && (strlen(kind) > 64 || !*kind))
                return mp_error_set(err, EINVAL, 400, "bad_request", "query parameter kind is not an event kind");
        if (kind)
                json_object_set_new(filter, "kind", json_string(kind));
        if (actor && strlen(actor) > MP_ID_LEN)
                return mp_error_set(err, EINVAL, 400, "bad_request", "query parameter actor is not a user id");
        if (actor)
                json_object_set_new(filter, "actor_id", json_string(actor));
        if (since) {
                if (mp_core_parse_rfc3339(since, &since_ms) < 0) {
                        mp_error_set(err, EINVAL, 400, "bad_request",
                                     "query parameter since must be an RFC 3339 UTC time like "
                                     "2024-05-01T12:00:00Z, not \"%.40s\"", since);
                        mp_error_add_field(err, "since", "must be an RFC 3339 UTC time");
                        return -EINVAL;
                }
                json_object_set_new(filter, "since", json_integer(since_ms));
        }
        if (cursor)
                json_object_set_new(filter, "cursor", json_string(cursor));
        r = MP_STORE(core->store)->audit_list(core->store, filter, &list, err);
        if (r < 0) {
                if (err && err->status == 422)
                        err->status = 400; /* a bad cursor is a bad query parameter */
                return r;
        }
        json_array_foreach(list.items, i, row)
                mp_core_shape(row, times, NULL);
        *ret = mp_core_page(json_incref(list.items), &list);
        return *ret ? 0 : -ENOMEM;
}
