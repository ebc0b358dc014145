"""Checks (docs/functions.md#checks): a function returns named pass/fail criteria under
its result's "checks", or declares them with `from mecapy import check`; the task shows
each with its utilisation (value / limit) and verdict (utilisation <= 1), and a study's
results carry the governing check of each point (the highest utilisation) as columns,
with the units of its columns in the CSV header."""
import pytest

from harness import expect_status
from studyutil import all_results, create_study, results_csv, wait_study

RETURNED = '''\
def main(sigma: float = 182e6):
    return {"stress": sigma, "checks": [
        {"name": "bending stress", "value": sigma, "limit": 235e6, "unit": "Pa"},
        {"name": "deflection", "value": 12.0, "limit": 10.0, "unit": "mm"},
        {"name": "no limit", "value": 1.0, "limit": 0},
        "not a check",
    ]}
'''

DECLARED = '''\
from typing import Annotated, TypedDict

from mecapy import check


class Result(TypedDict):
    stress: Annotated[float, "MPa"]
    checks: list


def main(F: Annotated[float, "kN"], A: Annotated[float, "mm^2"] = 1000.0) -> Result:
    stress = F * 1e3 / A
    u = check("axial stress", stress, 235.0, "MPa")
    check("buckling", stress, 150.0)
    return {"stress": stress, "u": u}
'''


def test_checks_returned_in_the_result(api, fname):
    f = api.create_function("alice", fname, RETURNED)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "completed", t
    checks = {c["name"]: c for c in t["checks"]}
    assert set(checks) == {"bending stress", "deflection", "no limit"}, t["checks"]
    b = checks["bending stress"]
    assert b["value"] == 182e6 and b["limit"] == 235e6 and b["unit"] == "Pa"
    assert b["utilisation"] == pytest.approx(182 / 235, rel=1e-12) and b["passed"] is True
    d = checks["deflection"]
    assert d["utilisation"] == pytest.approx(1.2) and d["passed"] is False
    n = checks["no limit"]
    assert n["utilisation"] is None and n["passed"] is False and n["unit"] is None
    # the result itself is unchanged
    assert len(t["result"]["checks"]) == 4


def test_checks_declared_with_mecapy_check(api, fname):
    f = api.create_function("alice", fname, DECLARED)
    assert f["output_schema"]["properties"]["stress"]["x-unit"] == "MPa"
    t = api.execute("alice", f["id"], {"F": 200})
    assert t["status"] == "completed", t
    assert [c["name"] for c in t["checks"]] == ["axial stress", "buckling"]
    axial, buckling = t["checks"]
    assert axial == {"name": "axial stress", "value": 200.0, "limit": 235.0, "unit": "MPa",
                     "utilisation": pytest.approx(200 / 235, rel=1e-12), "passed": True}
    assert buckling["passed"] is False and buckling["unit"] is None
    assert t["result"]["u"] == pytest.approx(200 / 235)
    assert t["result"]["checks"][0]["name"] == "axial stress"


def test_no_checks_is_an_empty_list(api, fname):
    f = api.create_function("alice", fname, "def main():\n    return 1\n")
    t = api.execute("alice", f["id"], {})
    assert t["checks"] == [] and t["result"] == 1


def test_check_needs_a_dict_result(api, fname):
    code = "from mecapy import check\n\ndef main():\n    check('x', 1, 2)\n    return 3\n"
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "failed", t
    assert "dict" in t["error"]["message"], t["error"]


def test_check_refuses_bad_arguments(api, fname):
    code = "from mecapy import check\n\ndef main():\n    check('x', 'a lot', 2)\n    return {}\n"
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "failed" and "number" in t["error"]["message"], t


def test_study_results_carry_the_governing_check_and_units(api, fname):
    f = api.create_function("alice", fname, DECLARED)
    s = create_study(api, "alice", {
        "name": "checks", "target": {"function": f["name"]}, "fixed": {"A": "10 cm^2"},
        "design": {"type": "grid", "params": {"F": [100, 200, 300]}},
        "outputs": ["result.stress"], "concurrency": 2})
    done = wait_study(api, "alice", s["id"])
    assert done["status"] == "completed", done
    items = all_results(api, "alice", s["id"])
    assert [it["inputs"]["A"] for it in items] == [1000.0] * 3  # "10 cm^2" in mm^2
    gov = [(it["outputs"]["check.governing"], it["outputs"]["check.passed"]) for it in items]
    # 100 kN / 1000 mm^2 = 100 MPa: axial 0.43, buckling 0.67; 200 MPa: buckling 1.33 fails;
    # 300 MPa: axial 1.28, buckling 2.0
    assert gov == [("buckling", True), ("buckling", False), ("buckling", False)], gov
    assert items[0]["outputs"]["check.utilisation"] == pytest.approx(100 / 150, rel=1e-12)
    r = api.get("alice", f"/studies/{s['id']}/results")
    expect_status(r, 200)
    assert r.json()["units"] == {"F": "kN", "A": "mm^2", "result.stress": "MPa"}, r.json()
    rows = results_csv(api, "alice", s["id"])
    assert rows[0] == ["index", "F [kN]", "A [mm^2]", "result.stress [MPa]", "check.governing",
                       "check.utilisation", "check.passed", "status", "error"], rows[0]
    assert rows[1][4] == "buckling" and rows[1][6] == "true", rows[1]


def test_study_points_are_converted_and_a_wrong_dimension_is_refused(api, fname):
    f = api.create_function("alice", fname, DECLARED)
    r = api.post("alice", "/studies", json={
        "name": "bad", "target": {"function": f["name"]}, "fixed": {"A": "3 kg"},
        "design": {"type": "grid", "params": {"F": [1, 2]}}, "outputs": ["result.stress"]})
    assert r.status_code == 422, r.text
    assert any(e["path"].endswith("A") and "3 kg is a mass; A is an area (mm^2)" == e["message"]
               for e in r.json()["errors"]), r.json()
    r = api.post("alice", "/studies", json={
        "name": "bad2", "target": {"function": f["name"]},
        "design": {"type": "list", "points": [{"F": "1 kN"}, {"F": "2 m"}]}, "outputs": ["result.stress"]})
    assert r.status_code == 422, r.text
    assert "2 m is a length; F is a force (kN)" in r.text, r.json()
