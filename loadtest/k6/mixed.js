// loadtest/k6/mixed.js: the traffic mix a gateway really sees, every answer checked.
//
//   kind            share  request                                           expected
//   authenticated    35%   page on a protected app, valid session cookie     200, identity at the upstream
//   bearer           10%   /api/ on a protected app, valid ID token          200, identity at the upstream
//   skip_route       10%   /public/... on a protected app, no cookie         200, no identity at the upstream
//   healthz           5%   GET /healthz on a protected app (skip route)      200
//   public_app       10%   page on the public app (no auth block)           200
//   spoofed           5%   public route with a forged X-Auth-Request-Email   200, the forged header removed
//   unknown_host     10%   a host no app serves                              404
//   signed_out       10%   page on a protected app, no cookie                302 to the provider's /auth
//   tampered_cookie   2%   page, session cookie with one byte changed        302 to the provider's /auth
//   api_signed_out    3%   /api/ on a protected app, no credentials          401 JSON
//
//   k6 run -e PORT=8443 -e APPS=10 -e COOKIES=... -e TOKEN_FILE=... -e ISSUER=... loadtest/k6/mixed.js
//
// Parameters (see lib.js for the common ones):
//   COOKIES, SESSIONS   as in browse.js;  TOKEN_FILE (or TOKEN)  as in api.js
//   ISSUER              the provider's issuer URL (login redirects must go there)
//   PUBLIC_HOST=public.example.com   the app without auth
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { base, env, int, required, scenario, appUrl, hostUrl, randomApp, lines, header, upstreamSawAlice } from './lib.js';

const COOKIES_FILE = required('COOKIES');
const cookies = new SharedArray('cookies', () => {
  const all = lines(COOKIES_FILE);
  const n = int('SESSIONS', 0);
  return n > 0 ? all.slice(0, n) : all;
});
const TOKEN = (__ENV.TOKEN || (__ENV.TOKEN_FILE ? open(__ENV.TOKEN_FILE) : '')).trim();
if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(TOKEN)) throw new Error('set TOKEN_FILE (or TOKEN) to an ID token (a JWT)');
const ISSUER = required('ISSUER').replace(/\/$/, '');
const PUBLIC_HOST = env('PUBLIC_HOST', 'public.example.com');

const KINDS = [
  ['authenticated', 35],
  ['bearer', 10],
  ['skip_route', 10],
  ['healthz', 5],
  ['public_app', 10],
  ['spoofed', 5],
  ['unknown_host', 10],
  ['signed_out', 10],
  ['tampered_cookie', 2],
  ['api_signed_out', 3],
];
const TOTAL = KINDS.reduce((s, k) => s + k[1], 0);

const thresholds = {
  checks: ['rate==1'],
  http_req_failed: ['rate==0'],
  http_req_duration: [`p(99)<${env('P99_MS', '250')}`],
};
for (const [kind] of KINDS) thresholds[`checks{kind:${kind}}`] = ['rate==1'];

export const options = { ...base, scenarios: { mixed: scenario('mixed') }, thresholds };

function pick() {
  let x = Math.random() * TOTAL;
  for (const [kind, w] of KINDS) {
    if (x < w) return kind;
    x -= w;
  }
  return KINDS[0][0];
}

function tamper(cookie) {
  // name=v1.<base64url>: change one character in the middle of the sealed value.
  const i = cookie.length - 10;
  return cookie.slice(0, i) + (cookie[i] === 'A' ? 'B' : 'A') + cookie.slice(i + 1);
}

const toLogin = (r) => r.status === 302 && header(r, 'Location').startsWith(`${ISSUER}/auth?`);

export function mixed() {
  const kind = pick();
  const app = randomApp();
  const cookie = cookies[(__VU - 1) % cookies.length];
  const html = { Accept: 'text/html' };
  const p = (extra) => ({ tags: { name: kind, kind }, ...extra });
  const c = (res, checks) => check(res, checks, { kind });
  let res;
  switch (kind) {
    case 'authenticated':
      res = http.get(appUrl(app, `/page/${__ITER % 50}`), p({ headers: { ...html, Cookie: cookie } }));
      c(res, { 'authenticated: 200': (r) => r.status === 200, 'authenticated: identity injected': upstreamSawAlice });
      break;
    case 'bearer':
      res = http.get(appUrl(app, '/api/v1/me'), p({ headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'application/json' } }));
      c(res, { 'bearer: 200': (r) => r.status === 200, 'bearer: identity injected': upstreamSawAlice });
      break;
    case 'skip_route':
      res = http.get(appUrl(app, '/public/logo.svg'), p({ headers: html }));
      c(res, {
        'skip_route: 200': (r) => r.status === 200,
        'skip_route: no identity': (r) => !r.body.includes('x-auth-request-email'),
      });
      break;
    case 'healthz':
      res = http.get(appUrl(app, '/healthz'), p({}));
      c(res, { 'healthz: 200': (r) => r.status === 200 });
      break;
    case 'public_app':
      res = http.get(hostUrl(PUBLIC_HOST, `/article/${__ITER % 100}`), p({ headers: html }));
      c(res, { 'public_app: 200': (r) => r.status === 200 });
      break;
    case 'spoofed':
      res = http.get(appUrl(app, '/public/spoof'), p({
        headers: { ...html, 'X-Auth-Request-Email': 'mallory@evil.test', 'X-Forwarded-User': 'mallory' },
      }));
      c(res, {
        'spoofed: 200': (r) => r.status === 200,
        'spoofed: forged identity removed': (r) => !r.body.includes('mallory'),
      });
      break;
    case 'unknown_host':
      res = http.get(hostUrl(`nope-${__ITER % 10}.example.com`, '/'), p({ headers: html, responseCallback: http.expectedStatuses(404) }));
      c(res, { 'unknown_host: 404': (r) => r.status === 404 });
      break;
    case 'signed_out':
      res = http.get(appUrl(app, '/private/report'), p({ headers: html, responseCallback: http.expectedStatuses(302) }));
      c(res, { 'signed_out: 302 to the provider': toLogin });
      break;
    case 'tampered_cookie':
      res = http.get(appUrl(app, '/private/report'), p({
        headers: { ...html, Cookie: tamper(cookie) },
        responseCallback: http.expectedStatuses(302),
      }));
      c(res, { 'tampered_cookie: 302 to the provider': toLogin });
      break;
    case 'api_signed_out':
      res = http.get(appUrl(app, '/api/v1/items'), p({ headers: { Accept: 'application/json' }, responseCallback: http.expectedStatuses(401) }));
      c(res, {
        'api_signed_out: 401': (r) => r.status === 401,
        'api_signed_out: JSON': (r) => header(r, 'Content-Type').includes('json'),
      });
      break;
  }
}
