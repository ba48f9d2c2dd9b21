/* Unit tests for src/topo and the site file parser in src/spec: node
 * topologies from hwloc XML fixtures (so nothing depends on this
 * machine), the core/GPU picker, site files good and bad, host lists, the
 * cluster tree and printing.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_main.h"
#include "src/common/error.h"
#include "src/common/gtime.h"
#include "src/spec/site_load.h"
#include "src/topo/site.h"
#include "src/topo/topo.h"

#define DATA TEST_DATA_DIR

/* ------------------------------------------------------------------ */
/* Helpers. */

static gr_topo_node_t *load_xml (const char *name)
{
    char path[4096];
    gr_error_t e = {{0}};
    gr_topo_node_t *t;

    snprintf (path, sizeof (path), "%s/%s", DATA, name);
    t = gr_topo_node_load (path, &e);
    ck_assert_msg (t != NULL, "%s: %s", name, e.text);
    return t;
}

static gr_site_t *load_site (const char *name)
{
    char path[4096];
    gr_error_t e = {{0}};
    gr_site_t *s = NULL;

    snprintf (path, sizeof (path), "%s/%s", DATA, name);
    ck_assert_msg (gr_site_load (path, &s, &e) == 0, "%s: %s", name, e.text);
    ck_assert_ptr_nonnull (s);
    return s;
}

/* What a print function wrote, in a malloc'd string. */
typedef int (*print_f) (void *arg, FILE *f);

static char *capture (print_f fn, void *arg)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream (&buf, &len);

    ck_assert_ptr_nonnull (f);
    ck_assert_int_eq (fn (arg, f), 0);
    fclose (f);
    return buf;
}

static int print_node (void *arg, FILE *f)
{
    return gr_topo_node_print (arg, f, "");
}

#define ck_assert_has(text, line)                                                         \
    ck_assert_msg (strstr ((text), (line)) != NULL, "missing \"%s\" in:\n%s", (line), (text))

/* ------------------------------------------------------------------ */
/* Node topologies. */

START_TEST (test_node_2s4g)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    const gr_topo_gpu_t *g;
    static const char *busids[] = {"0000:17:00.0", "0000:31:00.0", "0000:98:00.0",
                                   "0000:b1:00.0"};

    ck_assert_uint_eq (gr_topo_node_npackages (t), 2);
    ck_assert_uint_eq (gr_topo_node_nnumas (t), 2);
    ck_assert_uint_eq (gr_topo_node_ncores (t), 16);
    ck_assert_uint_eq (gr_topo_node_npus (t), 32);
    for (size_t c = 0; c < 16; c++) {
        ck_assert_int_eq (gr_topo_node_core_package (t, c), c < 8 ? 0 : 1);
        ck_assert_int_eq (gr_topo_node_core_numa (t, c), c < 8 ? 0 : 1);
    }
    ck_assert_int_eq (gr_topo_node_core_package (t, 16), -1);
    ck_assert_uint_eq (gr_topo_node_gpus (t, &g), 4);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf (name, sizeof (name), "cuda%d", i);
        ck_assert_int_eq (g[i].index, i);
        ck_assert_str_eq (g[i].name, name);
        ck_assert_str_eq (g[i].model, "NVIDIA A100-SXM4-40GB");
        ck_assert_str_eq (g[i].busid, busids[i]);
        ck_assert_int_eq (g[i].package, i / 2);
        ck_assert_int_eq (g[i].numa, i / 2);
        ck_assert_uint_eq (g[i].ncores, 8);
        for (size_t c = 0; c < 8; c++)
            ck_assert_uint_eq (g[i].cores[c], (uint32_t)(i / 2 * 8 + c));
    }
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_node_1s)
{
    gr_topo_node_t *t = load_xml ("topo-1s.xml");
    const gr_topo_gpu_t *g = (const gr_topo_gpu_t *)1;

    ck_assert_uint_eq (gr_topo_node_npackages (t), 1);
    ck_assert_uint_eq (gr_topo_node_nnumas (t), 1);
    ck_assert_uint_eq (gr_topo_node_ncores (t), 4);
    ck_assert_uint_eq (gr_topo_node_npus (t), 8);
    ck_assert_uint_eq (gr_topo_node_gpus (t, &g), 0);
    ck_assert_ptr_null (g);
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_node_bad)
{
    gr_error_t e = {{0}};

    ck_assert_ptr_null (gr_topo_node_load (DATA "/no-such.xml", &e));
    ck_assert_int_eq (errno, ENOENT);
    ck_assert_has (e.text, "no-such.xml: cannot read the hwloc XML topology");
    ck_assert_ptr_null (gr_topo_node_load (DATA "/site-good.yaml", &e));
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_has (e.text, "site-good.yaml: not a topology hwloc can read");
    gr_topo_node_destroy (NULL);
}
END_TEST

