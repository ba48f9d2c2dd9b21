#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hwloc.h>

#include "src/common/grow.h"
#include "topo.h"

int gr_topo_local_caps (gr_node_caps_t *caps, gr_error_t *errp)
{
    hwloc_topology_t topo;
    hwloc_bitmap_t set = NULL;
    int n;

    memset (caps, 0, sizeof (*caps));
    if (hwloc_topology_init (&topo) < 0)
        return gr_errprintf (errp, "hwloc: cannot initialize topology: %s",
                             strerror (errno));
    if (hwloc_topology_load (topo) < 0) {
        gr_errprintf (errp, "hwloc: cannot load topology: %s", strerror (errno));
        goto error;
    }
    /* The cpuset this process is bound to respects cgroups, taskset and
     * the binding mpirun applied, so workers never count PUs they cannot
     * use. */
    if (!(set = hwloc_bitmap_alloc ()))
        goto nomem;
    if (hwloc_get_cpubind (topo, set, HWLOC_CPUBIND_PROCESS) < 0)
        hwloc_bitmap_copy (set, hwloc_topology_get_allowed_cpuset (topo));
    else
        hwloc_bitmap_and (set, set, hwloc_topology_get_allowed_cpuset (topo));
    n = hwloc_bitmap_weight (set);
    caps->pus = n > 0 ? (uint32_t)n : 1;
    n = hwloc_get_nbobjs_inside_cpuset_by_type (topo, set, HWLOC_OBJ_CORE);
    caps->cores = n > 0 ? (uint32_t)n : caps->pus;
    hwloc_obj_t root = hwloc_get_root_obj (topo);
    caps->mem = root->total_memory;
    if (caps->mem == 0) {
        long pages = sysconf (_SC_PHYS_PAGES);
        long psize = sysconf (_SC_PAGESIZE);
        if (pages > 0 && psize > 0)
            caps->mem = (uint64_t)pages * (uint64_t)psize;
    }
    hwloc_bitmap_free (set);
    hwloc_topology_destroy (topo);
    return 0;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "hwloc: out of memory");
error:
    hwloc_bitmap_free (set);
    hwloc_topology_destroy (topo);
    return -1;
}

/* ------------------------------------------------------------------ */
/* One node. */

struct gr_topo_node {
    hwloc_topology_t topo;
    bool thissystem;
    size_t npackages, nnumas, ncores, npus;
    int *core_pkg;          /* per core */
    int *core_numa;
    size_t *pu_first;       /* PUs of core i: pus[pu_first[i] .. pu_first[i+1]) */
    unsigned *pus;          /* OS indexes */
    gr_topo_gpu_t *gpus;
    size_t ngpus;
};

void gr_topo_node_destroy (gr_topo_node_t *t)
{
    int saved = errno;

    if (!t)
        return;
    for (size_t i = 0; i < t->ngpus; i++)
        free (t->gpus[i].cores);
    free (t->gpus);
    free (t->core_pkg);
    free (t->core_numa);
    free (t->pu_first);
    free (t->pus);
    if (t->topo)
        hwloc_topology_destroy (t->topo);
    free (t);
    errno = saved;
}

/* The cores of the node as hwloc objects: Core objects, or PUs where
 * hwloc knows no cores (some virtual machines). */
static hwloc_obj_type_t core_type (hwloc_topology_t topo)
{
    return hwloc_get_nbobjs_by_type (topo, HWLOC_OBJ_CORE) > 0 ? HWLOC_OBJ_CORE
                                                               : HWLOC_OBJ_PU;
}

static int load_cores (gr_topo_node_t *t)
{
    hwloc_topology_t topo = t->topo;
    hwloc_const_bitmap_t allowed = hwloc_topology_get_allowed_cpuset (topo);
    hwloc_obj_type_t ct = core_type (topo);
    int n = hwloc_get_nbobjs_by_type (topo, ct);
    int npk = hwloc_get_nbobjs_by_type (topo, HWLOC_OBJ_PACKAGE);
    int nnu = hwloc_get_nbobjs_by_type (topo, HWLOC_OBJ_NUMANODE);
    int npu = hwloc_get_nbobjs_by_type (topo, HWLOC_OBJ_PU);
    size_t k = 0, p = 0;

    t->npackages = npk > 0 ? (size_t)npk : 1;
    t->nnumas = nnu > 0 ? (size_t)nnu : 1;
    if (n <= 0 || npu <= 0) {
        errno = EINVAL;
        return -1;
    }
    if (!(t->core_pkg = calloc ((size_t)n, sizeof (int)))
        || !(t->core_numa = calloc ((size_t)n, sizeof (int)))
        || !(t->pu_first = calloc ((size_t)n + 1, sizeof (size_t)))
        || !(t->pus = calloc ((size_t)npu, sizeof (unsigned))))
        return -1;
    for (int i = 0; i < n; i++) {
        hwloc_obj_t core = hwloc_get_obj_by_type (topo, ct, (unsigned)i);
        hwloc_obj_t pkg;
        hwloc_obj_t pu = NULL;

        /* hwloc 2 already drops disallowed PUs; checking again keeps a
         * core whose PUs are all off limits out of every count. */
        if (!core->cpuset || !hwloc_bitmap_intersects (core->cpuset, allowed))
            continue;
        pkg = hwloc_get_ancestor_obj_by_type (topo, HWLOC_OBJ_PACKAGE, core);
        t->core_pkg[k] = pkg ? (int)pkg->logical_index : 0;
        t->core_numa[k] = 0;
        for (int j = 0; j < nnu; j++) {
            hwloc_obj_t numa = hwloc_get_obj_by_type (topo, HWLOC_OBJ_NUMANODE, (unsigned)j);
            if (numa->cpuset && hwloc_bitmap_intersects (numa->cpuset, core->cpuset)) {
                t->core_numa[k] = (int)numa->logical_index;
                break;
            }
        }
        t->pu_first[k] = p;
        while ((pu = hwloc_get_next_obj_inside_cpuset_by_type (topo, core->cpuset,
                                                               HWLOC_OBJ_PU, pu))) {
            if (hwloc_bitmap_isset (allowed, pu->os_index) && p < (size_t)npu)
                t->pus[p++] = pu->os_index;
        }
        k++;
    }
    t->pu_first[k] = p;
    t->ncores = k;
    t->npus = p;
    return 0;
}

