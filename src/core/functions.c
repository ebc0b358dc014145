/* Functions and their immutable versions. */
#include <ctype.h>
#include <string.h>

#include "base/limits.h"
#include "base/log.h"
#include "core/core-internal.h"
#include "exec/exec.h"

static const char *const fn_times[] = { "created_at", "updated_at", NULL };
static const char *const fn_drop[] = { "deleted_at", "company_id", "latest_version", "search", NULL };

static bool name_ok(const char *s) {
        if (!*s)
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && !strchr("_-.", *s))
                        return false;
        return true;
}

static bool identifier_ok(const char *s) {
        if (!*s || isdigit((unsigned char) *s))
                return false;
        for (; *s; s++)
                if (!isalnum((unsigned char) *s) && *s != '_')
                        return false;
        return true;
}

/* tags: at most MP_MAX_TAGS distinct tags (see mp_core_tag_valid). A new reference, or
 * NULL with field errors under "tags". */
static json_t *read_tags(json_t *v, struct mp_error *err) {
        size_t i;
        json_t *item;
        bool ok = true;

        if (!v || json_is_null(v))
                return json_array();
        if (!json_is_array(v) || json_array_size(v) > MP_MAX_TAGS) {
                mp_error_add_field(err, "tags", "must be a list of at most %d tags", MP_MAX_TAGS);
                return NULL;
        }
        json_array_foreach(v, i, item) {
                char path[32];
                snprintf(path, sizeof(path), "tags[%zu]", i);
                if (!json_is_string(item) || !mp_core_tag_valid(json_string_value(item))) {
                        mp_error_add_field(err, path, "must be 1 to %d characters of a-z, 0-9 and '-'",
                                           MP_MAX_TAG_LEN);
                        ok = false;
                        continue;
                }
                for (size_t k = 0; k < i; k++)
                        if (json_equal(json_array_get(v, k), item)) {
                                mp_error_add_field(err, path, "repeats \"%s\"", json_string_value(item));
                                ok = false;
                                break;
                        }
        }
        return ok ? json_incref(v) : NULL;
}

/* What the catalogue searches: name, description and tags, ASCII letters in lower case
 * (lowered here rather than in SQL, so both store backends match the same rows). */
static json_t *search_text(const char *name, const char *description, json_t *tags) {
        struct mp_buf b = { 0 };
        size_t i;
        json_t *t, *out;

        mp_buf_append(&b, name ? name : "", strlen(name ? name : ""));
        mp_buf_append(&b, "\n", 1);
        mp_buf_append(&b, description ? description : "", strlen(description ? description : ""));
        json_array_foreach(tags, i, t) {
                mp_buf_append(&b, "\n", 1);
                mp_buf_append(&b, json_string_value(t), json_string_length(t));
        }
        for (size_t k = 0; k < b.len; k++)
                b.data[k] = (char) tolower((unsigned char) b.data[k]);
        out = json_stringn(b.data ? b.data : "", b.len);
        mp_buf_free(&b);
        return out;
}

/* The limits a version runs under: the server defaults, overridden by what the body asks
 * within the server maxima. Field errors under "limits.". */
static json_t *read_limits(struct mp_core *core, json_t *body_limits, json_t *base,
                           struct mp_error *err) {
        const struct mp_config *c = core->config;
        int timeout = c->default_timeout_s, memory = c->default_memory_mb, cpus = c->default_cpus;
        const char *key;
        json_t *v;

        if (base) {
                timeout = (int) json_integer_value(json_object_get(base, "timeout_s"));
                memory = (int) json_integer_value(json_object_get(base, "memory_mb"));
                cpus = (int) json_integer_value(json_object_get(base, "cpus"));
        }
        if (body_limits && !json_is_null(body_limits)) {
                if (!json_is_object(body_limits)) {
                        mp_error_add_field(err, "limits", "must be an object");
                        return NULL;
                }
                json_object_foreach(body_limits, key, v) {
                        int *dst = NULL;
                        long max = 0, min = 1;
                        if (!strcmp(key, "timeout_s"))
                                dst = &timeout, max = c->max_timeout_s;
                        else if (!strcmp(key, "memory_mb"))
                                dst = &memory, max = c->max_memory_mb, min = 64;
                        else if (!strcmp(key, "cpus"))
                                dst = &cpus, max = c->max_cpus;
                        char path[96];
                        snprintf(path, sizeof(path), "limits.%.60s", key);
                        if (!dst) {
                                mp_error_add_field(err, path, "is not a known limit (timeout_s, memory_mb, cpus)");
                                continue;
                        }
                        if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
                                mp_error_add_field(err, path, "must be a whole number from %ld to %ld "
                                                   "(the server's maximum)", min, max);
                                continue;
                        }
                        *dst = (int) json_integer_value(v);
                }
        }
        return json_pack("{s:i,s:i,s:i}", "timeout_s", timeout, "memory_mb", memory, "cpus", cpus);
}

