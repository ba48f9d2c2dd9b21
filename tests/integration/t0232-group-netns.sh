#!/bin/bash
# Group tasks (kind: group) over two emulated hosts (tests/integration/
# netns.sh; the master and a worker on h1, a worker on h2), as a user
# runs them on a cluster:
#  (a) a group of 2 with ranks_per_node: 1 gets one process on each host
#      (by the host names they report), each with the torchrun
#      environment of its place (GROUP_RANK 0 and 1, LOCAL_RANK 0,
#      WORLD_SIZE 2); MASTER_ADDR is the eth0 address of the host of
#      RANK 0, where RANK 0 listens and RANK 1 connects from the other
#      host's address.  A group on one host meets on 127.0.0.1.
#      GLOO_SOCKET_IFNAME is the interface that reaches MASTER_ADDR
#      (eth0; lo on one host);
#  (b) GRIDRUN_HOST_ADDR, set per host to its address on a second network
#      (eth1), is the MASTER_ADDR of a group whose RANK 0 is on that host,
#      GLOO_SOCKET_IFNAME is eth1, and RANK 1 connects over eth1;
#  (c) a C program linked with libgridrun (examples/mlp), started without
#      MPI, spread over the two hosts: its ranks meet over TCP and end at
#      the same bits as on one host;
#  (d) the PyTorch DDP example (examples/ddp/train_ddp.py, gloo on CPU)
#      spread over the two hosts ends at exactly the loss of the same
#      training on one host (as t0231 runs it), bit for bit: with 2 ranks
#      each gradient element is the sum of the same two numbers either
#      way, and gloo adds them the same way over TCP between hosts as
#      over loopback;
#  (e) kill -9 of the whole run on both hosts (launcher, mpirun, its
#      daemon on h2, master, workers, training) mid-training, and the
#      resumed run on the two hosts ends at that loss too.
# (d) and (e) need Debian's python3-torch; without it the test skips
# after (a) to (c).
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 150
t0=$(date +%s)

PY=/usr/bin/python3
[ -x $PY ] || skip "no $PY"
MEMBER="$GR_SRCDIR/tests/data/group-member.py"
TRAIN="$GR_SRCDIR/examples/ddp/train_ddp.py"

netns_up 2 2    # -n 3: ranks 0 (the master) and 1 on h1, rank 2 on h2

# grun NAME PROGRAM...: PROGRAM (gridrun run SPEC, or a wrapper) under
# mpirun over both hosts, with the run directory NAME and 2 cpus a worker
# (counts, not the machine's cores, so that the plans below do not depend
# on it); fails the test unless the run succeeds.
grun () {
    local name=$1
    shift
    timeout -k 5 60 "$NETNS_MPIRUN" -n 3 --hostfile "$WORK/hosts" "$@" \
        --run-dir "$name" --cpus-per-worker 2 > "$name.out" 2> "$name.err"
    local rc=$?
    [ $rc -eq 0 ] || fail "$name: exit $rc: $(tail -20 "$name.err")"
    grep -q "finished in" "$name.out" || fail "$name: $(cat "$name.out")"
}

# envis DIR RANK VAR=VALUE...: the process of RANK had these variables.
envis () {
    local dir=$1 r=$2 want
    shift 2
    for want in "$@"; do
        grep -qxF "$want" "$dir/env.$r" || fail "$dir rank $r: no $want in: $(cat "$dir/env.$r")"
    done
}

# (a) A group spread over both hosts, and one on a single host.
mkdir -p spread one
cat > meet.yaml <<YAML
name: meet
tasks:
  - name: spread
    kind: group
    ranks: 2
    ranks_per_node: 1
    command: [$PY, "$MEMBER", meet, "$WORK/spread"]
  - name: one
    kind: group
    ranks: 2
    command: [$PY, "$MEMBER", meet, "$WORK/one"]
YAML
grun meet "$GRIDRUN" run meet.yaml
for r in 0 1; do
    grep -q " met " "spread/log.$r" || fail "spread rank $r: no rendezvous: $(cat "spread/log.$r")"
done
h0=$(cat spread/host.0)
h1=$(cat spread/host.1)
[ "$(printf '%s\n' "$h0" "$h1" | sort)" = "$(printf 'h1\nh2')" ] \
    || fail "spread: ranks 0 and 1 on '$h0' and '$h1', want h1 and h2"
addr=$(netns_ip "$h0")
for r in 0 1; do
    envis spread $r "RANK=$r" LOCAL_RANK=0 WORLD_SIZE=2 LOCAL_WORLD_SIZE=1 "GROUP_RANK=$r" \
        GROUP_WORLD_SIZE=2 "ROLE_RANK=$r" "MASTER_ADDR=$addr" GLOO_SOCKET_IFNAME=eth0 \
        OMP_NUM_THREADS=1 GRIDRUN_RESTART_COUNT=0 TORCHELASTIC_RESTART_COUNT=0 \
        "GRIDRUN_CKPT_DIR=$WORK/meet/ckpt/spread"
    # Also on h2, where Open MPI's daemon started the worker.
    grep -q '^OMPI_\|^PMIX_' "spread/env.$r" && fail "the MPI job's variables reached rank $r"
