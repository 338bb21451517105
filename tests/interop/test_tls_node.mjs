#!/usr/bin/env node
// Interoperability over TLS with Node's `ws` (on Node's OpenSSL): as the TLS client of wsserve
// (echo of text, 1 MiB and 500 small messages, ping, close; TLS 1.2 with ALPN http/1.1; a client
// certificate when the server requires one), and as the TLS server that wscat connects to
// (echo; SNI from the URL; an expired certificate rejected with exit status 6; a client
// certificate presented on request).  Test names start with the interop matrix tag
// "[peer | direction | compression | transport]".
//
// ws comes from scripts/install-node-deps (a scratch folder outside the repository); without
// node, npm or the registry every case is skipped.  Certificates come from scripts/mkcerts.
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..', '..');
const BIN = process.env.WSK_BIN || path.join(ROOT, 'bin');
const WAIT = 10000; // every wait is bounded by this (ms)

let n = 0;
let failed = 0;
function ok(cond, name, detail) {
    n++;
    if (!cond) failed++;
    console.log(`${cond ? 'ok' : 'not ok'} ${n} - ${name}${!cond && detail ? ': ' + detail : ''}`);
    return cond;
}
function skip(name, why) {
    n++;
    console.log(`ok ${n} - ${name} # SKIP ${why}`);
}
const tag = (direction) => `[Node ws | ${direction} | off | wss://]`;

// Runs a command without blocking the loop (the ws server in this process must keep serving).
function run(cmd, args, input = '') {
    return new Promise((resolve) => {
        const p = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
        let out = '';
        let err = '';
        const timer = setTimeout(() => p.kill('SIGKILL'), 20000);
        p.stdout.on('data', (d) => (out += d));
        p.stderr.on('data', (d) => (err += d));
        p.on('error', (e) => {
            clearTimeout(timer);
            resolve({ status: null, out, err: String(e) });
        });
        p.on('close', (status) => {
            clearTimeout(timer);
            resolve({ status, out, err });
        });
        p.stdin.end(input);
    });
}

// wsserve on a free port, read from its "listening on" line.
function wsserve(args) {
    return new Promise((resolve, reject) => {
        const p = spawn(path.join(BIN, 'wsserve'), ['--echo', '--listen', '127.0.0.1:0', ...args], {
            stdio: ['ignore', 'ignore', 'pipe'],
        });
        let err = '';
        const timer = setTimeout(() => reject(new Error('wsserve did not start: ' + err)), WAIT);
        p.stderr.on('data', (d) => {
            err += d;
            const m = /listening on wss:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
            if (m) {
                clearTimeout(timer);
                resolve({ proc: p, port: Number(m[1]) });
            }
        });
        p.on('exit', () => reject(new Error('wsserve exited: ' + err)));
    });
}

function stop(srv) {
    return new Promise((resolve) => {
        if (srv.proc.exitCode !== null) return resolve();
        const t = setTimeout(() => srv.proc.kill('SIGKILL'), 5000);
        srv.proc.once('exit', () => {
            clearTimeout(t);
            resolve();
        });
        srv.proc.kill('SIGTERM');
    });
}

// A ws client whose messages wait in a queue; next() resolves with the next one (bounded).
function client(WebSocket, url, opts) {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, { handshakeTimeout: WAIT, maxPayload: 64 << 20, ...opts });
        const c = { ws, msgs: [], waiters: [] };
        ws.on('message', (data, isBinary) => {
            const m = { data, isBinary };
            if (c.waiters.length) c.waiters.shift()(m);
            else c.msgs.push(m);
        });
        c.next = () =>
            c.msgs.length
                ? Promise.resolve(c.msgs.shift())
                : new Promise((res, rej) => {
                      const t = setTimeout(() => rej(new Error('no message in time')), WAIT);
                      c.waiters.push((m) => {
                          clearTimeout(t);
                          res(m);
                      });
                  });
        ws.once('open', () => resolve(c));
        ws.once('error', reject);
    });
}

