#!/usr/bin/python3
"""wsbench's distributions and charts against wsserve --echo, with tiny loads: the summary's
percentile table, --percentiles in HdrHistogram's .hgrm text (re-read: header, monotonic
percentiles and counts, footer that matches the JSON), and --report's HTML for one run and for
compare (parsed as XML: the page and every inline SVG; no script, nothing fetched), rendered by
headless Chromium (Debian `chromium`, or $WSK_CHROMIUM) without a console message.  Every run is
bounded by -n or a fraction of a second."""
# tests/run: not with threads (wsbench's reports: the server is not what is tested)
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
from wstest import BIN, Server, done, ok, skip  # noqa: E402

WSBENCH = os.path.join(BIN, "wsbench")
SVG = "{http://www.w3.org/2000/svg}"
XHTML = "{http://www.w3.org/1999/xhtml}"
HGRM_HEADER = "       Value     Percentile TotalCount 1/(1-Percentile)"


def bench(*args, timeout=60):
    r = subprocess.run([WSBENCH, *args], capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


def read_hgrm(text):
    """(rows [(value, percentile, count)], footer {name: number}) of a .hgrm text, or a string
    saying what is wrong with it."""
    lines = text.splitlines()
    if len(lines) < 6 or lines[0] != HGRM_HEADER or lines[1] != "":
        return "header: " + repr(lines[:2])
    rows, footer = [], {}
    for line in lines[2:]:
        if line.startswith("#["):
            for name, v in re.findall(r"(\w[\w ]*?)\s*=\s*([0-9.]+)", line):
                footer[name.strip()] = float(v)
            continue
        f = line.split()
        if len(f) not in (3, 4):
            return "row: " + repr(line)
        value, pct, count = float(f[0]), float(f[1]), int(f[2])
        if len(f) == 4 and abs(float(f[3]) - 1 / (1 - pct)) > 0.01 * float(f[3]) + 0.01:
            return "1/(1-Percentile): " + repr(line)
        rows.append((value, pct, count))
    return rows, footer


def check_hgrm(text, j, what):
    got = read_hgrm(text)
    if not ok(isinstance(got, tuple), f"{what}: HdrHistogram's layout (header, rows, footer)",
              got):
        return
    rows, footer = got
    lat = j["latency_ns"]
    ok(len(rows) > 10 and rows[0][1] == 0 and rows[-1][1] == 1.0,
       f"{what}: rows from percentile 0 to 1", rows[:2] + rows[-2:])
    ok(all(a[0] <= b[0] and a[1] <= b[1] and a[2] <= b[2] for a, b in zip(rows, rows[1:])),
       f"{what}: values, percentiles and counts never go down", rows)
    ok(rows[-1][2] == lat["count"] and footer.get("Total count") == lat["count"],
       f"{what}: the last row and the footer count every reply", (rows[-1], footer, lat["count"]))
    ok(abs(rows[-1][0] - lat["max"] / 1e6) < 1e-5 and abs(footer.get("Max", -1) - lat["max"] / 1e6) < 1e-5,
       f"{what}: the last value is the max, in milliseconds", (rows[-1], footer, lat["max"]))
    # A value is the top of its 1/64-wide bucket; the JSON's p50 is the middle of the same one.
    p50 = next(v for v, p, _ in rows if p >= 0.5)
    ok(abs(p50 - lat["p50"] / 1e6) <= lat["p50"] / 1e6 / 32 + 1e-6,
       f"{what}: the 50% row agrees with the JSON's p50", (p50, lat["p50"]))
    ok(abs(footer.get("Mean", -1) - lat["mean"] / 1e6) <= lat["mean"] / 1e6 / 100 + 1e-6,
       f"{what}: the footer's mean is the JSON's", (footer, lat["mean"]))


def check_html(path, what):
    """The report parses as XML; returns its root (or None)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as e:
        ok(False, f"{what}: well-formed XHTML", e)
        return None
    ok(root.tag == XHTML + "html", f"{what}: well-formed XHTML", root.tag)
    svgs = list(root.iter(SVG + "svg"))
    ok(svgs and all(s.find(SVG + "title") is not None and s.get("viewBox") for s in svgs),
       f"{what}: inline SVG charts, each with a title and a viewBox", len(svgs))
    for s in svgs:
        # Each chart stands alone as an SVG document too.
        ET.fromstring(ET.tostring(s))
    tags = {e.tag.split("}")[-1] for e in root.iter()}
    refs = [v for e in root.iter() for k, v in e.attrib.items()
            if k.split("}")[-1] in ("src", "href") or "://" in v and k != "content"]
    ok("script" not in tags and not refs and not {"img", "link", "iframe", "object"} & tags,
       f"{what}: no script, nothing to fetch", (tags, refs))
    return root


def chart(root, title):
    for s in root.iter(SVG + "svg"):
        t = s.find(SVG + "title")
        if t is not None and t.text.startswith(title):
            return s
    return None


def polylines(svg):
    return [] if svg is None else [p.get("points").split() for p in svg.iter(SVG + "polyline")]


def chromium_renders(path, what):
    """Headless Chromium loads the report: its DOM holds the charts, and nothing is logged on
    its console (a blocked fetch, a CSP violation, a script error would be)."""
    exe = (os.environ.get("WSK_CHROMIUM") or shutil.which("chromium")
           or shutil.which("chromium-browser"))
    if not exe:
        skip(f"{what}: Chromium renders it", "chromium is not installed")
        return
    with tempfile.TemporaryDirectory(prefix="wsk-chromium-") as profile:
        r = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-extensions", f"--user-data-dir={profile}", "--enable-logging=stderr",
             "--v=0", "--dump-dom", "file://" + os.path.abspath(path)],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    ok(r.returncode == 0 and r.stdout.count("<svg") >= 2 and "How it ran" in r.stdout,
       f"{what}: Chromium renders the charts", (r.returncode, r.stderr[-2000:]))
    ok(not console, f"{what}: no message on Chromium's console", "\n".join(console))


def one_run(url, tmp):
    hgrm, html = os.path.join(tmp, "run.hgrm"), os.path.join(tmp, "run.html")
    rc, out, err = bench("--json", "-d", "1.3", "-c", "4", "--rate", "2000", "--percentiles", hgrm,
                         "--report", html, url)
    j = json.loads(out) if rc == 0 else None
    if not ok(j and j["ok"] and len(j["per_second"]) == 2,
              "echo -d 1.3 with --percentiles and --report: runs, two rows a second", err):
        return
    with open(hgrm) as f:
        check_hgrm(f.read(), j, "--percentiles FILE")
    root = check_html(html, "--report")
    if root is None:
        return
    text = "".join(root.itertext())
    ok("--percentiles" in text and "--report" in text and "wsbench" in text
       and "libev" in text and "cpu" in text
       and all(lib in text for lib in ("zlib 1.", "libdeflate 1.", "mbedTLS 2.")),
       "--report: the command line, the versions and the machine", text[-600:])
    got = "{:,} received".format(j["messages"]["received"])
    ok("latency 99.99%" in text and got in text,
       "--report: the run's figures and percentile table", text[:800])
    curve = polylines(chart(root, "latency percentiles"))
    ok(len(curve) == 1 and len(curve[0]) > 10, "--report: the latency percentile curve",
       curve)
    for title in ("throughput", "latency each second", "connections open", "errors each second"):
        ok(chart(root, title) is not None, f"--report: a chart of {title}",
           [s.find(SVG + "title").text for s in root.iter(SVG + "svg")])
    chromium_renders(html, "--report (one run)")

    rc, out, err = bench("-n", "500", "-c", "2", url)
    table = re.findall(r"^\s+([0-9.]+)%\s+\S+ \w+", out, re.M)
    ok(rc == 0 and table == ["50.000", "75.000", "90.000", "99.000", "99.900", "99.990",
                             "100.000"],
       "the summary lists 50/75/90/99/99.9/99.99% and the max", out)

    rc, out, err = bench("-n", "500", "-c", "2", "--percentiles", "-", url)
    got = read_hgrm(out)
    ok(rc == 0 and isinstance(got, tuple) and got[0][-1][2] == 500 and "throughput" in err,
       "--percentiles -: the spectrum on stdout, the summary on stderr", (out[:300], err[-300:]))


def hold(url, tmp):
    html = os.path.join(tmp, "hold.html")
    rc, out, err = bench("hold", "-c", "3", "-d", "1.1", "--report", html, url)
    root = check_html(html, "hold --report") if ok(rc == 0, "hold --report: runs", err) else None
    titles = [] if root is None else [s.find(SVG + "title").text for s in root.iter(SVG + "svg")]
    ok(titles == ["connections open at the end of each second", "errors each second, by kind"],
       "hold --report: open connections and errors, no throughput or latency", titles)


def compare(url, tmp):
    html = os.path.join(tmp, "compare.html")
    rc, out, err = bench("compare", "-d", "0.3", "--rounds", "2", "--pause", "0", "-c", "2",
                         "--report", html, f"first={url}", f"second={url}")
    if not ok(rc == 0 and os.path.exists(html), "compare --report: runs", out + err):
        return
    root = check_html(html, "compare --report")
    if root is None:
        return
    bars = chart(root, "msg/s: median")
    rects = [] if bars is None else [r for r in bars.iter(SVG + "rect")]
    notes = "".join(bars.itertext()) if bars is not None else ""
    ok(len(rects) == 2 and "first:" in notes and "second:" in notes
       and len(list(bars.iter(SVG + "path"))) >= 3,
       "compare --report: a bar and a min..max whisker per target", notes)
    curves = polylines(chart(root, "latency percentiles"))
    ok(len(curves) == 2 and all(len(c) > 5 for c in curves),
       "compare --report: one percentile curve per target, overlaid", [len(c) for c in curves])
    text = "".join(root.itertext())
    ok("first" in text and "second" in text and "2 of 2" in text,
       "compare --report: the table of targets", text[:600])
    ok("wsbench compare -d 0.3 --rounds 2" in text,
       "compare --report: the command line in the order it was given", text[-600:])
    chromium_renders(html, "compare --report")

    rc, out, err = bench("compare", "--percentiles", "x.hgrm", url, url)
    ok(rc == 1 and "one run" in err, "compare --percentiles: a usage error", (rc, err))
    rc, out, err = bench("--json", "--percentiles", "-", url)
    ok(rc == 1 and "share stdout" in err, "--json --percentiles -: a usage error", (rc, err))


def errors(tmp):
    """A run whose every connection fails (a broker that refuses the Origin with 403): the
    report says why, and draws the errors."""
    html = os.path.join(tmp, "errors.html")
    with Server("--pubsub", "--origin", "http://good.test") as srv:
        rc, out, err = bench("connect", "-c", "2", "-d", "1.2", "--origin", "http://evil.test",
                             "--report", html, srv.url())
    if not ok(rc == 2 and os.path.exists(html), "a run that fails still writes --report",
              (rc, out, err)):
        return
    root = check_html(html, "--report of a failed run")
    if root is None:
        return
    text = "".join(root.itertext())
    ok("failed" in text and "no connection completed" in text,
       "--report of a failed run: the reason", text[:600])
    bars = chart(root, "errors each second")
    legend = "".join(bars.itertext()) if bars is not None else ""
    ok(bars is not None and len(list(bars.iter(SVG + "rect"))) >= 2
       and "handshake" in legend,
       "--report: errors each second, stacked by kind, with a legend", legend)
    svg = chart(root, "connections open")
    opened = polylines(svg)
    axis = [re.match(r"M[0-9.]+ [0-9.]+V([0-9.]+)H", p.get("d") or "")
            for p in ([] if svg is None else svg.iter(SVG + "path"))]
    base = next((m.group(1) for m in axis if m), None)
    ok(len(opened) == 1 and {p.split(",")[1] for p in opened[0]} == {base},
       "--report: no connection open, all along (failed attempts are not closed connections)",
       (base, opened))


def main():
    if not os.access(WSBENCH, os.X_OK):
        skip("wsbench", "not built")
        return
    with tempfile.TemporaryDirectory(prefix="wsk-report-") as tmp, Server("--echo") as srv:
        one_run(srv.url(), tmp)
        hold(srv.url(), tmp)
        compare(srv.url(), tmp)
        errors(tmp)


try:
    main()
except Exception as e:  # a crash is one failure, not a silent stop
    ok(False, "wsbench report tests ran to the end", f"{type(e).__name__}: {e}")
done()
