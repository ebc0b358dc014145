/* A workflow definition, parsed and validated the way a person fixes one: every problem
 * is collected with its field path ("nodes[1].inputs.M.from") before the 422, not just
 * the first. Functions are resolved through the caller's callback, so this file knows
 * nothing of the store: it sees names, versions and schemas.
 *
 * Order of the checks: the shape of each field and each node's function resolved; then
 * inputs, references (params, nodes) and the types along each edge where both schemas
 * name them; then, when every node has its own id, a cycle. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "base/json.h"
#include "base/limits.h"
#include "core/core-internal.h"
#include "core/flow.h"
#include "core/units.h"

#define PATH_MAX_LEN 400
#define NAME_RULE "a letter or _, then letters, digits, _ or -"

enum mp_flow_input mp_flow_input_kind(json_t *input) {
        json_t *param = json_object_get(input, "param"), *from = json_object_get(input, "from");
        json_t *path = json_object_get(input, "path");
        size_t n = json_object_size(input);

        if (!json_is_object(input))
                return MP_FLOW_LITERAL;
        if (param)
                return n == 1 && json_is_string(param) ? MP_FLOW_PARAM : MP_FLOW_BAD;
        if (from)
                return json_is_string(from) && (n == 1 || (n == 2 && json_is_string(path))) ? MP_FLOW_FROM
                                                                                              : MP_FLOW_BAD;
        return MP_FLOW_LITERAL;
}

json_t *mp_flow_literal(json_t *input) {
        json_t *wrapped = json_object_get(input, "literal");
        return wrapped && json_object_size(input) == 1 ? wrapped : input;
}

/* A node id, parameter or output name: a letter or "_", then letters, digits, "_", "-".
 * No dots: ids and names appear in paths. */
static bool name_valid(const char *s, size_t max) {
        size_t n = s ? strlen(s) : 0;
        if (n == 0 || n > max || !(s[0] == '_' || ((s[0] | 32) >= 'a' && (s[0] | 32) <= 'z')))
                return false;
        return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == n;
}

static int depth_of(json_t *v) {
        int d = 0;
        size_t i;
        const char *k;
        json_t *e;

        if (json_is_array(v))
                json_array_foreach(v, i, e)
                        d = MP_MAX(d, depth_of(e));
        else if (json_is_object(v))
                json_object_foreach(v, k, e)
                        d = MP_MAX(d, depth_of(e));
        else
                return 0;
        return d + 1;
}

/* --- types named by schemas --- */

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64 };

static unsigned type_bit(const char *t) {
        static const struct { const char *name; unsigned bit; } names[] = {
                { "null", T_NULL }, { "boolean", T_BOOL }, { "integer", T_INT }, { "number", T_NUM | T_INT },
                { "string", T_STR }, { "array", T_ARR }, { "object", T_OBJ },
        };
        for (size_t i = 0; t && i < ELEMENTSOF(names); i++)
                if (!strcmp(names[i].name, t))
                        return names[i].bit;
        return 0;
}

/* The JSON types a schema allows, 0 when it does not say (no check then). A number
 * allows integers: an integer given where a number is expected is fine. */
static unsigned type_mask(json_t *schema) {
        json_t *t = json_object_get(schema, "type"), *e;
        unsigned mask = 0;
        size_t i;

        if (json_is_string(t))
                return type_bit(json_string_value(t));
        if (json_is_array(t)) {
                json_array_foreach(t, i, e) {
                        unsigned b = type_bit(json_string_value(e));
                        if (!b)
                                return 0;
                        mask |= b;
                }
                return mask;
        }
        if (json_is_array(t = json_object_get(schema, "anyOf"))) {
                json_array_foreach(t, i, e) {
                        unsigned b = type_mask(e);
                        if (!b)
                                return 0;
                        mask |= b;
                }
        }
        return mask;
}

static const char *mask_name(unsigned m) {
        if (m & T_NUM)
                return "a number";
        return m & T_INT ? "an integer" : m & T_STR ? "a string" : m & T_ARR ? "a list" :
               m & T_OBJ ? "an object" : m & T_BOOL ? "a boolean" : "null";
}

/* The schema of the value at path inside a value of `schema`, NULL when unknown. */
static json_t *schema_at(json_t *schema, const char *path) {
        char seg[MP_MAX_PATH_LEN + 1];

        while (schema && path && *path) {
                size_t n = strcspn(path, ".");
                json_t *props = json_object_get(schema, "properties");
                snprintf(seg, sizeof(seg), "%.*s", (int) n, path);
                if (json_object_get(props, seg))
                        schema = json_object_get(props, seg);
                else if (json_is_object(json_object_get(schema, "items")) && strspn(seg, "0123456789") == n)
                        schema = json_object_get(schema, "items");
                else if (json_is_object(json_object_get(schema, "additionalProperties")))
                        schema = json_object_get(schema, "additionalProperties");
                else
                        return NULL;
                path += n + (path[n] == '.');
        }
        return schema;
}

