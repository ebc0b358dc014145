"""Studies whose target is a workflow (docs/studies.md): each point is a workflow run,
its outputs read from the run's outputs (`outputs.sigma`); progress, retry of failed
points, tenancy. Backend-agnostic, as test_studies.py."""

import pytest

import harness
from harness import assert_problem, error_paths, expect_status
from studyutil import (COUNTED, all_results, create_study, kill9_once_completed, results_csv,
                       wait_none_running, wait_study)

CANTILEVER = '''\
def main(F: float, L: float) -> dict:
    """Root bending moment of a cantilever under an end load F at L."""
    return {"moment_max": F * L}
'''
BENDING = '''\
def main(M: float, W: float) -> dict:
    """Bending stress from a moment M and a section modulus W."""
    if M < 0:
        raise ValueError(f"negative moment {M}")
    return {"sigma": M / W}
'''
W = 1.2e-4


@pytest.fixture(scope="module")
def chain(api):
    beam = api.create_function("alice", harness.Api.unique("cantilever"), CANTILEVER)
    stress = api.create_function("alice", harness.Api.unique("bending"), BENDING)
    r = api.post("alice", "/workflows", json={
        "name": harness.Api.unique("beam-stress"),
        "nodes": [
            {"id": "beam", "function": beam["id"], "inputs": {"F": {"param": "F"}, "L": {"param": "L"}}},
            {"id": "stress", "function": stress["id"],
             "inputs": {"M": {"from": "beam", "path": "moment_max"}, "W": W}}],
        "outputs": {"sigma": {"from": "stress", "path": "sigma"},
                    "M": {"from": "beam", "path": "moment_max"}}})
    expect_status(r, 201)
    return r.json()