static json_t *read_requirements(json_t *v, struct mp_error *err) {
        size_t i;
        json_t *item;

        if (!v || json_is_null(v))
                return json_array();
        if (!json_is_array(v) || json_array_size(v) > MP_MAX_REQUIREMENTS) {
                mp_error_add_field(err, "requirements", "must be a list of at most %d package names",
                                   MP_MAX_REQUIREMENTS);
                return NULL;
        }
        json_array_foreach(v, i, item) {
                if (!mp_core_requirement_ok(json_string_value(item))) {
                        char path[48];
                        snprintf(path, sizeof(path), "requirements[%zu]", i);
                        mp_error_add_field(err, path, "must be a requirement like \"beamlib==1.0\" or "
                                           "\"numpy>=1.24\": a project name, optional [extras], version "
                                           "specifiers and --hash=sha256:HEX options (no URL, path or marker)");
                }
        }
        /* Installed into the version's environment (core/environments.c). */
        return json_incref(v);
}

/* "solvers": the solver binaries the version's sandbox may start (docs/functions.md,
 * the solver environment): a list of known names, each once, kept in this order. */
static json_t *read_solvers(json_t *v, struct mp_error *err) {
        size_t i;
        json_t *item;
        unsigned seen = 0;

        if (!v || json_is_null(v))
                return json_array();
        if (!json_is_array(v) || json_array_size(v) > 8) {
                mp_error_add_field(err, "solvers", "must be a list of solver names (calculix, gmsh)");
                return NULL;
        }
        json_array_foreach(v, i, item) {
                unsigned bit = mp_exec_solver_bit(json_string_value(item));
                char path[32];
                snprintf(path, sizeof(path), "solvers[%zu]", i);
                if (!bit)
                        mp_error_add_field(err, path, "is not a known solver (calculix, gmsh)");
                else if (seen & bit)
                        mp_error_add_field(err, path, "is named twice");
                seen |= bit;
        }
        return json_incref(v);
}

unsigned mp_core_solver_bits(json_t *ver) {
        unsigned bits = 0;
        size_t i;
        json_t *item;

        json_array_foreach(json_object_get(ver, "solvers"), i, item)
                bits |= mp_exec_solver_bit(json_string_value(item));
        return bits;
}

/* Analyze the code in the sandbox: the input schema, and the problems that refuse it. */
static int analyze(struct mp_core *core, const char *code, const char *handler,
                   json_t **ret_analysis, struct mp_error *err) {
        struct mp_exec_request req = {
                .op = MP_EXEC_ANALYZE,
                .code = code,
                .handler = handler,
                .policy = core->policy,
                .limits = { .timeout_s = 10, .memory_mb = 512, .cpus = 1, .max_procs = 4, .tmp_mb = 16 },
        };
        struct mp_exec_result res = { 0 };
        json_t *problems;
        size_t i;
        json_t *pr;
        int r;

        r = mp_executor_run(core->executor, &req, &res, err);
        if (r < 0)
                return r;
        if (res.status != MP_EXEC_OK) {
                const char *msg = json_string_value(json_object_get(res.error, "message"));
                mp_error_add_field(err, "code", "could not be analyzed: %s", msg ? msg : "unknown error");
                mp_exec_result_clear(&res);
                return mp_core_validation_done(err, "fields");
        }
        problems = json_object_get(res.result, "problems");
        json_array_foreach(problems, i, pr) {
                json_int_t line = json_integer_value(json_object_get(pr, "line"));
                const char *msg = json_string_value(json_object_get(pr, "message"));
                mp_error_add_field(err, "code", "line %lld: %s", (long long) line, msg ? msg : "");
                /* Keep the line as its own member too, for tools. */
                json_t *last = json_array_get(err->errors, json_array_size(err->errors) - 1);
                if (last)
                        json_object_set_new(last, "line", json_integer(line));
        }
        /* units: each declared one must be known (core/schema.c) */
        if (mp_core_schema_units(res.result, err) > 0 || json_array_size(problems)) {
                mp_exec_result_clear(&res);
                return mp_core_validation_done(err, "fields");
        }
        *ret_analysis = json_incref(res.result);
        mp_exec_result_clear(&res);
        return 0;
}