/* --- the parse --- */

struct node {
        const char *id;       /* borrowed from the body; NULL when invalid */
        json_t *body;         /* borrowed */
        json_t *fn;           /* owned: what resolve said, or NULL */
        json_t *deps;         /* owned: ids this node reads, each once */
        json_t *units;        /* owned, or NULL: {input: unit of the result it reads} (units) */
        bool placed;          /* in the topological order already */
};

struct parse {
        json_t *body, *params;      /* params: declared (borrowed) or derived (owned in derived) */
        json_t *derived;            /* owned: {name: schema} when params are derived */
        json_t *derived_required;   /* owned: {name: true} of derived params some use requires */
        struct node *nodes;
        size_t n;
        struct mp_error *err;
};

static struct node *find(struct parse *ps, const char *id) {
        for (size_t i = 0; id && i < ps->n; i++)
                if (ps->nodes[i].id && !strcmp(ps->nodes[i].id, id))
                        return &ps->nodes[i];
        return NULL;
}

static const char *fn_name(struct node *nd) {
        return json_string_value(json_object_get(nd->body, "function"));
}

/* The input schema of the function at key, when the function's schema lists it. */
static json_t *input_schema_of(struct node *nd, const char *key) {
        return json_object_get(json_object_get(json_object_get(nd->fn, "input_schema"), "properties"), key);
}

static void add_dep(struct node *nd, const char *id) {
        json_t *e;
        size_t i;
        json_array_foreach(nd->deps, i, e)
                if (!strcmp(json_string_value(e), id))
                        return;
        json_array_append_new(nd->deps, json_string(id));
}

/* A {"from", "path"} reference at field: the node exists; the path is well formed. */
static struct node *check_from(struct parse *ps, struct node *nd, json_t *ref, const char *field) {
        const char *from = json_string_value(json_object_get(ref, "from"));
        struct node *src = find(ps, from);
        char sub[PATH_MAX_LEN];

        snprintf(sub, sizeof(sub), "%s.path", field);
        mp_jsonpath_check(json_string_value(json_object_get(ref, "path")), sub, ps->err);
        snprintf(sub, sizeof(sub), "%s.from", field);
        if (!src) {
                mp_error_add_field(ps->err, sub, "names no node of this workflow (\"%.*s\")",
                                   MP_MAX_NODE_ID_LEN + 1, from);
                return NULL;
        }
        add_dep(nd, src->id);
        return src;
}

/* A {"param"} reference at field, used as a value of `schema` (may be NULL: unknown). */
static void check_param(struct parse *ps, json_t *ref, json_t *schema, const char *field) {
        const char *name = json_string_value(json_object_get(ref, "param"));
        char sub[PATH_MAX_LEN];
        json_t *have;

        snprintf(sub, sizeof(sub), "%s.param", field);
        if (!ps->derived) {
                have = json_object_get(ps->params, name);
                if (!have) {
                        mp_error_add_field(ps->err, sub, "names no parameter of this workflow (\"%.*s\")",
                                           MP_MAX_NAME_LEN + 1, name);
                        return;
                }
        } else {
                if (!name_valid(name, MP_MAX_NAME_LEN)) {
                        mp_error_add_field(ps->err, sub, "must be a parameter name (" NAME_RULE ")");
                        return;
                }
                if (!(have = json_object_get(ps->derived, name))) {
                        json_t *s = schema ? json_deep_copy(schema) : json_object();
                        json_object_del(s, "default");
                        json_object_set_new(ps->derived, name, s);
                        have = s;
                }
                if (!schema || !json_object_get(schema, "default"))
                        json_object_set_new(ps->derived_required, name, json_true());
        }
        unsigned want = type_mask(schema), got = type_mask(have);
        if (want && got && !(want & got))
                mp_error_add_field(ps->err, field, "expects %s, but parameter \"%s\" is %s", mask_name(want), name,
                                   mask_name(got));
}

/* The type along an edge: what src gives at path against what the input expects. */
static void check_edge(struct node *src, const char *path, json_t *want_schema, bool over_list,
                       const char *field, struct mp_error *err) {
        json_t *got_schema = schema_at(json_object_get(src->fn, "result_schema"), path);
        unsigned got = type_mask(got_schema), want;

        if (over_list) {
                if (got && !(got & T_ARR)) {
                        mp_error_add_field(err, field, "maps over node \"%s\"%s%s, which gives %s, not a list", src->id,
                                           path ? " at " : "", path ? path : "", mask_name(got));
                        return;
                }
                got = type_mask(json_object_get(got_schema, "items"));
        }
        want = type_mask(want_schema);
        if (want && got && !(want & got))
                mp_error_add_field(err, field, "expects %s, but node \"%s\" gives %s%s%s%s", mask_name(want),
                                   src->id, mask_name(got), over_list ? " elements" : "", path ? " at " : "",
                                   path ? path : "");
}

