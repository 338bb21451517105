#!/usr/bin/python3
"""The README's shell blocks, run as a reader pastes them: every ```sh block in order, one line
at a time, in one bash (so that what a line starts in the background serves the lines after
it), each line bounded in time.  A foreground line must exit 0; a background line (ending in
&) must come up: listen, or have heard from its server.  A few lines also have their output
checked.  At the end everything the blocks started is stopped.

So that the test can run beside others on a shared machine, and offline:
  - every port the README names (8080, 9000, ...) becomes a free loopback port;
  - wss://example.test/ becomes a TLS echo server started here (with --ca for its throwaway CA);
  - /tmp/certs becomes a scratch folder; wsbench's -d N becomes -d 1 and compare runs two
    rounds without a pause (the load is the same kind, only shorter).
The commands run from a scratch folder where bin/ is $WSK_BIN and scripts/ the tree's.

A block whose fence says more than `sh` is not run; the word after `sh` says why (NOT_RUN)."""
# tests/run: not under sanitizers (the README's lines: each feature has tests of its own there)
# tests/run: not with threads (the README's lines start their own wsservers, without --threads)
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from wstest import BIN, Server, done, free_port, ok, sanitized, skip, wait_for  # noqa: E402

NOT_RUN = {
    "setup": "`make run` serves in the foreground until Ctrl-C, and `make check` is this suite",
    "interactive": "it waits for typing at a terminal (test_wscat_pty.py drives wscat's prompt)",
}
# Output checked, once every block has run, for the first line containing each needle.
EXPECT = [
    ("-x hello -x world", "the two echoes", lambda out: out == "hello\nworld\n"),
    ("seq 3 |", "the three echoes", lambda out: out == "1\n2\n3\n"),
    ("/news -w 3600", "every publication", lambda out: out == "breaking\nagain\nhi\n"),
    ("-x 'over TLS'", "the echo over TLS", lambda out: out == "over TLS\n"),
    ("/metrics | grep", "the message counted in the metrics",
     lambda out: out == 'wsk_messages_received_total{type="text"} 1\n'
     'wsk_messages_received_total{type="binary"} 0\n'),
    ("wsbench -c 64", "an echo load without errors",
     lambda out: re.search(r"^\s*errors\s+none$", out, re.M)),
]
LINE_LIMIT = 60 * (4 if sanitized() else 1)  # seconds for one foreground line


def blocks(text):
    """(line number of the fence, info string, [(line number, line)]) of each fenced block."""
    out, cur = [], None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if cur is None:
                cur = (n, line[3:].strip(), [])
            else:
                out.append(cur)
                cur = None
        elif cur is not None:
            cur[2].append((n, line))
    return out


class Local:
    """What the README's names become on this machine."""

    def __init__(self, tmp, tls_port, tls_ca):
        self.tmp, self.tls_port, self.tls_ca = tmp, tls_port, tls_ca
        self.ports = {}

    def port(self, m):
        return ":%d" % self.ports.setdefault(m.group(1), free_port())

    def __call__(self, line):
        line = re.sub(r":(\d{4,5})\b", self.port, line)
        line = line.replace("wss://example.test/",
                            f"wss://localhost:{self.tls_port}/ --ca {self.tls_ca}")
        line = line.replace("/tmp/certs", os.path.join(self.tmp, "certs"))
        if "wsbench" in line:
            line = re.sub(r"(^|\s)-d \d+\b", r"\1-d 1", line)
            # compare: two rounds (A B B A), back to back.
            line = re.sub(r"(\bwsbench compare)\b", r"\1 --rounds 2 --pause 0", line)
        return line


