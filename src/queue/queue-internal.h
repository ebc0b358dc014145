#pragma once
#include "queue/queue.h"
extern const struct mp_queue_ops mp_queue_local_ops;
extern const struct mp_queue_ops mp_queue_redis_ops;
