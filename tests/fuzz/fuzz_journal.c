/* Fuzz the journal's replay, of all three format versions, and what
 * resume does after it.
 *
 * The input is one mode byte and then the bytes of a journal file, header
 * included (tests/data/journal-v1.bin, -v2.bin and -v3.bin are the seeds).
 * With bit 0 of the mode set, the harness first rewrites the CRC of every
 * whole frame it finds, so that the fuzzer reaches the record decoders
 * instead of stopping at a checksum; with it clear, the bytes are written
 * as they are.  The file goes to the harness's directory and is replayed.
 *
 * When replay accepts the file, two promises are checked:
 *
 *  - Resume: opening the journal for appending at the length replay found
 *    good (which cuts off a damaged tail), appending a record and
 *    replaying again gives the same records plus that one, and no damage.
 *  - Round trip: a journal of the same version written from the records
 *    replayed replays to the same records, field for field.  (A batch may
 *    be split into several records by the writer, so batches are compared
 *    entry by entry.)
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "src/common/error.h"
#include "src/common/hash.h"
#include "src/journal/journal.h"
#include "fuzz.h"

/* A flat, comparable account of the records replayed: every field of
 * every record, each batch entry on its own. */
typedef struct {
    unsigned char *p;
    size_t len, cap;
    uint64_t records;
    gr_jrec_t last;     /* the last record's fixed part */
    gr_journal_t *copy; /* when set, every record is appended to it */
    unsigned version;   /* of the file replayed */
} trace_t;

/* Versions 2 and 3 keep an end's three durations to the microsecond when all
 * three lie in [0, 9e9) seconds (journal.h), whatever the file held: the
 * trace holds them so, to compare with what a rewrite gives.  Written from
 * doc/journal-format.md: whole microseconds, halves rounded up. */
static void v2_times (double t[3])
{
    for (int i = 0; i < 3; i++) {
        if (signbit (t[i]) || !(t[i] < 9e9))
            return;
    }
    for (int i = 0; i < 3; i++) {
        double us = t[i] * 1e6;
        double whole = floor (us);
        t[i] = (whole + (us - whole >= 0.5)) / 1e6;
    }
}

static void put (trace_t *t, const void *data, size_t n)
{
    if (t->cap - t->len < n) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap - t->len < n)
            cap *= 2;
        t->p = realloc (t->p, cap);
        GR_FUZZ_ASSERT (t->p != NULL);
        t->cap = cap;
    }
    memcpy (t->p + t->len, data, n);
    t->len += n;
}

#define PUT(t, v)                                                                        \
    do {                                                                                 \
        __typeof__ (v) v_ = (v);                                                         \
        put ((t), &v_, sizeof (v_));                                                     \
    } while (0)

static int on_record (const gr_jrec_t *rec, void *arg)
{
    trace_t *t = arg;
    gr_error_t e;

    t->records++;
    t->last = *rec;
    if (rec->type != GR_JREC_TASK_START && rec->type != GR_JREC_TASK_END) {
        PUT (t, (uint32_t)rec->type);
        PUT (t, rec->time);
    } else if ((rec->type == GR_JREC_TASK_START ? rec->start.n : rec->end.n) == 0) {
        /* An empty batch is one record, whoever writes it. */
        PUT (t, (uint32_t)rec->type | 0x100);
        PUT (t, rec->time);
        PUT (t, rec->type == GR_JREC_TASK_START ? rec->start.worker : rec->end.worker);
    }
    switch (rec->type) {
        case GR_JREC_RUN_START:
            PUT (t, rec->run_start.spec_hash);
            PUT (t, rec->run_start.incarnation);
            PUT (t, rec->run_start.nworkers);
            break;
        case GR_JREC_WORKER:
            PUT (t, rec->worker.rank);
            PUT (t, rec->worker.cpus);
            PUT (t, rec->worker.gpus);
            GR_FUZZ_ASSERT (strlen (rec->worker.host) < sizeof (rec->worker.host));
            put (t, rec->worker.host, strlen (rec->worker.host) + 1);
            break;
        case GR_JREC_TASK_START:
            for (uint32_t i = 0; i < rec->start.n; i++) {
                const gr_jstart_t *s = &rec->start.tasks[i];
                PUT (t, (uint32_t)rec->type);
                PUT (t, rec->time);
                PUT (t, rec->start.worker);
                PUT (t, s->key);
                PUT (t, s->index);
                PUT (t, s->def);
                PUT (t, s->attempt);
            }
            break;
        case GR_JREC_TASK_END:
            for (uint32_t i = 0; i < rec->end.n; i++) {
                const gr_jend_t *d = &rec->end.tasks[i];
                GR_FUZZ_ASSERT (d->outcome <= GR_JOUT_REQUEUED);
                PUT (t, (uint32_t)rec->type);
                PUT (t, rec->time);
                PUT (t, rec->end.worker);
                PUT (t, d->key);
                PUT (t, d->index);
                PUT (t, d->def);
                PUT (t, d->attempt);
                PUT (t, d->exit_code);
                PUT (t, d->signal);
                PUT (t, d->flags);
                PUT (t, d->outcome);
                double times[3] = {d->wall, d->utime, d->stime};
                if (t->version >= 2)
                    v2_times (times);
                put (t, times, sizeof (times));
                PUT (t, d->maxrss_kb);
            }
            break;
        case GR_JREC_DRAIN:
            PUT (t, rec->drain.reason);
            PUT (t, rec->drain.deadline);
            break;
        case GR_JREC_RUN_END:
            PUT (t, rec->run_end.exit_code);
            break;
        case GR_JREC_WORKER_LOST:
            PUT (t, rec->lost.rank);
            break;
        case GR_JREC_QUARANTINE:
            PUT (t, rec->quarantine.level);
            PUT (t, rec->quarantine.on);
            PUT (t, rec->quarantine.failures);
            PUT (t, rec->quarantine.until);
            GR_FUZZ_ASSERT (strlen (rec->quarantine.name) <
                            sizeof (rec->quarantine.name));
            put (t, rec->quarantine.name, strlen (rec->quarantine.name) + 1);
            break;
        default:
            GR_FUZZ_ASSERT (!"replay delivered a record of an unknown type");
    }
    if (t->copy)
        GR_FUZZ_ASSERT (gr_journal_append (t->copy, rec, &e) == 0);
    return 0;
}

