#!/bin/bash
# libgridrun's collectives on host buffers under mpirun with 1, 2 and 3
# ranks: gr-colltest checks every collective, type, op and size against a
# local reference.  Then the same with the other code paths forced: pieces
# as for counts beyond INT_MAX (GRIDRUN_COLL_MAX_CHUNK), MPI's own
# nonblocking allreduce (GRIDRUN_COLL_RING_MIN), tiny ring segments
# (GRIDRUN_COLL_SEGMENT); the preemption notice; gr_init's errors; a
# timeout; and that libgridrun exports exactly the names in gridrun.sym.
. "$(dirname "$0")/lib.sh"
test_timeout 600

BIN="$GR_BUILDDIR/tests/bin/gr-colltest"
[ -x "$BIN" ] || fail "no $BIN (make check builds it)"

# coll N NAME ARGS...: mpirun with N ranks, output in NAME.out; the exit
# code is returned.
coll () {
    local n=$1 name=$2
    shift 2
    timeout -k 5 240 "$LOCAL_MPIRUN" -n "$n" "$@" > "$name.out" 2>&1
}

for n in 1 2 3; do
    coll $n plain$n "$BIN" || fail "$n ranks: $(tail -20 plain$n.out)"
    grep -q "gr-colltest: $n ranks, backend mpi: all matched" plain$n.out \
        || fail "$n ranks: $(tail -5 plain$n.out)"
    # Tensors of gr_fusion_alloc: each rank maps every rank's fusion memory.
    grep -qx "fusion maps: $n" plain$n.out || fail "$n ranks: fusion memory not shared: $(grep maps plain$n.out)"
done

# Fusion memory by messages (GRIDRUN_COLL_SHM=0), in chunks of 4 KiB
# (many chunks, tensors larger than one), and ranks that allocate
# different tensors.
coll 3 noshm env GRIDRUN_COLL_SHM=0 "$BIN" || fail "GRIDRUN_COLL_SHM=0: $(tail -20 noshm.out)"
grep -qx "fusion maps: 1" noshm.out || fail "GRIDRUN_COLL_SHM=0: $(grep maps noshm.out)"
coll 3 fchunk env GRIDRUN_COLL_FUSION_CHUNK=4096 "$BIN" \
    || fail "4 KiB fusion chunks: $(tail -20 fchunk.out)"
coll 3 mismatch "$BIN" --fusion-mismatch || fail "fusion mismatch: $(cat mismatch.out)"
grep -q "EINVAL on every rank" mismatch.out || fail "fusion mismatch: $(cat mismatch.out)"

coll 3 chunk1000 env GRIDRUN_COLL_MAX_CHUNK=1000 "$BIN" \
    || fail "pieces of 1000 elements: $(tail -20 chunk1000.out)"
coll 2 chunk7 env GRIDRUN_COLL_MAX_CHUNK=7 "$BIN" \
    || fail "pieces of 7 elements: $(tail -20 chunk7.out)"
coll 3 nbc env GRIDRUN_COLL_RING_MIN=1000000000 "$BIN" \
    || fail "MPI_Iallreduce path: $(tail -20 nbc.out)"
coll 3 segments env GRIDRUN_COLL_SEGMENT=4096 "$BIN" \
    || fail "4 KiB ring segments: $(tail -20 segments.out)"

coll 2 info "$BIN" --info || fail "--info: $(cat info.out)"
[ "$(grep -c '^rank [01]/2 local.* backend mpi$' info.out)" -eq 2 ] || fail "--info: $(cat info.out)"
grep -q "rank 1/2 local 1/2 .* node 0/1 rack " info.out || fail "--info: $(cat info.out)"

coll 2 preempt env GRIDRUN_PREEMPT_SIGNAL=USR1 "$BIN" --preempt "$(kill -l USR1)" \
    || fail "GRIDRUN_PREEMPT_SIGNAL=USR1: $(cat preempt.out)"

# GRIDRUN_COLL=nccl without a usable GPU: a clear error on every rank (on
# a machine where NCCL works, gr-colltest says so and passes).
coll 2 nccl env GRIDRUN_COLL=nccl "$BIN" --init-error ENOTSUP "GRIDRUN_COLL=nccl" \
    || fail "GRIDRUN_COLL=nccl: $(cat nccl.out)"
