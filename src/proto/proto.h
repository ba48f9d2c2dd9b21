/* Master <-> worker messages.  This is the only place that knows MPI tags
 * and message layouts.
 *
 * The protocol is pull with credit.  A worker sends READY with the results
 * it has finished and how many more tasks it wants; the master answers
 * with ASSIGN batches sized to that credit.  Because a worker may send a
 * new READY before an earlier ASSIGN reached it, READY also carries the
 * number of tasks the worker has received so far, and the master subtracts
 * what it sent since then.
 *
 * Records are fixed-size structs copied as bytes: all ranks run the same
 * gridrun binary, so layouts agree.
 */
#ifndef GR_PROTO_PROTO_H
#define GR_PROTO_PROTO_H

#include <stddef.h>
#include <stdint.h>

#define GR_PROTO_VERSION 1

enum {
    GR_TAG_READY = 0x4752,   /* worker -> master */
    GR_TAG_ASSIGN = 0x4753,  /* master -> worker */
};

/* The most records one message carries, which keeps messages small. */
#define GR_PROTO_MAX_BATCH 256

/* READY flags */
#define GR_READY_BYE 0x1      /* the worker finished shutting down */

/* ASSIGN flags */
#define GR_ASSIGN_SHUTDOWN 0x1 /* no more work: finish the queue and leave */
#define GR_ASSIGN_DRAIN 0x2    /* give back queued tasks; running ones end by
                                  the header's deadline (SIGTERM, then SIGKILL) */
#define GR_ASSIGN_GROUP 0x4    /* the body is one gr_group_cmd_t, no tasks */

/* Result flags */
#define GR_RES_TIMEOUT 0x1    /* killed by gridrun after its timeout */
#define GR_RES_SPAWN 0x2      /* could not be started (errno in exit_code) */
#define GR_RES_KILLED 0x4     /* killed by gridrun while draining */
#define GR_RES_RETURNED 0x8   /* never started: given back while draining */
/* Both SPAWN and RETURNED: never started, no worker could take it (the
 * master's verdict, in journal entries only). */
#define GR_RES_UNPLACED (GR_RES_SPAWN | GR_RES_RETURNED)
#define GR_RES_PORT 0x10      /* not an end: the answer to GR_GROUP_PREP, the
                                 port in exit_code (0: none free) */
#define GR_RES_OUTLOST 0x20   /* the worker could not keep the attempt's output
                                 (the run directory cannot be written): with
                                 KILLED (or RETURNED if it never started) it
                                 is requeued, and the errno is in exit_code */

typedef struct gr_assign_rec {
    uint64_t id;       /* master's handle for this attempt */
    uint64_t key;
    uint64_t index;    /* task index within its definition */
    uint32_t def;      /* task definition id */
    uint32_t attempt;  /* 1-based */
} gr_assign_rec_t;

typedef struct gr_result_rec {
    uint64_t id;
    double wall;       /* seconds from start to exit */
    double utime;      /* user CPU seconds */
    double stime;      /* system CPU seconds */
    int64_t maxrss_kb;
    int32_t exit_code; /* exit status, or errno when GR_RES_SPAWN */
    int32_t signal;    /* terminating signal, 0 if none */
    uint32_t flags;
    uint32_t member;   /* a process of a group: its RANK + 1; else 0 */
    double queued;     /* seconds it waited on the worker before it started */
} gr_result_rec_t;

typedef struct gr_ready_hdr {
    uint32_t version;
    uint32_t flags;
    uint32_t nresults;
    uint32_t want;         /* tasks the worker would like beyond those it holds */
    uint64_t received;     /* tasks received from the master so far */
    uint32_t running;      /* tasks running now */
    uint32_t queued;       /* tasks held, not yet started */
    uint32_t chaos_kills;  /* chaos mode: tasks it killed, so far */
    uint32_t chaos_delays; /* chaos mode: messages it held back, so far */
} gr_ready_hdr_t;

