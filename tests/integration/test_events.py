"""GET /api/v1/tasks/{id}/events: server-sent events that follow one task (docs/api.md#task-events).
What a client reads: `status` first and at each change, the logs (`log`) and the final
task (`end`) when it ends, then the stream closes; the same access rules as the task;
a bounded number of streams per user, none of which holds an HTTP thread."""
import json
import threading

import pytest
import requests

from harness import API, assert_problem, expect_status


def read_until(lines, want=lambda ev: False):
    """Events from lines (one iterator over a stream's lines, read on where the last call
    stopped) until want(events) is true, the `end` event, or the close: [(event, data)]."""
    events, name, data = [], None, []
    for raw in lines:
        line = raw or ""
        if line == "":
            if name or data:
                events.append((name or "message", "\n".join(data)))
                if want(events) or name == "end":
                    return events
            name, data = None, []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[6:] if line[5:6] == " " else line[5:])
    return events


def read_events(resp):
    """Parse a text/event-stream into [(event, data)], until its end (or its close)."""
    return read_until(resp.iter_lines(decode_unicode=True))


def stream(api, user, tid, **kw):
    return api.s(user).get(api.url(f"/tasks/{tid}/events"), stream=True, timeout=90, **kw)


def read_all(streams):
    """The events of every stream, read at once (one thread each) until each ends."""
    results = [None] * len(streams)

    def drain(i):
        results[i] = read_events(streams[i])

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(streams))]
    for t in threads:
        t.start()
    return threads, results


def test_events_follow_a_running_task_to_its_end(api, fname):
    f = api.create_function("alice", fname, "import time\ndef main(s: float = 1.5) -> dict:\n"
                            "    print('first line')\n    print('second line')\n    time.sleep(s)\n"
                            "    return {'ok': True, 'text': 'a\\nb'}\n")
    r = api.execute_raw("alice", f["id"], {})
    expect_status(r, 202)
    tid = r.json()["id"]
    with stream(api, "alice", tid) as resp:
        expect_status(resp, 200)
        assert resp.headers["Content-Type"].startswith("text/event-stream"), resp.headers
        assert "no-store" in resp.headers.get("Cache-Control", "")
        events = read_events(resp)
        # The stream closed by itself after the end.
        assert resp.raw.read() == b""
    names = [e for e, _ in events]
    assert names[0] == "status" and names[-1] == "end", names
    statuses = [json.loads(d)["status"] for e, d in events if e == "status"]
    assert statuses[-1] == "completed", statuses
    assert statuses == sorted(set(statuses), key=statuses.index), "a status is sent once per change"
    for e, d in events:
        if e == "status":
            assert "result" not in json.loads(d) and "logs" not in json.loads(d)
    logs = "\n".join(d for e, d in events if e == "log")
    assert "first line\nsecond line" in logs, events
    end = json.loads(events[-1][1])
    assert end["id"] == tid and end["status"] == "completed"
    assert end["result"] == {"ok": True, "text": "a\nb"}, end
    assert end == api.task("alice", tid) | {"result": end["result"]}


def test_events_of_an_ended_task_come_at_once(api, fname):
    f = api.create_function("alice", fname, "def main() -> int:\n    raise ValueError('bad <b>')\n")
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "failed"
    with stream(api, "alice", t["id"]) as resp:
        events = read_events(resp)
    assert [e for e, _ in events][0] == "status" and events[-1][0] == "end"
    end = json.loads(events[-1][1])
    assert end["error"]["type"] == "ValueError" and end["error"]["message"] == "bad <b>", end


def test_events_follow_the_task_rules(api, fname):
    f = api.create_function("alice", fname, "def main() -> int:\n    return 1\n")
    t = api.execute("alice", f["id"], {})
    # Another company's user: the task does not exist for them.
    assert_problem(stream(api, "carol", t["id"]), 404)
    assert_problem(requests.get(api.url(f"/tasks/{t['id']}/events"), timeout=30), 401)
    assert_problem(stream(api, "alice", "00000000-0000-0000-0000-000000000000"), 404)
    # An API token without tasks:read.
    tok = api.post("alice", "/tokens", json={"name": fname, "scopes": ["functions:read"]}).json()["token"]
    r = requests.get(api.url(f"/tasks/{t['id']}/events"), headers={"Authorization": f"Bearer {tok}"}, timeout=30)
    p = assert_problem(r, 403)
    assert "tasks:read" in p["detail"], p


