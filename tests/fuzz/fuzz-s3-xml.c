/* Fuzz target: what the S3 backend (src/blobs/blobs-s3.c) reads from object storage: the
 * XML of ListObjectsV2 pages, error answers and multipart uploads (xml_next, error_code,
 * etag_valid), the response header lines (on_header), and the keys a listing names
 * (mp_blobs_key_valid). Those parsers are static: the file is compiled into this target,
 * so nothing is exposed for it.
 * Input: header lines, a blank line, then the body ("HTTP/1.1 200 OK\r\n...\r\n\r\n<xml>"). */
#include "../../src/blobs/blobs-s3.c"

#include "fuzz.h"

static void headers(const uint8_t *p, size_t n, const char *method) {
        struct s3_call c = { .method = method, .max_body = 1000 };
        size_t len;

        while (n) {
                const uint8_t *line = fuzz_split(&p, &n, '\n', &len);
                /* curl hands over one line, with its CRLF, not NUL-terminated: copy it to a
                 * buffer of its own size so a read past it is seen. */
                char *copy = malloc(len + 1);
                if (!copy)
                        abort();
                memcpy(copy, line, len);
                copy[len] = '\n';
                size_t r = on_header(copy, 1, len + 1, &c);
                fuzz_check(r == 0 || r == len + 1);
                fuzz_check(strlen(c.etag) <= S3_MAX_ETAG);
                fuzz_check(c.status_now >= 0 && c.status_now <= 999);
                free(copy);
                if (r == 0)
                        break;
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char *const tags[] = { "Key", "IsTruncated", "NextContinuationToken",
                                            "UploadId", "ETag", "Code", "Message" };
        const uint8_t *body = memmem(data, size, "\r\n\r\n", 4);
        size_t head_len = body ? (size_t) (body - data) : 0;
        char *xml;

        headers(data, head_len, "GET");
        headers(data, head_len, "HEAD");
        if (body) {
                body += 4;
                size -= head_len + 4;
        } else
                body = data;
        xml = fuzz_strndup(body, size);

        /* A listing: every Key, as list_keys walks them. */
        const char *p = xml;
        for (int k = 0; k < 10000; k++) {
                char *key = NULL;
                int r = xml_next(&p, "Key", &key);
                fuzz_check(r >= 0);
                if (r == 0)
                        break;
                fuzz_check(key && p >= xml && p <= xml + size);
                (void) mp_blobs_key_valid(key);
                free(key);
        }
        for (size_t t = 0; t < ELEMENTSOF(tags); t++) {
                char *v = NULL;
                p = xml;
                if (xml_next(&p, tags[t], &v) > 0) {
                        fuzz_check(v && strlen(v) <= size);
                        if (!strcmp(tags[t], "ETag"))
                                (void) etag_valid(v);
                        free(v);
                }
        }
        /* An error answer. */
        struct s3_call c = { .method = "GET" };
        char code[64], msg[256];
        mp_buf_append_trunc(&c.error_out, xml, size);
        error_code(&c, code, sizeof(code), msg, sizeof(msg));
        fuzz_check(strlen(code) < sizeof(code) && strlen(msg) < sizeof(msg));
        call_done(&c);

        /* The body as a key: the check every blob key passes. */
        if (mp_blobs_key_valid(xml)) {
                fuzz_check(xml[0] && xml[0] != '/' && !strstr(xml, "//") && !strstr(xml, "/../"));
                size_t n = strlen(xml);
                fuzz_check(strcmp(xml, "..") && strncmp(xml, "../", 3) && strcmp(xml, "."));
                fuzz_check(xml[n - 1] != '/' && (n < 3 || strcmp(xml + n - 3, "/..")));
        }
        free(xml);
        return 0;
}
