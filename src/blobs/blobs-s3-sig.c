/* blobs/: AWS Signature Version 4, computed here (HMAC-SHA256 and SHA-256 from libsodium)
 * rather than by libcurl, so every step can be checked against the published AWS test
 * vectors (tests/unit/test-s3sig.c) and so the payload hash we send in
 * x-amz-content-sha256 is the one we sign.
 *
 * The steps (https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html):
 *   canonical request = method \n canonical URI \n canonical query \n canonical headers \n
 *                       signed headers \n payload hash
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz date \n scope \n hex(sha256(canonical request))
 *   signing key       = HMAC(HMAC(HMAC(HMAC("AWS4" secret, yyyymmdd), region), service),
 *                       "aws4_request")
 *   signature         = hex(HMAC(signing key, string to sign)) */
#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <sodium.h>

#include "base/util.h"
#include "blobs/blobs-internal.h"

/* A signed request may carry at most this many headers: ours carry five or six. */
#define MAX_SIGNED_HEADERS 32

static void buf_freep(struct mp_buf *b) {
        mp_buf_free(b);
}
#define _cleanup_buf_ _cleanup_(buf_freep)

static void hex(const unsigned char *p, size_t n, char *out) {
        static const char digits[] = "0123456789abcdef";
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = digits[p[i] >> 4];
                out[2 * i + 1] = digits[p[i] & 15];
        }
        out[2 * n] = 0;
}

void mp_s3_sha256_hex(const void *p, size_t n, char out[MP_S3_HASH_HEX]) {
        unsigned char h[crypto_hash_sha256_BYTES];

        crypto_hash_sha256(h, p ? p : (const void *) "", n);
        hex(h, sizeof(h), out);
}

/* HMAC-SHA256 with a key of any length (the one-shot crypto_auth_hmacsha256 wants
 * exactly 32 bytes, and the first key of the chain is "AWS4" + the secret). */
static void hmac(const void *key, size_t key_len, const char *msg, size_t msg_len,
                 unsigned char out[crypto_auth_hmacsha256_BYTES]) {
        crypto_auth_hmacsha256_state st;

        crypto_auth_hmacsha256_init(&st, key, key_len);
        crypto_auth_hmacsha256_update(&st, (const unsigned char *) msg, msg_len);
        crypto_auth_hmacsha256_final(&st, out);
        sodium_memzero(&st, sizeof(st));
}

static bool unreserved(unsigned char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '-' || c == '.' || c == '_' || c == '~';
}

/* SigV4's encoding: every byte but the unreserved ones as %XX with upper-case hex; '/'
 * kept in a path (S3 encodes each segment once, unlike the other services). */
int mp_s3_uri_encode(const char *s, bool keep_slash, struct mp_buf *out) {
        static const char digits[] = "0123456789ABCDEF";
        int r;

        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if (unreserved(*p) || (keep_slash && *p == '/'))
                        r = mp_buf_append(out, p, 1);
                else {
                        char e[3] = { '%', digits[*p >> 4], digits[*p & 15] };
                        r = mp_buf_append(out, e, 3);
                }
                if (r < 0)
                        return r;
        }
        return 0;
}

struct enc_pair {
        char *name, *value;
};

static int cmp_pair(const void *a, const void *b) {
        const struct enc_pair *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        return c ? c : strcmp(x->value, y->value);
}

static char *encode_dup(const char *s) {
        struct mp_buf b = { 0 };

        if (mp_s3_uri_encode(s ? s : "", false, &b) < 0) {
                mp_buf_free(&b);
                return NULL;
        }
        return mp_buf_steal(&b);
}

