/* Units of measure: see units.h. The registry is one table, generated from pint's
 * definitions (scripts/gen-units.py); a unit expression is a product of names, each
 * perhaps with a prefix and an integer power. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/macro.h"
#include "core/units.h"

#include "core/units-table.h"

#define MAX_UNIT_TEXT 128
#define MAX_POWER 12 /* m^12 is far enough; a bound keeps the loop and the exponent small */

static const struct mp_unit_def *find_def(const char *name, size_t len) {
        for (size_t i = 0; i < ELEMENTSOF(mp_unit_defs); i++)
                if (strlen(mp_unit_defs[i].name) == len && !memcmp(mp_unit_defs[i].name, name, len))
                        return &mp_unit_defs[i];
        return NULL;
}

/* A name: itself in the table, or a prefix followed by a unit that takes prefixes. */
static int lookup(const char *name, size_t len, const struct mp_unit_def **ret_def, int *ret_exp10) {
        const struct mp_unit_def *d = find_def(name, len);
        if (d) {
                *ret_def = d;
                *ret_exp10 = 0;
                return 0;
        }
        if (len > 2 && (unsigned char) name[0] == 0xce && (unsigned char) name[1] == 0xbc &&
            (d = find_def(name + 2, len - 2)) && d->prefixable) { /* Greek mu, as the micro sign */
                *ret_def = d;
                *ret_exp10 = -6;
                return 0;
        }
        for (size_t i = 0; i < ELEMENTSOF(mp_unit_prefixes); i++) {
                size_t pl = strlen(mp_unit_prefixes[i].name);
                if (pl < len && !memcmp(name, mp_unit_prefixes[i].name, pl) &&
                    (d = find_def(name + pl, len - pl)) && d->prefixable) {
                        *ret_def = d;
                        *ret_exp10 = mp_unit_prefixes[i].exp10;
                        return 0;
                }
        }
        return -EINVAL;
}

/* The length in bytes of the name character at s (a letter, a digit, _, µ or μ), or 0. */
static size_t name_char(const char *s) {
        unsigned char c = (unsigned char) s[0], d = c ? (unsigned char) s[1] : 0;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9'))
                return 1;
        if ((c == 0xc2 && d == 0xb5) || (c == 0xce && d == 0xbc)) /* micro sign, Greek mu */
                return 2;
        return 0;
}

static const char *skip_spaces(const char *s) {
        while (*s == ' ')
                s++;
        return s;
}

