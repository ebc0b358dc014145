/* Study designs made into points: grid, list, random, lhs. Everything a design asks for
 * is counted first and refused past MP_MAX_STUDY_POINTS before a single point is made.
 *
 * Random numbers: xoshiro256** (Blackman and Vigna), its state filled by splitmix64 from
 * the seed, as its authors advise. Only integer arithmetic and one exact scaling make the
 * doubles, and the one multiply-add that maps them to bounds is kept from being fused
 * (see scale()), so a seed gives the same points on every platform and compiler. Draw
 * order, pinned (changing it changes every study's points):
 *   random: for each point, for each parameter in the order given, one uniform u.
 *   lhs:    for each parameter in the order given: a Fisher-Yates shuffle of the strata
 *           0..count-1 (j drawn in [0, i] for i = count-1 down to 1), then for each
 *           point one uniform u; the point's value is at (stratum + u) / count. */
#include <math.h>
#include <string.h>

#include "base/limits.h"
#include "core/core-internal.h"
#include "core/flow.h"

/* --- the generator --- */

struct rng {
        uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x) {
        uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
}

static void rng_seed(struct rng *g, uint64_t seed) {
        for (int i = 0; i < 4; i++)
                g->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) {
        return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *g) {
        uint64_t *s = g->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

/* [0, 1) with 53 random bits: exact, the same everywhere. */
static double rng_uniform(struct rng *g) {
        return (double) (rng_next(g) >> 11) * 0x1.0p-53;
}

/* [0, n) without modulo bias: draws below 2^64 mod n are thrown away. */
static uint64_t rng_below(struct rng *g, uint64_t n) {
        uint64_t threshold = -n % n, r;
        do
                r = rng_next(g);
        while (r < threshold);
        return r % n;
}

double mp_design_uniform(uint64_t seed, size_t n) {
        struct rng g;
        double u = 0;
        rng_seed(&g, seed);
        for (size_t i = 0; i <= n; i++)
                u = rng_uniform(&g);
        return u;
}

/* lo + x * width, rounded twice as C says: the volatile keeps the compiler from fusing
 * it into one multiply-add (which rounds once) where the machine has one. */
static double scale(double lo, double width, double x) {
        volatile double t = x * width;
        return lo + t;
}

/* floor without libm (the core does not link it): a double of magnitude 2^52 or more is
 * already integral; below, the cast truncates toward zero and is corrected down. */
static double floor_d(double x) {
        if (!(x > -4503599627370496.0 && x < 4503599627370496.0))
                return x;
        double t = (double) (long long) x;
        return t > x ? t - 1 : t;
}

/* A number as JSON: an integer when integral and exact, so integer inputs validate. */
static json_t *number(double d) {
        if (d == floor_d(d) && d > -9007199254740992.0 && d < 9007199254740992.0)
                return json_integer((json_int_t) d);
        return json_real(d);
}

/* --- reading a design --- */

static const char *type_of(json_t *design) {
        return json_string_value(json_object_get(design, "type"));
}

/* A finite number field of obj, or an error at path. */
static bool read_number(json_t *obj, const char *key, const char *path, double *ret, struct mp_error *err) {
        json_t *v = json_object_get(obj, key);
        if (!json_is_number(v) || !isfinite(json_number_value(v))) {
                mp_error_add_field(err, path, v ? "must be a finite number" : "is required");
                return false;
        }
        *ret = json_number_value(v);
        return true;
}

static void check_keys(json_t *obj, const char *const *allowed, const char *path, struct mp_error *err) {
        const char *key;
        json_t *v;
        char sub[320];

        json_object_foreach(obj, key, v) {
                bool ok = false;
                for (const char *const *a = allowed; *a; a++)
                        ok |= !strcmp(*a, key);
                if (!ok) {
                        snprintf(sub, sizeof(sub), "%s.%.*s", path, MP_MAX_NAME_LEN, key);
                        mp_error_add_field(err, sub, "is not a field of this design");
                }
        }
}

/* The size of one grid axis (a list, or {start, stop, num}), 0 when invalid. */
static size_t grid_axis_size(json_t *axis, const char *path, struct mp_error *err) {
        static const char *const keys[] = { "start", "stop", "num", NULL };
        char sub[320];
        double d;

        if (json_is_array(axis)) {
                if (json_array_size(axis) == 0)
                        mp_error_add_field(err, path, "has no values");
                return json_array_size(axis);
        }
        if (!json_is_object(axis)) {
                mp_error_add_field(err, path, "must be a list of values or {\"start\", \"stop\", \"num\"}");
                return 0;
        }
        check_keys(axis, keys, path, err);
        snprintf(sub, sizeof(sub), "%s.start", path);
        read_number(axis, "start", sub, &d, err);
        snprintf(sub, sizeof(sub), "%s.stop", path);
        read_number(axis, "stop", sub, &d, err);
        json_t *num = json_object_get(axis, "num");
        snprintf(sub, sizeof(sub), "%s.num", path);
        if (!json_is_integer(num) || json_integer_value(num) < 1) {
                mp_error_add_field(err, sub, "must be an integer of at least 1");
                return 0;
        }
        /* Past the limit is refused by the product; clamp so the product cannot wrap. */
        return json_integer_value(num) > MP_MAX_STUDY_POINTS ? (size_t) MP_MAX_STUDY_POINTS + 1
                                                             : (size_t) json_integer_value(num);
}

static bool params_object(json_t *design, struct mp_error *err) {
        json_t *params = json_object_get(design, "params");
        if (!json_is_object(params) || json_object_size(params) == 0) {
                mp_error_add_field(err, "design.params", "must be an object naming at least one parameter");
                return false;
        }
        if (json_object_size(params) > MP_MAX_DESIGN_PARAMS) {
                mp_error_add_field(err, "design.params", "varies more than %d parameters", MP_MAX_DESIGN_PARAMS);
                return false;
        }
        return true;
}

static int count_grid(json_t *design, size_t *ret, struct mp_error *err) {
        json_t *params = json_object_get(design, "params"), *axis;
        char sizes[256] = "", sub[320];
        uint64_t total = 1;
        bool over = false;
        const char *key;
        size_t off = 0;

        if (!params_object(design, err))
                return -EINVAL;
        json_object_foreach(params, key, axis) {
                snprintf(sub, sizeof(sub), "design.params.%.*s", MP_MAX_NAME_LEN, key);
                size_t n = grid_axis_size(axis, sub, err);
                over |= __builtin_mul_overflow(total, (uint64_t) n, &total) || total > MP_MAX_STUDY_POINTS;
                if (over)
                        total = (uint64_t) MP_MAX_STUDY_POINTS + 1; /* saturate: the exact count is not needed */
                if (off < sizeof(sizes) - 24)
                        off += (size_t) snprintf(sizes + off, sizeof(sizes) - off, "%s%zu", off ? " x " : "", n);
        }
        if (err && err->errors)
                return -EINVAL;
        if (over) {
                mp_error_add_field(err, "design.params", "makes more than %d points (%s)", MP_MAX_STUDY_POINTS, sizes);
                return mp_error_set(err, E2BIG, 422, "validation",
                                    "the grid makes more than %d points, the limit of a study (%s)",
                                    MP_MAX_STUDY_POINTS, sizes);
        }
        *ret = (size_t) total;
        return 0;
}

static int count_sampled(json_t *design, size_t *ret, struct mp_error *err) {
        static const char *const keys[] = { "min", "max", NULL };
        json_t *params = json_object_get(design, "params"), *b;
        json_t *count = json_object_get(design, "count"), *seed = json_object_get(design, "seed");
        const char *key;
        char sub[320];
        double lo = 0, hi = 0;

        if (params_object(design, err)) {
                json_object_foreach(params, key, b) {
                        snprintf(sub, sizeof(sub), "design.params.%.*s", MP_MAX_NAME_LEN, key);
                        if (!json_is_object(b)) {
                                mp_error_add_field(err, sub, "must be bounds {\"min\", \"max\"}");
                                continue;
                        }
                        check_keys(b, keys, sub, err);
                        snprintf(sub, sizeof(sub), "design.params.%.*s.min", MP_MAX_NAME_LEN, key);
                        bool ok = read_number(b, "min", sub, &lo, err);
                        snprintf(sub, sizeof(sub), "design.params.%.*s.max", MP_MAX_NAME_LEN, key);
                        if (read_number(b, "max", sub, &hi, err) && ok && !(lo <= hi))
                                mp_error_add_field(err, sub, "must not be below min");
                }
        }
        if (!json_is_integer(seed) || json_integer_value(seed) < 0)
                mp_error_add_field(err, "design.seed",
                                   "must be an integer of at least 0 (the same seed gives the same points)");
        if (!json_is_integer(count) || json_integer_value(count) < 1)
                mp_error_add_field(err, "design.count", "must be an integer of at least 1");
        else if (json_integer_value(count) > MP_MAX_STUDY_POINTS) {
                mp_error_add_field(err, "design.count", "must be at most %d, the limit of points in a study",
                                   MP_MAX_STUDY_POINTS);
                return mp_error_set(err, E2BIG, 422, "validation",
                                    "the design asks for %" JSON_INTEGER_FORMAT
                                    " points, more than %d, the limit of a study",
                                    json_integer_value(count), MP_MAX_STUDY_POINTS);
        }
        if (err && err->errors)
                return -EINVAL;
        *ret = (size_t) json_integer_value(count);
        return 0;
}

static int count_list(json_t *design, size_t *ret, struct mp_error *err) {
        json_t *points = json_object_get(design, "points"), *p;
        char sub[64];
        size_t i;

        if (!json_is_array(points) || json_array_size(points) == 0) {
                mp_error_add_field(err, "design.points", "must be a list of at least one point");
                return -EINVAL;
        }
        if (json_array_size(points) > MP_MAX_STUDY_POINTS) {
                mp_error_add_field(err, "design.points", "has more than %d points, the limit of a study",
                                   MP_MAX_STUDY_POINTS);
                return mp_error_set(err, E2BIG, 422, "validation",
                                    "the design has %zu points, more than %d, the limit of a study",
                                    json_array_size(points), MP_MAX_STUDY_POINTS);
        }
        json_array_foreach(points, i, p) {
                if (!json_is_object(p)) {
                        snprintf(sub, sizeof(sub), "design.points[%zu]", i);
                        mp_error_add_field(err, sub, "must be an object of inputs");
                }
        }
        if (err && err->errors)
                return -EINVAL;
        *ret = json_array_size(points);
        return 0;
}

/* Count, with every field error collected; finish sets the 422 message. */
static int count(json_t *design, size_t *ret, struct mp_error *err) {
        static const char *const grid_keys[] = { "type", "params", NULL };
        static const char *const list_keys[] = { "type", "points", NULL };
        static const char *const sampled_keys[] = { "type", "params", "count", "seed", NULL };
        const char *type = type_of(design);

        if (!json_is_object(design)) {
                mp_error_add_field(err, "design", "must be an object with a \"type\"");
                return -EINVAL;
        }
        if (type && !strcmp(type, "grid")) {
                check_keys(design, grid_keys, "design", err);
                return count_grid(design, ret, err);
        }
        if (type && !strcmp(type, "list")) {
                check_keys(design, list_keys, "design", err);
                return count_list(design, ret, err);
        }
        if (type && (!strcmp(type, "random") || !strcmp(type, "lhs"))) {
                check_keys(design, sampled_keys, "design", err);
                return count_sampled(design, ret, err);
        }
        mp_error_add_field(err, "design.type", "must be one of grid, list, random, lhs");
        return -EINVAL;
}

int mp_design_count(json_t *design, size_t *ret_count, struct mp_error *err) {
        size_t n = 0;
        int r = count(design, &n, err);

        if (r == -EINVAL)
                return mp_core_validation_done(err, "design fields") < 0 ? -EINVAL : r;
        if (r < 0)
                return r;
        *ret_count = n;
        return 0;
}

/* --- making points --- */

static bool integer_param(json_t *schema, const char *name) {
        json_t *t = json_object_get(json_object_get(json_object_get(schema, "properties"), name), "type");
        return json_is_string(t) && !strcmp(json_string_value(t), "integer");
}

static json_t *axis_value(json_t *axis, size_t k) {
        if (json_is_array(axis))
                return json_incref(json_array_get(axis, k));
        double start = json_number_value(json_object_get(axis, "start"));
        double stop = json_number_value(json_object_get(axis, "stop"));
        size_t num = (size_t) json_integer_value(json_object_get(axis, "num"));
        if (num == 1 || k == 0)
                return number(start);
        if (k == num - 1)
                return number(stop); /* exactly stop, not start + (num-1) * step */
        return number(scale(start, stop - start, (double) k / (double) (num - 1)));
}

static int make_grid(json_t *design, size_t total, json_t *points) {
        json_t *params = json_object_get(design, "params"), *axis;
        const char *key;

        for (size_t i = 0; i < total; i++) {
                json_t *p = json_object();
                size_t rest = i, stride = total;
                if (!p || json_array_append_new(points, p) < 0)
                        return -ENOMEM;
                /* The first parameter varies slowest: its stride is the product of the rest. */
                json_object_foreach(params, key, axis) {
                        size_t n = json_is_array(axis) ? json_array_size(axis)
                                                       : (size_t) json_integer_value(json_object_get(axis, "num"));
                        stride /= n;
                        json_object_set_new(p, key, axis_value(axis, rest / stride));
                        rest %= stride;
                }
        }
        return 0;
}

static json_t *bounded_value(json_t *b, bool integer, double x) {
        double lo = json_number_value(json_object_get(b, "min"));
        double hi = json_number_value(json_object_get(b, "max"));
        if (integer) {
                lo = -floor_d(-lo);
                hi = floor_d(hi);
                if (hi < lo)
                        return number(lo);
                double v = floor_d(scale(lo, hi - lo + 1, x));
                return number(v > hi ? hi : v);
        }
        return number(scale(lo, hi - lo, x));
}

/* A parameter the schema types integer must have an integer between its bounds. */
static int check_integer_bounds(json_t *design, json_t *schema, struct mp_error *err) {
        const char *type = type_of(design), *key;
        json_t *b;
        char sub[320];

        if (strcmp(type, "random") && strcmp(type, "lhs"))
                return 0;
        json_object_foreach(json_object_get(design, "params"), key, b) {
                double lo = json_number_value(json_object_get(b, "min"));
                double hi = json_number_value(json_object_get(b, "max"));
                if (integer_param(schema, key) && -floor_d(-lo) > floor_d(hi)) {
                        snprintf(sub, sizeof(sub), "design.params.%.*s", MP_MAX_NAME_LEN, key);
                        mp_error_add_field(err, sub,
                                           "holds no integer between min and max, and the input is an integer");
                }
        }
        return mp_core_validation_done(err, "design fields");
}

static int make_sampled(json_t *design, json_t *schema, size_t total, json_t *points) {
        json_t *params = json_object_get(design, "params"), *b;
        bool lhs = !strcmp(type_of(design), "lhs");
        const char *key;
        struct rng g;

        rng_seed(&g, (uint64_t) json_integer_value(json_object_get(design, "seed")));
        for (size_t i = 0; i < total; i++) {
                json_t *p = json_object();
                if (!p || json_array_append_new(points, p) < 0)
                        return -ENOMEM;
                if (!lhs)
                        json_object_foreach(params, key, b)
                                json_object_set_new(p, key, bounded_value(b, integer_param(schema, key),
                                                                          rng_uniform(&g)));
        }
        if (!lhs)
                return 0;
        _cleanup_free_ size_t *strata = calloc(total, sizeof(*strata));
        if (!strata)
                return -ENOMEM;
        json_object_foreach(params, key, b) {
                bool integer = integer_param(schema, key);
                for (size_t i = 0; i < total; i++)
                        strata[i] = i;
                for (size_t i = total - 1; i > 0; i--) {
                        size_t j = (size_t) rng_below(&g, i + 1), t = strata[i];
                        strata[i] = strata[j];
                        strata[j] = t;
                }
                for (size_t i = 0; i < total; i++) {
                        double x = ((double) strata[i] + rng_uniform(&g)) / (double) total;
                        json_object_set_new(json_array_get(points, i), key, bounded_value(b, integer, x));
                }
        }
        return 0;
}

/* fixed merged under each point; a key both fixed and varied is refused. */
static int merge_fixed(json_t *design, json_t *fixed, json_t *points, struct mp_error *err) {
        const char *type = type_of(design), *key;
        json_t *v, *p;
        size_t i;
        char sub[320];

        if (!fixed)
                return 0;
        if (!json_is_object(fixed)) {
                mp_error_add_field(err, "fixed", "must be an object of inputs");
                return mp_core_validation_done(err, "fields");
        }
        json_object_foreach(fixed, key, v) {
                snprintf(sub, sizeof(sub), "fixed.%.*s", MP_MAX_NAME_LEN, key);
                if (strcmp(type, "list") && json_object_get(json_object_get(design, "params"), key))
                        mp_error_add_field(err, sub, "is also varied by the design");
                json_array_foreach(points, i, p) {
                        if (!strcmp(type, "list") && json_object_get(p, key)) {
                                mp_error_add_field(err, sub, "is also given by point %zu", i);
                                break;
                        }
                }
        }
        if (mp_core_validation_done(err, "fields") < 0)
                return -EINVAL;
        json_array_foreach(points, i, p) {
                json_t *merged = json_deep_copy(fixed);
                if (!merged || json_object_update(merged, p) < 0) {
                        json_decref(merged);
                        return -ENOMEM;
                }
                json_array_set_new(points, i, merged);
        }
        return 0;
}

/* The first point the schema refuses: its field errors, renamed "points[i].<field>". */
static int validate_points(json_t *schema, json_t *points, struct mp_error *err) {
        json_t *p, *e;
        size_t i, k;

        json_array_foreach(points, i, p) {
                struct mp_error one = { 0 };
                char list[600] = "";
                size_t off = 0;

                if (mp_core_schema_validate(schema, p, &one) == 0)
                        continue;
                json_array_foreach(one.errors, k, e) {
                        const char *path = json_string_value(json_object_get(e, "path"));
                        const char *msg = json_string_value(json_object_get(e, "message"));
                        char sub[600];
                        path = path && !strncmp(path, "inputs", 6) ? path + 6 : "";
                        snprintf(sub, sizeof(sub), "points[%zu]%s", i, path);
                        mp_error_add_field(err, sub, "%s", msg);
                        if (off < sizeof(list) - 1)
                                off += (size_t) snprintf(list + off, sizeof(list) - off, "%s%s: %s",
                                                         k ? "; " : "", sub, msg);
                }
                mp_error_clear(&one);
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "point %zu of %zu is not valid input for the target: %s", i,
                                    json_array_size(points), list);
        }
        return 0;
}

int mp_design_points(json_t *design, json_t *fixed, json_t *input_schema, json_t **ret,
                     struct mp_error *err) {
        _cleanup_json_ json_t *points = json_array();
        size_t total = 0;
        int r;

        if (!points)
                return -ENOMEM;
        if ((r = mp_design_count(design, &total, err)) < 0)
                return r;
        if ((r = check_integer_bounds(design, input_schema, err)) < 0)
                return r;
        if (!strcmp(type_of(design), "list")) {
                json_t *p;
                size_t i;
                json_array_foreach(json_object_get(design, "points"), i, p)
                        if (json_array_append_new(points, json_copy(p)) < 0)
                                return -ENOMEM;
        } else if (!strcmp(type_of(design), "grid"))
                r = make_grid(design, total, points);
        else
                r = make_sampled(design, input_schema, total, points);
        if (r < 0 || (r = merge_fixed(design, fixed, points, err)) < 0)
                return r;
        if (input_schema && (r = validate_points(input_schema, points, err)) < 0)
                return r;
        *ret = TAKE_PTR(points);
        return 0;
}
