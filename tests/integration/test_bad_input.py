"""Bad input answers a precise 4xx problem, and leaves the server serving with nothing lost.

Every test here is followed (autouse fixture) by: /healthz answers, the task made before the
module is still there unchanged, and a normal call still completes."""
import json
import re
import socket
import uuid

import pytest
import requests

from harness import API, assert_problem, describe, error_paths, expect_status

BEAM = """\
def main(F: float, L: float, n: int = 1) -> float:
    return F * L * n
"""


@pytest.fixture(scope="module")
def baseline(api):
    f = api.create_function("alice", api.unique("baseline"), BEAM)
    t = api.execute("alice", f["id"], {"F": 2.0, "L": 3.0})
    assert t["status"] == "completed" and t["result"] == 6.0, t
    return {"function": f, "task": t}


@pytest.fixture(autouse=True)
def still_serving(api, baseline):
    yield
    r = requests.get(api.base + "/healthz", timeout=10)
    assert r.status_code == 200, f"after the test, /healthz: {describe(r)}"
    t = api.task("alice", baseline["task"]["id"])
    assert (t["status"], t["result"], t["inputs"]) == ("completed", 6.0, {"F": 2.0, "L": 3.0}), \
        f"a task made before was changed or lost: {t}"
    t = api.execute("alice", baseline["function"]["id"], {"F": 1.5, "L": 2.0, "n": 2})
    assert t["status"] == "completed" and t["result"] == 6.0, f"a normal call after: {t}"


def raw_post(api, user, path, data: bytes, content_type="application/json"):
    h = {"Content-Type": content_type} if content_type is not None else {}
    return api.post(user, path, data=data, headers=h)


# ---------------------------------------------------------------- malformed bodies

def test_malformed_json_names_line_and_column(api):
    body = b'{\n  "name": "broken",\n  "code": \n}\n'
    p = assert_problem(raw_post(api, "alice", "/functions", body), 400)
    d = p.get("detail", "")
    assert re.search(r"line\D{0,3}4", d) and re.search(r"column\D{0,3}\d+", d), \
        f"detail must give line 4 and a column: {d!r}"


def test_malformed_json_on_execute(api, baseline):
    fid = baseline["function"]["id"]
    p = assert_problem(raw_post(api, "alice", f"/functions/{fid}/execute",
                                b'{"inputs": {"F": 1, "L": }}'), 400)
    assert "line" in p.get("detail", "") and "column" in p.get("detail", ""), p


def test_truncated_and_empty_bodies(api):
    assert_problem(raw_post(api, "alice", "/functions", b'{"name": "x", "code": "def'), 400)
    r = raw_post(api, "alice", "/functions", b"")
    assert r.status_code in (400, 422), describe(r)
    assert_problem(r, r.status_code)
    # JSON but not an object
    assert_problem(raw_post(api, "alice", "/functions", b'[1, 2, 3]'), 422)


def test_invalid_utf8_body(api):
    body = b'{"name": "caf\xe9-\xff\xfe", "code": "def main():\\n    return 1\\n"}'
    assert_problem(raw_post(api, "alice", "/functions", body), 400)


def test_wrong_content_type_415(api):
    body = json.dumps({"name": api.unique("ct"), "code": BEAM}).encode()
    assert_problem(raw_post(api, "alice", "/functions", body, "text/plain"), 415)
    assert_problem(raw_post(api, "alice", "/functions", body, "application/x-www-form-urlencoded"),
                   415)
    # application/json with a charset parameter is fine
    r = raw_post(api, "alice", "/functions", body, "application/json; charset=utf-8")
    expect_status(r, 201)


def _raw_http(api, head: bytes, body_chunks, timeout=20):
    """Send a request by hand; tolerate the server closing early (it may answer 413 before
    reading the whole body); return (status, headers+body text)."""
    s = socket.create_connection(("127.0.0.1", api.server.port), timeout=timeout)
    try:
        s.sendall(head)
        try:
            for c in body_chunks:
                s.sendall(c)
        except (BrokenPipeError, ConnectionResetError):
            pass
        data = b""
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
                if b"\r\n\r\n" in data:
                    hdr, _, rest = data.partition(b"\r\n\r\n")
                    m = re.search(rb"content-length:\s*(\d+)", hdr, re.I)
                    if m and len(rest) >= int(m.group(1)):
                        break
        except (ConnectionResetError, socket.timeout):
            pass
    finally:
        s.close()
    m = re.match(rb"HTTP/1\.[01] (\d{3})", data)
    assert m, f"no HTTP answer to an oversize body (got {data[:200]!r})"
    return int(m.group(1)), data.decode("utf-8", "replace")


