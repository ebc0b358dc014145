"""docs/tutorials/*.md run as written, against a real server, and print what they show.

Each tutorial is read top to bottom:
- a code block whose first line is `# file: NAME` is written to NAME (it is not run);
- a `sh` block runs in bash (`mecapy` is the built binary, `python3` the virtual
  environment where `pip install ./sdk/python` put the SDK);
- `python` blocks run one after the other in one interpreter of that environment, as in
  a notebook, so later blocks see earlier names;
- a `text` block right after a code block is that block's expected standard output;
  `...` in it stands for any text (ids, dates). The numbers are compared as printed.

Before the first block the reader is logged in with `mecapy login` (the tutorials say
so), on a server of this module's own.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

import harness
from test_sdk import sdk_venv

TUTORIALS = sorted((harness.REPO / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\s*$")

# Runs python blocks in one namespace: reads one JSON string (a block) per line, answers
# one JSON object {"out", "error"} per block.
DRIVER = r'''
import contextlib, io, json, sys, traceback
ns = {"__name__": "__main__"}
for line in sys.stdin:
    code = json.loads(line)
    buf = io.StringIO()
    err = None
    with contextlib.redirect_stdout(buf):
        try:
            exec(compile(code, "<tutorial>", "exec"), ns)
        except BaseException:
            err = traceback.format_exc()
    sys.__stdout__.write(json.dumps({"out": buf.getvalue(), "error": err}) + "\n")
    sys.__stdout__.flush()
'''


def blocks(md: Path) -> list[dict]:
    """The fenced blocks in order: {"lang", "code", "line", "expect", "end"}; a `text`
    block separated from the block before it by blank lines only is its output."""
    out: list[dict] = []
    lines = md.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        start, lang, body = i + 1, m.group(1), []
        i += 1
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1
        text = "\n".join(body) + "\n"
        if lang == "text" and out and out[-1]["expect"] is None \
                and not any(x.strip() for x in lines[out[-1]["end"]:start - 1]):
            out[-1]["expect"] = text
            continue
        out.append({"lang": lang, "code": text, "line": start, "expect": None, "end": i})
    return out


def matches(expect: str, got: str) -> bool:
    pattern = ".*?".join(re.escape(part) for part in expect.rstrip("\n").split("..."))
    return re.fullmatch(pattern, got.rstrip("\n"), flags=re.S) is not None


@pytest.fixture(scope="module")
def tutorial_stack():
    s = harness.start_stack("tutorials")
    yield s
    s.close()


@pytest.mark.parametrize("md", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_as_written(md, tutorial_stack, tmp_path):
    venv = sdk_venv()
    work = tmp_path / "work"
    work.mkdir()
    config = tmp_path / "config"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
    env["PATH"] = f"{venv / 'bin'}:{harness.mecapy_bin().parent}:{env.get('PATH', '')}"
    env["MECAPY_CONFIG_DIR"] = str(config)
    env["MPLBACKEND"] = "Agg"
    alice = tutorial_stack.api.users["alice"]
    r = tutorial_stack.cli("login", "--url", tutorial_stack.server.base, "--email", alice.email,
                           "--password-stdin", config_dir=config, input=alice.password + "\n")
    assert r.returncode == 0, r.stderr
    py = subprocess.Popen([str(venv / "bin" / "python"), "-u", "-c", DRIVER], cwd=work,
                          env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    ran = 0
    try:
        for b in blocks(md):
            where = f"{md.relative_to(harness.REPO)}:{b['line']}"
            first = b["code"].splitlines()[0] if b["code"].strip() else ""
            m = re.match(r"^(?:#|//) file: (\S+)$", first)
            if m:
                (work / m.group(1)).write_text(b["code"].split("\n", 1)[1], encoding="utf-8")
                continue
            if b["lang"] in ("sh", "bash", "console"):
                p = subprocess.run(["bash", "-euo", "pipefail", "-c", b["code"]], cwd=work,
                                   env=env, capture_output=True, text=True, timeout=300)
                assert p.returncode == 0, f"{where} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
                out = p.stdout
            elif b["lang"] == "python":
                assert py.stdin and py.stdout
                py.stdin.write(json.dumps(b["code"]) + "\n")
                py.stdin.flush()
                reply = json.loads(py.stdout.readline() or "null")
                assert reply is not None, f"{where}: the interpreter died"
                assert reply["error"] is None, f"{where} raised:\n{reply['error']}"
                out = reply["out"]
            else:
                continue
            ran += 1
            if b["expect"] is not None:
                assert matches(b["expect"], out), \
                    f"{where} printed\n{out}\nwhere the tutorial shows\n{b['expect']}"
    finally:
        if py.stdin:
            py.stdin.close()
        py.wait(timeout=30)
    assert ran >= 3, f"{md.name}: only {ran} blocks ran"


def test_there_are_three_tutorials():
    assert len(TUTORIALS) >= 3, [p.name for p in TUTORIALS]
