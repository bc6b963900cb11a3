// Runs the interop checks in headless Chromium (Debian's), with the browser's own
// WebSocket: node browser_client.js ws://127.0.0.1:PORT
const fs = require('fs');
const path = require('path');
const { withChromium } = require('./chromium');

async function main(url) {
  await withChromium({}, async (browser) => {
    const page = await browser.newPage();
    page.on('console', (m) => console.log('chromium: ' + m.text()));
    await page.addScriptTag({ content: fs.readFileSync(path.join(__dirname, 'checks.js'), 'utf8') });
    await page.evaluate((u) => runChecks(WebSocket, u, (line) => console.log(line)), url);
  });
}

main(process.argv[2])
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('chromium: FAILED: ' + err.message);
    process.exit(1);
  });
