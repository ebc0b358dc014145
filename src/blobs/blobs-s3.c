/* blobs/: the "s3:" backend, for objects shared by every worker of a scale-out install.
 *
 *   s3://BUCKET?endpoint=http://127.0.0.1:4569&region=us-east-1[&path_style=1][&prefix=mecapy/]
 *
 * Credentials come from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN
 * (read once, at open). Requests are signed here with SigV4 (blobs-s3-sig.c), with the
 * real payload hash in x-amz-content-sha256. An object key is the URL's prefix followed
 * by the blob key; blob keys are checked with mp_blobs_key_valid like the file: backend.
 *
 * Addressing: virtual-hosted ("BUCKET.s3.REGION.amazonaws.com/KEY") for AWS endpoints,
 * path-style ("HOST:PORT/BUCKET/KEY") for every other endpoint (MinIO, Ceph, s3rver); the
 * path_style parameter overrides either way.
 *
 * Failures: connection errors, 5xx and 429 are retried with exponential backoff and
 * jitter, at most S3_MAX_ATTEMPTS times within S3_RETRY_BUDGET_MS; when S3 stays
 * unreachable the error has status 503 and code "unavailable", so callers keep the work
 * pending and try later instead of losing a result.
 *
 * Atomicity: S3 makes a PUT (and a completed multipart upload) visible whole or not at
 * all, which is what the port promises. Unlike files, a key and a "folder" of the same
 * name can both exist ("a" and "a/b"): S3 has no folders. */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "base/config.h"
#include "base/util.h"
#include "blobs/blobs-internal.h"

#define S3_SINGLE_PUT_MAX     (8u << 20)  /* larger objects go up in parts */
#define S3_PART_SIZE          (8u << 20)  /* S3 wants >= 5 MiB for every part but the last */
#define S3_MAX_PARTS          10000       /* S3's own limit */
#define S3_MAX_ATTEMPTS       5
#define S3_RETRY_BUDGET_MS    10000       /* no new attempt starts after this */
#define S3_BACKOFF_BASE_MS    200
#define S3_BACKOFF_CAP_MS     3000
#define S3_CONNECT_TIMEOUT_MS 5000
#define S3_LOW_SPEED_BYTES    1024        /* abort a transfer slower than this ... */
#define S3_LOW_SPEED_S        20          /* ... for this long */
#define S3_MAX_ERROR_BODY     (64u << 10) /* what we keep of an error answer */
#define S3_MAX_SMALL_BODY     (256u << 10) /* initiate/complete answers */
#define S3_MAX_LIST_BODY      (8u << 20)  /* one ListObjectsV2 page: 1000 keys, ~1 MB */
#define S3_MAX_LIST_PAGES     100000      /* 100 million keys: a loop guard, not a limit */
#define S3_MAX_ETAG           128
#define S3_MAX_UPLOAD_ID      1024
#define S3_MAX_TOKEN          4096        /* session token, continuation token */
#define S3_POOL_MAX           32          /* idle easy handles kept (with their connections) */
#define S3_MAX_URL            4096        /* the --blobs URL */

struct mp_blobs {
        struct mp_blobs_base base; /* first, for MP_BLOBS() */
        char *bucket, *region;
        char *prefix;     /* "" or "some/thing/" */
        char *endpoint;   /* as configured, for messages */
        char *origin;     /* scheme://host[:port] that curl connects to */
        char *host;       /* the Host header we sign (with the port when not the default) */
        bool path_style;
        char *access_key, *secret_key, *session_token;
        pthread_mutex_t lock;
        CURL *pool[S3_POOL_MAX];
        size_t n_pool;
};

static void buf_freep(struct mp_buf *b) {
        mp_buf_free(b);
}
#define _cleanup_buf_ _cleanup_(buf_freep)

static void slist_freep(struct curl_slist **l) {
        curl_slist_free_all(*l);
}

/* ---- process-wide setup ---- */

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_r;

static void global_init(void) {
        /* curl_global_init is not thread-safe in 7.88: once per process, before any
         * worker thread uses a handle. */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                global_r = -EIO;
        else if (sodium_init() < 0)
                global_r = -EIO;
}

/* ---- the URL ---- */

static bool bucket_valid(const char *s) {
        size_t n = strlen(s);

        /* S3's rules for new buckets: 3-63 of [a-z0-9.-], starting and ending with a
         * letter or digit. Anything else would also be unsafe in a host name. */
        if (n < 3 || n > 63)
                return false;
        for (size_t i = 0; i < n; i++) {
                char c = s[i];
                bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
                if (!alnum && c != '.' && c != '-')
                        return false;
                if ((i == 0 || i == n - 1) && !alnum)
                        return false;
        }
        return true;
}

static bool region_valid(const char *s) {
        size_t n = strlen(s);

        if (n == 0 || n > 32)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
                        return false;
        return true;
}

static int hexval(char c) {
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Percent-decode n bytes of s (a query value may be written endpoint=http%3A%2F%2F...). */
static char *pct_decode(const char *s, size_t n) {
        char *out = malloc(n + 1), *o = out;

        if (!out)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
                        *o++ = (char) (hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
                        i += 2;
                } else
                        *o++ = s[i];
        }
        *o = 0;
        return out;
}

struct s3_params {
        char *bucket, *endpoint, *region, *path_style, *prefix;
};

static void params_free(struct s3_params *p) {
        free(p->bucket);
        free(p->endpoint);
        free(p->region);
        free(p->path_style);
        free(p->prefix);
}

static int parse_url(const char *url, struct s3_params *p, struct mp_error *err) {
        const char *s, *q;

        if (strlen(url) > S3_MAX_URL)
                return mp_error_set(err, EINVAL, 500, "config", "objects URL is longer than %d bytes",
                                    S3_MAX_URL);
        if (strncmp(url, "s3://", 5) != 0)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s' is not s3://: write "
                                    "s3://BUCKET?endpoint=URL&region=REGION", url);
        s = url + 5;
        q = s + strcspn(s, "?/");
        if (*q == '/')
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': put no path after the bucket; to keep the "
                                    "objects under a folder write ?prefix=FOLDER/", url);
        p->bucket = strndup(s, (size_t) (q - s));
        if (!p->bucket)
                return -ENOMEM;
        if (!bucket_valid(p->bucket))
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': bucket '%s' is not a valid S3 bucket name "
                                    "(3 to 63 of a-z 0-9 . -, starting and ending with a letter "
                                    "or digit)", url, p->bucket);
        if (*q != '?')
                return 0;
        for (const char *a = q + 1; *a;) {
                size_t len = strcspn(a, "&"), nlen;
                const char *eq = memchr(a, '=', len);
                char **slot = NULL;

                if (len == 0) {
                        a++;
                        continue;
                }
                nlen = eq ? (size_t) (eq - a) : len;
#define PARAM(name) (nlen == strlen(#name) && strncmp(a, #name, nlen) == 0) slot = &p->name
                if PARAM(endpoint);
                else if PARAM(region);
                else if PARAM(path_style);
                else if PARAM(prefix);
#undef PARAM
                if (!slot)
                        return mp_error_set(err, EINVAL, 500, "config",
                                            "objects URL '%s': unknown parameter '%.*s' (known: "
                                            "endpoint, region, path_style, prefix)", url, (int) nlen, a);
                if (*slot)
                        return mp_error_set(err, EINVAL, 500, "config",
                                            "objects URL '%s': parameter '%.*s' is given twice", url,
                                            (int) nlen, a);
                *slot = eq ? pct_decode(eq + 1, len - nlen - 1) : strdup("");
                if (!*slot)
                        return -ENOMEM;
                a += len;
                if (*a == '&')
                        a++;
        }
        return 0;
}

