"""The route table as a client meets it (docs/api.md#scopes, docs/identity.md).

- Every route of the OpenAPI document that needs a scope refuses an API token that holds
  every scope but that one (403 problem+json, insufficient_scope), before doing anything;
  every route that needs a signed-in caller refuses no token (401). The unit test
  tests/unit/test-api.c proves the document and the server's table list the same routes
  with the same needs, so walking the document walks the table.
- The hole that was: a company admin's token limited to functions:read could add an admin
  member (and read the generated password), read members' tasks, remove members.
- Unknown paths answer 404, known paths with another method 405 with Allow.
- A token cannot mint a child that outlives it, nor one with more scopes.
- /readyz answers 200 with its checks; the 429 of the API limit says how to follow tasks.
"""
from __future__ import annotations

import datetime
import re
import sys
import uuid
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import harness  # noqa: E402
from harness import User, assert_problem, expect_status  # noqa: E402

USERS = [
    User("boss", "boss@routes.test", "boss-pass-1234", "routes-co", "admin"),
    User("mate", "mate@routes.test", "mate-pass-1234", "routes-co", "member"),
]
SCOPES = ["functions:read", "functions:write", "tasks:read", "tasks:write", "execute", "tokens"]
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def stack():
    s = harness.start_stack("routes", users=USERS)
    yield s
    s.close()


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def make_token(stack, user: str, **body) -> requests.Response:
    body.setdefault("name", f"t-{uuid.uuid4().hex[:6]}")
    return stack.api.post(user, "/tokens", json=body)


