/* libgridrun's core: start and stop, errors, ranks and nodes, failure
 * domains, binding, the preemption notice, and the public face of the
 * collectives (src/coll/ does the work).
 *
 * The ranks are an MPI communicator, or, for a program started without
 * MPI in torchrun's environment (a gridrun group task), a TCP world built
 * from RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT (src/coll/net.h).
 * Everything past gr_init talks through the world (src/coll/world.h) and
 * does not care which. */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib.h"
#include "src/coll/coll.h"
#include "src/common/chaos.h"
#include "src/common/gtime.h"
#include "src/common/log.h"
#include "src/common/slurm.h"
#include "src/common/units.h"
#include "src/exec/exec.h"
#include "src/spec/site_load.h"
#include "src/topo/topo.h"

#define DEFAULT_TIMEOUT 600.0

typedef enum { BIND_AUTO = 0, BIND_NONE = 1, BIND_CORE = 2 } bind_mode_t;
typedef enum { BOOT_AUTO = 0, BOOT_MPI = 1, BOOT_TCP = 2 } boot_mode_t;

/* The library's state: written by gr_init and gr_finalize only. */
static struct {
    int initialized;
    int owns_mpi; /* gr_init called MPI_Init_thread */
    gr_world_t *world;
    int rank, size, local_rank, local_size;
    int *rank_node; /* per rank */
    int *rank_rack;
    gr_topo_info_t topo;
    gr_coll_t *coll;
} g = {.rank = -1, .size = -1, .local_rank = -1, .local_size = -1};

/* Seconds, 0 for none; negative until set by gr_set_timeout or gr_init. */
static double coll_timeout = -1;

static __thread char last_error[1024];

/* ---- Errors ------------------------------------------------------------ */

const char *gr_last_error (void)
{
    return last_error;
}

int gr__vfail (int err, const char *fmt, va_list ap)
{
    vsnprintf (last_error, sizeof (last_error), fmt, ap);
    errno = err;
    return -1;
}

int gr__fail (int err, const char *fmt, ...)
{
    va_list ap;

    va_start (ap, fmt);
    gr__vfail (err, fmt, ap);
    va_end (ap);
    return -1;
}

/* A collective's failure: the function's name, then src/coll's text. */
static int coll_fail (const char *fn, const gr_error_t *e)
{
    return gr__fail (errno, "%s: %s", fn, e->text);
}

/* The end of a collective begun at t0: its failure (rc < 0), else its
 * metrics. */
static int coll_end (const char *fn, int rc, const gr_error_t *e, gr__op_t op, size_t bytes,
                     double t0)
{
    if (rc < 0)
        return coll_fail (fn, e);
    gr__metrics_coll (op, bytes, gr_now () - t0);
    return 0;
}

int gr__initialized (void)
{
    return g.initialized;
}

const int *gr__rank_node (void)
{
    return g.rank_node;
}

const int *gr__rank_rack (void)
{
    return g.rank_rack;
}

gr_world_t *gr__world (void)
{
    return g.world;
}

/* ---- Preemption -------------------------------------------------------- */

static volatile sig_atomic_t preempt_flag;

#define MAX_PREEMPT_SIGNALS 4
static struct {
    int sig;
    struct sigaction old;
} saved_actions[MAX_PREEMPT_SIGNALS];
static int nsaved_actions;

static void on_preempt (int sig)
{
    (void)sig;
    preempt_flag = 1;
}

int gr_preempt_requested (void)
{
    return preempt_flag != 0;
}

static int install_preempt (int extra)
{
    int sigs[MAX_PREEMPT_SIGNALS] = {SIGTERM, SIGINT, SIGUSR2, extra};
    struct sigaction sa;

    memset (&sa, 0, sizeof (sa));
    sa.sa_handler = on_preempt;
    sa.sa_flags = SA_RESTART;
    sigemptyset (&sa.sa_mask);
    preempt_flag = 0;
    nsaved_actions = 0;
    for (int i = 0; i < MAX_PREEMPT_SIGNALS; i++) {
        int dup = sigs[i] <= 0;
        for (int k = 0; k < nsaved_actions && !dup; k++)
            dup = saved_actions[k].sig == sigs[i];
        if (dup)
            continue;
        if (sigaction (sigs[i], &sa, &saved_actions[nsaved_actions].old) < 0)
            return -1;
        saved_actions[nsaved_actions++].sig = sigs[i];
    }
    return 0;
}