/* Build a version row from a body (create, or update over `prev`). */
static int read_version(struct mp_core *core, json_t *body, json_t *prev, json_t **ret,
                        struct mp_error *err) {
        const char *code = NULL, *handler = NULL, *isolation = NULL;
        _cleanup_json_ json_t *limits = NULL, *reqs = NULL, *analysis = NULL, *solvers = NULL;
        int r;

        mp_core_field_string(body, "code", !prev, MP_MAX_CODE_BYTES, &code, err);
        mp_core_field_string(body, "handler", false, 128, &handler, err);
        mp_core_field_string(body, "isolation", false, 16, &isolation, err);
        if (handler && !identifier_ok(handler))
                mp_error_add_field(err, "handler", "must be a Python identifier");
        if (isolation && strcmp(isolation, "warm") && strcmp(isolation, "per_call"))
                mp_error_add_field(err, "isolation", "must be \"warm\" or \"per_call\"");
        limits = read_limits(core, json_object_get(body, "limits"),
                             prev ? json_object_get(prev, "limits") : NULL, err);
        if (json_object_get(body, "requirements") || !prev)
                reqs = read_requirements(json_object_get(body, "requirements"), err);
        else
                reqs = json_incref(json_object_get(prev, "requirements"));
        if (json_object_get(body, "solvers") || !prev)
                solvers = read_solvers(json_object_get(body, "solvers"), err);
        else
                solvers = json_incref(json_object_get(prev, "solvers"));
        if (!solvers)
                solvers = err->errors ? NULL : json_array(); /* a version from before solvers */
        /* "cache": true declares the version deterministic: its calls are answered from
         * the result cache (docs/functions.md#result-cache). A new version keeps the
         * previous one's setting unless the body says. */
        json_t *cache = json_object_get(body, "cache");
        if (cache && !json_is_boolean(cache))
                mp_error_add_field(err, "cache", "must be true or false");
        bool cached = cache ? json_is_true(cache) : prev && json_integer_value(json_object_get(prev, "cache")) != 0;
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        if (!code)
                code = json_string_value(json_object_get(prev, "code"));
        if (!handler)
                handler = prev ? json_string_value(json_object_get(prev, "handler")) : "main";
        if (!isolation)
                isolation = prev ? json_string_value(json_object_get(prev, "isolation")) : "warm";
        if (!mp_utf8_valid(code, strlen(code)))
                return mp_error_set(err, EINVAL, 422, "validation", "code is not valid UTF-8");
        if ((r = analyze(core, code, handler, &analysis, err)) < 0)
                return r;
        /* Verification cases (verify.c): the body's, else the previous version's. */
        _cleanup_json_ json_t *cases = NULL;
        if (json_object_get(body, "verification") && !json_is_null(json_object_get(body, "verification"))) {
                cases = mp_verify_read_cases(json_object_get(body, "verification"),
                                             json_object_get(analysis, "input_schema"), err);
                if ((r = mp_core_validation_done(err, "fields")) < 0)
                        return r;
        } else if (prev && !json_object_get(body, "verification")) {
                cases = json_incref(json_object_get(prev, "verification_cases"));
        }
        /* Its environment: resolved now, built in the background (core/environments.c). */
        _cleanup_json_ json_t *env = NULL;
        if ((r = mp_core_env_prepare(core, reqs, &env, err)) < 0)
                return r;
        *ret = json_pack("{s:s,s:s,s:O,s:O,s:O,s:s,s:I}", "code", code, "handler", handler,
                         "requirements", reqs, "input_schema", json_object_get(analysis, "input_schema"),
                         "limits", limits, "isolation", isolation, "created_at", (json_int_t) mp_now_ms());
        json_object_set_new(*ret, "cache", json_integer(cached));
        json_object_set(*ret, "solvers", solvers);
        json_object_set_new(*ret, "verification_cases", json_array_size(cases) ? json_incref(cases) : json_null());
        json_object_set_new(*ret, "verification", mp_verify_initial(cases));
        json_t *out_schema = json_object_get(analysis, "output_schema");
        json_object_set(*ret, "output_schema", out_schema ? out_schema : json_null());
        if (env)
                json_object_set(*ret, "environment_id", json_object_get(env, "id"));
        return 0;
}

