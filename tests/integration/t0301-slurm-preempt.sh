#!/bin/bash
# A 500-task sweep submitted with gridrun-sbatch to a real Slurm cluster is
# interrupted three times: by `scancel --signal=TERM --batch` (the warning
# signal before a time limit, to the batch shell), by `scancel
# --signal=TERM` (what Slurm sends every process of the steps at the end,
# tasks included), and by a real preemption (a job of the higher-priority
# partition; PreemptMode=REQUEUE, preempt_send_user_signal).  Each time
# gridrun drains and exits 75; the job is requeued (SLURM_RESTART_COUNT 1,
# 2, 3), resumes the same run directory, and in the end every task is
# completed exactly once (journal and run.h5), none fails, and the job
# ends COMPLETED with exit 0.  The requeue and resume timeline is printed.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/slurm.sh" || exit 1
test_timeout 170

command -v sbatch > /dev/null || skip "Slurm (sbatch) is not installed"
slurm_up --nodes 1 --cpus 4
SBATCH="$GR_SRCDIR/scripts/gridrun-sbatch"

stamps="$WORK/stamps"
: > "$stamps"
cat > job.yaml <<YAML
name: sweep
tasks:
  - name: s
    shell: 'echo "\$GRIDRUN_TASK_NAME" >> "$stamps"; sleep 0.1'
    params: {i: {range: [1, 500]}}
YAML

# timeline TEXT: a line of the timeline, with the seconds since the start.
timeline () {
    printf '%6ss  %s\n' "$(since)" "$*" | tee -a timeline.txt
}

# wait_restart JOB N: wait until JOB has been requeued and its script runs
# again as restart N.
wait_restart () {
    local job=$1 n=$2 i st pending=""
    for i in $(seq 1 300); do
        st=$(squeue -h -j "$job" -o %T 2> /dev/null)
        if [ "$st" = PENDING ] && [ -z "$pending" ]; then
            pending=1
            timeline "job $job requeued (pending, reason $(squeue -h -j "$job" -o %r))"
        fi
        if grep -q "job $job (restart $n) on" "run/slurm-$job.out" 2> /dev/null; then
            [ -n "$pending" ] || fail "job $job restarted without being seen pending"
            timeline "job $job running again (restart $n), $(run_done run) done"
            return 0
        fi
        [ -z "$st" ] && fail "job $job left the queue: $(tail -5 run/slurm-"$job".out)"
        sleep 0.1
    done
    fail "job $job did not restart: $(squeue -j "$job" 2>&1 | tail -1)"
}

"$SBATCH" -n 4 --grace 3s -d run job.yaml > submit.out 2>&1 || fail "submit: $(cat submit.out)"
job=$(sed -n 's/^Submitted batch job //p' submit.out)
timeline "submitted job $job"
wait_run_done run 100 60
timeline "$(run_done run) done: scancel --signal=TERM --batch $job"
scancel --signal=TERM --batch "$job" || fail "scancel failed"
wait_restart "$job" 1
wait_run_done run 200 60

# The signal Slurm sends at the end of a job, or at a preemption without
# the user's signal: TERM to every process of the job's steps, tasks
# included (not to the batch shell).  The tasks it kills are requeued, not
# failed, and gridrun's exit 75 alone makes the script requeue the job.
timeline "$(run_done run) done: scancel --signal=TERM $job (every process of the steps)"
scancel --signal=TERM "$job" || fail "scancel failed"
wait_restart "$job" 2
wait_run_done run 350 60

# A real preemption: the urgent partition's job needs every cpu.
timeline "$(run_done run) done: submitting a job to the urgent partition"
urgent=$(sbatch --parsable -p urgent -n 4 -o urgent.out --wrap 'sleep 2') || fail "sbatch urgent"
wait_restart "$job" 3
slurm_wait_gone "$job" 90
timeline "job $job left the queue: $(slurm_field "$job" JobState), $(run_done run) done"

