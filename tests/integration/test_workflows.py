"""Workflows end to end: definitions validated at save, runs scheduled by the task-end
hook, map nodes, failures that skip only what is downstream, retry from failure,
tenancy, cancel, and a kill -9 of the server mid-run. Backend-agnostic: the same module
runs on the embedded defaults and on PostgreSQL + Redis + S3 (tests/run.sh)."""
import time

import pytest

import harness
from harness import assert_problem, error_paths, expect_status

# The worked example of docs/workflows.md: a cantilever's root moment, the bending stress
# of its section, the safety factor against the yield strength.
CANTILEVER = """\
def main(F: float, L: float) -> dict:
    \"\"\"Root bending moment and tip shear of a cantilever under an end load F at L.\"\"\"
    return {"moment_max": F * L, "shear": F}
"""
BENDING = """\
def main(M: float, W: float) -> dict:
    \"\"\"Bending stress from a moment M and a section modulus W.\"\"\"
    return {"sigma": M / W}
"""
SAFETY = """\
def main(sigma: float, yield_strength: float) -> dict:
    \"\"\"Safety factor against yield.\"\"\"
    return {"safety_factor": yield_strength / sigma, "ok": yield_strength / sigma >= 1.5}
"""
SQUARE = """\
def main(x: float, k: float = 1) -> float:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return k * x * x
"""
ADD = """\
def main(a: float, b: float) -> float:
    return a + b
"""
SLOW = """\
import time

def main(x: float, seconds: float = 1.0) -> float:
    time.sleep(seconds)
    return x
"""


def fn(api, user, prefix, code):
    return api.create_function(user, api.unique(prefix), code)


def push(api, user, body, expect=201):
    r = api.post(user, "/workflows", json=body)
    expect_status(r, expect)
    return r.json()


def run_wf(api, user, wid, inputs, wait=30, params=None, **kw):
    r = api.post(user, f"/workflows/{wid}/execute", params={"wait": str(wait), **(params or {})},
                 json={"inputs": inputs}, timeout=wait + 30, **kw)
    expect_status(r, 200, 202)
    return r.json()


def wait_run(api, user, rid, timeout=90):
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"run {rid} did not end in {timeout} s: {api.get(user, f'/workflow-runs/{rid}').text}")
        w = max(1, min(10, int(left)))
        r = api.get(user, f"/workflow-runs/{rid}", params={"wait": str(w)}, timeout=w + 30)
        expect_status(r, 200)
        run = r.json()
        if run["finished_at"] is not None:
            return run


def node(run, nid):
    for n in run["nodes"]:
        if n["id"] == nid:
            return n
    raise AssertionError(f"no node {nid} in {run}")


def beam_chain(api, user="alice"):
    beam = fn(api, user, "cantilever", CANTILEVER)
    stress = fn(api, user, "bending-stress", BENDING)
    safety = fn(api, user, "safety", SAFETY)
    body = {
        "name": api.unique("beam-check"),
        "description": "cantilever -> bending stress -> safety factor",
        "nodes": [
            {"id": "beam", "function": beam["name"],
             "inputs": {"F": {"param": "F"}, "L": {"param": "L"}}},
            {"id": "stress", "function": stress["name"],
             "inputs": {"M": {"from": "beam", "path": "moment_max"}, "W": 1.2e-4}},
            {"id": "safety", "function": safety["id"],
             "inputs": {"sigma": {"from": "stress", "path": "sigma"},
                        "yield_strength": {"param": "fy"}}},
        ],
        "outputs": {"sigma": {"from": "stress", "path": "sigma"},
                    "safety_factor": {"from": "safety", "path": "safety_factor"}},
    }
    return push(api, user, body)


def test_beam_stress_safety_chain(api):
    wf = beam_chain(api)
    assert wf["version"] == 1
    # the input schema is derived from the parameters, typed by the functions' schemas
    props = wf["input_schema"]["properties"]
    assert set(props) == {"F", "L", "fy"}, wf["input_schema"]
    run = run_wf(api, "alice", wf["id"], {"F": 1000, "L": 2, "fy": 235e6})
    run = wait_run(api, "alice", run["id"]) if run["finished_at"] is None else run
    assert run["status"] == "completed", run
    M = 1000 * 2
    sigma = M / 1.2e-4
    assert run["outputs"]["sigma"] == pytest.approx(sigma, rel=1e-12)
    assert run["outputs"]["safety_factor"] == pytest.approx(235e6 / sigma, rel=1e-12)
    assert [n["id"] for n in run["nodes"]] == ["beam", "stress", "safety"]
    for n in run["nodes"]:
        assert n["status"] == "completed" and n["task_id"] and n["started_at"] and n["finished_at"], n
        assert n["error"] is None and n["skipped_reason"] is None, n
    # each node is an ordinary task of the run's owner that names its run and node
    t = api.task("alice", node(run, "stress")["task_id"])
    assert t["workflow_run_id"] == run["id"] and t["node_id"] == "stress", t
    assert t["inputs"] == {"M": 2000, "W": 1.2e-4}, t
    assert t["result"]["sigma"] == pytest.approx(sigma)
    # the runs of the workflow are listed
    r = expect_status(api.get("alice", "/workflow-runs", params={"workflow_id": wf["id"]}), 200)
    assert [x["id"] for x in r.json()["items"]] == [run["id"]]
    # by name, too
    r = expect_status(api.get("alice", f"/workflows/{wf['name']}"), 200)
    assert r.json()["id"] == wf["id"]


