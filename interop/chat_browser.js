// Two pages in headless Chromium (Debian's), each on its own chat server process: join
// the same room, type a message in one, wait for it in the other, save a screenshot.
//   node chat_browser.js http://127.0.0.1:A/ http://127.0.0.1:B/ SCREENSHOT.png
const { withChromium } = require('./chromium');

const TIMEOUT = 15000;

async function join(context, url, name) {
  const page = await context.newPage();
  page.on('console', (m) => console.log(`${name}: console: ${m.text()}`));
  page.on('pageerror', (e) => console.log(`${name}: page error: ${e.message}`));
  await page.goto(url);
  await page.fill('#name', name);
  await page.fill('#room', 'browsers');
  await page.click('#join');
  await page.waitForSelector('#text:not([disabled])', { timeout: TIMEOUT });
  console.log(`${name}: ${await page.textContent('#status')}`);
  return page;
}

async function main(urlA, urlB, screenshot) {
  await withChromium({ viewport: { width: 900, height: 700 } }, async (context) => {
    const alice = await join(context, urlA, 'alice');
    const bob = await join(context, urlB, 'bob');
    // Alice sees Bob arrive through the other server.
    await alice.waitForSelector('#messages li.event:has-text("bob joined")', { timeout: TIMEOUT });

    const text = `hello from alice, ${Date.now()}`;
    await alice.fill('#text', text);
    await alice.press('#text', 'Enter');
    const line = await bob.waitForSelector(`#messages li.message:has-text("${text}")`, { timeout: TIMEOUT });
    console.log(`bob sees: ${await line.textContent()}`);

    await bob.fill('#text', 'hi alice 👋');
    await bob.click('#send');
    await alice.waitForSelector('#messages li.message:has-text("hi alice 👋")', { timeout: TIMEOUT });
    console.log('alice sees bob\'s reply');

    await bob.screenshot({ path: screenshot, fullPage: true });
    console.log(`screenshot: ${screenshot}`);
  });
}

main(process.argv[2], process.argv[3], process.argv[4])
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('chat: FAILED: ' + err.message);
    process.exit(1);
  });
