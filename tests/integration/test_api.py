"""The HTTP contract of docs/api.md, driven against a real `mecapy serve`."""
import json
import time
import uuid
from pathlib import Path

import pytest
import requests

import harness

from harness import (RFC3339_UTC, STATUSES, TERMINAL, assert_problem, describe,
                     expect_status, is_problem)

ADD = """\
def main(a: float, b: float = 1.0) -> float:
    print("adding", a, b)
    return a + b
"""

SLOW = """\
import time

def main(seconds: float = 5.0) -> str:
    time.sleep(seconds)
    return "slept"
"""

TASK_FIELDS = {"id", "function_id", "version", "status", "inputs", "result", "error", "logs",
               "logs_truncated", "artifacts", "queued_at", "started_at", "finished_at",
               "execution_ms", "cpu_ms", "peak_memory_kb", "attempts"}
FUNCTION_FIELDS = {"id", "name", "description", "visibility", "owner_id", "version", "handler",
                   "input_schema", "requirements", "limits", "isolation", "created_at",
                   "updated_at"}


@pytest.fixture(scope="module")
def adder(api):
    return api.create_function("alice", api.unique("adder"), ADD)


# ---------------------------------------------------------------- health, OpenAPI

def test_healthz(api):
    r = requests.get(api.base + "/healthz", timeout=10)
    expect_status(r, 200)
    assert r.json() == {"status": "ok"}, describe(r)


def test_openapi_served_without_auth(api):
    r = requests.get(api.url("/openapi.json"), timeout=10)
    expect_status(r, 200)
    assert "json" in r.headers.get("Content-Type", ""), describe(r)
    doc = r.json()
    assert isinstance(doc.get("openapi"), str) and doc["openapi"].startswith("3.1."), \
        f"openapi must be 3.1.x, got {doc.get('openapi')!r}"
    assert isinstance(doc.get("info"), dict) and doc["info"].get("title") and \
        doc["info"].get("version"), "info.title and info.version are required by OpenAPI"
    paths = doc.get("paths")
    assert isinstance(paths, dict) and paths, "no paths"
    joined = " ".join(paths)
    for route in ("/auth/login", "/functions", "/functions/{id}/execute", "/tasks/{id}",
                  "/tokens"):
        assert route in joined, f"OpenAPI paths lack {route}: {sorted(paths)}"
    # Every operation has a response description (required by the spec).
    for p, item in paths.items():
        for method, op in item.items():
            if method in ("get", "post", "put", "delete", "patch"):
                assert isinstance(op.get("responses"), dict) and op["responses"], \
                    f"{method.upper()} {p} has no responses"


# ---------------------------------------------------------------- login, sessions, tokens

def test_login_good(api):
    u = api.users["alice"]
    r = requests.post(api.url("/auth/login"), json={"email": u.email, "password": u.password},
                      timeout=10)
    expect_status(r, 200)
    body = r.json()
    assert isinstance(body.get("token"), str) and len(body["token"]) >= 16, describe(r)
    assert RFC3339_UTC.match(body.get("expires_at") or ""), f"expires_at: {describe(r)}"
    assert body.get("user", {}).get("email") == u.email, describe(r)
    assert u.password not in r.text


def test_login_wrong_password_and_unknown_email_same_401(api):
    u = api.users["alice"]
    r1 = requests.post(api.url("/auth/login"), json={"email": u.email, "password": "wrong-pass-999"},
                       timeout=10)
    p1 = assert_problem(r1, 401)
    r2 = requests.post(api.url("/auth/login"),
                       json={"email": "nobody@acme.test", "password": "wrong-pass-999"}, timeout=10)
    p2 = assert_problem(r2, 401)
    assert (p1.get("type"), p1.get("title"), p1.get("detail")) == \
        (p2.get("type"), p2.get("title"), p2.get("detail")), \
        f"wrong password and unknown email must answer the same: {p1} vs {p2}"


def test_me(api):
    r = api.get("alice", "/me")
    expect_status(r, 200)
    me = r.json()
    for k in ("id", "email", "company", "role", "created_at"):
        assert k in me, f"/me lacks {k}: {me}"
    assert me["email"] == "alice@acme.test" and me["company"] == "acme", me
    assert me["role"] in ("member", "admin"), me
    assert not [k for k in me if "password" in k.lower()], me


