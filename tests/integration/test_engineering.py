"""End to end with real engineering numbers: what an engineer uploads, what comes back,
checked against the formula (computed here in plain Python, independently of the server's
numpy/scipy)."""
import csv
import io
import math
import re

import pytest

from harness import expect_status

CANTILEVER = """\
def main(F: float, L: float, E: float, b: float, h: float) -> dict:
    \"\"\"Tip deflection of a cantilever of rectangular section under an end load.\"\"\"
    I = b * h ** 3 / 12.0
    delta = F * L ** 3 / (3.0 * E * I)
    sigma_max = F * L * (h / 2.0) / I
    print(f"I = {I:.6e} m^4")
    return {"I_m4": I, "delta_m": delta, "delta_mm": delta * 1e3, "sigma_max_Pa": sigma_max}
"""


def test_cantilever_tip_deflection(api, fname):
    f = api.create_function("alice", fname, CANTILEVER)
    inputs = {"F": 1000.0, "L": 2.0, "E": 210e9, "b": 0.05, "h": 0.1}
    t = api.execute("alice", f["id"], inputs)
    assert t["status"] == "completed", t
    r = t["result"]
    I = 0.05 * 0.1 ** 3 / 12
    delta = 1000.0 * 2.0 ** 3 / (3 * 210e9 * I)
    assert r["I_m4"] == pytest.approx(I, rel=1e-12)
    assert r["delta_m"] == pytest.approx(delta, rel=1e-12)
    # the known answer: I = 4.1667e-6 m^4, delta = 3.0476 mm, sigma = 24 MPa
    assert r["delta_mm"] == pytest.approx(3.047619, rel=1e-6)
    assert r["sigma_max_Pa"] == pytest.approx(24e6, rel=1e-12)
    assert "I = 4.166667e-06 m^4" in t["logs"], t["logs"]
    # integers are accepted for float parameters
    t = api.execute("alice", f["id"], {"F": 1000, "L": 2, "E": 210000000000, "b": 0.05, "h": 0.1})
    assert t["status"] == "completed" and t["result"]["delta_m"] == pytest.approx(delta, rel=1e-12), t


FATIGUE = """\
import numpy as np

def main(s_max: list, s_min: list, cycles: list, Su: float, sf: float, b: float) -> dict:
    \"\"\"Goodman mean-stress correction, Basquin S-N curve, Miner's rule.\"\"\"
    smax = np.asarray(s_max, dtype=float)
    smin = np.asarray(s_min, dtype=float)
    n = np.asarray(cycles, dtype=float)
    sa = (smax - smin) / 2.0
    sm = (smax + smin) / 2.0
    sar = sa / (1.0 - sm / Su)                 # equivalent fully reversed amplitude
    N = 0.5 * (sar / sf) ** (1.0 / b)          # Basquin: sar = sf * (2N)^b
    d = n / N
    D = d.sum()
    return {"sar": sar, "N": N, "damage": d, "D": D, "blocks_to_failure": 1.0 / D,
            "bins": np.int64(len(n)), "safe": bool(D < 1.0), "worst": int(np.argmax(d))}
"""


def test_numpy_fatigue_goodman_miner(api, fname):
    f = api.create_function("alice", fname, FATIGUE)
    spectrum = {"s_max": [250.0, 300.0, 400.0, 180.0], "s_min": [-50.0, 0.0, 100.0, -180.0],
                "cycles": [2.0e4, 1.0e4, 2.0e3, 5.0e4]}
    Su, sf, b = 600.0, 900.0, -0.1
    t = api.execute("alice", f["id"], {**spectrum, "Su": Su, "sf": sf, "b": b})
    assert t["status"] == "completed", t
    r = t["result"]
    sar, N, dmg = [], [], []
    for smax, smin, n in zip(spectrum["s_max"], spectrum["s_min"], spectrum["cycles"]):
        a, m = (smax - smin) / 2, (smax + smin) / 2
        s = a / (1 - m / Su)
        life = 0.5 * (s / sf) ** (1 / b)
        sar.append(s)
        N.append(life)
        dmg.append(n / life)
    D = sum(dmg)
    # numpy arrays become lists, numpy scalars become numbers
    assert isinstance(r["N"], list) and len(r["N"]) == 4, r
    assert r["bins"] == 4 and isinstance(r["bins"], int), r
    assert isinstance(r["D"], float), r
    assert r["sar"] == pytest.approx(sar, rel=1e-12)
    assert r["N"] == pytest.approx(N, rel=1e-12)
    assert r["damage"] == pytest.approx(dmg, rel=1e-12)
    assert r["D"] == pytest.approx(D, rel=1e-12)
    assert r["blocks_to_failure"] == pytest.approx(1 / D, rel=1e-12)
    assert r["safe"] is (D < 1) and r["worst"] == max(range(4), key=dmg.__getitem__)
    # by hand: the 400/100 MPa bin has sa = 150, sm = 250, so sar = 150 / (1 - 250/600)
    assert r["sar"][2] == pytest.approx(257.142857142857, rel=1e-12)


