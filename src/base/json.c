/* Shortest-reading reals in JSON text (see json.h). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"

/* The shortest of %.15g, %.16g and %.17g that reads back as d, with ".0" added when it
 * would read as an integer. Returns its length (< size). */
static size_t format_real(double d, char *buf, size_t size) {
        int n = 0;
        for (int prec = 15; prec <= 17; prec++) {
                n = snprintf(buf, size, "%.*g", prec, d);
                if (strtod(buf, NULL) == d)
                        break;
        }
        if (n > 0 && (size_t) n + 2 < size && !strpbrk(buf, ".eEni")) {
                memcpy(buf + n, ".0", 3);
                n += 2;
        }
        return n > 0 ? (size_t) n : 0;
}

void mp_json_shorten_reals(char *text) {
        char *r = text, *w = text;
        bool in_string = false;
        while (*r) {
                char c = *r;
                if (in_string) {
                        *w++ = *r++;
                        if (c == '\\' && *r)
                                *w++ = *r++;
                        else if (c == '"')
                                in_string = false;
                        continue;
                }
                if (c == '"') {
                        in_string = true;
                        *w++ = *r++;
                        continue;
                }
                if (c != '-' && (c < '0' || c > '9')) {
                        *w++ = *r++;
                        continue;
                }
                size_t n = strspn(r, "-+.eE0123456789");
                char buf[40];
                size_t m = 0;
                if (strcspn(r, ".eE") < n) {
                        char *end;
                        double d = strtod(r, &end);
                        if (end == r + n)
                                m = format_real(d, buf, sizeof(buf));
                }
                if (m && m <= n) {
                        memcpy(w, buf, m);
                        w += m;
                } else {
                        memmove(w, r, n);
                        w += n;
                }
                r += n;
        }
        *w = '\0';
}

char *mp_json_dumps(const json_t *j, size_t flags) {
        char *text = json_dumps(j, flags);
        if (text)
                mp_json_shorten_reals(text);
        return text;
}