static int gpu_cmp (const void *a, const void *b)
{
    const gr_topo_gpu_t *x = a, *y = b;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* Which pass of GPU discovery an OS device belongs to: 1 CUDA, 2 NVML or
 * ROCm SMI, 0 neither. */
static int osdev_pass (hwloc_obj_t o)
{
    const char *name = o->name ? o->name : "";

    if ((o->subtype && strcmp (o->subtype, "CUDA") == 0) || strncmp (name, "cuda", 4) == 0)
        return 1;
    if ((o->subtype && (strcmp (o->subtype, "NVML") == 0 || strcmp (o->subtype, "RSMI") == 0))
        || strncmp (name, "nvml", 4) == 0 || strncmp (name, "rsmi", 4) == 0)
        return 2;
    return 0;
}

static bool gpu_pcidev (hwloc_obj_t o)
{
    unsigned short v = o->attr->pcidev.vendor_id;
    return (o->attr->pcidev.class_id >> 8) == 0x03 && (v == 0x10de || v == 0x1002);
}

/* Fill one GPU from its OS device or PCI device obj. */
static int add_gpu (gr_topo_node_t *t, hwloc_obj_t obj, int index, bool is_pci)
{
    hwloc_topology_t topo = t->topo;
    gr_topo_gpu_t *g = &t->gpus[t->ngpus];
    hwloc_obj_t pci = is_pci ? obj : obj->parent;
    hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj (topo, obj);
    hwloc_obj_t pkg;
    const char *model;

    memset (g, 0, sizeof (*g));
    g->index = index;
    if (is_pci)
        snprintf (g->name, sizeof (g->name), "gpu%d", index);
    else
        snprintf (g->name, sizeof (g->name), "%s", obj->name ? obj->name : "gpu");
    model = hwloc_obj_get_info_by_name (obj, "GPUModel");
    if (!model && pci && pci->type == HWLOC_OBJ_PCI_DEVICE)
        model = hwloc_obj_get_info_by_name (pci, "PCIDevice");
    snprintf (g->model, sizeof (g->model), "%s", model ? model : "");
    if (pci && pci->type == HWLOC_OBJ_PCI_DEVICE)
        snprintf (g->busid, sizeof (g->busid), "%04x:%02x:%02x.%01x",
                  (unsigned)pci->attr->pcidev.domain, pci->attr->pcidev.bus,
                  pci->attr->pcidev.dev, pci->attr->pcidev.func);
    g->package = -1;
    g->numa = -1;
    if (anc) {
        pkg = anc->type == HWLOC_OBJ_PACKAGE
                  ? anc
                  : hwloc_get_ancestor_obj_by_type (topo, HWLOC_OBJ_PACKAGE, anc);
        if (pkg)
            g->package = (int)pkg->logical_index;
        if (anc->nodeset && hwloc_bitmap_weight (anc->nodeset) == 1) {
            hwloc_obj_t numa = hwloc_get_numanode_obj_by_os_index (
                topo, (unsigned)hwloc_bitmap_first (anc->nodeset));
            if (numa)
                g->numa = (int)numa->logical_index;
        }
    }
    t->ngpus++;
    if (!(g->cores = calloc (t->ncores ? t->ncores : 1, sizeof (uint32_t))))
        return -1;
    if (!anc || !anc->cpuset)
        return 0;
    for (size_t c = 0; c < t->ncores; c++) {
        /* A core is near when its first PU is in the ancestor's cpuset. */
        if (t->pu_first[c] < t->pu_first[c + 1]
            && hwloc_bitmap_isset (anc->cpuset, t->pus[t->pu_first[c]]))
            g->cores[g->ncores++] = (uint32_t)c;
    }
    return 0;
}

/* CUDA devices where hwloc has them (their numbers are what
 * CUDA_VISIBLE_DEVICES means), else NVML or ROCm SMI ones, else display
 * class PCI devices of NVIDIA or AMD, as a stock hwloc without GPU
 * libraries still sees them. */
static int load_gpus (gr_topo_node_t *t)
{
    hwloc_topology_t topo = t->topo;
    hwloc_obj_t o = NULL;
    size_t cap = 0;
    int pass = 0;

    while ((o = hwloc_get_next_osdev (topo, o))) {
        int p = osdev_pass (o);
        if (p && (pass == 0 || p < pass))
            pass = p;
    }
    o = NULL;
    if (pass) {
        while ((o = hwloc_get_next_osdev (topo, o)))
            cap += osdev_pass (o) == pass;
    }
    else {
        while ((o = hwloc_get_next_pcidev (topo, o)))
            cap += gpu_pcidev (o);
    }
    if (cap == 0)
        return 0;
    if (!(t->gpus = calloc (cap, sizeof (*t->gpus))))
        return -1;
    o = NULL;
    if (pass) {
        while ((o = hwloc_get_next_osdev (topo, o)) && t->ngpus < cap) {
            const char *d = o->name ? o->name : "";
            if (osdev_pass (o) != pass)
                continue;
            while (*d && (*d < '0' || *d > '9'))
                d++;
            if (add_gpu (t, o, *d ? atoi (d) : (int)t->ngpus, false) < 0)
                return -1;
        }
    }
    else {
        while ((o = hwloc_get_next_pcidev (topo, o)) && t->ngpus < cap) {
            if (gpu_pcidev (o) && add_gpu (t, o, (int)t->ngpus, true) < 0)
                return -1;
        }
    }
    qsort (t->gpus, t->ngpus, sizeof (*t->gpus), gpu_cmp);
    return 0;
}

gr_topo_node_t *gr_topo_node_load (const char *xml_path, gr_error_t *errp)
{
    gr_topo_node_t *t;
    const char *what = xml_path ? xml_path : "this machine";

    if (xml_path && access (xml_path, R_OK) < 0) {
        gr_errprintf (errp, "%s: cannot read the hwloc XML topology: %s", xml_path,
                      strerror (errno));
        return NULL;
    }
    if (!(t = calloc (1, sizeof (*t))))
        goto nomem;
    if (hwloc_topology_init (&t->topo) < 0) {
        t->topo = NULL;
        gr_errprintf (errp, "hwloc: cannot initialize topology: %s", strerror (errno));
        goto error;
    }
    if (xml_path && hwloc_topology_set_xml (t->topo, xml_path) < 0) {
        gr_errprintf (errp, "%s: not a topology hwloc can read (%s); write one with "
                            "'lstopo --of xml FILE'",
                      xml_path, strerror (errno));
        errno = EINVAL;
        goto error;
    }
    hwloc_topology_set_io_types_filter (t->topo, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
    if (hwloc_topology_load (t->topo) < 0) {
        if (xml_path)
            gr_errprintf (errp, "%s: not a topology hwloc can read (%s); write one with "
                                "'lstopo --of xml FILE'",
                          xml_path, strerror (errno));
        else
            gr_errprintf (errp, "hwloc: cannot load the topology of this machine: %s",
                          strerror (errno));
        errno = EINVAL;
        goto error;
    }
    t->thissystem = hwloc_topology_is_thissystem (t->topo);
    if (load_cores (t) < 0) {
        if (errno == ENOMEM)
            goto nomem;
        gr_errprintf (errp, "%s: the topology has no cores or PUs", what);
        goto error;
    }
    if (load_gpus (t) < 0)
        goto nomem;
    return t;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "hwloc: out of memory loading %s", what);
error:
    gr_topo_node_destroy (t);
    return NULL;
}

size_t gr_topo_node_npackages (const gr_topo_node_t *t)
{
    return t ? t->npackages : 0;
}

size_t gr_topo_node_nnumas (const gr_topo_node_t *t)
{
    return t ? t->nnumas : 0;
}

size_t gr_topo_node_ncores (const gr_topo_node_t *t)
{
    return t ? t->ncores : 0;
}

size_t gr_topo_node_npus (const gr_topo_node_t *t)
{
    return t ? t->npus : 0;
}

int gr_topo_node_core_package (const gr_topo_node_t *t, size_t core)
{
    return t && core < t->ncores ? t->core_pkg[core] : -1;
}

int gr_topo_node_core_numa (const gr_topo_node_t *t, size_t core)
{
    return t && core < t->ncores ? t->core_numa[core] : -1;
}

size_t gr_topo_node_gpus (const gr_topo_node_t *t, const gr_topo_gpu_t **gpusp)
{
    if (gpusp)
        *gpusp = t ? t->gpus : NULL;
    return t ? t->ngpus : 0;
}

/* ------------------------------------------------------------------ */
/* Picking cores and GPUs. */

static int u32_cmp (const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Take up to want free GPUs of package pkg (-1: those near no package)
 * into sel; returns how many were taken. */
static size_t take_gpus (const gr_topo_node_t *t, const uint8_t *busy, uint8_t *taken,
                         int pkg, size_t want, uint32_t *sel)
{
    size_t k = 0;

    for (size_t g = 0; g < t->ngpus && k < want; g++) {
        if (t->gpus[g].package != pkg || (busy && busy[g]) || taken[g])
            continue;
        taken[g] = 1;
        sel[k++] = (uint32_t)g;
    }
    return k;
}

/* Free cores near the GPUs in sel (counted once). */
static size_t near_free (const gr_topo_node_t *t, const uint8_t *core_busy,
                         const uint32_t *sel, size_t n, uint8_t *scratch)
{
    size_t k = 0;

    memset (scratch, 0, t->ncores);
    for (size_t i = 0; i < n; i++) {
        const gr_topo_gpu_t *g = &t->gpus[sel[i]];
        for (size_t j = 0; j < g->ncores; j++) {
            uint32_t c = g->cores[j];
            if (!scratch[c] && !(core_busy && core_busy[c])) {
                scratch[c] = 1;
                k++;
            }
        }
    }
    return k;
}

/* Choose the GPUs: one package's when one has enough, the first whose
 * near cores also have room for cpus, else the one with most room; else
 * from the packages with most free GPUs first. */
static void pick_gpus (const gr_topo_node_t *t, const uint8_t *core_busy,
                       const uint8_t *gpu_busy, uint32_t cpus, uint32_t gpus,
                       uint32_t *sel, uint8_t *taken, uint8_t *scratch)
{
    int best = -2;
    size_t best_near = 0;

    for (int p = 0; p <= (int)t->npackages; p++) {
        int pkg = p == (int)t->npackages ? -1 : p;
        size_t n, near;

        memset (taken, 0, t->ngpus);
        if ((n = take_gpus (t, gpu_busy, taken, pkg, gpus, sel)) < gpus)
            continue;
        near = near_free (t, core_busy, sel, n, scratch);
        if (best == -2 || (near > best_near && best_near < cpus)) {
            best = pkg;
            best_near = near;
        }
    }
    memset (taken, 0, t->ngpus);
    if (best != -2) {
        take_gpus (t, gpu_busy, taken, best, gpus, sel);
        return;
    }
    for (size_t k = 0; k < gpus;) {
        int most = -2;
        size_t most_n = 0;
        for (int p = 0; p <= (int)t->npackages; p++) {
            int pkg = p == (int)t->npackages ? -1 : p;
            size_t n = 0;
            for (size_t g = 0; g < t->ngpus; g++)
                n += t->gpus[g].package == pkg && !(gpu_busy && gpu_busy[g]) && !taken[g];
            if (n > most_n) {
                most = pkg;
                most_n = n;
            }
        }
        k += take_gpus (t, gpu_busy, taken, most, gpus - k, sel + k);
    }
}

int gr_topo_node_pick (const gr_topo_node_t *t, const uint8_t *core_busy,
                       const uint8_t *gpu_busy, uint32_t cpus, uint32_t gpus,
                       uint32_t *cores_out, uint32_t *gpus_out)
{
    size_t free_cores = 0, free_gpus = 0, np, nn, k = 0;
    uint8_t *taken = NULL, *near = NULL;
    uint32_t *gsel = NULL, *csel = NULL;
    size_t *pfree = NULL, *nfree = NULL;
    int *tier = NULL, maxtier = 0;

    if (!t || (cpus && !cores_out) || (gpus && !gpus_out)) {
        errno = EINVAL;
        return -1;
    }
    for (size_t c = 0; c < t->ncores; c++)
        free_cores += !(core_busy && core_busy[c]);
    for (size_t g = 0; g < t->ngpus; g++)
        free_gpus += !(gpu_busy && gpu_busy[g]);
    if (cpus > free_cores || gpus > free_gpus) {
        errno = EAGAIN;
        return -1;
    }
    np = t->npackages;
    nn = t->nnumas;
    if (!(taken = calloc (t->ngpus + 1, 1)) || !(near = calloc (t->ncores + 1, 1))
        || !(gsel = calloc (gpus + 1, sizeof (*gsel)))
        || !(csel = calloc (cpus + 1, sizeof (*csel)))
        || !(pfree = calloc (np, sizeof (*pfree))) || !(nfree = calloc (nn, sizeof (*nfree)))
        || !(tier = calloc (t->ncores + 1, sizeof (*tier))))
        goto nomem;
    for (size_t c = 0; c < t->ncores; c++) {
        if (!(core_busy && core_busy[c])) {
            pfree[t->core_pkg[c]]++;
            nfree[t->core_numa[c]]++;
        }
    }
    if (gpus > 0) {
        pick_gpus (t, core_busy, gpu_busy, cpus, gpus, gsel, taken, near);
        near_free (t, core_busy, gsel, gpus, near);
        /* Tiers: near the GPUs, in their NUMA node, in their package, any. */
        for (size_t c = 0; c < t->ncores; c++) {
            tier[c] = 3;
            if (near[c])
                tier[c] = 0;
            for (size_t i = 0; i < gpus && tier[c] > 1; i++) {
                const gr_topo_gpu_t *g = &t->gpus[gsel[i]];
                if (g->numa >= 0 && g->numa == t->core_numa[c])
                    tier[c] = 1;
                else if (g->package >= 0 && g->package == t->core_pkg[c])
                    tier[c] = 2;
            }
        }
        maxtier = 3;
    }
    else if (cpus > 0) {
        size_t best = SIZE_MAX;
        int bn = -1, bp = -1;

        /* The tightest NUMA node, else the tightest package, that fits. */
        for (size_t n = 0; n < nn; n++) {
            if (nfree[n] >= cpus && nfree[n] < best) {
                best = nfree[n];
                bn = (int)n;
            }
        }
        for (size_t p = 0; bn < 0 && p < np; p++) {
            if (pfree[p] >= cpus && pfree[p] < best) {
                best = pfree[p];
                bp = (int)p;
            }
        }
        if (bn >= 0 || bp >= 0) {
            for (size_t c = 0; c < t->ncores; c++)
                tier[c] = (bn >= 0 ? t->core_numa[c] == bn : t->core_pkg[c] == bp) ? 0 : 1;
            maxtier = 1;
        }
        else {
            /* Nothing fits in one package: spill, fullest-free package
             * first, so the task spans as few packages as it can. */
            for (size_t r = 0; r < np; r++) {
                size_t most = 0;
                int mp = -1;
                for (size_t p = 0; p < np; p++) {
                    if (pfree[p] != SIZE_MAX && (mp < 0 || pfree[p] > most)) {
                        most = pfree[p];
                        mp = (int)p;
                    }
                }
                for (size_t c = 0; c < t->ncores; c++) {
                    if (t->core_pkg[c] == mp)
                        tier[c] = (int)r;
                }
                pfree[mp] = SIZE_MAX;
            }
            maxtier = (int)np;
        }
    }
    for (int tr = 0; tr <= maxtier && k < cpus; tr++) {
        for (size_t c = 0; c < t->ncores && k < cpus; c++) {
            if (tier[c] == tr && !(core_busy && core_busy[c]))
                csel[k++] = (uint32_t)c;
        }
    }
    qsort (csel, cpus, sizeof (*csel), u32_cmp);
    qsort (gsel, gpus, sizeof (*gsel), u32_cmp);
    if (cpus)
        memcpy (cores_out, csel, cpus * sizeof (*csel));
    if (gpus)
        memcpy (gpus_out, gsel, gpus * sizeof (*gsel));
    free (taken);
    free (near);
    free (gsel);
    free (csel);
    free (pfree);
    free (nfree);
    free (tier);
    return 0;
nomem:
    free (taken);
    free (near);
    free (gsel);
    free (csel);
    free (pfree);
    free (nfree);
    free (tier);
    errno = ENOMEM;
    return -1;
}

/* Sorted unsigned numbers as "0-3,8": runs of two or more become ranges
 * as in Linux cpulists, unless ranges is false.  Returns 0, or -1 with
 * ERANGE when buf is too small. */
static int fmt_list (const unsigned *v, size_t n, bool ranges, char *buf, size_t size)
{
    size_t o = 0;

    if (size == 0)
        goto range;
    buf[0] = '\0';
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int w;
        while (ranges && j + 1 < n && v[j + 1] == v[j] + 1)
            j++;
        if (j > i) {
            w = snprintf (buf + o, size - o, "%s%u-%u", o ? "," : "", v[i], v[j]);
            i = j + 1;
        }
        else {
            w = snprintf (buf + o, size - o, "%s%u", o ? "," : "", v[i]);
            i++;
        }
        if (w < 0 || (size_t)w >= size - o)
            goto range;
        o += (size_t)w;
    }
    return 0;
range:
    errno = ERANGE;
    return -1;
}

static int uint_cmp (const void *a, const void *b)
{
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b;
    return x < y ? -1 : x > y;
}

/* The OS indexes of the PUs of n cores, sorted, in a new array. */
static unsigned *core_pus (const gr_topo_node_t *t, const uint32_t *cores, size_t n,
                           size_t *countp)
{
    size_t k = 0;
    unsigned *v;

    for (size_t i = 0; i < n; i++) {
        if (cores[i] >= t->ncores) {
            errno = EINVAL;
            return NULL;
        }
        k += t->pu_first[cores[i] + 1] - t->pu_first[cores[i]];
    }
    if (!(v = malloc ((k + 1) * sizeof (*v))))
        return NULL;
    k = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t p = t->pu_first[cores[i]]; p < t->pu_first[cores[i] + 1]; p++)
            v[k++] = t->pus[p];
    }
    qsort (v, k, sizeof (*v), uint_cmp);
    *countp = k;
    return v;
}