START_TEST (test_node_local)
{
    gr_error_t e = {{0}};
    gr_topo_node_t *t;
    uint32_t core = 0;
    char buf[64];

    /* This machine's cores and binding only: its PCI devices vary, and
     * libpciaccess leaks in pci_get_strings, which would spoil valgrind
     * runs of this program. */
    setenv ("HWLOC_COMPONENTS", "-pci", 1);
    t = gr_topo_node_load (NULL, &e);

    ck_assert_msg (t != NULL, "%s", e.text);
    ck_assert_uint_ge (gr_topo_node_ncores (t), 1);
    ck_assert_uint_ge (gr_topo_node_npus (t), gr_topo_node_ncores (t));
    ck_assert_int_eq (gr_topo_node_cpulist (t, &core, 1, buf, sizeof (buf)), 0);
    /* Test in a forked child (CK_FORK), so binding touches nothing else. */
    ck_assert_int_eq (gr_topo_node_bind_cores (t, &core, 1), 0);
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_print_node)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    char *out = capture (print_node, t);

    ck_assert_has (out, "node: 2 packages, 2 NUMA nodes, 16 cores, 32 PUs, 4 GPUs\n");
    ck_assert_has (out, "\n  package 0: cores 0-7\n    numa 0: cores 0-7\n"
                        "      gpu 0 cuda0 NVIDIA A100-SXM4-40GB (0000:17:00.0): near cores "
                        "0-7\n");
    ck_assert_has (out, "\n  package 1: cores 8-15\n    numa 1: cores 8-15\n");
    ck_assert_has (out, "      gpu 3 cuda3 NVIDIA A100-SXM4-40GB (0000:b1:00.0): near cores "
                        "8-15\n");
    free (out);
    gr_topo_node_destroy (t);

    t = load_xml ("topo-1s.xml");
    out = capture (print_node, t);
    ck_assert_str_eq (out, "node: 1 package, 1 NUMA node, 4 cores, 8 PUs, 0 GPUs\n"
                           "  package 0: cores 0-3\n"
                           "    numa 0: cores 0-3\n");
    free (out);
    gr_topo_node_destroy (t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* The picker and binding helpers. */

START_TEST (test_pick_gpu_near)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    uint8_t cbusy[16] = {0}, gbusy[4] = {0};
    uint32_t cores[16], gpus[4];
    char buf[128];

    /* One GPU and 4 cores: GPU 0 with cores of package 0. */
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 4, 1, cores, gpus), 0);
    ck_assert_uint_eq (gpus[0], 0);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq (cores[i], (uint32_t)i);
    ck_assert_int_eq (gr_topo_node_cpulist (t, cores, 4, buf, sizeof (buf)), 0);
    ck_assert_str_eq (buf, "0-7");

    /* Package 0 has a GPU left but only 2 free cores: package 1's GPUs
     * have room near them. */
    memset (cbusy, 1, 6);
    gbusy[0] = 1;
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, gbusy, 4, 1, cores, gpus), 0);
    ck_assert_uint_eq (gpus[0], 2);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq (cores[i], (uint32_t)(8 + i));

    /* Two GPUs come from one package. */
    memset (cbusy, 0, sizeof (cbusy));
    memset (gbusy, 0, sizeof (gbusy));
    gbusy[1] = 1;
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, gbusy, 2, 2, cores, gpus), 0);
    ck_assert_uint_eq (gpus[0], 2);
    ck_assert_uint_eq (gpus[1], 3);
    ck_assert_uint_eq (cores[0], 8);
    ck_assert_uint_eq (cores[1], 9);

    /* Three GPUs span packages; the cores are the ones nearest them. */
    gbusy[1] = 0;
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, gbusy, 16, 3, cores, gpus), 0);
    ck_assert_uint_eq (gpus[0] + gpus[1] + gpus[2], 0 + 1 + 2);
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_pick_no_gpu)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    uint8_t cbusy[16] = {0};
    uint32_t cores[16];
    char buf[128];

    /* The tightest NUMA node that fits: package 1 has 5 free, package 0 8. */
    memset (cbusy + 8, 1, 3);
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, NULL, 4, 0, cores, NULL), 0);
    for (int i = 0; i < 4; i++)
        ck_assert_uint_eq (cores[i], (uint32_t)(11 + i));
    /* 6 do not fit in package 1: package 0. */
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, NULL, 6, 0, cores, NULL), 0);
    for (int i = 0; i < 6; i++)
        ck_assert_uint_eq (cores[i], (uint32_t)i);
    ck_assert_int_eq (gr_topo_node_cpulist (t, cores, 6, buf, sizeof (buf)), 0);
    ck_assert_str_eq (buf, "0-11");
    ck_assert_int_eq (gr_topo_node_cpulist (t, cores, 6, buf, 4), -1);
    ck_assert_int_eq (errno, ERANGE);
    cores[0] = 99;
    ck_assert_int_eq (gr_topo_node_cpulist (t, cores, 1, buf, sizeof (buf)), -1);
    ck_assert_int_eq (errno, EINVAL);
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_pick_spill)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    uint8_t cbusy[16] = {0};
    uint32_t cores[16] = {0}, ref[16];
    char buf[128];

    /* Package 0 has 2 free, package 1 has 7: 9 cores spill, package 1
     * first, then package 0. */
    memset (cbusy, 1, 6);
    cbusy[8] = 1;
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, NULL, 9, 0, cores, NULL), 0);
    ck_assert_int_eq (gr_topo_node_cpulist (t, cores, 9, buf, sizeof (buf)), 0);
    ck_assert_str_eq (buf, "12-15,18-31");
    /* 10 are not free. */
    memcpy (ref, cores, sizeof (ref));
    ck_assert_int_eq (gr_topo_node_pick (t, cbusy, NULL, 10, 0, cores, NULL), -1);
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_mem_eq (ref, cores, sizeof (ref));
    gr_topo_node_destroy (t);
}
END_TEST

