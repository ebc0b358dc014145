/* Usage, quotas and the operators' figures (docs/api.md#usage, docs/operations.md#usage-and-quotas).
 *
 * Usage is read from per-day counters (usage_daily) that the store adds to in the
 * transaction that ends each task, so a month of usage is a few rows whatever the count
 * of tasks. Quotas are checked by the store too, in the transaction that stores a call
 * (admission) or starts it (the claim path): counts come from the store, never from one
 * process's memory, so several API nodes on one PostgreSQL enforce one limit. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/limits.h"
#include "core/core-internal.h"

#define DAY_MS 86400000LL

static const char *const quota_fields[] = { "concurrent_calls", "calls_per_day", "cpu_seconds_per_month",
                                            "storage_mb" };

/* "YYYY-MM-DD" -> days since the epoch; -1 when it is not a real date. */
static int64_t parse_day(const char *s) {
        int y, m, d, n = 0;
        struct tm tm = { 0 };

        if (!s || strlen(s) != 10 || sscanf(s, "%4d-%2d-%2d%n", &y, &m, &d, &n) != 3 || n != 10 || s[4] != '-' ||
            s[7] != '-' || y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1 || d > 31)
                return -1;
        tm.tm_year = y - 1900;
        tm.tm_mon = m - 1;
        tm.tm_mday = d;
        time_t t = timegm(&tm);
        if (tm.tm_mday != d || tm.tm_mon != m - 1) /* 2026-02-30 came out as March */
                return -1;
        return (int64_t) t / 86400;
}

static void format_day(int64_t day, char *buf, size_t size) {
        time_t t = (time_t) (day * 86400);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, size, "%Y-%m-%d", &tm);
}

int mp_core_usage(struct mp_core *core, const struct mp_principal *p, const char *from, const char *to,
                  const char *group_by, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *filter = NULL, *rows = NULL, *items = json_array(), *emails = NULL;
        int64_t today = mp_now_ms() / DAY_MS, from_day, to_day;
        const char *group = group_by ? group_by : "day", *store_group, *key_name;
        bool company = mp_core_is_company_admin(p);
        size_t i;
        json_t *row;
        int r;

        if (!items)
                return -ENOMEM;
        to_day = to ? parse_day(to) : today;
        from_day = from ? parse_day(from) : (to_day >= 0 ? MP_MAX(to_day - 29, 0) : -1);
        if (from && from_day < 0)
                mp_error_add_field(err, "from", "must be a date YYYY-MM-DD, not \"%.32s\"", from);
        if (to && to_day < 0)
                mp_error_add_field(err, "to", "must be a date YYYY-MM-DD, not \"%.32s\"", to);
        if (from_day >= 0 && to_day >= 0 && from_day > to_day)
                mp_error_add_field(err, "to", "must not be before from");
        else if (from_day >= 0 && to_day >= 0 && to_day - from_day + 1 > MP_MAX_USAGE_DAYS)
                mp_error_add_field(err, "from", "the range may span at most %d days", MP_MAX_USAGE_DAYS);
        if (!strcmp(group, "day"))
                store_group = "day", key_name = "day";
        else if (!strcmp(group, "function"))
                store_group = "function_id", key_name = "function_id";
        else if (!strcmp(group, "user"))
                store_group = "owner_id", key_name = "user_id";
        else {
                store_group = key_name = NULL;
                mp_error_add_field(err, "group_by", "must be day, function or user, not \"%.32s\"", group);
        }
        if (err->errors)
                return mp_core_validation_done(err, "query parameters");

        /* A company admin reads the company's calls (those made in it by its members); any
         * other caller their own. */
        filter = json_pack("{s:s,s:I,s:I,s:s}", company ? "company_id" : "owner_id",
                           company ? p->company_id : p->user_id, "from_day", (json_int_t) from_day, "to_day",
                           (json_int_t) to_day, "group_by", store_group);
        if (!filter)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->usage_query(core->store, filter, &rows, err)) < 0)
                return r;
        if (company && !strcmp(store_group, "owner_id") &&
            (r = MP_STORE(core->store)->company_members(core->store, p->company_id, &emails, err)) < 0)
                return r;
        json_array_foreach(rows, i, row) {
                json_t *k = json_object_get(row, "key"), *item = json_object();
                if (!item)
                        return -ENOMEM;
                if (!strcmp(store_group, "day")) {
                        char d[16];
                        format_day(json_integer_value(k), d, sizeof(d));
                        json_object_set_new(item, key_name, json_string(d));
                } else
                        json_object_set(item, key_name, k);
                if (emails) {
                        size_t j;
                        json_t *m, *email = NULL;
                        json_array_foreach(emails, j, m)
                                if (json_equal(json_object_get(m, "id"), k))
                                        email = json_object_get(m, "email");
                        json_object_set(item, "email", email ? email : json_null());
                }
                static const char *const figures[] = { "calls", "failed", "wall_ms", "cpu_ms", "max_peak_memory_kb" };
                for (size_t f = 0; f < ELEMENTSOF(figures); f++) {
                        json_t *v = json_object_get(row, figures[f]);
                        json_object_set_new(item, figures[f],
                                            json_integer(json_is_integer(v) ? json_integer_value(v)
                                                         : json_is_real(v) ? (json_int_t) json_real_value(v) : 0));
                }
                json_array_append_new(items, item);
        }
        char f[16], t[16];
        format_day(from_day, f, sizeof(f));
        format_day(to_day, t, sizeof(t));
        *ret = json_pack("{s:O,s:s,s:s,s:s,s:s}", "items", items, "from", f, "to", t, "group_by", group, "scope",
                         company ? "company" : "user");
        return *ret ? 0 : -ENOMEM;
}

