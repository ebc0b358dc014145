"""Per-function requirements (docs/functions.md#requirements): environments resolved
offline from the operator's wheelhouses into a hashed lock, built into read-only layers,
and used by the calls of the versions that declare them, in the real sandbox.

The wheels are built during the test from the small packages of tests/fixtures/packages
(`python3 -m pip wheel --no-deps --no-build-isolation`), into two wheelhouses given as
two --wheelhouse options: A holds beamlib 1.0, units-helper 2.1 (which needs beamlib<2)
and sdistonly as a source distribution only; B holds beamlib 2.0.

Run: MECAPY_BIN=build/mecapy python3 -m pytest -q tests/integration/test_environments.py
"""
import hashlib
import os
import shutil
import subprocess
import sqlite3
import tempfile
from pathlib import Path

import pytest

import harness
from harness import assert_problem, error_paths, expect_status

PY = "/usr/bin/python3"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "packages"

USES_HELPER = """\
import beamlib
import units_helper

def main(F: float) -> dict:
    return {"tip_mm": units_helper.tip_mm(F, 2.0, 210e9, 8e-6), "beamlib": beamlib.VERSION,
            "helper": units_helper.VERSION, "where": beamlib.__file__}
"""

USES_BEAMLIB = """\
import beamlib

def main(F: float) -> dict:
    f = getattr(beamlib, "tip_deflection", None) or beamlib.cantilever_tip
    return {"tip_m": f(F, 2.0, 210e9, 8e-6), "beamlib": beamlib.VERSION}
"""