def test_grid_3x3_over_a_workflow_csv_matches_formula(api, chain):
    lengths, forces = [1.0, 2.0, 3.0], [100.0, 200.0, 300.0]
    s = create_study(api, "alice", {
        "name": "beam-stress-sweep", "target": {"workflow": chain["name"]},
        "design": {"type": "grid", "params": {"L": lengths, "F": forces}},
        "outputs": ["outputs.sigma", "outputs.M"], "concurrency": 4})
    assert s["target"] == {"workflow_id": chain["id"], "version": 1}, s
    assert s["progress"]["total"] == 9
    done = wait_study(api, "alice", s["id"])
    assert done["status"] == "completed", done
    assert done["progress"] == {"total": 9, "queued": 0, "running": 0, "completed": 9, "failed": 0,
                                "cancelled": 0}, done["progress"]
    rows = results_csv(api, "alice", s["id"])
    header, body = rows[0], rows[1:]
    assert header == ["index", "L", "F", "outputs.sigma", "outputs.M", "status", "error"], header
    assert len(body) == 9
    for i, row in enumerate(body):
        rec = dict(zip(header, row))
        L, F = float(rec["L"]), float(rec["F"])
        assert (L, F) == (lengths[i // 3], forces[i % 3]), (i, rec)
        assert rec["status"] == "completed", rec
        assert float(rec["outputs.sigma"]) == pytest.approx(F * L / W, rel=1e-12)
        assert float(rec["outputs.M"]) == pytest.approx(F * L)
    # each point is a run of the workflow, which names its study and point
    items = all_results(api, "alice", s["id"])
    run = expect_status(api.get("alice", f"/workflow-runs/{items[4]['run_id']}"), 200).json()
    assert run["status"] == "completed" and run["inputs"] == {"L": 2, "F": 200} or run["inputs"]["L"] == 2.0
    assert run["outputs"]["sigma"] == pytest.approx(items[4]["outputs"]["outputs.sigma"])
    assert items[4]["task_id"] is None
    assert run["study_id"] == s["id"] and run["point_index"] == 4, run


def test_failed_points_recorded_and_retry_reruns_only_them(api, chain):
    # F < 0 makes the stress node fail: the run fails, so does the point
    s = create_study(api, "alice", {
        "target": {"workflow": chain["id"]}, "outputs": ["outputs.sigma"],
        "design": {"type": "list", "points": [{"F": 1, "L": 1}, {"F": -2, "L": 1}, {"F": 3, "L": 1}]}})
    done = wait_study(api, "alice", s["id"])
    assert done["progress"]["completed"] == 2 and done["progress"]["failed"] == 1, done
    before = {it["index"]: it for it in all_results(api, "alice", s["id"])}
    assert before[1]["status"] == "failed" and before[1]["error"]["run_id"] == before[1]["run_id"], before[1]
    run = api.get("alice", f"/workflow-runs/{before[1]['run_id']}").json()
    assert run["status"] == "failed" and [n["status"] for n in run["nodes"]] == ["completed", "failed"], run
    r = api.post("alice", f"/studies/{s['id']}/retry")
    expect_status(r, 200)
    assert r.json()["retried"] == 1
    wait_study(api, "alice", s["id"])
    after = {it["index"]: it for it in all_results(api, "alice", s["id"])}
    assert after[0]["run_id"] == before[0]["run_id"] and after[2]["run_id"] == before[2]["run_id"]
    assert after[1]["run_id"] != before[1]["run_id"] and after[1]["status"] == "failed"
    assert after[2]["outputs"]["outputs.sigma"] == pytest.approx(3 / W)
    # paths must read the run's outputs
    p = assert_problem(api.post("alice", "/studies", json={
        "target": {"workflow": chain["id"]}, "outputs": ["result.sigma"],
        "design": {"type": "list", "points": [{"F": 1, "L": 1}]}}), 422)
    assert "outputs[0]" in error_paths(p)
    # points are validated against the workflow's input schema
    p = assert_problem(api.post("alice", "/studies", json={
        "target": {"workflow": chain["id"]},
        "design": {"type": "list", "points": [{"F": "heavy", "L": 1}]}}), 422)


def test_tenancy(api, chain):
    # the workflow is alice's, private: bob and carol may not sweep it, nor see her study
    for other in ("bob", "carol"):
        assert_problem(api.post(other, "/studies", json={
            "target": {"workflow": chain["id"]},
            "design": {"type": "list", "points": [{"F": 1, "L": 1}]}}), 404)
    s = create_study(api, "alice", {
        "target": {"workflow": chain["id"]}, "outputs": ["outputs.sigma"],
        "design": {"type": "list", "points": [{"F": 1, "L": 1}]}})
    wait_study(api, "alice", s["id"])
    [it] = all_results(api, "alice", s["id"])
    for other in ("bob", "carol"):
        assert_problem(api.get(other, f"/studies/{s['id']}/results"), 404)
        assert_problem(api.get(other, f"/workflow-runs/{it['run_id']}"), 404)
    # a name is looked up among the caller's own workflows
    assert_problem(api.post("carol", "/studies", json={
        "target": {"workflow": chain["name"]},
        "design": {"type": "list", "points": [{"F": 1, "L": 1}]}}), 404)


def test_extend_without_rerunning(api, chain):
    s = create_study(api, "alice", {
        "target": {"workflow": chain["id"]}, "outputs": ["outputs.M"],
        "design": {"type": "grid", "params": {"F": [1, 2], "L": [1]}}})
    wait_study(api, "alice", s["id"])
    before = all_results(api, "alice", s["id"])
    r = api.post("alice", f"/studies/{s['id']}/points", json={"points": [{"F": 2.0, "L": 1}, {"F": 5, "L": 2}]},
                 timeout=60)
    expect_status(r, 200)
    assert r.json()["added"] == 1
    done = wait_study(api, "alice", s["id"])
    assert done["progress"]["completed"] == 3, done
    after = all_results(api, "alice", s["id"])
    assert [it["run_id"] for it in after[:2]] == [it["run_id"] for it in before]
    assert [it["outputs"]["outputs.M"] for it in after] == [1, 2, 10]


# --- the result cache: a point is a run, answered as an execute is --------------------------

def counted_workflow(api, user, *, cache_workflow, cache_function, visibility="private"):
    counted = api.create_function(user, harness.Api.unique("counted"), COUNTED, cache=cache_function,
                                  visibility=visibility)
    wf = expect_status(api.post(user, "/workflows", json={
        "name": harness.Api.unique("counted-wf"), "cache": cache_workflow, "visibility": visibility,
        "nodes": [{"id": "c", "function": counted["id"], "inputs": {"x": {"param": "x"}}}],
        "outputs": {"run": {"from": "c", "path": "run"}}}), 201).json()
    return counted, wf


def executed(api, user, wid, inputs):
    r = api.post(user, f"/workflows/{wid}/execute", params={"wait": "30"}, json={"inputs": inputs}, timeout=90)
    run = expect_status(r, 200, 202).json()
    while run["finished_at"] is None:
        run = expect_status(api.get(user, f"/workflow-runs/{run['id']}", params={"wait": "10"}, timeout=60),
                            200).json()
    assert run["status"] == "completed", run
    return run


def point_runs(api, user, body, **kw):
    s = create_study(api, user, body, **kw)
    done = wait_study(api, user, s["id"])
    assert done["progress"]["completed"] == done["progress"]["total"], done
    return [expect_status(api.get(user, f"/workflow-runs/{it['run_id']}"), 200).json()
            for it in all_results(api, user, s["id"])]


def test_points_use_the_workflow_cache(api):
    _, wf = counted_workflow(api, "alice", cache_workflow=True, cache_function=False, visibility="company")
    first = executed(api, "alice", wf["id"], {"x": 1})
    body = {"target": {"workflow": wf["id"]}, "outputs": ["outputs.run"],
            "design": {"type": "list", "points": [{"x": 1.0}, {"x": 2}]}}
    runs = point_runs(api, "alice", body)
    assert runs[0]["cached_from"] == first["id"] and runs[0]["outputs"] == first["outputs"], runs[0]
    assert runs[0]["study_id"] and runs[0]["point_index"] == 0, runs[0]
    assert runs[1]["cached_from"] is None, runs[1]
    # a second study: both answered, the second point from the first study's run; an
    # execute from a study's run
    again = point_runs(api, "alice", body)
    assert [r["cached_from"] for r in again] == [first["id"], runs[1]["id"]], again
    assert executed(api, "alice", wf["id"], {"x": 2})["cached_from"] == runs[1]["id"]
    # ?cache=refresh: every point computed again
    fresh = point_runs(api, "alice", body, params={"cache": "refresh"})
    assert all(r["cached_from"] is None for r in fresh), fresh
    assert fresh[0]["outputs"]["run"] != first["outputs"]["run"]
    # bob may sweep alice's company workflow, and computes his own points
    bobs = point_runs(api, "bob", body)
    assert all(r["cached_from"] is None for r in bobs), bobs
    assert {r["outputs"]["run"] for r in bobs}.isdisjoint({r["outputs"]["run"] for r in runs + fresh})


def test_points_nodes_use_the_function_cache(api):
    # the workflow is not cached, its function is: each point's node is answered from
    # the owner's computed call of the same inputs
    counted, wf = counted_workflow(api, "alice", cache_workflow=False, cache_function=True)
    plain = api.execute("alice", counted["id"], {"x": 5})
    runs = point_runs(api, "alice", {"target": {"workflow": wf["id"]}, "outputs": ["outputs.run"],
                                     "design": {"type": "list", "points": [{"x": 5}, {"x": 6}]}})
    assert [r["cached_from"] for r in runs] == [None, None], runs
    tasks = [api.task("alice", r["nodes"][0]["task_id"]) for r in runs]
    assert tasks[0]["cached_from"] == plain["id"] and tasks[0]["attempts"] == 0, tasks[0]
    assert runs[0]["outputs"]["run"] == plain["result"]["run"]
    assert tasks[1]["cached_from"] is None and tasks[1]["attempts"] >= 1, tasks[1]


def test_points_whose_runs_end_as_they_are_made(api):
    # every node answered from the cache: each point's run ends as it is made, and the
    # study goes on through its work list (200 points, 8 at a time)
    counted, wf = counted_workflow(api, "alice", cache_workflow=False, cache_function=True)
    body = {"target": {"workflow": wf["id"]}, "outputs": ["outputs.run"], "concurrency": 8,
            "design": {"type": "grid", "params": {"x": list(range(200))}}}
    first = create_study(api, "alice", body)
    assert wait_study(api, "alice", first["id"])["progress"]["completed"] == 200
    second = create_study(api, "alice", body)
    done = wait_study(api, "alice", second["id"])
    assert done["status"] == "completed" and done["progress"]["completed"] == 200, done
    a, b = all_results(api, "alice", first["id"]), all_results(api, "alice", second["id"])
    assert [it["outputs"] for it in b] == [it["outputs"] for it in a]
    for it in b[:3] + b[-3:]:
        run = api.get("alice", f"/workflow-runs/{it['run_id']}").json()
        assert api.task("alice", run["nodes"][0]["task_id"])["cached_from"], run


SLOW = '''\
import time

def main(x: float) -> float:
    time.sleep(0.5)
    return x
'''


def test_cancel_cancels_the_running_runs(api):
    slow = api.create_function("alice", harness.Api.unique("slow"), SLOW)
    wf = expect_status(api.post("alice", "/workflows", json={
        "name": harness.Api.unique("slow-wf"),
        "nodes": [{"id": "s", "function": slow["id"], "inputs": {"x": {"param": "x"}}}]}), 201).json()
    s = create_study(api, "alice", {
        "target": {"workflow": wf["id"]}, "concurrency": 1,
        "design": {"type": "grid", "params": {"x": list(range(10))}}})
    c = expect_status(api.post("alice", f"/studies/{s['id']}/cancel"), 200).json()
    assert c["status"] == "cancelled", c
    s2 = wait_none_running(api, "alice", s["id"])
    p = s2["progress"]
    assert p["running"] == 0 and p["completed"] <= 1 and p["cancelled"] >= 9, p
    runs = [it["run_id"] for it in all_results(api, "alice", s["id"]) if it["run_id"]]
    assert len(runs) <= 1
    for rid in runs:
        run = api.get("alice", f"/workflow-runs/{rid}", params={"wait": "20"}, timeout=60).json()
        assert run["status"] in ("cancelled", "completed"), run


# --- durability: its own server, one worker ------------------------------------------------

SLOW_POINT = '''\
import time

def main(i: int) -> dict:
    time.sleep(0.3)
    return {"square": i * i}
'''


@pytest.fixture(scope="module")
def crash_stack():
    s = harness.start_stack("study-workflow-crash", workers=1)
    yield s
    s.close()


def slow_workflow(api):
    fn = api.create_function("alice", harness.Api.unique("slowpoint"), SLOW_POINT)
    r = api.post("alice", "/workflows", json={
        "name": harness.Api.unique("slow-sq"),
        "nodes": [{"id": "sq", "function": fn["id"], "inputs": {"i": {"param": "i"}}}],
        "outputs": {"square": {"from": "sq", "path": "square"}}})
    expect_status(r, 201)
    return fn, r.json()


@pytest.mark.crash
@pytest.mark.slow
def test_kill9_mid_study_then_restart_completes_each_point_once(crash_stack):
    api = crash_stack.api
    fn, wf = slow_workflow(api)
    s = create_study(api, "alice", {
        "target": {"workflow": wf["id"]}, "outputs": ["outputs.square"], "concurrency": 2,
        "design": {"type": "grid", "params": {"i": list(range(10))}}})
    kill9_once_completed(crash_stack, "alice", s["id"], 3)
    done = wait_study(api, "alice", s["id"], timeout=120)
    assert done["status"] == "completed" and done["progress"]["completed"] == 10, done
    items = all_results(api, "alice", s["id"])
    assert [it["outputs"]["outputs.square"] for it in items] == [i * i for i in range(10)]
    # one run per point, one task per run: nothing ran twice as a new run or task
    assert len({it["run_id"] for it in items}) == 10
    r = api.get("alice", "/tasks", params={"function_id": fn["id"], "limit": "200"})
    assert len(r.json()["items"]) == 10, r.json()


@pytest.mark.crash
@pytest.mark.skipif(harness.scaleout_requested(), reason="edits the embedded SQLite store")
def test_recovery_makes_missing_runs_and_records_missed_ends(crash_stack):
    """A process dying between a point's start and its run's creation leaves a started
    point with no run; one dying between a run's end and its study's step leaves a
    started point whose run ended. A restart makes the first run and records the
    second without running it again (made by editing the stopped server's store)."""
    import sqlite3
    import uuid
    api = crash_stack.api
    fn, wf = slow_workflow(api)
    s = create_study(api, "alice", {
        "target": {"workflow": wf["id"]}, "outputs": ["outputs.square"], "concurrency": 2,
        "design": {"type": "grid", "params": {"i": list(range(4))}}})
    wait_study(api, "alice", s["id"])
    before = all_results(api, "alice", s["id"])
    new_run = str(uuid.uuid4())
    crash_stack.server.stop()
    db = sqlite3.connect(str(crash_stack.data_dir / "mecapy.db"))
    with db:
        db.execute("UPDATE study_points SET status = 'started', outputs = NULL"
                   " WHERE study_id = ? AND point_index = 1", (s["id"],))
        db.execute("UPDATE study_points SET status = 'started', outputs = NULL, task_id = ?"
                   " WHERE study_id = ? AND point_index = 2", (new_run, s["id"]))
        db.execute("UPDATE studies SET status = 'running', finished_at = 0, started = 2,"
                   " completed = 2 WHERE id = ?", (s["id"],))
    db.close()
    crash_stack.server.start()
    done = wait_study(api, "alice", s["id"])
    assert done["status"] == "completed" and done["progress"]["completed"] == 4, done
    after = all_results(api, "alice", s["id"])
    assert after[1]["run_id"] == before[1]["run_id"] and after[1]["outputs"] == {"outputs.square": 1}
    assert after[2]["run_id"] == new_run and after[2]["outputs"] == {"outputs.square": 4}
    run = api.get("alice", f"/workflow-runs/{new_run}").json()
    assert run["status"] == "completed" and run["study_id"] == s["id"] and run["point_index"] == 2, run


# --- a study that only groups ---------------------------------------------------------------

ADD = '''\
def main(a: float, b: float) -> float:
    return a + b
'''


def test_group_of_tasks_and_runs(api, chain):
    g = create_study(api, "alice", {"name": "bracket design review", "notes": "runs for the review"})
    assert g["kind"] == "group" and g["status"] == "completed" and g["target"] is None, g
    assert g["progress"]["total"] == 0 and g["members"] == {"task_ids": [], "run_ids": []}, g
    add = api.create_function("alice", harness.Api.unique("add"), ADD)
    t = api.execute("alice", add["id"], {"a": 1, "b": 2})
    r = api.post("alice", f"/workflows/{chain['id']}/execute", params={"wait": "30"},
                 json={"inputs": {"F": 1, "L": 1}}, timeout=60)
    run = expect_status(r, 200, 202).json()
    r = api.post("alice", f"/studies/{g['id']}/members", json={"task_ids": [t["id"]], "run_ids": [run["id"]]})
    out = expect_status(r, 200).json()
    assert out["added"] == 2 and out["members"] == {"task_ids": [t["id"]], "run_ids": [run["id"]]}, out
    # again: nothing new
    r = api.post("alice", f"/studies/{g['id']}/members", json={"task_ids": [t["id"]]})
    assert expect_status(r, 200).json()["added"] == 0
    got = expect_status(api.get("alice", f"/studies/{g['id']}"), 200).json()
    assert got["members"] == {"task_ids": [t["id"]], "run_ids": [run["id"]]} and got["notes"] == "runs for the review"
    # a group has nothing to run
    for verb, body in (("retry", None), ("points", {"points": [{"x": 1}]})):
        assert_problem(api.post("alice", f"/studies/{g['id']}/{verb}", json=body), 409)
    # a sweep's fields need a target and a design
    p = assert_problem(api.post("alice", "/studies", json={"name": "g", "concurrency": 2}), 422)
    assert "concurrency" in error_paths(p)
    p = assert_problem(api.post("alice", f"/studies/{g['id']}/members", json={"task_ids": ["nope"], "x": 1}), 422)
    assert {"task_ids", "x"} <= set(error_paths(p)), p


def test_group_members_are_the_callers_own(api, chain):
    g = create_study(api, "alice", {"name": "mine"})
    add = api.create_function("bob", harness.Api.unique("add"), ADD)
    bobs = api.execute("bob", add["id"], {"a": 1, "b": 1})
    # bob's task (same company) and an unknown run: 404, and nothing is added
    alices = api.execute("alice", api.create_function("alice", harness.Api.unique("add"), ADD)["id"],
                         {"a": 2, "b": 2})
    p = assert_problem(api.post("alice", f"/studies/{g['id']}/members",
                                json={"task_ids": [alices["id"], bobs["id"]]}), 404)
    assert bobs["id"] in p["detail"], p
    assert_problem(api.post("alice", f"/studies/{g['id']}/members",
                            json={"run_ids": ["00000000-0000-4000-8000-000000000000"]}), 404)
    assert api.get("alice", f"/studies/{g['id']}").json()["members"]["task_ids"] == []
    # another user may neither add to nor read alice's group
    for other in ("bob", "carol"):
        assert_problem(api.post(other, f"/studies/{g['id']}/members", json={"task_ids": [bobs["id"]]}), 404)
        assert_problem(api.get(other, f"/studies/{g['id']}"), 404)
