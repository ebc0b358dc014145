"""Units as part of the schema (docs/functions.md#units): a parameter annotated
Annotated[float, "m"] (or documented "L: length [m]") carries "x-unit" and "x-dimension";
a TypedDict return annotation gives the function an "output_schema"; an unknown unit is
refused at upload with its line; inputs given as quantities ("2.5 ft", {"value", "unit"})
are converted to the declared unit before the call, the task keeps both, and a wrong
dimension is a 422 naming the field, the unit given and the dimension expected."""
import pytest

from harness import assert_problem, expect_status

BEAM = '''\
from typing import Annotated, TypedDict


class Result(TypedDict):
    deflection: Annotated[float, "mm"]
    L_seen: float
    checks: list


def main(L: Annotated[float, "m"], F: Annotated[float, "kN"], T: Annotated[float, "degC"] = 20.0,
         n: int = 1, E=210e9, I=8.0e-6) -> Result:
    """Deflection of a cantilever.

    Args:
        L: length of the beam
        F: load at the tip
        E: Young's modulus [Pa]
        I: second moment of area [m^4]
        n: a count [not a unit]
    """
    d = F * 1e3 * L ** 3 / (3 * E * I)
    return {"deflection": d * 1e3, "L_seen": L, "T_seen": T, "checks": []}
'''


@pytest.fixture(scope="module")
def beam(api):
    return api.create_function("alice", api.unique("beam-units"), BEAM)


def test_schema_carries_units_and_dimensions(beam):
    props = beam["input_schema"]["properties"]
    assert {k: props["L"][k] for k in ("type", "x-unit", "x-dimension")} == \
        {"type": "number", "x-unit": "m", "x-dimension": "length"}
    assert props["F"]["x-unit"] == "kN" and props["F"]["x-dimension"] == "force"
    assert props["T"]["x-unit"] == "degC" and props["T"]["x-dimension"] == "temperature"
    # the docstring form
    assert props["E"]["x-unit"] == "Pa" and props["E"]["x-dimension"] == "pressure"
    assert props["I"]["x-unit"] == "m^4" and props["I"]["x-dimension"] == "second moment of area"
    # a bracket that names no unit stays text
    assert "x-unit" not in props["n"], props["n"]
    out = beam["output_schema"]
    assert out["properties"]["deflection"] == {"type": "number", "x-unit": "mm", "x-dimension": "length"}
    assert "x-unit" not in out["properties"]["L_seen"]


def test_function_get_shows_output_schema(api, beam):
    r = api.get("alice", f"/functions/{beam['id']}")
    expect_status(r, 200)
    assert r.json()["output_schema"]["properties"]["deflection"]["x-unit"] == "mm"


def test_unknown_unit_is_refused_at_upload_with_its_line(api, fname):
    code = 'from typing import Annotated\n\n\ndef main(L: Annotated[float, "furlongz"]):\n    return L\n'
    r = api.post("alice", "/functions", json={"name": fname, "code": code})
    p = assert_problem(r, 422)
    errs = [e for e in p["errors"] if e.get("path") == "code"]
    assert errs and errs[0]["line"] == 4 and "furlongz" in errs[0]["message"], p


def test_unknown_unit_in_a_result_field_is_refused(api, fname):
    code = ('from typing import Annotated, TypedDict\n\n\nclass R(TypedDict):\n'
            '    x: Annotated[float, "parsecz"]\n\n\ndef main() -> R:\n    return {"x": 1}\n')
    p = assert_problem(api.post("alice", "/functions", json={"name": fname, "code": code}), 422)
    assert any(e.get("line") == 5 and "parsecz" in e["message"] for e in p["errors"]), p


