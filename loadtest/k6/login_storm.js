// loadtest/k6/login_storm.js: full OIDC logins, as many as the VUs can complete.
//
// MODE=gateway (default): each iteration is a new browser (its own cookie jar) that asks a
// protected page of app0001 and follows the whole dance by hand, checking every step:
//   GET app page -> 302 to the provider's /auth (the gateway sets its login cookie)
//   GET /auth -> 303 /interaction/<uid> -> GET the login form (200) -> POST login/password -> 303
//   GET /auth/<uid> -> 303 to the gateway's /oauth2/callback?code=...
//   GET callback (the gateway exchanges the code at /token, verifies the ID token, stores the
//   session in Redis with SET + WAIT) -> 302 back to the page + the session cookie
//   GET the page with the session cookie -> 200 with the user's identity at the upstream
// MODE=direct: the same login against the provider alone (authorize with PKCE, form, code,
// POST /token with client_secret_basic), without the gateway: the provider's own ceiling.
//
//   k6 run -e PORT=8443 -e ISSUER=https://localhost:9443 loadtest/k6/login_storm.js
//   k6 run -e MODE=direct -e ISSUER=... -e CLIENT_SECRET=... -e REDIRECT_URI=... loadtest/k6/login_storm.js
//
// Parameters (see lib.js for the common ones):
//   ISSUER         the provider's issuer URL (https://localhost:<port>); required
//   LOGIN=alice PASSWORD=alice-pw
//   APP=1          the app logged into (MODE=gateway)
//   CLIENT_SECRET, REDIRECT_URI   MODE=direct only: the client secret of `gateway` and a
//                  registered redirect URI (it is never visited)
//   LOGIN_TARGET=500  threshold on completed logins per second (the issue's target); 0 to disable
//   CHECK_IDENTITY=1  the upstream is `authgate echo`: check that it saw alice's email after the
//                  login (0 for another upstream: then only the 200 is checked)
//
// Reported: `logins` (count and rate = logins/s), `login_duration` (one whole login), `login_failed`.
import http from 'k6/http';
import { check, fail } from 'k6';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import { Counter, Trend } from 'k6/metrics';
import { base, env, int, required, scenario, appUrl, resolve, header, upstreamSawAlice } from './lib.js';

const MODE = env('MODE', 'gateway');
const ISSUER = required('ISSUER').replace(/\/$/, '');
const LOGIN = env('LOGIN', 'alice');
const PASSWORD = env('PASSWORD', 'alice-pw');
const APP = int('APP', 1);
const TARGET = int('LOGIN_TARGET', 500);
const CHECK_IDENTITY = env('CHECK_IDENTITY', '1') === '1';
if (MODE !== 'gateway' && MODE !== 'direct') throw new Error('MODE is gateway or direct');
const CLIENT_SECRET = MODE === 'direct' ? required('CLIENT_SECRET') : '';
const REDIRECT_URI = MODE === 'direct' ? required('REDIRECT_URI') : '';

const logins = new Counter('logins');
const loginFailed = new Counter('login_failed');
const loginDuration = new Trend('login_duration', true);

const thresholds = {
  checks: ['rate==1'],
  login_failed: ['count==0'],
  http_req_failed: ['rate==0'],
};
if (TARGET > 0) thresholds.logins = [`rate>=${TARGET}`];

export const options = {
  ...base,
  scenarios: { login: scenario('login') },
  thresholds,
};

// One step: check it, and give up this login (counted as failed) when it is wrong.
function step(res, name, ok) {
  const passed = check(res, { [`${MODE}: ${name}`]: ok }, { mode: MODE });
  if (!passed) {
    loginFailed.add(1);
    return false;
  }
  return true;
}

