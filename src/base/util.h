/* Time, ids, byte buffers with caps, and fd helpers. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/types.h>
#include <time.h>

#include "base/macro.h"

/* Milliseconds: wall clock since the epoch, and a monotonic clock for deadlines. */
int64_t mp_now_ms(void);
int64_t mp_mono_ms(void);
/* Condition variables that time out on the monotonic clock (a wall-clock jump must not
 * cut a wait short or stretch it), and the absolute deadline ms from now for them. */
void mp_cond_init_monotonic(pthread_cond_t *cond);
struct timespec mp_mono_deadline(int64_t ms);
/* Format epoch milliseconds as RFC 3339 UTC ("2026-01-02T03:04:05.678Z") into buf (>= 32 bytes). */
void mp_format_time(int64_t ms, char *buf, size_t size);

#define MP_ID_LEN 36 /* a UUID v4 in text, without the NUL */
/* Fill buf (>= MP_ID_LEN + 1 bytes) with a new random UUID v4. Never fails. */
void mp_id_new(char *buf);
/* True when s looks like an id made by mp_id_new (used to refuse garbage early). */
bool mp_id_valid(const char *s);

/* A growable byte buffer that refuses to grow past `cap` (0 = no cap). */
struct mp_buf {
        char *data;
        size_t len, alloc, cap;
        bool truncated; /* set by mp_buf_append_trunc when bytes were dropped */
};
/* Append n bytes; -E2BIG past the cap, -ENOMEM; the buffer stays NUL-terminated. */
int mp_buf_append(struct mp_buf *b, const void *p, size_t n);
/* Append what fits under the cap and remember that the rest was dropped. */
void mp_buf_append_trunc(struct mp_buf *b, const void *p, size_t n);
void mp_buf_free(struct mp_buf *b);
/* Hand the data over (caller frees); the buffer is left empty. */
char *mp_buf_steal(struct mp_buf *b);

/* Full reads and writes that retry on EINTR and short counts. 0 or -errno;
 * mp_read_full returns -EPIPE at EOF before n bytes. */
int mp_write_all(int fd, const void *p, size_t n);
int mp_read_full(int fd, void *p, size_t n);

/* Length-prefixed frames (u32 little endian, then bytes), the guest and executor
 * protocol. mp_frame_read returns a NUL-terminated malloc'ed buffer in *ret. */
int mp_frame_write(int fd, const void *p, size_t n);
int mp_frame_read(int fd, size_t max, char **ret, size_t *ret_len);

/* Read a whole (small) file, or what is left to read of fd; -EFBIG past max. */
int mp_read_file(const char *path, size_t max, char **ret, size_t *ret_len);
int mp_read_fd(int fd, size_t max, char **ret, size_t *ret_len);
/* Create the directory and its parents (mode 0700 for the ones created). */
int mp_mkdir_p(const char *path, mode_t mode);
/* Constant-time comparison for secrets. */
bool mp_streq_ct(const char *a, const char *b);
/* Decimal parse with range check, no atoi. */
int mp_parse_long(const char *s, long min, long max, long *ret);
/* Valid UTF-8 without NUL bytes? */
bool mp_utf8_valid(const char *s, size_t n);
/* A copy of s with every invalid UTF-8 sequence and NUL byte replaced by U+FFFD, so
 * bytes a program printed can be shown as JSON text. Returns a malloc'ed NUL-terminated
 * string (length in *ret_len) or NULL when out of memory. */
char *mp_utf8_sanitize(const char *s, size_t n, size_t *ret_len);