def test_diamond_branches_run_in_parallel(api):
    slow = fn(api, "alice", "slow", SLOW)
    add = fn(api, "alice", "add", ADD)
    wf = push(api, "alice", {
        "name": api.unique("diamond"),
        "nodes": [
            {"id": "top", "function": slow["name"], "inputs": {"x": {"param": "x"}, "seconds": 0}},
            {"id": "left", "function": slow["name"], "inputs": {"x": {"from": "top"}, "seconds": 1.5}},
            {"id": "right", "function": slow["name"], "inputs": {"x": {"from": "top"}, "seconds": 1.5}},
            {"id": "join", "function": add["name"],
             "inputs": {"a": {"from": "left"}, "b": {"from": "right"}}},
        ],
    })
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"x": 21}, wait=0)["id"])
    assert run["status"] == "completed", run
    assert run["outputs"] == {"join": 42}, run
    left, right = node(run, "left"), node(run, "right")
    # both branches started before either ended: they ran side by side
    assert left["started_at"] <= right["finished_at"] and right["started_at"] <= left["finished_at"], run
    assert node(run, "join")["started_at"] >= max(left["finished_at"], right["finished_at"]), run


def test_cycle_refused_naming_its_nodes(api):
    add = fn(api, "alice", "add", ADD)
    r = api.post("alice", "/workflows", json={
        "name": api.unique("cycle"),
        "nodes": [
            {"id": "a", "function": add["name"], "inputs": {"a": {"from": "c"}, "b": 1}},
            {"id": "b", "function": add["name"], "inputs": {"a": {"from": "a"}, "b": 1}},
            {"id": "c", "function": add["name"], "inputs": {"a": {"from": "b"}, "b": 1}},
            {"id": "d", "function": add["name"], "inputs": {"a": 1, "b": 1}},
        ],
    })
    p = assert_problem(r, 422)
    msgs = " ".join(e["message"] for e in p["errors"])
    assert "cycle" in msgs and all(n in msgs for n in ("a", "b", "c")), p
    assert "d" not in msgs.replace("cycle", ""), p


def test_every_problem_listed_with_its_path(api):
    add = fn(api, "alice", "add", ADD)
    r = api.post("alice", "/workflows", json={
        "name": api.unique("bad"),
        "visibility": "everyone",
        "nodes": [
            {"id": "one", "function": "no-such-function", "inputs": {"a": 1}},
            {"id": "two", "function": add["name"], "inputs": {"a": {"from": "ghost"}, "b": "text"}},
        ],
        "outputs": {"x": {"from": "nowhere"}},
    })
    p = assert_problem(r, 422)
    paths = error_paths(p)
    for want in ("visibility", "nodes[0].function", "nodes[1].inputs.a", "nodes[1].inputs.b", "outputs.x"):
        assert any(x.startswith(want) for x in paths), (want, paths)
    # nothing was stored
    r = expect_status(api.get("alice", "/workflows", params={"name": "bad"}), 200)
    assert r.json()["items"] == []


def test_map_with_skip_failures(api):
    sq = fn(api, "alice", "square", SQUARE)
    wf = push(api, "alice", {
        "name": api.unique("squares"),
        "nodes": [{"id": "each", "function": sq["name"],
                   "map": {"over": {"param": "xs"}, "as": "x", "concurrency": 4, "skip_failures": True},
                   "inputs": {"k": 2}}],
        "outputs": {"squares": {"from": "each"}},
    })
    xs = list(range(20))
    xs[5], xs[13] = -5, -13
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"xs": xs}, wait=0)["id"])
    assert run["status"] == "completed", run
    want = [None if x < 0 else 2 * x * x for x in xs]
    assert run["outputs"]["squares"] == want, run
    each = node(run, "each")
    assert len(each["task_ids"]) == 20 and all(each["task_ids"]), each
    errs = each["element_errors"]
    assert [e["index"] for e in errs] == [5, 13], errs
    assert "negative input -5" in str(errs[0]["error"]), errs
    t = api.task("alice", each["task_ids"][7])
    assert t["node_id"] == "each" and t["element_index"] == 7 and t["inputs"] == {"x": 7, "k": 2}, t


def failing_chain(api):
    """a -> b -> c, and x independent; b fails for a negative input."""
    sq = fn(api, "alice", "square", SQUARE)
    add = fn(api, "alice", "add", ADD)
    return push(api, "alice", {
        "name": api.unique("fails"),
        "nodes": [
            {"id": "a", "function": add["name"], "inputs": {"a": {"param": "v"}, "b": 0}},
            {"id": "b", "function": sq["name"], "inputs": {"x": {"from": "a"}}},
            {"id": "c", "function": add["name"], "inputs": {"a": {"from": "b"}, "b": 1}},
            {"id": "x", "function": add["name"], "inputs": {"a": 2, "b": 3}},
        ],
    })


