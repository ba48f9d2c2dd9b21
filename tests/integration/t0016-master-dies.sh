#!/bin/bash
# kill -9 of the master alone: with --enable-recovery nothing would end the
# job (the workers wait for the master forever), so the launcher notices,
# stops mpirun and exits 70; running the same command again resumes and
# completes every task exactly once.
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > job.yaml <<'YAML'
name: masterdies
tasks:
  - name: t
    command: [sleep, "0.1"]
    params: {i: {range: [1, 100]}}
YAML
GRIDRUN_FINALIZE_GRACE=3 gr_launch_bg 3 launch.log job.yaml --run-dir run
master=$(master_pid run)
sleep 1.5
[ -n "$master" ] || fail "no master pid"
t0=$(date +%s)
kill -KILL "$master"
wait "$launch_pid"
rc=$?
el=$(( $(date +%s) - t0 ))
[ $rc -eq 70 ] || fail "launcher exit $rc after the master died, want 70: $(tail -5 launch.log)"
[ $el -le 20 ] || fail "the launcher took ${el}s to notice"
grep -q "the master (pid $master) died" launch.log || fail "message: $(tail -5 launch.log)"
kill_session "$launch_pid"
gr_launch 3 job.yaml --run-dir run > resume.log 2>&1
rc=$?
[ $rc -eq 0 ] || fail "resume: exit $rc: $(tail -5 resume.log)"
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done
[ "$(wc -l < done)" -eq 100 ] || fail "$(wc -l < done) done, want 100"
[ -z "$(uniq -d done)" ] || fail "a task counted twice"

# Without the launcher (or with the master on another host than it), the
# workers notice by themselves: no word from the master for --lost-after.
rm -rf run2
( timeout -k 5 120 "$LOCAL_MPIRUN" -n 3 --enable-recovery "$GRIDRUN" run job.yaml \
    --run-dir run2 --lost-after 3s > direct.log 2>&1 ) &
sub=$!
master=$(master_pid run2)
sleep 1
t0=$(date +%s)
kill -KILL "$master"
wait $sub
el2=$(( $(date +%s) - t0 ))
[ $el2 -le 15 ] || fail "the workers took ${el2}s to leave after the master died"
grep -q "no word from the master" direct.log || fail "workers: $(tail -5 direct.log)"
gr_launch 3 job.yaml --run-dir run2 > resume2.log 2>&1 || fail "resume 2: $(tail -5 resume2.log)"
[ "$("$GRIDRUN" status --list done run2 | wc -l)" -eq 100 ] || fail "resume 2: not 100 done"
pass "launcher noticed in ${el}s; workers alone in ${el2}s"
