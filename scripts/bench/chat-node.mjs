// Chat-room benchmark server for Node.js with the npm `ws` package.
// Wire protocol: PROTOCOL.md in this folder (compatible with Bun's
// bench/websocket-server chat benchmark).
//
//   PORT=4001 CLIENTS_COUNT=32 node scripts/bench/chat-node.mjs
//
// `ws` is looked up from this file, then NODE_PATH, then
// $WSK_BENCH_DIR/node_modules (default /tmp/wskit-bench), where
// scripts/bench-setup installs it.
//
// Environment: PORT (default 4001; 0 = any free port), CLIENTS_COUNT
// (default 32), HOST (127.0.0.1 or ::1), VERBOSE=1 (log joins on stderr).
// Prints exactly one line on stdout once listening.

import { createRequire } from "node:module";
import path from "node:path";

const READY_DELAY_MS = 100;

function fail(msg) {
  console.error(`chat-node: ${msg}`);
  process.exit(2);
}

// Returns { WebSocketServer, version } of the first `ws` found.
function loadWs() {
  const benchDir = process.env.WSK_BENCH_DIR || "/tmp/wskit-bench";
  for (const base of [import.meta.url, path.join(benchDir, "package.json")]) {
    const req = createRequire(base);
    try {
      const ws = req("ws");
      return { WebSocketServer: ws.WebSocketServer, version: req("ws/package.json").version };
    } catch (e) {
      if (e.code !== "MODULE_NOT_FOUND") throw e;
    }
  }
  fail(`cannot find the "ws" package; run scripts/bench-setup (looked in ${benchDir}/node_modules)`);
}

function envInt(name, dflt, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || String(n) !== raw.trim() || n < min) fail(`bad ${name}: ${raw}`);
  return n;
}

const HOST = process.env.HOST || "127.0.0.1";
if (HOST !== "127.0.0.1" && HOST !== "::1") fail(`HOST must be 127.0.0.1 or ::1, not ${HOST}`);
const PORT = envInt("PORT", 4001, 0);
const CLIENTS = Number.parseInt(process.env.CLIENTS_COUNT || "", 10) || 32;
const VERBOSE = process.env.VERBOSE === "1";
const log = VERBOSE ? (...a) => console.error(...a) : () => {};

const { WebSocketServer, version: wsVersion } = loadWs();

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
    `chat-node listening on ws://${HOST.includes(":") ? `[${HOST}]` : HOST}:${port}/ ` +
      `(node ${process.versions.node}, ws ${wsVersion}, waiting for ${CLIENTS} clients)`,
  );
});