def test_a_browser_follows_with_its_session_cookie(api, fname):
    """An EventSource sends cookies, never an Authorization header: the cookie session of
    POST /auth/login?cookie=true opens the stream (a GET: no CSRF header needed)."""
    u = api.users["alice"]
    s = requests.Session()
    r = s.post(api.url("/auth/login?cookie=true"), json={"email": u.email, "password": u.password}, timeout=30)
    expect_status(r, 200)
    body = r.json()
    assert "token" not in body, "the browser's script must not hold the session token"
    assert body["csrf_token"] == s.cookies.get("mecapy_csrf") and len(body["csrf_token"]) >= 32
    assert "HttpOnly" in [c for c in r.headers.get("Set-Cookie", "").split(",") if "mecapy_session" in c][0]
    f = api.create_function("alice", fname, "def main() -> int:\n    return 7\n")
    # A POST with the cookie alone is refused (CSRF); with the header it runs.
    assert_problem(s.post(api.url(f"/functions/{f['id']}/execute"), json={"inputs": {}}, timeout=30), 403)
    r = s.post(api.url(f"/functions/{f['id']}/execute"), json={"inputs": {}},
               headers={"X-CSRF-Token": body["csrf_token"]}, timeout=30)
    expect_status(r, 202, 200)
    with s.get(api.url(f"/tasks/{r.json()['id']}/events"), stream=True, timeout=60) as resp:
        expect_status(resp, 200)
        events = read_events(resp)
    assert json.loads(events[-1][1])["result"] == 7


def test_streams_are_bounded_per_user_hold_no_thread_and_end_on_cancel(api, fname):
    """16 streams on one running task: a 17th is refused (429) while the server keeps
    answering other requests (the shared server has 4 HTTP threads: a stream that held
    one would starve them); cancelling the task ends every stream with its `end`."""
    f = api.create_function("bob", fname, "import time\ndef main() -> int:\n    time.sleep(120)\n    return 1\n")
    r = api.execute_raw("bob", f["id"], {})
    expect_status(r, 202)
    tid = r.json()["id"]
    streams = [stream(api, "bob", tid) for _ in range(16)]
    try:
        for s in streams:
            expect_status(s, 200)
        over = stream(api, "bob", tid)
        p = assert_problem(over, 429)
        assert "event streams" in p["detail"] and over.headers.get("Retry-After"), p
        for _ in range(8):
            expect_status(api.get("bob", "/me"), 200)
        # Another user is not counted with bob.
        with stream(api, "alice", "00000000-0000-0000-0000-000000000000") as other:
            assert_problem(other, 404)
        threads, results = read_all(streams)
        expect_status(api.post("bob", f"/tasks/{tid}/cancel"), 200)
        for t in threads:
            t.join(60)
        for ev in results:
            assert ev and ev[-1][0] == "end", ev
            assert json.loads(ev[-1][1])["status"] == "cancelled"
    finally:
        for s in streams:
            s.close()
    # Closed streams give their places back.
    with stream(api, "bob", tid) as again:
        expect_status(again, 200)
        assert read_events(again)[-1][0] == "end"


def test_a_large_result_is_left_out_of_end_and_of_result_omit(api, fname):
    """A page decides before it loads a large result: ?result=omit gives its size, and the
    end event leaves out a result over 1 MiB (GET /tasks/{id} still has it)."""
    f = api.create_function("alice", fname, "def main(n: int = 1) -> list:\n    return ['x' * 1000] * n\n")
    small = api.execute("alice", f["id"], {"n": 1})
    big = api.execute("alice", f["id"], {"n": 1500})
    r = api.get("alice", f"/tasks/{big['id']}", params={"result": "omit"})
    expect_status(r, 200)
    t = r.json()
    assert t["result"] is None and t["result_omitted"] is True, t
    assert t["result_size"] == len(json.dumps(big["result"], separators=(",", ":"))), t["result_size"]
    assert t["status"] == "completed" and t["logs"] == big["logs"]
    r = api.get("alice", f"/tasks/{big['id']}", params={"result": "omit", "wait": 5})
    assert r.json()["result_omitted"] is True
    p = assert_problem(api.get("alice", f"/tasks/{big['id']}", params={"result": "none"}), 400)
    assert p["errors"][0]["path"] == "result", p
    with stream(api, "alice", big["id"]) as resp:
        end = json.loads(read_events(resp)[-1][1])
    assert end["result"] is None and end["result_omitted"] is True and end["result_size"] > 1 << 20, \
        {k: v for k, v in end.items() if k != "result"}
    with stream(api, "alice", small["id"]) as resp:
        end = json.loads(read_events(resp)[-1][1])
    assert end["result"] == ["x" * 1000] and "result_omitted" not in end
