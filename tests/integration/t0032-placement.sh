#!/bin/bash
# Placement over three emulated hosts (tests/integration/netns.sh) in two
# racks (ra: h1, h2; rb: h3), from a site file:
#  - replicas: 2, spread: rack puts the two replicas of every task in
#    different racks;
#  - retry_away: node runs each task's retry on another node than the
#    failed attempt;
#  - require: {rack: rb} runs only on h3, prefer: {cost: low} (h2's label)
#    fills h2 first;
#  - impossible spreads and requires are refused at start with exit 2.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 150

netns_up 3 2    # -n 5: master and a worker on h1, two workers on h2, one on h3

cat > site.yaml <<'YAML'
zones:
  - name: z1
    racks:
      - name: ra
        nodes:
          - h1
          - name: h2
            labels: {cost: low}
      - name: rb
        nodes: [h3]
YAML
log="$WORK/log"
: > "$log"
cat > place.yaml <<YAML
name: place
tasks:
  - name: rep
    shell: 'sleep 0.05; echo "rep \$(hostname) {i} {replica}" >> "\$LOG"'
    params: {i: {range: [1, 30]}}
    replicas: 2
    spread: rack
  - name: away
    shell: 'echo "away \$(hostname) {i} {attempt}" >> "\$LOG"; [ {attempt} -gt 1 ]'
    params: {i: {range: [1, 20]}}
    retry_away: node
    retries: {max: 2, backoff: 0.1, jitter: 0}
  - name: req
    shell: 'echo "req \$(hostname) {i}" >> "\$LOG"'
    params: {i: {range: [1, 10]}}
    require: {rack: rb}
  - name: pref
    shell: 'echo "pref \$(hostname) {i}" >> "\$LOG"'
    params: {i: {range: [1, 2]}}
    prefer: {cost: low}
    after: [rep, away, req]
defaults:
  env: {LOG: "$log"}
YAML
timeout -k 5 90 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run place.yaml \
    --site site.yaml --run-dir run > run.out 2> run.err
rc=$?
[ $rc -eq 0 ] || fail "run: exit $rc: $(tail -20 run.err)"
grep -q "92: 92 done, 0 failed" run.out || fail "counts: $(cat run.out)"
grep -q "domains     1 zone, 2 racks, 3 nodes (site file)" run.out || fail "summary: $(cat run.out)"
rack () { case $1 in h1|h2) echo ra ;; h3) echo rb ;; *) echo "?" ;; esac; }

# Every task's two replicas ran once each, in different racks.
[ "$(grep -c '^rep ' "$log")" -eq 60 ] || fail "$(grep -c '^rep ' "$log") replica runs, want 60"
for i in $(seq 1 30); do
    hosts=$(grep "^rep [^ ]* '$i' " "$log" | cut -d' ' -f2 | sort)
    reps=$(grep "^rep [^ ]* '$i' " "$log" | cut -d' ' -f4 | sort | tr '\n' ' ')
    [ "$reps" = "'0' '1' " ] || fail "task $i replicas: $reps"
    set -- $hosts
    [ $# -eq 2 ] && [ "$(rack "$1")" != "$(rack "$2")" ] \
        || fail "task $i replicas ran on $hosts: not in two racks"
done
echo "replicas: $(grep '^rep ' "$log" | cut -d' ' -f2 | sort | uniq -c | tr '\n' ' ')"

# Every retry ran on another node than its failed first attempt.
for i in $(seq 1 20); do
    h1st=$(grep "^away [^ ]* '$i' '1'" "$log" | cut -d' ' -f2)
    h2nd=$(grep "^away [^ ]* '$i' '2'" "$log" | cut -d' ' -f2)
    [ -n "$h1st" ] && [ -n "$h2nd" ] || fail "task away $i: attempts missing: $(grep "^away [^ ]* '$i' " "$log")"
    [ "$h1st" != "$h2nd" ] || fail "task away $i retried on the same node $h1st"
done
[ "$(grep -c '^away ' "$log")" -eq 40 ] || fail "$(grep -c '^away ' "$log") away runs, want 40"

# require: only h3; prefer: h2 took both while it had room.
[ "$(grep '^req ' "$log" | cut -d' ' -f2 | sort -u)" = h3 ] \
    || fail "req ran on: $(grep '^req ' "$log" | cut -d' ' -f2 | sort | uniq -c)"
[ "$(grep -c '^req ' "$log")" -eq 10 ] || fail "req runs: $(grep -c '^req ' "$log")"
[ "$(grep '^pref ' "$log" | cut -d' ' -f2 | sort -u)" = h2 ] \
    || fail "pref ran on: $(grep '^pref ' "$log" | cut -d' ' -f2 | sort | uniq -c)"

# Impossible placements stop the run before anything runs, naming the line.
cat > bad.yaml <<'YAML'
name: bad
tasks:
  - name: three
    command: [true]
    replicas: 3
    spread: rack
YAML
timeout -k 5 60 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run bad.yaml \
    --site site.yaml --run-dir bad > bad.out 2> bad.err
rc=$?
[ $rc -eq 2 ] || fail "impossible spread: exit $rc, want 2: $(cat bad.err)"
grep -q "bad.yaml:5:5: task 'three' wants 3 replicas on distinct racks, but this run has 2 racks (ra, rb)" bad.err \
    || fail "impossible spread message: $(cat bad.err)"
cat > bad2.yaml <<'YAML'
name: bad2
tasks:
  - name: gpu
    command: [true]
    require: {gpu: h100}
YAML
timeout -k 5 60 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run bad2.yaml \
    --site site.yaml --run-dir bad2 > bad2.out 2> bad2.err
rc=$?
[ $rc -eq 2 ] || fail "impossible require: exit $rc, want 2: $(cat bad2.err)"
grep -q "bad2.yaml:5:5: task 'gpu' requires gpu=h100, but none of this run's nodes (h1, h2, h3) has it" bad2.err \
    || fail "impossible require message: $(cat bad2.err)"
pass