def test_logout_revokes_session(api):
    u = api.users["bob"]
    r = requests.post(api.url("/auth/login"), json={"email": u.email, "password": u.password},
                      timeout=10)
    tok = expect_status(r, 200).json()["token"]
    h = {"Authorization": f"Bearer {tok}"}
    expect_status(requests.get(api.url("/me"), headers=h, timeout=10), 200)
    expect_status(requests.post(api.url("/auth/logout"), headers=h, timeout=10), 204)
    assert_problem(requests.get(api.url("/me"), headers=h, timeout=10), 401)
    # bob's other session (the fixture's) still works
    expect_status(api.get("bob", "/me"), 200)


def test_api_tokens_create_use_list_revoke(api):
    r = api.post("alice", "/tokens", json={"name": "ci-token", "expires_in_days": 30})
    expect_status(r, 201)
    t = r.json()
    for k in ("id", "name", "token", "created_at", "expires_at"):
        assert k in t, f"token answer lacks {k}: {t}"
    assert t["name"] == "ci-token" and isinstance(t["token"], str) and len(t["token"]) >= 16
    h = {"Authorization": f"Bearer {t['token']}"}
    me = expect_status(requests.get(api.url("/me"), headers=h, timeout=10), 200).json()
    assert me["email"] == "alice@acme.test"

    lst = expect_status(api.get("alice", "/tokens"), 200).json()
    items = lst.get("items")
    assert isinstance(items, list), lst
    mine = [i for i in items if i.get("id") == t["id"]]
    assert len(mine) == 1, f"created token not listed: {lst}"
    for k in ("id", "name", "created_at", "expires_at", "last_used_at"):
        assert k in mine[0], f"token list item lacks {k}: {mine[0]}"
    assert mine[0]["last_used_at"] is not None, "the token was used: last_used_at must be set"
    assert t["token"] not in json.dumps(lst), "the token secret must be shown only once"

    # bob neither sees nor revokes alice's token
    blst = expect_status(api.get("bob", "/tokens"), 200).json()
    assert all(i.get("id") != t["id"] for i in blst["items"]), blst
    assert_problem(api.delete("bob", f"/tokens/{t['id']}"), 404)
    expect_status(requests.get(api.url("/me"), headers=h, timeout=10), 200)

    expect_status(api.delete("alice", f"/tokens/{t['id']}"), 204)
    assert_problem(requests.get(api.url("/me"), headers=h, timeout=10), 401)
    lst = expect_status(api.get("alice", "/tokens"), 200).json()
    still = [i for i in lst["items"] if i.get("id") == t["id"]]
    assert not still or still[0].get("revoked_at"), \
        f"a revoked token is still listed as if it were live: {still}"


def test_token_without_expiry_and_bad_token_body(api):
    r = api.post("alice", "/tokens", json={"name": "no-expiry"})
    expect_status(r, 201)
    expect_status(api.delete("alice", f"/tokens/{r.json()['id']}"), 204)
    p = assert_problem(api.post("alice", "/tokens", json={"expires_in_days": 3}), 422)
    assert any("name" in e.get("path", "") for e in p.get("errors", [])), p
    assert_problem(api.post("alice", "/tokens", json={"name": "x", "expires_in_days": 99999}), 422)


def test_method_not_allowed(api):
    assert_problem(api.delete("alice", "/me"), 405)


# ---------------------------------------------------------------- functions

def test_function_create_get_list(api, fname):
    f = api.create_function("alice", fname, ADD, description="adds two numbers")
    missing = FUNCTION_FIELDS - set(f)
    assert not missing, f"function object lacks {missing}: {f}"
    assert f["name"] == fname and f["version"] == 1 and f["handler"] == "main", f
    assert f["visibility"] == "private", "default visibility is private"
    assert f["description"] == "adds two numbers"
    assert f["requirements"] == []
    lim = f["limits"]
    assert lim.get("timeout_s") == 300 and lim.get("memory_mb") == 2048 and lim.get("cpus") == 2, \
        f"server default limits are 300 s, 2048 MB, 2 CPUs: {lim}"
    for k in ("created_at", "updated_at"):
        assert RFC3339_UTC.match(f[k] or ""), f"{k} not RFC 3339 UTC: {f[k]!r}"

    g = expect_status(api.get("alice", f"/functions/{f['id']}"), 200).json()
    assert g["code"] == ADD and g["id"] == f["id"], g

    lst = expect_status(api.get("alice", "/functions", params={"name": fname}), 200).json()
    assert [i["id"] for i in lst["items"]] == [f["id"]], f"?name= filter: {lst}"
    assert "next_cursor" in lst


