"""Several hosts on one machine: the API and two `mecapy worker` processes each in a
network namespace of its own, joined by veth pairs to a bridge that this test creates in
the root namespace, on a private /24 that no route of the machine uses. PostgreSQL,
Redis and S3 (tests/services/*.sh) listen on the bridge's address only; the client
(pytest) reaches the API at its namespace's address. Everything is deleted after.

- Calls complete with the right results and both workers take work.
- A worker cut off (its link down) while it runs calls: its heartbeat stops reaching
  Redis, its jobs are reaped and run by the other worker; every accepted task
  completes, once.

Skipped (with the reason) when network namespaces cannot be made here (not root), or
when PostgreSQL, Redis or s3rver cannot be started.
"""
import ipaddress
import os
import random
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

import harness

WORKER_TTL_S = 2
S3_ENV = {"AWS_ACCESS_KEY_ID": "S3RVER", "AWS_SECRET_ACCESS_KEY": "S3RVER"}
API_PORT = 8000  # the API's namespace is new: any port is free there

pytestmark = [pytest.mark.slow]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


def _free_subnet() -> ipaddress.IPv4Network:
    """A 10.x.y.0/24 that no route or address of this machine overlaps."""
    used = []
    for line in _ip("-4", "route", "show", "table", "all").stdout.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("local", "broadcast", "unreachable", "blackhole", "prohibit"):
            word = line.split()[1]
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(100, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    pytest.skip("no free private /24 for the test's namespaces")


class Hosts:
    """A bridge in the root namespace and one namespace per host, wired by veths."""

    def __init__(self):
        tag = uuid.uuid4().hex[:5]
        self.tag = tag
        self.bridge = f"mpbr{tag}"
        self.net = _free_subnet()
        hosts = list(self.net.hosts())
        self.gateway = str(hosts[0])  # the bridge: where the services listen
        self.next_host = 10
        self.spaces: dict[str, dict] = {}
        self.made_bridge = False

    def up(self) -> None:
        _ip("link", "add", self.bridge, "type", "bridge")
        self.made_bridge = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")

    def add(self, name: str) -> str:
        ns = f"mp-{self.tag}-{name}"
        host_if, ns_if = f"mp{self.tag}{name[:3]}h", f"mp{self.tag}{name[:3]}n"
        addr = str(list(self.net.hosts())[self.next_host - 1])
        self.next_host += 1
        _ip("netns", "add", ns)
        self.spaces[name] = {"ns": ns, "host_if": host_if, "addr": addr}
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("link", "set", host_if, "master", self.bridge)
        _ip("link", "set", host_if, "up")
        _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ns_if)
        _ip("-n", ns, "link", "set", ns_if, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
        return addr

    def prefix(self, name: str) -> list[str]:
        # nsenter, not `ip netns exec`: the latter mounts a fresh /sys, which hides the
        # cgroup hierarchies, and the server refuses to run user code without limits.
        return ["nsenter", f"--net=/run/netns/{self.spaces[name]['ns']}", "--"]

    def cut(self, name: str) -> None:
        _ip("link", "set", self.spaces[name]["host_if"], "down")

    def mend(self, name: str) -> None:
        _ip("link", "set", self.spaces[name]["host_if"], "up")

    def down(self) -> None:
        for s in self.spaces.values():
            _ip("netns", "delete", s["ns"], check=False)  # its veth pair goes with it
            _ip("link", "delete", s["host_if"], check=False)
        if self.made_bridge:
            _ip("link", "delete", self.bridge, check=False)


def _namespaces_allowed() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if not shutil.which("ip"):
        return "the ip command (iproute2) is not installed"
    probe = f"mp-probe-{uuid.uuid4().hex[:6]}"
    r = _ip("netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"ip netns add is not permitted here: {r.stderr.strip()}"
    _ip("netns", "delete", probe, check=False)
    return None


class Cluster:
    def __init__(self, hosts: Hosts, root: Path, urls: dict[str, str]):
        self.hosts, self.root, self.urls = hosts, root, urls
        self.backends = ["--db", urls["postgres"], "--queue", f"{urls['redis']}?worker_ttl={WORKER_TTL_S}",
                         "--blobs", urls["s3"]]
        self.server: harness.Server | None = None
        self.api: harness.Api | None = None
        self.workers: dict[str, harness.Worker] = {}

    def sql(self, query: str) -> list[list[str]]:
        psql = shutil.which("psql") or next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"))), None)
        assert psql, "psql is needed to read the store"
        r = subprocess.run([str(psql), self.urls["postgres"], "-AtF", "\t", "-c", query],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        return [line.split("\t") for line in r.stdout.splitlines() if line]

    def ran_on(self, task_id: str) -> str:
        rows = self.sql(f"SELECT coalesce(worker_id, '') FROM tasks WHERE id = '{task_id}'")
        return rows[0][0].rsplit("/", 1)[0] if rows else ""

    def name_of(self, worker_id: str) -> str:
        for name, w in self.workers.items():
            if f"-{w.pid}-" in worker_id:
                return name
        return "?"


@pytest.fixture(scope="module")
def cluster():
    harness.require_binary()
    why = _namespaces_allowed()
    if why:
        pytest.skip(why)
    hosts = Hosts()
    svc = Path(tempfile.mkdtemp(prefix="netns-svc-"))
    svc.chmod(0o755)  # the postgres user must enter it
    started: list[str] = []
    c = None
    try:
        hosts.up()
        api_addr = hosts.add("api")
        hosts.add("w1")
        hosts.add("w2")
        urls = {}
        for name in ("postgres", "redis", "s3"):
            (svc / name).mkdir()
            urls[name] = harness.service(name, "start", svc / name, hosts.gateway,
                                         skip_if_unavailable=True)
            started.append(name)
        root = Path(tempfile.mkdtemp(prefix="netns-", dir=harness.tmp_root()))
        c = Cluster(hosts, root, urls)
        data = root / "api"
        data.mkdir()
        users = [harness.User(u.name, u.email, u.password, u.company, u.role)
                 for u in harness.DEFAULT_USERS[:1]]
        for u in users:
            harness.create_user(data, u, ["--db", urls["postgres"]])
        c.server = harness.Server(data, workers=0, env=S3_ENV, extra_args=c.backends,
                                  host=api_addr, port=API_PORT, prefix=hosts.prefix("api"))
        c.server.start()
        c.api = harness.Api(c.server, users)
        c.api.login_all()
        for name in ("w1", "w2"):
            d = root / name
            d.mkdir()
            w = harness.Worker(d, [*c.backends, "--workers", "2", "--grace", "5"], env=S3_ENV,
                               name=name, prefix=hosts.prefix(name))
            w.start()
            c.workers[name] = w
        yield c
    finally:
        if c:
            for w in c.workers.values():
                w.kill9()
            if c.server:
                c.server.stop()
        for name in reversed(started):
            harness.service(name, "stop", svc / name)
        hosts.down()
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(svc, ignore_errors=True)
            if c:
                shutil.rmtree(c.root, ignore_errors=True)


def test_calls_from_another_host_complete_on_both_workers(cluster):
    api = cluster.api
    assert cluster.server.host != "127.0.0.1" and api.base.startswith(f"http://{cluster.server.host}:")
    listed = api.get("alice", "/workers").json()["items"]
    assert len(listed) == 2, harness.jdump(listed)
    fid = api.create_function("alice", api.unique("hosts"),
                              "import time\ndef main(x: int):\n    time.sleep(0.2)\n    return x * 7\n")["id"]
    ids = {}
    for i in range(16):
        r = api.execute_raw("alice", fid, {"x": i})
        harness.expect_status(r, 201, 202)
        ids[r.json()["id"]] = i * 7
    per_worker: dict[str, int] = {}
    for tid, want in ids.items():
        t = api.wait_task("alice", tid, timeout=60)
        assert t["status"] == "completed" and t["result"] == want, harness.jdump(t)
        name = cluster.name_of(cluster.ran_on(tid))
        per_worker[name] = per_worker.get(name, 0) + 1
    assert set(per_worker) == {"w1", "w2"}, f"calls per worker: {per_worker}"


def test_a_worker_cut_off_its_calls_complete_on_the_other(cluster):
    api = cluster.api
    fid = api.create_function("alice", api.unique("cut"),
                              "import time\ndef main(x: int):\n    time.sleep(2)\n    return x + 1000\n")["id"]
    accepted: dict[str, int] = {}
    for i in range(6):
        r = api.execute_raw("alice", fid, {"x": i})
        harness.expect_status(r, 201, 202)
        accepted[r.json()["id"]] = i + 1000
    # Wait until w1 runs one of them.
    deadline = time.monotonic() + 30
    on_w1: list[str] = []
    while time.monotonic() < deadline and not on_w1:
        rows = cluster.sql("SELECT id, worker_id FROM tasks WHERE status = 'running'")
        on_w1 = [tid for tid, wid in rows if tid in accepted and cluster.name_of(wid) == "w1"]
        time.sleep(0.1)
    assert on_w1, "w1 took none of the calls"
    cluster.hosts.cut("w1")
    try:
        completed = 0
        for tid, want in accepted.items():
            t = api.wait_task("alice", tid, timeout=60)
            assert t["status"] == "completed" and t["result"] == want, harness.jdump(t)
            completed += 1
        assert completed == len(accepted) == 6
        for tid in on_w1:
            t = api.task("alice", tid)
            assert cluster.name_of(cluster.ran_on(tid)) == "w2" and t["attempts"] >= 2, harness.jdump(t)
        # The cut-off worker left the list (its heartbeat no longer reaches Redis).
        ids = {w["id"] for w in api.get("alice", "/workers").json()["items"]}
        assert not any(f"-{cluster.workers['w1'].pid}-" in i for i in ids), ids
    finally:
        cluster.hosts.mend("w1")
