#include "config.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/common/chaos.h"
#include "src/common/fs.h"
#include "src/common/gtime.h"
#include "src/common/hash.h"
#include "journal.h"

/* Sizes of the encoded forms, in bytes.  The layout is written out field
 * by field (see doc/journal-format.md), never copied from a struct, so it
 * does not depend on the compiler's padding or the host's byte order. */
#define FRAME_LEN 8                 /* u32 len, u32 crc */
#define COMMON_LEN 9                /* u8 type, f64 time */
#define BATCH_HDR_LEN (COMMON_LEN + 8) /* + u32 worker, u32 n */
#define START_ENTRY_LEN 24          /* version 1 */
#define END_ENTRY_LEN 72
#define RUN_START_LEN (COMMON_LEN + 16)
#define WORKER_MIN_LEN (COMMON_LEN + 13) /* + 3 x u32, u8 hostlen */
#define HOST_MAX 63
#define DRAIN_LEN (COMMON_LEN + 12)
#define RUN_END_LEN (COMMON_LEN + 4)
#define LOST_LEN (COMMON_LEN + 4)
/* Version 2 only: + 3 x u32, f64, u8 namelen; the name as a host's. */
#define QUAR_MIN_LEN (COMMON_LEN + 21)

/* Version 2 task entries: a flag byte, the key, and then only the fields
 * that differ from what the flags imply (see doc/journal-format.md).  The
 * flag bits say which fields follow. */
#define E_INDEX 0x01    /* index is not the previous + 1: zigzag delta */
#define E_DEF 0x02      /* def differs from the previous entry's */
#define E_ATTEMPT 0x04  /* attempt is not 1 */
#define E_STATUS 0x08   /* exit_code, signal, flags, outcome are not 0 */
#define E_WALL 0x10     /* wall is not 0 us */
#define E_CPU 0x20      /* utime or stime is not 0 us */
#define E_RSS 0x40      /* maxrss_kb differs from the previous entry's */
#define E_RAW 0x80      /* the three durations as f64, exactly */
#define E_START_BITS (E_INDEX | E_DEF | E_ATTEMPT)
#define V2_ENTRY_MIN 9                      /* flags + key */
#define V3_ENTRY_MIN 1                      /* flags: no key in version 3 */
#define V2_START_MAX (9 + 10 + 5 + 5)       /* + index, def, attempt */
#define V2_END_MAX (V2_START_MAX + 4 * 5 + 24 + 10) /* + status, times, rss */
/* Durations in [0, US_LIMIT) seconds are stored as whole microseconds;
 * below 2^53 us every count is exact in a double. */
#define US_LIMIT 9.0e9

/* Replay reads this much at a time; it must hold the largest record. */
#define READ_CHUNK (8u * 1024 * 1024)

struct gr_journal {
    int fd;
    char *path;
    gr_journal_opts_t opts;
    unsigned version;       /* the file's format version: 1 or 2 */
    uint64_t file_len;      /* bytes committed to the file */
    unsigned char *buf;     /* encoded records not yet committed */
    size_t len;
    size_t cap;
    uint64_t pending;       /* task entries in buf (see maybe_sync) */
    double oldest;          /* gr_now() when buf became non-empty */
    gr_journal_stats_t stats;

    /* Background mode: the writer thread commits wbuf while the caller
     * fills buf.  mu guards wbuf/wlen, busy, werr, file_len and stats while
     * the thread runs. */
    bool thread_up;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned char *wbuf;
    size_t wlen, wcap;
    bool busy;              /* wbuf holds a commit the thread has not done */
    bool stop;
    int werr;               /* errno of a failed background commit */
};

/* Little-endian packing. */

static inline unsigned char *put_u8 (unsigned char *p, uint8_t v)
{
    *p = v;
    return p + 1;
}

static inline unsigned char *put_u32 (unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
    p[2] = (unsigned char)(v >> 16);
    p[3] = (unsigned char)(v >> 24);
    return p + 4;
}

static inline unsigned char *put_u64 (unsigned char *p, uint64_t v)
{
    put_u32 (p, (uint32_t)v);
    return put_u32 (p + 4, (uint32_t)(v >> 32));
}

static inline unsigned char *put_i32 (unsigned char *p, int32_t v)
{
    return put_u32 (p, (uint32_t)v);
}

static inline unsigned char *put_i64 (unsigned char *p, int64_t v)
{
    return put_u64 (p, (uint64_t)v);
}

static inline unsigned char *put_f64 (unsigned char *p, double v)
{
    uint64_t u;
    memcpy (&u, &v, sizeof (u));
    return put_u64 (p, u);
}

static inline uint32_t get_u32 (const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16
           | (uint32_t)p[3] << 24;
}

static inline uint64_t get_u64 (const unsigned char *p)
{
    return (uint64_t)get_u32 (p) | (uint64_t)get_u32 (p + 4) << 32;
}

static inline int32_t get_i32 (const unsigned char *p)
{
    return (int32_t)get_u32 (p);
}

static inline int64_t get_i64 (const unsigned char *p)
{
    return (int64_t)get_u64 (p);
}

static inline double get_f64 (const unsigned char *p)
{
    uint64_t u = get_u64 (p);
    double v;
    memcpy (&v, &u, sizeof (v));
    return v;
}

/* LEB128 varints and zigzag, for version 2. */

static inline unsigned char *put_varint (unsigned char *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    *p++ = (unsigned char)v;
    return p;
}

/* Any 64-bit pattern, read as two's complement, to an unsigned number that
 * is small when the signed one is near 0; unzigzag64 undoes it exactly. */
static inline uint64_t zigzag64 (uint64_t v)
{
    return (v << 1) ^ (0 - (v >> 63));
}

static inline uint64_t unzigzag64 (uint64_t z)
{
    return (z >> 1) ^ (0 - (z & 1));
}

static inline uint32_t zigzag32 (int32_t v)
{
    uint32_t u = (uint32_t)v;
    return (u << 1) ^ (0 - (u >> 31));
}

static inline int32_t unzigzag32 (uint32_t z)
{
    return (int32_t)((z >> 1) ^ (0 - (z & 1)));
}

/* Outcomes of reading a varint or an entry: the bytes end inside it
 * (DEC_SHORT), or it can be no valid encoding (DEC_BAD). */
enum { DEC_BAD = -1, DEC_SHORT = 0, DEC_OK = 1 };

/* Read a varint from *pp, never past end.  At most 10 bytes, and the 10th
 * may only hold the 64th bit: a longer one or one that overflows is bad. */
static inline int get_varint (const unsigned char **pp, const unsigned char *end,
                              uint64_t *v)
{
    const unsigned char *p = *pp;
    if (p < end && *p < 0x80) {
        *v = *p;
        *pp = p + 1;
        return DEC_OK;
    }
    uint64_t x = 0;
    for (unsigned shift = 0;; shift += 7) {
        if (p == end)
            return DEC_SHORT;
        unsigned b = *p++;
        if (shift == 63 && b > 1)
            return DEC_BAD;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
    }
    *v = x;
    *pp = p;
    return DEC_OK;
}

static inline int get_varint32 (const unsigned char **pp, const unsigned char *end,
                                uint32_t *v)
{
    uint64_t x;
    int rc = get_varint (pp, end, &x);
    if (rc != DEC_OK)
        return rc;
    if (x > UINT32_MAX)
        return DEC_BAD;
    *v = (uint32_t)x;
    return DEC_OK;
}

