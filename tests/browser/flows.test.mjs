// Workflows and studies in the dashboard, in a real browser against a real server: each
// flow asserts what the page shows (labels, roles, names) and saves a screenshot.
// Run: node --test tests/browser/ (tests/run.sh runs it in `make test`).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, newPage, signIn, shot, apiLogin, audit, noProblems } from './harness.mjs';


const HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_SCRIPT = '<script>window.__pwned=2</script>';

// The worked example of docs/workflows.md.
const CANTILEVER = 'def main(F: float, L: float) -> dict:\n    return {"moment_max": F * L, "shear": F}\n';
const BENDING = 'def main(M: float, W: float) -> dict:\n    return {"sigma": M / W}\n';
const SAFETY = 'def main(sigma: float, yield_strength: float) -> dict:\n    return {"safety_factor": yield_strength / sigma, "ok": yield_strength / sigma >= 1.5}\n';
const ADD = 'def main(a: float, b: float) -> float:\n    return a + b\n';
const SQRT = 'import math\ndef main(x: float) -> float:\n    if x < 0:\n        raise ValueError("negative input: " + str(x))\n    return math.sqrt(x)\n';
const DEFLECTION = 'def main(F: float, L: float, E: float = 210e9, I: float = 8.33e-6) -> dict:\n    d = F * L ** 3 / (3 * E * I)\n    return {"deflection_mm": d * 1000, "moment_max": F * L}\n';

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

async function fn(name, code) {
  return api('POST', '/functions', { name: unique(name), code });
}

async function beamCheck() {
  const [c, b, s] = [await fn('cantilever', CANTILEVER), await fn('bending-stress', BENDING), await fn('safety', SAFETY)];
  return api('POST', '/workflows', {
    name: unique('beam-check'),
    description: 'cantilever -> bending stress -> safety factor',
    nodes: [
      { id: 'beam', function: c.name, inputs: { F: { param: 'F' }, L: { param: 'L' } } },
      { id: 'stress', function: b.name, inputs: { M: { from: 'beam', path: 'moment_max' }, W: 1.2e-4 } },
      { id: 'safety', function: s.name, inputs: { sigma: { from: 'stress', path: 'sigma' }, yield_strength: { param: 'fy' } } },
    ],
    outputs: { sigma: { from: 'stress', path: 'sigma' }, safety_factor: { from: 'safety', path: 'safety_factor' } },
  });
}

// Opens an address of the app from inside the page (the History API, as a click on a
// link does); the last test opens them straight, as a bookmark or a reload does.
async function open(page, path) {
  if (!/^https?:\/\/[^/]+\/(functions|tasks|account)/.test(page.url())) {
    await page.goto('/functions');
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
  }
  await page.evaluate((u) => {
    history.pushState(null, '', u);
    dispatchEvent(new PopStateEvent('popstate'));
  }, path);
}

// The run view's row of a node, and its status as shown.
const nodeRow = (page, id) => page.getByRole('table', { name: 'Nodes' }).locator(`tr[data-node="${id}"]`);
async function nodeStatus(page, id) {
  return (await nodeRow(page, id).locator('.status').textContent()).trim();
}

async function waitRunEnded(page) {
  try {
    await page.locator('h1 .status').filter({ hasText: /^(completed|failed|cancelled)$/ }).waitFor({ timeout: 60000 });
  } catch (e) {
    await shot(stack, page, 'run-not-ended');
    throw e;
  }
}