def test_oversize_body_413(api):
    tok = api.users["alice"].token
    size = 2 * 1024 * 1024 + 1024
    prefix = b'{"name": "big", "code": "#'
    body = prefix + b"x" * (size - len(prefix) - 2) + b'"}'
    head = (f"POST {API}/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {tok}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    status, text = _raw_http(api, head, [body[i:i + 65536] for i in range(0, len(body), 65536)])
    assert status == 413, f"POST {API}/functions with {len(body)} bytes -> {text[:500]!r}"
    assert "application/problem+json" in text.lower(), text[:500]
    # chunked transfer, no Content-Length: the cap holds too
    head = (f"POST {API}/functions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {tok}\r\nContent-Type: application/json\r\n"
            f"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    chunks = [b"%x\r\n%s\r\n" % (len(body[i:i + 65536]), body[i:i + 65536])
              for i in range(0, len(body), 65536)] + [b"0\r\n\r\n"]
    status, text = _raw_http(api, head, chunks)
    assert status == 413, f"chunked POST of {len(body)} bytes -> {text[:500]!r}"


def test_just_under_body_limit_is_not_413(api):
    # 1.9 MiB of code is over the code limit (512 KiB) -> 422, not 413: the body cap is
    # on the body, the code cap names the field.
    code = "def main():\n    return 1\n#" + "x" * (int(1.9 * 1024 * 1024))
    r = api.post("alice", "/functions", json={"name": api.unique("big"), "code": code})
    p = assert_problem(r, 422)
    assert "code" in error_paths(p), p


# ---------------------------------------------------------------- body rules on create

def test_create_missing_fields_422(api):
    p = assert_problem(api.post("alice", "/functions", json={}), 422)
    paths = error_paths(p)
    assert "name" in paths and "code" in paths, f"both missing fields named: {p}"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("nc")}), 422)
    assert error_paths(p) == ["code"], p


def test_create_wrong_field_types_422(api):
    p = assert_problem(api.post("alice", "/functions", json={"name": 12, "code": BEAM}), 422)
    assert "name" in error_paths(p), p
    p = assert_problem(api.post("alice", "/functions", json={
        "name": api.unique("v"), "code": BEAM, "visibility": "everyone"}), 422)
    assert "visibility" in error_paths(p), p
    p = assert_problem(api.post("alice", "/functions", json={
        "name": api.unique("r"), "code": BEAM, "requirements": "numpy"}), 422)
    assert "requirements" in error_paths(p), p


def test_syntax_error_422_with_line(api):
    code = "import math\n\ndef main(x: float) -> float:\n    return math.sqrt(x\n\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("syn"),
                                                             "code": code}), 422)
    errs = p["errors"]
    assert errs[0]["path"] == "code", p
    assert errs[0].get("line") in (4, 5, 6), f"the line of the syntax error: {p}"
    code = "def main(x: float) -> float:\n    return x\n  return 2\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("ind"),
                                                             "code": code}), 422)
    assert p["errors"][0]["path"] == "code" and p["errors"][0].get("line") == 3, p


def test_forbidden_import_os_422_names_line(api):
    code = "import math\nimport os\n\ndef main(x: float) -> float:\n    return x\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("os"),
                                                             "code": code}), 422)
    e = p["errors"][0]
    assert e["path"] == "code" and e.get("line") == 2 and "os" in e["message"], p
    code = "def main(x: float) -> float:\n    from os import system\n    return x\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("os2"),
                                                             "code": code}), 422)
    assert p["errors"][0].get("line") == 2, p


def test_eval_call_422(api):
    code = "def main(expr: str) -> float:\n    y = 1\n    return eval(expr)\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("ev"),
                                                             "code": code}), 422)
    e = p["errors"][0]
    assert e["path"] == "code" and e.get("line") == 3 and "eval" in e["message"], p


def test_several_problems_one_entry_each(api):
    code = "import os\nfrom os import getcwd\n\ndef main():\n    return eval('1')\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("multi"),
                                                             "code": code}), 422)
    lines = sorted(e.get("line") for e in p["errors"])
    assert lines == [1, 2, 5], f"one entry per refused import/call: {p}"


def test_missing_handler_422(api):
    code = "def helper(x: float) -> float:\n    return x\n"
    p = assert_problem(api.post("alice", "/functions", json={"name": api.unique("noh"),
                                                             "code": code}), 422)
    assert any(e["path"] in ("code", "handler") for e in p["errors"]), p
    assert "main" in json.dumps(p), f"the problem names the missing handler: {p}"
    p = assert_problem(api.post("alice", "/functions", json={
        "name": api.unique("noh2"), "code": BEAM, "handler": "compute"}), 422)
    assert "compute" in json.dumps(p), p
    # main bound to something that is not a function
    p = assert_problem(api.post("alice", "/functions", json={
        "name": api.unique("noh3"), "code": "main = 3\n"}), 422)


