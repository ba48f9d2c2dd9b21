/* The run journal: an append-only file of CRC-framed records that lets a
 * killed run resume with no completed task lost or counted twice.
 *
 * File layout (all integers little-endian; doc/journal-format.md has
 * every byte):
 *
 *   header   8 bytes  "GRJNL\0\0" + a version byte: 1, 2 or 3
 *   record*  u32 len | u32 crc | payload[len]
 *
 * len counts the payload only; crc is gr_crc32c over the payload.  The
 * payload starts with a u8 record type and a f64 wall-clock time; the rest
 * depends on the type (see gr_jrec_t).  Task records come in batches (one
 * record holds the starts of one ASSIGN message, or the ends of one READY
 * message), which keeps the CRC and write cost per task low.
 *
 * Version 2 differs from version 1 in
 * the task entries, and has one more record type, QUARANTINE.  Version 1
 * stores every field of every entry at a fixed size (24 bytes a start, 72
 * an end).  Version 2 stores a flag byte, the key (8 bytes), and then only
 * the fields that differ from the usual: index when it is not the
 * previous one's + 1, def when it changes, attempt when it is not 1, exit
 * code, signal, flags and outcome when any is not 0, durations when not 0,
 * maxrss_kb when it changes; numbers as LEB128 varints, signed ones
 * zigzagged.  A no-op task costs 9 bytes to start and 9 to end.
 *
 * Version 3 (what new journals are written in) is version 2 without the
 * key in task entries: a no-op task costs 1 byte to start and 1 to end.
 * Every task entry the runtime writes names a task of the spec it runs,
 * so the key is the one that spec gives the task at (def, index); the
 * spec of each incarnation is the one whose hash its RUN_START holds, and
 * the run directory keeps it (gr_rundir_replay fills the keys in).  Replay
 * delivers such entries with key 0 and .keyless set.  The journal is the
 * runtime's bulkiest write at full dispatch rate, and the key was 16 of
 * a no-op task's 18 bytes.
 *
 * Replay returns every field exactly as appended, except that in versions
 * 2 and 3 wall, utime and stime are kept to 1 microsecond: when all three
 * of an entry's lie from 0 up to 9e9 seconds, they are stored as whole
 * microseconds, rounded to the nearest (halves up).  Otherwise (NaN,
 * infinities, negative values, -0.0 included, or longer times) all three
 * are stored bit for bit.
 *
 * Replay reads all three versions.  gr_journal_open creates version 3, and
 * appends to an existing journal in that journal's own version, so a run
 * begun by an older gridrun stays readable by it.
 *
 * Writing is group commit: records are appended to a memory buffer and
 * written with one write() and one fdatasync() when commit_interval has
 * passed since the oldest uncommitted record, or commit_records are
 * pending, or gr_journal_sync() is called.  A record is durable only after
 * the sync that covers it.
 *
 * Replay reads records in order and stops at the first damaged one: a
 * short tail (a torn write), a length that runs past the end, an
 * impossible length, a CRC mismatch, or a payload that does not parse
 * (in versions 2 and 3 that includes a varint that is cut off, longer than 10
 * bytes or out of range for its field).  Everything before the damage is
 * delivered; the damage is reported with its offset, and the writer can
 * truncate it away before appending.
 *
 * Only the master writes the journal.
 */
#ifndef GR_JOURNAL_JOURNAL_H
#define GR_JOURNAL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "src/common/error.h"

/* The format version new journals get, and their header. */
#define GR_JOURNAL_VERSION 3
#define GR_JOURNAL_MAGIC "GRJNL\0\0\3"
#define GR_JOURNAL_HDR_LEN 8
/* Background mode: the most bytes buffered while the writer is busy. */
#define GR_JOURNAL_MAX_PENDING (2u * 1024 * 1024)
/* No record is larger than this; a larger length is damage. */
#define GR_JOURNAL_MAX_RECORD (4u * 1024 * 1024)

