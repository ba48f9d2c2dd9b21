/* The pure parts of the collectives: half-precision conversions, the
 * reduce kernels, how counts are cut into pieces and blocks, and shared
 * fusion chunks (shm.c), with the "ranks" as segments of this one process.
 * No MPI is started here; tests/bin/gr-colltest runs the collectives. */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "check_main.h"
#include "src/coll/coll.h"
#include "src/coll/shm.h"

static float bits_to_float (uint32_t x)
{
    float f;
    memcpy (&f, &x, sizeof (f));
    return f;
}

START_TEST (test_f16_known)
{
    static const struct {
        float f;
        uint16_t h;
    } v[] = {
        {0.0f, 0x0000},     {-0.0f, 0x8000},     {1.0f, 0x3c00},
        {-2.0f, 0xc000},    {0.5f, 0x3800},      {65504.0f, 0x7bff},
        {0x1p-14f, 0x0400}, {0x1p-24f, 0x0001},  {0x1.ff8p-15f, 0x03ff},
        {INFINITY, 0x7c00}, {-INFINITY, 0xfc00}, {1.0f / 3.0f, 0x3555},
        {0.1f, 0x2e66},     {-1234.0f, 0xe4d2},
    };
    for (size_t i = 0; i < sizeof (v) / sizeof (v[0]); i++) {
        ck_assert_msg (gr_coll_float_to_f16 (v[i].f) == v[i].h, "%a -> %#x, want %#x",
                       (double)v[i].f, gr_coll_float_to_f16 (v[i].f), v[i].h);
        /* Back: exact for the exactly representable ones. */
        if (v[i].f != 1.0f / 3.0f && v[i].f != 0.1f)
            ck_assert (memcmp (&(float){gr_coll_f16_to_float (v[i].h)}, &v[i].f, 4) == 0);
    }
    ck_assert (isnan (gr_coll_f16_to_float (0x7e00)));
    ck_assert (isnan (gr_coll_f16_to_float (0xfc01)));
}
END_TEST

START_TEST (test_f16_rounding)
{
    /* Ties go to even, elsewhere to nearest. */
    ck_assert_uint_eq (gr_coll_float_to_f16 (1.0f + 0x1p-11f), 0x3c00);
    ck_assert_uint_eq (gr_coll_float_to_f16 (1.0f + 3 * 0x1p-11f), 0x3c02);
    ck_assert_uint_eq (gr_coll_float_to_f16 (1.0f + 0x1p-11f + 0x1p-20f), 0x3c01);
    ck_assert_uint_eq (gr_coll_float_to_f16 (65519.0f), 0x7bff);
    ck_assert_uint_eq (gr_coll_float_to_f16 (65520.0f), 0x7c00);
    ck_assert_uint_eq (gr_coll_float_to_f16 (1e10f), 0x7c00);
    ck_assert_uint_eq (gr_coll_float_to_f16 (-1e10f), 0xfc00);
    /* Subnormals: 2^-25 is a tie with zero, 3 * 2^-25 a tie between one
     * and two units; the largest subnormal rounds up into the normals. */
    ck_assert_uint_eq (gr_coll_float_to_f16 (0x1p-25f), 0x0000);
    ck_assert_uint_eq (gr_coll_float_to_f16 (0x1.8p-25f), 0x0001);
    ck_assert_uint_eq (gr_coll_float_to_f16 (3 * 0x1p-25f), 0x0002);
    ck_assert_uint_eq (gr_coll_float_to_f16 (5 * 0x1p-25f), 0x0002);
    ck_assert_uint_eq (gr_coll_float_to_f16 (0x1p-14f - 0x1p-26f), 0x0400);
    ck_assert_uint_eq (gr_coll_float_to_f16 (1e-30f), 0x0000);
    ck_assert_uint_eq (gr_coll_float_to_f16 (-1e-30f), 0x8000);
    /* NaN stays NaN, quiet. */
    uint16_t n = gr_coll_float_to_f16 (bits_to_float (0x7f800001));
    ck_assert_msg ((n & 0x7c00) == 0x7c00 && (n & 0x03ff) != 0, "NaN -> %#x", n);
    ck_assert (n & 0x0200);
    ck_assert (gr_coll_float_to_f16 (-NAN) & 0x8000);
}
END_TEST

