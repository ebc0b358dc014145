/* The regression driver of a fuzz target, for builds without libFuzzer (gcc, the normal
 * and the sanitizer builds): runs LLVMFuzzerTestOneInput over every file of the target's
 * corpus, then over deterministic mutations of them (bit flips, byte inserts and
 * deletes, splices of two inputs), and ends with "N passed, N failed" like the unit
 * tests: one case per corpus file, and one for the round of mutations. A crash, an abort or a sanitizer report is a failure: the driver prints the
 * input that caused it (file, mutation number, hex) and exits non-zero.
 *
 *   fuzz-NAME [CORPUS_DIR]
 *   MECAPY_FUZZ_RUNS     mutations to run (default 2000)
 *   MECAPY_FUZZ_SECONDS  stop the mutations after this many seconds (default 5)
 *   MECAPY_FUZZ_SEED     the mutator's seed (default fixed, so runs repeat) */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/util.h"

#ifndef FUZZ_CORPUS_DIR
#error "FUZZ_CORPUS_DIR must name the target's corpus folder"
#endif
#ifndef FUZZ_NAME
#define FUZZ_NAME "fuzz"
#endif

#define FUZZ_MAX_INPUT (64u * 1024)
#define MAX_SEEDS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Sanitizers call this before they exit, so a report still ends with the summary. */
void __sanitizer_set_death_callback(void (*cb)(void)) __attribute__((weak));

struct seed {
        char *name;
        uint8_t *data;
        size_t len;
};

static struct seed seeds[MAX_SEEDS];
static size_t n_seeds;
static unsigned long passed;
static const char *cur_name = "";
static long cur_mutation = -1;
static const uint8_t *cur_data;
static size_t cur_len;

static void report_crash(void) {
        static volatile sig_atomic_t once;
        if (once)
                return;
        once = 1;
        fprintf(stderr, "FAIL %s: crashed on %s", FUZZ_NAME, cur_name);
        if (cur_mutation >= 0)
                fprintf(stderr, " (mutation %ld)", cur_mutation);
        fprintf(stderr, ", %zu bytes:\n", cur_len);
        for (size_t i = 0; cur_data && i < cur_len && i < 4096; i++)
                fprintf(stderr, "%02x%s", cur_data[i], i % 32 == 31 ? "\n" : "");
        fprintf(stderr, "\n");
        printf("%lu passed, 1 failed\n", passed);
        fflush(stdout);
        fflush(stderr);
}

static void on_signal(int sig) {
        report_crash();
        signal(sig, SIG_DFL);
        raise(sig);
}

static uint64_t rng;
static uint64_t next_rand(void) { /* xorshift64 */
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
}

static long env_long(const char *name, long def, long max) {
        const char *s = getenv(name);
        long v;
        if (!s || mp_parse_long(s, 0, max, &v) < 0)
                return def;
        return v;
}