/* Whether a duration is stored as whole microseconds.  NaN, infinities,
 * negative numbers (-0.0 included) and very long times are not: they are
 * stored as f64, bit for bit. */
static inline bool us_ok (double v)
{
    return !signbit (v) && v < US_LIMIT;
}

/* Round half up, exactly: t is below 2^53, so t - us loses nothing
 * (unlike t + 0.5, which can round up a fraction just below a half). */
static inline uint64_t to_us (double v)
{
    double t = v * 1e6;
    uint64_t us = (uint64_t)t;
    return us + (t - (double)us >= 0.5);
}

void gr_journal_opts_init (gr_journal_opts_t *o)
{
    o->commit_interval = 0.05;
    o->commit_records = 4096;
    o->nosync = false;
    o->background = false;
}

/* Writer. */

static int reserve (gr_journal_t *j, size_t more)
{
    if (j->cap - j->len >= more)
        return 0;
    size_t ncap = j->cap ? j->cap : 65536;
    while (ncap - j->len < more) {
        if (ncap > SIZE_MAX / 2) {
            errno = ENOMEM;
            return -1;
        }
        ncap *= 2;
    }
    unsigned char *nb = realloc (j->buf, ncap);
    if (!nb)
        return -1;
    j->buf = nb;
    j->cap = ncap;
    return 0;
}

/* Start a record at the end of the buffer; the frame is filled by
 * end_record once the payload length is known. */
static unsigned char *begin_record (gr_journal_t *j, const gr_jrec_t *rec)
{
    unsigned char *p = j->buf + j->len + FRAME_LEN;
    p = put_u8 (p, (uint8_t)rec->type);
    return put_f64 (p, rec->time);
}

static void end_record (gr_journal_t *j, unsigned char *end)
{
    unsigned char *frame = j->buf + j->len;
    size_t plen = (size_t)(end - frame) - FRAME_LEN;
    put_u32 (frame, (uint32_t)plen);
    put_u32 (frame + 4, gr_crc32c (0, frame + FRAME_LEN, plen));
    j->len += FRAME_LEN + plen;
    j->stats.records++;
    j->stats.bytes += FRAME_LEN + plen;
}

static unsigned char *put_start (unsigned char *p, const gr_jstart_t *t)
{
    p = put_u64 (p, t->key);
    p = put_u64 (p, t->index);
    p = put_u32 (p, t->def);
    return put_u32 (p, t->attempt);
}

static unsigned char *put_end (unsigned char *p, const gr_jend_t *t)
{
    p = put_u64 (p, t->key);
    p = put_u64 (p, t->index);
    p = put_u32 (p, t->def);
    p = put_u32 (p, t->attempt);
    p = put_i32 (p, t->exit_code);
    p = put_i32 (p, t->signal);
    p = put_u32 (p, t->flags);
    p = put_u32 (p, t->outcome);
    p = put_f64 (p, t->wall);
    p = put_f64 (p, t->utime);
    p = put_f64 (p, t->stime);
    return put_i64 (p, t->maxrss_kb);
}

/* Version 2 (and 3).  Each entry is coded against the entry before it in
 * its record (v2_prev_t, the encoder's and the decoders'), and each record
 * against a fresh state, so that every record decodes on its own: the
 * previous index is taken as UINT64_MAX (the first index is predicted to
 * be 0), the previous def and maxrss_kb as 0. */
typedef struct {
    uint64_t index;
    uint32_t def;
    int64_t maxrss_kb;
} v2_prev_t;

#define V2_PREV_INIT { UINT64_MAX, 0, 0 }

/* The head every version 2 or 3 entry starts with: the flags byte (its
 * E_INDEX, E_DEF and E_ATTEMPT bits set here; the caller ORs in the rest
 * and stores it at *fpp), the key in version 2, then index, def and
 * attempt as they differ from the entry before (prev).  The decoders read
 * it back in one place too (get_common_v2).  Always inlined: at full
 * dispatch rate the master codes two entries a task, and a call each
 * (arguments, the flags through memory) cost more than the coding. */
static inline __attribute__ ((always_inline)) unsigned char *
put_head (unsigned char *p, unsigned char **fpp, unsigned *f, bool keyed, uint64_t key,
          uint64_t index, uint32_t def, uint32_t attempt, v2_prev_t *prev)
{
    *fpp = p;
    *f = 0;
    p = keyed ? put_u64 (p + 1, key) : p + 1;
    uint64_t d = index - prev->index - 1;
    prev->index = index;
    if (d != 0) {
        *f |= E_INDEX;
        p = put_varint (p, zigzag64 (d));
    }
    if (def != prev->def) {
        *f |= E_DEF;
        p = put_varint (p, def);
        prev->def = def;
    }
    if (attempt != 1) {
        *f |= E_ATTEMPT;
        p = put_varint (p, attempt);
    }
    return p;
}

/* The n plain entries an entry's plain_after stands for, after it
 * (version 3 only): a zero byte each. */
static inline unsigned char *put_plain_after (unsigned char *p, uint32_t n, v2_prev_t *prev)
{
    memset (p, 0, n);
    prev->index += n;
    return p + n;
}

static unsigned char *put_starts_v2 (unsigned char *p, const gr_jstart_t *t,
                                     size_t k, bool keyed)
{
    v2_prev_t prev = V2_PREV_INIT;
    for (size_t i = 0; i < k; i++) {
        /* Version 3: a run of plain entries (the next index, the same def,
         * attempt 1) codes as a zero byte each.  This loop only tests. */
        if (!keyed) {
            size_t z = 0;
            while (i < k && gr_jstart_plain (t[i].index, t[i].def, t[i].attempt,
                                             prev.index + 1, prev.def)) {
                z += 1 + (size_t)t[i].plain_after;
                prev.index = t[i].index + t[i].plain_after;
                i++;
            }
            memset (p, 0, z);
            p += z;
            if (i == k)
                break;
        }
        unsigned char *fp;
        unsigned f;
        p = put_head (p, &fp, &f, keyed, t[i].key, t[i].index, t[i].def, t[i].attempt,
                      &prev);
        *fp = (unsigned char)f;
        p = put_plain_after (p, t[i].plain_after, &prev);
    }
    return p;
}

/* Whether e codes as a zero byte after prev (version 3): see put_ends_v2. */
static inline bool plain_end (const gr_jend_t *e, const v2_prev_t *prev)
{
    return gr_jend_plain (e, &e->wall, prev->index + 1, prev->def, prev->maxrss_kb);
}

