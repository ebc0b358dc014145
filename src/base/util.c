#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>

#include "base/limits.h"
#include "base/util.h"

int64_t mp_now_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t mp_mono_ms(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void mp_cond_init_monotonic(pthread_cond_t *cond) {
        pthread_condattr_t ca;
        pthread_condattr_init(&ca);
        pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
        pthread_cond_init(cond, &ca);
        pthread_condattr_destroy(&ca);
}

struct timespec mp_mono_deadline(int64_t ms) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if (ms < 0)
                ms = 0;
        ts.tv_sec += (time_t) (ms / 1000);
        ts.tv_nsec += (long) (ms % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
        }
        return ts;
}

void mp_format_time(int64_t ms, char *buf, size_t size) {
        time_t s = (time_t) (ms / 1000);
        struct tm tm;
        gmtime_r(&s, &tm);
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}

void mp_id_new(char *buf) {
        uint8_t r[16];
        size_t got = 0;

        while (got < sizeof(r)) {
                ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
                if (n > 0)
                        got += (size_t) n;
        }
        r[6] = (r[6] & 0x0f) | 0x40;
        r[8] = (r[8] & 0x3f) | 0x80;
        snprintf(buf, MP_ID_LEN + 1,
                 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                 r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11],
                 r[12], r[13], r[14], r[15]);
}

bool mp_id_valid(const char *s) {
        if (!s || strlen(s) != MP_ID_LEN)
                return false;
        for (int i = 0; i < MP_ID_LEN; i++) {
                bool dash = i == 8 || i == 13 || i == 18 || i == 23;
                if (dash ? s[i] != '-' : !strchr("0123456789abcdef", s[i]) || !s[i])
                        return false;
        }
        return true;
}

int mp_buf_append(struct mp_buf *b, const void *p, size_t n) {
        if (b->cap && b->len + n > b->cap)
                return -E2BIG;
        if (b->len + n + 1 > b->alloc) {
                size_t a = b->alloc ? b->alloc : 256;
                while (a < b->len + n + 1)
                        a *= 2;
                char *d = realloc(b->data, a);
                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->alloc = a;
        }
        if (n)
                memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = 0;
        return 0;
}

void mp_buf_append_trunc(struct mp_buf *b, const void *p, size_t n) {
        size_t room = b->cap ? (b->cap > b->len ? b->cap - b->len : 0) : n;
        if (room < n)
                b->truncated = true;
        if (mp_buf_append(b, p, MP_MIN(room, n)) < 0)
                b->truncated = true;
}

void mp_buf_free(struct mp_buf *b) {
        free(b->data);
        b->data = NULL;
        b->len = b->alloc = 0;
        b->truncated = false;
}

char *mp_buf_steal(struct mp_buf *b) {
        char *d = b->data ? b->data : strdup("");
        b->data = NULL;
        b->len = b->alloc = 0;
        return d;
}

int mp_write_all(int fd, const void *p, size_t n) {
        const char *c = p;
        while (n > 0) {
                ssize_t w = write(fd, c, n);
                if (w < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                c += w;
                n -= (size_t) w;
        }
        return 0;
}

int mp_read_full(int fd, void *p, size_t n) {
        char *c = p;
        while (n > 0) {
                ssize_t r = read(fd, c, n);
                if (r < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                if (r == 0)
                        return -EPIPE;
                c += r;
                n -= (size_t) r;
        }
        return 0;
}

int mp_frame_write(int fd, const void *p, size_t n) {
        uint32_t len = htole32((uint32_t) n);
        int r;

        if (n > MP_MAX_FRAME_BYTES)
                return -E2BIG;
        r = mp_write_all(fd, &len, sizeof(len));
        if (r < 0)
                return r;
        return mp_write_all(fd, p, n);
}

int mp_frame_read(int fd, size_t max, char **ret, size_t *ret_len) {
        uint32_t len;
        char *d;
        int r;

        r = mp_read_full(fd, &len, sizeof(len));
        if (r < 0)
                return r;
        len = le32toh(len);
        if (len > max)
                return -E2BIG;
        d = malloc((size_t) len + 1);
        if (!d)
                return -ENOMEM;
        r = mp_read_full(fd, d, len);
        if (r < 0) {
                free(d);
                return r;
        }
        d[len] = 0;
        *ret = d;
        if (ret_len)
                *ret_len = len;
        return 0;
}

int mp_read_file(const char *path, size_t max, char **ret, size_t *ret_len) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return mp_read_fd(fd, max, ret, ret_len);
}

int mp_read_fd(int fd, size_t max, char **ret, size_t *ret_len) {
        struct mp_buf b = { .cap = max };
        char chunk[65536];

        for (;;) {
                ssize_t n = read(fd, chunk, sizeof(chunk));
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        mp_buf_free(&b);
                        return -errno;
                }
                if (n == 0)
                        break;
                if (mp_buf_append(&b, chunk, (size_t) n) < 0) {
                        mp_buf_free(&b);
                        return -EFBIG;
                }
        }
        if (ret_len)
                *ret_len = b.len;
        *ret = mp_buf_steal(&b);
        return 0;
}