START_TEST (test_pick_eagain)
{
    gr_topo_node_t *t = load_xml ("topo-2s4g.xml");
    uint8_t gbusy[4] = {1, 1, 1, 0};
    uint32_t cores[32], gpus[8];

    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 17, 0, cores, NULL), -1);
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 1, 5, cores, gpus), -1);
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, gbusy, 1, 2, cores, gpus), -1);
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, gbusy, 1, 1, cores, gpus), 0);
    ck_assert_uint_eq (gpus[0], 3);
    ck_assert_uint_eq (cores[0], 8);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 1, 0, NULL, NULL), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 0, 0, NULL, NULL), 0);
    gr_topo_node_destroy (t);

    /* No GPU on this node at all. */
    t = load_xml ("topo-1s.xml");
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 1, 1, cores, gpus), -1);
    ck_assert_int_eq (errno, EAGAIN);
    ck_assert_int_eq (gr_topo_node_pick (t, NULL, NULL, 4, 0, cores, NULL), 0);
    ck_assert_uint_eq (cores[3], 3);
    /* An XML topology is not this machine: no binding. */
    ck_assert_int_eq (gr_topo_node_bind_cores (t, cores, 1), -1);
    ck_assert_int_eq (errno, ENOSYS);
    gr_topo_node_destroy (t);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Site files. */

