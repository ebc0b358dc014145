"""The base environment: what a function can import with no requirements at all
(docs/functions.md, "What is available by default"): pandas, sympy, pint, openpyxl and
matplotlib beside numpy and scipy, inside the real sandbox of the shared server.

Run: MECAPY_BIN=build/mecapy python3 -m pytest -q tests/integration/test_base_env.py
"""
import io
import struct
import zipfile

from harness import expect_status

PANDAS = """\
import pandas as pd

def main(rows: list) -> dict:
    df = pd.DataFrame(rows, columns=["load", "stress"])
    return {"mean_stress": float(df["stress"].mean()), "n": int(len(df)),
            "max_load": float(df["load"].max()),
            "csv": df.describe().loc[["mean", "max"]].to_csv()}
"""

SYMPY = """\
import sympy as sp

def main(L: float, q: float) -> dict:
    x, EI = sp.symbols("x EI", positive=True)
    # Cantilever under a uniform load q: M(x) = -q (L - x)^2 / 2, w'' = M / EI.
    M = -q * (L - x) ** 2 / 2
    w = sp.integrate(sp.integrate(M / EI, (x, 0, x)), (x, 0, x))
    tip = sp.simplify(w.subs(x, L))
    return {"tip": str(tip), "coefficient": float(sp.nsimplify(tip * EI / (q * L ** 4)))}
"""

PINT = """\
import pint

def main(force_kN: float, area_mm2: float) -> dict:
    u = pint.UnitRegistry()
    stress = (force_kN * u.kilonewton / (area_mm2 * u.millimeter ** 2)).to(u.megapascal)
    return {"MPa": stress.magnitude, "units": str(stress.units)}
"""

OPENPYXL = """\
import io
import openpyxl

def main(values: list) -> dict:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = "results"
    ws.append(["i", "value"])
    for i, v in enumerate(values):
        ws.append([i, v])
    ws["D1"] = "=SUM(B2:B%d)" % (len(values) + 1)
    wb.save("outputs/results.xlsx")
    buf = io.BytesIO()
    wb.save(buf)
    back = openpyxl.load_workbook(io.BytesIO(buf.getvalue()))
    return {"rows": back["results"].max_row, "formula": back["results"]["D1"].value}
"""

PLOT = """\
import matplotlib.pyplot as plt

def main(n: int) -> dict:
    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    xs = list(range(n))
    ax.plot(xs, [x * x for x in xs], label="x^2")
    ax.set_xlabel("x")
    ax.set_title("deflection")
    ax.legend()
    fig.savefig("outputs/plot.png")
    plt.close(fig)
    import matplotlib
    return {"backend": matplotlib.get_backend()}
"""

# What a call sees of matplotlib's font cache before it imports the font manager, and
# whether importing it wrote the cache again (a rebuild rewrites it).
FONT_CACHE = """\
from pathlib import Path

def main() -> dict:
    import matplotlib
    d = Path(matplotlib.get_cachedir())
    before = {p.name: p.stat().st_mtime_ns for p in d.glob("fontlist-*.json")}
    import matplotlib.font_manager as fm
    after = {p.name: p.stat().st_mtime_ns for p in d.glob("fontlist-*.json")}
    return {"cachedir": str(d), "before": before, "after": after,
            "fonts": len(fm.fontManager.ttflist)}
"""


def run(api, fname, code, inputs=None, **fields):
    f = api.create_function("alice", fname, code, **fields)
    t = api.execute("alice", f["id"], inputs or {}, wait=60, timeout=120)
    assert t["status"] == "completed", t
    return f, t


def test_pandas(api, fname):
    _, t = run(api, fname, PANDAS, {"rows": [[1, 10.0], [2, 20.0], [3, 60.0]]})
    r = t["result"]
    assert r["n"] == 3 and r["mean_stress"] == 30.0 and r["max_load"] == 3.0, r
    assert r["csv"].splitlines()[0] == ",load,stress", r