int gr_topo_node_cpulist (const gr_topo_node_t *t, const uint32_t *cores, size_t n,
                          char *buf, size_t size)
{
    unsigned *v;
    size_t k;
    int rc;

    if (!t || (n && !cores) || !buf) {
        errno = EINVAL;
        return -1;
    }
    if (!(v = core_pus (t, cores, n, &k)))
        return -1;
    rc = fmt_list (v, k, true, buf, size);
    free (v);
    return rc;
}

int gr_topo_node_bind_cores (const gr_topo_node_t *t, const uint32_t *cores, size_t n)
{
    hwloc_bitmap_t set = NULL;
    unsigned *v = NULL;
    size_t k;
    int saved;

    if (!t || !cores || n == 0) {
        errno = EINVAL;
        return -1;
    }
    if (!t->thissystem) {
        errno = ENOSYS;
        return -1;
    }
    if (!(v = core_pus (t, cores, n, &k)) || !(set = hwloc_bitmap_alloc ()))
        goto error;
    for (size_t i = 0; i < k; i++) {
        if (hwloc_bitmap_set (set, v[i]) < 0)
            goto error;
    }
    if (hwloc_set_cpubind (t->topo, set, HWLOC_CPUBIND_PROCESS) < 0)
        goto error;
    hwloc_bitmap_free (set);
    free (v);
    return 0;
error:
    saved = errno ? errno : EINVAL;
    hwloc_bitmap_free (set);
    free (v);
    errno = saved;
    return -1;
}

