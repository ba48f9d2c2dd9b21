#!/bin/bash
# A C program linked with libgridrun, started without MPI: in torchrun's
# environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) gr_init builds
# a TCP world and libgridrun's collectives and checkpoints run over it.
#  (a) Started by hand: gr-colltest's every collective, type and op on 1,
#      2 and 3 ranks; node numbering; the preemption notice; a timeout;
#      clear errors for a bad environment; a rank that dies does not hang
#      the others.
#  (b) Checkpoints over TCP, partner copies and their repair included; a
#      step saved by 3 TCP ranks loads under mpirun on 2; the shared
#      layout (MPI-IO) is refused with a clear error.
#  (c) The MLP example (examples/mlp) as a gridrun group task
#      (jobs/train-mlp-group.yaml) ends at the same bits as under
#      `mpirun -n 2`, also after a crash of one rank (the group restarts
#      from its checkpoint) and after kill -9 of everything and a resume.
. "$(dirname "$0")/lib.sh"
test_timeout 400
command -v setsid > /dev/null && command -v pkill > /dev/null || skip "no setsid/pkill"

COLL="$GR_BUILDDIR/tests/bin/gr-colltest"
CKPT="$GR_BUILDDIR/tests/bin/gr-ckpttest"
MLP="$GR_BUILDDIR/examples/mlp/mlp-digits"
PY=/usr/bin/python3
DATA="$GR_SRCDIR/share/gridrun/digits.csv"
for b in "$COLL" "$CKPT" "$MLP"; do [ -x "$b" ] || fail "no $b (make check builds it)"; done

