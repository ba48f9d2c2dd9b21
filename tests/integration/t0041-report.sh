#!/bin/bash
# gridrun report: a real run (tasks of known durations, failures, a
# timeout, a parameter that is a <script> tag) gives one self-contained
# HTML file (no script, nothing fetched, the hostile parameter escaped)
# with the four charts and both tables; a real browser (Debian's
# chromium, headless, with no network) renders it, and its screenshot is
# a PNG that is not blank.  Also: one task with --events tasks, --events
# off (the time series from the journal), --events off with no journal
# (the charts say why they are empty), a running run without run.h5 yet,
# malformed event lines, -o, and clear errors (exit 1) for a missing
# directory, one that is not a run, and a damaged run.h5.
. "$(dirname "$0")/lib.sh"
test_timeout 300
PY=/usr/bin/python3
[ -x $PY ] || skip "no $PY"

cat > job.yaml <<'YAML'
name: report
tasks:
  - name: quick
    command: [sleep, "0.1"]
    params: {i: {range: [1, 30]}}
  - name: long
    command: [sleep, "0.5"]
    params: {i: {range: [1, 4]}}
  - name: flaky
    command: [sh, -c, "exit 3"]
    retries: {max: 1, backoff: 0.1s}
    params: {i: [1, 2]}
  - name: stuck
    command: [sleep, "30"]
    timeout: 1s
  - name: evil
    command: [sh, -c, "sleep 0.7; exit 4", sh, "{v}"]
    params: {v: ["<script>alert(1)</script>"]}
YAML
gr_run 3 job.yaml --run-dir run --cpus-per-worker 2 --progress none > run.out 2> run.err
rc=$?
[ $rc -eq 1 ] || fail "exit $rc, want 1 (some failed): $(tail -20 run.err)"

"$GRIDRUN" report run > report.out 2>&1 || fail "report: $(cat report.out)"
R=run/report.html
[ -s $R ] || fail "no $R: $(cat report.out)"
grep -qF "$R" report.out || fail "report does not say where it wrote: $(cat report.out)"

# (a) Self-contained: no reference out of the file but the SVG namespace,
# no script, the hostile parameter escaped.
refs=$(grep -oE '(https?|ftp)://[^"'"'"' )>]*' $R | grep -vx 'http://www.w3.org/2000/svg')
[ -z "$refs" ] || fail "references outside the file: $refs"
grep -qi '<script' $R && fail "a <script> in the report: $(grep -i -m3 '<script' $R)"
loads='<(link|img|iframe|object|embed)\b|@import|src=|href='
grep -qiE "$loads" $R && fail "the report loads something: $(grep -oiE "$loads" $R | head -3)"
grep -oE 'url\([^)]*\)' $R | grep -qv '^url(#' \
    && fail "a url() to outside: $(grep -oE 'url\([^)]*\)' $R | head -3)"
grep -qF 'v=&lt;script&gt;alert(1)&lt;/script&gt;' $R \
    || fail "the hostile parameter is not there escaped"

# The content: every chart with its title, the quantiles, the tables.
$PY - $R > content.txt <<'PYEOF' || fail "content: $(cat content.txt)"
import sys, re
from html.parser import HTMLParser

