"""Companies, roles and the public catalogue (docs/identity.md): what the matrix does not
show cell by cell — the last admin, what a removed member keeps, generated passwords,
tags and the catalogue's search."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, assert_problem, error_paths, expect_status  # noqa: E402

CODE = "def main(x: float = 1.0) -> float:\n    \"\"\"Doubles x.\"\"\"\n    return 2 * x\n"

USERS = [
    User("boss", "boss@co.test", "boss-pass-1234", "company-co", "admin"),
    User("eng", "eng@co.test", "eng-pass-1234", "company-co", "member"),
    User("ext", "ext@else.test", "ext-pass-1234", "company-else", "admin"),
]


@pytest.fixture(scope="module")
def co():
    stack = harness.start_stack("company", users=USERS)
    yield stack
    stack.close()


def uid(api, name):
    return expect_status(api.get(name, "/me"), 200).json()["id"]


def test_company_and_members(co):
    api = co.api
    c = expect_status(api.get("eng", "/company"), 200).json()
    assert c["name"] == "company-co" and c["members"] == 2, c
    members = expect_status(api.get("boss", "/company/members"), 200).json()["items"]
    assert {m["email"]: m["role"] for m in members} == {"boss@co.test": "admin", "eng@co.test": "member"}
    assert all(m["identity"] == "local" for m in members), members
    # the other company's admin sees only its own
    other = expect_status(api.get("ext", "/company/members"), 200).json()["items"]
    assert [m["email"] for m in other] == ["ext@else.test"]


def test_create_member_generated_password_and_409(co):
    api = co.api
    r = expect_status(api.post("boss", "/company/members", json={"email": "New@co.test"}), 201)
    m = r.json()
    assert m["email"] == "new@co.test" and m["role"] == "member" and len(m["password"]) >= 20, m
    login = requests.post(api.url("/auth/login"), json={"email": "new@co.test", "password": m["password"]},
                          timeout=30)
    expect_status(login, 200)
    assert login.json()["user"]["company"] == "company-co"
    assert_problem(api.post("boss", "/company/members", json={"email": "eng@co.test"}), 409)
    # an email of another company's account is taken too
    assert_problem(api.post("boss", "/company/members", json={"email": "ext@else.test"}), 409)
    p = assert_problem(api.post("boss", "/company/members",
                                json={"email": "x", "role": "owner", "password": "short"}), 422)
    assert set(error_paths(p)) == {"email", "role", "password"}, p


def test_last_admin_cannot_leave(co):
    api = co.api
    boss = uid(api, "boss")
    assert_problem(api.request("boss", "PATCH", f"/company/members/{boss}", json={"role": "member"}), 409)
    assert_problem(api.delete("boss", f"/company/members/{boss}"), 409)
    # with a second admin, the first may step down
    eng = uid(api, "eng")
    expect_status(api.request("boss", "PATCH", f"/company/members/{eng}", json={"role": "admin"}), 200)
    expect_status(api.request("boss", "PATCH", f"/company/members/{boss}", json={"role": "member"}), 200)
    assert expect_status(api.get("boss", "/me"), 200).json()["role"] == "member"
    assert_problem(api.get("boss", "/company/members"), 403)
    # put things back
    expect_status(api.request("eng", "PATCH", f"/company/members/{boss}", json={"role": "admin"}), 200)
    expect_status(api.request("boss", "PATCH", f"/company/members/{eng}", json={"role": "member"}), 200)


def test_removed_member_keeps_nothing(co):
    api = co.api
    r = expect_status(api.post("boss", "/company/members",
                               json={"email": "leaver@co.test", "password": "leaver-pass-1234"}), 201)
    lid = r.json()["id"]
    api.users["leaver"] = User("leaver", "leaver@co.test", "leaver-pass-1234", "company-co")
    api.login("leaver")
    tok = expect_status(api.post("leaver", "/tokens", json={"name": "ci"}), 201).json()
    f = api.create_function("leaver", harness.Api.unique("leaver-fn"), CODE, visibility="company")
    toks = expect_status(api.get("boss", f"/company/members/{lid}/tokens"), 200).json()["items"]
    assert [t["id"] for t in toks] == [tok["id"]], toks
    expect_status(api.delete("boss", f"/company/members/{lid}"), 204)
    # every token of the account stops working, and the password with them
    assert_problem(requests.get(api.url("/me"), headers={"Authorization": f"Bearer {tok['token']}"},
                                timeout=30), 401)
    assert_problem(api.get("leaver", "/me"), 401)
    assert_problem(requests.post(api.url("/auth/login"),
                                 json={"email": "leaver@co.test", "password": "leaver-pass-1234"},
                                 timeout=30), 401)
    # gone from the company; its company function stays with the company
    members = expect_status(api.get("boss", "/company/members"), 200).json()["items"]
    assert "leaver@co.test" not in [m["email"] for m in members]
    expect_status(api.get("eng", f"/functions/{f['id']}"), 200)
    assert_problem(api.delete("boss", f"/company/members/{lid}"), 404)


def test_admin_revokes_member_token(co):
    api = co.api
    tok = expect_status(api.post("eng", "/tokens", json={"name": "laptop"}), 201).json()
    eng = uid(api, "eng")
    expect_status(api.delete("boss", f"/company/members/{eng}/tokens/{tok['id']}"), 204)
    assert_problem(requests.get(api.url("/me"), headers={"Authorization": f"Bearer {tok['token']}"},
                                timeout=30), 401)
    # another company's admin cannot even see it exists
    assert_problem(api.delete("ext", f"/company/members/{eng}/tokens/{tok['id']}"), 404)


def test_admin_sees_and_cancels_member_task(co):
    api = co.api
    slow = "import time\ndef main(s: float = 20.0) -> str:\n    time.sleep(s)\n    return 'ok'\n"
    f = api.create_function("eng", harness.Api.unique("slow"), slow)
    t = expect_status(api.execute_raw("eng", f["id"], {"s": 20}), 202).json()
    listed = expect_status(api.get("boss", f"/company/members/{uid(api, 'eng')}/tasks"), 200).json()
    assert t["id"] in [x["id"] for x in listed["items"]], listed
    r = expect_status(api.post("boss", f"/tasks/{t['id']}/cancel"), 200).json()
    assert r["status"] == "cancelled" and "admin" in r["error"]["message"], r
    assert_problem(api.get("ext", f"/tasks/{t['id']}"), 404)


def test_tags_and_catalogue(co):
    api = co.api
    name = harness.Api.unique("Cantilever")
    f = api.create_function("eng", name, CODE, visibility="public", tags=["beam", "steel"],
                            description="Deflection of a CANTILEVER beam")
    assert f["tags"] == ["beam", "steel"], f
    priv = api.create_function("eng", harness.Api.unique("hidden"), CODE, tags=["beam"])
    assert priv["tags"] == ["beam"]
    p = assert_problem(api.post("eng", "/functions", json={"name": harness.Api.unique("bad"), "code": CODE,
                                                           "tags": ["Beam", "a" * 33, "ok", "ok"]}), 422)
    assert set(error_paths(p)) == {"tags[0]", "tags[1]", "tags[3]"}, p

    def search(**q):
        return expect_status(api.get("ext", "/catalogue", params=q), 200).json()["items"]

    items = search(q="cantilever")
    ids = [i["id"] for i in items]
    assert f["id"] in ids and priv["id"] not in ids, items
    item = next(i for i in items if i["id"] == f["id"])
    assert set(item) == {"id", "name", "description", "tags", "author", "version", "input_schema",
                         "updated_at"}, item
    assert item["author"] == "eng@co.test" and item["version"] == 1
    assert f["id"] in [i["id"] for i in search(tag="steel")]
    assert f["id"] not in [i["id"] for i in search(tag="stee")]
    assert f["id"] in [i["id"] for i in search(author="eng")]
    assert f["id"] in [i["id"] for i in search(author="ENG@co.test")]
    assert f["id"] not in [i["id"] for i in search(author="en")]
    assert f["id"] in [i["id"] for i in search(q="eng@co")]  # q also matches the author
    assert search(q="100%_no_such") == []  # LIKE wildcards are plain characters
    # tags change with PUT, and the catalogue follows
    expect_status(api.put("eng", f"/functions/{f['id']}", json={"tags": ["plate"]}), 200)
    assert f["id"] not in [i["id"] for i in search(tag="steel")]
    assert f["id"] in [i["id"] for i in search(q="plate")]
    assert_problem(api.get("ext", "/catalogue", params={"tag": "Not A Tag"}), 400)
    assert_problem(api.get("ext", "/catalogue", params={"q": "x" * 200}), 400)
    assert_problem(requests.get(api.url("/catalogue"), timeout=30), 401)


def test_catalogue_pages(co):
    api = co.api
    tag = "page-" + harness.Api.unique("t").split("-")[-1]
    made = [api.create_function("eng", harness.Api.unique("pg"), CODE, visibility="public", tags=[tag])["id"]
            for _ in range(5)]
    seen, cursor = [], None
    while True:
        q = {"tag": tag, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = expect_status(api.get("eng", "/catalogue", params=q), 200).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(made)), "newest first, each once"
