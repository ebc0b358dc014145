// The company's administration, the audit log, the history's time filter, the workflow
// editor's canvas (drag, connect by dragging, map nodes, the layout kept, a 200-node
// graph), the study plots, and the page's CSP without 'unsafe-inline': in a real browser
// against a real server, asserting what the page shows. Run: node --test tests/browser/.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, newPage, signIn, shot, apiLogin, USER, ADMIN, audit, noProblems } from './harness.mjs';

const HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">';

const GEN = 'def main(n: int) -> dict:\n    return {"values": [float(i) for i in range(1, n + 1)]}\n';
const SQUARE = 'def main(x: float, k: float = 1.0) -> float:\n    return k * x * x\n';
const TOTAL = 'def main(xs: list[float]) -> float:\n    return sum(xs)\n';
const DEFLECTION = 'def main(F: float, L: float, E: float = 210e9, I: float = 8.33e-6) -> dict:\n    d = F * L ** 3 / (3 * E * I)\n    return {"deflection_mm": d * 1000, "moment_max": F * L}\n';

let stack;
let api;
let admin;
let n = 0;
const unique = (s) => `${s}-${++n}`;

before(async () => {
  stack = await startStack();
  api = await apiLogin(stack);
  admin = await apiLogin(stack, ADMIN);
});
after(async () => {
  await stack?.close();
});

const fn = (name, code) => api('POST', '/functions', { name: unique(name), code });

// A drag with the mouse, in steps (pointer events, as a person's hand makes them).
async function drag(page, from, to) {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move((from.x + to.x) / 2, (from.y + to.y) / 2, { steps: 4 });
  await page.mouse.move(to.x, to.y, { steps: 4 });
  await page.mouse.up();
}
async function centre(locator) {
  await locator.scrollIntoViewIfNeeded();
  const b = await locator.boundingBox();
  return { x: b.x + b.width / 2, y: b.y + b.height / 2 };
}

