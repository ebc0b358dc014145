"""Environments beyond one node's folder (docs/operations.md#environments): PEP 691 JSON
index pages, the collection of the downloaded-wheel cache, and layers stored in the
object store so that a worker with its own data folder runs a function it never built.

The wheels are the fixture wheels of test_environments.py (built during the test), plus
a beamlib 1.5 built here from beamlib 1.0's sources, which the JSON index marks yanked.

Run: MECAPY_BIN=build/mecapy python3 -m pytest -q tests/integration/test_env_layers.py
"""
import json
import os
import shutil
import sqlite3
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import harness
from harness import expect_status
from test_environments import (FIXTURES, USES_BEAMLIB, USES_HELPER, build_wheel, close_stack, sha256,
                               wait_env, wheelhouses)  # noqa: F401 (a fixture)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class JsonIndex:
    """A loopback PEP 691 index: /simple/<project>/ answers JSON when the Accept header
    asks for it (HTML otherwise), /files/<name> the wheels. Remembers the Accept headers
    it was sent and the pages it answered in JSON."""

    def __init__(self, pages: dict, files: Path):
        self.pages, self.files = pages, files
        self.accepts: list[str] = []
        self.json_answers = 0
        index = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                parts = self.path.strip("/").split("/")
                if len(parts) == 2 and parts[0] == "simple" and parts[1] in index.pages:
                    accept = self.headers.get("Accept", "")
                    index.accepts.append(accept)
                    if JSON_TYPE in accept:
                        index.json_answers += 1
                        body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1],
                                           "files": index.pages[parts[1]]}).encode()
                        ctype = JSON_TYPE
                    else:
                        body = "".join(f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}">x</a>'
                                       for f in index.pages[parts[1]]).encode()
                        ctype = "text/html"
                elif len(parts) == 2 and parts[0] == "files" and (index.files / parts[1]).is_file():
                    body, ctype = (index.files / parts[1]).read_bytes(), "application/octet-stream"
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def json_index(wheelhouses):  # noqa: F811 (the imported fixture)
    a, b = wheelhouses
    root = Path(tempfile.mkdtemp(prefix="json-index-", dir=harness.tmp_root()))
    files, work = root / "files", root / "work"
    files.mkdir()
    work.mkdir()
    # beamlib 1.5: beamlib 1.0's sources under another version number.
    src = work / "beamlib-1.5"
    shutil.copytree(FIXTURES / "beamlib-1.0", src)
    for f in (src / "pyproject.toml", src / "beamlib" / "__init__.py"):
        f.write_text(f.read_text().replace('"1.0"', '"1.5"').replace("beamlib 1.0", "beamlib 1.5"))
    build_wheel(src, files, work / "build")
    for w in (a / "beamlib-1.0-py3-none-any.whl", b / "beamlib-2.0-py3-none-any.whl",
              a / "units_helper-2.1-py3-none-any.whl"):
        shutil.copy(w, files / w.name)

    def entry(name: str, digest: str | None = None, yanked=False) -> dict:
        return {"filename": name, "url": f"../../files/{name}",
                "hashes": {"sha256": digest or sha256(files / name)}, "yanked": yanked}

    pages = {
        "beamlib": [entry("beamlib-1.0-py3-none-any.whl"),
                    entry("beamlib-1.5-py3-none-any.whl", yanked="a broken release"),
                    entry("beamlib-2.0-py3-none-any.whl", digest="0" * 64)],
        "units-helper": [entry("units_helper-2.1-py3-none-any.whl")],
    }
    ix = JsonIndex(pages, files)
    yield ix
    ix.close()
    shutil.rmtree(root, ignore_errors=True)


