"""Faults of the shared backends under load, with nothing lost: an API server without
workers (`serve --workers 0`) and two `mecapy worker` processes on PostgreSQL, Redis and
S3 (s3rver), all started here on loopback by tests/services/*.sh, which these tests stop
and start again on the same port and data.

- PostgreSQL stopped for a few seconds: every request meanwhile answers 503 with a
  Retry-After header (problem+json), never 500 nor a hang; once it is back, every task
  accepted before completes with its right result.
- S3 stopped for longer than its own retries: the calls that ran meanwhile keep their
  results (the worker holds them and records them again), and complete with the results
  readable once S3 is back.
- The store refusing to read function versions (the application role's SELECT on
  function_versions revoked for a few seconds, then granted again): the workers that
  claim a job meanwhile give it back instead of failing its task ("FunctionGone" was a
  lie: the version exists), and every task completes once the grant is back.
- Redis restarted (empty: the test servers keep no data) while calls run and wait: the
  jobs it lost are taken again from the store, and every task completes.

Each test counts the accepted tasks and the completed ones and asserts they match, and
counts the function's tasks by status: all completed, none failed, running or queued.
The servers connect as an application role (mecapy_app, owner of its database), so the
tests can revoke its privileges as the superuser.
Skipped (with the reason) when PostgreSQL, Redis or s3rver cannot be started here.
"""
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

import harness

WORKER_TTL_S = 2
S3_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}
OUTAGE_HTTP_TIMEOUT_S = 20  # a request during an outage must answer within this

pytestmark = [pytest.mark.slow]


APP_ROLE = "mecapy_app"


def psql(url: str, sql: str) -> None:
    r = subprocess.run(["psql", url, "-v", "ON_ERROR_STOP=1", "-qc", sql], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, f"psql {sql!r}: {r.stderr}"


class Faults:
    def __init__(self, svc: Path):
        self.svc = svc
        self.urls: dict[str, str] = {}
        self.app_db = ""    # the servers' database URL, as APP_ROLE
        self.admin_db = ""  # the same database as the superuser
        self.stack = None
        self.workers: list[harness.Worker] = []

    @property
    def backends(self) -> list[str]:
        return ["--db", self.app_db, "--queue", f"{self.urls['redis']}?worker_ttl={WORKER_TTL_S}",
                "--blobs", self.urls["s3"]]

    def add_worker(self, root: Path) -> harness.Worker:
        d = root / f"w{len(self.workers) + 1}"
        d.mkdir()
        w = harness.Worker(d, [*self.backends, "--workers", "2", "--grace", "20"], env=S3_ENV,
                           name=f"worker{len(self.workers) + 1}")
        w.start()
        self.workers.append(w)
        return w

    def stop(self, name: str) -> None:
        harness.service(name, "stop", self.svc / name)

    def start(self, name: str) -> None:
        url = harness.service(name, "start", self.svc / name)
        assert url == self.urls[name], f"{name} came back as {url}, not {self.urls[name]}"


@pytest.fixture(scope="module")
def faults():
    harness.require_binary()
    svc = Path(tempfile.mkdtemp(prefix="faults-svc-"))
    svc.chmod(0o755)  # the postgres user must enter it
    f = Faults(svc)
    started = []
    try:
        for name in ("postgres", "redis", "s3"):
            (svc / name).mkdir()
            f.urls[name] = harness.service(name, "start", svc / name, skip_if_unavailable=True)
            started.append(name)
        # A role that owns its database but is no superuser: its privileges can be revoked.
        su = f.urls["postgres"]
        psql(su, f"CREATE ROLE {APP_ROLE} LOGIN")
        psql(su, f"CREATE DATABASE {APP_ROLE} OWNER {APP_ROLE}")
        f.admin_db = su.rsplit("/", 1)[0] + "/" + APP_ROLE
        f.app_db = f.admin_db.replace("://postgres@", f"://{APP_ROLE}@", 1)
        assert APP_ROLE in f.app_db.split("@")[0], f.app_db
        root = Path(tempfile.mkdtemp(prefix="faults-", dir=harness.tmp_root()))
        f.stack = harness.start_stack("faults", workers=0, extra_args=f.backends, env=S3_ENV,
                                      admin_args=["--db", f.app_db])
        f.add_worker(root)
        f.add_worker(root)
        yield f
    finally:
        for w in f.workers:
            w.kill9()
        if f.stack:
            f.stack.close()
        for name in reversed(started):
            harness.service(name, "stop", svc / name)
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)


