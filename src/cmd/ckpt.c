/* gridrun ckpt ls|verify|show: a training checkpoint directory (written
 * by libgridrun's gr_ckpt_*) as people look at it.  Never starts MPI: the
 * file format is src/ckpt/ckptfile.c's. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <jansson.h>

#include "src/ckpt/ckptfile.h"
#include "src/common/error.h"
#include "src/common/units.h"
#include "src/runtime/runtime.h"
#include "cmd.h"

static const char *usage_text =
    "usage: gridrun ckpt ls [--json] DIR\n"
    "       gridrun ckpt verify DIR [STEP]\n"
    "       gridrun ckpt show [--json] DIR [STEP]\n"
    "  ls      the steps: time, ranks, layout, size, and whether their files are\n"
    "          all there with the recorded sizes\n"
    "  verify  read every byte of every file of STEP (default: of every step) and\n"
    "          check it against its checksums; exit 0 when intact, 1 when damaged\n"
    "  show    the arrays (name, type, shape, layout), attributes and files of STEP\n"
    "          (default: the newest)\n"
    "See doc/checkpoints.md.\n";

static int usage_error (const char *msg)
{
    fprintf (stderr, "gridrun: ckpt: %s\n%s", msg, usage_text);
    return GR_EXIT_USAGE;
}

static const char *fmt_time (double t, char *buf, size_t len)
{
    return gr_fmt_localtime (t, "%Y-%m-%d %H:%M:%S", buf, (int)len);
}

static const char *fmt_size (uint64_t n, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)n;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf (buf, len, u ? "%.1f %s" : "%.0f %s", v, units[u]);
    return buf;
}

/* "[10, 4]" */
static const char *fmt_shape (const gr_ckf_array_t *a, char *buf, size_t len)
{
    size_t o = (size_t)snprintf (buf, len, "[");
    for (int d = 0; d < a->ndims && o < len; d++)
        o += (size_t)snprintf (buf + o, len - o, "%s%" PRIu64, d ? ", " : "", a->dims[d]);
    if (o < len)
        snprintf (buf + o, len - o, "]");
    return buf;
}

/* The quick check of ls: meta readable, every file there with its size.
 * Writes what is wrong into why ("" when nothing). */
static void quick_check (const char *dir, const gr_ckf_entry_t *e, char *why, size_t len)
{
    char sd[PATH_MAX], path[PATH_MAX + 300];
    struct stat st;

    why[0] = '\0';
    if (!e->rec || !e->has_dir || !e->from_meta) {
        snprintf (why, len, "%s", e->problem[0] ? e->problem : "no readable record");
        if (!e->rec || !e->has_dir)
            return;
    }
    gr_ckf_step_dir (sd, sizeof (sd), dir, e->step);
    for (size_t i = 0; i < e->rec->nfiles; i++) {
        const gr_ckf_file_t *f = &e->rec->files[i];
        size_t o = strlen (why);
        snprintf (path, sizeof (path), "%s/%s", sd, f->name);
        if (stat (path, &st) < 0)
            snprintf (why + o, len - o, "%s%s: %s", o ? "; " : "", f->name,
                      errno == ENOENT ? "missing" : strerror (errno));
        else if ((uint64_t)st.st_size != f->size)
            snprintf (why + o, len - o, "%s%s: %" PRIu64 " bytes, %" PRIu64 " expected",
                      o ? "; " : "", f->name, (uint64_t)st.st_size, f->size);
    }
}

/* Every byte of every file of the entry's step, and each file's HDF5
 * structure.  Returns 0 intact, 1 damaged (why says how). */
static int full_check (const char *dir, const gr_ckf_entry_t *e, char *why, size_t len)
{
    char sd[PATH_MAX], path[PATH_MAX + 300], fwhy[2048];

    why[0] = '\0';
    if (!e->rec || !e->has_dir || !e->from_meta) {
        snprintf (why, len, "%s", e->problem[0] ? e->problem : "no readable record");
        if (!e->rec || !e->has_dir)
            return 1;
    }
    gr_ckf_step_dir (sd, sizeof (sd), dir, e->step);
    for (size_t i = 0; i < e->rec->nfiles; i++) {
        const gr_ckf_file_t *f = &e->rec->files[i];
        snprintf (path, sizeof (path), "%s/%s", sd, f->name);
        int rc = gr_ckf_verify_file (path, e->rec, f, NULL, true, fwhy, sizeof (fwhy));
        if (rc < 0)
            snprintf (fwhy, sizeof (fwhy), "%s", strerror (errno));
        /* A file whose bytes are as written has the structure it was
         * written with; the HDF5 check matters when the bytes do not. */
        if (rc != 0 || gr_ckf_check_h5 (path, e->rec, (int)i, fwhy, sizeof (fwhy)) != 0) {
            size_t o = strlen (why);
            snprintf (why + o, len - o, "%s%s: %s", o ? "; " : "", f->name, fwhy);
        }
    }
    return why[0] ? 1 : 0;
}

