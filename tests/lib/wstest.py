"""Helpers for wskit's integration tests: start the real binaries on loopback, speak raw
RFC 6455 over a plain socket, and print TAP lines.  Imported by tests/integration/*.py."""
import base64
import contextlib
import hashlib
import os
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BIN = os.environ.get("WSK_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "bin"))
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# WSK_THREADS=N (make check-threads): every wsserve a Server starts runs with --threads N, so
# the whole suite also runs against N loops on N threads.
THREADS = os.environ.get("WSK_THREADS", "")


def threads_args(prog, args):
    """["--threads", N] for a wsserve, under WSK_THREADS; else []."""
    if prog != "wsserve" or not THREADS:
        return []
    return ["--threads", THREADS]

_n = 0
_failed = 0


def ok(cond, name, detail=""):
    """One TAP line."""
    global _n, _failed
    _n += 1
    if cond:
        print(f"ok {_n} - {name}", flush=True)
    else:
        _failed += 1
        print(f"not ok {_n} - {name}", flush=True)
        for line in str(detail).splitlines()[:30]:
            print("#   " + line, flush=True)
    return cond


def skip(name, why):
    global _n
    _n += 1
    print(f"ok {_n} - {name} # SKIP {why}", flush=True)


def done():
    sys.exit(1 if _failed else 0)


def failures():
    """Checks failed so far."""
    return _failed


def run_cmd(prog, *args, stdin=b"", timeout=10, env=None):
    """Runs BIN/prog with `stdin` as its input, or with an input that stays open (stdin None);
    returns (status, stdout, stderr, seconds); status is "timeout" when it had to be killed.
    Under valgrind or ASan the timeout is 4 times longer: valgrind's start-up alone takes
    seconds on a loaded machine."""
    if sanitized():
        timeout *= 4
    t0 = time.monotonic()
    p = subprocess.Popen([os.path.join(BIN, prog), *args], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    out, err = [], []
    readers = [threading.Thread(target=lambda f, acc: acc.append(f.read()), args=(f, acc),
                                daemon=True) for f, acc in ((p.stdout, out), (p.stderr, err))]
    for t in readers:
        t.start()
    try:
        if stdin is not None:
            p.stdin.write(stdin)
            p.stdin.close()
        status = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        status = "timeout"
    except BrokenPipeError:
        status = p.wait(timeout=timeout)
    finally:
        if not p.stdin.closed:
            p.stdin.close()
    for t in readers:
        t.join(5)
    return status, b"".join(out).decode(errors="replace"), \
        b"".join(err).decode(errors="replace"), time.monotonic() - t0


def describe(r):
    """A run_cmd result, for a failed check's detail."""
    return "status %r after %.2fs\nstdout: %r\nstderr: %r" % (r[0], r[3], r[1], r[2])


def free_port(host="127.0.0.1"):
    """A port nothing listens on now (the kernel's pick), for a server started next."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def rss(pid):
    """The resident set of process pid, in bytes (VmRSS in /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Server:
    """A command (wsserve by default) on a free loopback port, stopped on exit.  Its log is
    read while it runs, into .lines (a full pipe would stall it); nofile caps its descriptors."""

    def __init__(self, *args, prog="wsserve", host="127.0.0.1", port=None, wait=True,
                 nofile=None):
        self.port = port or free_port(host)
        self.host = host
        self.lines = []
        h = f"[{host}]" if ":" in host else host

        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            # --listen first: args may end with "-- PROGRAM ARGS..." (wsserve --exec).
            [os.path.join(BIN, prog), "--listen", f"{h}:{self.port}", *threads_args(prog, args),
             *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            text=True, preexec_fn=limit if nofile else None)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        if wait:
            self.wait_ready()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self):
        """The log so far (all of it once stopped)."""
        return "".join(line + "\n" for line in self.lines)

    def wait_ready(self, timeout=10.0):
        def listening():
            if self.proc.poll() is not None:
                return "exited"
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return "up"
            except OSError:
                return None
        state = wait_for(listening, timeout)
        if state != "up":
            self.stop()
            raise RuntimeError(f"{self.proc.args[0]} {state or 'did not start'}: " +
                               " | ".join(self.lines[-5:]))

    def url(self, path="/"):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{h}:{self.port}{path}"

    def count(self, what, peer=None):
        """Log lines containing what (and peer, an "address:port:" tag, when given)."""
        return sum(what in line and (peer is None or peer in line) for line in list(self.lines))

    def wait_log(self, what, peer=None, n=1, timeout=5.0):
        """Waits until n log lines contain what; the number there are then."""
        wait_for(lambda: self.count(what, peer) >= n, timeout)
        return self.count(what, peer)

    def rss(self):
        return rss(self.proc.pid)

    def cpu(self):
        """User + system CPU seconds the server has used."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signals the server and waits for it (killing it after timeout); its exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.reader.join(5)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


class Engine:
    """An engine for wsserve --bridge (redis-server or nats-server) on a free loopback port,
    without persistence; stop() kills it (SIGKILL by default: an engine that dies), start()
    brings it back on the same port.  .url is what --bridge takes."""

    def __init__(self, kind="redis", port=None, extra=()):
        self.kind = kind
        self.extra = list(extra)  # more arguments for the server (--requirepass PW)
        self.port = port or free_port()
        self.monitor = free_port() if kind == "nats" else None
        self.url = f"{kind}://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self):
        args = {"redis": ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"],
                "nats": ["nats-server", "-a", "127.0.0.1", "-p", str(self.port),
                         "-m", str(self.monitor)]}[self.kind] + self.extra
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return True
            except OSError:
                return self.proc.poll() is not None and "exited"
        if wait_for(up, 10) is not True:
            raise RuntimeError(f"{self.kind} did not start on port {self.port}")

    def command(self, *args):
        """A Redis command's reply: an int, bytes, a list, or an Exception for an error."""
        def encode(words):
            return b"*%d\r\n" % len(words) + b"".join(
                b"$%d\r\n%s\r\n" % (len(a), a) for a in (x if isinstance(x, bytes) else
                                                          str(x).encode() for x in words))
        out = encode(args)
        if "--requirepass" in self.extra:  # AUTH first, its +OK read below
            out = encode(["AUTH", self.extra[self.extra.index("--requirepass") + 1]]) + out
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(out)
            f = s.makefile("rb")
            if "--requirepass" in self.extra:
                f.readline()

            def reply():
                line = f.readline().rstrip(b"\r\n")
                kind, rest = line[:1], line[1:]
                if kind == b"+":
                    return rest
                if kind == b"-":
                    return Exception(rest.decode())
                if kind == b":":
                    return int(rest)
                if kind == b"$":
                    n = int(rest)
                    return None if n < 0 else f.read(n + 2)[:-2]
                return [reply() for _ in range(int(rest))]
            return reply()

    def channels(self):
        """The channels (Redis: PUBSUB CHANNELS) or subjects (NATS: the monitoring port's
        /subsz, less the server's own) someone is subscribed to, each once, sorted."""
        if self.kind == "redis":
            return sorted(c.decode() for c in self.command("PUBSUB", "CHANNELS"))
        return sorted({x["subject"] for x in self._nats_subs()})

    def subscribers(self, channel):
        """Subscriptions to one channel (Redis: PUBSUB NUMSUB; NATS: /subsz)."""
        if self.kind == "redis":
            return self.command("PUBSUB", "NUMSUB", channel)[1]
        return sum(x["subject"] == channel for x in self._nats_subs())

    def _nats_subs(self):
        """The clients' subscriptions, from the NATS monitoring port."""
        import json
        import urllib.request
        with urllib.request.urlopen(
                f"http://127.0.0.1:{self.monitor}/subsz?subs=1&limit=100000", timeout=5) as r:
            subs = json.load(r).get("subscriptions_list", [])
        return [x for x in subs if x.get("account") != "$SYS"]

    def stop(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.stop()


class PyServer:
    """A `websockets` server (Python's, in a thread of this process) on 127.0.0.1 and a port
    picked by the kernel: handler(ws, path) serves each connection; extra keyword arguments go
    to websockets.serve.  .error is set when it could not listen."""

    def __init__(self, handler, host="127.0.0.1", **kw):
        import asyncio
        import websockets
        self.host, self.port, self.error = host, 0, None
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.server = self.loop.run_until_complete(websockets.serve(handler, host, 0, **kw))
                self.port = self.server.sockets[0].getsockname()[1]
            except OSError as e:
                self.error = e
                ready.set()
                return
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def url(self, path="/"):
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{h}:{self.port}{path}"

    def stop(self):
        import asyncio
        if self.error is None:
            async def shut():
                self.server.close()
                await self.server.wait_closed()
            asyncio.run_coroutine_threadsafe(shut(), self.loop).result(5)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


_sanitized = None


def struct_fields(name):
    """The field names of `typedef struct NAME {...} NAME;` in lib/wskit.h, for the tests that
    check a listing of a struct's counters is whole (a field added and forgotten fails them)."""
    import re
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "lib", "wskit.h")) as f:
        m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), f.read(), re.S)
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S) if m else ""
    return [n for decl in body.split(";") for n in re.findall(r"(\w+)\s*(?:,|$)", decl.strip())
            if n not in ("uint64_t", "unsigned")]