static void restore_preempt (void)
{
    for (int i = 0; i < nsaved_actions; i++)
        sigaction (saved_actions[i].sig, &saved_actions[i].old, NULL);
    nsaved_actions = 0;
}

/* ---- Settings from the environment -------------------------------------- */

typedef struct {
    gr_coll_mode_t coll;
    double timeout;
    bind_mode_t bind;
    int preempt_signal; /* 0: none beyond the default three */
    gr_chaos_spec_t chaos; /* GRIDRUN_CHAOS: only its ckpt-* faults act here */
} settings_t;

static int read_settings (settings_t *s)
{
    const char *v;

    memset (s, 0, sizeof (*s));
    v = getenv ("GRIDRUN_COLL");
    if (gr_coll_parse_mode (v, &s->coll) < 0)
        return gr__fail (EINVAL,
                         "gr_init: GRIDRUN_COLL=%s is not a backend; use mpi, nccl "
                         "or auto",
                         v);
    s->timeout = coll_timeout;
    v = getenv ("GRIDRUN_COLL_TIMEOUT");
    if (s->timeout < 0) {
        s->timeout = DEFAULT_TIMEOUT;
        if (v && *v && gr_parse_duration (v, &s->timeout) < 0)
            return gr__fail (EINVAL,
                             "gr_init: GRIDRUN_COLL_TIMEOUT=%s is not a duration; "
                             "give seconds (\"120\") or a duration (\"10m\"), 0 "
                             "for none",
                             v);
    }
    v = getenv ("GRIDRUN_BIND");
    if (!v || !*v || strcmp (v, "auto") == 0)
        s->bind = BIND_AUTO;
    else if (strcmp (v, "none") == 0)
        s->bind = BIND_NONE;
    else if (strcmp (v, "core") == 0)
        s->bind = BIND_CORE;
    else
        return gr__fail (EINVAL,
                         "gr_init: GRIDRUN_BIND=%s is not a binding; use none, core "
                         "or auto",
                         v);
    /* Read again where it acts (coll_mpi.c): only checked here. */
    v = getenv ("GRIDRUN_COLL_SHM");
    if (v && *v && strcmp (v, "0") != 0 && strcmp (v, "1") != 0)
        return gr__fail (EINVAL,
                         "gr_init: GRIDRUN_COLL_SHM=%s is not 0 or 1; 0 reduces fusion "
                         "memory by messages even where the ranks share a node",
                         v);
    uint64_t chunk;
    v = getenv ("GRIDRUN_COLL_FUSION_CHUNK");
    if (v && *v && (gr_parse_u64 (v, &chunk) < 0 || chunk == 0))
        return gr__fail (EINVAL,
                         "gr_init: GRIDRUN_COLL_FUSION_CHUNK=%s is not a number of bytes "
                         "above 0",
                         v);
    v = getenv ("GRIDRUN_PREEMPT_SIGNAL");
    if (v && *v) {
        s->preempt_signal = gr_parse_signal (v);
        if (s->preempt_signal <= 0 || s->preempt_signal == SIGKILL ||
            s->preempt_signal == SIGSTOP)
            return gr__fail (EINVAL,
                             "gr_init: GRIDRUN_PREEMPT_SIGNAL=%s is not a signal "
                             "that can be caught; give a name like USR1 or a "
                             "number",
                             v);
    }
    v = getenv ("GRIDRUN_CHAOS");
    gr_error_t err;
    if (gr_chaos_parse (v, &s->chaos, &err) < 0)
        return gr__fail (EINVAL, "gr_init: GRIDRUN_CHAOS: %s", err.text);
    if (gr_chaos_spec_any (&s->chaos) && !s->chaos.seeded) {
        s->chaos.seed = (uint64_t)time (NULL);
        s->chaos.seeded = true;
    }
    return 0;
}

/* ---- Nodes and failure domains ----------------------------------------- */

/* Nodes from MPI: ranks sharing memory form one. */
static int node_leader_mpi (int *leader)
{
    MPI_Comm local;

    if (MPI_Comm_split_type (gr_world_comm (g.world), MPI_COMM_TYPE_SHARED, g.rank,
                             MPI_INFO_NULL, &local) != MPI_SUCCESS)
        return gr__fail (ECOMM, "gr_init: MPI_Comm_split_type failed");
    MPI_Comm_rank (local, &g.local_rank);
    MPI_Comm_size (local, &g.local_size);
    MPI_Allreduce (&g.rank, leader, 1, MPI_INT, MPI_MIN, local);
    MPI_Comm_free (&local);
    return 0;
}

