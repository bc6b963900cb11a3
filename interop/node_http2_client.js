// Node's own HTTP/2 client (the built-in `http2` module, nghttp2) against a wsdriver
// server with h2c by prior knowledge: three WebSockets as RFC 8441 extended CONNECTs on
// one HTTP/2 session, each told by the server's handler that it came over HTTP/2, then
// echoing a masked text message and closing with 1000.
//   node node_http2_client.js http://127.0.0.1:PORT
// Node has no WebSocket framing over HTTP/2, so the frames are written here (RFC 6455
// §5.2); the HTTP/2 side, SETTINGS_ENABLE_CONNECT_PROTOCOL included, is Node's.
const crypto = require('crypto');
const http2 = require('http2');

function frame(opcode, payload) {
  const mask = crypto.randomBytes(4);
  const head = payload.length < 126 ? Buffer.from([0x80 | opcode, 0x80 | payload.length])
    : Buffer.from([0x80 | opcode, 0x80 | 126, payload.length >> 8, payload.length & 0xff]);
  const body = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]));
  return Buffer.concat([head, mask, body]);
}

// Reads whole unmasked server frames from `stream`: resolves each `next()` with one.
function frames(stream) {
  let buffered = Buffer.alloc(0);
  const waiting = [];
  const ready = [];
  stream.on('data', (chunk) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (;;) {
      if (buffered.length < 2) break;
      let len = buffered[1] & 0x7f;
      let at = 2;
      if (len === 126) { if (buffered.length < 4) break; len = buffered.readUInt16BE(2); at = 4; }
      if (len === 127) { if (buffered.length < 10) break; len = Number(buffered.readBigUInt64BE(2)); at = 10; }
      if (buffered.length < at + len) break;
      const f = { opcode: buffered[0] & 0x0f, payload: buffered.subarray(at, at + len) };
      buffered = buffered.subarray(at + len);
      if (waiting.length) waiting.shift()(f); else ready.push(f);
    }
  });
  return () => new Promise((resolve) => (ready.length ? resolve(ready.shift()) : waiting.push(resolve)));
}

async function socket(session, index) {
  const stream = session.request({
    ':method': 'CONNECT', ':protocol': 'websocket', ':scheme': 'http', ':path': '/',
    'sec-websocket-version': '13',
  });
  const headers = await new Promise((resolve, reject) => {
    stream.on('response', resolve);
    stream.on('error', reject);
  });
  if (headers[':status'] !== 200 || 'content-length' in headers) {
    throw new Error('socket ' + index + ': unexpected response ' + JSON.stringify(headers));
  }
  const next = frames(stream);
  // The test's handler says first which HTTP version its WebSocket came over.
  const greeting = await next();
  if (greeting.opcode !== 0x1 || greeting.payload.toString() !== 'HTTP/2.0') {
    throw new Error('socket ' + index + ': bad greeting ' + JSON.stringify(greeting));
  }
  const text = 'over HTTP/2 ✓ ' + index;
  stream.write(frame(0x1, Buffer.from(text)));
  const echo = await next();
  if (echo.opcode !== 0x1 || echo.payload.toString() !== text) {
    throw new Error('socket ' + index + ': bad echo ' + JSON.stringify(echo));
  }
  stream.write(frame(0x8, Buffer.from([0x03, 0xe8])));
  const close = await next();
  if (close.opcode !== 0x8 || close.payload.readUInt16BE(0) !== 1000) {
    throw new Error('socket ' + index + ': bad close ' + JSON.stringify(close));
  }
  stream.end();
  console.log('ok socket ' + index);
}

async function main(url) {
  const session = http2.connect(url);
  session.on('error', (err) => { console.error('session: ' + err.message); process.exit(1); });
  const settings = await new Promise((resolve) => session.once('remoteSettings', resolve));
  if (!settings.enableConnectProtocol) throw new Error('the server did not allow extended CONNECT');
  console.log('ok settings');
  await Promise.all([1, 2, 3].map((i) => socket(session, i)));
  session.close();
}

main(process.argv[2])
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('node http2: FAILED: ' + err.message);
    process.exit(1);
  });
