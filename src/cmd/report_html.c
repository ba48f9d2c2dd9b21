/* The page of gridrun report: HTML with inline CSS and SVG charts, no
 * scripts, nothing fetched.  Every string that comes from the run is
 * escaped (esc): task names and parameters can hold anything. */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/exec/exec.h"
#include "src/runtime/runtime.h"
#include "report.h"

#define W 1000                /* width of every chart, in SVG units */
#define HEAT_ROWS 200         /* nodes drawn in the heatmap */
#define FAIL_BARS 30          /* bars in each section of the failures chart */

static const char *state_names[] = {"pending", "running", "waiting", "done", "failed", "poison"};

/* ---- Text ----------------------------------------------------------------- */

/* s as HTML text or attribute value: markup characters as entities,
 * control characters as spaces, bytes that are not UTF-8 as U+FFFD. */
static void esc (FILE *f, const char *s)
{
    const unsigned char *p = (const unsigned char *)(s ? s : "");
    while (*p) {
        unsigned char c = *p;
        if (c < 0x80) {
            const char *ent = c == '&'    ? "&amp;"
                              : c == '<'  ? "&lt;"
                              : c == '>'  ? "&gt;"
                              : c == '"'  ? "&quot;"
                              : c == '\'' ? "&#39;"
                                          : NULL;
            if (ent)
                fputs (ent, f);
            else
                fputc (c < 0x20 || c == 0x7f ? ' ' : c, f);
            p++;
            continue;
        }
        /* A whole, shortest-form UTF-8 sequence, or one replacement. */
        int n = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3
                : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        int k = 1;
        while (n && k < n && (p[k] & 0xC0) == 0x80)
            k++;
        if (n && k == n && !(c == 0xE0 && p[1] < 0xA0) && !(c == 0xED && p[1] > 0x9F)
            && !(c == 0xF0 && p[1] < 0x90) && !(c == 0xF4 && p[1] > 0x8F)) {
            fwrite (p, 1, (size_t)n, f);
            p += n;
        }
        else {
            fputs ("&#xFFFD;", f);
            p += k;
        }
    }
}

/* Seconds for people: 850 µs, 12.3 ms, 1.52 s, 4.1 min, 2.3 h, 1.5 d. */
static const char *fmt_dur (double s, char *buf, size_t len)
{
    if (!(s >= 0) || !isfinite (s))
        snprintf (buf, len, "-");
    else if (s == 0)
        snprintf (buf, len, "0 s");
    else if (s < 1e-3)
        snprintf (buf, len, "%.3g µs", s * 1e6);
    else if (s < 1)
        snprintf (buf, len, "%.3g ms", s * 1e3);
    else if (s < 120)
        snprintf (buf, len, "%.3g s", s);
    else if (s < 7200)
        snprintf (buf, len, "%.3g min", s / 60);
    else if (s < 172800)
        snprintf (buf, len, "%.3g h", s / 3600);
    else
        snprintf (buf, len, "%.3g d", s / 86400);
    return buf;
}

/* A tick of a duration axis that reaches top seconds, every step: in
 * the unit of the top, with as many decimals as the step needs. */
static const char *fmt_dur_tick (double v, double top, double step, char *buf, size_t len)
{
    double u = top < 1e-3 ? 1e-6 : top < 1 ? 1e-3 : top < 120 ? 1 : top < 7200 ? 60 : 3600;
    const char *name = u == 1e-6 ? "µs" : u == 1e-3 ? "ms" : u == 1 ? "s" : u == 60 ? "min"
                                                                                  : "h";
    double st = step / u;
    int dec = st >= 1 ? 0 : (int)ceil (-log10 (st) - 1e-9);
    if (fabs (v) < step * 1e-6)
        v = 0;
    snprintf (buf, len, "%.*f %s", dec > 9 ? 9 : dec, v / u, name);
    return buf;
}

/* A tick label: as many decimals as the step needs, k and M for large. */
static const char *fmt_tick (double v, double step, char *buf, size_t len)
{
    if (fabs (v) < step * 1e-6)
        v = 0;
    if (step >= 1e6 && fmod (v, 1e6) == 0)
        snprintf (buf, len, "%gM", v / 1e6);
    else if (step >= 1e3 && fmod (v, 1e3) == 0)
        snprintf (buf, len, "%gk", v / 1e3);
    else {
        int dec = step >= 1 ? 0 : (int)ceil (-log10 (step) - 1e-9);
        snprintf (buf, len, "%.*f", dec > 9 ? 9 : dec, v);
    }
    return buf;
}

static const char *fmt_time (double epoch, char *buf, size_t len)
{
    struct tm tm;
    time_t t;
    if (!(epoch > 0 && epoch < 1e11)) {
        snprintf (buf, len, "-");
        return buf;
    }
    t = (time_t)epoch;
    if (!localtime_r (&t, &tm) || !strftime (buf, len, "%Y-%m-%d %H:%M:%S %Z", &tm))
        snprintf (buf, len, "-");
    return buf;
}

/* A rate for people: 3 significant digits, whole numbers when large. */
static const char *fmt_rate (double v, char *buf, size_t len)
{
    snprintf (buf, len, v >= 100 ? "%.0f" : "%.3g", v);
    return buf;
}

