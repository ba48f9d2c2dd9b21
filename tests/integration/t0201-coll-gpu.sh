#!/bin/bash
# libgridrun's collectives on device buffers: through NCCL (one rank per
# GPU), and staged through host memory with GRIDRUN_COLL=mpi; with two
# GPUs or more, a timeout of a device collective.  Skipped (77) without a
# GPU or without NCCL in the build.
. "$(dirname "$0")/lib.sh"
test_timeout 600

BIN="$GR_BUILDDIR/tests/bin/gr-colltest"
[ -x "$BIN" ] || fail "no $BIN (make check builds it)"
grep -q "define HAVE_NCCL 1" "$GR_BUILDDIR/config.h" || skip "built without NCCL"
command -v nvidia-smi > /dev/null || skip "no nvidia-smi: no GPU"
ngpus=$(nvidia-smi -L 2> /dev/null | grep -c '^GPU')
[ "$ngpus" -gt 0 ] || skip "nvidia-smi finds no GPU"
[ "$ngpus" -gt 4 ] && ngpus=4

coll () {
    local n=$1 name=$2
    shift 2
    timeout -k 5 300 "$LOCAL_MPIRUN" -n "$n" "$@" > "$name.out" 2>&1
}

coll "$ngpus" nccl env GRIDRUN_COLL=nccl "$BIN" || fail "NCCL on $ngpus GPUs: $(tail -30 nccl.out)"
grep -q "device buffers checked (backend nccl)" nccl.out || fail "NCCL: $(tail -5 nccl.out)"
grep -q "backend nccl: all matched" nccl.out || fail "NCCL: $(tail -5 nccl.out)"

# More ranks than GPUs: auto picks MPI and stages device buffers.
coll 2 staged env GRIDRUN_COLL=mpi "$BIN" || fail "staged: $(tail -30 staged.out)"
grep -q "device buffers checked (backend mpi)" staged.out || fail "staged: $(tail -5 staged.out)"

if [ "$ngpus" -ge 2 ]; then
    coll 2 timeout env GRIDRUN_COLL=nccl GRIDRUN_COLL_TIMEOUT=1 "$BIN" --timeout --device \
        || fail "device timeout: $(cat timeout.out)"
    grep -q "ETIMEDOUT after" timeout.out || fail "device timeout: $(cat timeout.out)"
fi
pass