START_TEST (test_f16_roundtrip)
{
    /* Every half that is not NaN survives the trip through float. */
    for (uint32_t h = 0; h <= 0xffff; h++) {
        if ((h & 0x7c00) == 0x7c00 && (h & 0x03ff))
            continue;
        uint16_t back = gr_coll_float_to_f16 (gr_coll_f16_to_float ((uint16_t)h));
        ck_assert_msg (back == h, "%#x -> %a -> %#x", h,
                       (double)gr_coll_f16_to_float ((uint16_t)h), back);
    }
}
END_TEST

START_TEST (test_bf16)
{
    ck_assert_uint_eq (gr_coll_float_to_bf16 (1.0f), 0x3f80);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (3.0f), 0x4040);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (-0.0f), 0x8000);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (1.0f + 0x1p-8f), 0x3f80); /* tie: even */
    ck_assert_uint_eq (gr_coll_float_to_bf16 (1.0f + 3 * 0x1p-8f),
                       0x3f82); /* tie: even */
    ck_assert_uint_eq (gr_coll_float_to_bf16 (1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (FLT_MAX), 0x7f80);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (INFINITY), 0x7f80);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (-INFINITY), 0xff80);
    ck_assert_uint_eq (gr_coll_float_to_bf16 (bits_to_float (0x7f800001)), 0x7fc0);
    ck_assert (gr_coll_bf16_to_float (0x3fc0) == 1.5f);
    ck_assert (isnan (gr_coll_bf16_to_float (0x7fc1)));
    for (uint32_t h = 0; h <= 0xffff; h++) {
        if ((h & 0x7f80) == 0x7f80 && (h & 0x007f))
            continue;
        ck_assert_uint_eq (gr_coll_float_to_bf16 (gr_coll_bf16_to_float ((uint16_t)h)),
                           h);
    }
}
END_TEST

START_TEST (test_dtype_size)
{
    ck_assert_uint_eq (gr_coll_dtype_size (GR_F32), 4);
    ck_assert_uint_eq (gr_coll_dtype_size (GR_F64), 8);
    ck_assert_uint_eq (gr_coll_dtype_size (GR_I32), 4);
    ck_assert_uint_eq (gr_coll_dtype_size (GR_I64), 8);
    ck_assert_uint_eq (gr_coll_dtype_size (GR_F16), 2);
    ck_assert_uint_eq (gr_coll_dtype_size (GR_BF16), 2);
    ck_assert_uint_eq (gr_coll_dtype_size ((gr_dtype_t)17), 0);
}
END_TEST

/* The kernels against a scalar computation in double, for every type and
 * op, with every aliasing the kernels allow, on a length that is not a
 * multiple of their block. */
#define KN 37

static double get (gr_dtype_t t, const void *buf, size_t i)
{
    switch (t) {
        case GR_F32:
            return ((const float *)buf)[i];
        case GR_F64:
            return ((const double *)buf)[i];
        case GR_I32:
            return ((const int32_t *)buf)[i];
        case GR_I64:
            return (double)((const int64_t *)buf)[i];
        case GR_F16:
            return gr_coll_f16_to_float (((const uint16_t *)buf)[i]);
        case GR_BF16:
            return gr_coll_bf16_to_float (((const uint16_t *)buf)[i]);
    }
    return NAN;
}

static void put (gr_dtype_t t, void *buf, size_t i, double v)
{
    switch (t) {
        case GR_F32:
            ((float *)buf)[i] = (float)v;
            break;
        case GR_F64:
            ((double *)buf)[i] = v;
            break;
        case GR_I32:
            ((int32_t *)buf)[i] = (int32_t)v;
            break;
        case GR_I64:
            ((int64_t *)buf)[i] = (int64_t)v;
            break;
        case GR_F16:
            ((uint16_t *)buf)[i] = gr_coll_float_to_f16 ((float)v);
            break;
        case GR_BF16:
            ((uint16_t *)buf)[i] = gr_coll_float_to_bf16 ((float)v);
            break;
    }
}