def test_failed_node_skips_only_downstream(api):
    wf = failing_chain(api)
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"v": -1}, wait=0)["id"])
    assert run["status"] == "failed", run
    assert node(run, "a")["status"] == "completed"
    assert node(run, "x")["status"] == "completed"
    b = node(run, "b")
    assert b["status"] == "failed" and "negative input" in str(b["error"]), b
    c = node(run, "c")
    assert c["status"] == "skipped" and "b" in c["skipped_reason"] and c["task_id"] is None, c
    assert run["error"] and "b" in str(run["error"]), run


def test_retry_reruns_only_what_failed(api):
    sq = fn(api, "alice", "square", SQUARE)
    add = fn(api, "alice", "add", ADD)
    # b fails while its input is negative: a PUT of the function cannot change a pinned
    # version, so the retry gets a second chance through a map's failing element instead,
    # and through a node whose failure came from a parameter that the retry keeps. What
    # the test observes is which tasks are made again.
    wf = push(api, "alice", {
        "name": api.unique("retry"),
        "nodes": [
            {"id": "a", "function": add["name"], "inputs": {"a": {"param": "v"}, "b": 0}},
            {"id": "b", "function": sq["name"], "inputs": {"x": {"from": "a"}}},
            {"id": "c", "function": add["name"], "inputs": {"a": {"from": "b"}, "b": 1}},
            {"id": "x", "function": add["name"], "inputs": {"a": 2, "b": 3}},
        ],
    })
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"v": -1}, wait=0)["id"])
    assert run["status"] == "failed", run
    before = {n["id"]: n["task_id"] for n in run["nodes"]}
    r = api.get("alice", "/tasks", params={"limit": 100})
    tasks_before = [t["id"] for t in r.json()["items"]]

    r = api.post("alice", f"/workflow-runs/{run['id']}/retry")
    expect_status(r, 202)
    run2 = wait_run(api, "alice", run["id"])
    after = {n["id"]: n["task_id"] for n in run2["nodes"]}
    # a and x completed: their tasks are the same, none was made again for them
    assert after["a"] == before["a"] and after["x"] == before["x"], (before, after)
    assert after["b"] != before["b"] and after["b"], (before, after)
    assert node(run2, "b")["status"] == "failed" and node(run2, "c")["status"] == "skipped", run2
    r = api.get("alice", "/tasks", params={"limit": 100})
    new = [t for t in r.json()["items"] if t["id"] not in tasks_before]
    assert [t["id"] for t in new] == [after["b"]], new
    # nothing completed is re-run: a run that completed has nothing to retry
    ok = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"v": 3}, wait=0)["id"])
    assert ok["status"] == "completed" and ok["outputs"] == {"c": 10, "x": 5}, ok
    assert_problem(api.post("alice", f"/workflow-runs/{ok['id']}/retry"), 409)


def test_retry_map_reruns_failed_elements_only(api):
    sq = fn(api, "alice", "square", SQUARE)
    wf = push(api, "alice", {
        "name": api.unique("mapretry"),
        "nodes": [{"id": "each", "function": sq["name"],
                   "map": {"over": {"param": "xs"}, "as": "x", "concurrency": 8}}],
    })
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"xs": [1, -2, 3]}, wait=0)["id"])
    assert run["status"] == "failed", run
    ids = node(run, "each")["task_ids"]
    expect_status(api.post("alice", f"/workflow-runs/{run['id']}/retry"), 202)
    run2 = wait_run(api, "alice", run["id"])
    ids2 = node(run2, "each")["task_ids"]
    assert ids2[0] == ids[0] and ids2[2] == ids[2] and ids2[1] != ids[1], (ids, ids2)


def test_tenancy(api):
    wf = beam_chain(api, "alice")
    # carol (another company) and bob (alice's colleague; the workflow is private) see nothing
    for other in ("carol", "bob"):
        assert_problem(api.get(other, f"/workflows/{wf['id']}"), 404)
        assert_problem(api.post(other, f"/workflows/{wf['id']}/execute", json={"inputs": {}}), 404)
        assert_problem(api.put(other, f"/workflows/{wf['id']}", json={"name": wf["name"], "nodes": []}), 404)
        assert_problem(api.delete(other, f"/workflows/{wf['id']}"), 404)
        r = expect_status(api.get(other, "/workflows"), 200)
        assert wf["id"] not in [w["id"] for w in r.json()["items"]]
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"F": 10, "L": 1, "fy": 1e6})["id"])
    assert run["status"] == "completed"
    assert_problem(api.get("carol", f"/workflow-runs/{run['id']}"), 404)
    assert_problem(api.post("carol", f"/workflow-runs/{run['id']}/cancel"), 404)
    assert_problem(api.post("carol", f"/workflow-runs/{run['id']}/retry"), 404)
    assert_problem(api.get("carol", f"/tasks/{node(run, 'beam')['task_id']}"), 404)
    # the owner sees each node's task
    t = api.task("alice", node(run, "beam")["task_id"])
    assert t["workflow_run_id"] == run["id"]
    # a workflow may not call another user's private function (the resolver says so)
    carol_fn = fn(api, "carol", "secret", ADD)
    r = api.post("alice", "/workflows", json={
        "name": api.unique("steal"), "nodes": [{"id": "n", "function": carol_fn["id"], "inputs": {"a": 1, "b": 2}}]})
    assert "nodes[0].function" in error_paths(assert_problem(r, 422))


