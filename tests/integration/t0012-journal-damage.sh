#!/bin/bash
# A damaged journal tail (truncated, or with a flipped bit) is reported, the
# records before the damage are kept, and resuming finishes the run.
. "$(dirname "$0")/lib.sh"
test_timeout 300

cat > job.yaml <<'YAML'
name: damage
tasks:
  - name: t
    command: [echo, "{i}"]
    params: {i: {range: [1, 300]}}
YAML
gr_run 3 job.yaml --run-dir base > /dev/null 2>&1 || fail "base run failed"
size=$(stat -c %s base/journal)
"$GRIDRUN" status --list done base | wc -l | grep -qx 300 || fail "base run incomplete"

for mode in truncate flip; do
    rm -rf run-$mode
    cp -a base run-$mode
    rm run-$mode/exit_status
    case $mode in
        truncate) truncate -s $((size - 37)) run-$mode/journal ;;
        flip)
            off=$((size - 200))
            byte=$(dd if=run-$mode/journal bs=1 skip=$off count=1 2> /dev/null | od -An -tu1 | tr -d ' ')
            printf "$(printf '\\%03o' $((byte ^ 16)))" | dd of=run-$mode/journal bs=1 seek=$off conv=notrunc 2> /dev/null
            ;;
    esac
    "$GRIDRUN" status run-$mode > status.txt 2>&1 || fail "$mode: status failed: $(cat status.txt)"
    grep -q "damaged at byte" status.txt || fail "$mode: damage not reported: $(cat status.txt)"
    kept=$("$GRIDRUN" status --list done run-$mode | wc -l)
    [ "$kept" -gt 200 ] && [ "$kept" -le 300 ] || fail "$mode: $kept tasks kept"
    gr_run 3 job.yaml --run-dir run-$mode > resume.txt 2> resume.err
    rc=$?
    [ $rc -eq 0 ] || fail "$mode: resume exit $rc: $(cat resume.err)"
    grep -q "damaged at byte" resume.err || fail "$mode: resume did not report the damage"
    grep -q "300: 300 done" resume.txt || fail "$mode: resume counts: $(cat resume.txt)"
    "$GRIDRUN" status run-$mode > status2.txt
    grep -q "damaged" status2.txt && fail "$mode: damage still there after resume"
    [ "$("$GRIDRUN" status --list done run-$mode | wc -l)" -eq 300 ] || fail "$mode: not 300 done"
    echo "$mode: kept $kept of 300, resume finished the rest"
done
pass