# free_port: a TCP port nobody listens on now.
free_port () {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# world N NAME CMD...: N processes of CMD in torchrun's environment on
# loopback, as a group task's are (no MPI variables); rank R's output in
# NAME.R.  Returns the first nonzero exit code.
world () {
    local n=$1 name=$2 port r s rc=0 pids=()
    shift 2
    port=$(free_port)
    for ((r = 0; r < n; r++)); do
        env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK RANK=$r WORLD_SIZE=$n LOCAL_RANK=$r \
            MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout -k 5 120 "$@" > "$name.$r" 2>&1 &
        pids+=($!)
    done
    for ((r = 0; r < n; r++)); do
        wait "${pids[$r]}" || { s=$?; [ $rc -eq 0 ] && rc=$s; }
    done
    return $rc
}

# (a) Collectives over TCP.
for n in 1 2 3; do
    world $n plain$n "$COLL" || fail "$n ranks: $(tail -5 plain$n.*)"
    grep -q "gr-colltest: $n ranks, backend tcp: all matched" plain$n.0 \
        || fail "$n ranks: $(tail -5 plain$n.*)"
done
world 2 info "$COLL" --info || fail "--info: $(cat info.*)"
grep -q "^rank 1/2 local 1/2 .* node 0/1 .* backend tcp$" info.1 || fail "--info: $(cat info.*)"
world 2 preempt env GRIDRUN_PREEMPT_SIGNAL=USR1 "$COLL" --preempt "$(kill -l USR1)" \
    || fail "GRIDRUN_PREEMPT_SIGNAL=USR1: $(cat preempt.*)"
# One rank 3 s late, a 1 s deadline: the other two time out.
world 3 tmo env GRIDRUN_COLL_TIMEOUT=1 "$COLL" --timeout || fail "timeout: $(cat tmo.*)"
[ "$(cat tmo.* | grep -c 'ETIMEDOUT after')" -eq 2 ] || fail "timeout: $(cat tmo.*)"

# A bad environment: one process, its own variables.
init_error () {
    local name=$1 want=$2 text=$3
    shift 3
    env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK "$@" timeout -k 5 30 "$COLL" --init-error "$want" "$text" \
        > "$name.out" 2>&1 || fail "$name: $(cat "$name.out")"
    grep -q "failed as expected" "$name.out" || fail "$name: $(cat "$name.out")"
}
port=$(free_port)
init_error rank EINVAL "RANK=2 is not a whole number from 0 to 1" \
    RANK=2 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port"
init_error mport EINVAL "MASTER_PORT=http is not a whole number" \
    RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=http
init_error boot EINVAL "GRIDRUN_BOOTSTRAP=pigeon is not a way to start" GRIDRUN_BOOTSTRAP=pigeon
init_error noport EINVAL "MASTER_PORT is not set; without MPI, libgridrun needs" \
    GRIDRUN_BOOTSTRAP=tcp RANK=0 WORLD_SIZE=1 MASTER_ADDR=127.0.0.1
# 198.51.100.7 (TEST-NET-2) is nobody's address: rank 0 cannot listen there.
init_error foreign EADDRNOTAVAIL "it is not an address of this host" \
    RANK=0 WORLD_SIZE=2 MASTER_ADDR=198.51.100.7 MASTER_PORT="$port"
# Rank 1 alone: nobody listens on MASTER_PORT.
init_error alone ETIMEDOUT "cannot reach rank 0 at MASTER_ADDR=127.0.0.1 MASTER_PORT=$port" \
    GRIDRUN_COLL_TIMEOUT=1 RANK=1 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT="$port"

# (b) Checkpoints over TCP: save with partner copies, lose a rank file,
# load it back from its copy; then a load under MPI on another number of
# ranks; the shared layout refused.
world 3 save "$CKPT" part save 5,6 --partner "$WORK/node%r" --rows 9 || fail "save: $(cat save.*)"
cmp -s node2/step-00000006/rank-00001.h5 part/step-00000006/rank-00001.h5 \
    || fail "no partner copy of rank 1's file on rank 2: $(ls -R node*)"
rm part/step-00000006/rank-00001.h5
world 3 load "$CKPT" part load --expect 6 --rows 9 --partner "$WORK/node%r" \
    --report "step 6: rank-00001.h5: missing; restored from the partner copy kept by rank 2; using step 6" \
    || fail "load with repair: $(cat load.*)"
"$GRIDRUN" ckpt verify part 6 > verify.out || fail "after the repair: $(cat verify.out)"
ckt 2 part load --expect 6 --rows 9
world 2 shared "$MLP" --data "$DATA" --ckpt shared --steps 10 --shared && fail "--shared over TCP worked"
grep -q "the shared layout writes with MPI-IO, and this program runs without MPI" shared.0 \
    || fail "--shared over TCP: $(cat shared.*)"

# (c) The MLP: the reference under mpirun, then the same by hand over TCP.
final_of () {
    grep '^final step' "$1" || fail "no final line in $1: $(tail -5 "$1")"
}
timeout -k 5 120 "$LOCAL_MPIRUN" -n 2 "$MLP" --data "$DATA" --ckpt ref --steps 3000 > ref.out 2>&1 \
    || fail "mpirun reference: $(tail -5 ref.out)"
ref=$(final_of ref.out)
echo "under mpirun: $ref"
world 2 mlp "$MLP" --data "$DATA" --ckpt bytcp --steps 3000 || fail "over TCP: $(tail -5 mlp.*)"
[ "$(final_of mlp.0)" = "$ref" ] || fail "over TCP: $(final_of mlp.0), under mpirun: $ref"
# Rank 1 dies mid-run: rank 0 says so and exits instead of hanging.
start=$(date +%s)
world 2 dies "$MLP" --data "$DATA" --ckpt dies --steps 3000 --fail-once-at 700 \
    && fail "a run whose rank 1 died exited 0"
grep -q "rank 1 closed its connection (it exited or was killed)" dies.0 || fail "rank 0: $(cat dies.0)"
[ $(( $(date +%s) - start )) -lt 60 ] || fail "rank 0 took too long to notice"

# The group task of jobs/, one seed, with this build's paths.
spec () {
    sed -e "s|build/examples/|$GR_BUILDDIR/examples/|" -e "s|share/gridrun/|$GR_SRCDIR/share/gridrun/|" \
        -e 's|seed: \[1, 2\]|seed: [1]|' -e "s|\"100\"\]|\"$2\"$3]|" \
        "$GR_SRCDIR/jobs/train-mlp-group.yaml" > "$1.yaml"
    grep -q "seed: \[1\]" "$1.yaml" || fail "could not adapt jobs/train-mlp-group.yaml"
}
spec plain 100 ""
gr_launch 3 plain.yaml --run-dir plain > plain.log 2>&1 || fail "group: exit $?: $(tail -20 plain.log)"
"$GRIDRUN" output plain train/rank0 > g.out || fail "no output of rank 0"
[ "$(final_of g.out)" = "$ref" ] || fail "as a group task: $(final_of g.out), under mpirun: $ref"
# In a gridrun task, rank 0 writes its training metrics to RUN/train-KEY.prom.
tm=$(ls plain/train-*.prom 2> /dev/null | head -1)
[ -n "$tm" ] || fail "no training metrics in plain/: $(ls plain)"
grep -q '^gridrun_train_samples_total{task="train"} 192000$' "$tm" || fail "training metrics: $(cat "$tm")"
grep -q '^gridrun_train_info{task="train",backend="tcp",ranks="2"} 1$' "$tm" \
    || fail "training metrics: $(grep info "$tm")"
# The group's name: every process's output, each under a header.
"$GRIDRUN" output plain train > all.out || fail "gridrun output plain train: $(cat all.out)"
[ "$(grep '^==> ' all.out | tr '\n' ' ')" = "==> train/rank0 <== ==> train/rank1 <== " ] \
    || fail "gridrun output of the group: $(cat all.out)"
grep -qxF "$ref" all.out || fail "gridrun output of the group lacks the final line: $(cat all.out)"
"$GRIDRUN" ckpt verify plain/ckpt/train-seed1 > /dev/null || fail "the group's checkpoints do not verify"

# A crash of rank 1 after step 1234 (nothing saved since 1200): the group
# restarts by itself, from step 1200.
spec crash 100 ', --fail-once-at, "1234"'
gr_launch 3 crash.yaml --run-dir crash > crash.log 2>&1 || fail "crash run: exit $?: $(tail -20 crash.log)"
grep -q "rank 1 on worker [0-9]*: exit 3" crash.log || fail "no crash seen: $(cat crash.log)"
"$GRIDRUN" output crash train/rank0 > c.out
grep -q "^resumed from step 1200" c.out || fail "restart: $(head -5 c.out)"
# The checkpoints are in the run's event log: saves, and the load after
# the restart.
grep -q '"event":"checkpoint","task":"train","key":"[0-9a-f]*","step":1200,' crash/events.jsonl \
    || fail "no checkpoint event of step 1200: $(grep checkpoint crash/events.jsonl | head -3)"
grep -q '"event":"checkpoint_load","task":"train","key":"[0-9a-f]*","step":1200,' crash/events.jsonl \
    || fail "no checkpoint_load event: $(grep checkpoint_load crash/events.jsonl)"
$PY -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]' crash/events.jsonl \
    || fail "events.jsonl of the group run is not JSON lines"
