"""Scale-out: an API server without workers (`serve --workers 0`) and two standalone
`mecapy worker` processes sharing PostgreSQL and Redis, all started here on loopback.

What a user of a scaled-out install would notice: every call completes with the right
result, work spreads over the workers, a worker killed mid-call costs a retry and no
call, a Redis restart under load loses no accepted call, SIGTERM drains a worker, and
GET /api/v1/workers shows who is alive.

Skipped (with the reason) when PostgreSQL or Redis cannot be started here.
"""
import concurrent.futures
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

import harness

WORKER_TTL_S = 2  # short heartbeat lease, so a dead worker is noticed quickly

pytestmark = [pytest.mark.slow]


class Cluster:
    def __init__(self, root: Path, pg: str, redis: str, redis_dir: Path):
        self.root, self.pg, self.redis, self.redis_dir = root, pg, redis, redis_dir
        self.queue = f"{redis}?worker_ttl={WORKER_TTL_S}"
        self.backends = ["--db", pg, "--queue", self.queue]
        self.stack = None
        self.workers: list[harness.Worker] = []
        self.n = 0

    def add_worker(self) -> harness.Worker:
        self.n += 1
        d = self.root / f"w{self.n}"
        d.mkdir()
        w = harness.Worker(d, [*self.backends, "--workers", "2", "--grace", "20"],
                           name=f"worker{self.n}")
        w.start()
        self.workers.append(w)
        return w

    def live(self) -> list[harness.Worker]:
        return [w for w in self.workers if w.proc and w.proc.poll() is None]

    def sql(self, query: str) -> list[list[str]]:
        psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)
        assert psql, "psql is needed to read the store"
        r = subprocess.run([str(psql), self.pg, "-AtF", "\t", "-c", query], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def worker_of(self, task_id: str) -> str:
        rows = self.sql(f"SELECT coalesce(worker_id, '') FROM tasks WHERE id = '{task_id}'")
        return rows[0][0].rsplit("/", 1)[0] if rows else ""


@pytest.fixture(scope="module")
def cluster():
    harness.require_binary()
    svc = Path(tempfile.mkdtemp(prefix="scaleout-svc-"))
    svc.chmod(0o755)  # the postgres user must enter it
    (svc / "pg").mkdir()
    (svc / "redis").mkdir()
    pg = redis = None
    c = None
    try:
        pg = harness.service("postgres", "start", svc / "pg", skip_if_unavailable=True)
        redis = harness.service("redis", "start", svc / "redis", skip_if_unavailable=True)
        root = Path(tempfile.mkdtemp(prefix="scaleout-", dir=harness.tmp_root()))
        c = Cluster(root, pg, redis, svc / "redis")
        c.stack = harness.start_stack("scaleout", workers=0, extra_args=c.backends,
                                      admin_args=["--db", pg])
        c.add_worker()
        c.add_worker()
        yield c
    finally:
        if c:
            for w in c.workers:
                w.kill9()
            if c.stack:
                c.stack.close()
        if redis:
            harness.service("redis", "stop", svc / "redis")
        if pg:
            harness.service("postgres", "stop", svc / "pg")
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)


def _fn(api, name, code):
    return api.create_function("alice", name, code)["id"]


def _submit(api, fid, inputs) -> str:
    r = api.execute_raw("alice", fid, inputs)
    harness.expect_status(r, 201, 202)
    return r.json()["id"]