static double nice_step (double range, int target)
{
    if (!(range > 0))
        return 1;
    double raw = range / target, mag = pow (10, floor (log10 (raw))), f = raw / mag;
    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

/* The top of a count axis: a whole number of nice steps at or above max. */
static double nice_top (double max, int target, double *stepp)
{
    if (!(max > 0))
        max = 1;
    double step = nice_step (max, target);
    *stepp = step;
    return ceil (max / step - 1e-9) * step;
}

/* ---- SVG pieces ------------------------------------------------------------ */

static void svg_open (FILE *f, const char *id, const char *title, int h)
{
    fprintf (f, "<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" "
             "viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\" "
             "aria-labelledby=\"%s-title\">\n<title id=\"%s-title\">", id, W, h, W, h, id, id);
    esc (f, title);
    fprintf (f, "</title>\n<text class=\"ct\" x=\"%d\" y=\"20\" text-anchor=\"middle\">", W / 2);
    esc (f, title);
    fputs ("</text>\n", f);
}

/* A chart that has nothing to draw says why. */
static void svg_empty (FILE *f, const char *id, const char *title, const char *why)
{
    svg_open (f, id, title, 90);
    fprintf (f, "<rect class=\"frame\" x=\"1\" y=\"32\" width=\"%d\" height=\"52\"/>\n"
             "<text class=\"msg\" x=\"%d\" y=\"63\" text-anchor=\"middle\">", W - 2, W / 2);
    esc (f, why);
    fputs ("</text>\n</svg>\n", f);
}

/* A y axis of counts from 0 to top on [y0, y0 + h] at x0, with grid lines
 * across width w, and its label. */
static void y_axis (FILE *f, double x0, double y0, double w, double h, double top,
                    double step, const char *label)
{
    char b[32];
    fprintf (f, "<g class=\"axis\">\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
             x0, y0, x0, y0 + h);
    for (double v = 0; v <= top * (1 + 1e-9); v += step) {
        double y = y0 + h - v / top * h;
        if (v > 0)
            fprintf (f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
                     x0, y, x0 + w, y);
        fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                 x0 - 5, y, x0, y, x0 - 8, y + 4, fmt_tick (v, step, b, sizeof (b)));
    }
    fprintf (f, "<text class=\"al\" transform=\"translate(%.1f %.1f) rotate(-90)\" "
             "text-anchor=\"middle\">", x0 - 52, y0 + h / 2);
    esc (f, label);
    fputs ("</text>\n</g>\n", f);
}

/* An x axis at the bottom of the plot, [lo, hi] in the axis's unit
 * (divisor: seconds per unit), ticks every step. */
static void x_axis (FILE *f, double x0, double ybot, double w, double lo, double hi,
                    double step, const char *label)
{
    char b[32];
    fprintf (f, "<g class=\"axis\">\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
             x0, ybot, x0 + w, ybot);
    for (double v = ceil (lo / step - 1e-9) * step; v <= hi * (1 + 1e-9) + 1e-12; v += step) {
        double x = x0 + (v - lo) / (hi - lo) * w;
        fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                 x, ybot, x, ybot + 5, x, ybot + 18, fmt_tick (v, step, b, sizeof (b)));
    }
    fprintf (f, "<text class=\"al\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", x0 + w / 2,
             ybot + 38);
    esc (f, label);
    fputs ("</text>\n</g>\n", f);
}

/* Seconds per unit for a time axis over span seconds, and the unit's name. */
static double time_unit (double span, const char **name)
{
    if (span < 180) {
        *name = "s";
        return 1;
    }
    if (span < 3 * 3600) {
        *name = "min";
        return 60;
    }
    if (span < 3 * 86400) {
        *name = "h";
        return 3600;
    }
    *name = "days";
    return 86400;
}

/* The heatmap's colour for a busy fraction: from a pale grey (idle)
 * through light and mid blue to a dark blue (all cpus busy). */
static const double stops[][3] = {
    {0xf0, 0xf2, 0xf5}, {0xc6, 0xdb, 0xef}, {0x6b, 0xae, 0xd6}, {0x21, 0x71, 0xb5},
    {0x08, 0x30, 0x6b},
};

