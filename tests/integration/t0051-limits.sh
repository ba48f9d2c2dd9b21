#!/bin/bash
# The limits of gridrun-jobspec(5) LIMITS, each refused with a clear error
# (where, the numbers, what to do) and its exit code: the spec's size, the
# params of a task, the values of a file param, the tasks of a sweep, the
# length of a command (when the spec is read if it can be known then,
# else when the task starts), and the captured output of a task (cut, with
# a note, the task done).
. "$(dirname "$0")/lib.sh"
test_timeout 120

# expect_validate CODE PATTERN SPEC: validate exits CODE and says PATTERN.
expect_validate () {
    local code=$1 pat=$2 spec=$3 rc
    "$GRIDRUN" validate "$spec" > out.txt 2> err.txt
    rc=$?
    [ $rc -eq "$code" ] || fail "validate $spec: exit $rc, want $code: $(head -c 600 err.txt)"
    grep -qE -- "$pat" err.txt || fail "validate $spec: no '$pat' in: $(head -c 600 err.txt)"
}

# The spec file: 17 MiB is over the 16 MiB limit, in validate and in run.
truncate -s 17M big.yaml
expect_validate 2 "^gridrun: big.yaml: the spec is 17825792 bytes, over the limit of 16777216 bytes \(16 MiB, GR_SPEC_MAX_BYTES\); put long value lists in file: params" big.yaml
gr_run 2 big.yaml --run-dir runbig > out.txt 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "run of a 17 MiB spec: exit $rc, want 2"
grep -q "big.yaml: the spec is 17825792 bytes, over the limit" err.txt \
    || fail "run of a 17 MiB spec: $(head -c 600 err.txt)"
[ ! -e runbig ] || fail "a spec over the limit made a run directory"
rm -f big.yaml

# Params of one task: 65, over 64.
{
    printf 'name: p\ntasks:\n  - name: a\n    builtin: noop\n    params:\n'
    for i in $(seq 0 64); do printf '      p%d: [1]\n' "$i"; done
} > params.yaml
expect_validate 2 "^gridrun: params.yaml:5:5: task 'a' has 65 params, over the limit of 64 \(GR_SPEC_MAX_PARAMS\); combine some" params.yaml

# Tasks of a sweep: over 2^32 - 1, and a product that wraps around 2^64.
cat > product.yaml <<'YAML'
name: p
tasks:
  - name: small
    builtin: noop
  - name: sweep
    command: [echo, "{x}", "{y}"]
    params:
      x: {range: [1, 100000]}
      y: {range: [1, 100000]}
YAML
expect_validate 2 "^gridrun: product.yaml:7:5: the params of task 'sweep' expand to 10000000000 tasks \(x: 100000 x y: 100000 values\), over the limit of 4294967295 tasks in a run \(GR_SPEC_MAX_TASKS\); use fewer values" product.yaml
gr_run 1 product.yaml --run-dir runproduct > out.txt 2> err.txt
rc=$?
[ $rc -eq 2 ] || fail "run of a sweep over the limit: exit $rc, want 2"
grep -q "product.yaml:7:5: the params of task 'sweep' expand to 10000000000 tasks" err.txt \
    || fail "run of a sweep over the limit: $(head -c 600 err.txt)"
cat > wrap.yaml <<'YAML'
name: p
tasks:
  - name: sweep
    command: [echo, "{x}", "{y}"]
    params:
      x: {range: [0, 9223372036854775806]}
      y: [a, b, c]
YAML
expect_validate 2 "^gridrun: wrap.yaml:5:5: the params of task 'sweep' expand to more than 2\^64 tasks \(x: 9223372036854775807 x y: 3 values\), over the limit of 4294967295" wrap.yaml
cat > total.yaml <<'YAML'
name: p
tasks:
  - name: a
    builtin: noop
    params: {x: {range: [1, 3000000000]}}
  - name: b
    builtin: noop
    params: {x: {range: [1, 3000000000]}}
YAML
expect_validate 2 "^gridrun: total.yaml:6:5: the tasks of the spec add up to more than 4294967295 \(GR_SPEC_MAX_TASKS\): 3000000000 before task 'b', which has 3000000000; split the work" total.yaml

# Values of a file param: 16 Mi + 1 lines.
yes 7 | head -n 16777217 > values.txt
cat > values.yaml <<'YAML'
name: p
tasks:
  - name: a
    command: [echo, "{v}"]
    params:
      v: {file: values.txt}
YAML
expect_validate 2 "^gridrun: values.yaml:6:11: param file 'values.txt' of param 'v' holds more than 16777216 values \(line 16777217 is value 16777217\); a param may have at most 16777216 \(GR_SPEC_MAX_VALUES\)" values.yaml
rm -f values.txt

# A command whose fixed text no exec can take: refused when the spec is
# read, at its command: key.
{
    printf 'name: p\ntasks:\n  - name: a\n    command: [echo'
    for i in $(seq 1 50); do printf ', "%s"' "$(head -c 130000 /dev/zero | tr '\0' a)"; done
    printf ']\n'
} > fixed.yaml
expect_validate 2 "^gridrun: fixed.yaml:4:5: the command of task 'a' and its env: take at least 6500463 bytes before any substitution, more than the 6291456 bytes any Linux system lets a program's arguments and environment take \(ARG_MAX" fixed.yaml
rm -f fixed.yaml

