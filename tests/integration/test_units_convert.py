"""The unit registry against pint (Debian python3-pint), whose definitions it is made
from: the committed table is what scripts/gen-units.py writes now, and the C converter
(driven through `test-units --convert`) gives pint's values to 1e-12 relative, offsets
of the temperature scales and prefixes included; what pint refuses, it refuses."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

pint = pytest.importorskip("pint")

REPO = Path(__file__).resolve().parents[2]


def converter() -> Path:
    build = Path(os.environ.get("MECAPY_BIN", REPO / "build" / "mecapy")).resolve().parent
    exe = build / "tests" / "unit" / "test-units"
    if not exe.exists():
        pytest.skip(f"{exe} is not built")
    return exe


def test_committed_table_is_what_the_generator_writes():
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "gen-units.py")], capture_output=True,
                       text=True, check=True, timeout=120)
    assert r.stdout == (REPO / "src" / "core" / "units-table.h").read_text(encoding="utf-8"), \
        "src/core/units-table.h is stale: run scripts/gen-units.py src/core/units-table.h"


CASES = [
    (2000, "mm", "m"), (1, "ft", "m"), (3.5, "inch", "mm"), (1, "mile", "km"), (7, "yd", "ft"),
    (1, "lb", "kg"), (2.5, "t", "kg"), (1, "oz", "g"), (90, "min", "h"), (1, "day", "s"),
    (1, "kN", "lbf"), (3, "kip", "kN"), (1, "kgf", "N"), (1, "MPa", "psi"), (36, "ksi", "MPa"),
    (1, "bar", "kPa"), (1, "atm", "Pa"), (1, "N/mm^2", "MPa"), (12, "kN*m", "lbf*ft"),
    (1, "kWh", "J"), (1, "Btu", "kJ"), (1, "kcal", "J"), (1, "hp", "kW"), (100, "degC", "degF"),
    (-40, "degC", "degF"), (300, "K", "degC"), (451, "degF", "K"), (500, "degR", "K"),
    (45, "deg", "rad"), (1, "turn", "deg"), (30, "arcmin", "deg"), (1, "L", "m^3"),
    (1, "gal", "L"), (7850, "kg/m^3", "g/cm^3"), (100, "kph", "m/s"), (1, "knot", "m/s"),
    (1, "g0", "m/s^2"), (3000, "rpm", "rad/s"), (50, "Hz", "1/min"), (1, "m^4", "mm^4"),
    (210, "GPa", "N/mm^2"), (5, "kN/m", "N/mm"), (1, "um", "nm"), (1, "mN*m", "N*m"),
    # a moment and an energy share a dimension: pint converts one into the other, so do we
    (5, "J", "N*m"), (3, "kN*cm", "J"),
]


def test_conversions_match_pint():
    ureg = pint.UnitRegistry()
    text = "".join(f"{v}\t{a}\t{b}\n" for v, a, b in CASES)
    r = subprocess.run([str(converter()), "--convert"], input=text, capture_output=True, text=True,
                       check=True, timeout=60)
    got = r.stdout.splitlines()
    assert len(got) == len(CASES), r.stdout
    for (v, a, b), g in zip(CASES, got):
        want = ureg.Quantity(v, a.replace("^", "**")).to(b.replace("^", "**")).magnitude
        assert g != "refused", (v, a, b)
        assert float(g) == pytest.approx(want, rel=1e-12, abs=1e-300), (v, a, b, g, want)


def test_what_pint_refuses_is_refused():
    ureg = pint.UnitRegistry()
    bad = [(1, "kg", "m"), (1, "Pa", "N"), (1, "degC", "m"), (1, "J", "W"), (1, "m/s", "m/s^2")]
    for v, a, b in bad:
        with pytest.raises(pint.DimensionalityError):
            ureg.Quantity(v, a.replace("^", "**")).to(b.replace("^", "**"))
    text = "".join(f"{v}\t{a}\t{b}\n" for v, a, b in bad + [(1, "furlongz", "m")])
    r = subprocess.run([str(converter()), "--convert"], input=text, capture_output=True, text=True,
                       check=True, timeout=60)
    assert r.stdout.splitlines() == ["refused"] * (len(bad) + 1)