static gr_ckf_catalog_t *load_catalog (const char *dir)
{
    gr_error_t err;
    gr_ckf_catalog_t *c = gr_ckf_catalog_load (dir, &err);
    if (!c)
        fprintf (stderr, "gridrun: %s\n", err.text);
    return c;
}

static int cmd_ls (const char *dir, int json)
{
    gr_ckf_catalog_t *c = load_catalog (dir);
    char why[2048], tb[32], sb[32], sd[PATH_MAX];
    json_t *arr = json ? json_array () : NULL;

    if (!c)
        return 1;
    if (!json)
        printf ("%10s  %-19s  %5s  %-8s  %10s  %s\n", "STEP", "TIME", "RANKS", "LAYOUT", "SIZE",
                "STATE");
    for (size_t i = 0; i < c->ntmp; i++) {
        gr_ckf_tmp_dir (sd, sizeof (sd), ".", c->tmp_steps[i]);
        if (json) {
            json_t *o = json_pack ("{s:I, s:s}", "step", (json_int_t)c->tmp_steps[i], "state",
                                   "uncommitted");
            json_array_append_new (arr, o);
        } else {
            printf ("%10" PRId64 "  %-19s  %5s  %-8s  %10s  uncommitted (%s)\n", c->tmp_steps[i],
                    "-", "-", "-", "-", sd + 2);
        }
    }
    for (size_t i = 0; i < c->n; i++) {
        const gr_ckf_entry_t *e = &c->entries[i];
        const gr_ckf_step_t *s = e->rec;
        quick_check (dir, e, why, sizeof (why));
        const char *state = why[0] ? "damaged" : e->in_index ? "ok" : "ok, not in the index";
        if (json) {
            json_t *o = json_pack ("{s:I, s:s, s:b}", "step", (json_int_t)e->step, "state",
                                   why[0] ? "damaged" : "ok", "in_index", e->in_index);
            if (s) {
                json_object_set_new (o, "time", json_real (s->time));
                json_object_set_new (o, "ranks", json_integer (s->nranks));
                json_object_set_new (o, "layout", json_string (gr_ckf_layout_name (s->layout)));
                json_object_set_new (o, "bytes", json_integer ((json_int_t)gr_ckf_step_bytes (s)));
            }
            if (why[0])
                json_object_set_new (o, "problem", json_string (why));
            json_array_append_new (arr, o);
            continue;
        }
        if (s)
            printf ("%10" PRId64 "  %-19s  %5d  %-8s  %10s  %s%s%s\n", e->step,
                    fmt_time (s->time, tb, sizeof (tb)), s->nranks,
                    gr_ckf_layout_name (s->layout), fmt_size (gr_ckf_step_bytes (s), sb, sizeof (sb)),
                    state, why[0] ? ": " : "", why);
        else
            printf ("%10" PRId64 "  %-19s  %5s  %-8s  %10s  damaged: %s\n", e->step, "-", "-",
                    "-", "-", why);
    }
    if (json) {
        json_t *o = json_pack ("{s:s, s:o}", "dir", dir, "steps", arr);
        json_object_set_new (o, "index", json_string (c->have_index ? "ok" : c->index_problem));
        char *text = json_dumps (o, JSON_INDENT (2));
        printf ("%s\n", text ? text : "{}");
        free (text);
        json_decref (o);
    } else {
        if (!c->have_index)
            printf ("index: %s\n", c->index_problem);
        if (c->n == 0 && c->ntmp == 0)
            printf ("(no steps in %s)\n", dir);
        else
            printf ("(sizes checked only: 'gridrun ckpt verify %s' reads every byte)\n", dir);
    }
    gr_ckf_catalog_free (c);
    return 0;
}

static int parse_step (const char *s, int64_t *out)
{
    uint64_t v;
    char *e;
    errno = 0;
    v = strtoull (s, &e, 10);
    if (errno || *e || e == s || *s == '-' || v > INT64_MAX)
        return -1;
    *out = (int64_t)v;
    return 0;
}

