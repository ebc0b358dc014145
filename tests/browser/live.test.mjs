// Live updates from the event streams: a task's progress bar and log tail while it runs
// (`progress` and `log` events of GET /api/v1/tasks/{id}/events, the guest's `from mecapy
// import progress`), and the workflow-run and study pages following
// /api/v1/workflow-runs/{id}/events and /api/v1/studies/{id}/events instead of polling.
// These need the server's side of those events (the task `progress`/`log` events, the
// two new streams, the sandbox's `mecapy` module): without it the pages fall back to
// long polls, which the other files' flows cover.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, newPage, signIn, shot, apiLogin, noProblems } from './harness.mjs';

const SLOW = `import time
from mecapy import progress

def main(n: int = 2) -> str:
    print("starting <b>bold</b>", flush=True)
    progress(0.5, "half <i>way</i>")
    time.sleep(5)
    print("tick 1", flush=True)
    time.sleep(5)
    return "done"
`;
const NAP = 'import time\ndef main(s: float = 3.0) -> float:\n    time.sleep(s)\n    return s\n';

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

// The requests the page makes to the API, to tell a stream from long polls.
function recordApi(page) {
  const urls = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/api/v1/')) urls.push(u.pathname + u.search);
  });
  return urls;
}

describe('live updates', () => {
  test('a running task shows its progress bar and its log tail before it ends', async () => {
    const f = await api('POST', '/functions', { name: unique('slow-progress'), code: SLOW });
    const t = await api('POST', `/functions/${f.id}/execute`, { inputs: {} });
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/tasks/${t.id}`);
    const bar = page.getByRole('progressbar', { name: 'Progress' });
    await bar.waitFor({ timeout: 30000 });
    await page.locator('[aria-valuenow="50"]').waitFor();
    await page.locator('[data-progress-message]').filter({ hasText: 'half <i>way</i>' }).waitFor();
    const logs = page.getByRole('region', { name: 'Logs' });
    await logs.getByText('starting <b>bold</b>').waitFor();
    // Still running: these came from the stream, not from the task's end.
    assert.equal((await page.getByLabel('Status').textContent()).trim(), 'running');
    assert.equal(await logs.locator('b, i').count(), 0, 'log text stays text');
    await shot(stack, page, 'live-progress');
    await logs.getByText('tick 1').waitFor({ timeout: 20000 });
    await page.getByLabel('Status').filter({ hasText: 'completed' }).waitFor({ timeout: 30000 });
    await page.getByRole('region', { name: 'Result' }).getByText('done').waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('the workflow-run page follows the run by its event stream', async () => {
    const f = await api('POST', '/functions', { name: unique('nap'), code: NAP });
    const wf = await api('POST', '/workflows', { name: unique('naps'), nodes: [
      { id: 'first', function: f.name, inputs: { s: 2 } },
      { id: 'second', function: f.name, inputs: { s: { from: 'first' } } },
    ] });
    // Signed in first: the run must still be running when its page opens, however long
    // signing in takes on a loaded machine.
    const page = await newPage(stack);
    const urls = recordApi(page);
    await signIn(page);
    const run = await api('POST', `/workflows/${wf.id}/execute`, { inputs: {} });
    await page.goto(`/workflow-runs/${run.id}`);
    await page.locator('h1 .status').filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    assert.ok(urls.some((u) => u === `/api/v1/workflow-runs/${run.id}/events`), urls.join('\n'));
    assert.ok(!urls.some((u) => u.startsWith(`/api/v1/workflow-runs/${run.id}?wait=`)), `no long poll while the stream works:\n${urls.join('\n')}`);
    await noProblems(page);
    await page.context().close();
  });

  test('the study page follows the study by its event stream', async () => {
    const f = await api('POST', '/functions', { name: unique('nap-study'), code: NAP });
    const page = await newPage(stack);
    const urls = recordApi(page);
    await signIn(page);
    const st = await api('POST', '/studies', { name: 'live', target: { function: f.name },
      design: { type: 'list', points: [{ s: 1 }, { s: 2 }, { s: 3 }] }, outputs: ['result'], concurrency: 1 });
    await page.goto(`/studies/${st.id}`);
    await page.locator('h1 .status').filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    assert.equal((await page.locator('dd[data-count="completed"]').textContent()).trim(), '3');
    assert.ok(urls.some((u) => u === `/api/v1/studies/${st.id}/events`), urls.join('\n'));
    assert.ok(!urls.some((u) => u.startsWith(`/api/v1/studies/${st.id}?wait=`)), `no long poll while the stream works:\n${urls.join('\n')}`);
    await noProblems(page);
    await page.context().close();
  });

  // A stream refused (too many open, a proxy that will not pass it): the pages follow by
  // long polls of ?wait= instead, to the end.
  test('without the stream, the workflow-run and study pages follow by long polls', async () => {
    const f = await api('POST', '/functions', { name: unique('nap-polled'), code: NAP });
    const wf = await api('POST', '/workflows', { name: unique('naps-polled'), nodes: [
      { id: 'first', function: f.name, inputs: { s: 2 } },
      { id: 'second', function: f.name, inputs: { s: { from: 'first' } } },
    ] });
    const page = await newPage(stack);
    await page.route(/\/api\/v1\/(workflow-runs|studies)\/[^/]+\/events$/, (r) =>
      r.fulfill({ status: 503, contentType: 'application/problem+json', body: '{"status":503,"title":"no stream"}' }));
    const urls = recordApi(page);
    await signIn(page);

    const run = await api('POST', `/workflows/${wf.id}/execute`, { inputs: {} });
    await page.goto(`/workflow-runs/${run.id}`);
    await page.locator('h1 .status').filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    await page.locator('tr[data-node="second"]').getByText('completed').waitFor();
    assert.ok(urls.some((u) => u.startsWith(`/api/v1/workflow-runs/${run.id}?wait=`)), urls.join('\n'));

    const st = await api('POST', '/studies', { name: 'polled', target: { function: f.name },
      design: { type: 'list', points: [{ s: 1 }, { s: 2 }] }, outputs: ['result'], concurrency: 1 });
    await page.goto(`/studies/${st.id}`);
    await page.locator('h1 .status').filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    await page.locator('dd[data-count="completed"]').filter({ hasText: '2' }).waitFor();
    assert.ok(urls.some((u) => u.startsWith(`/api/v1/studies/${st.id}?wait=`)), urls.join('\n'));
    await page.getByRole('region', { name: 'Results' }).getByRole('cell', { name: '2', exact: true }).first().waitFor();
    await noProblems(page);
    await page.context().close();
  });
});
