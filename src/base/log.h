/* Logging to stderr, one line per event, safe from any thread.
 *
 * Two formats (--log-format): text, "TIME LEVEL [PID] message", and json, one object a
 * line: {"time","level","msg","pid"} and the calling thread's context, "request_id" and
 * "task_id", when set. The context is per thread: the API sets it for the request it
 * serves, a worker for the task it runs, the executor for the call it starts, so every
 * line about a task carries its id without each message repeating it. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "base/macro.h"

enum mp_log_level { MP_LOG_DEBUG, MP_LOG_INFO, MP_LOG_WARN, MP_LOG_ERROR };
enum mp_log_format { MP_LOG_TEXT, MP_LOG_JSON };

/* A request id: 1 to MP_LOG_ID_MAX bytes of [A-Za-z0-9._:-] (see mp_log_id_valid). */
#define MP_LOG_ID_MAX 64

void mp_log_set_level(enum mp_log_level level);
/* Set once at start-up, before any thread or child process starts (both inherit it). */
void mp_log_set_format(enum mp_log_format format);
enum mp_log_format mp_log_get_format(void);
void mp_log(enum mp_log_level level, const char *fmt, ...) _printf_(2, 3);

/* The calling thread's context: copied (a value that is not a valid id is dropped);
 * NULL clears it. */
void mp_log_set_request_id(const char *id);
void mp_log_set_task_id(const char *id);
/* The calling thread's request id, or NULL. Valid until the thread changes it. */
const char *mp_log_request_id(void);
/* Is s a request id we keep (header values are the client's: anything else is
 * replaced by one of ours)? */
bool mp_log_id_valid(const char *s);

#define mp_debug(...) mp_log(MP_LOG_DEBUG, __VA_ARGS__)
#define mp_info(...) mp_log(MP_LOG_INFO, __VA_ARGS__)
#define mp_warn(...) mp_log(MP_LOG_WARN, __VA_ARGS__)
#define mp_err(...) mp_log(MP_LOG_ERROR, __VA_ARGS__)
