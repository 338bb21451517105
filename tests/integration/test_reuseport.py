#!/usr/bin/python3
"""wsserve --reuseport: two processes listen on one port and both accept connections (the kernel
spreads them by a hash of the client's address and port); a third process without the option
cannot bind the port."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import done, free_port, ok, Raw, run_cmd, Server, wait_for  # noqa: E402

port = free_port()
a = Server("--echo", "--reuseport", "-v", port=port)
b = Server("--echo", "--reuseport", "-v", port=port)
try:
    # Its wait for the port was answered by the first: wait for its own listener.
    b.wait_log("listening on", timeout=10)
    # Each connection lands on one of the two; 200 tries make missing one of them with a fair
    # spread a 2^-199 event.
    for i in range(200):
        c = Raw(port)
        c.close()
        if a.count(": open") and b.count(": open"):
            break
    wait_for(lambda: a.count(": open") and b.count(": open"))
    ok(a.count(": open") > 0 and b.count(": open") > 0,
       "two --reuseport processes on one port both accept",
       f"first: {a.count(': open')} opens, second: {b.count(': open')} opens after {i + 1}")
    r = run_cmd("wsserve", "--echo", "--listen", f"127.0.0.1:{port}", timeout=5)
    ok(r[0] == 1 and "cannot listen" in r[2], "without --reuseport the port is taken", r)
finally:
    a.stop()
    b.stop()
done()
