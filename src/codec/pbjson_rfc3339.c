/*
 * pbjson_rfc3339.c - RFC 3339 text of google.protobuf.Timestamp (see
 * tse_rfc3339_format and tse_rfc3339_parse in pbjson.h), by civil-calendar
 * arithmetic on day counts: no time zone database, no locale, and every
 * year from 0001 to 9999.
 */
#include <string.h>

#include "codec/pbjson_internal.h"

/* 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the Timestamp range. */
#define TS_MIN_SECONDS  (-62135596800LL)
#define TS_MAX_SECONDS  253402300799LL
#define SECONDS_PER_DAY 86400
/* Days from 0001-01-01 to 1970-01-01. */
#define EPOCH_DAY       719162

/* Days before each month (index = month - 1), common and leap years. */
static const int16_t days_before_month[2][13] = {
    {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365},
    {0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335, 366},
};

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Days from 0001-01-01 to January 1st of year y (y >= 1). */
static int64_t days_before_year(int64_t y)
{
    y -= 1;
    return y * 365 + y / 4 - y / 100 + y / 400;
}

/* Splits a day count from 0001-01-01 (>= 0) into a civil date. */
static void civil_from_days(int64_t days, int *year, int *month, int *day)
{
    int64_t y = days / 366 + 1; /* a lower bound; at most ~30 steps short */
    int leap, m = 1;
    int64_t doy;

    while (days_before_year(y + 1) <= days)
        y++;
    doy = days - days_before_year(y);
    leap = is_leap(y);
    while (m < 12 && days_before_month[leap][m] <= doy)
        m++;
    *year = (int)y;
    *month = m;
    *day = (int)(doy - days_before_month[leap][m - 1]) + 1;
}

/* Writes v (>= 0) as exactly n decimal digits at p; returns the end. */
static char *put_digits(char *p, int64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + n;
}

/* Written digit by digit, not by snprintf: the REST bridge formats one of
 * these for every event it publishes, and snprintf's format parsing cost
 * more than the rest of the answer. */
void tse_rfc3339_format(int64_t seconds, int32_t nanos, char *buf, size_t len)
{
    char text[40], *p = text;
    int64_t since_min;
    int y, mo, d, sod;
    size_t n;

    if (buf == NULL || len == 0)
        return;
    /* Out-of-range values cannot be written in RFC 3339; clamp them. */
    seconds = seconds < TS_MIN_SECONDS ? TS_MIN_SECONDS : seconds;
    seconds = seconds > TS_MAX_SECONDS ? TS_MAX_SECONDS : seconds;
    nanos = nanos < 0 ? 0 : nanos > 999999999 ? 999999999 : nanos;

    since_min = seconds - TS_MIN_SECONDS;
    civil_from_days(since_min / SECONDS_PER_DAY, &y, &mo, &d);
    sod = (int)(since_min % SECONDS_PER_DAY);
    p = put_digits(p, y, 4);
    *p++ = '-';
    p = put_digits(p, mo, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    /* 0, 3, 6 or 9 fractional digits, as few as hold the value. */
    if (nanos != 0) {
        *p++ = '.';
        if (nanos % 1000000 == 0)
            p = put_digits(p, nanos / 1000000, 3);
        else if (nanos % 1000 == 0)
            p = put_digits(p, nanos / 1000, 6);
        else
            p = put_digits(p, nanos, 9);
    }
    *p++ = 'Z';
    /* Cut to fit, as snprintf would. */
    n = (size_t)(p - text);
    if (n > len - 1)
        n = len - 1;
    memcpy(buf, text, n);
    buf[n] = '\0';
}

/* Reads exactly n decimal digits at p; stops safely at the terminator. */
static int read_digits(const char *p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return 0;
        v = v * 10 + (p[i] - '0');
    }
    *out = v;
    return 1;
}

/* Reads ".d{1,9}" at *p, if any, as nanoseconds; advances *p. */
static int read_fraction(const char **p, int32_t *nanos)
{
    const char *s = *p;
    int32_t v = 0;
    int n = 0;

    if (*s != '.')
        return 1;
    for (s++; is_digit(*s) && n < 9; s++, n++)
        v = v * 10 + (*s - '0');
    if (n == 0 || is_digit(*s))
        return 0;
    for (; n < 9; n++)
        v *= 10;
    *nanos = v;
    *p = s;
    return 1;
}

/* Reads "Z" or "+HH:MM" / "-HH:MM" at *p as seconds east of UTC. */
static int read_offset(const char **p, int *offset)
{
    const char *s = *p;
    int h, m;

    if (*s == 'Z' || *s == 'z') {
        *offset = 0;
        *p = s + 1;
        return 1;
    }
    if (*s != '+' && *s != '-')
        return 0;
    if (!read_digits(s + 1, 2, &h) || s[3] != ':' || !read_digits(s + 4, 2, &m))
        return 0;
    if (h > 23 || m > 59)
        return 0;
    *offset = (*s == '-' ? -1 : 1) * (h * 3600 + m * 60);
    *p = s + 6;
    return 1;
}

tse_status tse_rfc3339_parse(const char *text, int64_t *seconds, int32_t *nanos)
{
    const char *p = text;
    int y, mo, d, h, mi, s, offset, leap;
    int32_t ns = 0;
    int64_t days, secs;

    if (text == NULL || !read_digits(p, 4, &y) || p[4] != '-' || !read_digits(p + 5, 2, &mo) ||
        p[7] != '-' || !read_digits(p + 8, 2, &d) || (p[10] != 'T' && p[10] != 't') ||
        !read_digits(p + 11, 2, &h) || p[13] != ':' || !read_digits(p + 14, 2, &mi) ||
        p[16] != ':' || !read_digits(p + 17, 2, &s))
        return TSE_INVALID;
    p += 19;
    if (!read_fraction(&p, &ns) || !read_offset(&p, &offset) || *p != '\0')
        return TSE_INVALID;
    if (y < 1 || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59)
        return TSE_INVALID;
    leap = is_leap(y);
    if (d < 1 || d > days_before_month[leap][mo] - days_before_month[leap][mo - 1])
        return TSE_INVALID;
    days = days_before_year(y) - EPOCH_DAY + days_before_month[leap][mo - 1] + d - 1;
    secs = days * SECONDS_PER_DAY + h * 3600 + mi * 60 + s - offset;
    /* An offset can carry a valid local time out of the UTC range. */
    if (secs < TS_MIN_SECONDS || secs > TS_MAX_SECONDS)
        return TSE_INVALID;
    if (seconds != NULL)
        *seconds = secs;
    if (nanos != NULL)
        *nanos = ns;
    return TSE_OK;
}