static int load_corpus(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *e;

        if (!d)
                return -errno;
        while ((e = readdir(d)) && n_seeds < MAX_SEEDS) {
                char path[4096];
                char *buf = NULL;
                size_t len = 0;
                if (e->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
                if (mp_read_file(path, FUZZ_MAX_INPUT, &buf, &len) < 0)
                        continue; /* a folder or an oversized file */
                seeds[n_seeds++] = (struct seed) { strdup(e->d_name), (uint8_t *) buf, len };
        }
        closedir(d);
        return 0;
}

static int by_name(const void *a, const void *b) {
        return strcmp(((const struct seed *) a)->name, ((const struct seed *) b)->name);
}

/* One mutation of a seed into out (capacity FUZZ_MAX_INPUT); the length of the result. */
static size_t mutate(const struct seed *s, uint8_t *out) {
        size_t len = s->len;
        unsigned steps = 1 + (unsigned) (next_rand() % 4);

        memcpy(out, s->data, len);
        for (unsigned k = 0; k < steps; k++) {
                size_t pos = len ? (size_t) (next_rand() % len) : 0;
                switch (next_rand() % 6) {
                case 0: /* flip a bit */
                        if (len)
                                out[pos] ^= (uint8_t) (1u << (next_rand() % 8));
                        break;
                case 1: /* an interesting byte */ {
                        static const uint8_t bytes[] = { 0, 0xff, 0x7f, 0x80, '"', '\\', '{', '}',
                                                         '[', ']', ':', ',', '.', '<', '>', '&',
                                                         '#', ';', '=', '\n', '%', '/', 0xc3, 0xed };
                        if (len)
                                out[pos] = bytes[next_rand() % sizeof(bytes)];
                        break;
                }
                case 2: /* insert a byte */
                        if (len < FUZZ_MAX_INPUT) {
                                memmove(out + pos + 1, out + pos, len - pos);
                                out[pos] = (uint8_t) next_rand();
                                len++;
                        }
                        break;
                case 3: /* delete a run of bytes */
                        if (len) {
                                size_t n = 1 + (size_t) (next_rand() % (len - pos < 8 ? len - pos : 8));
                                memmove(out + pos, out + pos + n, len - pos - n);
                                len -= n;
                        }
                        break;
                case 4: /* splice: the tail of another seed after our head */ {
                        const struct seed *o = &seeds[next_rand() % n_seeds];
                        size_t from = o->len ? (size_t) (next_rand() % o->len) : 0;
                        size_t n = o->len - from;
                        if (pos + n > FUZZ_MAX_INPUT)
                                n = FUZZ_MAX_INPUT - pos;
                        memcpy(out + pos, o->data + from, n);
                        len = pos + n;
                        break;
                }
                default: /* duplicate a run of bytes (grows nesting, repeats keys) */
                        if (len) {
                                size_t n = 1 + (size_t) (next_rand() % (len - pos < 16 ? len - pos : 16));
                                if (len + n <= FUZZ_MAX_INPUT) {
                                        memmove(out + pos + n, out + pos, len - pos);
                                        len += n;
                                }
                        }
                        break;
                }
        }
        return len;
}

static void run_one(const uint8_t *data, size_t len) {
        /* An exact-size copy, so the sanitizer sees a read past the end. */
        uint8_t *copy = malloc(len ? len : 1);
        if (!copy)
                abort();
        memcpy(copy, data, len);
        cur_data = copy;
        cur_len = len;
        LLVMFuzzerTestOneInput(copy, len);
        cur_data = NULL;
        free(copy);
}

int main(int argc, char **argv) {
        const char *dir = argc > 1 ? argv[1] : FUZZ_CORPUS_DIR;
        long runs = env_long("MECAPY_FUZZ_RUNS", 2000, 100000000L);
        long seconds = env_long("MECAPY_FUZZ_SECONDS", 5, 86400);
        struct timespec t0, t;
        uint8_t *buf;
        long m;

        setvbuf(stdout, NULL, _IOLBF, 0);
        if (__sanitizer_set_death_callback)
                __sanitizer_set_death_callback(report_crash);
        signal(SIGSEGV, on_signal);
        signal(SIGBUS, on_signal);
        signal(SIGABRT, on_signal);
        signal(SIGFPE, on_signal);
        signal(SIGILL, on_signal);

        if (load_corpus(dir) < 0 || n_seeds == 0) {
                fprintf(stderr, "FAIL %s: no corpus in %s\n", FUZZ_NAME, dir);
                printf("0 passed, 1 failed\n");
                return 1;
        }
        qsort(seeds, n_seeds, sizeof(seeds[0]), by_name);
        for (size_t i = 0; i < n_seeds; i++) {
                cur_name = seeds[i].name;
                run_one(seeds[i].data, seeds[i].len);
                passed++; /* one case per corpus file */
        }
        printf("ok   %s: %zu corpus inputs\n", FUZZ_NAME, n_seeds);

        buf = malloc(FUZZ_MAX_INPUT);
        if (!buf)
                abort();
        rng = (uint64_t) env_long("MECAPY_FUZZ_SEED", 0x9e3779b9L, LONG_MAX) | 1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (m = 0; m < runs; m++) {
                const struct seed *s = &seeds[next_rand() % n_seeds];
                size_t len = mutate(s, buf);
                if (m % 64 == 0) {
                        clock_gettime(CLOCK_MONOTONIC, &t);
                        if (t.tv_sec - t0.tv_sec >= seconds)
                                break;
                }
                cur_name = s->name;
                cur_mutation = m;
                run_one(buf, len);
        }
        cur_mutation = -1;
        passed++; /* and one for the whole round of mutations */
        printf("ok   %s: %ld mutations (seed %ld)\n", FUZZ_NAME, m,
               env_long("MECAPY_FUZZ_SEED", 0x9e3779b9L, LONG_MAX));
        free(buf);
        for (size_t i = 0; i < n_seeds; i++) {
                free(seeds[i].name);
                free(seeds[i].data);
        }
        printf("%lu passed, 0 failed\n", passed);
        return 0;
}