def test_new_version_and_delete(api):
    add = fn(api, "alice", "add", ADD)
    body = {"name": api.unique("versions"), "nodes": [{"id": "n", "function": add["name"],
                                                       "inputs": {"a": 1, "b": {"param": "b"}}}]}
    wf = push(api, "alice", body)
    body["nodes"][0]["inputs"]["a"] = 100
    r = expect_status(api.put("alice", f"/workflows/{wf['id']}", json=body), 200)
    assert r.json()["version"] == 2
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"b": 1})["id"])
    assert run["version"] == 2 and run["outputs"] == {"n": 101}, run
    r = api.post("alice", f"/workflows/{wf['id']}/execute", params={"version": "1", "wait": "30"},
                 json={"inputs": {"b": 1}}, timeout=60)
    run1 = wait_run(api, "alice", expect_status(r, 200, 202).json()["id"])
    assert run1["version"] == 1 and run1["outputs"] == {"n": 2}, run1
    # bad inputs: 422 under inputs
    p = assert_problem(api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"b": "x"}}), 422)
    assert any(x.startswith("inputs") for x in error_paths(p)), p
    expect_status(api.delete("alice", f"/workflows/{wf['id']}"), 204)
    assert_problem(api.get("alice", f"/workflows/{wf['id']}"), 404)
    # its runs stay readable
    expect_status(api.get("alice", f"/workflow-runs/{run['id']}"), 200)


def test_cancel(api):
    slow = fn(api, "alice", "slow", SLOW)
    wf = push(api, "alice", {
        "name": api.unique("cancel"),
        "nodes": [
            {"id": "first", "function": slow["name"], "inputs": {"x": 1, "seconds": 30}},
            {"id": "then", "function": slow["name"], "inputs": {"x": {"from": "first"}, "seconds": 0}},
        ],
    })
    run = run_wf(api, "alice", wf["id"], {}, wait=0)
    tid = node(run, "first")["task_id"]
    assert tid
    api.wait_task("alice", tid, timeout=30, statuses={"running"})
    r = expect_status(api.post("alice", f"/workflow-runs/{run['id']}/cancel"), 200)
    assert r.json()["status"] == "cancelled"
    run = wait_run(api, "alice", run["id"], timeout=30)
    assert run["status"] == "cancelled", run
    assert node(run, "then")["status"] == "cancelled" and node(run, "then")["task_id"] is None, run
    assert api.task("alice", tid)["status"] == "cancelled"
    assert_problem(api.post("alice", f"/workflow-runs/{run['id']}/cancel"), 409)


def test_idempotent_execute(api):
    add = fn(api, "alice", "add", ADD)
    wf = push(api, "alice", {"name": api.unique("idem"), "nodes": [
        {"id": "n", "function": add["name"], "inputs": {"a": {"param": "a"}, "b": 1}}]})
    key = {"Idempotency-Key": api.unique("k")}
    r1 = expect_status(api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"a": 1}},
                                headers=key), 200, 202).json()
    r2 = expect_status(api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"a": 1}},
                                headers=key), 200, 202).json()
    assert r1["id"] == r2["id"]
    assert_problem(api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"a": 2}},
                            headers=key), 409)


# --- the result cache of a workflow version ----------------------------------------------

COUNTED = """\
import uuid

def main(x: float) -> dict:
    return {"y": 2 * x, "run": uuid.uuid4().hex}
"""


def cached_workflow(api, user="alice", visibility="private", cache=True):
    """counted -> add: outputs y = 2x + 1 and the counted node's random run id, which
    changes each time the chain really runs."""
    counted = fn(api, user, "counted", COUNTED) if visibility == "private" else \
        api.create_function(user, api.unique("counted"), COUNTED, visibility=visibility)
    add = fn(api, user, "add", ADD) if visibility == "private" else \
        api.create_function(user, api.unique("add"), ADD, visibility=visibility)
    body = {"name": api.unique("cached"), "cache": cache, "visibility": visibility,
            "nodes": [{"id": "c", "function": counted["id"], "inputs": {"x": {"param": "x"}}},
                      {"id": "a", "function": add["id"],
                       "inputs": {"a": {"from": "c", "path": "y"}, "b": 1}}],
            "outputs": {"y": {"from": "a"}, "run": {"from": "c", "path": "run"}}}
    wf = push(api, user, body)
    assert wf["cache"] is cache, wf
    wf["_body"] = body
    return wf


def ended_run(api, user, wid, inputs, **kw):
    run = run_wf(api, user, wid, inputs, **kw)
    return wait_run(api, user, run["id"]) if run["finished_at"] is None else run