static bool host_is_aws(const char *host) {
        size_t n = strlen(host);
        const char *sfx[] = { ".amazonaws.com", ".amazonaws.com.cn" };

        for (size_t i = 0; i < ELEMENTSOF(sfx); i++) {
                size_t m = strlen(sfx[i]);
                if (n > m && strcmp(host + n - m, sfx[i]) == 0)
                        return true;
        }
        return false;
}

static void curlu_freep(CURLU **u) {
        if (*u)
                curl_url_cleanup(*u);
}
static void curl_freep(char **s) {
        curl_free(*s);
}
#define _cleanup_curl_str_ _cleanup_(curl_freep)

static char *concat3(const char *a, const char *b, const char *c) {
        size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
        char *s = malloc(na + nb + nc + 1);

        if (!s)
                return NULL;
        memcpy(s, a, na);
        memcpy(s + na, b, nb);
        memcpy(s + na + nb, c, nc + 1);
        return s;
}

/* Fill b->endpoint, origin, host and path_style from the parameters. */
static int setup_endpoint(struct mp_blobs *b, struct s3_params *p, const char *url,
                          struct mp_error *err) {
        _cleanup_(curlu_freep) CURLU *u = curl_url();
        _cleanup_curl_str_ char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL,
                                *query = NULL, *user = NULL;
        _cleanup_free_ char *hostport = NULL, *vhost = NULL;
        bool aws, def_port;

        if (!u)
                return -ENOMEM;
        if (p->endpoint && *p->endpoint)
                b->endpoint = strdup(p->endpoint);
        else
                b->endpoint = concat3("https://s3.", b->region, ".amazonaws.com");
        if (!b->endpoint)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, b->endpoint, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
            curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !*host)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': endpoint '%s' is not a URL like "
                                    "http://HOST:PORT or https://HOST", url, b->endpoint);
        if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': endpoint '%s' must start with http:// or "
                                    "https://", url, b->endpoint);
        curl_url_get(u, CURLUPART_PATH, &path, 0);
        curl_url_get(u, CURLUPART_QUERY, &query, 0);
        curl_url_get(u, CURLUPART_USER, &user, 0);
        if ((path && strcmp(path, "/") != 0) || query || user)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': endpoint '%s' must be only a scheme, a host "
                                    "and a port (no path, query or user)", url, b->endpoint);
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        def_port = !port || (strcmp(scheme, "http") == 0 && strcmp(port, "80") == 0) ||
                   (strcmp(scheme, "https") == 0 && strcmp(port, "443") == 0);

        aws = host_is_aws(host);
        if (!p->path_style)
                b->path_style = !aws;
        else if (strcmp(p->path_style, "1") == 0 || strcmp(p->path_style, "true") == 0)
                b->path_style = true;
        else if (strcmp(p->path_style, "0") == 0 || strcmp(p->path_style, "false") == 0)
                b->path_style = false;
        else
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': path_style must be 1 or 0, not '%s'", url,
                                    p->path_style);

        /* Virtual-hosted addressing puts the bucket in the host name: the Host header and
         * the host curl connects to both change. */
        if (!b->path_style) {
                vhost = concat3(b->bucket, ".", host);
                if (!vhost)
                        return -ENOMEM;
        }
        hostport = def_port ? strdup(vhost ? vhost : host)
                            : concat3(vhost ? vhost : host, ":", port);
        if (!hostport)
                return -ENOMEM;
        b->host = strdup(hostport);
        b->origin = concat3(scheme, "://", hostport);
        if (!b->host || !b->origin)
                return -ENOMEM;
        return 0;
}

/* ---- handles ---- */

static CURL *pool_get(struct mp_blobs *b) {
        CURL *h = NULL;

        pthread_mutex_lock(&b->lock);
        if (b->n_pool)
                h = b->pool[--b->n_pool];
        pthread_mutex_unlock(&b->lock);
        return h ? h : curl_easy_init();
}

static void pool_put(struct mp_blobs *b, CURL *h) {
        if (!h)
                return;
        pthread_mutex_lock(&b->lock);
        if (b->n_pool < S3_POOL_MAX) {
                b->pool[b->n_pool++] = h;
                h = NULL;
        }
        pthread_mutex_unlock(&b->lock);
        if (h)
                curl_easy_cleanup(h);
}

/* ---- one request, with retries ---- */

struct s3_call {
        /* in */
        const char *method;
        const char *key;              /* whole object key (prefix included); NULL: the bucket */
        const struct mp_s3_pair *query;
        size_t n_query;
        const void *body;
        size_t body_len;
        const char *content_type;     /* NULL: none */
        size_t max_body;              /* cap on a 2xx answer's body */
        bool error_in_200;            /* CompleteMultipartUpload may say 200 and fail */
        /* out */
        long status;
        struct mp_buf body_out;       /* a 2xx answer's body */
        struct mp_buf error_out;      /* an error answer's body (capped, truncated) */
        char etag[S3_MAX_ETAG + 1];
        uint64_t content_length;      /* of a 2xx answer, when it said */
        bool too_large, bad_header, oom;
        /* while a transfer runs */
        long status_now;
};

static void call_done(struct s3_call *c) {
        mp_buf_free(&c->body_out);
        mp_buf_free(&c->error_out);
}

