/* Fuzz target: unit expressions and quantities (src/core/units.c), sent by callers as
 * inputs ("2.5 ft", {"value": 2.5, "unit": "ft"}) and written in uploaded code.
 * Input: a unit or quantity text (one line), a newline, then a second unit. */
#include <math.h>
#include <string.h>

#include <jansson.h>

#include "core/units.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        size_t n_first;
        const uint8_t *p = fuzz_split(&data, &size, '\n', &n_first);
        char *first = fuzz_strndup(p, n_first), *second = fuzz_strndup(data, size);
        struct mp_unit a = { .factor = 7 }, b = { .factor = 7 };
        char unit[160], name[96];
        double value = 0;
        int ra = mp_units_parse(first, &a), rb = mp_units_parse(second, &b);

        fuzz_check(ra == 0 || ra == -EINVAL);
        fuzz_check(ra == 0 || a.factor == 7); /* untouched on failure */
        fuzz_check(ra < 0 || (isfinite(a.factor) && a.factor != 0));
        if (ra == 0) {
                mp_units_dimension_name(&a, first, name, sizeof(name));
                fuzz_check(strnlen(name, sizeof(name)) < sizeof(name));
        }
        if (ra == 0 && rb == 0 && mp_units_same_dimension(&a, &b))
                (void) mp_units_convert(1.5, &a, &b);
        json_t *s = json_string(first);
        if (s) {
                int q = mp_units_quantity(s, &value, unit, sizeof(unit));
                fuzz_check(q == 1 || q == -EINVAL);
                fuzz_check(q < 0 || (isfinite(value) && strnlen(unit, sizeof(unit)) < sizeof(unit)));
                json_decref(s);
        }
        free(first);
        free(second);
        return 0;
}