START_TEST (test_site_good)
{
    gr_site_t *s = load_site ("site-good.yaml");
    const gr_site_node_t *n;

    ck_assert_uint_eq (s->nzones, 2);
    ck_assert_uint_eq (s->nracks, 3);
    ck_assert_uint_eq (s->nnodes, 8 + 3 + 16 + 1);
    ck_assert_str_eq (s->zones[0].name, "east");
    ck_assert_uint_eq (s->zones[0].labels.n, 2);
    ck_assert_str_eq (s->zones[0].labels.v[1].key, "tier");
    ck_assert_str_eq (s->zones[0].labels.v[1].value, "1");
    ck_assert_str_eq (s->racks[2].name, "r3");
    ck_assert_uint_eq (s->racks[2].zone, 1);
    ck_assert_ptr_nonnull (n = gr_site_find_node (s, "n005"));
    ck_assert_uint_eq (n->rack, 0);
    ck_assert_int_eq (n->line, 8);
    ck_assert_int_eq (n->col, 29);
    ck_assert_ptr_nonnull (n = gr_site_find_node (s, "g03"));
    ck_assert_uint_eq (n->labels.n, 1);
    ck_assert_str_eq (n->labels.v[0].value, "h100");
    ck_assert_ptr_nonnull (gr_site_find_node (s, "w16"));
    ck_assert_ptr_nonnull (gr_site_find_node (s, "login.west"));
    ck_assert_ptr_null (gr_site_find_node (s, "w17"));
    ck_assert_ptr_null (gr_site_find_node (s, "n00"));
    gr_site_destroy (s);
    gr_site_destroy (NULL);

    /* The example shipped for admins loads too. */
    s = NULL;
    gr_error_t e = {{0}};
    ck_assert_msg (gr_site_load (DATA "/../../share/gridrun/topology.yaml", &s, &e) == 0,
                   "%s", e.text);
    ck_assert_uint_eq (s->nnodes, 8 + 1 + 16);
    gr_site_destroy (s);
}
END_TEST

static const struct {
    const char *file;
    const char *where;   /* "LINE:COL: " */
    const char *phrase;
} bad[] = {
    {"site-bad-unknown-key.yaml", "3:5", "unknown key 'rakcs' in a zone; did you mean 'racks'?"},
    {"site-bad-top-key.yaml", "1:1", "unknown key 'zone' in the site file; did you mean 'zones'?"},
    {"site-bad-labels-type.yaml", "5:17", "labels: expected a mapping, got a list"},
    {"site-bad-dup-rack.yaml", "6:15", "duplicate rack name 'r1' (first at line 4)"},
    {"site-bad-dup-zone.yaml", "6:11", "duplicate zone name 'east' (first at line 2)"},
    {"site-bad-two-racks.yaml", "9:21", "node 'n003' is in rack 'r2' and in rack 'r1' (line 5)"},
    {"site-bad-hostlist.yaml", "5:23", "host list 'n[003-': a range 'a-b' needs a number"},
    {"site-bad-no-name.yaml", "4:9", "rack 1 of zone 'east' has no 'name:'"},
    {"site-bad-dup-key.yaml", "6:9", "duplicate key 'nodes' (first at line 5)"},
    {"site-bad-tab.yaml", "4:1", "indent with spaces, not tabs"},
    {"site-bad-nodes-type.yaml", "5:16", "nodes: expected a list, got a string"},
    {"site-bad-empty.yaml", "1:1", "the site file is empty"},
};
#define NBAD ((int)(sizeof (bad) / sizeof (bad[0])))