done
p0=$(sed -n 's/^MASTER_PORT=//p' spread/env.0)
[ "$p0" = "$(sed -n 's/^MASTER_PORT=//p' spread/env.1)" ] && [ "$p0" -gt 0 ] \
    || fail "spread: ports $p0 and $(sed -n 's/^MASTER_PORT=//p' spread/env.1)"
# RANK 0 saw RANK 1 connect from the other host's address.
[ "$(cat spread/peers)" = "$(netns_ip "$h1")" ] \
    || fail "spread: RANK 0 saw a connection from $(cat spread/peers), want $(netns_ip "$h1")"
echo "(a) spread: RANK 0 on $h0, RANK 1 on $h1, MASTER_ADDR=$addr:$p0, met"

[ "$(cat one/host.0)" = "$(cat one/host.1)" ] \
    || fail "one: on $(cat one/host.0) and $(cat one/host.1), want one host"
for r in 0 1; do
    grep -q " met " "one/log.$r" || fail "one rank $r: no rendezvous: $(cat "one/log.$r")"
    envis one $r "RANK=$r" "LOCAL_RANK=$r" LOCAL_WORLD_SIZE=2 GROUP_RANK=0 GROUP_WORLD_SIZE=1 \
        MASTER_ADDR=127.0.0.1 GLOO_SOCKET_IFNAME=lo
done
echo "(a) one: both on $(cat one/host.0), MASTER_ADDR=127.0.0.1"

# (b) A second network, a cable between the hosts (eth1, 198.18.8.I/24),
# and gridrun told to use it on each host, as a site would in a job
# prolog or a wrapper.
netns_cable h1 h2 eth1 198.18.8
mkdir -p over
sed -e 's/^name: meet/name: over/' -e "s|$WORK/spread|$WORK/over|" meet.yaml \
    | sed '/- name: one/,$d' > over.yaml
# shellcheck disable=SC2016
grun over /bin/sh -c 'export GRIDRUN_HOST_ADDR=198.18.8.$(hostname | cut -c2-); exec "$@"' sh \
    "$GRIDRUN" run over.yaml
addr="198.18.8.$(sed 's/^h//' over/host.0)"
for r in 0 1; do
    grep -q " met " "over/log.$r" || fail "over rank $r: no rendezvous: $(cat "over/log.$r")"
    envis over $r "MASTER_ADDR=$addr" GLOO_SOCKET_IFNAME=eth1
done
peer="198.18.8.$(sed 's/^h//' over/host.1)"
[ "$(cat over/peers)" = "$peer" ] \
    || fail "over: RANK 0 saw a connection from $(cat over/peers), want $peer"
echo "(b) GRIDRUN_HOST_ADDR: MASTER_ADDR=$addr, met (RANK 1 from $peer)"
netns_exec h1 ip link del eth1 || fail "cannot remove the cable"

# (c) A C program linked with libgridrun (examples/mlp), no MPI: spread
# over the two hosts, its ranks meet over TCP on eth0 and end at the
# same bits as on one host.
MLP="$GR_BUILDDIR/examples/mlp/mlp-digits"
cat > mlp.yaml <<YAML
name: mlp
tasks:
YAML
for g in one spread; do
    cat >> mlp.yaml <<YAML
  - name: $g
    kind: group
    ranks: 2
    shell: 'hostname > "\$GRIDRUN_CKPT_DIR/host.\$RANK"; exec "$MLP" --data "$GR_SRCDIR/share/gridrun/digits.csv" --steps 1000'
YAML
    [ "$g" = spread ] && echo "    ranks_per_node: 1" >> mlp.yaml
done
grun mlp "$GRIDRUN" run mlp.yaml
M=$("$GRIDRUN" output mlp one/rank0 | grep '^final step')
[ -n "$M" ] || fail "mlp one: no final line: $("$GRIDRUN" output mlp one/rank0)"
[ "$(cat mlp/ckpt/spread/host.0 mlp/ckpt/spread/host.1 | sort | tr '\n' ' ')" = "h1 h2 " ] \
    || fail "mlp spread: on $(cat mlp/ckpt/spread/host.*), want h1 and h2"
[ "$("$GRIDRUN" output mlp spread/rank0 | grep '^final step')" = "$M" ] \
    || fail "mlp over 2 hosts: $("$GRIDRUN" output mlp spread/rank0 | tail -3), want $M"
echo "(c) libgridrun over TCP, one host and two: $M"

$PY -c "import torch.distributed as d; assert d.is_gloo_available()" 2> /dev/null \
    || skip "(a) to (c) passed; Debian's python3-torch is not installed (scripts/install-deps installs it)"

