// Signing in through an OpenID provider from the dashboard: the sign-in page shows the
// button because the server says OpenID is on (GET /api/v1/auth/providers); the server
// runs the code flow with PKCE and sets the session cookies on its way back.
// The provider is tests/services/oidc (MECAPY_TEST_OIDC_ISSUER when tests/run.sh started
// it, else started here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { startStack, newPage, shot, REPO } from './harness.mjs';

let stack;
let ownProvider = null;

before(async () => {
  let issuer = process.env.MECAPY_TEST_OIDC_ISSUER;
  if (!issuer) {
    ownProvider = mkdtempSync(join(tmpdir(), 'mecapy-oidc-'));
    issuer = execFileSync(join(REPO, 'tests', 'services', 'oidc.sh'), ['start', ownProvider], { encoding: 'utf8' }).trim();
  }
  stack = await startStack({
    extraArgs: ['--auth', `local,oidc:${issuer.replace(/\/$/, '')}`, '--oidc-audience', 'mecapy-api', '--oidc-client-id', 'mecapy-web'],
  });
});
after(async () => {
  await stack?.close();
  if (ownProvider) {
    execFileSync(join(REPO, 'tests', 'services', 'oidc.sh'), ['stop', ownProvider]);
    rmSync(ownProvider, { recursive: true, force: true });
  }
});

test('sign in with OpenID from the dashboard, and land where one was going', async () => {
  const page = await newPage(stack);
  await page.goto('/tasks');
  const button = page.getByRole('link', { name: /Sign in with your company account/ });
  await button.waitFor();
  assert.ok(await page.getByLabel('Email').isVisible(), 'local accounts are on too');
  await shot(stack, page, 'oidc-sign-in');
  await button.click();
  // The provider's own form (tests/services/oidc/provider.mjs).
  await page.locator('input[name="login"]').fill('alice');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL(`${stack.base}/tasks`);
  await page.getByRole('heading', { name: 'Tasks' }).waitFor();
  assert.match(await page.locator('header').innerText(), /alice\.oidc@example\.test/i);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'mecapy_session');
  assert.ok(session && session.httpOnly, JSON.stringify(cookies));
  await shot(stack, page, 'oidc-signed-in');
  assert.deepEqual(page.problems, []);
  await page.context().close();
});