int mp_units_parse(const char *text, struct mp_unit *ret) {
        struct mp_unit u = { .factor = 1.0 };
        int sign = 1, terms = 0;
        bool offset_seen = false;
        double offset = 0;
        const char *s;

        if (!text || strlen(text) > MAX_UNIT_TEXT)
                return -EINVAL;
        s = skip_spaces(text);
        if (!*s)
                return -EINVAL;
        if (s[0] == '1' && !name_char(s + 1)) { /* "1/s" */
                s = skip_spaces(s + 1);
                if (*s != '/')
                        return -EINVAL;
        } else
                goto term;
        for (;;) {
                /* an operator between terms: '*', '·', '.', '/', or a space */
                if (*s == '*' && s[1] != '*') {
                        sign = 1;
                        s++;
                } else if (!strncmp(s, "\xc2\xb7", 2) || !strncmp(s, "\xe2\x8b\x85", 3)) {
                        sign = 1;
                        s += s[0] == '\xc2' ? 2 : 3;
                } else if (*s == '.') {
                        sign = 1;
                        s++;
                } else if (*s == '/') {
                        sign = -1;
                        s++;
                } else if (terms > 0 && s > text && s[-1] == ' ' && name_char(s))
                        sign = 1;
                else
                        return -EINVAL;
                s = skip_spaces(s);
        term:;
                const char *start = s;
                const struct mp_unit_def *d;
                int exp10;
                long power = 1;
                size_t len;

                for (size_t k; (k = name_char(s)) > 0;)
                        s += k;
                len = (size_t) (s - start);
                if (len == 0)
                        return -EINVAL;
                if (lookup(start, len, &d, &exp10) < 0) {
                        /* "m2", "mm4": a power written as trailing digits */
                        size_t n = len;
                        while (n > 0 && start[n - 1] >= '0' && start[n - 1] <= '9')
                                n--;
                        if (n == len || n == 0 || len - n > 2 || lookup(start, n, &d, &exp10) < 0)
                                return -EINVAL;
                        power = strtol(start + n, NULL, 10);
                        if (power == 0 || power > MAX_POWER)
                                return -EINVAL;
                }
                s = skip_spaces(s);
                if (*s == '^' || (s[0] == '*' && s[1] == '*')) {
                        char *end;
                        s += *s == '^' ? 1 : 2;
                        s = skip_spaces(s);
                        long e = strtol(s, &end, 10);
                        if (end == s || e == 0 || e > MAX_POWER || e < -MAX_POWER)
                                return -EINVAL;
                        power *= e;
                        if (labs(power) > MAX_POWER)
                                return -EINVAL;
                        s = skip_spaces(end);
                } else if (!strncmp(s, "\xc2\xb2", 2) || !strncmp(s, "\xc2\xb3", 2)) { /* ² ³ */
                        power *= s[1] == '\xb2' ? 2 : 3;
                        s = skip_spaces(s + 2);
                }
                power *= sign;
                for (int i = 0; i < MP_UNIT_NDIMS; i++)
                        u.dim[i] += d->dim[i] * (int) power;
                for (long k = 0; k < labs(power); k++) /* no libm in the core: an integer power */
                        u.factor = power > 0 ? u.factor * d->factor : u.factor / d->factor;
                u.exp10 += exp10 * (int) power;
                if (d->offset != 0) {
                        offset_seen = true;
                        offset = d->offset;
                }
                if (offset_seen && (terms > 0 || power != 1 || exp10 != 0))
                        return -EINVAL; /* degC*m has no meaning (pint: OffsetUnitCalculusError) */
                terms++;
                if (!*s)
                        break;
        }
        if (offset_seen && terms > 1)
                return -EINVAL;
        if (!isfinite(u.factor) || u.factor == 0 || u.exp10 < -300 || u.exp10 > 300)
                return -EINVAL;
        u.offset = offset;
        *ret = u;
        return 0;
}

bool mp_units_same_dimension(const struct mp_unit *a, const struct mp_unit *b) {
        return !memcmp(a->dim, b->dim, sizeof(a->dim));
}

/* value * 10^e, exact powers of ten up to 10^22 (beyond, a product of them) */
static double scale10(double value, int e) {
        static const double p10[] = { 1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };
        while (e > 22) {
                value *= 1e22;
                e -= 22;
        }
        while (e < -22) {
                value /= 1e22;
                e += 22;
        }
        return e >= 0 ? value * p10[e] : value / p10[-e];
}

double mp_units_convert(double value, const struct mp_unit *from, const struct mp_unit *to) {
        if (from->factor == to->factor && from->exp10 == to->exp10 && from->offset == to->offset)
                return value;
        if (from->offset == 0 && to->offset == 0) {
                double r = from->factor == to->factor ? value : value * (from->factor / to->factor);
                return scale10(r, from->exp10 - to->exp10);
        }
        return scale10(scale10(value, from->exp10) * from->factor + from->offset - to->offset, -to->exp10) /
               to->factor;
}

static const struct {
        signed char dim[MP_UNIT_NDIMS];
        const char *name;
} dimension_names[] = {
        { { 0 }, "dimensionless" },
        { { 1 }, "length" },
        { { 0, 1 }, "mass" },
        { { 0, 0, 1 }, "time" },
        { { 0, 0, 0, 1 }, "current" },
        { { 0, 0, 0, 0, 1 }, "temperature" },
        { { 0, 0, 0, 0, 0, 1 }, "amount of substance" },
        { { 0, 0, 0, 0, 0, 0, 1 }, "luminous intensity" },
        { { 0, 0, 0, 0, 0, 0, 0, 1 }, "angle" },
        { { 2 }, "area" },
        { { 3 }, "volume" },
        { { 4 }, "second moment of area" },
        { { 1, 0, -1 }, "velocity" },
        { { 1, 0, -2 }, "acceleration" },
        { { 0, 0, -1 }, "frequency" },
        { { 0, 0, -1, 0, 0, 0, 0, 1 }, "angular velocity" },
        { { 0, 0, -2, 0, 0, 0, 0, 1 }, "angular acceleration" },
        { { 1, 1, -2 }, "force" },
        { { 0, 1, -2 }, "force per length" },
        { { -1, 1, -2 }, "pressure" },
        { { 2, 1, -2 }, "energy" }, /* or a moment: see mp_units_dimension_name */
        { { 2, 1, -3 }, "power" },
        { { -3, 1 }, "density" },
        { { 2, 1, -3, -1 }, "voltage" },
        { { 0, 0, 1, 1 }, "charge" },
        { { 3, 0, -1 }, "volume flow" },
        { { 0, 1, -1 }, "mass flow" },
};

