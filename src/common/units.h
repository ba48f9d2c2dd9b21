/* Parsing of the units people write: durations ("90", "1.5s", "10m",
 * "2h", "1h30m", "1d") and sizes ("512", "64K", "2G", "1.5GiB").
 * Both return 0 and fill *out, or -1 with errno = EINVAL for anything
 * else (including negative values and trailing junk). */
#ifndef GR_COMMON_UNITS_H
#define GR_COMMON_UNITS_H

#include <stdint.h>

/* Seconds. A bare number is seconds. */
int gr_parse_duration (const char *s, double *out);
/* Bytes, with binary multiples (K = 1024). A bare number is bytes. */
int gr_parse_size (const char *s, uint64_t *out);
/* A non-negative integer that fits in 64 bits, nothing else. */
int gr_parse_u64 (const char *s, uint64_t *out);

/* A point in time as epoch seconds: "+DURATION" from now, plain epoch
 * seconds, or local "YYYY-mm-ddTHH:MM[:SS]" (a space may replace the T). */
int gr_parse_deadline (const char *s, double *out);

/* All of s, a local time in strptime's format, as epoch seconds (after
 * 1970); -1 with errno EINVAL otherwise, a date that does not exist
 * (2026-02-30) included. */
int gr_parse_localtime (const char *s, const char *format, double *out);

/* Format seconds for people: "850ms", "12.3s", "4m05s", "2h03m". */
const char *gr_fmt_duration (double s, char *buf, int len);

/* Format epoch seconds as local time with a strftime format (Slurm's way:
 * "%Y-%m-%dT%H:%M:%S"); the plain number where that fails. */
const char *gr_fmt_localtime (double t, const char *format, char *buf, int len);

#endif
