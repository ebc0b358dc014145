"""Verification cases (docs/functions.md#verification-cases): every new version runs its
reference cases as tasks of that version; a version whose cases fail is unverified and
cannot be published. Runs on SQLite, and on PostgreSQL + Redis + S3 when the suite is run
with MECAPY_TEST_BACKENDS=scaleout (tests/run.sh)."""
from __future__ import annotations

import time

import pytest

import harness
from harness import User, assert_problem, error_paths, expect_status

USERS = [
    User("alice", "alice@verify.test", "alice-pass-1234", "verify-acme"),
    User("bob", "bob@verify.test", "bob-pass-1234", "verify-acme"),
]

# Roark's Formulas for Stress and Strain, 7th ed., table 8.1 case 1a: a cantilever with
# an end load W has its largest deflection at the free end, y = W l^3 / (3 E I).
CANTILEVER = '''
def main(W: float, l: float, E: float, I: float) -> dict:
    """Tip deflection of a cantilever with an end load."""
    return {"deflection": W * l**3 / (3 * E * I), "unit": "m"}
'''
# The same with the factor 3 lost: a version that breaks the textbook answer.
BROKEN = CANTILEVER.replace("(3 * E * I)", "(E * I)")

CASES = [
    {"name": "steel tip load", "inputs": {"W": 1000.0, "l": 2.0, "E": 210e9, "I": 8e-6},
     "expected": {"deflection": 1000.0 * 8 / (3 * 210e9 * 8e-6), "unit": "m"},
     "rel_tol": 1e-9, "source": "Roark 7th ed., table 8.1 case 1a"},
    {"name": "unit beam", "inputs": {"W": 3.0, "l": 1.0, "E": 1.0, "I": 1.0},
     "expected": {"deflection": 1.0}, "abs_tol": 1e-12,
     "source": "Roark 7th ed., table 8.1 case 1a"},
]


@pytest.fixture(scope="module")
def stack():
    s = harness.start_stack("verification", users=USERS)
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(stack):
    return stack.api


def wait_verified(api, user, fid, version=None, timeout=90.0) -> dict:
    """The function version once its verification is no longer running."""
    deadline = time.monotonic() + timeout
    params = {"version": str(version)} if version else {}
    while True:
        r = api.get(user, f"/functions/{fid}", params=params)
        expect_status(r, 200)
        fn = r.json()
        if fn["verification"]["status"] != "running":
            return fn
        if time.monotonic() > deadline:
            pytest.fail(f"verification of {fid} still running after {timeout} s: {fn['verification']}")
        time.sleep(0.2)


def test_a_version_without_cases_has_none(api):
    fn = api.create_function("alice", harness.Api.unique("plain"), CANTILEVER)
    assert fn["verification"] == {"status": "none", "cases": []}
    assert fn["review"]["status"] == "draft"


def test_cases_pass_and_the_version_can_be_published(api):
    fn = api.create_function("alice", harness.Api.unique("cantilever"), CANTILEVER, verification=CASES)
    assert fn["verification"]["status"] == "running"
    fn = wait_verified(api, "alice", fn["id"])
    v = fn["verification"]
    assert v["status"] == "passed", v
    assert [c["name"] for c in v["cases"]] == ["steel tip load", "unit beam"]
    first = v["cases"][0]
    assert first["passed"] is True
    assert first["source"] == "Roark 7th ed., table 8.1 case 1a"
    assert first["got"]["deflection"] == pytest.approx(1000.0 * 8 / (3 * 210e9 * 8e-6), rel=1e-12)
    assert first["expected"] == CASES[0]["expected"]
    # The cases are ordinary tasks of the version, the author's, marked as cases.
    task = api.task("alice", first["task_id"])
    assert task["status"] == "completed"
    assert task["version"] == 1
    assert task["verification_of"] == f"{fn['id']}:1"
    assert fn["verification_cases"][0]["name"] == "steel tip load"
    r = api.put("alice", f"/functions/{fn['id']}", json={"visibility": "public"})
    expect_status(r, 200)
    assert r.json()["visibility"] == "public"


