#!/bin/bash
# A timed-out task is killed together with its children: a task that
# starts a grandchild sleep leaves nothing behind.  A task that ignores
# SIGTERM is killed with SIGKILL after its grace.
. "$(dirname "$0")/lib.sh"
test_timeout 120

cat > timeout.yaml <<YAML
name: timeout
tasks:
  - name: tree
    command: ["$GR_TOOL", tree, "$WORK/pids", "317"]
    timeout: 1s
    kill_grace: 2s
  - name: stubborn
    command: [sh, -c, 'trap "" TERM; echo \$\$ > "$WORK/stubborn.pid"; while :; do sleep 1; done']
    timeout: 1s
    kill_grace: 1s
  - name: fine
    command: [sleep, "0.1"]
    timeout: 30s
YAML
start=$(date +%s)
gr_run 3 timeout.yaml --run-dir run > out.txt 2> err.txt
rc=$?
elapsed=$(( $(date +%s) - start ))
[ $rc -eq 1 ] || fail "exit $rc, want 1: $(cat out.txt err.txt)"
grep -q "3: 1 done, 2 failed" out.txt || fail "counts: $(cat out.txt)"
grep -q "tree (.*): timeout after 1s" out.txt || fail "tree not reported as timeout: $(cat out.txt)"
grep -q "stubborn (.*): timeout after 1s" out.txt || fail "stubborn not reported as timeout"
grep -q "2 timed out" out.txt || fail "timeouts not counted"
[ $elapsed -lt 30 ] || fail "took ${elapsed}s: the kill did not happen"
read -r leader grandchild < pids || fail "no pid file"
sleep 0.5
for p in $leader $grandchild $(cat stubborn.pid); do
    if kill -0 "$p" 2>/dev/null && ! grep -q '^State:.*Z' /proc/$p/status 2>/dev/null; then
        fail "process $p survived its task's timeout"
    fi
done
pgrep -xf "sleep 317" >/dev/null && fail "a grandchild 'sleep 317' is still running"
pass
