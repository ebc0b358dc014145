"""Progress and live logs of a long call (docs/functions.md#progress, docs/api.md#task-events):
user code calls `mecapy.progress()` and prints; while it runs the task shows its `progress`,
its event stream sends `progress` and `log` events, and GET /tasks/{id}/logs shows what it
printed so far; the logs kept at the end are exactly what it printed, once. Workflow runs
and studies have streams of their own. A function that floods progress and prints stays
within the log cap and leaves the server healthy.

No timing is asserted: a call that must still be running while the test looks waits
(sleeps) until the test cancels it, so "before the end" is an order, not a race."""
import json

import pytest
import requests

import harness
from harness import assert_problem, expect_status
from test_events import read_all, read_events, read_until, stream

WAITS = '''\
import time
from mecapy import progress

def main(n: int = 3) -> int:
    for i in range(n):
        print("step", i, "of", n)
        progress((i + 1) / n, "step %d" % i)
    print("waiting", flush=True)
    time.sleep(120)
    return n
'''


def logs_of(events):
    return "\n".join(d for e, d in events if e == "log")


def test_progress_and_logs_arrive_while_the_call_runs(api, fname):
    follow_a_waiting_call(api, fname)


def follow_a_waiting_call(api, fname):
    f = api.create_function("alice", fname, WAITS)
    r = api.execute_raw("alice", f["id"], {"n": 3})
    expect_status(r, 202)
    tid = r.json()["id"]
    assert r.json()["progress"] is None, r.json()
    with stream(api, "alice", tid) as resp:
        expect_status(resp, 200)
        # The call sleeps until it is cancelled: what arrives here arrived before its end.
        lines = resp.iter_lines(decode_unicode=True)
        events = read_until(lines, lambda ev: "waiting" in logs_of(ev) and any(
            e == "progress" and json.loads(d)["fraction"] == 1.0 for e, d in ev))
        assert "end" not in [e for e, _ in events], events
        progress = [json.loads(d) for e, d in events if e == "progress"]
        assert progress[-1]["fraction"] == 1.0 and progress[-1]["message"] == "step 2", progress
        assert progress[-1]["at"].endswith("Z"), progress
        assert [p["fraction"] for p in progress] == sorted(p["fraction"] for p in progress)
        assert logs_of(events) == "step 0 of 3\nstep 1 of 3\nstep 2 of 3\nwaiting", events
        # The task object says the same while it runs, and so do its logs.
        t = api.task("alice", tid)
        assert t["status"] == "running" and t["progress"] == progress[-1], t
        assert t["logs"] == "", "the task's logs field is filled at the end"
        live = api.get("alice", f"/tasks/{tid}/logs")
        expect_status(live, 200)
        assert live.text == "step 0 of 3\nstep 1 of 3\nstep 2 of 3\nwaiting\n", live.text
        expect_status(api.post("alice", f"/tasks/{tid}/cancel"), 200)
        rest = read_until(lines)
    assert rest[-1][0] == "end" and json.loads(rest[-1][1])["status"] == "cancelled", rest
    # Nothing sent twice: the end adds no log the stream already had.
    assert "step 0" not in logs_of(rest), rest
    # The last progress is kept after the end.
    assert api.task("alice", tid)["progress"] == progress[-1]


def test_progress_reaches_an_api_node_from_a_separate_worker(tmp_path):
    """Scale-out: the call runs in a `mecapy worker` process; the API node (no workers of
    its own) reads the progress and the logs from the shared store."""
    if not harness.scaleout_requested():
        pytest.skip("needs the scale-out backends (MECAPY_TEST_BACKENDS=scaleout, as tests/run.sh runs)")
    stack = harness.start_stack("progress-worker", workers=0)
    try:
        d = tmp_path / "worker"
        d.mkdir()
        w = harness.Worker(d, [*stack.backends.args, "--workers", "1"])
        w.start()
        try:
            follow_a_waiting_call(stack.api, harness.Api.unique("separate-worker"))
        finally:
            w.stop()
    finally:
        stack.close()


