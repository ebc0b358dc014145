// The dashboard's time to interactive, in chromium (headless, playwright-core), against a
// real server serving web/dist (the browser tests' harness starts both): `make bench`
// runs it (bench/bench.py, part "dashboard"); alone: `node bench/dashboard.mjs [RUNS]`.
// Prints one JSON object on its last line.
//
// Time to interactive, here: from the navigation's start to the moment the page's first
// control is in the page AND the main thread has run the next task after it (so a click
// then is handled at once); measured inside the page (performance.now(), a
// MutationObserver installed before any script), each run in a fresh browser context
// (cold cache, no service worker). Figures: the median of RUNS runs, and the best.
import { startStack, newPage, signIn, apiLogin } from '../tests/browser/harness.mjs';

const RUNS = Number(process.argv[2] || process.env.BENCH_DASHBOARD_RUNS || 5);

// In the page, before its scripts: when `selector` first matches (optionally with the
// text `text`), record performance.now() and then the time the next task runs.
function watcher({ selector, text }) {
  window.__tti = null;
  const seen = () => {
    for (const el of document.querySelectorAll(selector)) if (!text || el.textContent.includes(text)) return true;
    return false;
  };
  const done = () => {
    const ready = performance.now();
    setTimeout(() => {
      window.__tti = { ready, idle: performance.now() };
    }, 0);
  };
  const mo = new MutationObserver(() => {
    if (seen()) {
      mo.disconnect();
      done();
    }
  });
  document.addEventListener('DOMContentLoaded', () => (seen() ? done() : mo.observe(document.body, { childList: true, subtree: true })));
}