class P(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack = []        # open svg ids
        self.svg = {}          # id -> {tag: count}
        self.texts = {}        # id -> text inside
        self.tables = {}       # id -> rows
        self.table = None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg":
            self.stack.append(a.get("id"))
            self.svg[a.get("id")] = {}
            self.texts[a.get("id")] = ""
        elif self.stack:
            c = self.svg[self.stack[-1]]
            c[tag] = c.get(tag, 0) + 1
        if tag == "table":
            self.table = a.get("id")
            self.tables[self.table] = 0
        if tag == "tr" and self.table:
            self.tables[self.table] += 1
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag == "svg":
            self.stack.pop()
    def handle_endtag(self, tag):
        if tag == "svg":
            self.stack.pop()
        if tag == "table":
            self.table = None
    def handle_data(self, d):
        if self.stack:
            self.texts[self.stack[-1]] += d + " "

p = P()
p.feed(open(sys.argv[1], encoding="utf-8").read())
for sid in ("throughput", "heatmap", "durations", "failures"):
    assert sid in p.svg, "no svg %s: %s" % (sid, list(p.svg))
    assert p.svg[sid].get("title"), "svg %s has no <title>" % sid
    assert p.svg[sid].get("rect", 0) + p.svg[sid].get("path", 0) >= 3, (sid, p.svg[sid])
    assert p.svg[sid].get("text", 0) >= 5, (sid, p.svg[sid])
t = p.texts
for q in ("P50", "P95", "P99"):
    assert q in t["durations"], "no %s label: %s" % (q, t["durations"])
assert "tasks a second" in t["throughput"], t["throughput"]
assert "time since the first event (s)" in t["throughput"], t["throughput"]
assert "busy fraction" in t["heatmap"] and "100%" in t["heatmap"], t["heatmap"]
assert "by node" in t["failures"] and "by rack" in t["failures"], t["failures"]
# 20 slowest plus the header row; 4 failed tasks (flaky x2, stuck, evil).
assert p.tables.get("slowest") == 21, p.tables
assert p.tables.get("failed") == 5, p.tables
html = open(sys.argv[1], encoding="utf-8").read()
assert "timeout after 1s" in html and "exit 3" in html and "exit 4" in html
assert re.search(r"38: <b>34</b> done, <b>4</b> failed", html), \
    re.findall(r"38:[^<]*<b>[^/]*", html)
assert "finished with failures</span>, exit code 1" in html
print("svg elements:", {k: sum(v.values()) for k, v in p.svg.items()}, "tables:", p.tables)
PYEOF
echo "content: $(cat content.txt)"
# Failed attempts on the node: 2 flaky retries + 2 flaky fails + stuck +
# evil = 6, as in metrics.prom.
fails=$(awk '/^gridrun_failures_total\{/ {s += $NF} END {print s}' run/metrics.prom)
[ "$fails" = 6 ] || fail "metrics.prom counts $fails failed attempts, want 6"
grep -q '<text x="[0-9.]*" y="[0-9.]*">6</text></g>' $R || fail "the failures chart does not show 6"

# -o elsewhere, and to stdout.
rm -f $R
"$GRIDRUN" report -o "$WORK/other.html" run > o.out 2>&1 || fail "-o: $(cat o.out)"
[ -s other.html ] && [ ! -e $R ] || fail "-o: other.html $(ls -la other.html $R 2>&1)"
"$GRIDRUN" report run -o - > stdout.html 2> o.err || fail "-o -: $(cat o.err)"
grep -q '<svg id="durations"' stdout.html || fail "-o -: $(head -c 300 stdout.html)"

# One task, one line a task.
cat > one.yaml <<'YAML'
name: one
tasks:
  - name: only
    command: [sleep, "0.2"]
YAML
gr_run 2 one.yaml --run-dir one --events tasks --progress none > one.out 2>&1 \
    || fail "one task: $(tail one.out)"
grep -q '"event":"task_end".*"cpus":1' one/events.jsonl || fail "task_end: $(cat one/events.jsonl)"
"$GRIDRUN" report one > one-r.out 2>&1 || fail "report of one task: $(cat one-r.out)"
grep -q 'P50 20[0-9] ms' one/report.html || fail "one task: $(grep -o 'P50[^<]*' one/report.html)"
grep -q '1: <b>1</b> done' one/report.html || fail "one task: counts"

# --events off: the time series come from the journal.
gr_run 3 job.yaml --run-dir off --cpus-per-worker 2 --events off --progress none > off.out 2>&1
[ -e off/events.jsonl ] && fail "--events off wrote events.jsonl"
"$GRIDRUN" report off > off-r.out 2>&1 || fail "report, events off: $(cat off-r.out)"
grep -q 'no events.jsonl (started with --events off): the time series come from the journal' \
    off/report.html || fail "events off: no note on the source"
grep -q '<rect class="done"' off/report.html || fail "events off: no throughput bars"
# ... and with no journal either, the charts that need them say so.
gr_run 3 job.yaml --run-dir bare --cpus-per-worker 2 --events off --no-journal \
    --progress none > bare.out 2>&1
[ -e bare/run.h5 ] || fail "--no-journal: no run.h5: $(tail bare.out)"
"$GRIDRUN" report bare > bare-r.out 2>&1 || fail "report, no events or journal: $(cat bare-r.out)"
for id in throughput heatmap; do
    grep -A5 "<svg id=\"$id\"" bare/report.html | grep -q 'started with --events off' \
        || fail "$id does not say why it is empty: $(grep -A3 "<svg id=\"$id\"" bare/report.html)"
done
grep -q '<svg id="durations"' bare/report.html && grep -q 'P99' bare/report.html \
    || fail "no run.h5 durations without events"

# Malformed lines are skipped and counted.
cp -r run junk
printf 'not json\n{"time": "x", "event": 3}\n[1,2]\n' >> junk/events.jsonl
"$GRIDRUN" report junk > junk.out 2>&1 || fail "malformed events: $(cat junk.out)"
grep -q '3 malformed lines skipped' junk/report.html || fail "malformed lines not counted"

# A running run, before its first snapshot: state running, the task
# table from the journal.
cat > slow.yaml <<'YAML'
name: slow
tasks:
  - name: s
    command: [sleep, "0.3"]
    params: {i: {range: [1, 6]}}
  - name: hold
    command: [sleep, "20"]