# The job: completed, exit 0, requeued twice.
log=run/slurm-$job.out
[ "$(slurm_field "$job" JobState)" = COMPLETED ] || fail "job state $(slurm_field "$job" JobState): $(tail -20 "$log")"
[ "$(slurm_field "$job" ExitCode)" = 0:0 ] || fail "job exit $(slurm_field "$job" ExitCode)"
[ "$(slurm_field "$job" Restarts)" = 3 ] || fail "Restarts=$(slurm_field "$job" Restarts), want 3"
[ "$(grep -c 'gridrun ended with exit code 75' "$log")" = 3 ] || fail "not three drains: $(cat "$log")"
[ "$(grep -c 'requeueing job' "$log")" = 3 ] || fail "not three requeues: $(cat "$log")"
# The batch shell saw the signal of the first and third interruption.
# (At the preemption Slurm may signal the batch shell again while it
# requeues, after gridrun has left: a line without a master.)
drained_at=$(awk '/\(restart [0-9]+\) on/ { match ($0, /\(restart [0-9]+/); r = substr ($0, RSTART + 9, RLENGTH - 9) }
                  /signal TERM: draining the run \(SIGUSR2 to the master/ { seen[r] = 1 }
                  END { for (k in seen) printf "%s ", k }' "$log" | tr ' ' '\n' | sort | xargs)
[ "$drained_at" = "0 2" ] || fail "the batch shell drained gridrun in restarts '$drained_at', not 0 and 2: $(cat "$log")"
grep -q "(restart 3) on n1" "$log" || fail "no fourth run: $(cat "$log")"
# The urgent job, which needs every cpu the sweep held, ran to its end
# before the sweep started again: it preempted the sweep.
[ "$(slurm_field "$urgent" JobState)" = COMPLETED ] || fail "urgent job: $(slurm_field "$urgent" JobState)"
u_end=$(slurm_field "$urgent" EndTime)
j_start=$(slurm_field "$job" StartTime)
[ -n "$u_end" ] && ! [ "$u_end" \> "$j_start" ] \
    || fail "the urgent job ended at $u_end, after the sweep restarted at $j_start"
timeline "urgent job $urgent ran $(slurm_field "$urgent" StartTime) to $u_end; the sweep restarted at $j_start"

# Exactly once: 500 distinct tasks done, none twice, none failed, in the
# journal and in run.h5, incarnation 4.
grep -q "incarnation 4" run/summary.txt || fail "summary: $(cat run/summary.txt)"
grep -q "500 done, 0 failed" run/summary.txt || fail "summary: $(cat run/summary.txt)"
"$GRIDRUN" status --list done run | cut -d' ' -f1 | sort > done
[ "$(wc -l < done)" -eq 500 ] || fail "$(wc -l < done) tasks done, want 500"
[ -z "$(uniq -d done)" ] || fail "a task is done twice"
"$GRIDRUN" status --json run > status.json
grep -q '"duplicates": 0' status.json || fail "duplicate completions: $(grep duplicates status.json)"
if /usr/bin/python3 -c 'import h5py' 2> /dev/null; then
    /usr/bin/python3 - run/run.h5 <<'PY' || fail "run.h5 check failed"
import sys, h5py, collections
f = h5py.File(sys.argv[1], "r")
t = f["tasks"][:]
done = h5py.check_enum_dtype(f["tasks"].dtype["state"])["done"]
keys = collections.Counter(int(k) for k, s in zip(t["key"], t["state"]) if s == done)
assert len(keys) == 500 and all(c == 1 for c in keys.values()), len(keys)
assert f["counts"].attrs["done"] == 500
PY
fi
# The batch shell's drains let running tasks finish (the signal went to
# the master alone); the TERM to the steps killed what ran (3 workers).
execs=$(wc -l < "$stamps")
[ "$(sort -u "$stamps" | wc -l)" -eq 500 ] || fail "$(sort -u "$stamps" | wc -l) distinct tasks ran"
reexec=$((execs - 500))
[ "$reexec" -le 6 ] || fail "$reexec tasks ran twice; at most the 3 running at the TERM should"
timeline "500 tasks done exactly once, $reexec ran twice"
pass "3 requeues, $reexec re-executions"