def _assert_unavailable(r: requests.Response, elapsed: float) -> None:
    assert elapsed < OUTAGE_HTTP_TIMEOUT_S, f"answered after {elapsed:.1f} s: {harness.describe(r)}"
    p = harness.assert_problem(r, 503)
    assert r.headers.get("Retry-After", "").isdigit(), f"503 without Retry-After: {harness.describe(r)}"
    assert p["type"].endswith(("unavailable", "busy")), harness.describe(r)


def _timed(fn, *args, **kw):
    t0 = time.monotonic()
    try:
        r = fn(*args, timeout=OUTAGE_HTTP_TIMEOUT_S, **kw)
    except requests.Timeout:
        pytest.fail(f"no answer within {OUTAGE_HTTP_TIMEOUT_S} s during the outage")
    return r, time.monotonic() - t0


def _wait_all(api, accepted: dict[str, object], timeout: float = 120) -> int:
    completed = 0
    deadline = time.monotonic() + timeout
    for tid, want in accepted.items():
        t = api.wait_task("alice", tid, timeout=max(5, deadline - time.monotonic()))
        assert t["status"] == "completed" and t["result"] == want, harness.jdump(t)
        completed += 1
    return completed


def _counts(api, fid: str) -> dict[str, int]:
    """The function's tasks by status (a list of summaries, every page)."""
    counts: dict[str, int] = {}
    cursor = None
    while True:
        params = {"function_id": fid, "limit": "200", **({"cursor": cursor} if cursor else {})}
        page = harness.expect_status(api.get("alice", "/tasks", params=params), 200).json()
        for t in page["items"]:
            counts[t["status"]] = counts.get(t["status"], 0) + 1
        cursor = page["next_cursor"]
        if not cursor:
            return counts


def _assert_all_completed(api, fid: str, n: int) -> None:
    counts = _counts(api, fid)
    assert counts == {"completed": n}, f"want {n} completed and nothing else: {counts}"


def _worker_logs_since(faults, marks) -> str:
    return "".join(p.read_bytes()[marks.get(p, 0):].decode("utf-8", "replace")
                   for p in (w.log_path for w in faults.workers))


def test_postgres_outage_answers_503_and_loses_no_accepted_task(faults):
    api = faults.stack.api
    fid = api.create_function("alice", api.unique("pgout"),
                              "import time\ndef main(x: int):\n    time.sleep(1)\n    return x * 2\n")["id"]
    accepted: dict[str, int] = {}
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        for i, r in enumerate(pool.map(lambda i: api.execute_raw("alice", fid, {"x": i}), range(12))):
            harness.expect_status(r, 201, 202)
            accepted[r.json()["id"]] = i * 2
    one = next(iter(accepted))
    api.wait_task("alice", one, timeout=30, statuses={"running", "completed"})

    faults.stop("postgres")
    try:
        # Every route that reads the store, authentication included, says "later".
        s = api.s("alice")
        checks = [
            ("execute", lambda **kw: s.post(api.url(f"/functions/{fid}/execute"),
                                            json={"inputs": {"x": 1}}, **kw)),
            ("task", lambda **kw: s.get(api.url(f"/tasks/{one}"), **kw)),
            ("tasks", lambda **kw: s.get(api.url("/tasks"), **kw)),
            ("functions", lambda **kw: s.get(api.url("/functions"), **kw)),
            ("me", lambda **kw: s.get(api.url("/me"), **kw)),
            ("login", lambda **kw: requests.post(api.url("/auth/login"),
                                                 json={"email": "alice@acme.test",
                                                       "password": "alice-pass-1234"}, **kw)),
        ]
        for name, call in checks:
            r, elapsed = _timed(call)
            if r.status_code in (201, 202):  # cannot be: the task could not be written
                accepted[r.json()["id"]] = 2
            _assert_unavailable(r, elapsed)
        time.sleep(2)
    finally:
        faults.start("postgres")

    # Back: requests work again, and every accepted task completes, once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = api.get("alice", f"/tasks/{one}")
        if r.status_code == 200:
            break
        time.sleep(0.3)
    harness.expect_status(r, 200)
    r = api.execute_raw("alice", fid, {"x": 50})
    harness.expect_status(r, 201, 202)
    accepted[r.json()["id"]] = 100
    completed = _wait_all(api, accepted)
    assert completed == len(accepted) == 13
    _assert_all_completed(api, fid, 13)