YAML
gr_launch_bg 2 slow.log slow.yaml --run-dir slow --grace 0.5s --progress none
wait_done slow 3 "$launch_pid" slow.log
[ -e slow/run.h5 ] && fail "slow: a snapshot already (the test wants none)"
"$GRIDRUN" report slow > slow-r.out 2>&1 || fail "report of a running run: $(cat slow-r.out)"
grep -q '<span class="state">running</span>' slow/report.html \
    || fail "running: $(grep -o '<tr><th>state.*' slow/report.html)"
grep -q 'the journal ([0-9]* rows): no run.h5 yet' slow/report.html || fail "running: table source"
grep -q '<svg id="throughput"' slow/report.html || fail "running: no throughput chart"
kill -TERM "$launch_pid"
wait "$launch_pid"

# Bad input: exit 1 and the path named.
"$GRIDRUN" report "$WORK/nowhere" > e1.out 2>&1
[ $? -eq 1 ] && grep -q "$WORK/nowhere" e1.out || fail "missing directory: $(cat e1.out)"
mkdir -p notrun
"$GRIDRUN" report notrun > e2.out 2>&1
[ $? -eq 1 ] && grep -q "'notrun' is not a gridrun run directory" e2.out \
    || fail "not a run directory: $(cat e2.out)"
cp -r run broken
head -c 3000 run/run.h5 > broken/run.h5
"$GRIDRUN" report broken > e3.out 2>&1
[ $? -eq 1 ] && grep -q "broken/run.h5" e3.out || fail "damaged run.h5: $(cat e3.out)"
"$GRIDRUN" report > e4.out 2>&1
[ $? -eq 2 ] || fail "no argument: not exit 2: $(cat e4.out)"
# An empty run directory (only the stored spec): every part says why.
mkdir -p empty && cp run/spec.pack empty/
"$GRIDRUN" report empty > e5.out 2>&1 || fail "empty run: $(cat e5.out)"
[ "$(grep -c '<svg id=' empty/report.html)" -eq 4 ] || fail "empty run: not four charts"

# (b) A real browser renders it: chromium headless, no network at all.
CHROMIUM=$(command -v chromium || command -v chromium-browser)
[ -n "$CHROMIUM" ] || skip "no chromium (scripts/install-deps installs it); the other checks passed"
browser () {
    gr_isolated timeout -k 5 90 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
        --user-data-dir="$WORK/chromium" --no-first-run --disable-extensions \
        --disable-background-networking --disable-component-update --disable-sync \
        --disable-default-apps --hide-scrollbars --window-size=1200,3000 "$@" \
        "file://$WORK/$R"
}
"$GRIDRUN" report run > /dev/null 2>&1 || fail "report again"
browser --dump-dom > dom.html 2> chromium-dom.err \
    || fail "chromium --dump-dom: $(tail -5 chromium-dom.err)"
$PY - dom.html <<'PYEOF' || fail "the browser's DOM: $(head -c 500 dom.html)"
import sys, re
d = open(sys.argv[1], encoding="utf-8").read()
for sid in ("throughput", "heatmap", "durations", "failures"):
    m = re.search(r'<svg id="%s".*?</svg>' % sid, d, re.S)
    assert m, "no svg %s in the DOM" % sid
    n = len(re.findall(r"<(rect|path|line)\b", m.group(0)))
    assert n >= 5, "svg %s: %d data elements" % (sid, n)
for q in ("P50", "P95", "P99"):
    assert re.search(r'<text class="p%s"[^>]*>%s ' % (q[1:], q), d), q
assert "&lt;script&gt;alert(1)&lt;/script&gt;" in d and "<script" not in d
PYEOF
browser --screenshot="$WORK/shot.png" > chromium-shot.out 2>&1 \
    || fail "chromium --screenshot: $(tail -5 chromium-shot.out)"
$PY - shot.png > png.txt <<'PYEOF' || fail "screenshot: $(cat png.txt)"
import sys, struct, zlib
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG: %r" % d[:8]
pos, idat, ihdr = 8, b"", None
while pos < len(d):
    n, kind = struct.unpack(">I4s", d[pos:pos + 8])
    body = d[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype = ihdr[:4]
assert (w, h) == (1200, 3000) and depth == 8 and ctype in (2, 6), ihdr
raw = zlib.decompress(idat)
bpp = 3 if ctype == 2 else 4
assert len(raw) == h * (1 + w * bpp), (len(raw), h * (1 + w * bpp))
# A blank page filters to a handful of byte values; text, bars and the
# heatmap's shades give many.
distinct = len(set(raw))
assert distinct >= 64, "only %d distinct byte values: blank?" % distinct
print("%dx%d, %d bytes, %d distinct byte values" % (w, h, len(d), distinct))
PYEOF
pass "$(cat png.txt); $(cat content.txt)"
