// Headless Chromium (Debian's, or $CHROMIUM) for the browser tests: a fresh profile each
// run, removed afterwards.
//   await withChromium({ args: [...], viewport: {...} }, async (browser) => { ... });
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

async function withChromium(options, run) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsdriver-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    ...options,
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ARGS.concat(options.args || []),
  });
  try {
    return await run(browser);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

module.exports = { withChromium };
