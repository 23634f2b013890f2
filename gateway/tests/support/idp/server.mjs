#!/usr/bin/env node
// authgate test/dev OpenID Provider, built on panva's certified oidc-provider.
//
//   node server.mjs --config <file.json>
//
// Prints exactly one line "READY <issuer>" on stdout once listening; everything
// else goes to stderr. Exits 0 on SIGTERM/SIGINT, 1 on a bad config.
// See README.md in this folder for the config schema and the login sequence.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  ConfigError, announceReady, consoleToStderr, fail, generateSigningJwk, htmlEscape,
  installShutdown, isStringArray, listen, log, loginPage, parseArgs, parseListen,
  readConfig, readJwks, readParams, readTls, redirect, resolvePath, safeEqual, sendHtml,
  setLogPrefix, urlHost, writeJwks,
} from './lib.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const USAGE = 'usage: node server.mjs --config <file.json>';

setLogPrefix('idp');
consoleToStderr();

// Claims released per scope. Every claim a user may carry must be listed here.
const SCOPE_CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: [
    'name', 'preferred_username', 'given_name', 'family_name', 'middle_name', 'nickname',
    'picture', 'profile', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
  ],
  groups: ['groups'],
};
const ALL_CLAIMS = new Set(Object.values(SCOPE_CLAIMS).flat());
const TTL_KEYS = {
  access_token: 'AccessToken',
  id_token: 'IdToken',
  refresh_token: 'RefreshToken',
  authorization_code: 'AuthorizationCode',
  session: 'Session',
  grant: 'Grant',
  interaction: 'Interaction',
};
const TTL_DEFAULTS = {
  AccessToken: 3600,
  IdToken: 3600,
  RefreshToken: 86400,
  AuthorizationCode: 60,
  Session: 86400,
  Grant: 86400,
  Interaction: 3600,
};

// ---------------------------------------------------------------------------
// config

function validateConfig(configPath, cfg) {
  const listenAddr = parseListen(cfg.listen ?? '127.0.0.1:0');
  const issuerHost = cfg.issuer_host ?? 'localhost';
  if (typeof issuerHost !== 'string' || !/^[A-Za-z0-9.\-[\]:]+$/.test(issuerHost)) {
    throw new ConfigError('"issuer_host" must be a host name such as "localhost"');
  }
  const tls = readTls(configPath, cfg.tls);

  if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) throw new ConfigError('"clients" must be a non-empty array');
  const clients = cfg.clients.map((c, i) => {
    const where = `clients[${i}]`;
    if (!c || typeof c !== 'object') throw new ConfigError(`${where} must be an object`);
    if (typeof c.client_id !== 'string' || !c.client_id) throw new ConfigError(`${where}.client_id must be a non-empty string`);
    const auth = c.token_endpoint_auth_method ?? 'client_secret_basic';
    if (auth !== 'none' && (typeof c.client_secret !== 'string' || !c.client_secret)) {
      throw new ConfigError(`${where}.client_secret must be a non-empty string`);
    }
    if (!isStringArray(c.redirect_uris) || c.redirect_uris.length === 0) throw new ConfigError(`${where}.redirect_uris must be a non-empty array of strings`);
    if (c.post_logout_redirect_uris !== undefined && !isStringArray(c.post_logout_redirect_uris)) {
      throw new ConfigError(`${where}.post_logout_redirect_uris must be an array of strings`);
    }
    // Pass through any other registered client metadata (e.g. token_endpoint_auth_method).
    return {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      ...c,
      post_logout_redirect_uris: c.post_logout_redirect_uris ?? [],
      token_endpoint_auth_method: auth,
    };
  });
  const ids = new Set();
  for (const c of clients) {
    if (ids.has(c.client_id)) throw new ConfigError(`duplicate client_id ${c.client_id}`);
    ids.add(c.client_id);
  }

  if (!Array.isArray(cfg.users)) throw new ConfigError('"users" must be an array');
  const users = new Map();
  cfg.users.forEach((u, i) => {
    const where = `users[${i}]`;
    if (!u || typeof u !== 'object') throw new ConfigError(`${where} must be an object`);
    if (typeof u.sub !== 'string' || !u.sub) throw new ConfigError(`${where}.sub must be a non-empty string`);
    if (typeof u.password !== 'string') throw new ConfigError(`${where}.password must be a string`);
    if (u.groups !== undefined && !isStringArray(u.groups)) throw new ConfigError(`${where}.groups must be an array of strings`);
    if (users.has(u.sub)) throw new ConfigError(`duplicate user sub ${u.sub}`);
    users.set(u.sub, u);
  });

  const ttl = { ...TTL_DEFAULTS };
  if (cfg.ttl !== undefined) {
    if (!cfg.ttl || typeof cfg.ttl !== 'object') throw new ConfigError('"ttl" must be an object');
    for (const [k, v] of Object.entries(cfg.ttl)) {
      if (!(k in TTL_KEYS)) throw new ConfigError(`unknown ttl.${k} (known: ${Object.keys(TTL_KEYS).join(', ')})`);
      if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`ttl.${k} must be a positive integer (seconds)`);
      ttl[TTL_KEYS[k]] = v;
    }
  }

  const rotation = cfg.refresh_token_rotation ?? 'default';
  if (!['default', 'always', 'never'].includes(rotation)) {
    throw new ConfigError('"refresh_token_rotation" must be "default", "always" or "never"');
  }

  let keys;
  if (cfg.keys_file !== undefined && cfg.keys_file !== null) {
    if (typeof cfg.keys_file !== 'string') throw new ConfigError('"keys_file" must be a path');
    keys = readJwks(resolvePath(configPath, cfg.keys_file));
  } else {
    keys = [generateSigningJwk('RS256'), generateSigningJwk('ES256')];
    if (cfg.keys_out !== undefined && cfg.keys_out !== null) {
      if (typeof cfg.keys_out !== 'string') throw new ConfigError('"keys_out" must be a path');
      const out = resolvePath(configPath, cfg.keys_out);
      try {
        writeJwks(out, keys);
      } catch (err) {
        throw new ConfigError(`cannot write keys_out ${out}: ${err.code || err.message}`);
      }
    }
  }

  if (cfg.id_token_signing_algs !== undefined && !isStringArray(cfg.id_token_signing_algs)) {
    throw new ConfigError('"id_token_signing_algs" must be an array of JWS algorithm names');
  }
  const idTokenAlgs = cfg.id_token_signing_algs;
  const outbound = readOutbound(configPath, cfg.outbound);

  return {
    listenAddr, issuerHost, tls, clients, users, ttl, rotation, keys, idTokenAlgs, outbound,
    logRequests: cfg.log_requests === true || process.env.IDP_LOG_REQUESTS === '1',
  };
}

