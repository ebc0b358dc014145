/* api/: token buckets keyed by a string (a client address, an email, a user id), in a
 * table of fixed size. Pure: no HTTP, no clock of its own (the caller passes the time),
 * so it is tested alone (tests/unit/test-api.c).
 *
 * Each key has a bucket that holds at most `burst` tokens and refills at `per_min`
 * tokens a minute; a request takes one. The table holds at most `max_keys` keys: a new
 * key past that evicts the least recently seen one, so a flood of distinct keys (many
 * addresses) costs a fixed amount of memory. Keys are kept as a keyed 64-bit hash
 * (SipHash with a random key per table): an attacker cannot choose keys that collide
 * with a victim's. Thread-safe. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct mp_ratelimit;

/* A table; burst >= 1, per_min > 0, max_keys >= 1. 0 or -ENOMEM / -EINVAL. */
int mp_ratelimit_new(double burst, double per_min, size_t max_keys, struct mp_ratelimit **ret);
/* NULL is fine; returns NULL. */
struct mp_ratelimit *mp_ratelimit_free(struct mp_ratelimit *rl);

/* Take one token of key's bucket at now_ms (a monotonic clock). Returns 0 when the
 * request may go on, else the whole seconds (>= 1) after which a token will be there.
 * *ret_first (may be NULL) is true on the first refusal since the key was last
 * allowed, so a caller can record one event per episode instead of one per request. */
int mp_ratelimit_take(struct mp_ratelimit *rl, const char *key, int64_t now_ms, bool *ret_first);
/* The same without taking: 0 when a token is there, else the seconds to wait. */
int mp_ratelimit_peek(struct mp_ratelimit *rl, const char *key, int64_t now_ms);
/* How many keys the table holds now. */
size_t mp_ratelimit_count(struct mp_ratelimit *rl);
