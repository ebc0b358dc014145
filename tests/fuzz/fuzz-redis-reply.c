/* Fuzz target: replies from Redis as the queue backend (src/queue/queue-redis.c) reads
 * them: the RESP stream through hiredis's reader, then the checks applied to what comes
 * back (reply_is_id for claimed task ids, field/int_field for worker records). These
 * are static: the file is compiled into this target, so nothing is exposed for it.
 * Input: raw RESP bytes ("*2\r\n$2\r\nid\r\n$3\r\nabc\r\n"). */
#include "../../src/queue/queue-redis.c"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        redisReader *rd = redisReaderCreate();
        void *reply = NULL;

        if (!rd)
                return 0;
        /* hiredis 0.14 (Debian 12) allocates an aggregate's element array from its header
         * before the elements arrive: "*2000000000\r\n" asks calloc for 16 GB. That is
         * the library's (and Redis is our own backend), so such headers are left out here
         * to keep the fuzzer on the rest. */
        for (size_t i = 0; i + 1 < size; i++)
                if (data[i] == '*' && data[i + 1] >= '0' && data[i + 1] <= '9') {
                        long n = 0;
                        for (size_t k = i + 1; k < size && k < i + 12 && data[k] >= '0' && data[k] <= '9'; k++)
                                n = n * 10 + (data[k] - '0');
                        if (n > 100000) {
                                redisReaderFree(rd);
                                return 0;
                        }
                }
        if (redisReaderFeed(rd, (const char *) data, size) != REDIS_OK)
                goto out;
        for (int k = 0; k < 16 && redisReaderGetReply(rd, &reply) == REDIS_OK && reply; k++) {
                redisReply *r = reply;
                if (reply_is_id(r))
                        fuzz_check(mp_id_valid(r->str));
                if (r->type == REDIS_REPLY_ARRAY) {
                        const char *v = field(r, "id");
                        fuzz_check(!v || strlen(v) < FIELD_MAX);
                        json_t *j = int_field(r, "heartbeat");
                        fuzz_check(j);
                        json_decref(j);
                        for (size_t i = 0; i < r->elements; i++)
                                (void) reply_is_id(r->element[i]);
                }
                freeReplyObject(reply);
                reply = NULL;
        }
out:
        redisReaderFree(rd);
        return 0;
}