PRINTS = '''\
from mecapy import progress

def main(lines: int) -> int:
    for i in range(lines):
        print("line %05d é" % i)
        if i % 100 == 0:
            progress(i / lines)
    print("no newline at the end", end="")
    progress(1, "done")
    return lines
'''


def test_final_logs_are_exact_and_the_stream_sends_each_line_once(api, fname):
    f = api.create_function("alice", fname, PRINTS)
    r = api.execute_raw("alice", f["id"], {"lines": 3000})
    expect_status(r, 202)
    tid = r.json()["id"]
    with stream(api, "alice", tid) as resp:
        events = read_events(resp)
    expected = "".join("line %05d é\n" % i for i in range(3000)) + "no newline at the end"
    t = api.task("alice", tid)
    assert t["status"] == "completed" and t["result"] == 3000, t["error"]
    assert t["logs"] == expected and t["logs_truncated"] is False
    assert api.get("alice", f"/tasks/{tid}/logs").text == expected
    assert logs_of(events) == expected.rstrip("\n"), "each line once, in order"
    assert t["progress"]["fraction"] == 1.0 and t["progress"]["message"] == "done", t["progress"]
    assert json.loads(events[-1][1])["progress"] == t["progress"]


def test_the_mecapy_module_and_bad_arguments(api, fname):
    f = api.create_function("alice", fname, '''\
import mecapy
from mecapy import progress

def main(case: str):
    if case == "module":
        return {"name": mecapy.__name__, "all": mecapy.__all__, "same": mecapy.progress is progress}
    if case == "range":
        progress(1.5, "too far")
    if case == "type":
        progress("half")
    if case == "bool":
        progress(True)
    if case == "message":
        progress(0.5, 42)
    if case == "nan":
        progress(float("nan"))
    if case == "long":
        progress(0.5, "x" * 10000)
        return "ok"
''')
    t = api.execute("alice", f["id"], {"case": "module"})
    assert t["result"] == {"name": "mecapy", "all": ["progress", "check"], "same": True}, t
    for case, etype, words in [("range", "ValueError", "between 0 and 1"), ("type", "TypeError", "str"),
                               ("bool", "TypeError", "bool"), ("message", "TypeError", "message"),
                               ("nan", "ValueError", "nan")]:
        t = api.execute("alice", f["id"], {"case": case})
        assert t["status"] == "failed", (case, t)
        assert t["error"]["type"] == etype and words in t["error"]["message"], (case, t["error"])
        assert "progress(" in t["error"]["traceback"] and "<function>" in t["error"]["traceback"], t["error"]
    t = api.execute("alice", f["id"], {"case": "long"})
    assert t["status"] == "completed", t
    assert len(t["progress"]["message"]) == 256 and t["progress"]["message"].endswith("…"), t["progress"]


FLOOD = '''\
import struct
from mecapy import progress

os, sys = __import__("o" + "s"), __import__("s" + "ys")

def main(calls: int, lines: int, frames: int) -> int:
    for i in range(calls):
        progress(i / calls, "call %d" % i)
    for i in range(lines):
        print("x" * 100, i)
        sys.stderr.write("e" * 50 + "\\n")
    # Progress frames written straight on the guest socket, past the guest's throttle.
    frame = b'{"fraction":0.5,"message":"forged"}'
    for i in range(frames):
        os.write(3, struct.pack("<I", 0x80000000 | len(frame)) + frame)
    return calls
'''


def test_a_flood_of_progress_and_prints_stays_bounded(api, fname):
    f = api.create_function("bob", fname, FLOOD)
    r = api.execute_raw("bob", f["id"], {"calls": 1_000_000, "lines": 20_000, "frames": 100_000})
    expect_status(r, 202)
    tid = r.json()["id"]
    with stream(api, "bob", tid) as resp:
        events = read_events(resp)
    t = api.task("bob", tid)
    assert t["status"] == "completed" and t["result"] == 1_000_000, t
    assert t["logs_truncated"] is True and len(t["logs"].encode()) <= 1024 * 1024, len(t["logs"])
    sent = sum(len(d.encode()) for e, d in events if e == "log")
    assert sent <= 1024 * 1024, sent
    assert logs_of(events) == t["logs"].rstrip("\n")
    assert sum(1 for e, _ in events if e == "progress") < 1000, "progress events are throttled"
    assert t["progress"]["fraction"] == 0.5 and t["progress"]["message"] == "forged", t["progress"]
    # The server is healthy: another call runs, other requests answer.
    expect_status(api.get("bob", "/me"), 200)
    ok = api.create_function("bob", fname + "-ok", "def main() -> int:\n    return 1\n")
    assert api.execute("bob", ok["id"])["result"] == 1


