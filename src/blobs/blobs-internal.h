/* blobs/: what the dispatch file needs from the backends, and nothing else. */
#pragma once

#include "blobs/blobs.h"

#define MP_BLOBS_MAX_KEY 512

/* The "file:" backend (blobs-file.c). */
extern const struct mp_blobs_ops mp_blobs_file_ops;