START_TEST (test_site_bad)
{
    char path[4096], prefix[4200];
    gr_error_t e = {{0}};
    gr_site_t *s = NULL;

    snprintf (path, sizeof (path), "%s/%s", DATA, bad[_i].file);
    snprintf (prefix, sizeof (prefix), "%s:%s: ", path, bad[_i].where);
    ck_assert_int_eq (gr_site_load (path, &s, &e), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_ptr_null (s);
    ck_assert_msg (strncmp (e.text, prefix, strlen (prefix)) == 0, "%s: want %s, got %s",
                   bad[_i].file, prefix, e.text);
    ck_assert_has (e.text, bad[_i].phrase);
}
END_TEST

START_TEST (test_site_more_errors)
{
    static const struct {
        const char *text;
        const char *msg;
    } cases[] = {
        {"zones: []\n", "mem.yaml:1:8: zones: is empty"},
        {"zones:\n  - name: a b\n    racks: []\n", "mem.yaml:2:11: zone name 'a b' may only"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [x], labls: {}}]\n",
         "did you mean 'labels'?"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [{labels: {}}]}]\n",
         "mem.yaml:3:31: a node has no 'name:'"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [[x]]}]\n",
         "got a list; list the nodes directly"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [x], labels: {k: [1]}}]\n",
         "label k: expected a string, got a list"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [x], labels: {k: }}]\n",
         "label k: has no value"},
        {"zones:\n  - name: a\n    racks: [{name: r, nodes: [x, x]}]\n",
         "mem.yaml:3:34: node 'x' is listed twice in rack 'r' (first at line 3)"},
        {"zones: &a [1]\nb: *a\n", "mem.yaml:2:4: YAML aliases"},
        {"zones:\n  - name: a\n    racks:\n      - name: r\n        nodes: [\"n[1-2000000]\"]\n",
         "expands to more than 1000000 names"},
        {"- a\n", "the site file: expected a mapping, got a list"},
        {"zones:\n  - name: a\n", "mem.yaml:2:5: zone 'a' has no 'racks:'"},
    };
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++) {
        gr_error_t e = {{0}};
        gr_site_t *s = NULL;
        ck_assert_msg (gr_site_parse (cases[i].text, strlen (cases[i].text), "mem.yaml", &s,
                                      &e) == -1,
                       "case %zu parsed", i);
        ck_assert_ptr_null (s);
        ck_assert_msg (strstr (e.text, cases[i].msg) != NULL, "case %zu: want %s, got %s", i,
                       cases[i].msg, e.text);
    }
}
END_TEST

/* ------------------------------------------------------------------ */
/* Host lists. */

static void expect_hosts (const char *list, const char *joined)
{
    char **names = NULL, buf[4096] = "";
    size_t n = 0, o = 0;
    gr_error_t e = {{0}};

    ck_assert_msg (gr_hostlist_expand (list, 1000, &names, &n, &e) == 0, "%s: %s", list,
                   e.text);
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf (buf + o, sizeof (buf) - o, "%s%s", i ? " " : "", names[i]);
    ck_assert_str_eq (buf, joined);
    gr_hostlist_free (names, n);
}

static void expect_bad_hosts (const char *list, size_t max, int err, const char *phrase)
{
    char **names = NULL;
    size_t n = 0;
    gr_error_t e = {{0}};

    ck_assert_msg (gr_hostlist_expand (list, max, &names, &n, &e) == -1, "%s expanded", list);
    ck_assert_int_eq (errno, err);
    ck_assert_ptr_null (names);
    ck_assert_msg (strstr (e.text, phrase) != NULL, "%s: want %s, got %s", list, phrase,
                   e.text);
}

/* A site file of very many racks is read in time that grows with its
 * size: 150,000 racks (about a minute once, when each new rack's name was
 * compared with every earlier one), and a duplicate at the very end is
 * still found. */
START_TEST (test_site_many_racks)
{
    enum { NRACKS = 150000 };
    for (int dup = 0; dup < 2; dup++) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream (&text, &len);
        ck_assert_ptr_nonnull (f);
        fprintf (f, "zones:\n  - name: z\n    racks:\n");
        for (int r = 0; r < NRACKS; r++)
            fprintf (f, "      - {name: r%d, nodes: [h%d]}\n", r, r);
        if (dup)
            fprintf (f, "      - {name: r0, nodes: [x]}\n");
        ck_assert_int_eq (fclose (f), 0);

        gr_site_t *site = NULL;
        gr_error_t e;
        double t0 = gr_now ();
        int rc = gr_site_parse (text, len, "racks.yaml", &site, &e);
        double t = gr_now () - t0;
        printf ("# %d racks%s: parsed in %.2f s\n", NRACKS, dup ? " and a duplicate" : "", t);
        if (dup) {
            ck_assert_int_eq (rc, -1);
            ck_assert_msg (strstr (e.text, "racks.yaml:150004:") && strstr (e.text,
                           "duplicate rack name 'r0' (first at line 4)"), "%s", e.text);
        }
        else {
            ck_assert_msg (rc == 0, "%s", e.text);
            ck_assert_uint_eq (site->nracks, NRACKS);
            gr_site_destroy (site);
        }
        ck_assert_msg (t < 20 * gr_test_time_scale (), "%.1f s", t);
        free (text);
    }
}
END_TEST

