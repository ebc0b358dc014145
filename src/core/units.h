/* Units of measure: the registry (src/core/units-table.h, generated from pint's
 * definitions by scripts/gen-units.py), parsing of unit expressions ("kN*m", "N/mm^2",
 * "m/s**2", "degC") and of quantities ("2.5 ft", {"value": 2.5, "unit": "ft"}), and
 * conversion between units of one dimension. No allocation; nothing here fails but
 * parsing, which returns -EINVAL for what it does not know. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* length, mass, time, current, temperature, substance, luminosity, angle */
#define MP_UNIT_NDIMS 8

struct mp_unit_def {
        const char *name;
        signed char dim[MP_UNIT_NDIMS];
        double factor; /* SI = value * factor + offset */
        double offset;
        bool prefixable;
};

struct mp_unit_prefix {
        const char *name;
        int exp10;
};

struct mp_unit {
        int dim[MP_UNIT_NDIMS];
        double factor; /* times 10^exp10: the prefixes' powers of ten are kept exact */
        int exp10;
        double offset; /* non-zero only for a temperature scale used alone (degC, degF) */
};

/* Parse a unit expression into *ret. 0, or -EINVAL (unknown name, bad syntax, a scale
 * with an offset inside a compound unit). *ret is untouched on failure. */
int mp_units_parse(const char *text, struct mp_unit *ret);

bool mp_units_same_dimension(const struct mp_unit *a, const struct mp_unit *b);

/* value in `from`, expressed in `to` (same dimension: the caller checked). */
double mp_units_convert(double value, const struct mp_unit *from, const struct mp_unit *to);

/* The name of u's dimension ("length", "pressure", "moment", ...) into buf; `text`, the
 * unit as written, tells a moment (N*m) from an energy (J). */
void mp_units_dimension_name(const struct mp_unit *u, const char *text, char *buf, size_t size);

/* A quantity as a caller may give it: "2.5 ft" or {"value": 2.5, "unit": "ft"}. 1 and
 * the value and unit text (into unit, size bytes) when v has that shape; 0 when v is not
 * a quantity (a number, or anything else); -EINVAL when it has the shape but its number
 * does not read. */
int mp_units_quantity(json_t *v, double *ret_value, char *unit, size_t size);