@pytest.mark.parametrize("given, expected", [
    (2, 2.0),
    (2.5, 2.5),
    ("2000 mm", 2.0),
    ("2000mm", 2.0),
    ({"value": 2000, "unit": "mm"}, 2.0),
    ("10 ft", 3.048),
    ({"value": 0.0025, "unit": "km"}, 2.5),
    ("78.74015748031496 in", 2.0),
])
def test_quantities_are_converted_to_the_declared_unit(api, beam, given, expected):
    t = api.execute("alice", beam["id"], {"L": given, "F": 1})
    assert t["status"] == "completed", t
    assert t["inputs"]["L"] == pytest.approx(expected, rel=1e-12)
    assert t["result"]["L_seen"] == pytest.approx(expected, rel=1e-12)
    assert t["inputs_given"]["L"] == given


def test_force_and_temperature_offsets(api, beam):
    t = api.execute("alice", beam["id"], {"L": 1, "F": "1000 N", "T": "212 degF"})
    assert t["status"] == "completed", t
    assert t["inputs"]["F"] == pytest.approx(1.0, rel=1e-12)
    assert t["inputs"]["T"] == pytest.approx(100.0, rel=1e-12)
    assert t["result"]["T_seen"] == pytest.approx(100.0, rel=1e-12)
    assert t["inputs_given"] == {"L": 1, "F": "1000 N", "T": "212 degF"}
    t = api.execute("alice", beam["id"], {"L": 1, "F": {"value": 224.8089430997105, "unit": "lbf"},
                                          "T": {"value": 293.15, "unit": "K"}})
    assert t["inputs"]["F"] == pytest.approx(1.0, rel=1e-9)
    assert t["inputs"]["T"] == pytest.approx(20.0, rel=1e-12)


def test_wrong_dimension_is_a_422_at_the_field(api, beam):
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": "3 kg", "F": 1}), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert errs["inputs.L"] == "3 kg is a mass; L is a length (m)", p
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": 1, "F": {"value": 3, "unit": "MPa"}}), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert errs["inputs.F"] == "3 MPa is a pressure; F is a force (kN)", p
    # every bad field in one answer, each once
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": "3 kg", "F": 1, "n": "two"}), 422)
    paths = [e["path"] for e in p["errors"]]
    assert sorted(paths) == ["inputs.L", "inputs.n"], p


def test_unknown_unit_and_bad_quantity_are_422(api, beam):
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": "3 blorbs", "F": 1}), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert "unknown unit" in errs["inputs.L"] and "blorbs" in errs["inputs.L"], p
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": "long", "F": 1}), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert "quantity" in errs["inputs.L"], p
    p = assert_problem(api.execute_raw("alice", beam["id"], {"L": {"value": "x", "unit": "m"}, "F": 1}), 422)
    assert "inputs.L" in {e["path"] for e in p["errors"]}, p


def test_integer_parameter_with_a_unit_stays_an_integer(api, fname):
    code = ('from typing import Annotated\n\n\ndef main(n: Annotated[int, "mm"]):\n'
            '    return {"n": n, "is_int": isinstance(n, int)}\n')
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {"n": "2 m"})
    assert t["status"] == "completed", t
    assert t["result"] == {"n": 2000, "is_int": True}


# ---- workflows: edges check dimensions at save and convert when the node runs

SPAN = '''\
from typing import Annotated, TypedDict


class Out(TypedDict):
    span: Annotated[float, "mm"]
    stress: Annotated[float, "MPa"]


def main(L: Annotated[float, "m"]) -> Out:
    return {"span": L * 1000.0, "stress": 100.0}
'''

USE = '''\
from typing import Annotated


def main(L: Annotated[float, "m"]):
    return {"L": L}
'''


def _wf_body(api, span, use, path):
    return {"name": api.unique("wf-units"),
            "nodes": [{"id": "a", "function": span["name"], "inputs": {"L": {"param": "L"}}},
                      {"id": "b", "function": use["name"], "inputs": {"L": {"from": "a", "path": path}}}],
            "outputs": {"L": {"from": "b", "path": "L"}}}


def _run(api, wf, inputs):
    """A run of wf with these inputs, once it has ended; it must have completed."""
    r = api.post("alice", f"/workflows/{wf['id']}/execute", params={"wait": "30"},
                 json={"inputs": inputs}, timeout=60)
    expect_status(r, 200, 202)
    run = r.json()
    for _ in range(60):
        if run["finished_at"] is not None:
            break
        run = expect_status(api.get("alice", f"/workflow-runs/{run['id']}", params={"wait": "5"}), 200).json()
    assert run["status"] == "completed", run
    return run


