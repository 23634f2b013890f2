// loadtest/k6/reload.js: traffic while the configuration is rewritten every second (by the driver,
// loadtest/run-k6.sh reload, which rewrites an app file in a loop). Not one request may fail:
// authenticated pages on every app, the public app and unknown hosts must keep their answers
// across every reload. A second scenario polls the admin /ready and counts the configuration
// generations it sees, so that the run proves reloads really happened.
//
//   k6 run -e PORT=8443 -e ADMIN=127.0.0.1:9090 -e COOKIES=... -e MIN_RELOADS=25 loadtest/k6/reload.js
//
// Parameters (see lib.js for the common ones):
//   COOKIES, SESSIONS   as in browse.js
//   ADMIN               host:port of the gateway's admin listener; required
//   MIN_RELOADS=1       threshold: configuration generations the poller must see advance
//   PUBLIC_HOST=public.example.com
import http from 'k6/http';
import { check, sleep } from 'k6';
import { SharedArray } from 'k6/data';
import { Counter, Gauge } from 'k6/metrics';
import { base, env, int, required, scenario, appUrl, hostUrl, randomApp, lines, upstreamSawAlice } from './lib.js';

const COOKIES_FILE = required('COOKIES');
const cookies = new SharedArray('cookies', () => {
  const all = lines(COOKIES_FILE);
  const n = int('SESSIONS', 0);
  return n > 0 ? all.slice(0, n) : all;
});
const ADMIN = required('ADMIN');
const PUBLIC_HOST = env('PUBLIC_HOST', 'public.example.com');

const reloadsSeen = new Counter('reloads_seen');
const generation = new Gauge('config_generation');

export const options = {
  ...base,
  scenarios: {
    traffic: scenario('traffic'),
    generations: { executor: 'constant-vus', exec: 'poll', vus: 1, duration: env('DURATION', '30s') },
  },
  thresholds: {
    'checks{scenario:traffic}': ['rate==1'],
    'http_req_failed{scenario:traffic}': ['rate==0'],
    'http_req_duration{scenario:traffic}': [`p(99)<${env('P99_MS', '250')}`],
    reloads_seen: [`count>=${int('MIN_RELOADS', 1)}`],
  },
};

export function traffic() {
  const r = Math.random();
  if (r < 0.8) {
    const res = http.get(appUrl(randomApp(), `/page/${__ITER % 50}`), {
      headers: { Cookie: cookies[(__VU - 1) % cookies.length], Accept: 'text/html' },
      tags: { name: 'authenticated' },
    });
    check(res, { 'authenticated: 200': (x) => x.status === 200, 'authenticated: identity': upstreamSawAlice });
  } else if (r < 0.9) {
    const res = http.get(hostUrl(PUBLIC_HOST, '/'), { tags: { name: 'public_app' } });
    check(res, { 'public_app: 200': (x) => x.status === 200 });
  } else {
    const res = http.get(hostUrl('nope.example.com', '/'), {
      tags: { name: 'unknown_host' },
      responseCallback: http.expectedStatuses(404),
    });
    check(res, { 'unknown_host: 404': (x) => x.status === 404 });
  }
}

let last = 0;
export function poll() {
  const res = http.get(`http://${ADMIN}/ready`, { tags: { name: 'admin /ready' } });
  check(res, { 'admin /ready: 200': (x) => x.status === 200 });
  if (res.status === 200) {
    const g = res.json('config_generation');
    if (last > 0 && g > last) reloadsSeen.add(g - last);
    last = g;
    generation.add(g);
  }
  sleep(0.25);
}
