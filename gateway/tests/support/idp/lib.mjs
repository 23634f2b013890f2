// Shared helpers for the test IdP (server.mjs), the GitHub stand-in (github.mjs)
// and genkeys.mjs. Node built-ins only.
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';

// ---------------------------------------------------------------------------
// logging: everything goes to stderr; stdout carries only the READY line.

let logPrefix = 'idp';
export function setLogPrefix(prefix) { logPrefix = prefix; }

export function log(...args) {
  const msg = args.map((a) => (typeof a === 'string' ? a : JSON.stringify(a))).join(' ');
  process.stderr.write(`[${logPrefix}] ${msg}\n`);
}

// Libraries (oidc-provider's notices use console.info) must never write to
// stdout, which is reserved for the READY line.
export function consoleToStderr() {
  const toErr = (...args) => console.error(...args);
  console.log = toErr;
  console.info = toErr;
  console.debug = toErr;
}

export class ConfigError extends Error {}

export function fail(message) {
  process.stderr.write(`[${logPrefix}] error: ${message}\n`);
  process.exit(1);
}

// ---------------------------------------------------------------------------
// command line

export function parseArgs(argv, usage) {
  let configPath;
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--config') {
      configPath = argv[i + 1];
      i += 1;
    } else if (a.startsWith('--config=')) {
      configPath = a.slice('--config='.length);
    } else if (a === '-h' || a === '--help') {
      process.stderr.write(`${usage}\n`);
      process.exit(0);
    } else {
      throw new ConfigError(`unknown argument ${JSON.stringify(a)}\n${usage}`);
    }
  }
  if (!configPath) throw new ConfigError(`--config <file.json> is required\n${usage}`);
  return { configPath: path.resolve(configPath) };
}

export function readConfig(configPath) {
  let text;
  try {
    text = fs.readFileSync(configPath, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config ${configPath}: ${err.code || err.message}`);
  }
  try {
    const cfg = JSON.parse(text);
    if (!cfg || typeof cfg !== 'object' || Array.isArray(cfg)) throw new Error('top level must be an object');
    return cfg;
  } catch (err) {
    throw new ConfigError(`config ${configPath} is not valid JSON: ${err.message}`);
  }
}

// Relative paths in a config are resolved against the config file's folder.
export function resolvePath(configPath, p) {
  return path.resolve(path.dirname(configPath), p);
}

export function parseListen(listen) {
  if (typeof listen !== 'string') throw new ConfigError('"listen" must be a string like "127.0.0.1:0"');
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  if (!m) throw new ConfigError(`"listen" must look like "127.0.0.1:0" or "[::1]:0", got ${JSON.stringify(listen)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new ConfigError(`"listen" port out of range: ${port}`);
  return { host: m[1] || m[2], port };
}

export function readTls(configPath, tls, what = '"tls"') {
  if (!tls || typeof tls !== 'object') throw new ConfigError(`${what} must be an object with cert_file and key_file`);
  for (const k of ['cert_file', 'key_file']) {
    if (typeof tls[k] !== 'string' || !tls[k]) throw new ConfigError(`${what}.${k} must be a path`);
  }
  const certPath = resolvePath(configPath, tls.cert_file);
  const keyPath = resolvePath(configPath, tls.key_file);
  let cert;
  let key;
  try { cert = fs.readFileSync(certPath); } catch (err) { throw new ConfigError(`cannot read ${what}.cert_file ${certPath}: ${err.code || err.message}`); }
  try { key = fs.readFileSync(keyPath); } catch (err) { throw new ConfigError(`cannot read ${what}.key_file ${keyPath}: ${err.code || err.message}`); }
  try {
    crypto.createPrivateKey(key);
    new crypto.X509Certificate(cert); // eslint-disable-line no-new
  } catch (err) {
    throw new ConfigError(`${what}: cannot parse certificate/key: ${err.message}`);
  }
  return { cert, key };
}

export function isStringArray(v) {
  return Array.isArray(v) && v.every((s) => typeof s === 'string');
}

// ---------------------------------------------------------------------------
// HTTP helpers

export function htmlEscape(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;',
  })[c]);
}