START_TEST (test_reduce_kernels)
{
    gr_dtype_t t = (gr_dtype_t)_i;
    double scale = t == GR_I32 || t == GR_I64 ? 1.0 : 0.5;

    for (int op = GR_SUM; op <= GR_AVG; op++) {
        for (int shape = 0; shape < 3; shape++) {
            uint64_t a[KN], b[KN], o[KN]; /* room for any type */
            for (size_t i = 0; i < KN; i++) {
                put (t, a, i, (double)((int)(i * 5 % 17) - 8) * scale);
                put (t, b, i, (double)((int)(i * 3 % 13) - 6) * scale);
            }
            double want[KN];
            for (size_t i = 0; i < KN; i++) {
                double x = get (t, a, i), y = get (t, b, i);
                want[i] = op == GR_MAX ? fmax (x, y) : op == GR_MIN ? fmin (x, y) : x + y;
            }
            void *out = shape == 0 ? (void *)o : shape == 1 ? (void *)a : (void *)b;
            gr_coll_reduce (t, (gr_op_t)op, a, b, out, KN);
            for (size_t i = 0; i < KN; i++)
                ck_assert_msg (get (t, out, i) == want[i],
                               "type %d op %d shape %d [%zu]: %g != %g", t, op, shape, i,
                               get (t, out, i), want[i]);
        }
    }
}
END_TEST

START_TEST (test_reduce_nan_and_wrap)
{
    float a[3] = {NAN, 1, 2}, b[3] = {0, NAN, 1}, o[3];
    gr_coll_reduce (GR_F32, GR_MAX, a, b, o, 3);
    ck_assert (isnan (o[0]) && isnan (o[1]) && o[2] == 2);
    gr_coll_reduce (GR_F32, GR_MIN, a, b, o, 3);
    ck_assert (isnan (o[0]) && isnan (o[1]) && o[2] == 1);

    uint16_t h[2] = {0x7e00, 0x3c00}, k[2] = {0x3c00, 0x7e00}, ho[2];
    gr_coll_reduce (GR_F16, GR_MAX, h, k, ho, 2);
    ck_assert (isnan (gr_coll_f16_to_float (ho[0])) &&
               isnan (gr_coll_f16_to_float (ho[1])));

    /* f16 sums round once: 2048 + 1 is a tie, to even (2048). */
    uint16_t x = gr_coll_float_to_f16 (2048), y = gr_coll_float_to_f16 (1), s;
    gr_coll_reduce (GR_F16, GR_SUM, &x, &y, &s, 1);
    ck_assert (gr_coll_f16_to_float (s) == 2048);

    int32_t i32[1] = {INT32_MAX}, one32[1] = {1};
    gr_coll_reduce (GR_I32, GR_SUM, i32, one32, i32, 1);
    ck_assert_int_eq (i32[0], INT32_MIN);
    int64_t i64[1] = {INT64_MAX}, one64[1] = {1};
    gr_coll_reduce (GR_I64, GR_SUM, i64, one64, i64, 1);
    ck_assert (i64[0] == INT64_MIN);
}
END_TEST

