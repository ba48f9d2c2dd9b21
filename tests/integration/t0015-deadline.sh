#!/bin/bash
# --deadline: tasks whose expected duration does not fit are not started;
# the run drains before the deadline and exits 75; resuming finishes.
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > job.yaml <<'YAML'
name: deadline
grace: 1s
tasks:
  - name: quick
    command: [sleep, "0.2"]
    params: {i: {range: [1, 8]}}
    timeout: 2s
  - name: long
    command: [sleep, "1"]
    timeout: 60s
YAML
start=$(date +%s)
gr_run 3 job.yaml --run-dir run --deadline +4s > out.txt 2> err.txt
rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -eq 75 ] || fail "exit $rc, want 75: $(cat out.txt err.txt)"
[ $elapsed -le 8 ] || fail "ran ${elapsed}s past a 4 s deadline"
grep -q "8 done" out.txt || fail "the quick tasks did not all run: $(cat out.txt)"
[ -z "$(cat run/out/w*.idx | grep -P '\tlong\t')" ] || fail "long (timeout 60s) was started"
grep -q "no remaining task can finish before the deadline" err.txt || fail "no message: $(cat err.txt)"
gr_run 3 job.yaml --run-dir run > out2.txt 2>&1
[ $? -eq 0 ] || fail "resume: $(cat out2.txt)"
grep -q "9: 9 done" out2.txt || fail "resume counts: $(cat out2.txt)"

"$GRIDRUN" run job.yaml --deadline soon 2> err.txt
[ $? -eq 2 ] || fail "a bad --deadline must exit 2"
grep -q "is not a time" err.txt || fail "deadline message: $(cat err.txt)"
pass
