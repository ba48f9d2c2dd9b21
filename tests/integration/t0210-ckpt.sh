#!/bin/bash
# libgridrun checkpoints (tests/bin/gr-ckpttest): save and load round trips
# on 2 and 3 ranks in both layouts (loads into targets too), keep K, async saves, restarts on
# another number of ranks, a partner copy surviving a lost rank file,
# `gridrun ckpt ls|verify|show`, and h5dump and h5py reading the files.
. "$(dirname "$0")/lib.sh"
test_timeout 150

PYTHON=${GR_PYTHON:-/usr/bin/python3}
export GRIDRUN_COLL=mpi

# Round trips: 2 and 3 ranks, both layouts, 11 rows (an uneven split).
for layout in per-rank shared; do
    for n in 2 3; do
        d=rt-$layout-$n
        ckt $n $d save 10,20 --layout $layout --rows 11
        ckt $n $d load --expect 20 --rows 11
        grep -q "^loaded step 20" ckt.out || fail "$d: $(cat ckt.out)"
        ckt $n $d load --expect 20 --rows 11 --into
        [ -f $d/index ] && [ -f $d/step-00000020/meta ] || fail "$d: no index or meta"
        ls -a $d | grep -q '\.tmp$' && fail "$d: a temporary directory was left"
        [ "$(stat -c %a $d)" = 700 ] || fail "$d has mode $(stat -c %a $d)"
    done
done
[ -f rt-per-rank-3/step-00000020/rank-00002.h5 ] || fail "no rank-00002.h5 in the per-rank layout"
[ -f rt-shared-3/step-00000020/shared.h5 ] || fail "no shared.h5 in the shared layout"
[ "$(ls rt-shared-3/step-00000020)" = "$(printf 'meta\nshared.h5')" ] \
    || fail "the shared layout wrote more than one file: $(ls rt-shared-3/step-00000020)"
[ "$(stat -c %a rt-shared-3/step-00000020/shared.h5)" = 600 ] || fail "shared.h5 mode"

# keep 2: only the two newest steps stay, on disk and in the index.
ckt 2 keep save 1,2,3,4,5 --keep 2
[ "$(ls keep | tr '\n' ' ')" = "index step-00000004 step-00000005 " ] \
    || fail "keep 2 left: $(ls keep)"
[ "$(grep -c '^step ' keep/index)" = 2 ] || fail "the index lists: $(grep '^step ' keep/index)"

# Async: the caller scribbles over its arrays right after each save; the
# files hold what was saved.  keep 0 keeps everything.
ckt 3 async save 1,2,3 --async --keep 0 --rows 7
ckt 3 async load --expect 3 --rows 7
[ "$(ls -d async/step-* | wc -l)" = 3 ] || fail "keep 0 kept $(ls async)"

# Restarts on another number of ranks: saved by 3 with unequal slabs,
# loaded on 1, 2 and 4 (the even split); the shared layout likewise.  A
# load into targets (gr_ckpt_target) copies what the rank verifies, and
# reads the rest (rows another rank verified, replicated arrays).
ckt 3 reshard save 7 --uneven --rows 13
ckt 3 reshard-sh save 7 --uneven --rows 13 --layout shared
for n in 1 2 4; do
    ckt $n reshard load --expect 7 --rows 13
    ckt $n reshard-sh load --expect 7 --rows 13
    ckt $n reshard load --expect 7 --rows 13 --into
    ckt $n reshard-sh load --expect 7 --rows 13 --into
done

# Partner copies: each rank's own directory stands in for node-local
# storage (%r: the rank).  Losing rank 1's file in the main directory, the
# load gets it back from the copy rank 2 kept.
ckt 3 part save 5,6 --partner "$WORK/node%r" --rows 9
[ -f node2/step-00000006/rank-00001.h5 ] || fail "no partner copy of rank 1's file on rank 2: $(ls -R node*)"
cmp -s node2/step-00000006/rank-00001.h5 part/step-00000006/rank-00001.h5 \
    || fail "the partner copy differs from the file"
rm part/step-00000006/rank-00001.h5
ckt 3 part load --expect 6 --rows 9 --partner "$WORK/node%r" --into \
    --report "step 6: rank-00001.h5: missing; restored from the partner copy kept by rank 2; using step 6"
cmp -s node2/step-00000006/rank-00001.h5 part/step-00000006/rank-00001.h5 \
    || fail "the restored file differs from its copy"
"$GRIDRUN" ckpt verify part 6 > verify.out || fail "after the repair: $(cat verify.out)"
# Copies of steps no longer kept go too.
ckt 3 part save 7,8,9 --partner "$WORK/node%r" --rows 9 --keep 2
[ "$(ls node0 | tr '\n' ' ')" = "step-00000008 step-00000009 " ] || fail "node0 keeps $(ls node0)"
# On one node, the log says what partner copies protect against.
grep -q "all 3 ranks are on one node" ckt.out || fail "no note about one node: $(cat ckt.out)"

# Misuse: refused with the right errno and words.
ckt 2 misuse misuse

