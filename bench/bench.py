#!/usr/bin/python3
"""MecaPy benchmarks and their peers, in one run (stdlib only; started by bench/run.sh).

Usage: bench.py --bin BUILD/mecapy --tmp DIR --out bench/results.json

Everything it starts (the MecaPy server, redis-server, the Celery worker, uvicorn, the
bubblewrap peer) listens on 127.0.0.1 only, is started in its own session, is written to
DIR/pids (for run.sh's trap) and is stopped in a `finally`. Every load loop is bounded by
a count and a time cap. See docs/benchmarks.md for what each figure means.
"""
from __future__ import annotations

import argparse
import datetime
import http.client
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FUNCS = os.path.join(HERE, "functions")
PY = "/usr/bin/python3"
API = "/api/v1"

# Counts and caps: a loop stops at its count or its time cap, whichever comes first.
# BENCH_SCALE (default 1) multiplies every count and cap, for a quicker smoke run (0.2).
SCALE = float(os.environ.get("BENCH_SCALE", "1"))


def scaled(n):
    return max(1, int(n * SCALE))


WARM_N, WARM_CAP_S = scaled(500), 40 * SCALE
NUMPY_N, NUMPY_CAP_S = scaled(500), 30 * SCALE
NEWVER_N, NEWVER_CAP_S = max(3, scaled(12)), 30 * SCALE
PERCALL_N, PERCALL_CAP_S = scaled(500), 20 * SCALE
THROUGHPUT_S, PERCALL_THROUGHPUT_S, CONNS = max(2, int(10 * SCALE)), max(2, int(8 * SCALE)), 64
COLD_ENV_RESTARTS = 3
BWRAP_N, BWRAP_CAP_S = scaled(60), 10 * SCALE
BWRAP_NUMPY_N, BWRAP_NUMPY_CAP_S = scaled(15), 8 * SCALE
FASTAPI_N, FASTAPI_CAP_S = scaled(500), 15 * SCALE
CELERY_N, CELERY_CAP_S, CELERY_THROUGHPUT_S = scaled(500), 20 * SCALE, max(2, int(10 * SCALE))
# The durability part: the same warm call and throughput run, once per --durability mode.
DUR_N, DUR_CAP_S, DUR_THROUGHPUT_S = scaled(300), 15 * SCALE, max(2, int(5 * SCALE))

# The studies part: a grid of the trivial function, submission to the last row, and the
# CSV export of its table.
STUDY_POINTS, STUDY_CAP_S, STUDY_CONCURRENCY = scaled(10000), 300 * SCALE, 64

TRIVIAL_INPUTS = lambda i: {"x": float(i)}  # noqa: E731
NUMPY_INPUTS = {"a": [[4, 1, 0], [1, 3, 1], [0, 1, 2]], "b": [1, 2, 3]}
NUMPY_NORM = 1.46565621758588

CLIENT_NAME = ("Python http.client, one keep-alive HTTP/1.1 connection, TCP_NODELAY, "
               "sequential (bench/bench.py HttpClient); the same client for MecaPy, "
               "FastAPI and the bubblewrap peer")

NOTES: list[str] = []

# The whole run stays under 5 minutes: every loop's cap is cut to this deadline, and a part
# that would start after it is skipped (with a note).
RUN_BUDGET_S = float(os.environ.get("BENCH_BUDGET_S", "270"))
WF_N, WF_CAP_S = scaled(200), 20 * SCALE
DEADLINE = time.monotonic() + RUN_BUDGET_S
TMP_DIR = None


def time_left():
    return DEADLINE - time.monotonic()


def clean_path(text):
    """results.json names no machine-specific folder: the temp dir and repo are replaced."""
    if TMP_DIR:
        text = text.replace(TMP_DIR, "<tmp>")
    return text.replace(REPO, "<repo>")


def note(msg):
    NOTES.append(msg)
    log("note: " + msg)


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_source(name):
    with open(os.path.join(FUNCS, name + ".py")) as f:
        return f.read()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pct(xs, p):
    """Nearest-rank percentile of a list of numbers (None when empty)."""
    if not xs:
        return None
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def r3(x):
    return None if x is None else round(x, 3)


# ---------------------------------------------------------------- processes we start

class Procs:
    """Every process this run starts: own session, recorded for run.sh, stopped at the end."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.live: list[tuple[str, subprocess.Popen]] = []
        self.pidfile = os.path.join(tmp, "pids")

    def start(self, name, argv, *, log_name, env=None, cwd=None):
        logf = open(os.path.join(self.tmp, log_name), "ab")
        e = dict(os.environ)
        e["PYTHONDONTWRITEBYTECODE"] = "1"
        if env:
            e.update(env)
        p = subprocess.Popen(argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=e, cwd=cwd, start_new_session=True)
        logf.close()
        self.live.append((name, p))
        with open(self.pidfile, "a") as f:
            f.write(f"{p.pid}\n")
        return p

    def stop(self, p, sig=signal.SIGTERM, grace=15.0):
        if p.poll() is None:
            try:
                p.send_signal(sig)
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # whatever is left of its session (prefork children, helpers)
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.live = [(n, q) for n, q in self.live if q is not p]

    def stop_all(self):
        for name, p in reversed(list(self.live)):
            self.stop(p, grace=10.0)


def tail(path, n=30):
    try:
        with open(path, "rb") as f:
            data = f.read()[-16384:].decode("utf-8", "replace")
        return "\n".join(data.splitlines()[-n:])
    except OSError:
        return ""


# ---------------------------------------------------------------- the one HTTP client

class HttpClient:
    """One keep-alive HTTP/1.1 connection. Every HTTP latency figure goes through it."""

    def __init__(self, port, timeout=60.0):
        self.port = port
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
        c.connect()
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = c

    def request(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body).encode()
        h = {"Content-Type": "application/json"} if data is not None else {}
        if headers:
            h.update(headers)
        for attempt in (0, 1):
            if self.conn is None:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=h)
                r = self.conn.getresponse()
                payload = r.read()
                if r.getheader("Connection", "").lower() == "close":
                    self.close()
                return r.status, payload
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # the server closed an idle keep-alive connection: once more
                if attempt:
                    raise
            except Exception:
                self.close()
                raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def latency_loop(client, method, path_fn, body_fn, headers, check, n, cap_s, warmup=0):
    """Sequential calls: warm-up (untimed), then up to n timed calls or cap_s seconds.
    check(i, status, payload) -> bool; failed calls are counted, not timed."""
    cap_s = max(0.0, min(cap_s, time_left()))
    warm_end = time.monotonic() + cap_s / 2
    for i in range(warmup):
        if time.monotonic() > warm_end:
            break
        client.request(method, path_fn(i), body_fn(i), headers)
    lat, errors, first_error, exec_ms = [], 0, None, []
    end = time.monotonic() + cap_s
    t_start = time.monotonic()
    for i in range(n):
        if time.monotonic() > end:
            break
        p, b = path_fn(i), body_fn(i)
        t0 = time.perf_counter()
        try:
            status, payload = client.request(method, p, b, headers)
        except Exception as e:  # noqa: BLE001
            status, payload = None, str(e).encode()
        dt = (time.perf_counter() - t0) * 1000.0
        if status is not None and check(i, status, payload):
            lat.append(dt)
            ex = _execution_ms(payload)
            if ex is not None:
                exec_ms.append(ex)
        else:
            errors += 1
            if first_error is None:
                first_error = answer_summary(status, payload)
    wall = time.monotonic() - t_start
    return {"n": len(lat), "errors": errors, "requested": n, "cap_s": round(cap_s, 1),
            "capped": len(lat) + errors < n, "wall_s": round(wall, 2),
            "p50_ms": r3(pct(lat, 50)), "p90_ms": r3(pct(lat, 90)), "p99_ms": r3(pct(lat, 99)),
            "min_ms": r3(min(lat) if lat else None), "max_ms": r3(max(lat) if lat else None),
            "mean_ms": r3(statistics.fmean(lat) if lat else None), "first_error": first_error,
            "task_execution_ms_p50": pct(exec_ms, 50)}


def _execution_ms(payload):
    """The task's own execution_ms (MecaPy answers only), to split server time from HTTP."""
    if not payload.startswith(b"{") or b'"execution_ms"' not in payload:
        return None
    try:
        return json.loads(payload).get("execution_ms")
    except ValueError:
        return None


def task_ok(payload, expect):
    try:
        t = json.loads(payload)
    except ValueError:
        return False
    return t.get("status") == "completed" and expect(t.get("result"))


