"""Deleting tasks and functions, the companies' retention and the collector
(docs/api.md#deleting-a-task, docs/operations.md#the-collector).

Every test looks where the bytes are kept, with a reader that is not MecaPy: the files
under the data folder's objects/ (file: blobs), or the bucket read by boto3
(tests/services/s3_readback.py) when the suite runs on PostgreSQL + S3
(MECAPY_TEST_BACKENDS=scaleout, as tests/run.sh does). Ages are made by setting a
task's queued_at back in the store itself (the SQLite file, or psql), never by waiting.
"""
from __future__ import annotations

import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import harness
from harness import User, assert_problem, error_paths, expect_status

DAY_MS = 86400 * 1000
USERS = [
    User("alice", "alice@ret.test", "alice-pass-1234", "ret-acme"),
    User("bob", "bob@ret.test", "bob-pass-1234", "ret-acme"),
    User("boss", "boss@ret.test", "boss-pass-1234", "ret-acme", "admin"),
    User("carol", "carol@ret.test", "carol-pass-1234", "ret-globex"),
]

# A result, logs and an artifact each past the inline limit (64 KiB) or always stored
# as objects (artifacts): every kind of object a task has.
BIG = ("from pathlib import Path\n"
       "def main(n: int) -> list:\n"
       "    print('L' * 70000)\n"
       "    Path('outputs').mkdir(exist_ok=True)\n"
       "    Path('outputs/report.txt').write_text('secret report ' * 100)\n"
       "    return list(range(n))\n")
SLEEPY = ("import time\n"
          "def main(s: float) -> float:\n"
          "    time.sleep(s)\n"
          "    return s\n")


