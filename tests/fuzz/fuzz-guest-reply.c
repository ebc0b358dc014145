/* Fuzz target: the guest's reply, the one frame that user code writes for the host to
 * read (src/exec/exec-executor.c). The executor turns it into its reply to the server
 * (mp_exec_reply: status, error, result size, artifacts list checked by
 * check_artifacts), which the server parses into a struct mp_exec_result (parse_reply:
 * logs and artifacts decoded from base64). Both steps run here on every input; the
 * parsers are static, so the file is compiled into this target and nothing is exposed.
 * Input: the guest's JSON, e.g. {"status":"ok","result":1,"artifacts":[{"name":"a.txt",
 * "data":"aGk="}]}. */
#include "../../src/exec/exec-executor.c"

#include "fuzz.h"

static void check_result(const struct mp_exec_result *r) {
        fuzz_check(r->logs);
        fuzz_check(r->logs_len <= MP_MAX_LOG_BYTES && r->logs[r->logs_len] == 0);
        fuzz_check(r->n_artifacts == 0 || r->artifacts);
        for (size_t i = 0; i < r->n_artifacts; i++) {
                fuzz_check(r->artifacts[i].name && r->artifacts[i].data);
                fuzz_check(r->artifacts[i].size <= MP_MAX_ARTIFACT_BYTES);
                fuzz_check(r->artifacts[i].data[r->artifacts[i].size] == 0);
        }
}

/* An artifact name is a path below outputs/: at most MP_MAX_ARTIFACT_NAME_LEN bytes, no
 * empty, "." or ".." part, so never absolute and never above it. */
static void check_name(const char *name) {
        fuzz_check(name && *name && strlen(name) <= MP_MAX_ARTIFACT_NAME_LEN);
        for (const char *part = name; part;) {
                const char *slash = strchr(part, '/');
                size_t n = slash ? (size_t) (slash - part) : strlen(part);
                fuzz_check(n > 0 && !(n == 1 && part[0] == '.') && !(n == 2 && part[0] == '.' && part[1] == '.'));
                part = slash ? slash + 1 : NULL;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mp_buf rep = { 0 }, logs = { 0 };
        uint32_t len = htole32((uint32_t) size);
        struct mp_outcome o = { .rep = &rep, .rep_complete = true, .exited = true,
                                .timeout_s = 10, .memory_mb = 256 };
        struct mp_exec_result res = { 0 };
        struct mp_error err = { 0 };
        json_t *reply;
        char *text;
        int r;

        /* The frame as the executor holds it: the length word, then the guest's bytes. */
        if (mp_buf_append(&rep, &len, 4) < 0 || mp_buf_append(&rep, data, size) < 0)
                abort();
        if (mp_buf_append(&logs, "log line\n\xff", 10) < 0)
                abort();
        reply = mp_exec_reply(&o, &logs, 12, 3, 2048);
        fuzz_check(reply);
        const char *status = json_string_value(json_object_get(reply, "status"));
        fuzz_check(status && (!strcmp(status, "ok") || !strcmp(status, "error") ||
                              !strcmp(status, "limit") || !strcmp(status, "crash")));
        json_t *arts = json_object_get(reply, "artifacts");
        fuzz_check(json_is_array(arts) && json_array_size(arts) <= MP_MAX_ARTIFACTS);
        size_t i;
        json_t *a;
        json_array_foreach(arts, i, a) {
                const char *name = json_string_value(json_object_get(a, "name"));
                check_name(name);
        }
        if (!strcmp(status, "ok"))
                fuzz_check(json_object_get(reply, "result") && !json_object_get(reply, "error"));
        else
                fuzz_check(json_is_string(json_object_get(json_object_get(reply, "error"), "type")));

        /* The server's side of the same reply. */
        text = json_dumps(reply, JSON_COMPACT);
        fuzz_check(text);
        r = parse_reply(text, strlen(text), &res, &err);
        fuzz_check(r == 0);
        check_result(&res);
        fuzz_check(res.logs_len == logs.len && !memcmp(res.logs, logs.data, logs.len));
        fuzz_check(res.n_artifacts <= json_array_size(arts)); /* undecodable data is dropped */
        for (size_t k = 0; k < res.n_artifacts; k++)
                check_name(res.artifacts[k].name);
        mp_exec_result_clear(&res);
        free(text);
        json_decref(reply);

        /* parse_reply on the raw bytes too (what a broken executor would send). */
        memset(&res, 0, sizeof(res));
        if (parse_reply((const char *) data, size, &res, &err) == 0) {
                check_result(&res);
                mp_exec_result_clear(&res);
        }
        mp_error_clear(&err);
        mp_buf_free(&rep);
        mp_buf_free(&logs);
        return 0;
}
