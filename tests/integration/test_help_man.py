#!/usr/bin/python3
"""--help and the man page list the same options, for every command: each long option of --help
is documented in the OPTIONS section of man/CMD.1, and each option documented there is in
--help.  Likewise wskit(3) names every public function of lib/wskit.h, and nothing else."""
# tests/run: not under valgrind (--help and man pages only)
# tests/run: not with threads (no server)
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import describe, done, ok, run_cmd  # noqa: E402

MAN = os.path.join(os.path.dirname(__file__), "..", "..", "man")
COMMANDS = ["wsserve", "wscat", "wspub", "wsbench"]


def help_options(text):
    """The long options that start the entries of a --help text ("  -l, --listen HOST:PORT")."""
    return set(re.findall(r"^ {2,}(?:-\w, )?--([a-z0-9][a-z0-9-]*)", text, re.M))


def man_options(text):
    """The long options named by the entries (.TP, then the tag line) of the OPTIONS section."""
    m = re.search(r"^\.SH OPTIONS\n(.*?)(?=^\.SH )", text, re.M | re.S)
    if not m:
        return set()
    lines = m.group(1).splitlines()
    tags = [lines[i + 1] for i, line in enumerate(lines[:-1]) if line.startswith(".TP")]
    found = set()
    for tag in tags:
        for name in re.findall(r"\\-\\-((?:[a-z0-9]|\\-)+)", tag):
            found.add(name.replace("\\-", "-"))
    return found


for cmd in COMMANDS:
    r = run_cmd(cmd, "--help")
    if not ok(r[0] == 0 and r[1], f"{cmd} --help", describe(r)):
        continue
    with open(os.path.join(MAN, cmd + ".1")) as f:
        man = man_options(f.read())
    helps = help_options(r[1])
    ok(len(helps) > 3 and len(man) > 3, f"{cmd}: options found in --help and in {cmd}(1)",
       f"help: {sorted(helps)}\nman: {sorted(man)}")
    missing = sorted(helps - man)
    ok(not missing, f"{cmd}: every option of --help is in {cmd}(1) OPTIONS",
       "not in the man page: " + ", ".join("--" + o for o in missing))
    extra = sorted(man - helps)
    ok(not extra, f"{cmd}: every option of {cmd}(1) OPTIONS is in --help",
       "not in --help: " + ", ".join("--" + o for o in extra))

with open(os.path.join(MAN, "..", "lib", "wskit.h")) as f:
    header = f.read()
with open(os.path.join(MAN, "wskit.3")) as f:
    page = f.read()
api = set(re.findall(r"^WSK_API [^;]*?\b(wsk_\w+)\(", header, re.M))
ok(len(api) > 50, "wskit.h: its public functions found", f"{sorted(api)}")
missing = sorted(n for n in api if not re.search(r"\b" + n + r"\b", page))
ok(not missing, "wskit(3) names every public function of wskit.h",
   "not in the man page: " + ", ".join(missing))
named = set(re.findall(r"\b(wsk_\w*[a-z0-9])\b", page))
unknown = sorted(n for n in named if not re.search(r"\b" + n + r"\b", header))
ok(not unknown, "every wsk_ name in wskit(3) is in wskit.h",
   "not in wskit.h: " + ", ".join(unknown))
done()