[ "$(final_of c.out)" = "$ref" ] || fail "after a crash: $(final_of c.out), want $ref"

# kill -9 of everything while it checkpoints every 10 steps, then resume.
spec killed 10 ""
gr_launch_bg 3 killed.log killed.yaml --run-dir killed
for i in $(seq 1 300); do
    "$GRIDRUN" ckpt ls killed/ckpt/train-seed1 2> /dev/null | grep -q "^ *[0-9]" && break
    kill -0 "$launch_pid" 2> /dev/null || fail "ended early: $(tail -20 killed.log)"
    sleep 0.02
done
sleep "$(rand_between 2 15)"
kill_session "$launch_pid" || fail "the killed run's processes outlived SIGKILL"
"$GRIDRUN" output killed train/rank0 2> /dev/null | grep -q '^final step' \
    && fail "the run ended before it could be killed; make it longer"
gr_launch 3 killed.yaml --run-dir killed > killed2.log 2>&1 || fail "resume: exit $?: $(tail -20 killed2.log)"
"$GRIDRUN" output killed train/rank0 > k.out
grep -q "^resumed from step" k.out || fail "the resumed group started afresh: $(head -5 k.out)"
[ "$(final_of k.out)" = "$ref" ] || fail "after kill -9 and resume: $(final_of k.out), want $ref"
pass "$ref"