COLEBROOK = """\
import math
from scipy.optimize import brentq

def main(Re: float, rel_roughness: float) -> dict:
    \"\"\"Darcy friction factor from the Colebrook-White equation.\"\"\"
    def g(f):
        return 1.0 / math.sqrt(f) + 2.0 * math.log10(rel_roughness / 3.7 + 2.51 / (Re * math.sqrt(f)))
    f = brentq(g, 1e-4, 1.0, xtol=1e-15, rtol=1e-14)
    return {"f": f, "residual": g(f)}
"""


def colebrook_fixed_point(Re, rr):
    x = 0.02 ** -0.5  # x = 1/sqrt(f)
    for _ in range(200):
        x = -2.0 * math.log10(rr / 3.7 + 2.51 * x / Re)
    return 1.0 / (x * x)


def test_scipy_colebrook_friction_factor(api, fname):
    f = api.create_function("alice", fname, COLEBROOK)
    t = api.execute("alice", f["id"], {"Re": 1.0e5, "rel_roughness": 1.0e-4})
    assert t["status"] == "completed", t
    r = t["result"]
    want = colebrook_fixed_point(1.0e5, 1.0e-4)
    assert r["f"] == pytest.approx(want, rel=1e-9)
    assert r["f"] == pytest.approx(0.0185, abs=2e-4), "the Moody chart value"
    assert abs(r["residual"]) < 1e-9
    # smooth pipe, turbulent: close to Blasius 0.316 Re^-0.25 at Re = 2e4
    t = api.execute("alice", f["id"], {"Re": 2.0e4, "rel_roughness": 0.0})
    assert t["result"]["f"] == pytest.approx(colebrook_fixed_point(2.0e4, 0.0), rel=1e-9)
    assert t["result"]["f"] == pytest.approx(0.316 * 2.0e4 ** -0.25, rel=0.03)


BUCKLING = """\
import numpy as np
from scipy.optimize import brentq

def main(E: float, I: float, L: float) -> dict:
    \"\"\"Critical load of a fixed-pinned column: the first root of tan(kL) = kL.\"\"\"
    x = brentq(lambda x: np.tan(x) - x, np.pi + 1e-9, 1.5 * np.pi - 1e-9, xtol=1e-14)
    return {"kL": x, "P_cr": x ** 2 * E * I / L ** 2}
"""


def test_scipy_buckling_fixed_pinned(api, fname):
    f = api.create_function("alice", fname, BUCKLING)
    E, I, L = 210e9, 8.0e-6, 3.0
    t = api.execute("alice", f["id"], {"E": E, "I": I, "L": L})
    assert t["status"] == "completed", t
    kl = 4.493409457909064  # first positive root of tan x = x
    assert t["result"]["kL"] == pytest.approx(kl, rel=1e-12)
    assert t["result"]["P_cr"] == pytest.approx(kl ** 2 * E * I / L ** 2, rel=1e-12)
    # effective length factor ~0.699: P_cr = pi^2 E I / (0.699 L)^2
    assert t["result"]["P_cr"] == pytest.approx(math.pi ** 2 * E * I / (0.6992 * L) ** 2, rel=1e-3)


