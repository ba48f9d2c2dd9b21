#!/bin/bash
# A real PyTorch DDP program (examples/ddp/train_ddp.py: gloo on CPU, the
# 8x8 digits) as a group task of 2 processes.  Uninterrupted, it ends at
# some loss L with >= 90% test accuracy.  Then the same training ends at
# exactly L (bit for bit) after each of: kill -9 of the whole launcher
# tree and a resume; a preemption (SIGTERM: the group checkpoints on
# SIGUSR2, the run exits 75) and a resume; and a crash of one process,
# after which the group restarts by itself from its checkpoint.
. "$(dirname "$0")/lib.sh"
test_timeout 400

PY=/usr/bin/python3
$PY -c "import torch.distributed as d; assert d.is_gloo_available()" 2> /dev/null \
    || skip "Debian's python3-torch is not installed (scripts/install-deps installs it)"
TRAIN="$GR_SRCDIR/examples/ddp/train_ddp.py"

# spec NAME EXTRA-ARGS: a group of 2 running the training.
spec () {
    cat > "$1.yaml" <<YAML
name: $1
grace: 30s
tasks:
  - name: ddp
    kind: group
    ranks: 2
    max_restarts: 2
    grace: 20s
    kill_grace: 5s
    command: [$PY, "$TRAIN", --steps, "300", --ckpt-every, "20", $2]
YAML
}

final () {
    cat "$1/ckpt/ddp/final.txt" 2> /dev/null
}

# wait_ckpt RUN: until the first checkpoint exists, then a random moment.
wait_ckpt () {
    local i
    for i in $(seq 1 300); do
        [ -f "$1/ckpt/ddp/ckpt.pt" ] && break
        kill -0 "$launch_pid" 2> /dev/null || fail "$1 ended early: $(tail -20 "$1.log")"
        sleep 0.1
    done
    [ -f "$1/ckpt/ddp/ckpt.pt" ] || fail "$1: no checkpoint after 30 s: $(tail -20 "$1.log")"
    sleep "$(rand_between 3 15)"
}

# (a) Uninterrupted.
spec plain '--sleep, "0.01"'
gr_launch 3 plain.yaml --run-dir plain > plain.log 2>&1 || fail "plain: exit $?: $(tail -20 plain.log)"
L=$(final plain)
echo "uninterrupted: $L"
case $L in final_loss=0x*" test_acc="*" steps=300") ;; *) fail "plain: no final line: $L" ;; esac
acc=$(echo "$L" | sed 's/.*test_acc=\([0-9.]*\).*/\1/')
awk -v a="$acc" 'BEGIN { exit !(a >= 0.90) }' || fail "test accuracy $acc < 0.90"
grep -q "starting fresh (restart 0)" <("$GRIDRUN" output plain ddp/rank0) \
    || fail "rank 0 output: $("$GRIDRUN" output plain ddp/rank0)"

# (b) kill -9 of everything mid-run, then resume.
spec killed '--sleep, "0.02"'
gr_launch_bg 3 killed.log killed.yaml --run-dir killed
wait_ckpt killed
kill_session "$launch_pid" || fail "the killed run's processes outlived SIGKILL"
pgrep -f "$TRAIN --steps 300 --ckpt-every 20 --sleep 0.02( |$)" > /dev/null \
    && fail "a training process survived"
[ -z "$(final killed)" ] || fail "killed too late: the run had ended"
gr_launch 3 killed.yaml --run-dir killed > killed2.log 2>&1 || fail "resume after kill -9: exit $?: $(tail -20 killed2.log)"
[ "$(final killed)" = "$L" ] || fail "after kill -9 and resume: $(final killed), want $L"
"$GRIDRUN" output killed ddp/rank0 | grep -q "resumed from step" \
    || fail "the resumed run started afresh: $("$GRIDRUN" output killed ddp/rank0)"
echo "kill -9 + resume: same loss"

# (c) Preemption: SIGTERM to the launcher; the group gets SIGUSR2, saves
# and exits; the run exits 75; the resumed run restarts the group.
spec pre '--sleep, "0.02"'
gr_launch_bg 3 pre.log pre.yaml --run-dir pre
wait_ckpt pre
kill -TERM "$launch_pid"
wait "$launch_pid"
rc=$?
[ $rc -eq 75 ] || fail "preempted: exit $rc, want 75: $(tail -20 pre.log)"
"$GRIDRUN" output pre ddp/rank0 | grep -q "preempted at step [0-9]*: checkpoint saved" \
    || fail "the group did not checkpoint on the signal: $("$GRIDRUN" output pre ddp/rank0)"
gr_launch 3 pre.yaml --run-dir pre > pre2.log 2>&1 || fail "resume after preemption: exit $?: $(tail -20 pre2.log)"
[ "$(final pre)" = "$L" ] || fail "after preemption and resume: $(final pre), want $L"
"$GRIDRUN" output pre ddp/rank0 | grep -q "resumed from step [0-9]* (restart 1)" \
    || fail "no restart 1: $("$GRIDRUN" output pre ddp/rank0)"
echo "preemption + resume: same loss"

# (d) A crash of rank 1 at step 130: the group restarts by itself.
spec crash '--fail-once-at, "130"'
gr_launch 3 crash.yaml --run-dir crash > crash.log 2>&1 || fail "crash run: exit $?: $(tail -20 crash.log)"
[ "$(final crash)" = "$L" ] || fail "after a crash and restart: $(final crash), want $L"
grep -q "group ddp rank 1 on worker [0-9]*: exit 3" crash.log || fail "no crash seen: $(cat crash.log)"
"$GRIDRUN" output crash ddp/rank0 | grep -q "resumed from step 120 (restart 1)" \
    || fail "restart: $("$GRIDRUN" output crash ddp/rank0)"
echo "crash + restart: same loss"
pass
