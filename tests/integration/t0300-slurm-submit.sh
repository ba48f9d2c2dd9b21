#!/bin/bash
# gridrun-sbatch (gridrun submit): bad options and specs are refused with
# exit 2 and a message naming the value, before anything is submitted; the
# batch script of --dry-run has the requeue, append and signal directives,
# parses, and carries hostile paths and arguments as data.  Then, on a real
# Slurm cluster (scripts/slurm-test-cluster), a job submitted with the srun
# launcher and one with the mpirun launcher run to the end, exit 0, and
# leave their output and a copy of the script in the run directory.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/slurm.sh" || exit 1
test_timeout 150

SBATCH="$GR_SRCDIR/scripts/gridrun-sbatch"
export PATH="$GR_SRCDIR/scripts:$PATH"

cat > job.yaml <<'YAML'
name: small
tasks:
  - name: t
    shell: 'echo "$GRIDRUN_TASK_NAME on $SLURMD_NODENAME"; sleep 0.05'
    params: {i: {range: [1, 30]}}
YAML

# refused WANT-IN-MESSAGE ARGS...: gridrun-sbatch ARGS exits 2, names the
# problem, and submits nothing.
refused () {
    local want=$1
    shift
    "$SBATCH" "$@" > refused.out 2> refused.err
    local rc=$?
    [ $rc -eq 2 ] || fail "gridrun-sbatch $*: exit $rc, want 2: $(cat refused.err)"
    grep -qF -- "$want" refused.err || fail "gridrun-sbatch $*: message lacks '$want': $(cat refused.err)"
    [ -s refused.out ] && fail "gridrun-sbatch $*: printed on stdout: $(cat refused.out)"
    return 0
}
refused "--nodes '0'" --nodes 0 job.yaml
refused "--nodes 'two'" --nodes two job.yaml
refused "--ntasks '-3'" --ntasks -3 job.yaml
refused "--time '1 hour'" --time "1 hour" job.yaml
refused "--signal 'BOGUS'" --signal BOGUS job.yaml
refused "cannot be caught" --signal KILL job.yaml
refused "--signal-time '0'" --signal-time 0 job.yaml
refused "at most 65535" --signal-time 70000 job.yaml
refused "--grace 5m" --grace 5m --signal-time 120 job.yaml
refused "--grace 'soon'" --grace soon job.yaml
refused "--launcher 'ssh'" --launcher ssh job.yaml
refused "--partition 'a b'" --partition "a b" job.yaml
refused "unknown option '--frobnicate'" --frobnicate job.yaml
refused "one job spec only" job.yaml other.yaml
refused "give a job spec" --nodes 1
refused "cannot read the job spec" no-such-spec.yaml
refused "--nodes needs a value" job.yaml --nodes
refused "holds no run to resume" --run-dir "$WORK/empty-dir"
# A spec error is the spec's own message, with FILE:LINE:COL.
"$SBATCH" "$GR_TEST_DATA/spec-bad-dup-task.yaml" > /dev/null 2> bad.err
[ $? -eq 2 ] || fail "a bad spec was not refused: $(cat bad.err)"
grep -qE "spec-bad-dup-task.yaml:[0-9]+:[0-9]+: " bad.err || fail "no FILE:LINE:COL: $(cat bad.err)"
grep -q "nothing was submitted" bad.err || fail "bad spec: $(cat bad.err)"

# --dry-run: the directives, a script bash parses, and paths and arguments
# that are data, never code.
"$SBATCH" --dry-run -N 1 -n 4 -t 10 -p batch job.yaml > dry.sh 2> dry.err \
    || fail "dry run: $(cat dry.err)"
for d in "--requeue" "--open-mode=append" "--signal=B:TERM@180" "--nodes=1" "--ntasks=4" \
         "--time=10" "--partition=batch" "--job-name=gridrun-small"; do
    grep -qx "#SBATCH $d" dry.sh || fail "dry run: no '#SBATCH $d' in: $(cat dry.sh)"