static unsigned char *put_ends_v2 (unsigned char *p, const gr_jend_t *t, size_t k,
                                   bool keyed)
{
    v2_prev_t prev = V2_PREV_INIT;
    for (size_t i = 0; i < k; i++) {
        /* As in put_starts_v2: a run of plain entries, tested only, with
         * those that follow each (plain_after, version 3 only). */
        if (!keyed) {
            size_t z = 0;
            while (i < k && plain_end (&t[i], &prev)) {
                z += 1 + (size_t)t[i].plain_after;
                prev.index = t[i].index + t[i].plain_after;
                i++;
            }
            memset (p, 0, z);
            p += z;
            if (i == k)
                break;
        }
        const gr_jend_t *e = &t[i];
        unsigned char *fp;
        unsigned f;
        p = put_head (p, &fp, &f, keyed, e->key, e->index, e->def, e->attempt, &prev);
        if (((uint32_t)e->exit_code | (uint32_t)e->signal | e->flags | e->outcome) != 0) {
            f |= E_STATUS;
            p = put_varint (p, zigzag32 (e->exit_code));
            p = put_varint (p, zigzag32 (e->signal));
            p = put_varint (p, e->flags);
            p = put_varint (p, e->outcome);
        }
        /* All three +0.0 (a no-op task) is the common case: one test. */
        uint64_t bw, bu, bs;
        memcpy (&bw, &e->wall, 8);
        memcpy (&bu, &e->utime, 8);
        memcpy (&bs, &e->stime, 8);
        if ((bw | bu | bs) != 0) {
            if (us_ok (e->wall) && us_ok (e->utime) && us_ok (e->stime)) {
                uint64_t w = to_us (e->wall);
                uint64_t u = to_us (e->utime);
                uint64_t s = to_us (e->stime);
                if (w != 0) {
                    f |= E_WALL;
                    p = put_varint (p, w);
                }
                if ((u | s) != 0) {
                    f |= E_CPU;
                    p = put_varint (p, u);
                    p = put_varint (p, s);
                }
            }
            else {
                f |= E_RAW;
                p = put_f64 (p, e->wall);
                p = put_f64 (p, e->utime);
                p = put_f64 (p, e->stime);
            }
        }
        if (e->maxrss_kb != prev.maxrss_kb) {
            f |= E_RSS;
            p = put_varint (p, zigzag64 ((uint64_t)e->maxrss_kb));
            prev.maxrss_kb = e->maxrss_kb;
        }
        *fp = (unsigned char)f;
        p = put_plain_after (p, e->plain_after, &prev);
    }
    return p;
}

/* The plain_after of entry i of a batch of starts or ends. */
static inline uint32_t entry_plain_after (const gr_jrec_t *rec, size_t i)
{
    return rec->type == GR_JREC_TASK_START ? rec->start.tasks[i].plain_after
                                           : rec->end.tasks[i].plain_after;
}

/* Encode a batch of task starts or ends.  A batch too large for one record
 * becomes several records of the same worker: each record stands alone on
 * replay, so the split changes nothing a reader can rely on.  Version 2
 * entries vary in size; the split counts them at their largest, so that
 * the buffer can be reserved up front and no record can outgrow the
 * limit. */
static int append_batch (gr_journal_t *j, const gr_jrec_t *rec, uint64_t implicit)
{
    bool is_start = rec->type == GR_JREC_TASK_START;
    bool v1 = j->version == 1;
    uint32_t worker = is_start ? rec->start.worker : rec->end.worker;
    uint32_t n = is_start ? rec->start.n : rec->end.n;
    size_t esize = is_start ? (v1 ? START_ENTRY_LEN : V2_START_MAX)
                            : (v1 ? END_ENTRY_LEN : V2_END_MAX);
    /* An entry with plain_after counts at its largest with them too. */
    size_t per_rec = (GR_JOURNAL_MAX_RECORD - BATCH_HDR_LEN)
                     / (esize + (implicit > 0 ? GR_JOURNAL_PLAIN_MAX : 0));
    size_t nrec = n == 0 ? 1 : (n + per_rec - 1) / per_rec;

    /* Reserve everything first, so a failure leaves the buffer as it was. */
    if (reserve (j, nrec * (FRAME_LEN + BATCH_HDR_LEN) + (size_t)n * esize + implicit) < 0)
        return -1;
    size_t done = 0;
    do {
        size_t k = n - done < per_rec ? n - done : per_rec;
        uint64_t logical = k;
        for (size_t i = 0; implicit > 0 && i < k; i++)
            logical += entry_plain_after (rec, done + i);
        unsigned char *p = begin_record (j, rec);
        p = put_u32 (p, worker);
        p = put_u32 (p, (uint32_t)logical);
        if (!v1 && k > 0 && is_start)
            p = put_starts_v2 (p, rec->start.tasks + done, k, j->version == 2);
        else if (!v1 && k > 0)
            p = put_ends_v2 (p, rec->end.tasks + done, k, j->version == 2);
        else if (v1) {
            for (size_t i = 0; i < k; i++) {
                if (is_start)
                    p = put_start (p, &rec->start.tasks[done + i]);
                else
                    p = put_end (p, &rec->end.tasks[done + i]);
            }
        }
        end_record (j, p);
        done += k;
    } while (done < n);
    j->pending += n + implicit;
    return 0;
}

int gr_journal_append (gr_journal_t *j, const gr_jrec_t *rec, gr_error_t *errp)
{
    unsigned char *p;
    size_t namelen = 0;

    if (!j || !rec) {
        errno = EINVAL;
        return gr_errprintf (errp, "journal append: no journal or record");
    }
    bool was_empty = j->len == 0;
    switch (rec->type) {
        case GR_JREC_TASK_START:
        case GR_JREC_TASK_END: {
            const void *tasks = rec->type == GR_JREC_TASK_START
                                    ? (const void *)rec->start.tasks
                                    : (const void *)rec->end.tasks;
            uint32_t n = rec->type == GR_JREC_TASK_START ? rec->start.n
                                                         : rec->end.n;
            if (n > 0 && !tasks) {
                errno = EINVAL;
                return gr_errprintf (errp, "journal append: a batch of %" PRIu32
                                     " tasks with no task array", n);
            }
            /* The entries that plain_after stands for: version 3 only. */
            uint64_t implicit = 0;
            uint32_t most = 0;
            for (uint32_t i = 0; i < n; i++) {
                uint32_t pa = entry_plain_after (rec, i);
                implicit += pa;
                most = pa > most ? pa : most;
            }
            if (most > (j->version >= 3 ? GR_JOURNAL_PLAIN_MAX : 0)) {
                errno = EINVAL;
                return gr_errprintf (errp, "journal append: %s entry stands for "
                                     "%" PRIu32 " more, where '%s' (format version "
                                     "%u) takes %u at most",
                                     rec->type == GR_JREC_TASK_END ? "an end" : "a start",
                                     most, j->path,
                                     j->version, j->version >= 3 ? GR_JOURNAL_PLAIN_MAX : 0);
            }
            if (append_batch (j, rec, implicit) < 0)
                return gr_errprintf (errp, "out of memory buffering journal "
                                     "records for '%s'", j->path);
            break;
        }
        case GR_JREC_WORKER:
            namelen = strnlen (rec->worker.host, sizeof (rec->worker.host));
            if (namelen > HOST_MAX) {
                errno = EINVAL;
                return gr_errprintf (errp, "journal append: the host name of "
                                     "worker %" PRIu32 " is not terminated",
                                     rec->worker.rank);
            }
            /* fall through */
        case GR_JREC_RUN_START:
        case GR_JREC_DRAIN:
        case GR_JREC_RUN_END:
        case GR_JREC_WORKER_LOST:
        case GR_JREC_QUARANTINE:
            if (rec->type == GR_JREC_QUARANTINE) {
                namelen = strnlen (rec->quarantine.name, sizeof (rec->quarantine.name));
                if (namelen > HOST_MAX) {
                    errno = EINVAL;
                    return gr_errprintf (errp, "journal append: the name of a "
                                         "quarantined domain is not terminated");
                }
                /* Version 1 has no such type, and its readers would take
                 * one for damage and drop every record after it.  The
                 * record is only a note for people; task state does not
                 * depend on it. */
                if (j->version == 1)
                    return 0;
            }
            if (reserve (j, FRAME_LEN + QUAR_MIN_LEN + HOST_MAX) < 0)
                return gr_errprintf (errp, "out of memory buffering journal "
                                     "records for '%s'", j->path);
            p = begin_record (j, rec);
            if (rec->type == GR_JREC_RUN_START) {
                p = put_u64 (p, rec->run_start.spec_hash);
                p = put_u32 (p, rec->run_start.incarnation);
                p = put_u32 (p, rec->run_start.nworkers);
            }
            else if (rec->type == GR_JREC_WORKER) {
                p = put_u32 (p, rec->worker.rank);
                p = put_u32 (p, rec->worker.cpus);
                p = put_u32 (p, rec->worker.gpus);
                p = put_u8 (p, (uint8_t)namelen);
                memcpy (p, rec->worker.host, namelen);
                p += namelen;
            }
            else if (rec->type == GR_JREC_DRAIN) {
                p = put_i32 (p, rec->drain.reason);
                p = put_f64 (p, rec->drain.deadline);
            }
            else if (rec->type == GR_JREC_RUN_END)
                p = put_i32 (p, rec->run_end.exit_code);
            else if (rec->type == GR_JREC_QUARANTINE) {
                p = put_u32 (p, rec->quarantine.level);
                p = put_u32 (p, rec->quarantine.on);
                p = put_u32 (p, rec->quarantine.failures);
                p = put_f64 (p, rec->quarantine.until);
                p = put_u8 (p, (uint8_t)namelen);
                memcpy (p, rec->quarantine.name, namelen);
                p += namelen;
            }
            else
                p = put_u32 (p, rec->lost.rank);
            end_record (j, p);
            j->pending++;
            break;
        default:
            errno = EINVAL;
            return gr_errprintf (errp, "journal append: unknown record type %d",
                                 (int)rec->type);
    }
    if (was_empty)
        j->oldest = gr_now ();
    return 0;
}