def test_workers_are_listed_with_fresh_heartbeats(cluster):
    api = cluster.stack.api
    r = api.get("alice", "/workers")
    harness.expect_status(r, 200)
    items = r.json()["items"]
    ids = {w["id"] for w in items}
    assert len(items) == 2, harness.jdump(items)
    for w in items:
        assert set(w) >= {"id", "host", "pid", "started_at", "last_heartbeat", "running",
                          "capacity", "shard", "warm_instances", "cache_hit_rate"}, w
        assert w["capacity"] == 2 and isinstance(w["pid"], int), w
        assert harness.RFC3339_UTC.match(w["last_heartbeat"]), w
    # Heartbeats keep coming: a second look a lease later shows newer ones.
    time.sleep(WORKER_TTL_S + 0.5)
    again = {w["id"]: w for w in api.get("alice", "/workers").json()["items"]}
    assert set(again) == ids
    for w in items:
        assert again[w["id"]]["last_heartbeat"] > w["last_heartbeat"], (w, again[w["id"]])
    # Signed-in users only.
    harness.expect_status(api.get(None, "/workers"), 401)


def test_fifty_calls_over_five_functions_complete_on_both_workers(cluster):
    api = cluster.stack.api
    fids = [_fn(api, api.unique(f"lin{k}"),
                f"import time\ndef main(x: int):\n    time.sleep(0.05)\n    return x * {k + 2} + {k}\n")
            for k in range(5)]
    calls = [(k, i) for i in range(10) for k in range(5)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(lambda ki: _submit(api, fids[ki[0]], {"x": ki[1]}), calls))
    for (k, i), tid in zip(calls, ids):
        t = api.wait_task("alice", tid, timeout=120)
        assert t["status"] == "completed", harness.jdump(t)
        assert t["result"] == i * (k + 2) + k, harness.jdump(t)
        assert t["attempts"] == 1, harness.jdump(t)
    ran_on = {}
    for tid in ids:
        w = cluster.worker_of(tid)
        ran_on[w] = ran_on.get(w, 0) + 1
    names = {Path(w.log_path).name for w in cluster.workers}
    assert len(ran_on) == 2 and all(n >= 5 for n in ran_on.values()), \
        f"calls per worker: {ran_on} (workers: {names})"


def test_worker_killed_mid_call_the_call_completes_elsewhere_once(cluster):
    api = cluster.stack.api
    fid = _fn(api, api.unique("slow"),
              "import time\ndef main(x: int):\n    time.sleep(3)\n    return x + 1\n")
    tid = _submit(api, fid, {"x": 41})
    api.wait_task("alice", tid, timeout=30, statuses={"running"})
    victim_id = cluster.worker_of(tid)
    victims = [w for w in cluster.live() if f"-{w.pid}-" in victim_id]
    assert len(victims) == 1, f"task {tid} runs on {victim_id!r}; live: {[w.pid for w in cluster.live()]}"
    victims[0].kill9()
    t = api.wait_task("alice", tid, timeout=60)
    assert t["status"] == "completed" and t["result"] == 42, harness.jdump(t)
    # Run twice (the first run died with its worker), ended once.
    assert t["attempts"] == 2, harness.jdump(t)
    assert cluster.worker_of(tid) != victim_id
    # The dead worker leaves the list once its lease is over.
    deadline = time.monotonic() + 4 * WORKER_TTL_S
    while time.monotonic() < deadline:
        listed = {w["id"] for w in api.get("alice", "/workers").json()["items"]}
        if victim_id not in listed:
            break
        time.sleep(0.2)
    assert victim_id not in listed, listed
    cluster.add_worker()  # two again for the next tests


def test_redis_restart_under_load_loses_no_accepted_call(cluster):
    api = cluster.stack.api
    fid = _fn(api, api.unique("steady"),
              "import time\ndef main(x: int):\n    time.sleep(0.1)\n    return x * 3\n")
    accepted: dict[str, int] = {}
    refused = 0

    def submit_some(n, start):
        nonlocal refused
        for i in range(start, start + n):
            r = api.execute_raw("alice", fid, {"x": i})
            if r.status_code in (201, 202):
                accepted[r.json()["id"]] = i
            else:
                refused += 1

    submit_some(15, 0)
    harness.service("redis", "stop", cluster.redis_dir)
    submit_some(10, 100)  # Redis is down: the calls are still accepted (the store has them)
    time.sleep(1)
    assert harness.service("redis", "start", cluster.redis_dir) == cluster.redis
    submit_some(10, 200)
    assert refused == 0, f"{refused} calls refused while Redis restarted"
    completed = 0
    for tid, x in accepted.items():
        t = api.wait_task("alice", tid, timeout=120)
        assert t["status"] == "completed" and t["result"] == x * 3, harness.jdump(t)
        completed += 1
    assert completed == len(accepted) == 35


