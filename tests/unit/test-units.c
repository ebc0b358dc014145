/* The unit registry and converter (core/units.c). The cases here pin exact values; the
 * integration test tests/integration/test_units_convert.py also compares many
 * conversions with pint's own, through `test-units --convert` (lines "VALUE FROM TO" on
 * stdin, the converted value or "refused" on stdout). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "core/units.h"

static double conv(double v, const char *from, const char *to) {
        struct mp_unit a, b;
        if (mp_units_parse(from, &a) < 0 || mp_units_parse(to, &b) < 0 || !mp_units_same_dimension(&a, &b))
                return NAN;
        return mp_units_convert(v, &a, &b);
}

#define CHECK_NEAR(got, want)                                                                    \
        do {                                                                                     \
                double g_ = (got), w_ = (want);                                                  \
                if (!(fabs(g_ - w_) <= 1e-12 * fabs(w_)))                                        \
                        CHECK_FAIL("%s = %.17g, expected %.17g", #got, g_, w_);                  \
        } while (0)

TEST(lengths_and_prefixes) {
        CHECK_NEAR(conv(2000, "mm", "m"), 2.0);
        CHECK_NEAR(conv(1, "km", "m"), 1000.0);
        CHECK_NEAR(conv(1, "ft", "m"), 0.3048);
        CHECK_NEAR(conv(12, "in", "ft"), 1.0);
        CHECK_NEAR(conv(1, "um", "m"), 1e-6);
        CHECK_NEAR(conv(1, "\xc2\xb5m", "m"), 1e-6);
        CHECK_NEAR(conv(1, "\xce\xbcm", "m"), 1e-6);
        CHECK_NEAR(conv(1, "kilometer", "m"), 1000.0);
        CHECK_NEAR(conv(1, "mile", "km"), 1.609344);
}

TEST(compound_units) {
        CHECK_NEAR(conv(1, "N/mm^2", "MPa"), 1.0);
        CHECK_NEAR(conv(1, "N/mm**2", "Pa"), 1e6);
        CHECK_NEAR(conv(1, "kN*m", "N*m"), 1000.0);
        CHECK_NEAR(conv(1, "kN.m", "N m"), 1000.0);
        CHECK_NEAR(conv(1, "kN\xc2\xb7m", "N*m"), 1000.0);
        CHECK_NEAR(conv(1, "kg/m^3", "g/cm^3"), 1e-3);
        CHECK_NEAR(conv(1, "m/s^2", "m/s/s"), 1.0);
        CHECK_NEAR(conv(1, "cm4", "mm^4"), 1e4);
        CHECK_NEAR(conv(1, "m\xc2\xb2", "mm^2"), 1e6);
        CHECK_NEAR(conv(60, "rpm", "rad/s"), 2 * 3.14159265358979323846);
        CHECK_NEAR(conv(1, "1/s", "Hz"), 1.0);
        CHECK_NEAR(conv(1, "ksi", "psi"), 1000.0);
        CHECK_NEAR(conv(1, "kWh", "J"), 3.6e6);
}

TEST(temperatures_with_offsets) {
        CHECK_NEAR(conv(100, "degC", "K"), 373.15);
        CHECK_NEAR(conv(212, "degF", "degC"), 100.0);
        CHECK_NEAR(conv(-40, "degF", "degC"), -40.0);
        CHECK_NEAR(conv(0, "K", "degF"), -459.67);
        CHECK_NEAR(conv(10, "delta_degC", "K"), 10.0);
        CHECK_NEAR(conv(9, "delta_degF", "delta_degC"), 5.0);
}

TEST(angles_are_a_dimension) {
        CHECK_NEAR(conv(180, "deg", "rad"), 3.14159265358979323846);
        struct mp_unit a, b;
        REQUIRE(mp_units_parse("deg", &a) == 0 && mp_units_parse("m/m", &b) == 0);
        CHECK(!mp_units_same_dimension(&a, &b));
}

TEST(refusals) {
        struct mp_unit u = { .factor = 42 };
        static const char *const bad[] = { "", " ", "furlongz", "kft", "m^", "m^0", "m^x", "*m", "m/",
                                           "degC*m", "kdegC", "degC^2", "m**", "N//m", "1", "2/s",
                                           "\xb5m", "\xc2m", "m\xce",
                                           "m99999999999999999999", "m2^99999999999999999999", "m^13", "m4^4" };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                if (mp_units_parse(bad[i], &u) == 0)
                        CHECK_FAIL("\"%s\" was accepted", bad[i]);
        }
        CHECK(u.factor == 42); /* untouched on failure */
        CHECK(isnan(conv(1, "kg", "m")));
        CHECK(isnan(conv(1, "Pa", "N")));
}