typedef enum {
    GR_JREC_RUN_START = 1,  /* a run (or a resume of it) begins */
    GR_JREC_WORKER = 2,     /* a worker of this incarnation: rank and host */
    GR_JREC_TASK_START = 3, /* a batch of attempts handed to one worker */
    GR_JREC_TASK_END = 4,   /* a batch of attempt results from one worker */
    GR_JREC_DRAIN = 5,      /* the run began to drain */
    GR_JREC_RUN_END = 6,    /* the run ended; exit code */
    GR_JREC_WORKER_LOST = 7,/* a worker was declared lost */
    GR_JREC_QUARANTINE = 8, /* a failure domain was quarantined or released */
} gr_jrec_type_t;

/* Outcome of an attempt, as the master decided it (sched's outcome kinds). */
typedef enum {
    GR_JOUT_DONE = 0,
    GR_JOUT_RETRY = 1,      /* failed; will be retried */
    GR_JOUT_FAILED = 2,     /* failed for good */
    GR_JOUT_POISON = 3,     /* crashed too often: failed for good */
    GR_JOUT_REQUEUED = 4,   /* not a failure: lost worker or drain; runs again */
} gr_jout_t;

/* plain_after (format version 3 only; 0 in other versions and in what
 * replay gives): this many plain starts follow the entry and are not in
 * the array: the next plain_after indexes, each with the entry's def and
 * attempt 1 (gr_jstart_plain).  Each codes as one byte; replay gives them
 * as entries of their own.  At most GR_JOURNAL_PLAIN_MAX.  pad1 is never
 * journaled. */
typedef struct gr_jstart {
    uint64_t key;
    uint64_t index;
    uint32_t def;
    uint32_t attempt;
    uint32_t plain_after;
    uint32_t pad1;
} gr_jstart_t;

/* The field order lets the master fill an entry with two block copies,
 * from sched's gr_outcome_t (kind to attempt, then outcome from kind) and
 * from proto's gr_result_rec_t (wall to flags); master.c asserts that the
 * layouts agree.  pad1 is never journaled.
 *
 * plain_after (format version 3 only; 0 in other versions and in what
 * replay gives): this many entries follow the entry and are not in the
 * array: the next plain_after indexes, each with the entry's def and
 * maxrss_kb, attempt 1, outcome DONE, no exit code, signal or flags, and
 * all three times +0.0.  Each codes as one byte, and costs the master no
 * entry to fill; replay gives them as entries of their own.  At most
 * GR_JOURNAL_PLAIN_MAX. */
typedef struct gr_jend {
    uint32_t outcome;      /* gr_jout_t */
    uint32_t def;
    uint64_t index;
    uint64_t key;
    uint32_t attempt;
    uint32_t pad1;
    double wall;
    double utime;
    double stime;
    int64_t maxrss_kb;
    int32_t exit_code;
    int32_t signal;
    uint32_t flags;        /* GR_RES_* of proto.h */
    uint32_t plain_after;
} gr_jend_t;

#define GR_JOURNAL_PLAIN_MAX 4096

_Static_assert (offsetof (gr_jend_t, signal) == offsetof (gr_jend_t, exit_code) + 4,
                "gr_jend_plain reads exit_code and signal as one");

/* What "plain" means, in one place: the encoder codes a plain entry as a
 * zero byte, and the master counts one in plain_after instead of filling
 * an entry.  The entry before (with the ones its plain_after stands for)
 * ended at index next - 1 and had def and maxrss_kb.
 *
 * A start is plain when it is of index next, def, attempt 1. */
static inline bool gr_jstart_plain (uint64_t index, uint32_t def, uint32_t attempt,
                                    uint64_t next, uint32_t pdef)
{
    return ((index ^ next) | (uint64_t)(def ^ pdef) | (uint64_t)(attempt ^ 1u)) == 0;
}

