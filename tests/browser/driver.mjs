// A JSON-lines bridge from tests/browser.rs to Debian's Chromium through playwright-core:
// one command per stdin line, one answer per stdout line. The test holds all assertions.
//
// Usage: node driver.mjs '{"userDataDir": "...", "colorScheme": "dark", "credentials": {...}}'
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const options = JSON.parse(process.argv[2] || '{}');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const context = await chromium.launchPersistentContext(options.userDataDir, {
  executablePath,
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--autoplay-policy=no-user-gesture-required',
    // A test's own flags, such as the pin of its self-signed certificate.
    ...(options.args || []),
  ],
  viewport: options.viewport || { width: 1280, height: 860 },
  colorScheme: options.colorScheme || 'light',
  httpCredentials: options.credentials,
});
const page = context.pages()[0] || (await context.newPage());
const requests = [];
const errors = [];
page.on('request', (r) => requests.push(r.url()));
page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
page.on('pageerror', (e) => errors.push(`page: ${e.message}`));
page.on('dialog', (d) => d.accept());

const commands = {
  async open({ url }) {
    const res = await page.goto(url, { waitUntil: 'load' });
    return res ? res.status() : null;
  },
  async eval({ js }) {
    return page.evaluate(js);
  },
  // Waits until the expression is truthy; answers its value.
  // Polls with evaluate rather than waitForFunction, whose string form the pages' CSP forbids.
  async waitFor({ js, timeout }) {
    const deadline = Date.now() + (timeout ?? 10000);
    let last;
    for (;;) {
      last = await page.evaluate(js);
      if (last) return last;
      if (Date.now() > deadline) throw new Error(`still ${JSON.stringify(last)} after ${timeout} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
  },
  // Answers requests for `urlPath` (any query) with a local file, so a test page and its
  // scripts load from the server's origin without the server serving them.
  async route({ urlPath, path, contentType }) {
    await page.route((url) => url.pathname === urlPath, (r) => r.fulfill({ path, contentType }));
    return null;
  },
  // Runs `js` in every page before its own scripts, from the next navigation on.
  async initScript({ js }) {
    await context.addInitScript(js);
    return null;
  },
  async click({ selector }) {
    await page.click(selector, { timeout: 10000 });
    return null;
  },
  async fill({ selector, value }) {
    await page.fill(selector, value, { timeout: 10000 });
    return null;
  },
  async press({ selector, key }) {
    await page.press(selector, key, { timeout: 10000 });
    return null;
  },
  async colorScheme({ value }) {
    await page.emulateMedia({ colorScheme: value });
    return null;
  },
  async screenshot({ path, fullPage }) {
    await page.screenshot({ path, fullPage: !!fullPage, animations: 'disabled', caret: 'hide' });
    return path;
  },
  async requests() {
    return requests;
  },
  async errors() {
    return errors;
  },
};

const rl = createInterface({ input: process.stdin });
const reply = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
reply({ ok: true, value: await context.browser()?.version?.() ?? 'ready' });
for await (const line of rl) {
  if (!line.trim()) continue;
  let msg;
  try {
    msg = JSON.parse(line);
    if (msg.cmd === 'close') break;
    const run = commands[msg.cmd];
    if (!run) throw new Error(`unknown command ${msg.cmd}`);
    reply({ ok: true, value: (await run(msg)) ?? null });
  } catch (err) {
    reply({ ok: false, error: String(err && err.stack ? err.stack : err) });
  }
}
await context.close();
process.exit(0);
