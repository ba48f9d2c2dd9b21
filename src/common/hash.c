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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define GR_HAVE_CRC32_INSN 1
/* SSE4.2 has CRC-32C as an instruction: about ten times the table's speed,
 * which matters because every journal record is checksummed. */
__attribute__ ((target ("sse4.2")))
static uint32_t crc32c_insn (uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t w;
        memcpy (&w, p, 8);
        c = __builtin_ia32_crc32di (c, w);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = __builtin_ia32_crc32qi (c32, *p++);
    return ~c32;
}
#endif

static uint32_t crc32c_table_sw (uint32_t crc, const unsigned char *p, size_t len);

uint32_t gr_crc32c (uint32_t crc, const void *data, size_t len)
{
#if GR_HAVE_CRC32_INSN
    static int have = -1;
    if (have < 0)
        have = __builtin_cpu_supports ("sse4.2") ? 1 : 0;
    if (have)
        return crc32c_insn (crc, data, len);
#endif
    return crc32c_table_sw (crc, data, len);
}

/* The portable version: slicing by 8. */
static uint32_t crc32c_table_sw (uint32_t crc, const unsigned char *p, size_t len)
{
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

uint32_t gr__crc32c_sw (uint32_t crc, const void *data, size_t len)
{
    return crc32c_table_sw (crc, data, len);
}
