"""The cost of mecapy.progress() in a tight loop, and of print() while the guest's ticker
flushes stdout every 0.2 s (so that logs reach the task while the call runs).

Runs the guest's own code (src/exec/guest/guest.py, as the binary embeds it) in this
interpreter, its frames and lines going to pipes drained by another process (`wc -c`),
as the executor drains them. Prints a table; --json FILE writes the figures.

    /usr/bin/python3 bench/progress.py [--calls N] [--json FILE]
"""
import argparse
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

GUEST = Path(__file__).resolve().parents[1] / "src" / "exec" / "guest" / "guest.py"


def load_guest(fd):
    ns = {"__name__": "mecapy_guest"}
    exec(compile(GUEST.read_text(), "<string>", "exec"), ns)
    ns["FD"] = fd
    return ns


def drain():
    """A pipe whose reader is another process: (write fd, process); its stdout is the
    count of bytes read."""
    r, w = os.pipe()
    p = subprocess.Popen(["wc", "-c"], stdin=r, stdout=subprocess.PIPE, text=True)
    os.close(r)
    return w, p


def loop(n, progress=None):
    acc = 0.0
    t0 = time.perf_counter()
    if progress is None:
        for i in range(n):
            acc += i * 0.5
    else:
        for i in range(n):
            acc += i * 0.5
            progress(i / n, "iteration")
    return time.perf_counter() - t0


def best(f, repeat=5):
    return min(f() for _ in range(repeat))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=1_000_000)
    ap.add_argument("--json")
    a = ap.parse_args()
    n = a.calls

    w, reader = drain()
    g = load_guest(w)
    g["progress_open"]()
    base = best(lambda: loop(n))
    t0 = time.perf_counter()
    with_p = best(lambda: loop(n, g["progress"]))
    wall = time.perf_counter() - t0
    g["progress_close"]()
    os.close(w)
    sent = int(reader.communicate(timeout=30)[0].split()[0])
    frame = len(b'{"fraction":0.123456,"message":"iteration"}') + 4
    per_call_ns = (with_p - base) / n * 1e9

    # print() to a pipe, alone and while a call is open (the ticker flushes every 0.2 s).
    lines = 200_000
    out = {}
    for mode in ("plain", "ticker"):
        pw, pr = drain()
        f = io.TextIOWrapper(io.FileIO(pw, "w"), encoding="utf-8")
        g["sys"].stdout = f  # what the ticker flushes
        if mode == "ticker":
            g["progress_open"]()
        t0 = time.perf_counter()
        for i in range(lines):
            print("iteration", i, "residual", 1e-3, file=f)
        f.flush()
        out[mode] = (time.perf_counter() - t0) / lines * 1e9
        if mode == "ticker":
            g["progress_close"]()
        g["sys"].stdout = sys.__stdout__
        f.close()
        pr.communicate(timeout=30)

    res = {
        "progress_calls": n,
        "loop_without_progress_s": round(base, 4),
        "loop_with_progress_s": round(with_p, 4),
        "progress_call_ns": round(per_call_ns, 1),
        "progress_frames_sent_approx": sent // frame,
        "progress_frames_wall_s": round(wall, 2),
        "print_ns": round(out["plain"], 1),
        "print_while_ticking_ns": round(out["ticker"], 1),
    }
    print("mecapy.progress() in a tight loop (%d calls, best of 5)" % n)
    print("  loop alone                 %8.3f s" % base)
    print("  loop + progress()          %8.3f s   (+%.0f ns a call)" % (with_p, per_call_ns))
    print("  frames that left the guest ~%d over %.1f s of looping (at most 1 per 0.2 s)"
          % (res["progress_frames_sent_approx"], wall))
    print("print() of a short line to a pipe: %.0f ns alone, %.0f ns while the ticker flushes"
          % (out["plain"], out["ticker"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1) + "\n")


if __name__ == "__main__":
    main()
