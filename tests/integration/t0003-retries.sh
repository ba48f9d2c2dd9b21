#!/bin/bash
# Failing tasks are retried with backoff, then reported; exit code 1.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > retry.yaml <<YAML
name: retry
tasks:
  - name: flaky
    command: ["$GR_TOOL", fail-until, "3", "$WORK/count-{i}"]
    params: {i: [1, 2, 3, 4]}
    retries: {max: 3, backoff: 0.1s, jitter: 0.5}
  - name: broken
    command: ["$GR_TOOL", exit, "5"]
    retries: {max: 2, backoff: 0.05s}
  - name: later
    command: [echo, never]
    after: [broken]
YAML
gr_run 3 retry.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 1 ] || fail "exit $rc, want 1: $(cat out.txt err.txt)"
grep -q "6: 4 done, 1 failed, 1 skipped" out.txt || fail "counts: $(cat out.txt)"
grep -q "15: 10 retried" out.txt || fail "attempts line: $(cat out.txt)"
grep -q "failed      broken (.*): exit 5, attempt 3" out.txt || fail "failure line: $(cat out.txt)"
for i in 1 2 3 4; do
    [ "$(cat count-$i)" = 3 ] || fail "flaky[$i] ran $(cat count-$i) times, want 3"
done
# Each attempt's output is kept and can be asked for.
[ "$("$GRIDRUN" output run 'flaky[0]')" = "run 3 of 3" ] || fail "last attempt output"
[ "$("$GRIDRUN" output --attempt 1 run 'flaky[0]')" = "run 1 of 3" ] || fail "attempt 1 output"
[ "$(index_lines run | grep -c $'\tbroken\t5\t')" -eq 3 ] || fail "broken attempts in index"
[ "$(cat run/exit_status)" = 1 ] || fail "exit_status file"
pass
