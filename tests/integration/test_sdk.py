"""The Python SDK (sdk/python, package `mecapy`) against a real server.

The SDK is installed the way a user installs it, `pip install ./sdk/python`, into a
temporary virtual environment (offline: --no-index --no-build-isolation, with the Debian
packages visible for setuptools and pandas), and imported from there: these tests prove
it installs, and exercise the installed copy, not the source tree.
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

import harness

SDK_DIR = harness.REPO / "sdk" / "python"
_VENV_LOCK = threading.Lock()
_VENV: dict = {}


def sdk_venv() -> Path:
    """A virtual environment with the SDK pip-installed in it (made once per run);
    returns its folder. Its `bin/python` runs user scripts (the tutorials)."""
    with _VENV_LOCK:
        if "dir" in _VENV:
            return _VENV["dir"]
        root = Path(harness.tmp_root()) / f"sdk-venv-{uuid.uuid4().hex[:8]}"
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(root)],
                       check=True, capture_output=True, timeout=120)
        # From a copy: setuptools writes build/ and *.egg-info next to the sources.
        src = root / "src"
        shutil.copytree(SDK_DIR, src, ignore=shutil.ignore_patterns(
            "build", "*.egg-info", "__pycache__", ".mypy_cache"))
        r = subprocess.run([str(root / "bin" / "python"), "-m", "pip", "install", "-q",
                            "--no-index", "--no-build-isolation", str(src)],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
        assert r.returncode == 0, f"pip install ./sdk/python failed:\n{r.stdout}\n{r.stderr}"
        _VENV["dir"] = root
        if os.environ.get("MECAPY_KEEP_TEST_DATA") is None:
            # One environment for the whole run (this module and the tutorials').
            atexit.register(shutil.rmtree, root, ignore_errors=True)
        return root


def _site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


@pytest.fixture(scope="module")
def mecapy():
    """The installed SDK, imported from the venv (not from the source tree)."""
    venv = sdk_venv()
    site = _site_packages(venv)
    sys.path.insert(0, str(site))
    for k in [k for k in sys.modules if k == "mecapy" or k.startswith("mecapy.")]:
        del sys.modules[k]
    import mecapy as m
    assert Path(m.__file__).resolve().is_relative_to(site.resolve()), m.__file__
    yield m
    sys.path.remove(str(site))


@pytest.fixture(scope="module")
def client(mecapy, stack):
    alice = stack.api.users["alice"]
    return mecapy.Client(stack.server.base, token=alice.token)


CANTILEVER = '''
def main(F: float, L: float, E: float = 210e9, I: float = 8.33e-6) -> dict:
    """Tip deflection of a cantilever beam under an end load."""
    print(f"F={F} L={L}")
    d = F * L ** 3 / (3 * E * I)
    return {"deflection_mm": d * 1000, "moment_max": F * L}
'''

FAILING = '''
def check(x):
    if x < 0:
        raise ValueError(f"x must be positive, got {x}")
    return x

def main(x: float) -> float:
    return check(x)
'''

FILES = '''
from pathlib import Path

def main(n: int) -> dict:
    Path("outputs/report.txt").write_text("n = %d\\n" % n)
    Path("outputs/table.csv").write_text("i,sq\\n" + "".join(f"{i},{i*i}\\n" for i in range(n)))
    return n
'''

SLOW = '''
import time

def main(seconds: float) -> str:
    time.sleep(seconds)
    return "slept"
'''


def deflection_mm(F, L, E=210e9, I=8.33e-6):
    return F * L ** 3 / (3 * E * I) * 1000


@pytest.fixture(scope="module")
def beam(client, tmp_path_factory):
    name = harness.Api.unique("sdk-cantilever")
    path = tmp_path_factory.mktemp("sdk") / f"{name}.py"
    path.write_text(CANTILEVER)
    fn = client.functions.push(path)
    assert fn.name == name
    return client.function(name)


def test_installed_copy_is_typed(mecapy):
    """pip installed the package with its py.typed marker (PEP 561)."""
    assert (Path(mecapy.__file__).parent / "py.typed").is_file()
    assert mecapy.progress(0.5, "outside a sandbox it does nothing") is None
    assert abs(mecapy.check("bending stress", 182e6, 235e6, "Pa") - 182e6 / 235e6) < 1e-15
    with pytest.raises(TypeError):
        mecapy.check("", 1, 2)


def test_push_call_and_new_version(client, mecapy, tmp_path):
    name = harness.Api.unique("sdk-push")
    path = tmp_path / f"{name}.py"
    path.write_text(CANTILEVER)
    fn = client.functions.push(path)
    assert fn.name == name and fn.data["version"] == 1
    assert fn.parameters == ["F", "L", "E", "I"]
    f = client.function(name)
    assert f(F=1000, L=2)["deflection_mm"] == pytest.approx(deflection_mm(1000, 2))
    assert f({"F": 1000}, L=3)["moment_max"] == pytest.approx(3000)  # mapping + keywords
    # Pushing the same file again is a new version of the same function, not a new one.
    path.write_text(CANTILEVER.replace("E: float = 210e9", "E: float = 200e9"))
    fn2 = client.functions.push(path)
    assert fn2.id == fn.id and fn2.data["version"] == 2
    assert f(F=1000, L=2)["deflection_mm"] == pytest.approx(deflection_mm(1000, 2, E=200e9))
    assert [v["version"] for v in fn2.versions()] == [2, 1]
    assert client.function(name, version=1)(F=1000, L=2)["deflection_mm"] == \
        pytest.approx(deflection_mm(1000, 2))
    assert any(x.id == fn.id for x in client.functions.list(name=name))
    assert repr(client.functions.get(name)) == f"<Function {name} v2 (F, L, E, I)>"
    client.functions.delete(name)
    with pytest.raises(mecapy.NotFound):
        client.functions.get(name)


def test_submit_wait_logs_and_repr(client, beam):
    task = beam.submit(F=500, L=1.5)
    assert task.status in {"queued", "running", "completed"}
    assert task.wait(timeout=60) is task and task.status == "completed"
    assert task.result()["deflection_mm"] == pytest.approx(deflection_mm(500, 1.5))
    assert task.inputs == {"F": 500, "L": 1.5}
    assert "F=500 L=1.5" in task.logs()
    assert repr(task) == f"<Task {task.id[:8]} completed>"
    again = client.task(task.id)
    assert again.result() == task.result()
    assert task.progress is None  # this function never reported progress


def test_task_failed_carries_the_users_error(client, mecapy, tmp_path):
    path = tmp_path / f"{harness.Api.unique('sdk-fail')}.py"
    path.write_text(FAILING)
    fn = client.functions.push(path)
    with pytest.raises(mecapy.TaskFailed) as ei:
        fn(x=-2)
    e = ei.value
    assert e.status == "failed"
    assert e.error_type == "ValueError"
    assert e.message == "x must be positive, got -2.0" or e.message == "x must be positive, got -2"
    assert "in check" in e.traceback and "raise ValueError" in e.traceback
    assert e.task.status == "failed" and e.limit is None
    assert "ValueError: x must be positive" in str(e)
    assert fn(x=3) == 3


def test_validation_error_names_the_field(client, mecapy, beam):
    with pytest.raises(mecapy.ValidationError) as ei:
        beam(F="heavy", L=2)
    e = ei.value
    assert e.status == 422 and e.code == "validation"
    assert "inputs.F" in e.fields
    assert any(x.path == "inputs.F" and x.message for x in e.errors)
    with pytest.raises(mecapy.ValidationError) as ei:
        beam(F=1)
    assert "inputs.L" in ei.value.fields
    # Refused code: the problem's field is `code`, with the line.
    with pytest.raises(mecapy.ValidationError) as ei:
        client.functions.push("broken.py", code="def main(x: float)\n    return x\n")
    assert ei.value.fields == ["code"] and ei.value.errors[0].line == 1


def test_not_found_and_unauthorized(client, mecapy, stack):
    with pytest.raises(mecapy.NotFound):
        client.function(harness.Api.unique("no-such-function"))(x=1)
    with pytest.raises(mecapy.NotFound):
        client.task(str(uuid.uuid4()))
    with pytest.raises(mecapy.NotFound):
        client.study(str(uuid.uuid4()))
    bad = mecapy.Client(stack.server.base, token="mpy_not-a-real-token")
    with pytest.raises(mecapy.Unauthorized) as ei:
        bad.me()
    assert ei.value.status == 401 and ei.value.detail


def test_another_users_function_is_not_found(stack, mecapy, client, beam):
    carol = mecapy.Client(stack.server.base, token=stack.api.users["carol"].token)
    with pytest.raises(mecapy.NotFound):
        carol.function(beam.id)(F=1, L=1)


def test_list_pages_across_cursors(client, tmp_path):
    path = tmp_path / f"{harness.Api.unique('sdk-page')}.py"
    path.write_text("def main(i: int) -> int:\n    return i * i\n")
    fn = client.functions.push(path)
    made = [fn.submit(i=i) for i in range(7)]
    for t in made:
        t.wait(60)
    listed = list(client.tasks.list(function=fn.id, page_size=3))  # 3 pages
    assert [t.id for t in listed] == [t.id for t in reversed(made)]  # newest first
    assert {t.status for t in listed} == {"completed"}
    assert len(list(client.tasks.list(function=fn.id, page_size=2, limit=5))) == 5
    # A summary loads the whole task on demand.
    assert sorted(t.result() for t in listed) == sorted(i * i for i in range(7))


def test_artifacts_list_and_download(client, tmp_path):
    path = tmp_path / f"{harness.Api.unique('sdk-files')}.py"
    path.write_text(FILES)
    fn = client.functions.push(path)
    task = fn.submit(n=4)
    task.wait(60)
    arts = {a.name: a for a in task.artifacts}
    assert set(arts) == {"report.txt", "table.csv"}
    assert arts["report.txt"].read() == b"n = 4\n"
    dest = arts["table.csv"].download(tmp_path)
    assert Path(dest) == tmp_path / "table.csv"
    assert Path(dest).read_text() == "i,sq\n0,0\n1,1\n2,4\n3,9\n"
    assert arts["table.csv"].size == len("i,sq\n0,0\n1,1\n2,4\n3,9\n")


def test_cancel_a_running_call(client, mecapy, tmp_path):
    path = tmp_path / f"{harness.Api.unique('sdk-slow')}.py"
    path.write_text(SLOW)
    fn = client.functions.push(path, limits={"timeout_s": 120})
    task = fn.submit(seconds=60)
    for _ in range(200):
        if task.refresh().status == "running":
            break
        time.sleep(0.05)
    assert task.cancel().status == "cancelled"
    with pytest.raises(mecapy.TaskFailed) as ei:
        task.result(timeout=10)
    assert ei.value.status == "cancelled" and ei.value.error_type == "Cancelled"
    with pytest.raises(mecapy.Conflict):
        task.cancel()
    # A wait that runs out raises WaitTimeout, and the task goes on.
    t2 = fn.submit(seconds=30)
    with pytest.raises(mecapy.WaitTimeout) as ei2:
        t2.wait(timeout=1)
    assert ei2.value.id == t2.id and isinstance(ei2.value, TimeoutError)
    t2.cancel()


def test_event_stream(client, beam):
    task = beam.submit(F=100, L=1)
    events = list(task.events(timeout=60))
    kinds = [e.event for e in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert "F=100 L=1" in "".join(e.data for e in events if e.event == "log")
    assert task.done and task.result()["moment_max"] == pytest.approx(100)


PROGRESS = '''
import time
from mecapy import progress

def main(n: int) -> int:
    for i in range(n):
        time.sleep(0.3)
        progress((i + 1) / n, f"step {i + 1} of {n}")
    return n
'''


def test_progress_reported_by_a_function(client, mecapy, tmp_path):
    """A function's progress() reaches the task (the sandbox's own mecapy module)."""
    path = tmp_path / f"{harness.Api.unique('sdk-progress')}.py"
    path.write_text(PROGRESS)
    fn = client.functions.push(path)
    task = fn.submit(n=4)
    kinds = [e.event for e in task.events(timeout=60)]
    if task.status == "failed" and "mecapy" in str(task.error.get("message")):
        pytest.skip(f"this server's sandbox has no mecapy module: {task.error}")
    assert task.result() == 4
    assert "progress" in kinds, kinds
    p = task.refresh().progress
    assert p is not None and 0 < p.fraction <= 1 and p.message.startswith("step "), p


def test_one_client_many_threads(client, beam):
    out: dict = {}
    errors: list = []

    def work(k: int) -> None:
        try:
            for j in range(4):
                F = 100 * k + j
                out[(k, j)] = beam(F=F, L=2)["moment_max"]
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert out == {(k, j): pytest.approx((100 * k + j) * 2) for k in range(8) for j in range(4)}


def test_tokens_and_scopes(client, mecapy, stack, beam):
    made = client.tokens.create("sdk-read-only", scopes=["functions:read"])
    assert made["token"].startswith("mpy_")
    ro = mecapy.Client(stack.server.base, token=made["token"])
    assert any(f.id == beam.id for f in ro.functions.list())
    with pytest.raises(mecapy.Forbidden) as ei:
        ro.function(beam.id)(F=1, L=1)
    assert ei.value.code == "insufficient_scope"
    assert any(t["id"] == made["id"] for t in client.tokens.list())
    client.tokens.delete(made["id"])
    with pytest.raises(mecapy.Unauthorized):
        ro.me()


def test_client_from_the_cli_login(stack, mecapy, tmp_path, monkeypatch):
    alice = stack.api.users["alice"]
    r = stack.cli("login", "--url", stack.server.base, "--email", alice.email,
                  "--password-stdin", config_dir=tmp_path, input=alice.password + "\n")
    assert r.returncode == 0, r.stderr
    monkeypatch.delenv("MECAPY_URL", raising=False)
    monkeypatch.delenv("MECAPY_TOKEN", raising=False)
    monkeypatch.setenv("MECAPY_CONFIG_DIR", str(tmp_path))
    c = mecapy.Client.from_cli()
    assert c.url == stack.server.base and c.me()["email"] == alice.email
    assert mecapy.Client().me()["email"] == alice.email
    # The saved token is never sent to another server.
    assert mecapy.Client("http://127.0.0.1:1").token is None
    assert repr(c) == f"<mecapy.Client {stack.server.base} with a token>"


def test_login_with_a_password(stack, mecapy):
    alice = stack.api.users["alice"]
    c = mecapy.Client.login(stack.server.base, alice.email, alice.password)
    assert c.me()["email"] == alice.email
    with pytest.raises(mecapy.Unauthorized):
        mecapy.Client.login(stack.server.base, alice.email, "wrong-password-123")


# ---------------------------------------------------------------------------- rate limits

RATE_USERS = [harness.User("rita", "rita@acme.test", "rita-pass-1234", "acme")]


def drain(client) -> None:
    """Spend the caller's request bucket: requests until one is refused with 429."""
    for _ in range(200):
        try:
            client.me()
        except Exception as e:  # noqa: BLE001 - RateLimited of the installed copy
            assert type(e).__name__ == "RateLimited", repr(e)
            return
    raise AssertionError("200 requests and no 429: is the rate limit on?")


