// loadtest/k6/api.js: API traffic with bearer JWTs. Apps with `skip_jwt_bearer_tokens: true`
// accept an ID token issued by the provider to the gateway's client id; the gateway verifies it
// (signature against the provider's JWKS, issuer, audience, expiry) on every request.
//
//   k6 run -e PORT=8443 -e APPS=10 -e TOKEN_FILE=/path/id_token loadtest/k6/api.js
//
// Parameters (see lib.js for the common ones):
//   TOKEN_FILE  file holding one ID token (JWT) of alice for client `gateway`; or TOKEN=<jwt>
//   BAD_PCT=5   % of requests sent with a tampered token (must get 401 + WWW-Authenticate)
import http from 'k6/http';
import { check } from 'k6';
import { base, env, int, scenario, appUrl, randomApp, upstreamSawAlice, header } from './lib.js';

const TOKEN = (__ENV.TOKEN || (__ENV.TOKEN_FILE ? open(__ENV.TOKEN_FILE) : '')).trim();
if (!/^[\w-]+\.[\w-]+\.[\w-]+$/.test(TOKEN)) {
  throw new Error('set TOKEN_FILE (or TOKEN) to an ID token (a JWT)');
}
// The same header and claims with a different signature: only the signature check rejects it.
const sig = TOKEN.split('.')[2];
const BAD_TOKEN = TOKEN.slice(0, TOKEN.length - sig.length) + (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1);
const BAD_PCT = int('BAD_PCT', 5);

export const options = {
  ...base,
  scenarios: { api: scenario('api') },
  thresholds: {
    checks: ['rate==1'],
    'checks{kind:valid}': ['rate==1'],
    'checks{kind:tampered}': ['rate==1'],
    http_req_failed: ['rate==0'],
    'http_req_duration{kind:valid}': [`p(99)<${env('P99_MS', '250')}`],
  },
};

export function api() {
  const app = randomApp();
  if (Math.random() * 100 < BAD_PCT) {
    const res = http.get(appUrl(app, '/api/v1/items?limit=10'), {
      headers: { Authorization: `Bearer ${BAD_TOKEN}`, Accept: 'application/json' },
      tags: { name: 'api-tampered', kind: 'tampered' },
      responseCallback: http.expectedStatuses(401),
    });
    check(
      res,
      {
        'tampered token: 401': (r) => r.status === 401,
        'tampered token: WWW-Authenticate invalid_token': (r) => header(r, 'WWW-Authenticate').includes('invalid_token'),
      },
      { kind: 'tampered' },
    );
    return;
  }
  const res = http.get(appUrl(app, `/api/v1/items/${__ITER % 1000}`), {
    headers: { Authorization: `Bearer ${TOKEN}`, Accept: 'application/json' },
    tags: { name: 'api', kind: 'valid' },
  });
  check(
    res,
    {
      'bearer: 200 from the upstream': (r) => r.status === 200,
      'bearer: upstream saw the user': upstreamSawAlice,
    },
    { kind: 'valid' },
  );
}
