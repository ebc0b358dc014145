"""Shared harness for MecaPy's integration and security tests.

It drives the real binary: `mecapy admin create-user` to make accounts, `mecapy serve` on a
free loopback port, the HTTP API through `requests`, and the `mecapy` CLI as a subprocess.
Nothing here knows how the server is built inside; it only uses the documented contract
(docs/api.md and the command line of ARCHITECTURE.md).

Environment:
  MECAPY_BIN        the binary to test (default: <repo>/build/mecapy)
  MECAPY_TEST_TMP   where test data dirs are made (default: <repo>/.test-tmp, git-ignored;
                    deliberately outside /tmp so that a sandbox's private /tmp does not
                    hide the host's data dir by accident in the security tests)
  MECAPY_KEEP_TEST_DATA=1  keep data dirs and server logs after the run
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]
API = "/api/v1"
TERMINAL = {"completed", "failed", "timed_out", "cancelled"}
STATUSES = TERMINAL | {"queued", "running"}
READY_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 60.0
RFC3339_UTC = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|\+00:00)$")

# Every server started by the harness, so a failing test can show their logs.
RUNNING_SERVERS: list["Server"] = []


def mecapy_bin() -> Path:
    return Path(os.environ.get("MECAPY_BIN") or REPO / "build" / "mecapy")


def tmp_root() -> Path:
    root = Path(os.environ.get("MECAPY_TEST_TMP") or REPO / ".test-tmp")
    root.mkdir(parents=True, exist_ok=True)
    return root


def require_binary() -> Path:
    b = mecapy_bin()
    if not (b.is_file() and os.access(b, os.X_OK)):
        pytest.fail(f"server binary {b} not found or not executable: build it with "
                    f"`meson setup build && ninja -C build`, or set MECAPY_BIN", pytrace=False)
    return b


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def tail(path: Path, lines: int = 80) -> str:
    try:
        data = path.read_bytes()[-64 * 1024:].decode("utf-8", "replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(data.splitlines()[-lines:])


# ---------------------------------------------------------------------------- users

@dataclass
class User:
    name: str
    email: str
    password: str
    company: str
    role: str = "member"
    token: str | None = None


DEFAULT_USERS = [
    User("alice", "alice@acme.test", "alice-pass-1234", "acme"),
    User("bob", "bob@acme.test", "bob-pass-1234", "acme"),
    User("carol", "carol@globex.test", "carol-pass-1234", "globex"),
]


def run_cli(args: list[str], *, env: dict | None = None, input: str | None = None,
            timeout: float = 60, config_dir: Path | None = None) -> subprocess.CompletedProcess:
    """Run `mecapy ARGS` with a clean client environment; never hangs past timeout."""
    e = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    if config_dir is not None:
        e["MECAPY_CONFIG_DIR"] = str(config_dir)
    if env:
        e.update(env)
    try:
        return subprocess.run([str(mecapy_bin()), *args], env=e, input=input,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as ex:
        pytest.fail(f"`mecapy {' '.join(args)}` did not finish in {timeout} s; "
                    f"stdout={ex.stdout!r} stderr={ex.stderr!r}")


def create_user(data_dir: Path, u: User, extra_args: list[str] | None = None) -> None:
    """extra_args (optional): more server options, e.g. ["--db", "postgres://..."]."""
    r = run_cli(["admin", "create-user", "--email", u.email, "--password", u.password,
                 "--company", u.company, "--role", u.role, "--data-dir", str(data_dir)]
                + list(extra_args or []),
                timeout=30)
    if r.returncode != 0:
        pytest.fail(f"`mecapy admin create-user --email {u.email}` exited {r.returncode}:\n"
                    f"stdout: {r.stdout}\nstderr: {r.stderr}", pytrace=False)


# ---------------------------------------------------------------------------- server

class Server:
    """One `mecapy serve` process tree on a data dir; restartable on the same dir/port."""

    def __init__(self, data_dir: Path, *, workers: int | None = None,
                 env: dict | None = None, extra_args: list[str] | None = None,
                 host: str = "127.0.0.1", port: int | None = None,
                 prefix: list[str] | None = None):
        """host, port: where it listens (another address than loopback, say one in a
        network namespace, needs the port given); prefix: a command the server runs
        under, which must exec it (["nsenter", "--net=/run/netns/NAME", "--"])."""
        self.data_dir = data_dir
        self.host = host
        self.prefix = list(prefix or [])
        self.port = port or free_port()
        self.workers = workers
        self.env = env or {}
        self.extra_args = extra_args or []
        self.log_path = data_dir.parent / (data_dir.name + ".server.log")
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def argv(self) -> list[str]:
        a = [*self.prefix, str(mecapy_bin()), "serve", "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--host", self.host]
        if self.workers is not None:
            a += ["--workers", str(self.workers)]
        return a + self.extra_args

    def start(self) -> None:
        require_binary()
        if port_open(self.port, self.host):
            pytest.fail(f"port {self.port} is already taken before starting the server")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
        env.update(self.env)
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            # A session of its own: the whole tree (zygotes, instances) is one process
            # group that teardown can sweep, and Ctrl-C in pytest does not reach it.
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        if self not in RUNNING_SERVERS:
            RUNNING_SERVERS.append(self)
        self.wait_ready()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`mecapy serve` exited with {self.proc.returncode} before it was "
                            f"ready; its log:\n{tail(self.log_path)}", pytrace=False)
            try:
                r = requests.get(self.base + "/healthz", timeout=1)
                if r.status_code == 200:
                    return
                last = f"{r.status_code} {r.text[:200]!r}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"`mecapy serve` did not answer 200 on /healthz within {timeout:.0f} s "
                    f"(last: {last}); its log:\n{tail(self.log_path)}", pytrace=False)

    def _wait_port_closed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not port_open(self.port, self.host):
                return True
            time.sleep(0.05)
        return False

    def _sweep_group(self) -> None:
        """Kill what is left of the process group we started (by its id, which is our
        child's pid since it was started in a new session)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, timeout: float = 10.0) -> dict:
        """SIGTERM, then SIGKILL if the port is still open or the process still there
        after `timeout`. Returns how it went (for the graceful-shutdown check)."""
        out = {"graceful": True, "rc": None}
        if self.proc is None:
            return out
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            closed = self._wait_port_closed(timeout)
            try:
                self.proc.wait(timeout=max(0.1, timeout / 2) if closed else 0.1)
            except subprocess.TimeoutExpired:
                closed = False
            if not closed or self.proc.poll() is None:
                out["graceful"] = False
                self._sweep_group()
                self.proc.wait(timeout=10)
                self._wait_port_closed(5)
        out["rc"] = self.proc.returncode
        self._sweep_group()
        if self in RUNNING_SERVERS:
            RUNNING_SERVERS.remove(self)
        return out

    def kill9(self, whole_group: bool = False) -> None:
        """SIGKILL the server process (not its children unless whole_group): what a crash
        or the OOM killer does. Waits until the port is closed."""
        assert self.proc is not None and self.proc.poll() is None, "server not running"
        if whole_group:
            os.killpg(self.proc.pid, signal.SIGKILL)
        else:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        if not self._wait_port_closed(10):
            # Something else of the group still holds the listening socket.
            self._sweep_group()
            assert self._wait_port_closed(5), f"port {self.port} still open after kill -9"

    def group_members(self) -> list[int]:
        """Pids still in the server's process group (the sandboxed instances may have
        moved to groups of their own; see descendants())."""
        if self.proc is None:
            return []
        pg = self.proc.pid
        out = []
        for p in Path("/proc").iterdir():
            if not p.name.isdigit():
                continue
            try:
                st = (p / "stat").read_text()
                fields = st[st.rindex(")") + 2:].split()
                if int(fields[2]) == pg and fields[0] != "Z":
                    out.append(int(p.name))
            except (OSError, ValueError):
                continue
        return out

    def restart(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self._sweep_group()
        self.start()


class Worker:
    """One `mecapy worker` process (a standalone worker on a shared queue): no HTTP, so
    it is ready when its log says so. Shows in RUNNING_SERVERS for failure reports."""

    READY_LINE = "MecaPy worker ready"

    def __init__(self, data_dir: Path, args: list[str], *, env: dict | None = None,
                 name: str = "worker", prefix: list[str] | None = None):
        """prefix: a command the worker runs under, which must exec it (["nsenter",
        "--net=/run/netns/NAME", "--"])."""
        self.data_dir = data_dir
        self.prefix = list(prefix or [])
        self.args = list(args)
        self.env = env or {}
        self.port = None
        self.log_path = data_dir.parent / (data_dir.name + f".{name}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def argv(self) -> list[str]:
        return [*self.prefix, str(mecapy_bin()), "worker", "--data-dir", str(self.data_dir),
                *self.args]

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        require_binary()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
        env.update(self.env)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
        RUNNING_SERVERS.append(self)  # type: ignore[arg-type]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`mecapy worker` exited with {self.proc.returncode} before it was "
                            f"ready; its log:\n{tail(self.log_path)}", pytrace=False)
            if self.READY_LINE in self.log_path.read_bytes()[offset:].decode("utf-8", "replace"):
                return
            time.sleep(0.05)
        self.kill9()
        pytest.fail(f"`mecapy worker` was not ready within {timeout:.0f} s; its log:\n"
                    f"{tail(self.log_path)}", pytrace=False)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (a graceful drain), SIGKILL after timeout. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._forget()
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL the worker process only (its sandboxes die with it)."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._forget()

    def _forget(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self in RUNNING_SERVERS:
            RUNNING_SERVERS.remove(self)  # type: ignore[arg-type]


def descendants(pid: int) -> list[int]:
    """Live (non-zombie) descendants of pid, from /proc."""
    children: dict[int, list[int]] = {}
    state: dict[int, str] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            st = (p / "stat").read_text()
            fields = st[st.rindex(")") + 2:].split()
            children.setdefault(int(fields[1]), []).append(int(p.name))
            state[int(p.name)] = fields[0]
        except (OSError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if state.get(c) != "Z":
                out.append(c)
            todo.append(c)
    return out


# ---------------------------------------------------------------------------- problems

def is_problem(r: requests.Response) -> bool:
    return r.headers.get("Content-Type", "").split(";")[0].strip() == "application/problem+json"


def describe(r: requests.Response) -> str:
    req = r.request
    body = req.body
    if isinstance(body, bytes):
        body = body[:300] + (b"..." if len(body) > 300 else b"")
    elif isinstance(body, str):
        body = body[:300]
    return (f"{req.method} {req.url} body={body!r} -> {r.status_code} "
            f"[{r.headers.get('Content-Type')}] {r.text[:600]!r}")


def expect_status(r: requests.Response, *status: int) -> requests.Response:
    assert r.status_code in status, f"expected {'/'.join(map(str, status))}: {describe(r)}"
    return r


def assert_problem(r: requests.Response, status: int) -> dict:
    """The answer is an RFC 9457 problem with this status; returns its body."""
    expect_status(r, status)
    assert is_problem(r), f"expected Content-Type application/problem+json: {describe(r)}"
    try:
        p = r.json()
    except ValueError:
        pytest.fail(f"problem body is not JSON: {describe(r)}")
    assert isinstance(p, dict), describe(r)
    assert p.get("status") == status, f"problem 'status' must be {status}: {describe(r)}"
    assert isinstance(p.get("title"), str) and p["title"], f"problem without title: {describe(r)}"
    assert isinstance(p.get("type"), str) and p["type"], f"problem without type: {describe(r)}"
    return p


def error_paths(p: dict) -> list[str]:
    errs = p.get("errors")
    assert isinstance(errs, list) and errs, f"problem without errors[]: {p}"
    for e in errs:
        assert isinstance(e, dict) and isinstance(e.get("path"), str) \
            and isinstance(e.get("message"), str) and e["message"], \
            f"each error needs a path and a message: {p}"
    return [e["path"] for e in errs]


# ---------------------------------------------------------------------------- API client

def _wait_s(wait) -> float:
    try:
        return max(0.0, min(float(wait or 0), 300.0))
    except ValueError:
        return 0.0


class Api:
    """A small client of the HTTP API: one requests.Session per user with its token."""

    def __init__(self, server: Server, users: list[User]):
        self.server = server
        self.users = {u.name: u for u in users}
        self.sessions: dict[str, requests.Session] = {}

    @property
    def base(self) -> str:
        return self.server.base

    def url(self, path: str) -> str:
        if path.startswith("http://") or path.startswith("https://"):
            return path
        if not path.startswith("/"):
            path = "/" + path
        if not (path.startswith(API) or path.startswith("/healthz")
                or path.startswith("/readyz") or path.startswith("/metrics")):
            path = API + path
        return self.base + path

    def login(self, name: str) -> str:
        u = self.users[name]
        r = requests.post(self.url("/auth/login"),
                          json={"email": u.email, "password": u.password}, timeout=HTTP_TIMEOUT_S)
        expect_status(r, 200)
        u.token = r.json()["token"]
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {u.token}"
        self.sessions[name] = s
        return u.token

    def login_all(self) -> None:
        for n in self.users:
            self.login(n)

    def s(self, name: str | None) -> requests.Session:
        return self.sessions[name] if name else requests.Session()

    def request(self, user: str | None, method: str, path: str, **kw) -> requests.Response:
        kw.setdefault("timeout", HTTP_TIMEOUT_S)
        return self.s(user).request(method, self.url(path), **kw)

    def get(self, user, path, **kw):
        return self.request(user, "GET", path, **kw)

    def post(self, user, path, **kw):
        return self.request(user, "POST", path, **kw)

    def put(self, user, path, **kw):
        return self.request(user, "PUT", path, **kw)

    def delete(self, user, path, **kw):
        return self.request(user, "DELETE", path, **kw)

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:8]}"

    def create_function(self, user: str, name: str, code: str, *, expect: int = 201,
                        **fields) -> dict:
        body = {"name": name, "code": code, **fields}
        r = self.post(user, "/functions", json=body)
        expect_status(r, expect)
        return r.json()

    def execute_raw(self, user: str, fid: str, inputs: dict | None, *, wait: int | None = None,
                    version: int | None = None, idempotency_key: str | None = None,
                    body: dict | None = None) -> requests.Response:
        params = {}
        if wait is not None:
            params["wait"] = str(wait)
        if version is not None:
            params["version"] = str(version)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        if body is None:
            body = {"inputs": inputs if inputs is not None else {}}
        return self.post(user, f"/functions/{fid}/execute", params=params, json=body,
                         headers=headers, timeout=_wait_s(wait) + HTTP_TIMEOUT_S)

    def execute(self, user: str, fid: str, inputs: dict | None = None, *, wait: int = 30,
                version: int | None = None, idempotency_key: str | None = None,
                timeout: float = 60) -> dict:
        """Run and return the ended task (polls with ?wait if the first wait ran out)."""
        r = self.execute_raw(user, fid, inputs, wait=wait, version=version,
                             idempotency_key=idempotency_key)
        expect_status(r, 200, 202)
        t = r.json()
        if r.status_code == 200:
            assert t.get("status") in TERMINAL, \
                f"execute ?wait answered 200 with a task that has not ended: {describe(r)}"
            return t
        return self.wait_task(user, t["id"], timeout=timeout)

    def task(self, user: str, tid: str) -> dict:
        r = self.get(user, f"/tasks/{tid}")
        expect_status(r, 200)
        return r.json()

    def wait_task(self, user: str, tid: str, timeout: float = 60,
                  statuses: set[str] = TERMINAL) -> dict:
        deadline = time.monotonic() + timeout
        t = None
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"task {tid} not in {sorted(statuses)} after {timeout} s: {t}")
            if statuses == TERMINAL:
                w = max(1, min(10, int(left)))
                r = self.get(user, f"/tasks/{tid}", params={"wait": str(w)},
                             timeout=w + HTTP_TIMEOUT_S)
            else:
                r = self.get(user, f"/tasks/{tid}")
            expect_status(r, 200)
            t = r.json()
            if t.get("status") in statuses:
                return t
            if statuses != TERMINAL:
                time.sleep(0.05)


# ---------------------------------------------------------------------------- stacks

@dataclass
class Stack:
    """A data dir with users, a running server, a logged-in client, and the CLI."""
    root: Path
    data_dir: Path
    server: Server
    api: Api
    users: list[User] = field(default_factory=list)

    def cli(self, *args: str, config_dir: Path | None = None, input: str | None = None,
            timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
        return run_cli(list(args), env=env, input=input, timeout=timeout,
                       config_dir=config_dir)

    def restart(self) -> None:
        self.server.restart()

    backends: "Backends | None" = None

    def close(self) -> None:
        self.server.stop()
        if self.backends:
            self.backends.close()
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(self.root, ignore_errors=True)


class Backends:
    """Scale-out backends of one stack, when MECAPY_TEST_BACKENDS=scaleout: a database of
    its own on the PostgreSQL of MECAPY_TEST_POSTGRES_URL, a Redis server of its own, and
    a bucket of its own on the S3 server of MECAPY_TEST_S3_URL. Each stack gets fresh
    ones, so the suites run unchanged: their users and data never meet."""

    def __init__(self, root: Path, label: str):
        pg, s3 = os.environ["MECAPY_TEST_POSTGRES_URL"], os.environ["MECAPY_TEST_S3_URL"]
        suffix = uuid.uuid4().hex[:10]
        self.db = f"mecapy_{re.sub('[^a-z0-9]', '_', label.lower())}_{suffix}"
        self.pg_base = pg
        subprocess.run(["psql", pg, "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{self.db}"'],
                       check=True, capture_output=True, timeout=30)
        self.redis_dir = root / "redis"
        self.redis_dir.mkdir()
        redis_url = service("redis", "start", self.redis_dir)
        bucket = f"{re.sub('[^a-z0-9]', '-', label.lower())}-{suffix}"
        s3_url = re.sub(r"^s3://[^?]+", f"s3://{bucket}", s3)
        self.args = ["--db", pg.rsplit("/", 1)[0] + "/" + self.db,
                     "--queue", redis_url, "--blobs", s3_url]

    def close(self) -> None:
        service("redis", "stop", self.redis_dir)
        subprocess.run(["psql", self.pg_base, "-qc", f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)'],
                       capture_output=True, timeout=30)


SERVICES = REPO / "tests" / "services"


def service(name: str, action: str, d: Path, addr: str | None = None, *,
            skip_if_unavailable: bool = False) -> str:
    """Run tests/services/NAME.sh ACTION DIR [ADDR] and return what it printed (the URL
    for start and url). A start that fails skips the test when skip_if_unavailable (the
    server is not installed here), else the failure fails it."""
    argv = [str(SERVICES / f"{name}.sh"), action, str(d)] + ([addr] if addr else [])
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if r.returncode != 0 and skip_if_unavailable:
        pytest.skip(f"{name} cannot be started here: {r.stderr.strip()[-300:]}")
    assert r.returncode == 0 or action == "stop", f"{name}.sh {action}: {r.stderr}"
    return r.stdout.strip()


def scaleout_requested() -> bool:
    return os.environ.get("MECAPY_TEST_BACKENDS") == "scaleout"


def start_stack(label: str, *, workers: int | None = None, env: dict | None = None,
                users: list[User] | None = None, extra_args: list[str] | None = None,
                admin_args: list[str] | None = None) -> Stack:
    """admin_args (optional): options for `mecapy admin create-user` besides --data-dir,
    e.g. the same ["--db", URL] as the server's extra_args."""
    require_binary()
    root = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=tmp_root()))
    data_dir = root / "data"
    data_dir.mkdir()
    users = [User(u.name, u.email, u.password, u.company, u.role)
             for u in (users or DEFAULT_USERS)]
    backends = None
    if scaleout_requested() and "--db" not in (extra_args or []):
        backends = Backends(root, label)
        extra_args = backends.args + list(extra_args or [])
        admin_args = backends.args + list(admin_args or [])
    for u in users:
        create_user(data_dir, u, admin_args)
    server = Server(data_dir, workers=workers, env=env, extra_args=extra_args)
    try:
        server.start()
        api = Api(server, users)
        api.login_all()
    except BaseException:
        server.stop()
        if backends:
            backends.close()
        raise
    return Stack(root, data_dir, server, api, users, backends)


def server_logs_section() -> str:
    parts = []
    for s in RUNNING_SERVERS:
        parts.append(f"--- {s.log_path} (pid {s.pid}, port {s.port}) ---\n{tail(s.log_path, 40)}")
    return "\n".join(parts)


def add_server_log_on_failure(item, call, report) -> None:
    """Called from conftest's pytest_runtest_makereport: attach the servers' log tails to
    a failed test's report."""
    if report.failed and RUNNING_SERVERS:
        report.sections.append(("mecapy serve log (tail)", server_logs_section()))


def jdump(x) -> str:
    return json.dumps(x, indent=1, sort_keys=True)[:3000]