def test_cache_hit_marked_same_outputs_no_task(api):
    wf = cached_workflow(api)
    first = ended_run(api, "alice", wf["id"], {"x": 3})
    assert first["status"] == "completed" and first["cached_from"] is None, first
    assert first["outputs"]["y"] == 7
    # the same inputs, 3.0 for 3 (canonical JSON): answered from the first run, without running
    hit = run_wf(api, "alice", wf["id"], {"x": 3.0}, wait=0)
    assert hit["status"] == "completed" and hit["finished_at"] is not None, hit
    assert hit["cached_from"] == first["id"] and hit["id"] != first["id"], hit
    assert hit["outputs"] == first["outputs"], (hit, first)  # the same random run id: not recomputed
    # no node task was made for the hit: its nodes name the tasks that computed them
    assert [n["task_id"] for n in hit["nodes"]] == [n["task_id"] for n in first["nodes"]]
    assert expect_status(api.get("alice", f"/workflow-runs/{hit['id']}"), 200).json()["cached_from"] == first["id"]
    # other inputs run
    other = ended_run(api, "alice", wf["id"], {"x": 4})
    assert other["cached_from"] is None and other["outputs"]["y"] == 9
    # a hit is not a source: the next hit names the run that computed
    again = ended_run(api, "alice", wf["id"], {"x": 3})
    assert again["cached_from"] == first["id"]


def test_cache_refresh_recomputes(api):
    wf = cached_workflow(api)
    first = ended_run(api, "alice", wf["id"], {"x": 1})
    fresh = ended_run(api, "alice", wf["id"], {"x": 1}, params={"cache": "refresh"})
    assert fresh["cached_from"] is None and fresh["outputs"]["run"] != first["outputs"]["run"], fresh
    hit = ended_run(api, "alice", wf["id"], {"x": 1})
    assert hit["cached_from"] == fresh["id"], hit  # the newest computed run serves
    r = api.post("alice", f"/workflows/{wf['id']}/execute", params={"cache": "bogus"}, json={"inputs": {"x": 1}})
    assert "cache" in error_paths(assert_problem(r, 400))


def test_cache_off_by_default_and_per_version(api):
    wf = cached_workflow(api, cache=False)
    a = ended_run(api, "alice", wf["id"], {"x": 2})
    b = ended_run(api, "alice", wf["id"], {"x": 2})
    assert a["cached_from"] is None and b["cached_from"] is None and a["outputs"]["run"] != b["outputs"]["run"]
    # a new version with "cache": true does not reuse the runs of another version
    put = dict(wf["_body"], cache=True)
    v2 = expect_status(api.put("alice", f"/workflows/{wf['id']}", json=put), 200).json()
    assert v2["version"] == 2 and v2["cache"] is True, v2
    c = ended_run(api, "alice", wf["id"], {"x": 2})
    assert c["version"] == 2 and c["cached_from"] is None
    d = ended_run(api, "alice", wf["id"], {"x": 2})
    assert d["cached_from"] == c["id"]
    e = ended_run(api, "alice", wf["id"], {"x": 2}, params={"version": "1"})
    assert e["version"] == 1 and e["cached_from"] is None


def test_cache_never_crosses_owners(api):
    # alice's workflow and functions are visible to her company: bob may run them, and
    # gets his own computation, never alice's result
    wf = cached_workflow(api, visibility="company")
    a = ended_run(api, "alice", wf["id"], {"x": 5})
    assert a["status"] == "completed", a
    b = ended_run(api, "bob", wf["id"], {"x": 5})
    assert b["status"] == "completed" and b["cached_from"] is None, b
    assert b["outputs"]["run"] != a["outputs"]["run"]
    b2 = ended_run(api, "bob", wf["id"], {"x": 5})
    assert b2["cached_from"] == b["id"], b2
    a2 = ended_run(api, "alice", wf["id"], {"x": 5})
    assert a2["cached_from"] == a["id"], a2
    # carol (another company) sees neither the workflow nor the runs
    assert_problem(api.post("carol", f"/workflows/{wf['id']}/execute", json={"inputs": {"x": 5}}), 404)
    assert_problem(api.get("carol", f"/workflow-runs/{a2['id']}"), 404)


def node_cache_workflow(api, user="alice", visibility="private"):
    """A workflow (itself not cached) whose nodes call a function version declared
    "cache": c = counted(x), a = add(c.y, 1) downstream of it, and m = counted over each
    element of xs. counted returns a random run id, which changes each time it really runs."""
    counted = api.create_function(user, api.unique("counted"), COUNTED, cache=True, visibility=visibility)
    add = api.create_function(user, api.unique("add"), ADD, visibility=visibility)
    return counted, push(api, user, {"name": api.unique("node-cache"), "visibility": visibility, "nodes": [
        {"id": "c", "function": counted["id"], "inputs": {"x": {"param": "x"}}},
        {"id": "a", "function": add["id"], "inputs": {"a": {"from": "c", "path": "y"}, "b": 1}},
        {"id": "m", "function": counted["id"], "map": {"over": {"param": "xs"}, "as": "x"}, "inputs": {}}],
        "outputs": {"y": {"from": "a"}, "run": {"from": "c", "path": "run"}, "each": {"from": "m"}}})


