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
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import harness
from harness import expect_status
from test_environments import (FIXTURES, USES_BEAMLIB, USES_HELPER, build_wheel, close_stack,
                               refuses_the_wheel_with_a_wrong_hash, resolves_units_helper_from_the_index, sha256,
                               wait_env, wheelhouses)  # noqa: F401 (a fixture)

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


class JsonIndex:
    """A loopback PEP 691 index: /simple/<project>/ answers JSON when the Accept header
    asks for it (HTML otherwise, always with serve_json=False: a PEP 503 index), /files/<name>
    the wheels; yanked files are marked in both (PEP 592). Remembers the Accept headers it
    was sent and the pages it answered in JSON."""

    def __init__(self, pages: dict, files: Path, serve_json: bool = True):
        self.pages, self.files, self.serve_json = pages, files, serve_json
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
                    if index.serve_json and JSON_TYPE in accept:
                        index.json_answers += 1
                        body = json.dumps({"meta": {"api-version": "1.0"}, "name": parts[1],
                                           "files": index.pages[parts[1]]}).encode()
                        ctype = JSON_TYPE
                    else:
                        body = "".join(f'<a href="{f["url"]}#sha256={f["hashes"]["sha256"]}"'
                                       + (' data-yanked="%s"' % f["yanked"] if f["yanked"] else "") + ">x</a>\n"
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
        # beamlib<2: 1.5 is yanked (PEP 592) and not pinned, so 1.0 is taken.
        resolves_units_helper_from_the_index(api, a)
        # The pages were asked for in JSON first (PEP 691) and answered so.
        assert json_index.accepts and all(x == f"{JSON_TYPE}, text/html;q=0.1" for x in json_index.accepts), \
            json_index.accepts
        assert json_index.json_answers >= 2
        # A yanked file pinned with == is taken.
        pinned = api.create_function("alice", api.unique("yanked"), USES_BEAMLIB, requirements=["beamlib==1.5"])
        e = wait_env(api, pinned["environment"]["id"])
        assert e["status"] == "ready", e
        assert [(x["name"], x["version"]) for x in e["lock"]] == [("beamlib", "1.5")], e
        t = api.execute("alice", pinned["id"], {"F": 1.0}, wait=60)
        assert t["status"] == "completed" and t["result"]["beamlib"] == "1.5", t
        # A JSON entry whose sha256 is not the file's: refused as on an HTML page.
        refuses_the_wheel_with_a_wrong_hash(api, s.data_dir)
    finally:
        close_stack(s)


def test_yanked_files_of_an_html_index_are_skipped_unless_pinned(json_index, wheelhouses):  # noqa: F811
    """The same rule on a PEP 503 page, where a yanked file's link carries data-yanked."""
    a, _ = wheelhouses
    html_index = JsonIndex(json_index.pages, json_index.files, serve_json=False)
    s = harness.start_stack("envs-html", extra_args=["--package-index", html_index.url])
    try:
        api = s.api
        resolves_units_helper_from_the_index(api, a)  # beamlib<2: 1.0, not the yanked 1.5
        assert html_index.accepts and html_index.json_answers == 0
        pinned = api.create_function("alice", api.unique("yanked-html"), USES_BEAMLIB, requirements=["beamlib==1.5"])
        e = wait_env(api, pinned["environment"]["id"])
        assert e["status"] == "ready" and [(x["name"], x["version"]) for x in e["lock"]] == [("beamlib", "1.5")], e
    finally:
        close_stack(s)
        html_index.close()


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


# ---- layers on other nodes: a worker with its own data folder and no wheelhouse ----

@pytest.mark.slow
def test_a_worker_on_another_data_folder_runs_a_layer_it_never_built(wheelhouses):  # noqa: F811
    """Scale-out as in test_scaleout.py: the API server (no workers) builds, a `mecapy
    worker` with another data folder and no package source runs the call, sharing
    PostgreSQL, Redis and the object store (a folder both name with --blobs)."""
    a, b = wheelhouses
    harness.require_binary()
    svc = Path(tempfile.mkdtemp(prefix="layers-svc-"))
    svc.chmod(0o755)  # the postgres user must enter it
    (svc / "pg").mkdir()
    (svc / "redis").mkdir()
    pg = redis = stack = worker = root = None
    try:
        pg = harness.service("postgres", "start", svc / "pg", skip_if_unavailable=True)
        redis = harness.service("redis", "start", svc / "redis", skip_if_unavailable=True)
        root = Path(tempfile.mkdtemp(prefix="layers-scaleout-", dir=harness.tmp_root()))
        blobs = f"file:{root / 'objects'}"
        shared = ["--db", pg, "--queue", redis, "--blobs", blobs]
        stack = harness.start_stack("layers-scaleout", workers=0, admin_args=["--db", pg],
                                    extra_args=[*shared, "--wheelhouse", str(a), "--wheelhouse", str(b)])
        (root / "w1").mkdir()
        worker = harness.Worker(root / "w1", [*shared, "--workers", "1"], name="worker1")
        worker.start()
        api = stack.api
        fn = api.create_function("alice", api.unique("remote"), USES_HELPER, requirements=["units-helper==2.1"])
        env_id = fn["environment"]["id"]
        assert wait_env(api, env_id)["status"] == "ready"
        archive = root / "objects" / "environments" / f"{env_id}.tar"
        assert archive.is_file(), "the builder stored no archive of the layer"
        remote_layer = root / "w1" / "layers" / env_id
        assert not remote_layer.exists()
        t = api.execute("alice", fn["id"], {"F": 1000.0}, wait=120)
        assert t["status"] == "completed", t
        assert t["result"]["helper"] == "2.1" and t["result"]["beamlib"] == "1.0", t
        assert t["result"]["tip_mm"] == pytest.approx(1000.0 * 1000.0 * 2.0 ** 3 / (3 * 210e9 * 8e-6)), t
        assert t["result"]["where"].startswith("/layer/"), t
        # The worker unpacked it into its own layers folder, read-only as the builder's.
        assert (remote_layer / "units_helper" / "__init__.py").is_file()
        for dirpath, dirnames, filenames in os.walk(remote_layer):
            for n in [dirpath, *(os.path.join(dirpath, f) for f in dirnames + filenames)]:
                assert os.lstat(n).st_mode & 0o222 == 0, n
        # A second call finds it there.
        t = api.execute("alice", fn["id"], {"F": 2000.0}, wait=120)
        assert t["status"] == "completed" and t["result"]["helper"] == "2.1", t
        # A layer built with no archive stored (before layers were stored, or with the
        # object store down): the builder stores it when a call reaches it.
        old = api.create_function("alice", api.unique("older"), USES_BEAMLIB, requirements=["beamlib==2.0"])
        old_id = old["environment"]["id"]
        assert wait_env(api, old_id)["status"] == "ready"
        (root / "objects" / "environments" / f"{old_id}.tar").unlink()
        psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)
        assert psql, "psql is needed to change the store"
        r = subprocess.run([str(psql), pg, "-c", f"UPDATE environments SET archive_sha256 = NULL WHERE id = '{old_id}'"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        t = api.execute("alice", old["id"], {"F": 1.0}, wait=120)
        assert t["status"] == "completed" and t["result"]["beamlib"] == "2.0", t
        assert (root / "objects" / "environments" / f"{old_id}.tar").is_file()
        assert (root / "w1" / "layers" / old_id / "beamlib").is_dir()
    finally:
        if worker and worker.proc and worker.proc.poll() is None:
            worker.stop()
        if stack:
            close_stack(stack)
        if redis:
            harness.service("redis", "stop", svc / "redis")
        if pg:
            harness.service("postgres", "stop", svc / "pg")
        if root and not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            for dirpath, _, _ in os.walk(root):  # read-only layers: removable again
                os.chmod(dirpath, 0o700)
            shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(svc, ignore_errors=True)


def hostile_tar(kind: str) -> bytes:
    """A layer archive that must never be unpacked: an entry named out of the folder,
    an absolute name, a link pointing out of it, a device file."""
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        ok = tarfile.TarInfo("beamlib")
        ok.type, ok.mode = tarfile.DIRTYPE, 0o755
        t.addfile(ok)
        data = b"ESCAPED = True\n"
        if kind == "dotdot":
            e = tarfile.TarInfo("../../../escaped.py")
        elif kind == "absolute":
            e = tarfile.TarInfo(str(Path(tempfile.gettempdir()) / "mecapy-escaped.py"))
        elif kind == "link":
            e = tarfile.TarInfo("beamlib/up")
            e.type, e.linkname = tarfile.SYMTYPE, "../../../.."
            data = None
        elif kind == "link-through-link":
            # "s" is the layer itself; "s/.." counts as inside, but is its parent.
            here = tarfile.TarInfo("s")
            here.type, here.linkname = tarfile.SYMTYPE, "."
            t.addfile(here)
            e = tarfile.TarInfo("beamlib/up")
            e.type, e.linkname = tarfile.SYMTYPE, "../s/.."
            data = None
        else:
            e = tarfile.TarInfo("beamlib/null")
            e.type, e.devmajor, e.devminor = tarfile.CHRTYPE, 1, 3
            data = None
        if data is not None:
            e.size = len(data)
            t.addfile(e, io.BytesIO(data))
        else:
            t.addfile(e)
    return buf.getvalue()


def test_a_hostile_layer_archive_is_refused(wheelhouses):  # noqa: F811
    """An archive in the object store that is not what the builder wrote (its recorded
    sha256 changed to match, as by someone with write access to both) is refused entry
    by entry; a builder then builds the layer again from its lock."""
    import hashlib
    a, b = wheelhouses
    s = harness.start_stack("envs-hostile", extra_args=["--wheelhouse", str(a), "--wheelhouse", str(b)])
    try:
        if s.backends:
            pytest.skip("writes the archive in the file object store and its hash in the SQLite store")
        api = s.api
        fn = api.create_function("alice", api.unique("hostile"), USES_BEAMLIB, requirements=["beamlib==2.0"])
        env_id = fn["environment"]["id"]
        assert wait_env(api, env_id)["status"] == "ready"
        layers = s.data_dir / "layers"
        layer = layers / env_id
        archive = s.data_dir / "objects" / "environments" / f"{env_id}.tar"
        for kind in ("dotdot", "absolute", "link", "link-through-link", "device"):
            data = hostile_tar(kind)
            os.chmod(archive, 0o600)
            archive.write_bytes(data)
            db = sqlite3.connect(s.data_dir / "mecapy.db")
            with db:
                db.execute("UPDATE environments SET archive_sha256 = ? WHERE id = ?",
                           (hashlib.sha256(data).hexdigest(), env_id))
            db.close()
            for dirpath, _, _ in os.walk(layer):
                os.chmod(dirpath, 0o700)
            shutil.rmtree(layer)
            r = api.execute_raw("alice", fn["id"], {"F": 1.0})
            assert r.status_code == 409, (kind, r.status_code, r.text)
            assert not list(s.data_dir.rglob("escaped.py")), kind
            assert not (Path(tempfile.gettempdir()) / "mecapy-escaped.py").exists(), kind
            assert wait_env(api, env_id)["status"] == "ready", kind
            t = api.execute("alice", fn["id"], {"F": 1.0}, wait=60)
            assert t["status"] == "completed" and t["result"]["beamlib"] == "2.0", (kind, t)
            assert not (layer / "beamlib" / "null").exists() and not (layer / "beamlib" / "up").is_symlink(), kind
            assert not (layer / "s").is_symlink(), kind
            # Rebuilt, the builder stored a good archive again.
            assert sha256(archive) != hashlib.sha256(data).hexdigest(), kind
        log = s.server.log_path.read_text()
        for why in ("points outside the layer", "is not a file, a folder or a link"):
            assert why in log, why
    finally:
        close_stack(s)