def test_rate_limited_is_retried_after_retry_after(mecapy, caplog):
    s = harness.start_stack("sdk-rate", users=RATE_USERS, extra_args=["--rate-limit", "30"])
    try:
        base, token = s.server.base, s.api.users["rita"].token
        impatient = mecapy.Client(base, token=token, max_retries=0)
        # Spend the bucket (a minute's worth: 30 requests).
        with pytest.raises(mecapy.RateLimited) as ei:
            for _ in range(100):
                impatient.me()
        assert ei.value.status == 429 and ei.value.retry_after and ei.value.retry_after >= 1
        # A client with retries waits Retry-After and gets the answer. (The bucket is
        # emptied right before; should a token come back in that instant, try again.)
        patient = mecapy.Client(base, token=token, max_retries=5)
        hasty = mecapy.Client(base, token=token, max_retry_wait=0.001)
        retried = refused_at_once = False
        for _ in range(3):
            drain(impatient)
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="mecapy"):
                assert patient.me()["email"] == "rita@acme.test"
            retried = any("answered 429; retrying in" in r.getMessage() for r in caplog.records)
            if retried:
                break
        assert retried, "the first request was refused with 429 and sent again after Retry-After"
        # A Retry-After longer than max_retry_wait is raised at once.
        for _ in range(3):
            drain(impatient)
            try:
                hasty.me()
            except mecapy.RateLimited:
                refused_at_once = True
                break
        assert refused_at_once
    finally:
        s.close()