def node_tasks(api, user, run):
    """{node id: its task} and the map node's element tasks, as the API shows them."""
    one = {n["id"]: api.task(user, n["task_id"]) for n in run["nodes"] if n["task_id"]}
    return one, [api.task(user, t) for t in node(run, "m")["task_ids"]]


def test_cached_function_node_answered_from_the_cache(api):
    # a node of a function version declared "cache" is answered as a plain call is: the
    # second run's node tasks are copies of the first run's (cached_from), never run
    # (attempts 0, the same random run ids), and the downstream node gets their results
    counted, wf = node_cache_workflow(api)
    inputs = {"x": 6, "xs": [1, 2, 3]}
    first = ended_run(api, "alice", wf["id"], inputs)
    assert first["status"] == "completed" and first["outputs"]["y"] == 13, first
    one1, els1 = node_tasks(api, "alice", first)
    assert one1["c"]["cached_from"] is None and one1["c"]["attempts"] >= 1, one1["c"]
    assert all(t["cached_from"] is None for t in els1), els1
    second = ended_run(api, "alice", wf["id"], {"x": 6.0, "xs": [1.0, 2, 3]})  # canonical inputs agree
    assert second["status"] == "completed" and second["cached_from"] is None, second
    assert second["outputs"] == first["outputs"], (second, first)  # the same random ids: not recomputed
    one2, els2 = node_tasks(api, "alice", second)
    c = one2["c"]
    assert c["id"] != one1["c"]["id"] and c["cached_from"] == one1["c"]["id"], c
    assert c["attempts"] == 0 and c["status"] == "completed" and c["result"] == one1["c"]["result"], c
    assert c["workflow_run_id"] == second["id"] and c["node_id"] == "c", c
    assert [t["cached_from"] for t in els2] == [t["id"] for t in els1], els2
    assert [t["element_index"] for t in els2] == [0, 1, 2] and all(t["attempts"] == 0 for t in els2), els2
    # add is not cached: it ran again, on the cached result
    assert one2["a"]["cached_from"] is None and one2["a"]["attempts"] >= 1, one2["a"]
    # a plain call of the same inputs is answered from the computed node task, and a
    # node from a plain call's task
    hit = api.execute("alice", counted["id"], {"x": 6})
    assert hit["cached_from"] == one1["c"]["id"] and hit["result"] == one1["c"]["result"], hit
    plain = api.execute("alice", counted["id"], {"x": 41})
    assert plain["cached_from"] is None
    third = ended_run(api, "alice", wf["id"], {"x": 41, "xs": []})
    assert node_tasks(api, "alice", third)[0]["c"]["cached_from"] == plain["id"], third


def test_cached_function_node_refresh_recomputes(api):
    # ?cache=refresh on execute reaches the nodes: they run, and the newest computed task
    # serves the next run
    _, wf = node_cache_workflow(api)
    inputs = {"x": 2, "xs": [5]}
    first = ended_run(api, "alice", wf["id"], inputs)
    fresh = ended_run(api, "alice", wf["id"], inputs, params={"cache": "refresh"})
    assert fresh["status"] == "completed", fresh
    assert fresh["outputs"]["run"] != first["outputs"]["run"], (fresh, first)
    assert fresh["outputs"]["each"][0]["run"] != first["outputs"]["each"][0]["run"]
    one, els = node_tasks(api, "alice", fresh)
    assert one["c"]["cached_from"] is None and els[0]["cached_from"] is None
    after = ended_run(api, "alice", wf["id"], inputs)
    assert node_tasks(api, "alice", after)[0]["c"]["cached_from"] == one["c"]["id"]
    assert after["outputs"] == fresh["outputs"]


def test_cached_function_node_never_crosses_owners(api):
    # alice's cached function and workflow are visible to her company: bob's run of them
    # computes for bob, and only bob's own tasks serve his next run
    _, wf = node_cache_workflow(api, visibility="company")
    inputs = {"x": 9, "xs": [4]}
    a = ended_run(api, "alice", wf["id"], inputs)
    b = ended_run(api, "bob", wf["id"], inputs)
    assert b["status"] == "completed" and b["outputs"]["run"] != a["outputs"]["run"], (a, b)
    one_b, els_b = node_tasks(api, "bob", b)
    assert one_b["c"]["cached_from"] is None and els_b[0]["cached_from"] is None
    b2 = ended_run(api, "bob", wf["id"], inputs)
    assert node_tasks(api, "bob", b2)[0]["c"]["cached_from"] == one_b["c"]["id"]
    a2 = ended_run(api, "alice", wf["id"], inputs)
    assert a2["outputs"] == a["outputs"]
    assert node_tasks(api, "alice", a2)[0]["c"]["cached_from"] == node_tasks(api, "alice", a)[0]["c"]["id"]


# --- durability: its own server, one worker, killed mid-run -------------------------------

@pytest.fixture(scope="module")
def crash_stack():
    s = harness.start_stack("workflow-crash", workers=1)
    yield s
    s.close()


