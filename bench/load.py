#!/usr/bin/python3
"""MecaPy under load (stdlib only; started by bench/run.sh after bench.py).

Usage: load.py --bin BUILD/mecapy --tmp DIR --out bench/results-load.json

Two parts, on one `mecapy serve` on 127.0.0.1 (see docs/benchmarks.md, "Load"):

1. burst: LOAD_CLIENTS clients at once, each on its own connection, each POSTing one
   call of a function that sleeps 100 ms with ?wait= (a long poll held by the server
   until the call ends). Every call must complete with its own result; reported: the
   time each client waited (p50, p95, max), the whole burst's wall time, and the
   server's resident memory (the API process, and its whole tree) at its peak.
2. mixed: MIXED_S seconds of warm calls, a parameter study (started again whenever one
   ends), uploads (new functions and new versions) and task listing, each from its own
   thread; every answer must be the expected one (zero errors).

Bounded: a fixed count of clients and calls, a time cap on each part, every process
started here stopped in a `finally` (and listed in DIR/pids for run.sh's trap).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import sys
import threading
import time

import bench as B

LOAD_CLIENTS = B.scaled(1000)
BURST_CAP_S = 120
MIXED_S = max(5, int(60 * B.SCALE))
STUDY_POINTS = 200
WORKERS = 32  # calls run at once: the 100 ms calls sleep, they use no CPU

SLEEP_FN = """\
import time


def main(i: int) -> int:
    time.sleep(0.1)
    return i * 2
"""


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class RssSampler(threading.Thread):
    """The server's RSS (the API process alone, and the sum over it and every descendant:
    the executor, zygotes, warm instances; pages they share are counted in each) every
    100 ms."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop_ev = pid, threading.Event()
        self.peak_main_kib = self.peak_tree_kib = 0

    @staticmethod
    def rss_kib(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def run(self):
        while not self.stop_ev.is_set():
            main = self.rss_kib(self.pid)
            tree = main + sum(self.rss_kib(p) for p in B.descendants(self.pid))
            self.peak_main_kib = max(self.peak_main_kib, main)
            self.peak_tree_kib = max(self.peak_tree_kib, tree)
            self.stop_ev.wait(0.1)

    def stop(self):
        self.stop_ev.set()
        self.join(timeout=5)


async def one_call(port, path, token, i, out):
    body = json.dumps({"inputs": {"i": i}}).encode()
    req = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
           ).encode() + body
    t0 = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(req)
        await writer.drain()
        data = await reader.read()
        writer.close()
    except OSError as e:
        out.append((i, None, f"{type(e).__name__}: {e}", time.perf_counter() - t0))
        return
    dt = time.perf_counter() - t0
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/1.1 ") else None
    try:
        task = json.loads(payload)
    except ValueError:
        task = None
    ok = status == 200 and isinstance(task, dict) and task.get("status") == "completed" and \
        task.get("result") == i * 2
    out.append((i, status, None if ok else B.answer_summary(status, payload), dt))


async def burst(port, path, token, n):
    out = []
    await asyncio.wait_for(asyncio.gather(*(one_call(port, path, token, i, out) for i in range(n))),
                           timeout=BURST_CAP_S)
    return out


def part_burst(R, m, c, args):
    f = m.create_function(c, "load_sleep_100ms", SLEEP_FN)
    path = f"{B.API}/functions/{f['id']}/execute?wait=120"
    # Warm the instances first (one round of WORKERS calls), so the burst measures the
    # queue and the long polls, not the first zygote fork.
    asyncio.run(burst(m.port, path, m.token, WORKERS))
    B.log(f"burst: {LOAD_CLIENTS} clients at once, each one 100 ms call with ?wait=, cap {BURST_CAP_S} s")
    sampler = RssSampler(m.p.pid)
    sampler.start()
    t0 = time.perf_counter()
    try:
        out = asyncio.run(burst(m.port, path, m.token, LOAD_CLIENTS))
    finally:
        wall = time.perf_counter() - t0
        sampler.stop()
    lat = [dt * 1000 for _, _, err, dt in out if err is None]
    errors = [(i, st, err) for i, st, err, _ in out if err is not None]
    d = {"clients": LOAD_CLIENTS, "function_ms": 100, "workers": WORKERS, "completed": len(lat),
         "errors": len(errors), "first_errors": [f"call {i}: {e}" for i, _, e in errors[:5]],
         "wall_s": round(wall, 2), "p50_ms": B.r3(B.pct(lat, 50)), "p95_ms": B.r3(B.pct(lat, 95)),
         "max_ms": B.r3(max(lat) if lat else None),
         "server_rss_peak_mib": round(sampler.peak_main_kib / 1024, 1),
         "server_tree_rss_peak_mib": round(sampler.peak_tree_kib / 1024, 1),
         "ideal_wall_s": round(LOAD_CLIENTS * 0.1 / WORKERS, 2)}
    R["burst"] = d
    B.log(f"  {d['completed']}/{LOAD_CLIENTS} completed, {d['errors']} errors in {d['wall_s']} s; "
          f"p50 {d['p50_ms']} ms, p95 {d['p95_ms']} ms; server RSS peak {d['server_rss_peak_mib']} MiB "
          f"(tree {d['server_tree_rss_peak_mib']} MiB)")
    if d["errors"]:
        B.note(f"burst: {d['errors']} calls did not complete: {d['first_errors']}")


