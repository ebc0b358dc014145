#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "base/log.h"

static enum mp_log_level min_level = MP_LOG_INFO;

void mp_log_set_level(enum mp_log_level level) { min_level = level; }

void mp_log(enum mp_log_level level, const char *fmt, ...) {
        static const char *const names[] = { "debug", "info", "warn", "error" };
        char line[2048];
        struct timespec ts;
        struct tm tm;
        va_list ap;
        int n;

        if (level < min_level)
                return;
        clock_gettime(CLOCK_REALTIME, &ts);
        gmtime_r(&ts.tv_sec, &tm);
        n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%d] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level], (int) getpid());
        va_start(ap, fmt);
        vsnprintf(line + n, sizeof(line) - (size_t) n, fmt, ap);
        va_end(ap);
        /* One write per line so lines from threads and processes never interleave. */
        fprintf(stderr, "%s\n", line);
}