@pytest.fixture(scope="module")
def stack():
    # The background collector is off here: the tests run its passes (admin gc) and
    # assert what each removed; test_background_collector starts one that runs it.
    s = harness.start_stack("retention", users=USERS, extra_args=["--gc-interval", "0"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def api(stack):
    return stack.api


# ---------------------------------------------------------------- where bytes are kept

def server_args(stack) -> list[str]:
    return (stack.backends.args if stack.backends else []) + ["--data-dir", str(stack.data_dir)]


def s3_url(stack) -> str | None:
    if not stack.backends:
        return None
    a = stack.backends.args
    return a[a.index("--blobs") + 1]


def readback(stack, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(["/usr/bin/python3", str(harness.SERVICES / "s3_readback.py"), s3_url(stack), *args],
                       capture_output=True, text=True, timeout=60)
    if r.returncode == 77:
        pytest.fail("boto3 is missing (python3-boto3): the S3 objects cannot be read independently")
    return r


def objects(stack, prefix: str) -> dict[str, bytes]:
    """The objects under a key prefix ("tasks/<id>/"), read without MecaPy."""
    out = {}
    if s3_url(stack):
        r = readback(stack, "list", prefix)
        assert r.returncode == 0, r.stderr
        for key in r.stdout.split():
            tmp = stack.root / f"get-{uuid.uuid4().hex}"
            g = readback(stack, "get", key, str(tmp))
            assert g.returncode == 0, g.stderr
            out[key] = tmp.read_bytes()
            tmp.unlink()
        return out
    root = stack.data_dir / "objects"
    for p in (root / prefix).rglob("*") if (root / prefix).is_dir() else []:
        if p.is_file():
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def put_object(stack, key: str, data: bytes) -> None:
    if s3_url(stack):
        src = stack.root / f"put-{uuid.uuid4().hex}"
        src.write_bytes(data)
        r = readback(stack, "put", key, str(src))
        assert r.returncode == 0, r.stderr
        return
    p = stack.data_dir / "objects" / key
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)


def sql(stack, statement: str) -> None:
    """Run one statement on the store the server uses (values are inlined: ours only)."""
    if stack.backends:
        url = stack.backends.args[stack.backends.args.index("--db") + 1]
        r = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", statement],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return
    db = sqlite3.connect(str(stack.data_dir / "mecapy.db"), timeout=30)
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


def age_task(stack, tid: str, days: int) -> None:
    sql(stack, f"UPDATE tasks SET queued_at = queued_at - {days * DAY_MS} WHERE id = '{tid}'")


def admin_gc(stack) -> str:
    r = harness.run_cli(["admin", "gc", *server_args(stack)], timeout=120)
    assert r.returncode == 0, f"mecapy admin gc exited {r.returncode}: {r.stdout} {r.stderr}"
    return r.stdout


def big_task(api, user: str, fid: str, n: int = 20000) -> dict:
    t = api.execute(user, fid, {"n": n})
    assert t["status"] == "completed", t
    return t


def assert_gone(api, stack, user: str, t: dict) -> None:
    tid = t["id"]
    assert_problem(api.get(user, f"/tasks/{tid}"), 404)
    assert_problem(api.get(user, f"/tasks/{tid}/logs"), 404)
    for a in t.get("artifacts", []):
        assert_problem(api.get(user, a["url"]), 404)
    left = objects(stack, f"tasks/{tid}/")
    assert left == {}, f"the objects of deleted task {tid} are still stored: {sorted(left)}"


@pytest.fixture(scope="module")
def big(api):
    return api.create_function("alice", harness.Api.unique("big"), BIG)


# ---------------------------------------------------------------- DELETE /tasks/{id}

def test_delete_task_removes_row_result_logs_and_artifacts(api, stack, big):
    t = big_task(api, "alice", big["id"])
    stored = objects(stack, f"tasks/{t['id']}/")
    # The bytes are there, as the independent reader sees them: the spilled result and
    # logs, and the artifact.
    names = {k.rsplit("/", 2)[-1] if "/artifacts/" not in k else "artifact" for k in stored}
    assert {"result.json", "logs.txt", "artifact"} <= names, sorted(stored)
    assert any(b"secret report" in v for v in stored.values())

    r = api.delete("alice", f"/tasks/{t['id']}")
    assert r.status_code == 204 and r.content == b"", harness.describe(r)
    assert_gone(api, stack, "alice", t)
    listed = expect_status(api.get("alice", "/tasks", params={"function_id": big["id"]}), 200).json()
    assert t["id"] not in {x["id"] for x in listed["items"]}
    # Deleting again: it is not there.
    assert_problem(api.delete("alice", f"/tasks/{t['id']}"), 404)
    # The server keeps serving: a new call runs and is stored.
    t2 = big_task(api, "alice", big["id"], 10)
    assert t2["result"] == list(range(10))


def test_delete_who_may(api, stack, big):
    t = big_task(api, "alice", big["id"], 5)
    # Another tenant, and a co-member who is not an admin: the same 404 as an unknown id.
    for who in ("carol", "bob"):
        p = assert_problem(api.delete(who, f"/tasks/{t['id']}"), 404)
        assert t["id"] in p["detail"], p
    assert_problem(api.delete("alice", f"/tasks/{uuid.uuid4()}"), 404)
    assert_problem(api.delete("alice", "/tasks/not-an-id"), 404)
    assert api.task("alice", t["id"])["result"] == list(range(5))
    # An admin of the company it was made in may.
    expect_status(api.delete("boss", f"/tasks/{t['id']}"), 204)
    assert_gone(api, stack, "alice", t)


def test_delete_refused_while_queued_or_running(api, stack):
    f = api.create_function("alice", harness.Api.unique("sleepy"), SLEEPY)
    r = api.execute_raw("alice", f["id"], {"s": 60})
    expect_status(r, 202)
    tid = r.json()["id"]
    p = assert_problem(api.delete("alice", f"/tasks/{tid}"), 409)
    assert "cancel" in p["detail"], p
    assert api.task("alice", tid)["status"] in ("queued", "running")
    expect_status(api.post("alice", f"/tasks/{tid}/cancel"), 200)
    expect_status(api.delete("alice", f"/tasks/{tid}"), 204)
    assert_problem(api.get("alice", f"/tasks/{tid}"), 404)


def test_delete_frees_the_idempotency_key(api, stack, big):
    key = f"retry-{uuid.uuid4().hex}"
    t1 = api.execute("alice", big["id"], {"n": 3}, idempotency_key=key)
    again = api.execute("alice", big["id"], {"n": 3}, idempotency_key=key)
    assert again["id"] == t1["id"]
    expect_status(api.delete("alice", f"/tasks/{t1['id']}"), 204)
    # The key no longer answers with the deleted task (nor its result): a new call runs.
    t2 = api.execute("alice", big["id"], {"n": 3}, idempotency_key=key)
    assert t2["id"] != t1["id"] and t2["status"] == "completed" and t2["result"] == [0, 1, 2], t2


def test_delete_and_the_result_cache(api, stack):
    f = api.create_function("alice", harness.Api.unique("cached"), BIG, cache=True)
    src = big_task(api, "alice", f["id"], 20000)
    copy = big_task(api, "alice", f["id"], 20000)
    assert copy["cached_from"] == src["id"], copy
    # The copy shows the objects of the task it copied: deleting the source keeps them
    # while the copy exists, and the cache answers no more from the deleted task.
    expect_status(api.delete("alice", f"/tasks/{src['id']}"), 204)
    assert_problem(api.get("alice", f"/tasks/{src['id']}"), 404)
    kept = api.task("alice", copy["id"])
    assert kept["result"] == list(range(20000))
    assert objects(stack, f"tasks/{src['id']}/"), "the copy's objects went with its source"
    fresh = big_task(api, "alice", f["id"], 20000)
    assert fresh["cached_from"] is None and fresh["id"] != src["id"], fresh
    # The last copy goes: the objects go with it.
    expect_status(api.delete("alice", f"/tasks/{copy['id']}"), 204)
    assert objects(stack, f"tasks/{src['id']}/") == {}
    assert api.task("alice", fresh["id"])["result"] == list(range(20000))


def test_study_task_refused_with_its_study(api, stack):
    f = api.create_function("alice", harness.Api.unique("sq"),
                            "def main(x: float) -> float:\n    return x * x\n")
    r = api.post("alice", "/studies", json={"target": {"function": f["id"]},
                                            "design": {"type": "list", "points": [{"x": 2}]}})
    expect_status(r, 201, 202)
    sid = r.json()["id"]
    deadline = time.monotonic() + 60
    while True:
        s = expect_status(api.get("alice", f"/studies/{sid}"), 200).json()
        if s["status"] != "running" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    items = expect_status(api.get("alice", f"/studies/{sid}/results"), 200).json()["items"]
    tid = items[0]["task_id"]
    p = assert_problem(api.delete("alice", f"/tasks/{tid}"), 409)
    assert sid in p["detail"], p
    assert api.task("alice", tid)["status"] == "completed"


# ---------------------------------------------------------------- deleting a function

def test_deleted_function_keeps_its_tasks_and_versions(api, stack):
    f = api.create_function("alice", harness.Api.unique("gone"), SLEEPY)
    done = api.execute("alice", f["id"], {"s": 0})
    # Queued or running when its function is deleted: it still runs its version.
    r = api.execute_raw("alice", f["id"], {"s": 1})
    expect_status(r, 202, 200)
    pending = r.json()["id"]
    expect_status(api.delete("alice", f"/functions/{f['id']}"), 204)
    assert_problem(api.get("alice", f"/functions/{f['id']}"), 404)
    assert_problem(api.execute_raw("alice", f["id"], {"s": 0}), 404)
    t = api.wait_task("alice", pending)
    assert t["status"] == "completed" and t["result"] == 1 and t["version"] == 1, t
    old = api.task("alice", done["id"])
    assert old["status"] == "completed" and old["function_id"] == f["id"] and old["version"] == 1
    # Its name is free again; the old tasks stay the old function's.
    g = api.create_function("alice", f["name"], SLEEPY)
    assert g["id"] != f["id"]
    assert api.task("alice", done["id"])["function_id"] == f["id"]


# ---------------------------------------------------------------- retention

def test_retention_settings(api, stack):
    assert expect_status(api.get("alice", "/company/retention"), 200).json() == {"task_days": None}
    p = assert_problem(api.put("alice", "/company/retention", json={"task_days": 30}), 403)
    assert "admin" in p["detail"], p
    for bad, path in (({"task_days": 0}, "task_days"), ({"task_days": 36501}, "task_days"),
                      ({"task_days": "30"}, "task_days"), ({"task_days": 1.5}, "task_days"),
                      ({}, "task_days"), ({"task_days": 30, "tasks": 1}, "tasks")):
        p = assert_problem(api.put("boss", "/company/retention", json=bad), 422)
        assert path in error_paths(p), (bad, p)
    assert_problem(api.put("boss", "/company/retention", data="[1]",
                           headers={"Content-Type": "application/json"}), 422)
    try:
        r = api.put("boss", "/company/retention", json={"task_days": 30})
        assert expect_status(r, 200).json() == {"task_days": 30}
        # Every member reads it; another company keeps its own (none).
        assert expect_status(api.get("bob", "/company/retention"), 200).json() == {"task_days": 30}
        assert expect_status(api.get("carol", "/company/retention"), 200).json() == {"task_days": None}
    finally:
        r = api.put("boss", "/company/retention", json={"task_days": None})
        assert expect_status(r, 200).json() == {"task_days": None}


def test_admin_gc_deletes_tasks_past_retention(api, stack, big):
    old = big_task(api, "alice", big["id"], 20001)
    recent = big_task(api, "alice", big["id"], 20002)
    g = api.create_function("carol", harness.Api.unique("big"), BIG)
    other = big_task(api, "carol", g["id"], 20003)  # globex keeps tasks forever
    for t in (old, other):
        age_task(stack, t["id"], 40)
    expect_status(api.put("boss", "/company/retention", json={"task_days": 30}), 200)
    try:
        out = admin_gc(stack)
        assert "deleted" in out, out
    finally:
        expect_status(api.put("boss", "/company/retention", json={"task_days": None}), 200)
    assert_gone(api, stack, "alice", old)
    assert api.task("alice", recent["id"])["result"] == list(range(20002))
    assert objects(stack, f"tasks/{recent['id']}/")
    assert api.task("carol", other["id"])["result"] == list(range(20003))
    assert objects(stack, f"tasks/{other['id']}/")


def test_admin_gc_removes_orphaned_objects(api, stack, big):
    # A crash between a row's deletion and its objects' leaves objects no row shows.
    crashed = big_task(api, "alice", big["id"], 20004)
    sql(stack, f"DELETE FROM tasks WHERE id = '{crashed['id']}'")
    assert objects(stack, f"tasks/{crashed['id']}/")
    stray = str(uuid.uuid4())
    put_object(stack, f"tasks/{stray}/result.json", b"[1, 2, 3]")
    put_object(stack, "tasks/not-a-task-id/keep.txt", b"not ours to judge")
    live = big_task(api, "alice", big["id"], 20005)
    out = admin_gc(stack)
    assert "objects of" in out, out
    assert objects(stack, f"tasks/{crashed['id']}/") == {}
    assert objects(stack, f"tasks/{stray}/") == {}
    assert objects(stack, "tasks/not-a-task-id/") == {"tasks/not-a-task-id/keep.txt": b"not ours to judge"}
    assert objects(stack, f"tasks/{live['id']}/")
    assert api.task("alice", live["id"])["result"] == list(range(20005))


def test_background_collector():
    """serve --gc-interval: the server's own collector applies the retention."""
    s = harness.start_stack("retention-bg", users=USERS[:3], extra_args=["--gc-interval", "1"])
    try:
        api = s.api
        f = api.create_function("alice", harness.Api.unique("big"), BIG)
        old = big_task(api, "alice", f["id"], 20006)
        assert objects(s, f"tasks/{old['id']}/")
        age_task(s, old["id"], 3)
        expect_status(api.put("boss", "/company/retention", json={"task_days": 2}), 200)
        deadline = time.monotonic() + 60
        while api.get("alice", f"/tasks/{old['id']}").status_code == 200:
            assert time.monotonic() < deadline, "the collector did not delete the task"
            time.sleep(0.2)
        assert_gone(api, s, "alice", old)
        # The pass logs what it did once it ended (the orphans come after the tasks).
        while "collector: deleted 1 task(s)" not in s.server.log_path.read_text(errors="replace"):
            assert time.monotonic() < deadline, harness.tail(s.server.log_path)
            time.sleep(0.2)
        expect_status(api.get("alice", "/healthz"), 200)
    finally:
        s.close()


def test_cli_task_rm(api, stack, big, tmp_path):
    t = big_task(api, "alice", big["id"], 7)
    env = {"MECAPY_URL": api.base, "MECAPY_TOKEN": stack.users[0].token}
    r = harness.run_cli(["task", "rm", t["id"]], env=env)
    assert r.returncode == 0 and f"deleted task {t['id']}" in r.stdout, (r.stdout, r.stderr)
    assert_gone(api, stack, "alice", t)
    r = harness.run_cli(["task", "rm", t["id"]], env=env)
    assert r.returncode == 3 and t["id"] in r.stderr, (r.returncode, r.stderr)
    r = harness.run_cli(["task", "rm", "nope"], env=env)
    assert r.returncode == 2, r.stderr
