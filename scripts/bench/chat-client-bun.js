// Chat-room benchmark client, equivalent to the client of Bun's
// bench/websocket-server benchmark (see PROTOCOL.md in this folder): it is
// the yardstick other clients are compared to. Written for Bun; it also runs
// on Node.js (its own WebSocket, or the `ws` package when there is none).
//
//   CLIENTS_COUNT=32 PORT=4001 bun scripts/bench/chat-client-bun.js
//
// Environment:
//   SERVER          server URL (default ws://127.0.0.1:$PORT); each client
//                   connects to "$SERVER?name=<name>"
//   PORT            port used when SERVER is unset (default 4001)
//   CLIENTS_COUNT   connections (default 32); must equal the server's
//   RUNS            one-second reports before exiting (default 10)
//   LOG_MESSAGES=1  print every message received
//   CONNECT_TIMEOUT_MS  limit for connecting and getting "ready" (default 15000)
//
// stdout, as the original prints it:
//   Connecting 32 WebSocket clients...
//   [12.34ms] All 32 clients connected        (Bun writes this one to stderr;
//                                             Node: "All 32 clients connected: 12.34ms")
//   1234567 messages per second (32 clients x 1600 msg, min delay: 64ms)  once a second
//   10 runs
//   [ ...the per-second counts, as indented JSON... ]
// Exit status 0 after RUNS reports; 1 on a connection error, an unexpected
// close, or a connect timeout (the original would hang instead).

const env = process.env;
const DELAY_MS = 64; // how often a finished round is looked for
const REPEAT = 32; // times the 50-message cycle is repeated in a batch

function fail(msg) {
  console.error(`chat-client: ${msg}`);
  process.exit(1);
}

const PORT = env.PORT || "4001";
const SERVER = env.SERVER || `ws://127.0.0.1:${PORT}`;
const CLIENTS = Number.parseInt(env.CLIENTS_COUNT || "", 10) || 32;
const RUNS = Number.parseInt(env.RUNS || "", 10) || 10;
const LOG_MESSAGES = env.LOG_MESSAGES === "1";
const CONNECT_TIMEOUT_MS = Number.parseInt(env.CONNECT_TIMEOUT_MS || "", 10) || 15000;

async function webSocketClass() {
  if (globalThis.WebSocket) return globalThis.WebSocket;
  const { createRequire } = await import("node:module");
  const benchDir = env.WSK_BENCH_DIR || "/tmp/wskit-bench";
  for (const base of [import.meta.url, `${benchDir}/package.json`]) {
    try {
      return createRequire(base)("ws").WebSocket;
    } catch {}
  }
  fail("no WebSocket class: use Bun, a Node.js that has one, or run scripts/bench-setup for `ws`");
}

// The batch each client sends every round: a cycle of 50 strings, 32 times.
function batch() {
  const hello = (k) => (k === 0 ? "Hello World!" : `Hello World! ${k}`);
  const words = [
    "What is the meaning of life?",
    "where is the bathroom?",
    "zoo",
    "kangaroo",
    "erlang",
    "elixir",
    "bun",
    "mochi",
    "typescript",
    "javascript",
  ];
  const tail = [hello(7), hello(8), hello(9)];
  const cycle = [
    ...[0, 1, 2, 3, 4, 5, 6, 7, 8, 9].map(hello),
    ...words,
    ...tail,
    ...words,
    ...tail,
    words[0],
    ...tail,
    ...words,
  ];
  if (cycle.length !== 50) throw new Error("message cycle must have 50 entries");
  const out = [];
  for (let r = 0; r < REPEAT; r++) out.push(...cycle);
  return out;
}

// Client k is called BASE[k % 26] followed by floor(k / 26): Alice0 ... Zach0, Alice1 ...
const BASE = [
  "Alice", "Bob", "Charlie", "David", "Eve", "Frank", "Grace", "Heidi", "Ivan",
  "Judy", "Karl", "Linda", "Mike", "Nancy", "Oscar", "Peggy", "Quentin", "Ruth",
  "Steve", "Trudy", "Ursula", "Victor", "Wendy", "Xavier", "Yvonne", "Zach",
];
const nameOf = (k) => BASE[k % BASE.length] + Math.floor(k / BASE.length);

const WS = await webSocketClass();
const MESSAGES = batch();
const connectedLabel = `All ${CLIENTS} clients connected`;

console.log(`Connecting ${CLIENTS} WebSocket clients...`);
console.time(connectedLabel);

let running = false; // set once every client has had its first message
let finished = false; // set when the last report is out
const clients = [];
const firstMessage = [];
const connectTimer = setTimeout(
  () => fail(`not every client connected and got "ready" within ${CONNECT_TIMEOUT_MS} ms`),
  CONNECT_TIMEOUT_MS,
);

for (let k = 0; k < CLIENTS; k++) {
  const ws = new WS(`${SERVER}?name=${nameOf(k)}`);
  clients.push(ws);
  firstMessage.push(
    new Promise((resolve) => {
      ws.onmessage = (ev) => {
        if (ev.data !== "ready") console.error(`chat-client: expected "ready" first, got ${JSON.stringify(ev.data)}`);
        resolve();
      };
    }),
  );
  ws.onerror = (ev) => fail(`client ${k} (${nameOf(k)}): connection error ${ev?.message || ""}`.trim());
  ws.onclose = (ev) => {
    if (!finished) fail(`client ${k} (${nameOf(k)}) closed (code ${ev.code})${running ? "" : " before the run"}`);
  };
}

await Promise.all(firstMessage);
clearTimeout(connectTimer);
console.timeEnd(connectedLabel);
running = true;

// Every client receives every message of every client, its own included.
const perRound = CLIENTS * MESSAGES.length * CLIENTS;
let remaining = perRound;
let received = 0; // in the current one-second window
let roundDone = false;

const onMessage = LOG_MESSAGES
  ? (ev) => {
      console.log(ev.data);
      count();
    }
  : () => count();
function count() {
  received++;
  if (--remaining === 0) {
    roundDone = true;
    remaining = perRound;
  }
}
for (const ws of clients) ws.onmessage = onMessage;

function sendBatch() {
  for (const ws of clients) {
    for (const m of MESSAGES) ws.send(m);
  }
}

const runs = [];
const reporter = setInterval(() => {
  const n = received;
  received = 0;
  runs.push(n);
  console.log(n, `messages per second (${CLIENTS} clients x ${MESSAGES.length} msg, min delay: ${DELAY_MS}ms)`);
  if (runs.length >= RUNS) {
    finished = true;
    clearInterval(reporter);
    clearInterval(poller);
    console.log(`${RUNS} runs`);
    console.log(JSON.stringify(runs, null, 2));
    process.exit(0);
  }
}, 1000);

// The next round starts at the first poll after every message of the
// current one has arrived.
const poller = setInterval(() => {
  if (roundDone) {
    roundDone = false;
    sendBatch();
  }
}, DELAY_MS);

sendBatch();
