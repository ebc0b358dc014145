"""Spreadsheets (docs/sheets.md#spreadsheets): a study's results and a task's tabular result
(a list of row objects) download as .xlsx with Accept: the spreadsheetml type (or
?format=xlsx); the files are read back with openpyxl, an independent reader. Units are in
the header row when the schema declares them (the units part's "x-unit")."""
import io

import openpyxl

from harness import assert_problem, expect_status
from studyutil import create_study, wait_study

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"

TABLE = '''\
def main(n: int = 3) -> list:
    return [{"x": i, "y": i * 0.5, "name": "p<%d>" % i, "ok": i % 2 == 0} for i in range(n)] + \\
           [{"x": 99, "extra": [1, 2]}]
'''

BEAM = '''\
def main(L: float, F: float = 1000.0) -> dict:
    if L < 0:
        raise ValueError("negative span")
    return {"moment": F * L, "label": "=HYPERLINK(\\"http://x\\")"}
'''


def workbook(r):
    expect_status(r, 200)
    assert r.headers["Content-Type"] == XLSX, r.headers
    assert "attachment" in r.headers.get("Content-Disposition", ""), r.headers
    wb = openpyxl.load_workbook(io.BytesIO(r.content))
    return [list(row) for row in wb.active.iter_rows(values_only=True)]


def test_task_table_as_xlsx(api, fname):
    f = api.create_function("alice", fname, TABLE)
    t = api.execute("alice", f["id"], {"n": 3})
    assert t["status"] == "completed", t
    rows = workbook(api.get("alice", f"/tasks/{t['id']}", headers={"Accept": XLSX}))
    assert rows[0] == ["x", "y", "name", "ok", "extra"], rows
    assert rows[1] == [0, 0, "p<0>", True, None], rows
    assert rows[2] == [1, 0.5, "p<1>", False, None], rows
    assert rows[4] == [99, None, None, None, "[1,2]"], rows
    assert len(rows) == 5
    assert workbook(api.get("alice", f"/tasks/{t['id']}", params={"format": "xlsx"})) == rows
    # JSON stays the default.
    assert api.get("alice", f"/tasks/{t['id']}").json()["result"][0]["name"] == "p<0>"
    assert_problem(api.get("carol", f"/tasks/{t['id']}", headers={"Accept": XLSX}), 404)


def test_non_tabular_result_is_406(api, fname):
    f = api.create_function("alice", fname, BEAM)
    t = api.execute("alice", f["id"], {"L": 1})
    p = assert_problem(api.get("alice", f"/tasks/{t['id']}", headers={"Accept": XLSX}), 406)
    assert "tabular" in p["detail"], p


def test_study_results_as_xlsx(api, fname):
    f = api.create_function("alice", fname, BEAM)
    s = create_study(api, "alice", {
        "name": "xlsx", "target": {"function": f["id"]},
        "design": {"type": "list", "points": [{"L": 1}, {"L": 2}, {"L": -1}]},
        "fixed": {"F": 10}, "outputs": ["result.moment", "result.label"]})
    wait_study(api, "alice", s["id"])
    rows = workbook(api.get("alice", f"/studies/{s['id']}/results", headers={"Accept": XLSX}))
    assert rows[0] == ["index", "L", "F", "result.moment", "result.label", "status", "error"], rows
    assert rows[1] == [0, 1, 10, 10, '=HYPERLINK("http://x")', "completed", None], rows
    assert rows[2][:6] == [1, 2, 10, 20, '=HYPERLINK("http://x")', "completed"], rows
    assert rows[3][5] == "failed" and "negative span" in rows[3][6], rows
    # A string that looks like a formula is text, never a formula.
    wb = openpyxl.load_workbook(io.BytesIO(api.get("alice", f"/studies/{s['id']}/results",
                                                   headers={"Accept": XLSX}).content))
    assert wb.active.cell(row=2, column=5).data_type == "s"
    assert_problem(api.get("carol", f"/studies/{s['id']}/results", headers={"Accept": XLSX}), 404)


def xlsx_bytes(rows, extra_part=None):
    wb = openpyxl.Workbook()
    for row in rows:
        wb.active.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    if extra_part:
        import zipfile
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zin, zipfile.ZipFile(out, "w") as zout:
            for item in zin.infolist():
                zout.writestr(item, zin.read(item.filename))
            zout.writestr(extra_part, b"\0" * 64)
        return out.getvalue()
    return buf.getvalue()


def upload(api, fname_fn, data, **params):
    return api.post("alice", "/studies", data=data, headers={"Content-Type": XLSX},
                    params={"function": fname_fn, "name": "from-xlsx", "outputs": "result.moment", **params})


ECHO = '''\
def main(L: float, F: float = 7.0, tag: str = "-", on: bool = True) -> dict:
    return {"moment": F * L, "tag": tag, "on": on}
'''


def test_list_design_from_xlsx_upload(api, fname):
    f = api.create_function("alice", fname, ECHO)
    data = xlsx_bytes([["L", "F", "tag", "on"], [1, 2.5, "a, \"b\" & <c>", True], [2, None, "1e3", False],
                       [0.1, 3, None, None]])
    r = upload(api, f["name"], data, outputs="result.moment,result.tag,result.on")
    expect_status(r, 201)
    s = r.json()
    assert s["design"] == {"type": "list", "count": 3}, s
    wait_study(api, "alice", s["id"])
    rows = workbook(api.get("alice", f"/studies/{s['id']}/results", headers={"Accept": XLSX}))
    assert rows[0][:5] == ["index", "L", "F", "tag", "on"], rows
    body = {r[0]: r for r in rows[1:]}
    # Strings stay strings (even "1e3"), an empty cell leaves the input to its default.
    assert body[0][1:5] == [1, 2.5, 'a, "b" & <c>', True] and body[0][5:8] == [2.5, 'a, "b" & <c>', True], body
    assert body[1][1:5] == [2, None, "1e3", False] and body[1][5:8] == [14, "1e3", False], body
    # libxlsxwriter writes 16 significant digits (Excel keeps 15).
    assert abs(body[2][5] - 0.1 * 3) < 1e-15 and body[2][6] == "-" and body[2][7] is True, body


def test_xlsx_upload_refusals(api, fname):
    f = api.create_function("alice", fname, ECHO)
    p = assert_problem(upload(api, f["name"], xlsx_bytes([["L"], ["=1+1"]])), 422)
    assert "formula" in p["detail"] and "A2" in p["detail"], p
    p = assert_problem(upload(api, f["name"], xlsx_bytes([["L"], [1]], extra_part="xl/vbaProject.bin")), 422)
    assert "macros" in p["detail"], p
    p = assert_problem(upload(api, f["name"], b"PK\x03\x04 not really a zip"), 422)
    assert p["errors"][0]["path"] == "xlsx", p
    p = assert_problem(upload(api, f["name"], b""), 422)


def test_answers_leave_no_temporary_files(stack, api, fname):
    """Workbooks (and PDF sheets) are written in the data folder's tmp/ and removed once
    read back: downloads leave nothing behind there (nor in /tmp, which may be small)."""
    f = api.create_function("alice", fname, TABLE)
    t = api.execute("alice", f["id"], {"n": 2})
    scratch = stack.data_dir / "tmp"
    assert scratch.is_dir(), "the server keeps its temporary files in the data folder"
    before = set(scratch.iterdir())
    for _ in range(3):
        workbook(api.get("alice", f"/tasks/{t['id']}", headers={"Accept": XLSX}))
    assert set(scratch.iterdir()) == before
