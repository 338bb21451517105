// Chat-room benchmark server for Bun: Bun.serve with Bun's native pub/sub.
// Wire protocol: PROTOCOL.md in this folder (compatible with Bun's
// bench/websocket-server chat benchmark).
//
//   PORT=4001 CLIENTS_COUNT=32 bun scripts/bench/chat-bun.js
//
// Environment:
//   PORT           TCP port (default 4001; 0 picks a free port, printed on start)
//   CLIENTS_COUNT  connections to wait for before sending "ready" (default 32)
//   HOST           127.0.0.1 (default) or ::1; loopback only
//   VERBOSE=1      log joins, "ready" and closes on stderr
//
// Prints exactly one line on stdout once listening:
//   chat-bun listening on ws://127.0.0.1:4001/ (bun 1.x.y, waiting for 32 clients)

import { chatEnv, serverEnv, wsUrl } from "./common.mjs";

const ROOM = "room";
const READY_DELAY_MS = 100;

const { host: HOST, port: PORT } = serverEnv("chat-bun");
const { clients: CLIENTS, log } = chatEnv();

let remaining = CLIENTS; // goes up again when a member leaves
let dropped = 0;

const server = Bun.serve({
  hostname: HOST,
  port: PORT,
  fetch(req, srv) {
    const name = new URL(req.url).searchParams.get("name") || `Client #${CLIENTS - remaining}`;
    if (srv.upgrade(req, { data: { name } })) return undefined;
    return new Response("Error"); // what the original answers to a plain HTTP request
  },
  websocket: {
    perMessageDeflate: false,
    publishToSelf: true, // the sender gets its own messages too
    open(ws) {
      ws.subscribe(ROOM);
      remaining--;
      log(`${ws.data.name} connected (${remaining} remain)`);
      if (remaining === 0) {
        log("All clients connected");
        setTimeout(() => {
          log('sending "ready"');
          server.publish(ROOM, "ready");
        }, READY_DELAY_MS);
      }
    },
    message(ws, msg) {
      // A binary message is read as UTF-8; the room always gets a text frame.
      const out = `${ws.data.name}: ${msg}`;
      // 0 means dropped (backpressure limit); -1 means queued, which is fine.
      if (ws.publishText(ROOM, out) === 0 && dropped++ % 10000 === 0) {
        console.error(`chat-bun: publish dropped a message (${dropped} so far)`);
      }
    },
    close(ws) {
      remaining++;
      log(`${ws.data.name} left (${remaining} remain)`);
    },
  },
});

console.log(
  `chat-bun listening on ${wsUrl(HOST, server.port)} ` +
    `(bun ${Bun.version}, waiting for ${CLIENTS} clients)`,
);
