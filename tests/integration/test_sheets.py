"""Calculation sheets (docs/sheets.md): a task (or a workflow run) as a printable HTML page,
and as PDF through weasyprint: the function, version and code hash, environment, who ran it
and when, inputs and results, checks, figures from its image artifacts, the docstring as
Markdown, provenance. What a user wrote stays text (a hostile docstring or input is never
markup); the page fetches nothing. PDF text is read back with pdftotext."""
import base64
import re
import shutil
import struct
import subprocess
import zlib

import pytest

from harness import assert_problem, expect_status
from test_workflows import beam_chain, run_wf, wait_run


def tiny_png() -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\xff\x00\x00" * 4 for _ in range(4))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = tiny_png()

BEAM = '''\
from pathlib import Path

def main(L: float, F: float = 1000.0, label: str = "beam") -> dict:
    """Cantilever **tip deflection** under an end load.

    # Method
    The deflection is $\\\\delta = F L^3 / (3 E I)$ with:
    - `E` = 210 GPa
    - `I` = 8e-6 m4

    $$M = F L$$
    Not typeset: $\\begin{matrix} a \\end{matrix}$; not formulas: a bolt costs $5 and a nut $6.

    <script>alert("docstring")</script> [a link](http://example.invalid/x.png)
    """
    Path("outputs").mkdir(exist_ok=True)
    Path("outputs/figure.png").write_bytes(%r)
    Path("outputs/notes.txt").write_text("not a figure")
    d = F * L ** 3 / (3 * 210e9 * 8e-6)
    return {"deflection": d, "label": label,
            "checks": [{"name": "deflection limit", "value": d, "limit": L / 250, "unit": "m",
                        "utilisation": d / (L / 250), "passed": d < L / 250}]}
''' % PNG


@pytest.fixture(scope="module")
def beam_task(api):
    f = api.create_function("alice", api.unique("sheet-beam"), BEAM,
                            description="Tip deflection of a steel cantilever <b>bold?</b>")
    t = api.execute("alice", f["id"], {"L": 2.5, "F": 1200.0, "label": "<img src=x onerror=alert(1)>"})
    assert t["status"] == "completed", t
    return f, t


def test_html_sheet_content(api, beam_task):
    f, t = beam_task
    r = api.get("alice", f"/tasks/{t['id']}/sheet")
    expect_status(r, 200)
    assert r.headers["Content-Type"].startswith("text/html"), r.headers
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "img-src data:" in csp and "script-src" not in csp, csp
    html = r.text
    for text in ("Calculation sheet", f["name"], f["id"], t["id"], "alice@acme.test",
                 t["provenance"]["code_sha256"], t["provenance"]["inputs_sha256"], "base",
                 "deflection", "deflection limit", "pass", "Method", "Provenance", "figure.png"):
        assert text in html, f"the sheet lacks {text!r}"
    assert "<strong>tip deflection</strong>" in html, "the docstring is rendered as Markdown"
    assert "<li><code>E</code> = 210 GPa</li>" in html
    # Formulas are typeset (matplotlib's mathtext, as SVG) and inlined, their source as alt text.
    m = re.search(r'<img class="formula" alt="\\delta = F L\^3 / \(3 E I\)" src="data:image/svg\+xml;base64,([^"]+)">',
                  html)
    assert m, "the inline formula is typeset"
    svg = base64.b64decode(m.group(1)).decode()
    assert "<svg" in svg and "<path" in svg and "<script" not in svg, svg[:300]
    assert re.search(r'<img class="formula display" alt="M = F L" src="data:image/svg\+xml;base64,', html)
    # What mathtext cannot read is shown as its source, and the sheet says so.
    assert '<code class="tex">$\\begin{matrix} a \\end{matrix}$</code>' in html
    assert "could not be typeset" in html
    assert "a bolt costs $5 and a nut $6." in html
    # The figure is inlined; the text artifact is not a figure.
    assert "data:image/png;base64," + base64.b64encode(PNG).decode() in html
    assert "notes.txt" not in html
    # Hostile strings stay text.
    assert "<script" not in html and "onerror=alert" not in html.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&quot;docstring&quot;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "&lt;b&gt;bold?&lt;/b&gt;" in html
    assert "http://example.invalid" not in re.sub(r"\[a link\]\(http://example\.invalid/x\.png\)", "", html)
    # Nothing outside the page is referenced.
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html), "the sheet references nothing outside"
    # Stable: the same task gives the same page, but for the time it was made.
    again = api.get("alice", f"/tasks/{t['id']}/sheet").text
    strip = lambda h: re.sub(r"on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", "", h)
    assert strip(again) == strip(html)


@pytest.mark.skipif(not shutil.which("pdftotext"), reason="pdftotext (poppler-utils) is not installed")
def test_pdf_sheet_content(api, beam_task, tmp_path):
    f, t = beam_task
    r = api.get("alice", f"/tasks/{t['id']}/sheet", params={"format": "pdf"}, timeout=120)
    expect_status(r, 200)
    assert r.headers["Content-Type"] == "application/pdf", r.headers
    assert r.content.startswith(b"%PDF-"), r.content[:20]
    (tmp_path / "s.pdf").write_bytes(r.content)
    text = subprocess.run(["pdftotext", "-layout", str(tmp_path / "s.pdf"), "-"], capture_output=True,
                          text=True, check=True).stdout
    for s in ("Calculation sheet", f["name"], t["id"], "alice@acme.test", "deflection limit", "Provenance",
              t["provenance"]["code_sha256"][:32], "<script>alert(\"docstring\")</script>"):
        assert s in text, f"the PDF lacks {s!r}:\n{text[:3000]}"


