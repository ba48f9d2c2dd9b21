#!/bin/bash
# A SIGSEGV task is reported as such, becomes poison after crash_limit
# crashes, and never takes its worker down.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > crash.yaml <<YAML
name: crash
tasks:
  - name: segv
    command: ["$GR_TOOL", segv]
    retries: {max: 5, backoff: 0, crash_limit: 2}
  - name: after_crash
    command: [echo, "still here {i}"]
    params: {i: {range: [1, 50]}}
YAML
gr_run 2 crash.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 1 ] || fail "exit $rc, want 1: $(cat out.txt err.txt)"
grep -q "51: 50 done, 1 failed (1 poison)" out.txt || fail "counts: $(cat out.txt)"
grep -q "segv (.*): killed by SIGSEGV, attempt 2" out.txt || fail "report: $(cat out.txt)"
grep -q "2 crashed" out.txt || fail "crashes not counted: $(cat out.txt)"
grep -q "is poison" err.txt || fail "no poison warning: $(cat err.txt)"
[ "$(index_lines run | grep -c $'\tsegv\t-11\t')" -eq 2 ] || fail "index has not 2 SIGSEGV attempts"
[ "$("$GRIDRUN" output run 'after_crash[49]')" = "still here 50" ] || fail "later task output"
pass