static void heat_colour (double v, char *buf, size_t len)
{
    if (!(v > 0))
        v = 0;
    if (v > 1)
        v = 1;
    double x = v * 4;
    int i = x >= 4 ? 3 : (int)x;
    double t = x - i;
    int c[3];
    for (int k = 0; k < 3; k++)
        c[k] = (int)lround (stops[i][k] + (stops[i + 1][k] - stops[i][k]) * t);
    snprintf (buf, len, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* ---- Charts ------------------------------------------------------------------ */

static double series_span (const gr_report_t *r)
{
    return (double)r->nb * r->width;
}

static const char *src_name (const char *src)
{
    return src && strcmp (src, "journal") == 0 ? "the journal" : src ? src : "nowhere";
}

static const char *no_series (const gr_report_t *r)
{
    if (!r->series_src)
        return r->series_note[0] ? r->series_note
                                 : "no events.jsonl and no journal: nothing to draw";
    if (r->alive && r->have_events)
        return "no task has ended yet (events.jsonl is written about once a second)";
    return "no task has ended yet";
}

static void chart_throughput (const gr_report_t *r, FILE *f)
{
    const char *title = "Throughput over time";
    double peak = 0;
    for (size_t b = 0; b < r->nb; b++)
        if ((r->done[b] + r->fail[b]) / r->width > peak)
            peak = (r->done[b] + r->fail[b]) / r->width;
    if (!r->series_src || !r->have_span || r->nb == 0
        || r->ev_done + r->ev_failures + r->ev_requeued == 0) {
        svg_empty (f, "throughput", title, no_series (r));
        return;
    }
    const double x0 = 80, y0 = 44, w = 890, h = 220;
    const char *un;
    double span = series_span (r), u = time_unit (span, &un), step, top;
    char label[64], c1[32];
    top = nice_top (peak, 5, &step);
    svg_open (f, "throughput", title, 320);
    y_axis (f, x0, y0, w, h, top, step, "tasks a second");
    snprintf (label, sizeof (label), "time since the first event (%s)", un);
    x_axis (f, x0, y0 + h, w, 0, span / u, nice_step (span / u, 10), label);
    fputs ("<g class=\"bars\">\n", f);
    double bw = w / (double)r->nb;
    for (size_t b = 0; b < r->nb; b++) {
        double d = r->done[b] / r->width, e = r->fail[b] / r->width;
        double x = x0 + (double)b * bw, hd = d / top * h, he = e / top * h;
        if (d > 0)
            fprintf (f, "<rect class=\"done\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                     "height=\"%.2f\"><title>%s: %s done/s</title></rect>\n",
                     x + 0.5, y0 + h - hd, bw > 2 ? bw - 1 : bw, hd,
                     fmt_dur ((double)b * r->width, label, sizeof (label)),
                     fmt_rate (d, c1, sizeof (c1)));
        if (e > 0)
            fprintf (f, "<rect class=\"fail\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                     "height=\"%.2f\"><title>%s: %s failed/s</title></rect>\n",
                     x + 0.5, y0 + h - hd - he, bw > 2 ? bw - 1 : bw, he,
                     fmt_dur ((double)b * r->width, label, sizeof (label)),
                     fmt_rate (e, c1, sizeof (c1)));
    }
    fputs ("</g>\n", f);
    fprintf (f, "<g class=\"legend\"><rect class=\"done\" x=\"%.0f\" y=\"30\" width=\"12\" "
             "height=\"10\"/><text x=\"%.0f\" y=\"39\">succeeded</text>"
             "<rect class=\"fail\" x=\"%.0f\" y=\"30\" width=\"12\" height=\"10\"/>"
             "<text x=\"%.0f\" y=\"39\">failed attempts</text></g>\n",
             x0 + w - 210, x0 + w - 194, x0 + w - 110, x0 + w - 94);
    fputs ("</svg>\n", f);
}

static int node_cmp (const void *a, const void *b)
{
    const gr_report_node_t *x = *(gr_report_node_t *const *)a, *y = *(gr_report_node_t *const *)b;
    return strverscmp (x->name, y->name);
}

/* A node's capacity in cpus: its workers' cpus from run.h5, else one
 * a worker seen (guessed is set). */
static double capacity (const gr_report_node_t *n, bool *guessed)
{
    *guessed = n->cpus == 0;
    if (n->cpus)
        return n->cpus;
    size_t seen = n->seen ? json_object_size (n->seen) : 0;
    return seen ? (double)seen : 1;
}

/* Cut a label to at most max characters (UTF-8 aware) into buf. */
static const char *short_label (const char *s, size_t max, char *buf, size_t len)
{
    size_t i = 0, chars = 0;
    while (s[i] && chars < max) {
        i++;
        while (((unsigned char)s[i] & 0xC0) == 0x80)
            i++;
        chars++;
    }
    if (!s[i])
        snprintf (buf, len, "%s", s);
    else
        snprintf (buf, len, "%.*s\xe2\x80\xa6", (int)i, s);
    return buf;
}

static void chart_heatmap (const gr_report_t *r, FILE *f)
{
    const char *title = "Utilization by node over time";
    gr_report_node_t **nodes = NULL;
    size_t n = 0;

    if (!r->series_src || !r->have_span || r->nb == 0
        || r->ev_done + r->ev_failures + r->ev_requeued == 0) {
        svg_empty (f, "heatmap", title, no_series (r));
        return;
    }
    if (r->nnodes && !(nodes = calloc (r->nnodes, sizeof (*nodes)))) {
        svg_empty (f, "heatmap", title, "out of memory");
        return;
    }
    for (size_t i = 0; i < r->nnodes; i++)
        if (r->nodes[i].busy && (r->nodes[i].cpus || r->nodes[i].seen))
            nodes[n++] = &r->nodes[i];
    if (n == 0) {
        free (nodes);
        svg_empty (f, "heatmap", title, "no task has run on any node yet");
        return;
    }
    qsort (nodes, n, sizeof (*nodes), node_cmp);
    size_t rows = n > HEAT_ROWS ? HEAT_ROWS : n;
    double rh = 360.0 / (double)rows;
    rh = rh > 24 ? 24 : rh < 5 ? 5 : rh;
    const double x0 = 180, y0 = 44, w = 740;
    double h = rh * (double)rows;
    const char *un;
    double span = series_span (r), u = time_unit (span, &un), cw = w / (double)r->nb;
    int height = (int)(y0 + h + 120);
    bool any_guess = false;
    char col[16], label[160], b1[32];

    svg_open (f, "heatmap", title, height);
    fprintf (f, "<defs><linearGradient id=\"heat-scale\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">");
    for (int s = 0; s <= 4; s++) {
        heat_colour (s / 4.0, col, sizeof (col));
        fprintf (f, "<stop offset=\"%d%%\" stop-color=\"%s\"/>", s * 25, col);
    }
    fputs ("</linearGradient></defs>\n", f);
    fprintf (f, "<text class=\"al\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">node</text>"
             "<text class=\"al\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"start\">mean</text>\n",
             x0 - 8, y0 - 6, x0 + w + 8, y0 - 6);
    for (size_t i = 0; i < rows; i++) {
        const gr_report_node_t *nd = nodes[i];
        bool guessed;
        double cap = capacity (nd, &guessed) * r->width, y = y0 + (double)i * rh;
        any_guess |= guessed;
        fprintf (f, "<g class=\"row\" shape-rendering=\"crispEdges\"><title>");
        esc (f, nd->name);
        fprintf (f, ": %s%.0f cpu%s, %.1f%% busy over the run</title>\n",
                 guessed ? "capacity guessed as " : "", cap / r->width,
                 cap / r->width == 1 ? "" : "s",
                 100 * nd->busy_total / (cap * (double)r->nb));
        if (rh >= 8) {
            fprintf (f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\"%s>", x0 - 8,
                     y + rh / 2 + 4, rh < 12 ? " class=\"small\"" : "");
            esc (f, short_label (nd->name, 24, label, sizeof (label)));
            fprintf (f, "%s</text>\n", guessed ? "*" : "");
            fprintf (f, "<text x=\"%.1f\" y=\"%.1f\"%s>%.0f%%</text>\n", x0 + w + 8,
                     y + rh / 2 + 4, rh < 12 ? " class=\"small\"" : "",
                     100 * nd->busy_total / (cap * (double)r->nb));
        }
        for (size_t b = 0; b < r->nb; b++) {
            heat_colour (nd->busy[b] / cap, col, sizeof (col));
            fprintf (f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                     "fill=\"%s\"/>", x0 + (double)b * cw, y, cw + 0.3,
                     rh >= 10 ? rh - 1 : rh, col);
        }
        fputs ("\n</g>\n", f);
    }
    snprintf (label, sizeof (label), "time since the first event (%s)", un);
    x_axis (f, x0, y0 + h, w, 0, span / u, nice_step (span / u, 10), label);
    /* The colour scale. */
    double ly = y0 + h + 62, lw = 300;
    fprintf (f, "<g class=\"legend\"><text x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">busy "
             "fraction</text><rect x=\"%.0f\" y=\"%.0f\" width=\"%.0f\" height=\"12\" "
             "fill=\"url(#heat-scale)\" class=\"scale\"/>\n", x0 - 8, ly + 10, x0, ly, lw);
    for (int s = 0; s <= 4; s++)
        fprintf (f, "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\"/><text x=\"%.1f\" "
                 "y=\"%.0f\" text-anchor=\"middle\">%d%%</text>\n", x0 + lw * s / 4, ly + 12,
                 x0 + lw * s / 4, ly + 16, x0 + lw * s / 4, ly + 28, s * 25);
    fprintf (f, "<text x=\"%.0f\" y=\"%.0f\">cpu-seconds of the tasks that ran / (the "
             "node's cpus × %s)</text>\n", x0 + lw + 20, ly + 10,
             fmt_dur (r->width, b1, sizeof (b1)));
    if (any_guess)
        fprintf (f, "<text x=\"%.0f\" y=\"%.0f\">* cpus unknown (not in run.h5): one cpu "
                 "a worker seen, darkest at 100%% and above</text>\n", x0 + lw + 20, ly + 26);
    if (n > rows)
        fprintf (f, "<text x=\"%.0f\" y=\"%.0f\">%zu more nodes not drawn</text>\n",
                 x0 + lw + 20, ly + 42, n - rows);
    fputs ("</g>\n</svg>\n", f);
    free (nodes);
}

static double bin_x (const gr_report_t *r, double v)
{
    if (r->logx)
        return (log10 (v > r->xlo ? v : r->xlo) - log10 (r->xlo))
               / (log10 (r->xhi) - log10 (r->xlo));
    return (v - r->xlo) / (r->xhi - r->xlo);
}

static void chart_durations (const gr_report_t *r, FILE *f)
{
    const char *title = "Task durations";
    if (r->wall.n == 0 || r->nbins == 0) {
        char why[320];
        snprintf (why, sizeof (why), "%s%s",
                  r->table_src ? "no task has finished an attempt yet" : "no task table: ",
                  r->table_src ? "" : r->table_note);
        svg_empty (f, "durations", title, why);
        return;
    }
    const double x0 = 80, y0 = 64, w = 890, h = 200;
    uint64_t peak = 0;
    char b[32], b2[32];
    for (size_t i = 0; i < r->nbins; i++)
        if (r->bins[i] > peak)
            peak = r->bins[i];
    double step, top = nice_top ((double)peak, 5, &step);
    if (step < 1) {
        step = 1;
        top = ceil (top);
    }
    svg_open (f, "durations", title, 340);
    y_axis (f, x0, y0, w, h, top, step, "tasks");
    double ybot = y0 + h;
    /* The x axis: decades on a log scale, else nice seconds. */
    fprintf (f, "<g class=\"axis\">\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n",
             x0, ybot, x0 + w, ybot);
    if (r->logx) {
        for (double d = r->xlo; d <= r->xhi * 1.0001; d *= 10) {
            double x = x0 + bin_x (r, d) * w;
            fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                     x, ybot, x, ybot + 6, x, ybot + 19, fmt_dur (d, b, sizeof (b)));
            for (int m = 2; m <= 9 && d * m < r->xhi; m++) {
                double xm = x0 + bin_x (r, d * m) * w;
                fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>", xm,
                         ybot, xm, ybot + 3);
            }
            fputc ('\n', f);
        }
    }
    else {
        double st = nice_step (r->xhi - r->xlo, 10);
        for (double v = ceil (r->xlo / st - 1e-9) * st; v <= r->xhi * (1 + 1e-9); v += st) {
            double x = x0 + bin_x (r, v) * w;
            fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                     x, ybot, x, ybot + 5, x, ybot + 18,
                     fmt_dur_tick (v, r->xhi, st, b, sizeof (b)));
        }
    }
    fprintf (f, "<text class=\"al\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">wall time of "
             "the last attempt%s</text>\n</g>\n", x0 + w / 2, ybot + 40,
             r->logx ? " (logarithmic scale)" : "");
    fputs ("<g class=\"bars\">\n", f);
    double bw = w / (double)r->nbins;
    for (size_t i = 0; i < r->nbins; i++) {
        if (!r->bins[i])
            continue;
        double lo, hi, bh = (double)r->bins[i] / top * h;
        if (r->logx) {
            lo = r->xlo * pow (r->xhi / r->xlo, (double)i / (double)r->nbins);
            hi = r->xlo * pow (r->xhi / r->xlo, (double)(i + 1) / (double)r->nbins);
        }
        else {
            lo = r->xlo + (r->xhi - r->xlo) * (double)i / (double)r->nbins;
            hi = r->xlo + (r->xhi - r->xlo) * (double)(i + 1) / (double)r->nbins;
        }
        fprintf (f, "<rect class=\"dur\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\">"
                 "<title>%s to %s: %" PRIu64 " task%s</title></rect>\n",
                 x0 + (double)i * bw + 0.5, ybot - bh, bw > 2 ? bw - 1 : bw, bh,
                 fmt_dur (lo, b, sizeof (b)), fmt_dur (hi, b2, sizeof (b2)), r->bins[i],
                 r->bins[i] == 1 ? "" : "s");
    }
    fputs ("</g>\n", f);
    /* The quantiles: a line each, labels stacked so they never overlap. */
    static const struct {
        double q;
        const char *name, *cls;
    } qs[] = {{0.5, "P50", "p50"}, {0.95, "P95", "p95"}, {0.99, "P99", "p99"}};
    fputs ("<g class=\"quantiles\">\n", f);
    for (int i = 0; i < 3; i++) {
        double v = r->q[i], x = x0 + bin_x (r, v) * w;
        bool left = x > x0 + w - 140;
        fprintf (f, "<line class=\"%s\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text class=\"%s\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">%s %s</text>\n",
                 qs[i].cls, x, y0 - 22 + 13.0 * i, x, ybot, qs[i].cls, left ? x - 4 : x + 4,
                 y0 - 22 + 13.0 * i + 9, left ? "end" : "start", qs[i].name,
                 fmt_dur (v, b, sizeof (b)));
    }
    fputs ("</g>\n</svg>\n", f);
}

