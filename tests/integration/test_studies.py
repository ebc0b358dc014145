"""Parameter studies and the result cache (docs/studies.md, docs/functions.md#result-cache).

Runs on the shared embedded server (and, in the scale-out pass of tests/run.sh, on
PostgreSQL + Redis + S3): nothing here depends on the backends."""

import pytest

import harness
from harness import assert_problem, error_paths, expect_status
from studyutil import (COUNTED, all_results, create_study, kill9_once_completed, results_csv,
                       wait_none_running, wait_study)

CANTILEVER = '''\
def main(F: float, L: float, E: float = 210e9, I: float = 8.33e-6) -> dict:
    """Tip deflection of a cantilever under an end load."""
    d = F * L ** 3 / (3 * E * I)
    return {"deflection_mm": d * 1000, "moment_max": F * L}
'''

SQUARE = '''\
def main(x: float) -> dict:
    if x < 0:
        raise ValueError(f"x must be >= 0, got {x}")
    return {"y": x * x}
'''

def deflection_mm(F, L, E=210e9, I=8.33e-6):
    return F * L ** 3 / (3 * E * I) * 1000


@pytest.fixture(scope="module")
def cantilever(api):
    return api.create_function("alice", harness.Api.unique("cantilever"), CANTILEVER)


@pytest.fixture(scope="module")
def square(api):
    return api.create_function("alice", harness.Api.unique("square"), SQUARE)


