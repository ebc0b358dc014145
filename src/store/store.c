/* store/: dispatch. The only file that knows which drivers exist: the url's scheme
 * (the text before the first ':') picks one; the operations (store-ops.c) are the same
 * for all. */
#include <errno.h>
#include <string.h>

#include "store/store-internal.h"

static const struct {
        const char *scheme;
        const struct mp_store_driver *drv;
} backends[] = {
        { "sqlite", &mp_store_sqlite_driver },
        { "postgres", &mp_store_postgres_driver },
        { "postgresql", &mp_store_postgres_driver }, /* libpq's own spelling */
};

int mp_store_open(const char *url, struct mp_store **ret, struct mp_error *err) {
        const char *colon;
        size_t n;

        if (!url || !(colon = strchr(url, ':')) || colon == url)
                return mp_error_set(err, EINVAL, 500, "config",
                                    "store URL '%s' has no scheme: write sqlite:/path/to/mecapy.db "
                                    "or postgres://user@host:port/dbname",
                                    url ? url : "(null)");
        n = (size_t) (colon - url);
        for (size_t i = 0; i < ELEMENTSOF(backends); i++)
                if (strlen(backends[i].scheme) == n && strncmp(url, backends[i].scheme, n) == 0)
                        return mp_store_sql_open(backends[i].drv, url, ret, err);
        return mp_error_set(err, EPROTONOSUPPORT, 500, "config",
                            "store URL '%s': unknown scheme '%.*s' (this build knows sqlite: and postgres:)",
                            url, (int) n, url);
}

void mp_store_close(struct mp_store *s) {
        if (s)
                MP_STORE(s)->close(s);
}

const struct mp_store_ops *mp_store_ops(struct mp_store *s) {
        return MP_STORE(s);
}
