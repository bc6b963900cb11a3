// Runs the interop checks in headless Chromium (Debian's), with the browser's own
// WebSocket: node browser_client.js ws://127.0.0.1:PORT
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

async function main(url) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'wsdriver-chromium-'));
  // A fresh profile directory each run.
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage();
    page.on('console', (m) => console.log('chromium: ' + m.text()));
    await page.addScriptTag({ content: fs.readFileSync(path.join(__dirname, 'checks.js'), 'utf8') });
    await page.evaluate((u) => runChecks(WebSocket, u, (line) => console.log(line)), url);
  } finally {
    await browser.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main(process.argv[2])
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('chromium: FAILED: ' + err.message);
    process.exit(1);
  });