# ---------------------------------------------------------------------------- workflows

BEAM_FN = "def main(F: float, L: float) -> dict:\n    return {'moment_max': F * L, 'shear': F}\n"
STRESS_FN = "def main(M: float, W: float) -> dict:\n    return {'sigma': M / W}\n"
SAFETY_FN = ("def main(sigma: float, yield_strength: float) -> dict:\n"
             "    return {'safety_factor': yield_strength / sigma,\n"
             "            'ok': yield_strength / sigma >= 1.5}\n")


def test_workflow_push_call_retry_cancel(client, mecapy, tmp_path):
    sfx = uuid.uuid4().hex[:6]
    names = {}
    for key, code in (("beam", BEAM_FN), ("stress", STRESS_FN), ("safety", SAFETY_FN)):
        names[key] = f"sdk-{key}-{sfx}"
        client.functions.push(f"{names[key]}.py", code=code)
    definition = {
        "name": f"sdk-beam-check-{sfx}",
        "nodes": [
            {"id": "beam", "function": names["beam"],
             "inputs": {"F": {"param": "F"}, "L": {"param": "L"}}},
            {"id": "stress", "function": names["stress"],
             "inputs": {"M": {"from": "beam", "path": "moment_max"}, "W": 1.2e-4}},
            {"id": "safety", "function": names["safety"],
             "inputs": {"sigma": {"from": "stress", "path": "sigma"},
                        "yield_strength": {"param": "fy"}}}],
        "outputs": {"sigma": {"from": "stress", "path": "sigma"},
                    "safety_factor": {"from": "safety", "path": "safety_factor"}}}
    wf = client.workflows.push(definition)
    assert wf.data["version"] == 1
    check = client.workflow(definition["name"])
    out = check(F=1000, L=2, fy=235e6)
    assert out["sigma"] == pytest.approx(2000 / 1.2e-4)
    assert out["safety_factor"] == pytest.approx(235e6 / (2000 / 1.2e-4))
    # Saving it again (from a file) is a new version.
    f = tmp_path / "flow.json"
    import json
    f.write_text(json.dumps({**definition, "description": "v2"}))
    assert client.workflows.push(f).data["version"] == 2
    # A bad definition: every problem at its field path.
    with pytest.raises(mecapy.ValidationError) as ei:
        client.workflows.push({**definition, "name": f"sdk-bad-{sfx}",
                               "outputs": {"x": {"from": "nowhere"}}})
    assert ei.value.fields == ["outputs.x.from"]
    # A failing node (F = 0: sigma 0, the safety factor divides by zero): RunFailed;
    # retry runs the failed node again, not the completed ones.
    with pytest.raises(mecapy.RunFailed) as ei2:
        check(F=0, L=2, fy=235e6)
    run = ei2.value.run
    assert run.status == "failed"
    done_before = {n["id"]: n["task_id"] for n in run.nodes if n["status"] == "completed"}
    assert set(done_before) == {"beam", "stress"}
    again = run.retry().wait(60)
    assert again.id == run.id and again.status == "failed"
    assert {n["id"]: n["task_id"] for n in again.nodes
            if n["status"] == "completed"} == done_before
    failed = again.node_task("safety")
    assert failed is not None and failed.error["type"] == "ZeroDivisionError"
    assert any(r.id == run.id for r in check.runs())
    # Cancel a running run.
    client.functions.push(f"{names['beam']}.py", code=SLOW.replace(
        "def main(seconds: float) -> str:", "def main(F: float, L: float) -> dict:").replace(
        "time.sleep(seconds)\n    return \"slept\"", "time.sleep(60)\n    return {}"))
    client.workflows.push({"name": f"sdk-slow-{sfx}", "nodes": [
        {"id": "beam", "function": names["beam"],
         "inputs": {"F": {"param": "F"}, "L": {"param": "L"}}}]})
    slow = client.workflow(f"sdk-slow-{sfx}").submit(F=1, L=1)
    assert slow.cancel().status == "cancelled"
    with pytest.raises(mecapy.RunFailed):
        slow.outputs(timeout=60)
    with pytest.raises(mecapy.Conflict):
        slow.cancel()