done
bash -n dry.sh || fail "the batch script does not parse"
grep -q 'scontrol requeue "$SLURM_JOB_ID"' dry.sh || fail "no requeue in the script"
[ -e "$WORK"/gridrun-small-* ] && fail "a dry run made a run directory"
"$SBATCH" --dry-run --signal 12 --signal-time 300 job.yaml | grep -qx "#SBATCH --signal=B:USR2@300" \
    || fail "--signal 12 is not USR2"
"$SBATCH" --dry-run --signal USR1 job.yaml 2>&1 > /dev/null | grep -q "SIGUSR1" \
    || fail "no note about SIGUSR1"
# gridrun submit runs the same script.
"$GRIDRUN" submit --dry-run job.yaml | grep -qx "#SBATCH --requeue" || fail "gridrun submit --dry-run"

evil_dir="$WORK/run \$(touch pwned) \`touch pwned2\` ';\"x\" %j"
evil_arg='--site=$(touch pwned3) x'\''y'
"$SBATCH" --dry-run -d "$evil_dir" job.yaml -- "$evil_arg" > evil.sh 2> evil.err \
    || fail "dry run with a hostile run dir: $(cat evil.err)"
bash -n evil.sh || fail "the batch script with a hostile path does not parse"
# The assignments give back the exact values, and run nothing.
got=$(bash -c "$(grep -E '^(run_dir|run_args)=' evil.sh)"'; printf "%s\n%s" "$run_dir" "${run_args[0]}"')
[ "$got" = "$evil_dir"$'\n'"$evil_arg" ] || fail "quoting: got '$got'"
ls pwned* > /dev/null 2>&1 && fail "a path ran as code"
# A run directory with '%' is not an sbatch pattern in --output.
grep -q "would submit with: sbatch --output=" evil.err || fail "the odd output path is not on sbatch's command line: $(cat evil.err)"
grep -qF '%%j/slurm-%j.out' evil.err || fail "'%' of the run dir not escaped: $(cat evil.err)"

