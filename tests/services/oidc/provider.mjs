// A real OpenID provider for MecaPy's tests (oidc-provider from npm), standing in for
// Keycloak: RS256 JWT access tokens whose aud comes from resource indicators, Keycloak's
// claims (realm_access.roles, preferred_username, azp, an array aud, groups, company),
// a client-credentials client, a public PKCE client, and key rotation.
//
//   node provider.mjs PORT        serves http://127.0.0.1:PORT (the issuer)
//
// Clients:
//   mecapy-machine / machine-secret   client_credentials; its tokens say admin of
//                                     company "acme-corp" (see MACHINE below)
//   mecapy-viewer-bot / viewer-secret client_credentials; realm role "viewer" only
//   mecapy-web                        public (PKCE), native: any loopback port allowed
// Accounts for the code flow: the login form at /interaction/UID takes login=<name>.
// Test-only admin routes (loopback only, no auth: never run this anywhere else):
//   POST /admin/rotate    a new signing key (new kid) becomes current; old kept in JWKS
//   POST /admin/mint      {"header": {...}, "payload": {...}} signed with the current
//                         key (kid and alg RS256 added unless given): genuine
//                         signatures over claims a test chooses (expired, wrong iss...)
//   POST /admin/account   {"name": ..., "claims": {...}} add or change an account
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 0);
const issuer = `http://127.0.0.1:${port}`;
const AUDIENCE = process.env.OIDC_AUDIENCE || 'mecapy-api';
const RESOURCE = 'urn:mecapy:api';

const MACHINE = {
  'mecapy-machine': { realm_access: { roles: ['default-roles-mecapy', 'offline_access', 'mecapy-admin'] },
                      company: 'acme-corp' },
  'mecapy-viewer-bot': { realm_access: { roles: ['default-roles-mecapy', 'viewer'] },
                         groups: ['/globex-corp', '/other'] },
};

const accounts = {
  alice: { sub: 'kc-7f3a-alice', email: 'Alice.OIDC@example.test', email_verified: true,
           preferred_username: 'alice', realm_access: { roles: ['default-roles-mecapy'] },
           resource_access: { 'mecapy-web': { roles: ['mecapy-admin'] } }, company: 'acme-corp' },
  victor: { sub: 'kc-19bd-victor', email: 'victor@example.test', email_verified: true,
            preferred_username: 'victor', realm_access: { roles: ['viewer'] }, groups: ['/globex-corp'] },
};