/* The function as the API shows it: metadata and one version. */
static json_t *render(struct mp_core *core, json_t *fn, json_t *ver, bool with_code) {
        json_t *out = json_deep_copy(fn);
        static const char *const keys[] = { "handler", "input_schema", "requirements", "limits",
                                            "isolation", "output_schema", NULL };
        for (const char *const *k = keys; *k; k++)
                json_object_set(out, *k, json_object_get(ver, *k));
        json_object_set(out, "version", json_object_get(ver, "version"));
        if (with_code)
                json_object_set(out, "code", json_object_get(ver, "code"));
        json_object_set_new(out, "cache", json_boolean(json_integer_value(json_object_get(ver, "cache")) != 0));
        json_t *solvers = json_object_get(ver, "solvers");
        json_object_set_new(out, "solvers", json_is_array(solvers) ? json_incref(solvers) : json_array());
        if (with_code) {
                json_t *cases = json_object_get(ver, "verification_cases");
                json_object_set_new(out, "verification_cases", json_is_array(cases) ? json_incref(cases) : json_array());
        }
        json_object_set_new(out, "verification", mp_verify_render(ver));
        json_object_set_new(out, "review", mp_review_render(ver));
        json_object_set_new(out, "environment", mp_core_env_brief(core, ver));
        json_object_del(out, "environment_id");
        mp_core_shape(out, fn_times, fn_drop);
        return out;
}

/* Without a description, the first line of the handler's docstring serves. */
static const char *doc_line(json_t *ver) {
        const char *d = json_string_value(json_object_get(json_object_get(ver, "input_schema"), "description"));
        return d ? d : "";
}

int mp_core_function_create(struct mp_core *core, const struct mp_principal *p, json_t *body,
                            json_t **ret, struct mp_error *err) {
        const char *name = NULL, *description = NULL, *visibility = NULL;
        _cleanup_json_ json_t *ver = NULL, *fn = NULL;
        char id[MP_ID_LEN + 1];
        int r;

        _cleanup_json_ json_t *tags = NULL;

        if ((r = mp_core_authorize(p, MP_ACTION_FUNCTION_WRITE, err)) < 0)
                return r;
        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        mp_core_field_string(body, "name", true, MP_MAX_NAME_LEN, &name, err);
        tags = read_tags(json_object_get(body, "tags"), err);
        mp_core_field_string(body, "description", false, MP_MAX_DESCRIPTION_LEN, &description, err);
        mp_core_field_string(body, "visibility", false, 16, &visibility, err);
        if (name && !name_ok(name))
                mp_error_add_field(err, "name", "may hold only letters, digits, '_', '-' and '.'");
        /* The code itself is read with the version below; its absence is reported here
         * with the other missing fields, in one answer. */
        if (!json_is_string(json_object_get(body, "code")))
                mp_error_add_field(err, "code", json_object_get(body, "code") ? "must be a string"
                                                                              : "is required");
        if (visibility && strcmp(visibility, "private") && strcmp(visibility, "company") &&
            strcmp(visibility, "public"))
                mp_error_add_field(err, "visibility", "must be private, company or public");
        if (err->errors) {
                /* Report body errors together with code errors in one answer where we can;
                 * the code is only analyzed once the body is well-formed. */
                json_decref(read_limits(core, json_object_get(body, "limits"), NULL, err));
                return mp_core_validation_done(err, "fields");
        }
        if ((r = read_version(core, body, NULL, &ver, err)) < 0)
                return r;

        mp_id_new(id);
        int64_t now = mp_now_ms();
        fn = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:I}", "id", id, "owner_id", p->user_id, "name",
                       name, "description", description ? description : doc_line(ver), "visibility",
                       visibility ? visibility : "private", "created_at", (json_int_t) now,
                       "updated_at", (json_int_t) now);
        json_object_set_new(fn, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        json_object_set(fn, "tags", tags);
        json_object_set_new(fn, "search", search_text(name, json_string_value(json_object_get(fn, "description")),
                                                      tags));
        json_object_set_new(ver, "version", json_integer(1));
        if (visibility && !strcmp(visibility, "public") && (r = mp_verify_publish_check(core, id, fn, ver, err)) < 0)
                return r;
        r = MP_STORE(core->store)->function_create(core->store, fn, ver, err);
        if (r == -EEXIST)
                return mp_error_set(err, EEXIST, 409, "conflict",
                                    "you already have a function named \"%s\": use PUT "
                                    "/api/v1/functions/{id} to add a version", name);
        if (r < 0)
                return r;
        if (json_array_size(json_object_get(ver, "verification_cases")) &&
            (r = mp_verify_start(core, p, id, 1, json_object_get(ver, "verification_cases"), err)) < 0)
                return r;
        json_object_set_new(ver, "version", json_integer(1));
        *ret = render(core, fn, ver, false);
        return 0;
}

