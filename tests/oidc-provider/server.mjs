// A real OpenID Provider for breakglass's login tests: node `oidc-provider` (a certified
// OpenID Provider implementation), pinned by package-lock.json, installed by
// scripts/install-deps (`npm ci` here). tests/src/oidc.rs starts it on a loopback port.
//
//   node server.mjs --port PORT [--client-id ID] [--keys-out FILE] [--interval SECONDS]
//                   [--device-ttl SECONDS] [--enforced-interval SECONDS]
//
// - issuer http://127.0.0.1:PORT, device flow and authorization code + PKCE;
// - clients (public, native: any loopback port of http://127.0.0.1/callback):
//   ID (ID tokens RS256), ID-es256 (ES256), other-app (RS256; for wrong-audience tests);
// - users (login form with a password, then a consent page; our own interaction pages,
//   served at /interaction/UID, which a test drives over HTTP like a browser):
//   alice / alice-password: alice@example.com, groups idp-sre
//   bob / bob-password: bob@example.com, groups idp-dba, idp-unmapped
//   carol / carol-password: carol@elsewhere.example, groups idp-sre
// - fresh RS256 and ES256 signing keys at every start: restarting on the same port is
//   how a test rotates the provider's keys. --keys-out writes the private keys (PEM) and
//   their kids, mode 0600, so a test can forge tokens signed by the provider's own key
//   (wrong issuer, a key id it does not publish);
// - a `nonce` sent with the device authorization request is in the device flow's ID token;
// - the device authorization answer carries `interval` (default 1 s) and a poll of the
//   token endpoint sooner than that (or than --enforced-interval, to test a client's
//   back-off) after the previous one (or the authorization request) answers `slow_down`
//   and prints `slow_down: ...` (RFC 8628 section 3.5);
// - device codes live --device-ttl seconds (default 600).
// Prints `listening ISSUER` on stdout when it accepts connections.

import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { parseArgs } from 'node:util';

import Provider from 'oidc-provider';

const { values: args } = parseArgs({
  options: {
    port: { type: 'string' },
    'client-id': { type: 'string', default: 'breakglass' },
    'keys-out': { type: 'string' },
    interval: { type: 'string', default: '1' },
    'device-ttl': { type: 'string', default: '600' },
    'enforced-interval': { type: 'string' },
  },
});
const port = Number(args.port ?? process.env.PORT);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error('server.mjs: give the port with --port PORT (or PORT=...)');
  process.exit(64);
}
const clientId = args['client-id'];
const interval = Number(args.interval);
const enforcedInterval = Number(args['enforced-interval'] ?? args.interval);
// How long a device code (the user code shown) lives.
const deviceTtl = Number(args['device-ttl']);
const issuer = `http://127.0.0.1:${port}`;

const USERS = {
  alice: { password: 'alice-password', email: 'alice@example.com', groups: ['idp-sre'] },
  bob: { password: 'bob-password', email: 'bob@example.com', groups: ['idp-dba', 'idp-unmapped'] },
  carol: { password: 'carol-password', email: 'carol@elsewhere.example', groups: ['idp-sre'] },
};

function signingKey(type, alg, options) {
  const kid = `${alg.toLowerCase()}-${randomUUID()}`;
  const { privateKey } = generateKeyPairSync(type, options);
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' });
  return { kid, alg, jwk, pem };
}
const rsa = signingKey('rsa', 'RS256', { modulusLength: 2048 });
const ec = signingKey('ec', 'ES256', { namedCurve: 'P-256' });
if (args['keys-out']) {
  writeFileSync(args['keys-out'], JSON.stringify({
    issuer,
    keys: [rsa, ec].map(({ kid, alg, pem }) => ({ kid, alg, pem })),
  }), { mode: 0o600 });
}

const publicClient = (id, alg) => ({
  client_id: id,
  application_type: 'native',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
  response_types: ['code'],
  redirect_uris: ['http://127.0.0.1/callback'],
  id_token_signed_response_alg: alg,
});

