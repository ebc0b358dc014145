#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"
#include "base/util.h"

static enum mp_log_level min_level = MP_LOG_INFO;
static enum mp_log_format format = MP_LOG_TEXT;

/* The calling thread's context (empty: none). */
static _Thread_local char ctx_request[MP_LOG_ID_MAX + 1];
static _Thread_local char ctx_task[MP_LOG_ID_MAX + 1];

void mp_log_set_level(enum mp_log_level level) { min_level = level; }
void mp_log_set_format(enum mp_log_format f) { format = f; }
enum mp_log_format mp_log_get_format(void) { return format; }

bool mp_log_id_valid(const char *s) {
        size_t n = 0;

        if (!s)
                return false;
        for (; s[n]; n++) {
                char ch = s[n];
                if (n >= MP_LOG_ID_MAX ||
                    !((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                      ch == '.' || ch == '_' || ch == ':' || ch == '-'))
                        return false;
        }
        return n > 0;
}

static void set_id(char *dst, const char *id) {
        if (id && mp_log_id_valid(id))
                snprintf(dst, MP_LOG_ID_MAX + 1, "%s", id);
        else
                dst[0] = 0;
}

void mp_log_set_request_id(const char *id) { set_id(ctx_request, id); }
void mp_log_set_task_id(const char *id) { set_id(ctx_task, id); }
const char *mp_log_request_id(void) { return ctx_request[0] ? ctx_request : NULL; }

/* Append s to out[*n..size) as the inside of a JSON string. Messages hold whatever an
 * error carried (a user's exception text, a path): control characters are escaped, and
 * a message that is not UTF-8 has its high bytes escaped one by one, so every line
 * stays valid JSON. Truncated at a character boundary when out is full. */
static void json_escape(char *out, size_t size, size_t *n, const char *s) {
        bool utf8 = mp_utf8_valid(s, strlen(s));
        size_t i = *n;

        for (; *s && i + 7 < size; s++) {
                unsigned char ch = (unsigned char) *s;
                if (ch == '"' || ch == '\\') {
                        out[i++] = '\\';
                        out[i++] = (char) ch;
                } else if (ch == '\n') {
                        out[i++] = '\\';
                        out[i++] = 'n';
                } else if (ch == '\t') {
                        out[i++] = '\\';
                        out[i++] = 't';
                } else if (ch < 0x20 || ch == 0x7f || (ch >= 0x80 && !utf8)) {
                        i += (size_t) snprintf(out + i, size - i, "\\u%04x", ch);
                } else if (ch >= 0x80) {
                        /* A whole UTF-8 sequence, or nothing of it. */
                        size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
                        if (i + len + 7 >= size)
                                break;
                        memcpy(out + i, s, len);
                        i += len;
                        s += len - 1;
                } else
                        out[i++] = (char) ch;
        }
        out[i] = 0;
        *n = i;
}

void mp_log(enum mp_log_level level, const char *fmt, ...) {
        static const char *const names[] = { "debug", "info", "warn", "error" };
        char msg[2048], line[4096], stamp[40];
        struct timespec ts;
        struct tm tm;
        va_list ap;
        size_t n;

        if (level < min_level)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        snprintf(stamp, sizeof(stamp), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec / 1000000);
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (format == MP_LOG_TEXT) {
                /* One write per line so lines from threads and processes never interleave. */
                fprintf(stderr, "%s %s [%d] %s\n", stamp, names[level], (int) getpid(), msg);
                return;
        }
        n = (size_t) snprintf(line, sizeof(line), "{\"time\":\"%s\",\"level\":\"%s\",\"pid\":%d,\"msg\":\"",
                              stamp, names[level], (int) getpid());
        json_escape(line, sizeof(line) - 256, &n, msg);
        n += (size_t) snprintf(line + n, sizeof(line) - n, "\"");
        /* Ids are checked when set: nothing in them needs escaping. */
        if (ctx_request[0])
                n += (size_t) snprintf(line + n, sizeof(line) - n, ",\"request_id\":\"%s\"", ctx_request);
        if (ctx_task[0])
                n += (size_t) snprintf(line + n, sizeof(line) - n, ",\"task_id\":\"%s\"", ctx_task);
        fprintf(stderr, "%s}\n", line);
}