def sanitized():
    """True when the servers run under valgrind or are an ASan build: memory and timing checks
    do not apply then."""
    global _sanitized
    if _sanitized is None:
        _sanitized = bool(os.environ.get("WSK_VALGRIND"))
        if not _sanitized:
            try:
                with open(os.path.join(BIN, "wsserve"), "rb") as f:
                    _sanitized = b"__asan_init" in f.read()
            except OSError:
                pass
    return _sanitized


async def nothing(ws, timeout=0.3):
    """True when nothing arrives on the websockets connection ws within timeout (for the
    messages that must not come: a wait for a condition cannot show an absence)."""
    import asyncio
    try:
        await asyncio.wait_for(ws.recv(), timeout)
        return False
    except asyncio.TimeoutError:
        return True


def ws_connect(url, timeout=5.0, **kw):
    """A Python websockets client as the JSON-protocol tests use it: no pings, no size limit,
    no compression, open and close bounded by timeout; kw: more of websockets.connect's
    (max_queue=None: messages left unread never hold up its close)."""
    import websockets
    return websockets.connect(url, open_timeout=timeout, close_timeout=timeout, ping_interval=None,
                              max_size=None, compression=None, **kw)


async def recv_json(ws, timeout=5.0):
    """The next message of a websockets client, parsed as JSON, within timeout."""
    import asyncio
    import json
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