async function nodeClient(WebSocket, c) {
    const d = 'ws client → wsserve';
    const srv = await wsserve(['--tls-cert', c('server.crt'), '--tls-key', c('server.key')]);
    const ca = fs.readFileSync(c('ca.crt'));
    try {
        const cl = await client(WebSocket, `wss://localhost:${srv.port}/`, {
            ca,
            ALPNProtocols: ['http/1.1'],
        });
        const sock = cl.ws._socket;
        ok(sock.getProtocol() === 'TLSv1.2', `${tag(d)} TLS 1.2`, sock.getProtocol());
        ok(sock.alpnProtocol === 'http/1.1', `${tag(d)} ALPN http/1.1`, sock.alpnProtocol);
        const suite = sock.getCipher().name;
        ok(/^ECDHE-.*(GCM|CHACHA20)/.test(suite), `${tag(d)} ECDHE + AEAD suite`, suite);
        cl.ws.send('hello over TLS');
        let m = await cl.next();
        ok(!m.isBinary && m.data.toString() === 'hello over TLS', `${tag(d)} text echo`);
        const big = Buffer.alloc(1 << 20);
        for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 255;
        cl.ws.send(big);
        m = await cl.next();
        ok(m.isBinary && Buffer.compare(m.data, big) === 0, `${tag(d)} 1 MiB binary echo`);
        for (let i = 0; i < 500; i++) cl.ws.send(`m${i}`);
        let inOrder = true;
        for (let i = 0; i < 500; i++) {
            inOrder = inOrder && (await cl.next()).data.toString() === `m${i}`;
        }
        ok(inOrder, `${tag(d)} 500 small messages in order`);
        const pong = new Promise((res) => cl.ws.once('pong', (p) => res(p.toString())));
        cl.ws.ping('tls');
        ok((await Promise.race([pong, new Promise((r) => setTimeout(r, WAIT, null))])) === 'tls',
            `${tag(d)} ping answered`);
        const closed = new Promise((res) => cl.ws.once('close', (code) => res(code)));
        cl.ws.close(1000);
        ok((await closed) === 1000, `${tag(d)} close 1000`);
    } catch (e) {
        ok(false, `${tag(d)} echo`, String(e));
    } finally {
        await stop(srv);
    }

    const auth = await wsserve(['--tls-cert', c('server.crt'), '--tls-key', c('server.key'),
        '--tls-client-ca', c('client-ca.crt')]);
    try {
        const cl = await client(WebSocket, `wss://localhost:${auth.port}/`, {
            ca,
            cert: fs.readFileSync(c('client.crt')),
            key: fs.readFileSync(c('client.key')),
        });
        cl.ws.send('with cert');
        const m = await cl.next();
        ok(m.data.toString() === 'with cert', `${tag(d)} client certificate accepted`);
        cl.ws.close();
    } catch (e) {
        ok(false, `${tag(d)} client certificate accepted`, String(e));
    }
    try {
        const cl = await client(WebSocket, `wss://localhost:${auth.port}/`, { ca });
        cl.ws.send('no cert');
        await cl.next();
        ok(false, `${tag(d)} no client certificate: refused`);
    } catch (e) {
        ok(true, `${tag(d)} no client certificate: refused (${e.code || e.message})`);
    } finally {
        await stop(auth);
    }
}

// An https server with a ws echo on it; seen: what each connection's TLS session showed.
function nodeServer(WebSocketServer, tlsOpts) {
    return new Promise((resolve) => {
        const server = https.createServer(tlsOpts);
        const wss = new WebSocketServer({ server });
        const seen = [];
        wss.on('connection', (ws, req) => {
            const peer = req.socket.getPeerCertificate ? req.socket.getPeerCertificate() : null;
            seen.push({
                sni: req.socket.servername,
                version: req.socket.getProtocol(),
                cn: peer && peer.subject ? peer.subject.CN : undefined,
            });
            ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
        });
        server.listen(0, '127.0.0.1', () =>
            resolve({ server, wss, seen, port: server.address().port }));
    });
}

function closeServer(s) {
    return new Promise((resolve) => {
        for (const ws of s.wss.clients) ws.terminate();
        s.wss.close();
        s.server.close(() => resolve());
        s.server.closeAllConnections?.();
    });
}