json_t *mp_core_function_render(struct mp_core *core, json_t *fn, json_t *ver) {
        return render(core, fn, ver, true);
}

/* A live function the principal may see, else 404 (never 403: existence is private). */
static int load_visible(struct mp_core *core, const struct mp_principal *p, const char *id,
                        json_t **ret, struct mp_error *err) {
        json_t *fn = NULL;
        int r;

        if (!mp_id_valid(id))
                return mp_core_not_found(err, "function", id);
        r = MP_STORE(core->store)->function_get(core->store, id, &fn, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "function", id);
        if (r < 0)
                return r;
        if (!mp_core_can_see_function(p, fn)) {
                json_decref(fn);
                return mp_core_not_found(err, "function", id);
        }
        *ret = fn;
        return 0;
}

static int load_owned(struct mp_core *core, const struct mp_principal *p, const char *id,
                      json_t **ret, struct mp_error *err) {
        json_t *fn = NULL;
        int r = load_visible(core, p, id, &fn, err);
        if (r < 0)
                return r;
        /* Seen, so its existence is no secret: the caller's role answers 403. */
        if ((r = mp_core_authorize(p, MP_ACTION_FUNCTION_WRITE, err)) < 0) {
                json_decref(fn);
                return r;
        }
        if (strcmp(json_string_value(json_object_get(fn, "owner_id")), p->user_id)) {
                json_decref(fn);
                /* Visible but not theirs: they may call it, not change it. */
                return mp_error_set(err, EPERM, 403, "forbidden",
                                    "only the owner of function %s may change or delete it", id);
        }
        *ret = fn;
        return 0;
}

int mp_core_function_get(struct mp_core *core, const struct mp_principal *p, const char *id,
                         int version, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *ver = NULL;
        int r = load_visible(core, p, id, &fn, err);
        if (r < 0)
                return r;
        r = MP_STORE(core->store)->function_get_version(core->store, id, version, &ver, err);
        if (r == -ENOENT)
                return mp_error_set(err, ENOENT, 404, "not_found", "function %s has no version %d", id,
                                    version);
        if (r < 0)
                return r;
        mp_verify_refresh(core, id, ver);
        *ret = render(core, fn, ver, true);
        return 0;
}

int mp_core_function_list(struct mp_core *core, const struct mp_principal *p,
                          const char *name, const char *cursor, int limit, json_t **ret,
                          struct mp_error *err) {
        _cleanup_json_ json_t *filter = NULL, *items = NULL;
        struct mp_store_list list = { 0 };
        size_t i;
        json_t *fn;
        int r;

        filter = json_pack("{s:s,s:i}", "viewer_id", p->user_id, "limit", limit);
        json_object_set_new(filter, "company_id", p->company_id[0] ? json_string(p->company_id) : json_null());
        if (name)
                json_object_set_new(filter, "name", json_string(name));
        if (cursor)
                json_object_set_new(filter, "cursor", json_string(cursor));
        r = MP_STORE(core->store)->function_list(core->store, filter, &list, err);
        if (r < 0)
                return mp_core_list_failed(r, cursor, err);
        items = json_array();
        /* The store's rows carry the latest version's fields too. */
        json_array_foreach(list.items, i, fn)
                json_array_append_new(items, render(core, fn, fn, false));
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}

