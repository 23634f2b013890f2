// loadtest/k6/latency.js: latency under an open model — a constant arrival rate, whatever the
// responses' speed (a slow server does not slow the load down, it gets queued requests and,
// once every VU is busy, dropped iterations). Run by loadtest/bench.sh's `latency` case against
// each proxy in turn.
//
//   k6 run -e PORT=18446 -e HOST=app0001.example.com -e RATE=1000 -e COOKIES_FILE=cookies.txt latency.js
//
// Parameters:
//   PORT, HOST     where to send GET / (HOST resolves to 127.0.0.1; TLS verified: SSL_CERT_FILE)
//   RATE           requests per second (required)
//   DURATION=20s   how long
//   VUS=50         VUs available (pre-allocated; never more)
//   COOKIES_FILE   optional: one "name=value" session cookie per line, sent round-robin
//   COOKIES_LIMIT  use the first N cookies only
//
// Reported: http_req_duration (med, p(90), p(99), max), dropped_iterations, checks (status 200).
import http from 'k6/http';
import { check } from 'k6';

const PORT = __ENV.PORT;
const HOST = __ENV.HOST || 'app1.example.com';
const RATE = parseInt(__ENV.RATE || '0', 10);
const VUS = parseInt(__ENV.VUS || '50', 10);
if (!PORT || !(RATE > 0)) throw new Error('PORT and RATE are required');

const limit = parseInt(__ENV.COOKIES_LIMIT || '0', 10);
const all = __ENV.COOKIES_FILE ? open(__ENV.COOKIES_FILE).split('\n').filter((l) => l.length > 0) : [];
const COOKIES = limit > 0 ? all.slice(0, limit) : all;

export const options = {
  hosts: { [HOST]: '127.0.0.1' },
  discardResponseBodies: true,
  summaryTrendStats: ['med', 'p(90)', 'p(99)', 'max'],
  scenarios: {
    open: {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      duration: __ENV.DURATION || '20s',
      preAllocatedVUs: VUS,
      maxVUs: VUS,
    },
  },
};

const URL = `https://${HOST}:${PORT}/`;

export default function () {
  const params = COOKIES.length > 0
    ? { headers: { Cookie: COOKIES[(__VU * 7919 + __ITER) % COOKIES.length] } }
    : {};
  check(http.get(URL, params), { 'status 200': (r) => r.status === 200 });
}
