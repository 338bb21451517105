// WebSocket echo server for Node.js with the npm `ws` package
// (permessage-deflate off). Every message is sent back on the same
// connection with its type kept: text as text, binary as binary. Any path is
// accepted.
//
//   PORT=4001 node scripts/bench/echo-node.mjs
//
// `ws` is looked up from this folder, then NODE_PATH, then
// $WSK_BENCH_DIR/node_modules (default /tmp/wskit-bench), where
// scripts/bench-setup installs it.
//
// Environment: PORT (default 4001; 0 = any free port), HOST (127.0.0.1 or
// ::1). Prints exactly one line on stdout once listening.

import { loadWs, serverEnv, wsUrl } from "./common.mjs";

const { fail, host: HOST, port: PORT } = serverEnv("echo-node");
const { WebSocketServer, version: wsVersion } = loadWs(fail);

const wss = new WebSocketServer({ host: HOST, port: PORT, perMessageDeflate: false, clientTracking: false });

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on("error", () => {}); // a protocol error closes the connection; nothing to add
});

wss.on("error", (err) => fail(err.message));

wss.on("listening", () => {
  const { port } = wss.address();
  console.log(
    `echo-node listening on ${wsUrl(HOST, port)} ` +
      `(node ${process.versions.node}, ws ${wsVersion})`,
  );
});
