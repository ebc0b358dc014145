"""GET /api/v1/me/export: everything of a user's as a zip (docs/api.md#export), read back
with Python's zipfile, as a user would open it."""
from __future__ import annotations

import io
import json
import zipfile

import pytest

import harness
from harness import User, assert_problem, expect_status

USERS = [
    User("alice", "alice@export.test", "alice-pass-1234", "exp-acme"),
    User("boss", "boss@export.test", "boss-pass-1234", "exp-acme", "admin"),
    User("carol", "carol@export.test", "carol-pass-1234", "exp-globex"),
]

V1 = ("from pathlib import Path\n"
      "def main(n: int) -> dict:\n"
      "    print('hello from v1', n)\n"
      "    Path('outputs').mkdir(exist_ok=True)\n"
      "    Path('outputs/my table.csv').write_text('a,b\\n1,2\\n')\n"
      "    Path('outputs/big.bin').write_bytes(bytes(range(256)) * 400)\n"
      "    return {'n': n, 'squares': [i * i for i in range(n)]}\n")
V2 = ("def main(n: int) -> dict:\n"
      "    if n < 0:\n"
      "        raise ValueError('negative n')\n"
      "    print('x' * 70000)\n"
      "    return {'n': n, 'version': 2}\n")


@pytest.fixture(scope="module")
def stack():
    s = harness.start_stack("export", users=USERS, extra_args=["--gc-interval", "0"])
    yield s
    s.close()


def export(api, user: str) -> tuple[zipfile.ZipFile, dict]:
    r = api.get(user, "/me/export")
    expect_status(r, 200)
    assert r.headers["Content-Type"] == "application/zip", harness.describe(r)
    assert r.headers.get("Content-Disposition", "").startswith("attachment; filename=\"mecapy-export-")
    z = zipfile.ZipFile(io.BytesIO(r.content))
    assert z.testzip() is None, "a member of the archive is corrupt"
    return z, json.loads(z.read("manifest.json"))


def test_export_holds_functions_and_tasks(stack):
    api = stack.api
    f = api.create_function("alice", harness.Api.unique("exported"), V1, description="first")
    t1 = api.execute("alice", f["id"], {"n": 4})
    assert t1["status"] == "completed", t1
    expect_status(api.put("alice", f"/functions/{f['id']}", json={"code": V2}), 200)
    t2 = api.execute("alice", f["id"], {"n": 9})   # spilled logs
    t3 = api.execute("alice", f["id"], {"n": -1})  # an error
    assert t2["status"] == "completed" and t3["status"] == "failed", (t2, t3)
    gone = api.create_function("alice", harness.Api.unique("deleted"), "def main() -> int:\n    return 1\n")
    expect_status(api.delete("alice", f"/functions/{gone['id']}"), 204)

    z, m = export(api, "alice")
    assert m["format"] == "mecapy-export" and m["version"] == 1
    assert m["user"]["email"] == "alice@export.test"
    fns = {x["id"]: x for x in m["functions"]}
    assert set(fns) == {f["id"], gone["id"]}, fns.keys()
    assert fns[gone["id"]]["deleted_at"] is not None and fns[f["id"]]["deleted_at"] is None
    vers = {v["version"]: v for v in fns[f["id"]]["versions"]}
    assert sorted(vers) == [1, 2]
    assert z.read(vers[1]["code"]).decode() == V1 and z.read(vers[2]["code"]).decode() == V2
    meta = json.loads(z.read(f"functions/{f['id']}/1/version.json"))
    assert meta["version"] == 1 and "code" in meta and "input_schema" in meta, meta
    assert fns[f["id"]]["name"] == f["name"] and fns[f["id"]]["description"] == "first"

    tasks = {x["id"]: x for x in m["tasks"]}
    assert {t1["id"], t2["id"], t3["id"]} <= set(tasks)
    one = tasks[t1["id"]]
    assert one["status"] == "completed" and one["version"] == 1 and one["function_id"] == f["id"]
    files = one["files"]
    assert json.loads(z.read(files["inputs"])) == {"n": 4}
    assert json.loads(z.read(files["result"])) == t1["result"]
    assert "hello from v1 4" in z.read(files["logs"]).decode()
    arts = {a["name"]: a for a in files["artifacts"]}
    assert set(arts) == {"my table.csv", "big.bin"}, arts
    assert z.read(arts["my table.csv"]["path"]) == b"a,b\n1,2\n"
    assert z.read(arts["big.bin"]["path"]) == bytes(range(256)) * 400
    assert arts["big.bin"]["size"] == 256 * 400
    assert all(p.startswith(f"tasks/{t1['id']}/artifacts/") for p in (a["path"] for a in arts.values()))
    assert z.read(tasks[t2["id"]]["files"]["logs"]).decode().startswith("x" * 70000)
    err = json.loads(z.read(tasks[t3["id"]]["files"]["error"]))
    assert err["type"] == "ValueError" and "negative n" in err["message"], err
    assert "result" not in tasks[t3["id"]]["files"]
    # Every member is a plain relative path, and the manifest names only members.
    for name in z.namelist():
        assert not name.startswith("/") and ".." not in name.split("/"), name
    named = [x["code"] for fn in m["functions"] for x in fn["versions"]]
    for t in m["tasks"]:
        named += [v for k, v in t["files"].items() if k != "artifacts"]
        named += [a["path"] for a in t["files"]["artifacts"]]
    assert set(named) <= set(z.namelist())


def test_export_is_the_callers_own(stack):
    api = stack.api
    f = api.create_function("alice", harness.Api.unique("mine"), "def main() -> str:\n    return 'alice data'\n")
    t = api.execute("alice", f["id"], {})
    # Another tenant, and an admin of alice's own company: their exports hold nothing of
    # hers (an admin reads members' tasks through the API, not through their export).
    for who in ("carol", "boss"):
        z, m = export(api, who)
        ids = {x["id"] for x in m["functions"]} | {x["id"] for x in m["tasks"]}
        assert f["id"] not in ids and t["id"] not in ids, (who, ids)
        assert not any(t["id"] in n or f["id"] in n for n in z.namelist())
    z, m = export(api, "carol")
    assert m["user"]["email"] == "carol@export.test"


def test_export_after_deletion_and_without_session(stack):
    api = stack.api
    f = api.create_function("alice", harness.Api.unique("del"), "def main() -> int:\n    return 7\n")
    t = api.execute("alice", f["id"], {})
    expect_status(api.delete("alice", f"/tasks/{t['id']}"), 204)
    z, m = export(api, "alice")
    assert t["id"] not in {x["id"] for x in m["tasks"]}
    assert not any(t["id"] in n for n in z.namelist())
    import requests
    assert_problem(requests.get(api.base + "/api/v1/me/export", timeout=30), 401)
    # The server keeps serving after exports.
    assert api.execute("alice", f["id"], {})["result"] == 7
