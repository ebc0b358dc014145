"""GET /metrics (docs/operations.md#metrics): the Prometheus text format, parsed with the
real parser (python3-prometheus-client), checked by `promtool check metrics` when it is
installed, counters that move by what the calls did, and the access rule (loopback and
--metrics-allow; "none" refuses everyone)."""
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import requests

import harness
from studyutil import create_study, wait_study

parser = pytest.importorskip(
    "prometheus_client.parser",
    reason="python3-prometheus-client is not installed (scripts/install-deps.sh test)")

ADD = """\
def main(a: float, b: float = 1.0) -> float:
    return a + b
"""

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


@pytest.fixture(scope="module")
def stack():
    """A server of its own, so that no other module's calls move its counters."""
    s = harness.start_stack("metrics")
    yield s
    s.close()


def scrape(base: str, **kw) -> requests.Response:
    return requests.get(base + "/metrics", timeout=harness.HTTP_TIMEOUT_S, **kw)


def samples(text: str) -> dict:
    """{(sample name, frozenset(labels)): value} through the real parser."""
    out = {}
    for fam in parser.text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(sm: dict, name: str, **labels) -> float:
    return sm.get((name, frozenset(labels.items())), 0.0)


def http_2xx(sm: dict) -> float:
    return sum(v for (n, l), v in sm.items()
               if n == "mecapy_http_requests_total" and dict(l).get("code", "").startswith("2"))


def test_format_type_and_help(stack):
    r = scrape(stack.server.base)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == CONTENT_TYPE
    text = r.text
    types = {}
    helps = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            helps.add(line.split(" ", 3)[2])
    assert set(types) == helps, "every metric has both HELP and TYPE"
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), f"counter {name} does not end in _total"
        assert name.startswith(("mecapy_", "process_")), name
    for name in ("mecapy_build_info", "mecapy_start_time_seconds", "mecapy_http_requests_total",
                 "mecapy_http_request_duration_seconds", "mecapy_tasks_created_total",
                 "mecapy_tasks_ended_total", "mecapy_task_execution_seconds",
                 "process_resident_memory_bytes", "process_cpu_seconds_total", "process_open_fds",
                 "mecapy_pool_hits_total", "mecapy_pool_misses_total",
                 "mecapy_pool_cold_starts_total", "mecapy_pool_evictions_total",
                 "mecapy_pool_retired_total", "mecapy_pool_crashes_total", "mecapy_pool_instances",
                 "mecapy_pool_spares", "mecapy_pool_busy", "mecapy_pool_queued",
                 "mecapy_pool_zygotes", "mecapy_pool_memory_bytes"):
        assert name in types, f"{name} is missing from /metrics"
    sm = samples(text)
    build = [l for (n, l) in sm if n == "mecapy_build_info"]
    assert build and dict(build[0]).get("version"), "mecapy_build_info has a version label"
    assert value(sm, "process_resident_memory_bytes") > 1 << 20
    assert value(sm, "process_open_fds") > 0
    # HEAD answers too, without a body.
    h = requests.head(stack.server.base + "/metrics", timeout=harness.HTTP_TIMEOUT_S)
    assert h.status_code == 200 and not h.content


def test_counters_move_with_calls(stack):
    api = stack.api
    before = samples(scrape(stack.server.base).text)
    f = api.create_function("alice", api.unique("metrics-add"), ADD)
    for i in range(3):
        t = api.execute("alice", f["id"], {"a": i, "b": 1})
        assert t["status"] == "completed", t
    # A request is counted when its answer has been sent (on_completed), which can be a
    # moment after the client read it: scrape until the last execute shows (5 s at most).
    deadline = time.monotonic() + 5
    while True:
        after = samples(scrape(stack.server.base).text)
        if http_2xx(after) - http_2xx(before) >= 5 or time.monotonic() > deadline:
            break
        time.sleep(0.05)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mecapy_tasks_created_total") == 3
    assert delta("mecapy_tasks_ended_total", status="completed") == 3
    assert delta("mecapy_tasks_ended_total", status="failed") == 0
    assert delta("mecapy_task_execution_seconds_count") == 3
    # The first scrape, the upload (201) and three executes (200) at least.
    assert http_2xx(after) - http_2xx(before) >= 5
    assert delta("mecapy_http_requests_total", code="201") >= 1
    # Calls after the first find the instance warm.
    assert delta("mecapy_pool_hits_total") >= 1, (before, after)
    assert delta("mecapy_pool_hits_total") + delta("mecapy_pool_misses_total") >= 3
    # Each answer is in exactly one of the two duration histograms.
    total = sum(v for (n, l), v in after.items() if n == "mecapy_http_request_duration_seconds_count")
    codes = sum(v for (n, l), v in after.items() if n == "mecapy_http_requests_total")
    assert total == codes