let keys = [];       // newest first: [0] signs
let kidCounter = 0;
function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  kidCounter += 1;
  return { ...jwk, kid: `test-key-${kidCounter}-${crypto.randomBytes(3).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

function keycloakClaims(name) {
  const a = accounts[name];
  if (!a) return undefined;
  const { sub, ...rest } = a;
  return rest;
}

function makeProvider() {
  const configuration = {
    clients: [
      { client_id: 'mecapy-machine', client_secret: 'machine-secret', grant_types: ['client_credentials'],
        response_types: [], redirect_uris: [], scope: 'api' },
      { client_id: 'mecapy-viewer-bot', client_secret: 'viewer-secret', grant_types: ['client_credentials'],
        response_types: [], redirect_uris: [], scope: 'api' },
      { client_id: 'mecapy-web', token_endpoint_auth_method: 'none', application_type: 'native',
        grant_types: ['authorization_code'], response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/api/v1/auth/oidc/callback', 'http://127.0.0.1/callback'] },
    ],
    jwks: { keys },
    cookies: { keys: ['test-cookie-key-1'] },
    pkce: { required: () => true },
    conformIdTokenClaims: false,
    scopes: ['openid', 'email', 'profile', 'api'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['preferred_username', 'realm_access', 'resource_access', 'groups', 'company'],
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api', audience: AUDIENCE, accessTokenFormat: 'jwt',
          accessTokenTTL: 600, jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, id) {
      const a = accounts[id];
      if (!a) return undefined;
      return { accountId: id, async claims() { return { sub: a.sub, ...keycloakClaims(id) }; } };
    },
    // Keycloak puts these in its access tokens.
    async extraTokenClaims(ctx, token) {
      if (token.kind === 'ClientCredentials') {
        return { azp: token.clientId, preferred_username: `service-account-${token.clientId}`,
                 ...(MACHINE[token.clientId] || {}) };
      }
      const a = accounts[token.accountId];
      return a ? { azp: token.clientId, ...keycloakClaims(token.accountId) } : { azp: token.clientId };
    },
    formats: {
      customizers: {
        // Keycloak's aud is an array (the API and "account"), and its sub is a user id.
        jwt(ctx, token, jwt) {
          jwt.payload.aud = [jwt.payload.aud, 'account'].flat();
          const a = accounts[token.accountId];
          if (a) jwt.payload.sub = a.sub;
        },
      },
    },
    ttl: { AccessToken: 600, ClientCredentials: 600, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  };
  const p = new Provider(issuer, configuration);
  p.proxy = false;
  // The subject of ID tokens is the account's Keycloak-like id, not its login name.
  return p;
}

keys = [newKey()];
let provider = makeProvider();

function body(req) {
  return new Promise((resolve, reject) => {
    let data = '';
    req.on('data', (c) => { data += c; if (data.length > 1e6) reject(new Error('too big')); });
    req.on('end', () => resolve(data));
    req.on('error', reject);
  });
}

function send(res, status, obj, type = 'application/json') {
  res.writeHead(status, { 'Content-Type': type });
  res.end(typeof obj === 'string' ? obj : JSON.stringify(obj));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, { error: 'interaction mismatch' });
  if (details.prompt.name === 'login') {
    if (!action) {
      return send(res, 200, `<!doctype html><form method="post" action="/interaction/${uid}/login">` +
        '<input name="login"><button>Sign in</button></form>', 'text/html');
    }
    const form = new URLSearchParams(await body(req));
    const name = form.get('login');
    if (!accounts[name]) return send(res, 400, `<p>unknown user ${name}</p>`, 'text/html');
    return provider.interactionFinished(req, res, { login: { accountId: name } }, { mergeWithLastSubmission: false });
  }
  if (details.prompt.name === 'consent') {
    // Consent is granted without a page: the test is about MecaPy, not this screen.
    const { params, session, prompt } = details;
    let grant = details.grantId ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
    const missing = prompt.details;
    if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
    if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
    if (missing.missingResourceScopes) {
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
    }
    const grantId = await grant.save();
    return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
  }
  return send(res, 400, { error: `unexpected prompt ${details.prompt.name}` });
}

async function admin(req, res, path) {
  if (req.method !== 'POST') return send(res, 405, { error: 'POST' });
  const input = JSON.parse((await body(req)) || '{}');
  if (path === '/admin/rotate') {
    keys = [newKey(), ...keys];
    provider = makeProvider();
    return send(res, 200, { kid: keys[0].kid, kids: keys.map((k) => k.kid) });
  }
  if (path === '/admin/mint') {
    // Signed by hand (RS256: PKCS#1 v1.5 over SHA-256), so that a test may put any
    // header it likes, even one a JOSE library would refuse to write.
    const key = crypto.createPrivateKey({ key: keys[0], format: 'jwk' });
    const header = { alg: 'RS256', kid: keys[0].kid, typ: 'JWT', ...(input.header || {}) };
    const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
    const si = `${enc(header)}.${enc(input.payload || {})}`;
    const token = `${si}.${crypto.sign('sha256', Buffer.from(si), key).toString('base64url')}`;
    return send(res, 200, { token, kid: keys[0].kid });
  }
  if (path === '/admin/account') {
    accounts[input.name] = input.claims;
    return send(res, 200, { ok: true });
  }
  return send(res, 404, { error: 'no such admin route' });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, issuer);
    const m = url.pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)(\/login)?$/);
    if (m) return await interaction(req, res, m[1], !!m[2]);
    if (url.pathname.startsWith('/admin/')) return await admin(req, res, url.pathname);
    return provider.callback()(req, res);
  } catch (e) {
    console.error(e);
    if (!res.headersSent) send(res, 500, { error: String(e) });
  }
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider listening on ${issuer}`));
process.on('SIGTERM', () => process.exit(0));