static bool is_2xx(long s) {
        return s >= 200 && s < 300;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
        struct s3_call *c = ud;
        size_t len = size * n, vlen;
        const char *v;
        char num[32];

        if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
                /* A status line (a 100 Continue may come first): the state restarts. */
                const char *sp = memchr(p, ' ', len);
                c->status_now = 0;
                c->etag[0] = 0;
                c->content_length = UINT64_MAX;
                if (sp && (size_t) (sp - p) + 4 <= len)
                        for (int i = 1; i <= 3 && sp[i] >= '0' && sp[i] <= '9'; i++)
                                c->status_now = c->status_now * 10 + (sp[i] - '0');
                return len;
        }
        v = memchr(p, ':', len);
        if (!v)
                return len;
        vlen = len - (size_t) (v + 1 - p);
        for (v++; vlen && (*v == ' ' || *v == '\t'); v++, vlen--)
                ;
        while (vlen && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
                vlen--;
        /* (curl's header lines are not NUL-terminated: compare within len.) */
        if (len > 15 && strncasecmp(p, "content-length:", 15) == 0 && is_2xx(c->status_now)) {
                long cl;
                if (vlen >= sizeof(num))
                        return c->bad_header = true, 0;
                memcpy(num, v, vlen);
                num[vlen] = 0;
                if (mp_parse_long(num, 0, LONG_MAX, &cl) < 0)
                        return c->bad_header = true, 0;
                c->content_length = (uint64_t) cl;
                /* Refuse before reading: an object past the cap is never downloaded. (A
                 * HEAD answer states the length of a body it does not send.) */
                if (c->content_length > c->max_body && strcmp(c->method, "HEAD") != 0)
                        return c->too_large = true, 0;
        } else if (len > 5 && strncasecmp(p, "etag:", 5) == 0) {
                if (vlen > S3_MAX_ETAG)
                        return c->bad_header = true, 0;
                memcpy(c->etag, v, vlen);
                c->etag[vlen] = 0;
        }
        return len;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
        struct s3_call *c = ud;
        size_t len = size * n;

        if (is_2xx(c->status_now)) {
                if (c->body_out.len + len > c->max_body)
                        return c->too_large = true, 0;
                if (mp_buf_append(&c->body_out, p, len) < 0)
                        return c->oom = true, 0;
        } else
                mp_buf_append_trunc(&c->error_out, p, len);
        return len;
}

static char *header_line(const char *name, const char *value) {
        return concat3(name, ": ", value);
}

/* Connection trouble worth another attempt; everything else (a bad URL, our callbacks
 * refusing a body) is final. */
static bool curl_transient(CURLcode cc) {
        switch (cc) {
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_CONNECT:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return true;
        default:
                return false;
        }
}

/* The first <tag>text</tag> at or after *pos, XML entities decoded, malloc'ed in *ret;
 * *pos moves past it. 1 found, 0 not found, -ENOMEM. */
static int xml_next(const char **pos, const char *tag, char **ret) {
        char open[48], close[48];
        const char *a, *e;
        struct mp_buf out = { 0 };
        int r = 0;

        if (!*pos || strlen(tag) > 40)
                return 0;
        snprintf(open, sizeof(open), "<%s>", tag);
        snprintf(close, sizeof(close), "</%s>", tag);
        a = strstr(*pos, open);
        if (!a)
                return 0;
        a += strlen(open);
        e = strstr(a, close);
        if (!e)
                return 0;
        for (const char *p = a; p < e && r == 0;) {
                static const struct { const char *ent; char c; } ents[] = {
                        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' },
                        { "&apos;", '\'' },
                };
                size_t i;
                if (*p != '&') {
                        r = mp_buf_append(&out, p++, 1);
                        continue;
                }
                for (i = 0; i < ELEMENTSOF(ents); i++)
                        if (strncmp(p, ents[i].ent, strlen(ents[i].ent)) == 0)
                                break;
                if (i < ELEMENTSOF(ents)) {
                        r = mp_buf_append(&out, &ents[i].c, 1);
                        p += strlen(ents[i].ent);
                } else if (p[1] == '#') {
                        /* A character reference: S3 writes control characters this way. */
                        unsigned long cp = 0;
                        const char *q = p + 2;
                        bool hexa = *q == 'x';
                        unsigned char u[4];
                        size_t un;
                        if (hexa)
                                q++;
                        for (; q < e && *q != ';' && cp < 0x110000; q++) {
                                int d = hexa ? hexval(*q) : (*q >= '0' && *q <= '9' ? *q - '0' : -1);
                                if (d < 0)
                                        break;
                                cp = cp * (hexa ? 16 : 10) + (unsigned long) d;
                        }
                        if (q >= e || *q != ';' || cp == 0 || cp >= 0x110000) {
                                r = mp_buf_append(&out, p++, 1); /* not a reference: keep it */
                                continue;
                        }
                        if (cp < 0x80)
                                u[0] = (unsigned char) cp, un = 1;
                        else if (cp < 0x800)
                                u[0] = (unsigned char) (0xc0 | (cp >> 6)),
                                u[1] = (unsigned char) (0x80 | (cp & 0x3f)), un = 2;
                        else if (cp < 0x10000)
                                u[0] = (unsigned char) (0xe0 | (cp >> 12)),
                                u[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f)),
                                u[2] = (unsigned char) (0x80 | (cp & 0x3f)), un = 3;
                        else
                                u[0] = (unsigned char) (0xf0 | (cp >> 18)),
                                u[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f)),
                                u[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f)),
                                u[3] = (unsigned char) (0x80 | (cp & 0x3f)), un = 4;
                        r = mp_buf_append(&out, u, un);
                        p = q + 1;
                } else
                        r = mp_buf_append(&out, p++, 1);
        }
        if (r < 0) {
                mp_buf_free(&out);
                return r;
        }
        *pos = e + strlen(close);
        *ret = mp_buf_steal(&out);
        return *ret ? 1 : -ENOMEM;
}

/* S3's error code and message from an error body, into the fixed buffers. */
static void error_code(const struct s3_call *c, char *code, size_t code_size, char *msg,
                       size_t msg_size) {
        const char *body = c->error_out.data ? c->error_out.data : c->body_out.data, *p;
        _cleanup_free_ char *s = NULL;

        code[0] = msg[0] = 0;
        p = body;
        if (xml_next(&p, "Code", &s) > 0)
                snprintf(code, code_size, "%s", s);
        free(TAKE_PTR(s));
        p = body;
        if (xml_next(&p, "Message", &s) > 0)
                snprintf(msg, msg_size, "%s", s);
}