def test_grid_5x5_csv_matches_formula(api, cantilever):
    lengths = [1.0, 1.5, 2.0, 2.5, 3.0]
    s = create_study(api, "alice", {
        "name": "beam-sweep", "target": {"function": cantilever["name"]},
        "fixed": {"E": 210e9},
        "design": {"type": "grid", "params": {"L": lengths,
                                              "F": {"start": 100, "stop": 500, "num": 5}}},
        "outputs": ["result.deflection_mm", "result.moment_max"], "concurrency": 4})
    assert s["progress"]["total"] == 25, s
    assert s["target"]["function_id"] == cantilever["id"] and s["target"]["version"] == 1
    done = wait_study(api, "alice", s["id"])
    assert done["status"] == "completed", done
    assert done["progress"] == {"total": 25, "queued": 0, "running": 0, "completed": 25,
                                "failed": 0, "cancelled": 0}, done["progress"]

    rows = results_csv(api, "alice", s["id"])
    header, body = rows[0], rows[1:]
    assert header == ["index", "L", "F", "E", "result.deflection_mm", "result.moment_max",
                      "status", "error"], header
    assert len(body) == 25
    forces = [100, 200, 300, 400, 500]
    for i, row in enumerate(body):
        rec = dict(zip(header, row))
        assert int(rec["index"]) == i
        L, F = float(rec["L"]), float(rec["F"])
        # grid order: the first parameter varies slowest
        assert (L, F) == (lengths[i // 5], forces[i % 5]), (i, rec)
        assert rec["status"] == "completed" and rec["error"] == "", rec
        assert float(rec["result.deflection_mm"]) == pytest.approx(deflection_mm(F, L), rel=1e-12)
        assert float(rec["result.moment_max"]) == pytest.approx(F * L)

    items = all_results(api, "alice", s["id"])
    assert [it["index"] for it in items] == list(range(25))
    first = items[0]
    assert first["inputs"] == {"L": 1, "F": 100, "E": 210e9} or first["inputs"]["L"] == 1.0
    assert first["outputs"]["result.moment_max"] == pytest.approx(100.0)
    t = api.task("alice", first["task_id"])
    assert t["study_id"] == s["id"] and t["point_index"] == 0, t


def test_results_paged_with_cursor(api, cantilever):
    s = create_study(api, "alice", {
        "target": {"function": cantilever["id"]},
        "design": {"type": "grid", "params": {"L": [1, 2, 3], "F": [10, 20]}},
        "outputs": ["result.moment_max"]})
    wait_study(api, "alice", s["id"])
    r = api.get("alice", f"/studies/{s['id']}/results", params={"limit": "4"})
    expect_status(r, 200)
    page = r.json()
    assert [it["index"] for it in page["items"]] == [0, 1, 2, 3] and page["next_cursor"]
    r = api.get("alice", f"/studies/{s['id']}/results",
                params={"limit": "4", "cursor": page["next_cursor"]})
    page2 = r.json()
    assert [it["index"] for it in page2["items"]] == [4, 5] and page2["next_cursor"] is None


def lhs_points(api, fn, seed):
    s = create_study(api, "alice", {
        "target": {"function": fn["id"]},
        "design": {"type": "lhs", "params": {"L": {"min": 1, "max": 3},
                                             "F": {"min": 100, "max": 900}},
                   "count": 8, "seed": seed},
        "outputs": ["result.deflection_mm"]})
    wait_study(api, "alice", s["id"])
    return [it["inputs"] for it in all_results(api, "alice", s["id"])]


def test_lhs_reproducible_by_seed(api, cantilever):
    a, b, c = (lhs_points(api, cantilever, 7), lhs_points(api, cantilever, 7),
               lhs_points(api, cantilever, 8))
    assert a == b
    assert a != c
    # Latin hypercube: each of the 8 strata of L holds exactly one point.
    strata = sorted(int((p["L"] - 1) / (2 / 8)) for p in a)
    assert strata == list(range(8)), a


def test_list_design_from_csv_upload(api, cantilever):
    # an empty field leaves the input out of that point: the function's default applies
    text = "L,F,E\r\n1,100,\r\n2,250,\r\n3,50,2e11\r\n"
    r = api.post("alice", "/studies", data=text, headers={"Content-Type": "text/csv"},
                 params={"function": cantilever["name"], "name": "from-csv",
                         "outputs": "result.moment_max,result.deflection_mm",
                         "fixed": '{"I": 1e-5}'})
    expect_status(r, 201)
    s = r.json()
    assert s["name"] == "from-csv" and s["progress"]["total"] == 3
    assert s["design"] == {"type": "list", "count": 3}
    assert s["outputs"] == ["result.moment_max", "result.deflection_mm"]
    wait_study(api, "alice", s["id"])
    items = all_results(api, "alice", s["id"])
    assert [it["inputs"] for it in items] == [{"L": 1, "F": 100, "I": 1e-5},
                                              {"L": 2, "F": 250, "I": 1e-5},
                                              {"L": 3, "F": 50, "E": 2e11, "I": 1e-5}]
    assert items[1]["outputs"]["result.moment_max"] == pytest.approx(500.0)
    assert items[2]["outputs"]["result.deflection_mm"] == pytest.approx(
        deflection_mm(50, 3, E=2e11, I=1e-5))
    # a malformed upload is refused naming its line
    r = api.post("alice", "/studies", data='L,F\n1,"2\n', headers={"Content-Type": "text/csv"},
                 params={"function": cantilever["name"]})
    p = assert_problem(r, 422)
    assert "line" in p["detail"], p


def test_validation_bad_point_named(api, cantilever):
    r = api.post("alice", "/studies", json={
        "target": {"function": cantilever["id"]},
        "design": {"type": "list", "points": [{"L": 1, "F": 2}, {"L": "long", "F": 3}]}})
    p = assert_problem(r, 422)
    assert any(e["path"].startswith("points[1].L") for e in p.get("errors", [])), p
    assert "1" in p["detail"], p


def test_validation_million_point_grid_refused(api, cantilever):
    r = api.post("alice", "/studies", json={
        "target": {"function": cantilever["id"]},
        "design": {"type": "grid", "params": {"L": {"start": 1, "stop": 2, "num": 1000},
                                              "F": {"start": 1, "stop": 2, "num": 1000}}}})
    p = assert_problem(r, 422)
    assert "100000" in p["detail"].replace(",", "") or "100 000" in p["detail"], p
    r = api.get("alice", "/studies", params={"limit": "200"})
    expect_status(r, 200)


def test_validation_huge_csv_refused(api, cantilever):
    text = "L,F\n" + "1.000000001,100.000001\n" * 110000  # > 2 MiB
    r = api.post("alice", "/studies", data=text, headers={"Content-Type": "text/csv"},
                 params={"function": cantilever["id"]})
    p = assert_problem(r, 413)
    assert "bytes" in p["detail"], p
    # under the body limit but over the point limit: refused by count
    text = "L\n" + "1\n" * 100001
    r = api.post("alice", "/studies", data=text, headers={"Content-Type": "text/csv"},
                 params={"function": cantilever["id"], "fixed": '{"F": 1}'})
    p = assert_problem(r, 422)
    assert "100000" in p["detail"].replace(",", ""), p
    expect_status(api.get(None, "/healthz"), 200)


def test_validation_output_paths(api, cantilever):
    r = api.post("alice", "/studies", json={
        "target": {"function": cantilever["id"]}, "outputs": ["result..x", "sigma"],
        "design": {"type": "list", "points": [{"L": 1, "F": 1}]}})
    p = assert_problem(r, 422)
    paths = [e["path"] for e in p["errors"]]
    assert "outputs[0]" in paths and "outputs[1]" in paths, p
    # a well-formed path the result does not hold fails the point, naming the path
    s = create_study(api, "alice", {
        "target": {"function": cantilever["id"]}, "outputs": ["result.sigma"],
        "design": {"type": "list", "points": [{"L": 1, "F": 1}]}})
    wait_study(api, "alice", s["id"])
    [it] = all_results(api, "alice", s["id"])
    assert it["status"] == "failed" and "result.sigma" in it["error"]["message"], it


def test_workflow_target_unknown(api):
    # studies of workflows: tests/integration/test_study_workflows.py
    r = api.post("alice", "/studies", json={
        "target": {"workflow": harness.Api.unique("no-such-workflow")},
        "design": {"type": "list", "points": [{"L": 1}]}})
    assert_problem(r, 404)
    r = api.post("alice", "/studies", json={
        "target": {"workflow": 7}, "design": {"type": "list", "points": [{"L": 1}]}})
    assert "target.workflow" in error_paths(assert_problem(r, 422))


def test_failed_points_recorded_and_retry_runs_only_them(api, square):
    s = create_study(api, "alice", {
        "target": {"function": square["id"]}, "outputs": ["result.y"],
        "design": {"type": "list", "points": [{"x": 1}, {"x": -2}, {"x": 3}, {"x": -4}]}})
    done = wait_study(api, "alice", s["id"])
    assert done["progress"]["completed"] == 2 and done["progress"]["failed"] == 2, done
    before = {it["index"]: it for it in all_results(api, "alice", s["id"])}
    assert before[1]["status"] == "failed" and "x must be >= 0" in before[1]["error"]["message"]
    rows = results_csv(api, "alice", s["id"])
    assert "x must be >= 0" in rows[2][-1] and rows[2][-2] == "failed", rows

    r = api.post("alice", f"/studies/{s['id']}/retry")
    expect_status(r, 200)
    assert r.json()["retried"] == 2
    wait_study(api, "alice", s["id"])
    after = {it["index"]: it for it in all_results(api, "alice", s["id"])}
    # the completed points kept their tasks; the failed ones got new ones (and failed again)
    assert after[0]["task_id"] == before[0]["task_id"]
    assert after[2]["task_id"] == before[2]["task_id"]
    assert after[1]["task_id"] != before[1]["task_id"]
    assert after[3]["task_id"] != before[3]["task_id"]
    assert after[1]["status"] == "failed"


def test_extend_without_recomputing(api, square):
    s = create_study(api, "alice", {
        "target": {"function": square["id"]}, "outputs": ["result.y"],
        "design": {"type": "grid", "params": {"x": [1, 2, 3]}}})
    wait_study(api, "alice", s["id"])
    before = all_results(api, "alice", s["id"])
    r = api.post("alice", f"/studies/{s['id']}/points",
                 json={"points": [{"x": 2.0}, {"x": 4}, {"x": 5}]}, timeout=60)
    expect_status(r, 200)
    assert r.json()["added"] == 2  # x = 2.0 is x = 2: canonical inputs
    done = wait_study(api, "alice", s["id"])
    assert done["progress"]["total"] == 5 and done["progress"]["completed"] == 5, done
    after = all_results(api, "alice", s["id"])
    assert [it["task_id"] for it in after[:3]] == [it["task_id"] for it in before]
    assert [it["outputs"]["result.y"] for it in after] == [1, 4, 9, 16, 25]


def test_cancel(api, fname):
    fn = api.create_function("alice", fname, "import time\n\ndef main(x: int) -> int:\n"
                             "    time.sleep(0.5)\n    return x\n")
    s = create_study(api, "alice", {
        "target": {"function": fn["id"]}, "concurrency": 1,
        "design": {"type": "grid", "params": {"x": list(range(20))}}})
    r = api.post("alice", f"/studies/{s['id']}/cancel")
    expect_status(r, 200)
    c = r.json()
    assert c["status"] == "cancelled", c
    # the point that was running when the study was cancelled ends (cancelled)
    s2 = wait_none_running(api, "alice", s["id"])
    assert s2["status"] == "cancelled"
    p = s2["progress"]
    assert p["completed"] + p["failed"] + p["cancelled"] + p["running"] + p["queued"] == 20
    assert p["completed"] <= 2 and p["cancelled"] >= 18, p
    assert_problem(api.post("alice", f"/studies/{s['id']}/cancel"), 409)
    assert_problem(api.post("alice", f"/studies/{s['id']}/retry"), 409)


def test_tenancy_other_user_gets_404(api, cantilever):
    s = create_study(api, "alice", {
        "target": {"function": cantilever["id"]},
        "design": {"type": "list", "points": [{"L": 1, "F": 1}]}})
    for path in ("", "/results"):
        assert_problem(api.get("bob", f"/studies/{s['id']}{path}"), 404)
        assert_problem(api.get("carol", f"/studies/{s['id']}{path}"), 404)
    for verb in ("retry", "cancel"):
        assert_problem(api.post("carol", f"/studies/{s['id']}/{verb}"), 404)
    assert_problem(api.post("carol", f"/studies/{s['id']}/points", json={"points": []}), 404)
    ids = [x["id"] for x in api.get("bob", "/studies").json()["items"]]
    assert s["id"] not in ids
    mine = {x["id"]: x for x in api.get("alice", "/studies", params={"limit": "200"}).json()["items"]}
    assert s["id"] in mine and mine[s["id"]]["progress"]["total"] == 1
    # alice's private function is not bob's to sweep
    assert_problem(api.post("bob", "/studies", json={
        "target": {"function": cantilever["id"]},
        "design": {"type": "list", "points": [{"L": 1, "F": 1}]}}), 404)


# --- the result cache ---

@pytest.fixture(scope="module")
def counted(api):
    fn = api.create_function("alice", harness.Api.unique("counted"), COUNTED, cache=True,
                             visibility="public")
    assert fn["cache"] is True, fn
    return fn


def test_cache_hit_marked_and_same_result(api, counted):
    first = api.execute("alice", counted["id"], {"x": 1})
    assert first["status"] == "completed" and first["cached_from"] is None
    r = api.execute_raw("alice", counted["id"], {"x": 1.0})  # 1 and 1.0 are one input
    expect_status(r, 200)
    hit = r.json()
    assert hit["status"] == "completed" and hit["cached_from"] == first["id"], hit
    assert hit["id"] != first["id"]
    assert hit["result"] == first["result"]  # the same run's uuid: it did not run again
    other = api.execute("alice", counted["id"], {"x": 2})
    assert other["cached_from"] is None


def test_cache_never_crosses_users(api, counted):
    a = api.execute("alice", counted["id"], {"x": 7})
    b = api.execute("bob", counted["id"], {"x": 7})
    assert b["cached_from"] is None and b["result"]["run"] != a["result"]["run"], b
    b2 = api.execute("bob", counted["id"], {"x": 7})
    assert b2["cached_from"] == b["id"]


def test_cache_refresh_recomputes(api, counted):
    a = api.execute("alice", counted["id"], {"x": 11})
    r = api.post("alice", f"/functions/{counted['id']}/execute", params={"cache": "refresh",
                                                                          "wait": "30"},
                 json={"inputs": {"x": 11}}, timeout=60)
    expect_status(r, 200)
    fresh = r.json()
    assert fresh["cached_from"] is None and fresh["result"]["run"] != a["result"]["run"]
    hit = api.execute("alice", counted["id"], {"x": 11})
    assert hit["cached_from"] == fresh["id"], hit  # the newest computed result serves
    assert_problem(api.post("alice", f"/functions/{counted['id']}/execute",
                            params={"cache": "bogus"}, json={"inputs": {"x": 1}}), 400)


def test_cache_hit_keeps_idempotency(api, counted):
    first = api.execute("alice", counted["id"], {"x": 21})
    key = harness.Api.unique("idem")
    r1 = api.execute_raw("alice", counted["id"], {"x": 21}, idempotency_key=key)
    expect_status(r1, 200)
    assert r1.json()["cached_from"] == first["id"]
    r2 = api.execute_raw("alice", counted["id"], {"x": 21}, idempotency_key=key)
    expect_status(r2, 200, 202)
    assert r2.json()["id"] == r1.json()["id"], "a retry with the same key is the same task"


def test_cache_off_by_default(api, square):
    a = api.execute("alice", square["id"], {"x": 3})
    b = api.execute("alice", square["id"], {"x": 3})
    assert a["cached_from"] is None and b["cached_from"] is None and a["id"] != b["id"]


def test_study_points_served_from_cache(api, counted):
    pts = [{"x": 100}, {"x": 101}]
    for p in pts:
        api.execute("alice", counted["id"], p)
    s = create_study(api, "alice", {
        "target": {"function": counted["id"]}, "outputs": ["result.run"],
        "design": {"type": "list", "points": pts + [{"x": 102}]}})
    wait_study(api, "alice", s["id"])
    items = all_results(api, "alice", s["id"])
    tasks = [api.task("alice", it["task_id"]) for it in items]
    assert tasks[0]["cached_from"] and tasks[1]["cached_from"], tasks
    assert tasks[2]["cached_from"] is None
    # refresh: every point computed again
    s2 = create_study(api, "alice", {
        "target": {"function": counted["id"]}, "outputs": ["result.run"],
        "design": {"type": "list", "points": pts}}, params={"cache": "refresh"})
    wait_study(api, "alice", s2["id"])
    items2 = all_results(api, "alice", s2["id"])
    assert all(api.task("alice", it["task_id"])["cached_from"] is None for it in items2)
    assert items2[0]["outputs"]["result.run"] != items[0]["outputs"]["result.run"]
    # bob's study of the same points computes its own
    s3 = create_study(api, "bob", {
        "target": {"function": counted["id"]}, "outputs": ["result.run"],
        "design": {"type": "list", "points": pts}})
    wait_study(api, "bob", s3["id"])
    assert all(api.task("bob", it["task_id"])["cached_from"] is None
               for it in all_results(api, "bob", s3["id"]))


# --- durability: kill -9 mid-study, restart, the study completes ---

SLOW_POINT = '''\
import time

def main(i: int) -> dict:
    time.sleep(0.4)
    return {"i": i, "square": i * i}
'''


@pytest.fixture(scope="module")
def crash_stack():
    s = harness.start_stack("studies-crash", workers=1)
    yield s
    s.close()


@pytest.mark.crash
@pytest.mark.slow
def test_kill9_mid_study_then_restart_completes_each_point_once(crash_stack):
    api = crash_stack.api
    fn = api.create_function("alice", harness.Api.unique("slowpoint"), SLOW_POINT)
    s = create_study(api, "alice", {
        "target": {"function": fn["id"]}, "outputs": ["result.square"], "concurrency": 2,
        "design": {"type": "grid", "params": {"i": list(range(12))}}})
    kill9_once_completed(crash_stack, "alice", s["id"], 3)

    done = wait_study(api, "alice", s["id"], timeout=120)
    assert done["status"] == "completed", done
    assert done["progress"]["completed"] == 12 and done["progress"]["failed"] == 0, done
    items = all_results(api, "alice", s["id"])
    assert [it["outputs"]["result.square"] for it in items] == [i * i for i in range(12)]
    # each point has one task, and the function has no other: nothing ran twice as a
    # new task (a call cut by the kill is retried in place, the same task)
    task_ids = {it["task_id"] for it in items}
    assert len(task_ids) == 12
    r = api.get("alice", "/tasks", params={"function_id": fn["id"], "limit": "200"})
    expect_status(r, 200)
    assert {t["id"] for t in r.json()["items"]} == task_ids
    for tid in task_ids:
        t = api.task("alice", tid)
        assert t["status"] == "completed" and t["attempts"] <= 2, t


@pytest.mark.crash
@pytest.mark.skipif(harness.scaleout_requested(), reason="edits the embedded SQLite store")
def test_recovery_accounts_missed_ends_and_starts_pending_points(crash_stack):
    """The two states a process dying between a task's end and its study's step leaves
    (made by editing the stopped server's store): a point started whose task ended
    unseen, and a point never started. A restart accounts the first without running it
    again and starts the second."""
    import sqlite3
    api = crash_stack.api
    fn = api.create_function("alice", harness.Api.unique("recov"), SLOW_POINT)
    s = create_study(api, "alice", {
        "target": {"function": fn["id"]}, "outputs": ["result.square"], "concurrency": 2,
        "design": {"type": "grid", "params": {"i": list(range(5))}}})
    wait_study(api, "alice", s["id"])
    before = all_results(api, "alice", s["id"])

    crash_stack.server.stop()
    db = sqlite3.connect(str(crash_stack.data_dir / "mecapy.db"))
    with db:
        db.execute("UPDATE study_points SET status = 'started', outputs = NULL"
                   " WHERE study_id = ? AND point_index = 1", (s["id"],))
        db.execute("UPDATE study_points SET status = 'pending', outputs = NULL, task_id = NULL"
                   " WHERE study_id = ? AND point_index = 3", (s["id"],))
        db.execute("UPDATE studies SET status = 'running', finished_at = 0, started = 1,"
                   " completed = 3 WHERE id = ?", (s["id"],))
    db.close()
    crash_stack.server.start()

    done = wait_study(api, "alice", s["id"])
    assert done["status"] == "completed" and done["progress"]["completed"] == 5, done
    after = all_results(api, "alice", s["id"])
    assert after[1]["task_id"] == before[1]["task_id"], "an ended task is accounted, not re-run"
    assert after[1]["outputs"] == {"result.square": 1}
    assert after[3]["task_id"] != before[3]["task_id"] and after[3]["outputs"] == {"result.square": 9}


BOLTED_JOINT = '''\
def main(preload_kN: float, mu: float, shear_kN: float, interfaces: int = 1) -> dict:
    capacity = mu * preload_kN * interfaces
    return {"slip_capacity_kN": capacity, "margin": capacity / shear_kN - 1}
'''


def test_docs_lhs_of_a_bolted_joint(api):
    """The worked example of docs/studies.md, as written there."""
    fn = api.create_function("alice", harness.Api.unique("bolted-joint"), BOLTED_JOINT)
    s = create_study(api, "alice", {
        "name": "joint-lhs", "target": {"function": fn["name"]}, "fixed": {"interfaces": 2},
        "design": {"type": "lhs",
                   "params": {"preload_kN": {"min": 80, "max": 120}, "mu": {"min": 0.15, "max": 0.35},
                              "shear_kN": {"min": 20, "max": 45}},
                   "count": 200, "seed": 7},
        "outputs": ["result.margin"]})
    done = wait_study(api, "alice", s["id"])
    assert done["progress"]["completed"] == 200, done
    rows = results_csv(api, "alice", s["id"])
    assert rows[0] == ["index", "preload_kN", "mu", "shear_kN", "interfaces", "result.margin",
                       "status", "error"], rows[0]
    for row in rows[1:]:
        p, mu, v = float(row[1]), float(row[2]), float(row[3])
        assert 80 <= p <= 120 and 0.15 <= mu <= 0.35 and 20 <= v <= 45
        assert float(row[5]) == pytest.approx(mu * p * 2 / v - 1)
