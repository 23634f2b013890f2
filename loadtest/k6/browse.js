// loadtest/k6/browse.js: authenticated browsing. Every VU is one signed-in user with a real
// session cookie (minted into the shared Redis store with `authgate session mint`), browsing
// pages spread over APPS protected apps. Each answer must be the upstream's 200 with the user's
// identity injected by the gateway.
//
//   k6 run -e PORT=8443 -e APPS=10 -e COOKIES=/path/cookies.txt loadtest/k6/browse.js
//
// Parameters (see lib.js for the common ones):
//   COOKIES   file with one `_authgate_corp=<value>` per line (authgate session mint output); required
//   SESSIONS  use only the first N cookies (default: all); VU n uses cookie (n-1) mod N
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { base, env, int, required, scenario, appUrl, randomApp, lines, upstreamSawAlice, header } from './lib.js';

const COOKIES_FILE = required('COOKIES');
const cookies = new SharedArray('cookies', () => {
  const all = lines(COOKIES_FILE);
  const n = int('SESSIONS', 0);
  return n > 0 ? all.slice(0, n) : all;
});

export const options = {
  ...base,
  scenarios: { browse: scenario('browse') },
  thresholds: {
    checks: ['rate==1'],
    http_req_failed: ['rate==0'],
    http_req_duration: [`p(99)<${env('P99_MS', '250')}`],
  },
};

export function setup() {
  if (cookies.length === 0) throw new Error(`no cookies in ${COOKIES_FILE}`);
  return {};
}

export function browse() {
  const cookie = cookies[(__VU - 1) % cookies.length];
  const app = randomApp();
  const res = http.get(appUrl(app, `/dashboard/${__ITER % 100}?tab=overview`), {
    headers: { Cookie: cookie, Accept: 'text/html' },
    tags: { name: 'browse' },
  });
  check(res, {
    'browse: 200 from the upstream': (r) => r.status === 200,
    'browse: upstream saw the user': upstreamSawAlice,
    'browse: no login redirect': (r) => header(r, 'Location') === '',
  });
}
