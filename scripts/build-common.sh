# Shared by quickstart, check, valgrind-check and the benchmarks: configure
# and build in ./build (out of tree; GR_BUILD_DIR names another) unless it
# is already up to date.
gr_top=$(cd "$(dirname "$0")/.." && pwd)
gr_build="${GR_BUILD_DIR:-$gr_top/build}"

gr_build_tree () {
    cd "$gr_top" || exit 1
    if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
        ./autogen.sh > /dev/null 2>&1 || { echo "autogen.sh failed" >&2; ./autogen.sh; exit 1; }
    fi
    mkdir -p "$gr_build"
    cd "$gr_build" || exit 1
    if [ ! -f Makefile ] || [ ../configure -nt Makefile ]; then
        ../configure --enable-werror "$@" > configure.out 2>&1 || {
            cat configure.out >&2
            exit 1
        }
        sed -n '/^gridrun .* configuration/,$p' configure.out
    fi
    make -j"$(nproc)" > make.out 2>&1 || { cat make.out >&2; exit 1; }
    make -j"$(nproc)" tests/bin/gr-tool > /dev/null 2>&1 || true
}

# mpirun as root (containers, CI) needs these; harmless otherwise.
if [ "$(id -u)" -eq 0 ]; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi

# median: the median of the numbers on stdin, one a line (benchmarks).
median () {
    sort -g | awk '{ a[NR] = $1 }
        END { printf "%.3f\n", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
