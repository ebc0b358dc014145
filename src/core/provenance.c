/* Provenance and comparison (docs/api.md#provenance): what produced a task's result (the
 * code's hash, its environment, the canonical inputs' hash, the server's version), a
 * re-run of exactly that, and a field-by-field comparison of two tasks. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "core/core-internal.h"
#include "core/flow.h"

#define DIFF_MAX_FIELDS 2000 /* leaves compared and listed; more: "truncated" */

void mp_core_sha256_hex(const void *data, size_t len, char out[2 * crypto_hash_sha256_BYTES + 1]) {
        unsigned char h[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(h, data, len);
        sodium_bin2hex(out, 2 * crypto_hash_sha256_BYTES + 1, h, sizeof(h));
}

/* "base" or the requirements' key, then "+solver" for each solver it declares. */
static json_t *environment_of(json_t *ver) {
        char env[80], out[512];
        json_t *s;
        size_t i;
        if (!mp_core_env_key(json_object_get(ver, "requirements"), env, sizeof(env)))
                snprintf(env, sizeof(env), "base");
        snprintf(out, sizeof(out), "%s", env);
        json_array_foreach(json_object_get(ver, "solvers"), i, s)
                if (json_is_string(s) && strlen(out) + json_string_length(s) + 2 < sizeof(out)) {
                        strcat(out, "+");
                        strcat(out, json_string_value(s));
                }
        return json_string(out);
}

/* What a version contributes to provenance (its code's hash, its environment) never
 * changes, and every rendered task needs it (each warm call's answer, each read, each
 * event-stream tick): it is kept here, by function id and version, so a render reads no
 * version and hashes no code. Direct-mapped: a collision replaces the older entry. */
#define PROV_SLOTS 512
struct prov_slot {
        char function_id[MP_ID_LEN + 1];
        int version;
        char code_sha256[2 * crypto_hash_sha256_BYTES + 1]; /* "" when the version has no code */
        char environment[512];
};
static struct prov_slot prov_slots[PROV_SLOTS];
static pthread_mutex_t prov_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t prov_index(const char *fid, int version) {
        size_t h = 5381;
        for (const char *c = fid; *c; c++)
                h = h * 33 + (unsigned char) *c;
        return (h * 31 + (size_t) version) % PROV_SLOTS;
}

/* The version's part of provenance into slot (0), from the cache or the store; -1 when
 * the version cannot be read now (not kept: the next render tries again). */
static int version_part(struct mp_core *core, const char *fid, int version, struct prov_slot *out) {
        size_t i = prov_index(fid, version);
        bool hit;

        pthread_mutex_lock(&prov_lock);
        hit = prov_slots[i].version == version && !strcmp(prov_slots[i].function_id, fid);
        if (hit)
                *out = prov_slots[i];
        pthread_mutex_unlock(&prov_lock);
        if (hit)
                return 0;

        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *ver = NULL, *env = NULL;
        if (strlen(fid) > MP_ID_LEN ||
            MP_STORE(core->store)->function_get_version(core->store, fid, version, &ver, &err) < 0)
                return -1;
        memset(out, 0, sizeof(*out));
        snprintf(out->function_id, sizeof(out->function_id), "%s", fid);
        out->version = version;
        const char *code = json_string_value(json_object_get(ver, "code"));
        if (code)
                mp_core_sha256_hex(code, strlen(code), out->code_sha256);
        env = environment_of(ver);
        snprintf(out->environment, sizeof(out->environment), "%s", json_string_value(env) ?: "");
        pthread_mutex_lock(&prov_lock);
        prov_slots[i] = *out;
        pthread_mutex_unlock(&prov_lock);
        return 0;
}

void mp_core_task_add_provenance(struct mp_core *core, json_t *task) {
        _cleanup_error_ struct mp_error err = { 0 };
        _cleanup_json_ json_t *prov = NULL;
        _cleanup_free_ char *canon = NULL;
        char hex[2 * crypto_hash_sha256_BYTES + 1];
        const char *fid = json_string_value(json_object_get(task, "function_id"));
        struct prov_slot vp;
        size_t len;

        prov = json_pack("{s:n,s:n,s:n,s:s}", "code_sha256", "environment", "inputs_sha256",
                         "platform_version", MECAPY_VERSION);
        if (!prov)
                return;
        if (mp_canonical_dump(json_object_get(task, "inputs"), &canon, &len, &err) >= 0) {
                mp_core_sha256_hex(canon, len, hex);
                json_object_set_new(prov, "inputs_sha256", json_string(hex));
        }
        /* A version that is gone (or cannot be read now) leaves its fields null. */
        if (fid && json_is_integer(json_object_get(task, "version")) &&
            version_part(core, fid, (int) json_integer_value(json_object_get(task, "version")), &vp) == 0) {
                if (vp.code_sha256[0])
                        json_object_set_new(prov, "code_sha256", json_string(vp.code_sha256));
                json_object_set_new(prov, "environment", json_string(vp.environment));
        }
        json_object_set_new(task, "provenance", TAKE_PTR(prov));
}

/* The stored result of a rendered task, parsed; NULL when it has none. */
static json_t *result_of(json_t *task) {
        json_t *rj = json_object_get(task, "result_json");
        if (!json_is_string(rj))
                return json_incref(json_object_get(task, "result"));
        return json_loadb(json_string_value(rj), json_string_length(rj), JSON_DECODE_ANY, NULL);
}

int mp_core_results_identical(json_t *a, json_t *b) {
        const char *sa = json_string_value(json_object_get(a, "status"));
        const char *sb = json_string_value(json_object_get(b, "status"));
        if (!mp_core_status_ended(sb) || !mp_core_status_ended(sa))
                return -1;
        if (!sa || !sb || strcmp(sa, "completed") || strcmp(sb, "completed"))
                return 0;
        _cleanup_json_ json_t *ra = result_of(a), *rb = result_of(b);
        _cleanup_free_ char *ca = NULL, *cb = NULL;
        _cleanup_error_ struct mp_error err = { 0 };
        size_t la = 0, lb = 0;
        if (!ra || !rb)
                return ra == rb;
        if (mp_canonical_dump(ra, &ca, &la, &err) < 0 || mp_canonical_dump(rb, &cb, &lb, &err) < 0)
                return 0;
        return la == lb && !memcmp(ca, cb, la);
}

int mp_core_task_rerun(struct mp_core *core, const struct mp_principal *p, const char *id, json_t **ret,
                       struct mp_error *err) {
        _cleanup_json_ json_t *orig = NULL, *body = NULL;
        int r = mp_core_task_load(core, p, id, &orig, err);
        if (r < 0)
                return r;
        const char *fid = json_string_value(json_object_get(orig, "function_id"));
        json_int_t version = json_integer_value(json_object_get(orig, "version"));
        if (!fid || version <= 0)
                return mp_error_set(err, EINVAL, 409, "conflict", "task %s names no function version to run again",
                                    id);
        body = json_pack("{s:O}", "inputs", json_object_get(orig, "inputs"));
        if (!body)
                return -ENOMEM;
        /* The same version and inputs, computed again: never answered from the cache. */
        return mp_core_execute_cache(core, p, fid, (int) version, body, NULL, true, ret, err);
}

/* --- diff --- */

struct diff {
        json_t *fields;
        size_t count;
        bool truncated;
        size_t differ;
};

static const char *unit_at(json_t *schema, const char *top) {
        return json_string_value(json_object_get(json_object_get(json_object_get(schema, "properties"), top),
                                                 "x-unit"));
}

static void add_field(struct diff *d, const char *path, json_t *a, json_t *b, const char *unit) {
        bool equal = a && b && json_equal(a, b);
        if (a && b && json_is_number(a) && json_is_number(b))
                equal = json_number_value(a) == json_number_value(b);
        if (!equal)
                d->differ++;
        if (d->count >= DIFF_MAX_FIELDS) {
                d->truncated = true;
                return;
        }
        d->count++;
        json_t *f = json_pack("{s:s,s:O?,s:O?,s:b}", "path", path, "a", a, "b", b, "equal", equal);
        if (!f)
                return;
        if (!a)
                json_object_set_new(f, "a", json_null());
        if (!b)
                json_object_set_new(f, "b", json_null());
        if (a && b && json_is_number(a) && json_is_number(b)) {
                double x = json_number_value(a), y = json_number_value(b);
                double abs_diff = y > x ? y - x : x - y, ax = x < 0 ? -x : x, ay = y < 0 ? -y : y;
                double scale = ax > ay ? ax : ay;
                json_object_set_new(f, "abs_diff", json_real(abs_diff));
                if (scale > 0)
                        json_object_set_new(f, "rel_diff", json_real(abs_diff / scale));
                else
                        json_object_set_new(f, "rel_diff", json_real(0));
        }
        json_object_set_new(f, "unit", unit ? json_string(unit) : json_null());
        json_array_append_new(d->fields, f);
}

static void walk(struct diff *d, const char *path, json_t *a, json_t *b, const char *unit, int depth) {
        char sub[1024];
        if (depth < MP_MAX_JSON_DEPTH && json_is_object(a) && json_is_object(b)) {
                const char *k;
                json_t *v;
                json_object_foreach(a, k, v) {
                        snprintf(sub, sizeof(sub), "%s.%s", path, k);
                        walk(d, sub, v, json_object_get(b, k), unit, depth + 1);
                }
                json_object_foreach(b, k, v)
                        if (!json_object_get(a, k)) {
                                snprintf(sub, sizeof(sub), "%s.%s", path, k);
                                walk(d, sub, NULL, v, unit, depth + 1);
                        }
                return;
        }
        if (depth < MP_MAX_JSON_DEPTH && json_is_array(a) && json_is_array(b)) {
                size_t n = json_array_size(a) > json_array_size(b) ? json_array_size(a) : json_array_size(b);
                for (size_t i = 0; i < n && !d->truncated; i++) {
                        snprintf(sub, sizeof(sub), "%s[%zu]", path, i);
                        walk(d, sub, json_array_get(a, i), json_array_get(b, i), unit, depth + 1);
                }
                return;
        }
        add_field(d, path, a, b, unit);
}

/* Top-level keys carry the schema's unit down to their leaves. */
static void walk_top(struct diff *d, const char *base, json_t *a, json_t *b, json_t *schema) {
        char sub[1024];
        if (!json_is_object(a) || !json_is_object(b)) {
                walk(d, base, a, b, NULL, 0);
                return;
        }
        const char *k;
        json_t *v;
        json_object_foreach(a, k, v) {
                snprintf(sub, sizeof(sub), "%s.%s", base, k);
                walk(d, sub, v, json_object_get(b, k), unit_at(schema, k), 1);
        }
        json_object_foreach(b, k, v)
                if (!json_object_get(a, k)) {
                        snprintf(sub, sizeof(sub), "%s.%s", base, k);
                        walk(d, sub, NULL, v, unit_at(schema, k), 1);
                }
}

int mp_core_task_diff(struct mp_core *core, const struct mp_principal *p, const char *a_id, const char *b_id,
                      json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *a = NULL, *b = NULL, *ra = NULL, *rb = NULL, *ver = NULL, *out = NULL;
        struct diff d = { 0 };
        int r;

        if ((r = mp_core_task_get(core, p, a_id, &a, NULL, err)) < 0 ||
            (r = mp_core_task_get(core, p, b_id, &b, NULL, err)) < 0)
                return r;
        /* Units come from a's version (the units part's x-unit, when it is there). */
        _cleanup_error_ struct mp_error verr = { 0 };
        (void) MP_STORE(core->store)->function_get_version(core->store,
                        json_string_value(json_object_get(a, "function_id")) ?: "",
                        (int) json_integer_value(json_object_get(a, "version")), &ver, &verr);
        ra = result_of(a);
        rb = result_of(b);
        d.fields = json_array();
        if (!d.fields)
                return -ENOMEM;
        walk_top(&d, "inputs", json_object_get(a, "inputs"), json_object_get(b, "inputs"),
                 json_object_get(ver, "input_schema"));
        walk_top(&d, "result", ra ? ra : json_null(), rb ? rb : json_null(), json_object_get(ver, "output_schema"));
        int same = mp_core_results_identical(a, b);
        out = json_pack("{s:{s:s,s:O,s:O,s:O},s:{s:s,s:O,s:O,s:O},s:o,s:I,s:b}",
                        "a", "id", a_id, "function_id", json_object_get(a, "function_id"), "version",
                        json_object_get(a, "version"), "status", json_object_get(a, "status"),
                        "b", "id", b_id, "function_id", json_object_get(b, "function_id"), "version",
                        json_object_get(b, "version"), "status", json_object_get(b, "status"),
                        "fields", d.fields, "differences", (json_int_t) d.differ, "truncated", d.truncated);
        if (!out)
                return -ENOMEM;
        json_object_set_new(out, "identical_results", same < 0 ? json_null() : json_boolean(same));
        *ret = TAKE_PTR(out);
        return 0;
}
