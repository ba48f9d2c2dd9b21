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

WORK="$GR_BUILDDIR/tests/integration/work/$test_name"
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK" || exit 1

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
    trap 'kill $watchdog 2>/dev/null; wait $watchdog 2>/dev/null' EXIT
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
