#!/bin/bash
# Resume refuses a changed spec and says what changed; --force matches
# tasks by key; --retry-failed runs tasks that failed for good again.
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > job.yaml <<YAML
name: change
tasks:
  - name: a
    command: [echo, "a{i}"]
    params: {i: [1, 2, 3]}
  - name: flaky
    command: ["$GR_TOOL", fail-until, "2", "$WORK/count"]
YAML
gr_run 2 job.yaml --run-dir run > out1.txt 2>&1
[ $? -eq 1 ] || fail "first run should fail (flaky fails once, no retries)"

sed 's/\[1, 2, 3\]/[1, 2, 3, 4]/' job.yaml > job2.yaml
gr_run 2 job2.yaml --run-dir run > out2.txt 2> err2.txt
[ $? -eq 2 ] || fail "a changed spec was not refused"
grep -q "task 'a': its params changed (4 tasks, was 3)" err2.txt || fail "what changed: $(cat err2.txt)"
grep -q -- "--force" err2.txt || fail "no hint about --force"

gr_run 2 job2.yaml --run-dir run --force > out3.txt 2>&1
[ $? -eq 1 ] || fail "--force resume: flaky still failed for good"
grep -q "5: 4 done, 1 failed" out3.txt || fail "--force counts: $(cat out3.txt)"
grep -q "3 done before" out3.txt || fail "--force did not keep the finished tasks: $(cat out3.txt)"
[ "$(cat run/out/w*.idx | grep -c $'\ta\\[3\\]\t')" -eq 1 ] || fail "the new task did not run once"

gr_run 2 job2.yaml --run-dir run --retry-failed > out4.txt 2>&1
[ $? -eq 0 ] || fail "--retry-failed: $(cat out4.txt)"
grep -q "5: 5 done, 0 failed" out4.txt || fail "--retry-failed counts: $(cat out4.txt)"
[ "$(cat count)" = 2 ] || fail "flaky ran $(cat count) times"

# Resume with the stored spec alone.
gr_run 2 --run-dir run > out5.txt 2>&1
[ $? -eq 0 ] || fail "resume without a spec: $(cat out5.txt)"
grep -q "5: 5 done" out5.txt || fail "resume without a spec: $(cat out5.txt)"
pass
