#!/usr/bin/python3
"""Peer "container per call": every request runs the function in a fresh bubblewrap sandbox.

A tiny HTTP/1.1 keep-alive server (stdlib only) so that the benchmark's one HTTP client
times it exactly as it times MecaPy:

    POST /execute/<name>  {"inputs": {...}}  ->  200 {"status": "completed", "result": ...}

Each call: bwrap --unshare-all --die-with-parent, /usr read-only (+ the /bin, /lib, /lib64,
/sbin symlinks, /etc/alternatives and /etc/ld.so.cache for numpy's BLAS), a fresh /proc,
/dev and tmpfs /tmp, then `/usr/bin/python3 -c RUNNER` which executes the function's
source and prints the JSON result. Nothing is reused between calls.

Usage: peer_bwrap.py PORT FUNCTIONS_DIR
"""
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RUNNER = (
    "import json, sys\n"
    "ns = {'__name__': 'fn'}\n"
    "exec(compile(sys.argv[1], 'fn.py', 'exec'), ns)\n"
    "print(json.dumps({'status': 'completed', 'result': ns['main'](**json.loads(sys.argv[2]))}))\n"
)


def bwrap_argv():
    argv = ["bwrap", "--unshare-all", "--die-with-parent",
            "--ro-bind", "/usr", "/usr",
            "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib",
            "--symlink", "usr/sbin", "/sbin"]
    if os.path.isdir("/usr/lib64"):
        argv += ["--symlink", "usr/lib64", "/lib64"]
    for p in ("/etc/alternatives", "/etc/ld.so.cache"):
        if os.path.exists(p):
            argv += ["--ro-bind", p, p]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--chdir", "/tmp",
             "--clearenv", "--setenv", "PATH", "/usr/bin",
             "--setenv", "OPENBLAS_NUM_THREADS", "1",
             "/usr/bin/python3", "-c", RUNNER]
    return argv


BWRAP = bwrap_argv()
SOURCES = {}


def run_in_bwrap(name, inputs):
    # A watchdog bounds the call; communicate() without a timeout reaps with a blocking
    # waitpid, where a timeout would poll with growing sleeps and add milliseconds.
    p = subprocess.Popen(BWRAP + [SOURCES[name], json.dumps(inputs)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(60, p.kill)
    watchdog.start()
    try:
        out, err = p.communicate()
    finally:
        watchdog.cancel()
    if p.returncode != 0:
        raise RuntimeError(err.decode(errors="replace")[-500:])
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self.reply(200, b'{"status": "ok"}')

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        name = self.path.rsplit("/", 1)[-1].split("?")[0]
        if name not in SOURCES:
            return self.reply(404, b'{"error": "unknown function"}')
        try:
            out = run_in_bwrap(name, json.loads(body)["inputs"])
            self.reply(200, out)
        except Exception as e:  # report, never crash the peer
            self.reply(500, json.dumps({"status": "failed", "error": str(e)}).encode())


def main():
    port, fdir = int(sys.argv[1]), sys.argv[2]
    for fn in os.listdir(fdir):
        if fn.endswith(".py"):
            with open(os.path.join(fdir, fn)) as f:
                SOURCES[fn[:-3]] = f.read()
    srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
