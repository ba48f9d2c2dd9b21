#!/bin/bash
# Bad specs exit 2 with FILE:LINE:COL, both in validate and in run, and
# nothing is started.
. "$(dirname "$0")/lib.sh"
test_timeout 180

: "${GR_TEST_DATA:?}"
n=0
for spec in "$GR_TEST_DATA"/spec-bad-*.yaml; do
    [ -e "$spec" ] || fail "no bad spec fixtures in $GR_TEST_DATA"
    "$GRIDRUN" validate "$spec" > /dev/null 2> err.txt
    rc=$?
    [ $rc -eq 2 ] || fail "validate $(basename "$spec"): exit $rc, want 2"
    grep -qE "$(basename "$spec"):[0-9]+(:[0-9]+)?: " err.txt \
        || fail "validate $(basename "$spec"): no file:line:col in: $(cat err.txt)"
    n=$((n + 1))
done
[ $n -ge 15 ] || fail "only $n bad spec fixtures"

# Under mpirun too, and no run directory is made.
cat > typo.yaml <<'YAML'
name: typo
tasks:
  - name: a
    comand: [echo, hi]
YAML
gr_run 3 typo.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "run with a bad spec: exit $rc, want 2"
grep -q "typo.yaml:4:5: .*comand.*did you mean 'command'" err.txt \
    || fail "run error: $(cat err.txt)"
[ ! -e run ] || fail "a bad spec created the run directory"

# Resources no worker can satisfy are refused before any task starts.
cat > big.yaml <<'YAML'
name: big
tasks:
  - name: small
    command: [echo, small]
  - name: huge
    command: [echo, huge]
    resources: {cpus: 4096}
YAML
gr_run 3 big.yaml --run-dir runbig > out.txt 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "unsatisfiable resources: exit $rc, want 2"
grep -q "big.yaml:7:.*4096 cpus" err.txt || fail "resources error: $(cat err.txt)"
[ -z "$(cat runbig/out/*.idx 2>/dev/null)" ] || fail "a task ran before the resource check"

gr_run 1 /nonexistent/spec.yaml > out.txt 2> err.txt
[ $? -eq 2 ] || fail "missing spec file must exit 2"
grep -q "/nonexistent/spec.yaml" err.txt || fail "missing spec message: $(cat err.txt)"
"$GRIDRUN" run --cpus-per-worker lots typo.yaml 2> err.txt
[ $? -eq 2 ] || fail "bad option value must exit 2"
grep -q "'lots' is not a whole number" err.txt || fail "option message: $(cat err.txt)"
pass