describe('workflows', () => {
  test('a 3-node chain runs from the workflow page: every node completed, the outputs right', async () => {
    const wf = await beamCheck();
    const page = await newPage(stack);
    await signIn(page);
    await page.getByRole('link', { name: 'Workflows', exact: true }).click();
    await page.getByRole('heading', { name: 'Workflows', exact: true }).waitFor();
    await page.getByRole('link', { name: wf.name, exact: true }).click();
    await page.getByRole('heading', { name: new RegExp(wf.name) }).waitFor();
    // The graph: one box per node, one edge per reference.
    const graph = page.getByRole('img', { name: /^Graph of/ });
    await graph.waitFor();
    assert.equal(await graph.locator('g.node').count(), 3);
    assert.equal(await graph.locator('path.edge').count(), 2);
    await page.getByLabel('F', { exact: true }).fill('1000');
    await page.getByLabel('L', { exact: true }).fill('2');
    await page.getByLabel('fy', { exact: true }).fill('235e6');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/workflow-runs\//);
    await waitRunEnded(page);
    for (const id of ['beam', 'stress', 'safety']) {
      assert.equal(await nodeStatus(page, id), 'completed', id);
      assert.ok(await nodeRow(page, id).getByRole('link', { name: `(task of ${id})` }).isVisible());
    }
    assert.equal(await page.locator('h1 .status').textContent(), 'completed');
    // σ = 2000 / 1.2e-4 = 16.67 MPa; 235 MPa / σ = 14.1
    const outputs = page.getByRole('region', { name: 'Outputs' });
    await outputs.getByText('14.1', { exact: true }).waitFor();
    await outputs.getByText('safety_factor').waitFor();
    const runPath = new URL(page.url()).pathname;
    await shot(stack, page, 'workflow-run-completed');
    // The back button goes to the workflow; the run's address opens on the run.
    await page.goBack();
    await page.getByRole('button', { name: 'Run' }).waitFor();
    await open(page, runPath);
    await page.getByRole('region', { name: 'Outputs' }).getByText('14.1', { exact: true }).waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('a failed node shows its error, its downstream is skipped with the reason; Retry re-runs it', async () => {
    const add = await fn('add', ADD);
    const sqrt = await fn('sqrt', SQRT);
    const wf = await api('POST', '/workflows', {
      name: unique('fails'),
      nodes: [
        { id: 'a', function: add.name, inputs: { a: { param: 'v' }, b: 0 } },
        { id: 'b', function: sqrt.name, inputs: { x: { from: 'a' } } },
        { id: 'c', function: add.name, inputs: { a: { from: 'b' }, b: 1 } },
      ],
    });
    const run = await api('POST', `/workflows/${wf.id}/execute`, { inputs: { v: -4 } });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/workflow-runs/${run.id}`);
    await waitRunEnded(page);
    assert.equal(await page.locator('h1 .status').textContent(), 'failed');
    assert.equal(await nodeStatus(page, 'a'), 'completed');
    assert.equal(await nodeStatus(page, 'b'), 'failed');
    await nodeRow(page, 'b').getByText(/ValueError: negative input: -4/).waitFor();
    assert.equal(await nodeStatus(page, 'c'), 'skipped');
    await nodeRow(page, 'c').getByText(/skipped: .*\bb\b/).waitFor();
    const taskA = await nodeRow(page, 'a').getByRole('link', { name: '(task of a)' }).getAttribute('href');
    const taskB = await nodeRow(page, 'b').getByRole('link', { name: '(task of b)' }).getAttribute('href');
    await shot(stack, page, 'workflow-run-failed');
    await page.getByRole('button', { name: 'Retry' }).click();
    // b runs again (a new task), fails again (its input is the same), a keeps its task.
    await page.waitForFunction((old) => {
      const a = document.querySelector('tr[data-node="b"] td.task a');
      return a && a.getAttribute('href') !== old;
    }, taskB, { timeout: 60000 });
    await waitRunEnded(page);
    assert.equal(await page.locator('h1 .status').textContent(), 'failed');
    assert.equal(await nodeRow(page, 'a').getByRole('link', { name: '(task of a)' }).getAttribute('href'), taskA);
    assert.equal(await nodeStatus(page, 'b'), 'failed');
    assert.equal(await nodeStatus(page, 'c'), 'skipped');
    const after = await api('GET', `/workflow-runs/${run.id}`);
    assert.equal(`/tasks/${after.nodes.find((x) => x.id === 'b').task_id}`, await nodeRow(page, 'b').getByRole('link', { name: '(task of b)' }).getAttribute('href'));
    await shot(stack, page, 'workflow-run-retried');
    await noProblems(page);
    await page.context().close();
  });

  test('hostile workflow names, descriptions and outputs stay text', async () => {
    const echo = await api('POST', '/functions', { name: unique('echo'), code: `def main(s: str) -> dict:\n    return {"html": s, "${HOSTILE_IMG.replace(/"/g, '\\"')}": 1}\n` });
    const wf = await api('POST', '/workflows', {
      name: unique('wf') + HOSTILE_IMG,
      description: HOSTILE_SCRIPT,
      // Node ids and output names are refused unless [A-Za-z_][A-Za-z0-9_-]* (422): the
      // hostile strings are the name, the description and what the node returns.
      nodes: [{ id: 'n1', function: echo.name, inputs: { s: { param: 's' } } }],
    });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, '/workflows');
    await page.getByRole('link', { name: wf.name }).click();
    await page.getByText(HOSTILE_SCRIPT).waitFor();
    await page.getByLabel('s', { exact: true }).fill(HOSTILE_IMG);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/workflow-runs\//);
    await waitRunEnded(page);
    await page.getByRole('region', { name: 'Outputs' }).getByText(HOSTILE_IMG).first().waitFor();
    await page.getByRole('link', { name: wf.name }).waitFor();
    assert.equal(await page.locator('main img, main script').count(), 0);
    await shot(stack, page, 'workflow-hostile');
    await noProblems(page);
    await page.context().close();
  });
});

