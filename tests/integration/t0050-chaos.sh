#!/bin/bash
# Chaos mode (doc/hardening.md).  A short soak (scripts/chaos-soak):
# sweeps with tasks killed, messages held back and journal writes failing
# (EIO, and a full disk in the ENOSPC round), each resumed until it
# completes, every task exactly once, nothing done lost or run again, and
# the full disk stopping its run with exit 74 and the message to resume.
# The soak's checker must catch a journal with a task completed twice.
# Every worker killing itself ends the run resumable (75).  Task output
# that cannot be kept stops the run (74), and the resumes keep every
# task's output once.  Bad specs are
# refused with exit 2 and the reason; --chaos wins over GRIDRUN_CHAOS.
# A checkpoint save failed by chaos says why and leaves the step before
# it loadable.
. "$(dirname "$0")/lib.sh"
test_timeout 240
SOAK="$GR_SRCDIR/scripts/chaos-soak"

cat > job.yaml <<'YAML'
name: cm
tasks:
  - name: t
    command: [sleep, "0.01"]
    params: {i: {range: [1, 30]}}
YAML
# Tasks long enough that a kill planned within the first 0.1 s lands.
cat > long.yaml <<'YAML'
name: cm
tasks:
  - name: t
    command: [sleep, "5"]
    params: {i: {range: [1, 30]}}
YAML

# Bad specs: exit 2 before MPI starts, naming the item and what is allowed.
"$GRIDRUN" run --chaos kill-task=2 job.yaml > bad.out 2>&1
[ $? = 2 ] || fail "--chaos kill-task=2 was not a usage error: $(cat bad.out)"
grep -q "^gridrun: --chaos: item 'kill-task=2': the rate must be a probability from 0 to 1" bad.out \
    || fail "bad rate: $(cat bad.out)"
GRIDRUN_CHAOS=kil-task=0.1 "$GRIDRUN" run job.yaml > bad.out 2>&1
[ $? = 2 ] || fail "GRIDRUN_CHAOS=kil-task=0.1 was not a usage error: $(cat bad.out)"
grep -q "GRIDRUN_CHAOS: item 'kil-task=0.1': unknown fault 'kil-task'; known: kill-task, kill-worker, delay" \
    bad.out || fail "unknown fault: $(cat bad.out)"
"$GRIDRUN" run --chaos delay=0.1 job.yaml > bad.out 2>&1
grep -q "give delay=RATE:DURATION" bad.out || fail "delay without duration: $(cat bad.out)"
# The option wins over the environment, even over a bad value; off is off.
GRIDRUN_CHAOS=kil-task=0.1 gr_run 2 job.yaml --run-dir off --chaos off > off.out 2>&1 \
    || fail "--chaos off over a bad GRIDRUN_CHAOS: $(tail -5 off.out)"
grep -q "chaos mode\|chaos:\|^  injected" off.out && fail "chaos was on with --chaos off: $(grep chaos off.out)"
# The environment alone turns it on, and the summary counts what it did.
GRIDRUN_CHAOS=kill-task=1,seed=3 gr_run 2 long.yaml --run-dir env > env.out 2>&1
[ $? = 1 ] || fail "every attempt killed, no retries: want exit 1: $(tail -5 env.out)"
grep -q "warn: chaos mode: injecting faults on purpose: kill-task=1,seed=3" env.out \
    || fail "no chaos mode warning: $(head -5 env.out)"
grep -q "warn: chaos: killed task t\[[0-9]*\] ([0-9a-f]*) attempt 1 after" env.out \
    || fail "no warning of a killed task: $(head -5 env.out)"
summary_line env chaos | grep -q "kill-task=1,seed=3" || fail "summary: $(cat env/summary.txt)"
summary_line env injected | grep -q "^  injected    30 tasks killed" \
    || fail "summary: $(cat env/summary.txt)"
summary_line env tasks | grep -q "30 failed" || fail "summary: $(cat env/summary.txt)"
grep -q '"event":"chaos","fault":"kill-task","rank":1' env/events.jsonl \
    || fail "no chaos event: $(grep chaos env/events.jsonl)"

