/* Token buckets in a fixed table: a hash index over an array of entries, with an LRU
 * list through the same entries (see api-ratelimit.h). */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "api/api-ratelimit.h"

#define NONE UINT32_MAX

struct entry {
        uint64_t key;
        double tokens;
        int64_t last_ms;     /* when tokens was last brought up to date */
        uint32_t next_hash;  /* chain of the hash slot */
        uint32_t prev, next; /* LRU list: head is the most recently seen */
        bool refused;        /* refused since last allowed */
};

struct mp_ratelimit {
        pthread_mutex_t lock;
        double burst, per_ms;
        unsigned char sipkey[crypto_shorthash_KEYBYTES];
        struct entry *e;
        uint32_t *slots;
        size_t n_slots, max, used;
        uint32_t head, tail;
};

int mp_ratelimit_new(double burst, double per_min, size_t max_keys, struct mp_ratelimit **ret) {
        struct mp_ratelimit *rl;
        size_t n = 1;

        if (burst < 1 || per_min <= 0 || max_keys < 1 || max_keys >= NONE)
                return -EINVAL;
        if (sodium_init() < 0)
                return -EIO;
        rl = calloc(1, sizeof(*rl));
        if (!rl)
                return -ENOMEM;
        while (n < max_keys * 2)
                n <<= 1;
        rl->e = calloc(max_keys, sizeof(*rl->e));
        rl->slots = malloc(n * sizeof(*rl->slots));
        if (!rl->e || !rl->slots) {
                free(rl->e);
                free(rl->slots);
                free(rl);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++)
                rl->slots[i] = NONE;
        rl->n_slots = n;
        rl->max = max_keys;
        rl->burst = burst;
        rl->per_ms = per_min / 60000.0;
        rl->head = rl->tail = NONE;
        randombytes_buf(rl->sipkey, sizeof(rl->sipkey));
        pthread_mutex_init(&rl->lock, NULL);
        *ret = rl;
        return 0;
}

struct mp_ratelimit *mp_ratelimit_free(struct mp_ratelimit *rl) {
        if (!rl)
                return NULL;
        pthread_mutex_destroy(&rl->lock);
        free(rl->e);
        free(rl->slots);
        free(rl);
        return NULL;
}

static void lru_unlink(struct mp_ratelimit *rl, uint32_t i) {
        struct entry *x = &rl->e[i];
        if (x->prev != NONE)
                rl->e[x->prev].next = x->next;
        else
                rl->head = x->next;
        if (x->next != NONE)
                rl->e[x->next].prev = x->prev;
        else
                rl->tail = x->prev;
        x->prev = x->next = NONE;
}

static void lru_push_front(struct mp_ratelimit *rl, uint32_t i) {
        struct entry *x = &rl->e[i];
        x->prev = NONE;
        x->next = rl->head;
        if (rl->head != NONE)
                rl->e[rl->head].prev = i;
        rl->head = i;
        if (rl->tail == NONE)
                rl->tail = i;
}

static void hash_unlink(struct mp_ratelimit *rl, uint32_t i) {
        uint32_t *p = &rl->slots[rl->e[i].key & (rl->n_slots - 1)];
        while (*p != NONE && *p != i)
                p = &rl->e[*p].next_hash;
        if (*p == i)
                *p = rl->e[i].next_hash;
}

/* The entry of key, made (full bucket) when new, evicting the least recently seen
 * key when the table is full; moved to the front of the LRU list. */
static struct entry *find(struct mp_ratelimit *rl, const char *key, int64_t now_ms) {
        uint64_t h;
        uint32_t i, *slot;

        crypto_shorthash((unsigned char *) &h, (const unsigned char *) key, strlen(key), rl->sipkey);
        slot = &rl->slots[h & (rl->n_slots - 1)];
        for (i = *slot; i != NONE; i = rl->e[i].next_hash)
                if (rl->e[i].key == h) {
                        lru_unlink(rl, i);
                        lru_push_front(rl, i);
                        return &rl->e[i];
                }
        if (rl->used < rl->max)
                i = (uint32_t) rl->used++;
        else {
                /* Full: the least recently seen key goes. Its bucket is forgotten, which
                 * only ever lets that key through sooner. */
                i = rl->tail;
                lru_unlink(rl, i);
                hash_unlink(rl, i);
        }
        rl->e[i] = (struct entry) { .key = h, .tokens = rl->burst, .last_ms = now_ms,
                                    .next_hash = *slot, .prev = NONE, .next = NONE };
        *slot = i;
        lru_push_front(rl, i);
        return &rl->e[i];
}

static void refill(struct mp_ratelimit *rl, struct entry *x, int64_t now_ms) {
        if (now_ms > x->last_ms) {
                x->tokens += (double) (now_ms - x->last_ms) * rl->per_ms;
                if (x->tokens > rl->burst)
                        x->tokens = rl->burst;
                x->last_ms = now_ms;
        }
}

/* Whole seconds until the bucket holds one token: rounded up, at least 1, so waiting
 * that long is always enough. */
static int wait_s(struct mp_ratelimit *rl, struct entry *x) {
        double s = (1.0 - x->tokens) / rl->per_ms / 1000.0;
        int n = s > 86400.0 ? 86400 : (int) s;
        if ((double) n < s)
                n++;
        return n < 1 ? 1 : n;
}

int mp_ratelimit_take(struct mp_ratelimit *rl, const char *key, int64_t now_ms, bool *ret_first) {
        struct entry *x;
        int r = 0;
        bool first = false;

        pthread_mutex_lock(&rl->lock);
        x = find(rl, key, now_ms);
        refill(rl, x, now_ms);
        if (x->tokens >= 1.0) {
                x->tokens -= 1.0;
                x->refused = false;
        } else {
                r = wait_s(rl, x);
                first = !x->refused;
                x->refused = true;
        }
        pthread_mutex_unlock(&rl->lock);
        if (ret_first)
                *ret_first = first;
        return r;
}

int mp_ratelimit_peek(struct mp_ratelimit *rl, const char *key, int64_t now_ms) {
        struct entry *x;
        int r = 0;

        pthread_mutex_lock(&rl->lock);
        x = find(rl, key, now_ms);
        refill(rl, x, now_ms);
        if (x->tokens < 1.0)
                r = wait_s(rl, x);
        pthread_mutex_unlock(&rl->lock);
        return r;
}

size_t mp_ratelimit_count(struct mp_ratelimit *rl) {
        size_t n;
        pthread_mutex_lock(&rl->lock);
        n = rl->used;
        pthread_mutex_unlock(&rl->lock);
        return n;
}
