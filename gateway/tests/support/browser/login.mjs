#!/usr/bin/env node
// Signs in through authgate in a real browser (Debian's chromium driven by playwright-core).
//
//   node login.mjs <start-url> <user> <password> <host-resolver-rules>
//
// Opens <start-url> in a fresh headless chromium (its own empty profile), fills the test
// provider's login form when it appears, and waits until the browser is back on the start
// URL's host. Prints one JSON line on stdout: {"url": <final URL>, "status": <HTTP status>,
// "body": <page text>}. Exits 1 with a message on stderr on any failure. Certificates of the
// test CA are accepted through the context's ignoreHTTPSErrors (loopback test hosts only).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { chromium } from 'playwright-core';

const [startUrl, user, password, resolverRules] = process.argv.slice(2);
if (!startUrl || !user || !password || !resolverRules) {
  console.error('usage: node login.mjs <start-url> <user> <password> <host-resolver-rules>');
  process.exit(2);
}
const executablePath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'authgate-chromium-'));
const appHost = new URL(startUrl).host;

async function main() {
  const context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    ignoreHTTPSErrors: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      `--host-resolver-rules=${resolverRules}`,
    ],
    timeout: 30000,
  });
  try {
    const page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(20000);
    await page.goto(startUrl);
    await page.waitForSelector('input[name="login"]');
    await page.fill('input[name="login"]', user);
    await page.fill('input[name="password"]', password);
    const back = page.waitForURL((u) => u.host === appHost, { waitUntil: 'load' });
    await page.click('[type="submit"]');
    await back;
    const response = await page.reload();
    const out = { url: page.url(), status: response?.status() ?? 0, body: await page.innerText('body') };
    process.stdout.write(`${JSON.stringify(out)}\n`);
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(`login.mjs: ${err.stack || err.message}`);
  fs.rmSync(profile, { recursive: true, force: true });
  process.exit(1);
});
