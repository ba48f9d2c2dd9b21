#include "config.h"

#include <stdint.h>
#include <string.h>

#include "hash.h"

uint64_t gr_hash64_update (uint64_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* FNV-1a alone mixes the high bits poorly; the splitmix64 finalizer fixes
 * that so keys spread evenly in hash tables. */
uint64_t gr_hash64_final (uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ULL;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return h;
}

static uint32_t crc32c_table[8][256];
static int crc32c_ready;

static void crc32c_init (void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82f63b78U : c >> 1;
        crc32c_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = crc32c_table[0][n];
        for (int k = 1; k < 8; k++) {
            c = crc32c_table[0][c & 0xff] ^ (c >> 8);
            crc32c_table[k][n] = c;
        }
    }
    crc32c_ready = 1;
}

uint32_t gr_crc32c (uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    if (!crc32c_ready)
        crc32c_init ();
    crc = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy (&w, p, 8);
        w ^= crc;
        crc = crc32c_table[7][w & 0xff] ^ crc32c_table[6][(w >> 8) & 0xff]
            ^ crc32c_table[5][(w >> 16) & 0xff] ^ crc32c_table[4][(w >> 24) & 0xff]
            ^ crc32c_table[3][(w >> 32) & 0xff] ^ crc32c_table[2][(w >> 40) & 0xff]
            ^ crc32c_table[1][(w >> 48) & 0xff] ^ crc32c_table[0][w >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        crc = crc32c_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

static inline uint64_t rotl (uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void gr_rng_seed (gr_rng_t *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed += 0x9e3779b97f4a7c15ULL;
        rng->s[i] = gr_hash64_final (seed);
    }
}

uint64_t gr_rng_next (gr_rng_t *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl (s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl (s[3], 45);
    return result;
}

double gr_rng_uniform (gr_rng_t *rng)
{
    return (double)(gr_rng_next (rng) >> 11) * 0x1.0p-53;
}
