#!/bin/bash
# What a run shows of itself: the event log (RUN/events.jsonl: every line
# a JSON object; run start and end, retries, failures, timeouts, batches
# of finished tasks or one line a task, snapshots, a drain), the
# Prometheus textfile (RUN/metrics.prom: counts that agree with the
# summary, P50/P95/P99 of task wall time near the known durations,
# utilization within [0, 1], rewritten while the run goes), progress as
# lines or as a bar on a terminal, the options that turn each off, and
# clear errors for bad values.  (t0013 and t0033 check the lost-worker
# and quarantine events.)
. "$(dirname "$0")/lib.sh"
test_timeout 300
PY=/usr/bin/python3
[ -x $PY ] || skip "no $PY"

# 40 tasks of 0.1 s and 10 of 0.4 s, two that fail twice, one timeout.
cat > job.yaml <<'YAML'
name: observe
tasks:
  - name: quick
    command: [sleep, "0.1"]
    params: {i: {range: [1, 40]}}
  - name: long
    command: [sleep, "0.4"]
    params: {i: {range: [1, 10]}}
  - name: flaky
    command: [sh, -c, "exit 3"]
    retries: {max: 1, backoff: 0.1s}
    params: {i: [1, 2]}
  - name: stuck
    command: [sleep, "30"]
    timeout: 1s
YAML
gr_run 3 job.yaml --run-dir run --cpus-per-worker 4 --progress lines --progress-interval 0.3 \
    --metrics-interval 0.2 > run.out 2> run.err
rc=$?
[ $rc -eq 1 ] || fail "exit $rc, want 1 (some failed): $(tail -20 run.err)"

# Every line is JSON; the events and their counts.
$PY - run/events.jsonl > ev.txt <<'PYEOF' || fail "events.jsonl: $(cat ev.txt)"
import json, sys, collections
c = collections.Counter()
done = 0
for n, line in enumerate(open(sys.argv[1]), 1):
    e = json.loads(line)
    assert isinstance(e["time"], float) and e["time"] > 1.6e9, (n, e)
    c[e["event"]] += 1
    if e["event"] == "tasks_done":
        done += e["n"]
        assert 0 <= e["wall_max"] <= e["wall_sum"] + 1e-9, e
    if e["event"] == "task_timeout":
        assert e["task"] == "stuck" and e["reason"].startswith("timeout"), e
    if e["event"] == "run_end":
        assert e["exit_code"] == 1 and e["done"] == 50 and e["failed"] == 3, e
    if e["event"] == "run_start":
        assert e["run"] == "observe" and e["tasks"] == 53 and e["incarnation"] == 1, e
print(" ".join("%s=%d" % kv for kv in sorted(c.items())), "done=%d" % done)
PYEOF
ev=$(cat ev.txt)
echo "events: $ev"
for want in run_start=1 run_end=1 task_retry=2 task_failed=2 task_timeout=1 done=50; do
    grep -qw "$want" ev.txt || fail "events: want $want in: $ev"
done
grep -q "snapshot=" ev.txt || fail "no snapshot event: $ev"

# The metrics: counts as in the summary, quantiles near the durations.
$PY - run/metrics.prom > m.txt <<'PYEOF' || fail "metrics.prom: $(cat m.txt)"
import re, sys
line_re = re.compile(r'^([a-z_]+)\{([^}]*)\} (\S+)$')
m = {}
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        continue
    g = line_re.match(line)
    assert g, "not a sample: %r" % line
    labels = dict(kv.split("=", 1) for kv in re.findall(r'[a-z_]+="[^"]*"', g.group(2)))
    assert labels.get("run") == '"observe"', line
    key = g.group(1) + "".join(sorted("{%s=%s}" % kv for kv in labels.items() if kv[0] != "run"))
    m[key] = float(g.group(3))
def q(x):
    return m['gridrun_task_wall_seconds{quantile="%s"}' % x]