def test_function_duplicate_name_409(api, fname):
    api.create_function("alice", fname, ADD)
    r = api.post("alice", "/functions", json={"name": fname, "code": ADD})
    assert_problem(r, 409)
    # the same name is free for another user
    api.create_function("bob", fname, ADD)


def test_function_name_rules(api):
    for bad in ("", "has space", "x" * 129, "semi;colon", "slash/name"):
        p = assert_problem(api.post("alice", "/functions", json={"name": bad, "code": ADD}), 422)
        assert "name" in [e.get("path") for e in p.get("errors", [])], p
    api.create_function("alice", "Ok_name-1." + api.unique("x"), ADD)


def test_function_limits_defaults_and_maxima(api, fname):
    f = api.create_function("alice", fname, ADD, limits={"timeout_s": 5, "memory_mb": 512})
    assert f["limits"]["timeout_s"] == 5 and f["limits"]["memory_mb"] == 512
    assert f["limits"]["cpus"] == 2, f"unspecified cpus takes the default: {f['limits']}"
    for lim, path in (({"memory_mb": 10 ** 7}, "limits.memory_mb"),
                      ({"timeout_s": 10 ** 6}, "limits.timeout_s"),
                      ({"cpus": 10 ** 4}, "limits.cpus"),
                      ({"timeout_s": 0}, "limits.timeout_s"),
                      ({"timeout_s": "fast"}, "limits.timeout_s")):
        r = api.post("alice", "/functions", json={"name": api.unique("lim"), "code": ADD,
                                                  "limits": lim})
        p = assert_problem(r, 422)
        assert path in [e.get("path") for e in p.get("errors", [])], f"{lim}: {p}"


def test_input_schema_from_typed_signature(api, fname):
    code = (
        "def main(F: float, L: float, n: int = 3, label: str = 'beam',\n"
        "         check: bool = False, loads: list = None, opts: dict = None) -> dict:\n"
        "    return {}\n")
    f = api.create_function("alice", fname, code)
    s = f["input_schema"]
    assert s.get("type") == "object", f"input_schema must be a JSON Schema object: {s}"
    props = s.get("properties", {})
    want = {"F": "number", "L": "number", "n": "integer", "label": "string",
            "check": "boolean", "loads": "array", "opts": "object"}
    for k, typ in want.items():
        assert k in props, f"schema lacks {k}: {s}"
        t = props[k].get("type")
        ok = t == typ or (isinstance(t, list) and typ in t)
        assert ok, f"{k}: expected type {typ}, got {props[k]}"
    assert set(s.get("required", [])) == {"F", "L"}, f"required: {s.get('required')}"
    assert props["n"].get("default") == 3 and props["label"].get("default") == "beam", \
        f"defaults should be in the schema: {props}"


def test_update_makes_version_and_old_version_callable(api, fname):
    f = api.create_function("alice", fname, "def main(x: float) -> float:\n    return x * 2\n")
    fid = f["id"]
    # description only: no new version
    r = api.put("alice", f"/functions/{fid}", json={"description": "doubler"})
    g = expect_status(r, 200).json()
    assert g["version"] == 1 and g["description"] == "doubler", g
    # new code: version 2
    r = api.put("alice", f"/functions/{fid}",
                json={"code": "def main(x: float) -> float:\n    return x * 3\n"})
    g = expect_status(r, 200).json()
    assert g["version"] == 2, f"a code change must make version 2: {g}"
    assert g["name"] == fname and g["description"] == "doubler"

    vs = expect_status(api.get("alice", f"/functions/{fid}/versions"), 200).json()
    assert [v["version"] for v in vs["items"]] == [2, 1], f"newest first: {vs}"
    for v in vs["items"]:
        for k in ("version", "handler", "input_schema", "created_at"):
            assert k in v, v

    old = expect_status(api.get("alice", f"/functions/{fid}", params={"version": "1"}), 200).json()
    assert "x * 2" in old["code"] and old["version"] == 1, old
    assert_problem(api.get("alice", f"/functions/{fid}", params={"version": "7"}), 404)

    t2 = api.execute("alice", fid, {"x": 5})
    assert (t2["status"], t2["result"], t2["version"]) == ("completed", 15, 2), t2
    t1 = api.execute("alice", fid, {"x": 5}, version=1)
    assert (t1["status"], t1["result"], t1["version"]) == ("completed", 10, 1), t1

    # limits change: version 3; handler change with matching code: version 4
    g = expect_status(api.put("alice", f"/functions/{fid}", json={"limits": {"timeout_s": 7}}),
                      200).json()
    assert g["version"] == 3 and g["limits"]["timeout_s"] == 7, g
    g = expect_status(api.put("alice", f"/functions/{fid}", json={
        "code": "def run(y: int) -> int:\n    return -y\n", "handler": "run"}), 200).json()
    assert g["version"] == 4 and g["handler"] == "run", g
    assert set(g["input_schema"]["properties"]) == {"y"}, g["input_schema"]
    t = api.execute("alice", fid, {"y": 4})
    assert (t["status"], t["result"]) == ("completed", -4), t
    # version 1's schema still applies to version 1
    t = api.execute("alice", fid, {"x": 1}, version=1)
    assert t["result"] == 2, t


