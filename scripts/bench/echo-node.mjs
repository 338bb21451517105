// WebSocket echo server for Node.js with the npm `ws` package
// (permessage-deflate off). Every message is sent back on the same
// connection with its type kept: text as text, binary as binary. Any path is
// accepted.
//
//   PORT=4001 node scripts/bench/echo-node.mjs
//
// `ws` is looked up from this file, then NODE_PATH, then
// $WSK_BENCH_DIR/node_modules (default /tmp/wskit-bench), where
// scripts/bench-setup installs it.
//
// Environment: PORT (default 4001; 0 = any free port), HOST (127.0.0.1 or
// ::1). Prints exactly one line on stdout once listening.

import { createRequire } from "node:module";
import path from "node:path";

function fail(msg) {
  console.error(`echo-node: ${msg}`);
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

const { WebSocketServer, version: wsVersion } = loadWs();

const wss = new WebSocketServer({ host: HOST, port: PORT, perMessageDeflate: false, clientTracking: false });

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {}); // a protocol error closes the connection; nothing to add
});

wss.on("error", (err) => fail(err.message));

wss.on("listening", () => {
  const { port } = wss.address();
  console.log(
    `echo-node listening on ws://${HOST.includes(":") ? `[${HOST}]` : HOST}:${port}/ ` +
      `(node ${process.versions.node}, ws ${wsVersion})`,
  );
});