/* Nodes without MPI: ranks with the same node name (gr_node_name) form
 * one. */
static int node_leader_tcp (int *leader)
{
    char (*names)[64] = malloc ((size_t)g.size * sizeof (*names)), mine[64] = "";
    gr_error_t err;

    if (!names)
        return gr__fail (ENOMEM, "gr_init: out of memory");
    gr_node_name (mine, sizeof (mine));
    if (gr_world_allgather (g.world, mine, sizeof (mine), names, &err) < 0) {
        free (names);
        return gr__fail (errno, "gr_init: rank %d: %s", g.rank, err.text);
    }
    *leader = -1;
    g.local_rank = g.local_size = 0;
    for (int r = 0; r < g.size; r++) {
        if (strcmp (names[r], mine) != 0)
            continue;
        if (*leader < 0)
            *leader = r;
        g.local_rank += r < g.rank;
        g.local_size++;
    }
    free (names);
    return 0;
}

/* Node indexes, numbered in the order of their lowest rank.  Sets
 * g.local_rank/local_size and g.rank_node. */
static int find_nodes (void)
{
    int leader, nodes = 0, *leaders = NULL;
    gr_error_t err;

    if ((gr_world_netof (g.world) ? node_leader_tcp (&leader) : node_leader_mpi (&leader)) < 0)
        return -1;
    if (!(leaders = malloc ((size_t)g.size * sizeof (int))) ||
        !(g.rank_node = malloc ((size_t)g.size * sizeof (int)))) {
        free (leaders);
        return gr__fail (ENOMEM, "gr_init: out of memory");
    }
    if (gr_world_allgather (g.world, &leader, sizeof (int), leaders, &err) < 0) {
        free (leaders);
        return gr__fail (errno, "gr_init: rank %d: %s", g.rank, err.text);
    }
    /* A node's leader is its lowest rank, so it is met first. */
    for (int r = 0; r < g.size; r++)
        g.rank_node[r] = leaders[r] == r ? nodes++ : g.rank_node[leaders[r]];
    free (leaders);
    g.topo.node = g.rank_node[g.rank];
    g.topo.nodes = nodes;
    return 0;
}

typedef struct {
    char host[64];
    char slurm[192]; /* SLURM_TOPOLOGY_ADDR */
} rank_addr_t;

typedef struct {
    int rack; /* index */
    char rack_name[64];
    char zone_name[64];
} node_dom_t;

/* Rank 0: the rack and zone of each node, from the site file named by
 * GRIDRUN_SITE, else Slurm's addresses, else each node its own rack.
 * Problems with the site file are warnings, not failures: placement of
 * partner copies is the only thing that suffers. */
static void build_domains (const rank_addr_t *addrs, node_dom_t *doms)
{
    const char **hosts = calloc ((size_t)g.topo.nodes, sizeof (char *));
    const char **slurm = calloc ((size_t)g.topo.nodes, sizeof (char *));
    const char *site_path = getenv ("GRIDRUN_SITE");
    gr_site_t *site = NULL;
    gr_cluster_t *c = NULL;
    gr_error_t err;

    for (int r = 0; hosts && slurm && r < g.size; r++) {
        int n = g.rank_node[r];
        if (!hosts[n]) {
            hosts[n] = addrs[r].host;
            slurm[n] = addrs[r].slurm;
        }
    }
    if (site_path && *site_path && gr_site_load (site_path, &site, &err) < 0)
        GR_WARN ("GRIDRUN_SITE: %s; racks come from Slurm or the host names", err.text);
    if (hosts && slurm) {
        c = gr_cluster_build (hosts, (size_t)g.topo.nodes, site, slurm,
                              getenv ("SLURM_TOPOLOGY_ADDR_PATTERN"), &err);
        if (!c && site) {
            GR_WARN ("GRIDRUN_SITE=%s: %s; racks come from Slurm or the host names",
                     site_path, err.text);
            c = gr_cluster_build (hosts, (size_t)g.topo.nodes, NULL, slurm,
                                  getenv ("SLURM_TOPOLOGY_ADDR_PATTERN"), &err);
        }
        if (!c)
            GR_DEBUG ("failure domains: %s; each node is its own rack", err.text);
    }
    for (int n = 0; n < g.topo.nodes; n++) {
        if (c) {
            size_t rack = gr_cluster_domain (c, (size_t)n, GR_DOM_RACK);
            size_t zone = gr_cluster_domain (c, (size_t)n, GR_DOM_ZONE);
            doms[n].rack = (int)rack;
            snprintf (doms[n].rack_name, sizeof (doms[n].rack_name), "%s",
                      gr_cluster_domain_name (c, GR_DOM_RACK, rack));
            snprintf (doms[n].zone_name, sizeof (doms[n].zone_name), "%s",
                      gr_cluster_domain_name (c, GR_DOM_ZONE, zone));
        } else {
            doms[n].rack = n;
            snprintf (doms[n].rack_name, sizeof (doms[n].rack_name), "%s",
                      hosts && hosts[n] ? hosts[n] : "?");
            snprintf (doms[n].zone_name, sizeof (doms[n].zone_name), "default");
        }
    }
    gr_cluster_destroy (c);
    gr_site_destroy (site);
    free (hosts);
    free (slurm);
}

