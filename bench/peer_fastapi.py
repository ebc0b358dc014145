"""Peer "in-process, no isolation": FastAPI + uvicorn calling the function directly.

    POST /execute/<name>  {"inputs": {...}}  ->  200 {"status": "completed", "result": ...}

Run: python3 -m uvicorn peer_fastapi:app --host 127.0.0.1 --port PORT (from bench/), with
BENCH_FUNCTIONS_DIR naming the folder of function sources.
"""
import os

from fastapi import FastAPI, HTTPException, Request

FUNCTIONS = {}
_dir = os.environ.get("BENCH_FUNCTIONS_DIR") or os.path.join(os.path.dirname(__file__), "functions")
for _fn in os.listdir(_dir):
    if _fn.endswith(".py"):
        _ns = {"__name__": _fn[:-3]}
        with open(os.path.join(_dir, _fn)) as _f:
            exec(compile(_f.read(), _fn, "exec"), _ns)
        FUNCTIONS[_fn[:-3]] = _ns["main"]

app = FastAPI()


@app.get("/healthz")
async def healthz():
    return {"status": "ok"}


@app.post("/execute/{name}")
async def execute(name: str, request: Request):
    fn = FUNCTIONS.get(name)
    if fn is None:
        raise HTTPException(404, "unknown function")
    body = await request.json()
    return {"status": "completed", "result": fn(**body["inputs"])}