describe('company administration and audit', () => {
  test('an admin lists members, adds one, changes its role, sees and revokes its tokens, sees its tasks, removes it', async () => {
    // Ada has a token (with a hostile name) and a task in the company.
    const ada = await apiLogin(stack, USER);
    await ada('POST', '/tokens', { name: HOSTILE_IMG, scopes: ['functions:read'], expires_in_days: 30 });
    const f = await ada('POST', '/functions', { name: unique('ada-fn'), code: SQUARE });
    const t = await ada('POST', `/functions/${f.id}/execute?wait=60`, { inputs: { x: 3 } });
    const me = await ada('GET', '/me');

    const page = await newPage(stack);
    page.on('dialog', (d) => d.accept());
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Company', exact: true }).click();
    const members = page.getByRole('table', { name: 'Members' });
    await members.getByRole('link', { name: USER.email }).waitFor();
    await members.getByRole('link', { name: ADMIN.email }).waitFor();

    await page.getByLabel('Email', { exact: true }).fill('dave@acme.test');
    await page.getByLabel('Role', { exact: true }).selectOption('viewer');
    await page.getByRole('button', { name: 'Add member' }).click();
    await page.getByText('dave@acme.test joined as viewer.').waitFor();
    assert.ok((await page.getByLabel("New member's password").inputValue()).length >= 8, 'a password was made and shown');
    await page.getByLabel('Role of dave@acme.test').selectOption('member');
    await page.getByText('dave@acme.test is now member.').waitFor();
    const list = await admin('GET', '/company/members');
    assert.equal(list.items.find((m) => m.email === 'dave@acme.test').role, 'member');

    // Ada's tokens and tasks; the hostile token name stays text.
    await members.getByRole('link', { name: USER.email }).click();
    await page.waitForURL(new RegExp(`/company\\?member=${me.id}$`));
    const tokens = page.getByRole('table', { name: `Tokens of ${USER.email}` });
    await tokens.getByRole('cell', { name: HOSTILE_IMG, exact: true }).waitFor();
    await page.getByRole('table', { name: `Tasks of ${USER.email}` }).getByRole('link', { name: t.id.slice(0, 8) }).waitFor();
    await shot(stack, page, 'company-member');
    await page.getByRole('button', { name: `Revoke token ${HOSTILE_IMG}` }).click();
    await page.getByText(/was revoked/).waitFor();
    await tokens.waitFor({ state: 'detached' }); // the list is drawn again after the notice
    assert.equal(await tokens.count(), 0, 'no live token left');
    assert.equal((await admin('GET', `/company/members/${me.id}/tokens`)).items.length, 0);

    await page.getByRole('button', { name: 'Remove dave@acme.test' }).click();
    await page.getByText('dave@acme.test was removed.').waitFor();
    await members.getByRole('link', { name: 'dave@acme.test' }).waitFor({ state: 'detached' });
    assert.equal(await members.getByRole('link', { name: 'dave@acme.test' }).count(), 0);
    // The admin's own row has no Remove (the API refuses the last admin anyway).
    assert.equal(await page.getByRole('button', { name: `Remove ${ADMIN.email}` }).count(), 0);
    await noProblems(page);
    await page.context().close();
  });

  test('a member sees neither page: no links, and the addresses say so', async () => {
    const page = await newPage(stack);
    await signIn(page, USER);
    assert.equal(await page.getByRole('link', { name: 'Company', exact: true }).count(), 0);
    assert.equal(await page.getByRole('link', { name: 'Audit', exact: true }).count(), 0);
    for (const p of ['/company', '/audit']) {
      await page.goto(p);
      await page.getByRole('heading', { name: 'Not allowed' }).waitFor();
    }
    await noProblems(page);
    await page.context().close();
  });

  test('the audit log: events newest first, filtered by kind, actor and time', async () => {
    // A failed login of Ada's account: an event of the company.
    const r = await fetch(`${stack.base}/api/v1/auth/login`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: USER.email, password: 'wrong-password-1' }),
    });
    assert.equal(r.status, 401);
    const me = await (await apiLogin(stack, USER))('GET', '/me');
    const page = await newPage(stack);
    await signIn(page, ADMIN);
    await page.getByRole('link', { name: 'Audit', exact: true }).click();
    const table = page.getByRole('table', { name: 'Audit events' });
    await table.waitFor();
    assert.ok(await table.locator('tbody tr').count() > 0);
    await page.getByLabel('Kind').selectOption('login_failed');
    await page.waitForURL(/kind=login_failed/);
    await table.locator('tbody tr').first().waitFor();
    const kinds = await table.locator('tbody tr td:nth-child(2)').allTextContents();
    assert.ok(kinds.length >= 1 && kinds.every((k) => k === 'login_failed'), kinds.join());
    await page.getByLabel('Kind').selectOption('login');
    await page.locator('#a-actor option', { hasText: USER.email }).waitFor({ state: 'attached' });
    await page.getByLabel('Actor').selectOption({ label: USER.email });
    await page.waitForURL(new RegExp(`actor=${me.id}`));
    // Every row left is one of Ada's logins.
    await page.waitForFunction((email) => {
      const cells = [...document.querySelectorAll('table[aria-label="Audit events"] tbody tr td:nth-child(3)')].map((c) => c.textContent);
      return cells.length > 0 && cells.every((c) => c === email);
    }, USER.email, { timeout: 10000 });
    await page.getByLabel('Since').fill('2999-01-01T00:00');
    await page.getByLabel('Since').dispatchEvent('change');
    await page.getByText('No events match these filters.').waitFor();
    assert.match(page.url(), /since=2999-01-01T/);
    await noProblems(page);
    await page.context().close();
  });
});