static void sleep_ms(long ms) {
        struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static void amz_now(char out[17]) {
        time_t t = time(NULL);
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* Build and sign one attempt's headers. */
static int sign_headers(struct mp_blobs *b, const struct s3_call *c, const char *path,
                        const char *payload_hash, struct curl_slist **ret) {
        _cleanup_(slist_freep) struct curl_slist *l = NULL;
        _cleanup_free_ char *authz = NULL;
        struct mp_s3_pair h[6];
        size_t n = 0;
        char date[17];
        int r;

        amz_now(date);
        h[n++] = (struct mp_s3_pair) { "Host", b->host };
        h[n++] = (struct mp_s3_pair) { "x-amz-content-sha256", payload_hash };
        h[n++] = (struct mp_s3_pair) { "x-amz-date", date };
        if (b->session_token)
                h[n++] = (struct mp_s3_pair) { "x-amz-security-token", b->session_token };
        if (c->content_type)
                h[n++] = (struct mp_s3_pair) { "Content-Type", c->content_type };
        struct mp_s3_sign_in in = {
                .method = c->method, .path = path, .query = c->query, .n_query = c->n_query,
                .headers = h, .n_headers = n, .payload_hash = payload_hash, .amz_date = date,
                .region = b->region, .service = "s3", .access_key = b->access_key,
                .secret_key = b->secret_key,
        };
        r = mp_s3_authorization(&in, &authz);
        if (r < 0)
                return r;
        h[n++] = (struct mp_s3_pair) { "Authorization", authz };
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *line = header_line(h[i].name, h[i].value);
                struct curl_slist *nl = line ? curl_slist_append(l, line) : NULL;
                if (!nl)
                        return -ENOMEM;
                l = nl;
        }
        /* Headers curl would add on its own: no "Expect: 100-continue" round trip, no
         * form content type on a body, no Accept. */
        const char *off[] = { "Expect:", "Accept:", c->content_type ? NULL : "Content-Type:" };
        for (size_t i = 0; i < ELEMENTSOF(off); i++) {
                struct curl_slist *nl;
                if (!off[i])
                        continue;
                nl = curl_slist_append(l, off[i]);
                if (!nl)
                        return -ENOMEM;
                l = nl;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

/* Send c, retrying transient failures. 0 with c->status set for any final HTTP answer
 * (the caller judges it); -EAGAIN with a 503 "unavailable" error when S3 could not be
 * reached or kept failing; -EFBIG when the answer's body passed c->max_body (err not
 * filled: the caller words it); another -errno with err filled otherwise. */
static int s3_call(struct mp_blobs *b, struct s3_call *c, const char *what, struct mp_error *err) {
        _cleanup_buf_ struct mp_buf path = { 0 }, url = { 0 };
        _cleanup_free_ char *query = NULL;
        char payload_hash[MP_S3_HASH_HEX], curl_err[CURL_ERROR_SIZE], last[CURL_ERROR_SIZE + 96];
        int64_t start = mp_mono_ms();
        int attempt, r;
        bool retry = false;
        CURL *h;

        r = pthread_once(&global_once, global_init);
        if (r != 0 || global_r < 0)
                return mp_error_set(err, EIO, 500, "storage", "%s: libcurl could not start", what);
        mp_s3_sha256_hex(c->body, c->body_len, payload_hash);
        r = mp_s3_canonical_query(c->query, c->n_query, &query);
        if (r < 0)
                return r;
        /* The path we sign is the raw one; the one we send is encoded the same way the
         * signer encodes it, so the server's canonical form matches ours. */
        r = mp_buf_append(&path, "/", 1);
        if (r == 0 && b->path_style)
                r = mp_buf_append(&path, b->bucket, strlen(b->bucket));
        if (r == 0 && b->path_style && c->key)
                r = mp_buf_append(&path, "/", 1);
        if (r == 0 && c->key)
                r = mp_buf_append(&path, c->key, strlen(c->key));
        if (r == 0)
                r = mp_buf_append(&url, b->origin, strlen(b->origin));
        if (r == 0)
                r = mp_s3_uri_encode(path.data, true, &url);
        if (r == 0 && *query) {
                r = mp_buf_append(&url, "?", 1);
                if (r == 0)
                        r = mp_buf_append(&url, query, strlen(query));
        }
        if (r < 0)
                return r;
        mp_buf_free(&c->error_out);
        c->error_out.cap = S3_MAX_ERROR_BODY;

        h = pool_get(b);
        if (!h)
                return -ENOMEM;
        last[0] = 0;
        for (attempt = 1;; attempt++) {
                _cleanup_(slist_freep) struct curl_slist *headers = NULL;
                CURLcode cc;

                mp_buf_free(&c->body_out);
                mp_buf_free(&c->error_out);
                c->status = c->status_now = 0;
                c->etag[0] = 0;
                c->content_length = UINT64_MAX;
                c->too_large = c->bad_header = c->oom = false;
                curl_err[0] = 0;
                r = sign_headers(b, c, path.data, payload_hash, &headers);
                if (r < 0)
                        break;

                curl_easy_reset(h);
                curl_easy_setopt(h, CURLOPT_URL, url.data);
                curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
                /* The path is already in its canonical encoding: curl must not
                 * "normalize" it, or the server would sign a different one. */
                curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L);
                curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
                curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* many threads; no SIGALRM */
                curl_easy_setopt(h, CURLOPT_ERRORBUFFER, curl_err);
                curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
                curl_easy_setopt(h, CURLOPT_HEADERDATA, c);
                curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
                curl_easy_setopt(h, CURLOPT_WRITEDATA, c);
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long) S3_LOW_SPEED_BYTES);
                curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long) S3_LOW_SPEED_S);
                {
                        /* The connect timeout never outlasts the retry budget. */
                        int64_t left = S3_RETRY_BUDGET_MS - (mp_mono_ms() - start);
                        long ct = (long) MP_MIN((int64_t) S3_CONNECT_TIMEOUT_MS, MP_MAX(left, 500));
                        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, ct);
                }
                if (strcmp(c->method, "HEAD") == 0)
                        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
                else if (c->body || strcmp(c->method, "PUT") == 0 || strcmp(c->method, "POST") == 0) {
                        curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body ? c->body : (const void *) "");
                        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) c->body_len);
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
                } else if (strcmp(c->method, "GET") != 0)
                        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);

                cc = curl_easy_perform(h);
                if (cc == CURLE_OK) {
                        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &c->status);
                        /* The callbacks sorted the body by the status line they saw: it
                         * must be the final one, or a body went to the wrong place. */
                        if (c->status != c->status_now)
                                c->bad_header = true;
                }
                if (c->too_large) {
                        r = -EFBIG;
                        break;
                }
                if (c->oom) {
                        r = -ENOMEM;
                        break;
                }
                if (c->bad_header) {
                        r = mp_error_set(err, EPROTO, 502, "storage",
                                         "%s: object storage at %s sent a malformed header", what,
                                         b->endpoint);
                        break;
                }
                if (cc == CURLE_OK && is_2xx(c->status) && c->error_in_200 && c->body_out.data &&
                    strstr(c->body_out.data, "<Error>")) {
                        /* A 200 whose body is an <Error> is how S3 reports a failure
                         * found after it started answering: retry it like a 500. */
                        c->status = 500;
                        mp_buf_append_trunc(&c->error_out, c->body_out.data, c->body_out.len);
                }
                if (cc != CURLE_OK) {
                        retry = curl_transient(cc);
                        snprintf(last, sizeof(last), "%s", *curl_err ? curl_err : curl_easy_strerror(cc));
                        if (!retry) {
                                r = mp_error_set(err, EIO, 500, "storage", "%s: %s (object storage at %s)",
                                                 what, last, b->endpoint);
                                break;
                        }
                } else {
                        char code[64], msg[128];
                        retry = c->status >= 500 || c->status == 429;
                        if (!retry) {
                                r = 0;
                                break;
                        }
                        error_code(c, code, sizeof(code), msg, sizeof(msg));
                        snprintf(last, sizeof(last), "HTTP %ld%s%s", c->status, *code ? " " : "", code);
                }
                /* Exponential backoff with jitter, within the budget. */
                if (attempt >= S3_MAX_ATTEMPTS)
                        break;
                long delay = MP_MIN((long) S3_BACKOFF_BASE_MS << (attempt - 1), (long) S3_BACKOFF_CAP_MS);
                delay = delay / 2 + (long) randombytes_uniform((uint32_t) (delay / 2 + 1));
                if (mp_mono_ms() - start + delay >= S3_RETRY_BUDGET_MS)
                        break;
                sleep_ms(delay);
        }
        pool_put(b, h);
        if (r == 0 && retry)
                return mp_error_set(err, EAGAIN, 503, "unavailable",
                                    "%s: object storage at %s is unavailable (%s after %d attempts "
                                    "in %.1f s); try again later", what, b->endpoint, last,
                                    MP_MIN(attempt, S3_MAX_ATTEMPTS),
                                    (double) (mp_mono_ms() - start) / 1000.0);
        return r;
}

