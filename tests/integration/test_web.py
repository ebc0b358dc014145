"""The dashboard's files (--web-dir): served from the folder the build writes, with the
right types and cache headers, the page's CSP, the app's addresses answered with its page,
and nothing outside the folder ever read (docs/architecture.md#the-dashboard)."""
import gzip
import os
import subprocess

import pytest
import requests

from harness import Server, create_user, DEFAULT_USERS, mecapy_bin, tmp_root

SECRET = "top-secret-outside-the-web-dir"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    root = tmp_path_factory.mktemp("web", numbered=True)
    dist = root / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>app</title><meta property=csp-nonce nonce=__MP_CSP_NONCE__>"
                                     "<script type=module src=/assets/app-1a2b3c.js nonce=__MP_CSP_NONCE__></script>")
    (dist / "assets" / "app-1a2b3c.js").write_text("console.log('app')")
    (dist / "assets" / "app-1a2b3c.css").write_text("body{}")
    (dist / "assets" / "app-1a2b3c.js.gz").write_bytes(gzip.compress(b"console.log('app')"))
    (dist / "robots.txt").write_text("User-agent: *\n")
    (dist / ".env").write_text(SECRET)
    (root / "secret.txt").write_text(SECRET)
    os.symlink(root / "secret.txt", dist / "assets" / "link-abc.js")
    os.symlink(root, dist / "up")
    data = root / "data"
    data.mkdir()
    create_user(data, DEFAULT_USERS[0])
    s = Server(data, extra_args=["--web-dir", str(dist)])
    s.start()
    yield s
    s.stop()


def get(s, path, **kw):
    return requests.get(s.base + path, timeout=30, allow_redirects=False, **kw)


def test_index_and_app_addresses(web):
    for path in ["/", "/index.html", "/functions", "/functions/abc", "/functions/abc/edit", "/tasks/0f4c?x=1",
                 "/tasks", "/account", "/sign-in"]:
        r = get(web, path)
        assert r.status_code == 200, (path, r.status_code, r.text[:200])
        assert r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "<title>app</title>" in r.text
        csp = r.headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0], csp
        assert "no-store" in r.headers["Cache-Control"], "the page names this build's files: never cached"


def test_index_has_a_fresh_style_nonce_and_no_unsafe_inline(web):
    """Each answer of the page carries its own nonce, where the build put its mark, and
    the CSP allows inline styles with that nonce only (no 'unsafe-inline')."""
    import re
    seen = set()
    for path in ["/", "/functions/abc", "/tasks"]:
        r = get(web, path)
        csp = r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp, csp
        m = re.search(r"style-src 'self' 'nonce-([0-9a-f]{32})';", csp)
        assert m, csp
        assert "__MP_CSP_NONCE__" not in r.text
        assert r.text.count(f"nonce={m.group(1)}") == 2, r.text
        seen.add(m.group(1))
    assert len(seen) == 3, "a nonce is never reused"


def test_hashed_assets_are_immutable_with_their_type(web):
    r = get(web, "/assets/app-1a2b3c.js")
    assert r.status_code == 200 and r.text == "console.log('app')"
    assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    r = get(web, "/assets/app-1a2b3c.css")
    assert r.headers["Content-Type"] == "text/css; charset=utf-8"
    r = requests.head(web.base + "/assets/app-1a2b3c.js", headers={"Accept-Encoding": "identity"}, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Length"] == str(len("console.log('app')"))
    # Outside assets/: revalidated, not immutable.
    r = get(web, "/robots.txt")
    assert r.status_code == 200 and "immutable" not in r.headers["Cache-Control"]


@pytest.mark.parametrize("path", [
    "/assets/missing-123.js", "/missing.js", "/.env", "/assets/.env",
    "/..%2fsecret.txt", "/%2e%2e/secret.txt", "/assets/..%2f..%2fsecret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
    "/..%5csecret.txt", "/assets/link-abc.js", "/up/secret.txt", "/assets/%00.js",
    "/api/v1/no-such-route", "/api/anything", "/nowhere", "/functions/x.js",
])
def test_nothing_outside_the_folder_and_no_page_for_missing_files(web, path):
    r = get(web, path)
    assert r.status_code == 404, (path, r.status_code, r.text[:200])
    assert SECRET not in r.text
    assert r.headers["Content-Type"] == "application/problem+json"


def test_raw_traversal_on_the_wire(web):
    """A client that sends dots unencoded (curl --path-as-is): still nothing outside."""
    import socket
    for target in ["/../secret.txt", "/assets/../../secret.txt", "/./../secret.txt"]:
        with socket.create_connection(("127.0.0.1", web.port), timeout=10) as c:
            c.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while chunk := c.recv(65536):
                data += chunk
        assert SECRET.encode() not in data, target


def test_a_web_dir_without_index_is_refused_at_start(tmp_path):
    (tmp_path / "empty").mkdir()
    data = tmp_path / "data"
    data.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    p = subprocess.run([str(mecapy_bin()), "serve", "--data-dir", str(data), "--port", "0",
                        "--web-dir", str(tmp_path / "empty")], env=env, capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "--web-dir" in p.stderr and "index.html" in p.stderr, p.stderr


def test_the_sign_in_page_learns_the_logins_offered(web):
    r = get(web, "/api/v1/auth/providers")
    assert r.status_code == 200, r.text
    assert r.json() == {"local": True, "oidc": False, "signup": False}


def test_a_browser_that_takes_gzip_gets_the_compressed_asset(web):
    for ae, coded in [("gzip, deflate, br", True), ("br;q=1, gzip;q=0.5", True), ("gzip;q=0", False),
                      ("identity", False), (None, False)]:
        h = {"Accept-Encoding": ae} if ae else {"Accept-Encoding": ""}
        r = requests.get(web.base + "/assets/app-1a2b3c.js", headers=h, timeout=30, stream=True)
        raw = r.raw.read(decode_content=False)
        assert r.status_code == 200
        assert r.headers["Content-Type"] == "text/javascript; charset=utf-8", r.headers
        assert "Accept-Encoding" in r.headers.get("Vary", ""), r.headers
        if coded:
            assert r.headers.get("Content-Encoding") == "gzip", (ae, r.headers)
            assert gzip.decompress(raw) == b"console.log('app')"
        else:
            assert "Content-Encoding" not in r.headers, (ae, r.headers)
            assert raw == b"console.log('app')"
    # Without a .gz twin: as it is, whatever the browser takes.
    r = requests.get(web.base + "/assets/app-1a2b3c.css", headers={"Accept-Encoding": "gzip"}, timeout=30)
    assert "Content-Encoding" not in r.headers and r.text == "body{}"