typedef struct bar {
    const char *name;
    double v;
} bar_t;

static int bar_cmp (const void *a, const void *b)
{
    const bar_t *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? 1 : -1;
    return strverscmp (x->name, y->name);
}

/* Sum n bars by name (rack or zone) into out; returns how many. */
static size_t group_bars (const gr_report_t *r, bool zone, bool from_prom, bar_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nnodes; i++) {
        const gr_report_node_t *nd = &r->nodes[i];
        double v = from_prom ? nd->prom_failures : (double)nd->failures;
        const char *name = zone ? nd->zone : nd->rack;
        if (!(v > 0))
            continue;
        if (!name)
            name = "(unknown)";
        size_t j;
        for (j = 0; j < k && strcmp (out[j].name, name) != 0; j++)
            ;
        if (j == k)
            out[k++] = (bar_t){.name = name, .v = 0};
        out[j].v += v;
    }
    return k;
}

static void chart_failures (const gr_report_t *r, FILE *f)
{
    const char *title = "Failed attempts by failure domain";
    bool from_prom = !r->series_src;
    bar_t *bars[3] = {NULL, NULL, NULL};
    size_t nbars[3] = {0, 0, 0};
    bool racks = false;
    double total = 0, max = 0;
    static const char *levels[] = {"node", "rack", "zone"};

    if (from_prom && !r->have_prom) {
        svg_empty (f, "failures", title, no_series (r));
        return;
    }
    for (int l = 0; l < 3; l++) {
        if (!(bars[l] = calloc (r->nnodes + 1, sizeof (bar_t)))) {
            svg_empty (f, "failures", title, "out of memory");
            goto out;
        }
    }
    for (size_t i = 0; i < r->nnodes; i++) {
        const gr_report_node_t *nd = &r->nodes[i];
        double v = from_prom ? nd->prom_failures : (double)nd->failures;
        racks |= nd->rack != NULL;
        if (v > 0)
            bars[0][nbars[0]++] = (bar_t){.name = nd->name, .v = v};
        total += v;
    }
    if (!from_prom && r->failures_unplaced) {
        bars[0][nbars[0]++] = (bar_t){.name = "(not placed)", .v = (double)r->failures_unplaced};
        total += (double)r->failures_unplaced;
    }
    if (total == 0) {
        svg_empty (f, "failures", title, "no attempt failed");
        goto out;
    }
    if (racks) {
        nbars[1] = group_bars (r, false, from_prom, bars[1]);
        nbars[2] = group_bars (r, true, from_prom, bars[2]);
    }
    size_t rows = 0;
    for (int l = 0; l < 3; l++) {
        qsort (bars[l], nbars[l], sizeof (bar_t), bar_cmp);
        rows += nbars[l] > FAIL_BARS ? FAIL_BARS + 1 : nbars[l];
        for (size_t i = 0; i < nbars[l]; i++)
            if (bars[l][i].v > max)
                max = bars[l][i].v;
    }
    const double x0 = 200, y0 = 44, w = 700, rh = 18;
    int sections = (nbars[0] > 0) + (nbars[1] > 0) + (nbars[2] > 0);
    double h = rh * (double)rows + 24.0 * sections;
    double step, top = nice_top (max, 6, &step);
    if (step < 1) {
        step = 1;
        top = ceil (top);
    }
    char b[32], label[160];
    svg_open (f, "failures", title, (int)(y0 + h + 60));
    /* Grid and the axis first, the bars over them. */
    fprintf (f, "<g class=\"axis\">\n");
    for (double v = 0; v <= top * (1 + 1e-9); v += step) {
        double x = x0 + v / top * w;
        fprintf (f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
                 "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                 x, y0, x, y0 + h, x, y0 + h, x, y0 + h + 5, x, y0 + h + 18,
                 fmt_tick (v, step, b, sizeof (b)));
    }
    fprintf (f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>"
             "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n"
             "<text class=\"al\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">failed attempts "
             "(retried or not)%s</text>\n</g>\n", x0, y0 + h, x0 + w, y0 + h, x0, y0, x0,
             y0 + h, x0 + w / 2, y0 + h + 38,
             from_prom ? ", from metrics.prom: the latest incarnation" : "");
    double y = y0;
    for (int l = 0; l < 3; l++) {
        if (!nbars[l])
            continue;
        fprintf (f, "<text class=\"sec\" x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">by %s</text>\n",
                 x0 - 8, y + 16, levels[l]);
        y += 24;
        double rest = 0;
        for (size_t i = 0; i < nbars[l]; i++) {
            if (i >= FAIL_BARS) {
                rest += bars[l][i].v;
                continue;
            }
            double bw = bars[l][i].v / top * w;
            fprintf (f, "<g><title>%s ", levels[l]);
            esc (f, bars[l][i].name);
            fprintf (f, ": %.0f</title><text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">",
                     bars[l][i].v, x0 - 8, y + 13);
            esc (f, short_label (bars[l][i].name, 26, label, sizeof (label)));
            fprintf (f, "</text><rect class=\"fail\" x=\"%.1f\" y=\"%.1f\" width=\"%.2f\" "
                     "height=\"%.1f\"/><text x=\"%.1f\" y=\"%.1f\">%.0f</text></g>\n",
                     x0, y + 2, bw, rh - 4, x0 + bw + 4, y + 13, bars[l][i].v);
            y += rh;
        }
        if (nbars[l] > FAIL_BARS) {
            fprintf (f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%zu more %ss</text>"
                     "<text x=\"%.1f\" y=\"%.1f\">%.0f failed attempts in all</text>\n",
                     x0 - 8, y + 13, nbars[l] - FAIL_BARS, levels[l], x0 + 4, y + 13, rest);
            y += rh;
        }
    }
    fputs ("</svg>\n", f);
out:
    for (int l = 0; l < 3; l++)
        free (bars[l]);
}