/* Write the buffer at the end of the committed data and make it durable.
 * On failure the file is cut back to what was committed, so a torn batch
 * never sits in front of records a retry writes, and the buffer stays for
 * that retry.  A failed fdatasync is handled the same way: after one, the
 * kernel may have dropped the dirty pages, so the data must be written
 * again rather than synced again. */
static int write_out (gr_journal_t *j, const unsigned char *data, size_t len)
{
    double t0 = gr_now ();
    int rc = 0;
    /* gr_chaos_io: a disk error injected by chaos mode (chaos.h). */
    if (gr_chaos_io (GR_CHAOS_IO_JOURNAL) < 0
        || gr_pwrite_all (j->fd, data, len, (off_t)j->file_len) < 0
        || (!j->opts.nosync && fdatasync (j->fd) < 0)) {
        int saved = errno;
        if (ftruncate (j->fd, (off_t)j->file_len) < 0) {
            /* Nothing more to do: the retry overwrites the torn bytes
             * anyway, since it writes at file_len, not at the end. */
        }
        errno = saved;
        rc = -1;
    }
    else {
        /* Under nosync this counts the commits that would have synced,
         * which is what a benchmark of the write path wants to see. */
        j->stats.syncs++;
        j->file_len += len;
    }
    j->stats.sync_seconds += gr_now () - t0;
    return rc;
}

static int write_error (gr_journal_t *j, int err, size_t len, gr_error_t *errp)
{
    errno = err;
    return gr_errprintf (errp, "cannot write journal '%s': %s; %zu bytes "
                         "of records are not durable and stay buffered "
                         "for a retry; the journal up to them is intact, "
                         "so the run can be resumed from it",
                         j->path, strerror (err), len);
}

static void *writer_main (void *arg)
{
    gr_journal_t *j = arg;
    pthread_mutex_lock (&j->mu);
    for (;;) {
        while (!j->busy && !j->stop)
            pthread_cond_wait (&j->cv, &j->mu);
        if (!j->busy)
            break;
        unsigned char *data = j->wbuf;
        size_t len = j->wlen;
        /* Only this thread touches the file while busy. */
        pthread_mutex_unlock (&j->mu);
        double t0 = gr_now ();
        int rc = gr_chaos_io (GR_CHAOS_IO_JOURNAL);
        if (rc == 0)
            rc = gr_pwrite_all (j->fd, data, len, (off_t)j->file_len);
        if (rc == 0 && !j->opts.nosync)
            rc = fdatasync (j->fd);
        int err = rc < 0 ? errno : 0;
        if (rc < 0 && ftruncate (j->fd, (off_t)j->file_len) < 0) {
            /* As in write_out: a retry overwrites the torn bytes. */
        }
        pthread_mutex_lock (&j->mu);
        j->stats.sync_seconds += gr_now () - t0;
        if (err == 0) {
            j->stats.syncs++;
            j->file_len += len;
            j->wlen = 0;
        }
        j->werr = err;
        j->busy = false;
        pthread_cond_broadcast (&j->cv);
    }
    pthread_mutex_unlock (&j->mu);
    return NULL;
}

/* Background mode: wait until the writer is idle.  A failed background
 * commit is retried here, in this thread; its bytes come before buf's. */
static int writer_idle (gr_journal_t *j, gr_error_t *errp)
{
    if (!j->thread_up)
        return 0;
    pthread_mutex_lock (&j->mu);
    while (j->busy)
        pthread_cond_wait (&j->cv, &j->mu);
    pthread_mutex_unlock (&j->mu);
    if (j->wlen > 0) {
        if (write_out (j, j->wbuf, j->wlen) < 0)
            return write_error (j, errno, j->wlen + j->len, errp);
        j->wlen = 0;
        j->werr = 0;
    }
    return 0;
}

/* Write the buffer at the end of the committed data and make it durable.
 * On failure the file is cut back to what was committed, so a torn batch
 * never sits in front of records a retry writes, and the buffer stays for
 * that retry.  A failed fdatasync is handled the same way: after one, the
 * kernel may have dropped the dirty pages, so the data must be written
 * again rather than synced again. */
static int commit (gr_journal_t *j, gr_error_t *errp)
{
    if (writer_idle (j, errp) < 0)
        return -1;
    if (j->len == 0)
        return 0;
    if (write_out (j, j->buf, j->len) < 0)
        return write_error (j, errno, j->len, errp);
    j->len = 0;
    j->pending = 0;
    j->oldest = 0;
    return 0;
}

/* Background mode: hand buf to the writer thread and take its empty
 * buffer in exchange.  Returns 1 if handed over, 0 if the writer is busy. */
static int commit_background (gr_journal_t *j, gr_error_t *errp)
{
    if (!j->thread_up) {
        if (pthread_mutex_init (&j->mu, NULL) != 0 || pthread_cond_init (&j->cv, NULL) != 0
            || pthread_create (&j->thread, NULL, writer_main, j) != 0) {
            /* No thread: commit in this one. */
            j->opts.background = false;
            return commit (j, errp) < 0 ? -1 : 1;
        }
        j->thread_up = true;
    }
    pthread_mutex_lock (&j->mu);
    bool busy = j->busy;
    int werr = j->werr;
    pthread_mutex_unlock (&j->mu);
    if (busy && j->len < GR_JOURNAL_MAX_PENDING)
        return 0;
    if (busy || werr || j->wlen > 0) {
        /* Too much is waiting for a busy writer: wait for it.  Or the last
         * background commit failed: retry it here, reporting. */
        if (writer_idle (j, errp) < 0)
            return -1;
    }
    unsigned char *b = j->wbuf;
    size_t c = j->wcap;
    pthread_mutex_lock (&j->mu);
    j->wbuf = j->buf;
    j->wcap = j->cap;
    j->wlen = j->len;
    j->busy = true;
    pthread_cond_signal (&j->cv);
    pthread_mutex_unlock (&j->mu);
    j->buf = b;
    j->cap = c;
    j->len = 0;
    j->pending = 0;
    j->oldest = 0;
    return 1;
}