// "outbound": { "ca_file": <PEM>, "connect_host": "127.0.0.1" }: the provider's own requests
// (back-channel logout POSTs) go to connect_host whatever the URL's host name, trusting ca_file:
// relying parties on test host names (app1.example.com) served on loopback.
function readOutbound(configPath, outbound) {
  if (outbound === undefined || outbound === null) return undefined;
  if (typeof outbound !== 'object') throw new ConfigError('"outbound" must be an object');
  if (typeof outbound.ca_file !== 'string') throw new ConfigError('"outbound.ca_file" must be a path');
  const connectHost = outbound.connect_host ?? '127.0.0.1';
  if (typeof connectHost !== 'string') throw new ConfigError('"outbound.connect_host" must be a host');
  let ca;
  try {
    ca = fs.readFileSync(resolvePath(configPath, outbound.ca_file));
  } catch (err) {
    throw new ConfigError(`cannot read outbound.ca_file: ${err.code || err.message}`);
  }
  return { ca, connectHost };
}

// A fetch() for oidc-provider's outbound requests that connects to `connectHost` and checks the
// server's certificate for the URL's host name against `ca` only.
function loopbackFetch({ ca, connectHost }) {
  return (url, options = {}) => new Promise((resolve, reject) => {
    const u = new URL(url);
    const headers = Object.fromEntries(new Headers(options.headers));
    const body = options.body === undefined || options.body === null ? undefined : String(options.body);
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = https.request({
      host: connectHost,
      port: u.port || 443,
      path: `${u.pathname}${u.search}`,
      method: options.method || 'GET',
      servername: u.hostname,
      headers: { ...headers, host: u.host },
      ca,
      signal: options.signal,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const empty = [101, 204, 205, 304].includes(res.statusCode);
        const responseHeaders = Object.entries(res.headers).filter(([, v]) => typeof v === 'string');
        resolve(new Response(empty ? null : Buffer.concat(chunks), { status: res.statusCode, headers: responseHeaders }));
      });
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

// ---------------------------------------------------------------------------
// oidc-provider configuration

function providerConfiguration(conf, Provider) {
  const { users, keys, ttl } = conf;
  const signingAlg = keys[0].alg;

  const account = (sub) => {
    const u = users.get(sub);
    if (!u) return undefined;
    return {
      accountId: sub,
      // oidc-provider filters these by the granted scopes/claims.
      async claims() {
        const out = { sub };
        for (const [k, v] of Object.entries(u)) {
          if (ALL_CLAIMS.has(k) && k !== 'sub') out[k] = v;
        }
        return out;
      },
    };
  };

  let rotateRefreshToken;
  if (conf.rotation === 'always') rotateRefreshToken = true;
  else if (conf.rotation === 'never') rotateRefreshToken = false;

  return {
    clients: conf.clients,
    clientDefaults: {
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: signingAlg,
    },
    jwks: { keys },
    // What discovery advertises (e.g. with HS256, as many providers do).
    ...(conf.idTokenAlgs ? { enabledJWA: { idTokenSigningAlgValues: conf.idTokenAlgs } } : {}),
    // Cookie signing keys: random per process (state lives in memory anyway).
    cookies: {
      keys: [crypto.randomBytes(32).toString('base64url')],
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    claims: {
      acr: null, sid: null, auth_time: null, iss: null,
      ...SCOPE_CLAIMS,
    },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    conformIdTokenClaims: false,
    responseTypes: ['code'],
    pkce: { required: () => true },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: {
        enabled: true,
        logoutSource,
        postLogoutSuccessSource,
      },
      revocation: { enabled: true },
      // Clients registering a backchannel_logout_uri get a logout token POSTed at sign-out.
      backchannelLogout: { enabled: true },
      introspection: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: {
      url: (ctx, interaction) => `/interaction/${interaction.uid}`,
    },
    findAccount: (ctx, sub) => account(sub),
    // Refresh tokens for every code-flow client allowed the refresh_token grant,
    // whether or not offline_access was requested.
    issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
    ...(rotateRefreshToken === undefined ? {} : { rotateRefreshToken }),
    ttl: { ...ttl },
    renderError,
    ...(conf.outbound ? { fetch: loopbackFetch(conf.outbound) } : {}),
  };
}

async function logoutSource(ctx, form) {
  // `form` is <form id="op.logoutForm" method="post" action=".../session/end/confirm">
  // with a hidden "xsrf" input. We add logout=yes and auto-submit it, so a browser
  // needs no click; a non-browser client POSTs xsrf + logout=yes itself.
  const withLogout = form.replace('</form>', '<input type="hidden" name="logout" value="yes"/><noscript><button type="submit">Sign out</button></noscript></form>');
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Signing out</title></head>
<body>
  <h1>Signing out of ${htmlEscape(ctx.host)}</h1>
  ${withLogout}
  <script>document.getElementById('op.logoutForm').submit()</script>
</body>
</html>
`;
}

async function postLogoutSuccessSource(ctx) {
  ctx.type = 'html';
  ctx.body = '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Signed out</title></head><body><h1>Signed out</h1><p>Your sign-out was successful.</p></body></html>\n';
}

async function renderError(ctx, out) {
  ctx.type = 'html';
  ctx.body = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Error</title></head>
<body><h1>Error</h1>
${Object.entries(out).map(([k, v]) => `<p><strong>${htmlEscape(k)}</strong>: <span id="${htmlEscape(k)}">${htmlEscape(v)}</span></p>`).join('\n')}
</body></html>
`;
}

// ---------------------------------------------------------------------------
// our interactions: a plain login form and automatic consent

function findUserByLogin(users, login) {
  if (typeof login !== 'string' || !login) return undefined;
  for (const u of users.values()) {
    if (u.sub === login || u.preferred_username === login || u.email === login) return u;
  }
  return undefined;
}

async function grantFor(provider, interaction, accountId) {
  const { params, grantId } = interaction;
  let grant;
  if (grantId) {
    grant = await provider.Grant.find(grantId);
    if (grant && grant.accountId !== accountId) grant = undefined;
  }
  const isNew = !grant;
  if (!grant) grant = new provider.Grant({ accountId, clientId: params.client_id });
  return { grant, isNew };
}

async function autoConsent(provider, req, res, interaction) {
  const { prompt: { details = {} }, session } = interaction;
  const { grant, isNew } = await grantFor(provider, interaction, session.accountId);
  if (details.missingOIDCScope) grant.addOIDCScope(details.missingOIDCScope.join(' '));
  if (details.missingOIDCClaims) grant.addOIDCClaims(details.missingOIDCClaims);
  if (details.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(details.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  const consent = isNew ? { grantId } : {};
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

function makeInteractionHandler(provider, conf) {
  const renderLogin = (res, uid, { error, login } = {}) => sendHtml(res, 200, loginPage({
    title: 'Sign in to authgate test IdP',
    action: `/interaction/${uid}/login`,
    error,
    login,
  }));

  return async function handleInteraction(req, res, url) {
    const m = /^\/interaction\/([A-Za-z0-9_-]+)(\/login|\/abort)?$/.exec(url.pathname);
    if (!m) return sendHtml(res, 404, '<!DOCTYPE html><p>not found</p>');
    const [, uid, sub] = m;

    let interaction;
    try {
      interaction = await provider.interactionDetails(req, res);
    } catch (err) {
      // Missing/expired _interaction cookie, or an unknown uid.
      return sendHtml(res, 400, `<!DOCTYPE html><h1>Error</h1><p id="error">interaction session not found or expired (${htmlEscape(err.error_description || err.message)}); start again from the authorization request</p>`);
    }
    if (interaction.uid !== uid) return sendHtml(res, 400, '<!DOCTYPE html><h1>Error</h1><p id="error">interaction id mismatch</p>');
    const promptName = interaction.prompt.name;

    if (req.method === 'GET' && !sub) {
      if (promptName === 'login') return renderLogin(res, uid);
      if (promptName === 'consent') return autoConsent(provider, req, res, interaction);
      return sendHtml(res, 400, `<!DOCTYPE html><p id="error">unsupported prompt ${htmlEscape(promptName)}</p>`);
    }

    if (req.method === 'POST' && sub === '/login') {
      const form = await readParams(req);
      if (promptName !== 'login') {
        if (promptName === 'consent') return autoConsent(provider, req, res, interaction);
        return sendHtml(res, 400, `<!DOCTYPE html><p id="error">unexpected prompt ${htmlEscape(promptName)}</p>`);
      }
      const user = findUserByLogin(conf.users, form.login);
      if (!user || !safeEqual(user.password, form.password ?? '')) {
        log(`login failed for ${JSON.stringify(String(form.login ?? '').slice(0, 64))}`);
        return renderLogin(res, uid, { error: 'Invalid login or password', login: form.login });
      }
      // Log in and grant everything that was asked for, in one step (no consent page).
      const { grant, isNew } = await grantFor(provider, interaction, user.sub);
      if (interaction.params.scope) grant.addOIDCScope(interaction.params.scope);
      const grantId = await grant.save();
      const result = {
        login: { accountId: user.sub, remember: true },
        consent: isNew ? { grantId } : {},
      };
      log(`login ok for ${user.sub}`);
      return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
    }

    if (req.method === 'GET' && sub === '/abort') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'End-User aborted interaction',
      }, { mergeWithLastSubmission: false });
    }

    return sendHtml(res, 405, '<!DOCTYPE html><p>method not allowed</p>');
  };
}

// ---------------------------------------------------------------------------
// main

// oidc-provider 9 prints two warnings at start that do not apply to a test IdP:
// the in-memory adapter (intended here) and the Node.js release check (9.x
// officially targets Node 22 LTS; it runs on Node >= 20.18, which has the
// URL.parse and crypto.hash it needs). Replace them with one short note.
function quietProviderWarnings() {
  const warn = console.warn.bind(console);
  console.warn = (...args) => {
    const s = args.map(String).join(' ');
    if (s.includes('in-memory adapter')) return;
    if (s.includes('Unsupported runtime')) {
      log(`note: oidc-provider 9 officially targets Node.js 22 LTS; running on ${process.version}`);
      return;
    }
    warn(...args);
  };
}

// A logout token for `client_id`, made and signed exactly as oidc-provider's own back-channel
// logout makes it (lib/models/client.js backchannelLogout).
async function issueLogoutToken(provider, params) {
  const client = await provider.Client.find(params.get('client_id') ?? '');
  if (!client) throw new Error('unknown client_id');
  const token = new provider.IdToken({ sub: params.get('sub') ?? undefined }, { client, ctx: undefined });
  token.mask = { sub: null };
  token.set('events', { 'http://schemas.openid.net/event/backchannel-logout': {} });
  token.set('jti', crypto.randomUUID());
  if (params.get('sid')) token.set('sid', params.get('sid'));
  return token.issue({ use: 'logout' });
}

async function main() {
  if (typeof URL.parse !== 'function' || typeof crypto.hash !== 'function') {
    throw new ConfigError(`Node.js >= 20.18 is required (this is ${process.version})`);
  }
  const { configPath } = parseArgs(process.argv.slice(2), USAGE);
  const conf = validateConfig(configPath, readConfig(configPath));

  quietProviderWarnings();
  let Provider;
  try {
    ({ default: Provider } = await import('oidc-provider'));
  } catch (err) {
    if (err.code === 'ERR_MODULE_NOT_FOUND') {
      throw new ConfigError(`oidc-provider is not installed; run: npm ci --prefix ${HERE}`);
    }
    throw err;
  }

  let handler = (req, res) => sendHtml(res, 503, 'starting');
  const server = https.createServer({ cert: conf.tls.cert, key: conf.tls.key }, (req, res) => handler(req, res));
  server.on('tlsClientError', () => {}); // e.g. a client that does not trust the dev CA
  const port = await listen(server, conf.listenAddr);
  const issuer = new URL(`https://${urlHost(conf.issuerHost)}:${port}`).origin;

  let provider;
  try {
    provider = new Provider(issuer, providerConfiguration(conf, Provider));
  } catch (err) {
    throw new ConfigError(`oidc-provider rejected the configuration: ${err.message}`);
  }
  provider.proxy = false; // we terminate TLS ourselves; ignore X-Forwarded-*

  // Static clients are only validated on first use; do it now so a bad client
  // is a startup error rather than a failed test later.
  for (const c of conf.clients) {
    try {
      await provider.Client.find(c.client_id);
    } catch (err) {
      server.close();
      throw new ConfigError(`client ${c.client_id}: ${err.error_description || err.message}`);
    }
  }

  for (const ev of ['server_error', 'authorization.error', 'grant.error', 'end_session.error', 'userinfo.error', 'introspection.error', 'revocation.error']) {
    provider.on(ev, (ctx, err) => {
      const e = err || ctx;
      log(`${ev}: ${e?.error || e?.name || 'error'}${e?.error_description ? ` (${e.error_description})` : ''}${ev === 'server_error' && e?.stack ? `\n${e.stack}` : ''}`);
    });
  }

  // Test hooks: token endpoint call counts (GET /__stats), faults (POST /__control?...), and
  // logout tokens as the provider signs them (POST /__logout_token?client_id=&sub=&sid=).
  const stats = { token_calls: 0, refresh_grants: 0, backchannel_ok: 0, backchannel_errors: 0 };
  provider.on('backchannel.success', () => { stats.backchannel_ok += 1; });
  provider.on('backchannel.error', (ctx, err, client) => {
    stats.backchannel_errors += 1;
    log(`backchannel logout to ${client?.backchannelLogoutUri} failed: ${err?.message}`);
  });
  const faults = { token_status: 0, token_delay_ms: 0 };
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') stats.refresh_grants += 1;
  });
  const oidc = provider.callback();
  const interactions = makeInteractionHandler(provider, conf);
  const tokenEndpoint = new URL(provider.urlFor('token')).pathname;
  handler = (req, res) => {
    const url = new URL(req.url, issuer);
    if (url.pathname === '/__stats' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (url.pathname === '/__logout_token' && req.method === 'POST') {
      issueLogoutToken(provider, url.searchParams).then((token) => {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.end(token);
      }, (err) => {
        res.writeHead(400, { 'content-type': 'text/plain' });
        res.end(err.message);
      });
      return;
    }
    if (url.pathname === '/__control' && req.method === 'POST') {
      for (const k of Object.keys(faults)) {
        if (url.searchParams.has(k)) faults[k] = Number(url.searchParams.get(k)) || 0;
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(faults));
      return;
    }
    if (url.pathname === tokenEndpoint && req.method === 'POST') {
      stats.token_calls += 1;
      if (faults.token_status) {
        res.writeHead(faults.token_status, { 'content-type': 'application/json' });
        res.end('{"error":"temporarily_unavailable"}');
        return;
      }
      if (faults.token_delay_ms) {
        setTimeout(() => oidc(req, res), faults.token_delay_ms);
        return;
      }
    }
    if (conf.logRequests) {
      res.on('finish', () => log(`${req.method} ${url.pathname} -> ${res.statusCode}`));
    }
    if (url.pathname.startsWith('/interaction/')) {
      interactions(req, res, url).catch((err) => {
        log(`interaction error: ${err.message}`);
        if (!res.headersSent) sendHtml(res, err.status || 500, '<!DOCTYPE html><p id="error">internal error</p>');
      });
      return;
    }
    if (url.pathname === '/' && req.method === 'GET') {
      redirect(res, 302, '/.well-known/openid-configuration');
      return;
    }
    oidc(req, res);
  };

  installShutdown(server, 'idp');
  log(`issuer ${issuer}; clients: ${conf.clients.map((c) => c.client_id).join(', ')}; users: ${[...conf.users.keys()].join(', ')}; signing kid ${conf.keys[0].kid} (${conf.keys[0].alg})`);
  announceReady(issuer);
}

main().catch((err) => {
  if (err instanceof ConfigError) fail(err.message);
  fail(err.stack || err.message);
});
