// Several chat pages in headless Chromium (Debian's) behind one address (HAProxy in front
// of several chat processes): each joins the same room and says M things, one every
// INTERVAL ms, on its own, whatever happens to the servers meanwhile.
//   node chat_failover.js http://127.0.0.1:PORT/ PAGES M INTERVAL
// Prints, one line each:
//   JOINED [servers]   once every page is in the room (the server each went through)
//   HALF               once half of all messages are acknowledged (disrupt now)
//   REFUSED            once a server refused to send a message (it could not reach Redis)
//   RESULT {...}       once every page has everything acknowledged, has received
//                      everything and counts PAGES in the room (or after a minute): what
//                      each page showed, in order
const { withChromium } = require('./chromium');

const LIMIT = 60000;

const state = () => ({
  client: chat.client,
  inRoom: chat.inRoom,
  servers: chat.servers,
  notices: chat.notices,
  said: chat.nextId - 1,
  refused: chat.refused,
  here: chat.here,
  pending: chat.pending.length,
  ids: chat.log.map((m) => m.id),
});

async function main(url, pages, messages, interval) {
  // Pages in the background keep their timers running at full speed.
  const args = ['--disable-background-timer-throttling', '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows'];
  await withChromium({ args }, async (browser) => {
    const all = [];
    for (let n = 0; n < pages; n++) {
      const page = await browser.newPage();
      page.on('pageerror', (e) => console.error(`page ${n}: ${e.message}`));
      await page.goto(url);
      await page.fill('#name', `page${n}`);
      await page.fill('#room', 'failover');
      await page.click('#join');
      await page.waitForFunction(() => chat.inRoom, null, { timeout: LIMIT });
      all.push(page);
    }
    const joined = await Promise.all(all.map((p) => p.evaluate(() => chat.servers[0])));
    console.log(`JOINED ${JSON.stringify(joined)}`);

    for (const page of all) {
      await page.evaluate(([m, every]) => {
        let k = 0;
        const timer = setInterval(() => {
          k += 1;
          chat.say(`message ${k}`);
          if (k >= m) clearInterval(timer);
        }, every);
      }, [messages, interval]);
    }

    const total = pages * messages;
    const started = Date.now();
    let half = false;
    let refused = false;
    let states;
    for (;;) {
      states = await Promise.all(all.map((p) => p.evaluate(state)));
      const acknowledged = states.reduce((sum, s) => sum + s.said - s.pending, 0);
      if (!half && acknowledged >= total / 2) {
        half = true;
        console.log('HALF');
      }
      if (!refused && states.some((s) => s.refused > 0)) {
        refused = true;
        console.log('REFUSED');
      }
      // Everything said, acknowledged and received, and every page shows everyone in the
      // room (once the entries of a process that died have expired).
      const done = states.every((s) => s.said === messages && s.pending === 0 && s.ids.length >= total && s.here === pages);
      if (done || Date.now() - started > LIMIT) break;
      await new Promise((r) => setTimeout(r, 100)); // polling the pages' state
    }
    console.log(`RESULT ${JSON.stringify(states)}`);
  });
}

main(process.argv[2], Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]))
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('failover: FAILED: ' + err.message);
    process.exit(1);
  });
