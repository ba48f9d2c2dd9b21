#!/bin/bash
# gridrun topo: the node tree of an hwloc XML fixture and the cluster tree
# of a site file (golden output), clear errors for bad input, and which
# rank sits where under mpirun.
. "$(dirname "$0")/lib.sh"
test_timeout 120
: "${GR_TEST_DATA:?}"

cp "$GR_TEST_DATA/site-good.yaml" site.yaml
"$GRIDRUN" topo --xml "$GR_TEST_DATA/topo-2s4g.xml" --site site.yaml \
    --hosts 'n[001-002],g01,w01' > topo.out 2> topo.err \
    || fail "topo with --xml and --site: exit $?: $(cat topo.err)"
cat > topo.golden <<GOLDEN
cluster: 2 zones, 3 racks, 4 nodes (site file site.yaml)
zone east [cost=standard tier=1]
  rack r1 [storage=lustre-a]
    node n001
    node n002
  rack r2 [cost=premium]
    node g01 [gpu=a100 gpus=4]
zone west [cost=low]
  rack r3
    node w01

topology of $GR_TEST_DATA/topo-2s4g.xml:
  node: 2 packages, 2 NUMA nodes, 16 cores, 32 PUs, 4 GPUs
    package 0: cores 0-7
      numa 0: cores 0-7
        gpu 0 cuda0 NVIDIA A100-SXM4-40GB (0000:17:00.0): near cores 0-7
        gpu 1 cuda1 NVIDIA A100-SXM4-40GB (0000:31:00.0): near cores 0-7
    package 1: cores 8-15
      numa 1: cores 8-15
        gpu 2 cuda2 NVIDIA A100-SXM4-40GB (0000:98:00.0): near cores 8-15
        gpu 3 cuda3 NVIDIA A100-SXM4-40GB (0000:b1:00.0): near cores 8-15
GOLDEN
diff -u topo.golden topo.out > topo.diff || fail "output differs from the golden one: $(cat topo.diff)"

# Default: this host alone, its own rack; the 1-socket fixture.
"$GRIDRUN" topo --xml "$GR_TEST_DATA/topo-1s.xml" > one.out 2>&1 || fail "topo 1s: $(cat one.out)"
grep -qx "    node $(hostname)" one.out || fail "this host is not in the tree: $(cat one.out)"
grep -qx "  node: 1 package, 1 NUMA node, 4 cores, 8 PUs, 0 GPUs" one.out \
    || fail "1-socket node: $(cat one.out)"

# SLURM_TOPOLOGY_ADDR places this host when there is no site file.
SLURM_TOPOLOGY_ADDR="s0.s3.$(hostname)" SLURM_TOPOLOGY_ADDR_PATTERN=switch.switch.node \
    "$GRIDRUN" topo --xml "$GR_TEST_DATA/topo-1s.xml" > slurm.out 2>&1 \
    || fail "topo with SLURM_TOPOLOGY_ADDR: $(cat slurm.out)"
head -3 slurm.out | tr '\n' '|' | grep -qx "cluster: 1 zone, 1 rack, 1 node (SLURM_TOPOLOGY_ADDR)|zone s0|  rack s3|" \
    || fail "Slurm placement: $(cat slurm.out)"

# This machine, without --xml, prints a node tree.
"$GRIDRUN" topo > here.out 2>&1 || fail "topo on this machine: $(cat here.out)"
grep -q "^  node: [0-9]* packages\?, " here.out || fail "no node tree for this machine: $(cat here.out)"

# Bad input exits 2 and says where.
"$GRIDRUN" topo --xml nope.xml > /dev/null 2> bad.err; rc=$?
[ $rc -eq 2 ] || fail "missing XML: exit $rc"
grep -q "nope.xml: cannot read the hwloc XML topology" bad.err || fail "missing XML: $(cat bad.err)"
echo "<topology><object" > broken.xml
"$GRIDRUN" topo --xml broken.xml > /dev/null 2> bad.err; rc=$?
[ $rc -eq 2 ] || fail "broken XML: exit $rc"
grep -q "broken.xml: not a topology hwloc can read" bad.err || fail "broken XML: $(cat bad.err)"
"$GRIDRUN" topo --site "$GR_TEST_DATA/site-bad-two-racks.yaml" > /dev/null 2> bad.err; rc=$?
[ $rc -eq 2 ] || fail "bad site file: exit $rc"
grep -q "site-bad-two-racks.yaml:9:21: node 'n003' is in rack 'r2' and in rack 'r1'" bad.err \
    || fail "bad site file: $(cat bad.err)"
"$GRIDRUN" topo --site site.yaml --hosts n001,zz9 > /dev/null 2> bad.err; rc=$?
[ $rc -eq 2 ] || fail "host not in the site file: exit $rc"
grep -q "host 'zz9' is not in the site file site.yaml" bad.err || fail "missing host: $(cat bad.err)"
"$GRIDRUN" topo --hosts 'n[1-' > /dev/null 2> bad.err; rc=$?
[ $rc -eq 2 ] || fail "bad host list: exit $rc"
grep -q "host list 'n\[1-'" bad.err || fail "bad host list: $(cat bad.err)"
"$GRIDRUN" topo extra > /dev/null 2>&1; [ $? -eq 2 ] || fail "an argument must exit 2"

# Under mpirun, rank 0 prints which ranks sit on this host.
timeout -k 5 60 "$LOCAL_MPIRUN" -n 3 "$GRIDRUN" topo --xml "$GR_TEST_DATA/topo-1s.xml" \
    > mpi.out 2> mpi.err || fail "topo under mpirun: exit $?: $(cat mpi.err)"
grep -qx "    node $(hostname): ranks 0,1,2" mpi.out || fail "ranks under mpirun: $(cat mpi.out)"
[ "$(grep -c '^cluster:' mpi.out)" = 1 ] || fail "more than one rank printed: $(cat mpi.out)"
pass
