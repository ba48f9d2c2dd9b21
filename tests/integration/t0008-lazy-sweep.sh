#!/bin/bash
# Sweeps are expanded lazily.  A 1,000,000-task sweep completes on 2
# workers with the master under 64 MiB (it keeps a 32-byte row per task
# started).  A 10,000,000-task sweep starts at once and, stopped early,
# has cost the master memory only for the tasks it started.
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > big.yaml <<'YAML'
name: big
tasks:
  - name: n
    builtin: noop
    params:
      a: {range: [1, 1000]}
      b: {range: [1, 1000]}
YAML
"$GRIDRUN" validate big.yaml > v.txt || fail "validate"
grep -q "1000000 tasks" v.txt || fail "validate count: $(cat v.txt)"
gr_run 3 big.yaml --run-dir run --max-prefetch 8192 > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $(cat err.txt)"
grep -q "1000000: 1000000 done, 0 failed" out.txt || fail "counts: $(cat out.txt)"
rss=$(sed -n 's/.*master      peak RSS \([0-9.]*\) MiB.*/\1/p' out.txt)
[ -n "$rss" ] || fail "no master RSS in summary"
awk -v r="$rss" 'BEGIN { exit !(r <= 64) }' || fail "master peak RSS ${rss} MiB > 64 MiB"

cat > huge.yaml <<'YAML'
name: huge
grace: 1s
tasks:
  - name: n
    builtin: noop
    duration: 5ms
    params:
      a: {range: [1, 10000]}
      b: {range: [1, 1000]}
YAML
gr_launch_bg 3 huge.log huge.yaml --run-dir runhuge
sleep 3
kill -TERM "$launch_pid"
wait "$launch_pid"
rc=$?
[ $rc -eq 75 ] || fail "10M sweep: exit $rc after SIGTERM: $(tail -5 huge.log)"
grep -q "10000000: " runhuge/summary.txt || fail "summary: $(cat runhuge/summary.txt)"
done=$(sed -n 's/.*10000000: \([0-9]*\) done.*/\1/p' runhuge/summary.txt)
[ "$done" -gt 0 ] || fail "the 10M sweep did not start: $(cat runhuge/summary.txt)"
rss2=$(sed -n 's/.*master      peak RSS \([0-9.]*\) MiB.*/\1/p' runhuge/summary.txt)
awk -v r="$rss2" 'BEGIN { exit !(r <= 40) }' || fail "10M sweep: master RSS ${rss2} MiB after $done tasks"
pass "1M tasks: master peak RSS ${rss} MiB; 10M sweep stopped after $done tasks at ${rss2} MiB"