describe('task history', () => {
  test('filters by the time tasks were queued (from, before), kept in the address', async () => {
    const f = await fn('timed', SQUARE);
    for (const x of [1, 2]) await api('POST', `/functions/${f.id}/execute?wait=60`, { inputs: { x } });
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/tasks?function_id=${f.id}`);
    const rows = page.getByRole('table', { name: 'Tasks' }).locator('tbody tr');
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2);
    await page.getByLabel('Queued from').fill('2999-01-01T00:00');
    await page.getByLabel('Queued from').dispatchEvent('change');
    await page.getByText('No tasks match these filters.').waitFor();
    const u = new URL(page.url());
    assert.equal(u.searchParams.get('function_id'), f.id, 'the other filters stay');
    assert.match(u.searchParams.get('since'), /^2999-01-0[12]T\d\d:\d\d:00Z$/, 'since is UTC in the address');
    await page.getByRole('button', { name: 'Any time' }).click();
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2);
    await page.getByLabel('Queued before').fill('2000-01-01T00:00');
    await page.getByLabel('Queued before').dispatchEvent('change');
    await page.getByText('No tasks match these filters.').waitFor();
    // A bookmark of a window that holds them: both again.
    await page.goto(`/tasks?function_id=${f.id}&since=2000-01-01T00:00:00Z&until=2999-01-01T00:00:00Z`);
    await rows.first().waitFor();
    assert.equal(await rows.count(), 2);
    assert.equal(await page.getByLabel('Queued from').inputValue() !== '', true);
    await noProblems(page);
    await page.context().close();
  });
});

describe('workflow editor canvas', () => {
  test('nodes dragged, an output dragged onto an input, a map node: it saves, runs, and keeps its layout', async () => {
    const [g, s, t] = [await fn('gen', GEN), await fn('square', SQUARE), await fn('total', TOTAL)];
    const page = await newPage(stack);
    await signIn(page);
    await page.goto('/workflows/new');
    const name = unique('canvas');
    await page.getByLabel('Workflow name').fill(name);
    const add = async (f, id, k) => {
      await page.getByLabel('Function to add').selectOption({ label: f.name });
      await page.getByRole('button', { name: 'Add node' }).click();
      await page.getByLabel(`Id of node ${k}`).fill(id);
    };
    await add(g, 'gen', 1);
    await add(s, 'sq', 2);
    await add(t, 'total', 3);
    const canvas = page.getByRole('group', { name: 'Graph of the workflow: 3 nodes' });
    // sq maps over gen's values, each element given as x, two at a time.
    await page.getByLabel('Map sq over a list').check();
    await page.getByLabel('Element input of sq').selectOption('x');
    await drag(page, await centre(canvas.locator('circle[data-out="gen"]')), await centre(canvas.locator('g[data-node="sq"] circle[data-port="x"]')));
    await page.getByLabel('List path of sq').fill('values');
    assert.equal(await page.getByLabel('List node of sq').inputValue(), 'gen');
    await page.getByLabel('Concurrency of sq').fill('2');
    // total reads sq's whole result: a drag from sq's result port to total's xs.
    await drag(page, await centre(canvas.locator('circle[data-out="sq"]')), await centre(canvas.locator('g[data-node="total"] circle[data-port="xs"]')));
    assert.equal(await page.getByLabel('xs of total', { exact: true }).inputValue(), 'from');
    assert.equal(await page.getByLabel('Node for xs of total').inputValue(), 'sq');
    assert.deepEqual((await canvas.locator('path.edge:not(.wire)').evaluateAll((ps) => ps.map((p) => p.dataset.edge))).sort(),
      ['gen>sq.map', 'sq>total.xs']);
    // Move total 160 px down; and gen 30 px right with the keyboard.
    const body = canvas.locator('g[data-node="total"] .node-body rect');
    const before = await canvas.locator('g[data-node="total"]').getAttribute('transform');
    const c = await centre(body);
    await drag(page, c, { x: c.x, y: c.y + 160 });
    const moved = await canvas.locator('g[data-node="total"]').getAttribute('transform');
    assert.notEqual(moved, before);
    const [, mx, my] = moved.match(/translate\((-?\d+) (-?\d+)\)/).map(Number);
    assert.equal(my - Number(before.match(/translate\((-?\d+) (-?\d+)\)/)[2]), 160);
    await canvas.locator('g[data-node="gen"] .node-body').focus();
    for (let i = 0; i < 3; i++) await page.keyboard.press('ArrowRight');
    const genAt = await canvas.locator('g[data-node="gen"]').getAttribute('transform');
    await shot(stack, page, 'canvas-built');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: new RegExp(name) }).waitFor();
    const wf = (await api('GET', '/workflows?limit=200')).items.find((w) => w.name === name);
    const full = await api('GET', `/workflows/${wf.id}`);
    assert.deepEqual(full.layout.total, { x: mx, y: my });
    assert.deepEqual(full.nodes.find((x) => x.id === 'sq').map, { over: { from: 'gen', path: 'values' }, as: 'x', concurrency: 2, skip_failures: false });
    // It runs: 1 + 4 + 9.
    await page.getByLabel('n', { exact: true }).fill('3');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/workflow-runs\//);
    await page.locator('h1 .status').filter({ hasText: /^(completed|failed|cancelled)$/ }).waitFor({ timeout: 60000 });
    assert.equal(await page.locator('h1 .status').textContent(), 'completed');
    await page.getByRole('region', { name: 'Outputs' }).getByText('14', { exact: true }).waitFor();
    // The editor opens where the nodes were left.
    await page.goto(`/workflows/${wf.id}/edit`);
    const again = page.getByRole('group', { name: 'Graph of the workflow: 3 nodes' });
    await again.waitFor();
    assert.equal(await again.locator('g[data-node="total"]').getAttribute('transform'), moved);
    assert.equal(await again.locator('g[data-node="gen"]').getAttribute('transform'), genAt);
    assert.ok(await page.getByLabel('Map sq over a list').isChecked());
    await noProblems(page);
    await page.context().close();
  });

  test('a 200-node graph: moving one node redraws that node and its edges, nothing else', async () => {
    const s = await fn('sq200', SQUARE);
    const nodes = [{ id: 'n0', function: s.name, inputs: { x: { param: 'x' } } }];
    for (let i = 1; i < 200; i++) nodes.push({ id: `n${i}`, function: s.name, inputs: { x: { from: `n${i - 1}` } } });
    const wf = await api('POST', '/workflows', { name: unique('big'), nodes });
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/workflows/${wf.id}/edit`);
    const canvas = page.getByRole('group', { name: 'Graph of the workflow: 200 nodes' });
    await canvas.waitFor();
    assert.equal(await canvas.locator('g.node').count(), 200);
    assert.equal(await canvas.locator('path.edge').count(), 199);
    // Every change the move makes to the canvas, recorded.
    await canvas.evaluate((svg) => {
      window.__touched = new Set();
      new MutationObserver((ms) => {
        for (const m of ms) {
          const el = m.target.nodeType === 1 ? m.target : m.target.parentElement;
          const node = el.closest('g.node');
          window.__touched.add(node ? `node:${node.dataset.node}` : el.matches('path.edge') ? `edge:${el.dataset.edge}` : el.tagName);
        }
      }).observe(svg, { subtree: true, attributes: true, childList: true, characterData: true });
    });
    const c = await centre(canvas.locator('g[data-node="n100"] .node-body rect'));
    await drag(page, c, { x: c.x + 40, y: c.y + 30 });
    const touched = await page.evaluate(() => [...window.__touched].sort());
    assert.deepEqual(touched.filter((t) => t !== 'svg'), ['edge:n100>n101.x', 'edge:n99>n100.x', 'node:n100'], touched.join());
    await noProblems(page);
    await page.context().close();
  });
});