async function wscatClient(WebSocketServer, c) {
    const d = 'wscat → ws server';
    const wscat = path.join(BIN, 'wscat');
    if (!fs.existsSync(wscat)) {
        skip(tag(d), `${wscat} is not built`);
        return;
    }
    const ca = ['--ca', c('ca.crt')];
    const hello = ['-x', 'hello', '-x', 'world', '-w', '1'];
    const pem = (name) => ({
        cert: fs.readFileSync(c(name + '.crt')),
        key: fs.readFileSync(c(name + '.key')),
    });
    const why = (r) => `status ${r.status}, ${r.err.trim()}`;

    let s = await nodeServer(WebSocketServer, pem('server'));
    try {
        const r = await run(wscat, ['-c', `wss://localhost:${s.port}/`, ...ca, ...hello]);
        ok(r.status === 0 && r.out === 'hello\nworld\n', `${tag(d)} echo`, why(r));
        const seen = s.seen.at(-1) || {};
        ok(seen.sni === 'localhost', `${tag(d)} SNI from the URL`, JSON.stringify(seen));
        ok(seen.version === 'TLSv1.2', `${tag(d)} TLS 1.2`, JSON.stringify(seen));
        const rows = Array.from({ length: 300 }, (_, i) => `line ${i} ` + 'y'.repeat(i * 10));
        const lines = rows.join('\n') + '\n';
        const p = await run(wscat, ['-c', `wss://localhost:${s.port}/`, ...ca], lines);
        ok(p.status === 0 && p.out === lines, `${tag(d)} 300 piped lines echoed`,
            `status ${p.status}, ${p.out.length} bytes`);
    } finally {
        await closeServer(s);
    }

    s = await nodeServer(WebSocketServer, pem('expired'));
    try {
        const r = await run(wscat, ['-c', `wss://localhost:${s.port}/`, ...ca, ...hello]);
        ok(r.status === 6 && r.err.includes('expired') && s.seen.length === 0,
            `${tag(d)} expired certificate rejected: exit 6, 'expired'`, why(r));
    } finally {
        await closeServer(s);
    }

    s = await nodeServer(WebSocketServer, {
        ...pem('server'),
        requestCert: true,
        rejectUnauthorized: true,
        ca: fs.readFileSync(c('client-ca.crt')),
    });
    try {
        let r = await run(wscat, ['-c', `wss://localhost:${s.port}/`, ...ca, ...hello]);
        ok(r.status === 6, `${tag(d)} client certificate required, none given: exit 6`, why(r));
        r = await run(wscat, ['-c', `wss://localhost:${s.port}/`, ...ca, '--cert', c('client.crt'),
            '--key', c('client-pass.key'), '--passphrase', 'wskit', ...hello]);
        const seen = s.seen.at(-1) || {};
        ok(r.status === 0 && r.out === 'hello\nworld\n' && seen.cn === 'wskit test client',
            `${tag(d)} client certificate presented and accepted`,
            `${why(r)}, ${JSON.stringify(seen)}`);
    } finally {
        await closeServer(s);
    }
}

async function main() {
    const watchdog = setTimeout(() => {
        ok(false, 'finished within 150 s');
        process.exit(1);
    }, 150000);
    watchdog.unref();
    const inst = spawnSync(path.join(ROOT, 'scripts', 'install-node-deps'), {
        encoding: 'utf8',
        timeout: 300000,
    });
    if (inst.status !== 0) {
        const last = (inst.stderr || String(inst.error)).trim().split('\n').pop();
        skip(tag('both directions'), 'ws is not installable: ' + last);
        return;
    }
    const modules = inst.stdout.trim().split('\n').pop();
    const require = createRequire(path.join(modules, 'index.js'));
    const WebSocket = require('ws');
    const WebSocketServer = WebSocket.WebSocketServer || WebSocket.Server;

    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wskit-tls-'));
    try {
        const mk = spawnSync(path.join(ROOT, 'scripts', 'mkcerts'), [dir], {
            encoding: 'utf8',
            timeout: 60000,
        });
        if (mk.status !== 0) {
            skip(tag('both directions'), 'scripts/mkcerts failed: ' + mk.stderr.trim());
            return;
        }
        const c = (name) => path.join(dir, name);
        await nodeClient(WebSocket, c);
        await wscatClient(WebSocketServer, c);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

main()
    .catch((e) => ok(false, 'no exception', e && e.stack))
    .finally(() => process.exit(failed ? 1 : 0));