int mp_core_usage_csv(json_t *usage, char **ret, size_t *ret_len) {
        const char *group = json_string_value(json_object_get(usage, "group_by")) ?: "day";
        const char *key = !strcmp(group, "function") ? "function_id" : !strcmp(group, "user") ? "user_id" : "day";
        const char *scope = json_string_value(json_object_get(usage, "scope")) ?: "";
        bool email = !strcmp(group, "user") && !strcmp(scope, "company");
        char *text = NULL;
        size_t len = 0, i;
        json_t *it;
        FILE *f = open_memstream(&text, &len);

        if (!f)
                return -ENOMEM;
        fprintf(f, "%s%s,calls,failed,wall_ms,cpu_ms,max_peak_memory_kb\r\n", key, email ? ",email" : "");
        json_array_foreach(json_object_get(usage, "items"), i, it) {
                /* Ids and dates hold no comma, quote or line break; an email is quoted
                 * (its quotes doubled) when it does. */
                const char *k = json_string_value(json_object_get(it, key)) ?: "";
                const char *e = json_string_value(json_object_get(it, "email")) ?: "";
                fprintf(f, "%s", k);
                if (email && !strpbrk(e, ",\"\r\n"))
                        fprintf(f, ",%s", e);
                else if (email) {
                        fputs(",\"", f);
                        for (; *e; e++)
                                fputs(*e == '"' ? "\"\"" : (char[]) { *e, 0 }, f);
                        fputc('"', f);
                }
                fprintf(f, ",%" JSON_INTEGER_FORMAT ",%" JSON_INTEGER_FORMAT ",%" JSON_INTEGER_FORMAT
                           ",%" JSON_INTEGER_FORMAT ",%" JSON_INTEGER_FORMAT "\r\n",
                        json_integer_value(json_object_get(it, "calls")),
                        json_integer_value(json_object_get(it, "failed")),
                        json_integer_value(json_object_get(it, "wall_ms")),
                        json_integer_value(json_object_get(it, "cpu_ms")),
                        json_integer_value(json_object_get(it, "max_peak_memory_kb")));
        }
        if (fclose(f) != 0 || !text) {
                free(text);
                return -ENOMEM;
        }
        *ret = text;
        *ret_len = len;
        return 0;
}

/* --- quotas --- */

/* A quota row (or none) as the API shows it: the four limits, null = unlimited. */
static json_t *quota_public(json_t *row, const char *user_id) {
        json_t *o = json_object();

        if (!o)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(quota_fields); i++) {
                json_t *v = json_object_get(row, quota_fields[i]);
                json_object_set_new(o, quota_fields[i],
                                    json_is_integer(v) ? json_integer(json_integer_value(v)) : json_null());
        }
        json_object_set_new(o, "user_id", user_id && *user_id ? json_string(user_id) : json_null());
        return o;
}