/* ---- Tables -------------------------------------------------------------------- */

static const char *state_name (int s)
{
    return s >= 0 && s < 6 ? state_names[s] : "?";
}

static void reason_of (const gr_report_task_t *t, char *buf, size_t len)
{
    char sig[32];
    if (t->reason)
        snprintf (buf, len, "%s", t->reason);
    else if (t->signal)
        snprintf (buf, len, "killed by %s", gr_signal_name (t->signal, sig, sizeof (sig)));
    else if (t->exit_code >= 0)
        snprintf (buf, len, "exit %d", t->exit_code);
    else
        snprintf (buf, len, "-");
}

static int slow_cmp (const void *a, const void *b)
{
    const gr_report_task_t *x = *(gr_report_task_t *const *)a, *y = *(gr_report_task_t *const *)b;
    return x->wall < y->wall ? 1 : x->wall > y->wall ? -1 : 0;
}

static void task_cells (FILE *f, const gr_report_task_t *t)
{
    fputs ("<td class=\"name\">", f);
    esc (f, t->name);
    fputs ("</td><td class=\"params\">", f);
    esc (f, t->params);
    fprintf (f, "</td><td><code>%016" PRIx64 "</code></td>", t->key);
}

static void table_slowest (const gr_report_t *r, FILE *f)
{
    const gr_report_task_t *s[GR_REPORT_SLOWEST];
    char b[32];
    if (r->nslow == 0) {
        fprintf (f, "<p class=\"note\">No task has finished an attempt%s.</p>\n",
                 r->table_src ? " yet" : " that the run directory records");
        return;
    }
    for (size_t i = 0; i < r->nslow; i++)
        s[i] = &r->slow[i];
    qsort (s, r->nslow, sizeof (s[0]), slow_cmp);
    fputs ("<table id=\"slowest\">\n<thead><tr><th class=\"n\">#</th><th>task</th>"
           "<th>parameters</th><th>key</th><th class=\"n\">wall</th><th>host</th>"
           "<th class=\"n\">attempts</th><th>state</th></tr></thead>\n<tbody>\n", f);
    for (size_t i = 0; i < r->nslow; i++) {
        fprintf (f, "<tr><td class=\"n\">%zu</td>", i + 1);
        task_cells (f, s[i]);
        fprintf (f, "<td class=\"n\">%s</td><td>", fmt_dur (s[i]->wall, b, sizeof (b)));
        esc (f, s[i]->host);
        fprintf (f, "</td><td class=\"n\">%" PRIu32 "</td><td class=\"st-%s\">%s</td></tr>\n",
                 s[i]->attempts, state_name (s[i]->state), state_name (s[i]->state));
    }
    fputs ("</tbody>\n</table>\n", f);
}