int mp_core_function_update(struct mp_core *core, const struct mp_principal *p, const char *id,
                            json_t *body, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *prev = NULL, *ver = NULL, *fields = NULL, *tags = NULL;
        const char *description = NULL, *visibility = NULL, *name = NULL;
        bool new_version = false;
        int latest = 0, r;

        if (!json_is_object(body))
                return mp_error_set(err, EINVAL, 422, "validation", "the body must be a JSON object");
        if ((r = load_owned(core, p, id, &fn, err)) < 0)
                return r;
        mp_core_field_string(body, "name", false, MP_MAX_NAME_LEN, &name, err);
        if (name && strcmp(name, json_string_value(json_object_get(fn, "name"))))
                mp_error_add_field(err, "name", "cannot be changed (create a new function instead)");
        mp_core_field_string(body, "description", false, MP_MAX_DESCRIPTION_LEN, &description, err);
        mp_core_field_string(body, "visibility", false, 16, &visibility, err);
        if (visibility && strcmp(visibility, "private") && strcmp(visibility, "company") &&
            strcmp(visibility, "public"))
                mp_error_add_field(err, "visibility", "must be private, company or public");
        if (json_object_get(body, "tags"))
                tags = read_tags(json_object_get(body, "tags"), err);
        if ((r = mp_core_validation_done(err, "fields")) < 0)
                return r;
        static const char *const vkeys[] = { "code", "handler", "requirements", "limits", "isolation",
                                             "cache", "solvers", "verification", NULL };
        for (const char *const *k = vkeys; *k; k++)
                if (json_object_get(body, *k))
                        new_version = true;
        if (new_version) {
                r = MP_STORE(core->store)->function_get_version(core->store, id, 0, &prev, err);
                if (r < 0)
                        return r;
                if ((r = read_version(core, body, prev, &ver, err)) < 0)
                        return r;
                /* Its number, for the publishing check's message (the store numbers it). */
                json_object_set_new(ver, "version", json_integer(json_integer_value(json_object_get(prev, "version")) + 1));
        }
        /* Publishing: the version that will be the latest must have passed its cases (and
         * be approved where the company says so). */
        if (visibility && !strcmp(visibility, "public")) {
                if (!ver && (r = MP_STORE(core->store)->function_get_version(core->store, id, 0, &prev, err)) < 0)
                        return r;
                if (!ver)
                        mp_verify_refresh(core, id, prev);
                if ((r = mp_verify_publish_check(core, id, fn, ver ? ver : prev, err)) < 0)
                        return r;
        }
        fields = json_object();
        if (description)
                json_object_set_new(fields, "description", json_string(description));
        if (visibility)
                json_object_set_new(fields, "visibility", json_string(visibility));
        if (tags || description) {
                json_t *t = tags ? tags : json_object_get(fn, "tags");
                if (!json_is_array(t))
                        t = NULL;
                _cleanup_json_ json_t *none = t ? NULL : json_array();
                json_object_set(fields, "tags", t ? t : none);
                json_object_set_new(fields, "search",
                                    search_text(json_string_value(json_object_get(fn, "name")),
                                                description ? description
                                                            : json_string_value(json_object_get(fn, "description")),
                                                t ? t : none));
        }
        r = MP_STORE(core->store)->function_update(core->store, id, fields, ver, mp_now_ms(), &latest, err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "function", id);
        if (r < 0)
                return r;
        if (ver && json_array_size(json_object_get(ver, "verification_cases")) &&
            (r = mp_verify_start(core, p, id, latest, json_object_get(ver, "verification_cases"), err)) < 0)
                return r;
        return mp_core_function_get(core, p, id, latest, ret, err);
}

int mp_core_function_versions(struct mp_core *core, const struct mp_principal *p,
                              const char *id, json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL, *items = NULL;
        size_t i;
        json_t *v;
        int r = load_visible(core, p, id, &fn, err);
        if (r < 0)
                return r;
        r = MP_STORE(core->store)->function_list_versions(core->store, id, &items, err);
        if (r < 0)
                return r;
        json_array_foreach(items, i, v) {
                static const char *const times[] = { "created_at", NULL };
                static const char *const drop[] = { "code", "function_id", "environment_id", NULL };
                json_object_set_new(v, "environment", mp_core_env_brief(core, v));
                mp_core_shape(v, times, drop);
                json_object_set_new(v, "verification", mp_verify_render(v));
                json_object_set_new(v, "review", mp_review_render(v));
        }
        *ret = json_pack("{s:O}", "items", items);
        return 0;
}