static json_t *find_quota(json_t *rows, const char *user_id) {
        size_t i;
        json_t *q;

        json_array_foreach(rows, i, q)
                if (!strcmp(json_string_value(json_object_get(q, "user_id")) ?: "", user_id))
                        return q;
        return NULL;
}

/* What the quota of user_id (NULL: the company's) reads as, with what is used of it. */
static int quota_view(struct mp_core *core, const char *company_id, const char *user_id, json_t *rows,
                      bool with_members, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *out = quota_public(find_quota(rows, user_id ? user_id : ""), user_id), *used = NULL;
        size_t i;
        json_t *q;
        int r;

        if (!out)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->quota_used(core->store, user_id, user_id ? NULL : company_id, mp_now_ms(),
                                                   &used, err)) < 0)
                return r;
        json_object_set(out, "used", used);
        if (with_members) {
                json_t *members = json_array();
                json_array_foreach(rows, i, q) {
                        const char *u = json_string_value(json_object_get(q, "user_id")) ?: "";
                        if (*u)
                                json_array_append_new(members, quota_public(q, u));
                }
                json_object_set_new(out, "members", members);
        }
        *ret = TAKE_PTR(out);
        return 0;
}

/* user_id must be a member of company_id: 404 otherwise (the same for unknown). */
static int check_member(struct mp_core *core, const char *company_id, const char *user_id, struct mp_error *err) {
        _cleanup_json_ json_t *u = NULL;
        int r;

        if (!mp_id_valid(user_id))
                return mp_core_not_found(err, "member", user_id);
        r = MP_STORE(core->store)->user_get(core->store, "id", user_id, &u, err);
        if (r == -ENOENT || (r >= 0 && strcmp(json_string_value(json_object_get(u, "company_id")) ?: "", company_id))) {
                mp_error_clear(err);
                return mp_core_not_found(err, "member", user_id);
        }
        return r < 0 ? r : 0;
}

int mp_core_quotas_get(struct mp_core *core, const struct mp_principal *p, const char *user_id, json_t **ret,
                       struct mp_error *err) {
        _cleanup_json_ json_t *rows = NULL;
        bool admin = mp_core_is_company_admin(p);
        int r;

        if (!p->company_id[0])
                return mp_error_set(err, ENOENT, 404, "not_found", "you belong to no company");
        if (user_id && !admin && strcmp(user_id, p->user_id))
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "only an admin of your company may read another member's quota");
        if (user_id && (r = check_member(core, p->company_id, user_id, err)) < 0)
                return r;
        if ((r = MP_STORE(core->store)->quota_list(core->store, p->company_id, &rows, err)) < 0)
                return r;
        return quota_view(core, p->company_id, user_id, rows, !user_id && admin, ret, err);
}

/* The four limits of a body into q: each absent or null (unlimited), or an integer in
 * range; field errors go to err. */
static void read_limits(json_t *body, json_t *q, struct mp_error *err) {
        for (size_t i = 0; i < ELEMENTSOF(quota_fields); i++) {
                json_t *v = json_object_get(body, quota_fields[i]);
                long min = i == 0 ? 1 : 0;
                if (!v || json_is_null(v))
                        json_object_set_new(q, quota_fields[i], json_null());
                else if (!json_is_integer(v) || json_integer_value(v) < min ||
                         json_integer_value(v) > MP_MAX_QUOTA_VALUE)
                        mp_error_add_field(err, quota_fields[i], "must be null (unlimited) or a whole number from %ld "
                                           "to %lld", min, (long long) MP_MAX_QUOTA_VALUE);
                else
                        json_object_set(q, quota_fields[i], v);
        }
}