typedef struct gr_assign_hdr {
    uint32_t version;
    uint32_t flags;
    uint32_t ntasks;
    uint32_t pad;
    double drain_in;       /* GR_ASSIGN_DRAIN: seconds until running tasks
                              must have ended (relative: clocks differ) */
} gr_assign_hdr_t;

/* Group tasks (kind: group).  The master reserves slots on workers for
 * all of a group's processes, asks the worker of RANK 0 for a free port
 * (PREP, answered by a GR_RES_PORT result), then tells every worker of
 * the group which processes to start (START).  Each process reports as a
 * result of its own, with `member` set; the master ends the attempt once
 * all have.  STOP ends a group's processes on a worker: `signal` now,
 * SIGKILL `grace` seconds later. */
enum {
    GR_GROUP_PREP = 1,
    GR_GROUP_START = 2,
    GR_GROUP_STOP = 3,
};

typedef struct gr_group_cmd {
    uint32_t op;
    uint32_t def;
    uint64_t id;           /* the attempt, as the scheduler named it */
    uint64_t key;
    uint64_t index;
    uint32_t attempt;
    uint32_t world;        /* WORLD_SIZE */
    uint32_t rank0;        /* START: RANK of this worker's first process */
    uint32_t nranks;       /* START: processes on this worker */
    uint32_t local0;       /* START: LOCAL_RANK of its first process */
    uint32_t local_world;  /* START: LOCAL_WORLD_SIZE, processes on the node */
    uint32_t node_rank;    /* START: GROUP_RANK, the node's place in the group */
    uint32_t nnodes;       /* START: GROUP_WORLD_SIZE */
    uint32_t port;         /* START: MASTER_PORT */
    int32_t signal;        /* STOP */
    double grace;          /* STOP: seconds until SIGKILL */
    char addr[64];         /* PREP: where to find a port; START: MASTER_ADDR */
} gr_group_cmd_t;

/* What each worker tells the master at start-up (gathered). */
typedef struct gr_worker_info {
    uint32_t cpus;
    uint32_t gpus;
    uint64_t mem;
    char host[64];
    char topo_addr[128];   /* SLURM_TOPOLOGY_ADDR, or "" */
    char addr[64];         /* an IPv4 address other hosts may reach it at */
} gr_worker_info_t;

static inline size_t gr_ready_size (uint32_t nresults)
{
    return sizeof (gr_ready_hdr_t) + (size_t)nresults * sizeof (gr_result_rec_t);
}

static inline size_t gr_assign_size (uint32_t ntasks)
{
    return sizeof (gr_assign_hdr_t) + (size_t)ntasks * sizeof (gr_assign_rec_t);
}

/* Validate a received message's size against its header; 0 or -1. */
int gr_proto_check_ready (const void *buf, size_t len);
int gr_proto_check_assign (const void *buf, size_t len);

#endif

/* A channel: nonblocking sends that own their buffers until MPI is done
 * with them, and polled receives.  Nothing here ever blocks on a peer. */
#include <mpi.h>

typedef struct gr_chan gr_chan_t;

gr_chan_t *gr_chan_create (MPI_Comm comm);
/* Waits for outstanding sends only when wait is nonzero, then frees. */
void gr_chan_destroy (gr_chan_t *ch, int wait);

/* Send len bytes of buf to dest with tag.  The channel takes ownership of
 * buf (from malloc) and frees it when the send completes. */
int gr_chan_send (gr_chan_t *ch, int dest, int tag, void *buf, size_t len);

/* Give up on every outstanding send to dest (a lost peer): the requests
 * are cancelled and freed.  Their buffers are leaked on purpose, since MPI
 * may still hold them. */
void gr_chan_cancel_dest (gr_chan_t *ch, int dest);

/* Complete finished sends; returns how many are still outstanding. */
int gr_chan_progress (gr_chan_t *ch);

/* Receive one message matching (source, tag) if one has arrived.  Returns
 * 1 and fills bufp, lenp and srcp (the buffer belongs to the channel and is
 * valid until the next gr_chan_recv), 0 if none, -1 on error. */
int gr_chan_recv (gr_chan_t *ch, int source, int tag, void **bufp,
                  size_t *lenp, int *srcp);
