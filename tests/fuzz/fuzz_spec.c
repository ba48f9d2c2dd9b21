/* Fuzz the job spec: gr_spec_parse on any bytes, and for a spec that
 * parses, what `gridrun validate` and the master do with it: pack and
 * unpack (to the same spec), the resource check, and the expansion and
 * rendering of a few tasks of every definition (the first, the second,
 * the middle and the last).
 *
 * The input is the spec text.  Its name is /fuzz/job.yaml and two param
 * files are shipped with it, so that {file: seeds.txt} and {file:
 * words.txt} resolve without touching the filesystem.  An input that
 * starts with the packed spec's magic ("GRSPEC1" and a NUL) is a packed
 * spec instead (RUN/spec.pack), given to gr_spec_unpack.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include "src/spec/spec.h"
#include "fuzz.h"

#define NAME "/fuzz/job.yaml"

static const gr_spec_file_t files[] = {
    {.path = "/fuzz/seeds.txt", .data = "1\n2\n3\n\n5\n", .len = 9},
    {.path = "/fuzz/words.txt", .data = "a b\r\n'q'\n$HOME\n{x}\n", .len = 20},
};

/* Touch every byte of a string, so that the sanitizers see a bad one. */
static size_t touch (const char *s)
{
    return s ? strlen (s) : 0;
}

static void expand_task (gr_expand_t *x, const gr_spec_t *s, const gr_taskdef_t *d,
                         uint64_t k)
{
    gr_render_ctx_t ctx = {.run_dir = "/fuzz/run", .attempt = 2};
    gr_task_cmd_t cmd;
    gr_error_t e;
    size_t n = 0;

    GR_FUZZ_ASSERT (gr_expand_select (x, d, k) == 0);
    uint64_t key = gr_expand_key (x);
    GR_FUZZ_ASSERT (gr_expand_replica (x) < d->replicas);
    for (size_t i = 0; i < d->nparams; i++)
        n += touch (gr_expand_value (x, i));
    n += touch (gr_expand_name (x));
    n += touch (gr_expand_params_string (x));
    if (gr_expand_render (x, &ctx, &cmd, &e) == 0) {
        for (char **a = cmd.argv; a && *a; a++)
            n += touch (*a);
        for (char **v = cmd.env; v && *v; v++)
            n += touch (*v);
        n += touch (cmd.cwd) + touch (cmd.out_path) + touch (cmd.err_path) +
             touch (cmd.ckpt_dir);
    } else {
        GR_FUZZ_ASSERT (e.text[0] != '\0');
    }
    /* The key depends on the task alone. */
    GR_FUZZ_ASSERT (gr_expand_select (x, d, k) == 0);
    GR_FUZZ_ASSERT (gr_expand_key (x) == key);
    (void)s;
    (void)n;
}

static void check_spec (gr_spec_t *s)
{
    gr_error_t e;
    void *buf = NULL;
    size_t len = 0;
    gr_spec_t *u = NULL;

    /* What the master ships to the workers parses to the same spec. */
    GR_FUZZ_ASSERT (gr_spec_pack (s, &buf, &len) == 0);
    if (gr_spec_unpack (buf, len, &u, &e) < 0) {
        fprintf (stderr, "unpack: %s\n", e.text);
        GR_FUZZ_ASSERT (!"a packed spec does not unpack");
    }
    GR_FUZZ_ASSERT (u->hash == s->hash && u->ntasks == s->ntasks && u->total == s->total);
    gr_spec_destroy (u);
    free (buf);

    (void)gr_spec_check_resources (s, 4, 1, 1u << 30, &e);
    (void)gr_spec_check_resources (s, UINT32_MAX, 0, 0, &e);

    gr_expand_t *x = gr_expand_create ();
    GR_FUZZ_ASSERT (x != NULL);
    for (size_t i = 0; i < s->ntasks && i < 32; i++) {
        const gr_taskdef_t *d = &s->tasks[i];
        GR_FUZZ_ASSERT (gr_spec_find (s, d->name) == d);
        GR_FUZZ_ASSERT (d->count >= 1);
        for (size_t j = 0; j < d->nafter; j++)
            GR_FUZZ_ASSERT (d->after[j] < s->ntasks);
        uint64_t ks[] = {0, 1, d->count / 2, d->count - 1};
        for (size_t j = 0; j < sizeof (ks) / sizeof (ks[0]); j++) {
            if (ks[j] < d->count && (j == 0 || ks[j] != ks[j - 1]))
                expand_task (x, s, d, ks[j]);
        }
        (void)gr_spec_success (d, 0);
        (void)gr_spec_success (d, 255);
    }
    gr_expand_destroy (x);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    gr_spec_t *s = NULL;
    gr_error_t e;

    /* A packed spec (RUN/spec.pack, what the workers receive): it loads,
     * or fails with a sentence. */
    if (size >= 8 && memcmp (data, "GRSPEC1", 8) == 0) {
        if (gr_spec_unpack (data, size, &s, &e) < 0) {
            GR_FUZZ_ASSERT (e.text[0] != '\0');
            return 0;
        }
        check_spec (s);
        gr_spec_destroy (s);
        return 0;
    }
    if (gr_spec_parse ((const char *)data, size, NAME, files,
                       sizeof (files) / sizeof (files[0]), &s, &e) < 0) {
        /* An error says where: FILE:LINE:COL. */
        if (strncmp (e.text, NAME ":", sizeof (NAME)) != 0) {
            fprintf (stderr, "error without a place: %s\n", e.text);
            GR_FUZZ_ASSERT (!"an error that does not name the spec");
        }
        return 0;
    }
    check_spec (s);
    gr_spec_destroy (s);
    return 0;
}