async function waitStudyEnded(page) {
  await page.locator('h1 .status').filter({ hasText: /^(completed|cancelled)$/ }).waitFor({ timeout: 120000 });
}
const count = async (page, k) => (await page.locator(`dd[data-count="${k}"]`).textContent()).trim();

describe('workflow editor', () => {
  test('builds a 3-node chain from the palette; the 422 shows on the node and field; it runs', async () => {
    const [c, b, sf] = [await fn('cantilever', CANTILEVER), await fn('bending-stress', BENDING), await fn('safety', SAFETY)];
    const page = await newPage(stack);
    await signIn(page);
    await open(page, '/workflows');
    await page.getByRole('link', { name: 'New workflow' }).click();
    const name = unique('built');
    await page.getByLabel('Workflow name').fill(name);
    const add = async (f, id, n) => {
      await page.getByLabel('Function to add').selectOption({ label: f.name });
      await page.getByRole('button', { name: 'Add node' }).click();
      await page.getByLabel(`Id of node ${n}`).fill(id);
    };
    await add(c, 'beam', 1);
    await add(b, 'stress', 2);
    await page.getByLabel('M of stress', { exact: true }).selectOption('from');
    await page.getByLabel('Node for M of stress').fill('beam');
    await page.getByLabel('Path for M of stress').fill('moment_max');
    await page.getByLabel('W of stress', { exact: true }).selectOption('literal');
    await page.getByLabel('Value for W of stress').fill('"wide"'); // a string where a number goes
    await add(sf, 'safety', 3);
    await page.getByLabel('sigma of safety', { exact: true }).selectOption('from');
    await page.getByLabel('Node for sigma of safety').fill('stress');
    await page.getByLabel('Path for sigma of safety').fill('sigma');
    await page.getByLabel('Parameter for yield_strength of safety').fill('fy');
    const graph = page.getByRole('group', { name: 'Graph of the workflow: 3 nodes' });
    assert.equal(await graph.locator('path.edge').count(), 2);
    await page.getByRole('button', { name: 'Save' }).click();
    // The server's 422 names nodes[1].inputs.W: it is shown there, and the node is marked.
    await page.locator('#n-1-W-err').waitFor();
    assert.equal(await page.getByLabel('W of stress', { exact: true }).getAttribute('aria-invalid'), 'true');
    assert.ok(await page.locator('fieldset[data-node-index="1"]').evaluate((e) => e.classList.contains('failure')));
    await shot(stack, page, 'editor-422');
    await page.getByLabel('Value for W of stress').fill('1.2e-4');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: new RegExp(name) }).waitFor();
    await page.getByLabel('F', { exact: true }).fill('1000');
    await page.getByLabel('L', { exact: true }).fill('2');
    await page.getByLabel('fy', { exact: true }).fill('235e6');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/workflow-runs\//);
    await waitRunEnded(page);
    for (const id of ['beam', 'stress', 'safety']) assert.equal(await nodeStatus(page, id), 'completed', id);
    await page.getByRole('region', { name: 'Outputs' }).getByText('14.1', { exact: true }).waitFor();
    await shot(stack, page, 'editor-run');
    await noProblems(page);
    await page.context().close();
  });
});

