#include <stdio.h>
#include <string.h>

#include "base/config.h"
#include "queue/queue-internal.h"

static const struct mp_queue_ops *const backends[] = { &mp_queue_local_ops, &mp_queue_redis_ops };

int mp_queue_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                  struct mp_error *err) {
        for (size_t i = 0; i < ELEMENTSOF(backends); i++) {
                size_t n = strlen(backends[i]->scheme);
                if (!strncmp(url, backends[i]->scheme, n) && url[n] == ':')
                        return backends[i]->open(url, store, ret, err);
        }
        /* TLS to Redis is named so that the refusal says why (queue-redis.c). */
        if (!strncmp(url, "rediss://", 9))
                return mp_queue_redis_ops.open(url, store, ret, err);
        char shown[512];
        mp_config_redact_url(url, shown, sizeof(shown));
        return mp_error_set(err, EINVAL, 400, "config",
                            "--queue \"%s\": unknown queue backend (expected local: or redis://host:port)",
                            shown);
}

void mp_queue_close(struct mp_queue *q) {
        if (q)
                MP_QUEUE(q)->close(q);
}

uint32_t mp_queue_shard_hash(const char *s) {
        uint32_t h = 2166136261u;
        for (; s && *s; s++) {
                h ^= (unsigned char) *s;
                h *= 16777619u;
        }
        return h;
}

void mp_queue_worker_process(const char *worker_id, char *buf, size_t size) {
        const char *slash = strrchr(worker_id, '/');
        size_t n = slash ? (size_t) (slash - worker_id) : strlen(worker_id);
        snprintf(buf, size, "%.*s", (int) MP_MIN(n, (size_t) 1000), worker_id);
}
