#!/bin/bash
# Two emulated Slurm nodes (two slurmd on this machine, n1 and n2): a job
# of gridrun-sbatch over both places work on both, names its workers' nodes
# by their Slurm names (SLURMD_NODENAME; both share this machine's host
# name), and `gridrun status` and the summary show both.  `gridrun topo`
# under srun shows both nodes with their ranks.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/slurm.sh" || exit 1
test_timeout 120

command -v sbatch > /dev/null || skip "Slurm (sbatch) is not installed"
slurm_up --nodes 2 --cpus 2
# The emulated nodes share one machine: shared-memory segments of ranks
# Open MPI takes for different nodes would collide, so TCP (on loopback).
export OMPI_MCA_btl=self,tcp

stamps="$WORK/stamps"
: > "$stamps"
cat > job.yaml <<YAML
name: twonodes
tasks:
  - name: t
    shell: 'echo "\$GRIDRUN_TASK_NAME \$SLURMD_NODENAME" >> "$stamps"; sleep 0.1'
    params: {i: {range: [1, 60]}}
YAML

# gridrun topo under srun: every rank reports its node.
timeout -k 5 60 srun -N 2 -n 3 --mpi=pmix "$GRIDRUN" topo > topo.out 2> topo.err \
    || fail "srun gridrun topo: exit $?: $(cat topo.err)"
[ "$(grep -c '^cluster:' topo.out)" = 1 ] || fail "not one cluster tree: $(cat topo.out)"
grep -q "^cluster: .* 2 nodes" topo.out || fail "topo: $(cat topo.out)"
grep -qE "node n1: ranks? 0" topo.out || fail "topo: no n1 with rank 0: $(cat topo.out)"
grep -qE "node n2: ranks? " topo.out || fail "topo: no n2: $(cat topo.out)"

t0=$(since)
"$GR_SRCDIR/scripts/gridrun-sbatch" -N 2 -n 4 --ntasks-per-node 2 -d run job.yaml > submit.out 2>&1 \
    || fail "submit: $(cat submit.out)"
job=$(sed -n 's/^Submitted batch job //p' submit.out)
slurm_wait_gone "$job" 90
t1=$(since)
log=run/slurm-$job.out
[ "$(slurm_field "$job" JobState)" = COMPLETED ] || fail "job $(slurm_field "$job" JobState): $(tail -20 "$log")"
[ "$(slurm_field "$job" NodeList)" = "n[1-2]" ] || fail "nodes: $(slurm_field "$job" NodeList)"

# Every task once, and work on both nodes.
[ "$(cut -d' ' -f1 "$stamps" | sort -u | wc -l)" -eq 60 ] || fail "not 60 distinct tasks ran"
n1=$(grep -c ' n1$' "$stamps")
n2=$(grep -c ' n2$' "$stamps")
[ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] || fail "tasks ran on n1: $n1, n2: $n2"
[ "$(run_done run)" -eq 60 ] || fail "$(run_done run) done, want 60"

"$GRIDRUN" status run > status.out
grep -q "workers     3 on 2 nodes: n1 (1), n2 (2)" status.out || fail "status: $(cat status.out)"
grep -q "slurm       job $job, restart 0, nodes n\[1-2\]" status.out || fail "status: $(cat status.out)"
grep -q "domains .* 2 nodes" run/summary.txt || fail "summary: $(cat run/summary.txt)"
pass "job on n1 and n2 in $(echo "$t1 - $t0" | bc)s: $n1 tasks on n1, $n2 on n2"
