/* Small building blocks used everywhere: cleanup attributes and ownership moves
 * (after systemd's _cleanup_ / TAKE_PTR idiom). */
#pragma once

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <jansson.h>

#define _cleanup_(f) __attribute__((cleanup(f)))
#define _unused_ __attribute__((unused))
#define _printf_(a, b) __attribute__((format(printf, a, b)))
#define _noreturn_ __attribute__((noreturn))

#define ELEMENTSOF(x) (sizeof(x) / sizeof((x)[0]))
#define MP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MP_MAX(a, b) ((a) > (b) ? (a) : (b))

static inline void mp_freep(void *p) { free(*(void **)p); }
static inline void mp_closep(int *fd) { if (*fd >= 0) { int e = errno; close(*fd); errno = e; } }
static inline void mp_json_decrefp(json_t **j) { if (*j) json_decref(*j); }

#define _cleanup_free_ _cleanup_(mp_freep)
#define _cleanup_close_ _cleanup_(mp_closep)
#define _cleanup_json_ _cleanup_(mp_json_decrefp)

/* Move ownership out of a variable the cleanup attribute would otherwise free. */
#define TAKE_PTR(p) ({ __typeof__(p) _p = (p); (p) = NULL; _p; })
#define TAKE_FD(fd) ({ int _fd = (fd); (fd) = -1; _fd; })

static inline int mp_negerrno(void) { return errno > 0 ? -errno : -EIO; }
