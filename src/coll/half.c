/* Element arithmetic: f16/bf16 <-> float and the reduce kernels that the
 * MPI backend runs on host buffers (its ring allreduce and its MPI_Op). */
#include "config.h"

#include <string.h>

#include "coll.h"

float gr_coll_f16_to_float (uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    float f;

    if (e == 0) {
        /* Zero or subnormal: m * 2^-24, exact in float. */
        f = (float)m * 0x1p-24f;
        memcpy (&x, &f, sizeof (x));
        x |= sign;
    } else if (e == 31)
        x = sign | 0x7f800000u | (m << 13);
    else
        x = sign | ((e + 112) << 23) | (m << 13);
    memcpy (&f, &x, sizeof (f));
    return f;
}

uint16_t gr_coll_float_to_f16 (float f)
{
    uint32_t x, ax, sign, q, rem, half;

    memcpy (&x, &f, sizeof (x));
    sign = (x >> 16) & 0x8000u;
    ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, keeping the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    /* 65520 lies halfway between 65504 (odd mantissa) and 2^16: ties go
     * to even, which is infinity. */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) {
        /* Below 2^-14: a subnormal half, round (value / 2^-24).  At most
         * 2^-25 (a tie with zero at exactly 2^-25) it is zero. */
        if (ax <= 0x33000000u)
            return (uint16_t)sign;
        uint32_t m = (ax & 0x7fffffu) | 0x800000u;
        unsigned shift = 126 - (ax >> 23);
        q = m >> shift;
        rem = m & ((1u << shift) - 1);
        half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return (uint16_t)(sign | q); /* q may carry into the smallest normal */
    }
    /* Normal: rebias the exponent (127 - 15), keep 10 mantissa bits.  A
     * carry out of the mantissa correctly bumps the exponent. */
    ax -= 0x38000000u;
    q = ax >> 13;
    rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1)))
        q++;
    return (uint16_t)(sign | q);
}

float gr_coll_bf16_to_float (uint16_t h)
{
    uint32_t x = (uint32_t)h << 16;
    float f;

    memcpy (&f, &x, sizeof (f));
    return f;
}

uint16_t gr_coll_float_to_bf16 (float f)
{
    uint32_t x;

    memcpy (&x, &f, sizeof (x));
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u);
    /* Round to nearest even on the 16 bits dropped; overflow carries into
     * the exponent and ends at infinity, as it should. */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

size_t gr_coll_dtype_size (gr_dtype_t t)
{
    switch (t) {
        case GR_F32:
        case GR_I32:
            return 4;
        case GR_F64:
        case GR_I64:
            return 8;
        case GR_F16:
        case GR_BF16:
            return 2;
    }
    return 0;
}

/* The kernels.  Each comes in two shapes, out = a op b with three distinct
 * arrays and io = io op b in place, so that restrict holds; the inner loop
 * over a fixed block lets GCC vectorize at -O2. */
#define KBLOCK 16

#define KERNEL(NAME, T, EXPR)                                                            \
    static void NAME##_3 (const T *restrict a, const T *restrict b, T *restrict o,       \
                          size_t n)                                                      \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + KBLOCK <= n; i += KBLOCK)                                             \
            for (size_t j = 0; j < KBLOCK; j++) {                                        \
                T x = a[i + j], y = b[i + j];                                            \
                o[i + j] = (EXPR);                                                       \
            }                                                                            \
        for (; i < n; i++) {                                                             \
            T x = a[i], y = b[i];                                                        \
            o[i] = (EXPR);                                                               \
        }                                                                                \
    }                                                                                    \
    static void NAME##_2 (T *restrict io, const T *restrict b, size_t n)                 \
    {                                                                                    \
        size_t i = 0;                                                                    \
        for (; i + KBLOCK <= n; i += KBLOCK)                                             \
            for (size_t j = 0; j < KBLOCK; j++) {                                        \
                T x = io[i + j], y = b[i + j];                                           \
                io[i + j] = (EXPR);                                                      \
            }                                                                            \
        for (; i < n; i++) {                                                             \
            T x = io[i], y = b[i];                                                       \
            io[i] = (EXPR);                                                              \
        }                                                                                \
    }

/* NaN propagates through MAX and MIN (x != x is NaN). */
#define FSUM (x + y)
#define FMAX ((x > y || x != x) ? x : y)
#define FMIN ((x < y || x != x) ? x : y)
#define IMAX (x > y ? x : y)
#define IMIN (x < y ? x : y)
/* Signed overflow is undefined in C; wrap as two's complement does. */
#define ISUM32 ((int32_t)((uint32_t)x + (uint32_t)y))
#define ISUM64 ((int64_t)((uint64_t)x + (uint64_t)y))