/* units: a result field with a unit into an input with a unit. Another dimension is
 * refused (a stress into a length); another unit of the same dimension is converted
 * when the node runs: the node records the unit it reads ("units": {input: unit}).
 * over_list: a map's elements, each of the list's items (key: map.as); their unit is the
 * items' "x-unit", else the list's own (Annotated[list[float], "mm"]). */
static void check_edge_units(struct node *nd, struct node *src, const char *path, const char *key,
                             json_t *want_schema, bool over_list, const char *field, struct mp_error *err) {
        json_t *got_schema = schema_at(json_object_get(src->fn, "result_schema"), path);
        json_t *items = over_list ? json_object_get(got_schema, "items") : NULL;
        if (json_is_string(json_object_get(items, "x-unit")))
                got_schema = items;
        const char *got = json_string_value(json_object_get(got_schema, "x-unit"));
        const char *want = json_string_value(json_object_get(want_schema, "x-unit"));
        struct mp_unit g, w;
        char gd[96], wd[96];

        if (!got || !want || !strcmp(got, want) || mp_units_parse(got, &g) < 0 || mp_units_parse(want, &w) < 0)
                return;
        if (!mp_units_same_dimension(&g, &w)) {
                mp_units_dimension_name(&g, got, gd, sizeof(gd));
                mp_units_dimension_name(&w, want, wd, sizeof(wd));
                mp_error_add_field(err, field, "node \"%s\" gives %s%s in %s (%s %s); %s is %s %s (%s)", src->id,
                                   path ? path : "its result", over_list ? " (each element)" : "", got,
                                   strchr("aeiou", gd[0]) ? "an" : "a", gd, key,
                                   strchr("aeiou", wd[0]) ? "an" : "a", wd, want);
                return;
        }
        if (!nd->units)
                nd->units = json_object();
        json_object_set_new(nd->units, key, json_string(got));
}

/* A literal against the function's schema for that input. */
static void check_literal(struct parse *ps, struct node *nd, const char *key, json_t *value, const char *base,
                          const char *field) {
        json_t *schema = input_schema_of(nd, key), *e;
        struct mp_error one = { 0 };
        size_t i;

        if (depth_of(value) > MP_MAX_LITERAL_DEPTH) {
                mp_error_add_field(ps->err, field, "is nested deeper than %d levels", MP_MAX_LITERAL_DEPTH);
                return;
        }
        if (!schema)
                return;
        json_t *s = json_pack("{s:s,s:{s:O}}", "type", "object", "properties", key, schema);
        json_t *v = json_pack("{s:O}", key, value);
        mp_core_schema_validate(s, v, &one);
        json_array_foreach(one.errors, i, e) {
                const char *p = json_string_value(json_object_get(e, "path"));
                char sub[PATH_MAX_LEN];
                /* "inputs.W[2]" -> "nodes[1].inputs.W[2]" */
                snprintf(sub, sizeof(sub), "%s.inputs%s", base, p && strlen(p) > 6 ? p + 6 : "");
                mp_error_add_field(ps->err, sub, "%s", json_string_value(json_object_get(e, "message")));
        }
        mp_error_clear(&one);
        json_decref(s);
        json_decref(v);
}

static void check_inputs(struct parse *ps, struct node *nd, const char *base) {
        json_t *inputs = json_object_get(nd->body, "inputs"), *in;
        json_t *map = json_object_get(nd->body, "map");
        json_t *fn_schema = json_object_get(nd->fn, "input_schema");
        const char *as = json_string_value(json_object_get(map, "as")), *key;
        char field[PATH_MAX_LEN];
        json_t *e;
        size_t i;

        json_object_foreach(inputs, key, in) {
                snprintf(field, sizeof(field), "%s.inputs.%.*s", base, MP_MAX_NAME_LEN, key);
                json_t *props = json_object_get(fn_schema, "properties");
                if (nd->fn && props && json_is_false(json_object_get(fn_schema, "additionalProperties")) &&
                    !json_object_get(props, key))
                        mp_error_add_field(ps->err, field, "is not an input of function \"%s\"", fn_name(nd));
                if (as && !strcmp(as, key))
                        mp_error_add_field(ps->err, field, "is also the input the map sets (map.as)");
                switch (mp_flow_input_kind(in)) {
                case MP_FLOW_LITERAL:
                        check_literal(ps, nd, key, mp_flow_literal(in), base, field);
                        break;
                case MP_FLOW_PARAM:
                        check_param(ps, in, input_schema_of(nd, key), field);
                        break;
                case MP_FLOW_FROM: {
                        struct node *src = check_from(ps, nd, in, field);
                        if (src && src->fn && nd->fn) {
                                check_edge(src, json_string_value(json_object_get(in, "path")),
                                           input_schema_of(nd, key), false, field, ps->err);
                                check_edge_units(nd, src, json_string_value(json_object_get(in, "path")), key,
                                                 input_schema_of(nd, key), false, field, ps->err);
                        }
                        break;
                }
                default:
                        mp_error_add_field(ps->err, field,
                                           "must be a literal, {\"param\": name} or {\"from\": node, \"path\": path} "
                                           "(wrap an object literal holding \"param\" or \"from\" as "
                                           "{\"literal\": ...})");
                }
        }
        /* Every input the function requires is given by the node or its map. */
        json_array_foreach(json_object_get(fn_schema, "required"), i, e) {
                const char *need = json_string_value(e);
                if (need && !json_object_get(inputs, need) && !(as && !strcmp(as, need))) {
                        snprintf(field, sizeof(field), "%s.inputs.%.*s", base, MP_MAX_NAME_LEN, need);
                        mp_error_add_field(ps->err, field, "is required by function \"%s\"", fn_name(nd));
                }
        }
}

