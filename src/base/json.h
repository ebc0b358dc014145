/* JSON text as people read it: jansson writes every real with 17 significant digits
 * (0.05 becomes 0.050000000000000003), which reads back exactly but is not the number the
 * user typed. mp_json_dumps writes each real with the fewest of 15, 16 or 17 digits that
 * read back as the same double, and keeps a real a real ("2.0", not "2"). */
#pragma once

#include <jansson.h>

/* json_dumps(j, flags) with the reals shortened; flags must not set JSON_REAL_PRECISION.
 * The caller frees; NULL on failure, as json_dumps. */
char *mp_json_dumps(const json_t *j, size_t flags);
/* Shorten the reals of a JSON text in place (the text never grows). */
void mp_json_shorten_reals(char *text);
