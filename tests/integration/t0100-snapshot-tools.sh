#!/bin/bash
# A snapshot written through gr_snap_* (tests/bin/gr-snapwrite) reads back
# with the tools people use on it: h5dump, and h5py under Debian's Python,
# every field of /tasks with the right values.  Twice: with name, params
# and host as variable-length strings, then as fixed-length ones (what
# gridrun writes when it knows the longest, GR_T0100_MODE=fixed).  Needs no MPI, so it does not
# source lib.sh (which skips without mpirun); it keeps its conventions.
set -u
test_name=$(basename "$0" .sh)
self=$(realpath "$0")
: "${GR_BUILDDIR:=$(pwd)}"
SNAPWRITE=${GR_SNAPWRITE:-$GR_BUILDDIR/tests/bin/gr-snapwrite}
PYTHON=${GR_PYTHON:-/usr/bin/python3}   # Debian's, with python3-h5py

fail () {
    echo "FAIL: $test_name: $*" >&2
    exit 1
}

skip () {
    echo "SKIP: $test_name: $*" >&2
    exit 77
}

WORK="$GR_BUILDDIR/tests/integration/work/$test_name"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1

[ -x "$SNAPWRITE" ] || fail "$SNAPWRITE is not built (make check builds it)"
have_h5dump=yes
command -v h5dump > /dev/null 2>&1 || have_h5dump=no
have_h5py=yes
[ -x "$PYTHON" ] && "$PYTHON" -c 'import h5py' 2> /dev/null || have_h5py=no
[ $have_h5dump = no ] && [ $have_h5py = no ] \
    && skip "neither h5dump nor h5py in $PYTHON (apt-get install hdf5-tools python3-h5py)"

mode=${GR_T0100_MODE:-variable}
write_args=()
[ "$mode" = fixed ] && write_args=(--fixed)
timeout 60 "$SNAPWRITE" "${write_args[@]}" run.h5 2> write.err \
    || fail "gr-snapwrite ($mode): $(cat write.err)"
[ -f run.h5 ] || fail "no run.h5 written"
[ -e run.h5.tmp ] && fail "run.h5.tmp left behind"

if [ $have_h5dump = yes ]; then
    # dump FILE ARGS...: h5dump into FILE, failing the test if it fails.
    dump () {
        local out=$1
        shift
        timeout 60 h5dump "$@" run.h5 > "$out" 2>&1 || fail "h5dump $*: $(cat "$out")"
    }
    # want FILE PATTERN...: every (fixed-string) pattern is in FILE.
    want () {
        local f=$1 p
        shift
        for p in "$@"; do
            grep -qF -- "$p" "$f" \
                || fail "'$p' not in the output of h5dump ($f): $(head -c 3000 "$f")"
        done
    }
    dump tasks.dump -d /tasks
    want tasks.dump 'DATASPACE  SIMPLE { ( 6 ) / ( H5S_UNLIMITED ) }' \
        'H5T_ENUM {' '"pending"          0;' '"poison"           5;' \
        'H5T_STD_U64LE "key";' '"key_hex";' 'H5T_STD_I64LE "maxrss_kb";' \
        'CSET H5T_CSET_UTF8;' \
        '81985529216486895,' '"0123456789abcdef",' '"sim[0]",' '"x=1 y=foo",' \
        '18446744073709551615,' '"ffffffffffffffff",' '"it'"'"'s "quoted"",' \
        '9223372036854775807,' '12.125,' 'done,' 'failed,' 'poison,' 'pending,' \
        'running,' 'waiting,'
    # The longest name ("it's \"quoted\"") is 13 bytes: 14 with the NUL.
    if [ "$mode" = fixed ]; then
        want tasks.dump 'STRSIZE 14;'
        grep -q 'STRSIZE H5T_VARIABLE' tasks.dump \
            && fail "fixed mode: a variable-length column in /tasks: $(head -c 3000 tasks.dump)"
    else
        want tasks.dump 'STRSIZE H5T_VARIABLE;'
    fi
    dump root.dump -A
    want root.dump 'ATTRIBUTE "format"' '"gridrun-run-1"' '"0123456789abcdef"' \
        '"/home/u/my jobs/job.yaml"' '"/scratch/u/run1"' '"finished"' \
        'ATTRIBUTE "incarnation"' 'ATTRIBUTE "written"' 'GROUP "counts"' \
        'GROUP "metrics"' 'DATASET "workers"'
    dump format.dump -a /format
    want format.dump '(0): "gridrun-run-1"'
    dump total.dump -a /counts/total
    want total.dump 'H5T_STD_U64LE' '(0): 6'
    dump metric.dump -a /metrics/throughput
    want metric.dump 'H5T_IEEE_F64LE' '(0): 0.75'
    dump workers.dump -d /workers
    want workers.dump 'DATASPACE  SIMPLE { ( 3 ) / ( 3 ) }' '"node 02",'
fi

[ $have_h5py = yes ] \
    || skip "h5dump read the snapshot; $PYTHON has no h5py (apt-get install python3-h5py)"

timeout 60 "$PYTHON" - run.h5 "$mode" > h5py.out 2>&1 << 'PY' || fail "h5py ($mode): $(cat h5py.out)"
import sys

import h5py
import numpy as np