KERNEL (f32_sum, float, FSUM)
KERNEL (f32_max, float, FMAX)
KERNEL (f32_min, float, FMIN)
KERNEL (f64_sum, double, FSUM)
KERNEL (f64_max, double, FMAX)
KERNEL (f64_min, double, FMIN)
KERNEL (i32_sum, int32_t, ISUM32)
KERNEL (i32_max, int32_t, IMAX)
KERNEL (i32_min, int32_t, IMIN)
KERNEL (i64_sum, int64_t, ISUM64)
KERNEL (i64_max, int64_t, IMAX)
KERNEL (i64_min, int64_t, IMIN)

/* Half types: through float, one rounding per element. */
typedef float (*to_float_f) (uint16_t);
typedef uint16_t (*from_float_f) (float);

static void half_reduce (to_float_f to, from_float_f from, gr_op_t op, const uint16_t *a,
                         const uint16_t *b, uint16_t *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = to (a[i]), y = to (b[i]);
        switch (op) {
            case GR_MAX:
                o[i] = from (FMAX);
                break;
            case GR_MIN:
                o[i] = from (FMIN);
                break;
            default:
                o[i] = from (FSUM);
                break;
        }
    }
}

#define DISPATCH(PFX, T)                                                                 \
    do {                                                                                 \
        void (*k3) (const T *restrict, const T *restrict, T *restrict, size_t);          \
        void (*k2) (T *restrict, const T *restrict, size_t);                             \
        if (op == GR_MAX) {                                                              \
            k3 = PFX##_max_3;                                                            \
            k2 = PFX##_max_2;                                                            \
        } else if (op == GR_MIN) {                                                       \
            k3 = PFX##_min_3;                                                            \
            k2 = PFX##_min_2;                                                            \
        } else {                                                                         \
            k3 = PFX##_sum_3;                                                            \
            k2 = PFX##_sum_2;                                                            \
        }                                                                                \
        if (out == a)                                                                    \
            k2 ((T *)out, (const T *)b, n);                                              \
        else if (out == b)                                                               \
            k2 ((T *)out, (const T *)a, n);                                              \
        else                                                                             \
            k3 ((const T *)a, (const T *)b, (T *)out, n);                                \
    } while (0)

void gr_coll_reduce (gr_dtype_t t, gr_op_t op, const void *a, const void *b, void *out,
                     size_t n)
{
    switch (t) {
        case GR_F32:
            DISPATCH (f32, float);
            break;
        case GR_F64:
            DISPATCH (f64, double);
            break;
        case GR_I32:
            DISPATCH (i32, int32_t);
            break;
        case GR_I64:
            DISPATCH (i64, int64_t);
            break;
        case GR_F16:
            half_reduce (gr_coll_f16_to_float, gr_coll_float_to_f16, op, a, b, out, n);
            break;
        case GR_BF16:
            half_reduce (gr_coll_bf16_to_float, gr_coll_float_to_bf16, op, a, b, out, n);
            break;
    }
}

void gr_coll_divide (gr_dtype_t t, void *buf, size_t n, int divisor)
{
    if (divisor == 1)
        return;
    switch (t) {
        case GR_F32: {
            float *v = buf, d = (float)divisor;
            for (size_t i = 0; i < n; i++)
                v[i] /= d;
            break;
        }
        case GR_F64: {
            double *v = buf, d = divisor;
            for (size_t i = 0; i < n; i++)
                v[i] /= d;
            break;
        }
        case GR_I32: {
            int32_t *v = buf;
            for (size_t i = 0; i < n; i++)
                v[i] /= divisor;
            break;
        }
        case GR_I64: {
            int64_t *v = buf;
            for (size_t i = 0; i < n; i++)
                v[i] /= divisor;
            break;
        }
        case GR_F16: {
            uint16_t *v = buf;
            for (size_t i = 0; i < n; i++)
                v[i] =
                    gr_coll_float_to_f16 (gr_coll_f16_to_float (v[i]) / (float)divisor);
            break;
        }
        case GR_BF16: {
            uint16_t *v = buf;
            for (size_t i = 0; i < n; i++)
                v[i] =
                    gr_coll_float_to_bf16 (gr_coll_bf16_to_float (v[i]) / (float)divisor);
            break;
        }
    }
}
