#!/bin/bash
# libgridrun as a user gets it: `make install` into a staging directory
# installs gridrun.h (the only header), the library and gridrun.pc; a
# program built with `mpicc $(pkg-config --cflags --libs gridrun)` links
# and runs on 2 ranks; the library exports only the API of gridrun.h.
. "$(dirname "$0")/lib.sh"
test_timeout 300
command -v pkg-config > /dev/null || skip "no pkg-config"

dest="$WORK/dest"
make -C "$GR_BUILDDIR" install DESTDIR="$dest" > install.log 2>&1 \
    || fail "make install: $(tail -20 install.log)"
prefix=$(sed -n 's/^prefix=//p' "$GR_BUILDDIR/gridrun.pc")
libdir=$(PKG_CONFIG_PATH= pkg-config --variable=libdir "$GR_BUILDDIR/gridrun.pc")
headers=$(cd "$dest$prefix/include" && find . -type f | sort)
[ "$headers" = "./gridrun.h" ] || fail "installed headers are not just gridrun.h: $headers"
[ -f "$dest$libdir/pkgconfig/gridrun.pc" ] || fail "gridrun.pc not installed in $libdir/pkgconfig"

cat > prog.c <<'C'
#include <stdio.h>
#include <gridrun.h>
int main (int argc, char **argv)
{
    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "gr_init: %s\n", gr_last_error ());
        return 1;
    }
    double x = gr_rank () + 1;
    if (gr_allreduce (GR_IN_PLACE, &x, 1, GR_F64, GR_SUM) < 0)
        return 1;
    if (gr_rank () == 0)
        printf ("size %d sum %g backend %s\n", gr_size (), x, gr_backend_name ());
    return gr_finalize () < 0;
}
C
export PKG_CONFIG_PATH="$dest$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
flags=$(pkg-config --cflags --libs gridrun) || fail "pkg-config gridrun failed"
mpicc -o prog prog.c $flags 2> cc.err || fail "cannot build against the installed library: $(cat cc.err)"
LD_LIBRARY_PATH="$dest$libdir" timeout -k 5 60 "$LOCAL_MPIRUN" -x LD_LIBRARY_PATH -n 2 ./prog > prog.out 2>&1 \
    || fail "the program failed: $(cat prog.out)"
grep -q "^size 2 sum 3 backend mpi" prog.out || fail "unexpected output: $(cat prog.out)"

# Exports: the functions gridrun.h declares, and nothing else.
so=$(ls "$dest$libdir"/libgridrun.so.* | head -1)
nm -D --defined-only "$so" | awk '$2 ~ /^[TDBR]$/ { print $3 }' | sort > exported
sed -n 's/^[A-Za-z][A-Za-z_ *]*[ *]\(gr_[a-z0-9_]*\) (.*/\1/p' "$GR_SRCDIR/src/include/gridrun.h" | sort -u > declared
extra=$(comm -23 exported declared)
[ -z "$extra" ] || fail "exported but not in gridrun.h: $extra"
missing=$(comm -13 exported declared)
[ -z "$missing" ] || fail "declared in gridrun.h but not exported: $missing"
pass "$(cat prog.out); $(wc -l < exported) symbols exported"