def test_s3_outage_keeps_the_results_and_records_them_when_back(faults):
    api = faults.stack.api
    # A result over the inline limit (64 KiB) goes to the object store.
    fid = api.create_function("alice", api.unique("s3out"),
                              "import time\ndef main(x: int):\n    time.sleep(0.5)\n"
                              "    return 'y' * 70000 + str(x)\n")["id"]
    first = api.execute("alice", fid, {"x": -1}, wait=30)
    assert first["status"] == "completed" and first["result"] == "y" * 70000 + "-1", \
        harness.jdump({k: v for k, v in first.items() if k != "result"})
    accepted: dict[str, str] = {}
    marks = {w.log_path: w.log_path.stat().st_size for w in faults.workers}

    faults.stop("s3")
    try:
        for i in range(6):
            r = api.execute_raw("alice", fid, {"x": i})
            harness.expect_status(r, 201, 202)  # the inputs are small: no object needed
            accepted[r.json()["id"]] = "y" * 70000 + str(i)
        # A result kept in S3 cannot be read now: 503, not 500.
        r, elapsed = _timed(api.s("alice").get, api.url(f"/tasks/{first['id']}"))
        if r.status_code != 200:
            _assert_unavailable(r, elapsed)
        # Longer than the object store client's own retries (under 10 s), so that the
        # workers hold the results and record them again.
        time.sleep(12)
    finally:
        faults.start("s3")

    completed = _wait_all(api, accepted)
    assert completed == len(accepted) == 6
    _assert_all_completed(api, fid, 7)
    logs = "".join(p.read_bytes()[marks[p]:].decode("utf-8", "replace") for p in marks)
    assert "the result is kept and recorded again" in logs, logs[-3000:]
    assert "its end was recorded at the" in logs, logs[-3000:]
    for tid in accepted:
        t = api.task("alice", tid)
        assert t["attempts"] == 1, harness.jdump({k: v for k, v in t.items() if k != "result"})


def test_store_refusing_versions_gives_jobs_back_and_loses_no_task(faults):
    api = faults.stack.api
    fid = api.create_function("alice", api.unique("revoke"),
                              "import time\ndef main(x: int):\n    time.sleep(0.5)\n    return x * 2\n")["id"]
    marks = {w.log_path: w.log_path.stat().st_size for w in faults.workers}
    accepted: dict[str, int] = {}
    for i in range(16):
        r = api.execute_raw("alice", fid, {"x": i})
        harness.expect_status(r, 201, 202)
        accepted[r.json()["id"]] = i * 2
    api.wait_task("alice", next(iter(accepted)), timeout=30, statuses={"running", "completed"})

    # The store answers, but refuses to read any function version: a backend error, not
    # a version that is gone. The jobs claimed meanwhile must go back to the queue.
    psql(faults.admin_db, f"REVOKE SELECT ON function_versions FROM {APP_ROLE}")
    try:
        time.sleep(5)
    finally:
        psql(faults.admin_db, f"GRANT SELECT ON function_versions TO {APP_ROLE}")

    completed = _wait_all(api, accepted)
    assert completed == len(accepted) == 16
    _assert_all_completed(api, fid, 16)
    logs = _worker_logs_since(faults, marks)
    assert "its function version cannot be read now" in logs, logs[-3000:]
    # Given back before it started: a refused read does not count as a run.
    for tid in accepted:
        t = api.task("alice", tid)
        assert t["attempts"] == 1, harness.jdump(t)


def test_redis_restart_mid_run_loses_no_accepted_task(faults):
    api = faults.stack.api
    fid = api.create_function("alice", api.unique("redis"),
                              "import time\ndef main(x: int):\n    time.sleep(0.3)\n    return x * 5\n")["id"]
    accepted: dict[str, int] = {}

    def submit(xs):
        for x in xs:
            r = api.execute_raw("alice", fid, {"x": x})
            harness.expect_status(r, 201, 202)
            accepted[r.json()["id"]] = x * 5

    submit(range(16))
    api.wait_task("alice", next(iter(accepted)), timeout=30, statuses={"running", "completed"})
    faults.stop("redis")  # its data goes with it: claims, queued jobs, heartbeats
    try:
        submit(range(100, 104))  # accepted meanwhile: the store has them
        time.sleep(2)
    finally:
        faults.start("redis")
    submit(range(200, 204))
    completed = _wait_all(api, accepted)
    assert completed == len(accepted) == 24
    _assert_all_completed(api, fid, 24)
