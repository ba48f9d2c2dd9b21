/* Fusion chunks in memory the ranks of one node share (shm.c).
 *
 * Life of a chunk: create (local, at gr_fusion_alloc), then on its first
 * allreduce the backend exchanges every rank's id in a collective, maps
 * the others' (map), agrees with the other ranks whether every rank
 * managed, and says so (linked).  A linked chunk is reduced by arrive /
 * all_arrived / reduce / arrive / all_arrived; one that is not is reduced
 * in place like any buffer.
 */
#ifndef GR_COLL_SHM_H
#define GR_COLL_SHM_H

#include <stddef.h>
#include <stdint.h>

#include "coll.h"

/* cap bytes of zeroed data.  NULL with errno and *errp on failure. */
gr_coll_seg_t *gr_coll_seg_create (size_t cap, gr_error_t *errp);
/* Accepts NULL. */
void gr_coll_seg_destroy (gr_coll_seg_t *s);
void *gr_coll_seg_data (const gr_coll_seg_t *s);

/* 0 before the first exchange, 1 shared with the other ranks, -1 never
 * (reduce it as a plain buffer). */
int gr_coll_seg_state (const gr_coll_seg_t *s);
/* What the other ranks need to map this rank's segment. */
void gr_coll_seg_id (const gr_coll_seg_t *s, int64_t id[3]);
/* Map the segments of the n ranks whose ids (3 each, by rank) are given;
 * this one is me.  -1 with errno and *errp when one cannot be. */
int gr_coll_seg_map (gr_coll_seg_t *s, int n, int me, const int64_t *ids,
                     gr_error_t *errp);
/* The ranks' verdict on map: ok (state 1) or not (state -1, peers
 * unmapped).  Either way this rank's fd is closed. */
void gr_coll_seg_linked (gr_coll_seg_t *s, int ok);

/* Arrive for an operation on count elements; then poll all_arrived until
 * it is 1. */
void gr_coll_seg_arrive (gr_coll_seg_t *s, size_t count);
int gr_coll_seg_all_arrived (const gr_coll_seg_t *s);
/* After all arrived: 1 when every rank arrived for count elements. */
int gr_coll_seg_counts_agree (const gr_coll_seg_t *s, size_t count);
/* Reduce this rank's block of the first count elements across the ranks
 * into rank 0's copy, and with spread into every rank's copy; GR_AVG
 * divides by divisor (1: not at all). */
void gr_coll_seg_reduce (gr_coll_seg_t *s, size_t count, gr_dtype_t type, gr_op_t op,
                         int divisor, int spread);
/* Copy the first bytes of rank 0's copy into this rank's (rank 0: none). */
void gr_coll_seg_take_first (gr_coll_seg_t *s, size_t bytes);

#endif