/* Rewrite the CRC of every whole frame after the header. */
static void fix_crcs (unsigned char *p, size_t len)
{
    size_t off = GR_JOURNAL_HDR_LEN;
    while (len >= 8 && off <= len - 8) {
        uint32_t n;
        memcpy (&n, p + off, 4);
        if (n > len - off - 8)
            break;
        uint32_t crc = gr_crc32c (0, p + off + 8, n);
        memcpy (p + off + 4, &crc, 4);
        off += 8 + (size_t)n;
    }
}

static void check_resume (const char *path, const gr_journal_info_t *info,
                          const trace_t *before)
{
    gr_journal_opts_t o;
    gr_journal_info_t info2;
    gr_error_t e;
    trace_t after = {.version = before->version};

    gr_journal_opts_init (&o);
    o.nosync = true;
    gr_journal_t *j = gr_journal_open (path, info->valid_len, &o, &e);
    if (!j) {
        fprintf (stderr, "open: %s\n", e.text);
        GR_FUZZ_ASSERT (!"a journal that replays cannot be opened for appending");
    }
    gr_jrec_t end = {.type = GR_JREC_RUN_END, .time = 1.5, .run_end.exit_code = 75};
    GR_FUZZ_ASSERT (gr_journal_append (j, &end, &e) == 0);
    GR_FUZZ_ASSERT (gr_journal_close (j, &e) == 0);
    GR_FUZZ_ASSERT (gr_journal_replay (path, on_record, &after, &info2, &e) == 0);
    GR_FUZZ_ASSERT (info2.damage == GR_JDAMAGE_NONE);
    GR_FUZZ_ASSERT (info2.version == info->version);
    GR_FUZZ_ASSERT (after.records == before->records + 1);
    GR_FUZZ_ASSERT (after.len > before->len);
    GR_FUZZ_ASSERT (before->len == 0 || memcmp (after.p, before->p, before->len) == 0);
    GR_FUZZ_ASSERT (after.last.type == GR_JREC_RUN_END &&
                    after.last.run_end.exit_code == 75);
    free (after.p);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    static char path[4200], copy_path[4200];
    gr_journal_info_t info, info2;
    gr_error_t e;
    trace_t first = {0}, second = {0};

    if (size < 1)
        return 0;
    if (!path[0]) {
        snprintf (path, sizeof (path), "%s/journal", gr_fuzz_dir ());
        snprintf (copy_path, sizeof (copy_path), "%s/copy", gr_fuzz_dir ());
    }
    unsigned mode = data[0];
    unsigned char *buf = malloc (size);
    GR_FUZZ_ASSERT (buf != NULL);
    memcpy (buf, data + 1, size - 1);
    if (mode & 1)
        fix_crcs (buf, size - 1);
    gr_fuzz_write (path, buf, size - 1);
    free (buf);

    /* The copy, with the same header, is written from the records as
     * they come. */
    if (size - 1 >= GR_JOURNAL_HDR_LEN) {
        first.version = second.version = data[GR_JOURNAL_HDR_LEN];
        gr_journal_opts_t o;
        gr_journal_opts_init (&o);
        o.nosync = true;
        gr_fuzz_write (copy_path, data + 1, GR_JOURNAL_HDR_LEN);
        first.copy = gr_journal_open (copy_path, 0, &o, &e);
    }

    if (gr_journal_replay (path, on_record, &first, &info, &e) < 0) {
        GR_FUZZ_ASSERT (e.text[0] != '\0' && first.records == 0);
        gr_journal_close (first.copy, NULL);
        free (first.p);
        return 0;
    }
    /* A journal that replays has a good header, and so has its copy. */
    GR_FUZZ_ASSERT (first.copy != NULL);
    GR_FUZZ_ASSERT (info.records == first.records);
    GR_FUZZ_ASSERT (info.valid_len <= info.file_len && info.file_len == size - 1);
    GR_FUZZ_ASSERT ((info.damage == GR_JDAMAGE_NONE) ==
                    (info.valid_len == info.file_len));
    GR_FUZZ_ASSERT (info.damage == GR_JDAMAGE_NONE || info.damage_text[0] != '\0');
    GR_FUZZ_ASSERT (gr_journal_close (first.copy, &e) == 0);
    first.copy = NULL;

    if (gr_journal_replay (copy_path, on_record, &second, &info2, &e) < 0) {
        fprintf (stderr, "copy: %s\n", e.text);
        GR_FUZZ_ASSERT (!"a journal written from replayed records does not replay");
    }
    GR_FUZZ_ASSERT (info2.damage == GR_JDAMAGE_NONE);
    if (second.len != first.len ||
        (first.len > 0 && memcmp (second.p, first.p, first.len) != 0)) {
        size_t at = 0;
        while (at < first.len && at < second.len && first.p[at] == second.p[at])
            at++;
        fprintf (stderr,
                 "replayed %zu bytes of fields, rewritten %zu; they differ "
                 "from byte %zu\n",
                 first.len, second.len, at);
        GR_FUZZ_ASSERT (!"a journal rewritten from its records replays differently");
    }
    free (second.p);

    check_resume (path, &info, &first);
    free (first.p);
    return 0;
}