def test_update_by_non_owner_refused(api, fname):
    f = api.create_function("alice", fname, ADD, visibility="company")
    # bob can see it (same company) but not change it
    expect_status(api.get("bob", f"/functions/{f['id']}"), 200)
    r = api.put("bob", f"/functions/{f['id']}", json={"description": "pwned"})
    assert r.status_code in (403, 404), describe(r)
    assert is_problem(r), describe(r)
    r = api.delete("bob", f"/functions/{f['id']}")
    assert r.status_code in (403, 404), describe(r)
    g = expect_status(api.get("alice", f"/functions/{f['id']}"), 200).json()
    assert g["description"] == "" and g["version"] == 1, g


def test_delete_function_keeps_tasks(api, fname):
    f = api.create_function("alice", fname, ADD)
    t = api.execute("alice", f["id"], {"a": 1, "b": 2})
    assert t["result"] == 3
    expect_status(api.delete("alice", f"/functions/{f['id']}"), 204)
    assert_problem(api.get("alice", f"/functions/{f['id']}"), 404)
    assert_problem(api.post("alice", f"/functions/{f['id']}/execute", json={"inputs": {"a": 1}}),
                   404)
    lst = expect_status(api.get("alice", "/functions", params={"name": fname}), 200).json()
    assert lst["items"] == [], lst
    t2 = api.task("alice", t["id"])
    assert t2["status"] == "completed" and t2["result"] == 3, t2
    # the name is free again
    api.create_function("alice", fname, ADD)


def test_list_functions_pagination(api):
    prefix = api.unique("pg")
    ids = {api.create_function("carol", f"{prefix}-{i}", ADD)["id"] for i in range(5)}
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = expect_status(api.get("carol", "/functions", params=params), 200).json()
        pages += 1
        assert len(page["items"]) <= 2, page
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert pages < 50, "pagination does not end"
    assert ids <= set(seen), "every function appears"
    assert len(seen) == len(set(seen)), f"no function twice across pages: {seen}"


# ---------------------------------------------------------------- execute and tasks

def test_execute_202_then_task(api, adder):
    r = api.execute_raw("alice", adder["id"], {"a": 2, "b": 3})
    expect_status(r, 202)
    t = r.json()
    assert t.get("status") == "queued", f"execute without wait answers the queued task: {t}"
    assert isinstance(t.get("id"), str) and t["id"], t
    done = api.wait_task("alice", t["id"], timeout=30)
    assert done["status"] == "completed" and done["result"] == 5, done


def test_execute_wait_200_and_task_fields(api, adder):
    r = api.execute_raw("alice", adder["id"], {"a": 1.5}, wait=30)
    expect_status(r, 200)
    t = r.json()
    missing = TASK_FIELDS - set(t)
    assert not missing, f"task lacks {missing}: {t}"
    assert t["status"] == "completed", t
    assert t["result"] == 2.5 and t["error"] is None, t
    assert t["function_id"] == adder["id"] and t["version"] == 1
    assert t["inputs"] == {"a": 1.5}, f"inputs are stored as sent: {t['inputs']}"
    assert "adding 1.5 1.0" in t["logs"] and t["logs_truncated"] is False, t["logs"]
    assert t["artifacts"] == []
    for k in ("queued_at", "started_at", "finished_at"):
        assert RFC3339_UTC.match(t[k] or ""), f"{k} not RFC 3339 UTC: {t[k]!r}"
    assert t["queued_at"] <= t["started_at"] <= t["finished_at"], t
    for k in ("execution_ms", "cpu_ms", "peak_memory_kb"):
        assert isinstance(t[k], int) and t[k] >= 0, f"{k}: {t[k]!r}"
    assert t["peak_memory_kb"] > 0, "a Python process uses some memory"
    assert t["attempts"] == 1, t
    assert api.task("alice", t["id"]) == t, "GET /tasks/{id} answers the same task"


