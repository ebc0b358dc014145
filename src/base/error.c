#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "base/error.h"

int mp_error_set(struct mp_error *err, int errnum, int status, const char *code,
                 const char *fmt, ...) {
        if (err) {
                va_list ap;
                err->status = status;
                snprintf(err->code, sizeof(err->code), "%s", code);
                va_start(ap, fmt);
                vsnprintf(err->message, sizeof(err->message), fmt, ap);
                va_end(ap);
        }
        return -(errnum > 0 ? errnum : EIO);
}

void mp_error_add_field(struct mp_error *err, const char *path, const char *fmt, ...) {
        char msg[512];
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (!err->errors)
                err->errors = json_array();
        /* Keep the list bounded: a hostile body can have a million bad fields. */
        if (json_array_size(err->errors) < 100)
                json_array_append_new(err->errors, json_pack("{s:s,s:s}", "path", path, "message", msg));
}

void mp_error_prefix(struct mp_error *err, const char *fmt, ...) {
        char pre[256], old[sizeof(err->message)];
        va_list ap;

        if (!err)
                return;
        va_start(ap, fmt);
        vsnprintf(pre, sizeof(pre), fmt, ap);
        va_end(ap);
        memcpy(old, err->message, sizeof(old));
        snprintf(err->message, sizeof(err->message), "%s: %s", pre, old);
}

void mp_error_clear(struct mp_error *err) {
        if (!err)
                return;
        if (err->errors)
                json_decref(err->errors);
        memset(err, 0, sizeof(*err));
}