# spec NAME GROUPS EXTRA-ARGS: the training of t0231 (300 steps, a
# checkpoint every 20) as group tasks: "one" (both processes on one host)
# and "spread" (one a host), as GROUPS says.  Each process writes its
# host name into the checkpoint directory.
spec () {
    local g
    echo "name: $1" > "$1.yaml"
    echo "tasks:" >> "$1.yaml"
    for g in $2; do
        cat >> "$1.yaml" <<YAML
  - name: $g
    kind: group
    ranks: 2
    kill_grace: 5s
    shell: 'hostname > "\$GRIDRUN_CKPT_DIR/host.\$RANK"; exec $PY "$TRAIN" --steps 300 --ckpt-every 20 $3'
YAML
        [ "$g" = spread ] && echo "    ranks_per_node: 1" >> "$1.yaml"
    done
}

final () {
    cat "$1/ckpt/$2/final.txt" 2> /dev/null
}

# (d) The same training on one host and spread over two.
spec ddp "one spread" ""
start=$(date +%s)
grun ddp "$GRIDRUN" run ddp.yaml
echo "(d) two trainings in $(($(date +%s) - start)) s"
L=$(final ddp one)
case $L in final_loss=0x*" test_acc="*" steps=300") ;; *) fail "one: no final line: $L" ;; esac
acc=$(echo "$L" | sed 's/.*test_acc=\([0-9.]*\).*/\1/')
awk -v a="$acc" 'BEGIN { exit !(a >= 0.90) }' || fail "test accuracy $acc < 0.90"
[ "$(cat ddp/ckpt/one/host.0)" = "$(cat ddp/ckpt/one/host.1)" ] || fail "one: on two hosts"
[ "$(cat ddp/ckpt/spread/host.0 ddp/ckpt/spread/host.1 | sort | tr '\n' ' ')" = "h1 h2 " ] \
    || fail "spread: on $(cat ddp/ckpt/spread/host.*), want h1 and h2"
[ "$(final ddp spread)" = "$L" ] || fail "spread over 2 hosts: $(final ddp spread), want $L"
grep -q "starting fresh (restart 0)" <("$GRIDRUN" output ddp spread/rank0) \
    || fail "spread rank 0 output: $("$GRIDRUN" output ddp spread/rank0)"
echo "(d) one host: $L"
echo "(d) two hosts: the same"

# (e) kill -9 of everything mid-run, then resume on the two hosts.
# A sleep of its own: t0231, which may run beside this test, looks for its
# own processes by their command line (--sleep 0.02).
spec killed spread "--sleep 0.03"
setsid env GRIDRUN_MPIRUN="$NETNS_MPIRUN" "$NETNS_RSH" --exec h1 "$GRIDRUN" launch -n 3 \
    --hostfile "$WORK/hosts" -- killed.yaml --run-dir killed --cpus-per-worker 2 \
    > killed.log 2>&1 &
launch_pid=$!
disown "$launch_pid"    # no "Killed" notice from bash below
for i in $(seq 1 300); do
    [ -f killed/ckpt/spread/ckpt.pt ] && break
    kill -0 "$launch_pid" 2> /dev/null || fail "killed ended early: $(tail -20 killed.log)"
    sleep 0.1
done
[ -f killed/ckpt/spread/ckpt.pt ] || fail "no checkpoint after 30 s: $(tail -20 killed.log)"
sleep "$(rand_between 3 15)"
# Everything on both hosts at once, as scancel or a power cut would: the
# launcher, mpirun and its daemon on h2 (which runs in a session of its
# own), the master, the workers and the training.
nkilled=$(netns_pids | wc -l)
for i in $(seq 1 50); do
    pids=$(netns_pids)
    [ -z "$pids" ] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2> /dev/null
    sleep 0.1
done
[ -z "$(netns_pids)" ] || fail "processes outlived SIGKILL: $(netns_pids | xargs ps -o pid,args -p)"
kill_session "$launch_pid" || fail "the killed run's processes outlived SIGKILL"
pgrep -f "$TRAIN --steps 300 --ckpt-every 20 --sleep 0.03( |$)" > /dev/null \
    && fail "a training process survived"
[ -z "$(final killed spread)" ] || fail "killed too late: the run had ended"
echo "(e) killed $nkilled processes on h1 and h2"
GRIDRUN_MPIRUN="$NETNS_MPIRUN" timeout -k 5 100 "$NETNS_RSH" --exec h1 "$GRIDRUN" launch -n 3 \
    --hostfile "$WORK/hosts" -- killed.yaml --run-dir killed --cpus-per-worker 2 \
    > killed2.log 2>&1 || fail "resume after kill -9: exit $?: $(tail -20 killed2.log)"
[ "$(final killed spread)" = "$L" ] || fail "after kill -9 and resume: $(final killed spread), want $L"
from=$("$GRIDRUN" output killed spread/rank0 | sed -n 's/^resumed from step \([0-9]*\) .*/\1/p')
[ -n "$from" ] || fail "the resumed run started afresh: $("$GRIDRUN" output killed spread/rank0)"
[ "$(cat killed/ckpt/spread/host.0 killed/ckpt/spread/host.1 | sort | tr '\n' ' ')" = "h1 h2 " ] \
    || fail "resumed spread: on $(cat killed/ckpt/spread/host.*), want h1 and h2"
echo "(e) kill -9, resumed from step $from on two hosts: the same loss"
pass "in $(($(date +%s) - t0)) s"