def test_a_version_that_breaks_the_textbook_answer_is_unverified(api):
    fn = api.create_function("alice", harness.Api.unique("cantilever"), CANTILEVER, verification=CASES)
    assert wait_verified(api, "alice", fn["id"])["verification"]["status"] == "passed"
    # A new version keeps the cases and runs them again.
    r = api.put("alice", f"/functions/{fn['id']}", json={"code": BROKEN})
    expect_status(r, 200)
    assert r.json()["version"] == 2
    fn2 = wait_verified(api, "alice", fn["id"])
    v = fn2["verification"]
    assert v["status"] == "failed", v
    steel = v["cases"][0]
    assert steel["passed"] is False
    assert steel["got"]["deflection"] == pytest.approx(3 * CASES[0]["expected"]["deflection"])
    # Version 1 stays passed; the list of versions says both.
    assert wait_verified(api, "alice", fn["id"], version=1)["verification"]["status"] == "passed"
    items = api.get("alice", f"/functions/{fn['id']}/versions").json()["items"]
    assert [(i["version"], i["verification"]["status"]) for i in items] == [(2, "failed"), (1, "passed")]
    # Publishing the unverified version is refused, and says why.
    p = assert_problem(api.put("alice", f"/functions/{fn['id']}", json={"visibility": "public"}), 409)
    assert p["type"].endswith("Unverified"), p
    assert "steel tip load" in p["detail"]
    assert api.get("alice", f"/functions/{fn['id']}").json()["visibility"] == "private"
    # The catalogue does not show it.
    names = [f["name"] for f in api.get("bob", "/catalogue", params={"q": fn["name"]}).json()["items"]]
    assert fn["name"] not in names


def test_publishing_while_the_cases_run_is_refused(api):
    p = assert_problem(api.post("alice", "/functions", json={
        "name": harness.Api.unique("cantilever"), "code": CANTILEVER, "verification": CASES,
        "visibility": "public"}), 409)
    assert p["type"].endswith("Unverified")
    assert "still running" in p["detail"]


def test_cases_are_validated_with_their_paths(api):
    bad = [
        {"name": "no expected", "inputs": {"W": 1.0, "l": 1.0, "E": 1.0, "I": 1.0}},
        {"name": "wrong input", "inputs": {"W": "heavy", "l": 1.0, "E": 1.0, "I": 1.0},
         "expected": {"deflection": 1.0}, "rel_tol": -1},
        {"name": "no expected", "inputs": {"W": 1.0, "l": 1.0, "E": 1.0, "I": 1.0},
         "expected": {"a..b": 1}, "colour": "red"},
    ]
    p = assert_problem(api.post("alice", "/functions", json={
        "name": harness.Api.unique("bad"), "code": CANTILEVER, "verification": bad}), 422)
    paths = error_paths(p)
    for want in ("verification[0].expected", "verification[1].inputs.W", "verification[1].rel_tol",
                 "verification[2].expected.a..b", "verification[2].colour", "verification[2].name"):
        assert want in paths, (want, paths)
    p = assert_problem(api.post("alice", "/functions", json={
        "name": harness.Api.unique("bad"), "code": CANTILEVER, "verification": {"a": 1}}), 422)
    assert "verification" in error_paths(p)


def test_a_failing_call_fails_its_case(api):
    code = "def main(x: float) -> dict:\n    raise ValueError('no')\n"
    fn = api.create_function("alice", harness.Api.unique("raises"), code, verification=[
        {"name": "raises", "inputs": {"x": 1.0}, "expected": {"y": 1.0}}])
    v = wait_verified(api, "alice", fn["id"])["verification"]
    assert v["status"] == "failed"
    assert v["cases"][0]["passed"] is False
    assert v["cases"][0]["got"] == {"y": None}
    assert "failed" in v["cases"][0]["error"]


