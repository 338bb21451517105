// A Node `ws` echo server for the interoperability tests.  Usage:
//   node ws_server.js PORT 'PERMESSAGE_DEFLATE_JSON'
// PERMESSAGE_DEFLATE_JSON is ws's perMessageDeflate option (false, true, or an object with
// serverNoContextTakeover, clientNoContextTakeover, serverMaxWindowBits, clientMaxWindowBits,
// threshold).  Prints "listening PORT" once ready, then for every connection one line
// "extensions <the Sec-WebSocket-Extensions it answered with>"; echoes every message with its
// type.  Listens on 127.0.0.1 only.
'use strict';
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
const pmd = JSON.parse(process.argv[3] || 'false');
const wss = new WebSocketServer({ host: '127.0.0.1', port, perMessageDeflate: pmd });
wss.on('headers', (headers) => {
    const ext = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
    console.log('extensions ' + (ext ? ext.split(':').slice(1).join(':').trim() : 'none'));
});
wss.on('connection', (ws) => {
    ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
wss.on('listening', () => console.log('listening ' + wss.address().port));