grep -qE "cannot use NCCL|NCCL is usable here" nccl.out || fail "GRIDRUN_COLL=nccl: $(cat nccl.out)"
coll 1 bogus env GRIDRUN_COLL=bogus "$BIN" --init-error EINVAL "GRIDRUN_COLL=bogus is not" \
    || fail "GRIDRUN_COLL=bogus: $(cat bogus.out)"
coll 1 bind env GRIDRUN_BIND=sideways "$BIN" --init-error EINVAL "GRIDRUN_BIND=sideways" \
    || fail "GRIDRUN_BIND=sideways: $(cat bind.out)"
coll 1 shmoff env GRIDRUN_COLL_SHM=off "$BIN" --init-error EINVAL "GRIDRUN_COLL_SHM=off is not 0 or 1" \
    || fail "GRIDRUN_COLL_SHM=off: $(cat shmoff.out)"
coll 1 fchunkbad env GRIDRUN_COLL_FUSION_CHUNK=4k "$BIN" --init-error EINVAL \
    "GRIDRUN_COLL_FUSION_CHUNK=4k is not a number of bytes" \
    || fail "GRIDRUN_COLL_FUSION_CHUNK=4k: $(cat fchunkbad.out)"
coll 1 tmo env GRIDRUN_COLL_TIMEOUT=soon "$BIN" --init-error EINVAL "GRIDRUN_COLL_TIMEOUT" \
    || fail "GRIDRUN_COLL_TIMEOUT=soon: $(cat tmo.out)"

# One rank 3 s late, a 1 s deadline: the others get ETIMEDOUT.
coll 3 timeout env GRIDRUN_COLL_TIMEOUT=1 "$BIN" --timeout || fail "timeout: $(cat timeout.out)"
[ "$(grep -c 'ETIMEDOUT after' timeout.out)" -eq 2 ] || fail "timeout: $(cat timeout.out)"

# Several nodes: three emulated hosts (tests/integration/netns.sh), ranks
# 0,1 on h1, 2,3 on h2 and 4 on h3.  Node indexes and racks (from a site
# file), then the collectives between hosts (over TCP).  Only this part is
# skipped where network namespaces cannot be made.
. "$GR_SRCDIR/tests/integration/netns.sh" || exit 1
(
    trap netns_down EXIT
    netns_up 3 2
    netns_site site.yaml
    timeout -k 5 120 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" \
        env GRIDRUN_SITE="$WORK/site.yaml" "$BIN" --info > multi-info.out 2>&1 \
        || fail "--info on 3 hosts: $(cat multi-info.out)"
    for want in "rank 0/5 local 0/2 host h1 node 0/3 rack ra zone z1" \
        "rank 3/5 local 1/2 host h2 node 1/3 rack ra zone z1" \
        "rank 4/5 local 0/1 host h3 node 2/3 rack rb zone z1"; do
        grep -q "^$want " multi-info.out || fail "3 hosts: no '$want' in: $(cat multi-info.out)"
    done
    timeout -k 5 300 "$NETNS_MPIRUN" -n 5 --hostfile "$WORK/hosts" "$BIN" > multi.out 2>&1 \
        || fail "5 ranks on 3 hosts: $(tail -20 multi.out)"
    grep -q "gr-colltest: 5 ranks, backend mpi: all matched" multi.out \
        || fail "5 ranks on 3 hosts: $(tail -5 multi.out)"
    # Ranks on several hosts share fusion memory within each host (rank 0
    # maps its own and rank 1's), and reduce between hosts by messages.
    grep -qx "fusion maps: 2" multi.out || fail "5 ranks on 3 hosts: $(grep maps multi.out)"
)
rc=$?
[ $rc -eq 77 ] && echo "the part on emulated hosts was skipped"
[ $rc -eq 0 ] || [ $rc -eq 77 ] || exit 1

# The shared library exports the public API and nothing else.
so="$GR_BUILDDIR/src/lib/.libs/libgridrun.so"
[ -f "$so" ] || fail "no $so"
nm -D --defined-only "$so" | awk '{ print $NF }' | sort > exported.txt
sort "$GR_SRCDIR/src/lib/gridrun.sym" > wanted.txt
diff -u wanted.txt exported.txt > exports.diff \
    || fail "libgridrun.so exports differ from src/lib/gridrun.sym: $(cat exports.diff)"
pass
