#!/bin/bash
# Three emulated hosts (network namespaces on a bridge, tests/integration/
# netns.sh): `gridrun topo` under mpirun places h1, h2 in rack ra and h3 in
# rack rb with the right ranks, and a 300-task sweep runs every task exactly
# once on workers spread over all three hosts.
. "$(dirname "$0")/lib.sh"
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
test_timeout 100

netns_up 3 2    # 2 slots a host: -n 5 puts ranks 0,1 on h1, 2,3 on h2, 4 on h3

# (a) The cluster tree from a site file, with the ranks of each node.
netns_site site.yaml
timeout -k 5 60 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" topo --site site.yaml \
    > topo.out 2> topo.err || fail "topo under mpirun: exit $?: $(cat topo.err)"
cat > topo.golden <<'GOLDEN'
cluster: 1 zone, 2 racks, 3 nodes (site file site.yaml)
zone z1
  rack ra
    node h1: ranks 0,1
    node h2: ranks 2,3
  rack rb
    node h3: rank 4

this node, h1:
GOLDEN
head -9 topo.out > topo.head
diff -u topo.golden topo.head > topo.diff || fail "cluster tree differs: $(cat topo.diff)"
[ "$(grep -c '^cluster:' topo.out)" = 1 ] || fail "more than one rank printed: $(cat topo.out)"

# (b) A sweep over the three hosts: master and a worker on h1, two workers
# on h2, one on h3.
seen="$WORK/seen"
: > "$seen"
cat > sweep.yaml <<YAML
name: multihost
tasks:
  - name: s
    shell: 'sleep 0.05; echo "\$(hostname) {i}" >> "\$SEEN"; echo "on \$(hostname)"'
    env: {SEEN: "$seen"}
    params: {i: {range: [1, 300]}}
YAML
start=$(date +%s)
timeout -k 5 90 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$GRIDRUN" run sweep.yaml \
    --run-dir run > run.out 2> run.err
rc=$?
[ $rc -eq 0 ] || fail "sweep: exit $rc: $(tail -20 run.err)"
echo "sweep took $(($(date +%s) - start)) s"
grep -q "300: 300 done, 0 failed" run.out || fail "sweep counts: $(cat run.out)"
"$GRIDRUN" status --list "done" run | cut -d' ' -f1 | sort > done.keys \
    || fail "status --list done: exit $?"
[ "$(wc -l < done.keys)" -eq 300 ] || fail "$(wc -l < done.keys) tasks done, want 300"
[ -z "$(uniq -d done.keys)" ] || fail "a task is listed done twice"
[ "$(wc -l < "$seen")" -eq 300 ] || fail "$(wc -l < "$seen") executions, want 300"
# (the shell template quotes parameter values: "h2 '17'")
diff <(cut -d' ' -f2 "$seen" | tr -d "'" | sort -n) <(seq 1 300) > /dev/null \
    || fail "some task ran twice or never"
for h in h1 h2 h3; do
    n=$(grep -c "^$h " "$seen")
    [ "$n" -gt 0 ] || fail "no task ran on $h: $(cut -d' ' -f1 "$seen" | sort | uniq -c)"
    echo "$h ran $n tasks"
done
[ -z "$(cut -d' ' -f1 "$seen" | grep -vx 'h[123]')" ] || fail "a task ran on another host"
# Output collected from every host is readable where the run directory is.
[ "$("$GRIDRUN" output run 's[0]')" = "on $(grep " '1'\$" "$seen" | cut -d' ' -f1)" ] \
    || fail "output of s[0]: $("$GRIDRUN" output run 's[0]')"
pass
