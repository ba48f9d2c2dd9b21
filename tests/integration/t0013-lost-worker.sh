#!/bin/bash
# kill -9 of one worker rank mid-run: the master declares it lost, its
# tasks run elsewhere, every task completes exactly once, and the launcher
# exits 0 (mpirun's own exit code cannot say so).
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > job.yaml <<'YAML'
name: lost
tasks:
  - name: t
    command: [sleep, "0.1"]
    params: {i: {range: [1, 200]}}
YAML
GRIDRUN_FINALIZE_GRACE=3 gr_launch_bg 4 launch.log job.yaml --run-dir run --lost-after 3s
master=$(master_pid run)
sleep 1.5
# A rank, not the launcher (also named gridrun) and not the master.
victim=$(pgrep -s "$launch_pid" -x gridrun | grep -vx "$master" | grep -vx "$launch_pid" | head -1)
[ -n "$victim" ] || fail "no worker rank found"
kill -KILL "$victim"
echo "killed worker pid $victim"
wait "$launch_pid"
rc=$?
[ $rc -eq 0 ] || fail "launcher exit $rc: $(tail -20 launch.log)"
grep -q "is lost" launch.log || fail "no lost-worker message: $(tail -20 launch.log)"
grep -q "lost        1 worker" run/summary.txt || fail "summary: $(cat run/summary.txt)"
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done
[ "$(wc -l < done)" -eq 200 ] || fail "$(wc -l < done) done, want 200"
[ -z "$(uniq -d done)" ] || fail "a task counted twice"
# The event log and the metrics say so too.
grep -q '"event":"worker_lost","worker":[0-9]*,"host":"[^"]*","requeued":[0-9]*}' run/events.jsonl \
    || fail "no worker_lost event: $(grep -v tasks_done run/events.jsonl)"
grep -q '^gridrun_workers{run="lost",state="lost"} 1$' run/metrics.prom \
    || fail "metrics: $(grep gridrun_workers run/metrics.prom)"
pass
