// Calculations engineers can sign, as the dashboard shows them: a task's checks, its
// results with units, the inputs as given, the calculation sheet, the re-run and the
// comparison of two tasks; a task's tabular result as .xlsx; a workflow run's sheet; a
// function version's verification cases and its review; a study's units, governing check
// and .xlsx download. In a real browser against a real server, asserting what the page
// shows. Run: node --test tests/browser/.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startStack, newPage, signIn, shot, apiLogin, OTHER, ADMIN, audit, noProblems } from './harness.mjs';

const HOSTILE = '<img src=x onerror=window.__pwned=1>';

// A cantilever with units, two checks (one passes at 50 %, one fails at 150 %), the first
// named with markup that must stay text.
const BEAM = `from typing import Annotated, TypedDict


class Result(TypedDict):
    deflection: Annotated[float, "mm"]
    checks: list


def main(L: Annotated[float, "m"], F: Annotated[float, "kN"]) -> Result:
    return {"deflection": F * L ** 3 / 3.0,
            "checks": [{"name": "${HOSTILE}", "value": F * 10.0, "limit": 100.0, "unit": "kN"},
                       {"name": "tip", "value": 150.0, "limit": 100.0, "unit": "mm"}]}
`;

// A tabular result: a list of row objects, one value a hostile string.
const ROWS = `def main(n: int) -> list:
    return [{"i": i, "square": i * i, "name": "${HOSTILE}"} for i in range(n)]
`;

let stack;
let api;
let n = 0;
const unique = (s) => `${s}-${++n}`;

before(async () => {
  stack = await startStack();
  api = await apiLogin(stack);
});
after(async () => {
  await stack?.close();
});

async function open(page, path) {
  await page.goto('/functions');
  await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
  await page.evaluate((u) => {
    history.pushState(null, '', u);
    dispatchEvent(new PopStateEvent('popstate'));
  }, path);
}
// A downloaded .xlsx read back by an independent reader (openpyxl): the first sheet's
// rows as lists of values.
function readXlsx(buf) {
  const py = 'import io, json, sys, openpyxl\n'
    + 'wb = openpyxl.load_workbook(io.BytesIO(sys.stdin.buffer.read()), read_only=True)\n'
    + 'print(json.dumps([list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]))';
  return JSON.parse(execFileSync('/usr/bin/python3', ['-c', py], { input: buf }).toString());
}
// A download a link on the page names, fetched with the page's session cookie.
async function download(page, name) {
  const href = await page.getByRole('link', { name, exact: true }).getAttribute('href');
  const r = await page.request.get(href);
  assert.equal(r.status(), 200, `${href}: ${r.status()}`);
  return { href, type: r.headers()['content-type'], body: await r.body() };
}

const beam = (extra = {}) => api('POST', '/functions', { name: unique('beam'), code: BEAM, ...extra });
const run = async (f, inputs) => {
  const t = await api('POST', `/functions/${f.id}/execute?wait=60`, { inputs });
  assert.equal(t.status, 'completed', JSON.stringify(t.error));
  return t;
};

