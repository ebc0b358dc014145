"""The CLI following event streams through a proxy that can break them
(docs/cli.md): `mecapy task wait` whose task stream is cut after the first log event
prints, once the long poll took over, only the logs it had not shown; `mecapy study show
--wait` follows the study's event stream (plain lines when not a terminal) and polls
when that stream cannot be had."""
import http.client
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import harness

STEPS = '''\
import time

def main(n: int = 6) -> int:
    for i in range(n):
        print("line", i, flush=True)
        time.sleep(0.4)
    return n
'''

BEAM = '''\
import time

def main(F: float, L: float) -> dict:
    time.sleep(0.3)
    return {"m": F * L}
'''


class Proxy:
    """Forwards every request to the server; an event stream whose path is in `cut`
    is closed right after its first `log` event, one in `refuse` answers 404. `seen`
    lists the paths asked for."""

    def __init__(self, upstream: str):
        self.up = urllib.parse.urlsplit(upstream)
        self.cut, self.refuse, self.seen = set(), set(), []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # a body ends with the connection: a cut is plain

            def log_message(self, *a):
                pass

            def forward(self):
                path = self.path.split("?")[0]
                proxy.seen.append(path)
                if path in proxy.refuse:
                    self.send_response(404)
                    self.send_header("Content-Type", "application/problem+json")
                    self.end_headers()
                    self.wfile.write(b'{"status": 404, "title": "Not Found"}')
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                conn = http.client.HTTPConnection(proxy.up.hostname, proxy.up.port, timeout=120)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(k, v)
                self.end_headers()
                if not path.endswith("/events"):
                    self.wfile.write(resp.read())
                    conn.close()
                    return
                event = None
                while True:
                    line = resp.readline()
                    if not line:
                        break
                    self.wfile.write(line)
                    self.wfile.flush()
                    if line.startswith(b"event:"):
                        event = line[6:].strip()
                    elif line in (b"\n", b"\r\n"):
                        if event == b"log" and path in proxy.cut:
                            break
                        event = None
                conn.close()

            do_GET = do_POST = do_PUT = do_DELETE = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def proxied(stack, tmp_path_factory):
    proxy = Proxy(stack.api.base)
    cfg = tmp_path_factory.mktemp("cli-follow-config")
    u = stack.api.users["alice"]
    r = stack.cli("login", "--url", proxy.url, "--email", u.email, "--password-stdin",
                  config_dir=cfg, input=u.password + "\n")
    assert r.returncode == 0, r.stderr

    def run(*args, timeout=120):
        return stack.cli(*[str(a) for a in args], config_dir=cfg, timeout=timeout)
    run.config_dir = cfg
    yield proxy, run
    proxy.close()


def test_task_wait_after_a_lost_stream_prints_only_the_logs_not_shown(stack, proxied):
    proxy, cli = proxied
    f = stack.api.create_function("alice", harness.Api.unique("steps"), STEPS)
    t = stack.api.execute_raw("alice", f["id"], {"n": 6}).json()
    proxy.cut.add(f"/api/v1/tasks/{t['id']}/events")
    r = cli("task", "wait", t["id"])
    assert r.returncode == 0 and json.loads(r.stdout) == 6, (r.stdout, r.stderr)
    assert f"/api/v1/tasks/{t['id']}/events" in proxy.seen
    assert "the event stream was lost" in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("line ")]
    # every line once, in order: the first event's before the cut, the rest after
    assert lines == [f"line {i}" for i in range(6)], r.stderr


def test_study_show_follows_the_study_stream_and_polls_without_it(stack, proxied):
    proxy, cli = proxied
    fn = stack.api.create_function("alice", harness.Api.unique("beam"), BEAM)
    for refused in (False, True):
        r = stack.api.post("alice", "/studies", json={
            "target": {"function": fn["id"]}, "design": {"type": "grid", "params": {"L": [1, 2], "F": [1, 2]}},
            "outputs": ["result.m"], "concurrency": 1})
        harness.expect_status(r, 201)
        sid = r.json()["id"]
        events = f"/api/v1/studies/{sid}/events"
        if refused:
            proxy.refuse.add(events)
        before = len(proxy.seen)
        r = cli("study", "show", sid, "--wait")
        assert r.returncode == 0, (r.stdout, r.stderr)
        lines = r.stdout.splitlines()
        assert lines and lines[-1].startswith(f"{sid} completed: 4/4 completed, 0 failed"), r.stdout
        assert "\r" not in r.stdout and "\x1b" not in r.stdout, "no terminal codes when not a terminal"
        assert len(lines) == len(set(lines)), "a line per change: " + r.stdout
        asked = proxy.seen[before:]
        assert asked[0] == events, asked
        # the stream answers it; refused, GET /studies/{id}?wait= long polls do
        polls = [p for p in asked if p == f"/api/v1/studies/{sid}"]
        assert bool(polls) == refused, asked


def test_study_show_on_a_terminal_redraws_one_line(stack, proxied, tmp_path):
    """stdout a terminal: the progress line is redrawn in place (carriage return, erase to
    the end of line) and ends as the final state on a line of its own."""
    import os
    import pty
    import subprocess
    proxy, cli = proxied
    fn = stack.api.create_function("alice", harness.Api.unique("beam"), BEAM)
    r = stack.api.post("alice", "/studies", json={
        "target": {"function": fn["id"]}, "design": {"type": "list", "points": [{"L": 1, "F": 1}, {"L": 2, "F": 1}]},
        "concurrency": 1})
    sid = harness.expect_status(r, 201).json()["id"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    env.update(TERM="xterm", MECAPY_CONFIG_DIR=str(cli.config_dir))
    main, sub = pty.openpty()
    p = subprocess.Popen([str(harness.mecapy_bin()), "study", "show", sid, "--wait"], stdout=sub,
                         stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    os.close(sub)
    out = b""
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the other side closed
            break
        if not chunk:
            break
        out += chunk
    assert p.wait(timeout=120) == 0, p.stderr.read()
    os.close(main)
    text = out.decode()
    assert "\r" in text and "\x1b[K" in text, repr(text)
    assert text.rstrip("\r\n").rsplit("\r", 1)[-1].startswith(f"{sid} completed: 2/2 completed"), repr(text)