async function tti(stack, path, selector, text, { signedIn = false } = {}) {
  const page = await newPage(stack);
  if (signedIn) await signIn(page);
  await page.addInitScript(watcher, { selector, text });
  await page.goto(path, { waitUntil: 'commit' });
  await page.waitForFunction(() => window.__tti !== null, null, { timeout: 60000 });
  const t = await page.evaluate(() => window.__tti);
  const scripts = await page.evaluate(() => performance.getEntriesByType('resource')
    .filter((r) => r.initiatorType === 'script' || r.name.endsWith('.js'))
    .reduce((a, r) => a + (r.transferSize || r.encodedBodySize || 0), 0));
  return { page, ms: t.idle, ready_ms: t.ready, script_bytes: scripts };
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const r1 = (x) => Math.round(x * 10) / 10;

const stack = await startStack();
const out = { runs: RUNS, browser: stack.browser.version() };
try {
  const api = await apiLogin(stack);
  // The first page a visitor sees (the sign-in form), then the first page once signed in.
  const first = [], functions = [];
  let bytes = 0;
  for (let i = 0; i < RUNS; i++) {
    const a = await tti(stack, '/', 'button[type="submit"]', 'Sign in');
    first.push(a.ms);
    bytes = a.script_bytes;
    await a.page.context().close();
    const b = await tti(stack, '/functions', 'main h1', 'Functions', { signedIn: true });
    functions.push(b.ms);
    await b.page.context().close();
  }
  out.first_page_tti_ms = r1(median(first));
  out.first_page_tti_ms_min = r1(Math.min(...first));
  out.first_page_script_bytes = bytes;
  out.functions_page_tti_ms = r1(median(functions));

  // A task whose result is 100,000 rows (about 3 MB of JSON): the page is interactive
  // before the result is fetched (it asks first); then the table drawn, and its last row.
  const f = await api('POST', '/functions', { name: 'bench-rows', code: 'def main(n: int = 100000) -> list:\n    return [{"i": i, "x": i * 0.5, "name": f"r{i}"} for i in range(n)]\n' });
  const t = await api('POST', `/functions/${f.id}/execute?wait=120`, { inputs: {} });
  if (t.status !== 'completed') throw new Error(`the 100,000-row task ended ${t.status}`);
  const page = [], table = [], bottom = [];
  for (let i = 0; i < RUNS; i++) {
    const a = await tti(stack, `/tasks/${t.id}`, 'section[aria-label="Result"] button', 'Show it', { signedIn: true });
    page.push(a.ms);
    const p = a.page;
    const t0 = await p.evaluate(() => performance.now());
    await p.getByRole('region', { name: 'Result' }).getByRole('button', { name: 'Show it' }).click();
    await p.getByText('100,000 rows').waitFor({ timeout: 60000 });
    await p.getByRole('region', { name: 'Table' }).locator('tbody tr').nth(1).waitFor();
    table.push((await p.evaluate(() => performance.now())) - t0);
    const t1 = await p.evaluate(() => performance.now());
    await p.getByRole('region', { name: 'Table' }).evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await p.getByRole('cell', { name: 'r99999', exact: true }).waitFor();
    bottom.push((await p.evaluate(() => performance.now())) - t1);
    await p.context().close();
  }
  out.task_100k_page_tti_ms = r1(median(page));
  out.task_100k_table_after_click_ms = r1(median(table));
  out.task_100k_scroll_to_last_row_ms = r1(median(bottom));

  // The workflow editor with 200 nodes (the most a workflow may have), a chain: the page
  // interactive (its canvas drawn), then a node dragged by 60 pointer moves: the work of
  // each (the event, the app's update once its microtask ran, and the layout it forces),
  // median, and how many moves took longer than a 60 Hz frame (16.7 ms).
  const sq = await api('POST', '/functions', { name: 'bench-sq', code: 'def main(x: float) -> float:\n    return x * x\n' });
  const nodes = [{ id: 'n0', function: sq.name, inputs: { x: { param: 'x' } } }];
  for (let i = 1; i < 200; i++) nodes.push({ id: `n${i}`, function: sq.name, inputs: { x: { from: `n${i - 1}` } } });
  const wf = await api('POST', '/workflows', { name: 'bench-200', nodes });
  const editor = [], moves = [];
  for (let i = 0; i < RUNS; i++) {
    const a = await tti(stack, `/workflows/${wf.id}/edit`, 'svg.flow-canvas g.node', '', { signedIn: true });
    await a.page.locator('svg.flow-canvas g.node').nth(199).waitFor({ state: 'attached' });
    editor.push(await a.page.evaluate(() => performance.now()));
    moves.push(await a.page.evaluate(async () => {
      const svg = document.querySelector('svg.flow-canvas');
      const body = svg.querySelector('g[data-node="n100"] .node-body');
      const r = body.getBoundingClientRect();
      const at = (x, y) => ({ clientX: x, clientY: y, pointerId: 1, button: 0, bubbles: true, isPrimary: true });
      const frame = () => new Promise((res) => requestAnimationFrame(res));
      body.dispatchEvent(new PointerEvent('pointerdown', at(r.x + 20, r.y + 20)));
      const ts = [];
      for (let k = 1; k <= 60; k++) {
        await frame();
        const t0 = performance.now();
        svg.dispatchEvent(new PointerEvent('pointermove', at(r.x + 20 + k * 3, r.y + 20 + k)));
        await Promise.resolve();
        await Promise.resolve();
        void svg.getBoundingClientRect().width; // the layout the update needs
        ts.push(performance.now() - t0);
      }
      svg.dispatchEvent(new PointerEvent('pointerup', at(r.x + 200, r.y + 80)));
      const moved = body.closest('g.node').getAttribute('transform');
      if (!/translate\(/.test(moved)) throw new Error('the node did not move');
      ts.sort((x, y) => x - y);
      return { median: ts[30], over_frame: ts.filter((t) => t > 16.7).length };
    }));
    await a.page.context().close();
  }
  out.editor_200_nodes_drawn_ms = r1(median(editor));
  out.editor_200_nodes_move_ms = r1(median(moves.map((m) => m.median)));
  out.editor_200_nodes_moves_over_a_frame = Math.max(...moves.map((m) => m.over_frame));
} finally {
  await stack.close();
}
console.log(JSON.stringify(out));
