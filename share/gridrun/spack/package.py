# Spack recipe for gridrun.  Put it into a Spack repository of the site's
# as packages/gridrun/package.py (doc/slurm.md: "Installing gridrun on a
# cluster").
#
# gridrun publishes no download location yet, so this recipe builds from a
# source tree, a git checkout or an unpacked `make dist` tarball:
#
#   cd gridrun-0.1.0 && spack dev-build gridrun@=0.1.0 ^openmpi
#
# (or `spack develop --path DIR gridrun@=0.1.0` in an environment).  Once
# releases are published somewhere, add url = "..." and
# version("X.Y.Z", sha256="...") lines.

import os

from spack.package import *


class Gridrun(AutotoolsPackage):
    """An MPI master-worker batch grid runtime: one MPI program runs very
    many tasks across the nodes of a cluster, journals every state change,
    and drains and resumes on preemption and time limits (with a Slurm
    submission wrapper).  libgridrun gives MPI programs collectives (MPI,
    or NCCL on GPUs), HDF5 checkpoints and a preemption notice."""

    version("0.1.0")

    variant("cuda", default=False, description="Build the CUDA parts of libgridrun")
    variant("nccl", default=False, description="GPU collectives with NCCL (needs +cuda)")
    conflicts("+nccl", when="~cuda", msg="NCCL collectives need +cuda")

    depends_on("mpi")
    depends_on("hdf5+mpi")
    depends_on("hwloc@2:")
    depends_on("libyaml")
    depends_on("jansson")
    depends_on("check", type="build")  # configure requires it (unit tests)
    depends_on("pkgconfig", type="build")
    # A git checkout has no configure script yet.
    depends_on("autoconf", type="build")
    depends_on("automake", type="build")
    depends_on("libtool", type="build")
    depends_on("cuda", when="+cuda")
    depends_on("nccl", when="+nccl")

    def autoreconf(self, spec, prefix):
        if not os.path.exists("configure"):
            Executable("./autogen.sh")()

    def configure_args(self):
        spec = self.spec
        hdf5 = spec["hdf5"]
        args = [
            # Every program is built with the MPI compiler wrapper.
            "CC={0}".format(spec["mpi"].mpicc),
            "MPICC={0}".format(spec["mpi"].mpicc),
            # Spack's HDF5 has no hdf5-mpi.pc: name it directly
            # (configure still checks that it is the parallel build).
            "HDF5_CFLAGS=-I{0}".format(hdf5.prefix.include),
            "HDF5_LIBS={0}".format(hdf5.libs.ld_flags),
        ]
        args += self.with_or_without("cuda", activation_value="prefix")
        args += self.with_or_without("nccl", activation_value="prefix")
        return args