# The batch script's own logic, with stand-ins for srun and scontrol: exit
# 75 requeues, --max-requeues stops that, other codes pass through.  The
# script leaves the job's end time to gridrun, which asks squeue itself
# (t0304).
mkdir -p shims
cat > shims/srun <<'SH'
#!/bin/bash
# Stand-in for srun: note the arguments and environment, write the run's
# outcome as gridrun would, exit with it.
printf '%s\n' "$@" > "$SHIM_DIR/srun.args"
env > "$SHIM_DIR/srun.env"
while [ $# -gt 0 ] && [ "$1" != --run-dir ]; do shift; done
mkdir -p "$2" && echo "$SHIM_CODE" > "$2/exit_status"
exit "$SHIM_CODE"
SH
printf '#!/bin/sh\necho "$@" >> "$SHIM_DIR/scontrol.calls"\n' > shims/scontrol
chmod +x shims/*
"$SBATCH" --dry-run --max-requeues 2 -d shimrun job.yaml > shim.sh 2> /dev/null || fail "dry run for the shims"
# shim CODE RESTART: run the batch script as job 42 at restart RESTART
# with gridrun ending CODE; its exit code is returned.
shim () {
    rm -f shims/scontrol.calls shims/srun.env
    env -u SLURM_JOB_END_TIME SHIM_DIR="$WORK/shims" SHIM_CODE=$1 SLURM_JOB_ID=42 \
        SLURM_RESTART_COUNT=$2 SLURM_JOB_NODELIST=n1 PATH="$WORK/shims:$PATH" \
        bash shim.sh > shim.out 2>&1
}
shim 75 0
[ $? -eq 75 ] || fail "batch script: exit $?, want 75: $(cat shim.out)"
[ "$(cat shims/scontrol.calls)" = "requeue 42" ] || fail "no requeue: $(cat shim.out)"
grep -q "^SLURM_JOB_END_TIME=" shims/srun.env \
    && fail "the script set SLURM_JOB_END_TIME: $(grep END_TIME shims/srun.env)"
grep -qx -- "--mpi=pmix" shims/srun.args || fail "srun args: $(cat shims/srun.args)"
grep -qx "$WORK/job.yaml" shims/srun.args || fail "the first run did not start from the spec: $(cat shims/srun.args)"
: > shimrun/journal
shim 75 1
grep -qx "$WORK/job.yaml" shims/srun.args && fail "a restart used the spec file, not the stored spec"
grep -qx "$WORK/shimrun" shims/srun.args || fail "a restart lost the run dir: $(cat shims/srun.args)"
shim 75 2
[ $? -eq 75 ] || fail "batch script at the requeue limit: exit $?"
[ -e shims/scontrol.calls ] && fail "requeued past --max-requeues: $(cat shims/scontrol.calls)"
grep -q "not requeued: the job has restarted 2 times" shim.out || fail "$(cat shim.out)"
for code in 0 1 2; do
    shim "$code" 0
    rc=$?
    [ $rc -eq "$code" ] || fail "gridrun exit $code became $rc"
    [ -e shims/scontrol.calls ] && fail "exit $code requeued"
done

# A real cluster from here on.
command -v sbatch > /dev/null || skip "Slurm (sbatch) is not installed; the options were checked"
slurm_up --nodes 1 --cpus 4

# srun launcher, through gridrun submit.
t0=$(since)
"$GRIDRUN" submit -n 3 -d run1 job.yaml > submit1.out 2>&1 || fail "submit: $(cat submit1.out)"
job1=$(sed -n 's/^Submitted batch job //p' submit1.out)
[ -n "$job1" ] || fail "no job id: $(cat submit1.out)"
slurm_wait_gone "$job1" 60
t1=$(since)
[ "$(slurm_field "$job1" JobState)" = COMPLETED ] || fail "job $job1: $(slurm_field "$job1" JobState): $(cat run1/slurm-"$job1".out)"
[ "$(slurm_field "$job1" ExitCode)" = 0:0 ] || fail "job $job1 exit $(slurm_field "$job1" ExitCode)"
[ "$(cat run1/exit_status)" = 0 ] || fail "exit_status: $(cat run1/exit_status)"
[ "$(run_done run1)" -eq 30 ] || fail "$(run_done run1) tasks done, want 30"
[ -s run1/sbatch.sh ] || fail "no copy of the script in the run directory"
grep -q "gridrun ended with exit code 0" run1/slurm-"$job1".out || fail "output: $(cat run1/slurm-"$job1".out)"
"$GRIDRUN" status run1 > status1.out
grep -q "slurm       job $job1, restart 0, nodes n1" status1.out || fail "status: $(cat status1.out)"
grep -q "workers     2 on 1 node: n1 (2)" status1.out || fail "status: $(cat status1.out)"
[ "$("$GRIDRUN" output run1 't[4]')" = "t[4] on n1" ] || fail "task output: $("$GRIDRUN" output run1 't[4]')"

# mpirun launcher: gridrun launch inside the allocation.
"$SBATCH" -n 3 --launcher mpirun --launcher-arg=--oversubscribe -d run2 job.yaml \
    > submit2.out 2>&1 || fail "submit: $(cat submit2.out)"
job2=$(sed -n 's/^Submitted batch job //p' submit2.out)
slurm_wait_gone "$job2" 60
t2=$(since)
[ "$(slurm_field "$job2" JobState)" = COMPLETED ] || fail "job $job2: $(slurm_field "$job2" JobState): $(cat run2/slurm-"$job2".out)"
[ "$(run_done run2)" -eq 30 ] || fail "mpirun launcher: $(run_done run2) tasks done, want 30"

# Resubmitting a finished run directory resumes it: nothing is left, exit 0.
"$SBATCH" -n 2 -d run1 > submit3.out 2>&1 || fail "resubmit: $(cat submit3.out)"
job3=$(sed -n 's/^Submitted batch job //p' submit3.out)
slurm_wait_gone "$job3" 60
[ "$(slurm_field "$job3" ExitCode)" = 0:0 ] || fail "resubmitted job: $(cat run1/slurm-"$job3".out)"
grep -q "incarnation 2" run1/summary.txt || fail "resubmission did not resume: $(cat run1/summary.txt)"
[ "$(run_done run1)" -eq 30 ] || fail "resume changed the count: $(run_done run1)"
pass "srun job in $(echo "$t1 - $t0" | bc)s, mpirun job in $(echo "$t2 - $t1" | bc)s"
