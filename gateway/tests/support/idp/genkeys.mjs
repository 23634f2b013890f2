#!/usr/bin/env node
// Write a JWKS (with private parts) holding one fresh signing key, for server.mjs's "keys_file".
//
//   node genkeys.mjs <out.json> [--alg RS256|PS256|ES256]
//
// The key gets "kid", "alg" and "use":"sig". The file is written with mode 0600.
// To rotate in a test: write [newKey, ...oldKeys] into keys_file and restart
// server.mjs; the first key signs, all are published at the jwks_uri.
// Prints the new kid on stdout.
import * as path from 'node:path';

import {
  ConfigError, SUPPORTED_ALGS, fail, generateSigningJwk, setLogPrefix, writeJwks,
} from './lib.mjs';

setLogPrefix('genkeys');
const USAGE = `usage: node genkeys.mjs <out.json> [--alg ${SUPPORTED_ALGS.join('|')}]`;

try {
  const args = process.argv.slice(2);
  let out;
  let alg = 'RS256';
  for (let i = 0; i < args.length; i += 1) {
    const a = args[i];
    if (a === '--alg') { alg = args[i + 1]; i += 1; } else if (a.startsWith('--alg=')) alg = a.slice(6);
    else if (a === '-h' || a === '--help') { process.stderr.write(`${USAGE}\n`); process.exit(0); } else if (!out && !a.startsWith('-')) out = a;
    else throw new ConfigError(`unknown argument ${JSON.stringify(a)}\n${USAGE}`);
  }
  if (!out) throw new ConfigError(USAGE);
  if (!SUPPORTED_ALGS.includes(alg)) throw new ConfigError(`unsupported --alg ${alg}\n${USAGE}`);
  const jwk = generateSigningJwk(alg);
  writeJwks(path.resolve(out), [jwk]);
  process.stdout.write(`${jwk.kid}\n`);
} catch (err) {
  fail(err.message);
}