def test_the_outcome_survives_a_restart(stack, api):
    """The cases are queued, the server stops before they run; after the restart they run
    and the version's outcome is recorded."""
    slow = CANTILEVER.replace('"""Tip', 'import time; time.sleep(1)\n    """Tip')
    fn = api.create_function("alice", harness.Api.unique("restart"), slow, verification=CASES)
    assert fn["verification"]["status"] == "running"
    stack.restart()
    api.login_all()
    assert wait_verified(api, "alice", fn["id"])["verification"]["status"] == "passed"


def test_a_workflow_may_require_verified_versions(api):
    fn = api.create_function("alice", harness.Api.unique("cantilever"), CANTILEVER, verification=CASES)
    assert wait_verified(api, "alice", fn["id"])["verification"]["status"] == "passed"
    expect_status(api.put("alice", f"/functions/{fn['id']}", json={"code": BROKEN}), 200)
    assert wait_verified(api, "alice", fn["id"])["verification"]["status"] == "failed"
    plain = api.create_function("alice", harness.Api.unique("plain"), CANTILEVER)

    def node(function, version=None, **extra):
        n = {"id": "beam", "function": function, "inputs": {"W": {"param": "W"}, "l": 1.0, "E": 1.0, "I": 1.0},
             **extra}
        if version:
            n["version"] = version
        return n

    def save(nodes, **extra):
        return api.post("alice", "/workflows", json={"name": harness.Api.unique("wf"), "nodes": nodes, **extra})

    # The latest (failed) version, pinned on the node or by the workflow: refused, with the path.
    p = assert_problem(save([node(fn["name"], require_verified=True)]), 422)
    assert "nodes[0].function" in error_paths(p), p
    p = assert_problem(save([node(fn["name"], version=2)], require_verified=True), 422)
    assert "nodes[0].version" in error_paths(p), p
    # A version without cases has not passed any either.
    assert_problem(save([node(plain["name"], require_verified=True)]), 422)
    p = assert_problem(save([node(fn["name"], require_verified="yes")]), 422)
    assert "nodes[0].require_verified" in error_paths(p)
    # The version that passed is accepted, and runs.
    r = save([node(fn["name"], version=1, require_verified=True)])
    expect_status(r, 201)
    wf = r.json()
    # Without the requirement the failed version may still be used.
    expect_status(save([node(fn["name"])]), 201)
    r = api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"W": 3.0}})
    expect_status(r, 200, 201, 202)


@pytest.mark.skipif(harness.scaleout_requested(), reason="edits the embedded SQLite store")
def test_a_version_whose_case_tasks_were_lost_settles(stack, api):
    """The version is stored but its case tasks are not (the queueing failed, or the
    process stopped in between; made by deleting them from the stopped server's store):
    a read queues the missing cases again and the version settles rather than staying
    running for ever."""
    import sqlite3
    slow = CANTILEVER.replace('"""Tip', 'import time; time.sleep(1)\n    """Tip')
    fn = api.create_function("alice", harness.Api.unique("lost"), slow, verification=CASES)
    assert fn["verification"]["status"] == "running"
    stack.server.stop()
    db = sqlite3.connect(str(stack.data_dir / "mecapy.db"))
    with db:
        key = f"{fn['id']}:1"
        db.execute("DELETE FROM jobs WHERE task_id IN (SELECT id FROM tasks WHERE verification_of = ?)", (key,))
        gone = db.execute("DELETE FROM tasks WHERE verification_of = ?", (key,)).rowcount
    db.close()
    assert gone == len(CASES)
    stack.server.start()
    api.login_all()
    fn = wait_verified(api, "alice", fn["id"])
    assert fn["verification"]["status"] == "passed", fn["verification"]
    assert [c["name"] for c in fn["verification"]["cases"]] == [c["name"] for c in CASES]


# A version's verification as a new version is stored with (core/verify.c).
RUNNING = '{"status":"running","cases":[]}'


