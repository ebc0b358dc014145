"""The README's "first function in five minutes", run command by command.

Each ```sh block of that section is taken from README.md as written and run with bash,
against a server this test starts. Only three things are rewritten, because a test
cannot take the fixed ones: the server's address (a free port instead of 8000), the
binary's path and the data folder. The `make run` block is the server itself.
"""
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import harness

README = harness.REPO / "README.md"


def section_blocks() -> list[str]:
    text = README.read_text()
    start = text.index("## Your first function in five minutes")
    end = text.index("\n## ", start + 10)
    return re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.S)


def test_readme_quickstart_runs_as_written():
    blocks = section_blocks()
    assert blocks[0].strip() == "make run", "the section must start the server with make run"
    root = Path(tempfile.mkdtemp(prefix="readme-", dir=harness.tmp_root()))
    data = root / "mecapy-data"
    data.mkdir()
    server = harness.Server(data)
    try:
        server.start()
        binary = str(harness.mecapy_bin())
        env = {k: v for k, v in os.environ.items() if not k.startswith("MECAPY_")}
        env["MECAPY_CONFIG_DIR"] = str(root / "config")
        outputs = []
        for block in blocks[1:]:
            script = (block.replace("http://127.0.0.1:8000", server.base)
                      .replace("./build/mecapy", binary)
                      .replace("./mecapy-data", str(data)))
            p = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=root, env=env,
                               capture_output=True, text=True, timeout=120)
            assert p.returncode == 0, f"README block failed ({p.returncode}):\n{script}\n" \
                                      f"stdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            outputs.append(p.stdout)
        # The CLI call printed the deflection, and the curl call answered the whole task.
        expected = 1000 * 2 ** 3 / (3 * 210e9 * 8.33e-6)
        cli_out = outputs[-2]
        m = re.search(r'"deflection_mm":\s*([0-9.eE+-]+)', cli_out)
        assert m, f"the CLI did not print the result:\n{cli_out}"
        assert abs(float(m.group(1)) - expected * 1000) < 1e-9
        task = json.loads(outputs[-1])
        assert task["status"] == "completed", task
        assert abs(task["result"]["deflection_m"] - expected) < 1e-12
        assert abs(task["result"]["deflection_mm"] - expected * 1000) < 1e-9
    finally:
        server.stop()
        if not os.environ.get("MECAPY_KEEP_TEST_DATA"):
            shutil.rmtree(root, ignore_errors=True)