static void table_failed (const gr_report_t *r, FILE *f)
{
    char reason[400];
    if (r->failed_total == 0) {
        fprintf (f, "<p class=\"note\">%s</p>\n",
                 r->table_src ? "No task failed for good." : "No task table to read.");
        return;
    }
    fputs ("<table id=\"failed\">\n<thead><tr><th>task</th><th>parameters</th><th>key</th>"
           "<th>reason</th><th class=\"n\">attempts</th><th>host</th><th>state</th></tr>"
           "</thead>\n<tbody>\n", f);
    for (size_t i = 0; i < r->nfailed; i++) {
        const gr_report_task_t *t = &r->failed[i];
        fputs ("<tr>", f);
        task_cells (f, t);
        reason_of (t, reason, sizeof (reason));
        fputs ("<td>", f);
        esc (f, reason);
        fprintf (f, "</td><td class=\"n\">%" PRIu32 "</td><td>", t->attempts);
        esc (f, t->host);
        fprintf (f, "</td><td class=\"st-%s\">%s</td></tr>\n", state_name (t->state),
                 state_name (t->state));
    }
    fputs ("</tbody>\n</table>\n", f);
    if (r->failed_total > r->nfailed)
        fprintf (f, "<p class=\"note\">… and %" PRIu64 " more failed tasks (gridrun status "
                 "--failed N RUN lists more).</p>\n", r->failed_total - r->nfailed);
}

/* ---- The header ------------------------------------------------------------- */

static void kv (FILE *f, const char *k)
{
    fprintf (f, "<tr><th>%s</th><td>", k);
}