int mp_s3_canonical_query(const struct mp_s3_pair *q, size_t n, char **ret) {
        _cleanup_buf_ struct mp_buf out = { 0 };
        _cleanup_free_ struct enc_pair *e = NULL;
        int r = 0;

        if (n > MP_S3_MAX_QUERY)
                return -E2BIG;
        e = calloc(n ? n : 1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        for (size_t i = 0; i < n && r == 0; i++) {
                e[i].name = encode_dup(q[i].name);
                e[i].value = encode_dup(q[i].value);
                if (!e[i].name || !e[i].value)
                        r = -ENOMEM;
        }
        /* Sorted by encoded name, then encoded value (get-vanilla-query-order-key). */
        if (r == 0)
                qsort(e, n, sizeof(*e), cmp_pair);
        for (size_t i = 0; i < n && r == 0; i++) {
                if (i)
                        r = mp_buf_append(&out, "&", 1);
                if (r == 0)
                        r = mp_buf_append(&out, e[i].name, strlen(e[i].name));
                if (r == 0)
                        r = mp_buf_append(&out, "=", 1);
                if (r == 0)
                        r = mp_buf_append(&out, e[i].value, strlen(e[i].value));
        }
        for (size_t i = 0; i < n; i++) {
                free(e[i].name);
                free(e[i].value);
        }
        if (r < 0)
                return r;
        *ret = mp_buf_steal(&out);
        return *ret ? 0 : -ENOMEM;
}

struct canon_header {
        char name[MP_S3_MAX_HEADER_NAME + 1];
        const char *value;
        size_t order;
};

static int cmp_header(const void *a, const void *b) {
        const struct canon_header *x = a, *y = b;
        int c = strcmp(x->name, y->name);
        /* Equal names keep the order they were given in (get-header-value-order). */
        return c ? c : (x->order < y->order ? -1 : x->order > y->order);
}

/* The value with leading and trailing blanks removed and each run of blanks inside
 * folded to one space (get-header-value-trim). */
static int append_trimmed(struct mp_buf *out, const char *v) {
        bool space = false, any = false;
        int r;

        for (const char *p = v; *p; p++) {
                if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') {
                        space = any;
                        continue;
                }
                if (space && (r = mp_buf_append(out, " ", 1)) < 0)
                        return r;
                space = false;
                any = true;
                if ((r = mp_buf_append(out, p, 1)) < 0)
                        return r;
        }
        return 0;
}

int mp_s3_canonical_request(const struct mp_s3_sign_in *in, char **ret_creq,
                            char **ret_signed_headers) {
        _cleanup_buf_ struct mp_buf out = { 0 }, sh = { 0 };
        _cleanup_free_ char *query = NULL;
        struct canon_header h[MAX_SIGNED_HEADERS];
        int r;

        if (!in->method || !in->path || in->path[0] != '/' || !in->payload_hash)
                return -EINVAL;
        if (in->n_headers > MAX_SIGNED_HEADERS)
                return -E2BIG;
        for (size_t i = 0; i < in->n_headers; i++) {
                size_t n = strlen(in->headers[i].name);
                if (n == 0 || n > MP_S3_MAX_HEADER_NAME)
                        return -EINVAL;
                for (size_t j = 0; j <= n; j++) {
                        char c = in->headers[i].name[j];
                        h[i].name[j] = (c >= 'A' && c <= 'Z') ? (char) (c + 32) : c;
                }
                h[i].value = in->headers[i].value ? in->headers[i].value : "";
                h[i].order = i;
        }
        qsort(h, in->n_headers, sizeof(h[0]), cmp_header);

        r = mp_s3_canonical_query(in->query, in->n_query, &query);
        if (r < 0)
                return r;
#define ADD(s, n) do { if ((r = mp_buf_append(&out, (s), (n))) < 0) return r; } while (0)
#define ADDS(s) ADD((s), strlen(s))
        ADDS(in->method);
        ADD("\n", 1);
        if ((r = mp_s3_uri_encode(in->path, true, &out)) < 0)
                return r;
        ADD("\n", 1);
        ADDS(query);
        ADD("\n", 1);
        for (size_t i = 0; i < in->n_headers; i++) {
                bool repeat = i > 0 && strcmp(h[i].name, h[i - 1].name) == 0;
                if (repeat) /* repeated names: one line, values joined by commas */
                        ADD(",", 1);
                else {
                        if (i > 0)
                                ADD("\n", 1);
                        ADDS(h[i].name);
                        ADD(":", 1);
                        if ((r = mp_buf_append(&sh, sh.len ? ";" : "", sh.len ? 1 : 0)) < 0 ||
                            (r = mp_buf_append(&sh, h[i].name, strlen(h[i].name))) < 0)
                                return r;
                }
                if ((r = append_trimmed(&out, h[i].value)) < 0)
                        return r;
        }
        ADD("\n\n", in->n_headers ? 2 : 1);
        ADD(sh.data ? sh.data : "", sh.len);
        ADD("\n", 1);
        ADDS(in->payload_hash);
#undef ADDS
#undef ADD
        *ret_creq = mp_buf_steal(&out);
        if (ret_signed_headers)
                *ret_signed_headers = mp_buf_steal(&sh);
        return 0;
}

