#!/bin/bash
# The GPUs Slurm gave the job: workers bind tasks only to those named by
# SLURM_STEP_GPUS, else SLURM_JOB_GPUS, else the job's
# CUDA_VISIBLE_DEVICES, matched by GPU index; outside a Slurm job
# (no SLURM_JOB_ID) they are ignored; a value that is not a list of
# indexes is named in a warning and all of the node's GPUs are used.  The
# node is tests/data/topo-2s4g.xml (4 GPUs) through hwloc's HWLOC_XMLFILE,
# so no GPU is needed.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > gpu.yaml <<'YAML'
name: gpus
tasks:
  - name: g
    shell: 'echo "$CUDA_VISIBLE_DEVICES"'
    resources: {gpus: 1}
    params: {i: {range: [1, 4]}}
YAML

# gpus NAME VAR=VALUE...: the GPUs the 4 tasks got, sorted and unique.
gpus () {
    local name=$1
    shift
    env HWLOC_XMLFILE="$GR_TEST_DATA/topo-2s4g.xml" HWLOC_THISSYSTEM=1 "$@" \
        timeout -k 5 60 "$LOCAL_MPIRUN" -n 2 "$GRIDRUN" run gpu.yaml --run-dir "$name" -q \
        > "$name.log" 2>&1 || fail "$name: $(tail -5 "$name.log")"
    for i in 0 1 2 3; do "$GRIDRUN" output "$name" "g[$i]"; done | sort -u | tr '\n' ' '
}

all=$(gpus all)
[ "$all" = "0 " ] || fail "no Slurm: tasks got GPUs '$all', want the first of the node's, 0"
step=$(gpus step SLURM_JOB_ID=42 SLURM_STEP_GPUS=1,3 SLURM_JOB_GPUS=0-3)
case $step in "1 "|"3 "|"1 3 ") ;; *) fail "SLURM_STEP_GPUS=1,3: tasks got '$step'" ;; esac
job=$(gpus job SLURM_JOB_ID=42 SLURM_JOB_GPUS=2)
[ "$job" = "2 " ] || fail "SLURM_JOB_GPUS=2: tasks got '$job'"
cvd=$(gpus cvd SLURM_JOB_ID=42 CUDA_VISIBLE_DEVICES=3)
[ "$cvd" = "3 " ] || fail "CUDA_VISIBLE_DEVICES=3 in the job: tasks got '$cvd'"
nojob=$(gpus nojob SLURM_STEP_GPUS=2)
[ "$nojob" = "0 " ] || fail "SLURM_STEP_GPUS without SLURM_JOB_ID: tasks got '$nojob'"
bad=$(gpus bad SLURM_JOB_ID=42 SLURM_STEP_GPUS=GPU-5d3e)
[ "$bad" = "0 " ] || fail "a UUID list: tasks got '$bad'"
grep -q "SLURM_STEP_GPUS='GPU-5d3e' is not a list of GPU indexes" bad.log \
    || fail "no warning for a UUID list: $(cat bad.log)"
# Two workers share the job's GPUs: each binds its own.
cat > two.yaml <<'YAML'
name: two
tasks:
  - name: g
    shell: 'echo "$GRIDRUN_WORKER $CUDA_VISIBLE_DEVICES"'
    resources: {gpus: 1}
    params: {i: {range: [1, 8]}}
YAML
env HWLOC_XMLFILE="$GR_TEST_DATA/topo-2s4g.xml" HWLOC_THISSYSTEM=1 SLURM_JOB_ID=42 \
    SLURM_STEP_GPUS=1,3 timeout -k 5 60 "$LOCAL_MPIRUN" -n 3 "$GRIDRUN" run two.yaml \
    --run-dir two -q > two.log 2>&1 || fail "two workers: $(tail -5 two.log)"
pairs=$(for i in $(seq 0 7); do "$GRIDRUN" output two "g[$i]"; done | sort -u | tr '\n' ',')
[ "$pairs" = "1 1,2 3," ] || fail "two workers: worker GPU pairs '$pairs', want worker 1 on GPU 1, worker 2 on GPU 3"
pass "no Slurm: $all; step: $step; job: $job; two workers: $pairs"