int mp_core_quotas_put(struct mp_core *core, const struct mp_principal *p, json_t *body, json_t **ret,
                       struct mp_error *err) {
        _cleanup_json_ json_t *q = json_object(), *rows = NULL;
        const char *user_id = NULL, *key;
        json_t *v;
        int r;

        if ((r = mp_core_authorize(p, MP_ACTION_COMPANY_MANAGE, err)) < 0)
                return r;
        if (!q)
                return -ENOMEM;
        json_object_foreach(body, key, v) {
                bool known = !strcmp(key, "user_id");
                for (size_t i = 0; i < ELEMENTSOF(quota_fields); i++)
                        known |= !strcmp(key, quota_fields[i]);
                if (!known)
                        mp_error_add_field(err, key, "is not a quota (concurrent_calls, calls_per_day, "
                                           "cpu_seconds_per_month, storage_mb) nor user_id");
        }
        v = json_object_get(body, "user_id");
        if (v && !json_is_null(v) && !json_is_string(v))
                mp_error_add_field(err, "user_id", "must be a member's id, or null for the company's quota");
        else if (json_is_string(v))
                user_id = json_string_value(v);
        read_limits(body, q, err);
        if (err->errors)
                return mp_core_validation_done(err, "fields");
        if (user_id && (r = check_member(core, p->company_id, user_id, err)) < 0)
                return r;
        json_object_set_new(q, "company_id", json_string(p->company_id));
        json_object_set_new(q, "user_id", json_string(user_id ? user_id : ""));
        if ((r = MP_STORE(core->store)->quota_set(core->store, q, err)) < 0)
                return r;
        json_object_del(q, "company_id");
        mp_core_audit_by(core, p, "quota_set", user_id ? user_id : p->company_id, json_deep_copy(q));
        if ((r = MP_STORE(core->store)->quota_list(core->store, p->company_id, &rows, err)) < 0)
                return r;
        return quota_view(core, p->company_id, user_id, rows, false, ret, err);
}

int mp_core_admin_quota(struct mp_core *core, const char *company, const char *user_email, json_t *changes,
                        json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *c = NULL, *u = NULL, *rows = NULL, *q = NULL;
        const char *company_id = "", *user_id = NULL;
        int r;

        if (!company && !user_email)
                return mp_error_set(err, EINVAL, 400, "bad_request", "a quota is a company's or a user's: name one");
        if (company) {
                if ((r = MP_STORE(core->store)->company_find(core->store, company, &c, err)) < 0)
                        return r;
                company_id = json_string_value(json_object_get(c, "id"));
        }
        if (user_email) {
                _cleanup_free_ char *folded = strdup(user_email);
                if (!folded)
                        return -ENOMEM;
                for (char *s = folded; *s; s++)
                        *s = (char) (*s >= 'A' && *s <= 'Z' ? *s + 32 : *s);
                r = MP_STORE(core->store)->user_get(core->store, "email", folded, &u, err);
                if (r < 0)
                        return r;
                user_id = json_string_value(json_object_get(u, "id"));
                /* Without --company: the user's own company, or none. */
                if (!company)
                        company_id = json_string_value(json_object_get(u, "company_id")) ?: "";
                else if (strcmp(json_string_value(json_object_get(u, "company_id")) ?: "", company_id))
                        return mp_error_set(err, ENOENT, 404, "not_found", "%s is not a member of company %s",
                                            user_email, company);
        }
        if ((r = MP_STORE(core->store)->quota_list(core->store, company_id, &rows, err)) < 0)
                return r;
        /* The options given change their limits; the others stay as they are. */
        q = quota_public(find_quota(rows, user_id ? user_id : ""), NULL);
        if (!q)
                return -ENOMEM;
        if (changes && json_object_size(changes) > 0) {
                const char *key;
                json_t *v;
                json_object_foreach(changes, key, v)
                        json_object_set(q, key, v);
                _cleanup_json_ json_t *checked = json_object();
                read_limits(q, checked, err);
                if (err->errors)
                        return mp_core_validation_done(err, "quota options");
                json_object_set_new(checked, "company_id", json_string(company_id));
                json_object_set_new(checked, "user_id", json_string(user_id ? user_id : ""));
                if ((r = MP_STORE(core->store)->quota_set(core->store, checked, err)) < 0)
                        return r;
                json_t *detail = json_deep_copy(changes);
                json_object_set_new(detail, "by", json_string("mecapy admin quota"));
                mp_core_audit(core, "quota_set", NULL, company_id, NULL, user_id ? user_id : company_id, detail);
                json_decref(rows);
                rows = NULL;
                if ((r = MP_STORE(core->store)->quota_list(core->store, company_id, &rows, err)) < 0)
                        return r;
        }
        return quota_view(core, company_id, user_id, rows, false, ret, err);
}