describe('study plots', () => {
  test('two inputs coloured by an output, and parallel coordinates: one mark or line per point', async () => {
    const f = await fn('deflection', DEFLECTION);
    const st = await api('POST', '/studies', { name: 'plots', target: { function: f.name },
      design: { type: 'grid', params: { L: [1, 2, 3], F: [100, 200, 300] } }, outputs: ['result.deflection_mm', 'result.moment_max'] });
    await api('GET', `/studies/${st.id}?wait=60`);
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/studies/${st.id}`);
    await page.locator('h1 .status').filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    await page.getByLabel('Plot kind').selectOption('xyc');
    await page.getByLabel('Colour output').selectOption('result.moment_max');
    const plot = page.getByRole('img', { name: /^F against L, coloured by result.moment_max: 9 points$/ });
    await plot.waitFor();
    assert.equal(await plot.locator('circle.mark').count(), 9);
    const fills = await plot.locator('circle.mark').evaluateAll((cs) => cs.map((x) => x.getAttribute('fill')));
    assert.ok(fills.every(Boolean) && new Set(fills).size >= 5, `coloured by moment F·L: ${fills.join(' ')}`);
    // The darkest and brightest marks are the smallest and largest moments.
    const titles = await plot.locator('circle.mark title').allTextContents();
    assert.ok(titles.some((x) => /L = 3, F = 300, result.moment_max = 900/.test(x)), titles.join('\n'));
    await shot(stack, page, 'study-plot-coloured');
    await page.getByLabel('Plot kind').selectOption('parallel');
    const pc = page.getByRole('img', { name: /^Parallel coordinates over L, F, result.deflection_mm, result.moment_max: 9 points$/ });
    await pc.waitFor();
    assert.equal(await pc.locator('polyline.pline').count(), 9);
    await shot(stack, page, 'study-plot-parallel');
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 800 }]) {
      await page.setViewportSize(viewport);
      for (const k of ['xyc', 'parallel']) {
        await page.getByLabel('Plot kind').selectOption(k);
        const v = await audit(page);
        assert.deepEqual(v, [], `study plot ${k} at ${viewport.width}px: ${JSON.stringify(v, null, 1)}`);
      }
    }
    await noProblems(page);
    await page.context().close();
  });
});

describe('CSP and accessibility of the new pages', () => {
  test("no CSP violation on any page, the code editor's included; style-src has a nonce and no 'unsafe-inline'", async () => {
    const r = await fetch(`${stack.base}/functions`);
    const csp = r.headers.get('content-security-policy');
    assert.ok(!csp.includes('unsafe-inline'), csp);
    const nonce = csp.match(/style-src 'self' 'nonce-([0-9a-f]+)'/)[1];
    assert.ok((await r.text()).includes(`nonce="${nonce}"`));
    const f = await fn('csp-fn', SQUARE);
    const page = await newPage(stack);
    await page.addInitScript(() => {
      window.__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sample}`));
    });
    await signIn(page);
    for (const p of ['/functions', '/functions/new', `/functions/${f.id}`, `/functions/${f.id}/edit`, '/tasks', '/workflows/new', '/studies/new', '/account']) {
      await page.goto(p);
      await page.locator('main h1').first().waitFor();
      await page.waitForLoadState('networkidle');
      if (p.includes('edit') || p.endsWith('new') && p.startsWith('/functions')) {
        // CodeMirror's styles applied: its editor lays out as it means to.
        await page.locator('.cm-editor').waitFor();
        assert.equal(await page.locator('.cm-editor').evaluate((e) => getComputedStyle(e).display), 'flex');
      }
      assert.deepEqual(await page.evaluate(() => window.__csp), [], `CSP violations on ${p}`);
    }
    await noProblems(page);
    await page.context().close();
  });

  test('axe-core finds no serious or critical violation on the company, audit, history and canvas pages at 1280 and 390 px', async () => {
    const s = await fn('axe-sq', SQUARE);
    const wf = await api('POST', '/workflows', { name: unique('axe-canvas'), nodes: [
      { id: 'a', function: s.name, inputs: { x: { param: 'x' } } },
      { id: 'b', function: s.name, inputs: { x: { from: 'a' } }, map: undefined },
    ] });
    const me = await (await apiLogin(stack, USER))('GET', '/me');
    const pages = ['/company', `/company?member=${me.id}`, '/audit', '/tasks?since=2000-01-01T00:00:00Z', `/workflows/${wf.id}/edit`];
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 800 }]) {
      const page = await newPage(stack, viewport);
      await signIn(page, ADMIN);
      for (const p of pages) {
        await page.goto(p);
        await page.locator('main h1').first().waitFor();
        await page.waitForLoadState('networkidle');
        const v = await audit(page);
        assert.deepEqual(v, [], `${p} at ${viewport.width}px: ${JSON.stringify(v, null, 1)}`);
        await shot(stack, page, `axe-more${p.replace(/[^a-z0-9]+/gi, '-')}-${viewport.width}`);
        if (viewport.width < 500) {
          const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
          assert.ok(overflow <= 1, `${p} scrolls sideways by ${overflow}px at ${viewport.width}px`);
        }
      }
      await noProblems(page);
      await page.context().close();
    }
  });
});
