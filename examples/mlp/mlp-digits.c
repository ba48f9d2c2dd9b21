/* A data-parallel MLP on the 8x8 digits data set, trained with libgridrun.
 *
 *   mpirun -n 2 mlp-digits --data share/gridrun/digits.csv --ckpt DIR
 *
 * or, without mpirun, as a gridrun group task (kind: group, ranks: 2; see
 * jobs/train-mlp-group.yaml), where libgridrun finds the other ranks
 * through torchrun's environment and talks to them over TCP.  Both end at
 * the same bits.
 *
 * Every rank holds the whole model.  Each step takes a global minibatch
 * from a shuffled epoch order; rank r computes the gradient of the samples
 * i of the batch with i % size == r, one fused allreduce sums the
 * gradients (and the loss), which live in the fusion's own memory
 * (gr_fusion_alloc: no copies, and shared by the ranks of a node), and
 * every rank applies the same SGD-with-
 * momentum update.  Every --ckpt-every steps the weights, the momentum and
 * the step go into an HDF5 checkpoint; a restarted run loads the newest
 * valid one and goes on.  Nothing else carries state between steps (the
 * epoch order is a function of the seed and the epoch), so an interrupted
 * and resumed run ends bit for bit where an uninterrupted one does, on the
 * same number of ranks: the sums are done in double, in the same order.
 *
 * On SIGTERM, SIGINT or SIGUSR2 (gr_preempt_requested) it saves a
 * checkpoint and exits 75, the code gridrun treats as "resumable".
 *
 * The last line is the result, for people and for tests:
 *   final step 3000 loss 0x1.2bd3p-7 (0.009150) train 1.0000 test 0.9750
 * where the loss (hex, exact) is the mean cross-entropy over the training
 * set after the last step. */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gridrun.h"

#define NFEAT 64
#define NCLASS 10
#define MAXSAMPLES 4096

typedef struct {
    const char *data;
    const char *ckpt;
    const char *partner_dir;
    long steps;
    long ckpt_every;
    int batch;
    int hidden;
    double lr;
    double momentum;
    uint64_t seed;
    int keep;
    int async;
    int shared;
    long stop_after;  /* testing: exit 3 without saving after this step */
    long fail_once;   /* testing: rank 1 exits 3 after this step, on a first
                         start only (GRIDRUN_RESTART_COUNT unset or 0) */
} opts_t;

typedef struct {
    int h;
    double *w1, *b1, *w2, *b2;      /* parameters */
    double *v1, *c1, *v2, *c2;      /* momentum of each */
    double *g1, *gb1, *g2, *gb2;    /* gradient sums of one step */
    double *hid, *out;              /* scratch: one sample's activations */
} model_t;

static double X[MAXSAMPLES][NFEAT];
static int Y[MAXSAMPLES];
static int nsamples;

/* End every rank: MPI_Abort under mpirun; without MPI (a group task)
 * this rank exits, and gridrun stops the others. */
static void abort_all (int code)
{
    if (gr_comm () != MPI_COMM_NULL)
        MPI_Abort (gr_comm (), code);
    exit (code);
}

static int die (const char *what)
{
    fprintf (stderr, "mlp-digits: rank %d: %s: %s\n", gr_rank (), what, gr_last_error ());
    abort_all (1);
    return 1;
}

/* splitmix64: a small, fully specified generator, so the epoch order and
 * the initial weights are the same on every rank and every run. */
