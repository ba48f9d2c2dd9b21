# Shared setup for the integration tests; sourced by each tNNNN-*.sh.
#
# Every test runs in its own directory under the build tree, under a time
# limit, and exits 0 (pass), 1 (fail) or 77 (skip: only when something the
# test needs is truly absent).

set -u
test_name=$(basename "$0" .sh)
: "${GRIDRUN:?GRIDRUN must point at the gridrun binary (run through make check)}"
: "${GR_TOOL:?GR_TOOL must point at tests/bin/gr-tool}"
: "${MPIRUN:=mpirun}"
: "${GR_BUILDDIR:=$(pwd)}"

# mpirun through scripts/local-mpirun: root allowed, oversubscribed, and
# confined to loopback (a private network namespace when root).
: "${GR_SRCDIR:=$(cd "$(dirname "$0")/../.." && pwd)}"
LOCAL_MPIRUN="$GR_SRCDIR/scripts/local-mpirun"

# Sanitizer builds (configure --enable-sanitizers; doc/hardening.md).  Open
# MPI does not free what MPI_Init allocates, so LeakSanitizer would fail
# every MPI program at its exit: leak detection is off here (the unit
# tests, which never start MPI, keep it).  GR_TEST_LSAN=1 turns it on with
# tests/integration/lsan.supp, which drops only leaks with Open MPI on
# their stack; that needs the slow unwinder (Open MPI's libraries have no
# frame pointers), which makes every rank start about three times slower.
# Every other sanitizer report ends the program, and so fails the test.
# ASan leaves SIGSEGV, SIGBUS and SIGFPE alone: tests crash tasks on
# purpose, and gridrun must see them die by the signal (a crash), not exit
# with ASan's report.  A normal build ignores these variables.
asan="handle_segv=0:handle_sigbus=0:handle_sigfpe=0"
if [ "${GR_TEST_LSAN:-0}" = 1 ]; then
    export ASAN_OPTIONS="$asan:fast_unwind_on_malloc=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
    export LSAN_OPTIONS="suppressions=$GR_SRCDIR/tests/integration/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
else
    export ASAN_OPTIONS="$asan:detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi
export UBSAN_OPTIONS="print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

WORK="$GR_BUILDDIR/tests/integration/work/$test_name"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1

# Open MPI's session directories (with its shared-memory files) go into a
# directory of this test's, removed at the end: runs killed with SIGKILL
# would otherwise leave them in /tmp.  Kept short: it holds sockets.
OMPI_TMP=$(mktemp -d /tmp/grt.XXXXXX) || exit 1
export OMPI_MCA_orte_tmpdir_base="$OMPI_TMP"
watchdog=""
cleanup () {
    [ -n "$watchdog" ] && kill "$watchdog" 2> /dev/null && wait "$watchdog" 2> /dev/null
    rm -rf "$OMPI_TMP"
}
trap cleanup EXIT

fail () {
    echo "FAIL: $test_name: $*" >&2
    exit 1
}

skip () {
    echo "SKIP: $test_name: $*" >&2
    exit 77
}

pass () {
    echo "PASS: $test_name${1:+: $*}"
    exit 0
}

# The whole test dies after this many seconds, whatever it is doing.
test_timeout () {
    local secs=$1 self=$$
    (
        # Take the sleep down too when the test ends first.
        trap 'kill $sp 2>/dev/null; exit 0' TERM
        sleep "$secs" &
        sp=$!
        wait $sp
        echo "FAIL: $test_name: timed out after ${secs}s" >&2
        kill -TERM -- -"$self" 2>/dev/null
        kill -TERM "$self"
    ) 2>/dev/null &
    watchdog=$!
}

command -v "$MPIRUN" >/dev/null 2>&1 || skip "no mpirun"

# gr_run N ARGS...: gridrun under mpirun with N ranks; output on stdout
# and stderr, exit code returned.
gr_run () {
    local n=$1
    shift
    timeout -k 5 120 "$LOCAL_MPIRUN" -n "$n" "$GRIDRUN" run "$@"
}

