// WebSocket echo server for Bun (Bun.serve, permessage-deflate off unless PMD).
// Every message is sent back on the same connection with its type kept:
// text as text, binary as binary. Any path is accepted.
//
//   PORT=4001 bun scripts/bench/echo-bun.js
//   PORT=4001 PMD=shared bun scripts/bench/echo-bun.js
//
// Environment: PORT (default 4001; 0 = any free port), HOST (127.0.0.1 or
// ::1), TLS_CERT and TLS_KEY (PEM files: serve wss:// with Bun.serve's tls),
// PMD (a Bun compressor: shared, dedicated, 3KB .. 256KB; then
// perMessageDeflate is {compress: PMD, decompress: PMD} and every reply is
// ws.send(msg, true)). Prints exactly one line on stdout once listening.
//
// Bun queues what a slow reader has not taken yet up to its backpressure
// limit (16 MiB by default) and drops past it; drops are reported on stderr.

import { serverEnv, wsUrl } from "./common.mjs";

const { host: HOST, port: PORT, fail } = serverEnv("echo-bun");
const PMD = process.env.PMD || "";
if (PMD && !/^(shared|dedicated|\d+KB)$/.test(PMD)) fail(`bad PMD: ${PMD}`);

let dropped = 0;

const server = Bun.serve({
  hostname: HOST,
  port: PORT,
  tls: process.env.TLS_CERT
    ? { cert: Bun.file(process.env.TLS_CERT), key: Bun.file(process.env.TLS_KEY) }
    : undefined,
  fetch(req, srv) {
    if (srv.upgrade(req)) return undefined;
    return new Response("WebSocket echo server: send an Upgrade request\n", { status: 426 });
  },
  websocket: {
    perMessageDeflate: PMD ? { compress: PMD, decompress: PMD } : false,
    // A text message arrives as a string and a string is sent as text; a
    // binary one arrives as a Buffer and a Buffer is sent as binary.
    message(ws, msg) {
      if (ws.send(msg, PMD !== "") === 0 && dropped++ % 10000 === 0) {
        console.error(`echo-bun: send dropped a message (${dropped} so far)`);
      }
    },
  },
});

console.log(
  `echo-bun listening on ${wsUrl(HOST, server.port)} (bun ${Bun.version}${PMD ? `, ${PMD}` : ""})`,
);
