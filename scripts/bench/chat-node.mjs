// Chat-room benchmark server for Node.js with the npm `ws` package.
// Wire protocol: PROTOCOL.md in this folder (compatible with Bun's
// bench/websocket-server chat benchmark).
//
//   PORT=4001 CLIENTS_COUNT=32 node scripts/bench/chat-node.mjs
//
// `ws` is looked up from this folder, then NODE_PATH, then
// $WSK_BENCH_DIR/node_modules (default /tmp/wskit-bench), where
// scripts/bench-setup installs it.
//
// Environment: PORT (default 4001; 0 = any free port), CLIENTS_COUNT
// (default 32), HOST (127.0.0.1 or ::1), VERBOSE=1 (log joins on stderr).
// Prints exactly one line on stdout once listening.

import { chatEnv, loadWs, serverEnv, wsUrl } from "./common.mjs";

const READY_DELAY_MS = 100;

const { fail, host: HOST, port: PORT } = serverEnv("chat-node");
const { clients: CLIENTS, log } = chatEnv();
const { WebSocketServer, version: wsVersion } = loadWs(fail);

// The room: every member, in join order. A message goes to all of them,
// the sender included.
const members = [];

const wss = new WebSocketServer({ host: HOST, port: PORT, perMessageDeflate: false, clientTracking: false });

wss.on("connection", (ws, req) => {
  const name = new URL(req.url, "http://localhost").searchParams.get("name") || `Client #${members.length}`;
  log(`${name} connected (${CLIENTS - members.length - 1} remain)`);
  members.push(ws);

  ws.on("message", (data) => {
    // `data` is a Buffer; it is read as UTF-8 and each member gets a text frame.
    const out = `${name}: ${data}`;
    for (const m of members) m.send(out);
  });

  ws.on("close", () => {
    const i = members.indexOf(ws);
    if (i >= 0) members.splice(i, 1);
    log(`${name} left (${CLIENTS - members.length} remain)`);
  });

  ws.on("error", (err) => log(`${name}: ${err.message}`));

  if (members.length === CLIENTS) {
    log("All clients connected");
    setTimeout(() => {
      log('sending "ready"');
      for (const m of members) m.send("ready");
    }, READY_DELAY_MS);
  }
});

wss.on("error", (err) => fail(err.message));

wss.on("listening", () => {
  const { port } = wss.address();
  console.log(
    `chat-node listening on ${wsUrl(HOST, port)} ` +
      `(node ${process.versions.node}, ws ${wsVersion}, waiting for ${CLIENTS} clients)`,
  );
});
