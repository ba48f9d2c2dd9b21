#!/bin/bash
# libgridrun as a user gets it: `make install` into a staging directory
# installs gridrun.h (the only header), the library and gridrun.pc; a
# program built with `mpicc $(pkg-config --cflags --libs gridrun)` links
# and runs on 2 ranks; the library exports only the API of gridrun.h.
# The installed `gridrun submit` finds gridrun-sbatch next to it, and the
# modulefiles and the Spack recipe are installed.
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

# Slurm: `gridrun submit` of the installed tree runs the gridrun-sbatch
# installed next to it, which writes the installed gridrun into the job;
# the modulefiles carry the installation's paths.
bindir=$prefix/bin
version=$("$GRIDRUN" version | sed -n 's/^gridrun //p')
[ -x "$dest$bindir/gridrun-sbatch" ] || fail "gridrun-sbatch not installed in $bindir"
printf 'name: one\ntasks:\n  - name: t\n    command: [true]\n' > one.yaml
env -u GRIDRUN PATH=/usr/bin:/bin "$dest$bindir/gridrun" submit --dry-run one.yaml > dry.sh 2> dry.err \
    || fail "installed gridrun submit --dry-run: $(cat dry.err)"
grep -qx "gridrun=$dest$bindir/gridrun" dry.sh || fail "the job would not run the installed gridrun: $(grep '^gridrun=' dry.sh)"
grep -qx "#SBATCH --requeue" dry.sh || fail "dry run: $(cat dry.sh)"
for m in lmod/gridrun/$version.lua tcl/gridrun/$version; do
    f="$dest$prefix/share/gridrun/modulefiles/$m"
    [ -f "$f" ] || fail "modulefile $m not installed"
    grep -q "\"$bindir\"" "$f" || fail "$m does not name $bindir: $(grep -i path "$f")"
    grep -q "@[a-z_]*@" "$f" && fail "$m has unsubstituted @...@: $(grep "@[a-z_]*@" "$f")"
done
[ -f "$dest$prefix/share/gridrun/spack/package.py" ] || fail "Spack recipe not installed"
pass "$(cat prog.out); $(wc -l < exported) symbols exported"