# The soak.  Round 2 is the ENOSPC round.  Its seed (16 + 2) makes its
# run meet the full disk at its sixth journal write, mid-run (the faults
# of the journal are drawn per write from a stream of the master's own,
# so the moment does not depend on timing).
"$SOAK" --rounds 3 --tasks 60 --ranks 3 --enospc-every 2 --seed 16 \
    --rates kill-task=0.05,delay=0.05:10ms,journal-eio=0.02 --dir "$WORK/soak" --keep \
    > soak.out 2>&1
rc=$?
cat soak.out
[ $rc = 0 ] || fail "the soak found violations (exit $rc): $(grep -A3 VIOLATION soak.out | head -20)"
summary=$(grep '^summary:' soak.out) || fail "no summary line"
get () { echo "$summary" | grep -o " $1=[0-9]*" | cut -d= -f2; }
[ "$(get violations)" = 0 ] || fail "violations: $summary"
[ "$(get task_kills)" -ge 1 ] || fail "no task was killed: $summary"
[ "$(get delays)" -ge 1 ] || fail "no message was held back: $summary"
[ "$(get stops_enospc)" -ge 1 ] || fail "no run stopped on a full journal disk: $summary"
[ "$(get executions)" -gt "$(get tasks)" ] || fail "killed tasks did not run again: $summary"
grep -q "^round 2 \[ENOSPC\]: exits 74 \(.* \)\?0; .* 1 ENOSPC;" soak.out \
    || fail "round 2 did not stop with 74 and then finish"
# It stopped mid-run: its resume found tasks done, and ran none of them.
grep -q "resumed     incarnation 2: [1-9][0-9]* done before, 0 duplicate" soak/round-2/run-2.out \
    || fail "round 2's first run did nothing before the full disk: $(cat soak/round-2/run-2.out)"
err=$(ls soak/round-2/run-1.err)
grep -q "error: the run directory '.*/round-2/run' cannot be written: .*No space left on device" "$err" \
    || fail "the full disk's message: $(grep error "$err")"
grep -q "free space on its file system, then run the same command again to resume (or: gridrun run --run-dir $WORK/soak/round-2/run)" \
    "$err" || fail "the message does not say how to resume: $(grep error "$err")"

# The checker has teeth: the same run with one more successful end of a
# task it has done (a well-formed record) is a violation.
/usr/bin/python3 -c 'import struct' 2> /dev/null || fail "no /usr/bin/python3 (the soak's checker needs it)"
cp -r soak/round-1/run doctored
/usr/bin/python3 - doctored/journal \
    "$("$GRIDRUN" status --list done doctored | grep '^s\[0\] ' | cut -d' ' -f2)" <<'PY' \
    || fail "could not doctor the journal"
import struct, sys
def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF
path, key = sys.argv[1], int(sys.argv[2], 16)
# TASK_END of worker 1, one entry: flags 0 (index 0, def 0, attempt 1,
# exit 0, DONE, no times), then in version 2 the key; version 3 entries
# have none (the task is s[0], done like every other).
version = open(path, "rb").read(8)[7]
p = struct.pack("<BdII", 4, 1.7e9, 1, 1) + bytes([0])
if version == 2:
    p += struct.pack("<Q", key)
with open(path, "ab") as f:
    f.write(struct.pack("<II", len(p), crc32c(p)) + p)
PY
"$SOAK" --check-run doctored > doctored.out 2>&1
[ $? = 1 ] || fail "the checker passed a task completed twice: $(cat doctored.out)"
grep -q "VIOLATION: task [0-9a-f]* completed 2 times in the journal" doctored.out \
    || fail "checker: $(cat doctored.out)"
grep -q "VIOLATION: gridrun status: 1 duplicate completions" doctored.out \
    || fail "checker: $(cat doctored.out)"

