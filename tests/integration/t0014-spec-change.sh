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

# The journal names tasks by their place in the spec of the incarnation
# that ran them (run/spec-HASH.pack).  A third spec moves every task: a new
# definition first and the values in reverse order.  Nothing may run again.
cat > job3.yaml <<YAML
name: change
tasks:
  - name: new
    command: [echo, new]
  - name: a
    command: [echo, "a{i}"]
    params: {i: [4, 3, 2, 1]}
  - name: flaky
    command: ["$GR_TOOL", fail-until, "2", "$WORK/count"]
YAML
[ "$(ls run/spec-*.pack | wc -l)" -eq 2 ] || fail "spec copies: $(ls run)"
before=$(cat run/out/w*.idx | wc -l)
gr_run 2 job3.yaml --run-dir run --force > out6.txt 2>&1
[ $? -eq 0 ] || fail "--force with moved tasks: $(cat out6.txt)"
grep -q "6: 6 done, 0 failed" out6.txt || fail "moved tasks: $(cat out6.txt)"
grep -q "5 done before" out6.txt || fail "moved tasks ran again: $(cat out6.txt)"
[ "$(cat run/out/w*.idx | wc -l)" -eq $((before + 1)) ] || fail "more than the new task ran"
"$GRIDRUN" status run --list done > done.txt || fail "status --list done"
[ "$(wc -l < done.txt)" -eq 6 ] || fail "status lists $(wc -l < done.txt) done: $(cat done.txt)"
grep -q "^a\[0\] " done.txt || fail "status names: $(cat done.txt)"

# Without the spec the first incarnations ran, their records cannot be
# named: a clear error, not a guess.
rm run/spec-*.pack
"$GRIDRUN" status run > st.txt 2>&1 && fail "status without the old specs succeeded"
grep -q "names tasks of spec [0-9a-f]\{16\}, which the run directory no longer holds" st.txt \
    || fail "missing spec message: $(cat st.txt)"
pass