def test_execute_wait_runs_out_answers_202(api, fname):
    f = api.create_function("alice", fname, SLOW)
    t0 = time.monotonic()
    r = api.execute_raw("alice", f["id"], {"seconds": 4}, wait=1)
    dt = time.monotonic() - t0
    expect_status(r, 202)
    assert r.json()["status"] in ("queued", "running"), r.json()
    assert 0.8 <= dt < 3.5, f"?wait=1 should hold about 1 s, held {dt:.2f} s"
    # GET ?wait holds until the end
    t = api.wait_task("alice", r.json()["id"], timeout=30)
    assert t["status"] == "completed" and t["result"] == "slept"


def test_wait_bounds(api, adder):
    for bad in ("301", "-1", "abc"):
        assert_problem(api.execute_raw("alice", adder["id"], {"a": 1}, wait=bad), 400)


def test_list_tasks_cursor_pagination(api, fname):
    f = api.create_function("bob", fname, ADD)
    ids = [api.execute("bob", f["id"], {"a": i})["id"] for i in range(5)]
    pages, seen, cursor = [], [], None
    while True:
        params = {"function_id": f["id"], "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = expect_status(api.get("bob", "/tasks", params=params), 200).json()
        pages.append(len(page["items"]))
        seen += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            break
        assert len(pages) < 10, "pagination does not end"
    assert pages == [2, 2, 1], f"page sizes with limit=2 over 5 tasks: {pages}"
    assert [t["id"] for t in seen] == list(reversed(ids)), "newest first, each task once"
    # status filter and ownership
    done = expect_status(api.get("bob", "/tasks", params={"function_id": f["id"],
                                                          "status": "completed"}), 200).json()
    assert len(done["items"]) == 5
    failed = expect_status(api.get("bob", "/tasks", params={"function_id": f["id"],
                                                            "status": "failed"}), 200).json()
    assert failed["items"] == []
    other = expect_status(api.get("alice", "/tasks", params={"function_id": f["id"]}), 200).json()
    assert other["items"] == [], "alice's task list has none of bob's tasks"
    assert_problem(api.get("bob", "/tasks", params={"status": "bogus"}), 400)
    assert_problem(api.get("bob", "/tasks", params={"limit": "zero"}), 400)


def test_list_tasks_time_span(api, fname):
    f = api.create_function("bob", fname, ADD)
    ids = {api.execute("bob", f["id"], {"a": i})["id"] for i in range(3)}

    def listed(**span):
        page = expect_status(api.get("bob", "/tasks", params={"function_id": f["id"], **span}), 200).json()
        return {t["id"] for t in page["items"]}

    past, future = "2000-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
    assert listed(since=past) == ids
    assert listed(since=past, until=future) == ids
    assert listed(since=future) == set(), "since is after every task: none"
    assert listed(until=past) == set(), "until is before every task: none"
    hour_ago = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 3600))
    assert listed(since=hour_ago) == ids
    for name in ("since", "until"):
        r = api.get("bob", "/tasks", params={name: "yesterday"})
        assert_problem(r, 400)
        assert name in r.text, f"the 400 names {name}: {r.text}"


def test_logs_route(api, fname):
    code = ("import warnings\n"
            "def main(n: int) -> int:\n"
            "    for i in range(n):\n"
            "        print(f'line {i}')\n"
            "    warnings.warn('to stderr')\n"
            "    return n\n")
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {"n": 3})
    assert t["status"] == "completed", t
    r = api.get("alice", f"/tasks/{t['id']}/logs")
    expect_status(r, 200)
    assert r.headers.get("Content-Type", "").startswith("text/plain"), describe(r)
    for s in ("line 0", "line 1", "line 2", "to stderr"):
        assert s in r.text, f"logs lack {s!r}: {r.text!r}"
    assert r.text.index("line 0") < r.text.index("line 2")
    assert_problem(api.get("bob", f"/tasks/{t['id']}/logs"), 404)