describe('task page', () => {
  test('checks, units, inputs as given, the sheet, the re-run and the comparison', async () => {
    const f = await beam();
    const t = await run(f, { L: '2000 mm', F: 5 });
    const t2 = await run(f, { L: 2, F: 6 });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/tasks/${t.id}`);

    const checks = page.getByRole('table').filter({ has: page.getByRole('columnheader', { name: 'Utilisation' }) });
    await checks.waitFor();
    const first = checks.getByRole('row').filter({ has: page.getByRole('rowheader', { name: HOSTILE }) });
    assert.match(await first.textContent(), /50%/);
    assert.match(await first.textContent(), /✓ pass/);
    const tip = checks.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'tip' }) });
    assert.match(await tip.textContent(), /150%/);
    assert.match(await tip.textContent(), /✗ fail/);

    const units = page.getByRole('table', { name: 'Results with units' });
    const row = await units.getByRole('row').filter({ hasText: 'deflection' }).textContent();
    assert.match(row, /deflection\s*13\.3333\s*mm/);

    await page.getByText('Inputs', { exact: true }).click();
    await page.getByText('(given as 2000 mm)').waitFor();

    const html = await download(page, 'Calculation sheet');
    assert.equal(html.href, `/api/v1/tasks/${t.id}/sheet`);
    assert.match(html.type, /text\/html/);
    const pdf = await download(page, 'PDF');
    assert.equal(pdf.href, `/api/v1/tasks/${t.id}/sheet?format=pdf`);
    assert.equal(pdf.type, 'application/pdf');
    // Its result is not a table: no .xlsx to offer (the API would answer 406).
    assert.equal(await page.getByRole('link', { name: 'Download .xlsx' }).count(), 0);

    await page.getByRole('button', { name: 'Re-run', exact: true }).click();
    await page.locator('.rerun-outcome').filter({ hasText: 'identical result' }).waitFor({ timeout: 60000 });

    await page.getByLabel("Other task's id").fill(`/tasks/${t2.id}`);
    await page.getByRole('button', { name: 'Compare' }).click();
    const diff = page.getByRole('table', { name: 'Differences' });
    await diff.waitFor();
    const fRow = await diff.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'inputs.F' }) }).textContent();
    assert.match(fRow, /5\s*6\s*kN/);
    assert.match(await page.getByRole('status').filter({ hasText: /differences?/ }).textContent(), /[1-9]\d* difference/);

    await page.getByLabel("Other task's id").fill('00000000-0000-0000-0000-000000000000');
    await page.getByRole('button', { name: 'Compare' }).click();
    await page.getByRole('alert').first().waitFor();

    await shot(stack, page, 'task-checks');
    assert.deepEqual(await audit(page), []);
    await noProblems(page);
    await page.context().close();
  });
});

describe('task page, tabular result', () => {
  test('a list of rows downloads as .xlsx, a real workbook', async () => {
    const f = await api('POST', '/functions', { name: unique('rows'), code: ROWS });
    const t = await run(f, { n: 3 });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/tasks/${t.id}`);
    await page.getByRole('link', { name: 'Download .xlsx' }).waitFor();
    const xlsx = await download(page, 'Download .xlsx');
    assert.equal(xlsx.href, `/api/v1/tasks/${t.id}?format=xlsx`);
    assert.equal(xlsx.type, 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet');
    assert.deepEqual(readXlsx(xlsx.body), [['i', 'square', 'name'], [0, 0, HOSTILE], [1, 1, HOSTILE], [2, 4, HOSTILE]]);
    await shot(stack, page, 'task-xlsx');
    assert.deepEqual(await audit(page), []);
    await noProblems(page);
    await page.context().close();
  });
});