@pytest.mark.crash
@pytest.mark.slow
def test_kill9_mid_run_then_restart(crash_stack):
    api = crash_stack.api
    slow = fn(api, "alice", "slow", SLOW)
    wf = push(api, "alice", {
        "name": api.unique("durable"),
        "nodes": [
            {"id": "one", "function": slow["name"], "inputs": {"x": {"param": "x"}, "seconds": 0.2}},
            {"id": "two", "function": slow["name"], "inputs": {"x": {"from": "one"}, "seconds": 3}},
            {"id": "three", "function": slow["name"], "inputs": {"x": {"from": "two"}, "seconds": 0.2}},
        ],
    })
    run = run_wf(api, "alice", wf["id"], {"x": 7}, wait=0)
    # wait until "two" runs (so "one" completed), then kill the server mid-node
    deadline = time.monotonic() + 60
    while True:
        cur = expect_status(api.get("alice", f"/workflow-runs/{run['id']}"), 200).json()
        if node(cur, "two")["task_id"]:
            t = api.task("alice", node(cur, "two")["task_id"])
            if t["status"] == "running":
                break
        assert time.monotonic() < deadline, cur
        time.sleep(0.05)
    one_task = node(cur, "one")["task_id"]
    crash_stack.server.kill9()
    crash_stack.server._sweep_group()
    crash_stack.server.start()
    expect_status(api.get("alice", "/me"), 200)
    done = wait_run(api, "alice", run["id"], timeout=120)
    assert done["status"] == "completed" and done["outputs"] == {"three": 7}, done
    # "one" completed before the kill: its task is the same, and no other was made for it
    assert node(done, "one")["task_id"] == one_task
    r = api.get("alice", "/tasks", params={"function_id": slow["id"], "limit": 100})
    tasks = r.json()["items"]
    assert len(tasks) == 3, tasks  # one task per node: "two" ran again in place, not anew
    for n in done["nodes"]:
        assert api.task("alice", n["task_id"])["status"] == "completed"


def test_hostile_definitions_and_inputs(api):
    add = fn(api, "alice", "add", ADD)
    sq = fn(api, "alice", "square", SQUARE)
    # more nodes than the limit: refused at save, naming the limit
    nodes = [{"id": f"n{i}", "function": add["name"], "inputs": {"a": 1, "b": 1}} for i in range(201)]
    p = assert_problem(api.post("alice", "/workflows", json={"name": api.unique("huge"), "nodes": nodes}), 422)
    assert "nodes" in error_paths(p) and "200" in str(p), p
    # a reference path deeper than the limit
    deep = ".".join(["k"] * 40)
    p = assert_problem(api.post("alice", "/workflows", json={"name": api.unique("deep"), "nodes": [
        {"id": "a", "function": add["name"], "inputs": {"a": 1, "b": 1}},
        {"id": "b", "function": add["name"], "inputs": {"a": {"from": "a", "path": deep}, "b": 1}}]}), 422)
    assert any(x.startswith("nodes[1].inputs.a") for x in error_paths(p)), p
    # a map over more elements than a map node may have: the node fails with the limit
    # named, nothing runs, and the server answers as before
    wf = push(api, "alice", {"name": api.unique("bigmap"), "nodes": [
        {"id": "each", "function": sq["name"], "map": {"over": {"param": "xs"}, "as": "x"}}]})
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"xs": [1] * 10001}, wait=10)["id"])
    each = node(run, "each")
    assert run["status"] == "failed" and each["status"] == "failed", run
    assert "10000" in str(each["error"]) and each["task_ids"] == [], each
    expect_status(api.get(None, "/healthz"), 200)