def test_errors_are_counted_by_code(stack):
    before = samples(scrape(stack.server.base).text)
    r = requests.get(stack.server.base + "/api/v1/me", timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 401  # a route that needs a token, without one
    r = requests.get(stack.server.base + "/nowhere", timeout=harness.HTTP_TIMEOUT_S)
    assert r.status_code == 404
    after = samples(scrape(stack.server.base).text)
    assert value(after, "mecapy_http_requests_total", code="404") - \
        value(before, "mecapy_http_requests_total", code="404") == 1
    assert value(after, "mecapy_http_requests_total", code="401") - \
        value(before, "mecapy_http_requests_total", code="401") == 1


def test_promtool_check_metrics(stack):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian package prometheus)")
    text = scrape(stack.server.base).text
    r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr


def _server(extra: list[str]) -> harness.Server:
    root = Path(tempfile.mkdtemp(prefix="metrics-acl-", dir=harness.tmp_root()))
    (root / "data").mkdir()
    s = harness.Server(root / "data", workers=0, extra_args=extra)
    s.start()
    return s


def test_allow_list_and_forwarded_clients():
    """Loopback is always allowed; other clients only when listed (ADDR or ADDR/BITS).
    Through a trusted proxy the client is the X-Forwarded-For address."""
    s = _server(["--trusted-proxy", "127.0.0.1",
                 "--metrics-allow", "192.0.2.1, 198.51.100.0/24"])
    try:
        assert scrape(s.base).status_code == 200
        for client, want in (("203.0.113.7", 404), ("192.0.2.2", 404), ("192.0.2.1", 200),
                             ("198.51.100.77", 200), ("2001:db8::1", 404)):
            r = scrape(s.base, headers={"X-Forwarded-For": client})
            assert r.status_code == want, (client, r.status_code, r.text[:200])
            if want == 404:
                harness.assert_problem(r, 404)
        # Other methods: 405 for an allowed client.
        assert requests.post(s.base + "/metrics", timeout=10).status_code == 405
    finally:
        s.stop()


def test_allow_none_refuses_loopback_too():
    s = _server(["--metrics-allow", "none"])
    try:
        r = scrape(s.base)
        assert r.status_code == 404
        harness.assert_problem(r, 404)
        assert "mecapy_" not in r.text
        assert requests.get(s.base + "/healthz", timeout=10).status_code == 200
    finally:
        s.stop()


@pytest.mark.parametrize("bad", ["300.1.1.1", "192.0.2.0/33", "none,127.0.0.1", "example.com"])
def test_bad_allow_list_is_refused_at_start(bad):
    root = Path(tempfile.mkdtemp(prefix="metrics-bad-", dir=harness.tmp_root()))
    try:
        r = subprocess.run([str(harness.require_binary()), "serve", "--data-dir", str(root / "data"),
                            "--port", str(harness.free_port()), "--workers", "0",
                            "--metrics-allow", bad],
                           capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"--metrics-allow {bad!r} was accepted (the server kept running)")
    assert r.returncode != 0
    assert "--metrics-allow" in r.stdout + r.stderr


