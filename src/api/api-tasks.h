/* Sending a task: its stored result spliced in as bytes (api-tasks.c). */
#pragma once

#include <microhttpd.h>
#include <jansson.h>

/* Answer with a task as core renders it (mp_core_task_get, mp_core_execute,
 * mp_core_task_cancel): the object's keys, and "result" with the bytes of its
 * "result_json" string (the stored JSON text; null when none) written as they are,
 * without building a tree of them. task is borrowed (its "result_json" key is removed);
 * NULL answers an empty body. Returns an MHD result. */
enum MHD_Result mp_api_send_task(struct MHD_Connection *conn, unsigned status, json_t *task);
/* The same text, malloc'ed and NUL-terminated (*ret_len bytes without the NUL); task is
 * borrowed and loses its "result_json" key. NULL when out of memory. */
char *mp_api_task_text(json_t *task, size_t *ret_len);
/* Leave the result out of task (borrowed): "result" is then null, "result_size" the
 * bytes of its JSON text (0: none) and "result_omitted" true. For ?result=omit, and
 * the end event of a large result. */
void mp_api_task_omit_result(json_t *task);
