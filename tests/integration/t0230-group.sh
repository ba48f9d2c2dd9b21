#!/bin/bash
# Group tasks (kind: group): the torchrun environment and a real
# rendezvous on MASTER_ADDR:MASTER_PORT; gang placement among plain tasks
# with no deadlock; a failed process stops the others and the group
# restarts (new port, GRIDRUN_RESTART_COUNT + 1) up to max_restarts;
# preemption forwards the signal, waits the group's grace (not the job's)
# and the resumed run restarts the group; a group too big for the workers
# is refused before anything runs.
. "$(dirname "$0")/lib.sh"
test_timeout 240

PY=/usr/bin/python3
[ -x $PY ] || skip "no $PY"
MEMBER="$GR_SRCDIR/tests/data/group-member.py"
mkdir -p m1 m2 m3 m4

# (a) Two groups of 2 among 40 plain tasks, on 2 workers of 1 cpu each:
# every group needs both workers at once.
cat > job.yaml <<YAML
name: groups
tasks:
  - name: t
    command: [sleep, "0.05"]
    params: {i: {range: [1, 20]}}
  - name: g
    kind: group
    ranks: 2
    params: {k: [1, 2]}
    command: [$PY, "$MEMBER", meet, "$WORK/m{k}"]
  - name: u
    command: [sleep, "0.05"]
    params: {i: {range: [1, 20]}}
YAML
gr_run 3 job.yaml --run-dir run --cpus-per-worker 1 > run.out 2> run.err
rc=$?
[ $rc -eq 0 ] || fail "groups: exit $rc: $(tail -20 run.err)"
grep -q "42: 42 done, 0 failed" run.out || fail "counts: $(cat run.out)"
for k in 1 2; do
    for r in 0 1; do
        e="m$k/env.$r"
        [ -f "$e" ] || fail "group g[$((k-1))] rank $r never ran"
        grep -q " met " "m$k/log.$r" || fail "g[$((k-1))] rank $r: no rendezvous: $(cat m$k/log.$r)"
        for want in "RANK=$r" "LOCAL_RANK=$r" WORLD_SIZE=2 LOCAL_WORLD_SIZE=2 GROUP_RANK=0 \
                    GROUP_WORLD_SIZE=1 ROLE_RANK=$r MASTER_ADDR=127.0.0.1 OMP_NUM_THREADS=1 \
                    GRIDRUN_RESTART_COUNT=0 TORCHELASTIC_RESTART_COUNT=0 \
                    GRIDRUN_PREEMPT_SIGNAL=SIGUSR2 "GRIDRUN_CKPT_DIR=$WORK/run/ckpt/g[$((k-1))]"; do
            grep -qxF "$want" "$e" || fail "g[$((k-1))] rank $r: no $want in: $(cat "$e")"
        done
        grep -q '^OMPI_\|^PMIX_' "$e" && fail "the MPI job's variables reached a group process"
    done
    p0=$(sed -n 's/^MASTER_PORT=//p' "m$k/env.0")
    [ "$p0" = "$(sed -n 's/^MASTER_PORT=//p' "m$k/env.1")" ] || fail "ranks disagree on the port"
    [ "$p0" -gt 0 ] || fail "no port: $p0"
    [ "$(stat -c %a "run/ckpt/g[$((k-1))]")" = 700 ] || fail "checkpoint dir mode"
done
"$GRIDRUN" output run 'g[0]/rank1' > /dev/null || fail "no output of g[0]/rank1"
echo "(a) two groups among 40 tasks: ok"

# (b) A crash: rank 1 exits 3, rank 0 is stopped (SIGTERM), the group
# restarts on a new port with GRIDRUN_RESTART_COUNT=1 and completes.  A
# group that always fails is failed for good after 1 + max_restarts.
cat > crash.yaml <<YAML
name: crash
tasks:
  - name: c
    kind: group
    ranks: 2
    max_restarts: 2
    kill_grace: 5s
    command: [$PY, "$MEMBER", crash, "$WORK/m3"]
  - name: f
    kind: group
    ranks: 2
    max_restarts: 1
    kill_grace: 1s
    command: [$PY, "$MEMBER", fail, "$WORK/m4"]
