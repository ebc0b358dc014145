/* Fuzz target: the CLI's reader of server-sent events (mp_cli_sse in src/cli/cli-http.c),
 * fed by whatever server `mecapy` is pointed at. Input: the stream's bytes; its first byte
 * picks where the stream is cut in two pieces, as the network may deliver it. The
 * events are the same whether it comes whole or in pieces; each is named (at most 31
 * bytes) and its data NUL-terminated at its length. */
#include "cli/cli-internal.h"
#include "fuzz.h"

#define MAX_EVENT 4096

struct seen {
        uint64_t hash; /* of the names and data, in order */
        size_t n;
        bool stop_at_end; /* stop after an `end` event, as the CLI does */
};

static void mix(struct seen *s, const void *p, size_t n) {
        const unsigned char *b = p;
        for (size_t i = 0; i < n; i++)
                s->hash = (s->hash ^ b[i]) * 1099511628211ull;
        s->hash = (s->hash ^ 0xff) * 1099511628211ull;
}

static bool on_event(const char *name, const char *data, size_t len, void *ctx) {
        struct seen *s = ctx;

        fuzz_check(name && *name && strlen(name) < 32);
        fuzz_check(data && data[len] == 0 && len <= MAX_EVENT);
        mix(s, name, strlen(name));
        mix(s, data, len);
        s->n++;
        return !(s->stop_at_end && !strcmp(name, "end"));
}

static struct seen read_stream(const uint8_t *p, size_t n, size_t cut) {
        struct seen s = { .hash = 14695981039346656037ull, .stop_at_end = true };
        struct mp_cli_sse sse;

        mp_cli_sse_init(&sse, MAX_EVENT, on_event, &s);
        if (mp_cli_sse_feed((const char *) p, cut, &sse))
                (void) mp_cli_sse_feed((const char *) p + cut, n - cut, &sse);
        mp_cli_sse_free(&sse);
        return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        if (size == 0)
                return 0;
        size_t n = size - 1, cut = n ? data[0] % (n + 1) : 0;
        struct seen whole = read_stream(data + 1, n, n), pieces = read_stream(data + 1, n, cut);

        fuzz_check(whole.n == pieces.n && whole.hash == pieces.hash);
        return 0;
}