def test_sigterm_drains_a_worker_gracefully(cluster):
    api = cluster.stack.api
    fid = _fn(api, api.unique("drain"),
              "import time\ndef main(x: int):\n    time.sleep(2)\n    return x - 1\n")
    tid = _submit(api, fid, {"x": 10})
    api.wait_task("alice", tid, timeout=30, statuses={"running"})
    runner_id = cluster.worker_of(tid)
    runner = [w for w in cluster.live() if f"-{w.pid}-" in runner_id]
    assert len(runner) == 1, runner_id
    t0 = time.monotonic()
    rc = runner[0].stop(timeout=30)
    assert rc == 0, f"worker exited {rc}; its log:\n{harness.tail(runner[0].log_path)}"
    assert time.monotonic() - t0 < 15
    assert "drained: every running call finished" in runner[0].log()
    t = api.wait_task("alice", tid, timeout=30)
    # Finished by the worker that was stopping, not retried elsewhere.
    assert t["status"] == "completed" and t["result"] == 9 and t["attempts"] == 1, harness.jdump(t)
    assert cluster.worker_of(tid) == runner_id
    # It left the list at once (no lease to wait for).
    listed = {w["id"] for w in api.get("alice", "/workers").json()["items"]}
    assert runner_id not in listed, listed


# Names its own process (PR_SET_NAME, seen from the host's /proc) so the test can tell
# whether its code still runs; after the sleep it would leave a file.
CANCEL_ME = """\
import ctypes
import time

def main(marker: str, seconds: float = 60.0) -> str:
    ctypes.CDLL(None).prctl(15, marker.encode(), 0, 0, 0)  # PR_SET_NAME
    time.sleep(seconds)
    with open("outputs/after.txt", "w") as f:
        f.write("the sleep ended")
    return "slept"
"""


def _marked(cluster, marker: str) -> list[int]:
    out = []
    for w in cluster.live():
        for p in harness.descendants(w.pid):
            try:
                if Path(f"/proc/{p}/comm").read_text().strip() == marker:
                    out.append(p)
            except OSError:
                pass
    return out


def test_cancel_stops_the_call_on_its_worker(cluster):
    api = cluster.stack.api
    fid = _fn(api, api.unique("cancel-me"), CANCEL_ME)
    marker = "mpc" + os.urandom(4).hex()
    tid = _submit(api, fid, {"marker": marker})
    deadline = time.monotonic() + 30
    while not _marked(cluster, marker):
        assert time.monotonic() < deadline, "the call never started on a worker"
        time.sleep(0.05)
    t0 = time.monotonic()
    r = api.post("alice", f"/tasks/{tid}/cancel")
    harness.expect_status(r, 200)
    assert r.json()["status"] == "cancelled", r.json()
    # The API published the cancel; the worker that runs the call killed its sandbox.
    while _marked(cluster, marker):
        assert time.monotonic() - t0 < 5, "the cancelled call still runs on its worker"
        time.sleep(0.05)
    # Its worker thread is free: a following call completes well under the sleep.
    nxt = api.execute("alice", fid, {"marker": "mpc-next", "seconds": 0.1}, wait=20)
    assert nxt["status"] == "completed", nxt
    assert time.monotonic() - t0 < 15
    t = api.task("alice", tid)
    assert t["status"] == "cancelled" and not t.get("artifacts"), t
    assert t["error"]["type"] == "Cancelled", t
