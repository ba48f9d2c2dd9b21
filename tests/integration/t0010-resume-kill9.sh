#!/bin/bash
# kill -9 of the whole process tree (launcher, mpirun, ranks, tasks) at 20
# random moments of a 2,000-task run, resuming after each.  At the end:
# every task completed exactly once (run.h5 and the journal agree), no
# task that was durably complete ever ran again, re-executions are exactly
# the tasks in flight at the kills, and no completed task's output is lost.
. "$(dirname "$0")/lib.sh"
test_timeout 600
command -v setsid > /dev/null && command -v pkill > /dev/null || skip "no setsid/pkill"

stamps="$WORK/stamps"
: > "$stamps"
cat > job.yaml <<YAML
name: kill9
tasks:
  - name: s
    shell: 'echo "\$GRIDRUN_TASK_NAME" >> "$stamps"; sleep 0.05; echo "out \$GRIDRUN_TASK_NAME"'
    params: {i: {range: [1, 2000]}}
YAML
args=(job.yaml --run-dir run --cpus-per-worker 4 --commit-interval 20ms)

sum_inflight=0
prev_lines=0
kills=0
for round in $(seq 1 20); do
    "$GRIDRUN" status --list done run 2> /dev/null | cut -d' ' -f1 | sort > done-before
    gr_launch_bg 3 launch-$round.log "${args[@]}"
    # A random moment, 0.3 to 1.5 s after the launch; but when what is left
    # would take less than 2.5 s (2 workers of 4 slots, 50 ms a task), 0.1
    # to 0.4 s, while the ranks start and replay: every kill must land
    # before the run ends (a fast start and long waits could otherwise
    # finish the 2,000 tasks before the 20th round).
    left=$((2000 - $(wc -l < done-before)))
    if [ $((left * 50 / 8)) -lt 2500 ]; then
        sleep "$(rand_between 1 4)"
    else
        sleep "$(rand_between 3 15)"
    fi
    if ! kill -0 "$launch_pid" 2> /dev/null; then
        # It finished before this kill: the last round.
        wait "$launch_pid"
        rc=$?
        [ $rc -eq 0 ] || fail "round $round ended with exit $rc: $(tail -5 launch-$round.log)"
        finished=1
    else
        kill_session "$launch_pid" || fail "round $round: processes survived SIGKILL"
        wait "$launch_pid" 2> /dev/null
        kills=$((kills + 1))
    fi
    lines=$(wc -l < "$stamps")
    # What ran in this round must not include anything durably done before.
    tail -n +"$((prev_lines + 1))" "$stamps" | sort > ran
    [ -z "$(comm -12 ran done-before)" ] \
        || fail "round $round re-ran completed tasks: $(comm -12 ran done-before | head -3)"
    "$GRIDRUN" status --list done run 2> /dev/null | cut -d' ' -f1 | sort > done-after
    completed=$(comm -13 done-before done-after | wc -l)
    executed=$(wc -l < ran)
    [ "$completed" -le "$executed" ] || fail "round $round: $completed completions from $executed executions"
    sum_inflight=$((sum_inflight + executed - completed))
    [ "$(wc -l < done-after)" -ge "$(wc -l < done-before)" ] || fail "round $round lost completions"
    prev_lines=$lines
    [ -n "${finished:-}" ] && break
done
echo "killed $kills times; $sum_inflight task executions were in flight at the kills"
[ "$kills" -eq 20 ] || fail "only $kills of 20 kills landed mid-run"

# The last resume runs to the end (and, if a round already finished the
# run, runs nothing).
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done-before
gr_launch 3 "${args[@]}" > final.log 2>&1
rc=$?
[ $rc -eq 0 ] || fail "final resume: exit $rc: $(tail -5 final.log)"
tail -n +"$((prev_lines + 1))" "$stamps" | sort > ran
[ -z "$(comm -12 ran done-before)" ] || fail "the final run re-ran completed tasks: $(comm -12 ran done-before | head -3)"

# Exactly once: 2000 distinct tasks done, none twice, in the journal...
"$GRIDRUN" status --json run > status.json
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done-final
[ "$(wc -l < done-final)" -eq 2000 ] || fail "$(wc -l < done-final) tasks done, want 2000"
[ -z "$(uniq -d done-final)" ] || fail "a task is done twice"
# ... and in run.h5.
if /usr/bin/python3 -c 'import h5py' 2> /dev/null; then
    /usr/bin/python3 - run/run.h5 <<'PY' || fail "run.h5 check failed"
import sys, h5py, collections
f = h5py.File(sys.argv[1], "r")
t = f["tasks"][:]
states = h5py.check_enum_dtype(f["tasks"].dtype["state"])
done = states["done"]
keys = collections.Counter(int(k) for k, s in zip(t["key"], t["state"]) if s == done)
assert len(keys) == 2000, len(keys)
assert all(c == 1 for c in keys.values())
assert f["counts"].attrs["done"] == 2000
print("run.h5: 2000 distinct keys done")
PY
fi
# Re-executions are exactly the tasks that were in flight at the kills.
total=$(wc -l < "$stamps")
reexec=$((total - 2000))
echo "executions $total, re-executions $reexec, in flight at kills $sum_inflight"
[ "$reexec" -le "$sum_inflight" ] || fail "$reexec re-executions > $sum_inflight in flight"
# No output lost: every task's output is there.
for i in 0 1 999 1998 1999 $((RANDOM % 2000)); do
    [ "$("$GRIDRUN" output run "s[$i]")" = "out s[$i]" ] || fail "output of s[$i] lost"
done
missing=$(cat run/out/w*.idx | awk -F'\t' '$4 == 0 { print $3 }' | sort -u | wc -l)
[ "$missing" -eq 2000 ] || fail "only $missing tasks have a successful output record"
pass "$kills kills, $reexec re-executions"