int mp_core_function_delete(struct mp_core *core, const struct mp_principal *p, const char *id,
                            struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL;
        int r = load_owned(core, p, id, &fn, err);
        if (r < 0)
                return r;
        r = MP_STORE(core->store)->function_delete(core->store, id, mp_now_ms(), err);
        if (r == -ENOENT)
                return mp_core_not_found(err, "function", id);
        return r < 0 ? r : 0;
}

int mp_core_load_callable(struct mp_core *core, const struct mp_principal *p, const char *id,
                          int version, json_t **ret_fn, json_t **ret_ver, struct mp_error *err) {
        _cleanup_json_ json_t *fn = NULL;
        int r = load_visible(core, p, id, &fn, err);
        if (r < 0)
                return r;
        r = MP_STORE(core->store)->function_get_version(core->store, id, version, ret_ver, err);
        if (r == -ENOENT)
                return mp_error_set(err, ENOENT, 404, "not_found", "function %s has no version %d", id,
                                    version);
        if (r < 0)
                return r;
        *ret_fn = TAKE_PTR(fn);
        return 0;
}

/* --- the public catalogue --- */

int mp_core_catalogue(struct mp_core *core, const struct mp_principal *p, const char *q,
                      const char *tag, const char *author, const char *cursor, int limit,
                      json_t **ret, struct mp_error *err) {
        _cleanup_json_ json_t *filter = NULL, *items = NULL;
        _cleanup_free_ char *lq = NULL, *la = NULL;
        struct mp_store_list list = { 0 };
        size_t i;
        json_t *row;
        int r;

        if (q && (strlen(q) > MP_MAX_CATALOGUE_QUERY_LEN || !mp_utf8_valid(q, strlen(q)))) {
                mp_error_set(err, EINVAL, 400, "bad_request",
                             "query parameter q must be valid UTF-8 of at most %d bytes",
                             MP_MAX_CATALOGUE_QUERY_LEN);
                mp_error_add_field(err, "q", "must be at most %d bytes of UTF-8", MP_MAX_CATALOGUE_QUERY_LEN);
                return -EINVAL;
        }
        if (tag && !mp_core_tag_valid(tag)) {
                mp_error_set(err, EINVAL, 400, "bad_request",
                             "query parameter tag must be 1 to %d characters of a-z, 0-9 and '-'",
                             MP_MAX_TAG_LEN);
                mp_error_add_field(err, "tag", "must be 1 to %d characters of a-z, 0-9 and '-'", MP_MAX_TAG_LEN);
                return -EINVAL;
        }
        if (author && (!*author || strlen(author) > MP_MAX_EMAIL_LEN || !mp_utf8_valid(author, strlen(author)))) {
                mp_error_set(err, EINVAL, 400, "bad_request",
                             "query parameter author must be an email or the part of one before '@'");
                mp_error_add_field(err, "author", "must be an email or the part of one before '@'");
                return -EINVAL;
        }
        /* The search text and emails are stored with ASCII letters in lower case. */
        if ((q && !(lq = strdup(q))) || (author && !(la = strdup(author))))
                return -ENOMEM;
        for (char *c = lq; c && *c; c++)
                *c = (char) tolower((unsigned char) *c);
        for (char *c = la; c && *c; c++)
                *c = (char) tolower((unsigned char) *c);
        filter = json_pack("{s:i}", "limit", limit);
        if (lq && *lq)
                json_object_set_new(filter, "q", json_string(lq));
        if (tag)
                json_object_set_new(filter, "tag", json_string(tag));
        if (la)
                json_object_set_new(filter, strchr(la, '@') ? "author_email" : "author_name", json_string(la));
        if (cursor)
                json_object_set_new(filter, "cursor", json_string(cursor));
        r = MP_STORE(core->store)->function_catalogue(core->store, filter, &list, err);
        if (r < 0)
                return mp_core_list_failed(r, cursor, err);
        items = json_array();
        json_array_foreach(list.items, i, row) {
                static const char *const times[] = { "updated_at", NULL };
                static const char *const drop[] = { "created_at", NULL };
                mp_core_shape(row, times, drop);
                json_array_append(items, row);
        }
        *ret = mp_core_page(TAKE_PTR(items), &list);
        return *ret ? 0 : -ENOMEM;
}
