"""Structured logs (docs/operations.md#logs): `serve --log-format json` writes one JSON
object a line; a request id (the client's X-Request-Id when sane, else one of ours) is
echoed in the answer and reaches the lines the API, the worker and the executor write
about the task that request created, each of which carries the task id. The same across
processes: an API without workers and a standalone `mecapy worker` on PostgreSQL and
Redis."""
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import requests

import harness

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

FN = """\
def main(x: int) -> int:
    return x * 2
"""


def json_lines(path: Path) -> list[dict]:
    """Every line of a log written by mecapy, parsed; the harness's own "=====" marker
    lines excepted. A line that is not a JSON object fails the test."""
    out = []
    for line in path.read_text(errors="strict").splitlines():
        if not line.strip() or line.startswith("===== "):
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            pytest.fail(f"not a JSON line in {path.name}: {line!r}")
        assert isinstance(obj, dict), line
        assert {"time", "level", "msg", "pid"} <= set(obj), obj
        assert obj["level"] in ("debug", "info", "warn", "error"), obj
        assert harness.RFC3339_UTC.match(obj["time"]), obj
        out.append(obj)
    return out


def wait_for_lines(path: Path, pred, timeout: float = 60) -> list[dict]:
    """The parsed lines, once some line satisfies pred (logs are written as things
    happen: the worker's last line may follow the answer by a moment)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = json_lines(path)
        if any(pred(o) for o in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def call(api, fid: str, request_id: str | None) -> tuple[requests.Response, str]:
    headers = {"X-Request-Id": request_id} if request_id is not None else {}
    r = api.post("alice", f"/functions/{fid}/execute?wait=30", json={"inputs": {"x": 21}},
                 headers=headers)
    harness.expect_status(r, 200, 201)
    assert r.json()["result"] == 42, harness.describe(r)
    return r, r.json()["id"]


def trail_complete(rid: str, tid: str):
    """A predicate over all lines: the executor's line for the task and the API's access
    line are both written (the access line follows the answer: it is logged when MHD
    reports the request complete, which may be after the client read it)."""
    def pred_all(lines: list[dict]) -> bool:
        return any(o.get("task_id") == tid and o["msg"].startswith("exec: call") for o in lines) and \
            any(o.get("request_id") == rid and o["msg"].startswith("http: POST") for o in lines)
    return pred_all


def wait_for_trail(path: Path, rid: str, tid: str, timeout: float = 60) -> list[dict]:
    done = trail_complete(rid, tid)
    deadline = time.monotonic() + timeout
    while True:
        lines = json_lines(path)
        if done(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def check_trail(lines: list[dict], rid: str, tid: str) -> None:
    """The API's access line, the worker's and the executor's lines about the task: all
    with the request id, the worker's and the executor's with the task id too."""
    mine = [o for o in lines if o.get("request_id") == rid]
    api = [o for o in mine if o["msg"].startswith("http: POST /api/v1/functions/")]
    worker = [o for o in mine if o.get("task_id") == tid and o["msg"].startswith("task ")]
    executor = [o for o in mine if o.get("task_id") == tid and o["msg"].startswith("exec: call")]
    assert api, f"no API line with request id {rid}:\n" + "\n".join(map(json.dumps, lines[-30:]))
    assert worker, f"no worker line for task {tid} with request id {rid}:\n" + "\n".join(map(json.dumps, mine))
    assert executor, f"no executor line for task {tid} with request id {rid}:\n" + "\n".join(map(json.dumps, mine))
    # Every line about the task names it: none names the request without the task
    # except the API's own.
    for o in mine:
        assert o.get("task_id") == tid or o["msg"].startswith("http: "), o
    assert len({o["pid"] for o in worker + executor}) == 2, "the worker and the executor are two processes"


@pytest.fixture(scope="module")
def stack():
    s = harness.start_stack("logs", extra_args=["--log-format", "json", "--verbose"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def fid(stack):
    return stack.api.create_function("alice", stack.api.unique("double"), FN)["id"]


def test_a_given_request_id_is_echoed_and_follows_the_task(stack, fid):
    rid = "test-" + uuid.uuid4().hex
    r, tid = call(stack.api, fid, rid)
    assert r.headers["X-Request-Id"] == rid
    check_trail(wait_for_trail(stack.server.log_path, rid, tid), rid, tid)


def test_without_one_or_with_a_bad_one_the_server_makes_one(stack, fid):
    for given in (None, "bad id with spaces", "x" * 65, "é"):
        r, tid = call(stack.api, fid, given)
        rid = r.headers["X-Request-Id"]
        assert rid != given and UUID_RE.match(rid), (given, rid)
        check_trail(wait_for_trail(stack.server.log_path, rid, tid), rid, tid)


def worker_lines_for(path: Path, rid: str, tids: list[str]) -> list[dict]:
    """Once the executor wrote its line for each task: the worker's and the executor's
    lines about those tasks."""
    def pred_all(lines):
        return all(any(o.get("task_id") == t and o["msg"].startswith("exec: call") for o in lines) for t in tids)
    deadline = time.monotonic() + 60
    while True:
        lines = json_lines(path)
        if pred_all(lines) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return [o for o in lines if o.get("task_id") in tids]


def test_a_study_and_a_runs_tasks_carry_the_request_that_started_them(stack, fid):
    api = stack.api
    # a study of two points: its tasks start later, in the worker, each with the id
    rid = "study-" + uuid.uuid4().hex
    r = api.post("alice", "/studies", headers={"X-Request-Id": rid}, json={
        "target": {"function": fid}, "design": {"type": "list", "points": [{"x": 1}, {"x": 2}]},
        "outputs": ["result"], "concurrency": 1})
    harness.expect_status(r, 201)
    sid = r.json()["id"]
    assert "request_id" not in r.json(), r.json()
    deadline = time.monotonic() + 60
    while True:
        st = harness.expect_status(api.get("alice", f"/studies/{sid}", params={"wait": "5"}), 200).json()
        if st["status"] != "running" or time.monotonic() > deadline:
            break
    assert st["status"] == "completed", st
    pts = harness.expect_status(api.get("alice", f"/studies/{sid}/results"), 200).json()["items"]
    tids = [p["task_id"] for p in pts]
    assert len(tids) == 2 and all(tids), pts
    about = worker_lines_for(stack.server.log_path, rid, tids)
    for t in tids:
        mine = [o for o in about if o["task_id"] == t]
        assert any(o["msg"].startswith("exec: call") for o in mine), mine
        assert mine and all(o.get("request_id") == rid for o in mine), mine

    # a workflow run of two nodes: the second node's task is made after the first ends
    wf = harness.expect_status(api.post("alice", "/workflows", json={
        "name": api.unique("twice"),
        "nodes": [{"id": "a", "function": fid, "inputs": {"x": {"param": "x"}}},
                  {"id": "b", "function": fid, "inputs": {"x": {"from": "a"}}}],
        "outputs": {"y": {"from": "b"}}}), 201).json()
    rid = "run-" + uuid.uuid4().hex
    r = api.post("alice", f"/workflows/{wf['id']}/execute", params={"wait": "30"}, json={"inputs": {"x": 1}},
                 headers={"X-Request-Id": rid}, timeout=60)
    harness.expect_status(r, 200)
    run = r.json()
    assert run["status"] == "completed" and run["outputs"] == {"y": 4}, run
    tids = [n["task_id"] for n in run["nodes"]]
    about = worker_lines_for(stack.server.log_path, rid, tids)
    for t in tids:
        mine = [o for o in about if o["task_id"] == t]
        assert any(o["msg"].startswith("exec: call") for o in mine), mine
        assert mine and all(o.get("request_id") == rid for o in mine), mine


def test_every_answer_carries_one(stack):
    # A problem answer, an unknown route, and a public page: each has its id.
    for path in ("/api/v1/nope", "/healthz", "/api/v1/functions/" + "0" * 36):
        r = requests.get(stack.server.base + path, timeout=harness.HTTP_TIMEOUT_S)
        assert UUID_RE.match(r.headers.get("X-Request-Id", "")), (path, r.headers)


def test_every_line_is_json_even_for_odd_messages(stack):
    # A refused login writes nothing odd; a function whose name is full of quotes and
    # non-ASCII text reaches the log through the access line's URL.
    r = requests.get(stack.server.base + '/api/v1/fonctions/%22%5C%0A%C3%A9', timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 404
    lines = wait_for_lines(stack.server.log_path, lambda o: "fonctions" in o["msg"])
    assert any("fonctions" in o["msg"] for o in lines)


def test_text_is_still_the_default(tmp_path):
    harness.require_binary()
    r = harness.run_cli(["serve", "--log-format", "xml"], timeout=30)
    assert r.returncode == 2 and "--log-format takes text or json" in r.stderr, r.stderr


# --- across processes: API without workers, a standalone worker ---

@pytest.fixture(scope="module")
def scaleout():
    harness.require_binary()
    svc = Path(tempfile.mkdtemp(prefix="logs-svc-"))
    svc.chmod(0o755)
    (svc / "pg").mkdir()
    (svc / "redis").mkdir()
    pg = redis = stack = worker = None
    try:
        pg = harness.service("postgres", "start", svc / "pg", skip_if_unavailable=True)
        redis = harness.service("redis", "start", svc / "redis", skip_if_unavailable=True)
        backends = ["--db", pg, "--queue", redis, "--log-format", "json", "--verbose"]
        stack = harness.start_stack("logs-scaleout", workers=0, extra_args=backends,
                                    admin_args=["--db", pg])
        d = stack.root / "w1"
        d.mkdir()
        worker = harness.Worker(d, [*backends, "--workers", "1"], name="worker1")
        worker.READY_LINE = "MecaPy worker ready"
        worker.start()
        yield stack, worker
    finally:
        if worker:
            worker.kill9()
        if stack:
            stack.close()
        if redis:
            harness.service("redis", "stop", svc / "redis")
        if pg:
            harness.service("postgres", "stop", svc / "pg")
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)


@pytest.mark.slow
def test_the_request_id_crosses_to_a_standalone_worker(scaleout):
    stack, worker = scaleout
    fid = stack.api.create_function("alice", stack.api.unique("double"), FN)["id"]
    rid = "scaleout-" + uuid.uuid4().hex
    r, tid = call(stack.api, fid, rid)
    assert r.headers["X-Request-Id"] == rid
    api_lines = wait_for_lines(stack.server.log_path,
                               lambda o: o.get("request_id") == rid and o["msg"].startswith("http: POST"))
    assert any(o["msg"].startswith("http: POST") for o in api_lines if o.get("request_id") == rid)
    w_lines = wait_for_lines(worker.log_path,
                             lambda o: o.get("task_id") == tid and o["msg"].startswith("exec: call"))
    mine = [o for o in w_lines if o.get("request_id") == rid]
    assert any(o.get("task_id") == tid and o["msg"].startswith("task ") for o in mine), mine
    assert any(o.get("task_id") == tid and o["msg"].startswith("exec: call") for o in mine), mine
    assert all(o.get("task_id") == tid for o in mine), mine