YAML
gr_run 3 crash.yaml --run-dir crun --cpus-per-worker 1 > crun.out 2> crun.err
rc=$?
[ $rc -eq 1 ] || fail "crash run: exit $rc, want 1: $(tail -20 crun.err)"
grep -q "2: 1 done, 1 failed" crun.out || fail "crash counts: $(cat crun.out)"
grep -q "crash restart=0" m3/log.1 || fail "rank 1 did not crash: $(cat m3/log.1)"
grep -q "term restart=0" m3/log.0 || fail "rank 0 was not stopped: $(cat m3/log.0)"
grep -q "met restart=1" m3/log.0 && grep -q "met restart=1" m3/log.1 \
    || fail "no restart 1: $(cat m3/log.0 m3/log.1)"
port0=$(sed -n 's/.*start restart=0 port=//p' m3/log.0)
port1=$(sed -n 's/.*start restart=1 port=//p' m3/log.0)
[ -n "$port1" ] && [ "$port0" != "$port1" ] || fail "the restart kept port $port0"
[ "$(grep -c ' start ' m4/log.1)" -eq 2 ] || fail "f ran $(grep -c ' start ' m4/log.1) times, want 2"
grep -q "restart 1 of 1" crun.err || fail "no restart message: $(cat crun.err)"
grep -q "task f (.*) failed: exit 3 after 2 attempts" crun.err \
    || fail "f not failed for good: $(cat crun.err)"
"$GRIDRUN" status crun > cstatus.txt
grep -q "f.*exit 3" cstatus.txt || fail "status does not name f: $(cat cstatus.txt)"
echo "(b) restart and failure: ok (ports $port0 -> $port1)"

# (c) Preemption: the group gets SIGUSR2 at once, SIGTERM after its own
# grace of 1 s (the job's grace is 30 s), and the run exits 75.
mkdir -p m5
cat > pre.yaml <<YAML
name: pre
grace: 30s
tasks:
  - name: p
    kind: group
    ranks: 2
    grace: 1s
    command: [$PY, "$MEMBER", preempt, "$WORK/m5"]
YAML
gr_launch_bg 3 pre1.log pre.yaml --run-dir prun --cpus-per-worker 1
for i in $(seq 1 100); do
    [ -f m5/ready.0 ] && [ -f m5/ready.1 ] && break
    sleep 0.1
done
[ -f m5/ready.0 ] && [ -f m5/ready.1 ] || fail "the group did not start: $(cat pre1.log)"
t0=$(date +%s.%N)
kill -TERM "$launch_pid"
wait "$launch_pid"
rc=$?
el=$(echo "$(date +%s.%N) - $t0" | bc)
[ $rc -eq 75 ] || fail "preempted run: exit $rc, want 75: $(tail -20 pre1.log)"
awk -v e="$el" 'BEGIN { exit !(e < 6) }' || fail "took ${el}s: the group's grace is 1 s"
for r in 0 1; do
    s=$(sed -n 's/ signal restart=0.*//p' m5/log.$r)
    t=$(sed -n 's/ term restart=0.*//p' m5/log.$r)
    [ -n "$s" ] && [ -n "$t" ] || fail "rank $r: $(cat m5/log.$r)"
    awk -v s="$s" -v t="$t" 'BEGIN { exit !(t - s >= 0.8 && t - s < 3) }' \
        || fail "rank $r: SIGTERM $(echo "$t - $s" | bc)s after the signal, want ~1 s"
done
gr_launch 3 pre.yaml --run-dir prun --cpus-per-worker 1 > pre2.log 2>&1
rc=$?
[ $rc -eq 0 ] || fail "resume: exit $rc: $(tail -20 pre2.log)"
grep -q "resumed restart=1" m5/log.0 && grep -q "resumed restart=1" m5/log.1 \
    || fail "resume did not restart the group: $(cat m5/log.*)"
echo "(c) preempted in ${el}s; resumed with restart 1"

# (d) Too big: refused up front, naming the spec line.
cat > big.yaml <<YAML
name: big
tasks:
  - name: b
    kind: group
    ranks: 3
    command: [true]
YAML
gr_run 3 big.yaml --run-dir brun --cpus-per-worker 1 > big.out 2> big.err
rc=$?
[ $rc -eq 2 ] || fail "too big: exit $rc, want 2"
grep -q "big.yaml:4:5: group task 'b' needs 3 processes of 1 cpu and 0 gpus, but the workers have room for 2" big.err \
    || fail "too big: $(cat big.err)"
pass