def when(s: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


def operations(stack):
    r = requests.get(stack.api.base + "/api/v1/openapi.json", timeout=30)
    expect_status(r, 200)
    for path, ops in r.json()["paths"].items():
        for method, op in ops.items():
            if method in METHODS:
                yield method.upper(), path, op


def fill(path: str) -> str:
    """Placeholders by ids that name nothing: a refusal by scope comes before any lookup."""
    return re.sub(r"\{[^}]+\}", lambda m: "out.txt" if m.group(0) == "{name}" else str(uuid.uuid4()), path)


def test_every_route_refuses_a_token_lacking_its_scope(stack):
    api = stack.api
    tokens = {}
    for scope in SCOPES:
        others = [s for s in SCOPES if s != scope]
        tokens[scope] = expect_status(make_token(stack, "boss", scopes=others), 201).json()["token"]
    failures, scoped, signed_in = [], 0, 0
    for method, path, op in operations(stack):
        need = op.get("x-mecapy-scope")
        url = api.base + fill(path)
        if need == "public":
            continue
        if need == "signed-in":
            signed_in += 1
            r = requests.request(method, url, timeout=30)
            if r.status_code != 401 or not harness.is_problem(r):
                failures.append(f"{method} {path} without a token: {r.status_code} {r.text[:120]!r}")
            continue
        assert need in SCOPES, f"{method} {path}: x-mecapy-scope {need!r}"
        scoped += 1
        r = requests.request(method, url, headers={**bearer(tokens[need]), "Content-Type": "application/json"},
                             data=b"{}", timeout=30)
        body = r.json() if harness.is_problem(r) else {}
        if r.status_code != 403 or body.get("type") != "urn:mecapy:problem:insufficient_scope" \
                or need not in body.get("detail", ""):
            failures.append(f"{method} {path} with a token lacking {need}: {r.status_code} {r.text[:160]!r}")
    assert not failures, "\n".join(failures)
    assert scoped >= 25 and signed_in >= 4, (scoped, signed_in)


def test_company_administration_needs_the_tokens_scope(stack):
    """The reported hole: an admin's functions:read token ran the company's administration."""
    api = stack.api
    tok = expect_status(make_token(stack, "boss", scopes=["functions:read"]), 201).json()["token"]
    mate = expect_status(api.get("mate", "/me"), 200).json()["id"]
    before = expect_status(api.get("boss", "/company/members"), 200).json()
    h = bearer(tok)
    base = api.base + "/api/v1"
    p = assert_problem(requests.post(f"{base}/company/members", headers=h, timeout=30,
                                     json={"email": "sneaky@routes.test", "role": "admin"}), 403)
    assert "password" not in p and p["type"] == "urn:mecapy:problem:insufficient_scope", p
    assert_problem(requests.get(f"{base}/company/members/{mate}/tasks", headers=h, timeout=30), 403)
    assert_problem(requests.get(f"{base}/company/members/{mate}/tokens", headers=h, timeout=30), 403)
    assert_problem(requests.patch(f"{base}/company/members/{mate}", headers=h, json={"role": "admin"},
                                  timeout=30), 403)
    assert_problem(requests.delete(f"{base}/company/members/{mate}", headers=h, timeout=30), 403)
    after = expect_status(api.get("boss", "/company/members"), 200).json()
    assert after == before, (before, after)
    # The same token still does what it may.
    expect_status(requests.get(f"{base}/functions", headers=h, timeout=30), 200)
    # With the administration's scope, the admin's token may.
    adm = expect_status(make_token(stack, "boss", scopes=["tokens"]), 201).json()["token"]
    r = requests.get(f"{base}/company/members/{mate}/tasks", headers=bearer(adm), timeout=30)
    expect_status(r, 200)


def test_unknown_path_404_known_path_405_with_allow(stack):
    api = stack.api
    p = assert_problem(requests.get(api.base + "/api/v1/no-such-route", timeout=30), 404)
    assert "no-such-route" in p["detail"], p
    assert_problem(requests.get(api.base + "/nowhere", timeout=30), 404)
    r = api.delete("boss", "/me")
    assert_problem(r, 405)
    assert r.headers.get("Allow") == "GET, HEAD", dict(r.headers)
    r = requests.put(api.base + "/healthz", timeout=30)
    assert_problem(r, 405)
    assert r.headers.get("Allow") == "GET, HEAD", dict(r.headers)
    r = api.request("boss", "PUT", "/tasks")
    assert_problem(r, 405)
    fid = str(uuid.uuid4())
    r = api.request("boss", "POST", f"/functions/{fid}")
    assert_problem(r, 405)
    assert set(r.headers["Allow"].split(", ")) == {"GET", "HEAD", "PUT", "PATCH", "DELETE"}, r.headers


def test_patch_function_and_put_member_are_routes(stack, request):
    api = stack.api
    f = api.create_function("mate", harness.Api.unique("patchme"), "def main(x: float = 1.0) -> float:\n    return x\n")
    r = api.request("mate", "PATCH", f"/functions/{f['id']}", json={"description": "patched"})
    assert expect_status(r, 200).json()["description"] == "patched"
    mate = api.get("mate", "/me").json()["id"]
    r = api.put("boss", f"/company/members/{mate}", json={"role": "member"})
    assert expect_status(r, 200).json()["role"] == "member"


def test_child_token_cannot_outlive_its_parent(stack):
    api = stack.api
    parent = expect_status(make_token(stack, "mate", scopes=["tokens", "functions:read"], expires_in_days=1),
                           201).json()
    end = when(parent["expires_at"])
    base = api.base + "/api/v1"
    h = bearer(parent["token"])
    # Asked for 30 days: it ends with its parent.
    child = expect_status(requests.post(f"{base}/tokens", headers=h, json={"name": "c", "expires_in_days": 30},
                                        timeout=30), 201).json()
    assert child["expires_at"] and when(child["expires_at"]) <= end, (parent, child)
    # Asked for no expiry: the same.
    child = expect_status(requests.post(f"{base}/tokens", headers=h, json={"name": "c2"}, timeout=30), 201).json()
    assert child["expires_at"] and when(child["expires_at"]) <= end, (parent, child)
    assert child["scopes"] == ["functions:read", "tokens"], child
    # The grandchild too, through the child.
    grand = expect_status(requests.post(f"{base}/tokens", headers=bearer(child["token"]),
                                        json={"name": "g", "expires_in_days": 3650}, timeout=30), 201).json()
    assert when(grand["expires_at"]) <= end, grand
    # Nor more scopes than the parent holds.
    p = assert_problem(requests.post(f"{base}/tokens", headers=h, json={"name": "w", "scopes": ["execute"]},
                                     timeout=30), 422)
    assert any(e["path"] == "scopes" for e in p.get("errors", [])), p
    # A local account's login session may still make a long-lived token (its owner's act).
    long = expect_status(make_token(stack, "mate", expires_in_days=30), 201).json()
    assert when(long["expires_at"]) > end + datetime.timedelta(days=20), long


def test_readyz_checks_the_backends(stack):
    r = requests.get(stack.api.base + "/readyz", timeout=30)
    expect_status(r, 200)
    assert r.json() == {"status": "ok", "checks": {"store": "ok", "queue": "ok", "blobs": "ok"}}, r.text


@pytest.fixture(scope="module")
def tight():
    s = harness.start_stack("routes-tight", users=USERS[1:], extra_args=["--rate-limit", "20"])
    yield s
    s.close()


def test_429_says_how_to_follow_tasks(tight):
    api = tight.api
    f = api.create_function("mate", harness.Api.unique("poll"), "def main() -> int:\n    return 1\n")
    task = expect_status(api.execute_raw("mate", f["id"], {}), 200, 202).json()
    for _ in range(60):
        r = api.get("mate", f"/tasks/{task['id']}")
        if r.status_code == 429:
            break
    p = assert_problem(r, 429)
    assert "?wait=" in p["detail"] and "docs/api.md" in p["detail"], p
    assert int(r.headers["Retry-After"]) >= 1