# A command that is too long only once its values are in: the task fails
# to start, with the sizes in its stderr and "Argument list too long" as
# the reason; the run goes on and exits 1.  validate warns about it.
head -c 120000 /dev/zero | tr '\0' v > long.txt
echo >> long.txt
{
    printf 'name: argmax\ntasks:\n  - name: many\n    command: [echo'
    for i in $(seq 1 20); do printf ', "{v}"'; done
    printf ']\n    params: {v: {file: long.txt}}\n'
    printf '  - name: fits\n    command: [echo, "{v}"]\n    params: {v: {file: long.txt}}\n'
} > argmax.yaml
"$GRIDRUN" validate argmax.yaml > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "validate argmax.yaml: exit $rc: $(head -c 600 err.txt)"
grep -q "^gridrun: warning: argmax.yaml: task many could not start on this host: the command and its environment take [0-9]* bytes (21 arguments, [0-9]* environment variables), over this system's limit of [0-9]* bytes (ARG_MAX" err.txt \
    || fail "validate did not warn of the long command: $(head -c 600 err.txt)"
gr_run 2 argmax.yaml --run-dir runargmax > out.txt 2> err.txt
rc=$?
[ $rc -eq 1 ] || fail "run with a too long command: exit $rc, want 1: $(tail -5 err.txt)"
grep -q "failed      many (.*): could not start: Argument list too long, attempt 1" out.txt \
    || fail "summary: $(cat out.txt)"
grep -q "tasks       2: 1 done, 1 failed" out.txt || fail "counts: $(cat out.txt)"
"$GRIDRUN" output --stderr runargmax many > many.err
grep -q "^gridrun: the command and its environment take [0-9]* bytes (21 arguments, [0-9]* environment variables), over this system's limit of [0-9]* bytes (ARG_MAX, a quarter of the stack size limit: ulimit -s); pass long lists through a file" many.err \
    || fail "the stderr of the task that could not start: $(head -c 600 many.err)"
[ "$("$GRIDRUN" output runargmax fits | wc -c)" -eq 120001 ] || fail "the task that fits"

# Output: cut at max_output: (or --max-output) with a note; the task is
# done, and its output up to the cut is whole.
cat > out.yaml <<'YAML'
name: out
tasks:
  - name: big
    shell: "head -c 3000000 /dev/zero | tr '\\0' x; echo; echo err-end >&2"
    max_output: 1M
  - name: lines
    shell: "seq 1 200000"
  - name: small
    command: [echo, hi]
YAML
gr_run 2 out.yaml --run-dir runout > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "run with big output: exit $rc: $(tail -5 err.txt)"
"$GRIDRUN" output runout big > big.out
[ "$(head -c 1048576 big.out | tr -d x | wc -c)" -eq 0 ] || fail "the kept part is not the task's"
note="[gridrun: output truncated after 1048576 bytes (the task wrote 3000001); raise max_output: or --max-output]"
[ "$(tail -n 1 big.out)" = "$note" ] || fail "no note at the cut: $(tail -c 300 big.out)"
# The kept bytes, a newline (the cut fell inside a line), the note.
[ "$(wc -c < big.out)" -eq $((1048576 + 1 + ${#note} + 1)) ] || fail "kept $(wc -c < big.out) bytes"
[ "$("$GRIDRUN" output --stderr runout big)" = "err-end" ] || fail "stderr of big"
[ "$("$GRIDRUN" output runout lines | tail -n 1)" = "200000" ] || fail "output under the limit was cut"
[ "$("$GRIDRUN" output runout small)" = "hi" ] || fail "output of small"
gr_run 2 out.yaml --run-dir runout2 --max-output 100K > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "run with --max-output: exit $rc: $(tail -5 err.txt)"
"$GRIDRUN" output runout2 lines > lines.out
[ "$(tail -n 1 lines.out)" = "[gridrun: output truncated after 102400 bytes (the task wrote 1288895); raise max_output: or --max-output]" ] \
    || fail "--max-output did not win over the spec: $(tail -c 300 lines.out)"
# The cut ends a line of its own: the kept part ends inside one.
[ "$(head -c 102400 lines.out | tail -c 7)" = "$(seq 1 200000 | head -c 102400 | tail -c 7)" ] \
    || fail "the kept part of lines"
"$GRIDRUN" run --max-output 0 out.yaml 2> err.txt
[ $? -eq 2 ] || fail "--max-output 0 must exit 2"
grep -q "keep at least 1 byte" err.txt || fail "--max-output 0: $(cat err.txt)"
sed -i 's/max_output: 1M/max_output: none/' out.yaml
expect_validate 2 "^gridrun: out.yaml:5:17: max_output: expected a size of at least 1 bytes like 512M, 4G or 1.5GiB, got 'none'" out.yaml
pass
