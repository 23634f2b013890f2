// loadtest/k6/lib.js: what the k6 scenarios share. Parameters come from __ENV (k6 run -e KEY=VALUE).
//
// Common parameters:
//   PORT=8443        the gateway's HTTPS port (every app host resolves to 127.0.0.1)
//   APPS=10          number of protected apps app0001.example.com .. appNNNN.example.com
//   APP_MODE=sticky  sticky: each VU uses APPS_PER_VU=3 apps of its own; random: any app (see below)
//   VUS=32           virtual users (closed model)       | RATE=n  requests (iterations) per second
//   DURATION=30s     how long                           |         instead (open model, MAX_VUS)
//   P99_MS=250       latency threshold (p99 of http_req_duration, ms)
//   INSECURE=0       1: do not verify TLS certificates. By default k6 verifies them: run it with
//                    SSL_CERT_FILE=certs/dev/ca.crt so that the dev CA is trusted (run-k6.sh does).
//
// k6 itself costs ~100 µs of CPU per request on a 2-core machine: its request rates measure k6 as
// much as the gateway. Use these scenarios for behaviour under load and thresholds, and
// loadtest/bench.sh (wrk) for ceilings and CPU per request.

export function env(name, fallback) {
  const v = __ENV[name];
  return v === undefined || v === '' ? fallback : v;
}

export function int(name, fallback) {
  const v = parseInt(env(name, String(fallback)), 10);
  if (Number.isNaN(v)) throw new Error(`${name} must be an integer`);
  return v;
}

export function required(name) {
  const v = __ENV[name];
  if (v === undefined || v === '') throw new Error(`set ${name} (k6 run -e ${name}=...)`);
  return v;
}

export const PORT = int('PORT', 8443);
export const APPS = int('APPS', 10);

/** Host name of protected app i (1-based), as loadtest/run-k6.sh and loadtest/bench.sh name them. */
export function appHost(i) {
  return `app${String(i).padStart(4, '0')}.example.com`;
}

/** https URL on app i. */
export function appUrl(i, path) {
  return `https://${appHost(i)}:${PORT}${path}`;
}

/** URL on any host under example.com. */
export function hostUrl(host, path) {
  return `https://${host}:${PORT}${path}`;
}

// Which apps a VU talks to. k6 (Go's HTTP client) keeps one keep-alive connection per host per VU,
// and never coalesces hosts: with APP_MODE=random, 32 VUs over 1,000 apps open up to 32,000 TLS
// connections, which measures connection set-up and the open-file limit rather than browsing (it
// exhausted the gateway's 20,000 file descriptors in our runs). So by default every VU is a user
// with APPS_PER_VU "home" apps (VU n: apps (n-1)*K+1 .. (n-1)*K+K, wrapping around APPS), and the
// VUs together cover min(APPS, VUS*K) apps. For traffic spread over every app, use
// loadtest/bench.sh (gateway-1000-apps), whose wrk connections are not tied to a host.
const APP_MODE = env('APP_MODE', 'sticky');
const APPS_PER_VU = int('APPS_PER_VU', 3);
if (APP_MODE !== 'sticky' && APP_MODE !== 'random') throw new Error('APP_MODE is sticky or random');

/** An app number in 1..APPS for this VU's next request (see APP_MODE). */
export function randomApp() {
  if (APP_MODE === 'random') return 1 + Math.floor(Math.random() * APPS);
  const j = Math.floor(Math.random() * APPS_PER_VU);
  return 1 + (((__VU - 1) * APPS_PER_VU + j) % APPS);
}

/** Non-empty lines of a file (call in the init context only: k6's open()). */
export function lines(path) {
  return open(path)
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.length > 0);
}

/** The scenario: constant VUs, or a constant arrival rate when RATE is set. */
export function scenario(exec) {
  const duration = env('DURATION', '30s');
  const rate = int('RATE', 0);
  if (rate > 0) {
    return {
      executor: 'constant-arrival-rate',
      exec,
      rate,
      timeUnit: '1s',
      duration,
      preAllocatedVUs: int('VUS', 32),
      maxVUs: int('MAX_VUS', 200),
    };
  }
  return { executor: 'constant-vus', exec, vus: int('VUS', 32), duration };
}

/** Options every scenario starts from. */
export const base = {
  // Every *.example.com name goes to the gateway on loopback, with the right SNI and Host.
  hosts: { '*.example.com': '127.0.0.1', localhost: '127.0.0.1' },
  insecureSkipTLSVerify: env('INSECURE', '0') === '1',
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(99)', 'max'],
  // The gateway's answers are checked one by one: never follow redirects implicitly.
  maxRedirects: 0,
  noConnectionReuse: false,
};

/** Resolves a Location header (possibly relative) against the URL it came from. */
export function resolve(from, location) {
  if (!location) return '';
  if (/^https?:\/\//.test(location)) return location;
  const m = /^(https?:\/\/[^/]+)/.exec(from);
  if (location.startsWith('/')) return m[1] + location;
  return from.replace(/[^/]*$/, '') + location;
}

/** The first value of a response header, case-insensitively. */
export function header(res, name) {
  const want = name.toLowerCase();
  for (const k of Object.keys(res.headers)) {
    if (k.toLowerCase() === want) return res.headers[k];
  }
  return '';
}

/** True when the echo upstream's JSON shows `alice@example.com` in X-Auth-Request-Email. */
export function upstreamSawAlice(res) {
  return typeof res.body === 'string' && res.body.includes('"x-auth-request-email":["alice@example.com"]');
}
