#!/bin/bash
# Replicas: validate shows them, names and keys of replicas, {replica} and
# GRIDRUN_REPLICA(S) in a run, and output by a replica's name.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > rep.yaml <<'YAML'
name: rep
tasks:
  - name: sim
    shell: echo {replica} "$GRIDRUN_REPLICA" "$GRIDRUN_REPLICAS" {x} > out-{index}.txt
    params: {x: [a, b]}
    replicas: 2
  - name: one
    command: [echo, "replica {replica}"]
    replicas: 2
    spread: node
YAML

"$GRIDRUN" validate -n 10 rep.yaml > validate.out || fail "validate failed"
grep -q "job 'rep' is valid: 2 task definitions, 6 tasks" validate.out \
    || fail "validate totals: $(cat validate.out)"
grep -q "sim: 4 tasks (2 x 2 replicas, spread over nodes)" validate.out \
    || fail "validate does not show the replicas of sim: $(cat validate.out)"
grep -q "one: 2 tasks (2 replicas, spread over nodes)" validate.out \
    || fail "validate does not show the replicas of one: $(cat validate.out)"
grep -q "sim\[1\]#1  x=b: /bin/sh -c" validate.out \
    || fail "validate does not name replicas sim[k]#r: $(cat validate.out)"
grep -q "one#1: echo 'replica 1'" validate.out \
    || fail "validate does not render {replica}: $(cat validate.out)"
# Replica 0 keeps the key the task has without replicas.
sed '/replicas: 2/d; /spread: node/d' rep.yaml > norep.yaml
"$GRIDRUN" validate norep.yaml > norep.out || fail "validate without replicas failed"
k0=$(grep 'sim\[1\]#0' validate.out | awk '{print $1}')
k=$(grep 'sim\[1\] ' norep.out | awk '{print $1}')
[ -n "$k" ] && [ "$k0" = "$k" ] || fail "replica 0 key $k0, without replicas $k"

# On one host there is one node, so spread: node cannot place two
# replicas: the run is refused before anything runs, at the replicas:
# line.
gr_run 3 rep.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "two replicas on one node: exit $rc, want 2: $(cat err.txt)"
grep -q "rep.yaml:6:5: task 'sim' wants 2 replicas on distinct nodes, but this run has 1 node" err.txt \
    || fail "refusal does not name the replicas: line: $(cat err.txt)"
ls out-*.txt > /dev/null 2>&1 && fail "a task ran before the refusal"
[ -e run/journal ] && "$GRIDRUN" status run 2> /dev/null | grep -q " [1-9][0-9]* done" \
    && fail "a task is journaled done"

# With spread: none every replica runs once, on this one node, and knows
# which it is.  (tests t0032 runs replicas spread over racks.)
sed '/^    spread: node$/d; s/^    replicas: 2$/    replicas: 2\n    spread: none/' \
    rep.yaml > anywhere.yaml
gr_run 3 anywhere.yaml --run-dir run2 > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "run: exit $rc: $(cat err.txt)"
grep -q "6: 6 done, 0 failed" out.txt || fail "counts: $(cat out.txt)"
for i in 0 1 2 3; do
    r=$((i % 2))
    x=$([ $i -lt 2 ] && echo a || echo b)
    [ "$(cat out-$i.txt)" = "$r $r 2 $x" ] || fail "task $i wrote: $(cat out-$i.txt)"
done
[ "$("$GRIDRUN" output run2 'one#1')" = "replica 1" ] \
    || fail "output of one#1: $("$GRIDRUN" output run2 'one#1')"
pass