/* --- operators --- */

int mp_core_user_set_operator(struct mp_core *core, const char *user_id, bool on, struct mp_error *err) {
        return MP_STORE(core->store)->user_set_operator(core->store, user_id, on ? 1 : 0, err);
}

/* a / b, or null when there is nothing to divide by. */
static json_t *ratio(int64_t a, int64_t b) {
        return b > 0 ? json_real((double) a / (double) b) : json_null();
}

int mp_core_admin_stats(struct mp_core *core, const struct mp_principal *p, int days, json_t **ret,
                        struct mp_error *err) {
        _cleanup_json_ json_t *raw = NULL, *per_day = json_array();
        int64_t now = mp_now_ms(), to = (now / DAY_MS + 1) * DAY_MS, from = to - (int64_t) days * DAY_MS;
        int64_t calls = 0, failed = 0, wall_ms = 0, cpu_ms = 0;
        double cost = core->config->worker_hour_cost;
        size_t i;
        json_t *d;
        int r;

        if (p) {
                _cleanup_json_ json_t *u = NULL;
                if ((r = MP_STORE(core->store)->user_get(core->store, "id", p->user_id, &u, err)) < 0)
                        return r;
                if (json_integer_value(json_object_get(u, "operator")) != 1)
                        return mp_error_set(err, EPERM, 403, "forbidden",
                                            "the platform's figures are for its operators (mecapy admin "
                                            "create-user --operator)");
        }
        if (days < 1 || days > MP_MAX_USAGE_DAYS) {
                mp_error_add_field(err, "days", "must be a whole number from 1 to %d", MP_MAX_USAGE_DAYS);
                return mp_core_validation_done(err, "query parameters");
        }
        if (!per_day)
                return -ENOMEM;
        if ((r = MP_STORE(core->store)->admin_stats(core->store, from, to, &raw, err)) < 0)
                return r;
        json_array_foreach(json_object_get(raw, "days"), i, d) {
                char day[16];
                int64_t c = json_integer_value(json_object_get(d, "calls"));
                int64_t f = json_integer_value(json_object_get(d, "failed"));
                calls += c;
                failed += f;
                wall_ms += json_integer_value(json_object_get(d, "wall_ms"));
                cpu_ms += json_integer_value(json_object_get(d, "cpu_ms"));
                format_day(json_integer_value(json_object_get(d, "day")), day, sizeof(day));
                json_array_append_new(per_day, json_pack("{s:s,s:I,s:I,s:O}", "day", day, "calls", (json_int_t) c,
                                                         "failed", (json_int_t) f, "active_users",
                                                         json_object_get(d, "active_users")));
        }
        int64_t hits = json_integer_value(json_object_get(raw, "cache_hits"));
        int64_t ran = json_integer_value(json_object_get(raw, "ran"));
        double worker_hours = (double) wall_ms / 3600000.0;
        char f[40], t[40];
        mp_format_time(from, f, sizeof(f));
        mp_format_time(to, t, sizeof(t));
        json_t *out = json_pack("{s:s,s:s,s:i,s:O,s:O,s:I,s:I,s:o,s:o,s:O,s:O,s:I,s:o,s:f,s:f,s:o,s:o}", "from", f,
                                "to", t, "days", days, "functions_created", json_object_get(raw, "functions_created"),
                                "functions_live", json_object_get(raw, "functions_live"), "calls", (json_int_t) calls,
                                "failed", (json_int_t) failed, "error_rate",
                                ratio(failed, calls), "calls_per_day", json_incref(per_day),
                                "active_users", json_object_get(raw, "active_users"), "latency_ms",
                                json_object_get(raw, "latency_ms"), "cache_hits", (json_int_t) hits,
                                "cache_hit_rate", ratio(hits, hits + ran), "cpu_seconds",
                                (double) cpu_ms / 1000.0, "worker_hours", worker_hours, "worker_hour_cost",
                                cost >= 0 ? json_real(cost) : json_null(), "cost_per_call",
                                cost >= 0 && calls > 0 ? json_real(cost * worker_hours / (double) calls) : json_null());
        if (!out)
                return -ENOMEM;
        *ret = out;
        return 0;
}
