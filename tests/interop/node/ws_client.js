// Node `ws` as a client of wsserve, for tests/interop/test_node_client.py.
//
//   node ws_client.js SCENARIO URL [JSON-OPTIONS]
//
// Prints one JSON object per line: {"check": NAME, "ok": BOOL, "detail": TEXT} for each check,
// and {"ext": VALUE} with the negotiated Sec-WebSocket-Extensions ("" when none).  Exits 0 once
// every check has been printed, whatever their results; every wait is bounded.
//
// Options: {"pmd": false | true | {perMessageDeflate options of ws}, "size": N}
// Scenarios:
//   echo      text, binary at the length boundaries, 1 MiB, fragmented messages, ping, 200
//             pipelined messages, close 1000 and close 4000
//   toobig    one binary message of `size` bytes: the server must close with 1009
//   badutf8   a text frame that is not UTF-8: the server must close with 1007
//   goaway    connects, prints {"ready": true} and waits: the server's shutdown must close
//             with 1001
'use strict';
const crypto = require('crypto');
const WebSocket = require('ws');

const [scenario, url, optJson] = process.argv.slice(2);
const opts = optJson ? JSON.parse(optJson) : {};
const TIMEOUT = 10000;

function out(obj) {
    process.stdout.write(JSON.stringify(obj) + '\n');
}
function check(name, ok, detail) {
    out({ check: name, ok: !!ok, detail: detail === undefined ? '' : String(detail) });
}

// A connection whose messages, pongs and close wait in queues, each wait bounded.
function connect() {
    return new Promise((resolve, reject) => {
        const ws = new WebSocket(url, {
            perMessageDeflate: opts.pmd === undefined ? false : opts.pmd,
            maxPayload: 64 << 20,
            handshakeTimeout: TIMEOUT,
        });
        const c = { ws, msgs: [], waiters: [], closed: null, ext: '' };
        ws.on('upgrade', (res) => {
            c.ext = res.headers['sec-websocket-extensions'] || '';
        });
        ws.on('message', (data, isBinary) => {
            c.msgs.push({ data, isBinary });
            wake(c);
        });
        ws.on('pong', (data) => {
            c.msgs.push({ pong: data });
            wake(c);
        });
        ws.on('close', (code, reason) => {
            c.closed = { code, reason: reason.toString() };
            wake(c);
        });
        ws.on('error', (err) => {
            c.error = err;
            wake(c);
        });
        ws.once('open', () => resolve(c));
        ws.once('error', reject);
    });
}

function wake(c) {
    const w = c.waiters;
    c.waiters = [];
    for (const f of w) f();
}

// Resolves with the first item pick() returns (it may consume from c.msgs), or rejects after
// the timeout.
function waitFor(c, pick, what) {
    return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('timed out waiting for ' + what)), TIMEOUT);
        const attempt = () => {
            const v = pick();
            if (v !== undefined) {
                clearTimeout(timer);
                resolve(v);
            } else if (c.closed && what !== 'close') {
                clearTimeout(timer);
                reject(new Error(`closed (${c.closed.code}) while waiting for ${what}`));
            } else {
                c.waiters.push(attempt);
            }
        };
        attempt();
    });
}

function nextMessage(c) {
    return waitFor(c, () => {
        const i = c.msgs.findIndex((m) => !m.pong);
        return i < 0 ? undefined : c.msgs.splice(i, 1)[0];
    }, 'a message');
}

function nextPong(c) {
    return waitFor(c, () => {
        const i = c.msgs.findIndex((m) => m.pong);
        return i < 0 ? undefined : c.msgs.splice(i, 1)[0].pong;
    }, 'a pong');
}

function closed(c) {
    return waitFor(c, () => c.closed || undefined, 'close');
}

function same(a, b) {
    return Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;
}

async function echo() {
    const c = await connect();
    out({ ext: c.ext });
    const ws = c.ws;
    const round = async (name, data, binary) => {
        ws.send(data, { binary });
        const m = await nextMessage(c);
        check(name, m.isBinary === binary && same(m.data, data),
            `got ${m.isBinary ? 'binary' : 'text'} of ${m.data.length} bytes`);
    };
    const text = 'Grüße, 世界 🌍 '.repeat(1000);
    await round('text with multi-byte UTF-8 round trip', text, false);
    for (const n of [0, 1, 125, 126, 65535, 65536]) {
        await round(`binary ${n} bytes round trip`, crypto.randomBytes(n), true);
    }
    await round('binary 1 MiB (random) round trip', crypto.randomBytes(1 << 20), true);
    await round('binary 1 MiB (compressible) round trip', Buffer.alloc(1 << 20, 'wskit '), true);
    await round('text 1 MiB round trip', 'ab€'.repeat(1 << 18).slice(0, 1 << 20), false);

    // Fragments: ws sends each call as one frame, the last with FIN.
    ws.send('frag', { fin: false });
    ws.send('mented', { fin: false });
    ws.send(' text', { fin: true });
    let m = await nextMessage(c);
    check('fragmented text message reassembled', !m.isBinary && m.data.toString() === 'fragmented text',
        m.data.toString().slice(0, 40));
    const parts = [crypto.randomBytes(70000), crypto.randomBytes(10), crypto.randomBytes(200)];
    parts.forEach((p, i) => ws.send(p, { binary: true, fin: i === parts.length - 1 }));
    m = await nextMessage(c);
    check('fragmented binary message reassembled', m.isBinary && same(m.data, Buffer.concat(parts)),
        `${m.data.length} bytes`);

    ws.ping(Buffer.from('ping-payload'));
    const pong = await nextPong(c);
    check('ping answered with its payload', pong.toString() === 'ping-payload', pong.toString());

    for (let i = 0; i < 200; i++) ws.send(`m${i}`);
    const got = [];
    for (let i = 0; i < 200; i++) got.push((await nextMessage(c)).data.toString());
    check('200 pipelined messages in order', got.every((s, i) => s === `m${i}`), got.slice(0, 3).join(','));

    ws.close(1000, 'done');
    let cl = await closed(c);
    check('close 1000 completes', cl.code === 1000, cl.code);

    const c2 = await connect();
    c2.ws.send('before close');
    m = await nextMessage(c2);
    c2.ws.close(4000, 'custom reason');
    cl = await closed(c2);
    check('close code 4000 echoed by the server', cl.code === 4000, cl.code);
}

async function expectClose(name, code, act) {
    const c = await connect();
    out({ ext: c.ext });
    act(c.ws);
    const cl = await closed(c);
    check(name, cl.code === code, `close code ${cl.code} ${cl.reason}`);
}

async function main() {
    switch (scenario) {
    case 'echo':
        await echo();
        break;
    case 'toobig':
        await expectClose(`message of ${opts.size} bytes over --max-payload closed with 1009`, 1009,
            (ws) => ws.send(Buffer.alloc(opts.size, 'x'), { binary: true }));
        break;
    case 'badutf8':
        await expectClose('text that is not UTF-8 closed with 1007', 1007,
            (ws) => ws.send(Buffer.from([0x68, 0x69, 0xc3, 0x28, 0xff]), { binary: false }));
        break;
    case 'goaway': {
        const c = await connect();
        out({ ready: true });
        const cl = await waitFor(c, () => c.closed || undefined, 'close');
        check('server shutdown closes with 1001', cl.code === 1001, `${cl.code} ${cl.reason}`);
        break;
    }
    default:
        throw new Error('unknown scenario ' + scenario);
    }
}

main().then(() => process.exit(0), (err) => {
    check(`${scenario} scenario completes`, false, err && err.message);
    process.exit(0);
});