/* An error for an HTTP answer the caller did not expect, with S3's code and message. */
static int fail_msg(struct mp_blobs *b, struct s3_call *c, struct mp_error *err, const char *what) {
        char code[64], msg[256];

        error_code(c, code, sizeof(code), msg, sizeof(msg));
        if (c->status == 403)
                return mp_error_set(err, EACCES, 500, "storage",
                                    "%s: object storage at %s refused the credentials for bucket "
                                    "'%s' (%s%s%s): check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY "
                                    "and the bucket's policy", what, b->endpoint, b->bucket,
                                    *code ? code : "403", *msg ? ": " : "", msg);
        return mp_error_set(err, EIO, 500, "storage",
                            "%s: object storage at %s answered HTTP %ld%s%s%s%s", what, b->endpoint,
                            c->status, *code ? " " : "", code, *msg ? ": " : "", msg);
}

/* ---- keys ---- */

static int bad_key(struct mp_error *err, const char *key) {
        return mp_error_set(err, EINVAL, 422, "validation",
                            "object key '%.600s' is not valid: it must be 1 to %d bytes of "
                            "[A-Za-z0-9._-] segments joined by '/', with no empty, '.' or '..' "
                            "segment", key ? key : "(null)", MP_BLOBS_MAX_KEY);
}

/* The object key: the URL's prefix then the blob key. */
static int full_key(struct mp_blobs *b, const char *key, char *out, size_t size) {
        size_t np = strlen(b->prefix), nk = strlen(key);

        if (np + nk + 1 > size)
                return -ENAMETOOLONG;
        memcpy(out, b->prefix, np);
        memcpy(out + np, key, nk + 1);
        return 0;
}

#define FULL_KEY_MAX (2 * MP_BLOBS_MAX_KEY + 2)

/* ---- operations ---- */

static void s3_close(struct mp_blobs *b) {
        if (!b)
                return;
        for (size_t i = 0; i < b->n_pool; i++)
                curl_easy_cleanup(b->pool[i]);
        pthread_mutex_destroy(&b->lock);
        if (b->secret_key)
                sodium_memzero(b->secret_key, strlen(b->secret_key));
        if (b->session_token)
                sodium_memzero(b->session_token, strlen(b->session_token));
        free(b->bucket);
        free(b->region);
        free(b->prefix);
        free(b->endpoint);
        free(b->origin);
        free(b->host);
        free(b->access_key);
        free(b->secret_key);
        free(b->session_token);
        free(b);
}
static void s3_closep(struct mp_blobs **b) {
        s3_close(*b);
}
static void params_freep(struct s3_params *p) {
        params_free(p);
}

/* HEAD the bucket; create it when it does not exist. */
static int ensure_bucket(struct mp_blobs *b, struct mp_error *err) {
        char what[128];
        int r;

        snprintf(what, sizeof(what), "opening bucket '%s'", b->bucket);
        for (int round = 0; round < 2; round++) {
                _cleanup_(call_done) struct s3_call head = { .method = "HEAD" };
                r = s3_call(b, &head, what, err);
                if (r < 0)
                        return r;
                if (is_2xx(head.status))
                        return 0;
                if (head.status == 403)
                        return fail_msg(b, &head, err, what);
                if (head.status == 301)
                        return mp_error_set(err, EINVAL, 500, "config",
                                            "%s: the bucket is not in region '%s' (object storage "
                                            "at %s answered 301): set region= to the bucket's",
                                            what, b->region, b->endpoint);
                if (head.status != 404 || round > 0)
                        return fail_msg(b, &head, err, what);

                /* Outside us-east-1, S3 wants the region in the body of the create. */
                _cleanup_free_ char *cfg = NULL;
                if (strcmp(b->region, "us-east-1") != 0) {
                        cfg = concat3("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/"
                                      "doc/2006-03-01/\"><LocationConstraint>", b->region,
                                      "</LocationConstraint></CreateBucketConfiguration>");
                        if (!cfg)
                                return -ENOMEM;
                }
                snprintf(what, sizeof(what), "creating bucket '%s'", b->bucket);
                _cleanup_(call_done) struct s3_call put = {
                        .method = "PUT", .body = cfg, .body_len = cfg ? strlen(cfg) : 0,
                        .content_type = cfg ? "application/xml" : NULL,
                        .max_body = S3_MAX_SMALL_BODY,
                };
                r = s3_call(b, &put, what, err);
                if (r < 0)
                        return r;
                if (is_2xx(put.status))
                        return 0;
                /* 409: another worker created it meanwhile (BucketAlreadyOwnedByYou), or it
                 * belongs to someone else (BucketAlreadyExists): the second HEAD tells. */
                if (put.status != 409)
                        return fail_msg(b, &put, err, what);
                snprintf(what, sizeof(what), "opening bucket '%s'", b->bucket);
        }
        return mp_error_set(err, EEXIST, 500, "config",
                            "bucket '%s' exists at %s but these credentials cannot use it: choose "
                            "another bucket name", b->bucket, b->endpoint);
}

