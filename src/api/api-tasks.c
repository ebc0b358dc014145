/* A task's answer. core keeps a stored result as the JSON text it was stored as
 * ("result_json"); here that text goes into the response as it is. Parsing it again on
 * every read is what let a 12 MB result such as [[]]*4000000 cost the server hundreds
 * of MiB per request (each empty list is a tree node): the bytes cost their size, once. */
#include <string.h>

#include "api/api-guard.h"
#include "api/api-internal.h"
#include "api/api-tasks.h"
#include "base/macro.h"

enum MHD_Result mp_api_send_task(struct MHD_Connection *conn, unsigned status, json_t *task) {
        static const char key[] = "\"result\":";
        _cleanup_json_ json_t *result_json = NULL;
        _cleanup_free_ char *head = NULL;
        struct MHD_Response *resp;
        const char *result = "null";
        size_t head_len, result_len = 4, len;
        enum MHD_Result r;
        char *body;

        if (!task || !json_is_object(task))
                return mp_api_send_json(conn, status, task);
        result_json = json_incref(json_object_get(task, "result_json"));
        json_object_del(task, "result_json");
        if (json_is_string(result_json)) {
                result = json_string_value(result_json);
                result_len = json_string_length(result_json);
        }
        head = json_dumps(task, JSON_COMPACT);
        if (!head)
                return MHD_NO;
        head_len = strlen(head);
        /* head is "{...}": drop its "}", then [","] "result": <bytes> "}". */
        if (head_len < 2 || head[head_len - 1] != '}')
                return MHD_NO;
        head_len--;
        len = head_len + (head_len > 1 ? 1 : 0) + sizeof(key) - 1 + result_len + 1;
        body = malloc(len);
        if (!body)
                return MHD_NO;
        char *p = mempcpy(body, head, head_len);
        if (head_len > 1)
                *p++ = ',';
        p = mempcpy(p, key, sizeof(key) - 1);
        p = mempcpy(p, result, result_len);
        *p = '}';
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