def test_worker_metrics_port():
    """`mecapy worker --metrics-port` serves /metrics (no HTTP metrics) and /healthz alone."""
    redis = shutil.which("redis-server")
    if not redis:
        pytest.skip("redis-server is not installed (a standalone worker needs a shared queue)")
    root = Path(tempfile.mkdtemp(prefix="metrics-worker-", dir=harness.tmp_root()))
    (root / "data").mkdir()
    rport, mport = harness.free_port(), harness.free_port()
    rs = subprocess.Popen([redis, "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                           "--dir", str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    w = None
    try:
        for _ in range(100):
            if harness.port_open(rport):
                break
            time.sleep(0.05)
        w = harness.Worker(root / "data", ["--queue", f"redis://127.0.0.1:{rport}", "--workers", "1",
                                           "--metrics-port", str(mport)])
        w.start()
        base = f"http://127.0.0.1:{mport}"
        assert requests.get(base + "/healthz", timeout=10).status_code == 200
        r = scrape(base)
        assert r.status_code == 200 and r.headers["Content-Type"] == CONTENT_TYPE
        sm = samples(r.text)
        assert value(sm, "mecapy_tasks_created_total") == 0
        assert ("mecapy_pool_instances", frozenset()) in sm
        assert not any(n.startswith("mecapy_http_") for (n, _) in sm)
        assert requests.get(base + "/api/v1/me", timeout=10).status_code == 404
    finally:
        if w:
            w.stop()
        rs.terminate()
        rs.wait(timeout=10)


def test_wave2_counters_move(stack):
    """Workflow runs and their nodes by final state, study points, result cache hits
    (the families exist from the start, at zero; quota refusals: test_quotas.py)."""
    api = stack.api
    before = samples(scrape(stack.server.base).text)
    for quota in ("concurrent_calls", "calls_per_day", "cpu_seconds_per_month", "storage_mb"):
        assert ("mecapy_quota_refusals_total", frozenset({("quota", quota)})) in before
    f = api.create_function("alice", api.unique("metrics-cache"), ADD, cache=True)
    assert api.execute("alice", f["id"], {"a": 1})["status"] == "completed"
    assert api.execute("alice", f["id"], {"a": 1})["cached_from"] is not None
    wf = api.post("alice", "/workflows", json={
        "name": api.unique("metrics-flow"),
        "nodes": [{"id": "one", "function": f["id"], "inputs": {"a": {"param": "a"}, "b": 2}},
                  {"id": "two", "function": f["id"], "inputs": {"a": {"from": "one", "path": ""}}}],
        "outputs": {"x": {"from": "two", "path": ""}}})
    assert wf.status_code == 201, wf.text
    run = api.post("alice", f"/workflows/{wf.json()['id']}/execute", params={"wait": "30"},
                   json={"inputs": {"a": 5}}, timeout=60)
    assert run.status_code == 200 and run.json()["status"] == "completed", run.text
    grid = {"target": {"function": f["id"]}, "design": {"type": "grid", "params": {"a": [10, 11, 12]}}}
    wait_study(api, "alice", create_study(api, "alice", grid)["id"], timeout=60)
    after = samples(scrape(stack.server.base).text)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("mecapy_result_cache_hits_total") == 1
    assert delta("mecapy_workflow_runs_ended_total", status="completed") == 1
    assert delta("mecapy_workflow_nodes_ended_total", status="completed") == 2
    assert delta("mecapy_study_points_ended_total", status="completed") == 3
    # Every task stored counts as created, whatever made it: two calls (one a cache
    # hit), two workflow nodes, three study points (the queue alert compares this
    # with the ends).
    assert delta("mecapy_tasks_created_total") == 7
    # The same study again: its points are answered from the cache, and counted so
    # (created and cache hits move together: no backlog for the queue alert).
    wait_study(api, "alice", create_study(api, "alice", grid)["id"], timeout=60)
    again = samples(scrape(stack.server.base).text)
    assert value(again, "mecapy_result_cache_hits_total") - value(after, "mecapy_result_cache_hits_total") == 3
    assert value(again, "mecapy_tasks_created_total") - value(after, "mecapy_tasks_created_total") == 3
