#!/bin/bash
# Quarantine over three emulated hosts (tests/integration/netns.sh): every
# task fails on h3.  After 3 failures within the window h3 gets no new
# work for the cool-off; its tasks are retried away on h1 and h2, and the
# run ends with every task done.  The quarantine shows in the log, the
# summary and `gridrun status`; with a short cool-off h3 is released, gets
# work again, and is quarantined again.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 150

netns_up 3 2    # -n 5: master and a worker on h1, two workers on h2, one on h3

log="$WORK/log"
mkspec () {
    cat > "$1.yaml" <<YAML
name: $1
quarantine: {failures: 3, window: 1m, cooloff: $2, level: node}
tasks:
  - name: t
    shell: 'sleep 0.05; echo "\$(hostname) {i} {attempt}" >> "\$LOG"; [ "\$(hostname)" != h3 ]'
    params: {i: {range: [1, $3]}}
    env: {LOG: "$log"}
    retry_away: node
    retries: {max: 5, backoff: 0.05, jitter: 0}
YAML
}

# (a) A long cool-off: h3 stays out once quarantined.
: > "$log"
mkspec long 10m 120
timeout -k 5 90 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run long.yaml \
    --run-dir long > long.out 2> long.err
rc=$?
[ $rc -eq 0 ] || fail "run: exit $rc: $(tail -20 long.err)"
grep -q "120: 120 done, 0 failed" long.out || fail "counts: $(cat long.out)"
grep -q "quarantine: node h3: 3 task failures within 1m00s; no new work there for 10m00s" long.err \
    || fail "no quarantine message: $(grep -i quarantine long.err)"
grep -q "; 1 quarantine$" long.out || fail "summary: $(grep domains long.out)"
n3=$(grep -c '^h3 ' "$log")
echo "h3 ran $n3 attempts, h1 $(grep -c '^h1 ' "$log"), h2 $(grep -c '^h2 ' "$log")"
# Three failures, plus what h3's worker already held queued (its prefetch).
[ "$n3" -ge 3 ] && [ "$n3" -le 10 ] || fail "h3 ran $n3 attempts; want 3 to 10"
# Every task done exactly once, on h1 or h2.
[ "$(grep -c '^h[12] ' "$log")" -eq 120 ] || fail "$(grep -c '^h[12] ' "$log") successes, want 120"
diff <(grep '^h[12] ' "$log" | cut -d' ' -f2 | tr -d "'" | sort -n) <(seq 1 120) > /dev/null \
    || fail "a task succeeded twice or never"
"$GRIDRUN" status long > status.out 2>&1 || fail "status: $(cat status.out)"
grep -q "quarantined *node h3 until" status.out || fail "status: $(cat status.out)"
"$GRIDRUN" status --json long > status.json || fail "status --json"
/usr/bin/python3 - status.json <<'PY' || fail "status --json: $(cat status.json)"
import json, sys
q = json.load(open(sys.argv[1]))["quarantine"]
assert len(q) == 1 and q[0]["domain"] == "node h3" and q[0]["active"], q
PY

# (b) A one-second cool-off: h3 comes back, fails again, is quarantined again.
: > "$log"
mkspec short 1s 300
timeout -k 5 90 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run short.yaml \
    --run-dir short > short.out 2> short.err
rc=$?
[ $rc -eq 0 ] || fail "run: exit $rc: $(tail -20 short.err)"
grep -q "300: 300 done, 0 failed" short.out || fail "counts: $(cat short.out)"
grep -q "quarantine of node h3 ends; it takes work again" short.err \
    || fail "no release: $(grep -i quarantine short.err)"
nq=$(grep -c "quarantine: node h3" short.err)
[ "$nq" -ge 2 ] || fail "quarantined $nq times, want >= 2: $(grep -i quarantine short.err)"
grep -q "; $nq quarantines$" short.out || fail "summary: $(grep domains short.out)"
[ "$(grep -c '"event":"quarantine","domain":"node h3"' short/events.jsonl)" -eq "$nq" ] \
    || fail "quarantine events: $(grep quarantine short/events.jsonl)"
grep -q '"event":"quarantine_end","domain":"node h3"' short/events.jsonl \
    || fail "no quarantine_end event: $(grep quarantine short/events.jsonl)"
grep -q "^gridrun_quarantines_total{run=\"[^\"]*\"} $nq$" short/metrics.prom \
    || fail "metrics: $(grep quarantines short/metrics.prom)"
echo "short cool-off: $nq quarantines in $(sed -n 's/.*finished in //p' short.out)"
pass
