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

const ROOM = "room";
const READY_DELAY_MS = 100;

function fail(msg) {
  console.error(`chat-bun: ${msg}`);
  process.exit(2);
}

function envInt(name, dflt, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || String(n) !== raw.trim() || n < min) fail(`bad ${name}: ${raw}`);
  return n;
}

function loopbackHost() {
  const h = process.env.HOST || "127.0.0.1";
  if (h !== "127.0.0.1" && h !== "::1") fail(`HOST must be 127.0.0.1 or ::1, not ${h}`);
  return h;
}

const HOST = loopbackHost();
const PORT = envInt("PORT", 4001, 0);
// Like the original: an unset, empty or non-numeric CLIENTS_COUNT means 32.
const CLIENTS = Number.parseInt(process.env.CLIENTS_COUNT || "", 10) || 32;
const VERBOSE = process.env.VERBOSE === "1";
const log = VERBOSE ? (...a) => console.error(...a) : () => {};

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
  `chat-bun listening on ws://${HOST.includes(":") ? `[${HOST}]` : HOST}:${server.port}/ ` +
    `(bun ${Bun.version}, waiting for ${CLIENTS} clients)`,
);
