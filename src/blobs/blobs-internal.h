/* blobs/: what the dispatch file needs from the backends, and the pieces of the S3
 * backend its unit tests reach (request signing, counting keys). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/util.h"
#include "blobs/blobs.h"

#define MP_BLOBS_MAX_KEY 512

/* A prefix as del_prefix and list take it (a valid key followed by '/'): its key without
 * the '/' in dir. 0, or -EINVAL with a 422 in err. */
int mp_blobs_prefix_dir(const char *prefix, char dir[MP_BLOBS_MAX_KEY + 1], struct mp_error *err);

/* The "file:" backend (blobs-file.c). */
extern const struct mp_blobs_ops mp_blobs_file_ops;
/* The "s3:" backend (blobs-s3.c). */
extern const struct mp_blobs_ops mp_blobs_s3_ops;

/* Count the objects whose key starts with prefix ("" = all of this store's objects; a
 * prefix is relative to the URL's prefix=). For tests and checks: it lists, so it costs a
 * request per 1000 keys. Returns 0 with *ret set, or -errno with err filled. */
int mp_blobs_s3_count(struct mp_blobs *b, const char *prefix, size_t *ret, struct mp_error *err);

/* AWS Signature Version 4 (blobs-s3-sig.c). Every function is pure: no clock, no
 * environment, so tests can feed the published vectors. */
#define MP_S3_HASH_HEX 65        /* 64 hex digits and a NUL */
#define MP_S3_MAX_SECRET 256     /* longer secret keys are refused */
#define MP_S3_MAX_HEADER_NAME 63 /* longest signed header name */
#define MP_S3_MAX_QUERY 16       /* query parameters in one request */

struct mp_s3_pair {
        const char *name, *value;
};

struct mp_s3_sign_in {
        const char *method;   /* "GET" */
        const char *path;     /* raw (not yet encoded), starting with '/': "/bucket/a b.txt" */
        const struct mp_s3_pair *query; /* raw names and values, in any order */
        size_t n_query;
        const struct mp_s3_pair *headers; /* the headers to sign, any case, in send order;
                                           * host and x-amz-date at least */
        size_t n_headers;
        const char *payload_hash; /* hex SHA-256 of the body, as sent in x-amz-content-sha256 */
        const char *amz_date;     /* "20150830T123600Z" */
        const char *region, *service; /* "us-east-1", "s3" */
        const char *access_key, *secret_key;
};

/* Hex SHA-256 of n bytes at p (p may be NULL when n is 0). Never fails. */
void mp_s3_sha256_hex(const void *p, size_t n, char out[MP_S3_HASH_HEX]);
/* Append s to out, encoded as SigV4 wants: unreserved bytes (A-Z a-z 0-9 - . _ ~) as they
 * are, '/' too when keep_slash (paths), every other byte as %XX. 0 or -ENOMEM/-E2BIG. */
int mp_s3_uri_encode(const char *s, bool keep_slash, struct mp_buf *out);
/* The canonical query string ("a=1&b=2", names and values encoded, sorted by name then
 * value); it is also what the request's URL carries after '?'. *ret is malloc'ed. */
int mp_s3_canonical_query(const struct mp_s3_pair *q, size_t n, char **ret);
/* The canonical request, and the signed header list ("host;x-amz-date") when
 * ret_signed_headers is not NULL; both malloc'ed. -EINVAL on a malformed input. */
int mp_s3_canonical_request(const struct mp_s3_sign_in *in, char **ret_creq,
                            char **ret_signed_headers);
/* The string to sign for a canonical request. *ret is malloc'ed. */
int mp_s3_string_to_sign(const char *amz_date, const char *region, const char *service,
                         const char *creq, char **ret);
/* The hex signature of a string to sign. */
int mp_s3_signature(const char *secret, const char *amz_date, const char *region,
                    const char *service, const char *sts, char out[MP_S3_HASH_HEX]);
/* The whole Authorization header value ("AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…,
 * Signature=…"), malloc'ed in *ret. */
int mp_s3_authorization(const struct mp_s3_sign_in *in, char **ret);