# The rows of tests/bin/gr-snapwrite.c.
want_tasks = [
    (0x0123456789ABCDEF, "sim[0]", "x=1 y=foo", "done", 1, 0, 0, 1.5, 1024, "node01", 1),
    (2**64 - 1, "it's \"quoted\"", "msg=two\nlines", "failed", 3, 2, 0, 0.25, 2048,
     "node 02", 2),
    (1, "caf\u00e9 \u65e5\u672c", "p=a\tb\\c $(x) ;|&", "poison", 4, -1, 9, 12.125,
     2**63 - 1, "n\u00f6de3", 3),
    (2, "later", "", "pending", 0, -1, 0, 0.0, 0, "", -1),
    (3, "busy", "n=3", "running", 1, -1, 0, 0.0, 0, "node01", 1),
    (4, "again", "n=4", "waiting", 2, 1, 0, 3.75, 10, "node 02", 2),
]
fields = ["key", "name", "params", "state", "attempts", "exit_code", "signal",
          "wall", "maxrss_kb", "host", "worker"]
errors = []


def check(what, got, want):
    if got != want or type(got) is not type(want):
        errors.append("%s: got %r, want %r" % (what, got, want))


def text(v):
    # h5py gives variable-length strings inside a compound as bytes.
    return v.decode("utf-8") if isinstance(v, bytes) else v


with h5py.File(sys.argv[1], "r") as f:
    tasks = f["tasks"]
    check("tasks fields", list(tasks.dtype.names),
          ["key", "key_hex", "name", "params", "state", "attempts", "exit_code",
           "signal", "wall", "maxrss_kb", "host", "worker"])
    for col in ("name", "params", "host"):
        length = h5py.check_string_dtype(tasks.dtype[col]).length
        if sys.argv[2] == "fixed":
            check("%s is fixed-length" % col, length is not None, True)
        else:
            check("%s is variable-length" % col, length, None)
    enum = h5py.check_enum_dtype(tasks.dtype["state"])
    check("state enum", enum, {"pending": 0, "running": 1, "waiting": 2, "done": 3,
                               "failed": 4, "poison": 5})
    names = {v: k for k, v in enum.items()}
    rows = tasks[...]
    check("rows", len(rows), len(want_tasks))
    for i, (row, want) in enumerate(zip(rows, want_tasks)):
        got = {
            "key": int(row["key"]),
            "name": text(row["name"]),
            "params": text(row["params"]),
            "state": names[int(row["state"])],
            "attempts": int(row["attempts"]),
            "exit_code": int(row["exit_code"]),
            "signal": int(row["signal"]),
            "wall": float(row["wall"]),
            "maxrss_kb": int(row["maxrss_kb"]),
            "host": text(row["host"]),
            "worker": int(row["worker"]),
        }
        for field, w in zip(fields, want):
            check("tasks[%d].%s" % (i, field), got[field], w)
        check("tasks[%d].key_hex" % i, text(row["key_hex"]), "%016x" % want[0])

    # What doc/run-snapshot.md shows: select the failed tasks with numpy.
    failed = rows[rows["state"] == enum["failed"]]
    check("failed tasks", [text(n) for n in failed["name"]], ["it's \"quoted\""])

    attrs = dict(f.attrs)
    for k, v in {"format": "gridrun-run-1", "job": "sweep \"A\" \u00e9",
                 "spec_hash": "0123456789abcdef",
                 "spec_path": "/home/u/my jobs/job.yaml",
                 "run_dir": "/scratch/u/run1", "gridrun_version": "0.1.0",
                 "state": "finished"}.items():
        check("/ attribute " + k, attrs.get(k), v)
    check("/ incarnation", int(attrs["incarnation"]), 2)
    check("/ started", float(attrs["started"]), 1700000000.5)
    if not float(attrs["written"]) > 1700000000:
        errors.append("/ written: %r" % attrs["written"])

    counts = {k: int(v) for k, v in f["counts"].attrs.items()}
    check("/counts", counts, {"total": 6, "done": 1, "failed": 1, "poison": 1,
                              "skipped": 0, "running": 1, "waiting": 1, "retries": 5,
                              "timeouts": 1, "crashes": 2, "attempts": 11,
                              "duplicates": 3})
    for v in f["counts"].attrs.values():
        check("/counts type", v.dtype, np.dtype("uint64"))

    metrics = [(k, float(v)) for k, v in f["metrics"].attrs.items()]
    check("/metrics", metrics, [("wall_seconds", 12.5), ("throughput", 0.75),
                                ("busy_seconds", 30.0)])

    workers = [(int(w["rank"]), text(w["host"]), int(w["cpus"]), int(w["gpus"]),
                int(w["lost"])) for w in f["workers"][...]]
    check("/workers", workers, [(0, "node01", 64, 0, 0), (1, "node01", 32, 4, 0),
                                (2, "node 02", 16, 0, 1)])

for e in errors:
    print(e)
sys.exit(1 if errors else 0)
PY

[ $have_h5dump = yes ] \
    || skip "h5py read the snapshot; h5dump not found (apt-get install hdf5-tools)"
[ "$mode" = variable ] && GR_T0100_MODE=fixed exec bash "$self" "$@"
echo "PASS: $test_name"
exit 0