def test_sheet_errors_and_tenancy(api, beam_task):
    f, t = beam_task
    assert_problem(api.get("alice", f"/tasks/{t['id']}/sheet", params={"format": "docx"}), 400)
    assert_problem(api.get("carol", f"/tasks/{t['id']}/sheet"), 404)
    assert_problem(api.get("carol", f"/tasks/{t['id']}/sheet", params={"format": "pdf"}), 404)
    assert_problem(api.get("alice", "/tasks/00000000-0000-0000-0000-000000000000/sheet"), 404)


def test_failed_task_sheet_says_so(api):
    f = api.create_function("alice", api.unique("sheet-fail"),
                            "def main(x: float) -> float:\n    raise ValueError('negative span')\n")
    t = api.execute("alice", f["id"], {"x": 1})
    assert t["status"] == "failed", t
    html = api.get("alice", f"/tasks/{t['id']}/sheet").text
    assert "No result: the task failed" in html and "negative span" in html


def test_workflow_run_sheet(api):
    wf = beam_chain(api)
    run = run_wf(api, "alice", wf["id"], {"F": 1000, "L": 2, "fy": 235e6})
    run = wait_run(api, "alice", run["id"]) if run["finished_at"] is None else run
    assert run["status"] == "completed", run
    r = api.get("alice", f"/workflow-runs/{run['id']}/sheet")
    expect_status(r, 200)
    html = r.text
    for text in ("workflow run", run["id"], wf["id"], "safety_factor", "sigma", "Outputs"):
        assert text in html, f"the run's sheet lacks {text!r}"
    for n in run["nodes"]:
        assert n["task_id"] in html, f"node {n['id']} is not on the sheet"
    assert html.count("<section>") == len(run["nodes"])
    assert_problem(api.get("carol", f"/workflow-runs/{run['id']}/sheet"), 404)


DOUBLE = "def main(x: float) -> dict:\n    return {'y': 2 * x}\n"


def test_sheet_shows_verification_and_review(api):
    """The version's reference cases and who approved it are on the sheet of its tasks."""
    f = api.create_function("alice", api.unique("sheet-verified"), DOUBLE, verification=[
        {"name": "doubling <b>case</b>", "inputs": {"x": 1.5}, "expected": {"y": 3.0},
         "source": "Roark 7th ed., table 8.1 case 1a"}])
    fid = f["id"]
    # The case runs as a task of the version; wait for its outcome.
    import time
    deadline = time.monotonic() + 60
    while api.get("alice", f"/functions/{fid}").json()["verification"]["status"] == "running":
        assert time.monotonic() < deadline, "the verification case did not end"
        time.sleep(0.2)
    unreviewed = api.execute("alice", fid, {"x": 2.0})
    html = api.get("alice", f"/tasks/{unreviewed['id']}/sheet").text
    assert "Reference cases: <span class=\"pass\">passed</span>" in html, html
    assert "Roark 7th ed., table 8.1 case 1a" in html and "doubling &lt;b&gt;case&lt;/b&gt;" in html
    assert "Not approved: draft" in html
    expect_status(api.post("alice", f"/functions/{fid}/versions/1/review", json={"comment": "please"}), 200)
    expect_status(api.post("bob", f"/functions/{fid}/versions/1/approve",
                           json={"comment": "checked <i>by hand</i>"}), 200)
    html = api.get("alice", f"/tasks/{unreviewed['id']}/sheet").text
    assert "Approved</span> by bob@acme.test on " in html, html
    assert "checked &lt;i&gt;by hand&lt;/i&gt;" in html and "alice@acme.test" in html


HOSTILE_FORMULAS = '''\
def main(x: float = 1.0) -> dict:
    """Formulas made to hurt the typesetter.

    Deep: $%s$
    Braces: $$%s$$
    Long: $%s$
    Files: $\\\\input{/etc/passwd}$ and $\\\\includegraphics{/etc/shadow}$
    Many: %s
    """
    return {"x": x}
''' % ("\\\\frac{" * 150 + "x" + "}{y}" * 150, "{" * 400 + "x" + "}" * 400, "x+" * 600 + "1",
       " ".join("$x_{%d}$" % i for i in range(80)))


def test_hostile_formulas_are_shown_as_text(api):
    """Formulas the typesetter cannot read (too deep, too long, asking for files) come back
    as their source: the sheet answers, names no host file's content, and the server goes on."""
    f = api.create_function("alice", api.unique("sheet-hostile-tex"), HOSTILE_FORMULAS)
    t = api.execute("alice", f["id"], {})
    assert t["status"] == "completed", t
    r = api.get("alice", f"/tasks/{t['id']}/sheet", timeout=120)
    expect_status(r, 200)
    html = r.text
    assert "could not be typeset" in html and "root:" not in html
    # Over 1,000 characters (deep, long) nothing is sent to the typesetter; the braces and
    # the two file commands are refused by it; then 61 small ones fill the 64 a sheet
    # typesets, and the last 19 are shown as written.
    assert "$" + "x+" * 600 + "1$" in html and "$\\input{/etc/passwd}$" in html
    assert html.count('<img class="formula"') == 61, html.count('<img class="formula"')
    assert html.count('<code class="tex">') == 2 + 3 + 19
    assert '<code class="tex">$x_{79}$</code>' in html and 'alt="x_{60}"' in html
    assert api.execute("alice", f["id"], {"x": 2})["status"] == "completed"