def wait_for(cond, timeout=5.0, interval=0.01):
    """Polls cond() until it returns something true, for at most timeout seconds (four times
    as long under valgrind or ASan); returns cond()'s last value.  Tests wait for the condition
    they assert, never for a fixed time."""
    end = time.monotonic() + timeout * (4 if sanitized() else 1)
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


async def wait_for_async(cond, timeout=5.0, interval=0.01):
    """wait_for inside an asyncio loop: polls with asyncio.sleep, so that the loop's other
    tasks (tests run side by side in one loop) go on meanwhile."""
    import asyncio
    end = time.monotonic() + timeout * (4 if sanitized() else 1)
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        await asyncio.sleep(interval)


class Certs:
    """Test certificates made by scripts/mkcerts in a new temporary folder, `dir`: path(name)
    is where one is ("ca.crt", "server.crt", "client-pass.key", ...).  When mkcerts failed,
    `ok` is false and `why` holds the end of what it said (skip the TLS cases then).  remove()
    deletes the folder."""

    def __init__(self, prefix="wskit-tls-"):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        try:
            r = subprocess.run([os.path.join(ROOT, "scripts", "mkcerts"), self.dir],
                               capture_output=True, text=True, timeout=60)
        except BaseException:
            self.remove()
            raise
        self.ok = r.returncode == 0
        self.why = r.stderr.strip()[-200:]

    def path(self, name):
        return os.path.join(self.dir, name)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def tls_client_ctx(certs, cert=None, key=None, password=None):
    """A client context that trusts the CA of the certificates in folder `certs` (a
    Certs.dir), offers ALPN http/1.1, and presents cert and key (files there) when given."""
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    ctx.set_alpn_protocols(["http/1.1"])
    if cert:
        ctx.load_cert_chain(os.path.join(certs, cert), os.path.join(certs, key), password=password)
    return ctx


@contextlib.contextmanager
def serve(*args):
    """wsserve for a block of cases; its log is shown when one of them failed."""
    failed = _failed
    srv = Server(*args)
    try:
        yield srv
    finally:
        srv.stop()
        if _failed > failed:
            for line in srv.stderr.splitlines()[-15:]:
                print(f"# wsserve {' '.join(args)}: {line}", flush=True)


def mask(payload, key):
    """payload XOR the 4-byte key repeated (RFC 6455 5.3)."""
    k = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(k, "little")).to_bytes(
        len(payload), "little")


_xor = mask  # frame() has an argument named mask


def accept_key(key):
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def request(key="dGhlIHNhbXBsZSBub25jZQ==", path="/", host="localhost", extra=""):
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra}\r\n").encode()


def frame(op, payload=b"", fin=True, mask=True, rsv=0, length=None):
    """Encodes one frame; length overrides the declared payload length."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | op
    m = 0x80 if mask else 0
    if n < 126:
        hdr = struct.pack("!BB", b0, m | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, m | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, m | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + _xor(payload, key)


def close_payload(code, reason=b""):
    return struct.pack("!H", code) + reason


class Raw:
    """A raw WebSocket client over a socket: exact bytes out, frames in."""

    def __init__(self, port, host="127.0.0.1", handshake=True, timeout=5.0, path="/",
                 rcvbuf=None):
        """rcvbuf, set before the connect, bounds what the kernel buffers for this client."""
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = b""
        if handshake:
            self.send(request(path=path))
            status, headers = self.read_head()
            assert status == 101, status
            assert headers.get("sec-websocket-accept") == accept_key("dGhlIHNhbXBsZSBub25jZQ=="), headers

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
        return status, headers

    def read_http(self):
        """A whole response: status, headers, body (Content-Length)."""
        status, headers = self.read_head()
        n = int(headers.get("content-length", "0"))
        while len(self.buf) < n:
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        return status, headers, body

    def recv_frame(self):
        """(fin, opcode, payload) of the next frame."""
        while len(self.buf) < 2:
            self._fill()
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 127
        off = 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill()
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill()
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        while len(self.buf) < off + n:
            self._fill()
        payload = self.buf[off:off + n]
        self.buf = self.buf[off + n:]
        return bool(b0 & 0x80), b0 & 15, payload

    def recv_close(self):
        """The close code (None for an empty close) of the next close frame, skipping others."""
        while True:
            fin, op, p = self.recv_frame()
            if op == 8:
                return struct.unpack("!H", p[:2])[0] if len(p) >= 2 else None

    def eof(self, timeout=3.0):
        """True when the server closes TCP within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