describe('studies', () => {
  test('a 5 × 5 grid made in the form runs: 25 completed, 25 rows, 25 marks on the plot', async () => {
    const f = await fn('deflection', DEFLECTION);
    const page = await newPage(stack);
    await signIn(page);
    await page.getByRole('link', { name: 'Studies', exact: true }).click();
    await page.getByRole('heading', { name: 'Studies', exact: true }).waitFor();
    await page.getByRole('link', { name: 'New study' }).click();
    await page.getByLabel('Function', { exact: true }).selectOption({ label: f.name });
    await page.getByLabel('Name', { exact: true }).fill('beam-sweep');
    await page.getByLabel('Design type').selectOption('grid');
    await page.getByLabel('Parameter 1', { exact: true }).fill('L');
    await page.getByLabel('List of parameter 1').fill('1, 1.5, 2, 2.5, 3');
    await page.getByRole('button', { name: 'Add a parameter' }).click();
    await page.getByLabel('Parameter 2', { exact: true }).fill('F');
    await page.getByLabel('Values of parameter 2').selectOption('range');
    await page.getByLabel('Start of parameter 2').fill('100');
    await page.getByLabel('Stop of parameter 2').fill('500');
    await page.getByLabel('Num of parameter 2').fill('5');
    await page.getByLabel('Outputs', { exact: true }).fill('result.deflection_mm\nresult.moment_max');
    await shot(stack, page, 'study-form');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.waitForURL(/\/studies\/[0-9a-f-]{36}$/);
    await waitStudyEnded(page);
    assert.equal(await page.locator('h1 .status').textContent(), 'completed');
    assert.equal(await count(page, 'total'), '25');
    assert.equal(await count(page, 'completed'), '25');
    assert.equal(await count(page, 'failed'), '0');
    assert.equal(await page.getByRole('progressbar', { name: 'Points ended' }).getAttribute('aria-valuenow'), '25');
    const table = page.getByRole('region', { name: 'Results' });
    await page.getByText('25 rows').waitFor();
    assert.equal(await table.locator('table').getAttribute('aria-rowcount'), '26');
    const plot = page.getByRole('img', { name: /against L: 25 points/ });
    await plot.waitFor();
    assert.equal(await plot.locator('circle.mark').count(), 25);
    // Point 24 is L = 3, F = 500: M = 1500 (the grid's first parameter varies slowest).
    const res = await api('GET', `/studies/${new URL(page.url()).pathname.split('/')[2]}/results?limit=200`);
    assert.equal(res.items.length, 25);
    assert.deepEqual(res.items[24].outputs['result.moment_max'], 1500);
    // Another output on the plot: still one mark per point.
    await page.getByLabel('Output', { exact: true }).selectOption('result.moment_max');
    await page.getByRole('img', { name: /result.moment_max against L: 25 points/ }).waitFor();
    assert.equal(await page.locator('svg.scatter circle.mark').count(), 25);
    // The CSV link is the API's, with the session's cookie.
    const href = await page.getByRole('link', { name: 'Download CSV' }).getAttribute('href');
    const csv = await page.evaluate(async (u) => (await fetch(u)).text(), href);
    assert.equal(csv.trim().split(/\r?\n/).length, 26, csv);
    await shot(stack, page, 'study-grid-completed');
    await noProblems(page);
    await page.context().close();
  });

  test("the server's 422 is shown at the field its path names", async () => {
    const f = await fn('deflection', DEFLECTION);
    const page = await newPage(stack);
    await signIn(page);
    await open(page, '/studies/new');
    await page.getByLabel('Function', { exact: true }).selectOption({ label: f.name });
    await page.getByLabel('Fixed inputs').fill('{"L": 2}');
    await page.getByLabel('Parameter 1', { exact: true }).fill('L');
    await page.getByLabel('List of parameter 1').fill('1, 2');
    await page.getByRole('button', { name: 'Create' }).click();
    const fixed = page.getByLabel('Fixed inputs');
    await page.locator('#s-fixed-err').filter({ hasText: 'fixed.L' }).waitFor();
    assert.equal(await fixed.getAttribute('aria-invalid'), 'true');
    // A path that is not well formed: at Outputs.
    await page.getByLabel('Fixed inputs').fill('{}');
    await page.getByLabel('Outputs', { exact: true }).fill('result..x');
    await page.getByRole('button', { name: 'Create' }).click();
    await page.locator('#s-outputs-err').filter({ hasText: 'outputs' }).waitFor();
    await shot(stack, page, 'study-422');
    await noProblems(page);
    await page.context().close();
  });

  test('a failed point shows its error; Retry failed runs it again', async () => {
    const f = await fn('sqrt', SQRT);
    const st = await api('POST', '/studies', { name: 'roots', target: { function: f.name },
      design: { type: 'grid', params: { x: [-1, 4, 9] } }, outputs: ['result'] });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, `/studies/${st.id}`);
    await waitStudyEnded(page);
    assert.equal(await count(page, 'completed'), '2');
    assert.equal(await count(page, 'failed'), '1');
    await page.getByRole('region', { name: 'Results' }).getByText(/ValueError: negative input: -1/).waitFor();
    assert.equal(await page.locator('svg.scatter circle.mark').count(), 2);
    await page.getByRole('button', { name: 'Retry failed' }).click();
    await page.getByRole('status').filter({ hasText: '1 failed point(s) run again.' }).waitFor();
    await waitStudyEnded(page);
    assert.equal(await count(page, 'failed'), '1');
    await shot(stack, page, 'study-retried');
    await noProblems(page);
    await page.context().close();
  });

  test('hostile study names and outputs stay text', async () => {
    const f = await api('POST', '/functions', { name: unique('echo'), code: 'def main(s: str) -> dict:\n    return {"html": s}\n' });
    const st = await api('POST', '/studies', { name: HOSTILE_IMG, notes: HOSTILE_SCRIPT, target: { function: f.name },
      design: { type: 'list', points: [{ s: HOSTILE_IMG }, { s: HOSTILE_SCRIPT }] }, outputs: ['result.html'] });
    const page = await newPage(stack);
    await signIn(page);
    await open(page, '/studies');
    await page.getByRole('link', { name: HOSTILE_IMG }).click();
    await waitStudyEnded(page);
    await page.getByRole('heading', { name: new RegExp('<img') }).waitFor();
    await page.getByText(HOSTILE_SCRIPT).first().waitFor();
    await page.getByRole('region', { name: 'Results' }).getByText(HOSTILE_SCRIPT).first().waitFor();
    assert.equal(await page.locator('main img, main script').count(), 0);
    await shot(stack, page, 'study-hostile');
    await noProblems(page);
    await page.context().close();
  });
});