static void check_map(struct parse *ps, struct node *nd, const char *base) {
        static const char *const keys[] = { "over", "as", "concurrency", "skip_failures", NULL };
        json_t *map = json_object_get(nd->body, "map"), *over, *c, *v;
        char field[PATH_MAX_LEN];
        const char *as, *key;

        if (!map)
                return;
        snprintf(field, sizeof(field), "%s.map", base);
        if (!json_is_object(map)) {
                mp_error_add_field(ps->err, field, "must be {\"over\", \"as\", \"concurrency\", \"skip_failures\"}");
                return;
        }
        json_object_foreach(map, key, v) {
                bool known = false;
                for (const char *const *k = keys; *k; k++)
                        known |= !strcmp(*k, key);
                if (!known) {
                        snprintf(field, sizeof(field), "%s.map.%.*s", base, MP_MAX_NAME_LEN, key);
                        mp_error_add_field(ps->err, field,
                                           "is not a field of a map (over, as, concurrency, skip_failures)");
                }
        }
        as = json_string_value(json_object_get(map, "as"));
        snprintf(field, sizeof(field), "%s.map.as", base);
        json_t *fn_schema = json_object_get(nd->fn, "input_schema");
        if (!as || !*as || strlen(as) > MP_MAX_NAME_LEN)
                mp_error_add_field(ps->err, field, "must name the input each element is given as");
        else if (nd->fn && json_object_get(fn_schema, "properties") &&
                 json_is_false(json_object_get(fn_schema, "additionalProperties")) && !input_schema_of(nd, as))
                mp_error_add_field(ps->err, field, "is not an input of function \"%s\"", fn_name(nd));
        c = json_object_get(map, "concurrency");
        snprintf(field, sizeof(field), "%s.map.concurrency", base);
        if (c && (!json_is_integer(c) || json_integer_value(c) < 1 || json_integer_value(c) > MP_MAX_MAP_CONCURRENCY))
                mp_error_add_field(ps->err, field, "must be an integer from 1 to %d", MP_MAX_MAP_CONCURRENCY);
        snprintf(field, sizeof(field), "%s.map.skip_failures", base);
        if ((v = json_object_get(map, "skip_failures")) && !json_is_boolean(v))
                mp_error_add_field(ps->err, field, "must be true or false");
        over = json_object_get(map, "over");
        snprintf(field, sizeof(field), "%s.map.over", base);
        json_t *elem = as ? input_schema_of(nd, as) : NULL;
        switch (over ? mp_flow_input_kind(over) : MP_FLOW_BAD) {
        case MP_FLOW_PARAM: {
                json_t *list = json_pack("{s:s,s:O*}", "type", "array", "items", elem);
                check_param(ps, over, list, field);
                json_decref(list);
                break;
        }
        case MP_FLOW_FROM: {
                struct node *src = check_from(ps, nd, over, field);
                if (src && src->fn && nd->fn) {
                        check_edge(src, json_string_value(json_object_get(over, "path")), elem, true, field, ps->err);
                        if (as)
                                check_edge_units(nd, src, json_string_value(json_object_get(over, "path")), as, elem,
                                                 true, field, ps->err);
                }
                break;
        }
        default:
                mp_error_add_field(ps->err, field, "must be {\"param\": name} or {\"from\": node, \"path\": path}");
        }
}