static void header (const gr_report_t *r, FILE *f)
{
    char b1[64], b2[64], b3[64];
    const gr_snap_counts_t *c = &r->counts;

    fputs ("<h1>gridrun report: ", f);
    esc (f, r->job_name ? r->job_name : "(unnamed run)");
    fputs ("</h1>\n<p class=\"sub\">", f);
    esc (f, r->run_dir);
    fprintf (f, "</p>\n<table class=\"kv\" id=\"summary\">\n");

    kv (f, "state");
    if (r->have_exit) {
        const char *what = r->exit_code == GR_EXIT_OK ? "finished: every task succeeded"
                           : r->exit_code == GR_EXIT_FAILED ? "finished with failures"
                           : r->exit_code == GR_EXIT_RESUMABLE ? "drained (resumable)"
                                                               : "ended with an error";
        fprintf (f, "<span class=\"state\">%s</span>, exit code %d", what, r->exit_code);
    }
    else if (r->alive)
        fprintf (f, "<span class=\"state\">running</span> (master pid %ld)", r->master_pid);
    else if (r->remote) {
        fputs ("<span class=\"state\">running or stopped</span>: its master runs on ", f);
        esc (f, r->master_host);
        fputs (", where gridrun status can tell", f);
    }
    else
        fputs ("<span class=\"state\">stopped</span>: not running and no exit code "
               "(resume with gridrun run --run-dir)", f);
    if (r->have_h5) {
        fputs ("; the snapshot says ", f);
        esc (f, r->meta.state);
        fprintf (f, " at %s", fmt_time (r->h5_written, b1, sizeof (b1)));
    }
    if (r->run_starts > 1 || r->meta.incarnation > 1)
        fprintf (f, "; incarnation %u", r->meta.incarnation > r->run_starts
                                           ? r->meta.incarnation : r->run_starts);
    fputs ("</td></tr>\n", f);

    kv (f, "tasks");
    if (r->have_counts) {
        uint64_t known = c->done + c->failed + c->skipped + c->running + c->waiting;
        fprintf (f, "%" PRIu64 ": <b>%" PRIu64 "</b> done, <b>%" PRIu64 "</b> failed",
                 c->total, c->done, c->failed);
        if (c->poison)
            fprintf (f, " (%" PRIu64 " poison)", c->poison);
        fprintf (f, ", %" PRIu64 " skipped, %" PRIu64 " running, %" PRIu64 " waiting, %" PRIu64
                 " not started", c->skipped, c->running, c->waiting,
                 c->total > known ? c->total - known : 0);
    }
    else
        fputs ("unknown (no task table)", f);
    fputs ("</td></tr>\n", f);
    if (r->have_h5) {
        kv (f, "attempts");
        fprintf (f, "%" PRIu64 " ended: %" PRIu64 " retries, %" PRIu64 " timeouts, %" PRIu64
                 " crashes", c->attempts, c->retries, c->timeouts, c->crashes);
        if (c->duplicates)
            fprintf (f, ", %" PRIu64 " duplicate completions ignored", c->duplicates);
        fputs ("</td></tr>\n", f);
    }

    /* Elapsed: the first event to the last (now while running), else the
     * snapshot's start to its writing. */
    double start = r->have_span ? r->t0 : r->have_h5 ? r->meta.started : 0;
    double end = r->alive ? r->now : r->have_span ? r->t1 : r->have_h5 ? r->h5_written : 0;
    double elapsed = start > 0 && end > start ? end - start : 0;
    kv (f, "elapsed");
    if (elapsed > 0)
        fprintf (f, "%s, from %s%s", fmt_dur (elapsed, b1, sizeof (b1)),
                 fmt_time (start, b2, sizeof (b2)), r->alive ? " to now" : "");
    else
        fputs ("-", f);
    fputs ("</td></tr>\n", f);
    kv (f, "throughput");
    if (elapsed > 0 && (r->have_counts || r->ev_done)) {
        double done = r->have_counts ? (double)c->done : (double)r->ev_done;
        fprintf (f, "%s tasks/s overall", fmt_rate (done / elapsed, b1, sizeof (b1)));
        double peak = 0;
        for (size_t b = 0; b < r->nb; b++)
            if (r->done[b] / r->width > peak)
                peak = r->done[b] / r->width;
        if (peak > 0)
            fprintf (f, ", %s at the peak (%s buckets)", fmt_rate (peak, b2, sizeof (b2)),
                     fmt_dur (r->width, b3, sizeof (b3)));
    }
    else
        fputs ("-", f);
    fputs ("</td></tr>\n", f);

    kv (f, "workers");
    size_t nodes = 0;
    for (size_t i = 0; i < r->nnodes; i++)
        nodes += r->nodes[i].workers > 0 || r->nodes[i].seen;
    if (r->nworkers) {
        fprintf (f, "%" PRIu32 " (%" PRIu32 " cpus) on %zu node%s", r->nworkers, r->ncpus,
                 nodes, nodes == 1 ? "" : "s");
        if (r->nlost)
            fprintf (f, ", %" PRIu32 " lost", r->nlost);
    }
    else if (nodes) {
        size_t seen = 0;
        for (size_t i = 0; i < r->nnodes; i++)
            seen += r->nodes[i].seen ? json_object_size (r->nodes[i].seen) : 0;
        fprintf (f, "%zu seen at work on %zu node%s", seen, nodes, nodes == 1 ? "" : "s");
    }
    else
        fputs ("-", f);
    if (r->lost)
        fprintf (f, "; %" PRIu64 " worker%s lost during the run", r->lost, r->lost == 1 ? "" : "s");
    if (r->slurm_job[0]) {
        fputs ("; Slurm job ", f);
        esc (f, r->slurm_job);
    }
    fputs ("</td></tr>\n", f);
    if (r->have_h5_util) {
        kv (f, "utilization");
        fprintf (f, "%.1f%% of the workers' cpu time busy with tasks (latest incarnation)",
                 100 * r->h5_utilization);
        fputs ("</td></tr>\n", f);
    }
    kv (f, "task wall time");
    if (r->wall.n)
        fprintf (f, "P50 %s, P95 %s, P99 %s; ", fmt_dur (r->q[0], b1, sizeof (b1)),
                 fmt_dur (r->q[1], b2, sizeof (b2)), fmt_dur (r->q[2], b3, sizeof (b3)));
    if (r->wall.n) {
        fprintf (f, "from %s", fmt_dur (r->wall.min, b1, sizeof (b1)));
        fprintf (f, " to %s, mean %s over %" PRIu64 " task%s", fmt_dur (r->wall.max, b2,
                                                                      sizeof (b2)),
                 fmt_dur (r->wall.sum / (double)r->wall.n, b3, sizeof (b3)), r->wall.n,
                 r->wall.n == 1 ? "" : "s");
    }
    else
        fputs ("-", f);
    fputs ("</td></tr>\n", f);
    if (r->drains || r->quarantines || r->ev_requeued) {
        kv (f, "events");
        fprintf (f, "%" PRIu64 " drain%s, %" PRIu64 " quarantine%s, %" PRIu64
                 " attempt%s given back", r->drains, r->drains == 1 ? "" : "s", r->quarantines,
                 r->quarantines == 1 ? "" : "s", r->ev_requeued, r->ev_requeued == 1 ? "" : "s");
        fputs ("</td></tr>\n", f);
    }
    fputs ("</table>\n", f);
}

static void sources (const gr_report_t *r, FILE *f)
{
    char b[64];
    fputs ("<h2 id=\"sources\">Sources</h2>\n<ul class=\"note\">\n<li>task table: ", f);
    if (r->table_src && strcmp (r->table_src, "run.h5") == 0)
        fprintf (f, "run.h5, the snapshot written %s (%" PRIu64 " rows)",
                 fmt_time (r->h5_written, b, sizeof (b)), r->rows);
    else if (r->table_src) {
        fprintf (f, "the journal (%" PRIu64 " rows): ", r->rows);
        esc (f, r->table_note);
    }
    else
        esc (f, r->table_note);
    fputs ("</li>\n<li>time series: ", f);
    if (r->have_events) {
        fprintf (f, "events.jsonl, %" PRIu64 " line%s", r->ev_lines, r->ev_lines == 1 ? "" : "s");
        if (r->ev_bad)
            fprintf (f, ", <b class=\"bad\">%" PRIu64 " malformed line%s skipped</b>", r->ev_bad,
                     r->ev_bad == 1 ? "" : "s");
    }
    else
        esc (f, r->series_note);
    fputs ("</li>\n<li>racks and zones: ", f);
    if (r->have_prom) {
        fputs ("metrics.prom", f);
        if (r->prom_bad)
            fprintf (f, " (%" PRIu64 " lines not understood)", r->prom_bad);
    }
    else
        fputs ("unknown (no metrics.prom in the run directory)", f);
    if (r->nodes_dropped)
        fprintf (f, "</li>\n<li>%" PRIu64 " samples on nodes past the first %d not counted",
                 r->nodes_dropped, GR_REPORT_NODES_MAX);
    fprintf (f, "</li>\n<li>written by gridrun %s at %s</li>\n</ul>\n", PACKAGE_VERSION,
             fmt_time (r->now, b, sizeof (b)));
}

