/* A task's answer. core keeps a stored result as the JSON text it was stored as
 * ("result_json"); here that text goes into the response as it is. Parsing it again on
 * every read is what let a 12 MB result such as [[]]*4000000 cost the server hundreds
 * of MiB per request (each empty list is a tree node): the bytes cost their size, once. */
#include <string.h>

#include "base/json.h"
#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-tasks.h"
#include "base/macro.h"

char *mp_api_task_text(json_t *task, size_t *ret_len) {
        static const char key[] = "\"result\":";
        _cleanup_json_ json_t *result_json = NULL;
        _cleanup_free_ char *head = NULL;
        const char *result = "null";
        size_t head_len, result_len = 4, len;
        char *body;

        result_json = json_incref(json_object_get(task, "result_json"));
        json_object_del(task, "result_json");
        if (json_is_string(result_json)) {
                result = json_string_value(result_json);
                result_len = json_string_length(result_json);
        }
        head = mp_json_dumps(task, JSON_COMPACT);
        if (!head)
                return NULL;
        head_len = strlen(head);
        /* head is "{...}": drop its "}", then [","] "result": <bytes> "}". */
        if (head_len < 2 || head[head_len - 1] != '}')
                return NULL;
        head_len--;
        len = head_len + (head_len > 1 ? 1 : 0) + sizeof(key) - 1 + result_len + 1;
        body = malloc(len + 1);
        if (!body)
                return NULL;
        char *p = mempcpy(body, head, head_len);
        if (head_len > 1)
                *p++ = ',';
        p = mempcpy(p, key, sizeof(key) - 1);
        p = mempcpy(p, result, result_len);
        *p++ = '}';
        *p = 0;
        *ret_len = len;
        return body;
}

enum MHD_Result mp_api_send_task(struct MHD_Connection *conn, unsigned status, json_t *task) {
        struct MHD_Response *resp;
        enum MHD_Result r;
        size_t len;
        char *body;

        if (!task || !json_is_object(task))
                return mp_api_send_json(conn, status, task);
        body = mp_api_task_text(task, &len);
        if (!body)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type", "application/json");
        mp_api_add_headers(conn, resp, NULL);
        r = MHD_queue_response(conn, status, resp);
        MHD_destroy_response(resp);
        return r;
}

void mp_api_task_omit_result(json_t *task) {
        json_t *rj = json_object_get(task, "result_json");
        size_t n = json_is_string(rj) ? json_string_length(rj) : 0;
        json_object_del(task, "result_json");
        json_object_set_new(task, "result_size", json_integer((json_int_t) n));
        json_object_set_new(task, "result_omitted", json_true());
}