START_TEST (test_divide)
{
    int32_t i[4] = {-7, 7, 6, -1};
    gr_coll_divide (GR_I32, i, 4, 2);
    ck_assert (i[0] == -3 && i[1] == 3 && i[2] == 3 && i[3] == 0);
    int64_t l[2] = {-9000000000LL, 9};
    gr_coll_divide (GR_I64, l, 2, 3);
    ck_assert (l[0] == -3000000000LL && l[1] == 3);
    float f[2] = {3, -1};
    gr_coll_divide (GR_F32, f, 2, 2);
    ck_assert (f[0] == 1.5f && f[1] == -0.5f);
    double d[1] = {1};
    gr_coll_divide (GR_F64, d, 1, 3);
    ck_assert (d[0] == 1.0 / 3);
    uint16_t h[2] = {gr_coll_float_to_f16 (3), gr_coll_float_to_f16 (1)};
    gr_coll_divide (GR_F16, h, 2, 3);
    ck_assert (gr_coll_f16_to_float (h[0]) == 1);
    ck_assert_uint_eq (h[1], gr_coll_float_to_f16 (1.0f / 3));
    uint16_t b[1] = {gr_coll_float_to_bf16 (5)};
    gr_coll_divide (GR_BF16, b, 1, 2);
    ck_assert (gr_coll_bf16_to_float (b[0]) == 2.5f);
    float same[1] = {5};
    gr_coll_divide (GR_F32, same, 1, 1);
    ck_assert (same[0] == 5);
}
END_TEST

START_TEST (test_chunks)
{
    ck_assert_uint_eq (gr_coll_nchunks (0, 10), 0);
    ck_assert_uint_eq (gr_coll_nchunks (1, 10), 1);
    ck_assert_uint_eq (gr_coll_nchunks (10, 10), 1);
    ck_assert_uint_eq (gr_coll_nchunks (11, 10), 2);
    ck_assert_uint_eq (gr_coll_nchunks ((size_t)INT_MAX, INT_MAX), 1);
    ck_assert_uint_eq (gr_coll_nchunks ((size_t)INT_MAX + 1, INT_MAX), 2);
    ck_assert_uint_eq (gr_coll_nchunks (2 * (size_t)INT_MAX + 1, INT_MAX), 3);
    ck_assert_uint_eq (gr_coll_nchunks (SIZE_MAX, INT_MAX), SIZE_MAX / INT_MAX + 1);
    ck_assert_uint_eq (gr_coll_nchunks (5, 0), 0);
}
END_TEST

START_TEST (test_blocks)
{
    static const size_t counts[] = {0, 1, 5, 17, 1000003, (size_t)INT_MAX * 3 + 7};
    static const int parts[] = {1, 2, 3, 7, 64};

    for (size_t c = 0; c < sizeof (counts) / sizeof (counts[0]); c++) {
        for (size_t p = 0; p < sizeof (parts) / sizeof (parts[0]); p++) {
            size_t next = 0, first_len = 0, off, len;
            for (int i = 0; i < parts[p]; i++) {
                gr_coll_block (counts[c], parts[p], i, &off, &len);
                ck_assert_msg (off == next,
                               "count %zu, %d parts: block %d at %zu, want %zu",
                               counts[c], parts[p], i, off, next);
                if (i == 0)
                    first_len = len;
                ck_assert (len == first_len || len + 1 == first_len);
                next = off + len;
            }
            ck_assert_uint_eq (next, counts[c]);
        }
    }
}
END_TEST

START_TEST (test_parse_mode)
{
    gr_coll_mode_t m;

    ck_assert_int_eq (gr_coll_parse_mode (NULL, &m), 0);
    ck_assert_int_eq (m, GR_COLL_AUTO);
    ck_assert_int_eq (gr_coll_parse_mode ("nccl", &m), 0);
    ck_assert_int_eq (m, GR_COLL_NCCL);
    ck_assert_int_eq (gr_coll_parse_mode ("mpi", &m), 0);
    ck_assert_int_eq (m, GR_COLL_MPI);
    ck_assert_int_eq (gr_coll_parse_mode ("NCCL", &m), -1);
    ck_assert_int_eq (errno, EINVAL);
}
END_TEST

/* n segments of one process standing for n ranks, mapped by each other
 * as the MPI backend maps them (through /proc/PID/fd/FD). */