def test_bad_update_leaves_function_unchanged(api):
    f = api.create_function("alice", api.unique("upd"), BEAM)
    p = assert_problem(api.put("alice", f"/functions/{f['id']}",
                               json={"code": "def main(:\n"}), 422)
    assert p["errors"][0]["path"] == "code", p
    g = expect_status(api.get("alice", f"/functions/{f['id']}"), 200).json()
    assert g["version"] == 1 and g["code"] == BEAM, g


# ---------------------------------------------------------------- inputs

def _exec_problem(api, fid, inputs, status=422):
    return assert_problem(api.execute_raw("alice", fid, inputs), status)


def test_wrong_input_type_422_with_path(api, baseline):
    fid = baseline["function"]["id"]
    p = _exec_problem(api, fid, {"F": 1.0, "L": "two"})
    assert error_paths(p) == ["inputs.L"], p
    assert "inputs.L" in p.get("detail", ""), p
    p = _exec_problem(api, fid, {"F": "one", "L": "two", "n": 1.5})
    assert sorted(error_paths(p)) == ["inputs.F", "inputs.L", "inputs.n"], p
    p = _exec_problem(api, fid, {"F": True, "L": 1.0})
    assert error_paths(p) == ["inputs.F"], f"a boolean is not a number: {p}"
    p = _exec_problem(api, fid, {"F": None, "L": 1.0})
    assert error_paths(p) == ["inputs.F"], f"null is not a number: {p}"


def test_missing_required_input_422(api, baseline):
    p = _exec_problem(api, baseline["function"]["id"], {"F": 1.0})
    assert error_paths(p) == ["inputs.L"], p


def test_unknown_input_field_422(api, baseline):
    p = _exec_problem(api, baseline["function"]["id"], {"F": 1.0, "L": 1.0, "Lenght": 3})
    assert error_paths(p) == ["inputs.Lenght"], p


def test_inputs_not_an_object_422(api, baseline):
    r = api.execute_raw("alice", baseline["function"]["id"], None, body={"inputs": [1, 2]})
    p = assert_problem(r, 422)
    assert error_paths(p) == ["inputs"], p


def test_invalid_input_makes_no_task(api, baseline):
    fid = baseline["function"]["id"]
    before = expect_status(api.get("alice", "/tasks", params={"function_id": fid,
                                                              "limit": "200"}), 200).json()
    _exec_problem(api, fid, {"F": "x", "L": 1})
    after = expect_status(api.get("alice", "/tasks", params={"function_id": fid,
                                                             "limit": "200"}), 200).json()
    assert len(after["items"]) == len(before["items"]), "a refused call creates no task"


# ---------------------------------------------------------------- ids and visibility

UNKNOWN_IDS = [str(uuid.uuid4()), "999999999", "fn_doesnotexist"]


@pytest.mark.parametrize("uid", UNKNOWN_IDS)
def test_unknown_ids_404(api, uid):
    for method, path in (("GET", f"/functions/{uid}"), ("PUT", f"/functions/{uid}"),
                         ("DELETE", f"/functions/{uid}"), ("GET", f"/functions/{uid}/versions"),
                         ("POST", f"/functions/{uid}/execute"), ("GET", f"/tasks/{uid}"),
                         ("GET", f"/tasks/{uid}/logs"), ("GET", f"/tasks/{uid}/artifacts/a.csv"),
                         ("POST", f"/tasks/{uid}/cancel"), ("DELETE", f"/tokens/{uid}")):
        kw = {"json": {"inputs": {}}} if method in ("POST", "PUT") else {}
        assert_problem(api.request("alice", method, path, **kw), 404)


def test_unknown_route_404(api):
    assert_problem(api.get("alice", "/no-such-thing"), 404)


def test_private_function_and_task_are_404_for_others(api):
    f = api.create_function("alice", api.unique("secret"), BEAM)
    t = api.execute("alice", f["id"], {"F": 1.0, "L": 1.0})
    for who in ("bob", "carol"):
        for method, path in (("GET", f"/functions/{f['id']}"),
                             ("GET", f"/functions/{f['id']}/versions"),
                             ("PUT", f"/functions/{f['id']}"),
                             ("DELETE", f"/functions/{f['id']}"),
                             ("POST", f"/functions/{f['id']}/execute"),
                             ("GET", f"/tasks/{t['id']}"),
                             ("GET", f"/tasks/{t['id']}/logs"),
                             ("POST", f"/tasks/{t['id']}/cancel")):
            kw = {"json": {"inputs": {"F": 1.0, "L": 1.0}}} if method in ("POST", "PUT") else {}
            r = api.request(who, method, path, **kw)
            assert r.status_code != 403, f"never 403 (it would tell the id exists): {describe(r)}"
            assert_problem(r, 404)
        lst = expect_status(api.get(who, "/functions", params={"name": f["name"]}), 200).json()
        assert lst["items"] == [], f"{who} lists alice's private function: {lst}"
    # and it is all still there for alice
    assert api.task("alice", t["id"])["status"] == "completed"
    expect_status(api.get("alice", f"/functions/{f['id']}"), 200)


