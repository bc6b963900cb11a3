// Headless Chromium (Debian's) loads https://127.0.0.1:PORT/ over HTTP/2 and opens a
// wss:// WebSocket from that page, which Chromium sends as an extended CONNECT (RFC 8441)
// on the page's HTTP/2 connection when the server allows it.
//   node browser_http2.js https://127.0.0.1:PORT/ wss://127.0.0.1:PORT/ws CERT.pem
// The certificate is trusted through --ignore-certificate-errors-spki-list, with the
// SHA-256 of its public key. Prints "page: <ALPN protocol>", "ws: <the server's first
// message>" and "echo: ok".
const crypto = require('crypto');
const fs = require('fs');
const { withChromium } = require('./chromium');

function spkiHash(pemFile) {
  const cert = new crypto.X509Certificate(fs.readFileSync(pemFile));
  const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
  return crypto.createHash('sha256').update(spki).digest('base64');
}

async function main(pageUrl, wsUrl, pemFile) {
  await withChromium({ args: ['--ignore-certificate-errors-spki-list=' + spkiHash(pemFile)] }, async (browser) => {
    const page = await browser.newPage();
    page.on('console', (m) => console.log('chromium: ' + m.text()));
    // Chromium fetches a favicon on a connection of its own (no credentials): answered
    // here, so the page's connection is the only one to the server.
    await page.route('**/favicon.ico', (route) => route.fulfill({ status: 204 }));
    // The page is whatever the server answers at the URL (a WebSocket-only server answers
    // with its refusal): what matters is the HTTP/2 connection it opens to the origin.
    await page.goto(pageUrl);
    const protocol = await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    console.log('page: ' + protocol);
    const result = await page.evaluate((url) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const got = [];
      const timer = setTimeout(() => reject(new Error('timed out, got ' + JSON.stringify(got))), 20000);
      ws.onmessage = (event) => {
        got.push(event.data);
        if (got.length === 1) ws.send('échos ✓');
        if (got.length === 2) ws.close(1000, 'done');
      };
      ws.onerror = () => reject(new Error('websocket error, got ' + JSON.stringify(got)));
      ws.onclose = (event) => {
        clearTimeout(timer);
        resolve({ got, code: event.code, clean: event.wasClean });
      };
    }), wsUrl);
    console.log('ws: ' + result.got[0]);
    if (result.got[1] !== 'échos ✓' || result.code !== 1000 || !result.clean) {
      throw new Error('unexpected exchange: ' + JSON.stringify(result));
    }
    console.log('echo: ok');
  });
}

main(process.argv[2], process.argv[3], process.argv[4])
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('chromium: FAILED: ' + err.message);
    process.exit(1);
  });
