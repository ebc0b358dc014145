"""Peer "task queue": a Celery worker (prefork) with a Redis broker and result backend.

The worker runs the same function source as MecaPy. Started by bench.py as
    python3 -m celery -A peer_celery worker -P prefork -c 2 ...   (from bench/)
and the client side is
    python3 peer_celery.py client SEQ_N SEQ_CAP_S THREADS SECONDS
which prints one JSON object: sequential .delay(x).get() latencies, then a closed loop of
THREADS client threads for SECONDS.

BENCH_REDIS_URL names the Redis server (redis://127.0.0.1:PORT/0).
"""
import json
import os
import sys
import threading
import time

from celery import Celery

REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
app = Celery("peer_celery", broker=REDIS, backend=REDIS)
app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                worker_hijack_root_logger=False, result_expires=600,
                broker_connection_retry_on_startup=True)

_ns = {"__name__": "trivial"}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "functions", "trivial.py")) as _f:
    exec(compile(_f.read(), "trivial.py", "exec"), _ns)
_main = _ns["main"]


@app.task(name="bench.trivial")
def trivial(x):
    return _main(x)


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))]


def client(seq_n, seq_cap_s, threads, seconds):
    out = {}
    # warm-up: worker pool, connections, result consumer
    for i in range(20):
        trivial.delay(float(i)).get(timeout=30)
    lat, errors = [], 0
    end = time.monotonic() + seq_cap_s
    for i in range(seq_n):
        if time.monotonic() > end:
            break
        t0 = time.perf_counter()
        try:
            r = trivial.delay(float(i)).get(timeout=30)
            ok = r == i + 1
        except Exception:
            ok = False
        dt = (time.perf_counter() - t0) * 1000
        if ok:
            lat.append(dt)
        else:
            errors += 1
    out["seq"] = {"n": len(lat), "errors": errors, "p50_ms": pct(lat, 50),
                  "p99_ms": pct(lat, 99), "mean_ms": sum(lat) / len(lat) if lat else None}

    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    start = time.monotonic()
    stop = start + seconds

    def worker(k):
        ok = err = 0
        i = 0
        while time.monotonic() < stop:
            i += 1
            try:
                r = trivial.delay(float(i)).get(timeout=30)
                if r == i + 1:
                    ok += 1
                else:
                    err += 1
            except Exception:
                err += 1
        with lock:
            counts["ok"] += ok
            counts["errors"] += err

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=seconds + 40)
    elapsed = time.monotonic() - start
    out["throughput"] = {"threads": threads, "seconds": elapsed, "ok": counts["ok"],
                         "errors": counts["errors"],
                         "per_s": counts["ok"] / elapsed if elapsed > 0 else None,
                         "unfinished_threads": sum(t.is_alive() for t in ts)}
    print(json.dumps(out))
    sys.stdout.flush()
    os._exit(0)  # do not wait for result-consumer threads


if __name__ == "__main__" and len(sys.argv) == 6 and sys.argv[1] == "client":
    client(int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