def test_artifacts_route(api, fname):
    code = ("from pathlib import Path\n"
            "def main(text: str) -> str:\n"
            "    Path('outputs').mkdir(exist_ok=True)\n"
            "    Path('outputs/hello.txt').write_text(text, encoding='utf-8')\n"
            "    Path('outputs/data.bin').write_bytes(bytes(range(256)))\n"
            "    Path('not-an-output.txt').write_text('x')\n"
            "    return 'ok'\n")
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {"text": "héllo wörld"})
    assert t["status"] == "completed", t
    arts = {a["name"]: a for a in t["artifacts"]}
    assert set(arts) == {"hello.txt", "data.bin"}, f"only outputs/ files are artifacts: {t['artifacts']}"
    assert arts["hello.txt"]["size"] == len("héllo wörld".encode())
    assert arts["data.bin"]["size"] == 256
    for a in arts.values():
        assert isinstance(a.get("url"), str) and a["url"], a
    r = api.get("alice", arts["data.bin"]["url"])
    expect_status(r, 200)
    assert r.content == bytes(range(256))
    r = api.get("alice", f"/tasks/{t['id']}/artifacts/hello.txt")
    expect_status(r, 200)
    assert r.content == "héllo wörld".encode()
    assert_problem(api.get("alice", f"/tasks/{t['id']}/artifacts/nope.txt"), 404)
    assert_problem(api.get("bob", f"/tasks/{t['id']}/artifacts/hello.txt"), 404)
    r = api.get("alice", f"/tasks/{t['id']}/artifacts/..%2F..%2Fmecapy.db")
    assert r.status_code in (400, 404), describe(r)


def test_cancel_running_then_409(api, fname):
    f = api.create_function("alice", fname, SLOW)
    t = expect_status(api.execute_raw("alice", f["id"], {"seconds": 20}), 202).json()
    api.wait_task("alice", t["id"], timeout=20, statuses={"running"})
    r = api.post("alice", f"/tasks/{t['id']}/cancel")
    expect_status(r, 200)
    assert r.json()["status"] == "cancelled", r.json()
    assert_problem(api.post("alice", f"/tasks/{t['id']}/cancel"), 409)
    assert_problem(api.post("bob", f"/tasks/{t['id']}/cancel"), 404)
    time.sleep(1.0)
    t2 = api.task("alice", t["id"])
    assert t2["status"] == "cancelled" and t2["finished_at"], f"cancel is final: {t2}"
    # the worker slot is free again: a short call completes promptly
    t3 = api.execute("alice", f["id"], {"seconds": 0.1}, wait=20)
    assert t3["status"] == "completed", t3


# A function that names its own process (its comm, seen from the host's /proc) so the
# test can tell whether its code still runs, and would leave a file after its sleep.
CANCEL_ME = """\
import ctypes
import time

def main(marker: str, seconds: float = 60.0) -> str:
    ctypes.CDLL(None).prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME
    time.sleep(seconds)
    with open("outputs/after.txt", "w") as f:
        f.write("the sleep ended")
    return "slept"
"""


def _marked(root_pid: int, marker: str) -> list[int]:
    out = []
    for p in harness.descendants(root_pid):
        try:
            if Path(f"/proc/{p}/comm").read_text().strip() == marker:
                out.append(p)
        except OSError:
            pass
    return out


def _wait_marked(root_pid: int, marker: str, present: bool, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if bool(_marked(root_pid, marker)) == present:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"process {marker} {'never appeared' if present else 'still runs'} "
                         f"after {timeout} s")


def test_cancel_stops_the_running_call(api, fname):
    f = api.create_function("alice", fname, CANCEL_ME)
    marker = "mpc" + uuid.uuid4().hex[:8]
    t = expect_status(api.execute_raw("alice", f["id"], {"marker": marker}), 202).json()
    api.wait_task("alice", t["id"], timeout=20, statuses={"running"})
    _wait_marked(api.server.pid, marker, True, 20)
    t0 = time.monotonic()
    r = api.post("alice", f"/tasks/{t['id']}/cancel")
    expect_status(r, 200)
    assert r.json()["status"] == "cancelled", r.json()
    # The sandbox is gone within a few seconds, not after the 60 s sleep.
    gone = _wait_marked(api.server.pid, marker, False, 5)
    assert gone < 5
    # The worker is free at once: a following call completes well under the sleep.
    t3 = api.execute("alice", f["id"], {"marker": "mpc-next", "seconds": 0.1}, wait=20)
    assert t3["status"] == "completed", t3
    assert time.monotonic() - t0 < 15
    t2 = api.task("alice", t["id"])
    assert t2["status"] == "cancelled" and not t2.get("artifacts"), t2
    assert t2["error"]["type"] == "Cancelled", t2