/* "20150830T123600Z": 8 digits, 'T', 6 digits, 'Z'. */
static bool amz_date_valid(const char *d) {
        if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
                return false;
        for (int i = 0; i < 15; i++)
                if (i != 8 && (d[i] < '0' || d[i] > '9'))
                        return false;
        return true;
}

int mp_s3_string_to_sign(const char *amz_date, const char *region, const char *service,
                         const char *creq, char **ret) {
        _cleanup_buf_ struct mp_buf out = { 0 };
        char h[MP_S3_HASH_HEX];
        int r = 0;

        if (!amz_date_valid(amz_date) || !region || !service || !creq)
                return -EINVAL;
        mp_s3_sha256_hex(creq, strlen(creq), h);
        const char *parts[] = { "AWS4-HMAC-SHA256\n", amz_date, "\n" };
        for (size_t i = 0; i < ELEMENTSOF(parts) && r == 0; i++)
                r = mp_buf_append(&out, parts[i], strlen(parts[i]));
        if (r == 0)
                r = mp_buf_append(&out, amz_date, 8);
        const char *rest[] = { "/", region, "/", service, "/aws4_request\n", h };
        for (size_t i = 0; i < ELEMENTSOF(rest) && r == 0; i++)
                r = mp_buf_append(&out, rest[i], strlen(rest[i]));
        if (r < 0)
                return r;
        *ret = mp_buf_steal(&out);
        return 0;
}

int mp_s3_signature(const char *secret, const char *amz_date, const char *region,
                    const char *service, const char *sts, char out[MP_S3_HASH_HEX]) {
        unsigned char k[crypto_auth_hmacsha256_BYTES], k2[crypto_auth_hmacsha256_BYTES];
        char first[4 + MP_S3_MAX_SECRET + 1];
        size_t n;

        if (!secret || !amz_date_valid(amz_date) || !region || !service || !sts)
                return -EINVAL;
        n = strlen(secret);
        if (n > MP_S3_MAX_SECRET)
                return -E2BIG;
        memcpy(first, "AWS4", 4);
        memcpy(first + 4, secret, n);
        hmac(first, 4 + n, amz_date, 8, k);
        sodium_memzero(first, sizeof(first));
        hmac(k, sizeof(k), region, strlen(region), k2);
        hmac(k2, sizeof(k2), service, strlen(service), k);
        hmac(k, sizeof(k), "aws4_request", 12, k2);
        hmac(k2, sizeof(k2), sts, strlen(sts), k);
        hex(k, sizeof(k), out);
        sodium_memzero(k, sizeof(k));
        sodium_memzero(k2, sizeof(k2));
        return 0;
}

int mp_s3_authorization(const struct mp_s3_sign_in *in, char **ret) {
        _cleanup_free_ char *creq = NULL, *signed_headers = NULL, *sts = NULL;
        _cleanup_buf_ struct mp_buf out = { 0 };
        char sig[MP_S3_HASH_HEX];
        int r;

        if (!in->access_key || !in->secret_key)
                return -EINVAL;
        r = mp_s3_canonical_request(in, &creq, &signed_headers);
        if (r < 0)
                return r;
        r = mp_s3_string_to_sign(in->amz_date, in->region, in->service, creq, &sts);
        if (r < 0)
                return r;
        r = mp_s3_signature(in->secret_key, in->amz_date, in->region, in->service, sts, sig);
        if (r < 0)
                return r;
        const char *parts[] = { "AWS4-HMAC-SHA256 Credential=", in->access_key, "/" };
        for (size_t i = 0; i < ELEMENTSOF(parts) && r == 0; i++)
                r = mp_buf_append(&out, parts[i], strlen(parts[i]));
        if (r == 0)
                r = mp_buf_append(&out, in->amz_date, 8);
        const char *rest[] = { "/", in->region, "/", in->service, "/aws4_request, SignedHeaders=",
                               signed_headers, ", Signature=", sig };
        for (size_t i = 0; i < ELEMENTSOF(rest) && r == 0; i++)
                r = mp_buf_append(&out, rest[i], strlen(rest[i]));
        if (r < 0)
                return r;
        *ret = mp_buf_steal(&out);
        return 0;
}