class Mixed:
    """One kind of traffic on its own thread and connection, counting answers."""

    def __init__(self, name, m, end):
        self.name, self.m, self.end = name, m, end
        self.n = self.errors = 0
        self.first_error = None
        self.lat = []

    def check(self, ok, what):
        self.n += 1
        if not ok:
            self.errors += 1
            self.first_error = self.first_error or what

    def run(self, fn):
        c = B.HttpClient(self.m.port, timeout=120)
        i = 0
        try:
            while time.monotonic() < self.end:
                t0 = time.perf_counter()
                fn(c, i)
                self.lat.append((time.perf_counter() - t0) * 1000)
                i += 1
        except Exception as e:  # noqa: BLE001  an exception is an error, and ends this thread
            self.check(False, f"{type(e).__name__}: {e}")
        finally:
            c.close()

    def summary(self):
        return {"n": self.n, "errors": self.errors, "first_error": self.first_error,
                "p50_ms": B.r3(B.pct(self.lat, 50)), "p95_ms": B.r3(B.pct(self.lat, 95))}


def part_mixed(R, m, c, args):
    m_auth = m.auth()
    triv = m.create_function(c, "load_trivial", B.read_source("trivial"))
    upl = m.create_function(c, "load_upload", B.read_source("trivial"))
    B.log(f"mixed: {MIXED_S} s of warm calls (4 threads), a {STUDY_POINTS}-point study again and again, "
          f"uploads and task listing")
    end = time.monotonic() + MIXED_S

    def study(c, i):
        body = {"target": {"function": triv["id"]}, "concurrency": 8,
                "design": {"type": "grid", "params": {"x": {"start": 0, "stop": STUDY_POINTS - 1,
                                                            "num": STUDY_POINTS}}},
                "outputs": ["result"]}
        st, b = c.request("POST", f"{B.API}/studies", body, m_auth)
        if st != 201:  # one check per study: its creation, or its completion
            me_s.check(False, f"POST /studies: HTTP {st} {b[:200]!r}")
            return
        sid = json.loads(b)["id"]
        while True:
            st, b = c.request("GET", f"{B.API}/studies/{sid}?wait=10", None, m_auth)
            s = json.loads(b) if st == 200 else {}
            if st != 200 or s.get("status") != "running":
                break
        prog = s.get("progress", {})
        me_s.check(st == 200 and s.get("status") == "completed" and prog.get("completed") == STUDY_POINTS,
                   f"study {sid}: HTTP {st}, {s.get('status')}, {prog}")

    def upload(c, i):
        if i % 2:
            st, b = c.request("POST", f"{B.API}/functions",
                              {"name": f"load_fn_{i}", "code": B.read_source("trivial")}, m_auth)
            me_u.check(st == 201, f"POST /functions: HTTP {st} {b[:200]!r}")
        else:
            src = B.read_source("trivial").replace("return x + 1", f"return x + {i + 2}")
            st, b = c.request("PUT", f"{B.API}/functions/{upl['id']}", {"code": src}, m_auth)
            me_u.check(st == 200, f"PUT /functions/ID: HTTP {st} {b[:200]!r}")

    def listing(c, i):
        st, b = c.request("GET", f"{B.API}/tasks?limit=50", None, m_auth)
        ok = st == 200 and isinstance(json.loads(b).get("items"), list)
        me_l.check(ok, f"GET /tasks: HTTP {st} {b[:200]!r}")

    warm_runners = [Mixed("warm calls", m, end) for _ in range(4)]
    me_s, me_u, me_l = Mixed("study", m, end), Mixed("uploads", m, end), Mixed("task listing", m, end)

    # Each warm thread counts into its own runner.
    def warm_thread(runner):
        def fn(c, i):
            st, b = c.request("POST", f"{B.API}/functions/{triv['id']}/execute?wait=30",
                              {"inputs": {"x": float(i)}}, m_auth)
            runner.check(st == 200 and B.task_ok(b, lambda r: r == i + 1.0), B.answer_summary(st, b))
        return fn

    threads = [threading.Thread(target=r.run, args=(warm_thread(r),)) for r in warm_runners]
    threads += [threading.Thread(target=me_s.run, args=(study,)),
                threading.Thread(target=me_u.run, args=(upload,)),
                threading.Thread(target=me_l.run, args=(listing,))]
    sampler = RssSampler(m.p.pid)
    sampler.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=MIXED_S + 180)
    sampler.stop()
    warm_all = Mixed("warm calls", m, end)
    for r in warm_runners:
        warm_all.n += r.n
        warm_all.errors += r.errors
        warm_all.lat += r.lat
        warm_all.first_error = warm_all.first_error or r.first_error
    kinds = {"warm_calls": warm_all.summary(), "studies": me_s.summary(), "uploads": me_u.summary(),
             "task_listing": me_l.summary()}
    total = sum(k["n"] for k in kinds.values())
    errors = sum(k["errors"] for k in kinds.values())
    R["mixed"] = {"seconds": MIXED_S, "requests_checked": total, "errors": errors, **kinds,
                  "server_rss_peak_mib": round(sampler.peak_main_kib / 1024, 1),
                  "server_tree_rss_peak_mib": round(sampler.peak_tree_kib / 1024, 1)}
    B.log(f"  {total} answers checked, {errors} errors: " +
          ", ".join(f"{k} {v['n']}" for k, v in kinds.items()))
    if errors:
        B.note("mixed: errors: " + "; ".join(f"{k}: {v['first_error']}" for k, v in kinds.items()
                                              if v["errors"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    B.TMP_DIR = os.path.abspath(args.tmp)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    fds = raise_fd_limit(2 * LOAD_CLIENTS + 256)  # the server inherits it too
    procs = B.Procs(args.tmp)
    R: dict = {"machine": B.machine_info()}
    with open("/proc/loadavg") as f:
        R["machine"]["loadavg_before"] = f.read().split()[:3]
    failed = False
    m = B.MecaPy(procs, args.bin, os.path.join(args.tmp, "data-load"),
                 extra=["--workers", str(WORKERS), "--function-concurrency", str(WORKERS)])
    try:
        if fds < LOAD_CLIENTS + 64:
            B.note(f"only {fds} file descriptors may be open: the burst is cut to fit")
        m.create_user()
        m.start()
        c = B.HttpClient(m.port, timeout=120)
        m.login(c)
        for name, part in (("burst", part_burst), ("mixed", part_mixed)):
            try:
                part(R, m, c, args)
            except (SystemExit, KeyboardInterrupt):
                raise
            except Exception as e:  # noqa: BLE001
                failed = True
                B.note(f"{name} part failed: {type(e).__name__}: {str(e)[:1000]}")
        c.close()
    finally:
        procs.stop_all()
    with open("/proc/loadavg") as f:
        R["machine"]["loadavg_after"] = f.read().split()[:3]
    R["notes"] = B.NOTES
    bad = failed or R.get("burst", {}).get("errors", 1) or R.get("mixed", {}).get("errors", 1)
    with open(args.out, "w") as f:
        json.dump(R, f, indent=2)
        f.write("\n")
    b, x = R.get("burst", {}), R.get("mixed", {})
    print()
    print(f"MecaPy under load ({R['machine'].get('nproc')} CPUs, load average before "
          f"{' '.join(R['machine']['loadavg_before'])}, after {' '.join(R['machine']['loadavg_after'])})")
    print(f"  burst: {b.get('completed')}/{b.get('clients')} long-polled 100 ms calls completed in "
          f"{b.get('wall_s')} s ({b.get('workers')} workers; ideal {b.get('ideal_wall_s')} s); wait p50 "
          f"{b.get('p50_ms')} ms, p95 {b.get('p95_ms')} ms, max {b.get('max_ms')} ms; server RSS peak "
          f"{b.get('server_rss_peak_mib')} MiB (with its sandboxes {b.get('server_tree_rss_peak_mib')} MiB)")
    print(f"  mixed {x.get('seconds')} s: {x.get('requests_checked')} answers checked, {x.get('errors')} errors; "
          + ", ".join(f"{k} n={x[k]['n']} p95 {x[k]['p95_ms']} ms"
                      for k in ("warm_calls", "studies", "uploads", "task_listing") if k in x))
    for n in B.NOTES:
        print(f"  note: {n}")
    print(f"written: {os.path.relpath(args.out, B.REPO)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