/* Every rank's host and Slurm address go to rank 0, which works out the
 * domains and sends every rank the answer, so that all agree even if the
 * site file looked different from some node. */
static int find_domains (void)
{
    rank_addr_t mine, *all = NULL;
    node_dom_t *doms = NULL;
    const char *addr = getenv ("SLURM_TOPOLOGY_ADDR");
    size_t nodes = (size_t)g.topo.nodes;
    gr_error_t err;
    int rc = -1;

    memset (&mine, 0, sizeof (mine));
    gr_node_name (mine.host, sizeof (mine.host));
    snprintf (mine.slurm, sizeof (mine.slurm), "%s", addr ? addr : "");
    snprintf (g.topo.host, sizeof (g.topo.host), "%s", mine.host);
    if ((g.rank == 0 && !(all = malloc ((size_t)g.size * sizeof (*all)))) ||
        !(doms = calloc (nodes, sizeof (*doms))) ||
        !(g.rank_rack = malloc ((size_t)g.size * sizeof (int)))) {
        gr__fail (ENOMEM, "gr_init: out of memory");
        goto done;
    }
    if (gr_world_gather (g.world, &mine, sizeof (mine), all, 0, &err) < 0) {
        gr__fail (errno, "gr_init: rank %d: %s", g.rank, err.text);
        goto done;
    }
    if (g.rank == 0)
        build_domains (all, doms);
    if (gr_world_bcast (g.world, doms, nodes * sizeof (*doms), 0, &err) < 0) {
        gr__fail (errno, "gr_init: rank %d: %s", g.rank, err.text);
        goto done;
    }
    for (int r = 0; r < g.size; r++)
        g.rank_rack[r] = doms[g.rank_node[r]].rack;
    snprintf (g.topo.rack, sizeof (g.topo.rack), "%s", doms[g.topo.node].rack_name);
    snprintf (g.topo.zone, sizeof (g.topo.zone), "%s", doms[g.topo.node].zone_name);
    rc = 0;
done:
    free (all);
    free (doms);
    return rc;
}

/* ---- Binding ----------------------------------------------------------- */

/* Bind to this rank's even share of the node's cores (auto: only when
 * nothing bound it to fewer than all of them already), then record the
 * cpus it may use.  Binding problems are warnings. */
static void bind_rank (bind_mode_t mode)
{
    gr_error_t err;
    gr_topo_node_t *t = gr_topo_node_load (NULL, &err);
    uint32_t *cores = NULL;
    size_t ncores, n = 0;
    cpu_set_t set;

    if (!t) {
        GR_WARN ("cannot read this node's topology (%s); not binding", err.text);
        goto cpus;
    }
    g.topo.ngpus_node = (int)gr_topo_node_gpus (t, NULL);
    ncores = gr_topo_node_ncores (t);
    if (!(cores = calloc (ncores ? ncores : 1, sizeof (*cores))))
        goto cpus;
    if (mode == BIND_AUTO && gr_topo_node_bound_cores (t, cores, &n) == 0 && n < ncores)
        mode = BIND_NONE;
    if (mode != BIND_NONE && ncores > 0) {
        size_t off, len;
        if ((size_t)g.local_size >= ncores) {
            off = (size_t)g.local_rank % ncores;
            len = 1;
        } else
            gr_coll_block (ncores, g.local_size, g.local_rank, &off, &len);
        for (size_t i = 0; i < len; i++)
            cores[i] = (uint32_t)(off + i);
        if (gr_topo_node_bind_cores (t, cores, len) < 0)
            GR_WARN ("cannot bind rank %d to cores %zu-%zu: %s", g.rank, off,
                     off + len - 1, strerror (errno));
    }
    if (gr_topo_node_bound_cores (t, cores, &n) == 0 && n > 0)
        gr_topo_node_cpulist (t, cores, n, g.topo.cpus, sizeof (g.topo.cpus));
cpus:
    if (sched_getaffinity (0, sizeof (set), &set) == 0)
        g.topo.ncpus = CPU_COUNT (&set);
    free (cores);
    gr_topo_node_destroy (t);
}