static uint64_t rng_next (uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static double rng_uniform (uint64_t *s)
{
    return (double)(rng_next (s) >> 11) * 0x1.0p-53;
}

static void shuffle (int *a, int n, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(rng_next (&s) % (uint64_t)(i + 1));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

static int load_data (const char *path)
{
    FILE *f = fopen (path, "r");
    if (!f) {
        fprintf (stderr, "mlp-digits: cannot open data '%s': %s\n", path, strerror (errno));
        return -1;
    }
    char line[2048];
    int lineno = 0;
    while (fgets (line, sizeof (line), f)) {
        lineno++;
        if (nsamples == MAXSAMPLES) {
            fprintf (stderr, "mlp-digits: %s: more than %d samples\n", path, MAXSAMPLES);
            goto error;
        }
        char *p = line, *end;
        for (int k = 0; k <= NFEAT; k++) {
            long v = strtol (p, &end, 10);
            if (end == p || v < 0 || (k < NFEAT && v > 16) || (k == NFEAT && v >= NCLASS)) {
                fprintf (stderr, "mlp-digits: %s:%d: field %d: expected %s\n", path, lineno,
                         k + 1, k < NFEAT ? "a pixel value 0..16" : "a class 0..9");
                goto error;
            }
            if (k < NFEAT)
                X[nsamples][k] = (double)v / 16.0;
            else
                Y[nsamples] = (int)v;
            p = end + (*end == ',');
        }
        nsamples++;
    }
    fclose (f);
    if (nsamples < 100) {
        fprintf (stderr, "mlp-digits: %s: only %d samples\n", path, nsamples);
        return -1;
    }
    return 0;
error:
    fclose (f);
    return -1;
}

static double *vec (size_t n)
{
    double *p = calloc (n ? n : 1, sizeof (double));
    if (!p) {
        fprintf (stderr, "mlp-digits: out of memory\n");
        exit (1);
    }
    return p;
}

static void model_init (model_t *m, int h, uint64_t seed)
{
    m->h = h;
    m->w1 = vec (NFEAT * h), m->b1 = vec (h), m->w2 = vec (h * NCLASS), m->b2 = vec (NCLASS);
    m->v1 = vec (NFEAT * h), m->c1 = vec (h), m->v2 = vec (h * NCLASS), m->c2 = vec (NCLASS);
    m->g1 = vec (NFEAT * h), m->gb1 = vec (h), m->g2 = vec (h * NCLASS), m->gb2 = vec (NCLASS);
    m->hid = vec (h), m->out = vec (NCLASS);
    /* Glorot-uniform weights, zero biases. */
    uint64_t s = seed ^ 0x5eed;
    double a1 = sqrt (6.0 / (NFEAT + h)), a2 = sqrt (6.0 / (h + NCLASS));
    for (int i = 0; i < NFEAT * h; i++)
        m->w1[i] = (2 * rng_uniform (&s) - 1) * a1;
    for (int i = 0; i < h * NCLASS; i++)
        m->w2[i] = (2 * rng_uniform (&s) - 1) * a2;
}

/* Forward one sample; returns its cross-entropy and leaves the softmax in
 * m->out and the hidden activations in m->hid. */
static double forward (model_t *m, const double *x, int y)
{
    int h = m->h;
    for (int j = 0; j < h; j++) {
        double z = m->b1[j];
        for (int k = 0; k < NFEAT; k++)
            z += x[k] * m->w1[k * h + j];
        m->hid[j] = z > 0 ? z : 0;  /* ReLU */
    }
    double mx = -INFINITY;
    for (int c = 0; c < NCLASS; c++) {
        double z = m->b2[c];
        for (int j = 0; j < h; j++)
            z += m->hid[j] * m->w2[j * NCLASS + c];
        m->out[c] = z;
        if (z > mx)
            mx = z;
    }
    double sum = 0;
    for (int c = 0; c < NCLASS; c++)
        sum += (m->out[c] = exp (m->out[c] - mx));
    for (int c = 0; c < NCLASS; c++)
        m->out[c] /= sum;
    return -log (m->out[y] > 1e-300 ? m->out[y] : 1e-300);
}

static int argmax (const double *v)
{
    int best = 0;
    for (int c = 1; c < NCLASS; c++)
        if (v[c] > v[best])
            best = c;
    return best;
}

/* Add one sample's gradient to the sums. */
static void backward (model_t *m, const double *x, int y)
{
    int h = m->h;
    double dout[NCLASS];
    for (int c = 0; c < NCLASS; c++)
        dout[c] = m->out[c] - (c == y);
    for (int c = 0; c < NCLASS; c++)
        m->gb2[c] += dout[c];
    for (int j = 0; j < h; j++) {
        double dh = 0;
        for (int c = 0; c < NCLASS; c++) {
            m->g2[j * NCLASS + c] += m->hid[j] * dout[c];
            dh += m->w2[j * NCLASS + c] * dout[c];
        }
        if (m->hid[j] <= 0)
            continue;
        m->gb1[j] += dh;
        for (int k = 0; k < NFEAT; k++)
            m->g1[k * h + j] += x[k] * dh;
    }
}

static void sgd (double *w, double *v, const double *g, size_t n, double scale,
                 const opts_t *o)
{
    for (size_t i = 0; i < n; i++) {
        v[i] = o->momentum * v[i] - o->lr * g[i] * scale;
        w[i] += v[i];
    }
}

/* Mean loss and accuracy over the samples idx[0..n), the work split over
 * the ranks and the sums reduced. */
static void evaluate (model_t *m, const int *idx, int n, double *loss, double *acc)
{
    double s[2] = {0, 0};
    for (int i = gr_rank (); i < n; i += gr_size ()) {
        s[0] += forward (m, X[idx[i]], Y[idx[i]]);
        s[1] += argmax (m->out) == Y[idx[i]];
    }
    if (gr_allreduce (GR_IN_PLACE, s, 2, GR_F64, GR_SUM) < 0)
        die ("allreduce");
    *loss = s[0] / n;
    *acc = s[1] / n;
}

/* The arrays a checkpoint holds: the parameters and their momentum. */
typedef struct {
    const char *name;
    double *data;
    int ndims;
    uint64_t dims[2];
} array_t;

#define NARRAYS 8

static void arrays_of (model_t *m, array_t a[NARRAYS])
{
    uint64_t h = (uint64_t)m->h;
    a[0] = (array_t){"w1", m->w1, 2, {NFEAT, h}};
    a[1] = (array_t){"b1", m->b1, 1, {h}};
    a[2] = (array_t){"w2", m->w2, 2, {h, NCLASS}};
    a[3] = (array_t){"b2", m->b2, 1, {NCLASS}};
    a[4] = (array_t){"v1", m->v1, 2, {NFEAT, h}};
    a[5] = (array_t){"c1", m->c1, 1, {h}};
    a[6] = (array_t){"v2", m->v2, 2, {h, NCLASS}};
    a[7] = (array_t){"c2", m->c2, 1, {NCLASS}};
}

static void ckpt_save (gr_ckpt_t *c, model_t *m, long step, double loss)
{
    array_t a[NARRAYS];
    arrays_of (m, a);
    if (gr_ckpt_begin (c, step) < 0)
        die ("checkpoint save");
    for (int i = 0; i < NARRAYS; i++) {
        if (gr_ckpt_add (c, a[i].name, GR_F64, a[i].ndims, a[i].dims, a[i].data,
                         GR_CKPT_REPLICATED) < 0)
            die ("checkpoint save");
    }
    if (gr_ckpt_attr_i64 (c, "hidden", m->h) < 0
        || gr_ckpt_attr_f64 (c, "batch_loss", loss) < 0
        || gr_ckpt_attr_str (c, "model", "mlp 64-relu-10 softmax") < 0
        || gr_ckpt_save (c) < 0)
        die ("checkpoint save");
}

static long ckpt_restore (gr_ckpt_t *c, model_t *m)
{
    int64_t step, h;
    if (gr_ckpt_load (c, &step) < 0) {
        if (errno == ENOENT)
            return 0;
        die ("checkpoint load");
    }
    if (gr_ckpt_get_i64 (c, "hidden", &h) < 0)
        die ("checkpoint load");
    if (h != m->h) {
        if (gr_rank () == 0)
            fprintf (stderr, "mlp-digits: the checkpoint is of a model with %lld hidden units, "
                     "not %d: use --hidden %lld or another --ckpt directory\n",
                     (long long)h, m->h, (long long)h);
        abort_all (2);
    }
    array_t a[NARRAYS];
    arrays_of (m, a);
    for (int i = 0; i < NARRAYS; i++) {
        size_t bytes = sizeof (double) * a[i].dims[0] * (a[i].ndims > 1 ? a[i].dims[1] : 1);
        if (gr_ckpt_read (c, a[i].name, a[i].data, bytes) < 0)
            die ("checkpoint read");
    }
    const char *why = gr_ckpt_load_report (c);
    if (gr_rank () == 0)
        printf ("resumed from step %lld%s%s\n", (long long)step, *why ? ": " : "", why);
    return (long)step;
}

static void usage (void)
{
    fprintf (stderr,
             "usage: mlp-digits --data FILE [--ckpt DIR] [--steps N] [--ckpt-every K]\n"
             "         [--batch B] [--hidden H] [--lr LR] [--momentum M] [--seed S]\n"
             "         [--keep K] [--async] [--shared] [--partner-dir DIR]\n"
             "(--ckpt defaults to $GRIDRUN_CKPT_DIR, which gridrun's group tasks set)\n");
}

static int parse (int argc, char **argv, opts_t *o)
{
    static const struct option lo[] = {
        {"data", 1, NULL, 'd'},       {"ckpt", 1, NULL, 'c'},  {"steps", 1, NULL, 'n'},
        {"ckpt-every", 1, NULL, 'k'}, {"batch", 1, NULL, 'b'}, {"hidden", 1, NULL, 'H'},
        {"lr", 1, NULL, 'l'},         {"momentum", 1, NULL, 'm'}, {"seed", 1, NULL, 's'},
        {"keep", 1, NULL, 'K'},       {"async", 0, NULL, 'a'}, {"shared", 0, NULL, 'S'},
        {"partner-dir", 1, NULL, 'p'}, {"stop-after", 1, NULL, 'x'},
        {"fail-once-at", 1, NULL, 'f'}, {NULL, 0, NULL, 0},
    };
    *o = (opts_t){.steps = 3000, .ckpt_every = 100, .batch = 64, .hidden = 64, .lr = 0.05,
                  .momentum = 0.9, .seed = 1, .keep = 3, .stop_after = -1, .fail_once = -1};
    int c, li = 0;
    char *end = NULL;
    while ((c = getopt_long (argc, argv, "", lo, &li)) != -1) {
        errno = 0;
        switch (c) {
            case 'd': o->data = optarg; break;
            case 'c': o->ckpt = optarg; break;
            case 'p': o->partner_dir = optarg; break;
            case 'a': o->async = 1; break;
            case 'S': o->shared = 1; break;
            case 'n': o->steps = strtol (optarg, &end, 10); break;
            case 'k': o->ckpt_every = strtol (optarg, &end, 10); break;
            case 'x': o->stop_after = strtol (optarg, &end, 10); break;
            case 'f': o->fail_once = strtol (optarg, &end, 10); break;
            case 'b': o->batch = (int)strtol (optarg, &end, 10); break;
            case 'H': o->hidden = (int)strtol (optarg, &end, 10); break;
            case 'K': o->keep = (int)strtol (optarg, &end, 10); break;
            case 's': o->seed = strtoull (optarg, &end, 10); break;
            case 'l': o->lr = strtod (optarg, &end); break;
            case 'm': o->momentum = strtod (optarg, &end); break;
            default: usage (); return -1;
        }
        if (strchr ("nkxfbHKslm", c) && (errno || *end || end == optarg)) {
            fprintf (stderr, "mlp-digits: --%s '%s' is not a number\n", lo[li].name, optarg);
            return -1;
        }
    }
    if (!o->ckpt && getenv ("GRIDRUN_CKPT_DIR") && *getenv ("GRIDRUN_CKPT_DIR"))
        o->ckpt = getenv ("GRIDRUN_CKPT_DIR");
    if (!o->data || optind < argc) {
        usage ();
        return -1;
    }
    const char *restart = getenv ("GRIDRUN_RESTART_COUNT");
    if (restart && *restart && strcmp (restart, "0") != 0)
        o->fail_once = -1;
    if (o->steps < 0 || o->ckpt_every < 1 || o->batch < 1 || o->hidden < 1
        || o->hidden > 4096 || o->lr <= 0 || o->keep < 0) {
        fprintf (stderr, "mlp-digits: --steps >= 0, --ckpt-every >= 1, --batch >= 1, "
                 "--hidden 1..4096, --lr > 0 and --keep >= 0, please\n");
        return -1;
    }
    return 0;
}

int main (int argc, char **argv)
{
    opts_t o;
    if (gr_init (&argc, &argv) < 0) {
        fprintf (stderr, "mlp-digits: %s\n", gr_last_error ());
        return 1;
    }
    if (parse (argc, argv, &o) < 0 || load_data (o.data) < 0) {
        gr_finalize ();
        return 2;
    }
    int rank = gr_rank ();

    /* The split: a fixed permutation of the samples, the last 20% held
     * out for the test. */
    int *perm = malloc (sizeof (int) * nsamples);
    for (int i = 0; i < nsamples; i++)
        perm[i] = i;
    shuffle (perm, nsamples, o.seed ^ 0xd1617);
    int ntest = nsamples / 5, ntrain = nsamples - ntest;
    int *train = perm, *test = perm + ntrain;
    if (o.batch > ntrain)
        o.batch = ntrain;
    long per_epoch = ntrain / o.batch;

    model_t m;
    model_init (&m, o.hidden, o.seed);
    /* Every rank made the same weights; rank 0's are the ones used. */
    if (gr_broadcast (m.w1, (size_t)NFEAT * m.h, GR_F64, 0) < 0
        || gr_broadcast (m.w2, (size_t)m.h * NCLASS, GR_F64, 0) < 0)
        die ("broadcast");

    gr_ckpt_t *ck = NULL;
    long step = 0;
    if (o.ckpt) {
        gr_ckpt_opts_t co = {.layout = o.shared ? GR_CKPT_SHARED : GR_CKPT_PER_RANK,
                             .keep = o.keep, .async = o.async,
                             .partner_dir = o.partner_dir};
        if (!(ck = gr_ckpt_open (o.ckpt, &co)))
            die ("checkpoint open");
        step = ckpt_restore (ck, &m);
    }

    /* One fused allreduce a step: the four gradients and the loss.  They
     * live in the fusion's own memory (gr_fusion_alloc), which it reduces
     * where it lies: no copies, and no messages between the ranks of one
     * node. */
    double *stat = NULL;
    gr_fusion_t *fu = gr_fusion_create (GR_F64, GR_SUM);
    free (m.g1), free (m.gb1), free (m.g2), free (m.gb2);
    if (!fu || !(m.g1 = gr_fusion_alloc (fu, (size_t)NFEAT * m.h))
        || !(m.gb1 = gr_fusion_alloc (fu, (size_t)m.h))
        || !(m.g2 = gr_fusion_alloc (fu, (size_t)m.h * NCLASS))
        || !(m.gb2 = gr_fusion_alloc (fu, NCLASS)) || !(stat = gr_fusion_alloc (fu, 2)))
        die ("fusion");

    int *order = malloc (sizeof (int) * ntrain);
    long order_epoch = -1;
    double batch_loss = 0;
    int preempted = 0;
    while (step < o.steps) {
        long epoch = step / per_epoch, pos = step % per_epoch;
        if (epoch != order_epoch) {
            memcpy (order, train, sizeof (int) * ntrain);
            shuffle (order, ntrain, o.seed * 0x100000001b3ULL + (uint64_t)epoch);
            order_epoch = epoch;
        }
        memset (m.g1, 0, sizeof (double) * NFEAT * m.h);
        memset (m.gb1, 0, sizeof (double) * m.h);
        memset (m.g2, 0, sizeof (double) * m.h * NCLASS);
        memset (m.gb2, 0, sizeof (double) * NCLASS);
        stat[0] = stat[1] = 0;
        const int *b = order + pos * o.batch;
        for (int i = rank; i < o.batch; i += gr_size ()) {
            stat[0] += forward (&m, X[b[i]], Y[b[i]]);
            stat[1] += argmax (m.out) == Y[b[i]];
            backward (&m, X[b[i]], Y[b[i]]);
        }
        if (gr_fusion_allreduce (fu) < 0)
            die ("allreduce");
        double scale = 1.0 / o.batch;
        sgd (m.w1, m.v1, m.g1, (size_t)NFEAT * m.h, scale, &o);
        sgd (m.b1, m.c1, m.gb1, (size_t)m.h, scale, &o);
        sgd (m.w2, m.v2, m.g2, (size_t)m.h * NCLASS, scale, &o);
        sgd (m.b2, m.c2, m.gb2, NCLASS, scale, &o);
        batch_loss = stat[0] * scale;
        step++;
        gr_metrics_samples ((uint64_t)o.batch); /* the global batch: all ranks' samples */
        if (rank == 0 && (step % 500 == 0 || step == o.steps))
            printf ("step %ld epoch %ld batch loss %.6f\n", step, epoch, batch_loss);
        if (step == o.stop_after || (step == o.fail_once && rank == 1)) {
            /* Testing: a crash between checkpoints, nothing saved. */
            fflush (stdout);
            _exit (3);
        }
        /* Every rank sees the notice at its own moment; agree on the step
         * to stop at, so that all save the same one. */
        int pre = gr_preempt_requested ();
        if (gr_allreduce (GR_IN_PLACE, &pre, 1, GR_I32, GR_MAX) < 0)
            die ("allreduce");
        if (ck && (step % o.ckpt_every == 0 || step == o.steps || pre))
            ckpt_save (ck, &m, step, batch_loss);
        if (pre && step < o.steps) {
            preempted = 1;
            break;
        }
    }
    if (ck && (gr_ckpt_wait (ck) < 0 || gr_ckpt_close (ck) < 0))
        die ("checkpoint");

    int rc = 0;
    if (preempted) {
        if (rank == 0)
            printf ("preempted after step %ld: checkpoint saved; run again to resume\n", step);
        rc = 75;
    }
    else {
        double loss, acc, tloss, tacc;
        evaluate (&m, train, ntrain, &loss, &acc);
        evaluate (&m, test, ntest, &tloss, &tacc);
        if (rank == 0)
            printf ("final step %ld loss %a (%.6f) train %.4f test %.4f\n", step, loss, loss,
                    acc, tacc);
    }
    fflush (stdout);
    gr_fusion_destroy (fu); /* and with it the gradients */
    free (order);
    free (perm);
    gr_finalize ();
    return rc;
}