def build_wheel(src: Path, out: Path, work: Path) -> None:
    # A copy: building in place would leave build/ and *.egg-info in the source tree.
    copy = work / src.name
    shutil.copytree(src, copy)
    r = subprocess.run([PY, "-m", "pip", "wheel", "--isolated", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "-q", "-w", str(out), str(copy)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"pip wheel {src.name}: {r.stdout}\n{r.stderr}"


def build_sdist(src: Path, out: Path, work: Path) -> None:
    copy = work / (src.name + "-sdist")
    shutil.copytree(src, copy)
    r = subprocess.run([PY, "-c", "import sys; from setuptools import build_meta as b; "
                        "print(b.build_sdist(sys.argv[1]))", str(out)],
                       cwd=copy, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"sdist {src.name}: {r.stdout}\n{r.stderr}"


@pytest.fixture(scope="module")
def wheelhouses():
    root = Path(tempfile.mkdtemp(prefix="wheelhouses-", dir=harness.tmp_root()))
    a, b, work = root / "a", root / "b", root / "work"
    for d in (a, b, work):
        d.mkdir()
    build_wheel(FIXTURES / "beamlib-1.0", a, work)
    build_wheel(FIXTURES / "units-helper-2.1", a, work)
    build_sdist(FIXTURES / "sdistonly-1.0", a, work)
    build_wheel(FIXTURES / "beamlib-2.0", b, work)
    yield a, b
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def env_stack(wheelhouses):
    a, b = wheelhouses
    s = harness.start_stack("envs", extra_args=["--wheelhouse", str(a), "--wheelhouse", str(b)])
    yield s
    for dirpath, _, _ in os.walk(s.data_dir / "layers"):  # read-only layers: removable again
        os.chmod(dirpath, 0o700)
    s.close()


@pytest.fixture
def api(env_stack):
    return env_stack.api


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def environment(api, env_id: str) -> dict:
    r = api.get("alice", f"/environments/{env_id}")
    expect_status(r, 200)
    return r.json()


def wait_env(api, env_id: str, timeout: float = 120) -> dict:
    """Poll until the environment is ready or failed (builds take seconds)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        e = environment(api, env_id)
        if e["status"] in ("ready", "failed"):
            return e
        if time.monotonic() > deadline:
            pytest.fail(f"environment {env_id} still {e['status']} after {timeout} s: {e}")
        time.sleep(0.2)


def tree(root: Path) -> dict:
    """Every file and folder of a layer: relative path -> (mode, content digest)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            digest = sha256(p) if p.is_file() and not p.is_symlink() else ""
            out[str(p.relative_to(root))] = (oct(st.st_mode), digest)
    return out


def test_a_function_imports_its_package_once_its_environment_is_ready(api, wheelhouses):
    a, _ = wheelhouses
    fn = api.create_function("alice", api.unique("helper"), USES_HELPER,
                             requirements=["units-helper==2.1"])
    env = fn["environment"]
    assert fn["requirements"] == ["units-helper==2.1"]
    assert len(env["id"]) == 64 and env["status"] in ("queued", "building"), fn
    # Not ready yet: the call is refused with the reason, not queued.
    r = api.execute_raw("alice", fn["id"], {"F": 1000.0})
    p = assert_problem(r, 409)
    assert p["type"] == "urn:mecapy:problem:EnvironmentNotReady", p
    assert p["environment"]["id"] == env["id"] and p["environment"]["status"] in ("queued", "building"), p
    # ?wait waits for the environment, then for the result.
    r = api.execute_raw("alice", fn["id"], {"F": 1000.0}, wait=120)
    expect_status(r, 200)
    t = r.json()
    assert t["status"] == "completed", t
    assert t["result"]["beamlib"] == "1.0" and t["result"]["helper"] == "2.1", t
    assert abs(t["result"]["tip_mm"] - 1000.0 * 1000.0 * 8.0 / (3 * 210e9 * 8e-6)) < 1e-9
    assert t["result"]["where"].startswith("/layer/"), t  # the layer, not the base image

    e = environment(api, env["id"])
    assert e["status"] == "ready" and e["error"] is None, e
    assert isinstance(e["build_ms"], int) and e["build_ms"] >= 0, e
    assert e["requirements"] == ["units-helper==2.1"]
    # The lock: every distribution (the dependency too), with the wheels' own hashes.
    assert e["lock"] == [
        {"name": "beamlib", "version": "1.0", "sha256": sha256(a / "beamlib-1.0-py3-none-any.whl")},
        {"name": "units-helper", "version": "2.1",
         "sha256": sha256(a / "units_helper-2.1-py3-none-any.whl")},
    ], e
    assert "Successfully installed" in e["log"], e
    assert str(a) not in e["log"], "the build log shows the host's wheelhouse folder"
    # The id is the sha256 of the canonical lock.
    import json
    canon = json.dumps(e["lock"], sort_keys=True, separators=(",", ":"))
    assert e["id"] == hashlib.sha256(canon.encode()).hexdigest()
    # The function object shows it too.
    r = api.get("alice", f"/functions/{fn['id']}")
    assert r.json()["environment"] == {"id": env["id"], "status": "ready"}
    # The build is counted on /metrics (ready builds, and their time).
    import re
    import requests
    text = requests.get(api.base + "/metrics", timeout=harness.HTTP_TIMEOUT_S).text
    m = re.search(r'^mecapy_environment_builds_total\{status="ready"\} (\d+)$', text, re.M)
    assert m and int(m.group(1)) >= 1, text[-2000:]
    m = re.search(r"^mecapy_environment_build_seconds_total (\S+)$", text, re.M)
    assert m and float(m.group(1)) > 0, text[-2000:]


def test_the_same_resolved_set_shares_one_environment(api):
    one = api.create_function("alice", api.unique("pinned"), USES_HELPER,
                              requirements=["units-helper==2.1"])
    # Other words, the same wheels: the same lock, the same environment (another user too).
    two = api.create_function("bob", api.unique("loose"), USES_HELPER,
                              requirements=["units-helper>=2", "beamlib<2"])
    assert one["environment"]["id"] == two["environment"]["id"]
    wait_env(api, one["environment"]["id"])
    t = api.execute("bob", two["id"], {"F": 10.0}, wait=60)
    assert t["status"] == "completed" and t["result"]["helper"] == "2.1", t


def test_two_versions_of_a_package_side_by_side(api):
    old = api.create_function("alice", api.unique("beam-one"), USES_BEAMLIB, requirements=["beamlib==1.0"])
    new = api.create_function("alice", api.unique("beam-two"), USES_BEAMLIB, requirements=["beamlib==2.0"])
    assert old["environment"]["id"] != new["environment"]["id"]
    assert wait_env(api, old["environment"]["id"])["status"] == "ready"
    assert wait_env(api, new["environment"]["id"])["status"] == "ready"
    for _ in range(2):  # interleaved, each in its own warm environment
        t1 = api.execute("alice", old["id"], {"F": 100.0})
        t2 = api.execute("alice", new["id"], {"F": 100.0})
        assert t1["status"] == "completed" and t1["result"]["beamlib"] == "1.0", t1
        assert t2["status"] == "completed" and t2["result"]["beamlib"] == "2.0", t2
        assert t1["result"]["tip_m"] == t2["result"]["tip_m"]
    # A function without requirements still sees none of them.
    bare = api.create_function("alice", api.unique("bare"), "def main() -> dict:\n"
                               "    import importlib.util\n"
                               "    return {'found': importlib.util.find_spec('beamlib') is not None}\n")
    assert bare["environment"] is None
    t = api.execute("alice", bare["id"], {})
    assert t["status"] == "completed" and t["result"] == {"found": False}, t


def failed_env(api, requirements: list[str]) -> dict:
    fn = api.create_function("alice", api.unique("broken"), USES_BEAMLIB, requirements=requirements)
    assert fn["environment"]["status"] == "failed", fn
    e = environment(api, fn["environment"]["id"])
    assert e["status"] == "failed" and e["lock"] == [] and e["log"], e
    # Its calls are refused with the reason; ?wait does not wait for a failed one.
    r = api.execute_raw("alice", fn["id"], {"F": 1.0}, wait=30)
    p = assert_problem(r, 409)
    assert p["type"] == "urn:mecapy:problem:EnvironmentNotReady", p
    assert p["environment"]["status"] == "failed" and "failed to build" in p["detail"], p
    return e


def test_a_missing_wheel_fails_the_build_naming_it(api):
    e = failed_env(api, ["nosuchpkg==1.0"])
    assert "Could not find a version that satisfies the requirement nosuchpkg==1.0" in e["error"], e
    assert "No matching distribution found for nosuchpkg==1.0" in e["error"], e


def test_an_sdist_only_package_is_never_built(api):
    e = failed_env(api, ["sdistonly"])
    assert "requirement sdistonly" in e["error"], e
    assert "source distribution is never built" in e["error"], e


def test_a_wheel_with_a_wrong_hash_fails_the_build(api, wheelhouses):
    a, _ = wheelhouses
    wrong = "0" * 64
    e = failed_env(api, [f"beamlib==1.0 --hash=sha256:{wrong}"])
    assert "DO NOT MATCH THE HASHES" in e["error"], e
    assert f"Expected sha256 {wrong}" in e["error"], e
    assert f"Got        {sha256(a / 'beamlib-1.0-py3-none-any.whl')}" in e["error"], e


def test_a_conflict_fails_the_build(api):
    e = failed_env(api, ["beamlib==2.0", "units-helper==2.1"])
    assert "conflict" in e["error"].lower(), e
    assert "beamlib==2.0" in e["error"] and "units-helper" in e["error"], e


def test_malformed_requirement_lines_are_refused_with_their_index(api):
    r = api.post("alice", "/functions", json={
        "name": api.unique("bad-reqs"), "code": USES_BEAMLIB,
        "requirements": ["beamlib @ https://example.test/b.whl", "-e .", "beamlib==1.0",
                         "beamlib; python_version < '3'", "../beamlib", "beamlib --index-url=x", 7]})
    p = assert_problem(r, 422)
    assert set(error_paths(p)) == {"requirements[0]", "requirements[1]", "requirements[3]",
                                   "requirements[4]", "requirements[5]", "requirements[6]"}, p


def test_a_layer_rebuilt_from_its_lock_is_byte_identical(api, env_stack):
    fn = api.create_function("alice", api.unique("rebuilt"), USES_HELPER, requirements=["units-helper==2.1"])
    env_id = fn["environment"]["id"]
    assert wait_env(api, env_id)["status"] == "ready"
    layer = env_stack.data_dir / "layers" / env_id
    before = tree(layer)
    assert "beamlib/__init__.py" in before and "units_helper/__init__.py" in before, before
    # Read-only: no file or folder of the layer is writable.
    assert all(int(mode, 8) & 0o222 == 0 for mode, _ in before.values()), before
    assert not any(p.endswith(".pyc") for p in before)
    # Gone from this node: the next call brings it back from its archive in the object
    # store, the same files and modes.
    aside = layer.parent / ".work" / ("aside-" + env_id)
    os.rename(layer, aside)
    t = api.execute("alice", fn["id"], {"F": 5.0}, wait=120)
    assert t["status"] == "completed", t
    assert tree(layer) == before
    archive = env_stack.data_dir / "objects" / "environments" / f"{env_id}.tar"
    if not env_stack.backends:
        # Gone from the object store too: the next call builds it again from the lock.
        assert archive.is_file()
        for dirpath, _, _ in os.walk(layer):
            os.chmod(dirpath, 0o700)
        shutil.rmtree(layer)
        archive.unlink()
        r = api.execute_raw("alice", fn["id"], {"F": 5.0})
        assert_problem(r, 409)
        t = api.execute("alice", fn["id"], {"F": 5.0}, wait=120)
        assert t["status"] == "completed", t
        assert environment(api, env_id)["status"] == "ready"
        assert tree(layer) == before
        assert archive.is_file()
    for dirpath, _, _ in os.walk(aside):
        os.chmod(dirpath, 0o700)
    shutil.rmtree(aside)


def test_admin_gc_removes_the_layers_no_function_uses(api, env_stack, wheelhouses):
    if env_stack.backends:
        pytest.skip("sets an environment's age in the SQLite store")
    a, b = wheelhouses
    keep = api.create_function("alice", api.unique("kept"), USES_BEAMLIB, requirements=["beamlib==2.0"])
    gone = api.create_function("alice", api.unique("dropped"), USES_BEAMLIB,
                               requirements=["beamlib==1.0", "units-helper==2.1"])
    assert keep["environment"]["id"] != gone["environment"]["id"]
    for f in (keep, gone):
        assert wait_env(api, f["environment"]["id"])["status"] == "ready"
    # Every function using that environment (the tests above made some) is deleted.
    dropped = gone["environment"]["id"]
    for user in ("alice", "bob"):
        fns = api.get(user, "/functions", params={"limit": 100}).json()["items"]
        for f in fns:
            if (f.get("environment") or {}).get("id") == dropped:
                expect_status(api.delete(user, f"/functions/{f['id']}"), 204, 403)
    layers = env_stack.data_dir / "layers"
    gc = ["admin", "gc", "--data-dir", str(env_stack.data_dir), "--wheelhouse", str(a), "--wheelhouse", str(b)]
    # Within the hour's grace nothing goes.
    r = harness.run_cli(gc, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (layers / gone["environment"]["id"]).is_dir()
    db = sqlite3.connect(env_stack.data_dir / "mecapy.db")
    with db:
        db.execute("UPDATE environments SET created_at = created_at - 7200000")
    db.close()
    r = harness.run_cli(gc, timeout=60)
    assert r.returncode == 0, r.stderr
    assert not (layers / gone["environment"]["id"]).exists(), r.stdout
    assert (layers / keep["environment"]["id"]).is_dir()
    # Their archives in the object store go with them.
    archives = env_stack.data_dir / "objects" / "environments"
    assert not (archives / f"{gone['environment']['id']}.tar").exists()
    assert (archives / f"{keep['environment']['id']}.tar").is_file()
    assert "removed the layers of" in r.stdout, r.stdout
    t = api.execute("alice", keep["id"], {"F": 1.0})
    assert t["status"] == "completed" and t["result"]["beamlib"] == "2.0", t


# ---- --package-index URL: a PEP 503 simple index the server fetches itself ----

@pytest.fixture(scope="module")
def index(wheelhouses):
    """A loopback index (python3 -m http.server over /simple/<name>/ pages linking the
    fixture wheels with #sha256= fragments): beamlib 1.0 and units-helper 2.1, and
    beamlib 2.0 linked with a hash that is not its own."""
    import time
    a, b = wheelhouses
    root = Path(tempfile.mkdtemp(prefix="index-", dir=harness.tmp_root()))
    files = root / "files"
    files.mkdir()
    links = {"beamlib": [], "units-helper": []}
    for w, project, good in ((a / "beamlib-1.0-py3-none-any.whl", "beamlib", True),
                             (b / "beamlib-2.0-py3-none-any.whl", "beamlib", False),
                             (a / "units_helper-2.1-py3-none-any.whl", "units-helper", True)):
        shutil.copy(w, files / w.name)
        digest = sha256(w) if good else "0" * 64
        links[project].append(f'<a href="../../files/{w.name}#sha256={digest}">{w.name}</a>')
    for project, anchors in links.items():
        page = root / "simple" / project
        page.mkdir(parents=True)
        (page / "index.html").write_text("<!DOCTYPE html><html><body>\n" + "<br>\n".join(anchors)
                                         + "\n</body></html>\n")
    port = harness.free_port()
    server = subprocess.Popen([PY, "-m", "http.server", "--bind", "127.0.0.1", str(port), "-d", str(root)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not harness.port_open(port):
        assert server.poll() is None and time.monotonic() < deadline, "the index server did not start"
        time.sleep(0.1)
    yield f"http://127.0.0.1:{port}/simple/"
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(root, ignore_errors=True)


def index_stack(label: str, args: list[str]):
    return harness.start_stack(label, extra_args=args)


def close_stack(s) -> None:
    for dirpath, _, _ in os.walk(s.data_dir / "layers"):
        os.chmod(dirpath, 0o700)
    s.close()


def resolves_units_helper_from_the_index(api, a: Path) -> None:
    """units-helper from its page, then its dependency beamlib<2 (1.0) from beamlib's
    page; a call uses both."""
    fn = api.create_function("alice", api.unique("indexed"), USES_HELPER, requirements=["units-helper==2.1"])
    e = wait_env(api, fn["environment"]["id"])
    assert e["status"] == "ready", e
    assert e["lock"] == [
        {"name": "beamlib", "version": "1.0", "sha256": sha256(a / "beamlib-1.0-py3-none-any.whl")},
        {"name": "units-helper", "version": "2.1",
         "sha256": sha256(a / "units_helper-2.1-py3-none-any.whl")},
    ], e
    t = api.execute("alice", fn["id"], {"F": 1000.0}, wait=60)
    assert t["status"] == "completed", t
    assert t["result"]["beamlib"] == "1.0" and t["result"]["helper"] == "2.1", t


def refuses_the_wheel_with_a_wrong_hash(api, data_dir: Path) -> None:
    """The index lists beamlib 2.0 with a sha256 that is not its bytes': never taken."""
    bad = api.create_function("alice", api.unique("bad-hash"), USES_BEAMLIB, requirements=["beamlib==2.0"])
    e = wait_env(api, bad["environment"]["id"])
    assert e["status"] == "failed", e
    assert "beamlib==2.0" in e["error"], e
    assert "beamlib-2.0-py3-none-any.whl: its sha256 is not the index's" in e["log"], e
    assert not list((data_dir / "layers" / ".wheels").glob("beamlib-2.0*")), "a wheel with a wrong hash was kept"


def test_requirements_resolve_from_a_package_index_alone(index, wheelhouses):
    a, _ = wheelhouses
    s = index_stack("envs-index", ["--package-index", index])
    try:
        resolves_units_helper_from_the_index(s.api, a)
        refuses_the_wheel_with_a_wrong_hash(s.api, s.data_dir)
    finally:
        close_stack(s)


def test_requirements_resolve_from_an_index_and_a_wheelhouse_together(index, wheelhouses, tmp_path):
    a, _ = wheelhouses
    only_beamlib = tmp_path / "wheelhouse"
    only_beamlib.mkdir()
    shutil.copy(a / "beamlib-1.0-py3-none-any.whl", only_beamlib)
    # The projects named are fetched first; beamlib, the dependency, is then found in the
    # wheelhouse, so its index page is never needed.
    s = index_stack("envs-both", ["--wheelhouse", str(only_beamlib), "--package-index", index])
    try:
        api = s.api
        fn = api.create_function("alice", api.unique("both"), USES_HELPER, requirements=["units-helper==2.1"])
        e = wait_env(api, fn["environment"]["id"])
        assert e["status"] == "ready", e
        assert [(x["name"], x["version"]) for x in e["lock"]] == [("beamlib", "1.0"), ("units-helper", "2.1")]
        # beamlib came from the wheelhouse (pip found it there), units-helper from the index.
        wheels = sorted(p.name for p in (s.data_dir / "layers" / ".wheels").iterdir())
        assert wheels == ["units_helper-2.1-py3-none-any.whl"], wheels
        t = api.execute("alice", fn["id"], {"F": 2.0}, wait=60)
        assert t["status"] == "completed" and t["result"]["helper"] == "2.1", t
    finally:
        close_stack(s)


def test_a_package_index_must_be_an_http_url():
    r = harness.run_cli(["serve", "--package-index", "file:///etc", "--port", "1"], timeout=30)
    assert r.returncode != 0
    assert "--package-index file:///etc is not an http:// or https:// URL" in r.stderr, r.stderr


def pool_metric(api, name: str) -> float | None:
    import re
    import requests
    text = requests.get(api.base + "/metrics", timeout=harness.HTTP_TIMEOUT_S).text
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def test_an_idle_environments_zygote_retires_and_comes_back(wheelhouses):
    # An environment's zygote that no call used for the idle time (--instance-idle)
    # retires with its spares; the next call of the environment starts it again. The
    # base environment's zygote stays.
    import time
    a, _ = wheelhouses
    s = harness.start_stack("envs-idle", extra_args=["--wheelhouse", str(a), "--instance-idle", "2"])
    try:
        api = s.api
        fn = api.create_function("alice", api.unique("idle-env"), USES_HELPER, requirements=["units-helper==2.1"])
        assert wait_env(api, fn["environment"]["id"])["status"] == "ready"
        t = api.execute("alice", fn["id"], {"F": 1000.0}, wait=60)
        assert t["status"] == "completed" and t["result"]["helper"] == "2.1", t
        assert pool_metric(api, "mecapy_pool_zygotes") == 2  # the base one and the environment's
        assert pool_metric(api, "mecapy_pool_zygotes_retired_total") == 0
        deadline = time.monotonic() + 60
        while pool_metric(api, "mecapy_pool_zygotes_retired_total") != 1:
            assert time.monotonic() < deadline, "the idle environment's zygote never retired"
            time.sleep(0.25)
        assert pool_metric(api, "mecapy_pool_zygotes") == 1
        # Transparent: the next call starts the zygote again and gets the same answer.
        again = api.execute("alice", fn["id"], {"F": 1000.0}, wait=60)
        assert again["status"] == "completed", again
        assert again["result"] == t["result"], (again["result"], t["result"])
        assert pool_metric(api, "mecapy_pool_zygotes") == 2
        # The base environment's zygote never retires, however long it is idle.
        bare = api.create_function("alice", api.unique("idle-base"), "def main() -> int:\n    return 7\n")
        assert api.execute("alice", bare["id"], {}, wait=60)["result"] == 7
        deadline = time.monotonic() + 60
        while pool_metric(api, "mecapy_pool_zygotes_retired_total") != 2:
            assert time.monotonic() < deadline, "the idle environment's zygote never retired (again)"
            time.sleep(0.25)
        time.sleep(2.5)  # past the idle time of the base one's last call too
        assert pool_metric(api, "mecapy_pool_zygotes") == 1
        assert pool_metric(api, "mecapy_pool_zygotes_retired_total") == 2
    finally:
        close_stack(s)
