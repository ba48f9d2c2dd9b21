#!/bin/bash
# Damaged checkpoints: a flipped bit in a dataset, a truncated file, a
# missing rank file, a damaged meta, a missing index, damaged HDF5
# metadata, a bad index.  Each time the load falls back to the newest step
# that is still whole and its report says what was wrong with the newer
# ones; `gridrun ckpt verify` exits 1 naming the damage, 0 for an intact
# step; nothing crashes.
. "$(dirname "$0")/lib.sh"
test_timeout 120

CKT="$GR_BUILDDIR/tests/bin/gr-ckpttest"
[ -x "$CKT" ] || fail "$CKT is not built (make check builds it)"
export GRIDRUN_COLL=mpi


# flip FILE OFFSET: invert one bit of the byte at OFFSET.
flip () {
    local b
    b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
    [ -n "$b" ] || fail "no byte $2 in $1"
    printf "$(printf '\\%03o' $((b ^ 16)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# data_offset DIR STEP FILE ARRAY: where ARRAY's bytes start in FILE, from
# the step's meta.
data_offset () {
    awk -v f="$3" -v a="$4" '$1 == "file" { cur = $2 } $1 == "data" && cur == f && $2 == a { print $4; exit }' \
        "$1/step-$(printf %08d "$2")/meta"
}

# verify_fails DIR [STEP] WORDS...: gridrun ckpt verify exits 1 and says WORDS.
verify_fails () {
    local d=$1 step=$2 out
    shift 2
    out=$("$GRIDRUN" ckpt verify "$d" $step 2>&1)
    [ $? = 1 ] || fail "ckpt verify $d $step: not exit 1: $out"
    for w in "$@"; do
        grep -qF -- "$w" <<< "$out" || fail "ckpt verify $d $step lacks '$w': $out"
    done
}

ckt 3 d save 10,20,30,40 --keep 0
"$GRIDRUN" ckpt verify d > verify.out || fail "intact: $(cat verify.out)"

# A flipped bit in dataset w1 of rank 1's file of step 40.
off=$(data_offset d 40 rank-00001.h5 w1)
flip d/step-00000040/rank-00001.h5 $((off + 5))
ckt 3 d load --expect 30 \
    --report "step 40: rank-00001.h5: checksum mismatch in dataset 'w1'; using step 30"
verify_fails d "" "step 40: DAMAGED: rank-00001.h5: checksum mismatch in dataset 'w1'" \
    "step 30: ok" "a load would use step 30"
verify_fails d 40 "rank-00001.h5: checksum mismatch in dataset 'w1'"
"$GRIDRUN" ckpt verify d 30 > verify.out || fail "step 30 intact: $(cat verify.out)"

# A truncated file in step 30.
truncate -s 1000 d/step-00000030/rank-00002.h5
ckt 3 d load --expect 20 --report "step 40: rank-00001.h5: checksum mismatch in dataset 'w1'" \
    --report "step 30: rank-00002.h5: truncated (1000 of " --report "using step 20"
# Loading into targets, the damaged steps' bytes are overwritten by step
# 20's.
ckt 3 d load --expect 20 --into --report "using step 20"
verify_fails d 30 "rank-00002.h5: truncated (1000 of"

# A missing rank file in step 20; a load on 2 ranks (another size) too.
rm d/step-00000020/rank-00000.h5
ckt 2 d load --expect 10 --report "step 20: rank-00000.h5: missing; using step 10"
ckt 2 d load --expect 10 --into
"$GRIDRUN" ckpt ls d > ls.out || fail "ckpt ls: $(cat ls.out)"
grep -qE "^ +20 .*damaged: rank-00000.h5: missing" ls.out || fail "ckpt ls: $(cat ls.out)"

# Step 10's meta damaged: the index's record stands in for it.
flip d/step-00000010/meta 20
ckt 3 d load --expect 10
verify_fails d 10 "meta: damaged: checksum mismatch" "using the index's record"

# The index missing: steps are found by their directories; step 10 now
# has no readable record at all, so nothing is left.
rm d/index
ckt 3 d load --expect -1 --report "step 10: " --report "no valid step"
grep -q "no valid checkpoint in 'd'" ckt.out || fail "no error text: $(cat ckt.out)"
verify_fails d "" "index: DAMAGED: cannot read" "no step is intact"

# Without the index but with intact metas, the load still finds steps.  A
# save that died halfway (a .tmp directory) is shown as uncommitted, never
# loaded, and cleared by the next open.
ckt 2 e save 1,2
rm e/index
mkdir e/.step-00000099.tmp
echo junk > e/.step-00000099.tmp/rank-00000.h5
"$GRIDRUN" ckpt ls e > ls.out || fail "ckpt ls: $(cat ls.out)"
grep -qE "^ +99 .*uncommitted \(\.step-00000099\.tmp\)" ls.out || fail "ckpt ls: $(cat ls.out)"
ckt 2 e load --expect 2
[ -e e/.step-00000099.tmp ] && fail "the leftover .tmp directory is still there"
"$GRIDRUN" ckpt ls e > ls.out || fail "ckpt ls without index: $(cat ls.out)"
grep -q "ok, not in the index" ls.out && grep -q "^index: cannot read" ls.out \
    || fail "ckpt ls without index: $(cat ls.out)"

# HDF5's own metadata damaged (a bit of the superblock).
ckt 2 m save 1,2
flip m/step-00000002/rank-00000.h5 9
ckt 2 m load --expect 1 --report "step 2: rank-00000.h5: checksum mismatch in the HDF5 metadata"
verify_fails m 2 "checksum mismatch in the HDF5 metadata"

# The shared layout: a flipped bit in rank 1's rows of w1.
ckt 3 s save 1,2 --layout shared --rows 9
off=$(data_offset s 2 shared.h5 w1)
flip s/step-00000002/shared.h5 $((off + 3 * 16 + 2))
ckt 2 s load --expect 1 --rows 9 \
    --report "step 2: shared.h5: checksum mismatch in dataset 'w1' (rows 3-5, saved by rank 1)"
verify_fails s 2 "checksum mismatch in dataset 'w1' (rows 3-5, saved by rank 1)"

# A bad index and a bad meta: clear errors, no crash.
ckt 2 b save 1
printf 'gridrun-ckpt-index 1\nstep 1\ntime x\n' > b/index
"$GRIDRUN" ckpt ls b > ls.out 2>&1 || fail "ckpt ls with a bad index: $(cat ls.out)"
grep -q "index: b/index: damaged: no checksum line" ls.out || fail "bad index: $(cat ls.out)"
ckt 2 b load --expect 1
head -c 100 /dev/urandom > b/step-00000001/meta
verify_fails b 1 "meta: damaged"
: > b/index
ckt 2 b load --expect -1 --report "step 1: "
"$GRIDRUN" ckpt ls b/index > ls.out 2>&1; [ $? = 1 ] || fail "ckpt ls of a file: $(cat ls.out)"
grep -q "cannot read checkpoint directory 'b/index': Not a directory" ls.out \
    || fail "ckpt ls of a file: $(cat ls.out)"
"$GRIDRUN" ckpt verify b nope > ls.out 2>&1; [ $? = 2 ] || fail "verify b nope: $(cat ls.out)"

# A full disk: a clear error, no step and no temporary directory left, no
# crash (HDF5 1.10 crashes at exit after a failed H5Fclose; Open MPI's
# OMPIO reports failed writes only in their counts).  A small tmpfs in a
# private mount namespace: root only.
if [ "$(id -u)" = 0 ] && unshare -m true 2> /dev/null; then
    mkdir -p full
    for layout in per-rank shared; do
        unshare -m sh -c 'mount -t tmpfs -o size=24k tmpfs full && "$@"; rc=$?; ls -a full/d; exit $rc' \
            sh timeout -k 5 60 "$LOCAL_MPIRUN" -n 2 "$CKT" full/d save 1 --rows 1000 \
            --layout $layout > full.out 2>&1
        rc=$?
        [ $rc = 1 ] || fail "full disk, $layout: exit $rc: $(tail -20 full.out)"
        grep -qE "No space left on device|is the disk full" full.out \
            || fail "full disk, $layout: $(tail -20 full.out)"
        grep -qE "^\.?step-|Segmentation|signal" full.out && fail "full disk, $layout: $(cat full.out)"
    done
else
    echo "not root: the full-disk case is not tried"
fi

pass
