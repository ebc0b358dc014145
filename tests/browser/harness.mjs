// The browser tests' harness: a real `mecapy serve` on a free loopback port serving the
// built dashboard (web/dist), accounts made with `mecapy admin create-user`, and Debian's
// chromium driven by playwright-core (headless, a fresh profile per context). Screenshots
// go to the run's temporary folder (printed at the start), never into the tree.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, existsSync, readFileSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BIN = process.env.MECAPY_BIN || join(REPO, 'build', 'mecapy');
const WEB = process.env.MECAPY_WEB_DIR || join(REPO, 'web', 'dist');
const CHROMIUM = process.env.MECAPY_CHROMIUM || '/usr/bin/chromium';

export const USER = { email: 'ada@acme.test', password: 'ada-pass-12345' };
export const OTHER = { email: 'bob@acme.test', password: 'bob-pass-12345' };
// The company's admin (the company and audit pages).
export const ADMIN = { email: 'carol@acme.test', password: 'carol-pass-12345', role: 'admin' };

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on('error', rej);
  });
}

async function waitReady(base, proc, logPath) {
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`mecapy serve exited ${proc.exitCode}:\n${readFileSync(logPath, 'utf8').slice(-4000)}`);
    try {
      const r = await fetch(base + '/healthz');
      if (r.ok) return;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`mecapy serve did not answer /healthz in 20 s:\n${readFileSync(logPath, 'utf8').slice(-4000)}`);
}

export async function startStack({ extraArgs = [] } = {}) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: build it (make build), or set MECAPY_BIN`);
  if (!existsSync(join(WEB, 'index.html'))) throw new Error(`${WEB}/index.html is missing: build the dashboard (make web)`);
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/install-deps.sh test)`);
  const root = join(REPO, '.test-tmp');
  mkdirSync(root, { recursive: true });
  const tmp = mkdtempSync(join(root, 'browser-'));
  const data = join(tmp, 'data');
  const shots = join(tmp, 'screenshots');
  mkdirSync(shots);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MECAPY_')));
  for (const u of [USER, OTHER, ADMIN])
    execFileSync(BIN, ['admin', 'create-user', '--email', u.email, '--password', u.password, '--company', 'acme',
      '--role', u.role ?? 'member', '--data-dir', data], { env, stdio: 'pipe' });
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logPath = join(tmp, 'server.log');
  // A file's flows sign in a dozen times from one address within a minute; the default
  // login limit (10 a minute per address, tested by the HTTP suites) would refuse the
  // last ones whenever the flows run fast.
  const proc = spawn(BIN, ['serve', '--data-dir', data, '--port', String(port), '--host', '127.0.0.1',
    '--web-dir', WEB, '--workers', '4', '--auth-rate-limit', '600', ...extraArgs], { env, stdio: ['ignore', openSync(logPath, 'a'), openSync(logPath, 'a')], detached: true });
  await waitReady(base, proc, logPath);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // Root in a container has no user namespaces for chromium's own sandbox.
    args: process.getuid?.() === 0 ? ['--no-sandbox'] : [],
  });
  console.log(`screenshots: ${shots}`);
  return {
    base, tmp, shots, browser, logPath,
    async close() {
      await browser.close().catch(() => {});
      try { process.kill(-proc.pid, 'SIGTERM'); } catch { /* gone */ }
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
      // The screenshots and the server's log stay; the data goes.
      if (!process.env.MECAPY_KEEP_TEST_DATA) rmSync(data, { recursive: true, force: true });
    },
  };
}

// A new browser context (its own cookies) with a page at 1280 × 800 that records the
// page's errors and the CSP's refusals.
export async function newPage(stack, viewport = { width: 1280, height: 800 }) {
  const context = await stack.browser.newContext({ viewport, baseURL: stack.base });
  const page = await context.newPage();
  page.problems = [];
  page.on('pageerror', (e) => page.problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy|Refused to/i.test(m.text())) page.problems.push(`csp: ${m.text()}`);
  });
  return page;
}

export async function signIn(page, user = USER) {
  await page.goto('/');
  await page.getByLabel('Email').fill(user.email);
  await page.getByLabel('Password').fill(user.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Functions', exact: true }).waitFor();
}

export async function shot(stack, page, name) {
  await page.screenshot({ path: join(stack.shots, `${name}.png`), fullPage: true });
}

// The API from the test itself (to set up what a flow needs), signed in with a token.
export async function apiLogin(stack, user = USER) {
  const r = await fetch(`${stack.base}/api/v1/auth/login`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email: user.email, password: user.password }),
  });
  if (!r.ok) throw new Error(`login: ${r.status} ${await r.text()}`);
  const { token } = await r.json();
  return async (method, path, body) => {
    const res = await fetch(`${stack.base}/api/v1${path}`, {
      method, headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
}

// What every flow asserts on a page it drove: no error or CSP refusal reported, and no
// hostile string ran as script (a payload sets window.__pwned).
export async function noProblems(page) {
  assert.deepEqual(page.problems, [], 'the page reported errors or CSP refusals');
  assert.equal(await page.evaluate(() => window.__pwned), undefined, 'a hostile string ran as script');
}

// axe-core's serious and critical violations on the page, evaluated through the
// DevTools protocol (which the page's CSP does not govern).
const AXE = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
export async function audit(page) {
  await page.evaluate(AXE);
  const res = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return res.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map((x) => x.target.join(' ')) }));
}