assert m['gridrun_tasks{state="done"}'] == 50, m
assert m['gridrun_tasks{state="failed"}'] == 3
assert m['gridrun_attempts_total{outcome="retry"}'] == 2
assert m["gridrun_timeouts_total"] == 1
assert m["gridrun_exit_code"] == 1
assert m["gridrun_task_wall_seconds_count"] == 53 + 2
assert 0.09 <= q("0.5") <= 0.13, q("0.5")
assert 0.38 <= q("0.95") <= 0.47, q("0.95")
assert 0.38 <= q("0.99") <= 1.1, q("0.99")
utils = [v for k, v in m.items() if k.startswith("gridrun_worker_utilization")]
assert len(utils) == 2 and all(0 < u <= 1 for u in utils), utils
assert any(k.startswith("gridrun_node_utilization") for k in m)
assert sum(v for k, v in m.items() if k.startswith("gridrun_failures_total")) == 5
print("p50 %.3f p95 %.3f p99 %.3f" % (q("0.5"), q("0.95"), q("0.99")))
PYEOF
echo "metrics: $(cat m.txt)"
# Progress lines on stderr (not a terminal), and a last one.
grep -q "^gridrun: .*done, .* failed, .* running, .* tasks/s, elapsed .*, ETA " run.err \
    || fail "no progress lines: $(cat run.err)"
grep -q "^gridrun: finished: 100.0% 50/53 done" run.err || fail "no last progress line: $(cat run.err)"

# While a run goes, the metrics file is there and says it is running.
cat > slow.yaml <<'YAML'
name: slow
tasks:
  - name: s
    command: [sleep, "3"]
YAML
gr_launch_bg 3 slow.log slow.yaml --run-dir slow --metrics-interval 0.2 --grace 0.5s
for i in $(seq 1 100); do
    grep -q '^gridrun_exit_code{run="slow"} -1$' slow/metrics.prom 2> /dev/null && break
    sleep 0.05
done
grep -q '^gridrun_tasks{run="slow",state="running"} 1$' slow/metrics.prom \
    || fail "metrics while running: $(cat slow/metrics.prom 2>&1)"
[ -e slow/metrics.prom.tmp ] && [ ! -s slow/metrics.prom ] && fail "metrics file not replaced atomically"
# A drain shows in the events (the launcher passes SIGTERM on as SIGUSR2).
kill -TERM "$launch_pid"
wait "$launch_pid"
grep -qE '"event":"drain","reason":"SIG(TERM|USR2)","grace":0.5' slow/events.jsonl \
    || fail "no drain event: $(cat slow/events.jsonl)"
grep -q '"event":"run_end","exit_code":75' slow/events.jsonl || fail "run_end: $(cat slow/events.jsonl)"
# The resumed run appends, as incarnation 2.
gr_run 3 slow.yaml --run-dir slow > slow2.out 2>&1 || fail "resume: $(cat slow2.out)"
grep -q '"event":"run_start","run":"slow","run_dir":"[^"]*","incarnation":2' slow/events.jsonl \
    || fail "resume: $(grep run_start slow/events.jsonl)"

# One line a task; nothing at all; a bar on a terminal.
gr_run 3 job.yaml --run-dir tasks --cpus-per-worker 4 --events tasks --progress none \
    > /dev/null 2> tasks.err
[ "$(grep -c '"event":"task_end"' tasks/events.jsonl)" -eq 50 ] \
    || fail "--events tasks: $(grep -c task_end tasks/events.jsonl) task_end lines, want 50"
grep -q '"event":"tasks_done"' tasks/events.jsonl && fail "--events tasks: batches too"
grep -q "^gridrun: .*tasks/s" tasks.err && fail "--progress none printed progress: $(cat tasks.err)"
gr_run 3 job.yaml --run-dir quiet --cpus-per-worker 4 --events off --metrics-file= \
    > /dev/null 2>&1