static const char *css =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,"
    "sans-serif;color:#1f2328;background:#fff;margin:24px auto;max-width:1040px;"
    "padding:0 16px}\n"
    "h1{font-size:22px;margin:0 0 2px}\n"
    "h2{font-size:17px;margin:32px 0 6px;padding-bottom:3px;border-bottom:1px solid #d8dee4}\n"
    ".sub,.note{color:#59636e}.note{font-size:13px;margin:4px 0 8px}\n"
    "table{border-collapse:collapse;font-size:13px;margin:6px 0}\n"
    "th,td{padding:3px 8px;border-bottom:1px solid #eaeef2;text-align:left;vertical-align:top}\n"
    "thead th{border-bottom:2px solid #d8dee4;white-space:nowrap}\n"
    ".kv th{color:#59636e;font-weight:normal;white-space:nowrap}\n"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\n"
    "td.name{white-space:nowrap}td.params{max-width:320px;overflow-wrap:anywhere}\n"
    "code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}\n"
    ".state{font-weight:600}.bad{color:#cf222e}\n"
    ".st-done{color:#1a7f37}.st-failed,.st-poison{color:#cf222e}\n"
    "svg.chart{display:block;max-width:100%;height:auto;margin:4px 0 8px}\n"
    "svg text{font:11px system-ui,-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;"
    "fill:#1f2328}\n"
    "svg .ct{font-size:14px;font-weight:600}svg .al{font-size:12px;fill:#424a53}\n"
    "svg .sec{font-size:12px;font-weight:600}svg .small{font-size:8px}\n"
    "svg .msg{font-size:13px;fill:#59636e}\n"
    "svg .frame{fill:#f6f8fa;stroke:#d8dee4}\n"
    "svg .axis line{stroke:#57606a;stroke-width:1}svg .axis line.grid{stroke:#eaeef2}\n"
    "svg .legend line{stroke:#57606a}svg .scale{stroke:#afb8c1}\n"
    "svg rect.done{fill:#4c78a8}svg rect.fail{fill:#e45756}svg rect.dur{fill:#72b7b2}\n"
    "svg line.p50{stroke:#1a7f37;stroke-width:1.5;stroke-dasharray:5 3}"
    "svg text.p50{fill:#1a7f37;font-weight:600}\n"
    "svg line.p95{stroke:#bf8700;stroke-width:1.5;stroke-dasharray:5 3}"
    "svg text.p95{fill:#9a6700;font-weight:600}\n"
    "svg line.p99{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:5 3}"
    "svg text.p99{fill:#cf222e;font-weight:600}\n"
    "@media print{body{margin:0;max-width:none}}\n";

int gr_report_html (const gr_report_t *r, FILE *f)
{
    char b1[32], b2[32];

    fputs ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
           "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
           "<meta name=\"generator\" content=\"gridrun report\">\n<title>gridrun report: ", f);
    esc (f, r->job_name ? r->job_name : "(unnamed run)");
    fprintf (f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", css);
    header (r, f);

    bool series = r->series_src && r->have_span && r->nb
                  && r->ev_done + r->ev_failures + r->ev_requeued > 0;
    fputs ("<h2 id=\"throughput-h\">Throughput</h2>\n", f);
    if (series)
        fprintf (f, "<p class=\"note\">Attempts that ended in each %s of the run, as tasks a "
                 "second: succeeded, and failed (retried or not); from %s.</p>\n",
                 fmt_dur (r->width, b1, sizeof (b1)), src_name (r->series_src));
    chart_throughput (r, f);

    fputs ("<h2 id=\"heatmap-h\">Utilization by node</h2>\n", f);
    if (series)
        fprintf (f, "<p class=\"note\">A cell is the cpu-seconds of the tasks that ran on a "
                 "node during %s, over the cpus of its workers (as run.h5 or the journal "
                 "lists them) in that time.  A task's use is spread evenly over the wall "
                 "time before it ended%s; from %s.</p>\n",
                 fmt_dur (r->width, b2, sizeof (b2)),
                 r->have_events ? " (a batch of finished tasks over its longest task, or "
                                  "longer when the worker's cpus could not run them all at "
                                  "once)" : "",
                 src_name (r->series_src));
    chart_heatmap (r, f);

    fputs ("<h2 id=\"durations-h\">Task durations</h2>\n", f);
    if (r->wall.n)
        fprintf (f, "<p class=\"note\">The wall time of each task's last attempt (%" PRIu64
                 " task%s; from %s).  P50, P95 and P99 are %s.</p>\n",
                 r->wall.n, r->wall.n == 1 ? "" : "s", src_name (r->table_src),
                 r->exact ? "exact" : "within about 3% (a log-linear histogram)");
    chart_durations (r, f);

    fputs ("<h2 id=\"failures-h\">Failures by failure domain</h2>\n", f);
    if (r->series_src && r->ev_failures + r->failures_unplaced > 0)
        fprintf (f, "<p class=\"note\">Failed attempts, retried or not, by the node they ran "
                 "on (from %s)%s.</p>\n", src_name (r->series_src),
                 r->have_prom ? ", and by its rack and zone as metrics.prom names them" : "");
    else if (!r->series_src && r->have_prom)
        fputs ("<p class=\"note\">From metrics.prom's gridrun_failures_total: the latest "
               "incarnation only.</p>\n", f);
    chart_failures (r, f);

    fputs ("<h2 id=\"slowest-h\">The slowest tasks</h2>\n", f);
    table_slowest (r, f);
    fprintf (f, "<h2 id=\"failed-h\">Failed tasks (%" PRIu64 ")</h2>\n", r->failed_total);
    table_failed (r, f);
    sources (r, f);
    fputs ("</body>\n</html>\n", f);
    return ferror (f) ? -1 : 0;
}
