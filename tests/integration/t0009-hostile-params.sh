#!/bin/bash
# Parameter values never reach a shell unless the spec asks for one, and
# then they are quoted: each arrives as exactly one literal argument.
. "$(dirname "$0")/lib.sh"
test_timeout 120

pwned="$WORK/pwned"
cat > hostile.yaml <<YAML
name: hostile
tasks:
  - name: argv
    command: ["$GR_TOOL", argv, "{v}"]
    params:
      v:
        - "a b"
        - '"quoted"'
        - "it's"
        - "\$(touch $pwned)"
        - "\`touch $pwned\`"
        - "x\ny"
        - "--leading-dash"
        - "*"
        - "; touch $pwned"
        - "{notaparam}"
  - name: sh
    shell: "printf '%s' {v} | od -An -tx1 | tr -d ' \\\\n'; echo"
    params:
      v:
        - "a b"
        - "\$(touch $pwned)"
        - "\`touch $pwned\`"
        - "'; touch $pwned; '"
        - "x\ny"
YAML
gr_run 2 hostile.yaml --run-dir run > out.txt 2> err.txt
rc=$?
[ $rc -eq 0 ] || fail "exit $rc: $(cat out.txt err.txt)"
[ ! -e "$pwned" ] || fail "a parameter value was executed"

hex () { printf '%s' "$1" | od -An -tx1 | tr -d ' \n'; }
i=0
for v in "a b" '"quoted"' "it's" "\$(touch $pwned)" "\`touch $pwned\`" $'x\ny' \
         "--leading-dash" "*" "; touch $pwned" "{notaparam}"; do
    got=$("$GRIDRUN" output run "argv[$i]")
    [ "$got" = "$(hex "$v")" ] || fail "argv[$i]: got $got for value '$v'"
    i=$((i + 1))
done
i=0
for v in "a b" "\$(touch $pwned)" "\`touch $pwned\`" "'; touch $pwned; '" $'x\ny'; do
    got=$("$GRIDRUN" output run "sh[$i]")
    [ "$got" = "$(hex "$v")" ] || fail "sh[$i]: got $got for value '$v'"
    i=$((i + 1))
done
pass
