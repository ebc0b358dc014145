#include <string.h>

#include "queue/queue-internal.h"

static const struct mp_queue_ops *const backends[] = { &mp_queue_local_ops };

int mp_queue_open(const char *url, struct mp_store *store, struct mp_queue **ret,
                  struct mp_error *err) {
        for (size_t i = 0; i < ELEMENTSOF(backends); i++) {
                size_t n = strlen(backends[i]->scheme);
                if (!strncmp(url, backends[i]->scheme, n) && url[n] == ':')
                        return backends[i]->open(url, store, ret, err);
        }
        return mp_error_set(err, EINVAL, 400, "config",
                            "--queue \"%s\": unknown queue backend (expected local:)", url);
}

void mp_queue_close(struct mp_queue *q) {
        if (q)
                MP_QUEUE(q)->close(q);
}
