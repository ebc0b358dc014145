"""The solver environment (docs/functions.md, "Finite elements: the solver environment"):
a function that declares "solvers" runs CalculiX and Gmsh in its own sandbox through
mecapy.solvers; the results match CalculiX's own reference results; the documented
cantilever example runs as written.

Needs calculix-ccx, gmsh, python3-gmsh and calculix-ccx-test (scripts/install-deps.sh test).
Run: MECAPY_BIN=build/mecapy python3 -m pytest -q tests/integration/test_solvers.py
"""
import gzip
import re
from pathlib import Path

import pytest

from harness import assert_problem, error_paths, expect_status

REPO = Path(__file__).resolve().parents[2]
CCX_TESTS = Path("/usr/share/doc/calculix-ccx-test/examples/test")

# A handful of CalculiX's own test decks, fast on 2 cores (~0.1 s each), one per kind of
# element: 20-node solids (reduced and full integration), 8-node solids, a truss, beams,
# plane stress, springs.
CASES = ["achtel2", "achtel29", "beam8p", "beam20p", "truss", "b31", "planestress3", "spring1"]

RUN_DECK = """\
from mecapy.solvers import calculix

def main(deck: str, name: str) -> dict:
    r = calculix(deck, name=name, keep=("frd",))
    return {"blocks": r["blocks"], "frd": r["frd"], "artifacts": r["artifacts"],
            "displacements": r["results"].get("displacements")}
"""


def read_maybe_gz(base: Path) -> str:
    for p in (base, base.with_name(base.name + ".gz")):
        if p.exists():
            return gzip.open(p, "rt").read() if p.suffix == ".gz" else p.read_text()
    pytest.skip(f"{base} is not installed (calculix-ccx-test)")


NUM = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")
HEAD = re.compile(r"^(.*?)\s*(?:\((.*)\))?\s+for set\s+(\S+)\s+and time\s+(\S+)\s*$")


def reference_blocks(text: str) -> list[dict]:
    """The reference .dat parsed here, independently of the guest's parser."""
    blocks, cur = [], None
    for line in text.splitlines():
        toks = line.split()
        if not toks:
            continue
        if all(NUM.match(t) for t in toks):
            if cur is not None:
                cur["rows"].append([float(t) for t in toks])
            continue
        m = HEAD.match(line.strip())
        cur = {"name": m.group(1).strip(), "set": m.group(3), "rows": []} if m else None
        if cur:
            blocks.append(cur)
    return blocks


def assert_matches_reference(case: str, got: list[dict], ref: list[dict]) -> None:
    """Within the reference's printed precision: 7 significant digits (one unit of the
    last, 1e-6 relative), plus 1e-9 of the block's largest value where the reference
    prints round-off (1e-14 beside values of order 1)."""
    assert [(b["name"], b["set"]) for b in got] == [(b["name"], b["set"]) for b in ref], case
    for g, r in zip(got, ref):
        assert len(g["rows"]) == len(r["rows"]), (case, g["name"])
        scale = max((abs(v) for row in r["rows"] for v in row[1:]), default=0.0)
        for grow, rrow in zip(g["rows"], r["rows"]):
            assert len(grow) == len(rrow), (case, g["name"], grow, rrow)
            for a, b in zip(grow, rrow):
                assert abs(a - b) <= 1e-6 * abs(b) + 1e-9 * scale, \
                    f"{case} {g['name']}: {a} != reference {b} (row {rrow})"


@pytest.fixture(scope="module")
def runner(api):
    return api.create_function("alice", api.unique("ccx-runner"), RUN_DECK, solvers=["calculix"],
                               limits={"timeout_s": 60})


def test_solvers_field_is_stored_returned_and_validated(api, fname):
    f = api.create_function("alice", fname, "def main():\n    return 1\n", solvers=["calculix", "gmsh"])
    assert f["solvers"] == ["calculix", "gmsh"], f
    got = api.get("alice", f"/functions/{f['id']}").json()
    assert got["solvers"] == ["calculix", "gmsh"] and got["version"] == 1, got
    listed = [x for x in api.get("alice", "/functions", params={"name": fname}).json()["items"]]
    assert listed and listed[0]["solvers"] == ["calculix", "gmsh"], listed
    # A new version keeps them unless the body says; [] removes them.
    r = api.put("alice", f"/functions/{f['id']}", json={"code": "def main():\n    return 2\n"})
    expect_status(r, 200)
    assert r.json()["solvers"] == ["calculix", "gmsh"] and r.json()["version"] == 2, r.json()
    r = api.put("alice", f"/functions/{f['id']}", json={"solvers": []})
    expect_status(r, 200)
    assert r.json()["solvers"] == [] and r.json()["version"] == 3, r.json()
    plain = api.create_function("alice", fname + "-plain", "def main():\n    return 1\n")
    assert plain["solvers"] == [], plain

    for body, path in ((["calculix", "abaqus"], "solvers[1]"), (["gmsh", "gmsh"], "solvers[1]"),
                       ("calculix", "solvers"), ([3], "solvers[0]")):
        r = api.post("alice", "/functions", json={"name": fname + "-bad", "code": "def main():\n    return 1\n",
                                                 "solvers": body})
        p = assert_problem(r, 422)
        assert path in error_paths(p), (body, p)
    r = api.put("alice", f"/functions/{f['id']}", json={"solvers": ["nastran"]})
    assert "solvers[0]" in error_paths(assert_problem(r, 422))