describe('workflow run page', () => {
  test('the run\'s calculation sheet, as HTML and as PDF', async () => {
    const f = await beam();
    const wf = await api('POST', '/workflows', { name: unique('beams'),
      nodes: [{ id: 'cantilever', function: f.name, inputs: { L: { param: 'L' }, F: 5 } }] });
    const r = await api('POST', `/workflows/${wf.id}/execute?wait=60`, { inputs: { L: 2 } });
    assert.equal(r.status, 'completed', JSON.stringify(r.error));
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/workflow-runs/${r.id}`);
    await page.getByRole('link', { name: 'Calculation sheet' }).waitFor();
    const html = await download(page, 'Calculation sheet');
    assert.equal(html.href, `/api/v1/workflow-runs/${r.id}/sheet`);
    assert.match(html.type, /^text\/html/);
    assert.match(html.body.toString(), /cantilever/);
    const pdf = await download(page, 'PDF');
    assert.equal(pdf.href, `/api/v1/workflow-runs/${r.id}/sheet?format=pdf`);
    assert.equal(pdf.type, 'application/pdf');
    assert.equal(pdf.body.subarray(0, 5).toString(), '%PDF-');
    assert.equal(await page.getByRole('link', { name: 'PDF' }).getAttribute('download'), `run-${r.id}.pdf`);
    await shot(stack, page, 'run-sheet');
    assert.deepEqual(await audit(page), []);
    await noProblems(page);
    await page.context().close();
  });
});

describe('function page', () => {
  test('verification cases; submit, the 409 shown, reject with a comment', async () => {
    const f = await beam({
      visibility: 'company',
      verification: [
        { name: 'textbook', inputs: { L: 2, F: 5 }, expected: { deflection: 40 / 3 }, rel_tol: 1e-6, source: 'Roark 7th ed., table 8.1 case 1a' },
        { name: HOSTILE, inputs: { L: 1, F: 3 }, expected: { deflection: 2 }, source: HOSTILE },
      ],
    });
    let v;
    for (let i = 0; i < 120; i++) {
      v = (await api('GET', `/functions/${f.id}/versions`)).items[0];
      if (!['none', 'running'].includes(v.verification.status)) break;
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.equal(v.verification.status, 'failed');

    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/functions/${f.id}`);
    const item = page.locator('li[data-version="1"]');
    await item.locator('[data-verification]').filter({ hasText: 'failed' }).waitFor();
    assert.equal(await item.locator('[data-review]').textContent(), 'draft');
    await item.getByText('Verification cases of version 1').click();
    const cases = item.getByRole('table');
    const ok = await cases.getByRole('row').filter({ has: page.getByRole('rowheader', { name: 'textbook' }) }).textContent();
    assert.match(ok, /deflection = 13\.3333.*deflection = 13\.3333/);
    assert.match(ok, /✓ passed/);
    assert.match(ok, /Roark 7th ed\., table 8\.1 case 1a/);
    const bad = await cases.getByRole('row').filter({ has: page.getByRole('rowheader', { name: HOSTILE }) }).textContent();
    assert.match(bad, /✗ failed/);
    assert.match(bad, /deflection = 2.*deflection = 1/);
    // The author may submit, never approve.
    assert.equal(await item.getByRole('button', { name: 'Approve version 1' }).count(), 0);
    await item.getByRole('button', { name: 'Submit version 1 for review' }).click();
    await item.locator('[data-review]').filter({ hasText: 'submitted' }).waitFor();
    assert.equal(await item.getByRole('button', { name: 'Submit version 1 for review' }).count(), 0);
    assert.deepEqual(await audit(page), []);
    await noProblems(page);
    await page.context().close();

    // Another member reviews; meanwhile the admin approves, so the member's approval is a 409.
    const bob = await newPage(stack);
    await signIn(bob, OTHER);
    await open(bob, `/functions/${f.id}`);
    const bi = bob.locator('li[data-version="1"]');
    await bi.getByRole('button', { name: 'Approve version 1' }).waitFor();
    await bi.getByRole('button', { name: 'Reject version 1' }).click();
    await bi.getByRole('alert').filter({ hasText: 'comment' }).waitFor();
    await bi.getByLabel('Comment on version 1').fill(HOSTILE);
    await bi.getByRole('button', { name: 'Reject version 1' }).click();
    await bi.locator('[data-review]').filter({ hasText: 'rejected' }).waitFor();
    await bi.getByRole('list', { name: 'Review of version 1' }).getByText(HOSTILE, { exact: false }).waitFor();

    const admin = await apiLogin(stack, ADMIN);
    await api('POST', `/functions/${f.id}/versions/1/review`, {});
    await bob.reload();
    await bi.getByRole('button', { name: 'Approve version 1' }).waitFor();
    await admin('POST', `/functions/${f.id}/versions/1/approve`, {});
    await bi.getByRole('button', { name: 'Approve version 1' }).click();
    await bi.getByRole('alert').filter({ hasText: '409' }).waitFor();
    await shot(stack, bob, 'function-review');
    await bob.reload();
    await bi.locator('[data-review]').filter({ hasText: 'approved' }).waitFor();
    assert.match(await bi.textContent(), /approved by member [0-9a-f]{8}, /);
    assert.equal(await bi.getByRole('button', { name: /Approve|Reject|Submit/ }).count(), 0);
    assert.deepEqual(await audit(bob), []);
    await noProblems(bob);
    await bob.context().close();
  });
});

describe('study page', () => {
  test('units in the header, the governing check, the Excel download', async () => {
    const f = await beam();
    const st = await api('POST', '/studies', { name: unique('beams'), target: { function: f.name },
      design: { type: 'grid', params: { L: [1, 2] } }, fixed: { F: 5 }, outputs: ['result.deflection'] });
    await api('GET', `/studies/${st.id}?wait=60`);
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/studies/${st.id}`);
    const table = page.getByRole('region', { name: 'Results' });
    await table.getByRole('columnheader', { name: 'L [m]' }).waitFor({ timeout: 60000 });
    await table.getByRole('columnheader', { name: 'result.deflection [mm]' }).waitFor();
    await table.getByRole('columnheader', { name: /check\.governing/ }).waitFor();
    await table.getByRole('cell', { name: 'tip' }).first().waitFor();
    await table.getByRole('cell', { name: 'fail', exact: true }).first().waitFor();
    const xlsx = await download(page, 'Download .xlsx');
    assert.equal(xlsx.href, `/api/v1/studies/${st.id}/results?format=xlsx`);
    assert.equal(xlsx.type, 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet');
    const sheet = readXlsx(xlsx.body);
    assert.deepEqual(sheet[0].slice(0, 2), ['index', 'L [m]']);
    assert.equal(sheet.length, 3);
    await shot(stack, page, 'study-units');
    assert.deepEqual(await audit(page), []);
    await noProblems(page);
    await page.context().close();
  });
});