def test_cancel_completed_409(api, adder):
    t = api.execute("alice", adder["id"], {"a": 1})
    assert t["status"] == "completed"
    assert_problem(api.post("alice", f"/tasks/{t['id']}/cancel"), 409)
    assert api.task("alice", t["id"])["status"] == "completed"


def test_idempotency_key_returns_same_task(api, fname):
    f = api.create_function("alice", fname, ADD)
    key = api.unique("idem")
    r1 = api.execute_raw("alice", f["id"], {"a": 1, "b": 1}, idempotency_key=key)
    expect_status(r1, 202)
    r2 = api.execute_raw("alice", f["id"], {"a": 1, "b": 1}, idempotency_key=key, wait=20)
    expect_status(r2, 200, 202)
    assert r2.json()["id"] == r1.json()["id"], "same Idempotency-Key, same task"
    r3 = api.execute_raw("alice", f["id"], {"a": 1, "b": 1}, idempotency_key=api.unique("idem"))
    assert expect_status(r3, 202, 200).json()["id"] != r1.json()["id"]
    api.wait_task("alice", r3.json()["id"])
    tasks = expect_status(api.get("alice", "/tasks", params={"function_id": f["id"]}), 200).json()
    assert len(tasks["items"]) == 2, f"the retried call must not run again: {tasks['items']}"
    # the key is the caller's: bob with the same key on a function of his gets his own task
    g = api.create_function("bob", api.unique("idem-bob"), ADD)
    rb = api.execute_raw("bob", g["id"], {"a": 1}, idempotency_key=key)
    assert expect_status(rb, 202, 200).json()["id"] != r1.json()["id"]
    too_long = "k" * 129
    r = api.execute_raw("alice", f["id"], {"a": 1}, idempotency_key=too_long)
    assert r.status_code in (400, 422), describe(r)


def test_idempotency_key_replays_the_first_task_after_a_new_version(api, fname):
    """A retry with the same key, function and inputs is the same call, even when a new
    version was published in between: it gets the first task (and its result), not a 409,
    and runs nothing again. Only a retry that names another version is a conflict."""
    f = api.create_function("alice", fname, ADD)
    key = api.unique("idem-v")
    first = api.execute("alice", f["id"], {"a": 2, "b": 3}, idempotency_key=key)
    assert first["status"] == "completed" and first["result"] == 5.0 and first["version"] == 1, first
    g = expect_status(api.put("alice", f"/functions/{f['id']}", json={
        "code": "def main(a: float, b: float = 1.0) -> float:\n    return a * b\n"}), 200).json()
    assert g["version"] == 2, g
    r = api.execute_raw("alice", f["id"], {"a": 2, "b": 3}, idempotency_key=key, wait=20)
    again = expect_status(r, 200).json()
    assert again["id"] == first["id"] and again["version"] == 1 and again["result"] == 5.0, again
    # naming version 1 is the same call too; version 2 is another call with that key
    r = api.execute_raw("alice", f["id"], {"a": 2, "b": 3}, idempotency_key=key, version=1)
    assert expect_status(r, 200).json()["id"] == first["id"]
    p = assert_problem(api.execute_raw("alice", f["id"], {"a": 2, "b": 3}, idempotency_key=key,
                                       version=2), 409)
    assert first["id"] in p["detail"] and "version 1" in p["detail"], p
    # other inputs under the same key stay a conflict
    assert_problem(api.execute_raw("alice", f["id"], {"a": 9}, idempotency_key=key), 409)
    tasks = expect_status(api.get("alice", "/tasks", params={"function_id": f["id"]}), 200).json()
    assert [t["id"] for t in tasks["items"]] == [first["id"]], "the retries ran nothing"