/* The fields of one node, and its function resolved. */
static int read_node(struct parse *ps, size_t i, mp_flow_resolve_fn resolve, void *userdata) {
        static const char *const keys[] = { "id", "function", "version", "inputs", "map", "require_verified", NULL };
        struct node *nd = &ps->nodes[i];
        json_t *v, *version, *inputs;
        char base[32], field[PATH_MAX_LEN];
        const char *key, *id, *function;
        int r;

        snprintf(base, sizeof(base), "nodes[%zu]", i);
        nd->body = json_array_get(json_object_get(ps->body, "nodes"), i);
        if (!(nd->deps = json_array()))
                return -ENOMEM;
        if (!json_is_object(nd->body)) {
                mp_error_add_field(ps->err, base, "must be an object {\"id\", \"function\", \"inputs\"}");
                nd->body = NULL;
                return 0;
        }
        json_object_foreach(nd->body, key, v) {
                bool known = false;
                for (const char *const *k = keys; *k; k++)
                        known |= !strcmp(*k, key);
                if (!known) {
                        snprintf(field, sizeof(field), "%s.%.*s", base, MP_MAX_NAME_LEN, key);
                        mp_error_add_field(ps->err, field,
                                           "is not a field of a node (id, function, version, inputs, map, "
                                           "require_verified)");
                }
        }
        id = json_string_value(json_object_get(nd->body, "id"));
        snprintf(field, sizeof(field), "%s.id", base);
        if (!name_valid(id, MP_MAX_NODE_ID_LEN))
                mp_error_add_field(ps->err, field, "must be 1 to %d bytes: " NAME_RULE, MP_MAX_NODE_ID_LEN);
        else if (find(ps, id))
                mp_error_add_field(ps->err, field, "repeats the id \"%s\" of an earlier node", id);
        else
                nd->id = id;
        function = json_string_value(json_object_get(nd->body, "function"));
        version = json_object_get(nd->body, "version");
        snprintf(field, sizeof(field), "%s.function", base);
        if (!function || !*function || strlen(function) > MP_MAX_NAME_LEN)
                mp_error_add_field(ps->err, field, "must name a function (its name or id)");
        snprintf(field, sizeof(field), "%s.version", base);
        if (version && (!json_is_integer(version) || json_integer_value(version) < 1 ||
                        json_integer_value(version) > INT32_MAX)) {
                mp_error_add_field(ps->err, field, "must be a version number (1 or more)");
                version = NULL;
                function = NULL;
        }
        inputs = json_object_get(nd->body, "inputs");
        snprintf(field, sizeof(field), "%s.inputs", base);
        if (inputs && !json_is_object(inputs))
                mp_error_add_field(ps->err, field, "must be an object of the function's inputs");
        else if (json_object_size(inputs) > MP_MAX_NODE_INPUTS)
                mp_error_add_field(ps->err, field, "has more than %d inputs", MP_MAX_NODE_INPUTS);
        if (!function || !resolve)
                return 0;
        r = resolve(userdata, function, version ? (int) json_integer_value(version) : 0, &nd->fn, ps->err);
        if (r == -ENOENT || r == -EACCES) {
                snprintf(field, sizeof(field), "%s.%s", base, version ? "version" : "function");
                if (version)
                        mp_error_add_field(ps->err, field, "function \"%s\" has no version %d that you may run",
                                           function, (int) json_integer_value(version));
                else
                        mp_error_add_field(ps->err, field, "no function \"%s\" that you may run", function);
                nd->fn = NULL;
                return 0;
        }
        if (r < 0)
                return r;
        /* require_verified (the node's, else the workflow's): the version pinned must
         * have passed its verification cases (docs/functions.md#verification-cases). */
        json_t *req = json_object_get(nd->body, "require_verified");
        if (!req)
                req = json_object_get(ps->body, "require_verified");
        snprintf(field, sizeof(field), "%s.require_verified", base);
        if (req && !json_is_boolean(req)) {
                mp_error_add_field(ps->err, field, "must be true or false");
        } else if (json_is_true(req)) {
                const char *vs = json_string_value(json_object_get(nd->fn, "verification_status"));
                if (!vs || strcmp(vs, "passed")) {
                        snprintf(field, sizeof(field), "%s.%s", base, version ? "version" : "function");
                        mp_error_add_field(ps->err, field,
                                           "version %" JSON_INTEGER_FORMAT " of function \"%s\" has not passed "
                                           "its verification cases (%s), and the workflow requires verified versions",
                                           json_integer_value(json_object_get(nd->fn, "version")), function,
                                           vs ? vs : "none");
                }
        }
        if (!json_is_string(json_object_get(nd->fn, "function_id")) ||
            !json_is_integer(json_object_get(nd->fn, "version"))) {
                json_decref(nd->fn);
                nd->fn = NULL;
                return mp_error_set(ps->err, EIO, 500, "internal", "the function resolver gave no id and version");
        }
        return 0;
}

/* Kahn's algorithm, the lowest given index first among the ready, so the order is stable.
 * On a cycle, names its nodes in order. Returns the order (node indices) or NULL. */
