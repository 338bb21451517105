// What the benchmark servers in this folder share: environment parsing, the
// loopback rule, the `ws` lookup and the listening URL. Loaded by the Node
// (.mjs) and the Bun (.js) servers alike, so it uses only what both have.

import { createRequire } from "node:module";
import path from "node:path";

// Returns fail(msg): prints "<prog>: <msg>" on stderr and exits with status 2.
function failer(prog) {
  return (msg) => {
    console.error(`${prog}: ${msg}`);
    process.exit(2);
  };
}

// $name as an integer >= min; dflt when unset or empty; fail() when malformed.
function envInt(fail, name, dflt, min) {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return dflt;
  const n = Number.parseInt(raw, 10);
  if (!Number.isInteger(n) || String(n) !== raw.trim() || n < min) fail(`bad ${name}: ${raw}`);
  return n;
}

// The settings every server here reads: HOST (127.0.0.1 or ::1; loopback
// only) and PORT (default 4001; 0 = any free port). Returns { fail, host, port }.
export function serverEnv(prog) {
  const fail = failer(prog);
  const host = process.env.HOST || "127.0.0.1";
  if (host !== "127.0.0.1" && host !== "::1") fail(`HOST must be 127.0.0.1 or ::1, not ${host}`);
  return { fail, host, port: envInt(fail, "PORT", 4001, 0) };
}

// The chat servers' settings: CLIENTS_COUNT (like the original, an unset,
// empty or non-numeric value means 32) and VERBOSE=1 (log on stderr).
// Returns { clients, log }.
export function chatEnv() {
  const clients = Number.parseInt(process.env.CLIENTS_COUNT || "", 10) || 32;
  const log = process.env.VERBOSE === "1" ? (...a) => console.error(...a) : () => {};
  return { clients, log };
}

// "ws://host:port/", the IPv6 host in brackets.
export function wsUrl(host, port) {
  return `ws://${host.includes(":") ? `[${host}]` : host}:${port}/`;
}

// Returns { WebSocketServer, version } of the first `ws` package found: from
// this folder, then NODE_PATH, then $WSK_BENCH_DIR/node_modules (default
// /tmp/wskit-bench), where scripts/bench-setup installs it.
export function loadWs(fail) {
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