DEFLECTION_CSV = """\
import csv

def main(F: float, L: float, E: float, I: float, n: int = 11) -> dict:
    \"\"\"Deflection line of an end-loaded cantilever, written as a CSV artifact.\"\"\"
    rows = []
    for i in range(n):
        x = L * i / (n - 1)
        w = F * x ** 2 * (3 * L - x) / (6 * E * I)
        rows.append((x, w))
    with open("outputs/deflection.csv", "w", newline="") as fh:
        wr = csv.writer(fh)
        wr.writerow(["x_m", "w_m"])
        wr.writerows(rows)
    return {"points": n, "tip_m": rows[-1][1]}
"""


def test_csv_artifact(api, fname):
    code = DEFLECTION_CSV.replace(
        '    with open("outputs/deflection.csv"',
        '    import pathlib\n    pathlib.Path("outputs").mkdir(exist_ok=True)\n'
        '    with open("outputs/deflection.csv"')
    f = api.create_function("alice", fname, code)
    F, L, E, I, n = 500.0, 1.5, 70e9, 2.0e-7, 16
    t = api.execute("alice", f["id"], {"F": F, "L": L, "E": E, "I": I, "n": n})
    assert t["status"] == "completed", t
    arts = {a["name"]: a for a in t["artifacts"]}
    assert "deflection.csv" in arts, t["artifacts"]
    r = api.get("alice", arts["deflection.csv"]["url"])
    expect_status(r, 200)
    assert len(r.content) == arts["deflection.csv"]["size"], "size matches the bytes served"
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert len(rows) == n
    for row in rows:
        x = float(row["x_m"])
        assert float(row["w_m"]) == pytest.approx(F * x ** 2 * (3 * L - x) / (6 * E * I),
                                                  rel=1e-12, abs=1e-18)
    tip = F * L ** 3 / (3 * E * I)
    assert float(rows[-1]["w_m"]) == pytest.approx(tip, rel=1e-12)
    assert t["result"]["tip_m"] == pytest.approx(tip, rel=1e-12)


FAILING = """\
def stiffness(E, I, L):
    return 3.0 * E * I / L ** 3


def main(F: float, L: float, E: float = 210e9, I: float = 1e-6) -> float:
    if L < 0:
        raise ValueError(f"length must be positive, got {L}")
    return F / stiffness(E, I, L)
"""


def frames(tb: str):
    return re.findall(r'File "([^"]*)", line (\d+), in (\S+)', tb)


def test_exception_gives_failed_with_user_traceback(api, fname):
    f = api.create_function("alice", fname, FAILING)
    t = api.execute("alice", f["id"], {"F": 10.0, "L": -1.0})
    assert t["status"] == "failed", t
    e = t["error"]
    assert e["type"] == "ValueError", e
    assert e["message"] == "length must be positive, got -1.0", e
    tb = e["traceback"]
    fr = frames(tb)
    assert [(line, fn) for _, line, fn in fr] == [("7", "main")], \
        f"only the user's frame, at line 7 in main: {tb}"
    assert t["result"] is None and t["finished_at"], t

    # deeper: ZeroDivisionError inside a helper, two user frames in order
    t = api.execute("alice", f["id"], {"F": 10.0, "L": 0.0})
    assert t["status"] == "failed", t
    e = t["error"]
    assert e["type"] == "ZeroDivisionError", e
    fr = frames(e["traceback"])
    assert [(line, fn) for _, line, fn in fr] == [("8", "main"), ("2", "stiffness")], \
        f"user frames main:8 then stiffness:2, and nothing of the platform: {e['traceback']}"
    for bad in ("guest", "runpy", "importlib", "site-packages", "dist-packages", "mecapy/"):
        assert bad not in e["traceback"], f"platform frame leaked ({bad}): {e['traceback']}"
    # the failing call did not poison the function: a good call still completes
    t = api.execute("alice", f["id"], {"F": 3.0, "L": 1.0, "E": 1.0, "I": 1.0})
    assert t["status"] == "completed" and t["result"] == pytest.approx(1.0), t


def test_traceback_shows_the_source_text(api, fname):
    """Like a local Python traceback, the failing line's source text is shown."""
    f = api.create_function("alice", fname, FAILING)
    t = api.execute("alice", f["id"], {"F": 10.0, "L": -2.0})
    assert t["status"] == "failed", t
    tb = t["error"]["traceback"]
    assert 'raise ValueError(f"length must be positive, got {L}")' in tb, \
        f"the source of line 7 is shown under its frame: {tb}"
