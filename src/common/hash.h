/* Hashes.  gr_hash64 names tasks and runs: it must never change, because
 * keys are stored in journals and snapshots.  gr_crc32c frames journal
 * records. */
#ifndef GR_COMMON_HASH_H
#define GR_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

#define GR_HASH64_INIT 0xcbf29ce484222325ULL

/* Feed len bytes into a running hash h (start from GR_HASH64_INIT). */
uint64_t gr_hash64_update (uint64_t h, const void *data, size_t len);
/* Mix a running hash into its final value. */
uint64_t gr_hash64_final (uint64_t h);
static inline uint64_t gr_hash64 (const void *data, size_t len)
{
    return gr_hash64_final (gr_hash64_update (GR_HASH64_INIT, data, len));
}

/* CRC-32C (Castagnoli); crc starts at 0 and chains across calls.  Uses the
 * SSE4.2 instruction where the CPU has it. */
uint32_t gr_crc32c (uint32_t crc, const void *data, size_t len);
/* The portable table version, for tests that compare the two. */
uint32_t gr__crc32c_sw (uint32_t crc, const void *data, size_t len);

/* A small, fast PRNG (xoshiro256**) for jitter; seeded explicitly so tests
 * can repeat a sequence. */
typedef struct gr_rng {
    uint64_t s[4];
} gr_rng_t;
void gr_rng_seed (gr_rng_t *rng, uint64_t seed);
uint64_t gr_rng_next (gr_rng_t *rng);
/* A double uniformly distributed in [0, 1). */
double gr_rng_uniform (gr_rng_t *rng);

#endif
