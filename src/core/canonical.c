/* Canonical JSON, the text the result cache hashes: two calls whose inputs mean the same
 * must give the same bytes, whatever order their keys came in and however their numbers
 * were spelled. Keys are sorted by bytes (UTF-8 sorts as code points), no whitespace,
 * strings carry only the escapes JSON requires, and a number prints one way: an integral
 * value below 2^63 as an integer (1, 1.0, 1e0 and -0.0 agree with 1 and 0), any other in
 * the shortest "%.*g" form that reads back to the same double. */
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/limits.h"
#include "base/util.h"
#include "core/flow.h"

/* The text is at most a few times the inputs it is made from; the cap is a guard. */
#define CANONICAL_MAX_BYTES (4u * MP_MAX_RESULT_BYTES)

static int put(struct mp_buf *b, const char *s, size_t n) {
        return mp_buf_append(b, s, n);
}

static int put_string(struct mp_buf *b, const char *s, size_t n) {
        static const char hex[] = "0123456789abcdef";
        size_t start = 0;
        int r;

        if ((r = put(b, "\"", 1)) < 0)
                return r;
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                char esc[7] = "\\u00";
                const char *e = NULL;
                size_t elen = 2;

                if (c == '"')
                        e = "\\\"";
                else if (c == '\\')
                        e = "\\\\";
                else if (c == '\n')
                        e = "\\n";
                else if (c == '\r')
                        e = "\\r";
                else if (c == '\t')
                        e = "\\t";
                else if (c == '\b')
                        e = "\\b";
                else if (c == '\f')
                        e = "\\f";
                else if (c < 0x20) {
                        esc[4] = hex[c >> 4];
                        esc[5] = hex[c & 15];
                        e = esc;
                        elen = 6;
                }
                if (!e)
                        continue;
                if ((r = put(b, s + start, i - start)) < 0 || (r = put(b, e, elen)) < 0)
                        return r;
                start = i + 1;
        }
        if ((r = put(b, s + start, n - start)) < 0)
                return r;
        return put(b, "\"", 1);
}

/* UTF-8 without invalid sequences; NUL bytes are allowed (they print as \u0000). */
static bool utf8_valid_nul(const char *s, size_t n) {
        while (n) {
                const char *z = memchr(s, 0, n);
                size_t k = z ? (size_t) (z - s) : n;
                if (!mp_utf8_valid(s, k))
                        return false;
                s += k + (z ? 1 : 0);
                n -= k + (z ? 1 : 0);
        }
        return true;
}

static int put_real(struct mp_buf *b, double d) {
        char text[40];
        int w;

        if (!isfinite(d))
                return -EDOM;
        /* Integral and within the integers' range: print as one, so 1.0 reads as 1. The
         * bound is exclusive: 2^63 itself does not fit. -0.0 == 0 here and prints 0. */
        if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 && (double) (long long) d == d) {
                w = snprintf(text, sizeof(text), "%lld", (long long) d);
                return put(b, text, (size_t) w);
        }
        for (int prec = 1; prec <= 17; prec++) {
                w = snprintf(text, sizeof(text), "%.*g", prec, d);
                if (strtod(text, NULL) == d)
                        break;
        }
        return put(b, text, (size_t) w);
}

static int cmp_keys(const void *a, const void *b) {
        return strcmp(*(const char *const *) a, *(const char *const *) b);
}

static int put_value(struct mp_buf *b, json_t *v, int depth, struct mp_error *err);

static int put_object(struct mp_buf *b, json_t *v, int depth, struct mp_error *err) {
        size_t n = json_object_size(v), i = 0;
        _cleanup_free_ const char **keys = calloc(n ? n : 1, sizeof(*keys));
        const char *key;
        json_t *val;
        int r;

        if (!keys)
                return -ENOMEM;
        json_object_foreach(v, key, val)
                keys[i++] = key;
        qsort(keys, n, sizeof(*keys), cmp_keys);
        if ((r = put(b, "{", 1)) < 0)
                return r;
        for (i = 0; i < n; i++) {
                if (!utf8_valid_nul(keys[i], strlen(keys[i])))
                        return mp_error_set(err, EINVAL, 422, "validation",
                                            "an object key is not valid UTF-8");
                if ((i && (r = put(b, ",", 1)) < 0) || (r = put_string(b, keys[i], strlen(keys[i]))) < 0 ||
                    (r = put(b, ":", 1)) < 0 ||
                    (r = put_value(b, json_object_get(v, keys[i]), depth + 1, err)) < 0)
                        return r;
        }
        return put(b, "}", 1);
}