describe('new pages', () => {
  test('axe-core finds no serious or critical violation on the workflow and study pages', async () => {
    const wf = await beamCheck();
    const run = await api('POST', `/workflows/${wf.id}/execute?wait=60`, { inputs: { F: 1000, L: 2, fy: 235e6 } });
    const f = await fn('deflection', DEFLECTION);
    const st = await api('POST', '/studies', { name: 'axe', target: { function: f.name },
      design: { type: 'grid', params: { L: [1, 2], F: [100, 200] } }, outputs: ['result.deflection_mm'] });
    await api('GET', `/studies/${st.id}?wait=60`);
    const pages = ['/workflows', '/workflows/new', `/workflows/${wf.id}/edit`, `/workflows/${wf.id}`, `/workflow-runs/${run.id}`, '/studies', '/studies/new', `/studies/${st.id}`];
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 800 }]) {
      const page = await newPage(stack, viewport);
      await signIn(page);
      for (const p of pages) {
        await open(page, p);
        await page.locator('main h1').first().waitFor();
        await page.waitForLoadState('networkidle');
        await page.waitForTimeout(300); // the lazily loaded graph and plot
        const v = await audit(page);
        assert.deepEqual(v, [], `${p} at ${viewport.width}px: ${JSON.stringify(v, null, 1)}`);
        await shot(stack, page, `axe${p.replace(/[^a-z0-9]+/gi, '-')}-${viewport.width}`);
      }
      await noProblems(page);
      await page.context().close();
    }
  });

  // A bookmark or a reload of /workflows, /workflow-runs and /studies addresses: the
  // server answers them with the page (src/api/api-web.c, app_sections).
  test('the new addresses open straight on their page', async () => {
    const page = await newPage(stack);
    await signIn(page);
    for (const p of ['/workflows', '/studies', '/studies/new']) {
      const r = await page.goto(p);
      assert.equal(r.status(), 200, p);
      await page.locator('main h1').first().waitFor();
    }
    await page.context().close();
  });
});