static int s3_open(const char *url, struct mp_blobs **ret, struct mp_error *err) {
        _cleanup_(s3_closep) struct mp_blobs *b = NULL;
        _cleanup_(params_freep) struct s3_params p = { 0 };
        const char *ak, *sk, *tok;
        int r;

        r = pthread_once(&global_once, global_init);
        if (r != 0 || global_r < 0)
                return mp_error_set(err, EIO, 500, "storage", "objects URL '%s': libcurl or "
                                    "libsodium could not start", url);
        r = parse_url(url, &p, err);
        if (r < 0)
                return r;
        b = calloc(1, sizeof(*b));
        if (!b)
                return -ENOMEM;
        b->base.ops = &mp_blobs_s3_ops;
        pthread_mutex_init(&b->lock, NULL);
        b->bucket = TAKE_PTR(p.bucket);
        b->region = strdup(p.region && *p.region ? p.region : "us-east-1");
        if (!b->region)
                return -ENOMEM;
        if (!region_valid(b->region))
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s': region '%s' is not a region name like "
                                    "us-east-1", url, b->region);
        if (p.prefix && *p.prefix) {
                size_t n = strlen(p.prefix);
                _cleanup_free_ char *dir = strndup(p.prefix, p.prefix[n - 1] == '/' ? n - 1 : n);
                if (!dir)
                        return -ENOMEM;
                if (!mp_blobs_key_valid(dir))
                        return mp_error_set(err, EINVAL, 500, "config",
                                            "objects URL '%s': prefix '%s' must be [A-Za-z0-9._-] "
                                            "segments joined by '/', like mecapy/", url, p.prefix);
                b->prefix = concat3(dir, "/", "");
        } else
                b->prefix = strdup("");
        if (!b->prefix)
                return -ENOMEM;
        r = setup_endpoint(b, &p, url, err);
        if (r < 0)
                return r;

        ak = mp_config_client_env("AWS_ACCESS_KEY_ID");
        sk = mp_config_client_env("AWS_SECRET_ACCESS_KEY");
        tok = mp_config_client_env("AWS_SESSION_TOKEN");
        if (!ak || !*ak || !sk || !*sk)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "objects URL '%s' needs credentials: set AWS_ACCESS_KEY_ID and "
                                    "AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary "
                                    "ones)", url);
        if (strlen(ak) > 128 || strlen(sk) > MP_S3_MAX_SECRET || (tok && strlen(tok) > S3_MAX_TOKEN) ||
            strpbrk(ak, "\r\n") || (tok && strpbrk(tok, "\r\n")))
                return mp_error_set(err, EINVAL, 500, "config",
                                    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or AWS_SESSION_TOKEN "
                                    "is too long or holds a line break");
        b->access_key = strdup(ak);
        b->secret_key = strdup(sk);
        b->session_token = tok && *tok ? strdup(tok) : NULL;
        if (!b->access_key || !b->secret_key || (tok && *tok && !b->session_token))
                return -ENOMEM;

        r = ensure_bucket(b, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(b);
        return 0;
}

static int put_single(struct mp_blobs *b, const char *key, const char *fk, const void *data,
                      size_t len, struct mp_error *err) {
        _cleanup_(call_done) struct s3_call c = {
                .method = "PUT", .key = fk, .body = data, .body_len = len,
                .content_type = "application/octet-stream", .max_body = S3_MAX_SMALL_BODY,
        };
        char what[MP_BLOBS_MAX_KEY + 32];
        int r;

        snprintf(what, sizeof(what), "storing object '%s'", key);
        r = s3_call(b, &c, what, err);
        if (r == -EFBIG)
                return mp_error_set(err, EPROTO, 502, "storage", "%s: object storage at %s sent "
                                    "an oversized answer", what, b->endpoint);
        if (r < 0)
                return r;
        if (!is_2xx(c.status))
                return fail_msg(b, &c, err, what);
        return 0;
}

/* ETags go back into the completion body: accept only what S3 sends ("hex" or
 * "hex-N", quoted), so nothing from the answer can change the XML we write. */
static bool etag_valid(const char *e) {
        if (!*e)
                return false;
        for (const char *p = e; *p; p++)
                if (!(hexval(*p) >= 0 || *p == '"' || *p == '-'))
                        return false;
        return true;
}

static void abort_upload(struct mp_blobs *b, const char *fk, const char *upload_id) {
        struct mp_s3_pair q[] = { { "uploadId", upload_id } };
        _cleanup_(call_done) struct s3_call c = {
                .method = "DELETE", .key = fk, .query = q, .n_query = 1, .max_body = S3_MAX_SMALL_BODY,
        };

        /* Best effort: an upload left behind costs storage until the bucket's lifecycle
         * rule (AbortIncompleteMultipartUpload) removes it. */
        s3_call(b, &c, "aborting an upload", NULL);
}

