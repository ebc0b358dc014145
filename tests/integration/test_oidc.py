"""OpenID Connect against a real provider (tests/services/oidc/provider.mjs, oidc-provider
from npm, shaped like Keycloak): access tokens of a client-credentials client, the browser
login by authorization code + PKCE, key rotation, and forged tokens, which must ALL get a
401 problem. Local accounts keep working next to OpenID (--auth local,oidc:ISSUER).

The provider is the one of MECAPY_TEST_OIDC_ISSUER when set (tests/run.sh starts it with
tests/services/oidc.sh), else this module starts its own; skipped without node/npm ci.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import pytest
import requests

import harness

AUD = "mecapy-api"
WEB_CLIENT = "mecapy-web"
SERVICE = harness.REPO / "tests" / "services" / "oidc.sh"


def b64u(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwt_parts(token: str) -> tuple[dict, dict]:
    h, p, _ = token.split(".")
    return json.loads(unb64u(h)), json.loads(unb64u(p))


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def issuer(tmp_path_factory):
    if os.environ.get("MECAPY_TEST_OIDC_ISSUER"):
        yield os.environ["MECAPY_TEST_OIDC_ISSUER"].rstrip("/")
        return
    d = tmp_path_factory.mktemp("oidc")
    r = subprocess.run([str(SERVICE), "start", str(d)], capture_output=True, text=True, timeout=60)
    if r.returncode == 77:
        pytest.skip(f"no OpenID provider here: {r.stderr.strip()}")
    assert r.returncode == 0, f"oidc.sh start failed: {r.stderr}"
    yield r.stdout.strip()
    subprocess.run([str(SERVICE), "stop", str(d)], timeout=30)


@pytest.fixture(scope="module")
def stack(issuer):
    s = harness.start_stack("oidc", extra_args=[
        "--auth", f"local,oidc:{issuer}", "--oidc-audience", AUD,
        "--oidc-client-id", WEB_CLIENT])
    yield s
    s.close()


def machine_token(issuer: str, client="mecapy-machine", secret="machine-secret") -> str:
    r = requests.post(f"{issuer}/token", auth=(client, secret),
                      data={"grant_type": "client_credentials", "scope": "api"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def mint(issuer: str, payload: dict, header: dict | None = None) -> str:
    r = requests.post(f"{issuer}/admin/mint", json={"payload": payload, "header": header or {}},
                      timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["token"]


def me(stack, token: str) -> requests.Response:
    return requests.get(stack.server.base + "/api/v1/me",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)


def good_claims(issuer: str, **over) -> dict:
    now = int(time.time())
    c = {"iss": issuer, "sub": "kc-minted-user", "aud": [AUD, "account"], "exp": now + 300,
         "iat": now, "azp": "mecapy-machine", "preferred_username": "minted",
         "realm_access": {"roles": ["default-roles-mecapy"]}}
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


# ---------------------------------------------------------------------------- resource server

def test_client_credentials_token_creates_the_user_with_mapped_role_and_company(stack, issuer):
    tok = machine_token(issuer)
    h, p = jwt_parts(tok)
    assert h["alg"] == "RS256" and h.get("kid"), h
    assert AUD in p["aud"] and isinstance(p["aud"], list), p
    r = harness.expect_status(me(stack, tok), 200)
    u = r.json()
    assert u["role"] == "admin", u          # realm role mecapy-admin
    assert u["company"] == "acme-corp", u   # the "company" claim
    assert u["email"] == "service-account-mecapy-machine@oidc.invalid", u
    # Seen again: the same user, not a second one.
    assert me(stack, machine_token(issuer)).json()["id"] == u["id"]


def test_viewer_role_and_company_from_groups(stack, issuer):
    u = harness.expect_status(me(stack, machine_token(issuer, "mecapy-viewer-bot", "viewer-secret")), 200).json()
    assert u["role"] == "viewer", u
    assert u["company"] == "globex-corp", u  # first of groups, without Keycloak's "/"


def test_role_and_email_are_refreshed_on_later_sight(stack, issuer):
    sub = "kc-refresh-" + os.urandom(4).hex()
    t1 = mint(issuer, good_claims(issuer, sub=sub, email="first@example.test",
                                  realm_access={"roles": ["viewer"]}))
    u1 = harness.expect_status(me(stack, t1), 200).json()
    assert (u1["email"], u1["role"]) == ("first@example.test", "viewer")
    t2 = mint(issuer, good_claims(issuer, sub=sub, email="second@example.test",
                                  realm_access={"roles": ["admin"]}, company="initech"))
    u2 = harness.expect_status(me(stack, t2), 200).json()
    assert u2["id"] == u1["id"]
    assert (u2["email"], u2["role"], u2["company"]) == ("second@example.test", "admin", "initech")


def test_oidc_user_can_use_the_api(stack, issuer):
    tok = machine_token(issuer)
    r = requests.post(stack.server.base + "/api/v1/functions", headers={"Authorization": f"Bearer {tok}"},
                      json={"name": harness.Api.unique("oidc-fn"), "code": "def main(x: int):\n    return x\n"},
                      timeout=30)
    harness.expect_status(r, 201)


def test_oidc_users_tokens_follow_the_provider(stack, issuer):
    """An OpenID user's API tokens expire: at most 12 hours (MP_OIDC_TOKEN_MAX_AGE_S) after
    the provider's word on its role and company was read, and never after the credential
    that minted them (docs/identity.md#openid-users-tokens)."""
    from datetime import datetime

    def at(s: str) -> float:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

    def new_token(bearer_token: str, days: int) -> dict:
        r = requests.post(stack.server.base + "/api/v1/tokens", timeout=30,
                          headers={"Authorization": f"Bearer {bearer_token}"},
                          json={"name": "ci", "expires_in_days": days})
        return harness.expect_status(r, 201).json()

    now = time.time()
    # A provider token that claims to last 40 days: what it mints still ends within 12 h.
    sub = "kc-tokens-" + os.urandom(4).hex()
    long_lived = mint(issuer, good_claims(issuer, sub=sub, email=f"{sub}@example.test",
                                          realm_access={"roles": ["admin"]}, company="initech",
                                          exp=int(now) + 40 * 86400))
    child = new_token(long_lived, 30)
    assert at(child["expires_at"]) <= now + 12 * 3600 + 60, child
    # It works, and what it mints ends no later than itself.
    assert harness.expect_status(me(stack, child["token"]), 200).json()["email"] == f"{sub}@example.test"
    grand = new_token(child["token"], 3650)
    assert at(grand["expires_at"]) <= at(child["expires_at"]), (child, grand)
    # A real client-credentials token: the child ends when that token does.
    tok = machine_token(issuer)
    _, claims = jwt_parts(tok)
    assert at(new_token(tok, 30)["expires_at"]) <= claims["exp"], claims


def test_provider_token_call_with_wait_is_held_and_answered(stack, issuer):
    """A provider token is authenticated on a slow-work thread; an execute ?wait= started
    there hands the suspended connection to the long poll, which answers when the call
    ends (docs/architecture.md#api-routes-and-slow-work)."""
    h = {"Authorization": f"Bearer {machine_token(issuer)}"}
    base = stack.server.base + "/api/v1"
    r = requests.post(f"{base}/functions", headers=h, timeout=30,
                      json={"name": harness.Api.unique("oidc-wait"),
                            "code": "import time\n\ndef main(s: float = 0.5) -> str:\n    time.sleep(s)\n    return 'done'\n"})
    fid = harness.expect_status(r, 201).json()["id"]
    for _ in range(3):
        r = requests.post(f"{base}/functions/{fid}/execute", params={"wait": "30"}, headers=h,
                          json={"inputs": {"s": 0.5}}, timeout=60)
        t = harness.expect_status(r, 200).json()
        assert (t["status"], t["result"]) == ("completed", "done"), t
        r = requests.get(f"{base}/tasks/{t['id']}", params={"wait": "5"}, headers=h, timeout=60)
        assert harness.expect_status(r, 200).json()["status"] == "completed"


def test_local_accounts_keep_working(stack):
    r = stack.api.get("alice", "/me")
    harness.expect_status(r, 200)
    assert r.json()["email"] == "alice@acme.test"
    stack.api.login("bob")
    harness.expect_status(stack.api.get("bob", "/functions"), 200)


def test_an_email_of_a_local_account_is_not_taken_over(stack, issuer):
    t = mint(issuer, good_claims(issuer, sub="kc-takeover", email="alice@acme.test",
                                 email_verified=True, realm_access={"roles": ["admin"]}))
    r = me(stack, t)
    harness.assert_problem(r, 403)
    assert stack.api.get("alice", "/me").json()["role"] == "member"


def test_a_genuine_minted_token_is_accepted(stack, issuer):
    """The control for the forged-claims tests below: the mint route signs genuinely."""
    harness.expect_status(me(stack, mint(issuer, good_claims(issuer))), 200)


# ---------------------------------------------------------------------------- forged tokens

def _rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _rs256(key, header: dict, payload: dict) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    si = f"{b64u(json.dumps(header).encode())}.{b64u(json.dumps(payload).encode())}"
    return si + "." + b64u(key.sign(si.encode(), padding.PKCS1v15(), hashes.SHA256()))


def _jwk_of(key, kid: str) -> dict:
    n = key.public_key().public_numbers()
    as_b64 = lambda i: b64u(i.to_bytes((i.bit_length() + 7) // 8, "big"))  # noqa: E731
    return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": as_b64(n.n), "e": as_b64(n.e)}


class _KeyServer:
    """An attacker's web server: serves a JWKS and a certificate URL, and counts hits."""

    def __init__(self, jwks: dict):
        hits = self.hits = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                hits.append(self.path)
                body = json.dumps(jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture(scope="module")
def genuine(issuer):
    tok = machine_token(issuer)
    h, p = jwt_parts(tok)
    jwks = requests.get(f"{issuer}/jwks", timeout=30).json()
    return {"token": tok, "header": h, "payload": p, "jwks": jwks}


def forged_tokens(issuer: str, g: dict, keysrv: _KeyServer) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization
    h, p, kid = g["header"], g["payload"], g["header"]["kid"]
    mine = _rsa_key()
    enc = lambda d: b64u(json.dumps(d).encode())  # noqa: E731
    now = int(time.time())
    # HS256 keyed with the provider's public key (the classic RSA/HMAC confusion).
    pub = next(k for k in g["jwks"]["keys"] if k["kid"] == kid)
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
    pk = RSAPublicNumbers(int.from_bytes(unb64u(pub["e"]), "big"),
                          int.from_bytes(unb64u(pub["n"]), "big")).public_key()
    pem = pk.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    hs_h = {"alg": "HS256", "kid": kid, "typ": "JWT"}
    si = f"{enc(hs_h)}.{enc(p)}"
    hs256 = si + "." + b64u(hmac.new(pem, si.encode(), hashlib.sha256).digest())
    si2 = f"{enc(dict(hs_h))}.{enc(p)}"
    hs256_jwk = si2 + "." + b64u(hmac.new(json.dumps(pub).encode(), si2.encode(), hashlib.sha256).digest())
    edited = dict(p, realm_access={"roles": ["mecapy-admin"]}, company="evil-corp", sub="kc-evil")
    tok_h, _, tok_s = g["token"].split(".")
    return {
        "wrong signing key, same kid": _rs256(mine, h, p),
        "alg none, no signature": f"{enc({'alg': 'none', 'kid': kid})}.{enc(p)}.",
        "alg none, with a signature": f"{enc({'alg': 'none', 'kid': kid})}.{enc(p)}.{tok_s}",
        "HS256 keyed with the public key PEM": hs256,
        "HS256 keyed with the public JWK": hs256_jwk,
        "key embedded in the header (jwk)": _rs256(mine, dict(h, jwk=_jwk_of(mine, kid)), p),
        "key embedded in the header (jwk, own kid)": _rs256(mine, dict(h, kid="evil", jwk=_jwk_of(mine, "evil")), p),
        "key URL in the header (jku)": _rs256(mine, dict(h, jku=keysrv.url + "/jwks.json"), p),
        "key URL in the header (jku, own kid)": _rs256(mine, dict(h, kid="evil", jku=keysrv.url + "/jwks.json"), p),
        "certificate URL in the header (x5u)": _rs256(mine, dict(h, x5u=keysrv.url + "/cert.pem"), p),
        "expired": mint(issuer, good_claims(issuer, exp=now - 3600, iat=now - 7200)),
        "expired beyond the skew": mint(issuer, good_claims(issuer, exp=now - 120, iat=now - 600)),
        "not yet valid (nbf)": mint(issuer, good_claims(issuer, nbf=now + 3600)),
        "issued in the future (iat)": mint(issuer, good_claims(issuer, iat=now + 3600)),
        "no exp": mint(issuer, good_claims(issuer, exp=None)),
        "wrong issuer": mint(issuer, good_claims(issuer, iss="https://evil.example/realms/mecapy")),
        "issuer with a trailing slash": mint(issuer, good_claims(issuer, iss=issuer + "/")),
        "wrong audience": mint(issuer, good_claims(issuer, aud="another-api")),
        "wrong audience array": mint(issuer, good_claims(issuer, aud=["account", "another-api"])),
        "audience of another type": mint(issuer, good_claims(issuer, aud={"x": AUD})),
        "no sub": mint(issuer, good_claims(issuer, sub=None)),
        "unknown kid": mint(issuer, good_claims(issuer), {"kid": "no-such-kid"}),
        "crit header": mint(issuer, good_claims(issuer), {"crit": ["exp"], "exp": 1}),
        "truncated": g["token"][:-12],
        "truncated to two parts": ".".join(g["token"].split(".")[:2]),
        "garbage": "eyJhbGciOi.garbage.garbage",
        "garbage that is not base64": "not-a.jwt.at all",
        "payload edited, signature kept": f"{tok_h}.{enc(edited)}.{tok_s}",
        "signature of another token": f"{tok_h}.{enc(p)}.{machine_token(issuer).split('.')[2]}",
    }


def test_forged_tokens_are_all_refused(stack, issuer, genuine):
    harness.expect_status(me(stack, genuine["token"]), 200)  # the genuine one works
    keysrv = _KeyServer({"keys": []})
    try:
        forged = forged_tokens(issuer, genuine, keysrv)
        failures = []
        for name, tok in forged.items():
            r = me(stack, tok)
            if r.status_code != 401 or not harness.is_problem(r):
                failures.append(f"{name}: {harness.describe(r)}")
        assert not failures, "forged tokens not refused with a 401 problem:\n" + "\n".join(failures)
        assert keysrv.hits == [], f"the server fetched a URL named by a token: {keysrv.hits}"
    finally:
        keysrv.close()
    # Nothing a forged token named was created.
    assert stack.api.get("alice", "/me").status_code == 200


def test_mpy_prefixed_and_overlong_tokens_are_refused(stack):
    harness.assert_problem(me(stack, "mpy_" + "a" * 43), 401)
    harness.assert_problem(me(stack, "a" * 20000 + ".b.c"), 401)


def test_key_rotation_is_picked_up_without_restart(stack, issuer):
    before = jwt_parts(machine_token(issuer))[0]["kid"]
    harness.expect_status(me(stack, machine_token(issuer)), 200)
    r = requests.post(f"{issuer}/admin/rotate", timeout=30)
    assert r.status_code == 200, r.text
    tok = machine_token(issuer)
    kid = jwt_parts(tok)[0]["kid"]
    assert kid != before, "the provider did not switch to a new key"
    deadline = time.monotonic() + 20
    while True:
        r = me(stack, tok)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    harness.expect_status(r, 200)
    assert stack.server.proc.poll() is None
    # Tokens of the previous key stay good while the provider still publishes it.
    harness.expect_status(me(stack, mint(issuer, good_claims(issuer))), 200)


# ---------------------------------------------------------------------------- the login flow

def provider_login(sess: requests.Session, url: str, user: str, stop_prefix: str) -> str:
    """Follow the provider's redirects from url, signing in as user on its form, until a
    redirect to stop_prefix: return that URL (not requested)."""
    for _ in range(20):
        if url.startswith(stop_prefix):
            return url
        r = sess.get(url, allow_redirects=False, timeout=30)
        if r.status_code in (302, 303):
            url = urljoin(url, r.headers["Location"])
            continue
        assert r.status_code == 200, harness.describe(r)
        m = re.search(r'action="([^"]+)"', r.text)
        assert m, f"no login form at {url}: {r.text[:300]}"
        r = sess.post(urljoin(url, m.group(1)), data={"login": user}, allow_redirects=False, timeout=30)
        assert r.status_code in (302, 303), harness.describe(r)
        url = urljoin(url, r.headers["Location"])
    pytest.fail("the provider's redirects did not end at the callback")


def start_login(stack, sess: requests.Session, params: dict | None = None) -> str:
    r = sess.get(stack.server.base + "/api/v1/auth/oidc/login", params=params or {},
                 allow_redirects=False, timeout=30)
    harness.expect_status(r, 302)
    loc = r.headers["Location"]
    q = parse_qs(urlparse(loc).query)
    assert q["code_challenge_method"] == ["S256"] and q["code_challenge"][0], loc
    assert q["state"][0] and q["nonce"][0] and q["client_id"] == [WEB_CLIENT], loc
    assert "code_verifier" not in loc
    ck = r.headers.get("Set-Cookie", "")
    assert "mecapy_oidc=" in ck and "HttpOnly" in ck and "SameSite=Lax" in ck, ck
    return loc


def test_browser_login_with_pkce(stack, issuer):
    sess = requests.Session()
    base = stack.server.base
    cb = provider_login(sess, start_login(stack, sess), "alice", base + "/api/v1/auth/oidc/callback")
    r = sess.get(cb, allow_redirects=False, timeout=30)
    harness.expect_status(r, 200)
    body = r.json()
    assert body["token"].startswith("mpy_") and body["expires_at"], body
    assert body["user"]["email"] == "alice.oidc@example.test", body
    assert body["user"]["role"] == "admin", body          # resource_access.mecapy-web: mecapy-admin
    assert body["user"]["company"] == "acme-corp", body
    cookies = r.headers.get("Set-Cookie", "")
    assert re.search(r"mecapy_session=mpy_[^;]+; Path=/; HttpOnly; SameSite=Lax", cookies), cookies
    # The session works as a bearer token...
    harness.expect_status(me(stack, body["token"]), 200)
    # ...and as a cookie for GET, but not for a POST without the CSRF header.
    jar = requests.Session()
    jar.cookies.set("mecapy_session", body["token"])
    harness.expect_status(jar.get(base + "/api/v1/me", timeout=30), 200)
    harness.assert_problem(jar.post(base + "/api/v1/tokens", json={"name": "x"}, timeout=30), 403)
    csrf = sess.cookies.get("mecapy_csrf")
    assert csrf and len(csrf) >= 32
    jar.cookies.set("mecapy_csrf", csrf)
    harness.assert_problem(jar.post(base + "/api/v1/tokens", json={"name": "x"},
                                    headers={"X-CSRF-Token": "wrong" * 8}, timeout=30), 403)
    harness.expect_status(jar.post(base + "/api/v1/tokens", json={"name": "x"},
                                   headers={"X-CSRF-Token": csrf}, timeout=30), 201)
    # The state is single use.
    harness.assert_problem(sess.get(cb, allow_redirects=False, timeout=30), 401)
    # Logout ends the session and clears the cookie.
    r = requests.post(base + "/api/v1/auth/logout", headers={"Authorization": f"Bearer {body['token']}"},
                      timeout=30)
    harness.expect_status(r, 204)
    assert "mecapy_session=;" in r.headers.get("Set-Cookie", "")
    harness.assert_problem(me(stack, body["token"]), 401)


def test_login_with_a_wrong_state_or_another_browser_is_refused(stack):
    base = stack.server.base
    sess = requests.Session()
    cb = provider_login(sess, start_login(stack, sess), "victor", base + "/api/v1/auth/oidc/callback")
    u = urlparse(cb)
    q = parse_qs(u.query)
    wrong = f"{base}{u.path}?code={q['code'][0]}&state={'A' * 43}"
    harness.assert_problem(sess.get(wrong, allow_redirects=False, timeout=30), 401)
    # The right state, but from a browser without the login cookie (login CSRF).
    harness.assert_problem(requests.get(cb, allow_redirects=False, timeout=30), 401)
    # That consumed the login: the first browser cannot finish it either.
    harness.assert_problem(sess.get(cb, allow_redirects=False, timeout=30), 401)


def test_login_redirect_must_be_a_local_path(stack):
    for bad in ["//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"]:
        r = requests.get(stack.server.base + "/api/v1/auth/oidc/login", params={"redirect": bad},
                         allow_redirects=False, timeout=30)
        harness.assert_problem(r, 400)
    for bad in ["http://evil.example:1234/callback", "http://127.0.0.1.evil.example:80/cb",
                "https://127.0.0.1:8000/cb", "http://127.0.0.1:99999/cb"]:
        r = requests.get(stack.server.base + "/api/v1/auth/oidc/login",
                         params={"cli_redirect": bad, "cli_state": "abc", "cli_challenge": "x" * 43},
                         allow_redirects=False, timeout=30)
        harness.assert_problem(r, 400)


def test_login_with_return_path_redirects_there(stack):
    sess = requests.Session()
    base = stack.server.base
    cb = provider_login(sess, start_login(stack, sess, {"redirect": "/#/functions"}), "victor",
                        base + "/api/v1/auth/oidc/callback")
    r = sess.get(cb, allow_redirects=False, timeout=30)
    harness.expect_status(r, 302)
    assert r.headers["Location"] == "/#/functions"
    assert sess.cookies.get("mecapy_session", "").startswith("mpy_")
    u = harness.expect_status(sess.get(base + "/api/v1/me", timeout=30), 200).json()
    assert (u["email"], u["role"], u["company"]) == ("victor@example.test", "viewer", "globex-corp")


def test_cli_exchange_flow_over_http(stack):
    """The server side of `mecapy login --oidc`: a loopback redirect with a one-time code
    bound to the CLI's PKCE challenge."""
    base = stack.server.base
    verifier = b64u(os.urandom(32))
    challenge = b64u(hashlib.sha256(verifier.encode()).digest())
    sess = requests.Session()
    loc = start_login(stack, sess, {"cli_redirect": "http://127.0.0.1:45678/callback",
                                    "cli_state": "cli-state-1", "cli_challenge": challenge})
    cb = provider_login(sess, loc, "alice", base + "/api/v1/auth/oidc/callback")
    r = sess.get(cb, allow_redirects=False, timeout=30)
    harness.expect_status(r, 302)
    back = urlparse(r.headers["Location"])
    assert (back.hostname, back.port, back.path) == ("127.0.0.1", 45678, "/callback"), back
    q = parse_qs(back.query)
    assert q["state"] == ["cli-state-1"]
    assert "mecapy_session" not in r.headers.get("Set-Cookie", "")
    url = base + "/api/v1/auth/oidc/cli-exchange"
    harness.assert_problem(requests.post(url, json={"code": q["code"][0], "code_verifier": "b" * 43},
                                         timeout=30), 401)
    # A wrong verifier burnt the code: single use.
    harness.assert_problem(requests.post(url, json={"code": q["code"][0], "code_verifier": verifier},
                                         timeout=30), 401)
    # Again, right this time.
    sess = requests.Session()
    loc = start_login(stack, sess, {"cli_redirect": "http://127.0.0.1:45678/callback",
                                    "cli_state": "cli-state-2", "cli_challenge": challenge})
    cb = provider_login(sess, loc, "alice", base + "/api/v1/auth/oidc/callback")
    q = parse_qs(urlparse(sess.get(cb, allow_redirects=False, timeout=30).headers["Location"]).query)
    r = harness.expect_status(requests.post(url, json={"code": q["code"][0], "code_verifier": verifier},
                                            timeout=30), 200)
    assert r.json()["user"]["email"] == "alice.oidc@example.test"
    harness.expect_status(me(stack, r.json()["token"]), 200)


def test_cli_login_oidc(stack, tmp_path):
    """`mecapy login --oidc`: the test plays the browser."""
    base = stack.server.base
    env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    env["MECAPY_CONFIG_DIR"] = str(tmp_path)
    env["BROWSER"] = "true"
    proc = subprocess.Popen([str(harness.mecapy_bin()), "login", "--oidc", "--url", base], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and url is None:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"(http://127\.0\.0\.1:\d+/api/v1/auth/oidc/login\S*)", line)
            if m:
                url = m.group(1)
        assert url, f"mecapy login --oidc printed no login URL; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        sess = requests.Session()
        r = sess.get(url, allow_redirects=False, timeout=30)
        harness.expect_status(r, 302)
        cb = provider_login(sess, r.headers["Location"], "alice", base + "/api/v1/auth/oidc/callback")
        r = sess.get(cb, allow_redirects=False, timeout=30)
        harness.expect_status(r, 302)
        r = sess.get(r.headers["Location"], timeout=30)  # the CLI's loopback listener
        assert r.status_code == 200, harness.describe(r)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, f"stdout={out!r} stderr={err!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = harness.run_cli(["fn", "ls"], config_dir=tmp_path)  # the saved URL and token
    assert r.returncode == 0, r.stderr


def test_login_mode_json_gives_the_authorization_url(stack):
    r = requests.get(stack.server.base + "/api/v1/auth/oidc/login", params={"mode": "json"},
                     allow_redirects=False, timeout=30)
    harness.expect_status(r, 200)
    q = parse_qs(urlparse(r.json()["authorization_url"]).query)
    assert q["code_challenge_method"] == ["S256"] and "mecapy_oidc=" in r.headers.get("Set-Cookie", "")


def test_provider_unreachable_answers_503_not_401():
    """A token that cannot be judged because the provider is down is the provider's
    outage: 503 with Retry-After, so clients retry rather than drop their token. Local
    accounts keep working meanwhile."""
    port = harness.free_port()  # nothing listens there
    s = harness.start_stack("oidc-down", extra_args=[
        "--auth", f"local,oidc:http://127.0.0.1:{port}", "--oidc-audience", AUD])
    try:
        token = ".".join(base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")
                         for part in ({"alg": "RS256", "kid": "k1"}, {"sub": "x", "aud": AUD}))
        token += ".c2ln"
        for _ in range(2):  # the first try reaches for the provider, the second is rate-limited
            r = requests.get(s.api.url("/me"), headers={"Authorization": f"Bearer {token}"},
                             timeout=30)
            p = harness.assert_problem(r, 503)
            assert int(r.headers["Retry-After"]) >= 1
            assert "OpenID provider" in p["detail"]
        harness.expect_status(s.api.get("alice", "/me"), 200)
    finally:
        s.close()
