// The interop checks against an echo server, written once against the standard WebSocket
// API: Node runs them with the `ws` package's WebSocket, Chromium with its own.
// runChecks(WS, baseUrl, log) resolves when every check passed, rejects on the first failure.
async function runChecks(WS, base, log) {
  const LIMIT_MS = 60000;

  function withTimeout(promise, what) {
    let timer;
    return Promise.race([
      promise,
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error('timed out: ' + what)), LIMIT_MS); }),
    ]).finally(() => clearTimeout(timer));
  }

  function open(path, protocols) {
    return withTimeout(new Promise((resolve, reject) => {
      const ws = protocols ? new WS(base + path, protocols) : new WS(base + path);
      ws.binaryType = 'arraybuffer';
      const queue = [];
      const waiters = [];
      ws.onmessage = (e) => (waiters.length ? waiters.shift()(e.data) : queue.push(e.data));
      ws.onerror = () => reject(new Error('websocket error on ' + path));
      ws.onopen = () => resolve({
        ws,
        next: () => withTimeout(queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)), 'message'),
      });
    }), 'open ' + path);
  }

  function same(got, want, what) {
    if (typeof want === 'string') {
      if (got !== want) throw new Error(what + ': text differs (' + String(got).length + ' vs ' + want.length + ' chars)');
      return;
    }
    if (!(got instanceof ArrayBuffer)) throw new Error(what + ': expected binary, got ' + typeof got);
    const a = new Uint8Array(got);
    const b = new Uint8Array(want);
    if (a.length !== b.length) throw new Error(what + ': length ' + a.length + ' instead of ' + b.length);
    for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) throw new Error(what + ': byte ' + i + ' differs');
  }

  function bytes(n, step) {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = (i * step) % 251;
    return out.buffer;
  }

  async function echo(c, message, what) {
    c.ws.send(message);
    same(await c.next(), message, what);
  }

  const checks = {
    'text with multi-byte UTF-8': async (c) => echo(c, 'héllo wörld — ✓ 𝄞 ∑ 日本語', 'text'),
    'binary with every byte value': async (c) => {
      const all = new Uint8Array(256);
      for (let i = 0; i < 256; i++) all[i] = i;
      await echo(c, all.buffer, 'binary');
    },
    'empty messages': async (c) => {
      await echo(c, '', 'empty text');
      await echo(c, new ArrayBuffer(0), 'empty binary');
    },
    'length boundaries 125/126/65535/65536': async (c) => {
      for (const n of [125, 126, 127, 65535, 65536, 65537]) {
        await echo(c, bytes(n, 7), 'binary of ' + n);
        await echo(c, 'x'.repeat(n), 'text of ' + n);
      }
    },
    'a 16 MiB message': async (c) => echo(c, bytes(16 << 20, 3), '16 MiB'),
    '1000 pipelined messages in order': async (c) => {
      for (let i = 0; i < 1000; i++) c.ws.send('message ' + i);
      for (let i = 0; i < 1000; i++) same(await c.next(), 'message ' + i, 'pipelined ' + i);
    },
  };

  for (const [name, check] of Object.entries(checks)) {
    const c = await open('/interop?check=' + encodeURIComponent(name));
    await check(c);
    c.ws.close(1000);
    log('ok ' + name);
  }

  const d = await open('/deflate');
  if (!String(d.ws.extensions).startsWith('permessage-deflate')) throw new Error('permessage-deflate not negotiated: "' + d.ws.extensions + '"');
  await echo(d, JSON.stringify(Array.from({ length: 5000 }, (_, i) => ({ id: i, name: 'user ' + i }))), 'compressible text');
  d.ws.close(1000);
  log('ok permessage-deflate negotiated');

  const p = await open('/sub', ['x.unknown', 'echo.v1', 'echo.v2']);
  if (p.ws.protocol !== 'echo.v1') throw new Error('subprotocol: got "' + p.ws.protocol + '", want "echo.v1"');
  p.ws.close(1000);
  log('ok subprotocol selection');

  const c = await open('/close');
  const closed = new Promise((resolve) => { c.ws.onclose = (e) => resolve(e); });
  c.ws.close(4001, 'done here');
  const e = await withTimeout(closed, 'close');
  if (e.code !== 4001 || !e.wasClean) throw new Error('close: code ' + e.code + ', clean ' + e.wasClean);
  log('ok close with code and reason');
}