/* ------------------------------------------------------------------ */
/* Printing a node. */

/* Which cores a list takes: those of package a (and NUMA node b). */
typedef bool (*core_keep_f) (const gr_topo_node_t *t, size_t core, int a, int b);

static bool in_pkg (const gr_topo_node_t *t, size_t c, int p, int n)
{
    (void)n;
    return t->core_pkg[c] == p;
}

static bool in_pkg_numa (const gr_topo_node_t *t, size_t c, int p, int n)
{
    return t->core_pkg[c] == p && t->core_numa[c] == n;
}

static int core_list (const gr_topo_node_t *t, core_keep_f keep, int a, int b, char **out,
                      size_t *countp)
{
    unsigned *v = malloc ((t->ncores + 1) * sizeof (*v));
    size_t k = 0, size = t->ncores * 12 + 1;
    char *buf = malloc (size);

    if (!v || !buf) {
        free (v);
        free (buf);
        errno = ENOMEM;
        return -1;
    }
    for (size_t c = 0; c < t->ncores; c++) {
        if (keep (t, c, a, b))
            v[k++] = (unsigned)c;
    }
    fmt_list (v, k, true, buf, size);
    free (v);
    *out = buf;
    *countp = k;
    return 0;
}

static int print_gpu (const gr_topo_node_t *t, const gr_topo_gpu_t *g, FILE *out,
                      const char *indent, int depth)
{
    unsigned *v = malloc ((g->ncores + 1) * sizeof (*v));
    size_t size = g->ncores * 12 + 8;
    char *buf = malloc (size);

    (void)t;
    if (!v || !buf) {
        free (v);
        free (buf);
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < g->ncores; i++)
        v[i] = g->cores[i];
    if (g->ncores == 0)
        snprintf (buf, size, "none");
    else
        fmt_list (v, g->ncores, true, buf, size);
    fprintf (out, "%s%*sgpu %d %s%s%s%s%s%s: near cores %s\n", indent, depth * 2, "",
             g->index, g->name, g->model[0] ? " " : "", g->model, g->busid[0] ? " (" : "",
             g->busid, g->busid[0] ? ")" : "", buf);
    free (v);
    free (buf);
    return 0;
}

