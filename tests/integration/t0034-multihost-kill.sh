#!/bin/bash
# Three emulated hosts (tests/integration/netns.sh) under `gridrun launch`,
# with the site file of two racks; mid-run every process of h3 (its
# Open MPI daemon, its worker rank and that worker's tasks) is killed with
# SIGKILL, as when a node dies.  The master declares h3's worker lost,
# its tasks finish on h1 and h2, every task completes exactly once, nothing
# is lost, and the launcher exits 0.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 110

netns_up 3 2    # -n 5: master and a worker on h1, two workers on h2, one on h3

netns_site site.yaml
seen="$WORK/seen"
: > "$seen"
cat > job.yaml <<YAML
name: kill
tasks:
  - name: t
    shell: 'sleep 0.2; echo "\$(hostname) {i}" >> "\$SEEN"'
    env: {SEEN: "$seen"}
    params: {i: {range: [1, 300]}}
    retry_away: node
YAML
start=$(date +%s)
GRIDRUN_FINALIZE_GRACE=3 GRIDRUN_MPIRUN="$NETNS_MPIRUN" setsid \
    "$NETNS_RSH" --exec h1 "$GRIDRUN" launch -n 5 --hostfile "$WORK/hosts" -- \
    job.yaml --run-dir run --site site.yaml --lost-after 5s > launch.log 2>&1 &
launch_pid=$!

wait_done run 30 "$launch_pid" launch.log
pids=$(netns_pids h3)
[ -n "$pids" ] || fail "no process on h3"
kill -9 $pids
# Count h3's lines once its processes are gone: tasks that ended while
# the pids were being listed are h3's too.
for i in $(seq 1 100); do
    alive=0
    for p in $pids; do
        st=$(awk '{ print $3 }' "/proc/$p/stat" 2> /dev/null)
        [ -n "$st" ] && [ "$st" != Z ] && alive=1
    done
    [ $alive = 0 ] && break
    sleep 0.05
done
before=$(grep -c '^h3 ' "$seen")
echo "killed $(echo $pids | wc -w) processes of h3 after $(($(date +%s) - start)) s, $done_now tasks done"

wait "$launch_pid"
rc=$?
echo "launcher exited $rc after $(($(date +%s) - start)) s"
[ $rc -eq 0 ] || fail "launcher exit $rc: $(tail -20 launch.log)"
grep -q "worker 4 on h3 is lost" launch.log || fail "no lost-worker message: $(tail -20 launch.log)"
grep -q "lost        1 worker" run/summary.txt || fail "summary: $(cat run/summary.txt)"
"$GRIDRUN" status --list "done" run | cut -d' ' -f1 | sort > done.keys
[ "$(wc -l < done.keys)" -eq 300 ] || fail "$(wc -l < done.keys) done, want 300"
[ -z "$(uniq -d done.keys)" ] || fail "a task counted twice"
# Every task ran to its end at least once; none ran on h3 after the kill
# (a task killed there mid-run leaves no line).
diff <(cut -d' ' -f2 "$seen" | tr -d "'" | sort -nu) <(seq 1 300) > /dev/null \
    || fail "some task never finished"
[ "$(grep -c '^h3 ' "$seen")" -eq "$before" ] || fail "h3 ran tasks after it was killed"
pass