# gr_isolated CMD...: run CMD with network access confined to loopback, as
# scripts/local-mpirun does (for gridrun started without mpirun, whose MPI
# singleton start-up also opens listeners).
gr_isolated () {
    if [ "$(id -u)" -eq 0 ] && command -v ip > /dev/null && unshare --net true 2> /dev/null; then
        unshare --net /bin/sh -c 'ip link set lo up && exec "$@"' sh "$@"
    else
        "$@"
    fi
}

# summary_field RUN_DIR WORD: print the summary line that starts with WORD.
summary_line () {
    grep -E "^  $2 " "$1/summary.txt"
}

# Every attempt of every task, as "key attempt name status flags", from the
# output indexes.
index_lines () {
    cat "$1"/out/w*.idx | cut -f1-5
}

# gr_launch N RUN-ARGS...: gridrun launch (the supervisor) over
# scripts/local-mpirun with N ranks.
gr_launch () {
    local n=$1
    shift
    GRIDRUN_MPIRUN="$LOCAL_MPIRUN" timeout -k 5 300 "$GRIDRUN" launch -n "$n" -- "$@"
}

# gr_launch_bg N LOG RUN-ARGS...: the same in a session of its own, in the
# background; sets $launch_pid (also the session id, for pkill -s).
gr_launch_bg () {
    local n=$1 log=$2
    shift 2
    GRIDRUN_MPIRUN="$LOCAL_MPIRUN" setsid "$GRIDRUN" launch -n "$n" -- "$@" > "$log" 2>&1 &
    launch_pid=$!
}

# wait_done RUN N PID LOG: wait (up to 20 s) until `gridrun status RUN`
# counts N tasks done, failing the test if PID (a background launcher
# writing LOG) ends first or the run does not get there; sets $done_now.
wait_done () {
    local run=$1 want=$2 pid=$3 log=$4 i
    done_now=0
    for i in $(seq 1 200); do
        done_now=$("$GRIDRUN" status "$run" 2> /dev/null \
                   | sed -n 's/^  tasks *[0-9]*: \([0-9]*\) done.*/\1/p')
        [ "${done_now:-0}" -ge "$want" ] && return 0
        kill -0 "$pid" 2> /dev/null || fail "launcher ended early: $(tail -20 "$log")"
        sleep 0.1
    done
    fail "run did not get going: $(tail -20 "$log")"
}

# kill_session SID: SIGKILL every process of a session (launcher, mpirun,
# ranks and tasks), then wait until they are gone.
kill_session () {
    local sid=$1 i
    pkill -KILL -s "$sid" 2> /dev/null
    for i in $(seq 1 100); do
        pgrep -s "$sid" > /dev/null 2>&1 || return 0
        sleep 0.05
    done
    return 1
}

# rand_between LO HI (tenths of a second) -> seconds, e.g. 0.7
rand_between () {
    local lo=$1 hi=$2
    local t=$(( lo + RANDOM % (hi - lo + 1) ))
    printf '%d.%d' $((t / 10)) $((t % 10))
}

# master_pid RUN: wait (up to 10 s) for the master of RUN to start, and
# print its pid.
master_pid () {
    local i
    for i in $(seq 1 100); do
        [ -s "$1/master.info" ] && break
        sleep 0.1
    done
    sed -n 's/^pid //p' "$1/master.info"
}

# ckt N ARGS...: tests/bin/gr-ckpttest (checkpoint tests) on N ranks,
# output in ckt.out, failing the test when it fails.
ckt () {
    local n=$1 prog="$GR_BUILDDIR/tests/bin/gr-ckpttest"
    shift
    [ -x "$prog" ] || fail "$prog is not built (make check builds it)"
    GRIDRUN_COLL=mpi timeout -k 5 60 "$LOCAL_MPIRUN" -n "$n" "$prog" "$@" > ckt.out 2>&1 \
        || fail "gr-ckpttest -n $n $*: $(tail -20 ckt.out)"
}
