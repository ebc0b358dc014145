/* Logging to stderr, one line per event, safe from any thread. */
#pragma once

#include "base/macro.h"

enum mp_log_level { MP_LOG_DEBUG, MP_LOG_INFO, MP_LOG_WARN, MP_LOG_ERROR };

void mp_log_set_level(enum mp_log_level level);
void mp_log(enum mp_log_level level, const char *fmt, ...) _printf_(2, 3);

#define mp_debug(...) mp_log(MP_LOG_DEBUG, __VA_ARGS__)
#define mp_info(...) mp_log(MP_LOG_INFO, __VA_ARGS__)
#define mp_warn(...) mp_log(MP_LOG_WARN, __VA_ARGS__)
#define mp_err(...) mp_log(MP_LOG_ERROR, __VA_ARGS__)