/* An end is plain when it is of index next, def, attempt 1, outcome DONE,
 * with no exit code, signal or flags, all three times +0.0 and maxrss_kb
 * the same.  head holds the entry's fields from outcome to attempt as
 * gr_jend_t lays them out, tail those from wall to flags: an entry is
 * gr_jend_plain (e, &e->wall, ...), and the master tests its scheduler's
 * outcome and the worker's result record in place, whose layouts agree
 * (master.c asserts it).  One test of all the fields, not a branch each:
 * at full dispatch rate the branches cost more than the loads. */
static inline bool gr_jend_plain (const void *head, const void *tail, uint64_t next,
                                  uint32_t def, int64_t maxrss_kb)
{
#define GR_JEND_AT(p, f, base) \
    ((const unsigned char *)(p) + offsetof (gr_jend_t, f) - offsetof (gr_jend_t, base))
    uint32_t outcome, d, attempt, flags;
    uint64_t index, w, u, s, status;
    int64_t rss;
    memcpy (&outcome, GR_JEND_AT (head, outcome, outcome), 4);
    memcpy (&d, GR_JEND_AT (head, def, outcome), 4);
    memcpy (&index, GR_JEND_AT (head, index, outcome), 8);
    memcpy (&attempt, GR_JEND_AT (head, attempt, outcome), 4);
    memcpy (&w, GR_JEND_AT (tail, wall, wall), 8);
    memcpy (&u, GR_JEND_AT (tail, utime, wall), 8);
    memcpy (&s, GR_JEND_AT (tail, stime, wall), 8);
    memcpy (&rss, GR_JEND_AT (tail, maxrss_kb, wall), 8);
    memcpy (&status, GR_JEND_AT (tail, exit_code, wall), 8); /* and signal */
    memcpy (&flags, GR_JEND_AT (tail, flags, wall), 4);
#undef GR_JEND_AT
    return ((index ^ next) | (uint64_t)(d ^ def) | (uint64_t)(attempt ^ 1u) | outcome | w
            | u | s | (uint64_t)(rss ^ maxrss_kb) | status | flags)
           == 0;
}

typedef struct gr_jrec {
    gr_jrec_type_t type;
    double time;           /* wall clock, seconds since the epoch */
    union {
        struct {
            uint64_t spec_hash;
            uint32_t incarnation; /* 1 for the first run, +1 per resume */
            uint32_t nworkers;
        } run_start;
        struct {
            uint32_t rank;
            uint32_t cpus;
            uint32_t gpus;
            char host[64];        /* NUL-terminated */
        } worker;
        struct {
            uint32_t worker;
            uint32_t n;
            const gr_jstart_t *tasks; /* n entries; borrowed */
            bool keyless;         /* replay of version 3: keys are 0 */
        } start;
        struct {
            uint32_t worker;
            uint32_t n;
            const gr_jend_t *tasks;   /* n entries; borrowed */
            bool keyless;         /* replay of version 3: keys are 0 */
        } end;
        struct {
            int32_t reason;       /* the signal number, or 0 for a deadline */
            double deadline;      /* wall clock by which running tasks end */
        } drain;
        struct {
            int32_t exit_code;
        } run_end;
        struct {
            uint32_t rank;
        } lost;
        struct {
            uint32_t level;       /* gr_level_t of the domain */
            uint32_t on;          /* 1: quarantined; 0: released */
            uint32_t failures;    /* failures that triggered it */
            double until;         /* wall clock the quarantine ends; 0 */
            char name[64];        /* "node h2", NUL-terminated */
        } quarantine;
    };
} gr_jrec_t;

typedef struct gr_journal_opts {
    double commit_interval;   /* seconds; default 0.05 */
    uint32_t commit_records;  /* default 4096 task entries */
    bool nosync;              /* write but never fsync (benchmarks only) */
    bool background;          /* maybe_sync starts the commit on a writer
                                 thread and returns at once; records
                                 appended meanwhile go into a second buffer.
                                 gr_journal_sync and close still wait.  When
                                 GR_JOURNAL_MAX_PENDING bytes are waiting
                                 for a busy writer, maybe_sync waits for it:
                                 the caller is slowed to the disk's pace
                                 rather than buffering without bound.
                                 Default false. */
} gr_journal_opts_t;