int gr_journal_maybe_sync (gr_journal_t *j, double now, gr_error_t *errp)
{
    if (!j || j->len == 0)
        return 0;
    if (now - j->oldest < j->opts.commit_interval
        && j->pending < j->opts.commit_records)
        return 0;
    if (j->opts.background)
        return commit_background (j, errp);
    if (commit (j, errp) < 0)
        return -1;
    return 1;
}

int gr_journal_sync (gr_journal_t *j, gr_error_t *errp)
{
    if (!j) {
        errno = EINVAL;
        return gr_errprintf (errp, "journal sync: no journal");
    }
    return commit (j, errp);
}

unsigned gr_journal_version (const gr_journal_t *j)
{
    return j->version;
}

double gr_journal_due (const gr_journal_t *j)
{
    if (!j || j->len == 0)
        return 0;
    return j->oldest + j->opts.commit_interval;
}

void gr_journal_get_stats (const gr_journal_t *j, gr_journal_stats_t *st)
{
    if (!j) {
        memset (st, 0, sizeof (*st));
        return;
    }
    if (j->thread_up)
        pthread_mutex_lock ((pthread_mutex_t *)&j->mu);
    *st = j->stats;
    if (j->thread_up)
        pthread_mutex_unlock ((pthread_mutex_t *)&j->mu);
}

/* The first bytes of a journal: the magic, whose last byte is the format
 * version, so that a future version is named as such rather than taken
 * for a foreign file.  Versions 1 and 2 are read; *version says which. */
static int check_header (const char *path, const unsigned char *hdr,
                         size_t n, unsigned *version, gr_error_t *errp)
{
    errno = EINVAL;
    if (n < GR_JOURNAL_HDR_LEN
        || memcmp (hdr, GR_JOURNAL_MAGIC, GR_JOURNAL_HDR_LEN - 1) != 0)
        return gr_errprintf (errp, "'%s' is not a gridrun journal", path);
    unsigned v = hdr[GR_JOURNAL_HDR_LEN - 1];
    if (v < 1 || v > GR_JOURNAL_VERSION)
        return gr_errprintf (errp, "'%s' is a gridrun journal of format "
                             "version %u, which this gridrun cannot read",
                             path, v);
    *version = v;
    return 0;
}

static void journal_free (gr_journal_t *j)
{
    int saved = errno;
    if (j->thread_up) {
        pthread_mutex_lock (&j->mu);
        j->stop = true;
        pthread_cond_broadcast (&j->cv);
        pthread_mutex_unlock (&j->mu);
        pthread_join (j->thread, NULL);
        pthread_cond_destroy (&j->cv);
        pthread_mutex_destroy (&j->mu);
    }
    if (j->fd >= 0)
        close (j->fd);
    free (j->wbuf);
    free (j->buf);
    free (j->path);
    free (j);
    errno = saved;
}

/* fd is what open() gave for path: check that it opened a regular file
 * and stat it.  Errors name the path. */
static int check_opened (int fd, const char *path, struct stat *st, gr_error_t *errp)
{
    if (fd < 0)
        return gr_errprintf (errp, "cannot open journal '%s': %s", path,
                             strerror (errno));
    if (fstat (fd, st) < 0)
        return gr_errprintf (errp, "cannot stat journal '%s': %s", path,
                             strerror (errno));
    if (!S_ISREG (st->st_mode)) {
        errno = EINVAL;
        return gr_errprintf (errp, "journal '%s' is not a regular file", path);
    }
    return 0;
}

gr_journal_t *gr_journal_open (const char *path, uint64_t valid_len,
                               const gr_journal_opts_t *opts, gr_error_t *errp)
{
    gr_journal_t *j = NULL;
    struct stat st;
    unsigned char hdr[GR_JOURNAL_HDR_LEN];

    if (!path) {
        errno = EINVAL;
        gr_errprintf (errp, "journal open: no path");
        return NULL;
    }
    if (!(j = calloc (1, sizeof (*j))) || !(j->path = strdup (path))) {
        free (j);
        errno = ENOMEM;
        gr_errprintf (errp, "out of memory opening journal '%s'", path);
        return NULL;
    }
    j->fd = -1;
    if (opts)
        j->opts = *opts;
    else
        gr_journal_opts_init (&j->opts);

    j->fd = open (path, O_RDWR | O_CLOEXEC);
    if (j->fd < 0 && errno == ENOENT) {
        /* Create the file whole, header included, by rename: a crash while
         * creating leaves no journal rather than one without a header,
         * which resume would refuse. */
        if (gr_write_file_atomic (path, GR_JOURNAL_MAGIC, GR_JOURNAL_HDR_LEN,
                                  0600, errp) < 0)
            goto error;
        j->fd = open (path, O_RDWR | O_CLOEXEC);
    }
    if (check_opened (j->fd, path, &st, errp) < 0)
        goto error;
    ssize_t n;
    do
        n = pread (j->fd, hdr, sizeof (hdr), 0);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        gr_errprintf (errp, "cannot read journal '%s': %s", path,
                      strerror (errno));
        goto error;
    }
    /* An existing journal is appended to in its own version, so that a
     * run begun by an older gridrun stays readable by it. */
    if (check_header (path, hdr, (size_t)n, &j->version, errp) < 0)
        goto error;
    j->file_len = (uint64_t)st.st_size;
    if (valid_len > 0) {
        if (valid_len < GR_JOURNAL_HDR_LEN || valid_len > j->file_len) {
            errno = EINVAL;
            gr_errprintf (errp, "journal '%s' is %" PRIu64 " bytes long, but "
                          "%" PRIu64 " bytes were to be kept; replay it "
                          "again before appending", path, j->file_len,
                          valid_len);
            goto error;
        }
        if (valid_len < j->file_len) {
            if (ftruncate (j->fd, (off_t)valid_len) < 0 || fdatasync (j->fd) < 0) {
                gr_errprintf (errp, "cannot cut the damaged tail off journal "
                              "'%s': %s", path, strerror (errno));
                goto error;
            }
            j->file_len = valid_len;
        }
    }
    return j;
error:
    journal_free (j);
    return NULL;
}

int gr_journal_close (gr_journal_t *j, gr_error_t *errp)
{
    int rc = 0;
    if (!j)
        return 0;
    if (commit (j, errp) < 0)
        rc = gr_errprintf (errp, "cannot write journal '%s': %s; the records "
                           "since its last commit are lost, but the journal "
                           "up to them is intact, so the run can be resumed "
                           "from it", j->path, strerror (errno));
    if (close (j->fd) < 0 && rc == 0)
        rc = gr_errprintf (errp, "cannot close journal '%s': %s", j->path,
                           strerror (errno));
    j->fd = -1;
    journal_free (j);
    return rc;
}

/* Replay. */

typedef struct {
    int fd;
    unsigned char *buf;
    size_t cap;
    size_t pos;             /* next unparsed byte in buf */
    size_t end;             /* end of the bytes read into buf */
    uint64_t buf_off;       /* file offset of buf[0] */
    uint64_t file_len;      /* bytes to read, from fstat */
    uint64_t read_off;      /* file offset of buf[end] */
    unsigned version;       /* the file's format version */
    void *tasks;            /* decoded batch, reused */
    size_t tasks_cap;       /* bytes */
} reader_t;