int mp_mkdir_p(const char *path, mode_t mode) {
        char tmp[4096];
        size_t n = strlen(path);

        if (n == 0 || n >= sizeof(tmp))
                return -ENAMETOOLONG;
        memcpy(tmp, path, n + 1);
        for (char *p = tmp + 1; *p; p++) {
                if (*p != '/')
                        continue;
                *p = 0;
                if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                        return -errno;
                *p = '/';
        }
        if (mkdir(tmp, mode) < 0 && errno != EEXIST)
                return -errno;
        return 0;
}

bool mp_streq_ct(const char *a, const char *b) {
        size_t la = strlen(a), lb = strlen(b);
        unsigned char d = la != lb;
        for (size_t i = 0; i < la && i < lb; i++)
                d |= (unsigned char) (a[i] ^ b[i]);
        return d == 0;
}

int mp_parse_long(const char *s, long min, long max, long *ret) {
        char *end;
        long v;

        if (!s || !*s)
                return -EINVAL;
        errno = 0;
        v = strtol(s, &end, 10);
        if (errno || *end || v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

/* Length of the valid, non-NUL UTF-8 sequence at p (1 to 4), or 0. */
static size_t utf8_seq(const unsigned char *p, const unsigned char *e) {
        unsigned c = *p;
        size_t more;
        unsigned min;

        if (c == 0)
                return 0;
        if (c < 0x80)
                return 1;
        if ((c & 0xe0) == 0xc0) { more = 1; min = 0x80; c &= 0x1f; }
        else if ((c & 0xf0) == 0xe0) { more = 2; min = 0x800; c &= 0x0f; }
        else if ((c & 0xf8) == 0xf0) { more = 3; min = 0x10000; c &= 0x07; }
        else return 0;
        if ((size_t) (e - p) <= more)
                return 0;
        for (size_t i = 1; i <= more; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                c = (c << 6) | (p[i] & 0x3f);
        }
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
                return 0;
        return more + 1;
}

bool mp_utf8_valid(const char *s, size_t n) {
        const unsigned char *p = (const unsigned char *) s, *e = p + n;
        while (p < e) {
                size_t k = utf8_seq(p, e);
                if (!k)
                        return false;
                p += k;
        }
        return true;
}

char *mp_utf8_sanitize(const char *s, size_t n, size_t *ret_len) {
        const unsigned char *p = (const unsigned char *) s, *e = p + n;
        struct mp_buf b = { 0 };

        while (p < e) {
                const unsigned char *start = p;
                size_t k;
                while (p < e && (k = utf8_seq(p, e)))
                        p += k;
                if (mp_buf_append(&b, start, (size_t) (p - start)) < 0)
                        goto oom;
                if (p < e) {
                        if (mp_buf_append(&b, "\xef\xbf\xbd", 3) < 0)
                                goto oom;
                        p++;
                }
        }
        if (ret_len)
                *ret_len = b.len;
        return mp_buf_steal(&b);
oom:
        mp_buf_free(&b);
        return NULL;
}
