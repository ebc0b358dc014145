/* Fuzz target: the progress frames user code can write on the guest socket before its
 * reply (src/exec/exec-executor.c: mp_exec_take_frames cuts them out of the bytes as they
 * arrive, mp_exec_live_update checks the last one and makes the server's update frame,
 * deliver_update reads that back on the server's side). The input is fed in pieces of
 * sizes it chooses itself (its first byte), and is also the call's logs, so that the
 * UTF-8 cut of the live logs sees every kind of text.
 * Input: bytes as a guest writes them, e.g. "\x20\x00\x00\x80{\"fraction\":0.5,\"message\":\"m\"}". */
#include "../../src/exec/exec-executor.c"

#include "fuzz.h"

static void on_live(void *ctx, const struct mp_exec_live *live) {
        size_t *calls = ctx;
        (*calls)++;
        if (live->has_progress) {
                fuzz_check(live->fraction >= 0.0 && live->fraction <= 1.0);
                fuzz_check(live->message);
                size_t chars = 0;
                for (const char *p = live->message; *p; p++)
                        chars += ((unsigned char) *p & 0xC0) != 0x80;
                fuzz_check(chars <= MP_MAX_PROGRESS_MESSAGE);
        }
        fuzz_check(live->logs_len <= MP_LIVE_MAX_LOG_CHUNK);
        fuzz_check(live->logs_len == 0 || live->logs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct mp_buf rep = { 0 }, logs = { .cap = MP_MAX_LOG_BYTES };
        struct mp_live lv = { .on = true };
        struct mp_exec_request req = { .on_live = on_live };
        size_t calls = 0, piece = size ? (data[0] % 64) + 1 : 1, sent = 0;
        int f = 0;

        req.live_ctx = &calls;
        for (size_t off = 0; off < size && f == 0; off += piece) {
                size_t n = MP_MIN(piece, size - off);
                if (mp_buf_append(&rep, data + off, n) < 0)
                        abort();
                mp_buf_append_trunc(&logs, data + off, n);
                size_t before = rep.len;
                f = mp_exec_take_frames(&rep, &lv);
                fuzz_check(rep.len <= before);
                /* An update now and then, as the executor's loop would make them. */
                json_t *u = mp_exec_live_update(&lv, &logs, (int64_t) off * MP_LIVE_INTERVAL_MS, false);
                if (u) {
                        char *text = json_dumps(u, JSON_COMPACT);
                        fuzz_check(text && !strncmp(text, UPDATE_PREFIX, sizeof(UPDATE_PREFIX) - 1));
                        deliver_update(&req, text, strlen(text));
                        free(text);
                        json_decref(u);
                }
                fuzz_check(lv.logs_sent <= logs.len && lv.logs_sent >= sent);
                sent = lv.logs_sent;
        }
        fuzz_check(f >= -1 && f <= 1);
        /* Whatever was held goes before the reply. */
        json_t *u = mp_exec_live_update(&lv, &logs, 0, true);
        fuzz_check(!lv.dirty);
        json_decref(u);
        /* The pieces sent so far end at a character boundary: what the worker makes
         * of them is a prefix of what it makes of the whole logs. */
        size_t whole = 0, part = 0;
        char *all = mp_utf8_sanitize(logs.data ? logs.data : "", logs.len, &whole);
        char *pre = mp_utf8_sanitize(logs.data ? logs.data : "", lv.logs_sent, &part);
        fuzz_check(all && pre && part <= whole && !memcmp(all, pre, part));
        free(all);
        free(pre);
        mp_buf_free(&rep);
        mp_buf_free(&logs);
        return 0;
}