START_TEST (test_hostlist)
{
    expect_hosts ("n001", "n001");
    expect_hosts ("n[003-005]", "n003 n004 n005");
    expect_hosts ("n[08-10]", "n08 n09 n10");
    expect_hosts ("n[8-10]x", "n8x n9x n10x");
    expect_hosts ("a[1,3-4,7],b.c,d[0]", "a1 a3 a4 a7 b.c d0");
    expect_hosts ("r[1-2]n[01-02]", "r1n01 r1n02 r2n01 r2n02");
    expect_hosts ("[1-2]", "1 2");

    expect_bad_hosts ("n[1-", 100, EINVAL, "needs a number after '-'");
    expect_bad_hosts ("n[1-3", 100, EINVAL, "has no matching ']'");
    expect_bad_hosts ("n[]", 100, EINVAL, "an empty range");
    expect_bad_hosts ("n[3-1]", 100, EINVAL, "a range goes down");
    expect_bad_hosts ("n[a]", 100, EINVAL, "must be numbers");
    expect_bad_hosts ("n1]", 100, EINVAL, "a ']' without '['");
    expect_bad_hosts ("n1,,n2", 100, EINVAL, "an empty name");
    expect_bad_hosts ("", 100, EINVAL, "an empty name");
    expect_bad_hosts ("n 1", 100, EINVAL, "' ' cannot appear in a host name");
    expect_bad_hosts ("n[1-2x]", 100, EINVAL, "only numbers, '-' and ','");
    expect_bad_hosts ("n[1234567890]", 100, EINVAL, "at most 9 digits");
    expect_bad_hosts ("n[1-101]", 100, E2BIG, "expands to more than 100 names");
    expect_bad_hosts ("n[1-60],m[1-60]", 100, E2BIG, "more than 100 names");
    expect_bad_hosts ("n[1-999999999]x[1-999999999]", 1000000, E2BIG, "more than 1000000");
}
END_TEST

/* ------------------------------------------------------------------ */
/* The cluster tree. */

typedef struct pc {
    gr_cluster_t *c;
    const int *rank_host;
    size_t nranks;
} pc_t;

static int print_cluster (void *arg, FILE *f)
{
    pc_t *p = arg;
    return gr_cluster_print (p->c, p->rank_host, p->nranks, f);
}

START_TEST (test_cluster_site)
{
    gr_site_t *s = load_site ("site-good.yaml");
    const char *hosts[] = {"w02", "n001", "g01.example.org", "n002", "g02"};
    int rank_host[] = {1, 1, 3, 0, 2, 4, 1};
    gr_error_t e = {{0}};
    gr_cluster_t *c = gr_cluster_build (hosts, 5, s, NULL, NULL, &e);
    char *out;
    pc_t p = {c, rank_host, 7};

    ck_assert_msg (c != NULL, "%s", e.text);
    gr_site_destroy (s); /* the tree keeps its own copies */
    ck_assert_int_eq (gr_cluster_source (c), GR_CLUSTER_SITE);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_ZONE), 2);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_RACK), 3);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_NODE), 5);
    /* Zones and racks are numbered in file order. */
    ck_assert_uint_eq (gr_cluster_domain (c, 0, GR_DOM_ZONE), 1);
    ck_assert_uint_eq (gr_cluster_domain (c, 0, GR_DOM_RACK), 2);
    ck_assert_uint_eq (gr_cluster_domain (c, 1, GR_DOM_ZONE), 0);
    ck_assert_uint_eq (gr_cluster_domain (c, 1, GR_DOM_RACK), 0);
    ck_assert_uint_eq (gr_cluster_domain (c, 3, GR_DOM_RACK), 0);
    ck_assert_uint_eq (gr_cluster_domain (c, 2, GR_DOM_RACK), 1);
    ck_assert_uint_eq (gr_cluster_domain (c, 4, GR_DOM_NODE), 4);
    ck_assert_uint_eq (gr_cluster_domain (c, 5, GR_DOM_NODE), SIZE_MAX);
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_ZONE, 1), "west");
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_RACK, 1), "r2");
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_NODE, 2), "g01.example.org");
    ck_assert_ptr_null (gr_cluster_domain_name (c, GR_DOM_RACK, 3));
    /* Labels: node over rack over zone. */
    ck_assert_str_eq (gr_cluster_label (c, 2, "gpu"), "a100");
    ck_assert_str_eq (gr_cluster_label (c, 2, "cost"), "premium");
    ck_assert_str_eq (gr_cluster_label (c, 2, "tier"), "1");
    ck_assert_str_eq (gr_cluster_label (c, 1, "cost"), "standard");
    ck_assert_str_eq (gr_cluster_label (c, 1, "storage"), "lustre-a");
    ck_assert_str_eq (gr_cluster_label (c, 0, "cost"), "low");
    ck_assert_ptr_null (gr_cluster_label (c, 0, "storage"));
    ck_assert_str_eq (gr_cluster_label (c, 4, "gpu"), "h100");

    out = capture (print_cluster, &p);
    ck_assert_has (out, "cluster: 2 zones, 3 racks, 5 nodes (site file " DATA
                        "/site-good.yaml)\n");
    ck_assert_has (out, "\nzone east [cost=standard tier=1]\n"
                        "  rack r1 [storage=lustre-a]\n"
                        "    node n001: ranks 0,1,6\n"
                        "    node n002: rank 2\n"
                        "  rack r2 [cost=premium]\n"
                        "    node g01.example.org [gpu=a100 gpus=4]: rank 4\n"
                        "    node g02 [gpu=h100]: rank 5\n"
                        "zone west [cost=low]\n"
                        "  rack r3\n"
                        "    node w02: rank 3\n");
    free (out);
    p.rank_host = NULL;
    out = capture (print_cluster, &p);
    ck_assert_has (out, "    node w02\n");
    free (out);
    gr_cluster_destroy (c);
    gr_cluster_destroy (NULL);
}
END_TEST