def test_company_function_visible_in_company_only(api):
    f = api.create_function("alice", api.unique("shared"), BEAM, visibility="company")
    # bob (acme) sees it, lists it and runs it
    g = expect_status(api.get("bob", f"/functions/{f['id']}"), 200).json()
    assert g["code"] == BEAM
    lst = expect_status(api.get("bob", "/functions", params={"name": f["name"]}), 200).json()
    assert [i["id"] for i in lst["items"]] == [f["id"]], lst
    t = api.execute("bob", f["id"], {"F": 2.0, "L": 2.0})
    assert t["status"] == "completed" and t["result"] == 4.0, t
    # bob's task is bob's: in his list
    mine = expect_status(api.get("bob", "/tasks", params={"function_id": f["id"]}), 200).json()
    assert t["id"] in [i["id"] for i in mine["items"]]
    # carol (globex) does not
    for method, path in (("GET", f"/functions/{f['id']}"),
                         ("POST", f"/functions/{f['id']}/execute"),
                         ("GET", f"/tasks/{t['id']}")):
        kw = {"json": {"inputs": {"F": 1.0, "L": 1.0}}} if method == "POST" else {}
        assert_problem(api.request("carol", method, path, **kw), 404)
    lst = expect_status(api.get("carol", "/functions", params={"name": f["name"]}), 200).json()
    assert lst["items"] == [], lst


def test_public_function_visible_to_all(api):
    f = api.create_function("alice", api.unique("pub"), BEAM, visibility="public")
    expect_status(api.get("carol", f"/functions/{f['id']}"), 200)
    t = api.execute("carol", f["id"], {"F": 3.0, "L": 1.0})
    assert t["status"] == "completed" and t["result"] == 3.0, t
    # but carol cannot change it
    r = api.put("carol", f"/functions/{f['id']}", json={"code": "def main():\n    return 0\n"})
    assert r.status_code in (403, 404), describe(r)
    assert expect_status(api.get("alice", f"/functions/{f['id']}"), 200).json()["version"] == 1


# ---------------------------------------------------------------- authentication

@pytest.mark.parametrize("auth", [None, "Bearer", "Bearer garbage-token-0123456789",
                                  "Basic YWxpY2U6cGFzcw==", "bearer " + "A" * 5000])
def test_no_or_garbage_token_401(api, auth, baseline):
    h = {"Authorization": auth} if auth else {}
    for method, path in (("GET", "/me"), ("GET", "/functions"), ("GET", "/tasks"),
                         ("GET", f"/tasks/{baseline['task']['id']}"),
                         ("POST", f"/functions/{baseline['function']['id']}/execute")):
        kw = {"json": {"inputs": {"F": 1, "L": 1}}} if method == "POST" else {}
        r = requests.request(method, api.url(path), headers=h, timeout=10, **kw)
        assert_problem(r, 401)


def test_token_checked_before_body(api):
    # an unauthenticated client learns nothing about validation
    r = requests.post(api.url("/functions"), data=b"{not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert_problem(r, 401)


def test_bad_query_parameters_400(api, baseline):
    assert_problem(api.get("alice", "/tasks", params={"limit": "-5"}), 400)
    assert_problem(api.get("alice", "/tasks", params={"limit": "many"}), 400)
    assert_problem(api.get("alice", "/functions", params={"cursor": "%%%not-a-cursor"}), 400)
    assert_problem(api.get("alice", f"/functions/{baseline['function']['id']}",
                           params={"version": "one"}), 400)
    assert_problem(api.get("alice", f"/tasks/{baseline['task']['id']}",
                           params={"wait": "forever"}), 400)


def test_inputs_deeper_than_a_call_takes_422_at_inputs(api):
    """Inputs the executor could not take are refused at execute, a 422 at `inputs` as for a
    workflow, never a task that fails in the sandbox; the deepest a call takes runs."""
    f = api.create_function("alice", api.unique("deep"), "def main(x) -> int:\n    return 1\n")

    def nested(depth):
        v = 0
        for _ in range(depth):
            v = [v]
        return v

    deepest = None
    for depth in range(70, 50, -1):
        r = api.post("alice", f"/functions/{f['id']}/execute", params={"wait": "30"},
                     json={"inputs": {"x": nested(depth)}}, timeout=60)
        if r.status_code == 422:
            p = assert_problem(r, 422)
            assert "inputs" in error_paths(p) and "deeper" in json.dumps(p), p
            continue
        expect_status(r, 200)
        deepest = depth
        t = r.json()
        assert t["status"] == "completed" and t["result"] == 1, t
        break
    assert deepest is not None and deepest < 70, "no depth between 51 and 70 runs"