def test_task_list_items_are_summaries(api, fname):
    """A list shows what ran and how it went, never inputs, results, errors, logs or
    artifacts: GET /tasks/{id} gives those."""
    code = ("def main(x: int) -> int:\n    print('x is', x)\n"
            "    if x < 0:\n        raise ValueError('negative ' * 50)\n    return x\n")
    f = api.create_function("alice", fname, code)
    ok = api.execute("alice", f["id"], {"x": 7})
    bad = api.execute("alice", f["id"], {"x": -1})
    assert ok["status"] == "completed" and bad["status"] == "failed", (ok, bad)
    items = expect_status(api.get("alice", "/tasks", params={"function_id": f["id"]}), 200).json()["items"]
    assert [t["id"] for t in items] == [bad["id"], ok["id"]], items
    want = {"id", "function_id", "version", "status", "queued_at", "started_at", "finished_at",
            "execution_ms", "cpu_ms", "peak_memory_kb", "attempts", "error_type"}
    for t in items:
        assert set(t) == want, f"a summary has exactly {sorted(want)}: {sorted(t)}"
    assert items[0]["error_type"] == "ValueError" and items[0]["status"] == "failed", items[0]
    assert items[1]["error_type"] is None and isinstance(items[1]["execution_ms"], int), items[1]
    # the whole task is one GET away
    full = api.task("alice", bad["id"])
    assert full["error"]["type"] == "ValueError" and "negative" in full["error"]["message"], full
    assert "x is -1" in full["logs"] and full["inputs"] == {"x": -1}, full
    assert api.task("alice", ok["id"])["result"] == 7


def test_status_values_are_known(api, adder):
    lst = expect_status(api.get("alice", "/tasks"), 200).json()
    assert lst["items"], "alice has tasks by now"
    for t in lst["items"]:
        assert t["status"] in STATUSES, t
        if t["status"] in TERMINAL:
            assert t["finished_at"], t


NUMBERS = '''
def main(x: float, y: float):
    return {"sum": x + y, "x": x, "third": 1 / 3, "two": 2.0}
'''


def test_numbers_read_as_typed(api, fname):
    """A real is written with the fewest digits that read back exactly: 0.05 is 0.05 in
    the bytes a client reads (not 0.050000000000000003), 2.0 stays a real, and 0.1 + 0.2
    keeps the digits that make it differ from 0.3."""
    f = api.create_function("alice", fname, NUMBERS)
    t = api.execute("alice", f["id"], {"x": 0.1, "y": 0.2})
    assert t["status"] == "completed", t
    r = api.get("alice", f"/tasks/{t['id']}")
    expect_status(r, 200)
    raw = r.text
    assert '"x":0.1' in raw.replace(" ", ""), raw
    assert "0.10000000000000001" not in raw, raw
    assert "0.30000000000000004" in raw, raw
    assert "0.3333333333333333" in raw and "0.33333333333333331" not in raw, raw
    assert '"two":2.0' in raw.replace(" ", ""), raw
    assert r.json()["result"]["sum"] == 0.1 + 0.2


def test_artifacts_in_folders(api, fname):
    """A file in a folder of outputs/ is an artifact named by its path ("sub/x.csv"), served
    at its URL (the name escaped); a symlinked file or folder is not one, and a name that
    climbs out of a folder, or is not the whole path, finds nothing."""
    code = ("from pathlib import Path\n"
            "def main() -> str:\n"
            "    Path('outputs/sub/deeper').mkdir(parents=True, exist_ok=True)\n"
            "    Path('outputs/sub/x.csv').write_text('a,b\\n1,2\\n')\n"
            "    Path('outputs/sub/deeper/y.txt').write_text('y')\n"
            "    Path('outputs/etc').symlink_to('/etc')\n"
            "    Path('outputs/sub/passwd').symlink_to('/etc/passwd')\n"
            "    return 'ok'\n")
    f = api.create_function("alice", fname + "-folders", code)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "completed", t
    arts = {a["name"]: a for a in t["artifacts"]}
    assert set(arts) == {"sub/x.csv", "sub/deeper/y.txt"}, t["artifacts"]
    assert arts["sub/x.csv"]["url"] == f"/api/v1/tasks/{t['id']}/artifacts/sub%2Fx.csv", arts
    r = api.get("alice", arts["sub/x.csv"]["url"])
    expect_status(r, 200)
    assert r.content == b"a,b\n1,2\n"
    assert r.headers["Content-Type"].startswith("text/csv"), r.headers
    expect_status(api.get("alice", arts["sub/deeper/y.txt"]["url"]), 200)
    # the path written with its slashes is the same name
    r = api.get("alice", f"/tasks/{t['id']}/artifacts/sub/deeper/y.txt")
    expect_status(r, 200)
    assert r.content == b"y"
    for name in ("x.csv", "sub%2F..%2Fsub%2Fx.csv", "..%2Fsub%2Fx.csv", "sub%2Fpasswd",
                 "etc%2Fpasswd", "etc/passwd", "sub/deeper", "sub%2Fx.csv%2F..", "..%2F..%2F..%2Fmecapy.db"):
        assert_problem(api.get("alice", f"/tasks/{t['id']}/artifacts/{name}"), 404)