START_TEST (test_cluster_site_missing)
{
    gr_site_t *s = load_site ("site-good.yaml");
    const char *hosts[] = {"n001", "x9"};
    gr_error_t e = {{0}};

    ck_assert_ptr_null (gr_cluster_build (hosts, 2, s, NULL, NULL, &e));
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_has (e.text, "host 'x9' is not in the site file " DATA "/site-good.yaml; add it");
    hosts[1] = "n001";
    ck_assert_ptr_null (gr_cluster_build (hosts, 2, s, NULL, NULL, &e));
    ck_assert_has (e.text, "host 'n001' is given twice");
    ck_assert_ptr_null (gr_cluster_build (hosts, 0, s, NULL, NULL, &e));
    gr_site_destroy (s);
}
END_TEST

START_TEST (test_cluster_slurm)
{
    const char *hosts[] = {"node7", "node8", "node9", "other"};
    const char *addrs[] = {"s0.s3.node7", "s0.s3.node8", "s0.s4.node9", NULL};
    const char *flat[] = {"flat"}, *flat_addr[] = {"s5.flat"};
    gr_error_t e = {{0}};
    gr_cluster_t *c = gr_cluster_build (hosts, 4, NULL, addrs, "switch.switch.node", &e);
    pc_t p = {c, NULL, 0};
    char *out;

    ck_assert_msg (c != NULL, "%s", e.text);
    ck_assert_int_eq (gr_cluster_source (c), GR_CLUSTER_SLURM);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_ZONE), 2);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_RACK), 3);
    ck_assert_uint_eq (gr_cluster_domain (c, 0, GR_DOM_ZONE), 0);
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_ZONE, 0), "s0");
    ck_assert_uint_eq (gr_cluster_domain (c, 1, GR_DOM_RACK), 0);
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_RACK, 0), "s3");
    ck_assert_uint_eq (gr_cluster_domain (c, 0, GR_DOM_RACK), 0);
    ck_assert_uint_eq (gr_cluster_domain (c, 2, GR_DOM_RACK), 1);
    /* A host without an address is a rack of its own in zone default. */
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_RACK, 2), "other");
    ck_assert_uint_eq (gr_cluster_domain (c, 3, GR_DOM_ZONE), 1);
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_ZONE, 1), "default");
    ck_assert_ptr_null (gr_cluster_label (c, 0, "cost"));
    out = capture (print_cluster, &p);
    ck_assert_str_eq (out, "cluster: 2 zones, 3 racks, 4 nodes (SLURM_TOPOLOGY_ADDR)\n"
                           "zone s0\n  rack s3\n    node node7\n    node node8\n"
                           "  rack s4\n    node node9\n"
                           "zone default\n  rack other\n    node other\n");
    free (out);
    gr_cluster_destroy (c);

    /* Without a pattern, the last part is the node. */
    ck_assert_ptr_nonnull (c = gr_cluster_build (hosts, 3, NULL, addrs, NULL, &e));
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_RACK), 2);
    gr_cluster_destroy (c);

    /* One switch level: it is the rack, the zone is default. */
    ck_assert_ptr_nonnull (c = gr_cluster_build (flat, 1, NULL, flat_addr, "switch.node", &e));
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_RACK, 0), "s5");
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_ZONE, 0), "default");
    gr_cluster_destroy (c);

    ck_assert_ptr_null (gr_cluster_build (hosts, 1, NULL, addrs, "switch.node", &e));
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_has (e.text, "has 3 parts but SLURM_TOPOLOGY_ADDR_PATTERN 'switch.node' has 2");
    addrs[0] = "s0..node7";
    ck_assert_ptr_null (gr_cluster_build (hosts, 1, NULL, addrs, NULL, &e));
    ck_assert_has (e.text, "host node7: SLURM_TOPOLOGY_ADDR 's0..node7' is not a list");
}
END_TEST