/* ---- Start and stop ---------------------------------------------------- */

static void teardown (void)
{
    gr_coll_destroy (g.coll);
    g.coll = NULL;
    free (g.rank_node);
    free (g.rank_rack);
    g.rank_node = g.rank_rack = NULL;
    gr_world_destroy (g.world);
    g.world = NULL;
    g.rank = g.size = g.local_rank = g.local_size = -1;
    gr_chaos_disable ();
}

/* The rest of gr_init, once g.world stands. */
static int init_world (const settings_t *s)
{
    gr_error_t err;
    int saved;

    g.rank = gr_world_rank (g.world);
    g.size = gr_world_size (g.world);
    gr_world_set_timeout (g.world, s->timeout);
    gr_log_init (g.rank);
    if (find_nodes () < 0 || find_domains () < 0)
        goto error;
    /* Bind before CUDA starts, so that its threads inherit the binding. */
    bind_rank (s->bind);
    if (!(g.coll = gr_coll_create (g.world, g.local_rank, g.local_size, s->coll, s->timeout,
                                   &err))) {
        gr__fail (errno, "gr_init: rank %d: %s", g.rank, err.text);
        goto error;
    }
    g.topo.gpu = gr_coll_device (g.coll);
    if (gr_coll_ngpus (g.coll) > 0)
        g.topo.ngpus_node = gr_coll_ngpus (g.coll);
    if (install_preempt (s->preempt_signal) < 0) {
        gr__fail (errno, "gr_init: cannot install the preemption signal handlers: %s",
                  strerror (errno));
        restore_preempt ();
        goto error;
    }
    coll_timeout = s->timeout;
    /* Chaos mode (doc/hardening.md): checkpoint writes fail on purpose. */
    gr_chaos_enable (&s->chaos, g.rank);
    if (gr_chaos_on () && g.rank == 0) {
        char text[GR_CHAOS_SPEC_MAX];
        if (gr_chaos_format (&s->chaos, text, sizeof (text)) == 0)
            GR_WARN ("chaos mode: injecting faults on purpose: %s", text);
    }
    g.initialized = 1;
    gr__metrics_init (g.rank, g.size, g.topo.gpu, gr_backend_name ());
    GR_DEBUG (
        "libgridrun: rank %d of %d, local %d of %d, node %d of %d, rack %s, cpus %s, "
        "gpu %d, collectives %s",
        g.rank, g.size, g.local_rank, g.local_size, g.topo.node, g.topo.nodes,
        g.topo.rack, g.topo.cpus, g.topo.gpu, gr_backend_name ());
    return 0;
error:
    saved = errno;
    teardown ();
    errno = saved;
    return -1;
}

int gr_init_comm (MPI_Comm comm)
{
    settings_t s;
    gr_error_t err;
    int flag = 0;

    if (g.initialized)
        return gr__fail (EPROTO, "gr_init: already initialized; call gr_finalize first");
    MPI_Initialized (&flag);
    if (!flag)
        return gr__fail (EPROTO, "gr_init_comm: MPI is not initialized; call MPI_Init "
                                 "first, or use gr_init");
    if (comm == MPI_COMM_NULL)
        return gr__fail (EINVAL, "gr_init_comm: the communicator is MPI_COMM_NULL");
    if (read_settings (&s) < 0)
        return -1;
    memset (&g.topo, 0, sizeof (g.topo));
    if (!(g.world = gr_world_mpi (comm, &err)))
        return gr__fail (ECOMM, "gr_init: %s", err.text);
    return init_world (&s);
}

/* An MPI launcher started this process: mpirun, srun, or another
 * process manager speaking PMI or PMIx. */
static int launched_by_mpi (void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                 "PMI_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_SIZE"};

    for (size_t i = 0; i < sizeof (vars) / sizeof (vars[0]); i++)
        if (getenv (vars[i]))
            return 1;
    return 0;
}