def wait_listed(api, user, fid, version, timeout=90.0) -> dict:
    """Version `version` as GET /functions/{id}/versions lists it, once its verification is
    no longer running. That list shows what is stored and settles nothing, unlike a read
    of the function: what it sees settled was settled by the server itself."""
    deadline = time.monotonic() + timeout
    while True:
        r = api.get(user, f"/functions/{fid}/versions")
        expect_status(r, 200)
        v = next(x for x in r.json()["items"] if x["version"] == version)
        if v["verification"]["status"] != "running":
            return v
        if time.monotonic() > deadline:
            pytest.fail(f"verification of {fid} v{version} still running after {timeout} s "
                        f"(listed, never read): {v['verification']}")
        time.sleep(0.2)


def store_sql(stack, sql: str, *params) -> int:
    """Run one statement on the stopped stack's store (SQLite, or the suite's PostgreSQL
    database in scale-out): the number of rows it changed."""
    if stack.backends:
        import subprocess
        text = sql
        for i, p in enumerate(params, 1):
            text = text.replace(f"?{i}", "'" + str(p).replace("'", "''") + "'")
        r = subprocess.run(["psql", stack.backends.args[1], "-v", "ON_ERROR_STOP=1", "-qtAc", text],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return -1
    import sqlite3
    db = sqlite3.connect(str(stack.data_dir / "mecapy.db"))
    with db:
        n = db.execute(sql, params).rowcount
    db.close()
    return n


@pytest.mark.skipif(harness.scaleout_requested(), reason="edits the embedded SQLite store and its queue")
def test_lost_case_tasks_are_queued_again_at_start(stack, api):
    """As above, but nothing reads the version: the server's start finds it running
    without its case tasks, queues them again, and the version settles by itself. (The
    state is made in the stopped server's store: the tasks and their jobs deleted, the
    version set back to running, as a process stopped between storing the version and
    its tasks leaves it.)"""
    fn = api.create_function("alice", harness.Api.unique("swept"), CANTILEVER, verification=CASES)
    assert wait_listed(api, "alice", fn["id"], 1)["verification"]["status"] == "passed"
    stack.server.stop()
    key = f"{fn['id']}:1"
    store_sql(stack, "DELETE FROM jobs WHERE task_id IN (SELECT id FROM tasks WHERE verification_of = ?1)", key)
    assert store_sql(stack, "DELETE FROM tasks WHERE verification_of = ?1", key) == len(CASES)
    assert store_sql(stack, "UPDATE function_versions SET verification = ?1 WHERE function_id = ?2 AND version = 1",
                     RUNNING, fn["id"]) == 1
    stack.server.start()
    api.login_all()
    v = wait_listed(api, "alice", fn["id"], 1)
    assert v["verification"]["status"] == "passed", v["verification"]
    assert [c["name"] for c in v["verification"]["cases"]] == [c["name"] for c in CASES]
    assert all(c["passed"] for c in v["verification"]["cases"])
    # the cases really ran again: new tasks of the version
    r = api.get("alice", "/tasks", params={"function_id": fn["id"]})
    expect_status(r, 200)
    assert len(r.json()["items"]) == len(CASES)


def test_an_outcome_left_unwritten_is_written_at_start(stack, api):
    """Every case task ended but the process stopped before the version's outcome was
    written (made by setting it back to running in the stopped server's store): the next
    start writes it, with no read of the version."""
    fn = api.create_function("alice", harness.Api.unique("unwritten"), CANTILEVER, verification=CASES)
    assert wait_listed(api, "alice", fn["id"], 1)["verification"]["status"] == "passed"
    stack.server.stop()
    n = store_sql(stack, "UPDATE function_versions SET verification = ?1 WHERE function_id = ?2 AND version = 1",
                  RUNNING, fn["id"])
    assert n in (1, -1)
    stack.server.start()
    api.login_all()
    v = wait_listed(api, "alice", fn["id"], 1)
    assert v["verification"]["status"] == "passed", v["verification"]
    assert [c["passed"] for c in v["verification"]["cases"]] == [True, True]