static void segs_link (gr_coll_seg_t **seg, int n, size_t cap)
{
    int64_t ids[3 * 4];
    gr_error_t err;

    ck_assert_int_le (n, 4);
    for (int k = 0; k < n; k++) {
        ck_assert_ptr_nonnull (seg[k] = gr_coll_seg_create (cap, &err));
        ck_assert_int_eq (gr_coll_seg_state (seg[k]), 0);
        gr_coll_seg_id (seg[k], ids + 3 * k);
    }
    for (int k = 0; k < n; k++) {
        ck_assert_msg (gr_coll_seg_map (seg[k], n, k, ids, &err) == 0, "%s", err.text);
    }
    for (int k = 0; k < n; k++) {
        gr_coll_seg_linked (seg[k], 1);
        ck_assert_int_eq (gr_coll_seg_state (seg[k]), 1);
    }
}

START_TEST (test_seg_allreduce)
{
    enum { N = 3, COUNT = 1001 };
    gr_coll_seg_t *seg[N];

    segs_link (seg, N, COUNT * sizeof (double));
    for (int round = 0; round < 2; round++) {
        gr_op_t op = round ? GR_AVG : GR_SUM;
        for (int k = 0; k < N; k++) {
            double *d = gr_coll_seg_data (seg[k]);
            for (int i = 0; i < COUNT; i++)
                d[i] = k * 1000.0 + i + 0.5 * round;
        }
        /* Once rank 0 arrived, it waits until the last one does. */
        for (int k = 0; k < N; k++) {
            gr_coll_seg_arrive (seg[k], COUNT);
            ck_assert_int_eq (gr_coll_seg_all_arrived (seg[0]), k == N - 1);
        }
        for (int k = 0; k < N; k++) {
            ck_assert_int_eq (gr_coll_seg_all_arrived (seg[k]), 1);
            ck_assert_int_eq (gr_coll_seg_counts_agree (seg[k], COUNT), 1);
            ck_assert_int_eq (gr_coll_seg_counts_agree (seg[k], COUNT - 1), 0);
        }
        for (int k = 0; k < N; k++)
            gr_coll_seg_reduce (seg[k], COUNT, GR_F64, op, N, 1);
        for (int k = 0; k < N; k++) {
            double *d = gr_coll_seg_data (seg[k]);
            for (int i = 0; i < COUNT; i++) {
                double want = 3000.0 + 3.0 * i + 1.5 * round;
                if (op == GR_AVG)
                    want /= N;
                ck_assert_msg (d[i] == want, "round %d rank %d [%d] = %g, want %g", round,
                               k, i, d[i], want);
            }
        }
    }
    /* Between nodes: the sum in rank 0's copy only, which the others
     * then take. */
    for (int k = 0; k < N; k++) {
        int32_t *d = gr_coll_seg_data (seg[k]);
        for (int i = 0; i < COUNT; i++)
            d[i] = k + 1;
    }
    for (int k = 0; k < N; k++)
        gr_coll_seg_reduce (seg[k], COUNT, GR_I32, GR_AVG, 1, 0);
    ck_assert_int_eq (((int32_t *)gr_coll_seg_data (seg[0]))[COUNT - 1], 6);
    ck_assert_int_eq (((int32_t *)gr_coll_seg_data (seg[1]))[COUNT - 1], 2);
    for (int k = 0; k < N; k++)
        gr_coll_seg_take_first (seg[k], COUNT * sizeof (int32_t));
    for (int k = 0; k < N; k++) {
        int32_t *d = gr_coll_seg_data (seg[k]);
        for (int i = 0; i < COUNT; i++)
            ck_assert_msg (d[i] == 6, "rank %d [%d] = %d, want 6", k, i, d[i]);
    }
    for (int k = 0; k < N; k++)
        gr_coll_seg_destroy (seg[k]);
}
END_TEST

/* Each rank reduces whole cache lines: with 2-byte elements and counts
 * that end inside a line (or leave ranks nothing), every element below
 * the count is reduced once and none above it is touched. */