static int put_multipart(struct mp_blobs *b, const char *key, const char *fk, const char *data,
                         size_t len, struct mp_error *err) {
        _cleanup_free_ char *upload_id = NULL;
        _cleanup_buf_ struct mp_buf xml = { 0 };
        char what[MP_BLOBS_MAX_KEY + 64];
        size_t parts = (len + S3_PART_SIZE - 1) / S3_PART_SIZE;
        int r;

        if (parts > S3_MAX_PARTS)
                return mp_error_set(err, EFBIG, 413, "too_large", "storing object '%s': %zu bytes is "
                                    "more than S3 takes in one object here", key, len);
        snprintf(what, sizeof(what), "storing object '%s' (starting the upload)", key);
        {
                struct mp_s3_pair q[] = { { "uploads", "" } };
                _cleanup_(call_done) struct s3_call c = {
                        .method = "POST", .key = fk, .query = q, .n_query = 1,
                        .content_type = "application/octet-stream", .max_body = S3_MAX_SMALL_BODY,
                };
                const char *p;
                r = s3_call(b, &c, what, err);
                if (r == -EFBIG)
                        return mp_error_set(err, EPROTO, 502, "storage", "%s: oversized answer", what);
                if (r < 0)
                        return r;
                if (!is_2xx(c.status))
                        return fail_msg(b, &c, err, what);
                p = c.body_out.data;
                r = xml_next(&p, "UploadId", &upload_id);
                if (r < 0)
                        return r;
                if (r == 0 || !*upload_id || strlen(upload_id) > S3_MAX_UPLOAD_ID)
                        return mp_error_set(err, EPROTO, 502, "storage",
                                            "%s: object storage at %s sent no upload id", what,
                                            b->endpoint);
        }

        r = mp_buf_append(&xml, "<CompleteMultipartUpload>", 25);
        for (size_t i = 0; i < parts && r >= 0; i++) {
                size_t off = i * S3_PART_SIZE, n = MP_MIN((size_t) S3_PART_SIZE, len - off);
                char num[16];
                snprintf(num, sizeof(num), "%zu", i + 1);
                struct mp_s3_pair q[] = { { "partNumber", num }, { "uploadId", upload_id } };
                _cleanup_(call_done) struct s3_call c = {
                        .method = "PUT", .key = fk, .query = q, .n_query = 2, .body = data + off,
                        .body_len = n, .max_body = S3_MAX_SMALL_BODY,
                };
                snprintf(what, sizeof(what), "storing object '%s' (part %zu of %zu)", key, i + 1, parts);
                r = s3_call(b, &c, what, err);
                if (r == -EFBIG)
                        r = mp_error_set(err, EPROTO, 502, "storage", "%s: oversized answer", what);
                if (r < 0)
                        break;
                if (!is_2xx(c.status)) {
                        r = fail_msg(b, &c, err, what);
                        break;
                }
                if (!etag_valid(c.etag)) {
                        r = mp_error_set(err, EPROTO, 502, "storage", "%s: object storage at %s "
                                         "sent no usable ETag for the part", what, b->endpoint);
                        break;
                }
                const char *x[] = { "<Part><PartNumber>", num, "</PartNumber><ETag>", c.etag,
                                    "</ETag></Part>" };
                for (size_t k = 0; k < ELEMENTSOF(x) && r >= 0; k++)
                        r = mp_buf_append(&xml, x[k], strlen(x[k]));
        }
        if (r >= 0)
                r = mp_buf_append(&xml, "</CompleteMultipartUpload>", 26);
        if (r >= 0) {
                struct mp_s3_pair q[] = { { "uploadId", upload_id } };
                _cleanup_(call_done) struct s3_call c = {
                        .method = "POST", .key = fk, .query = q, .n_query = 1, .body = xml.data,
                        .body_len = xml.len, .content_type = "application/xml",
                        .max_body = S3_MAX_SMALL_BODY, .error_in_200 = true,
                };
                snprintf(what, sizeof(what), "storing object '%s' (completing the upload)", key);
                r = s3_call(b, &c, what, err);
                if (r == -EFBIG)
                        r = mp_error_set(err, EPROTO, 502, "storage", "%s: oversized answer", what);
                else if (r >= 0 && !is_2xx(c.status))
                        r = fail_msg(b, &c, err, what);
        }
        if (r < 0)
                abort_upload(b, fk, upload_id);
        return r < 0 ? r : 0;
}

static int s3_put(struct mp_blobs *b, const char *key, const void *data, size_t len,
                  struct mp_error *err) {
        char fk[FULL_KEY_MAX];

        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        if (len && !data)
                return mp_error_set(err, EINVAL, 500, "storage", "storing object '%s': no data", key);
        if (full_key(b, key, fk, sizeof(fk)) < 0)
                return bad_key(err, key);
        if (len <= S3_SINGLE_PUT_MAX)
                return put_single(b, key, fk, data, len, err);
        return put_multipart(b, key, fk, data, len, err);
}

static int s3_get(struct mp_blobs *b, const char *key, size_t max, char **ret, size_t *ret_len,
                  struct mp_error *err) {
        char fk[FULL_KEY_MAX], what[MP_BLOBS_MAX_KEY + 32];
        int r;

        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        if (full_key(b, key, fk, sizeof(fk)) < 0)
                return bad_key(err, key);
        _cleanup_(call_done) struct s3_call c = { .method = "GET", .key = fk, .max_body = max };
        snprintf(what, sizeof(what), "reading object '%s'", key);
        r = s3_call(b, &c, what, err);
        if (r == -EFBIG) {
                if (c.content_length != UINT64_MAX)
                        return mp_error_set(err, EFBIG, 413, "too_large",
                                            "object '%s' is %" PRIu64 " bytes, more than the %zu "
                                            "allowed here", key, c.content_length, max);
                return mp_error_set(err, EFBIG, 413, "too_large",
                                    "object '%s' is more than the %zu bytes allowed here", key, max);
        }
        if (r < 0)
                return r;
        if (c.status == 404)
                return mp_error_set(err, ENOENT, 404, "not_found", "no object '%s'", key);
        if (!is_2xx(c.status))
                return fail_msg(b, &c, err, what);
        if (c.content_length != UINT64_MAX && c.content_length != c.body_out.len)
                return mp_error_set(err, EIO, 502, "storage",
                                    "%s: object storage at %s sent %zu bytes of %" PRIu64, what,
                                    b->endpoint, c.body_out.len, c.content_length);
        if (ret_len)
                *ret_len = c.body_out.len;
        *ret = mp_buf_steal(&c.body_out);
        return *ret ? 0 : -ENOMEM;
}

static int del_full(struct mp_blobs *b, const char *fk, const char *what, struct mp_error *err) {
        _cleanup_(call_done) struct s3_call c = {
                .method = "DELETE", .key = fk, .max_body = S3_MAX_SMALL_BODY,
        };
        int r;

        r = s3_call(b, &c, what, err);
        if (r == -EFBIG)
                return mp_error_set(err, EPROTO, 502, "storage", "%s: oversized answer", what);
        if (r < 0)
                return r;
        /* S3 answers 204 whether or not the key existed; some servers say 404. */
        if (is_2xx(c.status) || c.status == 404)
                return 0;
        return fail_msg(b, &c, err, what);
}

static int s3_del(struct mp_blobs *b, const char *key, struct mp_error *err) {
        char fk[FULL_KEY_MAX], what[MP_BLOBS_MAX_KEY + 32];

        if (!mp_blobs_key_valid(key))
                return bad_key(err, key);
        if (full_key(b, key, fk, sizeof(fk)) < 0)
                return bad_key(err, key);
        snprintf(what, sizeof(what), "deleting object '%s'", key);
        return del_full(b, fk, what, err);
}

typedef int (*key_fn)(struct mp_blobs *b, const char *full_key, void *ud, struct mp_error *err);

