/* store/: what the dispatch file needs from the backends, and nothing else. */
#pragma once

#include "store/store.h"

/* The "sqlite:" backend (store-sqlite.c). */
extern const struct mp_store_ops mp_store_sqlite_ops;
/* The "postgres:" backend (store-postgres.c); store.c also routes "postgresql:" to it. */
extern const struct mp_store_ops mp_store_postgres_ops;