int gr_topo_node_print (const gr_topo_node_t *t, FILE *out, const char *indent)
{
    /* Where each GPU is printed: under package slot_pkg (-1: the node),
     * NUMA node slot_numa (-1: the package). */
    int *slot_pkg = NULL, *slot_numa = NULL;
    char *list = NULL;
    size_t n;

    if (!t || !out) {
        errno = EINVAL;
        return -1;
    }
    if (!indent)
        indent = "";
    if (!(slot_pkg = calloc (t->ngpus + 1, sizeof (int)))
        || !(slot_numa = calloc (t->ngpus + 1, sizeof (int))))
        goto nomem;
    for (size_t g = 0; g < t->ngpus; g++) {
        const gr_topo_gpu_t *gp = &t->gpus[g];
        slot_pkg[g] = gp->package;
        slot_numa[g] = -1;
        /* A GPU local to one NUMA node goes under it, in its package or,
         * when it hangs off no package, the first that holds the node. */
        for (size_t c = 0; gp->numa >= 0 && c < t->ncores; c++) {
            if (t->core_numa[c] == gp->numa
                && (gp->package < 0 || t->core_pkg[c] == gp->package)) {
                slot_pkg[g] = t->core_pkg[c];
                slot_numa[g] = gp->numa;
                break;
            }
        }
    }
    fprintf (out, "%snode: %zu package%s, %zu NUMA node%s, %zu core%s, %zu PU%s, %zu GPU%s\n",
             indent, t->npackages, t->npackages == 1 ? "" : "s", t->nnumas,
             t->nnumas == 1 ? "" : "s", t->ncores, t->ncores == 1 ? "" : "s", t->npus,
             t->npus == 1 ? "" : "s", t->ngpus, t->ngpus == 1 ? "" : "s");
    for (size_t p = 0; p < t->npackages; p++) {
        if (core_list (t, in_pkg, (int)p, 0, &list, &n) < 0)
            goto error;
        fprintf (out, "%s  package %zu: %s%s\n", indent, p, n ? "cores " : "no cores",
                 list);
        free (list);
        list = NULL;
        for (size_t u = 0; u < t->nnumas; u++) {
            if (core_list (t, in_pkg_numa, (int)p, (int)u, &list, &n) < 0)
                goto error;
            if (n) {
                fprintf (out, "%s    numa %zu: cores %s\n", indent, u, list);
                for (size_t g = 0; g < t->ngpus; g++) {
                    if (slot_pkg[g] == (int)p && slot_numa[g] == (int)u
                        && print_gpu (t, &t->gpus[g], out, indent, 3) < 0)
                        goto error;
                }
            }
            free (list);
            list = NULL;
        }
        for (size_t g = 0; g < t->ngpus; g++) {
            if (slot_pkg[g] == (int)p && slot_numa[g] < 0
                && print_gpu (t, &t->gpus[g], out, indent, 2) < 0)
                goto error;
        }
    }
    for (size_t g = 0; g < t->ngpus; g++) {
        if (slot_pkg[g] < 0 && print_gpu (t, &t->gpus[g], out, indent, 1) < 0)
            goto error;
    }
    free (slot_pkg);
    free (slot_numa);
    if (ferror (out)) {
        errno = EIO;
        return -1;
    }
    return 0;
nomem:
    errno = ENOMEM;
error:
    free (list);
    free (slot_pkg);
    free (slot_numa);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Failure domains between nodes. */

typedef struct dom {
    char *name;
    size_t parent;            /* racks: their zone */
    gr_site_labels_t labels;  /* copied from the site file */
} dom_t;

struct gr_cluster {
    gr_cluster_source_t source;
    char *site_path;
    size_t nhosts;
    char **hosts;
    gr_site_labels_t *host_labels;   /* per host: the node's own */
    size_t *host_dom[GR_DOM_LEVELS];
    dom_t *doms[2];                  /* zones and racks */
    size_t ndoms[2], capdoms[2];
};

static void labels_free (gr_site_labels_t *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free (l->v[i].key);
        free (l->v[i].value);
    }
    free (l->v);
    l->v = NULL;
    l->n = 0;
}