/* torchrun's environment names the ranks: RANK, WORLD_SIZE, MASTER_ADDR,
 * MASTER_PORT. */
static int torchrun_env (void)
{
    return getenv ("RANK") && getenv ("WORLD_SIZE") && getenv ("MASTER_ADDR") &&
           getenv ("MASTER_PORT");
}

/* An integer from the environment in [lo, hi]; -1 with a message that
 * names the variable otherwise. */
static int env_int (const char *name, long lo, long hi, int *out)
{
    const char *v = getenv (name);
    char *end;
    long x;

    if (!v || !*v)
        return gr__fail (EINVAL,
                         "gr_init: %s is not set; without MPI, libgridrun needs RANK, "
                         "WORLD_SIZE, MASTER_ADDR and MASTER_PORT (as gridrun's group "
                         "tasks and torchrun set them)",
                         name);
    errno = 0;
    x = strtol (v, &end, 10);
    if (errno || *end || x < lo || x > hi)
        return gr__fail (EINVAL, "gr_init: %s=%s is not a whole number from %ld to %ld", name,
                         v, lo, hi);
    *out = (int)x;
    return 0;
}

/* GRIDRUN_BOOTSTRAP: how the ranks find each other. */
static int read_boot (boot_mode_t *boot)
{
    const char *v = getenv ("GRIDRUN_BOOTSTRAP");

    if (!v || !*v || strcmp (v, "auto") == 0)
        *boot = BOOT_AUTO;
    else if (strcmp (v, "mpi") == 0)
        *boot = BOOT_MPI;
    else if (strcmp (v, "tcp") == 0)
        *boot = BOOT_TCP;
    else
        return gr__fail (EINVAL,
                         "gr_init: GRIDRUN_BOOTSTRAP=%s is not a way to start; use mpi, "
                         "tcp or auto",
                         v);
    return 0;
}

/* Without MPI: the TCP world of torchrun's environment. */
static int init_tcp (void)
{
    settings_t s;
    gr_net_opts_t o = {.master_addr = getenv ("MASTER_ADDR")};
    const char *run = getenv ("TORCHELASTIC_RUN_ID"), *restart = getenv ("GRIDRUN_RESTART_COUNT");
    char token[128];
    gr_error_t err;
    gr_net_t *net;

    if (read_settings (&s) < 0 || env_int ("WORLD_SIZE", 1, 1 << 20, &o.size) < 0 ||
        env_int ("RANK", 0, o.size - 1, &o.rank) < 0 ||
        env_int ("MASTER_PORT", 1, 65535, &o.master_port) < 0)
        return -1;
    if (!o.master_addr || !*o.master_addr)
        return gr__fail (EINVAL, "gr_init: MASTER_ADDR is not set; give the address of "
                                 "the host of rank 0");
    if (!restart)
        restart = getenv ("TORCHELASTIC_RESTART_COUNT");
    snprintf (token, sizeof (token), "%.60s/%.20s", run ? run : "", restart ? restart : "");
    o.token = token;
    memset (&g.topo, 0, sizeof (g.topo));
    if (!(net = gr_net_open (&o, s.timeout > 0 ? gr_now () + s.timeout : INFINITY, &err)))
        return gr__fail (errno, "gr_init: rank %d of %d: %s", o.rank, o.size, err.text);
    if (!(g.world = gr_world_net (net, &err)))
        return gr__fail (errno, "gr_init: %s", err.text);
    return init_world (&s);
}