def test_a_forged_progress_frame_fails_only_its_call(api, fname):
    f = api.create_function("bob", fname, '''\
import struct
os = __import__("o" + "s")

def main() -> int:
    os.write(3, struct.pack("<I", 0x80000000 | 100000) + b"x" * 100000)
    return 1
''')
    t = api.execute("bob", f["id"])
    assert t["status"] == "failed", t
    ok = api.create_function("bob", fname + "-ok", "def main() -> int:\n    return 2\n")
    assert api.execute("bob", ok["id"])["result"] == 2


# ---------------------------------------------------------------- runs and studies

SLEEPY = '''\
import time

def main(x: float, seconds: float = 0.5) -> dict:
    time.sleep(seconds)
    return {"y": 2 * x}
'''


def test_a_workflow_run_stream_follows_its_nodes_to_the_end(api, fname):
    g = api.create_function("alice", fname, SLEEPY)
    r = api.post("alice", "/workflows", json={
        "name": api.unique("chain"),
        "nodes": [{"id": "a", "function": g["id"], "inputs": {"x": {"param": "x"}}},
                  {"id": "b", "function": g["id"], "inputs": {"x": {"from": "a", "path": "y"}}}],
        "outputs": {"y": {"from": "b", "path": "y"}}})
    expect_status(r, 201)
    wf = r.json()
    r = api.post("alice", f"/workflows/{wf['id']}/execute", json={"inputs": {"x": 1.5}})
    expect_status(r, 200, 202)
    rid = r.json()["id"]
    with api.s("alice").get(api.url(f"/workflow-runs/{rid}/events"), stream=True, timeout=90) as resp:
        expect_status(resp, 200)
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = read_events(resp)
        assert resp.raw.read() == b""
    names = [e for e, _ in events]
    assert names[0] == "status" and names[-1] == "end", names
    states = [json.loads(d) for e, d in events if e == "status"]
    assert len({json.dumps(s, sort_keys=True) for s in states}) == len(states), "one event per change"
    end = json.loads(events[-1][1])
    assert end["status"] == "completed" and end["outputs"] == {"y": 6.0}, end
    assert end == api.get("alice", f"/workflow-runs/{rid}").json()
    # The rules of GET: another company's user does not see it.
    assert_problem(api.s("carol").get(api.url(f"/workflow-runs/{rid}/events"), timeout=30), 404)
    assert_problem(requests.get(api.url(f"/workflow-runs/{rid}/events"), timeout=30), 401)


def test_a_study_stream_follows_its_progress_to_the_end(api, fname):
    g = api.create_function("alice", fname, SLEEPY)
    r = api.post("alice", "/studies", json={
        "target": {"function": g["id"]}, "fixed": {"seconds": 0.3},
        "design": {"type": "list", "points": [{"x": i} for i in range(6)]},
        "outputs": ["result.y"], "concurrency": 2}, timeout=120)
    expect_status(r, 201)
    sid = r.json()["id"]
    with api.s("alice").get(api.url(f"/studies/{sid}/events"), stream=True, timeout=120) as resp:
        expect_status(resp, 200)
        events = read_events(resp)
    names = [e for e, _ in events]
    assert names[0] == "status" and names[-1] == "end", names
    done = [json.loads(d)["progress"]["completed"] for e, d in events if e == "status"]
    assert done == sorted(done) and done[-1] == 6, done
    assert len(done) >= 2, "the counts moved while it ran"
    end = json.loads(events[-1][1])
    assert end["status"] == "completed", end
    assert end == api.get("alice", f"/studies/{sid}").json()
    assert_problem(api.s("carol").get(api.url(f"/studies/{sid}/events"), timeout=30), 404)