static int labels_copy (gr_site_labels_t *dst, const gr_site_labels_t *src)
{
    if (!src || src->n == 0)
        return 0;
    if (!(dst->v = calloc (src->n, sizeof (*dst->v))))
        return -1;
    for (size_t i = 0; i < src->n; i++) {
        dst->n++;
        if (!(dst->v[i].key = strdup (src->v[i].key))
            || !(dst->v[i].value = strdup (src->v[i].value)))
            return -1;
    }
    return 0;
}

static const char *labels_get (const gr_site_labels_t *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp (l->v[i].key, key) == 0)
            return l->v[i].value;
    }
    return NULL;
}

void gr_cluster_destroy (gr_cluster_t *c)
{
    int saved = errno;

    if (!c)
        return;
    for (size_t i = 0; i < c->nhosts; i++) {
        if (c->hosts)
            free (c->hosts[i]);
        if (c->host_labels)
            labels_free (&c->host_labels[i]);
    }
    for (int l = 0; l < 2; l++) {
        for (size_t i = 0; i < c->ndoms[l]; i++) {
            free (c->doms[l][i].name);
            labels_free (&c->doms[l][i].labels);
        }
        free (c->doms[l]);
    }
    for (int l = 0; l < GR_DOM_LEVELS; l++)
        free (c->host_dom[l]);
    free (c->hosts);
    free (c->host_labels);
    free (c->site_path);
    free (c);
    errno = saved;
}

/* The id of the zone (level 0) or rack (level 1) called name (racks: in
 * zone parent), added with labels when new; SIZE_MAX when out of memory. */
static size_t dom_get (gr_cluster_t *c, int level, const char *name, size_t parent,
                       const gr_site_labels_t *labels)
{
    dom_t *d;

    for (size_t i = 0; i < c->ndoms[level]; i++) {
        d = &c->doms[level][i];
        if (strcmp (d->name, name) == 0 && (level == 0 || d->parent == parent))
            return i;
    }
    dom_t *nd =
        gr_grow (c->doms[level], &c->capdoms[level], c->ndoms[level], sizeof (*nd), 16);
    if (!nd)
        return SIZE_MAX;
    c->doms[level] = nd;
    d = &c->doms[level][c->ndoms[level]];
    memset (d, 0, sizeof (*d));
    c->ndoms[level]++;
    d->parent = parent;
    if (!(d->name = strdup (name)) || labels_copy (&d->labels, labels) < 0)
        return SIZE_MAX;
    return c->ndoms[level] - 1;
}

/* The site node of host: its full name, else its short name. */
static const gr_site_node_t *site_lookup (const gr_site_t *site, const char *host)
{
    const gr_site_node_t *n = gr_site_find_node (site, host);
    const char *dot = strchr (host, '.');
    char shortname[256];

    if (n || !dot || (size_t)(dot - host) >= sizeof (shortname))
        return n;
    memcpy (shortname, host, (size_t)(dot - host));
    shortname[dot - host] = '\0';
    return gr_site_find_node (site, shortname);
}

/* Split a Slurm topology address into its rack and zone by the pattern;
 * *rack and *zone point into buf (zone may be "default", rack NULL when
 * the address has no switch).  Returns 0 or -1 with errp set. */
static int slurm_split (const char *host, const char *addr, const char *pattern, char *buf,
                        size_t size, const char **zone, const char **rack, gr_error_t *errp)
{
    char *parts[64], *pat[64], pbuf[1024];
    size_t n = 0, np = 0, node;
    char *s, *save = NULL;

    *zone = "default";
    *rack = NULL;
    if (snprintf (buf, size, "%s", addr) >= (int)size
        || snprintf (pbuf, sizeof (pbuf), "%s", pattern ? pattern : "") >= (int)sizeof (pbuf))
        goto bad;
    if (buf[0] == '\0' || buf[0] == '.' || buf[strlen (buf) - 1] == '.' || strstr (buf, ".."))
        goto bad;
    for (s = strtok_r (buf, ".", &save); s; s = strtok_r (NULL, ".", &save)) {
        if (n == 64)
            goto bad;
        parts[n++] = s;
    }
    save = NULL;
    for (s = strtok_r (pbuf, ".", &save); s && np < 64; s = strtok_r (NULL, ".", &save))
        pat[np++] = s;
    node = n - 1;
    if (pattern && pattern[0]) {
        if (np != n) {
            errno = EINVAL;
            return gr_errprintf (errp, "host %s: SLURM_TOPOLOGY_ADDR '%s' has %zu parts but "
                                       "SLURM_TOPOLOGY_ADDR_PATTERN '%s' has %zu; they must "
                                       "match part for part, so check both (or give a site "
                                       "file with --site)",
                                 host, addr, n, pattern, np);
        }
        for (size_t i = 0; i < np; i++) {
            if (strcmp (pat[i], "node") == 0)
                node = i;
        }
    }
    if (node >= 1)
        *rack = parts[node - 1];
    if (node >= 2)
        *zone = parts[node - 2];
    return 0;
bad:
    errno = EINVAL;
    return gr_errprintf (errp, "host %s: SLURM_TOPOLOGY_ADDR '%.200s' is not a list of names "
                               "joined by '.' (like s0.s3.node7); unset it or give a site "
                               "file with --site",
                         host, addr);
}