# ---------------------------------------------------------------------------- studies

def test_study_to_pandas_and_csv(client, mecapy, beam, tmp_path):
    pd = pytest.importorskip("pandas")
    study = client.studies.create(
        function=beam.name, name="sdk-grid",
        design={"type": "grid", "params": {"L": [1, 2, 3], "F": [100, 200]}},
        outputs=["result.deflection_mm", "result.moment_max"], concurrency=4)
    assert study.progress["total"] == 6
    assert study.wait(120).status == "completed"
    assert study.progress["completed"] == 6
    rows = list(study.results())
    assert [r["index"] for r in rows] == list(range(6))
    df = study.results().to_pandas()
    assert isinstance(df, pd.DataFrame) and len(df) == 6
    assert list(df.columns) == ["L", "F", "result.deflection_mm", "result.moment_max",
                                "status", "error"]
    for i, (L, F) in enumerate([(1, 100), (1, 200), (2, 100), (2, 200), (3, 100), (3, 200)]):
        assert df.loc[i, "L"] == L and df.loc[i, "F"] == F
        assert df.loc[i, "result.deflection_mm"] == pytest.approx(deflection_mm(F, L))
        assert df.loc[i, "status"] == "completed"
    csv_path = study.results().to_csv(tmp_path / "grid.csv")
    back = pd.read_csv(csv_path)
    assert len(back) == 6
    assert back["result.moment_max"].tolist() == pytest.approx([100, 200, 200, 400, 300, 600])
    assert any(s.id == study.id for s in client.studies.list(name="sdk-grid"))
    assert repr(study) == f"<Study {study.id[:8]} 'sdk-grid' completed 6/6>"
    with pytest.raises(mecapy.ValidationError) as ei:
        client.studies.create(function=beam.name, design={"type": "list", "points": [
            {"L": 1, "F": 1}, {"L": "long", "F": 1}]})
    assert any(p.startswith("points[1]") for p in ei.value.fields), ei.value.fields


