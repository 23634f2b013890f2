#!/usr/bin/env node
// A small stand-in for GitHub's OAuth web flow and REST API, for tests only.
//
//   node github.mjs --config <file.json>
//
// Prints exactly one line "READY <base-url>" on stdout once listening; everything
// else goes to stderr. Exits 0 on SIGTERM/SIGINT, 1 on a bad config.
// Plain HTTP, or HTTPS when "tls" is given. State lives in memory.
//
//   GET  /login/oauth/authorize      login form (or straight back when already signed in)
//   POST /login/oauth/authorize/<id> form submit -> 302 redirect_uri?code&state
//   POST /login/oauth/access_token   code -> token (JSON with Accept: application/json,
//                                    else application/x-www-form-urlencoded, like GitHub)
//   GET  <api>/user, <api>/user/emails, <api>/user/orgs, <api>/user/teams
//        (<api> defaults to /api/v3; Authorization: Bearer <token> or token <token>)
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';

import {
  ConfigError, announceReady, consoleToStderr, fail, installShutdown, isStringArray, listen,
  log, loginPage, parseArgs, parseListen, readConfig, readParams, readTls, redirect,
  safeEqual, send, sendHtml, sendJson, setLogPrefix, urlHost,
} from './lib.mjs';

const USAGE = 'usage: node github.mjs --config <file.json>';
const CODE_TTL_MS = 10 * 60 * 1000;
const PENDING_TTL_MS = 60 * 60 * 1000;
const DOCS = 'https://docs.github.com/rest';

setLogPrefix('github');
consoleToStderr();

function validateConfig(configPath, cfg) {
  const listenAddr = parseListen(cfg.listen ?? '127.0.0.1:0');
  const tls = cfg.tls === undefined || cfg.tls === null ? undefined : readTls(configPath, cfg.tls);
  const publicHost = cfg.public_host ?? (listenAddr.host === '0.0.0.0' || listenAddr.host === '::' ? '127.0.0.1' : listenAddr.host);
  if (typeof publicHost !== 'string' || !publicHost) throw new ConfigError('"public_host" must be a host name');

  let apiPrefix = cfg.api_prefix ?? '/api/v3';
  if (typeof apiPrefix !== 'string' || (apiPrefix !== '' && !apiPrefix.startsWith('/'))) {
    throw new ConfigError('"api_prefix" must be "" or a path starting with "/" (default "/api/v3")');
  }
  apiPrefix = apiPrefix.replace(/\/+$/, '');

  if (!Array.isArray(cfg.clients) || cfg.clients.length === 0) throw new ConfigError('"clients" must be a non-empty array');
  const clients = new Map();
  cfg.clients.forEach((c, i) => {
    const where = `clients[${i}]`;
    if (!c || typeof c !== 'object') throw new ConfigError(`${where} must be an object`);
    if (typeof c.client_id !== 'string' || !c.client_id) throw new ConfigError(`${where}.client_id must be a non-empty string`);
    if (typeof c.client_secret !== 'string' || !c.client_secret) throw new ConfigError(`${where}.client_secret must be a non-empty string`);
    if (!isStringArray(c.redirect_uris) || c.redirect_uris.length === 0) throw new ConfigError(`${where}.redirect_uris must be a non-empty array of strings`);
    if (clients.has(c.client_id)) throw new ConfigError(`duplicate client_id ${c.client_id}`);
    clients.set(c.client_id, c);
  });

  if (!Array.isArray(cfg.users)) throw new ConfigError('"users" must be an array');
  const users = new Map();
  cfg.users.forEach((u, i) => {
    const where = `users[${i}]`;
    if (!u || typeof u !== 'object') throw new ConfigError(`${where} must be an object`);
    if (typeof u.login !== 'string' || !u.login) throw new ConfigError(`${where}.login must be a non-empty string`);
    if (typeof u.password !== 'string') throw new ConfigError(`${where}.password must be a string`);
    if (!Number.isInteger(u.id)) throw new ConfigError(`${where}.id must be an integer`);
    const emails = u.emails ?? [];
    if (!Array.isArray(emails) || !emails.every((e) => e && typeof e.email === 'string')) {
      throw new ConfigError(`${where}.emails must be an array of {email, primary, verified}`);
    }
    const orgs = (u.orgs ?? []).map((o) => (typeof o === 'string' ? { login: o } : o));
    if (!orgs.every((o) => o && typeof o.login === 'string')) throw new ConfigError(`${where}.orgs must be an array of org logins (strings or {login})`);
    const teams = u.teams ?? [];
    if (!Array.isArray(teams) || !teams.every((t) => t && typeof t.org === 'string' && typeof t.slug === 'string')) {
      throw new ConfigError(`${where}.teams must be an array of {org, slug}`);
    }
    if (users.has(u.login.toLowerCase())) throw new ConfigError(`duplicate user login ${u.login}`);
    users.set(u.login.toLowerCase(), { ...u, emails, orgs, teams });
  });

  return {
    listenAddr, tls, publicHost, apiPrefix, clients, users,
    logRequests: cfg.log_requests === true || process.env.IDP_LOG_REQUESTS === '1',
  };
}