gr_cluster_t *gr_cluster_build (const char *const *hosts, size_t nhosts,
                                const gr_site_t *site, const char *const *slurm_addrs,
                                const char *slurm_pattern, gr_error_t *errp)
{
    gr_cluster_t *c = NULL;
    size_t *zmap = NULL, *rmap = NULL;
    char buf[1024];

    if ((nhosts && !hosts) || nhosts == 0) {
        errno = EINVAL;
        gr_errprintf (errp, "no hosts to build the cluster tree from");
        return NULL;
    }
    if (!(c = calloc (1, sizeof (*c))) || !(c->hosts = calloc (nhosts, sizeof (char *)))
        || !(c->host_labels = calloc (nhosts, sizeof (*c->host_labels))))
        goto nomem;
    c->nhosts = nhosts;
    for (int l = 0; l < GR_DOM_LEVELS; l++) {
        if (!(c->host_dom[l] = calloc (nhosts, sizeof (size_t))))
            goto nomem;
    }
    for (size_t i = 0; i < nhosts; i++) {
        if (!hosts[i] || !hosts[i][0]) {
            errno = EINVAL;
            gr_errprintf (errp, "host %zu has no name", i);
            goto error;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp (hosts[i], hosts[j]) == 0) {
                errno = EINVAL;
                gr_errprintf (errp, "host '%s' is given twice; list each host once",
                              hosts[i]);
                goto error;
            }
        }
        if (!(c->hosts[i] = strdup (hosts[i])))
            goto nomem;
        c->host_dom[GR_DOM_NODE][i] = i;
    }
    if (site) {
        const gr_site_node_t **found = NULL;

        c->source = GR_CLUSTER_SITE;
        if (!(c->site_path = strdup (site->path ? site->path : "the site file"))
            || !(found = calloc (nhosts, sizeof (*found)))
            || !(zmap = calloc (site->nzones + 1, sizeof (size_t)))
            || !(rmap = calloc (site->nracks + 1, sizeof (size_t)))) {
            free (found);
            goto nomem;
        }
        for (size_t i = 0; i < nhosts; i++) {
            if (!(found[i] = site_lookup (site, hosts[i]))) {
                free (found);
                errno = EINVAL;
                gr_errprintf (errp, "host '%s' is not in the site file %s; add it to a "
                                    "rack there (host ranges like node[01-99] are fine), "
                                    "or leave out --site",
                              hosts[i], c->site_path);
                goto error;
            }
            zmap[site->racks[found[i]->rack].zone] = 1;
            rmap[found[i]->rack] = 1;
        }
        /* Number the domains in file order, counting only those in use. */
        for (size_t z = 0; z < site->nzones; z++) {
            if (zmap[z]
                && (zmap[z] = dom_get (c, 0, site->zones[z].name, 0, &site->zones[z].labels))
                       == SIZE_MAX) {
                free (found);
                goto nomem;
            }
        }
        for (size_t r = 0; r < site->nracks; r++) {
            if (rmap[r]
                && (rmap[r] = dom_get (c, 1, site->racks[r].name, zmap[site->racks[r].zone],
                                       &site->racks[r].labels))
                       == SIZE_MAX) {
                free (found);
                goto nomem;
            }
        }
        for (size_t i = 0; i < nhosts; i++) {
            c->host_dom[GR_DOM_RACK][i] = rmap[found[i]->rack];
            c->host_dom[GR_DOM_ZONE][i] = zmap[site->racks[found[i]->rack].zone];
            if (labels_copy (&c->host_labels[i], &found[i]->labels) < 0) {
                free (found);
                goto nomem;
            }
        }
        free (found);
    }
    else {
        c->source = GR_CLUSTER_DEFAULT;
        for (size_t i = 0; i < nhosts; i++) {
            const char *zone = "default", *rack = NULL;
            const char *addr = slurm_addrs ? slurm_addrs[i] : NULL;
            size_t z, r;

            if (addr && addr[0]) {
                if (slurm_split (hosts[i], addr, slurm_pattern, buf, sizeof (buf), &zone,
                                 &rack, errp) < 0)
                    goto error;
                c->source = GR_CLUSTER_SLURM;
            }
            /* Without a switch above it, a host is a rack of its own. */
            if (!rack)
                rack = hosts[i];
            if ((z = dom_get (c, 0, zone, 0, NULL)) == SIZE_MAX
                || (r = dom_get (c, 1, rack, z, NULL)) == SIZE_MAX)
                goto nomem;
            c->host_dom[GR_DOM_ZONE][i] = z;
            c->host_dom[GR_DOM_RACK][i] = r;
        }
    }
    free (zmap);
    free (rmap);
    return c;
nomem:
    errno = ENOMEM;
    gr_errprintf (errp, "out of memory building the cluster tree");
error:
    free (zmap);
    free (rmap);
    gr_cluster_destroy (c);
    return NULL;
}

gr_cluster_source_t gr_cluster_source (const gr_cluster_t *c)
{
    return c ? c->source : GR_CLUSTER_DEFAULT;
}

size_t gr_cluster_nhosts (const gr_cluster_t *c)
{
    return c ? c->nhosts : 0;
}

const char *gr_cluster_host (const gr_cluster_t *c, size_t host)
{
    return c && host < c->nhosts ? c->hosts[host] : NULL;
}