# ---------------------------------------------------------------------------- reference

def test_reference_is_up_to_date():
    """docs/sdk-reference.md is what scripts/sdk-reference.py makes of the docstrings."""
    r = subprocess.run(["/usr/bin/python3", str(harness.REPO / "scripts" / "sdk-reference.py"),
                        "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_problem_types_map_to_exceptions(mecapy):
    """The quota problem (the shape pinned for the quotas part: "quota", "limit",
    "resets_at") is a QuotaExceeded, and also a RateLimited when it is a 429, so that
    it is retried after Retry-After like any 429. (No server here: the quotas are
    another part's; the other statuses are met against a real server above.)"""
    from mecapy.errors import error_from_problem
    p = {"type": "urn:mecapy:problem:quota_exceeded", "title": "Too Many Requests",
         "status": 429, "detail": "over concurrent_calls", "quota": "concurrent_calls",
         "limit": 4, "resets_at": None}
    e = error_from_problem(429, p, 2.0)
    assert isinstance(e, mecapy.QuotaExceeded) and isinstance(e, mecapy.RateLimited)
    assert (e.quota, e.limit, e.retry_after) == ("concurrent_calls", 4, 2.0)
    e = error_from_problem(403, {**p, "status": 403, "quota": "calls_per_day",
                                 "resets_at": "2026-01-02T00:00:00Z"})
    assert isinstance(e, mecapy.QuotaExceeded) and not isinstance(e, mecapy.RateLimited)
    assert e.resets_at == "2026-01-02T00:00:00Z"
    assert type(error_from_problem(502, {})) is mecapy.ServerError
    assert type(error_from_problem(418, {})) is mecapy.APIError