def test_sympy(api, fname):
    _, t = run(api, fname, SYMPY, {"L": 2.0, "q": 3.0})
    # w(L) = -q L^4 / (8 EI)
    assert t["result"]["coefficient"] == -0.125, t["result"]


def test_pint(api, fname):
    _, t = run(api, fname, PINT, {"force_kN": 10.0, "area_mm2": 100.0})
    assert abs(t["result"]["MPa"] - 100.0) < 1e-9, t["result"]
    assert t["result"]["units"] == "megapascal", t["result"]


def test_openpyxl_workbook_is_an_artifact(api, fname):
    _, t = run(api, fname, OPENPYXL, {"values": [1.5, 2.5, 3.0]})
    assert t["result"] == {"rows": 4, "formula": "=SUM(B2:B4)"}, t["result"]
    arts = {a["name"]: a for a in t["artifacts"]}
    assert "results.xlsx" in arts, t["artifacts"]
    r = api.get("alice", arts["results.xlsx"]["url"])
    expect_status(r, 200)
    with zipfile.ZipFile(io.BytesIO(r.content)) as z:  # an .xlsx is a zip
        assert "xl/worksheets/sheet1.xml" in z.namelist(), z.namelist()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:16]
    assert data[12:16] == b"IHDR", data[:32]
    return struct.unpack(">II", data[16:24])


def test_matplotlib_figure_is_a_png_artifact(api, fname):
    _, t = run(api, fname, PLOT, {"n": 20})
    assert t["result"]["backend"].lower() == "agg", t["result"]
    arts = {a["name"]: a for a in t["artifacts"]}
    assert set(arts) == {"plot.png"}, t["artifacts"]
    r = api.get("alice", arts["plot.png"]["url"])
    expect_status(r, 200)
    assert png_size(r.content) == (400, 300), "figsize 4x3 at 100 dpi"
    assert arts["plot.png"]["size"] == len(r.content) > 1000


def test_font_cache_is_not_rebuilt_per_call(api, fname):
    """The zygote builds matplotlib's font list once; every instance starts with it in
    its private cache dir, so no call (not the first, not the next) writes it again."""
    f = api.create_function("alice", fname, FONT_CACHE)
    seen = []
    for _ in range(2):
        t = api.execute("alice", f["id"], {}, wait=60, timeout=120)
        assert t["status"] == "completed", t
        r = t["result"]
        assert r["cachedir"].startswith("/tmp/"), r  # private to the instance
        assert r["before"], f"no font list before the first import: {r}"
        assert r["after"] == r["before"], f"the font list was rewritten (rebuilt): {r}"
        assert r["fonts"] > 0, r
        seen.append(r)
    # per_call: a fresh instance for every call, and still no rebuild.
    g = api.create_function("alice", fname + "-pc", FONT_CACHE, isolation="per_call")
    for _ in range(2):
        t = api.execute("alice", g["id"], {}, wait=60, timeout=120)
        assert t["status"] == "completed", t
        assert t["result"]["before"] and t["result"]["after"] == t["result"]["before"], t["result"]


MESHIO = """\
import meshio
import numpy as np

def main() -> dict:
    points = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    mesh = meshio.Mesh(points, [("tetra", np.array([[0, 1, 2, 3]]))],
                       point_data={"u": np.array([0.0, 0.1, 0.2, 0.3])})
    mesh.write("outputs/tet.vtu")
    back = meshio.read("outputs/tet.vtu")
    return {"points": len(back.points), "cells": [c.type for c in back.cells],
            "u": back.point_data["u"].tolist()}
"""


def test_meshio_writes_a_mesh_artifact(api, fname):
    _, t = run(api, fname, MESHIO)
    assert t["result"] == {"points": 4, "cells": ["tetra"], "u": [0.0, 0.1, 0.2, 0.3]}, t["result"]
    assert [a["name"] for a in t["artifacts"]] == ["tet.vtu"], t["artifacts"]
