#!/bin/bash
# A 10,000,000-task sweep is expanded lazily: it completes on 2 workers and
# the master's memory stays small (it never holds tasks not yet started).
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > big.yaml <<'YAML'
name: big
tasks:
  - name: n
    builtin: noop
    params:
      a: {range: [1, 10000]}
      b: {range: [1, 1000]}
YAML
"$GRIDRUN" validate big.yaml > v.txt || fail "validate"
grep -q "10000000 tasks" v.txt || fail "validate count: $(cat v.txt)"
gr_run 3 big.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $(cat err.txt)"
grep -q "10000000: 10000000 done, 0 failed" out.txt || fail "counts: $(cat out.txt)"
rss=$(sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p' out.txt)
[ -n "$rss" ] || fail "no master RSS in summary"
awk -v r="$rss" 'BEGIN { exit !(r <= 64) }' || fail "master peak RSS ${rss} MiB > 64 MiB"
pass "master peak RSS ${rss} MiB"