# gridrun ckpt: ls, verify, show, with --json.
"$GRIDRUN" ckpt ls rt-per-rank-3 > ls.out || fail "ckpt ls: $(cat ls.out)"
grep -qE '^ +20  [0-9-]+ [0-9:]+ +3  per-rank .* ok$' ls.out || fail "ckpt ls: $(cat ls.out)"
grep -qE '^ +10 ' ls.out || fail "ckpt ls lacks step 10: $(cat ls.out)"
"$GRIDRUN" ckpt verify rt-shared-3 > verify.out || fail "ckpt verify: $(cat verify.out)"
grep -q "^step 20: ok (1 file" verify.out || fail "ckpt verify: $(cat verify.out)"
grep -q "^a load would use step 20" verify.out || fail "ckpt verify: $(cat verify.out)"
"$GRIDRUN" ckpt show reshard > show.out || fail "ckpt show: $(cat show.out)"
for want in "step 7 of reshard: saved" "3 ranks, per-rank layout" \
    "w1          f32   [13, 4]           sharded (rows by rank: 2 4 7)" \
    "cnt         i32   [3]               replicated" "epoch  i64  7" \
    'note  str  "step 7 \"quoted\" 100%"' "rank-00002.h5  "; do
    grep -qF -- "$want" show.out || fail "ckpt show lacks '$want': $(cat show.out)"
done
"$GRIDRUN" ckpt show reshard 99 > show.out 2>&1 && fail "show of a missing step succeeded"
grep -q "no readable step 99" show.out || fail "show 99: $(cat show.out)"
"$GRIDRUN" ckpt ls 2> /dev/null; [ $? = 2 ] || fail "ckpt ls without DIR: not a usage error"
if [ -x "$PYTHON" ]; then
    "$GRIDRUN" ckpt show --json rt-shared-2 > show.json || fail "show --json"
    "$GRIDRUN" ckpt ls --json rt-shared-2 > ls.json || fail "ls --json"
    "$PYTHON" - show.json ls.json << 'EOF' || fail "the JSON of ckpt show/ls"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["step"] == 20 and s["layout"] == "shared" and s["ranks"] == 2, s
w1 = [a for a in s["arrays"] if a["name"] == "w1"][0]
assert w1["shape"] == [11, 4] and w1["rows"] == [6, 5] and w1["type"] == "f32", w1
assert s["attributes"]["epoch"] == 20 and s["attributes"]["note"] == 'step 20 "quoted" 100%'
l = json.load(open(sys.argv[2]))
assert [x["step"] for x in l["steps"]] == [20, 10] and l["index"] == "ok", l
assert all(x["state"] == "ok" for x in l["steps"]), l
EOF
fi

# h5dump and h5py read the files.
f=rt-per-rank-2/step-00000020/rank-00000.h5
if command -v h5dump > /dev/null; then
    h5dump -d /w1 -A 0 "$f" > dump.out 2>&1 || fail "h5dump: $(cat dump.out)"
    grep -q "H5T_IEEE_F32LE" dump.out && grep -q "( 6, 4 )" dump.out \
        || fail "h5dump of /w1: $(head -30 dump.out)"
    grep -q "20000, 20001, 20002, 20003" dump.out || fail "h5dump values: $(head -30 dump.out)"
    h5dump -d /w1 rt-shared-3/step-00000020/shared.h5 > dump.out 2>&1 \
        || fail "h5dump of the shared file: $(cat dump.out)"
    grep -q "( 11, 4 )" dump.out || fail "h5dump of the shared /w1: $(head -20 dump.out)"
fi
if [ -x "$PYTHON" ] && "$PYTHON" -c 'import h5py' 2> /dev/null; then
    "$PYTHON" - "$f" rt-per-rank-2/step-00000020/rank-00001.h5 \
        rt-shared-3/step-00000020/shared.h5 << 'EOF' > py.out 2>&1 || fail "h5py: $(cat py.out)"
import sys, h5py, numpy as np
def want(step, rows, cols, i=0):
    r = np.arange(rows[0], rows[1])[:, None]
    return (step * 1000 + r * 10 + np.arange(cols)[None, :] + i).astype(np.float32)
with h5py.File(sys.argv[1], "r") as f:
    assert f.attrs["gridrun_format"] == "gridrun-ckpt-1" and f.attrs["gridrun_step"] == 20
    assert f.attrs["epoch"] == 20 and f.attrs["note"] == 'step 20 "quoted" 100%'
    assert (f["w1"][...] == want(20, (0, 6), 4)).all()
    assert f["w1"].attrs["layout"] == "sharded" and f["w1"].attrs["row_offset"] == 0
    assert f["emb.weight"].dtype == np.uint16 and f["emb.weight"].attrs["dtype"] == "bf16"
    assert f["bias"].shape == (2, 5) and f["scalar"].shape == ()
    assert "crc32c" in f["w1"].attrs
with h5py.File(sys.argv[2], "r") as f:
    assert (f["w1"][...] == want(20, (6, 11), 4)).all() and f["w1"].attrs["row_offset"] == 6
    assert "bias" not in f
with h5py.File(sys.argv[3], "r") as f:
    assert (f["w1"][...] == want(20, (0, 11), 4)).all()
    assert list(f["w1"].attrs["slab_rows"]) == [4, 4, 3] and len(f["w1"].attrs["crc32c"]) == 3
    assert (f["ids"][...] == 20000 + np.arange(11) * 10 + 1).all()
print("h5py ok")
EOF
fi
pass
