// The dashboard in a real browser against a real server: each flow asserts what the
// page shows, as a person or a screen reader finds it (labels, roles, names), and saves
// a screenshot. Run: node --test tests/browser/ (tests/run.sh runs it in `make test`).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startStack, newPage, signIn, shot, apiLogin, USER, audit, noProblems } from './harness.mjs';


const HOSTILE_IMG = '<img src=x onerror="window.__pwned=1">';
const HOSTILE_SCRIPT = '<script>window.__pwned=2</script>';

let stack;
let api;

before(async () => {
  stack = await startStack();
  api = await apiLogin(stack);
});
after(async () => {
  await stack?.close();
});

async function createFunction(name, code, extra = {}) {
  return api('POST', '/functions', { name, code, ...extra });
}

describe('dashboard', () => {
  test('sign in: a wrong password is refused, the right one opens Functions; sign out', async () => {
    const page = await newPage(stack);
    await page.goto('/');
    await page.getByLabel('Email').fill(USER.email);
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Wrong email or password' }).waitFor();
    await page.getByLabel('Password').fill(USER.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    assert.ok(await page.getByRole('link', { name: 'Functions', exact: true }).isVisible());
    assert.ok(await page.getByRole('link', { name: 'Tasks', exact: true }).isVisible());
    // The session is an HttpOnly cookie: the page's scripts cannot read it.
    const cookies = await page.evaluate(() => document.cookie);
    assert.ok(!cookies.includes('mecapy_session'), cookies);
    await shot(stack, page, 'sign-in-functions');
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await page.goto('/tasks');
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('by keyboard alone: sign in, open a function, fill its form and run it', async () => {
    const f = await createFunction('keyed', 'def main(a: float, b: float = 1.0) -> float:\n    return a + b\n');
    const page = await newPage(stack);
    await page.goto('/');
    await page.getByLabel('Email').waitFor();
    await page.keyboard.press('Tab'); // the skip link comes first
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    await page.keyboard.press('Tab'); // the brand's link
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'email');
    await page.keyboard.type(USER.email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(USER.password);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
    // Focus is visible: the focused link gets an outline.
    const link = page.getByRole('link', { name: 'keyed' });
    await link.focus();
    assert.notEqual(await link.evaluate((e) => getComputedStyle(e).outlineStyle), 'none');
    await page.keyboard.press('Enter');
    await page.getByLabel('a', { exact: true }).waitFor();
    await page.getByLabel('a', { exact: true }).focus();
    await page.keyboard.type('2.5');
    await page.keyboard.press('Enter');
    await page.waitForURL(/\/tasks\//);
    await page.getByRole('region', { name: 'Result' }).getByText('3.5').waitFor({ timeout: 60000 });
    await noProblems(page);
    await page.context().close();
  });

  test('create a function: a syntax error is shown at its line, the fix saves', async () => {
    const page = await newPage(stack);
    await signIn(page);
    await page.getByRole('link', { name: 'New function' }).click();
    await page.getByLabel('Name').fill('beam-edit');
    await page.getByLabel('Description').fill('a beam');
    const editor = page.locator('.cm-content');
    await editor.waitFor();
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    // CodeMirror indents and closes brackets as one types: insert the text as pasted.
    await page.keyboard.insertText('def main(F: float) -> float:\n    x = (F +\n    return F\n');
    await page.getByRole('button', { name: 'Save' }).click();
    const problems = page.getByRole('alert', { name: 'Problems' });
    await problems.waitFor();
    const text = await problems.innerText();
    assert.match(text, /Line [23]/, text);
    assert.ok(await page.locator('.cm-error-line').count() >= 1, 'the line is marked in the editor');
    await shot(stack, page, 'edit-syntax-error');
    await editor.click();
    await page.keyboard.press('Control+A');
    await page.keyboard.press('Delete');
    await page.keyboard.insertText('def main(F: float) -> float:\n    return F * 2\n');
    await page.getByRole('button', { name: 'Save' }).click();
    await page.getByRole('heading', { name: /beam-edit/ }).waitFor();
    await page.getByRole('button', { name: 'Run' }).waitFor();
    assert.match(page.url(), /\/functions\/[0-9a-f-]+$/);
    await noProblems(page);
    await page.context().close();
  });

  test('run from the generated form: a wrong value errs at its field, a right one shows result and image', async () => {
    const code = `import struct, zlib
from pathlib import Path
from typing import Literal

def png(w, h):
    raw = b''.join(b'\\x00' + bytes([200, 60, 40]) * w for _ in range(h))
    def chunk(t, d):
        return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    return (b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))

def main(F: float, L: float = 2.0, n: int = 3, mode: Literal["fast", "exact"] = "fast",
         check: bool = False, xs: list[float] = [1.0, 2.0]) -> dict:
    """Deflection of a beam.

    Args:
        F: the load (N)
        L: the length (m)
    """
    Path('outputs').mkdir(exist_ok=True)
    Path('outputs/plot.png').write_bytes(png(40, 20))
    return {"deflection": F * L / 3, "mode": mode, "n": n, "sum": sum(xs), "check": check}
`;
    const f = await createFunction('beam-run', code);
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    const F = page.getByLabel('F', { exact: true });
    await F.waitFor();
    // Defaults are pre-filled; the enum is a select; the list has rows.
    assert.equal(await page.getByLabel('L', { exact: true }).inputValue(), '2');
    assert.equal(await page.getByLabel('mode', { exact: true }).evaluate((e) => e.tagName), 'SELECT');
    assert.equal(await page.getByLabel('xs 2', { exact: true }).inputValue(), '2');
    await F.fill('ten');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.locator(`#${await F.getAttribute('id')}-err`).filter({ hasText: 'expected a number' }).waitFor();
    assert.equal(await F.getAttribute('aria-invalid'), 'true');
    await shot(stack, page, 'run-form-error');
    await F.fill('30');
    await page.getByLabel('mode', { exact: true }).selectOption({ label: 'exact' });
    await page.getByRole('button', { name: 'Add a row to xs' }).click();
    await page.getByLabel('xs 3', { exact: true }).fill('4');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/tasks\/[0-9a-f-]+$/);
    const result = page.getByRole('region', { name: 'Result' });
    await result.getByText('deflection').waitFor({ timeout: 60000 });
    const rtext = await result.innerText();
    assert.match(rtext, /deflection[\s\S]*20/, rtext);
    assert.match(rtext, /exact/, rtext);
    assert.match(rtext, /sum[\s\S]*7/, rtext);
    const img = page.getByRole('region', { name: 'Artifacts' }).getByRole('img', { name: 'plot.png' });
    await img.waitFor();
    await page.waitForFunction((el) => el.complete && el.naturalWidth === 40, await img.elementHandle());
    await shot(stack, page, 'task-result-artifact');
    // The back button returns to the function, forward to the task; the task's address
    // opens straight on it.
    const url = page.url();
    await page.goBack();
    await page.getByRole('button', { name: 'Run' }).waitFor();
    await page.goForward();
    await result.getByText('deflection').waitFor();
    await page.goto(url);
    await result.getByText('deflection').waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('two versions of a function are compared line by line', async () => {
    const f = await createFunction('versioned', 'def main(F: float) -> float:\n    k = 2\n    return F * k\n');
    await api('PUT', `/functions/${f.id}`, { code: 'def main(F: float) -> float:\n    k = 3\n    return F * k\n' });
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    await page.getByLabel('From version').selectOption('1');
    await page.getByLabel('To version').selectOption('2');
    await page.getByRole('button', { name: 'Compare' }).click();
    const diff = page.getByLabel('Changes from version 1 to version 2');
    await diff.waitFor();
    const text = await diff.innerText();
    assert.match(text, /^- {5}k = 2$/m, text);
    assert.match(text, /^\+ {5}k = 3$/m, text);
    assert.match(text, /^ {2}def main/m, text);
    await shot(stack, page, 'version-diff');
    await noProblems(page);
    await page.context().close();
  });

  test('a column pasted from a spreadsheet fills a list, one row per line', async () => {
    const f = await createFunction('pasted', 'def main(xs: list[float]) -> float:\n    return sum(xs)\n');
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    await page.getByRole('button', { name: 'Add a row to xs' }).click();
    const first = page.getByLabel('xs 1', { exact: true });
    await first.evaluate((el) => {
      const dt = new DataTransfer();
      dt.setData('text/plain', '1.5\tignored\r\n2.5\r\n\r\n4\r\n');
      el.dispatchEvent(new ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
    });
    assert.equal(await page.getByLabel('xs 3', { exact: true }).inputValue(), '4');
    assert.equal(await page.getByLabel('xs 2', { exact: true }).inputValue(), '2.5');
    assert.equal(await first.inputValue(), '1.5');
    assert.equal(await page.getByLabel('xs 4', { exact: true }).count(), 0);
    await page.getByRole('button', { name: 'Remove xs 2' }).click();
    await page.getByRole('button', { name: 'Run' }).click();
    await page.getByRole('region', { name: 'Result' }).getByText('5.5').waitFor({ timeout: 60000 });
    await noProblems(page);
    await page.context().close();
  });

  test("the server's 422 is shown at the field its path names", async () => {
    const f = await createFunction('dict-in', 'def main(m: dict[str, float], k: int = 1) -> float:\n    return sum(m.values()) * k\n');
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    const m = page.getByLabel('m', { exact: true });
    await m.fill('{"a": "not a number"}'); // valid JSON: only the server knows it is wrong
    await page.getByRole('button', { name: 'Run' }).click();
    const err = page.locator(`#${await m.getAttribute('id')}-err`);
    await err.filter({ hasText: 'a: expected a number' }).waitFor();
    assert.equal(await m.getAttribute('aria-invalid'), 'true');
    assert.match(page.url(), /\/functions\//, 'no task was made');
    await shot(stack, page, 'run-form-server-422');
    await m.fill('{"a": 1.5, "b": 2}');
    await page.getByRole('button', { name: 'Run' }).click();
    await page.getByRole('region', { name: 'Result' }).getByText('3.5').waitFor({ timeout: 60000 });
    await noProblems(page);
    await page.context().close();
  });

  test('a long call: status goes live from running to completed, then its logs show', async () => {
    const f = await createFunction('slow-log', 'import time\ndef main(s: float = 4) -> str:\n    print("step one done")\n    time.sleep(s)\n    return "finished"\n');
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/tasks\//);
    const status = page.getByRole('status', { name: 'Status' });
    await status.filter({ hasText: 'running' }).waitFor({ timeout: 30000 });
    await shot(stack, page, 'task-running');
    await status.filter({ hasText: 'completed' }).waitFor({ timeout: 60000 });
    await page.getByRole('region', { name: 'Logs' }).getByText('step one done').waitFor();
    await page.getByRole('region', { name: 'Result' }).getByText('finished').waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('with every event stream of the user taken, the task page follows by long polls', async () => {
    const f = await createFunction('held', 'import time\ndef main() -> int:\n    time.sleep(120)\n    return 1\n');
    const t = await api('POST', `/functions/${f.id}/execute`, { inputs: {} });
    const tok = (await api('POST', '/tokens', { name: 'streams', scopes: ['tasks:read'] })).token;
    const aborts = [];
    try {
      for (let i = 0; i < 16; i++) {
        const ac = new AbortController();
        aborts.push(ac);
        const r = await fetch(`${stack.base}/api/v1/tasks/${t.id}/events`, { headers: { Authorization: `Bearer ${tok}` }, signal: ac.signal });
        assert.equal(r.status, 200);
      }
      const page = await newPage(stack);
      await signIn(page);
      const refused = page.waitForResponse((r) => r.url().endsWith('/events') && r.status() === 429);
      await page.goto(`/tasks/${t.id}`);
      await refused;
      await page.getByRole('status', { name: 'Status' }).filter({ hasText: /queued|running/ }).waitFor();
      await api('POST', `/tasks/${t.id}/cancel`);
      await page.getByRole('status', { name: 'Status' }).filter({ hasText: 'cancelled' }).waitFor();
      assert.deepEqual(page.problems.filter((p) => !p.includes('429')), []);
      await page.context().close();
    } finally {
      for (const ac of aborts) ac.abort();
    }
  });

  test('cancel a running call; the history filters by function and status', async () => {
    const f = await createFunction('sleeper', 'import time\ndef main() -> int:\n    time.sleep(120)\n    return 1\n');
    const page = await newPage(stack);
    await signIn(page);
    await page.goto(`/functions/${f.id}`);
    await page.getByRole('button', { name: 'Run' }).click();
    await page.waitForURL(/\/tasks\//);
    const taskUrl = page.url();
    await page.getByRole('button', { name: 'Cancel' }).click();
    await page.getByRole('status', { name: 'Status' }).filter({ hasText: 'cancelled' }).waitFor();
    await shot(stack, page, 'task-cancelled');

    await page.getByRole('link', { name: 'Tasks', exact: true }).click();
    await page.getByRole('heading', { name: 'Tasks' }).waitFor();
    const table = page.getByRole('table', { name: 'Tasks' });
    await table.waitFor();
    await page.getByLabel('Function').selectOption({ label: 'sleeper' });
    await page.waitForURL(/function_id=/);
    await page.waitForFunction(() => [...document.querySelectorAll('table[aria-label="Tasks"] tbody tr')]
      .every((r) => r.textContent.includes('sleeper')));
    await page.getByLabel('Status').selectOption('cancelled');
    await page.waitForURL(/status=cancelled/);
    const rows = table.locator('tbody tr');
    await rows.first().getByText('cancelled', { exact: true }).waitFor();
    assert.equal(await rows.count(), 1);
    assert.ok(taskUrl.endsWith(await rows.first().getByRole('link').first().getAttribute('href')));
    await shot(stack, page, 'tasks-filtered');
    // The filter is in the address: reloading keeps it.
    await page.reload();
    await table.locator('tbody tr').first().waitFor();
    assert.equal(await table.locator('tbody tr').count(), 1);
    await noProblems(page);
    await page.context().close();
  });

  test('a 100,000-row result is a virtual table that scrolls to its last row', async () => {
    const f = await createFunction('rows', 'def main(n: int = 100000) -> list:\n    return [{"i": i, "x": i * 0.5, "name": f"r{i}"} for i in range(n)]\n');
    const t = await api('POST', `/functions/${f.id}/execute?wait=60`, { inputs: {} });
    assert.equal(t.status, 'completed');
    const page = await newPage(stack);
    await signIn(page);
    const fetched = [];
    page.on('request', (r) => fetched.push(r.url()));
    await page.goto(`/tasks/${t.id}`);
    // Over 2 MiB: not even fetched until asked for.
    const show = page.getByRole('region', { name: 'Result' }).getByRole('button', { name: 'Show it' });
    await show.waitFor();
    assert.ok(!fetched.some((u) => u.endsWith(`/api/v1/tasks/${t.id}`)), fetched.join('\n'));
    await show.click();
    const table = page.getByRole('region', { name: 'Table' });
    await table.waitFor({ timeout: 30000 });
    await page.getByText('100,000 rows').waitFor();
    assert.ok(await table.locator('tbody tr').count() < 100, 'only the rows in view are in the page');
    await table.evaluate((el) => { el.scrollTop = el.scrollHeight; });
    await table.getByRole('cell', { name: 'r99999', exact: true }).waitFor();
    await shot(stack, page, 'rows-100k-bottom');
    // Sorting by a column (descending) puts the last row first.
    await table.getByRole('button', { name: 'i', exact: true }).click();
    await table.getByRole('button', { name: /^i ▲$/ }).click();
    await table.evaluate((el) => { el.scrollTop = 0; });
    await table.getByRole('cell', { name: 'r99999', exact: true }).waitFor();
    await noProblems(page);
    await page.context().close();
  });

  test('hostile strings from a user or a function stay text', async () => {
    const code = `from pathlib import Path
def main(note: str = '${HOSTILE_IMG}') -> dict:
    """${HOSTILE_SCRIPT} ${HOSTILE_IMG}"""
    print('${HOSTILE_SCRIPT}')
    Path('outputs').mkdir(exist_ok=True)
    Path('outputs/${HOSTILE_IMG.replace(/"/g, '')}.txt').write_text('x')
    return {'${HOSTILE_IMG}': '${HOSTILE_SCRIPT}', 'rows': [{'html': '${HOSTILE_IMG}'}]}
`;
    const f = await createFunction('hostile', code, { description: `${HOSTILE_IMG} ${HOSTILE_SCRIPT}`, visibility: 'company' });
    const t = await api('POST', `/functions/${f.id}/execute?wait=60`, { inputs: {} });
    assert.equal(t.status, 'completed', JSON.stringify(t.error));
    const page = await newPage(stack);
    await signIn(page);
    await page.getByText(HOSTILE_IMG).first().waitFor(); // the description, in the list
    await page.goto(`/functions/${f.id}`);
    await page.getByText(HOSTILE_SCRIPT, { exact: false }).first().waitFor();
    assert.equal(await page.getByLabel('note', { exact: true }).inputValue(), HOSTILE_IMG);
    await shot(stack, page, 'hostile-function');
    await page.goto(`/tasks/${t.id}`);
    await page.getByRole('region', { name: 'Logs' }).getByText(HOSTILE_SCRIPT).waitFor();
    await page.getByRole('region', { name: 'Result' }).getByText(HOSTILE_SCRIPT).first().waitFor();
    await page.getByRole('region', { name: 'Artifacts' }).getByText(/<img src=x/).waitFor();
    // No element came from those strings.
    assert.equal(await page.locator('main img[src="x"], main script').count(), 0);
    await shot(stack, page, 'hostile-task');
    await noProblems(page);
    await page.context().close();
  });

  test('tokens: create one with scopes (shown once, it works with those scopes), revoke it', async () => {
    const page = await newPage(stack);
    await signIn(page);
    await page.getByRole('link', { name: 'Account' }).click();
    await page.getByLabel('Token name').fill('ci-script');
    await page.getByLabel('execute').uncheck();
    await page.getByRole('button', { name: 'Create token' }).click();
    const token = await page.getByLabel('New token').inputValue();
    assert.match(token, /^mpy_/);
    const row = page.getByRole('row').filter({ hasText: 'ci-script' });
    await row.waitFor();
    assert.match(await row.innerText(), /functions:read, tasks:read/);
    const h = { Authorization: `Bearer ${token}` };
    assert.equal((await fetch(`${stack.base}/api/v1/functions`, { headers: h })).status, 200);
    assert.equal((await fetch(`${stack.base}/api/v1/tokens`, { headers: h })).status, 403);
    await shot(stack, page, 'account-tokens');
    page.once('dialog', (d) => d.accept());
    await row.getByRole('button', { name: 'Revoke ci-script' }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal((await fetch(`${stack.base}/api/v1/functions`, { headers: h })).status, 401);
    await noProblems(page);
    await page.context().close();
  });

  test('axe-core finds no serious or critical violation on the main pages; narrow windows work', async () => {
    const f = await createFunction('axe-fn', 'def main(F: float, L: float = 1.0, xs: list[int] = [1]) -> dict:\n    """Area."""\n    return {"a": F * L, "rows": [{"k": 1, "v": 2.5}]}\n');
    const t = await api('POST', `/functions/${f.id}/execute?wait=60`, { inputs: { F: 2 } });
    const pages = ['/sign-in', '/functions', `/functions/${f.id}`, `/functions/${f.id}/edit`, `/tasks/${t.id}`, '/tasks', '/account'];
    for (const viewport of [{ width: 1280, height: 800 }, { width: 390, height: 800 }]) {
      const page = await newPage(stack, viewport);
      await page.goto('/sign-in');
      const anon = await audit(page);
      assert.deepEqual(anon, [], `/sign-in (signed out): ${JSON.stringify(anon, null, 1)}`);
      await signIn(page);
      for (const p of pages.slice(1)) {
        await page.goto(p);
        await page.locator('main h1').first().waitFor();
        await page.waitForLoadState('networkidle');
        const v = await audit(page);
        assert.deepEqual(v, [], `${p} at ${viewport.width}px: ${JSON.stringify(v, null, 1)}`);
        await shot(stack, page, `axe${p.replace(/[^a-z0-9]+/gi, '-')}-${viewport.width}`);
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

