#!/bin/bash
# Three emulated hosts (tests/integration/netns.sh) under `gridrun launch`;
# mid-run h3's link is cut.  The master declares h3's worker lost after
# --lost-after, its tasks run on h1 and h2, every task completes exactly
# once, the launcher exits 0, and status and summary count the lost worker.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 110

netns_up 3 2    # -n 5: master and a worker on h1, two workers on h2, one on h3

cat > job.yaml <<'YAML'
name: lost
tasks:
  - name: t
    shell: 'sleep 0.2; hostname'
    params: {i: {range: [1, 300]}}
YAML
# The launcher runs on h1 too, so it sees the master's pid and host.  After
# a lost host mpirun can hang; the launcher ends it 3 s after the commit.
start=$(date +%s)
GRIDRUN_FINALIZE_GRACE=3 GRIDRUN_MPIRUN="$NETNS_MPIRUN" setsid \
    "$NETNS_RSH" --exec h1 "$GRIDRUN" launch -n 5 --hostfile "$WORK/hosts" -- \
    job.yaml --run-dir run --lost-after 5s > launch.log 2>&1 &
launch_pid=$!

# Cut once every worker is busy (30 tasks done).
wait_done run 30 "$launch_pid" launch.log
netns_link h3 down
echo "cut h3 after $(($(date +%s) - start)) s, $done_now tasks done"

wait "$launch_pid"
rc=$?
echo "launcher exited $rc after $(($(date +%s) - start)) s"
[ $rc -eq 0 ] || fail "launcher exit $rc: $(tail -20 launch.log)"
grep -q "worker 4 on h3 is lost" launch.log || fail "no lost-worker message: $(tail -20 launch.log)"
grep -q "lost        1 worker" run/summary.txt || fail "summary: $(cat run/summary.txt)"
# Asked on h1, where the master ran, status knows the run finished.
netns_exec h1 "$GRIDRUN" status run > status.out 2>&1 || fail "status: $(cat status.out)"
grep -q "finished" status.out || fail "status: $(cat status.out)"
grep -q "lost        1 worker" status.out || fail "status: $(cat status.out)"
"$GRIDRUN" status --list "done" run | cut -d' ' -f1 | sort > done.keys
[ "$(wc -l < done.keys)" -eq 300 ] || fail "$(wc -l < done.keys) done, want 300"
[ -z "$(uniq -d done.keys)" ] || fail "a task counted twice"
pass
