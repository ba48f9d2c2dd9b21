#!/bin/bash
# The training example (examples/mlp): a data-parallel MLP on the digits,
# 2 MPI ranks linked with libgridrun.  It reaches >= 95% test accuracy; a
# crash between checkpoints, a kill -9 of the whole mpirun tree and a
# preemption (SIGUSR2, forwarded by mpirun) each resume from the newest
# checkpoint and end at the same final loss, bit for bit, as the run that
# was never stopped; and jobs/train-mlp.yaml runs it under gridrun.
. "$(dirname "$0")/lib.sh"
test_timeout 400
command -v setsid > /dev/null && command -v pkill > /dev/null || skip "no setsid/pkill"

MLP="$GR_BUILDDIR/examples/mlp/mlp-digits"
DATA="$GR_SRCDIR/share/gridrun/digits.csv"
mlp () {
    timeout -k 5 120 "$LOCAL_MPIRUN" -n 2 "$MLP" --data "$DATA" "$@"
}
final_of () {
    grep '^final step' "$1" || fail "no final line in $1: $(tail -5 "$1")"
}

# The reference: never stopped.  Its training metrics go to a file.
GRIDRUN_TRAIN_METRICS="$WORK/train.prom" mlp --ckpt ref --steps 3000 > ref.out 2> ref.err \
    || fail "reference run: $(cat ref.err)"
ref=$(final_of ref.out)
# 3000 steps of 64 samples, one fused allreduce a step, a save every 100.
metric () {
    sed -n "s/^$1{task=\"\"${2:-}} //p" train.prom
}
[ "$(metric gridrun_train_samples_total)" = 192000 ] || fail "samples: $(cat train.prom)"
[ "$(metric gridrun_train_collective_calls_total ',op="fusion_allreduce"')" -ge 3000 ] \
    || fail "fused allreduces: $(grep calls_total train.prom)"
[ "$(metric gridrun_train_checkpoint_seconds_count ',op="save"')" = 30 ] \
    || fail "saves: $(grep checkpoint train.prom)"
awk -v b="$(metric gridrun_train_allreduce_busbw_bytes_per_second ',span="run"')" \
    -v r="$(metric gridrun_train_samples_per_second)" 'BEGIN { exit !(b > 0 && r > 0) }' \
    || fail "busbw or samples/s: $(cat train.prom)"
grep -q '^gridrun_train_info{task="",backend="mpi",ranks="2"} 1$' train.prom \
    || fail "info: $(grep info train.prom)"
echo "training metrics: $(metric gridrun_train_samples_per_second) samples/s, allreduce busbw $(metric gridrun_train_allreduce_busbw_bytes_per_second ',span="run"') B/s"
echo "reference: $ref"
acc=$(echo "$ref" | sed -n 's/.* test \([0-9.]*\)$/\1/p')
awk -v a="$acc" 'BEGIN { exit !(a >= 0.95) }' || fail "test accuracy $acc < 0.95"
"$GRIDRUN" ckpt ls ref > ls.out || fail "ckpt ls: $(cat ls.out)"
grep -q "3000" ls.out || fail "ckpt ls does not list step 3000: $(cat ls.out)"
"$GRIDRUN" ckpt verify ref > verify.out || fail "ckpt verify: $(cat verify.out)"

# A crash between checkpoints: both ranks die after step 1234 with
# nothing saved since step 1200.
mlp --ckpt crash --steps 3000 --stop-after 1234 > crash1.out 2>&1 && fail "the crash run exited 0"
mlp --ckpt crash --steps 3000 > crash2.out 2> crash2.err || fail "resume after crash: $(cat crash2.err)"
grep -q "^resumed from step 1200" crash2.out || fail "did not resume from step 1200: $(head -3 crash2.out)"
[ "$(final_of crash2.out)" = "$ref" ] || fail "after a crash: $(final_of crash2.out), uninterrupted: $ref"

# kill -9 of the whole tree while it checkpoints every 10 steps (async).
setsid "$LOCAL_MPIRUN" -n 2 "$MLP" --data "$DATA" --ckpt killed --steps 3000 \
    --ckpt-every 10 --async > kill1.out 2>&1 &
sid=$!
for i in $(seq 1 400); do
    "$GRIDRUN" ckpt ls killed 2> /dev/null | grep -q "^ *[0-9]" && break
    sleep 0.02
done
sleep "$(rand_between 1 5)"
kill_session "$sid" || fail "the killed run's processes did not go away"
wait "$sid" 2> /dev/null
grep -q '^final step' kill1.out && fail "the run finished before it could be killed; make it longer"
mlp --ckpt killed --steps 3000 --ckpt-every 10 --async > kill2.out 2> kill2.err \
    || fail "resume after kill -9: $(cat kill2.err)"
grep '^resumed from step' kill2.out || fail "did not resume after kill -9: $(head -3 kill2.out)"
[ "$(final_of kill2.out)" = "$ref" ] || fail "after kill -9: $(final_of kill2.out), uninterrupted: $ref"

# Preemption: SIGUSR2 to mpirun, which forwards it to the ranks; they
# agree on a step, save it and exit 75.
setsid "$LOCAL_MPIRUN" -n 2 "$MLP" --data "$DATA" --ckpt pre --steps 3000 \
    --ckpt-every 1000 > pre1.out 2>&1 &
sid=$!
for i in $(seq 1 200); do
    grep -q '^step 500' pre1.out && break
    sleep 0.02
done
pkill -USR2 -s "$sid" -x mpirun || pkill -USR2 -s "$sid" mlp-digits
wait "$sid"
rc=$?
if grep -q '^final step' pre1.out; then
    echo "note: the run ended before the signal came; preemption not exercised"
else
    grep -q "^preempted after step" pre1.out || fail "no preemption message: $(tail -5 pre1.out)"
    [ $rc -eq 75 ] || fail "preempted run exited $rc, not 75"
    mlp --ckpt pre --steps 3000 --ckpt-every 1000 > pre2.out 2> pre2.err \
        || fail "resume after preemption: $(cat pre2.err)"
    step=$(sed -n 's/^preempted after step \([0-9]*\).*/\1/p' pre1.out)
    grep -q "^resumed from step $step" pre2.out || fail "did not resume from step $step: $(head -3 pre2.out)"
    [ "$(final_of pre2.out)" = "$ref" ] || fail "after preemption: $(final_of pre2.out), uninterrupted: $ref"
fi

# The job spec of jobs/, with the paths of this build.
sed -e "s|build/examples/|$GR_BUILDDIR/examples/|" -e "s|share/gridrun/|$GR_SRCDIR/share/gridrun/|" \
    "$GR_SRCDIR/jobs/train-mlp.yaml" > train.yaml
gr_run 2 train.yaml --run-dir jobrun > job.out 2> job.err || fail "gridrun run train.yaml: $(cat job.err)"
"$GRIDRUN" output jobrun 'train[0]' > seed1.out || fail "no output of train[0]"
[ "$(final_of seed1.out)" = "$ref" ] || fail "under gridrun: $(final_of seed1.out), alone: $ref"
"$GRIDRUN" ckpt verify jobrun/ckpt-seed2 > /dev/null || fail "seed 2's checkpoints do not verify"

pass "$ref"
