"""A study re-run on a new version of its function, and two studies compared point by
point (docs/api.md#studies): POST /studies/{id}/rerun, GET /studies/{a}/diff/{b}."""

import pytest

import harness
from harness import assert_problem, error_paths, expect_status
from studyutil import all_results, create_study, wait_study

V1 = '''\
def main(x: float, k: float) -> dict:
    return {"y": 2 * x, "k": k}
'''
# Version 2 changes y by 10 % from x = 2 on.
V2 = V1.replace("2 * x,", "2 * x * (1.1 if x >= 2 else 1),")


@pytest.fixture(scope="module")
def fn(api):
    f = api.create_function("alice", harness.Api.unique("rerun"), V1)
    expect_status(api.put("alice", f"/functions/{f['id']}", json={"code": V2}), 200)
    return f


@pytest.fixture(scope="module")
def first(api, fn):
    s = create_study(api, "alice", {
        "name": "sweep", "target": {"function": fn["id"], "version": 1}, "fixed": {"k": 5},
        "design": {"type": "grid", "params": {"x": [1, 2, 3]}}, "outputs": ["result.y", "result.k"]})
    s = wait_study(api, "alice", s["id"])
    assert s["status"] == "completed", s
    return s


def rerun(api, sid, body=None, user="alice"):
    return api.post(user, f"/studies/{sid}/rerun", json=body if body is not None else {}, timeout=120)


def test_rerun_on_the_latest_version_and_the_comparison(api, fn, first):
    r = rerun(api, first["id"])
    expect_status(r, 201)
    second = r.json()
    assert second["id"] != first["id"]
    assert second["target"]["version"] == 2, second["target"]
    assert second["fixed"] == {"k": 5}
    assert second["outputs"] == ["result.y", "result.k"]
    assert second["progress"]["total"] == 3
    assert wait_study(api, "alice", second["id"])["status"] == "completed"

    d = api.get("alice", f"/studies/{first['id']}/diff/{second['id']}")
    expect_status(d, 200)
    d = d.json()
    assert d["a"] == first["id"] and d["b"] == second["id"]
    assert d["only_in_a"] == [] and d["only_in_b"] == []
    assert len(d["points"]) == 3
    by_x = {p["inputs"]["x"]: p["outputs"] for p in d["points"]}
    assert by_x[1]["result.y"] == {"a": 2, "b": 2, "abs_diff": 0, "rel_diff": 0}
    three = by_x[3]["result.y"]
    assert three["a"] == 6 and three["b"] == pytest.approx(6.6)
    assert three["abs_diff"] == pytest.approx(0.6)
    assert three["rel_diff"] == pytest.approx(0.6 / 6.6)
    assert d["summary"]["result.y"]["max_rel_diff"] == pytest.approx(0.1 / 1.1)
    assert d["summary"]["result.y"]["different"] == 2
    assert d["summary"]["result.k"] == {"max_abs_diff": 0, "max_rel_diff": 0, "different": 0}


def test_rerun_on_a_chosen_version_is_identical(api, first):
    r = rerun(api, first["id"], {"version": 1})
    expect_status(r, 201)
    again = r.json()
    assert again["target"]["version"] == 1
    wait_study(api, "alice", again["id"])
    d = api.get("alice", f"/studies/{first['id']}/diff/{again['id']}").json()
    assert d["summary"]["result.y"]["max_rel_diff"] == 0
    assert d["summary"]["result.y"]["different"] == 0


def test_points_missing_on_either_side(api, fn, first):
    other = create_study(api, "alice", {
        "target": {"function": fn["id"], "version": 1}, "fixed": {"k": 5},
        "design": {"type": "grid", "params": {"x": [3, 4]}}, "outputs": ["result.y"]})
    wait_study(api, "alice", other["id"])
    d = api.get("alice", f"/studies/{first['id']}/diff/{other['id']}").json()
    assert sorted(p["x"] for p in d["only_in_a"]) == [1, 2]
    assert [p["x"] for p in d["only_in_b"]] == [4]
    assert [p["inputs"]["x"] for p in d["points"]] == [3]
    assert d["points"][0]["outputs"]["result.y"]["rel_diff"] == 0
    # result.k is not an output of the second study: no value there
    assert d["points"][0]["outputs"]["result.k"]["b"] is None


@pytest.mark.parametrize("design", [
    {"type": "grid", "params": {"x": [3, 1, 2], "k": [7, 5]}},
    {"type": "lhs", "params": {"x": {"min": 0, "max": 4}, "k": {"min": 1, "max": 2}}, "count": 5, "seed": 11},
], ids=["grid", "lhs"])
def test_a_rerun_keeps_the_design_and_its_points(api, fn, design):
    """The re-run shows the original's design (a grid stays a grid, not a list of its
    points), and runs the same points in the same order."""
    s = create_study(api, "alice", {"target": {"function": fn["id"], "version": 1}, "design": design,
                                    "outputs": ["result.y"]})
    s = wait_study(api, "alice", s["id"])
    r = rerun(api, s["id"])
    expect_status(r, 201)
    again = r.json()
    assert again["design"] == s["design"] == design
    assert again["target"]["version"] == 2
    wait_study(api, "alice", again["id"])
    before = [(it["index"], it["inputs"]) for it in all_results(api, "alice", s["id"])]
    after = [(it["index"], it["inputs"]) for it in all_results(api, "alice", again["id"])]
    assert len(before) == (6 if design["type"] == "grid" else 5)
    assert after == before


def test_a_rerun_of_a_list_keeps_its_points(api, fn):
    points = [{"x": 2, "k": 1}, {"x": 0.5, "k": 3}, {"x": 1, "k": 2}]
    s = create_study(api, "alice", {"target": {"function": fn["id"], "version": 1},
                                    "design": {"type": "list", "points": points}})
    assert s["design"] == {"type": "list", "count": 3}
    r = rerun(api, s["id"])
    expect_status(r, 201)
    again = r.json()
    assert again["design"] == {"type": "list", "count": 3}
    wait_study(api, "alice", again["id"])
    assert [it["inputs"] for it in all_results(api, "alice", again["id"])] == points


def test_bad_reruns_and_strangers(api, first):
    p = assert_problem(rerun(api, first["id"], {"version": 0}), 422)
    assert error_paths(p) == ["version"]
    p = assert_problem(rerun(api, first["id"], {"versoin": 2}), 422)
    assert error_paths(p) == ["versoin"]
    assert_problem(rerun(api, first["id"], {"version": 9}), 404)
    # a study is its owner's alone
    assert_problem(rerun(api, first["id"], user="bob"), 404)
    assert_problem(api.get("bob", f"/studies/{first['id']}/diff/{first['id']}"), 404)
    assert_problem(api.get("alice", f"/studies/{first['id']}/diff/not-a-study"), 404)
