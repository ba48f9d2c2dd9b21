#!/bin/bash
# A 1,000-task sweep runs every task exactly once, on 2 and on 3 workers.
. "$(dirname "$0")/lib.sh"
test_timeout 240

for n in 3 4; do
    seen="$WORK/seen$n"
    : > "$seen"
    cat > sweep$n.yaml <<YAML
name: sweep
tasks:
  - name: s
    shell: 'echo {i} >> "\$SEEN"; echo out-{i}'
    env: {SEEN: "$seen"}
    params: {i: {range: [1, 1000]}}
YAML
    gr_run $n sweep$n.yaml --run-dir run$n > out.txt 2> err.txt
    rc=$?
    [ $rc -eq 0 ] || fail "-n $n: exit $rc: $(tail -5 err.txt)"
    grep -q "1000: 1000 done, 0 failed" out.txt || fail "-n $n counts: $(cat out.txt)"
    [ "$(wc -l < "$seen")" -eq 1000 ] || fail "-n $n: $(wc -l < "$seen") executions, want 1000"
    [ -z "$(sort "$seen" | uniq -d)" ] || fail "-n $n: some task ran twice"
    diff <(sort -n "$seen") <(seq 1 1000) > /dev/null || fail "-n $n: some task never ran"
    [ "$(index_lines run$n | wc -l)" -eq 1000 ] || fail "-n $n: index has $(index_lines run$n | wc -l) lines"
    [ "$(index_lines run$n | cut -f1 | sort -u | wc -l)" -eq 1000 ] || fail "-n $n: keys not unique"
    # Every worker did some of the work.
    for f in run$n/out/w*.idx; do
        [ -s "$f" ] || fail "-n $n: worker index $f is empty"
    done
    [ "$(ls run$n/out/*.idx | wc -l)" -eq $((n - 1)) ] || fail "-n $n: not one index per worker"
    [ "$("$GRIDRUN" output run$n 's[736]')" = "out-737" ] || fail "-n $n: output of s[736]"
done
pass