/* Call fn for every object key under full_prefix (ListObjectsV2, 1000 keys a page). */
static int list_keys(struct mp_blobs *b, const char *full_prefix, const char *what, key_fn fn,
                     void *ud, struct mp_error *err) {
        _cleanup_free_ char *token = NULL;
        int r;

        for (long page = 0; page < S3_MAX_LIST_PAGES; page++) {
                struct mp_s3_pair q[3] = { { "list-type", "2" }, { "prefix", full_prefix } };
                size_t nq = 2;
                const char *p;
                _cleanup_free_ char *truncated = NULL, *next = NULL;

                if (token)
                        q[nq++] = (struct mp_s3_pair) { "continuation-token", token };
                _cleanup_(call_done) struct s3_call c = {
                        .method = "GET", .query = q, .n_query = nq, .max_body = S3_MAX_LIST_BODY,
                };
                r = s3_call(b, &c, what, err);
                if (r == -EFBIG)
                        return mp_error_set(err, EPROTO, 502, "storage", "%s: a listing page from %s "
                                            "is larger than %u bytes", what, b->endpoint,
                                            S3_MAX_LIST_BODY);
                if (r < 0)
                        return r;
                if (!is_2xx(c.status))
                        return fail_msg(b, &c, err, what);
                p = c.body_out.data;
                for (;;) {
                        _cleanup_free_ char *k = NULL;
                        r = xml_next(&p, "Key", &k);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                break;
                        /* Only keys under the prefix: a misbehaving server must not make us
                         * delete anything else. */
                        if (strncmp(k, full_prefix, strlen(full_prefix)) != 0)
                                continue;
                        r = fn(b, k, ud, err);
                        if (r < 0)
                                return r;
                }
                p = c.body_out.data;
                if ((r = xml_next(&p, "IsTruncated", &truncated)) < 0)
                        return r;
                if (r == 0 || strcmp(truncated, "true") != 0)
                        return 0;
                p = c.body_out.data;
                if ((r = xml_next(&p, "NextContinuationToken", &next)) < 0)
                        return r;
                if (r == 0 || !*next || strlen(next) > S3_MAX_TOKEN || (token && strcmp(next, token) == 0))
                        return mp_error_set(err, EPROTO, 502, "storage",
                                            "%s: object storage at %s said the listing goes on but "
                                            "gave no new continuation token", what, b->endpoint);
                free(token);
                token = TAKE_PTR(next);
        }
        return mp_error_set(err, E2BIG, 500, "storage", "%s: more than %d listing pages", what,
                            S3_MAX_LIST_PAGES);
}

static int del_one(struct mp_blobs *b, const char *fk, void *ud, struct mp_error *err) {
        const char *what = ud;
        /* One DELETE per key: DeleteObjects would need a Content-MD5 we have no MD5 for,
         * and a task's prefix holds a few dozen objects at most. */
        return del_full(b, fk, what, err);
}

static int s3_del_prefix(struct mp_blobs *b, const char *prefix, struct mp_error *err) {
        char dir[MP_BLOBS_MAX_KEY + 1], fp[FULL_KEY_MAX], what[MP_BLOBS_MAX_KEY + 48];
        int r;

        if ((r = mp_blobs_prefix_dir(prefix, dir, err)) < 0)
                return r;
        if (full_key(b, prefix, fp, sizeof(fp)) < 0)
                return bad_key(err, dir);
        snprintf(what, sizeof(what), "deleting the objects under '%s'", prefix);
        return list_keys(b, fp, what, del_one, what, err);
}

static int count_one(struct mp_blobs *b, const char *fk, void *ud, struct mp_error *err) {
        (*(size_t *) ud)++;
        return 0;
}

int mp_blobs_s3_count(struct mp_blobs *b, const char *prefix, size_t *ret, struct mp_error *err) {
        char fp[FULL_KEY_MAX];
        size_t n = 0;
        int r;

        if (!b || MP_BLOBS(b) != &mp_blobs_s3_ops || !prefix)
                return mp_error_set(err, EINVAL, 500, "storage", "counting objects: not an s3: store");
        if (full_key(b, prefix, fp, sizeof(fp)) < 0)
                return mp_error_set(err, EINVAL, 422, "validation", "prefix '%.600s' is too long", prefix);
        r = list_keys(b, fp, "counting objects", count_one, &n, err);
        if (r < 0)
                return r;
        *ret = n;
        return 0;
}

struct list_ud {
        int (*fn)(void *ud, const char *key);
        void *ud;
        int stopped; /* what fn returned to stop the listing */
};

/* list_keys stops at any non-zero answer; a stop (> 0) travels as -ECANCELED and is
 * turned back into fn's value by s3_list. */
static int list_one(struct mp_blobs *b, const char *fk, void *ud, struct mp_error *err) {
        struct list_ud *l = ud;
        const char *key = fk + strlen(b->prefix);
        int r;

        if (!mp_blobs_key_valid(key)) /* not one of ours (another writer's key) */
                return 0;
        r = l->fn(l->ud, key);
        if (r > 0) {
                l->stopped = r;
                return -ECANCELED;
        }
        return r;
}

static int s3_list(struct mp_blobs *b, const char *prefix, int (*fn)(void *ud, const char *key), void *ud,
                   struct mp_error *err) {
        char dir[MP_BLOBS_MAX_KEY + 1], fp[FULL_KEY_MAX], what[MP_BLOBS_MAX_KEY + 48];
        struct list_ud l = { .fn = fn, .ud = ud };
        int r;

        if ((r = mp_blobs_prefix_dir(prefix, dir, err)) < 0)
                return r;
        if (full_key(b, prefix, fp, sizeof(fp)) < 0)
                return bad_key(err, dir);
        snprintf(what, sizeof(what), "listing the objects under '%s'", prefix);
        r = list_keys(b, fp, what, list_one, &l, err);
        return r == -ECANCELED && l.stopped ? l.stopped : r;
}

/* HEAD of the bucket: 200 when it is there and ours to read. */
static int s3_ping(struct mp_blobs *b, struct mp_error *err) {
        _cleanup_(call_done) struct s3_call c = { .method = "HEAD", .key = NULL, .max_body = S3_MAX_SMALL_BODY };
        int r = s3_call(b, &c, "checking the bucket", err);
        if (r == -EFBIG)
                return mp_error_set(err, EPROTO, 502, "storage", "checking the bucket: oversized answer");
        if (r < 0)
                return r;
        if (!is_2xx(c.status))
                return fail_msg(b, &c, err, "checking the bucket");
        return 0;
}

const struct mp_blobs_ops mp_blobs_s3_ops = {
        .scheme = "s3",
        .open = s3_open,
        .close = s3_close,
        .put = s3_put,
        .get = s3_get,
        .del = s3_del,
        .del_prefix = s3_del_prefix,
        .ping = s3_ping,
        .list = s3_list,
};
