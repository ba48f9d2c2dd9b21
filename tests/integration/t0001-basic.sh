#!/bin/bash
# A small job on one rank (the master runs its own worker), then on three:
# exit codes, summary, run directory mode, validate, output.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > job.yaml <<'YAML'
name: basic
tasks:
  - name: greet
    command: [echo, "hello {who}"]
    params:
      who: [world, gridrun]
  - name: env
    command: [sh, -c, 'echo "$GREETING $GRIDRUN_TASK_NAME $GRIDRUN_ATTEMPT"']
    env: {GREETING: "hi {task}"}
  - name: quiet
    command: [sh, -c, 'echo to-stderr >&2']
YAML

"$GRIDRUN" validate job.yaml > validate.out || fail "validate failed"
grep -q "job 'basic' is valid: 3 task definitions, 4 tasks" validate.out \
    || fail "validate output: $(cat validate.out)"
grep -q "greet\[1\].*who=gridrun: echo 'hello gridrun'" validate.out \
    || fail "validate does not show the rendered command: $(cat validate.out)"

for n in 1 3; do
    gr_run $n job.yaml --run-dir run$n > out$n.txt 2> err$n.txt
    rc=$?
    [ $rc -eq 0 ] || fail "-n $n: exit $rc: $(cat err$n.txt)"
    grep -q "job 'basic' finished in" out$n.txt || fail "no summary: $(cat out$n.txt)"
    grep -q "4: 4 done, 0 failed" out$n.txt || fail "counts: $(cat out$n.txt)"
    [ "$(stat -c %a run$n)" = 700 ] || fail "run dir mode is $(stat -c %a run$n)"
    [ "$(cat run$n/exit_status)" = 0 ] || fail "exit_status file"
    cmp -s run$n/spec.yaml job.yaml || fail "spec.yaml is not a copy of the spec"
    [ "$("$GRIDRUN" output run$n 'greet[1]')" = "hello gridrun" ] \
        || fail "output of greet[1]: $("$GRIDRUN" output run$n 'greet[1]')"
    [ "$("$GRIDRUN" output run$n env)" = "hi env env 1" ] \
        || fail "env task output: $("$GRIDRUN" output run$n env)"
    [ "$("$GRIDRUN" output --stderr run$n quiet)" = "to-stderr" ] \
        || fail "stderr capture"
    [ -z "$("$GRIDRUN" output run$n quiet)" ] || fail "stdout of quiet not empty"
    # Lookup by key works too.
    key=$(cat run$n/out/w*.idx | grep -P '\tgreet\[0\]\t' | cut -f1)
    [ "$("$GRIDRUN" output run$n "$key")" = "hello world" ] || fail "output by key $key"
done

# Without mpirun at all: an MPI singleton is master and worker.
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,vader \
    gr_isolated timeout -k 5 60 "$GRIDRUN" run job.yaml --run-dir run0 > out0.txt 2> err0.txt
rc=$?
[ $rc -eq 0 ] || fail "without mpirun: exit $rc: $(cat err0.txt)"
grep -q "4: 4 done, 0 failed" out0.txt || fail "without mpirun: $(cat out0.txt)"
grep -q "on 1 worker" out0.txt || fail "without mpirun: not one worker: $(cat out0.txt)"

# The same command on a finished run directory resumes it: nothing is left
# to run, and nothing runs twice.
gr_run 1 job.yaml --run-dir run1 > again.out 2>&1
rc=$?
[ $rc -eq 0 ] || fail "resuming a finished run: exit $rc: $(cat again.out)"
grep -q "4 done before" again.out || fail "resume message: $(cat again.out)"
grep -q "attempts    0:" again.out || fail "a finished task ran again: $(cat again.out)"

# Output of an unknown task is a clear error.
"$GRIDRUN" output run1 'nope[3]' 2> nope.err && fail "unknown task gave output"
grep -q "no task 'nope\[3\]'" nope.err || fail "unknown task message"

"$GRIDRUN" run 2> usage.err; [ $? -eq 2 ] || fail "run without spec must exit 2"
"$GRIDRUN" frobnicate 2> usage.err; [ $? -eq 2 ] || fail "unknown command must exit 2"
grep -q "unknown command 'frobnicate'" usage.err || fail "unknown command message"
pass