static int cmd_verify (const char *dir, const char *step_arg)
{
    gr_ckf_catalog_t *c;
    int64_t want = -1;
    char why[4096];
    int damaged = 0, checked = 0;
    int64_t newest_ok = -1;

    if (step_arg && parse_step (step_arg, &want) < 0)
        return usage_error ("STEP must be a step number");
    if (!(c = load_catalog (dir)))
        return 1;
    for (size_t i = 0; i < c->n; i++) {
        const gr_ckf_entry_t *e = &c->entries[i];
        if (step_arg && e->step != want)
            continue;
        checked++;
        if (full_check (dir, e, why, sizeof (why))) {
            damaged++;
            printf ("step %" PRId64 ": DAMAGED: %s\n", e->step, why);
            continue;
        }
        char sb[32];
        size_t nds = 0;
        for (size_t k = 0; k < e->rec->nfiles; k++)
            nds += e->rec->files[k].nregions;
        printf ("step %" PRId64 ": ok (%zu file%s, %s, %zu dataset slab%s checked)%s\n", e->step,
                e->rec->nfiles, e->rec->nfiles == 1 ? "" : "s",
                fmt_size (gr_ckf_step_bytes (e->rec), sb, sizeof (sb)), nds, nds == 1 ? "" : "s",
                e->in_index ? "" : " (not in the index)");
        if (newest_ok < 0)
            newest_ok = e->step;
    }
    if (step_arg && checked == 0) {
        fprintf (stderr, "gridrun: no step %" PRId64 " in '%s' (see gridrun ckpt ls %s)\n", want,
                 dir, dir);
        gr_ckf_catalog_free (c);
        return 1;
    }
    if (!step_arg) {
        if (!c->have_index && c->n) {
            damaged++;
            printf ("index: DAMAGED: %s\n", c->index_problem);
        } else if (c->n) {
            printf ("index: ok\n");
        }
        if (c->n == 0)
            printf ("no steps in %s\n", dir);
        else if (newest_ok >= 0)
            printf ("a load would use step %" PRId64 "\n", newest_ok);
        else
            printf ("no step is intact: a load would find nothing (unless partner copies "
                    "restore files)\n");
    }
    gr_ckf_catalog_free (c);
    return damaged ? 1 : 0;
}

static const char *kind_name (int kind)
{
    return kind == GR_CKF_ATTR_I64 ? "i64" : kind == GR_CKF_ATTR_F64 ? "f64" : "str";
}

static void show_json (const char *dir, const gr_ckf_entry_t *e)
{
    const gr_ckf_step_t *s = e->rec;
    json_t *arrays = json_array (), *attrs = json_object (), *files = json_array ();

    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        json_t *shape = json_array (), *o;
        for (int d = 0; d < a->ndims; d++)
            json_array_append_new (shape, json_integer ((json_int_t)a->dims[d]));
        o = json_pack ("{s:s, s:s, s:o, s:s}", "name", a->name, "type",
                       gr_ckf_type_name (a->type), "shape", shape, "layout",
                       a->sharded == GR_CKF_SHARDED ? "sharded" : "replicated");
        if (a->sharded == GR_CKF_SHARDED) {
            json_t *rows = json_array ();
            for (int r = 0; r < s->nranks; r++)
                json_array_append_new (rows, json_integer ((json_int_t)a->rows[r]));
            json_object_set_new (o, "rows", rows);
        }
        json_array_append_new (arrays, o);
    }
    for (size_t i = 0; i < s->nattrs; i++) {
        const gr_ckf_attr_t *a = &s->attrs[i];
        json_object_set_new (attrs, a->name,
                             a->kind == GR_CKF_ATTR_I64   ? json_integer (a->i64)
                             : a->kind == GR_CKF_ATTR_F64 ? json_real (a->f64)
                                                          : json_string (a->str));
    }
    for (size_t i = 0; i < s->nfiles; i++) {
        char crc[16];
        snprintf (crc, sizeof (crc), "%08" PRIx32, s->files[i].crc);
        json_array_append_new (files, json_pack ("{s:s, s:I, s:s, s:I}", "name",
                                                 s->files[i].name, "bytes",
                                                 (json_int_t)s->files[i].size, "crc32c", crc,
                                                 "datasets",
                                                 (json_int_t)s->files[i].nregions));
    }
    json_t *o = json_pack ("{s:s, s:I, s:f, s:i, s:s, s:o, s:o, s:o}", "dir", dir, "step",
                           (json_int_t)s->step, "time", s->time, "ranks", s->nranks, "layout",
                           gr_ckf_layout_name (s->layout), "arrays", arrays, "attributes",
                           attrs, "files", files);
    if (e->problem[0])
        json_object_set_new (o, "problem", json_string (e->problem));
    char *text = json_dumps (o, JSON_INDENT (2));
    printf ("%s\n", text ? text : "{}");
    free (text);
    json_decref (o);
}