def test_workflow_edge_of_another_dimension_is_refused_at_save(api):
    span = api.create_function("alice", api.unique("span"), SPAN)
    use = api.create_function("alice", api.unique("use"), USE)
    p = assert_problem(api.post("alice", "/workflows", json=_wf_body(api, span, use, "stress")), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert errs["nodes[1].inputs.L"] == \
        'node "a" gives stress in MPa (a pressure); L is a length (m)', p


def test_workflow_edge_converts_compatible_units_and_params_take_quantities(api):
    span = api.create_function("alice", api.unique("span"), SPAN)
    use = api.create_function("alice", api.unique("use"), USE)
    r = api.post("alice", "/workflows", json=_wf_body(api, span, use, "span"))
    expect_status(r, 201)
    wf = r.json()
    assert wf["input_schema"]["properties"]["L"]["x-unit"] == "m"
    run = _run(api, wf, {"L": "2500 mm"})
    # a's span is 2500 mm; b reads it in m
    assert run["outputs"]["L"] == pytest.approx(2.5, rel=1e-12), run
    p = assert_problem(api.post("alice", f"/workflows/{wf['id']}/execute",
                                json={"inputs": {"L": "3 kg"}}), 422)
    assert {e["path"]: e["message"] for e in p["errors"]}["inputs.L"] == "3 kg is a mass; L is a length (m)"


# ---- map elements along an edge: each element's unit is checked at save and converted

SPANS = '''\
from typing import Annotated, TypedDict


class Out(TypedDict):
    spans: Annotated[list[float], "mm"]
    stresses: Annotated[list[float], "MPa"]


def main(n: int) -> Out:
    return {"spans": [1000.0 * (i + 1) for i in range(n)], "stresses": [100.0] * n}
'''

HALF = '''\
from typing import Annotated


def main(L: Annotated[float, "m"], k: float = 0.5):
    return {"half": k * L, "L": L}
'''


def _map_body(api, spans, half, path):
    return {"name": api.unique("wf-map-units"),
            "nodes": [{"id": "a", "function": spans["name"], "inputs": {"n": {"param": "n"}}},
                      {"id": "b", "function": half["name"],
                       "map": {"over": {"from": "a", "path": path}, "as": "L"}}],
            "outputs": {"b": {"from": "b"}}}


def test_map_elements_of_another_dimension_are_refused_at_save(api):
    spans = api.create_function("alice", api.unique("spans"), SPANS)
    half = api.create_function("alice", api.unique("half"), HALF)
    assert spans["output_schema"]["properties"]["spans"]["x-unit"] == "mm"
    p = assert_problem(api.post("alice", "/workflows", json=_map_body(api, spans, half, "stresses")), 422)
    errs = {e["path"]: e["message"] for e in p["errors"]}
    assert errs == {"nodes[1].map.over":
                    'node "a" gives stresses (each element) in MPa (a pressure); L is a length (m)'}, p


def test_map_elements_are_converted_one_by_one(api):
    spans = api.create_function("alice", api.unique("spans"), SPANS)
    half = api.create_function("alice", api.unique("half"), HALF)
    r = api.post("alice", "/workflows", json=_map_body(api, spans, half, "spans"))
    expect_status(r, 201)
    wf = r.json()
    run = _run(api, wf, {"n": 3})
    # a gives [1000, 2000, 3000] mm; each element reaches b in m
    got = run["outputs"]["b"]
    assert [e["L"] for e in got] == pytest.approx([1.0, 2.0, 3.0], rel=1e-12), run
    assert [e["half"] for e in got] == pytest.approx([0.5, 1.0, 1.5], rel=1e-12), run
    # each element's task ran with its value converted
    node = next(n for n in run["nodes"] if n["id"] == "b")
    assert api.task("alice", node["task_ids"][1])["inputs"]["L"] == pytest.approx(2.0)
