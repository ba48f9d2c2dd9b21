#!/bin/bash
# after: dependencies: every task of a group ends before any task that is
# after it starts.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > dag.yaml <<YAML
name: dag
tasks:
  - name: prep
    shell: 'sleep 0.0{i}; echo prep >> "$WORK/order"'
    params: {i: [1, 2, 3, 4, 5, 6, 7, 8]}
  - name: sim
    shell: 'echo sim >> "$WORK/order"'
    params: {j: {range: [1, 6]}}
    after: prep
  - name: report
    shell: 'echo report >> "$WORK/order"'
    after: [sim, prep]
YAML
gr_run 3 dag.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $(cat err.txt)"
grep -q "15: 15 done" out.txt || fail "counts: $(cat out.txt)"
expected=$(printf 'prep\n%.0s' {1..8}; printf 'sim\n%.0s' {1..6}; echo report)
[ "$(cat order)" = "$expected" ] || fail "order: $(tr '\n' ' ' < order)"

# A cycle is refused before anything runs.
cat > cycle.yaml <<'YAML'
name: cycle
tasks:
  - name: a
    command: [true]
    after: [b]
  - name: b
    command: [true]
    after: [a]
YAML
"$GRIDRUN" validate cycle.yaml 2> err.txt
[ $? -eq 2 ] || fail "cycle must exit 2"
grep -q "cycle" err.txt || fail "cycle message: $(cat err.txt)"
pass
