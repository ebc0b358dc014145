"""Identity and abuse limits, seen from a client (docs/identity.md "Abuse limits", "Audit"):
rate limits with 429 and Retry-After, the per-address login limit, CORS by allow-list,
security headers, sign-up, password change, scoped and expired API tokens, and the audit
log with who may read it.

Two servers: `main` with sign-up and one CORS origin (limits high enough not to get in
the way), and `tight` with the defaults for sign-up (off) and small limits to observe.
"""
import sqlite3
import subprocess
import time

import pytest
import requests

import harness
from harness import assert_problem, describe, expect_status

ORIGIN = "https://app.example"
USERS = [
    harness.User("alice", "alice@acme.test", "alice-pass-1234", "acme", "admin"),
    harness.User("bob", "bob@acme.test", "bob-pass-1234", "acme"),
    # The operator: an admin of no company, who reads the events of company-less users.
    harness.User("root", "root@ops.test", "root-pass-1234", "", "admin"),
]
API_RATE = 60   # tight: a minute's worth at once, then one a second
AUTH_RATE = 6   # tight: logins per address


@pytest.fixture(scope="module")
def main():
    s = harness.start_stack("abuse", users=USERS, extra_args=[
        "--allow-signup", "--cors-origin", f"{ORIGIN},https://b.example",
        "--auth-rate-limit", "600"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def tight():
    s = harness.start_stack("abuse-tight", users=USERS[:2], extra_args=[
        "--rate-limit", str(API_RATE), "--auth-rate-limit", str(AUTH_RATE)])
    yield s
    s.close()


def retry_after(r: requests.Response) -> int:
    assert r.status_code == 429, describe(r)
    v = r.headers.get("Retry-After", "")
    assert v.isdigit() and int(v) >= 1, f"Retry-After must be whole seconds >= 1: {v!r}"
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), describe(r)
    return int(v)


def bearer(tok: str) -> dict:
    return {"Authorization": f"Bearer {tok}"}


def login(stack, email, password):
    return requests.post(stack.api.url("/auth/login"), json={"email": email, "password": password},
                         timeout=30)


def audit_kinds(stack, admin: str, **params) -> list[dict]:
    r = stack.api.get(admin, "/audit", params={"limit": 200, **params})
    expect_status(r, 200)
    return r.json()["items"]


# ------------------------------------------------------------------- rate limits

def test_api_rate_limit_burst_then_429_then_allowed_again(tight):
    api = tight.api
    codes = []
    for _ in range(API_RATE + 5):
        r = api.get("bob", "/me")
        codes.append(r.status_code)
        if r.status_code == 429:
            break
    assert codes[-1] == 429, f"no 429 after {len(codes)} requests: {codes}"
    assert len(codes) >= API_RATE * 0.9, f"throttled before the burst was spent: {len(codes)}"
    wait = retry_after(r)
    assert "api" in r.json().get("detail", ""), describe(r)
    # Another user has a bucket of its own.
    expect_status(api.get("alice", "/me"), 200)
    time.sleep(wait + 0.2)
    expect_status(api.get("bob", "/me"), 200)


def test_login_limit_is_per_address_whatever_the_email(tight):
    seen = []
    for i in range(AUTH_RATE + 2):
        r = login(tight, f"nobody{i}@nowhere.test", "wrong-pass-999")
        seen.append(r.status_code)
        if r.status_code == 429:
            break
    assert seen[-1] == 429, f"logins with ever new emails were never limited: {seen}"
    assert set(seen[:-1]) <= {401}, seen
    # A good password from the same address is refused too: the limit is the address's.
    u = tight.api.users["alice"]
    wait = retry_after(login(tight, u.email, u.password))
    time.sleep(wait + 0.2)
    expect_status(login(tight, u.email, u.password), 200)


def test_rate_limited_is_audited(tight):
    # The API episode of bob above (company acme) is for acme's admin to see.
    kinds = {e["kind"] for e in audit_kinds(tight, "alice")}
    assert "rate_limited" in kinds, kinds


# ------------------------------------------------------------------- CORS

def test_preflight_from_an_allowed_origin(main):
    r = requests.options(main.api.url("/functions"), timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code in (200, 204), describe(r)
    h = r.headers
    assert h.get("Access-Control-Allow-Origin") == ORIGIN, dict(h)
    assert h.get("Access-Control-Allow-Credentials") == "true", dict(h)
    assert "POST" in h.get("Access-Control-Allow-Methods", ""), dict(h)
    assert "authorization" in h.get("Access-Control-Allow-Headers", "").lower(), dict(h)
    assert "Origin" in h.get("Vary", ""), dict(h)


def test_preflight_from_another_origin_gets_no_cors_headers(main):
    for origin in ("https://evil.example", "https://app.example.evil.test", "null",
                   "https://app.example/"):
        r = requests.options(main.api.url("/functions"), timeout=10, headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"})
        assert not [k for k in r.headers if k.lower().startswith("access-control-")], \
            f"{origin}: {dict(r.headers)}"


def test_actual_request_echoes_the_origin_never_a_star(main):
    r = main.api.get("alice", "/me", headers={"Origin": "https://b.example"})
    expect_status(r, 200)
    assert r.headers.get("Access-Control-Allow-Origin") == "https://b.example", dict(r.headers)
    r = main.api.get("alice", "/me", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers, dict(r.headers)
    r = requests.get(main.api.url("/openapi.json"), headers={"Origin": ORIGIN}, timeout=10)
    assert r.headers.get("Access-Control-Allow-Origin") != "*", dict(r.headers)


def test_no_cors_headers_without_the_option(tight):
    r = requests.options(tight.api.url("/functions"), timeout=10, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert "Access-Control-Allow-Origin" not in r.headers, dict(r.headers)


# ------------------------------------------------------------------- security headers

def check_security_headers(r: requests.Response, csp_part: str = "default-src 'none'"):
    h = r.headers
    assert h.get("X-Content-Type-Options") == "nosniff", f"{r.url}: {dict(h)}"
    assert h.get("Cross-Origin-Resource-Policy") == "same-origin", f"{r.url}: {dict(h)}"
    assert h.get("X-Frame-Options") == "DENY", f"{r.url}: {dict(h)}"
    assert h.get("Referrer-Policy") == "no-referrer", f"{r.url}: {dict(h)}"
    assert "no-store" in h.get("Cache-Control", ""), f"{r.url}: {dict(h)}"
    csp = h.get("Content-Security-Policy", "")
    assert csp_part in csp, f"{r.url}: CSP {csp!r}"


def test_security_headers_everywhere(main, fname):
    api = main.api
    check_security_headers(api.get("alice", "/me"))                       # JSON
    check_security_headers(api.get("alice", "/functions/nope"))           # problem
    check_security_headers(requests.get(api.base + "/", timeout=10), "frame-ancestors 'none'")
    check_security_headers(requests.get(api.url("/openapi.json"), timeout=10))
    code = ("from pathlib import Path\n"
            "def main() -> str:\n"
            "    Path('outputs').mkdir(exist_ok=True)\n"
            "    Path('outputs/page.html').write_text('<script>alert(1)</script>')\n"
            "    return 'ok'\n")
    f = api.create_function("alice", fname, code)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "completed", t
    r = api.get("alice", f"/tasks/{t['id']}/artifacts/page.html")
    expect_status(r, 200)
    check_security_headers(r, "sandbox")
    assert not r.headers.get("Content-Type", "").startswith("text/html"), dict(r.headers)


def test_hsts_only_over_tls(main):
    r = main.api.get("alice", "/me")
    assert "Strict-Transport-Security" not in r.headers, dict(r.headers)
    r = main.api.get("alice", "/me", headers={"X-Forwarded-Proto": "https"})
    assert "max-age=" in r.headers.get("Strict-Transport-Security", ""), dict(r.headers)


# ------------------------------------------------------------------- sign-up, password

def test_signup_is_off_by_default(tight):
    r = requests.post(tight.api.url("/auth/signup"),
                      json={"email": "new@signup.test", "password": "new-pass-1234"}, timeout=30)
    assert_problem(r, 404)


def signup(main, email, password):
    return requests.post(main.api.url("/auth/signup"), json={"email": email, "password": password},
                         timeout=30)


def test_signup_with_the_flag(main):
    email = harness.Api.unique("new") + "@signup.test"
    r = signup(main, email, "new-pass-1234")
    expect_status(r, 201)
    u = r.json()
    assert u["email"] == email and u["company"] is None and u["role"] == "member", u
    assert "password" not in r.text
    expect_status(login(main, email, "new-pass-1234"), 200)
    assert_problem(signup(main, email, "other-pass-1234"), 409)
    assert_problem(signup(main, "not-an-email", "new-pass-1234"), 422)
    assert_problem(signup(main, harness.Api.unique("s") + "@signup.test", "short"), 422)


def test_password_change_revokes_other_sessions_keeps_tokens(main):
    email = harness.Api.unique("pw") + "@signup.test"
    expect_status(signup(main, email, "first-pass-1234"), 201)
    s1 = expect_status(login(main, email, "first-pass-1234"), 200).json()["token"]
    s2 = expect_status(login(main, email, "first-pass-1234"), 200).json()["token"]
    api_tok = expect_status(requests.post(main.api.url("/tokens"), headers=bearer(s1),
                                          json={"name": "ci"}, timeout=30), 201).json()["token"]
    url = main.api.url("/me/password")
    r = requests.post(url, headers=bearer(s1), timeout=30,
                      json={"current_password": "wrong-pass-1234", "new_password": "second-pass-1234"})
    p = assert_problem(r, 422)
    assert "current_password" in harness.error_paths(p), p
    r = requests.post(url, headers=bearer(s1), timeout=30,
                      json={"current_password": "first-pass-1234", "new_password": "second-pass-1234"})
    expect_status(r, 204)
    assert_problem(requests.get(main.api.url("/me"), headers=bearer(s2), timeout=30), 401)
    expect_status(requests.get(main.api.url("/me"), headers=bearer(s1), timeout=30), 200)
    expect_status(requests.get(main.api.url("/me"), headers=bearer(api_tok), timeout=30), 200)
    assert_problem(login(main, email, "first-pass-1234"), 401)
    expect_status(login(main, email, "second-pass-1234"), 200)


# ------------------------------------------------------------------- scoped and expired tokens

def make_token(main, user, **body):
    r = main.api.post(user, "/tokens", json={"name": "t", **body})
    return r


def test_scoped_token_refused_outside_its_scopes(main, fname):
    r = make_token(main, "bob", scopes=["functions:read"])
    expect_status(r, 201)
    assert r.json()["scopes"] == ["functions:read"], r.json()
    h = bearer(r.json()["token"])
    expect_status(requests.get(main.api.url("/functions"), headers=h, timeout=30), 200)
    r = requests.post(main.api.url("/functions"), headers=h, timeout=30,
                      json={"name": fname, "code": "def main() -> int:\n    return 1\n"})
    p = assert_problem(r, 403)
    assert "functions:write" in p["detail"], p
    for method, path in (("GET", "/tasks"), ("GET", "/tokens"), ("POST", "/tokens")):
        p = assert_problem(requests.request(method, main.api.url(path), headers=h, json={"name": "x"},
                                            timeout=30), 403)
        assert "tasks:read" in p["detail"] or "tokens" in p["detail"], p
    listed = {t["id"]: t for t in main.api.get("bob", "/tokens").json()["items"]}
    assert any(t["scopes"] == ["functions:read"] for t in listed.values()), listed


def test_token_cannot_mint_more_than_it_may(main):
    tok = expect_status(make_token(main, "bob", scopes=["tokens"]), 201).json()["token"]
    r = requests.post(main.api.url("/tokens"), headers=bearer(tok), timeout=30,
                      json={"name": "wider", "scopes": ["execute"]})
    assert_problem(r, 422)
    r = requests.post(main.api.url("/tokens"), headers=bearer(tok), timeout=30, json={"name": "same"})
    expect_status(r, 201)
    assert r.json()["scopes"] == ["tokens"], r.json()
    assert_problem(make_token(main, "bob", scopes=["root"]), 422)
    assert_problem(make_token(main, "bob", scopes=[]), 422)
    default = expect_status(make_token(main, "bob"), 201).json()
    assert set(default["scopes"]) == {"functions:read", "functions:write", "tasks:read",
                                      "tasks:write", "execute", "tokens"}, default


def test_expired_token_is_refused(main):
    r = expect_status(make_token(main, "bob", expires_in_days=1), 201).json()
    h = bearer(r["token"])
    expect_status(requests.get(main.api.url("/me"), headers=h, timeout=30), 200)
    # Age it in the store, as a day passing would (in whichever store the stack uses).
    past = int(time.time() * 1000) - 1000
    if main.backends:
        db_url = main.backends.args[main.backends.args.index("--db") + 1]
        subprocess.run(["psql", db_url, "-v", "ON_ERROR_STOP=1", "-qc",
                        f"UPDATE tokens SET expires_at = {past} WHERE id = '{r['id']}'"],
                       check=True, capture_output=True, timeout=30)
    else:
        db = sqlite3.connect(main.data_dir / "mecapy.db", timeout=10)
        with db:
            db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (past, r["id"]))
        db.close()
    assert_problem(requests.get(main.api.url("/me"), headers=h, timeout=30), 401)


# ------------------------------------------------------------------- audit

def test_audit_has_every_kind_and_only_admins_read_it(main, fname):
    api = main.api
    # login and logout, a failed login
    tok = expect_status(login(main, "bob@acme.test", "bob-pass-1234"), 200).json()["token"]
    expect_status(requests.post(api.url("/auth/logout"), headers=bearer(tok), timeout=30), 204)
    assert_problem(login(main, "bob@acme.test", "wrong-pass-1234"), 401)
    # tokens
    t = expect_status(make_token(main, "bob", scopes=["functions:read"]), 201).json()
    # a refusal of a signed-in caller, then an anonymous one
    assert_problem(requests.post(api.url("/functions"), headers=bearer(t["token"]),
                                 json={"name": fname, "code": "x"}, timeout=30), 403)
    assert_problem(requests.get(api.url("/me"), headers=bearer("mpy_not_a_token_at_all"),
                                timeout=30), 401)
    expect_status(api.delete("bob", f"/tokens/{t['id']}"), 204)
    # publish a function and take it back
    f = api.create_function("bob", fname, "def main() -> int:\n    return 1\n")
    expect_status(api.put("bob", f"/functions/{f['id']}", json={"visibility": "company"}), 200)
    expect_status(api.put("bob", f"/functions/{f['id']}", json={"visibility": "private"}), 200)

    events = audit_kinds(main, "alice")
    kinds = {e["kind"] for e in events}
    for k in ("login", "login_failed", "logout", "token_created", "token_revoked",
              "function_published", "function_unpublished", "access_denied"):
        assert k in kinds, f"no {k} event in {sorted(kinds)}"
    failed = [e for e in events if e["kind"] == "login_failed"]
    assert any(e["detail"]["email"] == "bob@acme.test" and e["client"] == "127.0.0.1"
               for e in failed), failed
    for e in events:
        assert set(e) >= {"id", "at", "kind", "actor_id", "company_id", "client", "target_id",
                          "detail"}, e
        assert harness.RFC3339_UTC.match(e["at"]), e
    # Filters.
    only = audit_kinds(main, "alice", kind="token_revoked")
    assert only and {e["kind"] for e in only} == {"token_revoked"}, only
    assert_problem(api.get("alice", "/audit", params={"since": "yesterday"}), 400)
    assert audit_kinds(main, "alice", since="2999-01-01T00:00:00Z") == []

    # Company-less events (sign-up, password change) are the operator's, not acme's.
    email = harness.Api.unique("au") + "@signup.test"
    expect_status(signup(main, email, "first-pass-1234"), 201)
    s = expect_status(login(main, email, "first-pass-1234"), 200).json()["token"]
    expect_status(requests.post(api.url("/me/password"), headers=bearer(s), timeout=30,
                                json={"current_password": "first-pass-1234",
                                      "new_password": "second-pass-1234"}), 204)
    root_kinds = {e["kind"] for e in audit_kinds(main, "root")}
    assert {"signup", "password_changed"} <= root_kinds, root_kinds
    acme = audit_kinds(main, "alice")
    assert not [e for e in acme if e["kind"] in ("signup", "password_changed")], acme

    # A member reads nothing.
    assert_problem(api.get("bob", "/audit"), 403)