# Every worker kills itself at its first result: the run ends resumable,
# and a resume without chaos completes it, each task once.
GRIDRUN_FINALIZE_GRACE=3 gr_launch 3 job.yaml --run-dir lost --lost-after 2s \
    --chaos kill-worker=1,seed=5 > lost.out 2>&1
rc=$?
[ $rc = 75 ] || fail "all workers killed: exit $rc, want 75: $(tail -5 lost.out)"
[ "$(grep -c 'warn: chaos: killing this worker (rank [12])' lost.out)" = 2 ] \
    || fail "not both workers killed themselves: $(grep chaos lost.out)"
grep -q "error: every worker is lost: the run stops here" lost.out || fail "$(tail -5 lost.out)"
gr_launch 3 --run-dir lost > lost2.out 2>&1 || fail "resume: $(tail -5 lost2.out)"
"$SOAK" --check-run lost > lost-check.out 2>&1 || fail "after the resume: $(cat lost-check.out)"

# Task output that cannot be kept (output-eio): the run stops with 74 and
# says why; the attempt is not counted, and resumes (output-enospc, then
# no chaos) complete every task once, each with its own output once.
cat > echo.yaml <<'YAML'
name: ce
tasks:
  - name: e
    command: [echo, "out-{i}"]
    params: {i: {range: [1, 20]}}
YAML
gr_run 3 echo.yaml --run-dir outf --chaos output-eio=0.3,seed=5 > outf.out 2>&1
rc=$?
[ $rc = 74 ] || fail "output-eio=0.3: exit $rc, want 74: $(tail -5 outf.out)"
grep -q "warn: chaos: keeping task output (std...) failed with EIO" outf.out \
    || fail "no chaos warning: $(grep -E 'chaos|error' outf.out)"
grep -q "error: the run directory '.*outf' cannot be written: worker [12] on .* cannot keep task output in '.*outf/out': Input/output error" \
    outf.out || fail "no message: $(grep error outf.out)"
gr_run 3 echo.yaml --run-dir outf --chaos output-enospc=1 > outf2.out 2>&1
rc=$?
[ $rc = 74 ] || fail "output-enospc=1: exit $rc, want 74: $(tail -5 outf2.out)"
grep -q "cannot keep task output in '.*outf/out': No space left on device" outf2.out \
    || fail "no ENOSPC message: $(grep error outf2.out)"
gr_run 3 echo.yaml --run-dir outf > outf3.out 2>&1 || fail "resume: $(tail -5 outf3.out)"
summary_line outf tasks | grep -q "20: 20 done" || fail "summary: $(cat outf/summary.txt)"
"$SOAK" --check-run outf > outf-check.out 2>&1 || fail "exactly once: $(cat outf-check.out)"
for i in $(seq 0 19); do
    [ "$("$GRIDRUN" output outf "e[$i]")" = "out-$((i + 1))" ] \
        || fail "output of e[$i]: '$("$GRIDRUN" output outf "e[$i]")'"
done

# Checkpoints: a save that fails by chaos says so, and the step before it
# is still the one a load finds.
ckt 3 ck save 1,2
GRIDRUN_COLL=mpi GRIDRUN_CHAOS=ckpt-enospc=1 timeout -k 5 60 "$LOCAL_MPIRUN" -n 3 \
    "$GR_BUILDDIR/tests/bin/gr-ckpttest" ck save 3 > ckt.out 2>&1 \
    && fail "a save with ckpt-enospc=1 succeeded: $(cat ckt.out)"
grep -q "save 3: gr_ckpt_save: rank 0: cannot write '.*rank-00000.h5': No space left on device (injected by chaos mode" \
    ckt.out || fail "the failed save's message: $(grep -v '^---\|^ *$' ckt.out | head -5)"
ls -a ck | grep -q tmp && fail "a failed save left its temporary directory: $(ls -a ck)"
ckt 3 ck load --expect 2
ckt 2 ck save 3 --layout per-rank
ckt 2 ck load --expect 3
pass "$(get task_kills) task kills, $(get stops_enospc) full-disk stops, $(get executions) executions of $(get tasks) tasks"