size_t gr_cluster_ndomains (const gr_cluster_t *c, gr_dom_level_t level)
{
    if (!c)
        return 0;
    if (level == GR_DOM_NODE)
        return c->nhosts;
    if (level == GR_DOM_ZONE || level == GR_DOM_RACK)
        return c->ndoms[level];
    return 0;
}

size_t gr_cluster_domain (const gr_cluster_t *c, size_t host, gr_dom_level_t level)
{
    if (!c || host >= c->nhosts || (unsigned)level >= GR_DOM_LEVELS)
        return SIZE_MAX;
    return c->host_dom[level][host];
}

const char *gr_cluster_domain_name (const gr_cluster_t *c, gr_dom_level_t level, size_t id)
{
    if (!c)
        return NULL;
    if (level == GR_DOM_NODE)
        return id < c->nhosts ? c->hosts[id] : NULL;
    if ((level == GR_DOM_ZONE || level == GR_DOM_RACK) && id < c->ndoms[level])
        return c->doms[level][id].name;
    return NULL;
}

const char *gr_cluster_label (const gr_cluster_t *c, size_t host, const char *key)
{
    const char *v;

    if (!c || !key || host >= c->nhosts)
        return NULL;
    if ((v = labels_get (&c->host_labels[host], key)))
        return v;
    if ((v = labels_get (&c->doms[GR_DOM_RACK][c->host_dom[GR_DOM_RACK][host]].labels, key)))
        return v;
    return labels_get (&c->doms[GR_DOM_ZONE][c->host_dom[GR_DOM_ZONE][host]].labels, key);
}

static void print_labels (const gr_site_labels_t *l, FILE *out)
{
    if (l->n == 0)
        return;
    fputs (" [", out);
    for (size_t i = 0; i < l->n; i++)
        fprintf (out, "%s%s=%s", i ? " " : "", l->v[i].key, l->v[i].value);
    fputs ("]", out);
}

int gr_cluster_print (const gr_cluster_t *c, const int *rank_host, size_t nranks, FILE *out)
{
    /* The ranks of each host, grouped: by_host[first[h] .. first[h+1]). */
    size_t *first = NULL;
    unsigned *by_host = NULL;
    char *list = NULL;
    size_t nz, nr;

    if (!c || !out) {
        errno = EINVAL;
        return -1;
    }
    if (rank_host) {
        size_t *fill;
        if (!(first = calloc (c->nhosts + 2, sizeof (*first)))
            || !(by_host = malloc ((nranks + 1) * sizeof (*by_host)))
            || !(list = malloc (nranks * 12 + 1)))
            goto nomem;
        for (size_t k = 0; k < nranks; k++) {
            if (rank_host[k] >= 0 && (size_t)rank_host[k] < c->nhosts)
                first[rank_host[k] + 2]++;
        }
        for (size_t h = 0; h < c->nhosts; h++)
            first[h + 2] += first[h + 1];
        fill = first + 1;
        for (size_t k = 0; k < nranks; k++) {
            if (rank_host[k] >= 0 && (size_t)rank_host[k] < c->nhosts)
                by_host[fill[rank_host[k]]++] = (unsigned)k;
        }
    }
    nz = c->ndoms[GR_DOM_ZONE];
    nr = c->ndoms[GR_DOM_RACK];
    fprintf (out, "cluster: %zu zone%s, %zu rack%s, %zu node%s", nz, nz == 1 ? "" : "s", nr,
             nr == 1 ? "" : "s", c->nhosts, c->nhosts == 1 ? "" : "s");
    if (c->source == GR_CLUSTER_SITE)
        fprintf (out, " (site file %s)\n", c->site_path);
    else if (c->source == GR_CLUSTER_SLURM)
        fprintf (out, " (SLURM_TOPOLOGY_ADDR)\n");
    else
        fprintf (out, " (one rack per node: no site file or Slurm topology)\n");
    for (size_t z = 0; z < nz; z++) {
        fprintf (out, "zone %s", c->doms[GR_DOM_ZONE][z].name);
        print_labels (&c->doms[GR_DOM_ZONE][z].labels, out);
        fputc ('\n', out);
        for (size_t r = 0; r < nr; r++) {
            if (c->doms[GR_DOM_RACK][r].parent != z)
                continue;
            fprintf (out, "  rack %s", c->doms[GR_DOM_RACK][r].name);
            print_labels (&c->doms[GR_DOM_RACK][r].labels, out);
            fputc ('\n', out);
            for (size_t h = 0; h < c->nhosts; h++) {
                if (c->host_dom[GR_DOM_RACK][h] != r)
                    continue;
                fprintf (out, "    node %s", c->hosts[h]);
                print_labels (&c->host_labels[h], out);
                if (rank_host) {
                    size_t n = first[h + 1] - first[h];
                    /* Every rank is written out: people look for their rank's
                     * number on this line. */
                    fmt_list (by_host + first[h], n, false, list, nranks * 12 + 1);
                    if (n)
                        fprintf (out, ": rank%s %s", n == 1 ? "" : "s", list);
                    else
                        fprintf (out, ": no ranks");
                }
                fputc ('\n', out);
            }
        }
    }
    free (first);
    free (by_host);
    free (list);
    if (ferror (out)) {
        errno = EIO;
        return -1;
    }
    return 0;
nomem:
    free (first);
    free (by_host);
    free (list);
    errno = ENOMEM;
    return -1;
}

int gr_topo_node_bound_cores (const gr_topo_node_t *t, uint32_t *cores, size_t *np)
{
    hwloc_bitmap_t set = NULL;
    size_t n = 0;

    if (!t || !cores || !np) {
        errno = EINVAL;
        return -1;
    }
    if (t->thissystem) {
        if (!(set = hwloc_bitmap_alloc ()))
            return -1;
        if (hwloc_get_cpubind (t->topo, set, HWLOC_CPUBIND_PROCESS) < 0)
            hwloc_bitmap_fill (set);
    }
    for (size_t c = 0; c < t->ncores; c++) {
        bool all = true;
        for (size_t k = t->pu_first[c]; k < t->pu_first[c + 1] && set; k++) {
            if (!hwloc_bitmap_isset (set, t->pus[k]))
                all = false;
        }
        if (all)
            cores[n++] = (uint32_t)c;
    }
    hwloc_bitmap_free (set);
    *np = n;
    return 0;
}
