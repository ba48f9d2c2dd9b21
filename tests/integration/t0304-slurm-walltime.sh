#!/bin/bash
# The walltime drain against a real Slurm time limit.  Slurm 22.05 exports
# no SLURM_JOB_END_TIME, so gridrun (under srun, in a plain sbatch job: no
# gridrun-sbatch, no warning signal) asks squeue for the job's end time
# itself.  Job A (--time=1, the smallest limit) holds a sweep that does not
# fit in the minute: gridrun takes the end time from Slurm, never starts a
# task whose expected duration does not fit (one with a 2-minute timeout),
# drains before the limit for the deadline, lets every running task end,
# and exits 75; Slurm never kills the job for its time limit.  Job B,
# beside it, starts with a 2-minute limit that `scontrol update` cuts to 1
# minute once gridrun runs: the master reads the end time again
# (GRIDRUN_SLURM_REREAD) and drains before the new limit.  Then a third
# job without a limit resumes A's run directory and completes every task
# exactly once.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/slurm.sh" || exit 1
test_timeout 200

command -v sbatch > /dev/null || skip "Slurm (sbatch) is not installed"
# Two jobs of 3 ranks side by side; nothing is bound, the tasks sleep.
slurm_up --nodes 1 --cpus 8

# 2 workers, 2 s a task: 60 tasks are 60 s of work, past the minute.
cat > job.yaml <<'YAML'
name: walltime
tasks:
  - name: s
    command: [sleep, "2"]
    params: {i: {range: [1, 60]}}
    timeout: 10s
  - name: long
    command: [sleep, "1"]
    timeout: 2m
YAML
ntasks=61

# batch.sh RUN [ARGS...]: the batch script: gridrun under srun, its exit
# code into RUN.rc; the job itself ends 0 (COMPLETED), so that a job
# state other than COMPLETED is Slurm's doing.
cat > batch.sh <<EOF
#!/bin/bash
srun --mpi=pmix "$GRIDRUN" run -v --grace 5s --run-dir "\$@" > "\$1.log" 2>&1
echo \$? > "\$1.rc"
EOF
chmod +x batch.sh

# epoch LOCAL-TIME: Slurm's and gridrun's local times as epoch seconds.
epoch () {
    date -d "$1" +%s
}

# timeline TEXT: a line of the timeline, with the seconds since the start.
timeline () {
    printf '%6ss  %s\n' "$(since)" "$*" | tee -a timeline.txt
}

# wait_line FILE PATTERN SECS: wait until FILE has a line matching PATTERN.
wait_line () {
    local i
    for i in $(seq 1 $(($3 * 10))); do
        grep -q -- "$2" "$1" 2> /dev/null && return 0
        sleep 0.1
    done
    fail "no '$2' in $1 after $3 s: $(tail -5 "$1" 2> /dev/null)"
}

# check_drained NAME JOB RUN LIMIT: what the job of RUN did before a time
# limit of LIMIT seconds.
check_drained () {
    local name=$1 job=$2 run=$3 limit=$4 log=$3.log
    local state start end_by drain_at left ended
    state=$(slurm_field "$job" JobState)
    [ "$state" = COMPLETED ] || fail "$name: job $job ended $state, not COMPLETED: $(tail -20 "$log")"
    grep -q "Time limit exhausted for JobId=$job\$" "$SLURM_DIR/log/slurmctld.log" \
        && fail "$name: Slurm killed job $job for its time limit"
    [ "$(cat "$run.rc")" = 75 ] || fail "$name: gridrun exit $(cat "$run.rc"), want 75 (drained): $(tail -20 "$log")"
    [ "$(cat "$run/exit_status")" = 75 ] || fail "$name: exit_status $(cat "$run/exit_status")"
    # The end time gridrun drained for is the job's limit.
    start=$(epoch "$(slurm_field "$job" StartTime)")
    end_by=$(sed -n 's/.*info: the run ends by \([0-9T:-]*\) .*/\1/p; s/.*warn: Slurm job [0-9]* now ends at \([0-9T:-]*\) .*/\1/p' "$log" | tail -1)
    [ -n "$end_by" ] || fail "$name: gridrun logged no end time: $(head -5 "$log")"
    end_by=$(epoch "$end_by")
    [ $((end_by - start)) -eq "$limit" ] \
        || fail "$name: gridrun's end time is $((end_by - start)) s after the start, the limit $limit s"
    # A deadline drain (reason "deadline", not a signal) before the end.
    grep -q '"event":"drain","reason":"deadline"' "$run/events.jsonl" \
        || fail "$name: no deadline drain: $(grep drain "$run/events.jsonl")"
    drain_at=$(sed -n 's/.*"time":\([0-9]*\).*"event":"drain".*/\1/p' "$run/events.jsonl" | head -1)
    left=$((end_by - drain_at))
    [ "$left" -ge 3 ] || fail "$name: drained only $left s before the end"
    # Over by the end time itself (Slurm would only act up to 30 s later).
    ended=$(epoch "$(slurm_field "$job" EndTime)")
    [ "$ended" -le "$end_by" ] || fail "$name: job $job ended $((ended - end_by)) s after its end time"
    # No task was cut off: every attempt that started ended by itself, 0.
    if index_lines "$run" | awk '$4 != 0 || $5 != 0 { bad = 1 } END { exit !bad }'; then
        fail "$name: an attempt did not end well: $(index_lines "$run" | awk '$4 != 0 || $5 != 0')"
    fi
    grep '"event":"task_' "$run/events.jsonl" | grep -v '"outcome":"done"' \
        | grep -v '"wall":0\.0,' > cut.txt
    [ -s cut.txt ] && fail "$name: tasks were stopped mid-run: $(cat cut.txt)"
    timeline "$name: job $job $state, gridrun exit 75, drained $left s before the end," \
        "$(run_done "$run") done, job over $((end_by - ended)) s before its limit"
}

