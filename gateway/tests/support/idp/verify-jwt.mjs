// Verifies a JWT against a JWK set with `jose` (an implementation independent of authgate's),
// for gateway/tests/identity_jwt.rs. Usage: node verify-jwt.mjs JWKS_JSON JWT ISSUER AUDIENCE
// Prints {"ok":true,"kid":...,"payload":{...}} or {"ok":false,"error":...}.
import { createLocalJWKSet, jwtVerify } from 'jose';

const [jwks, jwt, issuer, audience] = process.argv.slice(2);
try {
  const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(JSON.parse(jwks)), {
    issuer,
    audience,
    algorithms: ['ES256'],
  });
  console.log(JSON.stringify({ ok: true, kid: protectedHeader.kid, payload }));
} catch (e) {
  console.log(JSON.stringify({ ok: false, error: String(e.code || e.message) }));
}
