// Workflows and studies in the dashboard, in a real browser against a real server: each
// flow asserts what the page shows (labels, roles, names) and saves a screenshot.
// Run: node --test tests/browser/ (tests/run.sh runs it in `make test`).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startStack, newPage, signIn, shot, apiLogin } from './harness.mjs';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

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

async function noProblems(page) {
  assert.deepEqual(page.problems, [], 'the page reported errors or CSP refusals');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'a hostile string ran as script');
}

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
// link does). The server answers only /functions, /tasks, /account and /sign-in
// addresses with the page (src/api/api-web.c, app_sections): until /workflows,
// /workflow-runs and /studies are added there, a reload of those addresses is a 404,
// which the todo test at the end shows.
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
      assert.ok(await nodeRow(page, id).getByRole('link', { name: `Task of ${id}` }).isVisible());
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
    const taskA = await nodeRow(page, 'a').getByRole('link', { name: 'Task of a' }).getAttribute('href');
    const taskB = await nodeRow(page, 'b').getByRole('link', { name: 'Task of b' }).getAttribute('href');
    await shot(stack, page, 'workflow-run-failed');
    await page.getByRole('button', { name: 'Retry' }).click();
    // b runs again (a new task), fails again (its input is the same), a keeps its task.
    await page.waitForFunction((old) => {
      const a = document.querySelector('tr[data-node="b"] a[aria-label="Task of b"]');
      return a && a.getAttribute('href') !== old;
    }, taskB, { timeout: 60000 });
    await waitRunEnded(page);
    assert.equal(await page.locator('h1 .status').textContent(), 'failed');
    assert.equal(await nodeRow(page, 'a').getByRole('link', { name: 'Task of a' }).getAttribute('href'), taskA);
    assert.equal(await nodeStatus(page, 'b'), 'failed');
    assert.equal(await nodeStatus(page, 'c'), 'skipped');
    const after = await api('GET', `/workflow-runs/${run.id}`);
    assert.equal(`/tasks/${after.nodes.find((x) => x.id === 'b').task_id}`, await nodeRow(page, 'b').getByRole('link', { name: 'Task of b' }).getAttribute('href'));
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
