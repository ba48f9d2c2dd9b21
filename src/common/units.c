#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "units.h"

int gr_parse_u64 (const char *s, uint64_t *out)
{
    char *end;
    unsigned long long v;
    if (!s || !isdigit ((unsigned char)*s))
        goto inval;
    errno = 0;
    v = strtoull (s, &end, 10);
    if (errno == ERANGE)
        return -1;
    if (*end != '\0')
        goto inval;
    *out = v;
    return 0;
inval:
    errno = EINVAL;
    return -1;
}

int gr_parse_duration (const char *s, double *out)
{
    double total = 0;
    const char *p = s;
    int parts = 0;

    if (!s || !*s)
        goto inval;
    while (*p) {
        char *end;
        double v;
        double mult = 1;
        if (!isdigit ((unsigned char)*p) && *p != '.')
            goto inval;
        errno = 0;
        v = strtod (p, &end);
        if (end == p || errno || !isfinite (v) || v < 0)
            goto inval;
        p = end;
        if (strncmp (p, "ms", 2) == 0) {
            mult = 1e-3;
            p += 2;
        }
        else if (*p == 's') {
            p++;
        }
        else if (*p == 'm') {
            mult = 60;
            p++;
        }
        else if (*p == 'h') {
            mult = 3600;
            p++;
        }
        else if (*p == 'd') {
            mult = 86400;
            p++;
        }
        else if (*p != '\0' || parts > 0)
            goto inval;
        total += v * mult;
        parts++;
    }
    *out = total;
    return 0;
inval:
    errno = EINVAL;
    return -1;
}

int gr_parse_size (const char *s, uint64_t *out)
{
    char *end;
    double v;
    double mult = 1;

    if (!s || !isdigit ((unsigned char)*s))
        goto inval;
    errno = 0;
    v = strtod (s, &end);
    if (end == s || errno || !isfinite (v) || v < 0)
        goto inval;
    switch (toupper ((unsigned char)*end)) {
        case '\0': break;
        case 'B': end++; break;
        case 'K': mult = 1024.0; end++; break;
        case 'M': mult = 1024.0 * 1024; end++; break;
        case 'G': mult = 1024.0 * 1024 * 1024; end++; break;
        case 'T': mult = 1024.0 * 1024 * 1024 * 1024; end++; break;
        default: goto inval;
    }
    if (mult > 1) {
        if (strcasecmp (end, "iB") == 0 || strcasecmp (end, "B") == 0)
            end += strlen (end);
    }
    if (*end != '\0')
        goto inval;
    v *= mult;
    if (v >= 18446744073709551615.0)
        goto inval;
    *out = (uint64_t)v;
    return 0;
inval:
    errno = EINVAL;
    return -1;
}

const char *gr_fmt_duration (double s, char *buf, int len)
{
    if (s < 0)
        s = 0;
    if (s < 1.0)
        snprintf (buf, len, "%.0fms", s * 1e3);
    else if (s < 60)
        snprintf (buf, len, "%.1fs", s);
    else if (s < 3600)
        snprintf (buf, len, "%dm%02ds", (int)s / 60, (int)s % 60);
    else
        snprintf (buf, len, "%dh%02dm", (int)(s / 3600), ((int)s % 3600) / 60);
    return buf;
}

const char *gr_fmt_localtime (double t, const char *format, char *buf, int len)
{
    time_t s = (time_t)t;
    struct tm tm;
    if (!localtime_r (&s, &tm) || strftime (buf, (size_t)len, format, &tm) == 0)
        snprintf (buf, (size_t)len, "%.0f", t);
    return buf;
}

int gr_parse_deadline (const char *s, double *out)
{
    double d;
    uint64_t v;

    if (!s || !*s)
        goto inval;
    if (s[0] == '+') {
        if (gr_parse_duration (s + 1, &d) < 0)
            return -1;
        struct timespec ts;
        clock_gettime (CLOCK_REALTIME, &ts);
        *out = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + d;
        return 0;
    }
    if (gr_parse_u64 (s, &v) == 0) {
        *out = (double)v;
        return 0;
    }
    const char *fmts[] = {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M",
                          "%Y-%m-%d %H:%M"};
    for (size_t i = 0; i < sizeof (fmts) / sizeof (fmts[0]); i++)
        if (gr_parse_localtime (s, fmts[i], out) == 0)
            return 0;
inval:
    errno = EINVAL;
    return -1;
}

int gr_parse_localtime (const char *s, const char *format, double *out)
{
    struct tm tm, want;
    const char *end;

    memset (&tm, 0, sizeof (tm));
    end = strptime (s, format, &tm);
    if (!end || *end != '\0')
        goto inval;
    /* strptime alone takes "2026-02-30", and mktime makes it March 2: the
     * round trip turns that away. */
    want = tm;
    tm.tm_isdst = -1;
    time_t t = mktime (&tm);
    if (t == (time_t)-1 || t <= 0 || tm.tm_year != want.tm_year
        || tm.tm_mon != want.tm_mon || tm.tm_mday != want.tm_mday)
        goto inval;
    *out = (double)t;
    return 0;
inval:
    errno = EINVAL;
    return -1;
}