sbatch --parsable --time=1 -n 3 -o a.out ./batch.sh "$WORK/a" job.yaml > a.id 2>&1 \
    || fail "sbatch A: $(cat a.id)"
job_a=$(cat a.id)
sbatch --parsable --time=2 -n 3 -o b.out --export=ALL,GRIDRUN_SLURM_REREAD=2s \
    ./batch.sh "$WORK/b" job.yaml > b.id 2>&1 || fail "sbatch B: $(cat b.id)"
job_b=$(cat b.id)
timeline "submitted job $job_a (--time=1) and job $job_b (--time=2)"

# A: the end time came from squeue.
wait_line a.log "the run ends by" 30
grep -q "info: the run ends by .*: the end time of Slurm job $job_a, from squeue" a.log \
    || fail "A: the end time did not come from squeue: $(grep 'ends by' a.log)"
timeline "A: $(grep -o 'the run ends by.*' a.log)"

# B: a limit cut to one minute while gridrun runs.
wait_line b.log "the run ends by" 30
scontrol update JobId="$job_b" TimeLimit=1 || fail "scontrol update of job $job_b failed"
timeline "B: $(grep -o 'the run ends by.*' b.log); TimeLimit cut to 1 minute"
wait_line b.log "warn: Slurm job $job_b now ends at" 15
timeline "B: $(grep -o 'Slurm job [0-9]* now ends at.*' b.log)"

slurm_wait_gone "$job_a" 120
slurm_wait_gone "$job_b" 60
check_drained A "$job_a" a 60
check_drained B "$job_b" b 60
# A never started the task whose timeout (2 minutes) does not fit in the
# job's minute.
index_lines a | grep -qP '\tlong\t' && fail "A started 'long' (timeout 2m) in a 1-minute job"
a_done=$(run_done a)
[ "$a_done" -ge 20 ] && [ "$a_done" -lt "$ntasks" ] || fail "A: $a_done tasks done"

# The resume, in a job with no time limit.
sbatch --parsable -n 3 -o c.out ./batch.sh "$WORK/a" > c.id 2>&1 || fail "sbatch C: $(cat c.id)"
job_c=$(cat c.id)
slurm_wait_gone "$job_c" 60
[ "$(cat a.rc)" = 0 ] || fail "resume: gridrun exit $(cat a.rc): $(tail -20 a.log)"
grep -q "incarnation 2" a/summary.txt || fail "resume: $(cat a/summary.txt)"
"$GRIDRUN" status --json a > status.json
grep -q "\"done\": $ntasks," status.json || fail "resume: $(cat status.json)"
grep -q '"duplicates": 0' status.json || fail "duplicate completions: $(grep duplicates status.json)"
"$GRIDRUN" status --list done a | cut -d' ' -f1 | sort > done.txt
[ "$(wc -l < done.txt)" -eq "$ntasks" ] && [ -z "$(uniq -d done.txt)" ] \
    || fail "done once each: $(uniq -c done.txt | awk '$1 != 1')"
# Run once each, too: no attempt was cut off and run again.
[ "$(index_lines a | cut -f1 | sort | uniq -d)" = "" ] || fail "a task ran twice"
[ "$(index_lines a | wc -l)" -eq "$ntasks" ] || fail "$(index_lines a | wc -l) attempts for $ntasks tasks"
timeline "C: job $job_c resumed A's run: $ntasks tasks done, each once"
pass "$(since)s"