class Shell:
    """One bash fed line by line, in a session of its own so that whatever it started can be
    stopped at the end.  Each line's stdin is /dev/null and its output goes to files."""

    def __init__(self, cwd, logs):
        self.logs = logs
        r, self.w = os.pipe()
        self.status = os.fdopen(r)
        self.proc = subprocess.Popen(["bash"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, cwd=cwd, pass_fds=(self.w,),
                                     start_new_session=True, text=True)
        os.close(self.w)

    def out(self, n):
        with open(os.path.join(self.logs, f"{n}.out"), errors="replace") as f:
            out = f.read()
        with open(os.path.join(self.logs, f"{n}.err"), errors="replace") as f:
            return out, f.read()

    def run(self, n, line):
        """Runs line n; (exit status or "timeout", pid of the job it put in the background)."""
        o, e = (os.path.join(self.logs, f"{n}.{x}") for x in ("out", "err"))
        self.proc.stdin.write(f"{{\n{line}\n}} </dev/null >{o} 2>{e}\n"
                              f"echo \"{n} $? $!\" >&{self.w}\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.status], [], [], LINE_LIMIT)
        if not ready:
            return "timeout", None
        _, status, bg = self.status.readline().split(" ")
        return int(status), int(bg) if bg.strip() else None

    def stop(self):
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        gone = wait_for(lambda: subprocess.run(["pgrep", "-s", str(self.proc.pid)],
                                               capture_output=True).returncode != 0, 10)
        if not gone:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)


def sockets(pid):
    """What `ss` shows of the TCP sockets of process pid: (port listened on | bytes received,
    ...), a listening port as the string "listen:PORT"."""
    tag = f"pid={pid},"
    got = []
    listening = subprocess.run(["ss", "-tlnpH"], capture_output=True, text=True).stdout
    for line in listening.splitlines():
        if tag in line:
            got.append("listen:" + line.split()[3].rsplit(":", 1)[1])
    lines = subprocess.run(["ss", "-tinpH"], capture_output=True, text=True).stdout.splitlines()
    for i, line in enumerate(lines):
        if tag in line and i + 1 < len(lines):
            m = re.search(r"bytes_received:(\d+)", lines[i + 1])
            got.append(int(m.group(1)) if m else 0)
    return got


def came_up(pid, ports):
    """A background job is up once it listens on every port its line names after --listen or
    --metrics (a server with a metrics listener may open that one first), or, naming none, once
    it listens at all or its connection heard from the server (the 101, so a subscriber is
    subscribed); None while it is still starting, "exited" when it ended first."""
    if not os.path.exists(f"/proc/{pid}"):
        return "exited"
    s = sockets(pid)
    listening = {x[len("listen:"):] for x in s if isinstance(x, str)}
    if ports:
        return "up" if set(ports) <= listening else None
    if listening or any(isinstance(x, int) and x > 0 for x in s):
        return "up"
    return None


def listen_ports(cmd):
    """The ports a command line listens on: those after --listen and --metrics."""
    return re.findall(r"--(?:listen|metrics)\s+'?[^\s']*:(\d+)", cmd)


def main():
    if not shutil.which("ss"):
        ok(False, "ss is installed (iproute2, scripts/install-deps): it tells when a line is up")
        return
    with open(os.path.join(ROOT, "README.md")) as f:
        found = blocks(f.read())
    tmp = tempfile.mkdtemp(prefix="wsk-readme-")
    run_dir, logs = os.path.join(tmp, "run"), os.path.join(tmp, "logs")
    os.makedirs(run_dir)
    os.makedirs(logs)
    os.symlink(os.path.abspath(BIN), os.path.join(run_dir, "bin"))
    os.symlink(os.path.join(ROOT, "scripts"), os.path.join(run_dir, "scripts"))
    r = subprocess.run([os.path.join(ROOT, "scripts", "mkcerts"), os.path.join(tmp, "ex")],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        ok(False, "scripts/mkcerts makes the certificates of example.test's stand-in", r.stderr)
        return
    ex = os.path.join(tmp, "ex")
    example = Server("--echo", "--tls-cert", os.path.join(ex, "server.crt"), "--tls-key",
                     os.path.join(ex, "server.key"))
    local = Local(tmp, example.port, os.path.join(ex, "ca.crt"))
    shell = Shell(run_dir, logs)
    ran = {}  # README line -> (line number, status)
    try:
        shells = [b for b in found if b[1] == "sh" or b[1].startswith("sh ")]
        ok(len(shells) >= 3, f"the README has shell blocks ({len(shells)})")
        for fence, info, lines in shells:
            word = info[2:].strip()
            if word:
                if word in NOT_RUN:
                    skip(f"README block at line {fence} ({word})", NOT_RUN[word])
                else:
                    ok(False, f"README block at line {fence}: ```{info} is a marker this test "
                       f"knows ({', '.join(NOT_RUN)})")
                continue
            for n, line in lines:
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                cmd = local(line)
                status, bg = shell.run(n, cmd)
                if status == "timeout":
                    ok(False, f"README line {n} ends within {LINE_LIMIT} s: {line.strip()}",
                       "the lines after it are not run\nran: %s\nstdout: %r\nstderr: %r"
                       % ((cmd,) + shell.out(n)))
                    return
                background = re.sub(r"\s#.*$", "", line).rstrip().endswith("&")
                if background and status == 0 and bg:
                    state = wait_for(lambda: came_up(bg, listen_ports(cmd)), 10)
                    out, err = shell.out(n)
                    ok(state == "up", f"README line {n} comes up: {line.strip()}",
                       f"{state or 'not up in time'}\nran: {cmd}\nstderr: {err[-600:]}")
                else:
                    out, err = shell.out(n)
                    ok(status == 0, f"README line {n} exits 0: {line.strip()}",
                       f"status {status}\nran: {cmd}\nstdout: {out[-600:]}\nstderr: {err[-600:]}")
                ran[line] = (n, status)
        for needle, what, check in EXPECT:
            hit = [n for line, (n, _) in ran.items() if needle in line]
            if not hit:
                ok(False, f"a README line with {needle!r} ran")
                continue
            n = hit[0]
            ok(wait_for(lambda: check(shell.out(n)[0]), 10), f"README line {n} prints {what}",
               "stdout: %r\nstderr: %r" % shell.out(n))
    finally:
        shell.stop()
        example.stop()
        shutil.rmtree(tmp, ignore_errors=True)


main()
done()
