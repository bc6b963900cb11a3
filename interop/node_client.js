// Runs the interop checks with Node's `ws` client: node node_client.js ws://127.0.0.1:PORT
const fs = require('fs');
const path = require('path');
const WebSocket = require('ws');

const runChecks = new Function(fs.readFileSync(path.join(__dirname, 'checks.js'), 'utf8') + '\nreturn runChecks;')();

runChecks(WebSocket, process.argv[2], (line) => console.log('node ws: ' + line))
  .then(() => process.exit(0))
  .catch((err) => {
    console.error('node ws: FAILED: ' + err.message);
    process.exit(1);
  });