TEST(dimension_names) {
        static const struct {
                const char *unit, *name;
        } cases[] = {
                { "m", "length" },      { "kg", "mass" },    { "MPa", "pressure" },  { "kN", "force" },
                { "kN*m", "moment" },   { "J", "energy" },   { "kWh", "energy" },    { "W", "power" },
                { "degC", "temperature" }, { "deg", "angle" }, { "m^2", "area" },    { "L", "volume" },
                { "kg/m^3", "density" }, { "m/s", "velocity" }, { "m/s^2", "acceleration" },
                { "Hz", "frequency" },  { "mm^4", "second moment of area" }, { "kN/m", "force per length" },
                { "m/m", "dimensionless" }, { "A*s/kg", "[mass]^-1*[time]*[current]" },
                /* a moment is told from an energy by the units named, not by their letters */
                { "kN*cm", "moment" },  { "kgf*cm", "moment" }, { "lbf*ft", "moment" }, { "N·mm", "moment" },
                { "daN m", "moment" },  { "kcal", "energy" }, { "erg", "energy" },  { "eV", "energy" },
                { "Btu", "energy" },    { "W*s", "energy" },  { "kg*m^2/s^2", "energy" }, { "mJ", "energy" },
        };
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct mp_unit u;
                char buf[96];
                REQUIRE(mp_units_parse(cases[i].unit, &u) == 0);
                mp_units_dimension_name(&u, cases[i].unit, buf, sizeof(buf));
                CHECK_STR(buf, cases[i].name);
        }
}

TEST(quantities) {
        double v;
        char unit[64];
        json_t *s = json_string(" 2.5 ft"), *o = json_pack("{s:f,s:s}", "value", 2.5, "unit", "ft");
        json_t *n = json_real(1), *bad = json_string("long"), *other = json_pack("{s:i}", "value", 1);
        CHECK_INT(mp_units_quantity(s, &v, unit, sizeof(unit)), ==, 1);
        CHECK(v == 2.5);
        CHECK_STR(unit, "ft");
        CHECK_INT(mp_units_quantity(o, &v, unit, sizeof(unit)), ==, 1);
        CHECK_STR(unit, "ft");
        CHECK_INT(mp_units_quantity(n, &v, unit, sizeof(unit)), ==, 0);
        CHECK_INT(mp_units_quantity(other, &v, unit, sizeof(unit)), ==, 0);
        CHECK_INT(mp_units_quantity(bad, &v, unit, sizeof(unit)), <, 0);
        json_decref(s);
        json_decref(o);
        json_decref(n);
        json_decref(bad);
        json_decref(other);
}

static const struct check_case cases[] = {
        CASE(lengths_and_prefixes), CASE(compound_units), CASE(temperatures_with_offsets),
        CASE(angles_are_a_dimension), CASE(refusals), CASE(dimension_names), CASE(quantities),
};

/* --convert: one "VALUE FROM TO" per line on stdin. */
static int convert_stdin(void) {
        char line[512], from[200], to[200];
        double v;
        while (fgets(line, sizeof(line), stdin)) {
                if (sscanf(line, "%lf\t%199[^\t]\t%199[^\t\n]", &v, from, to) != 3) {
                        puts("refused");
                        continue;
                }
                double out = conv(v, from, to);
                if (isnan(out))
                        puts("refused");
                else
                        printf("%.17g\n", out);
        }
        return 0;
}

int units_cases_main(int argc, char **argv);
#define main units_cases_main
CHECK_MAIN(cases)
#undef main

int main(int argc, char **argv) {
        if (argc > 1 && !strcmp(argv[1], "--convert"))
                return convert_stdin();
        return units_cases_main(argc, argv);
}