def test_streams_of_every_kind_share_the_per_user_bound(api, fname):
    g = api.create_function("carol", fname, "import time\ndef main(x: float) -> float:\n"
                            "    time.sleep(60)\n    return x\n")
    r = api.post("carol", "/studies", json={
        "target": {"function": g["id"]}, "design": {"type": "list", "points": [{"x": 1}]},
        "outputs": ["result"]}, timeout=120)
    expect_status(r, 201)
    sid = r.json()["id"]
    t = api.execute_raw("carol", g["id"], {"x": 2})
    tid = t.json()["id"]
    opened = []
    try:
        for i in range(16):
            path = f"/studies/{sid}/events" if i % 2 else f"/tasks/{tid}/events"
            opened.append(api.s("carol").get(api.url(path), stream=True, timeout=60))
            expect_status(opened[-1], 200)
        p = assert_problem(api.s("carol").get(api.url(f"/studies/{sid}/events"), stream=True, timeout=30), 429)
        assert "event streams" in p["detail"], p
    finally:
        expect_status(api.post("carol", f"/studies/{sid}/cancel", timeout=60), 200)
        expect_status(api.post("carol", f"/tasks/{tid}/cancel"), 200)
        threads, results = read_all(opened)
        for th in threads:
            th.join(60)
        for resp in opened:
            resp.close()
    for ev in results:
        assert ev and ev[-1][0] == "end", ev


# ---------------------------------------------------------------- the CLI

STEPS = '''\
import time
from mecapy import progress

def main(n: int = 4) -> dict:
    for i in range(n):
        print("iteration", i)
        progress((i + 1) / n, "iteration %d" % i)
        time.sleep(0.3)
    return {"n": n}
'''


def test_cli_run_and_task_wait_print_plain_progress_lines_when_not_a_terminal(stack, tmp_path, fname):
    """Not a terminal (captured): one plain line per progress event and the logs on
    stderr, the result on stdout as before; the same exit codes."""
    cfg = tmp_path / "cfg"
    u = stack.api.users["alice"]
    r = stack.cli("login", "--url", stack.api.base, "--email", u.email, "--password-stdin",
                  config_dir=cfg, input=u.password + "\n")
    assert r.returncode == 0, r.stderr
    f = stack.api.create_function("alice", fname, STEPS)
    r = stack.cli("run", fname, "n=4", config_dir=cfg, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"n": 4}, r.stdout
    lines = r.stderr.splitlines()
    assert [ln for ln in lines if ln.startswith("iteration")] == [f"iteration {i}" for i in range(4)], r.stderr
    bars = [ln for ln in lines if ln.startswith("mecapy: progress")]
    assert bars and bars[-1] == "mecapy: progress 100% iteration 3", r.stderr
    assert "\r" not in r.stderr and "\x1b" not in r.stderr, "no terminal codes when not a terminal"
    # task wait on a queued call follows it the same way; --json prints the task only.
    t = stack.api.execute_raw("alice", f["id"], {"n": 2}).json()
    r = stack.cli("task", "wait", t["id"], config_dir=cfg, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout) == {"n": 2}, (r.stdout, r.stderr)
    assert "iteration 1" in r.stderr and "mecapy: progress 100% iteration 1" in r.stderr, r.stderr
    r = stack.cli("task", "wait", t["id"], "--json", config_dir=cfg, timeout=120)
    assert r.returncode == 0 and json.loads(r.stdout)["progress"]["fraction"] == 1.0, r.stdout
    # A failure keeps its exit code and its error on stderr.
    g = stack.api.create_function("alice", fname + "-fails", "from mecapy import progress\n"
                                  "def main() -> int:\n    progress(0.5, 'half')\n    raise ValueError('nope')\n")
    r = stack.cli("run", g["name"], config_dir=cfg, timeout=120)
    assert r.returncode == 1 and "ValueError: nope" in r.stderr, r.stderr
