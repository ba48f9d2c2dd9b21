#!/bin/bash
# A run directory on a full disk (a small tmpfs): a clear error naming the
# directory and exit 74, nothing already done lost, and once there is
# room again the same command resumes and completes every task exactly
# once.  The disk fills before the run (the spec cannot be stored), with
# the run's own output, and from outside while the run goes.  Also: a task
# that writes far more than its max_output and its disk does not fill the
# disk, since its spool is cut back while it runs.  Needs root (mount).
. "$(dirname "$0")/lib.sh"
test_timeout 120

MNT="$WORK/mnt"
mkdir -p "$MNT"
mount -t tmpfs -o size=16m tmpfs "$MNT" 2> /dev/null || skip "cannot mount a tmpfs (not root?)"
trap 'umount -l "$MNT" 2> /dev/null; cleanup' EXIT

# mpirun's own lines, which the checks below do not care about, dropped.
errors () {
    grep -E "^gridrun" "$1"
}

# 1. A task that writes 40 MiB, 64 KiB kept, on a 16 MiB disk: it finishes
# normally, with the note.
cat > chatty.yaml <<'YAML'
name: chatty
tasks:
  - name: chatty
    shell: "for i in $(seq 1 40); do head -c 1048576 /dev/zero; sleep 0.03; done"
    max_output: 64K
YAML
gr_run 2 chatty.yaml --run-dir "$MNT/chatty" > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "a task writing more than its disk holds: exit $rc: $(errors err.txt)"
[ "$("$GRIDRUN" output "$MNT/chatty" chatty | tail -n 1)" = "[gridrun: output truncated after 65536 bytes (the task wrote 41943040); raise max_output: or --max-output]" ] \
    || fail "chatty: $("$GRIDRUN" output "$MNT/chatty" chatty | tail -c 200)"
rm -rf "$MNT/chatty"

# 2. Full before the run: the spec cannot be stored.  Exit 74, the path,
# and nothing left that would stop the same command from running later.
cat > fill.yaml <<'YAML'
name: fill
tasks:
  - name: w
    shell: "head -c 200000 /dev/zero | tr '\\0' x; echo; echo out-{i}"
    params: {i: {range: [1, 40]}}
    retries: {max: 3, backoff: 2s}
YAML
dd if=/dev/zero of="$MNT/filler" bs=64k 2> /dev/null
gr_run 3 fill.yaml --run-dir "$MNT/run" > out.txt 2> err.txt
rc=$?
[ $rc -eq 74 ] || fail "spec on a full disk: exit $rc, want 74: $(errors err.txt)"
grep -q "^gridrun: cannot write '$MNT/run/spec\(-[0-9a-f]\{16\}\)\?.pack.tmp.[0-9]*': No space left on device; the run directory '$MNT/run' cannot be written: free space on its file system (or give another --run-dir) and run the same command again" err.txt \
    || fail "spec on a full disk: $(errors err.txt)"
[ ! -e "$MNT/run/spec.yaml" ] && [ ! -e "$MNT/run/spec.pack" ] \
    && [ -z "$(ls "$MNT/run" | grep '^spec-')" ] || fail "half a run left behind: $(ls "$MNT/run")"
rm -f "$MNT/filler"

# 3. The run's own output fills the disk (4 MiB; 40 tasks write 8 MB).
# A task whose own write of its output fails can fail before gridrun sees
# the disk full: its retries (delayed past the stop) take care of it.
mount -o remount,size=4m "$MNT" || fail "cannot shrink the tmpfs"
gr_run 3 fill.yaml --run-dir "$MNT/run" > out.txt 2> err.txt
rc=$?
[ $rc -eq 74 ] || fail "output filling the disk: exit $rc, want 74: $(errors err.txt)"
grep -q "error: the run directory '$MNT/run' cannot be written: .*No space left on device.*  The run stops now (exit 74), keeping what it committed; free space on its file system, then run the same command again to resume" err.txt \
    || fail "no error from the master: $(errors err.txt)"
grep -q "error: cannot keep task output in '$MNT/run/out/w000[12].log' (.*): No space left on device" err.txt \
    || fail "no error from a worker: $(errors err.txt)"
