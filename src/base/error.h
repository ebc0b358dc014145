/* Errors a person will read: an HTTP-ish status, a stable machine code, a sentence,
 * and optionally the list of offending fields (for validation). */
#pragma once

#include <jansson.h>
#include "base/macro.h"

struct mp_error {
        int status;          /* HTTP status the API answers with, 0 = none set */
        char code[48];       /* stable slug: "validation", "not_found", "sandbox", ... */
        char message[1024];  /* a sentence that names what is at fault */
        json_t *errors;      /* owned: array of {"path": "...", "message": "..."} or NULL */
};

/* Fill err (which may be NULL) and return -errnum (errnum > 0), so callers can write
 * `return mp_error_set(err, EINVAL, 422, "validation", "...")`. */
int mp_error_set(struct mp_error *err, int errnum, int status, const char *code,
                 const char *fmt, ...) _printf_(5, 6);
/* Append a field error ({"path", "message"}) without touching the message. */
void mp_error_add_field(struct mp_error *err, const char *path, const char *fmt, ...) _printf_(3, 4);
/* Prefix the message with context as it travels up ("storing result: ..."). */
void mp_error_prefix(struct mp_error *err, const char *fmt, ...) _printf_(2, 3);
void mp_error_clear(struct mp_error *err);
static inline void mp_error_clearp(struct mp_error *err) { mp_error_clear(err); }
#define _cleanup_error_ _cleanup_(mp_error_clearp)