/* Make at least need bytes available at pos, reading more of the file if
 * there is more.  Returns the bytes available, which is less than need only
 * at the end of the file; -1 on a read error. */
static ssize_t fill (reader_t *r, size_t need)
{
    if (r->end - r->pos >= need)
        return (ssize_t)need;
    if (r->pos > 0) {
        memmove (r->buf, r->buf + r->pos, r->end - r->pos);
        r->buf_off += r->pos;
        r->end -= r->pos;
        r->pos = 0;
    }
    while (r->end < r->cap && r->read_off < r->file_len) {
        uint64_t left = r->file_len - r->read_off;
        size_t want = r->cap - r->end;
        if (want > left)
            want = (size_t)left;
        ssize_t n = read (r->fd, r->buf + r->end, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (n == 0) {
            /* The file shrank under us: what was read is all there is. */
            r->file_len = r->read_off;
            break;
        }
        r->end += (size_t)n;
        r->read_off += (uint64_t)n;
        if (r->end - r->pos >= need)
            break;
    }
    return (ssize_t)(r->end - r->pos < need ? r->end - r->pos : need);
}

/* Version 2 entries.  Each decoder reads one entry from *pp, never past
 * end, and advances *pp only when it returns DEC_OK.  DEC_SHORT: the bytes
 * end inside the entry; DEC_BAD (with *why): no writer makes this entry.
 * After a failure *prev is undefined: the caller stops there. */

/* Read a varint (or a u32 varint) into v, or return from the decoder. */
#define GET_VARINT(v)                                                          \
    do {                                                                       \
        int rc_ = get_varint (&p, end, &(v));                                  \
        if (rc_ != DEC_OK)                                                     \
            return bad_number (rc_, why);                                      \
    } while (0)
#define GET_VARINT32(v)                                                        \
    do {                                                                       \
        int rc_ = get_varint32 (&p, end, &(v));                                \
        if (rc_ != DEC_OK)                                                     \
            return bad_number (rc_, why);                                      \
    } while (0)

static int bad_number (int rc, const char **why)
{
    if (rc == DEC_BAD)
        *why = "a malformed or out-of-range varint in a task entry";
    return rc;
}

/* The fields that start and end entries share: flags, key, index, def,
 * attempt.  *flags gets the flag byte. */
static int get_common_v2 (const unsigned char **pp, const unsigned char *end,
                          bool keyed, unsigned allowed, v2_prev_t *prev,
                          unsigned *flags, uint64_t *key, uint64_t *index,
                          uint32_t *def, uint32_t *attempt, const char **why)
{
    const unsigned char *p = *pp;
    if (end - p < (keyed ? V2_ENTRY_MIN : V3_ENTRY_MIN))
        return DEC_SHORT;
    unsigned f = p[0];
    if (f & ~allowed) {
        *why = "unknown flag bits in a task entry";
        return DEC_BAD;
    }
    if (keyed) {
        *key = get_u64 (p + 1);
        p += V2_ENTRY_MIN;
    }
    else {
        *key = 0;
        p += V3_ENTRY_MIN;
    }
    uint64_t d = 0;
    if (f & E_INDEX)
        GET_VARINT (d);
    *index = prev->index + 1 + unzigzag64 (d);
    *def = prev->def;
    if (f & E_DEF)
        GET_VARINT32 (*def);
    *attempt = 1;
    if (f & E_ATTEMPT)
        GET_VARINT32 (*attempt);
    prev->index = *index;
    prev->def = *def;
    *flags = f;
    *pp = p;
    return DEC_OK;
}

static int get_start_v2 (const unsigned char **pp, const unsigned char *end,
                         bool keyed, v2_prev_t *prev, gr_jstart_t *t,
                         const char **why)
{
    unsigned f;
    t->plain_after = t->pad1 = 0;
    return get_common_v2 (pp, end, keyed, E_START_BITS, prev, &f, &t->key,
                          &t->index, &t->def, &t->attempt, why);
}

static int get_end_v2 (const unsigned char **pp, const unsigned char *end,
                       bool keyed, v2_prev_t *prev, gr_jend_t *t, const char **why)
{
    unsigned f;
    const unsigned char *p = *pp;
    int rc = get_common_v2 (&p, end, keyed, 0xff, prev, &f, &t->key, &t->index,
                            &t->def, &t->attempt, why);
    if (rc != DEC_OK)
        return rc;
    t->exit_code = 0;
    t->signal = 0;
    t->flags = 0;
    t->outcome = GR_JOUT_DONE;
    t->pad1 = t->plain_after = 0;
    if (f & E_STATUS) {
        uint32_t ec, sig;
        GET_VARINT32 (ec);
        GET_VARINT32 (sig);
        GET_VARINT32 (t->flags);
        GET_VARINT32 (t->outcome);
        t->exit_code = unzigzag32 (ec);
        t->signal = unzigzag32 (sig);
        /* The runtime indexes by outcome; only known ones pass. */
        if (t->outcome > GR_JOUT_REQUEUED) {
            *why = "an unknown task outcome";
            return DEC_BAD;
        }
    }
    if (f & E_RAW) {
        if (f & (E_WALL | E_CPU)) {
            *why = "a task entry with its times both exact and in microseconds";
            return DEC_BAD;
        }
        if (end - p < 24)
            return DEC_SHORT;
        t->wall = get_f64 (p);
        t->utime = get_f64 (p + 8);
        t->stime = get_f64 (p + 16);
        p += 24;
    }
    else {
        uint64_t w = 0, u = 0, s = 0;
        if (f & E_WALL)
            GET_VARINT (w);
        if (f & E_CPU) {
            GET_VARINT (u);
            GET_VARINT (s);
        }
        t->wall = (double)w / 1e6;
        t->utime = (double)u / 1e6;
        t->stime = (double)s / 1e6;
    }
    t->maxrss_kb = prev->maxrss_kb;
    if (f & E_RSS) {
        uint64_t z;
        GET_VARINT (z);
        t->maxrss_kb = (int64_t)unzigzag64 (z);
    }
    prev->maxrss_kb = t->maxrss_kb;
    *pp = p;
    return DEC_OK;
}

#undef GET_VARINT
#undef GET_VARINT32

/* Version 2 batches: the entries that are visible must parse, and the
 * length must leave room for the rest of them, at their smallest and at
 * their largest.  A batch whose entries all end before the file does is
 * no torn write: its real end is known, and it is not len. */
static bool batch_prefix_agrees_v2 (unsigned version, const unsigned char *p,
                                    size_t have, uint32_t len)
{
    bool is_start = p[0] == GR_JREC_TASK_START;
    bool keyed = version == 2;
    uint64_t emin = keyed ? V2_ENTRY_MIN : V3_ENTRY_MIN;
    uint64_t emax = is_start ? V2_START_MAX : V2_END_MAX;
    if (len < BATCH_HDR_LEN)
        return false;
    if (have < BATCH_HDR_LEN)
        return true;
    uint32_t n = get_u32 (p + COMMON_LEN + 4);
    const unsigned char *q = p + BATCH_HDR_LEN;
    const unsigned char *end = p + have;
    v2_prev_t prev = V2_PREV_INIT;
    const char *why;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t at = (uint64_t)(q - p);
        if (len < at + (uint64_t)(n - i) * emin
            || len > at + (uint64_t)(n - i) * emax)
            return false;
        gr_jstart_t ts;
        gr_jend_t te;
        int rc = is_start ? get_start_v2 (&q, end, keyed, &prev, &ts, &why)
                          : get_end_v2 (&q, end, keyed, &prev, &te, &why);
        if (rc == DEC_SHORT)
            return true;
        if (rc == DEC_BAD)
            return false;
    }
    return false;
}