// From the provider's authorize URL to the redirect_uri with a code. Returns that URL or ''.
function providerLogin(authorizeUrl, jar, redirectPrefix) {
  let res = http.get(authorizeUrl, { jar, tags: { name: 'idp /auth' } });
  if (!step(res, 'authorize -> 303 /interaction', (r) => r.status === 303 && header(r, 'Location').includes('/interaction/'))) return '';
  const interaction = resolve(authorizeUrl, header(res, 'Location'));
  res = http.get(interaction, { jar, tags: { name: 'idp /interaction' } });
  if (!step(res, 'login form 200', (r) => r.status === 200 && r.body.includes('name="password"'))) return '';
  const action = /<form[^>]*action="([^"]+)"/.exec(res.body);
  if (!step(res, 'form has an action', () => action !== null)) return '';
  res = http.post(resolve(interaction, action[1]), { login: LOGIN, password: PASSWORD }, {
    jar,
    tags: { name: 'idp POST login' },
  });
  if (!step(res, 'login accepted -> 303', (r) => r.status === 303)) return '';
  let next = resolve(interaction, header(res, 'Location'));
  // At most a few more redirects inside the provider (grant, consent) before the redirect_uri.
  for (let i = 0; i < 4 && !next.startsWith(redirectPrefix); i++) {
    res = http.get(next, { jar, tags: { name: 'idp /auth/<uid>' } });
    if (!step(res, 'resume -> 303', (r) => r.status === 303)) return '';
    next = resolve(next, header(res, 'Location'));
  }
  if (!step(res, 'redirected to the redirect_uri with a code', () => next.startsWith(redirectPrefix) && next.includes('code='))) return '';
  return next;
}

function gatewayLogin() {
  const jar = new http.CookieJar();
  const page = appUrl(APP, `/after-login/${__VU}-${__ITER}?x=1`);
  let res = http.get(page, { jar, headers: { Accept: 'text/html' }, tags: { name: 'app (signed out)' } });
  if (!step(res, 'app -> 302 to the provider', (r) => r.status === 302 && header(r, 'Location').startsWith(`${ISSUER}/auth?`))) return false;
  const callback = providerLogin(header(res, 'Location'), jar, appUrl(APP, '/oauth2/callback'));
  if (!callback) return false;
  res = http.get(callback, { jar, tags: { name: 'gateway /oauth2/callback' } });
  if (!step(res, 'callback -> 302 back to the page', (r) => r.status === 302 && resolve(callback, header(r, 'Location')) === page)) return false;
  if (!step(res, 'callback sets the session cookie', (r) => (r.cookies._authgate_corp || []).length > 0)) return false;
  res = http.get(page, { jar, headers: { Accept: 'text/html' }, tags: { name: 'app (signed in)' } });
  return step(res, 'signed in: 200 from the upstream', (r) => r.status === 200 && (!CHECK_IDENTITY || upstreamSawAlice(r)));
}

function randomUrlSafe(bytes) {
  return encoding.b64encode(crypto.randomBytes(bytes), 'rawurl');
}

function directLogin() {
  const jar = new http.CookieJar();
  const verifier = randomUrlSafe(32);
  const challenge = crypto.sha256(verifier, 'base64rawurl');
  const state = randomUrlSafe(12);
  const nonce = randomUrlSafe(12);
  const q = {
    client_id: 'gateway',
    response_type: 'code',
    scope: 'openid email profile groups',
    redirect_uri: REDIRECT_URI,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  };
  const query = Object.keys(q).map((k) => `${k}=${encodeURIComponent(q[k])}`).join('&');
  const back = providerLogin(`${ISSUER}/auth?${query}`, jar, REDIRECT_URI);
  if (!back) return false;
  const code = decodeURIComponent(/[?&]code=([^&]+)/.exec(back)[1]);
  const res = http.post(
    `${ISSUER}/token`,
    { grant_type: 'authorization_code', code, redirect_uri: REDIRECT_URI, code_verifier: verifier },
    {
      headers: { Authorization: `Basic ${encoding.b64encode(`gateway:${CLIENT_SECRET}`)}` },
      tags: { name: 'idp POST /token' },
    },
  );
  return step(res, 'token endpoint returns an id_token', (r) => r.status === 200 && typeof r.json('id_token') === 'string');
}

export function login() {
  const t0 = Date.now();
  const ok = MODE === 'gateway' ? gatewayLogin() : directLogin();
  if (ok) {
    logins.add(1);
    loginDuration.add(Date.now() - t0);
  }
}

export function setup() {
  const res = http.get(`${ISSUER}/.well-known/openid-configuration`);
  if (res.status !== 200) fail(`the provider at ${ISSUER} does not answer (${res.status} ${res.error})`);
  return {};
}
