/* Fuzz the checkpoint index and step records: gr_ckf_index_read,
 * gr_ckf_meta_read and gr_ckf_catalog_load (what `gridrun ckpt ls` and
 * gr_ckpt_load read first) on a directory that holds the input.
 *
 * The input is one mode byte and then text.  With bit 0 of the mode set,
 * the text is the records alone: the harness writes DIR/index as the
 * index's header line, the text and a correct checksum line, and
 * DIR/step-00000001/meta likewise with the meta header, so that the
 * fuzzer reaches the record parser instead of stopping at the checksum.
 * With it clear, the text is written as it is to both files.
 *
 * Every record read must format back to text that parses to the same
 * text again, and the sizes and offsets computed from it must be sane.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#include "src/ckpt/ckptfile.h"
#include "src/common/error.h"
#include "src/common/hash.h"
#include "fuzz.h"

#define META_HEADER "gridrun-ckpt-meta 1\n"
#define INDEX_HEADER "gridrun-ckpt-index 1\n"

static char dir[4200], stepdir[4300], index_path[4300], meta_path[4400];

/* HEADER, body, "checksum XXXXXXXX\n" over both. */
static void write_checked (const char *path, const char *header, const uint8_t *body,
                           size_t len)
{
    size_t hl = strlen (header);
    char *text = malloc (hl + len + 32);
    GR_FUZZ_ASSERT (text != NULL);
    memcpy (text, header, hl);
    memcpy (text + hl, body, len);
    uint32_t crc = gr_crc32c (0, text, hl + len);
    int n = snprintf (text + hl + len, 32, "checksum %08" PRIx32 "\n", crc);
    gr_fuzz_write (path, text, hl + len + (size_t)n);
    free (text);
}

static void check_step (const gr_ckf_step_t *s)
{
    gr_error_t e;
    size_t len, len2;

    GR_FUZZ_ASSERT (s->nranks >= 1 && s->nranks <= GR_CKF_MAX_RANKS);
    for (size_t i = 0; i < s->narrays; i++) {
        const gr_ckf_array_t *a = &s->arrays[i];
        GR_FUZZ_ASSERT (gr_ckf_find_array (s, a->name) == (int)i);
        GR_FUZZ_ASSERT (gr_ckf_type_size (a->type) > 0);
        uint64_t total = gr_ckf_array_bytes (a);
        (void)gr_ckf_row_bytes (a);
        if (a->sharded == GR_CKF_SHARDED) {
            for (int r = 0; r < s->nranks && r < 64; r++)
                GR_FUZZ_ASSERT (gr_ckf_row_offset (a, r) <= a->dims[0]);
        }
        (void)total;
    }
    for (size_t i = 0; i < s->nattrs; i++)
        GR_FUZZ_ASSERT (gr_ckf_find_attr (s, s->attrs[i].name) == &s->attrs[i]);
    (void)gr_ckf_step_bytes (s);

    /* Text -> record -> text -> record -> text: both texts the same. */
    char *text = gr_ckf_step_format (s, &len);
    GR_FUZZ_ASSERT (text != NULL);
    gr_ckf_step_t *again = gr_ckf_step_parse (text, len, "formatted", 1, &e);
    if (!again) {
        fprintf (stderr, "reparse: %s\n%s", e.text, text);
        GR_FUZZ_ASSERT (!"a record read from a file does not parse once formatted");
    }
    char *text2 = gr_ckf_step_format (again, &len2);
    GR_FUZZ_ASSERT (text2 != NULL);
    GR_FUZZ_ASSERT (len == len2 && memcmp (text, text2, len) == 0);
    free (text2);
    free (text);
    gr_ckf_step_free (again);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    gr_error_t e;
    gr_ckf_step_t **steps = NULL;
    size_t n = 0;

    if (size < 1)
        return 0;
    if (!dir[0]) {
        snprintf (dir, sizeof (dir), "%s/ckpt", gr_fuzz_dir ());
        snprintf (stepdir, sizeof (stepdir), "%s/step-00000001", dir);
        snprintf (index_path, sizeof (index_path), "%s/index", dir);
        snprintf (meta_path, sizeof (meta_path), "%s/meta", stepdir);
        GR_FUZZ_ASSERT (mkdir (dir, 0700) == 0 && mkdir (stepdir, 0700) == 0);
    }
    if (data[0] & 1) {
        write_checked (index_path, INDEX_HEADER, data + 1, size - 1);
        write_checked (meta_path, META_HEADER, data + 1, size - 1);
    } else {
        gr_fuzz_write (index_path, data + 1, size - 1);
        gr_fuzz_write (meta_path, data + 1, size - 1);
    }

    if (gr_ckf_index_read (dir, &steps, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++) {
            check_step (steps[i]);
            GR_FUZZ_ASSERT (i == 0 || steps[i - 1]->step < steps[i]->step);
        }
        gr_ckf_steps_free (steps, n);
    } else {
        GR_FUZZ_ASSERT (e.text[0] != '\0' && (errno == EBADMSG || errno == ENOMEM));
    }

    gr_ckf_step_t *s = gr_ckf_meta_read (stepdir, &e);
    if (s) {
        check_step (s);
        gr_ckf_step_free (s);
    } else {
        GR_FUZZ_ASSERT (e.text[0] != '\0' && (errno == EBADMSG || errno == ENOMEM));
    }

    gr_ckf_catalog_t *c = gr_ckf_catalog_load (dir, &e);
    GR_FUZZ_ASSERT (c != NULL);
    for (size_t i = 0; i < c->n; i++) {
        GR_FUZZ_ASSERT (i == 0 || c->entries[i - 1].step > c->entries[i].step);
        if (c->entries[i].rec)
            GR_FUZZ_ASSERT (c->entries[i].rec->step == c->entries[i].step);
    }
    gr_ckf_catalog_free (c);
    return 0;
}