static size_t *topological_order(struct parse *ps) {
        _cleanup_free_ size_t *order = calloc(ps->n ? ps->n : 1, sizeof(size_t));
        size_t placed = 0;

        if (!order)
                return NULL;
        while (placed < ps->n) {
                size_t i;
                for (i = 0; i < ps->n; i++) {
                        struct node *nd = &ps->nodes[i];
                        bool ready = !nd->placed;
                        json_t *d;
                        size_t k;
                        json_array_foreach(nd->deps, k, d)
                                ready &= find(ps, json_string_value(d))->placed;
                        if (ready)
                                break;
                }
                if (i == ps->n)
                        break;
                ps->nodes[i].placed = true;
                order[placed++] = i;
        }
        if (placed == ps->n)
                return TAKE_PTR(order);
        /* A cycle: every unplaced node waits on an unplaced one. Walk from one until a node
         * repeats; the walk from that node back to itself is the cycle. */
        size_t walk[MP_MAX_WORKFLOW_NODES + 1], len = 0, start = 0;
        struct node *nd = NULL;
        for (size_t i = 0; i < ps->n && !nd; i++)
                if (!ps->nodes[i].placed)
                        nd = &ps->nodes[i];
        for (;;) {
                size_t idx = (size_t) (nd - ps->nodes), k;
                json_t *d;
                for (k = 0; k < len && walk[k] != idx; k++)
                        ;
                if (k < len) {
                        start = k;
                        break;
                }
                walk[len++] = idx;
                json_array_foreach(nd->deps, k, d) {
                        struct node *up = find(ps, json_string_value(d));
                        if (!up->placed) {
                                nd = up;
                                break;
                        }
                }
        }
        /* The walk follows "reads from", so the data flows the other way: print it reversed,
         * from the cycle's node given first. */
        size_t m = len - start, first = 0;
        for (size_t j = 1; j < m; j++)
                if (walk[len - 1 - j] < walk[len - 1 - first])
                        first = j;
        char text[1024] = "";
        size_t off = 0;
        for (size_t t = 0; t <= m && off < sizeof(text) - 80; t++)
                off += (size_t) snprintf(text + off, sizeof(text) - off, "%s%s", t ? " -> " : "",
                                         ps->nodes[walk[len - 1 - (first + t) % m]].id);
        mp_error_add_field(ps->err, "nodes", "form a cycle: %s", text);
        return NULL;
}

static void check_top(struct parse *ps) {
        json_t *body = ps->body, *v, *nodes = json_object_get(body, "nodes");
        const char *name = json_string_value(json_object_get(body, "name")), *key;

        if (!name || !*name || strlen(name) > MP_MAX_NAME_LEN)
                mp_error_add_field(ps->err, "name", "must be 1 to %d bytes of text", MP_MAX_NAME_LEN);
        v = json_object_get(body, "description");
        if (v && (!json_is_string(v) || json_string_length(v) > MP_MAX_DESCRIPTION_LEN))
                mp_error_add_field(ps->err, "description", "must be text of at most %d bytes", MP_MAX_DESCRIPTION_LEN);
        v = json_object_get(body, "cache");
        if (v && !json_is_boolean(v))
                mp_error_add_field(ps->err, "cache", "must be true or false");
        v = json_object_get(body, "require_verified");
        if (v && !json_is_boolean(v))
                mp_error_add_field(ps->err, "require_verified", "must be true or false");
        if (!json_is_array(nodes) || json_array_size(nodes) == 0)
                mp_error_add_field(ps->err, "nodes", "must be a list of at least one node");
        else if (json_array_size(nodes) > MP_MAX_WORKFLOW_NODES)
                mp_error_add_field(ps->err, "nodes", "has more than %d nodes", MP_MAX_WORKFLOW_NODES);
        v = json_object_get(body, "params");
        if (v && !json_is_object(v))
                mp_error_add_field(ps->err, "params", "must be an object of parameter schemas");
        else if (json_object_size(v) > MP_MAX_WORKFLOW_PARAMS)
                mp_error_add_field(ps->err, "params", "has more than %d parameters", MP_MAX_WORKFLOW_PARAMS);
        else {
                json_t *s;
                json_object_foreach(v, key, s) {
                        char field[PATH_MAX_LEN];
                        snprintf(field, sizeof(field), "params.%.*s", MP_MAX_NAME_LEN, key);
                        if (!name_valid(key, MP_MAX_NAME_LEN))
                                mp_error_add_field(ps->err, field, "must be a parameter name (" NAME_RULE ")");
                        else if (!json_is_object(s))
                                mp_error_add_field(ps->err, field, "must be a schema such as {\"type\": \"number\"}");
                        else if (depth_of(s) > MP_MAX_LITERAL_DEPTH)
                                mp_error_add_field(ps->err, field, "is nested deeper than %d levels",
                                                   MP_MAX_LITERAL_DEPTH);
                }
        }
}