def test_hostile_nesting_and_a_long_chain_of_references(api):
    add = fn(api, "alice", "add", ADD)
    # a literal input nested deeper than a JSON body may be: refused at the edge, with a
    # problem, not a crash
    nested = "[" * 100000 + "]" * 100000
    body = ('{"name": "%s", "nodes": [{"id": "a", "function": "%s", "inputs": {"a": %s, "b": 1}}]}'
            % (api.unique("nested"), add["name"], nested))
    r = api.post("alice", "/workflows", data=body, headers={"Content-Type": "application/json"})
    assert "depth" in assert_problem(r, 400)["detail"]
    r = api.post("alice", "/studies", data='{"fixed": %s}' % ('{"k": ' * 50000 + "1" + "}" * 50000),
                 headers={"Content-Type": "application/json"})
    assert "depth" in assert_problem(r, 400)["detail"]
    # inputs nested deeper than a call may take: refused at execute, naming them
    anyf = api.create_function("alice", api.unique("any"), "def main(x):\n    return 1\n", cache=True)
    wf = push(api, "alice", {"name": api.unique("deep-input"), "nodes": [
        {"id": "a", "function": anyf["id"], "inputs": {"x": {"param": "x"}}}]})
    def nest(n):
        v = 1
        for _ in range(n):
            v = [v]
        return v
    p = assert_problem(api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"x": nest(100)}}), 422)
    assert "inputs" in error_paths(p) and "64" in str(p), p
    # nested within the limit, through a cached node (the canonical inputs of its cache
    # key are made from them): answered, twice, the second time from the cache
    runs = [ended_run(api, "alice", wf["id"], {"x": nest(40)}) for _ in range(2)]
    assert [r["status"] for r in runs] == ["completed", "completed"], runs
    assert api.task("alice", node(runs[1], "a")["task_id"])["cached_from"] == node(runs[0], "a")["task_id"]
    # a chain of 60 nodes, each reading the one before: it runs in order and adds up;
    # its function caches, so a second run is answered node after node within the
    # execute itself (one step feeding the next, not a recursion)
    cadd = api.create_function("alice", api.unique("cadd"), ADD, cache=True)
    nodes = [{"id": "n0", "function": cadd["id"], "inputs": {"a": {"param": "x"}, "b": 1}}]
    nodes += [{"id": f"n{i}", "function": cadd["id"], "inputs": {"a": {"from": f"n{i - 1}"}, "b": 1}}
              for i in range(1, 60)]
    wf = push(api, "alice", {"name": api.unique("long-chain"), "nodes": nodes,
                             "outputs": {"end": {"from": "n59"}}})
    run = ended_run(api, "alice", wf["id"], {"x": 0.5}, wait=60)
    assert run["status"] == "completed" and run["outputs"]["end"] == 60.5, run
    starts = [n["started_at"] for n in run["nodes"]]
    assert starts == sorted(starts), starts
    again = run_wf(api, "alice", wf["id"], {"x": 0.5}, wait=0)
    assert again["status"] == "completed" and again["outputs"]["end"] == 60.5, again
    tasks = [api.task("alice", n["task_id"]) for n in again["nodes"]]
    assert [t["cached_from"] for t in tasks] == [n["task_id"] for n in run["nodes"]]
    expect_status(api.get(None, "/healthz"), 200)


@pytest.mark.crash
def test_restart_records_an_end_the_run_missed(crash_stack):
    """The window between a task's end and the run's step (a kill there): the task has
    ended, the run still says it runs. Made here by writing that state into the store of
    a stopped server; on restart the end is recorded, the run completes, and no node's
    task is made again."""
    if harness.scaleout_requested():
        pytest.skip("writes the embedded SQLite store directly")
    import json
    import sqlite3
    api = crash_stack.api
    add = fn(api, "alice", "add", ADD)
    wf = push(api, "alice", {"name": api.unique("missed"), "nodes": [
        {"id": "a", "function": add["name"], "inputs": {"a": {"param": "v"}, "b": 1}},
        {"id": "b", "function": add["name"], "inputs": {"a": {"from": "a"}, "b": 1}}]})
    run = wait_run(api, "alice", run_wf(api, "alice", wf["id"], {"v": 1})["id"])
    assert run["status"] == "completed" and run["outputs"] == {"b": 3}, run
    tasks_before = {n["id"]: n["task_id"] for n in run["nodes"]}

    crash_stack.server.stop()
    db = sqlite3.connect(crash_stack.data_dir / "mecapy.db")
    (state_text,) = db.execute("SELECT state FROM workflow_runs WHERE id = ?", (run["id"],)).fetchone()
    state = json.loads(state_text)
    b = state["nodes"]["b"]
    b["status"] = "running"
    b.pop("result", None)
    b.pop("finished_at", None)
    state["status"] = "running"
    state.pop("outputs", None)
    db.execute("UPDATE workflow_runs SET state = ?, status = 'running', outputs = NULL, finished_at = 0 "
               "WHERE id = ?", (json.dumps(state), run["id"]))
    db.commit()
    db.close()
    crash_stack.server.start()

    again = wait_run(api, "alice", run["id"], timeout=60)
    assert again["status"] == "completed" and again["outputs"] == {"b": 3}, again
    assert {n["id"]: n["task_id"] for n in again["nodes"]} == tasks_before
    r = api.get("alice", "/tasks", params={"function_id": add["id"], "limit": 100})
    assert sorted(t["id"] for t in r.json()["items"]) == sorted(tasks_before.values())


def test_layout_is_kept_with_the_version(api):
    """An editor's node positions (`layout`) come back with the workflow; a bad one is a 422 at its node."""
    sq = api.create_function("bob", api.unique("layout-sq"), "def main(x: float) -> float:\n    return x * x\n")
    body = {"name": api.unique("layout-wf"), "nodes": [{"id": "a", "function": sq["id"], "inputs": {"x": 2}}],
            "layout": {"a": {"x": 40, "y": 12.5}}}
    wf = expect_status(api.post("bob", "/workflows", json=body), 201).json()
    got = expect_status(api.get("bob", f"/workflows/{wf['id']}"), 200).json()
    assert got["layout"] == {"a": {"x": 40, "y": 12.5}}
    bad = dict(body, name=api.unique("layout-bad"), layout={"b": {"x": 1, "y": 2}})
    r = api.post("bob", "/workflows", json=bad)
    assert r.status_code == 422, r.text
    assert any(e["path"] == "layout.b" for e in r.json()["errors"]), r.text
