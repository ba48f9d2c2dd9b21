#!/bin/bash
# Tasks are bound to cores their worker owns, so nothing is oversubscribed:
# workers share the node's cores, concurrent tasks get different cores, a
# task asking for more cpus gets that many, --no-bind leaves them alone.
. "$(dirname "$0")/lib.sh"
test_timeout 180

ncores=$(lscpu -p=CORE 2> /dev/null | grep -v '^#' | sort -u | wc -l)
[ "$ncores" -ge 2 ] || skip "needs 2 cores, this machine has $ncores"

cat > job.yaml <<'YAML'
name: bind
tasks:
  - name: one
    shell: 'echo "$GRIDRUN_WORKER $(sed -n "s/^Cpus_allowed_list:\t//p" /proc/self/status) $GRIDRUN_CPU_LIST"; sleep 0.4'
    params: {i: {range: [1, 8]}}
YAML
# Two workers on this node: each owns half of its cores, and each task
# runs on cores of its own worker only.
gr_run 3 job.yaml --run-dir two > out.txt 2> err.txt || fail "two workers: $(cat err.txt)"
for i in $(seq 0 7); do "$GRIDRUN" output two "one[$i]"; done > lines
[ "$(wc -l < lines)" -eq 8 ] || fail "outputs: $(cat lines)"
while read -r worker allowed list; do
    [ "$allowed" = "$list" ] || fail "task bound to $allowed but told $list"
done < lines
w1=$(awk '$1 == 1 { print $2 }' lines | sort -u)
w2=$(awk '$1 == 2 { print $2 }' lines | sort -u)
[ -n "$w1" ] && [ -n "$w2" ] || fail "both workers should have run tasks: $(cat lines)"
[ "$(printf '%s\n' $w1 $w2 | sort -u | wc -l)" -eq "$(printf '%s\n' $w1 $w2 | wc -l)" ] \
    || fail "the workers' tasks shared cores: worker 1 on $w1, worker 2 on $w2"

# One worker owning all cores: two tasks at once get different cores; a
# task asking for 2 cpus gets 2 cores.
cat > job2.yaml <<'YAML'
name: bind2
tasks:
  - name: pair
    shell: 'sed -n "s/^Cpus_allowed_list:\t//p" /proc/self/status; sleep 0.5'
    params: {i: [1, 2]}
  - name: wide
    shell: 'sed -n "s/^Cpus_allowed_list:\t//p" /proc/self/status'
    resources: {cpus: 2}
    after: [pair]
YAML
gr_run 2 job2.yaml --run-dir one > out2.txt 2> err2.txt || fail "one worker: $(cat err2.txt)"
a=$("$GRIDRUN" output one 'pair[0]')
b=$("$GRIDRUN" output one 'pair[1]')
[ -n "$a" ] && [ "$a" != "$b" ] || fail "concurrent tasks on the same cpus: '$a' and '$b'"
wide=$("$GRIDRUN" output one wide)
[ "$(echo "$wide" | tr ',' '\n' | awk -F- '{ n += ($2 == "" ? 1 : $2 - $1 + 1) } END { print n }')" -ge 2 ] \
    || fail "a 2-cpu task got '$wide'"

# --no-bind: tasks keep the worker's affinity and are told nothing.
gr_run 2 job2.yaml --run-dir nobind --no-bind > /dev/null 2> err3.txt || fail "--no-bind: $(cat err3.txt)"
all=$(sed -n 's/^Cpus_allowed_list:\t//p' /proc/self/status)
[ "$("$GRIDRUN" output nobind 'pair[0]')" = "$all" ] || fail "--no-bind still bound the task"
pass "worker 1 on $w1, worker 2 on $w2; pair on $a and $b; wide on $wide"