[ -e quiet/events.jsonl ] && fail "--events off wrote events.jsonl"
[ -e quiet/metrics.prom ] && fail "--metrics-file= wrote metrics.prom"
gr_run 3 job.yaml --run-dir other --cpus-per-worker 4 --metrics-file "$WORK/textfile.prom" \
    > /dev/null 2>&1
grep -q '^gridrun_tasks{run="observe",state="done"} 50$' textfile.prom \
    || fail "--metrics-file: $(cat textfile.prom 2>&1 | head)"
# On a terminal, through gridrun launch (mpirun's ranks see pipes; the
# launcher tells the master its own stderr is a terminal).
if command -v script > /dev/null; then
    GRIDRUN_MPIRUN="$LOCAL_MPIRUN" script -qec \
        "$GRIDRUN launch -n 3 -- $WORK/job.yaml --run-dir $WORK/tty --cpus-per-worker 4 -q" \
        /dev/null > tty.out 2>&1
    grep -q $'\r\[#*-*\] .* done, ' tty.out || fail "no bar on a terminal: $(cat -A tty.out | head -5)"
    grep -q '\[########################\] 100.0% 50/53 done' tty.out \
        || fail "no full bar at the end: $(cat -A tty.out | tail -3)"
fi

# The metrics served over HTTP (--metrics-listen): a task of the run
# scrapes them (the run's own network namespace, under local-mpirun,
# holds the listener) and sees itself running; other paths get 404.
cat > scrape.yaml <<'YAML'
name: scrape
tasks:
  - name: s
    command: [/usr/bin/python3, -c, "import sys, urllib.request as u, urllib.error as e\nr = u.urlopen('http://127.0.0.1:19464/metrics', timeout=5)\nprint(r.status, r.headers['Content-Type'])\nprint(r.read().decode())\ntry:\n    u.urlopen('http://127.0.0.1:19464/other', timeout=5)\nexcept e.HTTPError as x:\n    print('other', x.code)"]
YAML
gr_run 2 scrape.yaml --run-dir scrape --metrics-listen 127.0.0.1:19464 -q > scrape.out 2>&1 \
    || fail "--metrics-listen: $(cat scrape.out; "$GRIDRUN" output --stderr scrape s)"
"$GRIDRUN" output scrape s > scraped.txt
grep -q "^200 text/plain; version=0.0.4" scraped.txt || fail "scrape: $(cat scraped.txt)"
grep -q '^gridrun_tasks{run="scrape",state="running"} 1$' scraped.txt || fail "scrape: $(cat scraped.txt)"
grep -q '^gridrun_exit_code{run="scrape"} -1$' scraped.txt || fail "scrape: $(cat scraped.txt)"
grep -q "^other 404$" scraped.txt || fail "scrape of another path: $(cat scraped.txt)"
# A port already taken: a clear error before anything runs.
gr_isolated /bin/sh -c '/usr/bin/python3 -c "import socket, time; s = socket.socket(); s.bind((\"127.0.0.1\", 19465)); s.listen(); time.sleep(10)" & p=$!; sleep 0.5; "$@"; rc=$?; kill $p; exit $rc' sh \
    "$GRIDRUN" run job.yaml --run-dir taken --metrics-listen 127.0.0.1:19465 > taken.out 2>&1
rc=$?
[ $rc -eq 2 ] || fail "--metrics-listen on a taken port: exit $rc, want 2: $(cat taken.out)"
grep -q "metrics-listen 127.0.0.1:19465: cannot listen there: Address already in use; give another port" \
    taken.out || fail "taken port: $(cat taken.out)"

# Bad values.
for bad in "--progress sideways" "--events maybe" "--metrics-interval soon" \
    "--progress-interval 0" "--metrics-listen 9464"; do
    # shellcheck disable=SC2086
    "$GRIDRUN" run job.yaml --run-dir bad $bad > bad.out 2>&1
    [ $? -eq 2 ] || fail "$bad: not exit 2: $(cat bad.out)"
    grep -qF -- "${bad%% *}" bad.out || fail "$bad: message does not name it: $(cat bad.out)"
done
pass "$ev; $(cat m.txt)"