START_TEST (test_seg_lines)
{
    enum { N = 4 };
    gr_coll_seg_t *seg[N];
    static const size_t counts[] = {0, 1, 31, 32, 33, 127, 129, 1000, 2048};

    segs_link (seg, N, 4096);
    for (size_t c = 0; c < sizeof (counts) / sizeof (counts[0]); c++) {
        size_t count = counts[c];
        for (int k = 0; k < N; k++) {
            uint16_t *d = gr_coll_seg_data (seg[k]);
            for (size_t i = 0; i < 2048; i++)
                d[i] = gr_coll_float_to_f16 ((float)(k + 1));
        }
        for (int k = 0; k < N; k++)
            gr_coll_seg_reduce (seg[k], count, GR_F16, GR_SUM, N, 1);
        for (int k = 0; k < N; k++) {
            uint16_t *d = gr_coll_seg_data (seg[k]);
            for (size_t i = 0; i < 2048; i++) {
                float want = i < count ? 10.0f : (float)(k + 1);
                ck_assert_msg (gr_coll_f16_to_float (d[i]) == want,
                               "count %zu rank %d [%zu] = %g, want %g", count, k, i,
                               (double)gr_coll_f16_to_float (d[i]), (double)want);
            }
        }
    }
    for (int k = 0; k < N; k++)
        gr_coll_seg_destroy (seg[k]);
}
END_TEST

START_TEST (test_seg_refused)
{
    gr_coll_seg_t *a, *b, *c;
    int64_t ids[6];
    gr_error_t err;

    ck_assert_ptr_nonnull (a = gr_coll_seg_create (4096, &err));
    ck_assert_ptr_nonnull (b = gr_coll_seg_create (8192, &err));
    ck_assert_ptr_nonnull (c = gr_coll_seg_create (4096, &err));
    /* Chunks of different sizes: the ranks allocated differently. */
    gr_coll_seg_id (a, ids);
    gr_coll_seg_id (b, ids + 3);
    errno = 0;
    ck_assert_int_eq (gr_coll_seg_map (a, 2, 0, ids, &err), -1);
    ck_assert_int_eq (errno, EINVAL);
    ck_assert_msg (strstr (err.text, "rank 1's fusion chunk differs in size"), "%s",
                   err.text);
    gr_coll_seg_linked (a, 0);
    ck_assert_int_eq (gr_coll_seg_state (a), -1);
    /* A rank without shared memory. */
    gr_coll_seg_id (c, ids);
    ids[3] = -1;
    ids[4] = -1;
    ids[5] = 4096;
    errno = 0;
    ck_assert_int_eq (gr_coll_seg_map (c, 2, 0, ids, &err), -1);
    ck_assert_int_eq (errno, ENOTSUP);
    ck_assert_msg (strstr (err.text, "rank 1 has no shared fusion memory"), "%s", err.text);
    gr_coll_seg_linked (c, 0);
    /* Refused chunks are still plain memory. */
    memset (gr_coll_seg_data (a), 7, 4096);
    memset (gr_coll_seg_data (c), 7, 4096);
    gr_coll_seg_destroy (a);
    gr_coll_seg_destroy (b);
    gr_coll_seg_destroy (c);
    gr_coll_seg_destroy (NULL);
}
END_TEST

int main (void)
{
    Suite *s = suite_create ("coll");
    TCase *tc = tcase_create ("coll");
    tcase_add_test (tc, test_f16_known);
    tcase_add_test (tc, test_f16_rounding);
    tcase_add_test (tc, test_f16_roundtrip);
    tcase_add_test (tc, test_bf16);
    tcase_add_test (tc, test_dtype_size);
    tcase_add_loop_test (tc, test_reduce_kernels, GR_F32, GR_BF16 + 1);
    tcase_add_test (tc, test_reduce_nan_and_wrap);
    tcase_add_test (tc, test_divide);
    tcase_add_test (tc, test_chunks);
    tcase_add_test (tc, test_blocks);
    tcase_add_test (tc, test_parse_mode);
    tcase_add_test (tc, test_seg_allreduce);
    tcase_add_test (tc, test_seg_lines);
    tcase_add_test (tc, test_seg_refused);
    suite_add_tcase (s, tc);
    return gr_check_main (s);
}