static int put_value(struct mp_buf *b, json_t *v, int depth, struct mp_error *err) {
        char text[32];
        size_t i;
        json_t *e;
        int r, w;

        if (depth > MP_MAX_JSON_DEPTH)
                return mp_error_set(err, EINVAL, 422, "validation",
                                    "the value is nested deeper than %d levels", MP_MAX_JSON_DEPTH);
        switch (json_typeof(v)) {
        case JSON_OBJECT:
                return put_object(b, v, depth, err);
        case JSON_ARRAY:
                if ((r = put(b, "[", 1)) < 0)
                        return r;
                json_array_foreach(v, i, e)
                        if ((i && (r = put(b, ",", 1)) < 0) || (r = put_value(b, e, depth + 1, err)) < 0)
                                return r;
                return put(b, "]", 1);
        case JSON_STRING:
                if (!utf8_valid_nul(json_string_value(v), json_string_length(v)))
                        return mp_error_set(err, EINVAL, 422, "validation", "a string is not valid UTF-8");
                return put_string(b, json_string_value(v), json_string_length(v));
        case JSON_INTEGER:
                w = snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                return put(b, text, (size_t) w);
        case JSON_REAL:
                r = put_real(b, json_real_value(v));
                if (r == -EDOM)
                        return mp_error_set(err, EINVAL, 422, "validation",
                                            "a number is not finite (NaN and infinity have no JSON form)");
                return r;
        case JSON_TRUE:
                return put(b, "true", 4);
        case JSON_FALSE:
                return put(b, "false", 5);
        default:
                return put(b, "null", 4);
        }
}

int mp_canonical_dump(json_t *v, char **ret, size_t *ret_len, struct mp_error *err) {
        struct mp_buf b = { .cap = CANONICAL_MAX_BYTES };
        int r;

        if (!v)
                return mp_error_set(err, EINVAL, 422, "validation", "no value to write");
        r = put_value(&b, v, 0, err);
        if (r == -E2BIG)
                r = mp_error_set(err, E2BIG, 422, "validation", "the value is larger than %u bytes",
                                 CANONICAL_MAX_BYTES);
        if (r < 0) {
                mp_buf_free(&b);
                return r;
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = mp_buf_steal(&b);
        return *ret ? 0 : -ENOMEM;
}

static void hash_part(crypto_generichash_state *st, const char *s, size_t n) {
        unsigned char len[8];
        for (int i = 0; i < 8; i++)
                len[i] = (unsigned char) ((uint64_t) n >> (8 * i));
        crypto_generichash_update(st, len, sizeof(len));
        crypto_generichash_update(st, (const unsigned char *) s, n);
}

int mp_cache_key(const char *version_id, const char *env_key, json_t *inputs, char *ret,
                 struct mp_error *err) {
        static const char tag[] = "mecapy result cache v1";
        _cleanup_free_ char *text = NULL;
        unsigned char digest[MP_CACHE_KEY_HEX_LEN / 2];
        crypto_generichash_state st;
        size_t len;
        int r;

        if ((r = mp_canonical_dump(inputs, &text, &len, err)) < 0)
                return r;
        /* Each part is length-prefixed, so ("ab", "c") and ("a", "bc") differ. */
        crypto_generichash_init(&st, NULL, 0, sizeof(digest));
        hash_part(&st, tag, sizeof(tag) - 1);
        hash_part(&st, version_id ? version_id : "", version_id ? strlen(version_id) : 0);
        hash_part(&st, env_key ? env_key : "", env_key ? strlen(env_key) : 0);
        hash_part(&st, text, len);
        crypto_generichash_final(&st, digest, sizeof(digest));
        sodium_bin2hex(ret, MP_CACHE_KEY_HEX_LEN + 1, digest, sizeof(digest));
        return 0;
}