/* Whether the visible start of a record that runs past the end of the file
 * agrees with its length.  A torn write leaves a prefix of a real record,
 * which does; a length that was damaged usually no longer matches the type
 * and count that follow it, and is then reported as a bad length, not as a
 * harmless torn tail. */
static bool prefix_agrees (unsigned version, const unsigned char *p, size_t have,
                           uint32_t len)
{
    if (have < 1)
        return true;
    if (version >= 2 && (p[0] == GR_JREC_TASK_START || p[0] == GR_JREC_TASK_END))
        return batch_prefix_agrees_v2 (version, p, have, len);
    switch (p[0]) {
        case GR_JREC_RUN_START:
            return len == RUN_START_LEN;
        case GR_JREC_DRAIN:
            return len == DRAIN_LEN;
        case GR_JREC_RUN_END:
            return len == RUN_END_LEN;
        case GR_JREC_WORKER_LOST:
            return len == LOST_LEN;
        case GR_JREC_WORKER:
            if (len < WORKER_MIN_LEN || len > WORKER_MIN_LEN + HOST_MAX)
                return false;
            return have < WORKER_MIN_LEN
                   || len == WORKER_MIN_LEN + (uint32_t)p[WORKER_MIN_LEN - 1];
        case GR_JREC_QUARANTINE:
            if (version < 2 || len < QUAR_MIN_LEN || len > QUAR_MIN_LEN + HOST_MAX)
                return false;
            return have < QUAR_MIN_LEN
                   || len == QUAR_MIN_LEN + (uint32_t)p[QUAR_MIN_LEN - 1];
        case GR_JREC_TASK_START:
        case GR_JREC_TASK_END: {
            uint64_t esize = p[0] == GR_JREC_TASK_START ? START_ENTRY_LEN
                                                        : END_ENTRY_LEN;
            if (len < BATCH_HDR_LEN || (len - BATCH_HDR_LEN) % esize != 0)
                return false;
            return have < BATCH_HDR_LEN
                   || len == BATCH_HDR_LEN + esize * get_u32 (p + COMMON_LEN + 4);
        }
        default:
            return false;
    }
}

/* The entries of a version 2 batch, from q to end, into tasks (room for
 * n).  Every byte must belong to an entry. */
static int decode_batch_v2 (const unsigned char *q, const unsigned char *end,
                            bool keyed, bool is_start, uint32_t worker, uint32_t n,
                            void *tasks, gr_jrec_t *rec, const char **why)
{
    v2_prev_t prev = V2_PREV_INIT;
    for (uint32_t i = 0; i < n; i++) {
        int rc = is_start
                     ? get_start_v2 (&q, end, keyed, &prev, (gr_jstart_t *)tasks + i, why)
                     : get_end_v2 (&q, end, keyed, &prev, (gr_jend_t *)tasks + i, why);
        if (rc == DEC_SHORT)
            *why = "a task entry that runs past the end of its record";
        if (rc != DEC_OK)
            return -1;
    }
    if (q != end) {
        *why = "bytes after the last entry of a batch";
        return -1;
    }
    if (is_start) {
        rec->start.worker = worker;
        rec->start.n = n;
        rec->start.tasks = tasks;
        rec->start.keyless = !keyed;
    }
    else {
        rec->end.worker = worker;
        rec->end.n = n;
        rec->end.tasks = tasks;
        rec->end.keyless = !keyed;
    }
    return 0;
}

/* Decode one payload whose CRC matched.  Returns 0, or -1 with *why set
 * when it does not parse. */
static int decode (reader_t *r, const unsigned char *p, uint32_t len,
                   gr_jrec_t *rec, const char **why)
{
    const unsigned char *q = p + COMMON_LEN;
    uint32_t rest = len - COMMON_LEN;

    memset (rec, 0, sizeof (*rec));
    rec->type = (gr_jrec_type_t)p[0];
    rec->time = get_f64 (p + 1);
    switch (p[0]) {
        case GR_JREC_RUN_START:
            if (len != RUN_START_LEN)
                goto badsize;
            rec->run_start.spec_hash = get_u64 (q);
            rec->run_start.incarnation = get_u32 (q + 8);
            rec->run_start.nworkers = get_u32 (q + 12);
            return 0;
        case GR_JREC_WORKER: {
            if (len < WORKER_MIN_LEN)
                goto badsize;
            uint32_t hostlen = q[12];
            if (hostlen > HOST_MAX) {
                *why = "a host name longer than 63 bytes";
                return -1;
            }
            if (len != WORKER_MIN_LEN + hostlen)
                goto badsize;
            if (memchr (q + 13, '\0', hostlen)) {
                *why = "a NUL byte inside a host name";
                return -1;
            }
            rec->worker.rank = get_u32 (q);
            rec->worker.cpus = get_u32 (q + 4);
            rec->worker.gpus = get_u32 (q + 8);
            memcpy (rec->worker.host, q + 13, hostlen);
            rec->worker.host[hostlen] = '\0';
            return 0;
        }
        case GR_JREC_TASK_START:
        case GR_JREC_TASK_END: {
            bool is_start = p[0] == GR_JREC_TASK_START;
            size_t esize = is_start ? START_ENTRY_LEN : END_ENTRY_LEN;
            size_t tsize = is_start ? sizeof (gr_jstart_t) : sizeof (gr_jend_t);
            if (rest < 8)
                goto badsize;
            uint32_t worker = get_u32 (q);
            uint32_t n = get_u32 (q + 4);
            /* 64-bit products: n is as large as the file wants.  Checked
             * before the allocation, which n bounds. */
            if (r->version == 1 && (uint64_t)rest - 8 != (uint64_t)n * esize)
                goto badsize;
            if (r->version >= 2
                && (uint64_t)rest - 8
                       < (uint64_t)n * (r->version == 2 ? V2_ENTRY_MIN : V3_ENTRY_MIN)) {
                *why = "more entries than the record can hold";
                return -1;
            }
            q += 8;
            if ((size_t)n * tsize > r->tasks_cap) {
                void *nt = realloc (r->tasks, (size_t)n * tsize);
                if (!nt)
                    return -2;
                r->tasks = nt;
                r->tasks_cap = (size_t)n * tsize;
            }
            if (r->version >= 2)
                return decode_batch_v2 (q, p + len, r->version == 2, is_start, worker,
                                        n, r->tasks, rec, why);
            if (is_start) {
                gr_jstart_t *t = r->tasks;
                for (uint32_t i = 0; i < n; i++, q += START_ENTRY_LEN) {
                    t[i].key = get_u64 (q);
                    t[i].index = get_u64 (q + 8);
                    t[i].def = get_u32 (q + 16);
                    t[i].attempt = get_u32 (q + 20);
                    t[i].plain_after = t[i].pad1 = 0;
                }
                rec->start.worker = worker;
                rec->start.n = n;
                rec->start.tasks = t;
            }
            else {
                gr_jend_t *t = r->tasks;
                for (uint32_t i = 0; i < n; i++, q += END_ENTRY_LEN) {
                    t[i].key = get_u64 (q);
                    t[i].index = get_u64 (q + 8);
                    t[i].def = get_u32 (q + 16);
                    t[i].attempt = get_u32 (q + 20);
                    t[i].exit_code = get_i32 (q + 24);
                    t[i].signal = get_i32 (q + 28);
                    t[i].flags = get_u32 (q + 32);
                    t[i].outcome = get_u32 (q + 36);
                    t[i].wall = get_f64 (q + 40);
                    t[i].utime = get_f64 (q + 48);
                    t[i].stime = get_f64 (q + 56);
                    t[i].maxrss_kb = get_i64 (q + 64);
                    t[i].pad1 = t[i].plain_after = 0;
                    /* The runtime indexes by outcome; only known ones pass. */
                    if (t[i].outcome > GR_JOUT_REQUEUED) {
                        *why = "an unknown task outcome";
                        return -1;
                    }
                }
                rec->end.worker = worker;
                rec->end.n = n;
                rec->end.tasks = t;
            }
            return 0;
        }
        case GR_JREC_DRAIN:
            if (len != DRAIN_LEN)
                goto badsize;
            rec->drain.reason = get_i32 (q);
            rec->drain.deadline = get_f64 (q + 4);
            return 0;
        case GR_JREC_RUN_END:
            if (len != RUN_END_LEN)
                goto badsize;
            rec->run_end.exit_code = get_i32 (q);
            return 0;
        case GR_JREC_WORKER_LOST:
            if (len != LOST_LEN)
                goto badsize;
            rec->lost.rank = get_u32 (q);
            return 0;
        case GR_JREC_QUARANTINE: {
            if (r->version < 2) {
                *why = "an unknown record type";
                return -1;
            }
            if (len < QUAR_MIN_LEN)
                goto badsize;
            uint32_t namelen = q[20];
            if (namelen > HOST_MAX) {
                *why = "a domain name longer than 63 bytes";
                return -1;
            }
            if (len != QUAR_MIN_LEN + namelen)
                goto badsize;
            if (memchr (q + 21, '\0', namelen)) {
                *why = "a NUL byte inside a domain name";
                return -1;
            }
            rec->quarantine.level = get_u32 (q);
            rec->quarantine.on = get_u32 (q + 4);
            rec->quarantine.failures = get_u32 (q + 8);
            rec->quarantine.until = get_f64 (q + 12);
            memcpy (rec->quarantine.name, q + 21, namelen);
            rec->quarantine.name[namelen] = '\0';
            return 0;
        }
        default:
            *why = "an unknown record type";
            return -1;
    }
badsize:
    *why = "a size that does not fit its record type";
    return -1;
}