static void show_text (const char *dir, const gr_ckf_entry_t *e)
{
    const gr_ckf_step_t *s = e->rec;
    char tb[32], sb[32], shape[256];
    size_t w = 4;

    printf ("step %" PRId64 " of %s: saved %s by %d rank%s, %s layout, %s\n", s->step, dir,
            fmt_time (s->time, tb, sizeof (tb)), s->nranks, s->nranks == 1 ? "" : "s",
            gr_ckf_layout_name (s->layout), fmt_size (gr_ckf_step_bytes (s), sb, sizeof (sb)));
    if (e->problem[0])
        printf ("note: %s\n", e->problem);
    for (size_t i = 0; i < s->narrays; i++)
        w = strlen (s->arrays[i].name) > w ? strlen (s->arrays[i].name) : w;
    printf ("arrays:\n");
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        printf ("  %-*s  %-4s  %-16s  %s", (int)w, a->name, gr_ckf_type_name (a->type),
                fmt_shape (a, shape, sizeof (shape)),
                a->sharded == GR_CKF_SHARDED ? "sharded" : "replicated");
        if (a->sharded == GR_CKF_SHARDED && s->nranks <= 16) {
            printf (" (rows by rank:");
            for (int r = 0; r < s->nranks; r++)
                printf (" %" PRIu64, a->rows[r]);
            printf (")");
        }
        printf ("\n");
    }
    if (s->narrays == 0)
        printf ("  (none)\n");
    printf ("attributes:\n");
    for (size_t i = 0; i < s->nattrs; i++) {
        const gr_ckf_attr_t *a = &s->attrs[i];
        printf ("  %s  %s  ", a->name, kind_name (a->kind));
        if (a->kind == GR_CKF_ATTR_I64)
            printf ("%" PRId64 "\n", a->i64);
        else if (a->kind == GR_CKF_ATTR_F64)
            printf ("%.17g\n", a->f64);
        else {
            json_t *j = json_string (a->str);
            char *q = j ? json_dumps (j, JSON_ENCODE_ANY) : NULL;
            printf ("%s\n", q ? q : "?");
            free (q);
            json_decref (j);
        }
    }
    if (s->nattrs == 0)
        printf ("  (none)\n");
    printf ("files:\n");
    for (size_t i = 0; i < s->nfiles; i++)
        printf ("  %s  %" PRIu64 " bytes  crc32c %08" PRIx32 "  %zu dataset slab%s\n",
                s->files[i].name, s->files[i].size, s->files[i].crc, s->files[i].nregions,
                s->files[i].nregions == 1 ? "" : "s");
}

static int cmd_show (const char *dir, const char *step_arg, int json)
{
    gr_ckf_catalog_t *c;
    int64_t want = -1;
    const gr_ckf_entry_t *e = NULL;

    if (step_arg && parse_step (step_arg, &want) < 0)
        return usage_error ("STEP must be a step number");
    if (!(c = load_catalog (dir)))
        return 1;
    for (size_t i = 0; i < c->n && !e; i++)
        if (c->entries[i].rec && (step_arg ? c->entries[i].step == want : true))
            e = &c->entries[i];
    if (!e) {
        if (step_arg)
            fprintf (stderr, "gridrun: no readable step %" PRId64 " in '%s' (see gridrun ckpt "
                     "ls %s)\n", want, dir, dir);
        else
            fprintf (stderr, "gridrun: no readable step in '%s'\n", dir);
        gr_ckf_catalog_free (c);
        return 1;
    }
    if (json)
        show_json (dir, e);
    else
        show_text (dir, e);
    gr_ckf_catalog_free (c);
    return 0;
}

static const struct option longopts[] = {
    {"json", no_argument, NULL, 'j'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

int gr_cmd_ckpt (int argc, char **argv)
{
    int c, json = 0;
    const char *sub;

    if (argc < 2)
        return usage_error ("give ls, verify or show");
    sub = argv[1];
    if (strcmp (sub, "help") == 0 || strcmp (sub, "--help") == 0 || strcmp (sub, "-h") == 0) {
        fputs (usage_text, stdout);
        return 0;
    }
    optind = 1;
    while ((c = getopt_long (argc - 1, argv + 1, "jh", longopts, NULL)) != -1) {
        switch (c) {
            case 'j':
                json = 1;
                break;
            case 'h':
                fputs (usage_text, stdout);
                return 0;
            default:
                return usage_error ("bad option");
        }
    }
    int nargs = argc - 1 - optind;
    char **args = argv + 1 + optind;
    if (strcmp (sub, "ls") == 0) {
        if (nargs != 1)
            return usage_error ("ls takes one directory");
        return cmd_ls (args[0], json);
    }
    if (strcmp (sub, "verify") == 0) {
        if (json)
            return usage_error ("verify has no --json");
        if (nargs < 1 || nargs > 2)
            return usage_error ("verify takes a directory and an optional step");
        return cmd_verify (args[0], nargs == 2 ? args[1] : NULL);
    }
    if (strcmp (sub, "show") == 0) {
        if (nargs < 1 || nargs > 2)
            return usage_error ("show takes a directory and an optional step");
        return cmd_show (args[0], nargs == 2 ? args[1] : NULL, json);
    }
    return usage_error ("unknown ckpt command (give ls, verify or show)");
}