grep -q "^gridrun: job 'fill' stopped: its run directory cannot be written (resumable: free space, then run it again)" out.txt \
    || fail "summary: $(cat out.txt)"
[ "$(cat "$MNT/run/exit_status")" = 74 ] || fail "exit_status: $(cat "$MNT/run/exit_status")"
"$GRIDRUN" status "$MNT/run" > status.txt 2>&1
grep -q "stopped: the run directory could not be written" status.txt || fail "status: $(cat status.txt)"
before=$("$GRIDRUN" status --list done "$MNT/run" | wc -l)
[ "$before" -gt 0 ] && [ "$before" -lt 40 ] || fail "$before tasks done before the disk was full"

mount -o remount,size=64m "$MNT" || fail "cannot grow the tmpfs"
gr_run 3 fill.yaml --run-dir "$MNT/run" > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "resume with room: exit $rc: $(errors err.txt)"
grep -q "resumed     incarnation 2: $before done before, 0 duplicate completions ignored" out.txt \
    || fail "resume summary: $(cat out.txt)"
"$GRIDRUN" status --list done "$MNT/run" | cut -d' ' -f1 | sort > done.txt
[ "$(wc -l < done.txt)" -eq 40 ] && [ -z "$(uniq -d done.txt)" ] || fail "done: $(cat done.txt)"
# One successful attempt a task in the output index, and its output whole.
cat "$MNT"/run/out/w*.idx | awk -F'\t' '$4 == 0 && $5 == 0 { print $3 }' | sort > ok.txt
grep -q "tasks       40: 40 done, 0 failed" out.txt || fail "a task failed for good: $(cat out.txt)"
[ "$(wc -l < ok.txt)" -eq 40 ] && [ -z "$(uniq -d ok.txt)" ] || fail "index: $(cat ok.txt)"
for i in 0 7 39; do
    "$GRIDRUN" output "$MNT/run" "w[$i]" > w.out
    line="out-$((i + 1))"
    [ "$(tail -n 1 w.out)" = "$line" ] && [ "$(wc -c < w.out)" -eq $((200000 + 1 + ${#line} + 1)) ] \
        || fail "output of w[$i]: $(wc -c < w.out) bytes, ending $(tail -c 100 w.out)"
done
[ ! -e "$MNT/run/.reserve" ] || fail "the reserve was left behind"
rm -rf "$MNT/run"

# 4. Something else fills the disk while the run goes: the journal or the
# output index cannot be written.
mount -o remount,size=4m "$MNT" || fail "cannot shrink the tmpfs"
cat > noop.yaml <<'YAML'
name: noops
tasks:
  - name: n
    builtin: noop
    duration: 10ms
    params: {i: {range: [1, 1000]}}
YAML
args=(noop.yaml --run-dir "$MNT/run" --cpus-per-worker 2)
gr_run 3 "${args[@]}" > out.txt 2> err.txt &
pid=$!
for i in $(seq 1 100); do
    [ "$("$GRIDRUN" status --list done "$MNT/run" 2> /dev/null | wc -l)" -ge 50 ] && break
    sleep 0.1
done
dd if=/dev/zero of="$MNT/filler" bs=4k 2> /dev/null
wait $pid
rc=$?
[ $rc -eq 74 ] || fail "disk filled from outside: exit $rc, want 74: $(errors err.txt)"
grep -q "error: the run directory '$MNT/run' cannot be written: .*No space left on device.*  The run stops now (exit 74)" err.txt \
    || fail "disk filled from outside: $(errors err.txt)"
before=$("$GRIDRUN" status --list done "$MNT/run" | wc -l)
[ "$before" -lt 1000 ] || fail "the run finished before the disk was full"
rm -f "$MNT/filler"
gr_run 3 "${args[@]}" > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "resume after freeing space: exit $rc: $(errors err.txt)"
grep -q "resumed     incarnation 2: $before done before, 0 duplicate completions ignored" out.txt \
    || fail "resume summary: $(cat out.txt)"
"$GRIDRUN" status --list done "$MNT/run" | cut -d' ' -f1 | sort > done.txt
[ "$(wc -l < done.txt)" -eq 1000 ] && [ -z "$(uniq -d done.txt)" ] || fail "$(wc -l < done.txt) done"
pass
