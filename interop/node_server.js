// An echo server on Node's `ws`, for testing wsdriver's client: listens on a free
// loopback port, prints "PORT <n>", echoes every message, selects the first subprotocol
// the client offers among echo.v2 and echo.v1, accepts permessage-deflate, and exits when
// its standard input closes.
const { WebSocketServer } = require('ws');

const supported = ['echo.v2', 'echo.v1'];
const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: true,
  handleProtocols: (offered) => [...offered].find((p) => supported.includes(p)) || false,
});
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.on('listening', () => console.log('PORT ' + server.address().port));
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