void gr_journal_opts_init (gr_journal_opts_t *o);

typedef struct gr_journal gr_journal_t;

/* The format version j writes in: a journal is appended to in its own
 * version (1 to GR_JOURNAL_VERSION). */
unsigned gr_journal_version (const gr_journal_t *j);

/* Open path for appending, creating it (mode 0600, with the header) if
 * missing.  valid_len, when not 0, is the length replay found good: the
 * file is truncated to it first, dropping a damaged tail.  A file that
 * exists but does not start with the header is refused. */
gr_journal_t *gr_journal_open (const char *path, uint64_t valid_len,
                               const gr_journal_opts_t *opts, gr_error_t *errp);

/* Write what is buffered, fdatasync, and close.  NULL is fine. */
int gr_journal_close (gr_journal_t *j, gr_error_t *errp);

/* Append a record to the buffer (copies what rec points to).  A
 * QUARANTINE record appended to a version 1 journal is dropped (returns
 * 0): that version has no such type, and its readers would take it for
 * damage. */
int gr_journal_append (gr_journal_t *j, const gr_jrec_t *rec, gr_error_t *errp);

/* Commit if the group-commit rule says so; now is gr_now() (monotonic).
 * Returns 1 if it synced (in background mode: started the commit), 0 if not
 * due (or, in background mode, the previous commit is still running), -1
 * on error (errp set; the buffered records stay buffered so a later call
 * can retry; a background commit's failure is reported by the next call). */
int gr_journal_maybe_sync (gr_journal_t *j, double now, gr_error_t *errp);

/* Write and fdatasync everything appended so far. */
int gr_journal_sync (gr_journal_t *j, gr_error_t *errp);

/* The monotonic time by which the oldest unsynced record must be synced,
 * or 0 if nothing is pending (for the caller's sleep). */
double gr_journal_due (const gr_journal_t *j);

typedef struct gr_journal_stats {
    uint64_t records;         /* appended since open */
    uint64_t bytes;           /* appended since open */
    uint64_t syncs;           /* fdatasync calls */
    double sync_seconds;      /* total time spent in write + fdatasync */
} gr_journal_stats_t;

void gr_journal_get_stats (const gr_journal_t *j, gr_journal_stats_t *st);

/* Replay. */
typedef enum {
    GR_JDAMAGE_NONE = 0,
    GR_JDAMAGE_TORN = 1,      /* the file ends inside a record */
    GR_JDAMAGE_CRC = 2,       /* a record's CRC does not match */
    GR_JDAMAGE_LENGTH = 3,    /* an impossible record length */
    GR_JDAMAGE_FORMAT = 4,    /* a record that does not parse (bad type/size) */
} gr_jdamage_t;

typedef struct gr_journal_info {
    uint64_t records;         /* good records delivered */
    uint64_t valid_len;       /* bytes up to the end of the last good record */
    uint64_t file_len;
    gr_jdamage_t damage;
    uint64_t damage_offset;   /* where the first bad record starts */
    char damage_text[256];    /* a sentence for people, empty if none */
    unsigned version;         /* the file's format version (1 to 3) */
} gr_journal_info_t;

/* Called for each good record, in order; rec and what it points to are
 * valid only during the call.  Return -1 to stop the replay with an error. */
typedef int (*gr_journal_rec_f) (const gr_jrec_t *rec, void *arg);

/* Replay path.  A missing file is an error (ENOENT); damage is not: it ends
 * the replay and is described in info.  Returns 0, or -1 with errp set
 * (unreadable file, no header, or fn returned -1). */
int gr_journal_replay (const char *path, gr_journal_rec_f fn, void *arg,
                       gr_journal_info_t *info, gr_error_t *errp);

#endif