@pytest.mark.parametrize("case", CASES)
def test_calculix_test_suite_case_matches_its_reference(api, runner, case):
    deck = read_maybe_gz(CCX_TESTS / f"{case}.inp")
    ref = reference_blocks(read_maybe_gz(CCX_TESTS / f"{case}.dat.ref"))
    t = api.execute("alice", runner["id"], {"deck": deck, "name": case}, wait=60, timeout=120)
    assert t["status"] == "completed", t
    res = t["result"]
    assert ref, f"no result blocks in the reference of {case}"
    assert_matches_reference(case, res["blocks"], ref)
    # The solver's .frd is an artifact of the call.
    assert res["frd"] == f"{case}.frd" and res["artifacts"] == [f"{case}.frd"], res
    arts = {a["name"]: a for a in t["artifacts"]}
    assert set(arts) == {f"{case}.frd"}, t["artifacts"]
    r = api.get("alice", arts[f"{case}.frd"]["url"])
    expect_status(r, 200)
    assert r.content.startswith(b"    1C"), r.content[:40]  # the frd header record


def test_calculix_reports_the_solvers_error(api, runner):
    t = api.execute("alice", runner["id"], {"deck": "*NODE\n1,0,0,0\n*STEP\n*STATIC\n*BOGUS CARD\n*END STEP\n",
                                            "name": "broken"}, wait=60, timeout=120)
    assert t["status"] == "failed", t
    assert t["error"]["type"] == "SolverError", t["error"]
    assert "ccx" in t["error"]["message"], t["error"]


def test_helpers_refuse_without_declared_solvers(api, fname):
    f = api.create_function("alice", fname, RUN_DECK)
    t = api.execute("alice", f["id"], {"deck": "*NODE\n1,0,0,0\n", "name": "x"}, wait=60, timeout=120)
    assert t["status"] == "failed", t
    assert t["error"]["type"] == "SolverUnavailable", t["error"]
    assert "solvers" in t["error"]["message"], t["error"]


GMSH_GEO = """\
from mecapy.solvers import gmsh_mesh

def main() -> dict:
    geo = "SetFactory(\\"OpenCASCADE\\");\\nBox(1) = {0, 0, 0, 10, 1, 1};\\nMesh.MeshSizeMax = 0.5;\\n"
    inp = gmsh_mesh(geo, dim=3, format="inp")
    return {"nodes": inp.count("\\n") , "has_elements": "*ELEMENT" in inp.upper()}
"""


def test_gmsh_binary_meshes_a_geo_script(api, fname):
    f = api.create_function("alice", fname, GMSH_GEO, solvers=["gmsh"], limits={"timeout_s": 60})
    t = api.execute("alice", f["id"], {}, wait=60, timeout=120)
    assert t["status"] == "completed", t
    assert t["result"]["has_elements"] and t["result"]["nodes"] > 50, t["result"]


def documented_example() -> str:
    """The cantilever example of docs/functions.md, exactly as printed there."""
    text = (REPO / "docs" / "functions.md").read_text()
    m = re.search(r"<!-- example: cantilever -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/functions.md lost its cantilever example"
    return m.group(1)


def test_documented_cantilever_matches_beam_theory(api, fname):
    f = api.create_function("alice", fname, documented_example(), solvers=["calculix"],
                            limits={"timeout_s": 120, "memory_mb": 1024})
    inputs = {"length": 100.0, "height": 10.0, "width": 10.0, "force": 100.0, "E": 210000.0}
    t = api.execute("alice", f["id"], inputs, wait=120, timeout=180)
    assert t["status"] == "completed", t
    r = t["result"]
    # Euler-Bernoulli: F L^3 / (3 E I), I = w h^3 / 12.
    beam = 100.0 * 100.0 ** 3 / (3 * 210000.0 * 10.0 * 10.0 ** 3 / 12)
    assert abs(r["beam_theory"] - beam) < 1e-9 * beam, r
    # Second-order tetrahedra on a slender beam: within 3 % (shear adds a little).
    assert abs(r["tip_deflection"] - beam) / beam < 0.03, r
    assert r["frd"] in {a["name"] for a in t["artifacts"]}, t["artifacts"]