const random = (n = 20) => crypto.randomBytes(n).toString('hex');

function orgId(login) {
  return crypto.createHash('sha256').update(`org:${login}`).digest().readUInt32BE(0) % 10_000_000;
}

function userJson(u, base, apiBase) {
  const primary = u.emails.find((e) => e.primary && e.verified) || u.emails.find((e) => e.primary);
  return {
    login: u.login,
    id: u.id,
    node_id: Buffer.from(`04:User${u.id}`).toString('base64'),
    avatar_url: `${base}/avatars/${encodeURIComponent(u.login)}`,
    url: `${apiBase}/users/${encodeURIComponent(u.login)}`,
    html_url: `${base}/${encodeURIComponent(u.login)}`,
    type: 'User',
    site_admin: false,
    name: u.name ?? null,
    email: u.email !== undefined ? u.email : (primary?.email ?? null),
  };
}

function makeHandler(conf, base) {
  const apiBase = `${base}${conf.apiPrefix}`;
  const pending = new Map(); // id -> authorize request awaiting the login form
  const codes = new Map(); // code -> { clientId, redirectUri, login, scope, exp, challenge }
  const tokens = new Map(); // access token -> { login, scope, clientId }
  const sessions = new Map(); // gh_session cookie -> login
  const cookieName = 'gh_session';
  const secureCookie = conf.tls ? '; Secure' : '';

  const sweep = () => {
    const now = Date.now();
    for (const [k, v] of pending) if (v.exp < now) pending.delete(k);
    for (const [k, v] of codes) if (v.exp < now) codes.delete(k);
  };

  const readCookie = (req, name) => {
    const header = req.headers.cookie || '';
    for (const part of header.split(';')) {
      const [k, ...rest] = part.trim().split('=');
      if (k === name) return rest.join('=');
    }
    return undefined;
  };

  const issueCode = (res, p, login) => {
    const code = random(10);
    codes.set(code, {
      clientId: p.clientId, redirectUri: p.redirectUri, login, scope: p.scope,
      challenge: p.challenge, exp: Date.now() + CODE_TTL_MS,
    });
    const to = new URL(p.redirectUri);
    to.searchParams.set('code', code);
    if (p.state !== undefined) to.searchParams.set('state', p.state);
    redirect(res, 302, to.href);
  };

  const oauthError = (req, res, error, description) => {
    const body = { error, error_description: description, error_uri: `${DOCS}` };
    if (String(req.headers.accept || '').includes('application/json')) return sendJson(res, 200, body);
    return send(res, 200, new URLSearchParams(body).toString(), { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' });
  };

  const renderForm = (res, id, { error, login } = {}) => sendHtml(res, 200, loginPage({
    title: 'Sign in to GitHub (test stand-in)',
    action: `/login/oauth/authorize/${id}`,
    error,
    login,
  }));

  async function authorize(req, res, url) {
    sweep();
    const q = url.searchParams;
    const client = conf.clients.get(q.get('client_id') || '');
    if (!client) return sendHtml(res, 404, '<!DOCTYPE html><h1>Error</h1><p id="error">unknown client_id</p>');
    let redirectUri = q.get('redirect_uri');
    if (!redirectUri) [redirectUri] = client.redirect_uris;
    if (!client.redirect_uris.includes(redirectUri)) {
      return sendHtml(res, 400, '<!DOCTYPE html><h1>Error</h1><p id="error">The redirect_uri is not associated with this application.</p>');
    }
    const challenge = q.get('code_challenge') || undefined;
    if (challenge && (q.get('code_challenge_method') || 'S256') !== 'S256') {
      return sendHtml(res, 400, '<!DOCTYPE html><h1>Error</h1><p id="error">only code_challenge_method=S256 is supported</p>');
    }
    const p = {
      clientId: client.client_id, redirectUri, state: q.get('state') ?? undefined,
      scope: q.get('scope') ?? '', challenge, exp: Date.now() + PENDING_TTL_MS,
    };
    // Already signed in (cookie) and no forced account selection: straight back, like GitHub.
    const sessionLogin = sessions.get(readCookie(req, cookieName) || '');
    const prompt = q.get('prompt');
    if (sessionLogin && conf.users.has(sessionLogin) && prompt !== 'select_account' && prompt !== 'login') {
      return issueCode(res, p, sessionLogin);
    }
    const id = random(12);
    pending.set(id, p);
    return renderForm(res, id);
  }

  async function authorizeSubmit(req, res, id) {
    sweep();
    const p = pending.get(id);
    if (!p) return sendHtml(res, 400, '<!DOCTYPE html><h1>Error</h1><p id="error">login request not found or expired; start again</p>');
    const form = await readParams(req);
    const u = conf.users.get(String(form.login ?? '').toLowerCase());
    if (!u || !safeEqual(u.password, form.password ?? '')) {
      log(`login failed for ${JSON.stringify(String(form.login ?? '').slice(0, 64))}`);
      return renderForm(res, id, { error: 'Invalid login or password', login: form.login });
    }
    pending.delete(id);
    const sid = random(16);
    sessions.set(sid, u.login.toLowerCase());
    res.setHeader('Set-Cookie', `${cookieName}=${sid}; Path=/; HttpOnly; SameSite=Lax${secureCookie}`);
    log(`login ok for ${u.login}`);
    return issueCode(res, p, u.login.toLowerCase());
  }

  async function accessToken(req, res, url) {
    sweep();
    const body = await readParams(req);
    const params = { ...Object.fromEntries(url.searchParams), ...body };
    let clientId = params.client_id;
    let clientSecret = params.client_secret;
    const authz = req.headers.authorization || '';
    if (/^basic /i.test(authz)) {
      const [id, ...secret] = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8').split(':');
      clientId = decodeURIComponent(id);
      clientSecret = decodeURIComponent(secret.join(':'));
    }
    const client = conf.clients.get(clientId || '');
    if (!client || !safeEqual(client.client_secret, clientSecret ?? '')) {
      return oauthError(req, res, 'incorrect_client_credentials', 'The client_id and/or client_secret passed are incorrect.');
    }
    if (params.grant_type && params.grant_type !== 'authorization_code') {
      return oauthError(req, res, 'unsupported_grant_type', 'Only the authorization_code grant is supported.');
    }
    const entry = codes.get(params.code || '');
    if (entry) codes.delete(params.code); // single use
    if (!entry || entry.clientId !== client.client_id || entry.exp < Date.now()) {
      return oauthError(req, res, 'bad_verification_code', 'The code passed is incorrect or expired.');
    }
    if (params.redirect_uri && params.redirect_uri !== entry.redirectUri) {
      return oauthError(req, res, 'redirect_uri_mismatch', 'The redirect_uri MUST match the registered callback URL for this application.');
    }
    if (entry.challenge) {
      const verifier = params.code_verifier || '';
      const computed = crypto.createHash('sha256').update(verifier).digest('base64url');
      if (!verifier || !safeEqual(computed, entry.challenge)) {
        return oauthError(req, res, 'bad_verification_code', 'The code_verifier does not match the code_challenge.');
      }
    }
    const token = `gho_${crypto.randomBytes(18).toString('base64url')}`;
    tokens.set(token, { login: entry.login, scope: entry.scope, clientId: client.client_id });
    const out = { access_token: token, token_type: 'bearer', scope: entry.scope.split(/[\s,]+/).filter(Boolean).join(',') };
    if (String(req.headers.accept || '').includes('application/json')) return sendJson(res, 200, out);
    return send(res, 200, new URLSearchParams(out).toString(), { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8', 'Cache-Control': 'no-store' });
  }

  function api(req, res, rest) {
    const authz = req.headers.authorization || '';
    const m = /^(?:bearer|token)\s+(\S+)$/i.exec(authz);
    const t = m && tokens.get(m[1]);
    if (!t) {
      return sendJson(res, 401, { message: 'Requires authentication', documentation_url: DOCS }, { 'WWW-Authenticate': 'Bearer realm="GitHub"' });
    }
    const u = conf.users.get(t.login);
    const headers = { 'X-OAuth-Scopes': t.scope.split(/[\s,]+/).filter(Boolean).join(', '), 'X-Accepted-OAuth-Scopes': '' };
    if (req.method !== 'GET') return sendJson(res, 405, { message: 'Method Not Allowed' }, headers);
    switch (rest) {
      case '/user':
        return sendJson(res, 200, userJson(u, base, apiBase), headers);
      case '/user/emails':
        return sendJson(res, 200, u.emails.map((e) => ({
          email: e.email, primary: !!e.primary, verified: !!e.verified, visibility: e.primary ? 'public' : null,
        })), headers);
      case '/user/orgs':
        return sendJson(res, 200, u.orgs.map((o) => ({
          login: o.login, id: o.id ?? orgId(o.login), url: `${apiBase}/orgs/${encodeURIComponent(o.login)}`, description: null,
        })), headers);
      case '/user/teams':
        return sendJson(res, 200, u.teams.map((tm) => ({
          id: tm.id ?? orgId(`${tm.org}/${tm.slug}`),
          name: tm.name ?? tm.slug,
          slug: tm.slug,
          organization: { login: tm.org, id: orgId(tm.org) },
        })), headers);
      default:
        return sendJson(res, 404, { message: 'Not Found', documentation_url: DOCS }, headers);
    }
  }

  return async function handle(req, res) {
    const url = new URL(req.url, base);
    const p = url.pathname;
    if (conf.logRequests) res.on('finish', () => log(`${req.method} ${p} -> ${res.statusCode}`));
    if (p === '/login/oauth/authorize' && req.method === 'GET') return authorize(req, res, url);
    const sm = /^\/login\/oauth\/authorize\/([0-9a-f]+)$/.exec(p);
    if (sm && req.method === 'POST') return authorizeSubmit(req, res, sm[1]);
    if (p === '/login/oauth/access_token' && req.method === 'POST') return accessToken(req, res, url);
    if (p === '/health') return sendJson(res, 200, { ok: true });
    if (p === conf.apiPrefix || p.startsWith(`${conf.apiPrefix}/`)) return api(req, res, p.slice(conf.apiPrefix.length));
    return sendJson(res, 404, { message: 'Not Found' });
  };
}

async function main() {
  const { configPath } = parseArgs(process.argv.slice(2), USAGE);
  const conf = validateConfig(configPath, readConfig(configPath));

  let handler = (req, res) => send(res, 503, 'starting');
  const onRequest = (req, res) => Promise.resolve(handler(req, res)).catch((err) => {
    log(`error: ${err.message}`);
    if (!res.headersSent) sendJson(res, err.status || 500, { message: err.status ? err.message : 'internal error' });
  });
  const server = conf.tls
    ? https.createServer({ cert: conf.tls.cert, key: conf.tls.key }, onRequest)
    : http.createServer(onRequest);
  server.on('tlsClientError', () => {});
  const port = await listen(server, conf.listenAddr);
  const base = new URL(`${conf.tls ? 'https' : 'http'}://${urlHost(conf.publicHost)}:${port}`).origin;
  handler = makeHandler(conf, base);

  installShutdown(server, 'github');
  log(`base ${base}; api ${base}${conf.apiPrefix}; clients: ${[...conf.clients.keys()].join(', ')}; users: ${[...conf.users.values()].map((u) => u.login).join(', ')}`);
  announceReady(base);
}

main().catch((err) => {
  if (err instanceof ConfigError) fail(err.message);
  fail(err.stack || err.message);
});