int gr_init (int *argc, char ***argv)
{
    boot_mode_t boot;
    int flag = 0, provided;

    if (g.initialized)
        return gr__fail (EPROTO, "gr_init: already initialized; call gr_finalize first");
    MPI_Finalized (&flag);
    if (flag)
        return gr__fail (EPROTO, "gr_init: MPI was already finalized");
    if (read_boot (&boot) < 0)
        return -1;
    MPI_Initialized (&flag);
    if (boot == BOOT_TCP || (boot == BOOT_AUTO && !flag && torchrun_env () && !launched_by_mpi ()))
        return init_tcp ();
    if (!flag) {
        /* Once MPI is up it stays up even if the rest fails: MPI cannot
         * be started twice, and the ranks may need it to report. */
        if (MPI_Init_thread (argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
            return gr__fail (ECOMM, "gr_init: MPI_Init_thread failed");
        g.owns_mpi = 1;
    }
    return gr_init_comm (MPI_COMM_WORLD);
}

int gr_finalize (void)
{
    if (!g.initialized)
        return gr__fail (EPROTO, "gr_finalize: gr_init was not called (or failed)");
    restore_preempt ();
    gr__metrics_fini ();
    /* Over TCP, nobody closes a connection a peer may still read from:
     * MPI_Finalize's guarantee, made by hand. */
    if (gr_world_netof (g.world) && !gr_net_broken (gr_world_netof (g.world))) {
        gr_error_t err;
        if (gr_coll_barrier (g.coll, coll_timeout > 0 ? coll_timeout : 0, &err) < 0)
            GR_DEBUG ("gr_finalize: %s", err.text);
    }
    teardown ();
    g.initialized = 0;
    if (g.owns_mpi) {
        g.owns_mpi = 0;
        if (MPI_Finalize () != MPI_SUCCESS)
            return gr__fail (ECOMM, "gr_finalize: MPI_Finalize failed");
    }
    return 0;
}

int gr_rank (void)
{
    return g.rank;
}

int gr_size (void)
{
    return g.size;
}

int gr_local_rank (void)
{
    return g.local_rank;
}

int gr_local_size (void)
{
    return g.local_size;
}

MPI_Comm gr_comm (void)
{
    return g.world ? gr_world_comm (g.world) : MPI_COMM_NULL;
}

int gr_topo_info (gr_topo_info_t *info)
{
    if (!info)
        return gr__fail (EINVAL, "gr_topo_info: info is NULL");
    if (!g.initialized)
        return gr__fail (EPROTO, "gr_topo_info: call gr_init first");
    *info = g.topo;
    return 0;
}

gr_backend_t gr_backend (void)
{
    return gr_coll_backend (g.coll);
}

const char *gr_backend_name (void)
{
    gr_backend_t b = gr_backend ();

    return b == GR_BACKEND_NCCL ? "nccl" : b == GR_BACKEND_TCP ? "tcp" : "mpi";
}

size_t gr_dtype_size (gr_dtype_t t)
{
    return gr_coll_dtype_size (t);
}

/* ---- Collectives ------------------------------------------------------- */

void gr_set_timeout (double seconds)
{
    coll_timeout = isnan (seconds) || seconds < 0 ? 0 : seconds;
}

static double timeout_now (void)
{
    return coll_timeout > 0 ? coll_timeout : 0;
}

/* The checks every collective shares.  bufs: how many of the buffers
 * (count elements times per) must be given. */
static int check_args (const char *fn, const void *sendbuf, const void *recvbuf,
                       size_t count, size_t per, gr_dtype_t type, int has_op, gr_op_t op)
{
    size_t es = gr_coll_dtype_size (type);

    if (!g.initialized)
        return gr__fail (EPROTO, "%s: call gr_init first", fn);
    if (es == 0)
        return gr__fail (EINVAL, "%s: unknown type %d", fn, (int)type);
    if (has_op && (op < GR_SUM || op > GR_AVG))
        return gr__fail (EINVAL, "%s: unknown operation %d", fn, (int)op);
    if (count > SIZE_MAX / es / per)
        return gr__fail (EINVAL, "%s: %zu elements of %zu bytes do not fit in memory", fn,
                         count, es * per);
    if (count > 0 && (!recvbuf || !sendbuf))
        return gr__fail (EINVAL, "%s: a buffer is NULL", fn);
    return 0;
}

int gr_allreduce (const void *sendbuf, void *recvbuf, size_t count, gr_dtype_t type,
                  gr_op_t op)
{
    gr_error_t err;

    if (check_args ("gr_allreduce", sendbuf, recvbuf, count, 1, type, 1, op) < 0)
        return -1;
    if (sendbuf == recvbuf)
        sendbuf = GR_IN_PLACE;
    double t0 = gr_now ();
    int rc = gr_coll_allreduce (g.coll, sendbuf, recvbuf, count, type, op, timeout_now (),
                                &err);
    return coll_end ("gr_allreduce", rc, &err, GR__OP_ALLREDUCE,
                     count * gr_coll_dtype_size (type), t0);
}

int gr_broadcast (void *buf, size_t count, gr_dtype_t type, int root)
{
    gr_error_t err;

    if (check_args ("gr_broadcast", buf, buf, count, 1, type, 0, GR_SUM) < 0)
        return -1;
    if (root < 0 || root >= g.size)
        return gr__fail (EINVAL, "gr_broadcast: root %d is not a rank (0..%d)", root,
                         g.size - 1);
    double t0 = gr_now ();
    int rc = gr_coll_bcast (g.coll, buf, count, type, root, timeout_now (), &err);
    return coll_end ("gr_broadcast", rc, &err, GR__OP_BCAST,
                     count * gr_coll_dtype_size (type), t0);
}

int gr_allgather (const void *sendbuf, void *recvbuf, size_t count, gr_dtype_t type)
{
    gr_error_t err;

    if (check_args ("gr_allgather", sendbuf, recvbuf, count, (size_t)g.size, type, 0,
                    GR_SUM) < 0)
        return -1;
    double t0 = gr_now ();
    int rc = gr_coll_allgather (g.coll, sendbuf, recvbuf, count, type, timeout_now (), &err);
    return coll_end ("gr_allgather", rc, &err, GR__OP_ALLGATHER,
                     count * gr_coll_dtype_size (type), t0);
}

int gr_reduce_scatter (const void *sendbuf, void *recvbuf, size_t recvcount,
                       gr_dtype_t type, gr_op_t op)
{
    gr_error_t err;

    if (check_args ("gr_reduce_scatter", sendbuf, recvbuf, recvcount, (size_t)g.size,
                    type, 1, op) < 0)
        return -1;
    double t0 = gr_now ();
    int rc = gr_coll_reduce_scatter (g.coll, sendbuf, recvbuf, recvcount, type, op,
                                     timeout_now (), &err);
    return coll_end ("gr_reduce_scatter", rc, &err, GR__OP_REDUCE_SCATTER,
                     recvcount * (size_t)g.size * gr_coll_dtype_size (type), t0);
}

int gr_barrier (void)
{
    gr_error_t err;

    if (!g.initialized)
        return gr__fail (EPROTO, "gr_barrier: call gr_init first");
    double t0 = gr_now ();
    int rc = gr_coll_barrier (g.coll, timeout_now (), &err);
    return coll_end ("gr_barrier", rc, &err, GR__OP_BARRIER, 0, t0);
}

/* ---- Fusion ------------------------------------------------------------ */

gr_fusion_t *gr_fusion_create (gr_dtype_t type, gr_op_t op)
{
    gr_fusion_t *f;

    if (gr_coll_dtype_size (type) == 0 || op < GR_SUM || op > GR_AVG) {
        gr__fail (EINVAL, "gr_fusion_create: unknown type %d or operation %d", (int)type,
                  (int)op);
        return NULL;
    }
    if (!(f = gr_coll_fusion_create (type, op)))
        gr__fail (ENOMEM, "gr_fusion_create: out of memory");
    return f;
}

int gr_fusion_add (gr_fusion_t *f, void *buf, size_t count)
{
    gr_error_t err;

    if (!f || (!buf && count > 0))
        return gr__fail (EINVAL, "gr_fusion_add: %s is NULL",
                         f ? "the buffer" : "the fusion");
    if (!g.initialized)
        return gr__fail (EPROTO, "gr_fusion_add: call gr_init first");
    if (gr_coll_fusion_add (g.coll, f, buf, count, &err) < 0)
        return coll_fail ("gr_fusion_add", &err);
    return 0;
}

void *gr_fusion_alloc (gr_fusion_t *f, size_t count)
{
    gr_error_t err;
    void *p;

    if (!f) {
        gr__fail (EINVAL, "gr_fusion_alloc: the fusion is NULL");
        return NULL;
    }
    if (!g.initialized) {
        gr__fail (EPROTO, "gr_fusion_alloc: call gr_init first");
        return NULL;
    }
    if (!(p = gr_coll_fusion_alloc (f, count, &err)))
        coll_fail ("gr_fusion_alloc", &err);
    return p;
}

int gr_fusion_allreduce (gr_fusion_t *f)
{
    gr_error_t err;

    if (!f)
        return gr__fail (EINVAL, "gr_fusion_allreduce: the fusion is NULL");
    if (!g.initialized)
        return gr__fail (EPROTO, "gr_fusion_allreduce: call gr_init first");
    double t0 = gr_now ();
    int rc = gr_coll_fusion_allreduce (g.coll, f, timeout_now (), &err);
    return coll_end ("gr_fusion_allreduce", rc, &err, GR__OP_FUSION,
                     gr_coll_fusion_bytes (f), t0);
}

void gr_fusion_destroy (gr_fusion_t *f)
{
    gr_coll_fusion_destroy (f);
}
