#!/bin/bash
# SIGTERM during a run: the run drains (running tasks get the grace, then
# SIGTERM and SIGKILL), exits 75 within grace + 2 s, and resuming it
# completes every task exactly once.  A second signal cuts the grace.
. "$(dirname "$0")/lib.sh"
test_timeout 300

stamps="$WORK/stamps"
: > "$stamps"
cat > job.yaml <<YAML
name: drain
grace: 3s
tasks:
  # First, so that it is running when the drain comes: it ignores SIGTERM
  # and must be killed at the end of the grace.
  - name: stubborn
    shell: 'trap "" TERM; echo "\$GRIDRUN_TASK_NAME" >> "$stamps"; sleep 31.7'
  - name: t
    shell: 'echo "\$GRIDRUN_TASK_NAME" >> "$stamps"; sleep 0.3'
    params: {i: {range: [1, 60]}}
YAML
gr_launch_bg 3 launch1.log job.yaml --run-dir run
sleep 2.5
t0=$(date +%s.%N)
kill -TERM "$launch_pid"
wait "$launch_pid"
rc=$?
elapsed=$(echo "$(date +%s.%N) - $t0" | bc)
[ $rc -eq 75 ] || fail "exit $rc after SIGTERM, want 75: $(tail -5 launch1.log)"
awk -v e="$elapsed" 'BEGIN { exit !(e <= 3 + 2) }' || fail "took ${elapsed}s to exit, grace is 3s"
grep -q "drained (resumable" run/summary.txt || fail "summary: $(cat run/summary.txt)"
[ "$(cat run/exit_status)" = 75 ] || fail "exit_status"
"$GRIDRUN" status run > status.txt
grep -q "drained (resumable)" status.txt || fail "status: $(cat status.txt)"
grep -qx stubborn "$stamps" || fail "the stubborn task never started"
sleep 0.5
pgrep -xf "sleep 31.7" > /dev/null && fail "the stubborn task outlived the drain"
echo "drained in ${elapsed}s"

# Resume: everything completes, each task exactly once.
gr_launch_bg 3 launch2.log job.yaml --run-dir run
pid2=$launch_pid
# A second run of the stubborn task: drain it with two signals; the second
# one must cut its grace to nothing.
sleep 2
kill -TERM $pid2 2> /dev/null
sleep 0.3
t1=$(date +%s.%N)
kill -TERM $pid2 2> /dev/null
wait $pid2
rc=$?
el2=$(echo "$(date +%s.%N) - $t1" | bc)
[ $rc -eq 75 ] || fail "second drain: exit $rc: $(tail -5 launch2.log)"
awk -v e="$el2" 'BEGIN { exit !(e < 2.5) }' || fail "a second signal still waited ${el2}s"

sed -i 's/sleep 31.7/sleep 0.1/' job.yaml
gr_launch 3 job.yaml --run-dir run --force > launch3.log 2>&1
rc=$?
[ $rc -eq 0 ] || fail "final resume: exit $rc: $(tail -5 launch3.log)"
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done
[ "$(wc -l < done)" -eq 61 ] || fail "$(wc -l < done) done, want 61"
[ -z "$(uniq -d done)" ] || fail "a task counted twice"
pgrep -xf "sleep 31.7" > /dev/null && fail "a stubborn task outlived its run"
# A signal while the last snapshot is being written (here, after every
# task is done): the master goes on waiting for its writer, so run.h5 is
# committed, not left as run.h5.tmp, and the run's outcome stands.
cat > big.yaml <<YAML
name: big
tasks:
  - name: n
    builtin: noop
    params: {i: {range: [1, 1000000]}}
YAML
gr_launch_bg 3 launch4.log big.yaml --run-dir run4 --max-prefetch 8192
for i in $(seq 1 1200); do
    [ -e run4/run.h5.tmp ] && break
    sleep 0.05
done
[ -e run4/run.h5.tmp ] || fail "the last snapshot was never seen being written: $(tail -5 launch4.log)"
kill -TERM "$launch_pid"
wait "$launch_pid"
rc=$?
[ $rc -eq 0 ] || fail "a signal during the last snapshot: exit $rc: $(tail -5 launch4.log)"
[ -f run4/run.h5 ] || fail "run.h5 not committed: $(ls run4) $(tail -5 launch4.log)"
[ ! -e run4/run.h5.tmp ] || fail "run.h5.tmp left behind"
h5dump -a /state run4/run.h5 2> /dev/null | grep -q '"finished"' \
    || fail "run.h5's state: $(h5dump -a /state run4/run.h5 2>&1 | head -5)"
grep -q "written in 0ms" run4/summary.txt && fail "summary: $(cat run4/summary.txt)"

pass "drained in ${elapsed}s, second signal ended a drain in ${el2}s"
