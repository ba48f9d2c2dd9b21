# A real Slurm cluster for a test; sourced after lib.sh, before
# test_timeout.
#
#   slurm_up [--nodes N] [--cpus C]  start scripts/slurm-test-cluster (munged,
#                             slurmctld, one slurmd per node n1..nN) in a
#                             short directory under /tmp, export SLURM_CONF,
#                             stop it at exit; skips the test (77) when this
#                             machine cannot run it (not root, no Slurm)
#   slurm_field JOB FIELD     a field of `scontrol show job JOB` (JobState,
#                             Restarts, ExitCode, StartTime ...)
#   slurm_wait_gone JOB SECS  wait until JOB has left the queue (fails the
#                             test after SECS seconds)
#   run_done RUN              tasks done in RUN (gridrun status), 0 if none
#   wait_run_done RUN N SECS  wait until RUN counts N tasks done
#   since                     seconds since the test began (for timelines)
#
# When root and network namespaces work, the test runs again at once in a
# network namespace of its own, under the host name "localhost": the Slurm
# daemons, srun, the job's MPI and its tasks can reach nothing and be
# reached by nothing beyond this test.  Besides loopback the namespace has
# one veth pair, connected to nothing, whose address only makes getaddrinfo
# (AI_ADDRCONFIG, as Slurm asks it) see IPv4 at all.  Where namespaces do
# not work, the daemons still bind to 127.0.0.1 only (slurm-test-cluster
# sets NoInAddrAny), but MPI and Slurm's PMIx plugin in the job may listen
# on every address.
_slurm_netns='ip link set lo up && ip link add gr0 type veth peer name gr1
    && ip addr add 198.18.99.1/32 dev gr0 && ip link set gr0 up && ip link set gr1 up
    && hostname localhost'
_slurm_netns=$(echo "$_slurm_netns" | tr '\n' ' ')
if [ -z "${GR_SLURM_NETNS:-}" ] && [ "$(id -u)" -eq 0 ] && command -v ip > /dev/null \
    && command -v unshare > /dev/null \
    && unshare --net --uts /bin/sh -c "$_slurm_netns" > /dev/null 2>&1; then
    GR_SLURM_NETNS=1 exec unshare --net --uts /bin/bash -c \
        "$_slurm_netns"' && rm -rf "$1" && shift && exec "$@"' \
        sh "$OMPI_TMP" "$BASH" "$GR_SRCDIR/tests/integration/$test_name.sh" "$@"
fi

SLURM_CLUSTER="$GR_SRCDIR/scripts/slurm-test-cluster"
SLURM_DIR=""
T_START=$(date +%s.%N)

since () {
    echo "$(date +%s.%N) - $T_START" | bc | xargs printf '%.1f'
}

_slurm_exit () {
    if [ -n "$SLURM_DIR" ]; then
        "$SLURM_CLUSTER" stop --dir "$SLURM_DIR" > /dev/null 2>&1
        # Keep the daemons' logs with the test's files.
        cp -r "$SLURM_DIR/log" "$WORK/slurm-log" 2> /dev/null
        rm -rf "$SLURM_DIR"
    fi
    cleanup
}
trap _slurm_exit EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

slurm_up () {
    local out rc
    [ "$(id -u)" -eq 0 ] || skip "the Slurm test cluster runs its daemons as root"
    # Short: the daemons' sockets live under it.
    SLURM_DIR=$(mktemp -d /tmp/grs.XXXXXX) || fail "mktemp"
    out=$("$SLURM_CLUSTER" start --dir "$SLURM_DIR" "$@" 2>&1)
    rc=$?
    [ $rc -eq 77 ] && skip "no Slurm cluster here: $out"
    [ $rc -eq 0 ] || fail "slurm-test-cluster start: $out"
    echo "$out" | head -1
    export SLURM_CONF="$SLURM_DIR/slurm.conf"
    # Jobs inherit this environment (sbatch --export=ALL): keep their MPI
    # on loopback.
    export OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
    export PMIX_MCA_ptl_tcp_if_include=lo
    # For the mpirun launcher: the jobs run as root here.
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
}

slurm_field () {
    scontrol show job "$1" 2> /dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}

slurm_wait_gone () {
    local job=$1 secs=$2 i
    for i in $(seq 1 $((secs * 5))); do
        [ -z "$(squeue -h -j "$job" -o %i 2> /dev/null)" ] && return 0
        sleep 0.2
    done
    fail "job $job still queued after ${secs}s: $(squeue -j "$job" 2>&1 | tail -1)"
}

run_done () {
    local n
    n=$("$GRIDRUN" status "$1" 2> /dev/null | sed -n 's/^  tasks *[0-9]*: \([0-9]*\) done.*/\1/p')
    echo "${n:-0}"
}

wait_run_done () {
    local run=$1 want=$2 secs=$3 i
    for i in $(seq 1 $((secs * 10))); do
        [ "$(run_done "$run")" -ge "$want" ] && return 0
        sleep 0.1
    done
    fail "$run: $(run_done "$run") tasks done after ${secs}s, waited for $want"
}