static bool dim_is(const signed char *dim, int length, int mass, int time) {
        for (int k = 3; k < MP_UNIT_NDIMS; k++)
                if (dim[k])
                        return false;
        return dim[0] == length && dim[1] == mass && dim[2] == time;
}

/* Is the unit text (one that parses) a force times a length: made of forces and lengths
 * only (N*m, kN*cm, kgf*cm, lbf*ft)? Any other unit in it (J, kWh, cal, kg*m^2/s^2)
 * makes it an energy. Numbers in it (powers, "1/") are skipped. */
static bool force_times_length(const char *text) {
        const char *s = text;
        bool any = false;

        while (*s) {
                const char *start = s;
                const struct mp_unit_def *d;
                int exp10;
                size_t len, n;

                for (size_t k; (k = name_char(s)) > 0;)
                        s += k;
                if (s == start) {
                        s++;
                        continue;
                }
                if (*start >= '0' && *start <= '9')
                        continue;
                len = n = (size_t) (s - start);
                while (n > 1 && start[n - 1] >= '0' && start[n - 1] <= '9') /* "m2" */
                        n--;
                if (lookup(start, len, &d, &exp10) < 0 && lookup(start, n, &d, &exp10) < 0)
                        return false;
                if (!dim_is(d->dim, 1, 1, -2) && !dim_is(d->dim, 1, 0, 0))
                        return false;
                any = true;
        }
        return any;
}

void mp_units_dimension_name(const struct mp_unit *u, const char *text, char *buf, size_t size) {
        static const char *const base[] = { "length", "mass", "time", "current", "temperature",
                                            "substance", "luminosity", "angle" };
        size_t n = 0;

        for (size_t i = 0; i < ELEMENTSOF(dimension_names); i++) {
                bool same = true;
                for (int k = 0; k < MP_UNIT_NDIMS; k++)
                        same &= dimension_names[i].dim[k] == u->dim[k];
                if (!same)
                        continue;
                /* A force times a length is a moment; a joule, a calorie or a watt hour an
                 * energy. Told by the units named, not by letters in the text: kN*cm and
                 * kgf*cm are moments. */
                if (!strcmp(dimension_names[i].name, "energy") && text && force_times_length(text))
                        snprintf(buf, size, "moment");
                else
                        snprintf(buf, size, "%s", dimension_names[i].name);
                return;
        }
        buf[0] = 0;
        for (int k = 0; k < MP_UNIT_NDIMS; k++) {
                if (!u->dim[k])
                        continue;
                int w = u->dim[k] == 1 ? snprintf(buf + n, size - n, "%s[%s]", n ? "*" : "", base[k])
                                       : snprintf(buf + n, size - n, "%s[%s]^%d", n ? "*" : "", base[k], u->dim[k]);
                if (w < 0 || (size_t) w >= size - n)
                        return;
                n += (size_t) w;
        }
}

int mp_units_quantity(json_t *v, double *ret_value, char *unit, size_t size) {
        const char *text;
        char *end;
        double value;

        if (json_is_object(v)) {
                json_t *jv = json_object_get(v, "value"), *ju = json_object_get(v, "unit");
                if (json_object_size(v) != 2 || !json_is_number(jv) || !json_is_string(ju))
                        return 0;
                if (!isfinite(json_number_value(jv)))
                        return -EINVAL;
                snprintf(unit, size, "%s", json_string_value(ju));
                *ret_value = json_number_value(jv);
                return 1;
        }
        if (!json_is_string(v))
                return 0;
        text = json_string_value(v);
        while (*text == ' ')
                text++;
        errno = 0;
        value = strtod(text, &end);
        if (end == text || errno || !isfinite(value))
                return -EINVAL;
        while (*end == ' ')
                end++;
        snprintf(unit, size, "%s", end);
        *ret_value = value;
        return 1;
}