const provider = new Provider(issuer, {
  clients: [
    publicClient(clientId, 'RS256'),
    publicClient(`${clientId}-es256`, 'ES256'),
    publicClient('other-app', 'RS256'),
  ],
  jwks: { keys: [rsa.jwk, ec.jwk] },
  enabledJWA: { idTokenSigningAlgValues: ['RS256', 'ES256'] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  scopes: ['openid', 'email', 'groups'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // The ID token carries the scopes' claims (what breakglass-ca reads), not only `sub`.
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
  },
  ttl: { DeviceCode: deviceTtl },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(ctx, sub) {
    const user = USERS[sub];
    if (!user) return undefined;
    return {
      accountId: sub,
      async claims() {
        return { sub, email: user.email, email_verified: true, groups: user.groups };
      },
    };
  },
});
provider.on('server_error', (ctx, err) => console.error('server_error', err));

// RFC 8628: the device authorization answer says how often to poll; polling sooner
// answers slow_down.
const lastPoll = new Map();
provider.use(async (ctx, next) => {
  if (ctx.method === 'POST' && ctx.path === '/token') {
    // Read here, handed on to the provider's parser as the already-read body.
    const text = await readBody(ctx.req);
    ctx.req.body = text;
    const body = Object.fromEntries(new URLSearchParams(text));
    if (body.grant_type === 'urn:ietf:params:oauth:grant-type:device_code' && body.device_code) {
      const now = Date.now();
      const last = lastPoll.get(body.device_code);
      lastPoll.set(body.device_code, now);
      // oidc-provider keeps the device authorization request's nonce in its params but
      // leaves it out of the ID token; carry it over, as providers that support a nonce
      // in the device flow do (breakglass-ca requires the nonce it expects). Only once the
      // user has confirmed (accountId set): the code is not written again before this
      // request consumes it, so no write of the user's confirmation is lost.
      const code = await provider.DeviceCode.find(body.device_code, { ignoreExpiration: true });
      if (code && code.accountId && code.params?.nonce && !code.nonce) {
        code.nonce = code.params.nonce;
        await code.save();
      }
      if (last !== undefined && now - last < enforcedInterval * 1000) {
        ctx.status = 400;
        ctx.type = 'json';
        ctx.body = { error: 'slow_down', error_description: `poll at most every ${enforcedInterval} s` };
        console.log(`slow_down: a poll ${now - last} ms after the previous one`);
        return;
      }
    }
  }
  await next();
  if (ctx.method === 'POST' && ctx.path === '/device/auth' && ctx.status === 200 && ctx.body) {
    ctx.body = { ...ctx.body, interval };
    // The first poll too must wait the interval after the authorization request.
    lastPoll.set(ctx.body.device_code, Date.now());
  }
});

async function readBody(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body over 64 KiB');
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

async function readForm(req) {
  return Object.fromEntries(new URLSearchParams(await readBody(req)));
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const page = (title, body) => `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`;

// The interaction pages: a login form (user and password) and a consent form.
async function interaction(req, res) {
  const url = new URL(req.url, issuer);
  const [, , uid, action] = url.pathname.split('/');
  const send = (status, html) => {
    res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
    res.end(html);
  };
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== uid) return send(400, page('Wrong interaction', ''));
    const { prompt, params, session, grantId } = details;
    if (req.method === 'GET' && action === undefined) {
      if (prompt.name === 'login') {
        return send(200, page('Sign-in', loginForm(uid, '')));
      }
      return send(200, page('Authorize', `<p>${escape(params.client_id)} asks for ${escape(params.scope)}</p>
<form method="post" action="/interaction/${escape(uid)}/confirm"><button type="submit">Continue</button></form>`));
    }
    if (req.method === 'POST' && action === 'login' && prompt.name === 'login') {
      const { login, password } = await readForm(req);
      const user = USERS[login];
      if (!user || user.password !== password) {
        return send(200, page('Sign-in', loginForm(uid, 'Wrong user name or password.')));
      }
      return provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    }
    if (req.method === 'POST' && action === 'confirm' && prompt.name === 'consent') {
      const grant = grantId
        ? await provider.Grant.find(grantId)
        : new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
      const { details: missing } = prompt;
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
      const saved = await grant.save();
      return provider.interactionFinished(req, res, { consent: { grantId: saved } }, { mergeWithLastSubmission: true });
    }
    return send(400, page('Unexpected step', `<p>${escape(req.method)} ${escape(action ?? '')} during ${escape(prompt.name)}</p>`));
  } catch (err) {
    return send(400, page('Interaction failed', `<p>${escape(err.message)}</p>`));
  }
}

function loginForm(uid, message) {
  return `${message ? `<p class="error">${escape(message)}</p>` : ''}
<form method="post" action="/interaction/${escape(uid)}/login">
<input type="text" name="login" value=""><input type="password" name="password" value="">
<button type="submit">Sign in</button></form>`;
}

const callback = provider.callback();
const server = http.createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(req, res);
  } else {
    callback(req, res);
  }
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