static void set_damage (gr_journal_info_t *info, const char *path,
                        gr_jdamage_t kind, uint64_t off, const char *what)
{
    info->damage = kind;
    info->damage_offset = off;
    snprintf (info->damage_text, sizeof (info->damage_text),
              "journal '%s' is damaged at byte %" PRIu64 " (%s); the %" PRIu64
              " records before it are kept", path, off, what, info->records);
}

int gr_journal_replay (const char *path, gr_journal_rec_f fn, void *arg,
                       gr_journal_info_t *info, gr_error_t *errp)
{
    reader_t r = { .fd = -1 };
    gr_journal_info_t local;
    struct stat st;
    char what[128];

    if (!info)
        info = &local;
    memset (info, 0, sizeof (*info));
    if (!path) {
        errno = EINVAL;
        return gr_errprintf (errp, "journal replay: no path");
    }
    r.fd = open (path, O_RDONLY | O_CLOEXEC);
    if (check_opened (r.fd, path, &st, errp) < 0) {
        if (r.fd < 0)
            return -1;
        goto error;
    }
    r.file_len = (uint64_t)st.st_size;
    r.cap = r.file_len < READ_CHUNK ? (size_t)r.file_len + 1 : READ_CHUNK;
    if (!(r.buf = malloc (r.cap))) {
        gr_errprintf (errp, "out of memory replaying journal '%s'", path);
        goto error;
    }
    (void)posix_fadvise (r.fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    ssize_t have = fill (&r, GR_JOURNAL_HDR_LEN);
    if (have < 0)
        goto readerr;
    if (check_header (path, r.buf, (size_t)have, &r.version, errp) < 0)
        goto error;
    info->version = r.version;
    r.pos = GR_JOURNAL_HDR_LEN;
    info->valid_len = GR_JOURNAL_HDR_LEN;

    for (;;) {
        uint64_t off = r.buf_off + r.pos;
        if ((have = fill (&r, FRAME_LEN)) < 0)
            goto readerr;
        if (have == 0)
            break;
        if ((size_t)have < FRAME_LEN) {
            set_damage (info, path, GR_JDAMAGE_TORN, off,
                        "the file ends inside a record's frame: a torn write");
            break;
        }
        uint32_t len = get_u32 (r.buf + r.pos);
        uint32_t crc = get_u32 (r.buf + r.pos + 4);
        if (len < COMMON_LEN || len > GR_JOURNAL_MAX_RECORD) {
            snprintf (what, sizeof (what), "an impossible record length of "
                      "%" PRIu32 " bytes", len);
            set_damage (info, path, GR_JDAMAGE_LENGTH, off, what);
            break;
        }
        if ((have = fill (&r, FRAME_LEN + (size_t)len)) < 0)
            goto readerr;
        const unsigned char *p = r.buf + r.pos + FRAME_LEN;
        if ((size_t)have < FRAME_LEN + len) {
            if (prefix_agrees (r.version, p, (size_t)have - FRAME_LEN, len))
                set_damage (info, path, GR_JDAMAGE_TORN, off,
                            "a record that runs past the end of the file: "
                            "a torn write");
            else {
                snprintf (what, sizeof (what), "a record length of %" PRIu32
                          " bytes that does not fit its contents", len);
                set_damage (info, path, GR_JDAMAGE_LENGTH, off, what);
            }
            break;
        }
        if (gr_crc32c (0, p, len) != crc) {
            set_damage (info, path, GR_JDAMAGE_CRC, off,
                        "a record whose CRC does not match its contents");
            break;
        }
        gr_jrec_t rec;
        const char *why = NULL;
        int rc = decode (&r, p, len, &rec, &why);
        if (rc == -2) {
            gr_errprintf (errp, "out of memory replaying journal '%s'", path);
            goto error;
        }
        if (rc < 0) {
            snprintf (what, sizeof (what), "a record that does not parse: %s",
                      why);
            set_damage (info, path, GR_JDAMAGE_FORMAT, off, what);
            break;
        }
        if (fn) {
            errno = 0;
            if (fn (&rec, arg) < 0) {
                if (errno == 0)
                    errno = ECANCELED;
                gr_errprintf (errp, "replay of journal '%s' was stopped at "
                              "byte %" PRIu64 " by its reader", path, off);
                goto error;
            }
        }
        r.pos += FRAME_LEN + len;
        info->records++;
        info->valid_len = off + FRAME_LEN + len;
    }
    info->file_len = r.file_len;
    close (r.fd);
    free (r.buf);
    free (r.tasks);
    return 0;
readerr:
    gr_errprintf (errp, "cannot read journal '%s': %s", path, strerror (errno));
error:;
    int saved = errno;
    info->file_len = r.file_len;
    close (r.fd);
    free (r.buf);
    free (r.tasks);
    errno = saved;
    return -1;
}