/* outputs: {name: {"from", "path"?}}; absent: each node no other node reads, whole. */
static json_t *read_outputs(struct parse *ps) {
        json_t *outputs = json_object_get(ps->body, "outputs"), *o;
        json_t *out = json_object();
        const char *key;
        char field[PATH_MAX_LEN];

        if (!outputs) {
                for (size_t i = 0; i < ps->n; i++) {
                        bool read = false;
                        for (size_t k = 0; k < ps->n; k++) {
                                json_t *d;
                                size_t j;
                                json_array_foreach(ps->nodes[k].deps, j, d)
                                        read |= ps->nodes[i].id && !strcmp(json_string_value(d), ps->nodes[i].id);
                        }
                        if (!read && ps->nodes[i].id)
                                json_object_set_new(out, ps->nodes[i].id, json_pack("{s:s}", "from", ps->nodes[i].id));
                }
                return out;
        }
        if (!json_is_object(outputs) || json_object_size(outputs) > MP_MAX_WORKFLOW_OUTPUTS) {
                mp_error_add_field(ps->err, "outputs",
                                   "must be an object of at most %d {\"from\": node, \"path\": path}",
                                   MP_MAX_WORKFLOW_OUTPUTS);
                return out;
        }
        json_object_foreach(outputs, key, o) {
                snprintf(field, sizeof(field), "outputs.%.*s", MP_MAX_NAME_LEN, key);
                if (!name_valid(key, MP_MAX_NAME_LEN)) {
                        mp_error_add_field(ps->err, field, "must be a name (" NAME_RULE ")");
                        continue;
                }
                if (mp_flow_input_kind(o) != MP_FLOW_FROM) {
                        mp_error_add_field(ps->err, field, "must be {\"from\": node, \"path\": path}");
                        continue;
                }
                const char *from = json_string_value(json_object_get(o, "from"));
                char sub[PATH_MAX_LEN];
                snprintf(sub, sizeof(sub), "%s.path", field);
                mp_jsonpath_check(json_string_value(json_object_get(o, "path")), sub, ps->err);
                snprintf(sub, sizeof(sub), "%s.from", field);
                if (!find(ps, from))
                        mp_error_add_field(ps->err, sub, "names no node of this workflow (\"%.*s\")",
                                           MP_MAX_NODE_ID_LEN + 1, from);
                json_object_set(out, key, o);
        }
        return out;
}

/* layout (optional, kept for editors; the engine never reads it): {node id: {"x", "y"}},
 * each a number within +-LAYOUT_MAX (canvas pixels). NULL when absent. */
#define LAYOUT_MAX 1000000.0
static json_t *read_layout(struct parse *ps) {
        json_t *layout = json_object_get(ps->body, "layout"), *at;
        const char *key;
        char field[PATH_MAX_LEN];

        if (!layout)
                return NULL;
        if (!json_is_object(layout) || json_object_size(layout) > MP_MAX_WORKFLOW_NODES) {
                mp_error_add_field(ps->err, "layout", "must be an object of at most %d {node id: {\"x\", \"y\"}}",
                                   MP_MAX_WORKFLOW_NODES);
                return NULL;
        }
        json_object_foreach(layout, key, at) {
                snprintf(field, sizeof(field), "layout.%.*s", MP_MAX_NODE_ID_LEN + 1, key);
                if (!find(ps, key)) {
                        mp_error_add_field(ps->err, field, "names no node of this workflow");
                        continue;
                }
                json_t *x = json_object_get(at, "x"), *y = json_object_get(at, "y");
                if (!json_is_object(at) || json_object_size(at) != 2 || !json_is_number(x) || !json_is_number(y) ||
                    fabs(json_number_value(x)) > LAYOUT_MAX || fabs(json_number_value(y)) > LAYOUT_MAX)
                        mp_error_add_field(ps->err, field, "must be {\"x\": number, \"y\": number}, each within +-%.0f",
                                           LAYOUT_MAX);
        }
        return json_incref(layout);
}

static json_t *input_schema(json_t *params, json_t *required_set) {
        json_t *required = json_array(), *s;
        const char *key;

        json_object_foreach(params, key, s)
                if (required_set ? json_is_true(json_object_get(required_set, key)) : !json_object_get(s, "default"))
                        json_array_append_new(required, json_string(key));
        return json_pack("{s:s,s:O,s:o,s:b}", "type", "object", "properties", params, "required", required,
                         "additionalProperties", 0);
}

static json_t *normalized_node(struct node *nd) {
        json_t *map = json_object_get(nd->body, "map"), *version = json_object_get(nd->body, "version");
        json_t *inputs = json_object_get(nd->body, "inputs");
        json_t *out = json_pack("{s:s,s:s,s:o,s:O,s:O}", "id", nd->id, "function", fn_name(nd),
                                "inputs", inputs ? json_deep_copy(inputs) : json_object(), "depends_on", nd->deps,
                                "function_id", nd->fn ? json_object_get(nd->fn, "function_id")
                                                      : json_object_get(nd->body, "function"));
        json_object_set_new(out, "version", nd->fn ? json_copy(json_object_get(nd->fn, "version"))
                                                   : json_integer(version ? json_integer_value(version) : 0));
        if (json_is_true(json_object_get(nd->body, "require_verified")))
                json_object_set_new(out, "require_verified", json_true());
        if (nd->units)
                json_object_set(out, "units", nd->units);
        if (map) {
                json_t *c = json_object_get(map, "concurrency"), *skip = json_object_get(map, "skip_failures");
                json_object_set_new(out, "map",
                                    json_pack("{s:O,s:O,s:I,s:b}", "over", json_object_get(map, "over"), "as",
                                              json_object_get(map, "as"), "concurrency",
                                              c ? json_integer_value(c) : (json_int_t) MP_DEFAULT_MAP_CONCURRENCY,
                                              "skip_failures", json_is_true(skip)));
        }
        return out;
}