def answer_summary(status, payload):
    """HTTP status, task status and error of a failed call, for the notes."""
    try:
        t = json.loads(payload)
        err = t.get("error") or {}
        if isinstance(err, dict):
            err = {k: err.get(k) for k in ("type", "message", "limit") if err.get(k) is not None}
        return f"HTTP {status}, status {t.get('status')!r}, error {json.dumps(err)[:400]}"
    except (ValueError, AttributeError):
        return f"HTTP {status}: {payload[:300].decode('utf-8', 'replace')}"


def trivial_check(i, status, payload):
    return status == 200 and task_ok(payload, lambda r: r == i + 1)


def numpy_check(i, status, payload):
    return status == 200 and task_ok(
        payload, lambda r: isinstance(r, dict) and abs(r.get("norm", 0) - NUMPY_NORM) < 1e-9)


# ---------------------------------------------------------------- /proc helpers

def proc_children_map():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                s = f.read()
            ppid = int(s[s.rfind(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid):
    kids = proc_children_map()
    out, todo = [], list(kids.get(pid, []))
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_ticks(pid):
    """utime+stime+cutime+cstime of one process, in clock ticks (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        fields = s[s.rfind(")") + 2:].split()
        return sum(int(fields[k]) for k in (11, 12, 13, 14)), sum(int(fields[k]) for k in (11, 12))
    except (OSError, ValueError, IndexError):
        return 0, 0


def tree_cpu_s(pid):
    """(own CPU of pid, CPU of pid and its whole tree), seconds. Reaped descendants count
    through their parent's cutime/cstime, so a difference of two readings is the tree's
    CPU in between."""
    hz = os.sysconf("SC_CLK_TCK")
    total, own = cpu_ticks(pid)
    own_total = own
    for d in descendants(pid):
        total += cpu_ticks(d)[0]
    return own_total / hz, total / hz


def machine_busy():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v), idle


def proc_info(pid):
    info = {"pid": pid}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Name", "PPid", "VmRSS"):
                    info[k] = v.strip()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            info["cmdline"] = clean_path(
                f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip())[:160]
    except OSError:
        return None
    try:
        info["exe"] = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        info["exe"] = None
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss", "Private_Clean", "Private_Dirty"):
                    info[k.lower() + "_kib"] = int(v.split()[0])
    except OSError:
        pass
    if "private_clean_kib" in info:
        info["private_mib"] = round((info["private_clean_kib"] + info["private_dirty_kib"]) / 1024, 3)
    if "rss_kib" in info:
        info["rss_mib"] = round(info["rss_kib"] / 1024, 3)
    return info


def memory_snapshot(server_pid):
    """The server, its descendants, and which of them are zygotes and instances.

    Only a process's name (comm) and the base name of its argv[0] are matched, never the
    rest of its command line (a folder name must not decide). A descendant is a zygote
    candidate if they match BENCH_ZYGOTE_MATCH (default "zygote"), or if it is a Python
    process with Python children. A candidate whose parent is itself a candidate is a
    clone of it, hence an instance; the others are zygotes. Every child of a zygote is an
    instance, as is a process matching BENCH_INSTANCE_MATCH (default instance|warm|spare)."""
    procs = [i for i in (proc_info(p) for p in [server_pid] + descendants(server_pid)) if i]
    by_pid = {i["pid"]: i for i in procs}
    zyg_re = re.compile(os.environ.get("BENCH_ZYGOTE_MATCH") or "zygote", re.I)
    inst_re = re.compile(os.environ.get("BENCH_INSTANCE_MATCH") or "instance|warm|spare", re.I)

    def names(i):
        argv0 = (i.get("cmdline") or "").split(" ", 1)[0]
        return i.get("Name", "") + " " + os.path.basename(argv0)

    def is_py(i):
        return "python" in (i.get("exe") or "") or "python" in i.get("Name", "").lower()

    def parent(i):
        try:
            return int(i.get("PPid", "0"))
        except ValueError:
            return 0

    kids = {}
    for i in procs:
        kids.setdefault(parent(i), []).append(i["pid"])
    cand = set()
    for i in procs[1:]:
        py_kids = [k for k in kids.get(i["pid"], []) if k in by_pid and is_py(by_pid[k])]
        if zyg_re.search(names(i)) or (is_py(i) and py_kids):
            cand.add(i["pid"])
    zpids = {p for p in cand if parent(by_pid[p]) not in cand}
    zyg = [by_pid[p] for p in sorted(zpids)]
    inst = [i for i in procs[1:] if i["pid"] not in zpids
            and (parent(i) in zpids or inst_re.search(names(i)))]
    return {"server": procs[0] if procs else None, "descendants": procs[1:],
            "zygotes": zyg, "instances": inst}


# ---------------------------------------------------------------- MecaPy

class MecaPy:
    def __init__(self, procs, binary, data_dir, extra=()):
        self.procs, self.binary, self.data_dir = procs, binary, data_dir
        self.extra = list(extra)
        self.port = None
        self.p = None
        self.token = None
        self.email, self.password = "bench@example.com", "bench-password-1234"

    def create_user(self):
        r = subprocess.run([self.binary, "admin", "create-user", "--email", self.email,
                            "--password", self.password, "--data-dir", self.data_dir],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"admin create-user failed: {r.stdout}{r.stderr}")

    def start(self):
        self.port = free_port()
        # One user sends thousands of calls a second here: the per-user and per-address
        # rate limits (an operator's setting, 600 a minute by default) are turned off so
        # the figures measure the call path, not the limiter.
        argv = [self.binary, "serve", "--data-dir", self.data_dir, "--port", str(self.port),
                "--rate-limit", "0", "--auth-rate-limit", "0"]
        if os.environ.get("BENCH_WORKERS"):
            argv += ["--workers", os.environ["BENCH_WORKERS"]]
        argv += self.extra
        self.p = self.procs.start("mecapy", argv, log_name="mecapy.log")
        deadline = time.monotonic() + 30
        c = HttpClient(self.port, timeout=2)
        while time.monotonic() < deadline:
            if self.p.poll() is not None:
                raise RuntimeError("mecapy serve exited:\n" + tail(os.path.join(self.procs.tmp, "mecapy.log")))
            try:
                st, _ = c.request("GET", "/healthz")
                if st == 200:
                    c.close()
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("mecapy serve did not answer /healthz in 30 s")

    def stop(self):
        if self.p is not None:
            self.procs.stop(self.p, grace=20)
            self.p = None
        deadline = time.monotonic() + 10
        while self.port and port_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    def login(self, c):
        st, b = c.request("POST", API + "/auth/login", {"email": self.email, "password": self.password})
        if st != 200:
            raise RuntimeError(f"login: HTTP {st} {b[:300]!r}")
        self.token = json.loads(b)["token"]

    def create_function(self, c, name, source, **extra):
        body = {"name": name, "code": source}
        body.update(extra)
        st, b = c.request("POST", API + "/functions", body, self.auth())
        if st != 201:
            raise RuntimeError(f"create function {name}: HTTP {st} {b[:500]!r}")
        return json.loads(b)

    def drain(self, c, cap_s=60):
        """After a load run: cancel what is still queued, wait for what runs (bounded)."""
        end = time.monotonic() + cap_s
        cancelled = 0
        while time.monotonic() < end:
            busy = False
            for status in ("queued", "running"):
                st, b = c.request("GET", f"{API}/tasks?status={status}&limit=100", None, self.auth())
                if st != 200:
                    return {"cancelled": cancelled, "error": f"HTTP {st}"}
                items = json.loads(b).get("items", [])
                if items:
                    busy = True
                if status == "queued":
                    for t in items:
                        s2, _ = c.request("POST", f"{API}/tasks/{t['id']}/cancel", None, self.auth())
                        cancelled += s2 == 200
            if not busy:
                return {"cancelled": cancelled, "idle": True}
            time.sleep(0.1)
        return {"cancelled": cancelled, "idle": False}


def run_wrk(port, path, token, body, seconds, conns, tmp, threads=2):
    env = dict(os.environ, BENCH_TOKEN=token or "", BENCH_BODY=json.dumps(body))
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--timeout", "35s",
            "-s", os.path.join(HERE, "execute.lua"), f"http://127.0.0.1:{port}{path}"]
    r = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=seconds + 60)
    for line in r.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            d = json.loads(line[len("BENCH_JSON "):])
            secs = d["duration_us"] / 1e6
            d["seconds"] = round(secs, 2)
            d["ok_per_s"] = round(d["ok"] / secs, 1) if secs else None
            d["errors"] = (d["non_200"] + d["not_completed"] + d["connect_errors"] + d["read_errors"]
                           + d["write_errors"] + d["timeouts"])
            d["connections"], d["threads"] = conns, threads
            return d
    raise RuntimeError(f"wrk gave no result (rc {r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")


# ---------------------------------------------------------------- the run

def time_cmd(argv, n, warmup=1):
    for _ in range(warmup):
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
    xs = []
    for _ in range(n):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True, timeout=60)
        xs.append((time.perf_counter() - t0) * 1000)
    return xs


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_mib"] = int(f.readline().split()[1]) // 1024
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    info["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    try:
        r = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, timeout=5)
        if r.returncode == 0:
            info["repo_head"] = r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def bench_mecapy(R, procs, args):
    data = os.path.join(args.tmp, "data")
    m = MecaPy(procs, args.bin, data)
    m.create_user()
    m.start()
    R["server"] = {"workers": os.environ.get("BENCH_WORKERS") or "server default",
                   "binary": (clean_path(args.bin) if args.bin.startswith(REPO + os.sep)
                              else "<outside the repo>/" + os.path.basename(args.bin)),
                   "binary_mtime": datetime.datetime.fromtimestamp(
                       os.stat(args.bin).st_mtime, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    c = HttpClient(m.port)
    m.login(c)
    trivial_src, numpy_src = read_source("trivial"), read_source("numpy_solve")
    f_triv = m.create_function(c, "bench_trivial", trivial_src)
    f_np = m.create_function(c, "bench_numpy", numpy_src)
    f_ver = m.create_function(c, "bench_versions", trivial_src)
    f_pc = m.create_function(c, "bench_numpy_per_call", numpy_src, isolation="per_call")
    R["per_call_isolation_echoed"] = f_pc.get("isolation")
    if f_pc.get("isolation") != "per_call":
        note(f"the server answered isolation={f_pc.get('isolation')!r} for a per_call function")
    exe = lambda fid: f"{API}/functions/{fid}/execute?wait=30"  # noqa: E731

    log("client floor: GET /healthz")
    R["client_floor"] = latency_loop(c, "GET", lambda i: "/healthz", lambda i: None, None,
                                     lambda i, s, b: s == 200, scaled(300), 5, warmup=20)

    log(f"warm trivial: up to {WARM_N} sequential calls, cap {WARM_CAP_S:.0f} s")
    R["warm"] = latency_loop(c, "POST", lambda i: exe(f_triv["id"]),
                             lambda i: {"inputs": TRIVIAL_INPUTS(i)}, m.auth(), trivial_check,
                             WARM_N, WARM_CAP_S, warmup=20)
    log(f"  p50 {R['warm']['p50_ms']} ms, p99 {R['warm']['p99_ms']} ms, n={R['warm']['n']}")

    log(f"warm numpy: up to {NUMPY_N} sequential calls, cap {NUMPY_CAP_S:.0f} s")
    R["numpy_warm"] = latency_loop(c, "POST", lambda i: exe(f_np["id"]),
                                   lambda i: {"inputs": NUMPY_INPUTS}, m.auth(), numpy_check,
                                   NUMPY_N, NUMPY_CAP_S, warmup=10)
    log(f"  p50 {R['numpy_warm']['p50_ms']} ms, n={R['numpy_warm']['n']}")

    log("memory: the server's process tree while idle after the warm runs")
    R["memory_idle"] = memory_snapshot(m.p.pid)

    log(f"new version: PUT new code then time the first call, {NEWVER_N} times")
    lat, errors, first_error = [], 0, None
    end = time.monotonic() + max(0.0, min(NEWVER_CAP_S, time_left()))
    for k in range(NEWVER_N):
        if time.monotonic() > end:
            break
        src = trivial_src.replace("return x + 1", f"return x + {k + 2}")
        st, b = c.request("PUT", f"{API}/functions/{f_ver['id']}", {"code": src}, m.auth())
        if st != 200:
            errors += 1
            first_error = first_error or f"PUT HTTP {st}: {b[:200]!r}"
            continue
        t0 = time.perf_counter()
        st, b = c.request("POST", exe(f_ver["id"]), {"inputs": {"x": 1.0}}, m.auth())
        dt = (time.perf_counter() - t0) * 1000
        if st == 200 and task_ok(b, lambda r, k=k: r == 1.0 + k + 2):
            lat.append(dt)
        else:
            errors += 1
            first_error = first_error or answer_summary(st, b)
    R["cold_new_version"] = {"n": len(lat), "errors": errors, "requested": NEWVER_N,
                             "p50_ms": r3(pct(lat, 50)), "max_ms": r3(max(lat) if lat else None),
                             "samples_ms": [r3(x) for x in lat], "first_error": first_error}
    log(f"  p50 {R['cold_new_version']['p50_ms']} ms")

    log(f"per_call numpy: up to {PERCALL_N} sequential calls, cap {PERCALL_CAP_S:.0f} s")
    R["per_call"] = latency_loop(c, "POST", lambda i: exe(f_pc["id"]),
                                 lambda i: {"inputs": NUMPY_INPUTS}, m.auth(), numpy_check,
                                 PERCALL_N, PERCALL_CAP_S, warmup=5)
    log(f"  p50 {R['per_call']['p50_ms']} ms, n={R['per_call']['n']}")

    if shutil.which("wrk"):
        log(f"throughput: wrk, {CONNS} connections, {THROUGHPUT_S} s, trivial function")
        rss0 = proc_info(m.p.pid)
        own0, tree0 = tree_cpu_s(m.p.pid)
        tot0, idle0 = machine_busy()
        t0 = time.monotonic()
        w = run_wrk(m.port, exe(f_triv["id"]), m.token, {"inputs": {"x": 1.0}},
                    THROUGHPUT_S, CONNS, args.tmp)
        wall = time.monotonic() - t0
        own1, tree1 = tree_cpu_s(m.p.pid)
        tot1, idle1 = machine_busy()
        rss1 = proc_info(m.p.pid)
        w["server_cpu_s"] = round(own1 - own0, 2)
        w["server_tree_cpu_s"] = round(tree1 - tree0, 2)
        w["wall_s"] = round(wall, 2)
        w["machine_busy_pct"] = round(100.0 * (1 - (idle1 - idle0) / max(1, tot1 - tot0)), 1)
        w["server_rss_mib_before"] = rss0.get("rss_mib") if rss0 else None
        w["server_rss_mib_after"] = rss1.get("rss_mib") if rss1 else None
        R["throughput"] = w
        log(f"  {w['ok_per_s']}/s ok, {w['errors']} errors; drain: {m.drain(c)}")
        R["memory_after_load"] = memory_snapshot(m.p.pid)

        log(f"per_call throughput: wrk, {CONNS} connections, {PERCALL_THROUGHPUT_S} s, numpy per_call")
        R["per_call_throughput"] = run_wrk(m.port, exe(f_pc["id"]), m.token,
                                           {"inputs": NUMPY_INPUTS}, PERCALL_THROUGHPUT_S, CONNS,
                                           args.tmp)
        log(f"  {R['per_call_throughput']['ok_per_s']}/s ok; drain: {m.drain(c)}")
    else:
        note("wrk is not installed: throughput figures not measured")

    c.close()
    m.stop()

    log("reference: python3 -c 'import numpy, scipy.optimize' (1 warm-up + 5 runs), and -c pass")
    ref = time_cmd([PY, "-c", "import numpy, scipy.optimize"], 5)
    R["python_import_numpy_scipy_ms_samples"] = [r3(x) for x in ref]
    R["python_import_numpy_scipy_ms"] = r3(statistics.median(ref))
    R["python_pass_ms"] = r3(statistics.median(time_cmd([PY, "-c", "pass"], 5)))

    log(f"new env: restart the server, time the first numpy call ({COLD_ENV_RESTARTS} restarts)")
    samples = []
    for k in range(COLD_ENV_RESTARTS):
        m.start()
        c = HttpClient(m.port)
        t0 = time.perf_counter()
        st, b = c.request("POST", exe(f_np["id"]), {"inputs": NUMPY_INPUTS}, m.auth())
        dt = (time.perf_counter() - t0) * 1000
        ok = numpy_check(0, st, b)
        samples.append({"ms": r3(dt), "ok": ok, **({} if ok else {"answer": answer_summary(st, b)})})
        c.close()
        m.stop()
    good = [s["ms"] for s in samples if s["ok"]]
    R["cold_new_env"] = {"samples": samples, "median_ms": r3(statistics.median(good)) if good else None}
    log(f"  {samples}")


def disk_sync(folder, n=100):
    """What one synced commit costs at least on this disk: a 4 KiB write then fdatasync."""
    path = os.path.join(folder, "sync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    xs = []
    try:
        for i in range(n):
            os.pwrite(fd, b"x" * 4096, (i % 16) * 4096)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            xs.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    return {"n": n, "p50_ms": r3(pct(xs, 50)), "p90_ms": r3(pct(xs, 90))}


def bench_durability(R, procs, args):
    """The cost of durability: a warm call with --durability full (the default: each
    accepted call and its result are synced to disk, concurrent calls' commits grouped)
    and with fast (synchronous=NORMAL), one server each on its own data folder, measured
    the same way one after the other."""
    R["durability"] = {"disk_sync": disk_sync(args.tmp)}
    log(f"durability: one 4 KiB write + fdatasync in the data folder: p50 "
        f"{R['durability']['disk_sync']['p50_ms']} ms")
    for mode in ("full", "fast"):
        if time_left() < 15:
            note(f"durability {mode}: skipped, the run's budget is spent")
            continue
        data = os.path.join(args.tmp, f"data-durability-{mode}")
        m = MecaPy(procs, args.bin, data, extra=["--durability", mode])
        m.create_user()
        m.start()
        try:
            c = HttpClient(m.port)
            m.login(c)
            f = m.create_function(c, "bench_trivial", read_source("trivial"))
            exe = f"{API}/functions/{f['id']}/execute?wait=30"
            log(f"durability {mode}: up to {DUR_N} sequential warm calls, cap {DUR_CAP_S:.0f} s")
            d = {"warm": latency_loop(c, "POST", lambda i: exe, lambda i: {"inputs": TRIVIAL_INPUTS(i)},
                                      m.auth(), trivial_check, DUR_N, DUR_CAP_S, warmup=20)}
            log(f"  p50 {d['warm']['p50_ms']} ms, p99 {d['warm']['p99_ms']} ms")
            if shutil.which("wrk"):
                d["throughput"] = run_wrk(m.port, exe, m.token, {"inputs": {"x": 1.0}},
                                          DUR_THROUGHPUT_S, CONNS, args.tmp)
                log(f"  {d['throughput']['ok_per_s']}/s ok, {d['throughput']['errors']} errors; "
                    f"drain: {m.drain(c)}")
            c.close()
            R["durability"][mode] = d
        finally:
            m.stop()


def bench_workflow(R, procs, args):
    """Scheduler overhead per node: a 3-node chain of the trivial function (x -> x+1 ->
    x+2 -> x+3), warm, end to end over HTTP (POST .../execute?wait=30 answered 200 with
    the run completed), beside a plain warm call of the same function on the same server.
    per node = chain p50 / 3; overhead per node = (chain p50 - 3 x call p50) / 3: what a
    node costs beyond a plain call (the chain pays one HTTP round trip, three calls pay
    three, so this figure is a lower bound of the scheduling cost, and chain p50 / 3 an
    upper one)."""
    data = os.path.join(args.tmp, "data-workflow")
    m = MecaPy(procs, args.bin, data, extra=os.environ.get("BENCH_WF_EXTRA", "").split())
    m.create_user()
    m.start()
    try:
        c = HttpClient(m.port)
        m.login(c)
        f = m.create_function(c, "bench_wf_trivial", read_source("trivial"))
        body = {"name": "bench-chain", "nodes": [
            {"id": "a", "function": f["id"], "inputs": {"x": {"param": "x"}}},
            {"id": "b", "function": f["id"], "inputs": {"x": {"from": "a"}}},
            {"id": "c", "function": f["id"], "inputs": {"x": {"from": "b"}}}]}
        st, b = c.request("POST", f"{API}/workflows", body, m.auth())
        if st != 201:
            raise RuntimeError(f"saving the workflow: HTTP {st}: {b[:300]!r}")
        wid = json.loads(b)["id"]

        def chain_check(i, status, payload):
            try:
                run = json.loads(payload)
            except ValueError:
                return False
            return status == 200 and run.get("status") == "completed" and \
                run.get("outputs") == {"c": float(i) + 3}

        log(f"workflow: up to {WF_N} sequential 3-node chains, cap {WF_CAP_S:.0f} s")
        R["workflow_chain"] = latency_loop(c, "POST", lambda i: f"{API}/workflows/{wid}/execute?wait=30",
                                           lambda i: {"inputs": TRIVIAL_INPUTS(i)}, m.auth(), chain_check,
                                           WF_N, WF_CAP_S, warmup=20)
        log(f"  p50 {R['workflow_chain']['p50_ms']} ms, n={R['workflow_chain']['n']}")
        R["workflow_call"] = latency_loop(c, "POST", lambda i: f"{API}/functions/{f['id']}/execute?wait=30",
                                          lambda i: {"inputs": TRIVIAL_INPUTS(i)}, m.auth(), trivial_check,
                                          WF_N, WF_CAP_S / 2, warmup=20)
        log(f"  plain call p50 {R['workflow_call']['p50_ms']} ms")
        R["workflow_disk_sync"] = disk_sync(args.tmp)
        c.close()
    finally:
        m.stop()


def bench_studies(R, procs, args):
    """A parameter study (docs/studies.md): a STUDY_POINTS-point grid of the trivial
    function, from the POST to the study's completion (read with ?wait=, which looks again
    every 100 ms), then the CSV export of its table, three times."""
    data = os.path.join(args.tmp, "data-studies")
    m = MecaPy(procs, args.bin, data)
    m.create_user()
    m.start()
    try:
        c = HttpClient(m.port, timeout=120)
        m.login(c)
        f = m.create_function(c, "bench_study_trivial", read_source("trivial"))
        n = STUDY_POINTS
        body = {"target": {"function": f["id"]}, "concurrency": STUDY_CONCURRENCY,
                "design": {"type": "grid", "params": {"x": {"start": 0, "stop": n - 1, "num": n}}},
                "outputs": ["result"]}
        log(f"studies: a {n}-point grid of the trivial function, concurrency {STUDY_CONCURRENCY}, "
            f"cap {STUDY_CAP_S:.0f} s")
        t0 = time.perf_counter()
        st, b = c.request("POST", f"{API}/studies", body, m.auth())
        if st != 201:
            raise RuntimeError(f"POST /studies: HTTP {st}: {b[:300]!r}")
        sid = json.loads(b)["id"]
        created_s = time.perf_counter() - t0
        end = time.monotonic() + max(5.0, min(STUDY_CAP_S, time_left() - 10))
        while True:
            st, b = c.request("GET", f"{API}/studies/{sid}?wait=10", None, m.auth())
            s = json.loads(b)
            if st != 200 or s.get("status") != "running" or time.monotonic() > end:
                break
        done_s = time.perf_counter() - t0
        prog = s.get("progress", {})
        d = {"points": n, "concurrency": STUDY_CONCURRENCY, "status": s.get("status"),
             "completed": prog.get("completed"), "failed": prog.get("failed"),
             "created_s": round(created_s, 3),
             "submission_to_last_row_s": round(done_s, 3) if s.get("status") == "completed" else None}
        log(f"  created in {d['created_s']} s; {d['status']} after {round(done_s, 2)} s "
            f"({d['completed']} completed, {d['failed']} failed)")
        hdr = dict(m.auth())
        hdr["Accept"] = "text/csv"
        lat, rows = [], None
        for _ in range(3):
            t1 = time.perf_counter()
            st, b = c.request("GET", f"{API}/studies/{sid}/results", None, hdr)
            if st != 200:
                raise RuntimeError(f"CSV export: HTTP {st}: {b[:300]!r}")
            lat.append((time.perf_counter() - t1) * 1000)
            rows = b.count(b"\n") - 1
        d["csv_rows"] = rows
        d["csv_bytes"] = len(b)
        d["csv_export_ms_median"] = round(statistics.median(lat), 1)
        d["csv_export_ms_min"] = round(min(lat), 1)
        log(f"  CSV export of {rows} rows ({len(b)} bytes): median {d['csv_export_ms_median']} ms")
        c.close()
        R["studies"] = d
    finally:
        m.stop()


IMPORT_MODULES = ("matplotlib.pyplot", "pandas")
IMPORT_N = max(3, scaled(5))
CCX_DECK = "/usr/share/doc/calculix-ccx-test/examples/test/achtel2.inp"
CCX_N = max(3, scaled(10))


def bench_imports(R, procs, args):
    """The base environment's heavy modules that the zygote does not preload (only
    --preload is: numpy and scipy): the first call of a fresh instance that imports one
    (a new version each time, so a new instance), against a warm call of the same
    version (already imported) and `python3 -c "import X"` in the same run. Then the
    solver environment: a warm call that runs CalculiX on a small deck of its test
    suite, against `ccx` run directly on the host."""
    data = os.path.join(args.tmp, "data-imports")
    m = MecaPy(procs, args.bin, data)
    m.create_user()
    m.start()
    try:
        c = HttpClient(m.port)
        m.login(c)
        exe = lambda fid: f"{API}/functions/{fid}/execute?wait=60"  # noqa: E731
        src0 = read_source("import_heavy")
        out = {}
        for mod in IMPORT_MODULES:
            src = src0.replace("MODULE", mod)
            f = m.create_function(c, "bench_import_" + mod.replace(".", "_"), src)
            first, warm, errors = [], [], 0
            for k in range(IMPORT_N):
                if time_left() < 30:
                    break
                if k:
                    st, b = c.request("PUT", f"{API}/functions/{f['id']}",
                                      {"code": src.replace("k + 0", f"k + {k}")}, m.auth())
                    if st != 200:
                        errors += 1
                        continue
                for bucket in (first, warm):
                    t0 = time.perf_counter()
                    st, b = c.request("POST", exe(f["id"]), {"inputs": {"k": 1}}, m.auth())
                    dt = (time.perf_counter() - t0) * 1000
                    if st == 200 and task_ok(b, lambda r, k=k: r == 1 + k):
                        bucket.append(dt)
                    else:
                        errors += 1
            ref = time_cmd([PY, "-c", f"import {mod}"], 3)
            out[mod] = {"first_call_p50_ms": r3(pct(first, 50)), "warm_call_p50_ms": r3(pct(warm, 50)),
                        "python_import_ms": r3(statistics.median(ref)), "n": len(first), "errors": errors,
                        "first_call_samples_ms": [r3(x) for x in first]}
            log(f"  import {mod}: first call p50 {out[mod]['first_call_p50_ms']} ms, warm "
                f"{out[mod]['warm_call_p50_ms']} ms, python3 -c import {out[mod]['python_import_ms']} ms")
        R["first_import"] = out

        if shutil.which("ccx") and os.path.exists(CCX_DECK) and time_left() > 30:
            with open(CCX_DECK) as fh:
                deck = fh.read()
            f = m.create_function(c, "bench_ccx", read_source("ccx_deck"), solvers=["calculix"])

            def ccx_check(i, status, payload):
                return status == 200 and task_ok(payload, lambda r: isinstance(r, int) and r > 0)

            log(f"solver: up to {CCX_N} warm calls running ccx on {os.path.basename(CCX_DECK)}")
            R["ccx_warm"] = latency_loop(c, "POST", lambda i: exe(f["id"]), lambda i: {"inputs": {"deck": deck}},
                                         m.auth(), ccx_check, CCX_N, 30 * SCALE, warmup=1)
            wd = os.path.join(args.tmp, "ccx-direct")
            os.makedirs(wd, exist_ok=True)
            shutil.copyfile(CCX_DECK, os.path.join(wd, "bench.inp"))
            direct = []
            for _ in range(CCX_N):
                t0 = time.perf_counter()
                subprocess.run(["ccx", "-i", "bench"], cwd=wd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
                direct.append((time.perf_counter() - t0) * 1000)
            R["ccx_direct_p50_ms"] = r3(statistics.median(direct))
            log(f"  p50 {R['ccx_warm']['p50_ms']} ms in the sandbox over HTTP; ccx directly "
                f"{R['ccx_direct_p50_ms']} ms")
        else:
            note("the solver figure is not measured: calculix-ccx or calculix-ccx-test is not installed")
        c.close()
    finally:
        m.stop()


ENVS_N = max(2, scaled(3))


def _bench_wheels(tmp, k):
    """Three tiny pure-Python wheels (benchpkg_a/b/c, version 1.0.k), built here with pip
    wheel from generated sources, so each round is a new lock (a new environment)."""
    out = os.path.join(tmp, f"wheels-{k}")
    os.makedirs(out, exist_ok=True)
    for name in ("a", "b", "c"):
        src = os.path.join(tmp, f"src-{k}-{name}")
        os.makedirs(os.path.join(src, f"benchpkg_{name}"), exist_ok=True)
        with open(os.path.join(src, "pyproject.toml"), "w") as f:
            f.write(f'[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
                    f'[project]\nname = "benchpkg-{name}"\nversion = "1.0.{k}"\n')
        with open(os.path.join(src, f"benchpkg_{name}", "__init__.py"), "w") as f:
            f.write(f"VALUE = {k}\n")
        subprocess.run([PY, "-m", "pip", "wheel", "--isolated", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "-q", "-w", out, src], check=True, capture_output=True, timeout=120)
    return out, sorted(os.path.join(out, w) for w in os.listdir(out))


def bench_envs(R, procs, args):
    """Per-function requirements (docs/functions.md#requirements): an environment of three
    small wheels resolved at upload and built in the background (upload to ready), against
    `pip install --no-index --no-deps --target` of the same wheels; then the first call of
    a function in that new environment, against `python3 -c "import ..."` of the installed
    copy. Each round is a new set of versions, so a new environment and a new zygote."""
    if subprocess.run([PY, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        note("envs part not measured: python3 -m pip is not installed")
        return
    house = os.path.join(args.tmp, "envs-wheelhouse")
    os.makedirs(house, exist_ok=True)
    rounds = [_bench_wheels(os.path.join(args.tmp, "envs-src"), k) for k in range(ENVS_N)]
    for folder, wheels in rounds:
        for w in wheels:
            shutil.copy(w, house)
    data = os.path.join(args.tmp, "data-envs")
    m = MecaPy(procs, args.bin, data, extra=["--wheelhouse", house])
    m.create_user()
    m.start()
    out = {"upload_ms": [], "ready_ms": [], "build_ms": [], "first_call_ms": [], "pip_target_ms": [],
           "python_import_ms": [], "errors": 0}
    try:
        c = HttpClient(m.port)
        m.login(c)
        src = ("import benchpkg_a, benchpkg_b, benchpkg_c\n\n"
               "def main(k: int) -> int:\n    return benchpkg_a.VALUE + benchpkg_b.VALUE + benchpkg_c.VALUE + k\n")
        for k, (folder, wheels) in enumerate(rounds):
            if time_left() < 60:
                break
            reqs = [f"benchpkg-{n}==1.0.{k}" for n in ("a", "b", "c")]
            t0 = time.perf_counter()
            f = m.create_function(c, f"bench_env_{k}", src, requirements=reqs)
            t1 = time.perf_counter()
            env_id = f["environment"]["id"]
            while True:
                st, b = c.request("GET", f"{API}/environments/{env_id}", None, m.auth())
                e = json.loads(b) if st == 200 else {}
                if e.get("status") in ("ready", "failed") or time.perf_counter() - t1 > 120:
                    break
                time.sleep(0.01)
            t2 = time.perf_counter()
            if e.get("status") != "ready":
                out["errors"] += 1
                continue
            st, b = c.request("POST", f"{API}/functions/{f['id']}/execute?wait=60", {"inputs": {"k": 1}}, m.auth())
            t3 = time.perf_counter()
            if st != 200 or not task_ok(b, lambda r, k=k: r == 3 * k + 1):
                out["errors"] += 1
                continue
            out["upload_ms"].append((t1 - t0) * 1000)
            out["ready_ms"].append((t2 - t1) * 1000)
            out["build_ms"].append(e.get("build_ms") or 0)
            out["first_call_ms"].append((t3 - t2) * 1000)
            target = os.path.join(args.tmp, f"envs-target-{k}")
            t0 = time.perf_counter()
            subprocess.run([PY, "-m", "pip", "install", "--isolated", "--no-index", "--no-deps", "--no-compile",
                            "--disable-pip-version-check", "-q", "--target", target, *wheels],
                           check=True, capture_output=True, timeout=120)
            out["pip_target_ms"].append((time.perf_counter() - t0) * 1000)
            env = dict(os.environ, PYTHONPATH=target)
            t0 = time.perf_counter()
            subprocess.run([PY, "-c", "import benchpkg_a, benchpkg_b, benchpkg_c"], check=True, env=env,
                           capture_output=True, timeout=60)
            out["python_import_ms"].append((time.perf_counter() - t0) * 1000)
        c.close()
    finally:
        m.stop()
    R["envs"] = {key: (r3(statistics.median(v)) if isinstance(v, list) and v else v) for key, v in out.items()}
    R["envs"]["rounds"] = len(out["ready_ms"])
    e = R["envs"]
    log(f"  envs: upload (resolution) {e['upload_ms']} ms, upload to ready {e['ready_ms']} ms "
        f"(build {e['build_ms']} ms) vs pip install --target {e['pip_target_ms']} ms; first call "
        f"{e['first_call_ms']} ms vs python3 -c import {e['python_import_ms']} ms")


def bench_dashboard(R, procs, args):
    """The dashboard's time to interactive in chromium (bench/dashboard.mjs: the first
    page, and a task page whose result is 100,000 rows), against a server serving web/dist.
    Needs node, the npm packages (npm ci), chromium and a built web/dist."""
    web = os.path.join(REPO, "web", "dist", "index.html")
    if not os.path.exists(web) or not shutil.which("node") or not os.path.exists("/usr/bin/chromium"):
        note("dashboard part not measured: it needs web/dist (make web), node and chromium")
        return
    log("dashboard: time to interactive in chromium (first page, 100,000-row task page)")
    env = dict(os.environ, MECAPY_BIN=args.bin)
    p = subprocess.run(["node", os.path.join(HERE, "dashboard.mjs")], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=max(30, min(600, time_left() - 10)))
    if p.returncode != 0:
        raise RuntimeError(f"bench/dashboard.mjs exited {p.returncode}: {p.stderr[-1500:]}")
    d = json.loads(p.stdout.strip().splitlines()[-1])
    log(f"  first page {d['first_page_tti_ms']} ms, 100,000-row task page {d['task_100k_page_tti_ms']} ms, "
        f"its table {d['task_100k_table_after_click_ms']} ms after the click")
    R["dashboard"] = d


def bench_bwrap(R, procs, args):
    if not shutil.which("bwrap"):
        note("bubblewrap is not installed: bwrap peer not measured")
        return
    port = free_port()
    p = procs.start("bwrap-peer", [PY, os.path.join(HERE, "peer_bwrap.py"), str(port), FUNCS],
                    log_name="bwrap-peer.log")
    try:
        wait_http(port, p, "bwrap peer", os.path.join(args.tmp, "bwrap-peer.log"))
        c = HttpClient(port)
        ck = lambda i, s, b: s == 200 and task_ok(b, lambda r: r == i + 1)  # noqa: E731
        log(f"bwrap peer: up to {BWRAP_N} calls of the trivial function, cap {BWRAP_CAP_S:.0f} s")
        R["bwrap"] = latency_loop(c, "POST", lambda i: "/execute/trivial",
                                  lambda i: {"inputs": TRIVIAL_INPUTS(i)}, None, ck,
                                  BWRAP_N, BWRAP_CAP_S, warmup=3)
        log(f"  p50 {R['bwrap']['p50_ms']} ms")
        R["bwrap_numpy"] = latency_loop(c, "POST", lambda i: "/execute/numpy_solve",
                                        lambda i: {"inputs": NUMPY_INPUTS}, None, numpy_check,
                                        BWRAP_NUMPY_N, BWRAP_NUMPY_CAP_S, warmup=1)
        log(f"  numpy p50 {R['bwrap_numpy']['p50_ms']} ms")
        c.close()
    finally:
        procs.stop(p)


def wait_http(port, p, what, logpath, cap_s=30):
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"{what} exited:\n{tail(logpath)}")
        if port_open(port):
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen in {cap_s} s:\n{tail(logpath)}")


def bench_fastapi(R, procs, args):
    try:
        subprocess.run([PY, "-c", "import fastapi, uvicorn"], check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError:
        note("python3-fastapi / python3-uvicorn are not installed: FastAPI peer not measured")
        return
    port = free_port()
    p = procs.start("uvicorn", [PY, "-m", "uvicorn", "peer_fastapi:app", "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1", "--no-access-log",
                                "--log-level", "warning"],
                    log_name="uvicorn.log", cwd=HERE, env={"BENCH_FUNCTIONS_DIR": FUNCS})
    try:
        wait_http(port, p, "uvicorn", os.path.join(args.tmp, "uvicorn.log"))
        c = HttpClient(port)
        ck = lambda i, s, b: s == 200 and task_ok(b, lambda r: r == i + 1)  # noqa: E731
        log(f"FastAPI peer: up to {FASTAPI_N} calls, cap {FASTAPI_CAP_S:.0f} s")
        R["fastapi"] = latency_loop(c, "POST", lambda i: "/execute/trivial",
                                    lambda i: {"inputs": TRIVIAL_INPUTS(i)}, None, ck,
                                    FASTAPI_N, FASTAPI_CAP_S, warmup=50)
        R["fastapi_numpy"] = latency_loop(c, "POST", lambda i: "/execute/numpy_solve",
                                          lambda i: {"inputs": NUMPY_INPUTS}, None, numpy_check,
                                          FASTAPI_N, FASTAPI_CAP_S / 2, warmup=20)
        log(f"  p50 {R['fastapi']['p50_ms']} ms, numpy p50 {R['fastapi_numpy']['p50_ms']} ms")
        c.close()
    finally:
        procs.stop(p)


def bench_celery(R, procs, args):
    missing = [x for x in ("redis-server",) if not shutil.which(x)]
    try:
        subprocess.run([PY, "-c", "import celery, redis"], check=True, capture_output=True, timeout=60)
    except subprocess.CalledProcessError:
        missing.append("python3-celery/python3-redis")
    if missing:
        note(f"{', '.join(missing)} not installed: Celery+Redis peer not measured")
        return
    rport = free_port()
    rdir = os.path.join(args.tmp, "redis")
    os.makedirs(rdir)
    redis = procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(rport),
                                  "--save", "", "--appendonly", "no", "--daemonize", "no",
                                  "--dir", rdir, "--protected-mode", "yes"],
                        log_name="redis.log")
    worker = None
    try:
        wait_http(rport, redis, "redis-server", os.path.join(args.tmp, "redis.log"))
        url = f"redis://127.0.0.1:{rport}/0"
        env = {"BENCH_REDIS_URL": url}
        worker = procs.start("celery", [PY, "-m", "celery", "-A", "peer_celery", "worker",
                                        "-P", "prefork", "-c", "2", "-l", "warning",
                                        "--without-heartbeat", "--without-gossip", "--without-mingle",
                                        "-n", f"bench{rport}@localhost"],
                             log_name="celery.log", cwd=HERE, env=env)
        log(f"Celery+Redis peer: {CELERY_N} sequential .delay().get() (cap {CELERY_CAP_S:.0f} s), "
            f"then {CONNS} threads for {CELERY_THROUGHPUT_S} s")
        e = dict(os.environ, PYTHONDONTWRITEBYTECODE="1", **env)
        r = subprocess.run([PY, "peer_celery.py", "client", str(CELERY_N), str(CELERY_CAP_S),
                            str(CONNS), str(CELERY_THROUGHPUT_S)], cwd=HERE, env=e,
                           capture_output=True, text=True,
                           timeout=60 + CELERY_CAP_S + CELERY_THROUGHPUT_S + 60)
        if r.returncode != 0 or not r.stdout.strip():
            raise RuntimeError(f"celery client failed: {r.stderr[-800:]}\n"
                               f"worker log:\n{tail(os.path.join(args.tmp, 'celery.log'))}")
        R["celery"] = json.loads(r.stdout.strip().splitlines()[-1])
        log(f"  p50 {R['celery']['seq']['p50_ms']:.3f} ms, {R['celery']['throughput']['per_s']:.1f}/s")
    finally:
        if worker is not None:
            procs.stop(worker, grace=15)
        procs.stop(redis)


# ---------------------------------------------------------------- report

def ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def build_results(R, machine):
    g = lambda *ks: _get(R, *ks)  # noqa: E731
    mem = R.get("memory_idle") or {}
    inst = [i["private_mib"] for i in mem.get("instances", []) if "private_mib" in i]
    zyg = [i["rss_mib"] for i in mem.get("zygotes", []) if "rss_mib" in i]
    if not mem:
        note("instance_private_mib, zygote_rss_mib: no memory snapshot was taken (the MecaPy "
             "part did not reach it)")
    elif not inst:
        note(f"instance_private_mib: no warm instance process found among the server's "
             f"{len(mem.get('descendants', []))} descendant(s) "
             f"({', '.join(sorted({d.get('Name', '?') for d in mem.get('descendants', [])})) or 'none'}); "
             f"see memory_idle in results.json")
    if mem and not zyg:
        note("zygote_rss_mib: no zygote process found among the server's descendants")
    cold_env = g("cold_new_env", "median_ms")
    ref = R.get("python_import_numpy_scipy_ms")
    thr = g("throughput", "ok_per_s")
    cel_thr = g("celery", "throughput", "per_s")
    bw = g("bwrap", "p50_ms")
    warm = g("warm", "p50_ms")
    res = {
        "warm_p50_ms": warm,
        "warm_p99_ms": g("warm", "p99_ms"),
        "warm_task_execution_ms_p50": g("warm", "task_execution_ms_p50"),
        "numpy_warm_p50_ms": g("numpy_warm", "p50_ms"),
        "cold_new_version_p50_ms": g("cold_new_version", "p50_ms"),
        "cold_new_env_ms": cold_env,
        "python_import_numpy_scipy_ms": ref,
        "cold_new_env_ratio": r3(ratio(cold_env, ref)),
        "throughput_per_s": thr,
        "throughput_errors": g("throughput", "errors"),
        "per_call_p50_ms": g("per_call", "p50_ms"),
        "per_call_throughput_per_s": g("per_call_throughput", "ok_per_s"),
        "per_call_throughput_errors": g("per_call_throughput", "errors"),
        "instance_private_mib": r3(statistics.median(inst)) if inst else None,
        "zygote_rss_mib": r3(statistics.median(zyg)) if zyg else None,
        "instances_found": len(inst),
        "instance_private_mib_range": [min(inst), max(inst)] if inst else None,
        "zygotes_found": len(zyg),
        "server_rss_mib": g("throughput", "server_rss_mib_after") or _get(mem, "server", "rss_mib"),
        "server_cpu_s_during_throughput": g("throughput", "server_cpu_s"),
        "server_tree_cpu_s_during_throughput": g("throughput", "server_tree_cpu_s"),
        "warm_vs_bwrap_speedup": r3(ratio(bw, warm)),
        "throughput_vs_celery": r3(ratio(thr, cel_thr)),
        "disk_sync_p50_ms": g("durability", "disk_sync", "p50_ms"),
        "workflow_chain_p50_ms": g("workflow_chain", "p50_ms"),
        "workflow_call_p50_ms": g("workflow_call", "p50_ms"),
        "workflow_per_node_ms": r3(ratio(g("workflow_chain", "p50_ms"), 3)),
        "workflow_overhead_per_node_ms": (r3((g("workflow_chain", "p50_ms") - 3 * g("workflow_call", "p50_ms")) / 3)
                                          if g("workflow_chain", "p50_ms") is not None
                                          and g("workflow_call", "p50_ms") is not None else None),
        "study_points": g("studies", "points"),
        "study_submission_to_last_row_s": g("studies", "submission_to_last_row_s"),
        "study_csv_rows": g("studies", "csv_rows"),
        "study_csv_export_ms": g("studies", "csv_export_ms_median"),
        "first_import": R.get("first_import"),
        "ccx_warm_call_p50_ms": g("ccx_warm", "p50_ms"),
        "ccx_direct_p50_ms": R.get("ccx_direct_p50_ms"),
        "dashboard": R.get("dashboard"),
        "envs": R.get("envs"),
        "durability": {mode: {"warm_p50_ms": g("durability", mode, "warm", "p50_ms"),
                              "warm_p99_ms": g("durability", mode, "warm", "p99_ms"),
                              "throughput_per_s": g("durability", mode, "throughput", "ok_per_s"),
                              "throughput_errors": g("durability", mode, "throughput", "errors")}
                       for mode in ("full", "fast")},
        "peers": {
            "bwrap_per_call_p50_ms": bw,
            "bwrap_numpy_per_call_p50_ms": g("bwrap_numpy", "p50_ms"),
            "celery_redis_p50_ms": r3(g("celery", "seq", "p50_ms")),
            "celery_redis_throughput_per_s": r3(cel_thr),
            "fastapi_inprocess_p50_ms": g("fastapi", "p50_ms"),
            "fastapi_inprocess_numpy_p50_ms": g("fastapi_numpy", "p50_ms"),
        },
        "http_client": CLIENT_NAME,
        "http_client_floor_p50_ms": g("client_floor", "p50_ms"),
        "throughput_client": f"wrk, 2 threads, {CONNS} keep-alive connections, bench/execute.lua "
                             "(a response counts only if HTTP 200 and status completed)",
        "bwrap_peer_timing": "over HTTP: bench/peer_bwrap.py runs one fresh bwrap sandbox per "
                             "request, timed by the same HTTP client",
        "celery_client": f".delay(x).get() from Python, sequential; then {CONNS} client threads",
        "machine": machine,
        "details": R,
        "notes": NOTES,
    }
    return res


def _get(d, *ks):
    for k in ks:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def fmt(v, unit=""):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return f"{v}{unit}"


def table(res):
    d = res["details"]
    p = res["peers"]

    def le(v, t):
        return None if v is None else v <= t

    def ge(v, t):
        return None if v is None else v >= t

    def nnote(key, want):
        n = _get(d, key, "n")
        return f" (n={n}<{want})" if n is not None and n < want else ""

    ref = res["python_import_numpy_scipy_ms"]
    thr_err = res.get("throughput_errors")
    rows = [
        ("warm p50 (trivial, HTTP)", fmt(res["warm_p50_ms"], " ms") + nnote("warm", 500), "<= 2 ms", le(res["warm_p50_ms"], 2)),
        ("warm p99 (trivial, HTTP)", fmt(res["warm_p99_ms"], " ms"), "<= 10 ms", le(res["warm_p99_ms"], 10)),
        ("numpy warm p50", fmt(res["numpy_warm_p50_ms"], " ms") + nnote("numpy_warm", 500), "<= 3 ms", le(res["numpy_warm_p50_ms"], 3)),
        ("new version, first call p50", fmt(res["cold_new_version_p50_ms"], " ms") + nnote("cold_new_version", 10), "<= 30 ms", le(res["cold_new_version_p50_ms"], 30)),
        ("new env, first call after restart", fmt(res["cold_new_env_ms"], " ms") + f" = {fmt(res['cold_new_env_ratio'])}x import ({fmt(ref, ' ms')})",
         "<= 1.3x import", le(res["cold_new_env_ratio"], 1.3)),
        ("throughput (trivial, 64 conns)", fmt(res["throughput_per_s"], "/s") + (f", {thr_err} errors" if thr_err else ""), ">= 1500/s",
         None if res["throughput_per_s"] is None else (res["throughput_per_s"] >= 1500 and not thr_err)),
        ("throughput vs Celery+Redis", fmt(res["throughput_vs_celery"], "x"), ">= 2x", ge(res["throughput_vs_celery"], 2)),
        ("per_call numpy p50", fmt(res["per_call_p50_ms"], " ms") + nnote("per_call", 500), "<= 3 ms", le(res["per_call_p50_ms"], 3)),
        ("per_call numpy throughput", fmt(res["per_call_throughput_per_s"], "/s"), ">= 250/s", ge(res["per_call_throughput_per_s"], 250)),
        ("instance private memory", fmt(res["instance_private_mib"], " MiB"), "<= 3 MiB", le(res["instance_private_mib"], 3)),
        ("warm vs bwrap per call", fmt(res["warm_vs_bwrap_speedup"], "x faster"), ">= 50x", ge(res["warm_vs_bwrap_speedup"], 50)),
        ("zygote RSS", fmt(res["zygote_rss_mib"], " MiB"), "-", None),
        ("server RSS (after load)", fmt(res["server_rss_mib"], " MiB"), "-", None),
        ("server CPU during throughput run", fmt(res["server_cpu_s_during_throughput"], " s") + f" (tree {fmt(res['server_tree_cpu_s_during_throughput'], ' s')}, wall {fmt(_get(d, 'throughput', 'wall_s'), ' s')})", "-", None),
        ("workflow: 3-node chain p50 (HTTP)", fmt(res.get("workflow_chain_p50_ms"), " ms") + nnote("workflow_chain", 200), "-", None),
        ("workflow: per node (chain / 3)", fmt(res.get("workflow_per_node_ms"), " ms"), "<= 5 ms", le(res.get("workflow_per_node_ms"), 5)),
        ("workflow: per node beyond a plain call", fmt(res.get("workflow_overhead_per_node_ms"), " ms") + f" (call p50 {fmt(res.get('workflow_call_p50_ms'), ' ms')}, disk sync p50 {fmt(_get(d, 'workflow_disk_sync', 'p50_ms'), ' ms')})", "-", None),
        (f"study: {fmt(res.get('study_points'))}-point grid, submission to last row",
         fmt(res.get("study_submission_to_last_row_s"), " s"), "<= 15 s", le(res.get("study_submission_to_last_row_s"), 15)),
        (f"study: CSV export of {fmt(res.get('study_csv_rows'))} rows", fmt(res.get("study_csv_export_ms"), " ms"),
         "<= 1000 ms", le(res.get("study_csv_export_ms"), 1000)),
        *[(f"first import of {mod} (new instance p50 / warm p50 / python3 -c)",
           fmt(v.get("first_call_p50_ms"), " ms") + " / " + fmt(v.get("warm_call_p50_ms"), " ms") + " / "
           + fmt(v.get("python_import_ms"), " ms"), "-", None)
          for mod, v in (res.get("first_import") or {}).items()],
        ("solver: warm call running ccx (achtel2) p50 / ccx directly",
         fmt(res.get("ccx_warm_call_p50_ms"), " ms") + " / " + fmt(res.get("ccx_direct_p50_ms"), " ms"), "-", None),
        ("environment of 3 wheels: upload (resolution) / upload to ready / pip install --target",
         fmt(_get(res, "envs", "upload_ms"), " ms") + " / " + fmt(_get(res, "envs", "ready_ms"), " ms") + " / "
         + fmt(_get(res, "envs", "pip_target_ms"), " ms"), "-", None),
        ("first call in a new environment / python3 -c import",
         fmt(_get(res, "envs", "first_call_ms"), " ms") + " / " + fmt(_get(res, "envs", "python_import_ms"), " ms"),
         "-", None),
        ("dashboard: first page interactive (chromium, cold)", fmt(_get(res, "dashboard", "first_page_tti_ms"), " ms"), "-", None),
        ("dashboard: first page script, compressed", fmt(_get(res, "dashboard", "first_page_script_bytes"), " B"),
         "<= 300000 B", le(_get(res, "dashboard", "first_page_script_bytes"), 300000)),
        ("dashboard: 100,000-row task page interactive", fmt(_get(res, "dashboard", "task_100k_page_tti_ms"), " ms"), "-", None),
        ("dashboard: 100,000-row table drawn after Show it", fmt(_get(res, "dashboard", "task_100k_table_after_click_ms"), " ms")
         + f" (last row after a scroll: {fmt(_get(res, 'dashboard', 'task_100k_scroll_to_last_row_ms'), ' ms')})", "-", None),
        ("dashboard: workflow editor, 200 nodes drawn", fmt(_get(res, "dashboard", "editor_200_nodes_drawn_ms"), " ms"), "-", None),
        ("dashboard: editor, 200 nodes, one move's work", fmt(_get(res, "dashboard", "editor_200_nodes_move_ms"), " ms")
         + f" ({fmt(_get(res, 'dashboard', 'editor_200_nodes_moves_over_a_frame'))} of 60 over 16.7 ms)", "<= 16.7 ms",
         le(_get(res, "dashboard", "editor_200_nodes_move_ms"), 16.7)),
        ("disk: 4 KiB write + fdatasync p50", fmt(res.get("disk_sync_p50_ms"), " ms"), "-", None),
        ("durability full: warm p50 / p99", fmt(_get(res, "durability", "full", "warm_p50_ms"), " ms") + " / "
         + fmt(_get(res, "durability", "full", "warm_p99_ms"), " ms"), "-", None),
        ("durability fast: warm p50 / p99", fmt(_get(res, "durability", "fast", "warm_p50_ms"), " ms") + " / "
         + fmt(_get(res, "durability", "fast", "warm_p99_ms"), " ms"), "-", None),
        (f"durability full: throughput ({CONNS} conns)", fmt(_get(res, "durability", "full", "throughput_per_s"), "/s"), "-", None),
        (f"durability fast: throughput ({CONNS} conns)", fmt(_get(res, "durability", "fast", "throughput_per_s"), "/s"), "-", None),
        ("HTTP client floor (GET /healthz p50)", fmt(res["http_client_floor_p50_ms"], " ms"), "-", None),
        ("peer: bwrap per call p50 (trivial)", fmt(p["bwrap_per_call_p50_ms"], " ms"), "-", None),
        ("peer: bwrap per call p50 (numpy)", fmt(p["bwrap_numpy_per_call_p50_ms"], " ms"), "-", None),
        ("peer: Celery+Redis p50", fmt(p["celery_redis_p50_ms"], " ms"), "-", None),
        ("peer: Celery+Redis throughput", fmt(p["celery_redis_throughput_per_s"], "/s"), "-", None),
        ("peer: FastAPI in-process p50 (trivial)", fmt(p["fastapi_inprocess_p50_ms"], " ms"), "-", None),
        ("peer: FastAPI in-process p50 (numpy)", fmt(p["fastapi_inprocess_numpy_p50_ms"], " ms"), "-", None),
    ]
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    w2 = max(len(r[2]) for r in rows)
    lines = [f"{'figure':<{w0}}  {'value':<{w1}}  {'target':<{w2}}  verdict",
             f"{'-' * w0}  {'-' * w1}  {'-' * w2}  -------"]
    for name, val, tgt, ok in rows:
        v = "-" if tgt == "-" else ("n/a" if ok is None else ("PASS" if ok else "FAIL"))
        lines.append(f"{name:<{w0}}  {val:<{w1}}  {tgt:<{w2}}  {v}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    global TMP_DIR
    TMP_DIR = os.path.abspath(args.tmp)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    procs = Procs(args.tmp)
    R: dict = {}
    machine = machine_info()
    a0 = machine_busy()
    time.sleep(1.0)
    a1 = machine_busy()
    busy = round(100.0 * (1 - (a1[1] - a0[1]) / max(1, a1[0] - a0[0])), 1)
    machine["cpu_busy_pct_before_run"] = busy
    if busy > 15:
        note(f"the machine was {busy}% busy in the second before the run started (other "
             f"processes): latencies and throughputs are perturbed")
    t0 = time.monotonic()
    failed = []
    try:
        parts = (("mecapy", bench_mecapy), ("durability", bench_durability), ("workflow", bench_workflow),
                 ("studies", bench_studies), ("dashboard", bench_dashboard),
                 ("imports", bench_imports), ("envs", bench_envs),
                 ("bwrap", bench_bwrap),
                 ("fastapi", bench_fastapi), ("celery", bench_celery))
        # BENCH_PARTS=mecapy,durability runs only those parts (the others: not measured).
        only = [p for p in os.environ.get("BENCH_PARTS", "").split(",") if p]
        for name, fn in parts:
            if only and name not in only:
                continue
            if time_left() < 20:
                note(f"{name} part skipped: the run's {RUN_BUDGET_S:.0f} s budget is spent")
                failed.append(name)
                continue
            try:
                fn(R, procs, args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001  one part failing must not hide the others
                failed.append(name)
                note(f"{name} part failed: {type(e).__name__}: {str(e)[:1500]}")
                procs.stop_all()
    finally:
        procs.stop_all()
    R["total_s"] = round(time.monotonic() - t0, 1)
    try:
        with open("/proc/loadavg") as f:
            machine["loadavg_at_end"] = f.read().split()[:3]
    except OSError:
        pass
    res = build_results(R, machine)
    out = table(res)
    res["table"] = out.splitlines()
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
        f.write("\n")
    print()
    print(f"MecaPy benchmarks, {machine['date']}, {machine.get('nproc')} CPUs, kernel "
          f"{machine['kernel']}, {machine.get('cpu', '')}  (run took {R['total_s']} s)")
    print(f"HTTP latency client: {CLIENT_NAME}")
    print(f"Throughput client: {res['throughput_client']}")
    print()
    print(out)
    if NOTES:
        print("\nnotes:")
        for n in NOTES:
            print(f"  - {n}")
    print(f"\nwritten: {os.path.relpath(args.out, REPO)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