def test_requirements_resolve_from_a_json_index(json_index, wheelhouses):  # noqa: F811
    a, _ = wheelhouses
    s = harness.start_stack("envs-json", extra_args=["--package-index", json_index.url])
    try:
        api = s.api
        fn = api.create_function("alice", api.unique("json"), USES_HELPER, requirements=["units-helper==2.1"])
        e = wait_env(api, fn["environment"]["id"])
        assert e["status"] == "ready", e
        # The pages were asked for in JSON first (PEP 691) and answered so.
        assert json_index.accepts and all(x == f"{JSON_TYPE}, text/html;q=0.1" for x in json_index.accepts), \
            json_index.accepts
        assert json_index.json_answers >= 2
        # beamlib<2: 1.5 is yanked (PEP 592) and not pinned, so 1.0 is taken.
        assert e["lock"] == [
            {"name": "beamlib", "version": "1.0", "sha256": sha256(a / "beamlib-1.0-py3-none-any.whl")},
            {"name": "units-helper", "version": "2.1",
             "sha256": sha256(a / "units_helper-2.1-py3-none-any.whl")},
        ], e
        t = api.execute("alice", fn["id"], {"F": 1000.0}, wait=60)
        assert t["status"] == "completed", t
        assert t["result"]["beamlib"] == "1.0" and t["result"]["helper"] == "2.1", t
        # A yanked file pinned with == is taken.
        pinned = api.create_function("alice", api.unique("yanked"), USES_BEAMLIB, requirements=["beamlib==1.5"])
        e = wait_env(api, pinned["environment"]["id"])
        assert e["status"] == "ready", e
        assert [(x["name"], x["version"]) for x in e["lock"]] == [("beamlib", "1.5")], e
        t = api.execute("alice", pinned["id"], {"F": 1.0}, wait=60)
        assert t["status"] == "completed" and t["result"]["beamlib"] == "1.5", t
        # A JSON entry whose sha256 is not the file's: refused as on an HTML page.
        bad = api.create_function("alice", api.unique("json-bad"), USES_BEAMLIB, requirements=["beamlib==2.0"])
        e = wait_env(api, bad["environment"]["id"])
        assert e["status"] == "failed", e
        assert "beamlib==2.0" in e["error"], e
        assert "beamlib-2.0-py3-none-any.whl: its sha256 is not the index's" in e["log"], e
        assert not list((s.data_dir / "layers" / ".wheels").glob("beamlib-2.0*")), "a wheel with a wrong hash was kept"
    finally:
        close_stack(s)


def test_admin_gc_removes_the_cached_wheels_no_environment_uses(json_index, wheelhouses):  # noqa: F811
    a, _ = wheelhouses
    s = harness.start_stack("envs-wheels-gc", extra_args=["--package-index", json_index.url])
    try:
        if s.backends:
            pytest.skip("sets an environment's age in the SQLite store")
        api = s.api
        keep = api.create_function("alice", api.unique("kept"), USES_BEAMLIB, requirements=["beamlib==1.0"])
        gone = api.create_function("alice", api.unique("dropped"), USES_HELPER,
                                   requirements=["units-helper==2.1"])
        for f in (keep, gone):
            assert wait_env(api, f["environment"]["id"])["status"] == "ready"
        wheels = s.data_dir / "layers" / ".wheels"
        helper = wheels / "units_helper-2.1-py3-none-any.whl"
        beamlib = wheels / "beamlib-1.0-py3-none-any.whl"
        assert helper.is_file() and beamlib.is_file()
        size = helper.stat().st_size
        expect_status(api.delete("alice", f"/functions/{gone['id']}"), 204)
        gc = ["admin", "gc", "--data-dir", str(s.data_dir), "--package-index", json_index.url]
        # Within the hour's grace nothing goes.
        r = harness.run_cli(gc, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "removed 0 cached wheel(s) no environment uses (0 bytes)" in r.stdout, r.stdout
        assert helper.is_file()
        # An hour later: the environments and the files are older than the grace.
        db = sqlite3.connect(s.data_dir / "mecapy.db")
        with db:
            db.execute("UPDATE environments SET created_at = created_at - 7200000")
        db.close()
        past = time.time() - 7200
        for w in wheels.iterdir():
            os.utime(w, (past, past))
        r = harness.run_cli(gc, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"removed 1 cached wheel(s) no environment uses ({size} bytes)" in r.stdout, r.stdout
        assert not helper.exists()
        assert beamlib.is_file() and sha256(beamlib) == sha256(a / beamlib.name)
        t = api.execute("alice", keep["id"], {"F": 1.0})
        assert t["status"] == "completed" and t["result"]["beamlib"] == "1.0", t
    finally:
        close_stack(s)