static void parse_free(struct parse *ps) {
        for (size_t i = 0; ps->nodes && i < ps->n; i++) {
                json_decref(ps->nodes[i].fn);
                json_decref(ps->nodes[i].deps);
                json_decref(ps->nodes[i].units);
        }
        free(ps->nodes);
        json_decref(ps->derived);
        json_decref(ps->derived_required);
}

static int parse(struct parse *ps, mp_flow_resolve_fn resolve, void *userdata, json_t **ret) {
        _cleanup_json_ json_t *outputs = NULL, *nodes = NULL, *layout = NULL;
        _cleanup_free_ size_t *order = NULL;
        char base[32];
        int r;

        check_top(ps);
        ps->n = json_is_array(json_object_get(ps->body, "nodes"))
                        ? MP_MIN(json_array_size(json_object_get(ps->body, "nodes")), (size_t) MP_MAX_WORKFLOW_NODES)
                        : 0;
        if (!(ps->nodes = calloc(ps->n ? ps->n : 1, sizeof(*ps->nodes))))
                return -ENOMEM;
        ps->params = json_object_get(ps->body, "params");
        if (!json_is_object(ps->params)) {
                if (ps->params)
                        ps->params = NULL; /* already reported; check references as if derived */
                ps->derived = json_object();
                ps->derived_required = json_object();
                ps->params = ps->derived;
        }
        for (size_t i = 0; i < ps->n; i++)
                if ((r = read_node(ps, i, resolve, userdata)) < 0)
                        return r;
        for (size_t i = 0; i < ps->n; i++) {
                if (!ps->nodes[i].body)
                        continue;
                snprintf(base, sizeof(base), "nodes[%zu]", i);
                json_t *inputs = json_object_get(ps->nodes[i].body, "inputs");
                if (!inputs || json_is_object(inputs))
                        check_inputs(ps, &ps->nodes[i], base);
                check_map(ps, &ps->nodes[i], base);
        }
        outputs = read_outputs(ps);
        layout = read_layout(ps);
        /* A cycle is looked for whatever else is wrong, once every node has its own id
         * (a reference then names one node). */
        bool ids_ok = ps->n > 0;
        for (size_t i = 0; i < ps->n; i++)
                ids_ok &= ps->nodes[i].id != NULL;
        if (ids_ok)
                order = topological_order(ps);
        if (ps->err->errors)
                return mp_core_validation_done(ps->err, "workflow fields");
        if (!order)
                return -ENOMEM;
        if (!(nodes = json_array()))
                return -ENOMEM;
        for (size_t k = 0; k < ps->n; k++)
                json_array_append_new(nodes, normalized_node(&ps->nodes[order[k]]));
        json_t *params = ps->derived ? ps->derived : ps->params;
        json_t *def = json_pack("{s:O,s:s,s:b,s:O,s:o,s:O,s:O}", "name", json_object_get(ps->body, "name"),
                                "description", json_string_value(json_object_get(ps->body, "description")) ?: "",
                                "cache", json_is_true(json_object_get(ps->body, "cache")), "params", params,
                                "input_schema", input_schema(params, ps->derived_required), "nodes", nodes,
                                "outputs", outputs);
        if (!def)
                return -ENOMEM;
        if (layout)
                json_object_set(def, "layout", layout);
        if (json_is_true(json_object_get(ps->body, "require_verified")))
                json_object_set_new(def, "require_verified", json_true());
        *ret = def;
        return 0;
}

int mp_workflow_def_parse(json_t *body, mp_flow_resolve_fn resolve, void *userdata, json_t **ret,
                          struct mp_error *err) {
        struct mp_error local = { 0 };
        struct parse ps = { .body = body, .err = err ? err : &local };
        _cleanup_free_ char *text = NULL;
        int r;

        if (!json_is_object(body)) {
                mp_error_add_field(ps.err, "body", "must be a workflow object {\"name\", \"nodes\", ...}");
                r = mp_core_validation_done(ps.err, "workflow fields");
                mp_error_clear(&local);
                return r;
        }
        /* The size first: nothing else is walked in a definition past the cap. */
        text = mp_json_dumps(body, JSON_COMPACT);
        if (!text)
                return -ENOMEM;
        if (strlen(text) > MP_MAX_WORKFLOW_BYTES) {
                mp_error_add_field(ps.err, "body", "is larger than %u bytes of JSON", MP_MAX_WORKFLOW_BYTES);
                r = mp_core_validation_done(ps.err, "workflow fields");
                mp_error_clear(&local);
                return r;
        }
        r = parse(&ps, resolve, userdata, ret);
        parse_free(&ps);
        mp_error_clear(&local);
        return r;
}
