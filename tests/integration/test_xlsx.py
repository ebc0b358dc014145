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