export function readBody(req, limit = 64 * 1024) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (c) => {
      size += c.length;
      if (size > limit) {
        reject(Object.assign(new Error('request body too large'), { status: 413 }));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

// Parses an application/x-www-form-urlencoded or JSON body into a plain object.
export async function readParams(req) {
  const raw = await readBody(req);
  const type = String(req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
  if (type === 'application/json') {
    if (!raw) return {};
    try {
      const obj = JSON.parse(raw);
      return obj && typeof obj === 'object' ? obj : {};
    } catch {
      throw Object.assign(new Error('invalid JSON body'), { status: 400 });
    }
  }
  return Object.fromEntries(new URLSearchParams(raw));
}

export function send(res, status, body, headers = {}) {
  const buf = Buffer.isBuffer(body) ? body : Buffer.from(String(body ?? ''));
  res.writeHead(status, { 'Content-Length': buf.length, ...headers });
  res.end(buf);
}

export function sendHtml(res, status, html) {
  send(res, status, html, {
    'Content-Type': 'text/html; charset=utf-8',
    'Cache-Control': 'no-store',
  });
}

export function sendJson(res, status, obj, headers = {}) {
  send(res, status, JSON.stringify(obj), { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store', ...headers });
}

export function redirect(res, status, location) {
  send(res, status, '', { Location: location, 'Cache-Control': 'no-store' });
}

// Constant-time string comparison (compares SHA-256 digests).
export function safeEqual(a, b) {
  const ha = crypto.createHash('sha256').update(String(a)).digest();
  const hb = crypto.createHash('sha256').update(String(b)).digest();
  return crypto.timingSafeEqual(ha, hb);
}

export function loginPage({ title, action, error, login, hidden = {} }) {
  const hiddenInputs = Object.entries(hidden)
    .filter(([, v]) => v !== undefined && v !== null)
    .map(([k, v]) => `      <input type="hidden" name="${htmlEscape(k)}" value="${htmlEscape(v)}">`)
    .join('\n');
  return `<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>${htmlEscape(title)}</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <style>body{font-family:sans-serif;max-width:22em;margin:3em auto}label,input,button{display:block;width:100%;margin:.3em 0}.error{color:#b00020}</style>
</head>
<body>
  <h1>${htmlEscape(title)}</h1>
${error ? `  <p class="error" id="error">${htmlEscape(error)}</p>\n` : ''}  <form method="post" action="${htmlEscape(action)}" id="login-form">
${hiddenInputs}
      <label for="login">Username</label>
      <input id="login" type="text" name="login" value="${htmlEscape(login || '')}" autocomplete="username" autofocus required>
      <label for="password">Password</label>
      <input id="password" type="password" name="password" autocomplete="current-password" required>
      <button type="submit">Sign in</button>
  </form>
</body>
</html>
`;
}

// ---------------------------------------------------------------------------
// listening and shutdown

export function listen(server, { host, port }) {
  return new Promise((resolve, reject) => {
    const onError = (err) => reject(new ConfigError(`cannot listen on ${host}:${port}: ${err.code || err.message}`));
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve(server.address().port);
    });
  });
}

export function urlHost(host) {
  return host.includes(':') ? `[${host}]` : host;
}

export function announceReady(url) {
  // The one and only line on stdout.
  process.stdout.write(`READY ${url}\n`);
}

export function installShutdown(server, name) {
  let stopping = false;
  const stop = (signal) => {
    if (stopping) return;
    stopping = true;
    log(`${name}: ${signal} received, shutting down`);
    server.close(() => process.exit(0));
    server.closeAllConnections?.();
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // The harness reading our stdout may go away; never die on EPIPE.
  process.stdout.on('error', () => {});
}

// ---------------------------------------------------------------------------
// signing keys (JWK)

export const SUPPORTED_ALGS = ['RS256', 'PS256', 'ES256'];

export function jwkThumbprint(jwk) {
  let members;
  switch (jwk.kty) {
    case 'RSA': members = { e: jwk.e, kty: jwk.kty, n: jwk.n }; break;
    case 'EC': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }; break;
    case 'OKP': members = { crv: jwk.crv, kty: jwk.kty, x: jwk.x }; break;
    default: throw new Error(`unsupported kty ${jwk.kty}`);
  }
  return crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

export function generateSigningJwk(alg = 'RS256') {
  let pair;
  switch (alg) {
    case 'RS256':
    case 'PS256':
      pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
      break;
    case 'ES256':
      pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
      break;
    default:
      throw new ConfigError(`unsupported alg ${alg} (use one of ${SUPPORTED_ALGS.join(', ')})`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${alg.toLowerCase()}-${jwkThumbprint(jwk).slice(0, 16)}`, alg, use: 'sig' };
}

export function defaultAlgFor(jwk) {
  if (jwk.alg) return jwk.alg;
  if (jwk.kty === 'RSA') return 'RS256';
  if (jwk.kty === 'EC') return { 'P-256': 'ES256', 'P-384': 'ES384', 'P-521': 'ES512' }[jwk.crv];
  return undefined;
}

export function writeJwks(file, keys) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, `${JSON.stringify({ keys }, null, 2)}\n`, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

// Reads a JWKS with private keys and normalises each key (kid, alg, use).
export function readJwks(file) {
  let obj;
  try {
    obj = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`cannot read keys_file ${file}: ${err.code || err.message}`);
  }
  const keys = Array.isArray(obj) ? obj : obj?.keys;
  if (!Array.isArray(keys) || keys.length === 0) throw new ConfigError(`keys_file ${file}: expected {"keys":[...]} with at least one key`);
  return keys.map((jwk, i) => {
    if (!jwk || typeof jwk !== 'object' || !jwk.kty) throw new ConfigError(`keys_file ${file}: key #${i} is not a JWK`);
    if (!jwk.d) throw new ConfigError(`keys_file ${file}: key #${i} has no private part ("d")`);
    try {
      crypto.createPrivateKey({ key: jwk, format: 'jwk' });
    } catch (err) {
      throw new ConfigError(`keys_file ${file}: key #${i} is not a valid private JWK: ${err.message}`);
    }
    const alg = defaultAlgFor(jwk);
    if (!alg || !SUPPORTED_ALGS.includes(alg)) throw new ConfigError(`keys_file ${file}: key #${i} has unsupported alg ${alg}`);
    if (jwk.use && jwk.use !== 'sig') throw new ConfigError(`keys_file ${file}: key #${i} has use ${jwk.use}, expected sig`);
    return { ...jwk, alg, use: 'sig', kid: jwk.kid || `${alg.toLowerCase()}-${jwkThumbprint(jwk).slice(0, 16)}` };
  });
}