START_TEST (test_cluster_default)
{
    const char *hosts[] = {"a", "b", "c"};
    int rank_host[] = {0, 2, 2, 0};
    gr_error_t e = {{0}};
    gr_cluster_t *c = gr_cluster_build (hosts, 3, NULL, NULL, NULL, &e);
    pc_t p = {c, rank_host, 4};
    char *out;

    ck_assert_msg (c != NULL, "%s", e.text);
    ck_assert_int_eq (gr_cluster_source (c), GR_CLUSTER_DEFAULT);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_ZONE), 1);
    ck_assert_uint_eq (gr_cluster_ndomains (c, GR_DOM_RACK), 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq (gr_cluster_domain (c, i, GR_DOM_RACK), i);
        ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_RACK, i), hosts[i]);
        ck_assert_uint_eq (gr_cluster_domain (c, i, GR_DOM_ZONE), 0);
    }
    ck_assert_str_eq (gr_cluster_domain_name (c, GR_DOM_ZONE, 0), "default");
    out = capture (print_cluster, &p);
    ck_assert_str_eq (out, "cluster: 1 zone, 3 racks, 3 nodes (one rack per node: no site "
                           "file or Slurm topology)\n"
                           "zone default\n"
                           "  rack a\n    node a: ranks 0,3\n"
                           "  rack b\n    node b: no ranks\n"
                           "  rack c\n    node c: ranks 1,2\n");
    free (out);
    gr_cluster_destroy (c);
}
END_TEST

static Suite *topo_suite (void)
{
    Suite *s = suite_create ("topo");
    TCase *tc;

    tc = tcase_create ("node");
    tcase_add_test (tc, test_node_2s4g);
    tcase_add_test (tc, test_node_1s);
    tcase_add_test (tc, test_node_bad);
    tcase_add_test (tc, test_node_local);
    tcase_add_test (tc, test_print_node);
    suite_add_tcase (s, tc);

    tc = tcase_create ("pick");
    tcase_add_test (tc, test_pick_gpu_near);
    tcase_add_test (tc, test_pick_no_gpu);
    tcase_add_test (tc, test_pick_spill);
    tcase_add_test (tc, test_pick_eagain);
    suite_add_tcase (s, tc);

    tc = tcase_create ("site");
    tcase_set_timeout (tc, 60);
    tcase_add_test (tc, test_site_good);
    tcase_add_loop_test (tc, test_site_bad, 0, NBAD);
    tcase_add_test (tc, test_site_more_errors);
    tcase_add_test (tc, test_site_many_racks);
    tcase_add_test (tc, test_hostlist);
    suite_add_tcase (s, tc);

    tc = tcase_create ("cluster");
    tcase_add_test (tc, test_cluster_site);
    tcase_add_test (tc, test_cluster_site_missing);
    tcase_add_test (tc, test_cluster_slurm);
    tcase_add_test (tc, test_cluster_default);
    suite_add_tcase (s, tc);
    return s;
}

int main (void)
{
    return gr_check_main (topo_suite ());
}
